//! What the forwarder bench and the callgrind driver (`examples/insns.rs`) both set up: the
//! config (one all-ports TCP VIP, ten backends, Maglev), the backends' ARP replies, and TCP
//! frames to the VIP. The driver includes this file by path.

use std::net::Ipv4Addr;

use control::config::{
    Backend, Config, Interface, Limits, Mode, Prefix, Protocol, Scheduler, Vip, VipPort,
};
use forwarder::{Forwarder, Instant, Verdict};
use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
    IpProtocol, Ipv4Packet,
};

pub const MAC: [u8; 6] = [2, 0x5e, 0, 0, 0, 1];
pub const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
pub const HEAD: usize = 64;
pub const BUF: usize = 192;
pub const FRAME_LEN: usize = 14 + 20 + 20;

pub fn config(mode: Mode) -> Config {
    Config {
        version: 1,
        interface: Interface {
            address: Prefix::parse("10.77.0.2/24").unwrap(),
            gateway: Some(Ipv4Addr::new(10, 77, 0, 1)),
            mtu: 1500,
            nic: None,
            poll: Default::default(),
        },
        management: None,
        limits: Limits::default(),
        bgp: None,
        vips: vec![Vip {
            name: "web".into(),
            address: VIP,
            port: VipPort::All,
            protocol: Protocol::Tcp,
            mode,
            scheduler: Scheduler::Maglev,
            persistence: None,
            health: None,
            backends: (0..10)
                .map(|i| Backend {
                    name: format!("be{i}"),
                    address: Ipv4Addr::new(10, 77, 0, 21 + i),
                    weight: 1,
                })
                .collect(),
        }],
    }
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

/// Make a frame from [`frame`] carry another flow: restore the Ethernet header `eth` (the
/// previous rewrite changed it) and write the source port, and the destination port if given
/// (the VIP takes all ports). Two bytes each, no checksum involved.
#[inline(always)]
pub fn retarget(buf: &mut [u8], eth: &[u8; 14], sport: u16, dport: Option<u16>) {
    buf[HEAD..HEAD + 14].copy_from_slice(eth);
    buf[HEAD + 34..HEAD + 36].copy_from_slice(&sport.to_be_bytes());
    if let Some(dport) = dport {
        buf[HEAD + 36..HEAD + 38].copy_from_slice(&dport.to_be_bytes());
    }
}
