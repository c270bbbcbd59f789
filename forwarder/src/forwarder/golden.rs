//! Golden frames: input and expected output written out byte by byte (checksums computed by
//! hand), not built by the test helpers or parsed back with smoltcp, so that a mistake made the
//! same way by the forwarder's writer and the tests' parser is caught.

use super::tests::{config, ready, CLIENT_MAC, HEAD, OUR_MAC};
use super::*;
use crate::config::{Mode, Scheduler};

/// `frame` in a fresh 2 KiB buffer at [`HEAD`].
fn buffer(frame: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    buf[HEAD..HEAD + frame.len()].copy_from_slice(frame);
    buf
}

/// The client's Ethernet header to the balancer (02:cc:00:00:00:09 -> 02:5e:00:00:00:01).
const ETH_IN: [u8; 14] = [
    0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, // destination: the balancer
    0x02, 0xcc, 0x00, 0x00, 0x00, 0x09, // source: the client
    0x08, 0x00, // IPv4
];

#[test]
fn golden_ipip_encapsulation() {
    // A TCP SYN from 192.0.2.7:40000 to the VIP 10.77.0.100:80, DSCP 10, DF, TTL 60.
    let inner: [u8; 40] = [
        0x45, 0x28, 0x00, 0x28, // v4, IHL 5, TOS 0x28, total 40
        0x12, 0x34, 0x40, 0x00, // ident 0x1234, DF, offset 0
        0x3c, 0x06, 0x5f, 0xbc, // TTL 60, TCP, checksum
        0xc0, 0x00, 0x02, 0x07, // 192.0.2.7
        0x0a, 0x4d, 0x00, 0x64, // 10.77.0.100
        0x9c, 0x40, 0x00, 0x50, // ports 40000 -> 80
        0x00, 0x00, 0x00, 0x01, // seq 1
        0x00, 0x00, 0x00, 0x00, // ack 0
        0x50, 0x02, 0xff, 0xff, // data offset 5, SYN, window
        0x00, 0x00, 0x00, 0x00, // checksum (not checked), urgent
    ];
    let mut frame = ETH_IN.to_vec();
    frame.extend_from_slice(&inner);
    let mut expected = vec![
        0x02, 0x00, 0x0a, 0x4d, 0x00, 0x15, // the backend 10.77.0.21 (on-link)
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, // the balancer
        0x08, 0x00, // IPv4
        0x45, 0x28, 0x00, 0x3c, // outer: TOS copied, total 60
        0x00, 0x01, 0x40, 0x00, // the balancer's first ident, DF copied
        0x40, 0x04, 0x25, 0xe5, // TTL 64, IP-in-IP, checksum
        0x0a, 0x4d, 0x00, 0x02, // from the balancer 10.77.0.2
        0x0a, 0x4d, 0x00, 0x15, // to the backend 10.77.0.21
    ];
    expected.extend_from_slice(&inner);

    let mut f = ready(&config(Mode::DsrL3, Scheduler::Rr, &[1]));
    let mut buf = buffer(&frame);
    let v = f.process(&mut buf, HEAD, frame.len(), Instant::ZERO);
    assert_eq!(
        v,
        Verdict::Forward {
            head: HEAD - 20,
            len: frame.len() + 20
        }
    );
    assert_eq!(buf[HEAD - 20..HEAD + frame.len()], expected[..]);
}

#[test]
fn golden_fragmentation_needed() {
    // A 100-byte TCP packet with DF to the VIP, which encapsulated exceeds an MTU of 100.
    let header: [u8; 28] = [
        0x45, 0x00, 0x00, 0x64, // total 100
        0x12, 0x34, 0x40, 0x00, // ident 0x1234, DF
        0x3c, 0x06, 0x5f, 0xa8, // TTL 60, TCP, checksum
        0xc0, 0x00, 0x02, 0x07, // 192.0.2.7
        0x0a, 0x4d, 0x00, 0x64, // 10.77.0.100
        0x9c, 0x40, 0x00, 0x50, // ports 40000 -> 80
        0x00, 0x00, 0x00, 0x01, // seq 1
    ];
    let mut frame = ETH_IN.to_vec();
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    frame.resize(14 + 100, 0xab);
    let mut expected = vec![
        0x02, 0xcc, 0x00, 0x00, 0x00, 0x09, // back to the client's MAC
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, // from the balancer
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x38, // total 20 + 8 + 28
        0x00, 0x01, 0x00, 0x00, // the balancer's first ident, no flags
        0x40, 0x01, 0xae, 0x6e, // TTL 64, ICMP, checksum
        0x0a, 0x4d, 0x00, 0x02, // from the balancer
        0xc0, 0x00, 0x02, 0x07, // to the client
        0x03, 0x04, 0x60, 0x1a, // destination unreachable, fragmentation needed, checksum
        0x00, 0x00, 0x00, 0x50, // unused, next-hop MTU 80
    ];
    expected.extend_from_slice(&header);

    let mut c = config(Mode::DsrL3, Scheduler::Rr, &[1]);
    c.interface.mtu = 100;
    let mut f = ready(&c);
    let mut buf = buffer(&frame);
    let v = f.process(&mut buf, HEAD, frame.len(), Instant::ZERO);
    assert_eq!(
        v,
        Verdict::Reply {
            head: HEAD - 28,
            len: expected.len()
        }
    );
    assert_eq!(buf[HEAD - 28..HEAD - 28 + expected.len()], expected[..]);
}

#[test]
fn golden_arp_reply() {
    // Who has 10.77.0.2 (the balancer)? Tell 10.77.0.50 at 02:00:0a:4d:00:32.
    let mut request = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
        0x02, 0x00, 0x0a, 0x4d, 0x00, 0x32, // the asker
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // Ethernet, IPv4, lengths 6 and 4
        0x00, 0x01, // request
        0x02, 0x00, 0x0a, 0x4d, 0x00, 0x32, 0x0a, 0x4d, 0x00, 0x32, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x4d, 0x00, 0x02, // target
    ];
    request.resize(60, 0);
    let mut expected = vec![
        0x02, 0x00, 0x0a, 0x4d, 0x00, 0x32, // to the asker
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, // from the balancer
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // Ethernet, IPv4, lengths 6 and 4
        0x00, 0x02, // reply
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x4d, 0x00, 0x02, // 10.77.0.2 is here
        0x02, 0x00, 0x0a, 0x4d, 0x00, 0x32, 0x0a, 0x4d, 0x00, 0x32, // to the asker
    ];
    expected.resize(60, 0);

    let mut f = ready(&config(Mode::DsrL2, Scheduler::Rr, &[1]));
    let mut buf = buffer(&request);
    let v = f.process(&mut buf, HEAD, request.len(), Instant::ZERO);
    assert_eq!(
        v,
        Verdict::Reply {
            head: HEAD,
            len: 60
        }
    );
    assert_eq!(buf[HEAD..HEAD + 60], expected[..]);
    // The local stack must learn the asker, which talks to the balancer next.
    assert_eq!(
        f.take_neighbour_hint(),
        Some((
            Ipv4Addr::new(10, 77, 0, 50),
            [0x02, 0x00, 0x0a, 0x4d, 0x00, 0x32]
        ))
    );
    assert_eq!(f.take_neighbour_hint(), None);
}

/// The frames the kernel sends to announce an address and to tell its local stack about a
/// neighbour, byte by byte.
#[test]
fn golden_gratuitous_arp_and_neighbour_hint() {
    let mut garp = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, // the balancer
        0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // ARP request
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x4d, 0x00, 0x64, // 10.77.0.100 is here
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x4d, 0x00, 0x64, // target: itself
    ];
    garp.resize(60, 0);
    assert_eq!(
        arp::gratuitous(OUR_MAC, Ipv4Addr::new(10, 77, 0, 100))[..],
        garp[..]
    );
    let mut hint = vec![
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, // to the balancer
        0x02, 0xcc, 0x00, 0x00, 0x00, 0x09, // from the peer
        0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // ARP reply
        0x02, 0xcc, 0x00, 0x00, 0x00, 0x09, 0x0a, 0x4d, 0x00, 0x09, // 10.77.0.9 is here
        0x02, 0x5e, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x4d, 0x00, 0x02, // to 10.77.0.2
    ];
    hint.resize(60, 0);
    let own = Ipv4Addr::new(10, 77, 0, 2);
    let peer = Ipv4Addr::new(10, 77, 0, 9);
    assert_eq!(
        arp::neighbour_hint(OUR_MAC, own, peer, CLIENT_MAC)[..],
        hint[..]
    );
    assert!(arp::is_arp_reply(&hint));
    assert!(!arp::is_arp_reply(&garp));
    assert!(!arp::is_arp_reply(&hint[..41]), "truncated");
    let mut not_arp = hint.clone();
    not_arp[12..14].copy_from_slice(&[0x08, 0x00]);
    assert!(!arp::is_arp_reply(&not_arp));
}
