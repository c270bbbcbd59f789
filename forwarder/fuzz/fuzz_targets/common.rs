//! What the forwarder's fuzz targets share: the config they run (three VIPs in both modes, a
//! small MTU so that outer fragmentation and ICMP replies are reached, a management section so
//! that the allow-list is), the NIC address the seeds are written for, and the frame format of
//! an input.

use std::net::Ipv4Addr;

use control::config::{
    Backend, Config, Interface, Limits, Management, Mode, Prefix, Protocol, Scheduler, Vip, VipPort,
};
use forwarder::{arp, Forwarder, Instant};

/// The balancer's MAC, as in the seeds (`write_fuzz_seeds` in the forwarder's tests).
pub const MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 1];
/// The balancer's address.
pub const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The VIP of every virtual service.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

pub fn config() -> Config {
    let vip = |name: &str, port, protocol, mode, scheduler| Vip {
        name: name.into(),
        address: VIP,
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
        management: Some(Management {
            port: 9000,
            allow: vec![Prefix::parse("10.77.0.0/28").unwrap()],
            pubkey: None,
            fetch: None,
        }),
        limits: Limits::default(),
        bgp: None,
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

/// Tell `f` every next hop's MAC (the backends', the gateway's) with ARP replies.
pub fn resolve(f: &mut Forwarder, now: Instant) {
    for last in [1, 21, 22, 23] {
        let ip = Ipv4Addr::new(10, 77, 0, last);
        let mut frame = arp::neighbour_hint(MAC, OWN, ip, [2, 0, 10, 77, 0, last]).to_vec();
        frame.resize(frame.len() + 64, 0);
        frame.rotate_right(64);
        let _ = f.process(&mut frame, 64, 60, now);
    }
}

/// An input: its first byte is the headroom, the rest one or more frames separated by the byte
/// 0xA5 (at most `max` of them).
pub fn frames(data: &[u8], max: usize) -> Option<(usize, Vec<&[u8]>)> {
    let (&head, rest) = data.split_first()?;
    Some((
        usize::from(head),
        rest.split(|&b| b == 0xA5).take(max).collect(),
    ))
}

/// A packet buffer's size, as the kernel's.
pub const BUF_LEN: usize = 2048;

/// Put `frame` at `head` into `buf` (zeroed first), cut to fit; returns the length kept.
pub fn place(buf: &mut [u8], head: usize, frame: &[u8]) -> usize {
    buf.fill(0);
    let n = frame.len().min(buf.len().saturating_sub(head));
    buf[head..head + n].copy_from_slice(&frame[..n]);
    n
}

/// Take every neighbour hint and build its frame, as the kernel does.
pub fn drain_hints(f: &mut Forwarder) -> Vec<[u8; 60]> {
    let mut out = Vec::new();
    while let Some((ip, mac)) = f.take_neighbour_hint() {
        let frame = arp::neighbour_hint(MAC, OWN, ip, mac);
        assert!(arp::is_arp_reply(&frame));
        out.push(frame);
    }
    out
}
