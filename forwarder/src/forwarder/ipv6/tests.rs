//! IPv6 through the forwarder, on frames built here from literal fields: extension headers,
//! dsr-l2 and ip6ip6 output (decapsulated back to the exact input), packet too big, echo,
//! errors to a VIP, fragments; neighbour discovery is in `nd`'s tests. Checksums of what the
//! forwarder writes are verified with smoltcp's IPv6 wire types.

use super::super::tests::{HEAD, OUR_MAC};
use super::*;
use crate::config::{Config, Mode, Scheduler, Vip, VipPort};
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv6Addr;
use smoltcp::wire::{Icmpv6Packet, Ipv6Packet};

pub(crate) const OWN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
pub(crate) const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
pub(crate) const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100);
pub(crate) const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
pub(crate) const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 9];

/// Backend `i` of the tests: on the link (fd00:77::21 + i) or behind the gateway
/// (fd00:88::31 + i).
pub(crate) fn backend6(i: usize, on_link: bool) -> Ipv6Addr {
    if on_link {
        Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x21 + i as u16)
    } else {
        Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 0x31 + i as u16)
    }
}

/// The MAC the tests give an IPv6 host: 02:66 and its last four bytes.
pub(crate) fn mac6(ip: Ipv6Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x66, o[12], o[13], o[14], o[15]]
}

/// A config with the balancer at fd00:77::2/64 (gateway fd00:77::1) and one IPv6 VIP,
/// `web6` at [`VIP6`]:80/tcp, in `mode` with `scheduler` over `n` backends.
pub(crate) fn config6(mode: Mode, scheduler: Scheduler, n: usize) -> Config {
    let mut vip = Vip::builder("web6", VIP6, VipPort::One(80))
        .mode(mode)
        .scheduler(scheduler);
    for i in 0..n {
        vip = vip.backend(
            &alloc::format!("be{i}"),
            backend6(i, mode == Mode::DsrL2),
            1,
        );
    }
    Config::builder()
        .address6("fd00:77::2/64")
        .gateway6(Some("fd00:77::1"))
        .vip(vip.build())
        .build()
}

/// An Ethernet + IPv6 frame in a fresh 2 KiB buffer at [`HEAD`]: from `src` (MAC
/// [`CLIENT_MAC`]) to `dst` (MAC `to`), `next` the first next header, `payload` everything
/// after the fixed header. Returns (buffer, frame length).
pub(crate) fn frame6(
    to: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop: u8,
    payload: &[u8],
) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; 2048];
    let len = 14 + 40 + payload.len();
    let f = &mut buf[HEAD..HEAD + len];
    f[0..6].copy_from_slice(&to);
    f[6..12].copy_from_slice(&CLIENT_MAC);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    // Traffic class 0x28, flow label 0x12345: both must survive encapsulation.
    f[14..18].copy_from_slice(&[0x62, 0x81, 0x23, 0x45]);
    f[18..20].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    f[20] = next;
    f[21] = hop;
    f[22..38].copy_from_slice(&src.octets());
    f[38..54].copy_from_slice(&dst.octets());
    f[54..].copy_from_slice(payload);
    (buf, len)
}

/// A 20-byte TCP header (ports, flags) followed by `data` bytes of payload.
pub(crate) fn tcp(sport: u16, dport: u16, flags: u8, data: usize) -> Vec<u8> {
    let mut t = vec![0u8; 20 + data];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    for (i, b) in t[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    t
}

/// An ICMPv6 message (type, code, the rest) from `src` to `dst`, its checksum filled by
/// smoltcp.
pub(crate) fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, kind: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(rest);
    Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&src, &dst);
    m
}

/// A TCP segment from [`CLIENT6`] to [`VIP6`]:80.
fn syn(sport: u16, flags: u8) -> (Vec<u8>, usize) {
    frame6(OUR_MAC, CLIENT6, VIP6, 6, 64, &tcp(sport, 80, flags, 0))
}

/// Tell `f` the MAC of each IPv6 next hop in `hosts` with neighbour advertisements.
pub(crate) fn resolve6(f: &mut Forwarder, hosts: &[Ipv6Addr]) {
    for &h in hosts {
        let mut na = vec![0u8; 4];
        na[0] = 0x60; // solicited, override
        na.extend_from_slice(&h.octets());
        na.extend_from_slice(&[2, 1]);
        na.extend_from_slice(&mac6(h));
        let m = icmp6(h, OWN6, 136, 0, &na);
        let (mut buf, len) = frame6(OUR_MAC, h, OWN6, 58, 255, &m);
        buf[HEAD + 6..HEAD + 12].copy_from_slice(&mac6(h));
        assert_eq!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Local
        );
        assert_eq!(f.neighbour(h), Some(mac6(h)), "{h} resolved");
    }
}

fn forwarded(v: Verdict) -> (usize, usize) {
    match v {
        Verdict::Forward { head, len } => (head, len),
        other => panic!("expected Forward, got {other:?}"),
    }
}

fn replied(v: Verdict) -> (usize, usize) {
    match v {
        Verdict::Reply { head, len } => (head, len),
        other => panic!("expected Reply, got {other:?}"),
    }
}

#[test]
fn extension_headers_are_skipped_by_their_length() {
    let l4 = tcp(1000, 80, 0x02, 0);
    // hop-by-hop (8 bytes: PadN), routing (segments left 0), destination options (16 bytes).
    let mut chain = vec![43, 0, 1, 4, 0, 0, 0, 0];
    chain.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
    chain.extend_from_slice(&[6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    chain.extend_from_slice(&l4);
    let (buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 0, 64, &chain);
    let ip = parse(&buf[HEAD + 14..HEAD + len], false).expect("parses");
    assert_eq!(
        (ip.proto, ip.l4, ip.total, ip.frag),
        (6, 40 + 32, len - 14, None)
    );
    assert_eq!(ip.src, u128::from(CLIENT6));
    assert_eq!(ip.dst, u128::from(VIP6));

    // A first fragment: the fragment header is walked, the ports follow it.
    let mut frag = vec![6, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    frag.extend_from_slice(&l4);
    let (buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 44, 64, &frag);
    let ip = parse(&buf[HEAD + 14..HEAD + len], false).expect("parses");
    let first = Frag6 {
        offset: 0,
        more: true,
        ident: 0xdead_beef,
    };
    assert_eq!((ip.proto, ip.l4, ip.frag), (6, 48, Some(first)));
    // An atomic fragment (offset 0, no M) is a whole packet.
    frag[3] = 0;
    let (buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 44, 64, &frag);
    let ip = parse(&buf[HEAD + 14..HEAD + len], false).expect("parses");
    assert_eq!((ip.l4, ip.frag), (48, None));
}

#[test]
fn bad_header_chains_are_refused() {
    let l4 = tcp(1000, 80, 0x02, 0);
    let cases: Vec<(u8, Vec<u8>, DropReason)> = vec![
        // Hop-by-hop after another extension header.
        (
            60,
            [vec![0, 0, 0, 0, 0, 0, 0, 0], vec![6, 0, 0, 0, 0, 0, 0, 0]].concat(),
            DropReason::Malformed,
        ),
        // Routing header with segments left: the VIP is not the final destination.
        (
            43,
            [vec![6, 0, 0, 1, 0, 0, 0, 0]].concat(),
            DropReason::Unsupported,
        ),
        // A destination options header longer than the packet.
        (60, vec![6, 9, 0, 0, 0, 0, 0, 0], DropReason::Malformed),
        // Two fragment headers.
        (
            44,
            [vec![44, 0, 0, 1, 0, 0, 0, 1], vec![6, 0, 0, 1, 0, 0, 0, 1]].concat(),
            DropReason::Malformed,
        ),
        // Nine destination options headers: past the walk's bound.
        (
            60,
            [60u8, 0, 0, 0, 0, 0, 0, 0].repeat(8),
            DropReason::Malformed,
        ),
    ];
    for (next, mut chain, reason) in cases {
        chain.extend_from_slice(&l4);
        let (buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, next, 64, &chain);
        assert_eq!(
            parse(&buf[HEAD + 14..HEAD + len], false),
            Err(reason),
            "{chain:?}"
        );
        let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Maglev, 2), OUR_MAC, 1024);
        let mut buf = buf;
        assert_eq!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Drop(reason)
        );
    }
    // A payload length past the frame.
    let (mut buf, len) = syn(1000, 0x02);
    buf[HEAD + 18] = 0x10;
    let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Maglev, 2), OUR_MAC, 1024);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::Malformed)
    );
}

#[test]
fn without_address6_ipv6_is_unsupported() {
    let mut f = Forwarder::new(
        &super::super::tests::config(Mode::DsrL2, Scheduler::Rr, &[1]),
        OUR_MAC,
        1024,
    );
    let (mut buf, len) = syn(1000, 0x02);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::Unsupported)
    );
}

#[test]
fn dsr_l2_rewrites_only_the_macs_and_keeps_each_flow_on_its_backend() {
    let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Maglev, 2), OUR_MAC, 1024);
    resolve6(&mut f, &[backend6(0, true), backend6(1, true)]);
    let mut seen = [false; 2];
    for sport in 1000..1064 {
        let (mut buf, len) = syn(sport, 0x02);
        let before = buf.clone();
        let (head, out_len) = forwarded(f.process(&mut buf, HEAD, len, Instant::ZERO));
        assert_eq!((head, out_len), (HEAD, len));
        let to: [u8; 6] = buf[HEAD..HEAD + 6].try_into().unwrap();
        let i = (0..2)
            .find(|&i| mac6(backend6(i, true)) == to)
            .expect("a backend's MAC");
        seen[i] = true;
        assert_eq!(&buf[HEAD + 6..HEAD + 12], &OUR_MAC);
        assert_eq!(&buf[HEAD + 12..HEAD + len], &before[HEAD + 12..HEAD + len]);
        // The rest of the connection goes where its SYN went.
        for flags in [0x10, 0x18, 0x11] {
            let (mut buf, len) = syn(sport, flags);
            forwarded(f.process(&mut buf, HEAD, len, Instant::ZERO));
            assert_eq!(&buf[HEAD..HEAD + 6], &to);
        }
    }
    assert_eq!(
        seen,
        [true, true],
        "maglev spreads IPv6 flows over both backends"
    );
    let stats = f.stats();
    assert_eq!(
        stats[0].backends.iter().map(|b| b.packets).sum::<u64>(),
        64 * 4
    );
}

#[test]
fn ip6ip6_output_decapsulates_to_the_exact_input() {
    let mut f = Forwarder::new(&config6(Mode::DsrL3, Scheduler::Maglev, 1), OUR_MAC, 1024);
    resolve6(&mut f, &[GW6]);
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 6, 64, &tcp(1000, 80, 0x18, 100));
    let inner = buf[HEAD + 14..HEAD + len].to_vec();
    let (head, out_len) = forwarded(f.process(&mut buf, HEAD, len, Instant::ZERO));
    assert_eq!((head, out_len), (HEAD - 40, len + 40));
    let out = &buf[head..head + out_len];
    assert_eq!(
        &out[0..6],
        &mac6(GW6),
        "to the gateway: the backend is off-link"
    );
    assert_eq!(&out[6..12], &OUR_MAC);
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    let outer = Ipv6Packet::new_checked(&out[14..]).expect("an IPv6 packet");
    assert_eq!(outer.version(), 6);
    assert_eq!(u8::from(outer.next_header()), 41);
    assert_eq!(outer.hop_limit(), 64);
    assert_eq!(outer.src_addr(), OWN6);
    assert_eq!(outer.dst_addr(), backend6(0, false));
    assert_eq!(usize::from(outer.payload_len()), inner.len());
    assert_eq!((outer.traffic_class(), outer.flow_label()), (0x28, 0x12345));
    assert_eq!(outer.payload(), &inner[..], "the inner packet is untouched");
}

#[test]
fn too_big_for_ip6ip6_is_answered_with_packet_too_big() {
    let mut f = Forwarder::new(&config6(Mode::DsrL3, Scheduler::Maglev, 1), OUR_MAC, 1024);
    resolve6(&mut f, &[GW6]);
    // 1500 bytes of IPv6: 1540 once encapsulated.
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 6, 64, &tcp(1000, 80, 0x10, 1440));
    let original = buf[HEAD + 14..HEAD + len].to_vec();
    let (head, out_len) = replied(f.process(&mut buf, HEAD, len, Instant::ZERO));
    let out = &buf[head..head + out_len];
    assert_eq!(&out[0..6], &CLIENT_MAC);
    let ip = Ipv6Packet::new_checked(&out[14..]).expect("an IPv6 packet");
    assert_eq!((ip.src_addr(), ip.dst_addr()), (OWN6, CLIENT6));
    assert_eq!(u8::from(ip.next_header()), 58);
    assert!(out_len - 14 <= 1280, "an ICMPv6 error fits the minimum MTU");
    let icmp = Icmpv6Packet::new_checked(ip.payload()).expect("ICMPv6");
    assert!(icmp.verify_checksum(&OWN6, &CLIENT6));
    assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (2, 0));
    assert_eq!(icmp.pkt_too_big_mtu(), 1460);
    let quote = &ip.payload()[8..];
    assert_eq!(
        quote,
        &original[..quote.len()],
        "the packet is quoted from its start"
    );
    assert_eq!(f.counters().drop_count(DropReason::TooBig), 1);
}

#[test]
fn echo_requests_to_a_vip_and_the_balancer_are_answered() {
    let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Maglev, 2), OUR_MAC, 1024);
    for to in [VIP6, OWN6] {
        let m = icmp6(
            CLIENT6,
            to,
            128,
            0,
            &[0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g'],
        );
        let (mut buf, len) = frame6(OUR_MAC, CLIENT6, to, 58, 64, &m);
        let (head, out_len) = replied(f.process(&mut buf, HEAD, len, Instant::ZERO));
        assert_eq!((head, out_len), (HEAD, len));
        let out = &buf[head..head + out_len];
        assert_eq!(&out[0..6], &CLIENT_MAC);
        let ip = Ipv6Packet::new_checked(&out[14..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (to, CLIENT6));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&to, &CLIENT6));
        assert_eq!(u8::from(icmp.msg_type()), 129);
        assert_eq!(
            &ip.payload()[4..],
            &m[4..],
            "identifier, sequence and data unchanged"
        );
    }
    // A bad checksum is not answered.
    let mut m = icmp6(CLIENT6, VIP6, 128, 0, &[0, 1, 0, 1]);
    m[2] ^= 1;
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 58, 64, &m);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::IcmpMalformed)
    );
}

#[test]
fn packet_too_big_to_a_vip_reaches_the_backend_of_the_flow_it_quotes() {
    let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Rr, 2), OUR_MAC, 1024);
    resolve6(&mut f, &[backend6(0, true), backend6(1, true)]);
    // Two flows, one per backend (round robin).
    let mut to = Vec::new();
    for sport in [5000, 5001] {
        let (mut buf, len) = syn(sport, 0x02);
        forwarded(f.process(&mut buf, HEAD, len, Instant::ZERO));
        to.push(buf[HEAD..HEAD + 6].to_vec());
    }
    assert_ne!(to[0], to[1]);
    for (i, sport) in [5000u16, 5001].into_iter().enumerate() {
        // The backend's reply VIP:80 -> client:sport, as a router quotes it.
        let reply = frame6(
            CLIENT_MAC,
            VIP6,
            CLIENT6,
            6,
            63,
            &tcp(80, sport, 0x10, 1400),
        )
        .0;
        let quote = &reply[HEAD + 14..HEAD + 14 + 40 + 20 + 100];
        let router = Ipv6Addr::new(0xfd00, 0x55, 0, 0, 0, 0, 0, 2);
        let mut rest = 1400u32.to_be_bytes().to_vec();
        rest.extend_from_slice(quote);
        let m = icmp6(router, VIP6, 2, 0, &rest);
        let (mut buf, len) = frame6(OUR_MAC, router, VIP6, 58, 64, &m);
        let before = buf[HEAD + 12..HEAD + len].to_vec();
        forwarded(f.process(&mut buf, HEAD, len, Instant::ZERO));
        assert_eq!(&buf[HEAD..HEAD + 6], &to[i][..], "the flow's backend");
        assert_eq!(
            &buf[HEAD + 12..HEAD + len],
            &before[..],
            "unchanged but for the MACs"
        );
    }
    assert_eq!(f.counters().icmp_forwarded, 2);
}

#[test]
fn later_fragments_follow_their_first() {
    let mut cfg = config6(Mode::DsrL2, Scheduler::Rr, 2);
    cfg.vips[0].protocol = crate::config::Protocol::Udp;
    let mut f = Forwarder::new(&cfg, OUR_MAC, 1024);
    resolve6(&mut f, &[backend6(0, true), backend6(1, true)]);
    let mut to = Vec::new();
    for ident in [7u32, 8] {
        let mut first = vec![17, 0, 0, 1];
        first.extend_from_slice(&ident.to_be_bytes());
        let mut udp = vec![0x13, ident as u8, 0, 80, 0x05, 0xdc, 0, 0];
        udp.extend_from_slice(&[0xab; 1000]);
        first.extend_from_slice(&udp);
        let (mut buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 44, 64, &first);
        forwarded(f.process(&mut buf, HEAD, len, Instant::ZERO));
        let first_to = buf[HEAD..HEAD + 6].to_vec();
        // Offset 1008 (126 units), no M: the rest of the datagram, no ports.
        let mut later = vec![17, 0, 0x03, 0xf0];
        later.extend_from_slice(&ident.to_be_bytes());
        later.extend_from_slice(&[0xcd; 500]);
        let (mut buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 44, 64, &later);
        forwarded(f.process(&mut buf, HEAD, len, Instant::ZERO));
        assert_eq!(&buf[HEAD..HEAD + 6], &first_to[..]);
        to.push(first_to);
    }
    assert_ne!(to[0], to[1], "two flows, two backends (round robin)");
    // A later fragment whose first was never seen, with no all-ports VIP: dropped.
    let mut later = vec![17, 0, 0x03, 0xf0, 0, 0, 0, 99];
    later.extend_from_slice(&[0xcd; 100]);
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 44, 64, &later);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::FragmentUnknown)
    );
}

#[test]
fn hop_limit_and_unknown_destinations_are_dropped() {
    let mut f = Forwarder::new(&config6(Mode::DsrL2, Scheduler::Maglev, 2), OUR_MAC, 1024);
    resolve6(&mut f, &[backend6(0, true), backend6(1, true)]);
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 6, 1, &tcp(1, 80, 2, 0));
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::Ttl)
    );
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, VIP6, 6, 64, &tcp(1, 81, 2, 0));
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::NotVip)
    );
    let other = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x999);
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, other, 6, 64, &tcp(1, 80, 2, 0));
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::NotVip)
    );
}

#[test]
fn the_balancers_own_address_takes_its_connections_allowed_management_but_not_bgp() {
    let mut cfg = config6(Mode::DsrL2, Scheduler::Maglev, 2);
    let mut f = Forwarder::new(&cfg, OUR_MAC, 1024);
    // A health check's SYN-ACK, say: up to the local stack.
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, OWN6, 6, 64, &tcp(80, 50000, 0x12, 0));
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Local
    );
    // The management port takes the IPv6 sources its allow list names; BGP and BFD IPv4 peers
    // only.
    cfg.management = Config::builder()
        .management(9100, &["10.77.0.0/24", "2001:db8::/64"])
        .build()
        .management;
    cfg.bgp = Config::builder()
        .bgp(65010)
        .bgp_peer("10.77.0.1", 65000)
        .build()
        .bgp;
    f.apply_config(&cfg, Instant::ZERO);
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, OWN6, 6, 64, &tcp(40000, 9100, 0x02, 0));
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Local,
        "CLIENT6 is in 2001:db8::/64"
    );
    for (proto, port, reason) in [
        (6, 179, DropReason::BgpDenied),
        (17, 3784, DropReason::BgpDenied),
    ] {
        let l4 = if proto == 6 {
            tcp(40000, port, 0x02, 0)
        } else {
            let mut u = vec![0x9c, 0x40, (port >> 8) as u8, port as u8, 0, 8, 0, 0];
            u.truncate(8);
            u
        };
        let (mut buf, len) = frame6(OUR_MAC, CLIENT6, OWN6, proto, 64, &l4);
        assert_eq!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Drop(reason),
            "{proto}/{port}"
        );
    }
    let stranger = Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 7);
    let (mut buf, len) = frame6(OUR_MAC, stranger, OWN6, 6, 64, &tcp(40000, 9100, 0x02, 0));
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::MgmtDenied),
        "a source outside the allow list"
    );
    // Anything but TCP, UDP and ICMPv6 to it: unsupported.
    let (mut buf, len) = frame6(OUR_MAC, CLIENT6, OWN6, 132, 64, &[0; 12]);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::Unsupported)
    );
}

#[test]
fn a_new_ipv6_flow_gets_the_same_backend_on_every_balancer() {
    let cfg = config6(Mode::DsrL2, Scheduler::Maglev, 5);
    let mut a = Forwarder::with_seed(&cfg, OUR_MAC, 1024, 1);
    let mut b = Forwarder::with_seed(&cfg, [0x02, 0x5e, 0, 0, 0, 2], 4096, 0xdead_beef);
    let hops: Vec<Ipv6Addr> = (0..5).map(|i| backend6(i, true)).collect();
    resolve6(&mut a, &hops);
    // `b` has another MAC: its advertisements need not match `resolve6`'s destination MAC.
    for &h in &hops {
        let mut na = vec![0x60, 0, 0, 0];
        na.extend_from_slice(&h.octets());
        na.extend_from_slice(&[2, 1]);
        na.extend_from_slice(&mac6(h));
        let m = icmp6(h, OWN6, 136, 0, &na);
        let (mut buf, len) = frame6([0x02, 0x5e, 0, 0, 0, 2], h, OWN6, 58, 255, &m);
        assert_eq!(
            b.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Local
        );
    }
    for sport in 2000..2100 {
        // `b` sees the flow mid-stream (an ACK), as after an ECMP change.
        let (mut x, len) = syn(sport, 0x02);
        forwarded(a.process(&mut x, HEAD, len, Instant::ZERO));
        let (mut y, _) = frame6(
            [0x02, 0x5e, 0, 0, 0, 2],
            CLIENT6,
            VIP6,
            6,
            64,
            &tcp(sport, 80, 0x10, 0),
        );
        forwarded(b.process(&mut y, HEAD, len, Instant::ZERO));
        assert_eq!(&x[HEAD..HEAD + 6], &y[HEAD..HEAD + 6], "port {sport}");
    }
}

/// IPv6 frames for the fuzz targets' seeds (see `write_fuzz_seeds`): to [`VIP6`]:80, a SYN, an
/// ACK with data, one behind an extension header chain, a first and a later fragment, a
/// solicitation and an advertisement, an echo request and a packet too big quoting a reply.
pub(crate) fn fuzz_seed_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut push = |(buf, len): (Vec<u8>, usize)| out.push(buf[HEAD..HEAD + len].to_vec());
    push(syn(1000, 0x02));
    push(frame6(
        OUR_MAC,
        CLIENT6,
        VIP6,
        6,
        64,
        &tcp(1000, 80, 0x18, 300),
    ));
    let mut chain = vec![60, 0, 1, 4, 0, 0, 0, 0];
    chain.extend_from_slice(&tcp(1001, 80, 0x02, 0));
    push(frame6(OUR_MAC, CLIENT6, VIP6, 0, 64, &chain));
    let mut first = vec![6, 0, 0, 1, 0, 0, 0, 5];
    first.extend_from_slice(&tcp(1002, 80, 0x10, 200));
    push(frame6(OUR_MAC, CLIENT6, VIP6, 44, 64, &first));
    let mut later = vec![6, 0, 0, 0xe0, 0, 0, 0, 5];
    later.extend_from_slice(&[0x5a; 100]);
    push(frame6(OUR_MAC, CLIENT6, VIP6, 44, 64, &later));
    let mut ns = vec![0u8; 4];
    ns.extend_from_slice(&VIP6.octets());
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&CLIENT_MAC);
    push(frame6(
        OUR_MAC,
        CLIENT6,
        VIP6,
        58,
        255,
        &icmp6(CLIENT6, VIP6, 135, 0, &ns),
    ));
    let be = backend6(0, true);
    let mut na = vec![0x60, 0, 0, 0];
    na.extend_from_slice(&be.octets());
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&mac6(be));
    push(frame6(
        OUR_MAC,
        be,
        OWN6,
        58,
        255,
        &icmp6(be, OWN6, 136, 0, &na),
    ));
    let echo = icmp6(CLIENT6, VIP6, 128, 0, &[0, 7, 0, 1, 1, 2, 3, 4]);
    push(frame6(OUR_MAC, CLIENT6, VIP6, 58, 64, &echo));
    let reply = frame6(CLIENT_MAC, VIP6, CLIENT6, 6, 63, &tcp(80, 1000, 0x10, 100)).0;
    let mut ptb = 1280u32.to_be_bytes().to_vec();
    ptb.extend_from_slice(&reply[HEAD + 14..HEAD + 14 + 100]);
    push(frame6(
        OUR_MAC,
        GW6,
        VIP6,
        58,
        64,
        &icmp6(GW6, VIP6, 2, 0, &ptb),
    ));
    out
}
