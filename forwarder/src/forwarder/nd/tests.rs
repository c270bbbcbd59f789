//! Neighbour discovery on literal frames: answers to solicitations (for the balancer, a VIP,
//! duplicate address detection), what is learnt and what is not, and the frames the balancer
//! sends, checked with smoltcp's IPv6 wire types.

use super::super::ipv6::tests::{
    backend6, config6, frame6, icmp6, mac6, CLIENT6, CLIENT_MAC, OWN6, VIP6,
};
use super::super::tests::{HEAD, OUR_MAC};
use super::*;
use crate::config::{Mode, Scheduler};
use crate::Forwarder;
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::wire::{Icmpv6Packet, Ipv6Packet};

/// A solicitation for `target` from `src` (with a source link-layer option of `mac` unless
/// `src` is unspecified), at hop limit `hop`.
fn solicit(src: Ipv6Addr, target: Ipv6Addr, mac: [u8; 6], hop: u8) -> (Vec<u8>, usize) {
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&target.octets());
    if !src.is_unspecified() {
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&mac);
    }
    let group = Ipv6Addr::from(solicited_node(u128::from(target)));
    let m = icmp6(src, group, 135, 0, &body);
    let (mut buf, len) = frame6(group_mac(u128::from(group)), src, group, 58, hop, &m);
    buf[HEAD + 6..HEAD + 12].copy_from_slice(&mac);
    (buf, len)
}

/// The advertisement in `frame`, checked: (IPv6 source, destination, flags word, target,
/// target link-layer option).
fn advert(frame: &[u8]) -> (Ipv6Addr, Ipv6Addr, u32, Ipv6Addr, [u8; 6]) {
    let ip = Ipv6Packet::new_checked(&frame[14..]).expect("IPv6");
    assert_eq!(ip.hop_limit(), 255);
    let m = Icmpv6Packet::new_checked(ip.payload()).expect("ICMPv6");
    assert!(
        m.verify_checksum(&ip.src_addr(), &ip.dst_addr()),
        "checksum"
    );
    assert_eq!(u8::from(m.msg_type()), 136);
    let p = ip.payload();
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap());
    assert_eq!(&p[24..26], &[2, 1], "a target link-layer option");
    let flags = u32::from_be_bytes(p[4..8].try_into().unwrap());
    (
        ip.src_addr(),
        ip.dst_addr(),
        flags,
        target,
        p[26..32].try_into().unwrap(),
    )
}

#[test]
fn solicitations_for_the_balancer_and_its_vips_are_answered() {
    let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Maglev, 2), OUR_MAC, 1024);
    for target in [OWN6, VIP6] {
        let (mut buf, len) = solicit(CLIENT6, target, CLIENT_MAC, 255);
        let v = f.process(&mut buf, HEAD, len, Instant::ZERO);
        let Verdict::Reply { head, len } = v else {
            panic!("no answer for {target}: {v:?}");
        };
        let out = &buf[head..head + len];
        assert_eq!(&out[0..6], &CLIENT_MAC);
        assert_eq!(&out[6..12], &OUR_MAC);
        let (src, dst, flags, t, mac) = advert(out);
        assert_eq!((src, dst, t, mac), (target, CLIENT6, target, OUR_MAC));
        assert_eq!(flags, 0x6000_0000, "solicited and override");
    }
    // Duplicate address detection for the VIP: answered to all nodes, not solicited.
    let (mut buf, len) = solicit(Ipv6Addr::UNSPECIFIED, VIP6, CLIENT_MAC, 255);
    let Verdict::Reply { head, len } = f.process(&mut buf, HEAD, len, Instant::ZERO) else {
        panic!("DAD for a VIP unanswered");
    };
    let out = &buf[head..head + len];
    assert_eq!(&out[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    let (_, dst, flags, _, _) = advert(out);
    assert_eq!((dst, flags), ("ff02::1".parse().unwrap(), 0x2000_0000));
    // Another address, a forwarded solicitation (hop limit 254), a backup balancer.
    let other = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x55);
    let (mut buf, len) = solicit(CLIENT6, other, CLIENT_MAC, 255);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::NotForUs)
    );
    let (mut buf, len) = solicit(CLIENT6, VIP6, CLIENT_MAC, 254);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::IcmpMalformed)
    );
    f.set_vip_role(false);
    let (mut buf, len) = solicit(CLIENT6, VIP6, CLIENT_MAC, 255);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::VrrpBackup)
    );
    let (mut buf, len) = solicit(CLIENT6, OWN6, CLIENT_MAC, 255);
    assert!(matches!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Reply { .. }
    ));
}

#[test]
fn next_hops_are_learnt_from_neighbour_discovery_and_nothing_else_is() {
    let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Maglev, 2), OUR_MAC, 1024);
    let be = backend6(0, true);
    // A backend's solicitation for the balancer teaches its MAC.
    let (mut buf, len) = solicit(be, OWN6, mac6(be), 255);
    assert!(matches!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Reply { .. }
    ));
    assert_eq!(f.neighbour(be), Some(mac6(be)));
    // A client is no next hop: nothing learnt.
    let (mut buf, len) = solicit(CLIENT6, OWN6, CLIENT_MAC, 255);
    f.process(&mut buf, HEAD, len, Instant::ZERO);
    assert_eq!(f.neighbour(CLIENT6), None);
    // A group MAC in an advertisement is never learnt.
    let be2 = backend6(1, true);
    let mut na = vec![0x20, 0, 0, 0];
    na.extend_from_slice(&be2.octets());
    na.extend_from_slice(&[2, 1, 0x33, 0x33, 0, 0, 0, 1]);
    let m = icmp6(be2, OWN6, 136, 0, &na);
    let (mut buf, len) = frame6(OUR_MAC, be2, OWN6, 58, 255, &m);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Local
    );
    assert_eq!(f.neighbour(be2), None);
    // A zero-length option is malformed.
    let mut na = vec![0x20, 0, 0, 0];
    na.extend_from_slice(&be2.octets());
    na.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    let m = icmp6(be2, OWN6, 136, 0, &na);
    let (mut buf, len) = frame6(OUR_MAC, be2, OWN6, 58, 255, &m);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::IcmpMalformed)
    );
}

#[test]
fn unresolved_next_hops_are_solicited_and_frames_wait_for_them() {
    let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Rr, 1), OUR_MAC, 1024);
    let be = backend6(0, true);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    f.poll(Instant::ZERO, &mut |frame| sent.push(frame.to_vec()));
    assert_eq!(sent.len(), 1, "one solicitation");
    let ns = &sent[0];
    assert_eq!(ns, &solicitation(OUR_MAC, OWN6, be).to_vec());
    assert_eq!(&ns[0..6], &[0x33, 0x33, 0xff, 0, 0, 0x21]);
    let ip = Ipv6Packet::new_checked(&ns[14..]).unwrap();
    assert_eq!(
        ip.dst_addr(),
        "ff02::1:ff00:21".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!((ip.src_addr(), ip.hop_limit()), (OWN6, 255));
    let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(m.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    assert_eq!(&ip.payload()[8..24], &be.octets());
    assert_eq!(&ip.payload()[24..32], &[1, 1, 2, 0x5e, 0, 0, 0, 1]);

    // A SYN waits; the advertisement releases it to the backend's MAC.
    let (mut buf, len) = frame6(
        OUR_MAC,
        CLIENT6,
        VIP6,
        6,
        64,
        &super::super::ipv6::tests::tcp(9, 80, 2, 0),
    );
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Queued
    );
    let mut na = vec![0x60, 0, 0, 0];
    na.extend_from_slice(&be.octets());
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&mac6(be));
    let m = icmp6(be, OWN6, 136, 0, &na);
    let (mut buf, len) = frame6(OUR_MAC, be, OWN6, 58, 255, &m);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Local
    );
    sent.clear();
    f.poll(Instant::from_millis(1), &mut |frame| {
        sent.push(frame.to_vec())
    });
    assert_eq!(sent.len(), 1, "the waiting SYN");
    assert_eq!(&sent[0][0..6], &mac6(be));
}

#[test]
fn advertisements_to_the_balancer_go_up_and_to_all_nodes_are_consumed() {
    let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Maglev, 2), OUR_MAC, 1024);
    let be = backend6(1, true);
    // A backend's unsolicited advertisement to all nodes: learnt, taken here.
    let frame = unsolicited_advertisement(mac6(be), be);
    let mut buf = vec![0u8; 2048];
    buf[HEAD..HEAD + frame.len()].copy_from_slice(&frame);
    assert_eq!(
        f.process(&mut buf, HEAD, frame.len(), Instant::ZERO),
        Verdict::Consumed
    );
    assert_eq!(f.neighbour(be), Some(mac6(be)));
    // A client's answer to the local stack's solicitation: not learnt (no next hop), but up to
    // the local stack, which asked.
    let hint = neighbour_hint(OUR_MAC, OWN6, CLIENT6, CLIENT_MAC);
    let mut buf = vec![0u8; 2048];
    buf[HEAD..HEAD + hint.len()].copy_from_slice(&hint);
    assert_eq!(
        f.process(&mut buf, HEAD, hint.len(), Instant::ZERO),
        Verdict::Local
    );
    assert_eq!(f.neighbour(CLIENT6), None);
}

#[test]
fn unsolicited_advertisements_announce_every_address() {
    let cfg = config6(Mode::DsrL2, Scheduler::Maglev, 2);
    assert_eq!(announced6(&cfg), vec![OWN6, VIP6]);
    let frame = unsolicited_advertisement(OUR_MAC, VIP6);
    assert_eq!(&frame[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    let (src, dst, flags, target, mac) = advert(&frame);
    assert_eq!((src, target, mac), (VIP6, VIP6, OUR_MAC));
    assert_eq!((dst, flags), ("ff02::1".parse().unwrap(), 0x2000_0000));
}
