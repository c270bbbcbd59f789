//! Byte-level tests of every rewrite and decision, on frames built here from literal fields and
//! parsed back with smoltcp's wire types.

use super::classify::ipv4_checksum_ok;
use super::*;
use crate::config::{Mode, Protocol, Scheduler, Vip, VipPort};
use alloc::string::ToString;
use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Address, Ipv4Packet,
};

pub(crate) const OUR_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 1];
pub(crate) const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 9];
pub(crate) const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub(crate) const GW: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub(crate) const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
pub(crate) const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
pub(crate) const HEAD: usize = 64;

/// The MAC the tests give a host: 02:00 followed by its address.
pub(crate) fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

pub(crate) fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 21 + i as u8)
}

/// The VIP `web` at [`VIP`]:80 (TCP) in `mode` with `scheduler`, backend `be{i}` at
/// [`backend_addr`]`(i)` with the `i`th of `weights`.
fn web(mode: Mode, scheduler: Scheduler, weights: &[u32]) -> Vip {
    let mut vip = Vip::builder("web", VIP, VipPort::One(80))
        .mode(mode)
        .scheduler(scheduler);
    for (i, &w) in weights.iter().enumerate() {
        vip = vip.backend(&alloc::format!("be{i}"), backend_addr(i), w);
    }
    vip.build()
}

/// The lab config (the balancer at [`OWN`]/24, the gateway [`GW`]) with [`web`] as its one VIP.
pub(crate) fn config(mode: Mode, scheduler: Scheduler, weights: &[u32]) -> Config {
    Config::builder().vip(web(mode, scheduler, weights)).build()
}

/// An ARP frame in a fresh buffer.
pub(crate) fn arp_frame(
    op: ArpOperation,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; 2048];
    let len = 60;
    let mut eth = EthernetFrame::new_unchecked(&mut buf[HEAD..HEAD + len]);
    eth.set_dst_addr(if op == ArpOperation::Request {
        EthernetAddress::BROADCAST
    } else {
        EthernetAddress(OUR_MAC)
    });
    eth.set_src_addr(EthernetAddress(sha));
    eth.set_ethertype(EthernetProtocol::Arp);
    let mut p = ArpPacket::new_unchecked(&mut buf[HEAD + 14..HEAD + 42]);
    p.set_hardware_type(ArpHardware::Ethernet);
    p.set_protocol_type(EthernetProtocol::Ipv4);
    p.set_hardware_len(6);
    p.set_protocol_len(4);
    p.set_operation(op);
    p.set_source_hardware_addr(&sha);
    p.set_source_protocol_addr(&spa.octets());
    p.set_target_hardware_addr(&tha);
    p.set_target_protocol_addr(&tpa.octets());
    (buf, len)
}

/// Tell `f` the MAC of every address in `hosts` with ARP replies.
pub(crate) fn resolve(f: &mut Forwarder, hosts: &[Ipv4Addr]) {
    for &h in hosts {
        let (mut buf, len) = arp_frame(ArpOperation::Reply, mac_of(h), h, OUR_MAC, OWN);
        assert_eq!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Local
        );
    }
}

/// What goes into an IPv4 test packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pkt {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (SYN 0x02, ACK 0x10, FIN 0x01, RST 0x04).
    pub flags: u8,
    pub payload: usize,
    pub ttl: u8,
    pub df: bool,
    pub ident: u16,
    /// (more fragments, offset in 8-byte units); a later fragment has no L4 header.
    pub frag: (bool, u16),
}

impl Pkt {
    pub(crate) fn tcp(sport: u16, flags: u8) -> Pkt {
        Pkt {
            src: CLIENT,
            dst: VIP,
            proto: 6,
            sport,
            dport: 80,
            flags,
            payload: 0,
            ttl: 60,
            df: true,
            ident: 0x1234,
            frag: (false, 0),
        }
    }

    pub(crate) fn udp(sport: u16, dport: u16) -> Pkt {
        Pkt {
            proto: 17,
            dport,
            flags: 0,
            ..Pkt::tcp(sport, 0)
        }
    }

    /// The frame in a fresh 2 KiB buffer at [`HEAD`]; returns (buffer, frame length).
    pub(crate) fn build(&self) -> (Vec<u8>, usize) {
        let mut buf = vec![0u8; 2048];
        let l4_hdr = if self.frag.1 != 0 {
            0
        } else if self.proto == 6 {
            20
        } else {
            8
        };
        let total = 20 + l4_hdr + self.payload;
        let len = 14 + total;
        let frame = &mut buf[HEAD..HEAD + len];
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.set_dst_addr(EthernetAddress(OUR_MAC));
        eth.set_src_addr(EthernetAddress(CLIENT_MAC));
        eth.set_ethertype(EthernetProtocol::Ipv4);
        for (i, b) in frame[14 + 20..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7).wrapping_add(3);
        }
        let l4 = &mut frame[34..34 + l4_hdr];
        if l4_hdr > 0 {
            l4[0..2].copy_from_slice(&self.sport.to_be_bytes());
            l4[2..4].copy_from_slice(&self.dport.to_be_bytes());
            if self.proto == 6 {
                l4[12] = 5 << 4;
                l4[13] = self.flags;
            } else {
                l4[4..6].copy_from_slice(&((8 + self.payload) as u16).to_be_bytes());
            }
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..34]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_dscp(10);
        ip.set_ecn(1);
        ip.set_total_len(total as u16);
        ip.set_ident(self.ident);
        ip.clear_flags();
        ip.set_dont_frag(self.df);
        ip.set_more_frags(self.frag.0);
        ip.set_frag_offset(self.frag.1 * 8);
        ip.set_hop_limit(self.ttl);
        ip.set_next_header(IpProtocol::from(self.proto));
        ip.set_src_addr(self.src);
        ip.set_dst_addr(self.dst);
        ip.fill_checksum();
        (buf, len)
    }
}

/// A forwarder on `config` with every backend and the gateway resolved.
pub(crate) fn ready(config: &Config) -> Forwarder {
    let mut f = Forwarder::new(config, OUR_MAC, 1 << 16);
    let mut hosts: Vec<Ipv4Addr> = config
        .vips
        .iter()
        .flat_map(|v| v.backends.iter())
        .filter_map(|b| match b.address {
            core::net::IpAddr::V4(a) => Some(a),
            core::net::IpAddr::V6(_) => None,
        })
        .collect();
    hosts.push(GW);
    resolve(&mut f, &hosts);
    f
}

/// Send `p` and return the backend index its output went to (by destination MAC), or the
/// verdict when it was not forwarded.
pub(crate) fn send(f: &mut Forwarder, p: &Pkt, now: Instant) -> Result<usize, Verdict> {
    let (mut buf, len) = p.build();
    match f.process(&mut buf, HEAD, len, now) {
        Verdict::Forward { head, .. } => {
            let eth = EthernetFrame::new_unchecked(&buf[head..head + 14]);
            let mac = eth.dst_addr().0;
            let ip = Ipv4Addr::new(mac[2], mac[3], mac[4], mac[5]);
            Ok(usize::from(ip.octets()[3] - 21))
        }
        v => Err(v),
    }
}

#[test]
fn l2_rewrites_only_the_ethernet_addresses() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Rr, &[1, 1]));
    let mut p = Pkt::tcp(40000, 0x02);
    p.payload = 100;
    let (mut buf, len) = p.build();
    let original = buf.clone();
    let v = f.process(&mut buf, HEAD, len, Instant::ZERO);
    assert_eq!(v, Verdict::Forward { head: HEAD, len });
    let eth = EthernetFrame::new_checked(&buf[HEAD..HEAD + len]).unwrap();
    assert_eq!(eth.dst_addr().0, mac_of(backend_addr(0)));
    assert_eq!(eth.src_addr().0, OUR_MAC);
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    assert_eq!(buf[HEAD + 12..HEAD + len], original[HEAD + 12..HEAD + len]);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.hop_limit(), 60, "L2 does not touch the TTL");
    assert!(ip.verify_checksum());
    let s = f.stats();
    assert_eq!(s[0].packets, 1);
    assert_eq!(s[0].bytes, (len - 14) as u64);
    assert_eq!(s[0].backends[0].packets, 1);
    assert_eq!(s[0].flows_active, 1);
    assert_eq!(f.counters().flows_created, 1);
}

#[test]
fn l3_encapsulates_in_place_with_a_correct_outer_header() {
    let mut f = ready(&config(Mode::DsrL3, Scheduler::Rr, &[1]));
    let mut p = Pkt::tcp(40000, 0x10);
    p.payload = 300;
    let (mut buf, len) = p.build();
    let inner = buf[HEAD + 14..HEAD + len].to_vec();
    let v = f.process(&mut buf, HEAD, len, Instant::ZERO);
    assert_eq!(
        v,
        Verdict::Forward {
            head: HEAD - 20,
            len: len + 20
        }
    );
    let out = &buf[HEAD - 20..HEAD + len];
    let eth = EthernetFrame::new_checked(out).unwrap();
    assert_eq!(
        eth.dst_addr().0,
        mac_of(backend_addr(0)),
        "on-link backend is the next hop"
    );
    assert_eq!(eth.src_addr().0, OUR_MAC);
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    let outer = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(outer.version(), 4);
    assert_eq!(outer.header_len(), 20);
    assert_eq!(usize::from(outer.total_len()), inner.len() + 20);
    assert_eq!(u8::from(outer.next_header()), 4);
    assert_eq!(outer.hop_limit(), 64);
    assert!(outer.dont_frag(), "DF copied from the inner header");
    assert!(!outer.more_frags());
    assert_eq!(outer.frag_offset(), 0);
    assert_eq!(outer.dscp(), 10);
    assert_eq!(outer.ecn(), 1);
    assert_eq!(outer.src_addr(), OWN);
    assert_eq!(outer.dst_addr(), backend_addr(0));
    assert!(outer.verify_checksum());
    assert_eq!(
        outer.payload(),
        &inner[..],
        "inner packet byte-for-byte unchanged"
    );
}

#[test]
fn l3_off_link_backend_goes_through_the_gateway_and_df_is_copied_clear() {
    let mut c = config(Mode::DsrL3, Scheduler::Rr, &[1]);
    c.vips[0].backends[0].address = core::net::IpAddr::from(Ipv4Addr::new(172, 16, 5, 5));
    let mut f = ready(&c);
    let mut p = Pkt::tcp(1, 0x02);
    p.df = false;
    let (mut buf, len) = p.build();
    let Verdict::Forward { head, len } = f.process(&mut buf, HEAD, len, Instant::ZERO) else {
        panic!("not forwarded");
    };
    let eth = EthernetFrame::new_checked(&buf[head..head + len]).unwrap();
    assert_eq!(eth.dst_addr().0, mac_of(GW));
    let outer = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(outer.dst_addr(), Ipv4Address::new(172, 16, 5, 5));
    assert!(!outer.dont_frag());
}

#[test]
fn l3_too_big_with_df_answers_frag_needed() {
    let mut f = ready(&config(Mode::DsrL3, Scheduler::Rr, &[1]));
    let mut p = Pkt::tcp(40000, 0x10);
    p.payload = 1500 - 40; // inner total 1500: +20 exceeds the 1500 MTU
    let (mut buf, len) = p.build();
    let original_ip = buf[HEAD + 14..HEAD + 14 + 28].to_vec();
    let Verdict::Reply { head, len } = f.process(&mut buf, HEAD, len, Instant::ZERO) else {
        panic!("no reply");
    };
    let eth = EthernetFrame::new_checked(&buf[head..head + len]).unwrap();
    assert_eq!(eth.dst_addr().0, CLIENT_MAC);
    assert_eq!(eth.src_addr().0, OUR_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), OWN);
    assert_eq!(ip.dst_addr(), CLIENT);
    assert_eq!(ip.next_header(), IpProtocol::Icmp);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.msg_type(), Icmpv4Message::DstUnreachable);
    assert_eq!(
        Icmpv4DstUnreachable::from(icmp.msg_code()),
        Icmpv4DstUnreachable::FragRequired
    );
    let raw = ip.payload();
    assert_eq!(u16::from_be_bytes([raw[6], raw[7]]), 1480, "next-hop MTU");
    assert_eq!(
        &raw[8..],
        &original_ip[..],
        "quotes the IP header and 8 bytes"
    );
    assert_eq!(f.counters().icmp_frag_needed, 1);
    assert_eq!(f.counters().drop_count(DropReason::TooBig), 1);
}

/// Reassemble outer IPIP fragments into the inner packet.
pub(crate) fn reassemble(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut inner = Vec::new();
    let mut parts: Vec<(usize, Vec<u8>, bool)> = frames
        .iter()
        .map(|f| {
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(u8::from(ip.next_header()), 4);
            (
                usize::from(ip.frag_offset()),
                ip.payload().to_vec(),
                ip.more_frags(),
            )
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    for (off, data, _) in &parts {
        assert_eq!(*off, inner.len());
        inner.extend_from_slice(data);
    }
    assert!(!parts.last().unwrap().2);
    inner
}

#[test]
fn l3_too_big_without_df_fragments_the_outer_packet() {
    let mut f = ready(&config(Mode::DsrL3, Scheduler::Rr, &[1]));
    let mut p = Pkt::udp(5000, 80);
    f.apply_config(
        &{
            let mut c = config(Mode::DsrL3, Scheduler::Rr, &[1]);
            c.vips[0].protocol = Protocol::Udp;
            c
        },
        Instant::ZERO,
    );
    p.df = false;
    p.payload = 1500 - 28;
    let (mut buf, len) = p.build();
    let inner = buf[HEAD + 14..HEAD + len].to_vec();
    let Verdict::Forward { head, len } = f.process(&mut buf, HEAD, len, Instant::ZERO) else {
        panic!("not forwarded");
    };
    assert!(len <= 1514);
    let mut frames = vec![buf[head..head + len].to_vec()];
    f.poll(Instant::ZERO, &mut |fr| {
        if EthernetFrame::new_unchecked(fr).ethertype() == EthernetProtocol::Ipv4 {
            frames.push(fr.to_vec())
        }
    });
    assert_eq!(frames.len(), 2);
    for fr in &frames {
        assert_eq!(
            EthernetFrame::new_unchecked(&fr[..]).dst_addr().0,
            mac_of(backend_addr(0))
        );
        assert!(fr.len() - 14 <= 1500);
    }
    assert_eq!(reassemble(&frames), inner);
    assert_eq!(f.counters().fragmented, 1);
}

#[test]
fn arp_requests_for_own_address_and_vips_are_answered_in_place() {
    let mut f = Forwarder::new(&config(Mode::DsrL2, Scheduler::Rr, &[1]), OUR_MAC, 1024);
    let asker = Ipv4Addr::new(10, 77, 0, 50);
    for target in [OWN, VIP] {
        let (mut buf, len) = arp_frame(ArpOperation::Request, mac_of(asker), asker, [0; 6], target);
        assert_eq!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Reply { head: HEAD, len }
        );
        let eth = EthernetFrame::new_checked(&buf[HEAD..HEAD + len]).unwrap();
        assert_eq!(eth.dst_addr().0, mac_of(asker));
        assert_eq!(eth.src_addr().0, OUR_MAC);
        let arp = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(arp.operation(), ArpOperation::Reply);
        assert_eq!(arp.source_hardware_addr(), &OUR_MAC);
        assert_eq!(arp.source_protocol_addr(), &target.octets());
        assert_eq!(arp.target_hardware_addr(), &mac_of(asker));
        assert_eq!(arp.target_protocol_addr(), &asker.octets());
    }
    let (mut buf, len) = arp_frame(
        ArpOperation::Request,
        mac_of(asker),
        asker,
        [0; 6],
        Ipv4Addr::new(10, 77, 0, 99),
    );
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::NotForUs)
    );
    assert_eq!(f.counters().arp_replies, 2);
}

#[test]
fn unresolved_backend_asks_queues_and_releases() {
    let mut f = Forwarder::new(&config(Mode::DsrL2, Scheduler::Rr, &[1]), OUR_MAC, 1024);
    let mut requests = Vec::new();
    f.poll(Instant::ZERO, &mut |fr| requests.push(fr.to_vec()));
    assert_eq!(requests.len(), 1);
    let eth = EthernetFrame::new_checked(&requests[0][..]).unwrap();
    assert!(eth.dst_addr().is_broadcast());
    assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
    let arp = ArpPacket::new_checked(eth.payload()).unwrap();
    assert_eq!(arp.operation(), ArpOperation::Request);
    assert_eq!(arp.source_protocol_addr(), &OWN.octets());
    assert_eq!(arp.target_protocol_addr(), &backend_addr(0).octets());

    let (mut buf, len) = Pkt::tcp(1000, 0x02).build();
    let original = buf[HEAD..HEAD + len].to_vec();
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Queued
    );
    assert_eq!(f.pending_frames(), 1);
    // The sender of a request (a backend asking for us) is learned too.
    let be = backend_addr(0);
    let (mut buf, alen) = arp_frame(ArpOperation::Request, mac_of(be), be, [0; 6], OWN);
    assert!(matches!(
        f.process(&mut buf, HEAD, alen, Instant::ZERO),
        Verdict::Reply { .. }
    ));
    assert_eq!(f.neighbour(be), Some(mac_of(be)));
    let mut out = Vec::new();
    f.poll(Instant::from_millis(5), &mut |fr| out.push(fr.to_vec()));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0][..6], mac_of(be));
    assert_eq!(out[0][6..12], OUR_MAC);
    assert_eq!(out[0][12..], original[12..]);
    assert_eq!(f.pending_frames(), 0);
}

/// Each backend slot keeps a copy of its next hop's MAC: a new MAC learnt from ARP, a next hop
/// forgotten after its refresh went unanswered, and a config change (another next hop) all
/// reach the packets at once, in both modes.
#[test]
fn next_hop_changes_reach_forwarding_at_once() {
    for mode in [Mode::DsrL2, Mode::DsrL3] {
        let mut f = ready(&config(mode, Scheduler::Rr, &[1]));
        let be = backend_addr(0);
        let dst_mac = |f: &mut Forwarder, now: Instant| {
            let (mut buf, len) = Pkt::tcp(1000, 0x10).build();
            match f.process(&mut buf, HEAD, len, now) {
                Verdict::Forward { head, .. } => Ok(buf[head..head + 6].to_vec()),
                v => Err(v),
            }
        };
        assert_eq!(dst_mac(&mut f, Instant::ZERO), Ok(mac_of(be).to_vec()));
        // The backend moved to another NIC (once the locktime since it was learnt is over).
        let moved = [2, 9, 9, 9, 9, 9];
        let moved_at = Instant::from_millis(crate::neigh::LOCKTIME_MS);
        let (mut buf, len) = arp_frame(ArpOperation::Reply, moved, be, OUR_MAC, OWN);
        assert_eq!(f.process(&mut buf, HEAD, len, moved_at), Verdict::Local);
        assert_eq!(dst_mac(&mut f, moved_at), Ok(moved.to_vec()));
        assert_eq!(f.counters().neigh_changes, 1);
        // No answer to the refresh: forgotten after the grace period, frames wait for ARP.
        let late = moved_at.plus_millis(crate::neigh::REFRESH_MS + crate::neigh::STALE_GRACE_MS);
        f.poll(late, &mut |_| {});
        assert_eq!(f.neighbour(be), None);
        assert_eq!(dst_mac(&mut f, late), Err(Verdict::Queued));
        // Learnt again.
        let (mut buf, len) = arp_frame(ArpOperation::Reply, mac_of(be), be, OUR_MAC, OWN);
        assert_eq!(f.process(&mut buf, HEAD, len, late), Verdict::Local);
        assert_eq!(dst_mac(&mut f, late), Ok(mac_of(be).to_vec()));
        // The same backend off-link: its next hop is now the gateway (not a next hop before, so
        // unknown until it answers).
        let c = Config::builder()
            .address("10.77.0.2/28")
            .vip(web(mode, Scheduler::Rr, &[1]))
            .build();
        f.apply_config(&c, late);
        assert_eq!(dst_mac(&mut f, late), Err(Verdict::Queued));
        let (mut buf, len) = arp_frame(ArpOperation::Reply, mac_of(GW), GW, OUR_MAC, OWN);
        assert_eq!(f.process(&mut buf, HEAD, len, late), Verdict::Local);
        assert_eq!(dst_mac(&mut f, late), Ok(mac_of(GW).to_vec()));
    }
}

#[test]
fn queued_frames_time_out_and_a_full_queue_drops() {
    let mut f = Forwarder::new(&config(Mode::DsrL2, Scheduler::Rr, &[1]), OUR_MAC, 1024);
    for i in 0..crate::neigh::PENDING_MAX as u16 {
        let (mut buf, len) = Pkt::tcp(i, 0x02).build();
        assert_eq!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Queued
        );
    }
    let (mut buf, len) = Pkt::tcp(999, 0x02).build();
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::ArpQueueFull)
    );
    f.poll(Instant::from_secs(4), &mut |_| {});
    assert_eq!(
        f.counters().drop_count(DropReason::ArpTimeout),
        crate::neigh::PENDING_MAX as u64
    );
}

#[test]
fn malformed_frames_are_dropped_and_counted() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Rr, &[1]));
    let p = Pkt::tcp(1, 0x02);
    let mal = Verdict::Drop(DropReason::Malformed);
    // Truncated Ethernet, truncated IP.
    let (mut buf, len) = p.build();
    assert_eq!(f.process(&mut buf, HEAD, 10, Instant::ZERO), mal);
    assert_eq!(f.process(&mut buf, HEAD, 30, Instant::ZERO), mal);
    // Frame beyond the buffer.
    assert_eq!(f.process(&mut buf, 2040, 60, Instant::ZERO), mal);
    assert_eq!(f.process(&mut buf, usize::MAX, 60, Instant::ZERO), mal);
    // Bad checksum.
    let (mut buf, len2) = p.build();
    buf[HEAD + 14 + 10] ^= 0xff;
    assert_eq!(f.process(&mut buf, HEAD, len2, Instant::ZERO), mal);
    // IHL below 5.
    let (mut buf, _) = p.build();
    buf[HEAD + 14] = 0x44;
    Ipv4Packet::new_unchecked(&mut buf[HEAD + 14..HEAD + 34]).fill_checksum();
    assert_eq!(f.process(&mut buf, HEAD, len, Instant::ZERO), mal);
    // Total length beyond the frame.
    let (mut buf, _) = p.build();
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[HEAD + 14..HEAD + 34]);
    ip.set_total_len(1000);
    ip.fill_checksum();
    assert_eq!(f.process(&mut buf, HEAD, len, Instant::ZERO), mal);
    // Truncated TCP header.
    let (mut buf, _) = p.build();
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[HEAD + 14..HEAD + 34]);
    ip.set_total_len(30);
    ip.fill_checksum();
    assert_eq!(f.process(&mut buf, HEAD, 44, Instant::ZERO), mal);
    assert_eq!(f.counters().drop_count(DropReason::Malformed), 8);
}

/// The 20-byte checksum fast path says what smoltcp's `verify_checksum` says, on random
/// headers, on headers with a correct checksum, and on those with one bit flipped afterwards.
#[test]
fn ipv4_checksum_fast_path_agrees_with_smoltcp() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut valid = 0;
    for i in 0..20_000 {
        // IHL 5 mostly (the fast path), up to 15 (smoltcp's path).
        let ihl = if i % 4 == 0 { 5 + (i / 4) % 11 } else { 5 };
        let mut h = [0u8; 60];
        for b in h.iter_mut() {
            *b = next() as u8;
        }
        h[0] = 0x40 | ihl as u8;
        let h = &mut h[..ihl * 4];
        if i % 3 == 0 {
            // All zero but the version: the sum is never 0xffff.
            h[1..].fill(0);
        }
        if i % 2 == 0 {
            Ipv4Packet::new_unchecked(&mut h[..]).fill_checksum();
        }
        let smoltcp = Ipv4Packet::new_unchecked(&h[..]).verify_checksum();
        assert_eq!(ipv4_checksum_ok(h), smoltcp, "{h:02x?}");
        valid += u32::from(smoltcp);
        if smoltcp {
            // Any bit but the IHL's (that would change which bytes are the header).
            let bit = 4 + next() as usize % (h.len() * 8 - 4);
            h[bit / 8] ^= 1 << (bit % 8);
            assert!(!ipv4_checksum_ok(h), "{h:02x?}");
            assert!(!Ipv4Packet::new_unchecked(&h[..]).verify_checksum());
        }
    }
    assert!(valid > 9_000, "{valid}");
    // The edge values: a sum of exactly 0xffff, and none at all.
    assert!(!ipv4_checksum_ok(&[0; 20]));
    let mut h = [0u8; 20];
    h[10] = 0xff;
    h[11] = 0xff;
    assert!(ipv4_checksum_ok(&h));
}

/// IP options (IHL above 5) are accepted and skipped; TCP data offsets below 5 or beyond the
/// segment are malformed, as smoltcp's `check_len` has them.
#[test]
fn ip_options_and_tcp_data_offset() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Rr, &[1]));
    let mal = Verdict::Drop(DropReason::Malformed);
    // Four NOP options between the IP and the TCP header.
    let (plain, len) = Pkt::tcp(1, 0x02).build();
    let mut buf = vec![0u8; 2048];
    buf[HEAD..HEAD + 34].copy_from_slice(&plain[HEAD..HEAD + 34]);
    buf[HEAD + 34..HEAD + 38].fill(1);
    buf[HEAD + 38..HEAD + len + 4].copy_from_slice(&plain[HEAD + 34..HEAD + len]);
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[HEAD + 14..HEAD + 38]);
    ip.set_header_len(24);
    ip.set_total_len(ip.total_len() + 4);
    ip.fill_checksum();
    assert!(matches!(
        f.process(&mut buf, HEAD, len + 4, Instant::ZERO),
        Verdict::Forward { .. }
    ));
    // A bad checksum on that longer header (the forward rewrote the Ethernet addresses).
    buf[HEAD..HEAD + 6].copy_from_slice(&OUR_MAC);
    buf[HEAD + 14 + 20] ^= 0x40;
    assert_eq!(f.process(&mut buf, HEAD, len + 4, Instant::ZERO), mal);
    // Data offset 4, then 6 with only 20 bytes of segment, then 6 with 24.
    for (offset, extra, ok) in [(4u8, 0usize, false), (6, 0, false), (6, 4, true)] {
        let (mut buf, len) = Pkt::tcp(2, 0x02).build();
        buf[HEAD + 34 + 12] = offset << 4;
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[HEAD + 14..HEAD + 34]);
        ip.set_total_len(ip.total_len() + extra as u16);
        ip.fill_checksum();
        let v = f.process(&mut buf, HEAD, len + extra, Instant::ZERO);
        assert_eq!(
            matches!(v, Verdict::Forward { .. }),
            ok,
            "{offset} {extra}: {v:?}"
        );
        if !ok {
            assert_eq!(v, mal);
        }
    }
}

#[test]
fn ttl_non_vip_local_and_foreign_mac() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Rr, &[1]));
    let mut p = Pkt::tcp(1, 0x02);
    p.ttl = 1;
    assert_eq!(
        send(&mut f, &p, Instant::ZERO),
        Err(Verdict::Drop(DropReason::Ttl))
    );
    p.ttl = 0;
    assert_eq!(
        send(&mut f, &p, Instant::ZERO),
        Err(Verdict::Drop(DropReason::Ttl))
    );
    let mut p = Pkt::tcp(1, 0x02);
    p.dport = 81;
    assert_eq!(
        send(&mut f, &p, Instant::ZERO),
        Err(Verdict::Drop(DropReason::NotVip))
    );
    let mut p = Pkt::tcp(1, 0x02);
    p.dst = OWN;
    assert_eq!(send(&mut f, &p, Instant::ZERO), Err(Verdict::Local));
    let p = Pkt::udp(1, 80);
    assert_eq!(
        send(&mut f, &p, Instant::ZERO),
        Err(Verdict::Drop(DropReason::NotVip))
    );
    let (mut buf, len) = Pkt::tcp(1, 2).build();
    buf[HEAD] = 0x04; // another unicast MAC
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::NotForUs)
    );
    let (mut buf, len) = Pkt::tcp(1, 2).build();
    buf[HEAD + 12..HEAD + 14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::Unsupported)
    );
}

#[test]
fn specific_port_vip_wins_over_all_ports() {
    let mut c = config(Mode::DsrL2, Scheduler::Rr, &[1]);
    let mut all = c.vips[0].clone();
    all.name = "all".into();
    all.port = VipPort::All;
    all.backends[0].address = core::net::IpAddr::from(backend_addr(5));
    c.vips.push(all);
    let mut f = ready(&c);
    assert_eq!(send(&mut f, &Pkt::tcp(1, 2), Instant::ZERO), Ok(0));
    let mut p = Pkt::tcp(1, 2);
    p.dport = 443;
    assert_eq!(send(&mut f, &p, Instant::ZERO), Ok(5));
    let s = f.stats();
    assert_eq!((s[0].packets, s[1].packets), (1, 1));
}

#[test]
fn flows_stick_and_rr_spreads_new_ones() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Rr, &[1, 1, 1]));
    let firsts: Vec<usize> = (0..6)
        .map(|i| send(&mut f, &Pkt::tcp(1000 + i, 0x02), Instant::ZERO).unwrap())
        .collect();
    assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
    for (i, &b) in firsts.iter().enumerate() {
        for _ in 0..3 {
            assert_eq!(
                send(&mut f, &Pkt::tcp(1000 + i as u16, 0x10), Instant::ZERO),
                Ok(b)
            );
        }
    }
}

#[test]
fn least_connections_counts_flows_and_weights() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Wlc, &[1, 3]));
    let mut n = [0; 2];
    for i in 0..40 {
        n[send(&mut f, &Pkt::tcp(i, 0x02), Instant::ZERO).unwrap()] += 1;
    }
    assert_eq!(n, [10, 30]);
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Lc, &[1, 3]));
    let mut n = [0; 2];
    for i in 0..40 {
        n[send(&mut f, &Pkt::tcp(i, 0x02), Instant::ZERO).unwrap()] += 1;
    }
    assert_eq!(n, [20, 20]);
}

#[test]
fn drain_and_down_stop_new_flows_only() {
    let mut c = config(Mode::DsrL2, Scheduler::Rr, &[1, 1]);
    c.vips[0].fail_open = false;
    let mut f = ready(&c);
    assert_eq!(send(&mut f, &Pkt::tcp(1, 2), Instant::ZERO), Ok(0));
    assert_eq!(send(&mut f, &Pkt::tcp(2, 2), Instant::ZERO), Ok(1));
    c.vips[0].backends[0].weight = 0;
    c.version = 2;
    f.apply_config(&c, Instant::ZERO);
    assert_eq!(
        send(&mut f, &Pkt::tcp(1, 0x10), Instant::ZERO),
        Ok(0),
        "drained flow stays"
    );
    for i in 10..20 {
        assert_eq!(send(&mut f, &Pkt::tcp(i, 2), Instant::ZERO), Ok(1));
    }
    f.set_backend_up("web", "be1", false).unwrap();
    assert_eq!(
        send(&mut f, &Pkt::tcp(30, 2), Instant::ZERO),
        Err(Verdict::Drop(DropReason::NoBackend))
    );
    assert_eq!(
        send(&mut f, &Pkt::tcp(2, 0x10), Instant::ZERO),
        Err(Verdict::Drop(DropReason::NoBackend)),
        "a down backend loses its flows, and the only other one is drained"
    );
    assert_eq!(
        f.set_backend_up("web", "nope", true),
        Err(ForwarderError::UnknownBackend)
    );
    assert_eq!(
        f.set_backend_up("nope", "be1", true),
        Err(ForwarderError::UnknownVip)
    );
    f.set_backend_up_by_index(0, 1, true).unwrap();
    assert_eq!(send(&mut f, &Pkt::tcp(30, 2), Instant::ZERO), Ok(1));
    assert!(!f.stats()[0].backends[0].up || f.stats()[0].backends[0].weight == 0);
}

#[test]
fn with_every_backend_down_a_vip_fails_open_by_the_consistent_hash() {
    let c = config(Mode::DsrL2, Scheduler::Maglev, &[1, 1, 0]);
    let mut f = ready(&c);
    let owner: Vec<usize> = (0..40)
        .map(|i| send(&mut f, &Pkt::tcp(i, 2), Instant::ZERO).unwrap())
        .collect();
    assert!(owner.contains(&0) && owner.contains(&1) && !owner.contains(&2));
    f.set_backend_up("web", "be0", false).unwrap();
    assert!(!f.failing_open("web"));
    f.set_backend_up("web", "be1", false).unwrap();
    assert!(f.failing_open("web") && f.stats()[0].failing_open);
    for (i, &b) in owner.iter().enumerate() {
        // Flows that moved to be1 while only be0 was down stay there; the others keep theirs.
        let now = send(&mut f, &Pkt::tcp(i as u16, 0x10), Instant::ZERO).unwrap();
        assert!(now == b || (b == 0 && now == 1), "flow {i}: {b} -> {now}");
    }
    // New flows (and flows this balancer never saw) go where the hash put them while all were
    // up, never to the drained backend.
    let mut fresh = ready(&c);
    for i in 1000..1040 {
        let p = Pkt::tcp(i, 2);
        assert_eq!(
            send(&mut f, &p, Instant::ZERO),
            send(&mut fresh, &p, Instant::ZERO)
        );
    }
    // One back up: it takes everything, and the flows of the down one move to it.
    f.set_backend_up("web", "be0", true).unwrap();
    assert!(!f.failing_open("web") && !f.stats()[0].failing_open);
    for i in 0..40 {
        assert_eq!(send(&mut f, &Pkt::tcp(i, 0x10), Instant::ZERO), Ok(0));
    }
}

#[test]
fn with_fail_open_off_a_vip_whose_backends_are_all_down_drops() {
    let mut c = config(Mode::DsrL2, Scheduler::Maglev, &[1, 1]);
    c.vips[0].fail_open = false;
    let mut f = ready(&c);
    assert!(send(&mut f, &Pkt::tcp(1, 2), Instant::ZERO).is_ok());
    f.set_backend_up("web", "be0", false).unwrap();
    f.set_backend_up("web", "be1", false).unwrap();
    assert!(!f.failing_open("web"));
    for p in [Pkt::tcp(1, 0x10), Pkt::tcp(2, 2)] {
        assert_eq!(
            send(&mut f, &p, Instant::ZERO),
            Err(Verdict::Drop(DropReason::NoBackend))
        );
    }
}

/// A random-looking client address for flood packet `i`.
fn spoofed(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(i.wrapping_mul(2_654_435_761) | 0x0100_0000)
}

#[test]
fn tcp_without_syn_that_misses_a_hash_routed_vip_makes_no_flow() {
    let c = config(Mode::DsrL2, Scheduler::Maglev, &[1, 1, 1]);
    let mut f = ready(&c);
    let mut reference = ready(&c);
    for (i, flags) in (0..300u32).zip([0x10u8, 0x18, 0x11, 0x04].into_iter().cycle()) {
        let p = Pkt {
            src: spoofed(i),
            ..Pkt::tcp(i as u16, flags)
        };
        // Where a SYN of the same flow goes.
        let syn = send(&mut reference, &Pkt { flags: 0x02, ..p }, Instant::ZERO);
        assert_eq!(send(&mut f, &p, Instant::ZERO), syn);
    }
    assert_eq!(f.flow_count(), 0);
    assert_eq!(f.counters().flows_stateless, 300);
    // A SYN still makes its entry; the flow's later packets find it.
    assert!(send(&mut f, &Pkt::tcp(7, 0x02), Instant::ZERO).is_ok());
    assert!(send(&mut f, &Pkt::tcp(7, 0x10), Instant::ZERO).is_ok());
    assert_eq!((f.flow_count(), f.counters().flows_stateless), (1, 300));
}

#[test]
fn tcp_without_syn_still_makes_a_flow_where_only_the_table_can_route_it() {
    // Round robin cannot recompute a backend, and persistence must record the source.
    let mut rr = ready(&config(Mode::DsrL2, Scheduler::Rr, &[1, 1]));
    assert!(send(&mut rr, &Pkt::tcp(1, 0x10), Instant::ZERO).is_ok());
    assert_eq!(rr.flow_count(), 1);
    let mut c = config(Mode::DsrL2, Scheduler::Maglev, &[1, 1]);
    c.vips[0].persistence = Some(60);
    let mut sticky = ready(&c);
    assert!(send(&mut sticky, &Pkt::tcp(1, 0x10), Instant::ZERO).is_ok());
    assert_eq!(sticky.flow_count(), 1);
    assert_eq!(
        rr.counters().flows_stateless + sticky.counters().flows_stateless,
        0
    );
}

#[test]
fn above_the_new_flow_rate_new_flows_are_routed_by_the_hash_and_not_stored() {
    let c = Config::builder()
        .new_flows_per_second(10)
        .vip(web(Mode::DsrL2, Scheduler::Maglev, &[1, 1, 1]))
        .build();
    let mut f = ready(&c);
    let mut reference = ready(&config(Mode::DsrL2, Scheduler::Maglev, &[1, 1, 1]));
    let t0 = Instant::from_millis(5000);
    for i in 0..50u32 {
        let p = Pkt {
            src: spoofed(i),
            ..Pkt::tcp(i as u16, 0x02)
        };
        assert_eq!(send(&mut f, &p, t0), send(&mut reference, &p, t0));
    }
    assert_eq!(f.flow_count(), 10);
    assert_eq!(f.counters().flows_not_stored, 40);
    // The stored ones keep their entries; a later packet of one not stored is routed the same.
    for i in [0u32, 9, 10, 49] {
        let p = Pkt {
            src: spoofed(i),
            ..Pkt::tcp(i as u16, 0x10)
        };
        assert_eq!(send(&mut f, &p, t0), send(&mut reference, &p, t0));
    }
    assert_eq!(f.flow_count(), 10);
    // Half a second refills half the rate.
    let t1 = t0.plus_millis(500);
    for i in 100..110u32 {
        let p = Pkt {
            src: spoofed(i),
            ..Pkt::tcp(i as u16, 0x02)
        };
        assert!(send(&mut f, &p, t1).is_ok());
    }
    assert_eq!(f.flow_count(), 15);
    // A round-robin VIP is never limited: without an entry its flows would break.
    let rr = Config::builder()
        .new_flows_per_second(10)
        .vip(web(Mode::DsrL2, Scheduler::Rr, &[1, 1]))
        .build();
    let mut f = ready(&rr);
    for i in 0..50u16 {
        assert!(send(&mut f, &Pkt::tcp(i, 0x02), t0).is_ok());
    }
    assert_eq!((f.flow_count(), f.counters().flows_not_stored), (50, 0));
}

/// Spoofed SYNs (and, to a hash-routed VIP, ACKs) at many times the table's capacity, while
/// established flows keep sending: every established flow keeps its backend (its entry
/// outranks the flood's SYN-only ones; the ACKs make none). On a scheduler whose choice lives
/// only in the table (wlc) made-up ACKs must make entries, and a flood of them can evict.
#[test]
fn a_spoofed_flood_at_many_times_the_table_does_not_move_established_flows() {
    for (scheduler, ack_every) in [(Scheduler::Wlc, u32::MAX), (Scheduler::Maglev, 2)] {
        let c = config(Mode::DsrL2, scheduler, &[1, 1, 1]);
        let mut f = Forwarder::with_seed(&c, OUR_MAC, 1024, 0x1234_5678_9abc_def1);
        let hosts: Vec<Ipv4Addr> = (0..3).map(backend_addr).chain([GW]).collect();
        resolve(&mut f, &hosts);
        let mut now = Instant::from_millis(1000);
        let established: Vec<(Pkt, usize)> = (0..200u16)
            .map(|i| {
                let syn = Pkt::tcp(10_000 + i, 0x02);
                let b = send(&mut f, &syn, now).unwrap();
                assert_eq!(send(&mut f, &Pkt { flags: 0x10, ..syn }, now), Ok(b));
                (syn, b)
            })
            .collect();
        for i in 0..20_000u32 {
            let flags = if i % ack_every == 1 { 0x10 } else { 0x02 };
            let flood = Pkt {
                src: spoofed(i),
                ..Pkt::tcp((i % 60_000) as u16, flags)
            };
            assert!(send(&mut f, &flood, now).is_ok());
            if i % 100 == 0 {
                now = now.plus_millis(100);
                for (syn, b) in &established {
                    let ack = Pkt {
                        flags: 0x18,
                        ..*syn
                    };
                    assert_eq!(send(&mut f, &ack, now), Ok(*b), "{scheduler:?} flood {i}");
                }
            }
        }
        assert!(f.counters().drop_count(DropReason::FlowEvicted) > 0);
    }
}

#[test]
fn down_moves_existing_flows_to_live_backends_and_only_those() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Rr, &[1, 1, 1]));
    let owner: Vec<usize> = (0..30)
        .map(|i| send(&mut f, &Pkt::tcp(i, 2), Instant::ZERO).unwrap())
        .collect();
    // Backends are named be0, be1, be2 in config order: be1 is index 1.
    f.set_backend_up("web", "be1", false).unwrap();
    for (i, &b) in owner.iter().enumerate() {
        let now = send(&mut f, &Pkt::tcp(i as u16, 0x10), Instant::ZERO).unwrap();
        if b == 1 {
            assert_ne!(now, 1, "flow {i} stayed on the down backend");
        } else {
            assert_eq!(now, b, "flow {i} on a live backend moved");
        }
        // Once moved, a flow stays where it went.
        assert_eq!(
            send(&mut f, &Pkt::tcp(i as u16, 0x10), Instant::ZERO),
            Ok(now)
        );
    }
    let moved = owner.iter().filter(|&&b| b == 1).count() as u64;
    assert_eq!(f.counters().flows_rescheduled, moved);
    let stats = f.stats();
    assert_eq!(stats[0].backends[1].flows_active, 0);
    assert_eq!(
        stats[0]
            .backends
            .iter()
            .map(|b| b.flows_active)
            .sum::<u64>(),
        30
    );
    // Back up: new flows reach it again; the moved ones stay where they are.
    f.set_backend_up("web", "be1", true).unwrap();
    let mut seen = [0; 3];
    for i in 100..130 {
        seen[send(&mut f, &Pkt::tcp(i, 2), Instant::ZERO).unwrap()] += 1;
    }
    assert!(seen[1] > 0, "{seen:?}");
}

#[test]
fn config_change_keeps_flows_of_kept_backends_and_moves_the_others() {
    let mut c = config(Mode::DsrL2, Scheduler::Rr, &[1, 1, 1]);
    let mut f = ready(&c);
    let owner: Vec<usize> = (0..30)
        .map(|i| send(&mut f, &Pkt::tcp(i, 2), Instant::ZERO).unwrap())
        .collect();
    let before = f.stats()[0].backends[1].packets;
    // Remove be2 and add a new be9; be0 and be1 stay (and are listed in another order).
    c.version = 2;
    c.vips[0] = Vip::builder("web", VIP, VipPort::One(80))
        .backend("be1", backend_addr(1), 1)
        .backend("be0", backend_addr(0), 1)
        .backend("be9", backend_addr(9), 1)
        .build();
    f.apply_config(&c, Instant::ZERO);
    resolve(&mut f, &[backend_addr(9)]);
    assert_eq!(f.stats()[0].backends[0].name, "be1");
    assert_eq!(
        f.stats()[0].backends[0].packets,
        before,
        "counters carried over"
    );
    for (i, &b) in owner.iter().enumerate() {
        let now = send(&mut f, &Pkt::tcp(i as u16, 0x10), Instant::ZERO).unwrap();
        if b == 2 {
            assert_ne!(now, 2);
        } else {
            assert_eq!(now, b, "flow {i} moved");
        }
    }
    assert_eq!(f.stats()[0].flows_active, 30);
}

#[test]
fn flow_timeouts_follow_tcp_state() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Rr, &[1, 1]));
    let t = Instant::from_secs;
    assert_eq!(send(&mut f, &Pkt::tcp(1, 0x02), t(0)), Ok(0));
    // SYN only: 60 s. A later packet after that is a new flow (rr moves it).
    assert_eq!(send(&mut f, &Pkt::tcp(1, 0x10), t(59)), Ok(0));
    // Established now: 900 s.
    assert_eq!(send(&mut f, &Pkt::tcp(1, 0x10), t(958)), Ok(0));
    // FIN: 120 s.
    assert_eq!(send(&mut f, &Pkt::tcp(1, 0x11), t(959)), Ok(0));
    assert_eq!(send(&mut f, &Pkt::tcp(1, 0x10), t(1078)), Ok(0));
    assert_eq!(
        send(&mut f, &Pkt::tcp(1, 0x10), t(1199)),
        Ok(1),
        "expired, rescheduled"
    );
    assert_eq!(f.stats()[0].flows_active, 1);
    // The sweep frees expired flows and their connection counts.
    let mut c = config(Mode::DsrL2, Scheduler::Rr, &[1]);
    c.vips[0].protocol = Protocol::Udp;
    let mut f = ready(&c);
    assert_eq!(send(&mut f, &Pkt::udp(7, 80), t(0)), Ok(0));
    assert_eq!(f.stats()[0].flows_active, 1);
    for _ in 0..100 {
        f.poll(t(300), &mut |_| {});
    }
    assert_eq!(f.stats()[0].flows_active, 0);
    assert_eq!(f.flow_count(), 0);
}

#[test]
fn persistence_keeps_a_source_on_one_backend() {
    let mut c = config(Mode::DsrL2, Scheduler::Rr, &[1, 1, 1]);
    c.vips[0].persistence = Some(100);
    let mut f = ready(&c);
    for i in 0..10 {
        assert_eq!(send(&mut f, &Pkt::tcp(100 + i, 2), Instant::ZERO), Ok(0));
    }
    let mut other = Pkt::tcp(5, 2);
    other.src = Ipv4Addr::new(192, 0, 2, 8);
    assert_eq!(send(&mut f, &other, Instant::ZERO), Ok(1));
    // After the persistence timeout a new flow is scheduled afresh.
    assert_eq!(
        send(&mut f, &Pkt::tcp(500, 2), Instant::from_secs(101)),
        Ok(2)
    );
}

#[test]
fn source_hash_and_maglev_are_deterministic() {
    for sched in [Scheduler::Sh, Scheduler::Maglev] {
        let c = config(Mode::DsrL2, sched, &[1, 1, 1, 1]);
        let mut a = ready(&c);
        let mut b = ready(&c);
        for i in 0..50 {
            let p = Pkt::tcp(2000 + i, 2);
            assert_eq!(
                send(&mut a, &p, Instant::ZERO),
                send(&mut b, &p, Instant::ZERO)
            );
        }
    }
    // sh: one source, many ports, one backend.
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Sh, &[1, 1, 1, 1]));
    let first = send(&mut f, &Pkt::tcp(1, 2), Instant::ZERO).unwrap();
    for i in 2..50 {
        assert_eq!(send(&mut f, &Pkt::tcp(i, 2), Instant::ZERO), Ok(first));
    }
}

#[test]
fn fragments_follow_their_first_fragment() {
    let mut c = config(Mode::DsrL2, Scheduler::Rr, &[1, 1, 1]);
    c.vips[0].protocol = Protocol::Udp;
    let mut f = ready(&c);
    // Move the rr cursor so that the choice is not trivially backend 0.
    assert_eq!(send(&mut f, &Pkt::udp(1, 80), Instant::ZERO), Ok(0));
    let mut first = Pkt::udp(2, 80);
    first.df = false;
    first.ident = 77;
    first.payload = 64;
    first.frag = (true, 0);
    let b = send(&mut f, &first, Instant::ZERO).unwrap();
    assert_eq!(b, 1);
    let mut later = first;
    later.frag = (false, 9);
    later.payload = 40;
    assert_eq!(send(&mut f, &later, Instant::ZERO), Ok(1));
    assert_eq!(send(&mut f, &later, Instant::ZERO), Ok(1));
    // Unknown fragment to a one-port VIP: nowhere to go.
    later.ident = 78;
    assert_eq!(
        send(&mut f, &later, Instant::ZERO),
        Err(Verdict::Drop(DropReason::FragmentUnknown))
    );
    assert_eq!(f.counters().fragments, 3);
    // With an all-ports VIP, an orphan goes by the 3-tuple hash, the same way every time.
    c.vips[0].port = VipPort::All;
    c.version = 2;
    f.apply_config(&c, Instant::ZERO);
    let a = send(&mut f, &later, Instant::ZERO);
    assert!(a.is_ok());
    assert_eq!(send(&mut f, &later, Instant::ZERO), a);
}

/// Flows to put in a table before a burst test, so that both ways of taking a burst run: frame
/// by frame (a table of few flows) and with the prefetch pass (more than DIRECT_MAX_FLOWS).
const PREFILLS: [u16; 2] = [0, DIRECT_MAX_FLOWS as u16 + 100];

/// `n` flows (TCP SYNs from source ports 10 000 and up), one at a time.
fn prefill(f: &mut Forwarder, n: u16) {
    for sport in 10_000..10_000 + n {
        let (mut buf, len) = Pkt::tcp(sport, 2).build();
        assert!(matches!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Forward { .. }
        ));
    }
}

#[test]
fn burst_gives_the_same_verdicts_as_single_calls() {
    for n in PREFILLS {
        burst_matches_single_calls(n, true);
    }
    // A large table with the prefetch pass turned off takes the burst frame by frame.
    burst_matches_single_calls(PREFILLS[1], false);
}

fn burst_matches_single_calls(prefilled: u16, prefetch: bool) {
    let c = config(Mode::DsrL3, Scheduler::Maglev, &[1, 2, 3]);
    let mut a = ready(&c);
    let mut b = ready(&c);
    a.set_prefetch(prefetch);
    prefill(&mut a, prefilled);
    prefill(&mut b, prefilled);
    let pkts: Vec<Pkt> = (0..40).map(|i| Pkt::tcp(i, 2)).collect();
    let mut bufs: Vec<(Vec<u8>, usize)> = pkts.iter().map(Pkt::build).collect();
    let mut frames: Vec<RxFrame<'_>> = bufs
        .iter_mut()
        .map(|(buf, len)| RxFrame {
            buf,
            head: HEAD,
            len: *len,
        })
        .collect();
    let mut verdicts = vec![Verdict::Local; frames.len()];
    a.process_burst(&mut frames, &mut verdicts, Instant::ZERO);
    for ((p, v), (burst_buf, _)) in pkts.iter().zip(&verdicts).zip(&bufs) {
        let (mut buf, len) = p.build();
        assert_eq!(b.process(&mut buf, HEAD, len, Instant::ZERO), *v);
        // And the same bytes leave (the encapsulated packet, for this dsr-l3 VIP).
        if let Verdict::Forward { head, len } = *v {
            assert_eq!(burst_buf[head..head + len], buf[head..head + len]);
        }
    }
    assert!(verdicts
        .iter()
        .all(|v| matches!(v, Verdict::Forward { .. })));
    assert_eq!(a.stats(), b.stats());
}

/// Lends the frames of a list, except those it is told cannot be lent (as a driver might
/// refuse a stray handle): `None` from `frame`, or only from `frame_mut`.
struct Picky {
    bufs: Vec<(Vec<u8>, usize)>,
    never: usize,
    not_writable: usize,
}

impl Frames for Picky {
    fn count(&self) -> usize {
        self.bufs.len()
    }

    fn frame(&self, i: usize) -> Option<(&[u8], usize, usize)> {
        let (buf, len) = self.bufs.get(i).filter(|_| i != self.never)?;
        Some((buf, HEAD, *len))
    }

    fn frame_mut(&mut self, i: usize) -> Option<(&mut [u8], usize, usize)> {
        if i == self.never || i == self.not_writable {
            return None;
        }
        let (buf, len) = self.bufs.get_mut(i)?;
        Some((buf, HEAD, *len))
    }
}

#[test]
fn frames_that_cannot_be_lent_are_dropped_as_malformed_and_the_rest_forwarded() {
    for n in PREFILLS {
        unlendable_frames_are_dropped(n);
    }
}

fn unlendable_frames_are_dropped(prefilled: u16) {
    let c = config(Mode::DsrL2, Scheduler::Maglev, &[1, 2, 3]);
    let mut a = ready(&c);
    let mut b = ready(&c);
    prefill(&mut a, prefilled);
    prefill(&mut b, prefilled);
    // 40 frames: two chunks of the burst loop, the refused ones in the second.
    let pkts: Vec<Pkt> = (0..40).map(|i| Pkt::tcp(i, 2)).collect();
    let mut frames = Picky {
        bufs: pkts.iter().map(Pkt::build).collect(),
        never: 33,
        not_writable: 35,
    };
    let mut verdicts = vec![Verdict::Local; 40];
    a.process_frames(&mut frames, &mut verdicts, Instant::ZERO);
    for (i, (p, v)) in pkts.iter().zip(&verdicts).enumerate() {
        if i == 33 || i == 35 {
            assert_eq!(*v, Verdict::Drop(DropReason::Malformed), "frame {i}");
            continue;
        }
        let (mut buf, len) = p.build();
        assert_eq!(
            b.process(&mut buf, HEAD, len, Instant::ZERO),
            *v,
            "frame {i}"
        );
        assert_eq!(
            frames.bufs[i].0, buf,
            "frame {i} rewritten as a single call does"
        );
    }
    assert!(matches!(verdicts[0], Verdict::Forward { .. }));
    assert_eq!(a.counters().drop_count(DropReason::Malformed), 2);
    assert_eq!(a.counters().forwarded, u64::from(prefilled) + 38);
    // Frame 35 (classified, its flow hashed, in the prefetching form) was never touched: no
    // flow was made for it.
    assert_eq!(a.flow_count(), usize::from(prefilled) + 38);
}

#[test]
fn drop_reason_names_are_labels() {
    assert_eq!(DropReason::NotVip.name(), "not_vip");
    assert!(DropReason::ALL.iter().all(|r| r
        .name()
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b == b'_')));
    assert_eq!(
        ForwarderError::UnknownVip.to_string(),
        "no such VIP in the running config"
    );
}

/// A config with `[management]` on port 9000, open to 10.77.0.0/28 only.
fn managed() -> Config {
    Config::builder()
        .management(9000, &["10.77.0.0/28"])
        .vip(web(Mode::DsrL2, Scheduler::Rr, &[1]))
        .build()
}

#[test]
fn bgp_from_a_source_that_is_not_a_peer_is_dropped_before_the_local_stack() {
    let peer = Ipv4Addr::new(10, 77, 0, 1);
    let mut c = managed();
    c.vips[0].scheduler = Scheduler::Maglev;
    c.bgp = Some(crate::config::Bgp {
        asn: 65010,
        router_id: None,
        hold_time: 9,
        announce: true,
        bfd: false,
        peers: vec![crate::config::BgpPeer {
            address: peer,
            asn: 65000,
        }],
    });
    c.validate().unwrap();
    let mut f = ready(&c);
    let to_us = |src: Ipv4Addr, dport: u16| {
        let mut p = Pkt::tcp(40000, 0x02);
        p.src = src;
        p.dst = OWN;
        p.dport = dport;
        p
    };
    let stranger = Ipv4Addr::new(10, 77, 0, 9); // inside the management allow-list
    assert_eq!(
        send(&mut f, &to_us(peer, 179), Instant::ZERO),
        Err(Verdict::Local)
    );
    assert_eq!(
        send(&mut f, &to_us(stranger, 179), Instant::ZERO),
        Err(Verdict::Drop(DropReason::BgpDenied))
    );
    assert_eq!(
        send(&mut f, &to_us(CLIENT, 179), Instant::ZERO),
        Err(Verdict::Drop(DropReason::BgpDenied))
    );
    // The answers to our own dial come from port 179, to another port: they pass.
    let mut answer = to_us(peer, 50000);
    answer.sport = 179;
    assert_eq!(send(&mut f, &answer, Instant::ZERO), Err(Verdict::Local));
    assert_eq!(
        send(&mut f, &to_us(stranger, 9000), Instant::ZERO),
        Err(Verdict::Local)
    );
    assert_eq!(f.counters().drop_count(DropReason::BgpDenied), 2);
    assert_eq!(DropReason::BgpDenied.name(), "bgp_denied");
    // BFD: from a peer with TTL 255 only.
    let bfd = |src: Ipv4Addr, ttl: u8| {
        let mut p = Pkt::udp(49152, 3784);
        p.src = src;
        p.dst = OWN;
        p.ttl = ttl;
        p
    };
    assert_eq!(
        send(&mut f, &bfd(peer, 255), Instant::ZERO),
        Err(Verdict::Local)
    );
    assert_eq!(
        send(&mut f, &bfd(peer, 254), Instant::ZERO),
        Err(Verdict::Drop(DropReason::BgpDenied))
    );
    assert_eq!(
        send(&mut f, &bfd(stranger, 255), Instant::ZERO),
        Err(Verdict::Drop(DropReason::BgpDenied))
    );
    assert_eq!(f.counters().drop_count(DropReason::BgpDenied), 4);
    // Without [bgp] nothing is judged on port 179.
    f.apply_config(&managed(), Instant::ZERO);
    assert_eq!(
        send(&mut f, &to_us(stranger, 179), Instant::ZERO),
        Err(Verdict::Local)
    );
}

#[test]
fn management_from_outside_allow_is_dropped_before_the_local_stack() {
    let mut f = ready(&managed());
    let denied = Verdict::Drop(DropReason::MgmtDenied);
    let to_us = |src: Ipv4Addr, dport: u16| {
        let mut p = Pkt::tcp(40000, 0x02);
        p.src = src;
        p.dst = OWN;
        p.dport = dport;
        p
    };
    let inside = Ipv4Addr::new(10, 77, 0, 9);
    let outside = Ipv4Addr::new(10, 77, 0, 99);
    assert_eq!(
        send(&mut f, &to_us(inside, 9000), Instant::ZERO),
        Err(Verdict::Local)
    );
    assert_eq!(
        send(&mut f, &to_us(outside, 9000), Instant::ZERO),
        Err(denied)
    );
    assert_eq!(
        send(&mut f, &to_us(CLIENT, 9000), Instant::ZERO),
        Err(denied)
    );
    // Other ports (a health check's or the fetch's answer) and other protocols pass.
    assert_eq!(
        send(&mut f, &to_us(outside, 80), Instant::ZERO),
        Err(Verdict::Local)
    );
    let mut udp = Pkt::udp(5, 9000);
    udp.dst = OWN;
    assert_eq!(send(&mut f, &udp, Instant::ZERO), Err(Verdict::Local));
    // A later fragment (no ports) to us from outside is dropped, from inside it passes.
    let mut frag = to_us(outside, 9000);
    frag.frag = (false, 3);
    frag.df = false;
    assert_eq!(send(&mut f, &frag, Instant::ZERO), Err(denied));
    frag.src = inside;
    assert_eq!(send(&mut f, &frag, Instant::ZERO), Err(Verdict::Local));
    // A truncated TCP header has no port to judge by: smoltcp drops it.
    let (mut buf, _) = to_us(outside, 9000).build();
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[HEAD + 14..HEAD + 34]);
    ip.set_total_len(30);
    ip.fill_checksum();
    assert_eq!(f.process(&mut buf, HEAD, 44, Instant::ZERO), Verdict::Local);
    assert_eq!(f.counters().drop_count(DropReason::MgmtDenied), 3);
    assert_eq!(DropReason::MgmtDenied.name(), "mgmt_denied");
    // Without a management section nothing is judged; a new config brings its own.
    f.apply_config(&config(Mode::DsrL2, Scheduler::Rr, &[1]), Instant::ZERO);
    assert_eq!(
        send(&mut f, &to_us(outside, 9000), Instant::ZERO),
        Err(Verdict::Local)
    );
    f.apply_config(&managed(), Instant::ZERO);
    assert_eq!(
        send(&mut f, &to_us(outside, 9000), Instant::ZERO),
        Err(denied)
    );
    // The VIP's traffic is not affected.
    assert_eq!(send(&mut f, &Pkt::tcp(1, 0x02), Instant::ZERO), Ok(0));
}

/// An ICMP echo request (8 bytes of header, `payload` more) from `src` to the balancer.
fn ping(src: Ipv4Addr, src_mac: [u8; 6], frag: (bool, u16)) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; 2048];
    let len = 14 + 20 + 8;
    let mut eth = EthernetFrame::new_unchecked(&mut buf[HEAD..HEAD + len]);
    eth.set_dst_addr(EthernetAddress(OUR_MAC));
    eth.set_src_addr(EthernetAddress(src_mac));
    eth.set_ethertype(EthernetProtocol::Ipv4);
    buf[HEAD + 34] = 8;
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[HEAD + 14..HEAD + 34]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len(28);
    ip.set_more_frags(frag.0);
    ip.set_frag_offset(frag.1 * 8);
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::Icmp);
    ip.set_src_addr(src);
    ip.set_dst_addr(OWN);
    ip.fill_checksum();
    (buf, len)
}

#[test]
fn neighbour_hints_name_resolved_hops_that_open_a_conversation_and_arp_askers() {
    // A backend is a next hop the forwarder resolves; the management port is open to it.
    let hop = backend_addr(0);
    let mut c = managed();
    c.management
        .as_mut()
        .unwrap()
        .allow
        .push(crate::config::Prefix {
            address: Ipv4Addr::new(10, 77, 0, 16),
            len: 28,
        });
    let mut f = ready(&c);
    let peer = Ipv4Addr::new(10, 77, 0, 9);
    let local = |f: &mut Forwarder, (mut buf, len): (Vec<u8>, usize)| {
        assert_eq!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Local
        );
    };
    let to_us = |src: Ipv4Addr, src_mac: [u8; 6], flags: u8| {
        let mut p = Pkt::tcp(40000, flags);
        p.src = src;
        p.dst = OWN;
        p.dport = 9000;
        let (mut buf, len) = p.build();
        buf[HEAD + 6..HEAD + 12].copy_from_slice(&src_mac);
        (buf, len)
    };
    // A SYN from the backend, a next hop the forwarder resolved, from the MAC it resolved.
    local(&mut f, to_us(hop, mac_of(hop), 0x02));
    assert_eq!(f.take_neighbour_hint(), Some((hop, mac_of(hop))));
    assert_eq!(f.take_neighbour_hint(), None);
    // The same from another MAC (a host on the segment forging the backend's address), and a
    // SYN from an allowed on-link peer that is no next hop: the frame's MAC proves nothing,
    // so no hint (the local stack resolves them itself).
    local(&mut f, to_us(hop, CLIENT_MAC, 0x02));
    local(&mut f, to_us(peer, CLIENT_MAC, 0x02));
    assert_eq!(f.take_neighbour_hint(), None);
    // Not a SYN, a SYN-ACK, from off-link: no hint.
    local(&mut f, to_us(hop, mac_of(hop), 0x10));
    local(&mut f, to_us(hop, mac_of(hop), 0x12));
    let mut p = Pkt::tcp(40000, 0x02);
    p.dst = OWN;
    local(&mut f, p.build());
    assert_eq!(f.take_neighbour_hint(), None);
    // An echo request from the hop, first fragment or whole; not a later fragment, not from a
    // group MAC, not from a peer that is no hop.
    local(&mut f, ping(hop, mac_of(hop), (false, 0)));
    assert_eq!(f.take_neighbour_hint(), Some((hop, mac_of(hop))));
    local(&mut f, ping(hop, mac_of(hop), (true, 0)));
    assert_eq!(f.take_neighbour_hint(), Some((hop, mac_of(hop))));
    local(&mut f, ping(hop, mac_of(hop), (false, 2)));
    local(&mut f, ping(hop, [0x03, 0, 0, 0, 0, 1], (false, 0)));
    local(&mut f, ping(peer, mac_of(peer), (false, 0)));
    assert_eq!(f.take_neighbour_hint(), None);
    // A denied SYN never reaches the local stack, so no hint either.
    let (mut buf, len) = to_us(Ipv4Addr::new(10, 77, 0, 99), CLIENT_MAC, 0x02);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::MgmtDenied)
    );
    // ARP: an answer for our own address names the asker; one for a VIP does not.
    let asker = Ipv4Addr::new(10, 77, 0, 50);
    let ask = |f: &mut Forwarder, asker: Ipv4Addr, target: Ipv4Addr| {
        let (mut buf, len) = arp_frame(ArpOperation::Request, mac_of(asker), asker, [0; 6], target);
        assert!(matches!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Reply { .. }
        ));
    };
    for (target, hinted) in [(VIP, false), (OWN, true)] {
        ask(&mut f, asker, target);
        assert_eq!(
            f.take_neighbour_hint(),
            hinted.then_some((asker, mac_of(asker)))
        );
    }
    // The queue is bounded: the oldest go.
    for i in 0..40u8 {
        ask(&mut f, Ipv4Addr::new(10, 77, 0, 100 + i), OWN);
    }
    let mut left = Vec::new();
    while let Some(h) = f.take_neighbour_hint() {
        left.push(h.0);
    }
    assert_eq!(left.len(), crate::neigh::HINTS_MAX);
    assert_eq!(left.last(), Some(&Ipv4Addr::new(10, 77, 0, 139)));
}

#[test]
fn announced_addresses_are_ours_then_the_vips() {
    let mut c = config(Mode::DsrL2, Scheduler::Rr, &[1]);
    let mut second = c.vips[0].clone();
    second.name = "second".into();
    second.port = VipPort::One(443);
    let mut third = c.vips[0].clone();
    third.name = "third".into();
    third.address = core::net::IpAddr::from(Ipv4Addr::new(10, 77, 0, 3));
    let mut on_own = c.vips[0].clone();
    on_own.name = "own".into();
    on_own.address = core::net::IpAddr::from(OWN);
    c.vips.extend([second, third, on_own]);
    assert_eq!(
        arp::announced(&c),
        vec![OWN, Ipv4Addr::new(10, 77, 0, 3), VIP]
    );
}

/// Writes the fuzz seed corpora (`fuzz/seeds/process`, and the control crate's
/// `kernel/control/fuzz/seeds/config_blob`): run by hand with
/// `cargo test -p forwarder --lib write_fuzz_seeds -- --ignored` after changing frame shapes.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let process = root.join("process");
    let blob = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kernel/control/fuzz/seeds/config_blob");
    std::fs::create_dir_all(&process).unwrap();
    std::fs::create_dir_all(&blob).unwrap();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut big = Pkt::tcp(7, 0x18);
    big.payload = 700;
    let mut frag = Pkt::udp(9, 53);
    frag.frag = (false, 3);
    frag.df = false;
    for p in [
        Pkt::tcp(1, 2),
        Pkt::tcp(1, 0x11),
        Pkt::udp(5, 53),
        big,
        frag,
    ] {
        let (buf, len) = p.build();
        frames.push(buf[HEAD..HEAD + len].to_vec());
    }
    let (buf, len) = arp_frame(ArpOperation::Request, CLIENT_MAC, GW, [0; 6], VIP);
    frames.push(buf[HEAD..HEAD + len].to_vec());
    let (buf, len) = arp_frame(ArpOperation::Reply, mac_of(GW), GW, OUR_MAC, OWN);
    frames.push(buf[HEAD..HEAD + len].to_vec());
    frames.extend(super::icmp::tests::fuzz_seed_frames());
    frames.extend(super::ipv6::tests::fuzz_seed_frames());
    // The differential target reads the same format, up to 32 frames an input: each frame
    // alone, and all of them as one burst.
    let differential = root.join("differential");
    std::fs::create_dir_all(&differential).unwrap();
    let mut burst = vec![64u8];
    for (i, fr) in frames.iter().enumerate() {
        let mut seed = vec![64u8];
        seed.extend_from_slice(fr);
        std::fs::write(process.join(alloc::format!("frame{i}")), &seed).unwrap();
        std::fs::write(differential.join(alloc::format!("frame{i}")), &seed).unwrap();
        if i > 0 {
            burst.push(0xA5);
        }
        burst.extend_from_slice(fr);
    }
    std::fs::write(differential.join("burst"), burst).unwrap();
    let mut c = config(Mode::DsrL3, Scheduler::Maglev, &[1, 2]);
    std::fs::write(blob.join("l3"), c.to_blob()).unwrap();
    c.vips[0].persistence = Some(30);
    c.vips[0].mode = Mode::DsrL2;
    std::fs::write(blob.join("l2"), c.to_blob()).unwrap();
    // IPv6: address6, gateway6, an ip6ip6 VIP and management open to both families.
    let mut c6 = super::ipv6::tests::config6(Mode::DsrL3, Scheduler::Maglev, 2);
    c6.management = Config::builder()
        .management(9100, &["10.77.0.0/24", "fd00:77::/64"])
        .build()
        .management;
    std::fs::write(blob.join("v6"), c6.to_blob()).unwrap();
}

#[test]
fn a_vrrp_backup_drops_vip_traffic_and_arp_but_keeps_its_flows() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Maglev, &[1, 1]));
    assert!(f.vip_role());
    let syn = Pkt::tcp(4000, 0x02);
    let first = send(&mut f, &syn, Instant::ZERO).unwrap();
    f.set_vip_role(false);
    let ack = Pkt::tcp(4000, 0x10);
    assert_eq!(
        send(&mut f, &ack, Instant::ZERO),
        Err(Verdict::Drop(DropReason::VrrpBackup))
    );
    let icmp = Pkt {
        proto: 1,
        ..Pkt::udp(1, 1)
    };
    let later = Pkt {
        frag: (false, 10),
        ..Pkt::udp(5, 53)
    };
    for p in [icmp, later] {
        let (mut buf, len) = p.build();
        assert_eq!(
            f.process(&mut buf, HEAD, len, Instant::ZERO),
            Verdict::Drop(DropReason::VrrpBackup)
        );
    }
    let asker = Ipv4Addr::new(10, 77, 0, 50);
    let (mut buf, len) = arp_frame(ArpOperation::Request, mac_of(asker), asker, [0; 6], VIP);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::VrrpBackup)
    );
    // The balancer's own address is still answered, and its own traffic still reaches it.
    let (mut buf, len) = arp_frame(ArpOperation::Request, mac_of(asker), asker, [0; 6], OWN);
    assert!(matches!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Reply { .. }
    ));
    let to_us = Pkt {
        dst: OWN,
        ..Pkt::tcp(4001, 0x02)
    };
    let (mut buf, len) = to_us.build();
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Local
    );
    assert_eq!(f.counters().drop_count(DropReason::VrrpBackup), 4);
    // Back as master: the flow made before goes on to its backend.
    f.set_vip_role(true);
    assert_eq!(send(&mut f, &ack, Instant::ZERO), Ok(first));
}

#[test]
fn vrrp_advertisements_go_to_the_local_path() {
    let mut f = ready(&config(Mode::DsrL2, Scheduler::Maglev, &[1]));
    let advert = Pkt {
        proto: 112,
        dst: Ipv4Addr::new(224, 0, 0, 18),
        src: Ipv4Addr::new(10, 77, 0, 3),
        ttl: 255,
        ..Pkt::udp(0, 0)
    };
    let (mut buf, len) = advert.build();
    buf[HEAD..HEAD + 6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]);
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Local
    );
    f.set_vip_role(false);
    let (mut buf, len) = advert.build();
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Local
    );
    // Protocol 112 to another address is not VRRP.
    let other = Pkt {
        dst: Ipv4Addr::new(10, 77, 0, 9),
        ..advert
    };
    let (mut buf, len) = other.build();
    assert_eq!(
        f.process(&mut buf, HEAD, len, Instant::ZERO),
        Verdict::Drop(DropReason::NotVip)
    );
}
