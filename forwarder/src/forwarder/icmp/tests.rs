//! ICMP to a VIP, frame by frame: the ICMP frames in and out are written out byte by byte
//! (checksums computed by hand), as in `golden.rs`; the TCP and UDP packets that open the
//! flows they quote are built by a helper.

use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::wire::{IpProtocol, Ipv4Packet};

use crate::config::{Config, Mode, Protocol, Scheduler, Vip, VipPort};
use crate::stats::DropReason;
use crate::time::Instant;
use crate::{Forwarder, Verdict, ICMP_BURST};

const HEAD: usize = 64;
const OUR_MAC: [u8; 6] = [0x02, 0x5e, 0x00, 0x00, 0x00, 0x01];
/// The gateway 10.77.0.1, through which clients and routers reach the balancer.
const GW_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x4d, 0x00, 0x01];
const BE0_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x4d, 0x00, 0x15];
const BE1_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x4d, 0x00, 0x16];

/// Two VIPs: `web`, TCP 10.77.0.100:80 on backends 10.77.0.21 and .22 (mode and scheduler
/// given), and `dns`, UDP 10.77.0.101:53 by Maglev on .23 and .24.
fn lab(mode: Mode, scheduler: Scheduler) -> Config {
    Config::builder()
        .vip(
            Vip::builder("web", "10.77.0.100", VipPort::One(80))
                .mode(mode)
                .scheduler(scheduler)
                .backend("be0", "10.77.0.21", 1)
                .backend("be1", "10.77.0.22", 1)
                .build(),
        )
        .vip(
            Vip::builder("dns", "10.77.0.101", VipPort::One(53))
                .protocol(Protocol::Udp)
                .scheduler(Scheduler::Maglev)
                .backend("be2", "10.77.0.23", 1)
                .backend("be3", "10.77.0.24", 1)
                .build(),
        )
        .build()
}

/// The MAC of 10.77.0.`last`: 02:00:0a:4d:00:`last`.
fn mac(last: u8) -> [u8; 6] {
    [0x02, 0x00, 0x0a, 0x4d, 0x00, last]
}

/// A forwarder on `config` that knows the MAC of the gateway and of every backend.
fn ready(config: &Config) -> Forwarder {
    let mut f = Forwarder::new(config, OUR_MAC, 1 << 16);
    for last in [1, 21, 22, 23, 24] {
        let mut arp = vec![];
        arp.extend_from_slice(&OUR_MAC);
        arp.extend_from_slice(&mac(last));
        arp.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02]);
        arp.extend_from_slice(&mac(last));
        arp.extend_from_slice(&[10, 77, 0, last]);
        arp.extend_from_slice(&OUR_MAC);
        arp.extend_from_slice(&[10, 77, 0, 2]);
        arp.resize(60, 0);
        let (mut buf, len) = buffer(&arp);
        assert_eq!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Local
        );
    }
    f
}

/// `frame` in a fresh 2 KiB buffer at [`HEAD`], and its length.
fn buffer(frame: &[u8]) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; 2048];
    buf[HEAD..HEAD + frame.len()].copy_from_slice(frame);
    (buf, frame.len())
}

/// An Ethernet frame from the gateway to the balancer carrying `parts`.
fn from_gateway(parts: &[&[u8]]) -> Vec<u8> {
    let mut frame = OUR_MAC.to_vec();
    frame.extend_from_slice(&GW_MAC);
    frame.extend_from_slice(&[0x08, 0x00]);
    for p in parts {
        frame.extend_from_slice(p);
    }
    frame
}

/// A TCP SYN (`proto` 6) or an 8-byte UDP datagram (17) from 192.0.2.7:`sport` to
/// `vip`:`dport`, through the gateway.
fn opening(proto: u8, vip: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let l4_len = if proto == 6 { 20 } else { 8 };
    let mut ip = vec![0u8; 20 + l4_len];
    {
        let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_total_len((20 + l4_len) as u16);
        p.set_hop_limit(60);
        p.set_next_header(IpProtocol::from(proto));
        p.set_src_addr(Ipv4Addr::new(192, 0, 2, 7));
        p.set_dst_addr(vip);
        p.fill_checksum();
    }
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        ip[32] = 0x50;
        ip[33] = 0x02;
    } else {
        ip[24..26].copy_from_slice(&8u16.to_be_bytes());
    }
    from_gateway(&[&ip])
}

/// Send `frame`; the verdict and the buffer after it.
fn send(f: &mut Forwarder, frame: &[u8], now: Instant) -> (Verdict, Vec<u8>) {
    let (mut buf, len) = buffer(frame);
    let v = f.process(&mut buf, HEAD, len, now);
    (v, buf)
}

/// The destination MAC of a forwarded frame.
fn forwarded_to(v: Verdict, buf: &[u8]) -> [u8; 6] {
    let Verdict::Forward { head, .. } = v else {
        panic!("not forwarded: {v:?}");
    };
    buf[head..head + 6].try_into().unwrap()
}

/// ICMP "fragmentation needed" (next-hop MTU 1400) from the router 198.51.100.1 to the VIP
/// 10.77.0.100, quoting the backend's reply 10.77.0.100:80 -> 192.0.2.7:40001 (TCP, DF).
const FRAG_NEEDED_TCP: [u8; 56] = [
    0x45, 0x00, 0x00, 0x38, // outer: total 56
    0x00, 0x07, 0x00, 0x00, // ident 7
    0x40, 0x01, 0x45, 0xd9, // TTL 64, ICMP, checksum
    0xc6, 0x33, 0x64, 0x01, // from the router 198.51.100.1
    0x0a, 0x4d, 0x00, 0x64, // to the VIP 10.77.0.100
    0x03, 0x04, 0x4a, 0xf2, // destination unreachable, fragmentation needed, checksum
    0x00, 0x00, 0x05, 0x78, // unused, next-hop MTU 1400
    0x45, 0x00, 0x05, 0xdc, // quoted: total 1500
    0x0a, 0xbc, 0x40, 0x00, // ident, DF
    0x3f, 0x06, 0x5e, 0xa8, // TTL 63, TCP, checksum
    0x0a, 0x4d, 0x00, 0x64, // from the VIP
    0xc0, 0x00, 0x02, 0x07, // to the client 192.0.2.7
    0x00, 0x50, 0x9c, 0x41, // ports 80 -> 40001
    0x00, 0x00, 0x10, 0x00, // sequence number
];

/// ICMP "time exceeded" from the router to the VIP 10.77.0.101, quoting the backend's UDP
/// reply 10.77.0.101:53 -> 192.0.2.7:5353.
const TIME_EXCEEDED_UDP: [u8; 56] = [
    0x45, 0x00, 0x00, 0x38, // outer: total 56
    0x00, 0x08, 0x00, 0x00, // ident 8
    0x40, 0x01, 0x45, 0xd7, // TTL 64, ICMP, checksum
    0xc6, 0x33, 0x64, 0x01, // from the router 198.51.100.1
    0x0a, 0x4d, 0x00, 0x65, // to the VIP 10.77.0.101
    0x0b, 0x00, 0xcd, 0x5d, // time exceeded in transit, checksum
    0x00, 0x00, 0x00, 0x00, // unused
    0x45, 0x00, 0x00, 0x64, // quoted: total 100
    0x0d, 0xef, 0x00, 0x00, // ident
    0x01, 0x11, 0xde, 0xe1, // TTL 1, UDP, checksum
    0x0a, 0x4d, 0x00, 0x65, // from the VIP
    0xc0, 0x00, 0x02, 0x07, // to the client
    0x00, 0x35, 0x14, 0xe9, // ports 53 -> 5353
    0x00, 0x50, 0x12, 0x34, // length 80, checksum
];

/// An ICMP message to a VIP as given, with its ICMP checksum (at 22..24 of the IP packet)
/// recomputed: for the variants of the frames above.
fn with_icmp_checksum(mut packet: Vec<u8>) -> Vec<u8> {
    packet[22..24].fill(0);
    let mut sum: u32 = packet[20..]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    packet[22..24].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let total = packet.len() as u16;
    packet[2..4].copy_from_slice(&total.to_be_bytes());
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.fill_checksum();
    packet
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 101);

#[test]
fn an_error_quoting_tcp_goes_to_the_flows_backend_with_only_the_macs_changed() {
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Rr));
    // Round robin: the flow from port 40000 goes to be0, the one from 40001 to be1.
    for (sport, to) in [(40000, BE0_MAC), (40001, BE1_MAC)] {
        let (v, buf) = send(&mut f, &opening(6, VIP, sport, 80), Instant::ZERO);
        assert_eq!(forwarded_to(v, &buf), to);
    }
    let flows = f.flow_count();
    let frame = from_gateway(&[&FRAG_NEEDED_TCP]);
    let (v, buf) = send(&mut f, &frame, Instant::from_secs(1));
    let mut expected = BE1_MAC.to_vec();
    expected.extend_from_slice(&OUR_MAC);
    expected.extend_from_slice(&frame[12..]);
    assert_eq!(
        v,
        Verdict::Forward {
            head: HEAD,
            len: frame.len()
        }
    );
    assert_eq!(buf[HEAD..HEAD + frame.len()], expected[..]);
    assert_eq!(f.counters().icmp_forwarded, 1);
    assert_eq!(f.flow_count(), flows);
}

#[test]
fn an_error_quoting_udp_goes_to_the_flows_backend() {
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Rr));
    let (v, buf) = send(&mut f, &opening(17, DNS, 5353, 53), Instant::ZERO);
    let backend = forwarded_to(v, &buf);
    let frame = from_gateway(&[&TIME_EXCEEDED_UDP]);
    let (v, buf) = send(&mut f, &frame, Instant::ZERO);
    assert_eq!(forwarded_to(v, &buf), backend);
    assert_eq!(buf[HEAD + 12..HEAD + frame.len()], frame[12..]);
    assert_eq!(f.counters().icmp_forwarded, 1);
}

#[test]
fn an_error_of_an_unknown_flow_follows_a_consistent_hash_and_creates_nothing() {
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Rr));
    let (v, buf) = send(&mut f, &from_gateway(&[&TIME_EXCEEDED_UDP]), Instant::ZERO);
    let chosen = forwarded_to(v, &buf);
    assert_eq!(f.flow_count(), 0, "an error creates no flow");
    // The flow's first packet, on this balancer or another, goes where the error went.
    for mut g in [f.clone(), ready(&lab(Mode::DsrL2, Scheduler::Rr))] {
        let (v, buf) = send(&mut g, &opening(17, DNS, 5353, 53), Instant::ZERO);
        assert_eq!(forwarded_to(v, &buf), chosen);
    }
}

#[test]
fn an_error_of_an_unknown_flow_of_a_vip_without_a_consistent_hash_is_dropped() {
    for scheduler in [Scheduler::Rr, Scheduler::Wrr, Scheduler::Lc, Scheduler::Wlc] {
        let mut f = ready(&lab(Mode::DsrL2, scheduler));
        let (v, _) = send(&mut f, &from_gateway(&[&FRAG_NEEDED_TCP]), Instant::ZERO);
        assert_eq!(v, Verdict::Drop(DropReason::IcmpNoFlow));
        assert_eq!(f.counters().drop_count(DropReason::IcmpNoFlow), 1);
        assert_eq!(f.counters().icmp_forwarded, 0);
    }
    // Maglev on the same VIP: forwarded.
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Maglev));
    let (v, _) = send(&mut f, &from_gateway(&[&FRAG_NEEDED_TCP]), Instant::ZERO);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
}

#[test]
fn an_error_to_a_dsr_l3_vip_is_encapsulated_as_the_flows_packets_are() {
    let config = Config::builder()
        .vip(
            Vip::builder("web", "10.77.0.100", VipPort::One(80))
                .mode(Mode::DsrL3)
                .backend("be0", "10.77.0.21", 1)
                .build(),
        )
        .build();
    let mut f = ready(&config);
    let (v, _) = send(&mut f, &opening(6, VIP, 40001, 80), Instant::ZERO);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    let frame = from_gateway(&[&FRAG_NEEDED_TCP]);
    let (v, buf) = send(&mut f, &frame, Instant::ZERO);
    let mut expected = vec![
        0x02, 0x00, 0x0a, 0x4d, 0x00, 0x15, // to the backend 10.77.0.21
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, // from the balancer
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x4c, // outer: TOS copied, total 76
        0x00, 0x02, 0x00, 0x00, // the balancer's second ident, no DF (none inside)
        0x40, 0x04, 0x65, 0xfc, // TTL 64, IP-in-IP, checksum
        0x0a, 0x4d, 0x00, 0x02, // from the balancer 10.77.0.2
        0x0a, 0x4d, 0x00, 0x15, // to the backend
    ];
    expected.extend_from_slice(&FRAG_NEEDED_TCP);
    assert_eq!(
        v,
        Verdict::Forward {
            head: HEAD - 20,
            len: expected.len()
        }
    );
    assert_eq!(buf[HEAD - 20..HEAD - 20 + expected.len()], expected[..]);
    assert_eq!(f.counters().icmp_forwarded, 1);
}

#[test]
fn short_or_broken_quotes_and_quotes_of_no_vip_are_dropped_and_counted() {
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Maglev));
    let cases: [(Vec<u8>, DropReason); 6] = [
        // The quote ends 4 bytes into the TCP header: no destination port.
        (
            with_icmp_checksum(FRAG_NEEDED_TCP[..52].to_vec()),
            DropReason::IcmpMalformed,
        ),
        // Not even an IPv4 header.
        (
            with_icmp_checksum(FRAG_NEEDED_TCP[..40].to_vec()),
            DropReason::IcmpMalformed,
        ),
        // An IPv6 version nibble.
        (
            with_icmp_checksum({
                let mut p = FRAG_NEEDED_TCP.to_vec();
                p[28] = 0x65;
                p
            }),
            DropReason::IcmpMalformed,
        ),
        // A bad ICMP checksum.
        (
            {
                let mut p = FRAG_NEEDED_TCP.to_vec();
                p[23] ^= 1;
                p
            },
            DropReason::IcmpMalformed,
        ),
        // Quoting port 81, which no VIP has.
        (
            with_icmp_checksum({
                let mut p = FRAG_NEEDED_TCP.to_vec();
                p[49] = 81;
                p
            }),
            DropReason::IcmpNotVip,
        ),
        // Quoting ICMP (the balancer's own echo reply, say).
        (
            with_icmp_checksum({
                let mut p = FRAG_NEEDED_TCP.to_vec();
                p[37] = 1;
                p
            }),
            DropReason::IcmpNotVip,
        ),
    ];
    for (i, (packet, reason)) in cases.iter().enumerate() {
        let (v, _) = send(&mut f, &from_gateway(&[packet]), Instant::ZERO);
        assert_eq!(v, Verdict::Drop(*reason), "case {i}");
    }
    assert_eq!(f.counters().drop_count(DropReason::IcmpMalformed), 4);
    assert_eq!(f.counters().drop_count(DropReason::IcmpNotVip), 2);
    assert_eq!(f.counters().icmp_forwarded, 0);
    // The same error to an address that is no VIP's is not ours at all.
    let mut p = FRAG_NEEDED_TCP.to_vec();
    p[19] = 0x63;
    let (v, _) = send(
        &mut f,
        &from_gateway(&[&with_icmp_checksum(p)]),
        Instant::ZERO,
    );
    assert_eq!(v, Verdict::Drop(DropReason::NotVip));
}

/// An echo request from the client 192.0.2.7 (through the gateway) to the VIP 10.77.0.100:
/// identifier 0x1234, sequence 1, data "abcdefgh".
const ECHO_REQUEST: [u8; 36] = [
    0x45, 0x00, 0x00, 0x24, // total 36
    0x42, 0x42, 0x40, 0x00, // ident, DF
    0x40, 0x01, 0x2b, 0xdf, // TTL 64, ICMP, checksum
    0xc0, 0x00, 0x02, 0x07, // from the client
    0x0a, 0x4d, 0x00, 0x64, // to the VIP
    0x08, 0x00, 0x54, 0x35, // echo request, checksum
    0x12, 0x34, 0x00, 0x01, // identifier, sequence
    0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, // "abcdefgh"
];

#[test]
fn an_echo_request_to_a_vip_is_answered_from_the_vip() {
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Rr));
    let (v, buf) = send(&mut f, &from_gateway(&[&ECHO_REQUEST]), Instant::ZERO);
    let expected: [u8; 50] = [
        0x02, 0x00, 0x0a, 0x4d, 0x00, 0x01, // back to the gateway
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, // from the balancer
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x24, // total 36
        0x00, 0x01, 0x00, 0x00, // the balancer's first ident, no flags
        0x40, 0x01, 0xae, 0x20, // TTL 64, ICMP, checksum
        0x0a, 0x4d, 0x00, 0x64, // from the VIP
        0xc0, 0x00, 0x02, 0x07, // to the client
        0x00, 0x00, 0x5c, 0x35, // echo reply, checksum
        0x12, 0x34, 0x00, 0x01, // identifier, sequence
        0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, // the same data
    ];
    assert_eq!(
        v,
        Verdict::Reply {
            head: HEAD,
            len: 50
        }
    );
    assert_eq!(buf[HEAD..HEAD + 50], expected[..]);
    assert_eq!(f.counters().icmp_echo_replies, 1);
    // To a UDP VIP's address as well; an echo reply to a VIP is not answered.
    let mut to_dns = ECHO_REQUEST.to_vec();
    to_dns[19] = 0x65;
    let (v, _) = send(
        &mut f,
        &from_gateway(&[&with_icmp_checksum(to_dns)]),
        Instant::ZERO,
    );
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    let mut reply = ECHO_REQUEST.to_vec();
    reply[20] = 0;
    let (v, _) = send(
        &mut f,
        &from_gateway(&[&with_icmp_checksum(reply)]),
        Instant::ZERO,
    );
    assert_eq!(v, Verdict::Drop(DropReason::IcmpUnsupported));
}

#[test]
fn an_echo_request_with_ip_options_is_answered_without_them() {
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Rr));
    // The request with a 4-byte option (NOP x4) after its fixed header.
    let mut request = ECHO_REQUEST[..20].to_vec();
    request[0] = 0x46;
    request.extend_from_slice(&[1, 1, 1, 1]);
    request.extend_from_slice(&ECHO_REQUEST[20..]);
    let request = with_icmp_checksum_at(request, 24);
    let (v, buf) = send(&mut f, &from_gateway(&[&request]), Instant::ZERO);
    assert_eq!(
        v,
        Verdict::Reply {
            head: HEAD + 4,
            len: 50
        }
    );
    let reply = &buf[HEAD + 4..HEAD + 54];
    assert_eq!(reply[14], 0x45);
    assert_eq!(reply[34..38], [0x00, 0x00, 0x5c, 0x35]);
    assert_eq!(reply[38..], ECHO_REQUEST[24..]);
}

/// As [`with_icmp_checksum`] for a header of `ihl` bytes (only the IP checksum is redone;
/// the ICMP message is unchanged).
fn with_icmp_checksum_at(mut packet: Vec<u8>, ihl: usize) -> Vec<u8> {
    let total = packet.len() as u16;
    packet[2..4].copy_from_slice(&total.to_be_bytes());
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..ihl]);
    ip.fill_checksum();
    packet
}

#[test]
fn echo_replies_are_rate_limited() {
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Rr));
    let ping = from_gateway(&[&ECHO_REQUEST]);
    let t = Instant::from_secs(5);
    for i in 0..ICMP_BURST {
        let (v, _) = send(&mut f, &ping, t);
        assert!(matches!(v, Verdict::Reply { .. }), "ping {i}: {v:?}");
    }
    let (v, _) = send(&mut f, &ping, t);
    assert_eq!(v, Verdict::Drop(DropReason::IcmpRateLimited));
    // One token every 10 ms (100 a second).
    let (v, _) = send(&mut f, &ping, t.plus_millis(9));
    assert_eq!(v, Verdict::Drop(DropReason::IcmpRateLimited));
    let (v, _) = send(&mut f, &ping, t.plus_millis(10));
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    let (v, _) = send(&mut f, &ping, t.plus_millis(10));
    assert_eq!(v, Verdict::Drop(DropReason::IcmpRateLimited));
    assert_eq!(f.counters().drop_count(DropReason::IcmpRateLimited), 3);
    assert_eq!(f.counters().icmp_echo_replies, ICMP_BURST + 1);
    // Fragmentation needed spends the same bucket.
    let mut c = lab(Mode::DsrL3, Scheduler::Rr);
    c.interface.mtu = 100;
    let mut big = opening(6, VIP, 40000, 80);
    big.resize(14 + 100, 0);
    big[14 + 2..14 + 4].copy_from_slice(&100u16.to_be_bytes());
    big[14 + 6] = 0x40;
    let mut ip = Ipv4Packet::new_unchecked(&mut big[14..34]);
    ip.fill_checksum();
    let mut f = ready(&c);
    for _ in 0..ICMP_BURST {
        let (v, _) = send(&mut f, &big, t);
        assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    }
    let (v, _) = send(&mut f, &big, t);
    assert_eq!(v, Verdict::Drop(DropReason::IcmpRateLimited));
    let (v, _) = send(&mut f, &ping, t);
    assert_eq!(v, Verdict::Drop(DropReason::IcmpRateLimited));
    assert_eq!(f.counters().icmp_frag_needed, ICMP_BURST);
}

#[test]
fn no_icmp_answers_a_bad_source_or_a_fragment() {
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Rr));
    let from = |src: [u8; 4]| {
        let mut p = ECHO_REQUEST.to_vec();
        p[12..16].copy_from_slice(&src);
        from_gateway(&[&with_icmp_checksum(p)])
    };
    for src in [
        [255, 255, 255, 255], // the limited broadcast
        [10, 77, 0, 255],     // the subnet's broadcast
        [224, 0, 0, 1],       // multicast
        [0, 0, 0, 0],         // zero
        [127, 0, 0, 1],       // loopback
        [10, 77, 0, 2],       // the balancer's own address
        [10, 77, 0, 100],     // a VIP
    ] {
        let (v, _) = send(&mut f, &from(src), Instant::ZERO);
        assert_eq!(v, Verdict::Drop(DropReason::IcmpRefused), "{src:?}");
    }
    // From a multicast MAC.
    let mut frame = from_gateway(&[&ECHO_REQUEST]);
    frame[6] = 0x03;
    let (v, _) = send(&mut f, &frame, Instant::ZERO);
    assert_eq!(v, Verdict::Drop(DropReason::IcmpRefused));
    // A fragmented echo request (first and later fragment).
    for flags in [[0x20, 0x00], [0x00, 0x02]] {
        let mut p = ECHO_REQUEST.to_vec();
        p[6..8].copy_from_slice(&flags);
        let (v, _) = send(
            &mut f,
            &from_gateway(&[&with_icmp_checksum(p)]),
            Instant::ZERO,
        );
        assert_eq!(v, Verdict::Drop(DropReason::IcmpRefused), "{flags:?}");
    }
    assert_eq!(f.counters().icmp_echo_replies, 0);
    assert_eq!(f.counters().drop_count(DropReason::IcmpRefused), 10);
    // A later TCP fragment too big for dsr-l3 with DF gets no "fragmentation needed".
    let mut c = lab(Mode::DsrL3, Scheduler::Rr);
    c.interface.mtu = 100;
    let mut f = ready(&c);
    let mut first = opening(6, VIP, 40000, 80);
    first[14 + 6] = 0x20;
    let mut ip = Ipv4Packet::new_unchecked(&mut first[14..34]);
    ip.fill_checksum();
    let (v, _) = send(&mut f, &first, Instant::ZERO);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    let mut later = opening(6, VIP, 40000, 80);
    later.resize(14 + 100, 0);
    later[14 + 2..14 + 4].copy_from_slice(&100u16.to_be_bytes());
    later[14 + 6..14 + 8].copy_from_slice(&[0x40, 0x10]);
    let mut ip = Ipv4Packet::new_unchecked(&mut later[14..34]);
    ip.fill_checksum();
    let (v, _) = send(&mut f, &later, Instant::ZERO);
    assert_eq!(v, Verdict::Drop(DropReason::IcmpRefused));
    assert_eq!(f.counters().icmp_frag_needed, 0);
}

/// ICMP frames for the fuzz seed corpora (see `write_fuzz_seeds` in the forwarder's tests):
/// errors quoting TCP and UDP of the fuzz config's VIP 10.77.0.100, a short quote, and an
/// echo request, so that fuzzing starts inside the ICMP path rather than having to find it.
pub(in crate::forwarder) fn fuzz_seed_frames() -> Vec<Vec<u8>> {
    let mut udp = TIME_EXCEEDED_UDP.to_vec();
    udp[19] = 0x64;
    udp[43] = 0x64;
    let mut short = FRAG_NEEDED_TCP.to_vec();
    short.truncate(20 + 8 + 20 + 4);
    [
        FRAG_NEEDED_TCP.to_vec(),
        with_icmp_checksum(udp),
        with_icmp_checksum(short),
        ECHO_REQUEST.to_vec(),
    ]
    .iter()
    .map(|ip| from_gateway(&[ip]))
    .collect()
}

#[test]
fn the_fuzz_seeds_reach_the_icmp_path() {
    let mut f = ready(&lab(Mode::DsrL2, Scheduler::Maglev));
    let verdicts: Vec<Verdict> = fuzz_seed_frames()
        .iter()
        .map(|frame| send(&mut f, frame, Instant::ZERO).0)
        .collect();
    assert!(
        matches!(verdicts[0], Verdict::Forward { .. }),
        "{verdicts:?}"
    );
    // The fuzz config has a UDP VIP on 10.77.0.100; this lab's UDP VIP is .101.
    assert_eq!(verdicts[1], Verdict::Drop(DropReason::IcmpNotVip));
    assert_eq!(verdicts[2], Verdict::Drop(DropReason::IcmpMalformed));
    assert!(matches!(verdicts[3], Verdict::Reply { .. }), "{verdicts:?}");
}
