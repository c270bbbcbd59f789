//! What the forwarder's fuzz targets share: the config they run (three IPv4 VIPs in both modes,
//! two IPv6 ones, a small MTU so that outer fragmentation and ICMP replies are reached, a
//! management section so that the allow-list is), the NIC address the seeds are written for, and the frame format of
//! an input.

use std::net::{Ipv4Addr, Ipv6Addr};

use control::config::{Config, Mode, Protocol, Scheduler, Vip, VipPort};
use forwarder::{arp, Forwarder, Instant};

/// The balancer's MAC, as in the seeds (`write_fuzz_seeds` in the forwarder's tests).
pub const MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 1];
/// The balancer's address.
pub const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The VIP of every virtual service.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

pub fn config() -> Config {
    // A VIP at `VIP` with 60 s persistence and backends be0..be2 (10.77.0.21..23) of weights 0..2.
    let vip = |name, port| {
        let mut vip = Vip::builder(name, VIP, port).persistence(60);
        for i in 0..3 {
            let address = Ipv4Addr::new(10, 77, 0, 21 + i);
            vip = vip.backend(&format!("be{i}"), address, u32::from(i));
        }
        vip
    };
    let l2 = vip("l2", VipPort::One(80))
        .mode(Mode::DsrL2)
        .scheduler(Scheduler::Maglev);
    let l3 = vip("l3", VipPort::All)
        .mode(Mode::DsrL3)
        .scheduler(Scheduler::Wlc);
    let udp = vip("udp", VipPort::All)
        .protocol(Protocol::Udp)
        .mode(Mode::DsrL3)
        .scheduler(Scheduler::Sh);
    // IPv6: fd00:77::100 port 80 over dsr-l2 (maglev) and every other port over ip6ip6 (wlc),
    // backends fd00:77::21..23, as the IPv6 seeds are written.
    let vip6 = |name, port, mode, scheduler| {
        let mut vip = Vip::builder(name, VIP6, port).mode(mode).scheduler(scheduler);
        for i in 0..3u16 {
            let address = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x21 + i);
            vip = vip.backend(&format!("be{i}"), address, u32::from(i) + 1);
        }
        vip.build()
    };
    Config::builder()
        .mtu(576)
        .address6("fd00:77::2/64")
        .gateway6(Some("fd00:77::1"))
        .vip(vip6("l2v6", VipPort::One(80), Mode::DsrL2, Scheduler::Maglev))
        .vip(vip6("l3v6", VipPort::All, Mode::DsrL3, Scheduler::Wlc))
        .management(9000, &["10.77.0.0/28"])
        .vip(l2.build())
        .vip(l3.build())
        .vip(udp.build())
        .build()
}

/// The IPv6 VIP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100);

/// Tell `f` every next hop's MAC (the backends', the gateway's) with ARP replies (IPv6 ones
/// stay unresolved: their frames wait, which the fuzzer reaches too).
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
