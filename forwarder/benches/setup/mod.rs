//! What the forwarder bench and the callgrind driver (`examples/insns.rs`) both set up: the
//! config (one all-ports TCP VIP, ten backends, Maglev), the backends' ARP replies, and TCP
//! frames to the VIP; the same over IPv6 (neighbour advertisements instead of ARP). The driver
//! includes this file by path.

use std::net::{Ipv4Addr, Ipv6Addr};

use control::config::{Config, Mode, Scheduler, Vip, VipPort};
use forwarder::{Forwarder, Instant, Verdict};
use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv6Packet, IpProtocol, Ipv4Packet,
};

pub const MAC: [u8; 6] = [2, 0x5e, 0, 0, 0, 1];
pub const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
pub const HEAD: usize = 64;
pub const BUF: usize = 192;
pub const FRAME_LEN: usize = 14 + 20 + 20;

pub fn config(mode: Mode) -> Config {
    let mut vip = Vip::builder("web", VIP, VipPort::All)
        .mode(mode)
        .scheduler(Scheduler::Maglev);
    for i in 0..10 {
        vip = vip.backend(&format!("be{i}"), Ipv4Addr::new(10, 77, 0, 21 + i), 1);
    }
    Config::builder().vip(vip.build()).build()
}

pub fn resolve_all(f: &mut Forwarder, now: Instant) {
    for i in 0..10u8 {
        let ip = Ipv4Addr::new(10, 77, 0, 21 + i);
        let mut buf = vec![0u8; BUF];
        let mut eth = EthernetFrame::new_unchecked(&mut buf[HEAD..HEAD + 60]);
        eth.set_dst_addr(EthernetAddress(MAC));
        eth.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, i]));
        eth.set_ethertype(EthernetProtocol::Arp);
        let mut p = ArpPacket::new_unchecked(&mut buf[HEAD + 14..HEAD + 42]);
        p.set_hardware_type(ArpHardware::Ethernet);
        p.set_protocol_type(EthernetProtocol::Ipv4);
        p.set_hardware_len(6);
        p.set_protocol_len(4);
        p.set_operation(ArpOperation::Reply);
        p.set_source_hardware_addr(&[2, 0, 0, 0, 0, i]);
        p.set_source_protocol_addr(&ip.octets());
        p.set_target_hardware_addr(&MAC);
        p.set_target_protocol_addr(&OWN.octets());
        assert_eq!(f.process(&mut buf, HEAD, 60, now), Verdict::Local);
    }
}

/// A TCP ACK (or SYN) frame from source number `src` to `dst` port `dport`.
pub fn frame(src: usize, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut buf = vec![0u8; BUF];
    let f = &mut buf[HEAD..HEAD + FRAME_LEN];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(EthernetAddress(MAC));
    eth.set_src_addr(EthernetAddress([2, 0xcc, 0, 0, 0, 9]));
    eth.set_ethertype(EthernetProtocol::Ipv4);
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[34 + 12] = 5 << 4;
    f[34 + 13] = flags;
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..34]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len(40);
    ip.set_dont_frag(true);
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::Tcp);
    ip.set_src_addr(Ipv4Addr::from(0xC000_0200 + src as u32 * 257));
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    buf
}

/// The balancer's IPv6 address.
pub const OWN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
/// The IPv6 VIP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100);
/// An IPv6 TCP frame without options or data.
pub const FRAME6_LEN: usize = 14 + 40 + 20;

/// IPv6 backend `i` (on the link).
fn backend6(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x21 + i)
}

/// [`config`] over IPv6: the VIP [`VIP6`], backends fd00:77::21.., the balancer at [`OWN6`].
pub fn config6(mode: Mode) -> Config {
    let mut vip = Vip::builder("web6", VIP6, VipPort::All)
        .mode(mode)
        .scheduler(Scheduler::Maglev);
    for i in 0..10 {
        vip = vip.backend(&format!("be{i}"), backend6(i), 1);
    }
    Config::builder()
        .address6("fd00:77::2/64")
        .vip(vip.build())
        .build()
}

/// Fixed IPv6 header fields of a frame at `f` (from its Ethernet header on).
fn ipv6_header(f: &mut [u8], payload: usize, next: u8, hop: u8, src: Ipv6Addr, dst: Ipv6Addr) {
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&(payload as u16).to_be_bytes());
    f[20] = next;
    f[21] = hop;
    f[22..38].copy_from_slice(&src.octets());
    f[38..54].copy_from_slice(&dst.octets());
}

/// Teach `f` the IPv6 backends' MACs with neighbour advertisements.
pub fn resolve_all6(f: &mut Forwarder, now: Instant) {
    for i in 0..10u16 {
        let ip = backend6(i);
        let mac = [2, 0, 0, 0, 1, i as u8];
        let mut buf = vec![0u8; BUF];
        let fr = &mut buf[HEAD..HEAD + 14 + 40 + 32];
        fr[0..6].copy_from_slice(&MAC);
        fr[6..12].copy_from_slice(&mac);
        ipv6_header(fr, 32, 58, 255, ip, OWN6);
        let m = &mut fr[54..];
        m[0] = 136;
        m[4] = 0x60;
        m[8..24].copy_from_slice(&ip.octets());
        m[24..26].copy_from_slice(&[2, 1]);
        m[26..32].copy_from_slice(&mac);
        Icmpv6Packet::new_unchecked(m).fill_checksum(&ip, &OWN6);
        assert_eq!(f.process(&mut buf, HEAD, 86, now), Verdict::Local);
    }
}

/// [`frame`] over IPv6: a TCP frame from source number `src` to [`VIP6`] port `dport`.
pub fn frame6(src: usize, dport: u16, flags: u8) -> Vec<u8> {
    let mut buf = vec![0u8; BUF];
    let f = &mut buf[HEAD..HEAD + FRAME6_LEN];
    f[0..6].copy_from_slice(&MAC);
    f[6..12].copy_from_slice(&[2, 0xcc, 0, 0, 0, 9]);
    let client = Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + src as u128 * 257);
    ipv6_header(f, 20, 6, 64, client, VIP6);
    f[56..58].copy_from_slice(&dport.to_be_bytes());
    f[54 + 12] = 5 << 4;
    f[54 + 13] = flags;
    buf
}

/// Make a frame from [`frame`] or [`frame6`] (its TCP header at `l4`: 34, or 54 for IPv6)
/// carry another flow: restore the Ethernet header `eth` (the previous rewrite changed it) and
/// write the source port, and the destination port if given (the VIP takes all ports). Two
/// bytes each, no checksum involved.
#[inline(always)]
pub fn retarget_at(buf: &mut [u8], eth: &[u8; 14], l4: usize, sport: u16, dport: Option<u16>) {
    buf[HEAD..HEAD + 14].copy_from_slice(eth);
    buf[HEAD + l4..HEAD + l4 + 2].copy_from_slice(&sport.to_be_bytes());
    if let Some(dport) = dport {
        buf[HEAD + l4 + 2..HEAD + l4 + 4].copy_from_slice(&dport.to_be_bytes());
    }
}
