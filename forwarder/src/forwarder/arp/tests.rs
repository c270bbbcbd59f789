//! The neighbour hygiene rules as the forwarder applies them to ARP frames (written out byte
//! by byte): what is learnt, what is counted, and a pinned backend's MAC.

use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use crate::config::{Config, Mode, Vip, VipPort};
use crate::time::Instant;
use crate::{Forwarder, Verdict};

const HEAD: usize = 64;
const OUR_MAC: [u8; 6] = [0x02, 0x5e, 0x00, 0x00, 0x00, 0x01];
const BE0: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 21);
const BE0_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x4d, 0x00, 0x15];
const SPOOF_MAC: [u8; 6] = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];

/// A dsr-l2 VIP 10.77.0.100:80 on the backend 10.77.0.21, its MAC pinned to `pin` if given.
fn config(pin: Option<&str>) -> Config {
    let vip = Vip::builder("web", "10.77.0.100", VipPort::One(80))
        .mode(Mode::DsrL2)
        .backend("be0", "10.77.0.21", 1);
    let vip = match pin {
        Some(mac) => vip.backend_mac(mac),
        None => vip,
    };
    Config::builder().vip(vip.build()).build()
}

/// An ARP reply to the balancer (10.77.0.2) saying 10.77.0.`last` is at `mac`, sent from `mac`.
fn reply(mac: [u8; 6], last: u8) -> Vec<u8> {
    let mut f = OUR_MAC.to_vec();
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[10, 77, 0, last]);
    f.extend_from_slice(&OUR_MAC);
    f.extend_from_slice(&[10, 77, 0, 2]);
    f.resize(60, 0);
    f
}

/// A TCP SYN from 192.0.2.7:40000 to the VIP, from the gateway's MAC.
const SYN: [u8; 54] = [
    0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, // to the balancer
    0x02, 0x00, 0x0a, 0x4d, 0x00, 0x01, // from the gateway
    0x08, 0x00, // IPv4
    0x45, 0x00, 0x00, 0x28, // total 40
    0x00, 0x00, 0x40, 0x00, // ident 0, DF
    0x3c, 0x06, 0x72, 0x18, // TTL 60, TCP, checksum
    0xc0, 0x00, 0x02, 0x07, // 192.0.2.7
    0x0a, 0x4d, 0x00, 0x64, // 10.77.0.100
    0x9c, 0x40, 0x00, 0x50, // ports 40000 -> 80
    0x00, 0x00, 0x00, 0x01, // seq 1
    0x00, 0x00, 0x00, 0x00, // ack 0
    0x50, 0x02, 0xff, 0xff, // data offset 5, SYN, window
    0x00, 0x00, 0x00, 0x00, // checksum (not checked), urgent
];

fn send(f: &mut Forwarder, frame: &[u8], now: Instant) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[HEAD..HEAD + frame.len()].copy_from_slice(frame);
    let v = f.process(&mut buf, HEAD, frame.len(), now);
    (v, buf)
}

/// Where the SYN goes now: the destination MAC it was forwarded with, or its verdict.
fn syn_to(f: &mut Forwarder, now: Instant) -> Result<[u8; 6], Verdict> {
    match send(f, &SYN, now) {
        (Verdict::Forward { head, .. }, buf) => Ok(buf[head..head + 6].try_into().unwrap()),
        (v, _) => Err(v),
    }
}

/// The addresses `poll` asks for at `now`.
fn asked(f: &mut Forwarder, now: Instant) -> Vec<Ipv4Addr> {
    let mut out = vec![];
    f.poll(now, &mut |frame| {
        out.push(Ipv4Addr::new(frame[38], frame[39], frame[40], frame[41]))
    });
    out
}

#[test]
fn a_pinned_backend_is_reached_without_arp_and_a_spoofed_reply_changes_nothing() {
    let mut f = Forwarder::new(&config(Some("02:00:0a:4d:00:15")), OUR_MAC, 1 << 12);
    assert_eq!(f.neighbour(BE0), Some(BE0_MAC));
    assert_eq!(syn_to(&mut f, Instant::ZERO), Ok(BE0_MAC));
    // Another host claims the backend's address, now and long after.
    for t in [Instant::ZERO, Instant::from_secs(120)] {
        assert_eq!(send(&mut f, &reply(SPOOF_MAC, 21), t).0, Verdict::Local);
        assert_eq!(syn_to(&mut f, t), Ok(BE0_MAC));
    }
    assert_eq!(f.counters().neigh_changes, 0);
    // Never asked for (the gateway, unpinned, is).
    for s in 0..200 {
        let who = asked(&mut f, Instant::from_secs(s));
        assert!(!who.contains(&BE0), "asked for the pinned backend at {s} s");
    }
    assert_eq!(f.neighbour(BE0), Some(BE0_MAC));
}

#[test]
fn a_changed_mac_is_counted_and_held_back_within_a_second() {
    let mut f = Forwarder::new(&config(None), OUR_MAC, 1 << 12);
    send(&mut f, &reply(BE0_MAC, 21), Instant::from_secs(1));
    assert_eq!(syn_to(&mut f, Instant::from_secs(1)), Ok(BE0_MAC));
    send(&mut f, &reply(SPOOF_MAC, 21), Instant::from_millis(1_500));
    assert_eq!(f.neighbour(BE0), Some(BE0_MAC));
    assert_eq!(f.counters().neigh_changes, 0);
    send(&mut f, &reply(SPOOF_MAC, 21), Instant::from_millis(2_000));
    assert_eq!(f.neighbour(BE0), Some(SPOOF_MAC));
    assert_eq!(f.counters().neigh_changes, 1);
}

#[test]
fn own_group_and_zero_macs_and_other_addresses_are_not_learnt() {
    let mut f = Forwarder::new(&config(None), OUR_MAC, 1 << 12);
    for mac in [OUR_MAC, [0xff; 6], [0x01, 0x00, 0x5e, 0, 0, 1], [0; 6]] {
        send(&mut f, &reply(mac, 21), Instant::ZERO);
        assert_eq!(f.neighbour(BE0), None, "{mac:?}");
    }
    // So the SYN waits for ARP instead of going to a wrong MAC.
    assert_eq!(syn_to(&mut f, Instant::ZERO), Err(Verdict::Queued));
    // An address that is no next hop gets no entry.
    send(&mut f, &reply(SPOOF_MAC, 99), Instant::ZERO);
    assert_eq!(f.neighbour(Ipv4Addr::new(10, 77, 0, 99)), None);
    assert_eq!(f.counters().neigh_changes, 0);
}
