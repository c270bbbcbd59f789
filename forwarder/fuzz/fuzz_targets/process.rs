//! Arbitrary frames (and the offsets they sit at) through `Forwarder::process` and `poll`: no
//! input may panic, and every verdict must point inside the buffer.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use control::config::{
    Backend, Config, Interface, Limits, Mode, Prefix, Protocol, Scheduler, Vip, VipPort,
};
use forwarder::{Forwarder, Instant, Verdict};
use libfuzzer_sys::fuzz_target;

fn config() -> Config {
    let vip = |name: &str, port, protocol, mode, scheduler| Vip {
        name: name.into(),
        address: Ipv4Addr::new(10, 77, 0, 100),
        port,
        protocol,
        mode,
        scheduler,
        persistence: Some(60),
        health: None,
        backends: (0..3)
            .map(|i| Backend {
                name: format!("be{i}"),
                address: Ipv4Addr::new(10, 77, 0, 21 + i),
                weight: u32::from(i),
            })
            .collect(),
    };
    Config {
        version: 1,
        interface: Interface {
            address: Prefix::parse("10.77.0.2/24").unwrap(),
            gateway: Some(Ipv4Addr::new(10, 77, 0, 1)),
            mtu: 576,
            nic: None,
            poll: Default::default(),
        },
        management: None,
        limits: Limits::default(),
        vips: vec![
            vip(
                "l2",
                VipPort::One(80),
                Protocol::Tcp,
                Mode::DsrL2,
                Scheduler::Maglev,
            ),
            vip(
                "l3",
                VipPort::All,
                Protocol::Tcp,
                Mode::DsrL3,
                Scheduler::Wlc,
            ),
            vip(
                "udp",
                VipPort::All,
                Protocol::Udp,
                Mode::DsrL3,
                Scheduler::Sh,
            ),
        ],
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: headroom; the rest: one or more frames separated by the byte 0xA5.
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    // Building a forwarder (two Maglev tables among the rest) costs far more than one input;
    // every input starts from a clone of the same one, so inputs stay independent.
    static TEMPLATE: OnceLock<Forwarder> = OnceLock::new();
    let mut f = TEMPLATE
        .get_or_init(|| Forwarder::new(&config(), [2, 0, 0, 0, 0, 1], 1024))
        .clone();
    for (i, frame) in rest.split(|&b| b == 0xA5).enumerate() {
        let mut buf = vec![0u8; 2048];
        let head = usize::from(head);
        let n = frame.len().min(buf.len() - head);
        buf[head..head + n].copy_from_slice(&frame[..n]);
        let now = Instant::from_millis(i as u64 * 700);
        match f.process(&mut buf, head, n, now) {
            Verdict::Forward { head, len } | Verdict::Reply { head, len } => {
                assert!(head + len <= buf.len());
            }
            _ => {}
        }
        f.poll(now, &mut |out| assert!(out.len() <= 2048));
    }
});
