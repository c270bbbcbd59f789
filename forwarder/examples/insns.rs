//! Driver for counting instructions per packet with callgrind (see BENCHMARKS.md): the bench's
//! config, `SIDESTEP_INSNS_FLOWS` (default 1 000) established flows visited in random order,
//! `SIDESTEP_INSNS_ROUNDS` (default 100) bursts of 32 frames through `process_burst` and as many
//! frames through `process`. `SIDESTEP_INSNS_MODE=dsr-l3` for IP-in-IP; `SIDESTEP_INSNS_NEW=1`
//! sends SYNs of never-seen flows instead (source and destination port counting up), into a
//! table of `max(2 x flows, 4096)` entries that fills up and then evicts.
//!
//!     cargo build --release -p forwarder --example insns
//!     valgrind --tool=callgrind --toggle-collect=insns::burst --toggle-collect=insns::single \
//!         target/release/examples/insns
//!
//! The difference between two round counts, over the extra packets, is the cost per packet.

use std::hint::black_box;
use std::net::Ipv4Addr;

use forwarder::config::{
    Backend, Config, Interface, Limits, Mode, Prefix, Protocol, Scheduler, Vip, VipPort,
};
use forwarder::{Forwarder, Instant, RxFrame, Verdict};
use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
    IpProtocol, Ipv4Packet,
};

const MAC: [u8; 6] = [2, 0x5e, 0, 0, 0, 1];
const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const HEAD: usize = 64;
const BUF: usize = 192;
const LANES: usize = 32;
const FRAME_LEN: usize = 14 + 20 + 20;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(mode: Mode) -> Config {
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

fn resolve_all(f: &mut Forwarder) {
    for i in 0..10u8 {
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
        p.set_source_protocol_addr(&Ipv4Addr::new(10, 77, 0, 21 + i).octets());
        p.set_target_hardware_addr(&MAC);
        p.set_target_protocol_addr(&OWN.octets());
        assert_eq!(f.process(&mut buf, HEAD, 60, Instant::ZERO), Verdict::Local);
    }
}

/// A TCP ACK frame from port `sport`.
fn frame(sport: u16) -> Vec<u8> {
    let mut buf = vec![0u8; BUF];
    let f = &mut buf[HEAD..HEAD + FRAME_LEN];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(EthernetAddress(MAC));
    eth.set_src_addr(EthernetAddress([2, 0xcc, 0, 0, 0, 9]));
    eth.set_ethertype(EthernetProtocol::Ipv4);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[34 + 12] = 5 << 4;
    f[34 + 13] = 0x10;
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..34]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len(40);
    ip.set_dont_frag(true);
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::Tcp);
    ip.set_src_addr(Ipv4Addr::new(192, 0, 2, 1));
    ip.set_dst_addr(VIP);
    ip.fill_checksum();
    buf
}

fn aim(buf: &mut [u8], eth: &[u8; 14], k: u32) {
    buf[HEAD..HEAD + 14].copy_from_slice(eth);
    buf[HEAD + 34..HEAD + 36].copy_from_slice(&(k as u16).to_be_bytes());
}

/// Make `buf` a SYN of flow `k`: source port `k`'s low half, destination port (the VIP takes
/// all ports) its high half plus one.
fn aim_new(buf: &mut [u8], eth: &[u8; 14], k: u32) {
    aim(buf, eth, k);
    buf[HEAD + 36..HEAD + 38].copy_from_slice(&((k >> 16) as u16 + 1).to_be_bytes());
    buf[HEAD + 34 + 13] = 0x02;
}

#[inline(never)]
fn burst(f: &mut Forwarder, frames: &mut [RxFrame<'_>], verdicts: &mut [Verdict]) {
    f.process_burst(frames, verdicts, Instant::ZERO);
}

#[inline(never)]
fn single(f: &mut Forwarder, buf: &mut [u8]) -> Verdict {
    f.process(buf, HEAD, FRAME_LEN, Instant::ZERO)
}

fn main() {
    let flows = env("SIDESTEP_INSNS_FLOWS", 1000) as u32;
    let rounds = env("SIDESTEP_INSNS_ROUNDS", 100);
    let mode = match std::env::var("SIDESTEP_INSNS_MODE").as_deref() {
        Ok("dsr-l3") => Mode::DsrL3,
        _ => Mode::DsrL2,
    };
    let mut f = Forwarder::new(&config(mode), MAC, (flows as usize * 2).max(4096));
    resolve_all(&mut f);
    let mut lanes: Vec<Vec<u8>> = (0..LANES).map(|_| frame(0)).collect();
    let mut eth = [0u8; 14];
    eth.copy_from_slice(&lanes[0][HEAD..HEAD + 14]);
    for k in 0..flows {
        aim(&mut lanes[0], &eth, k);
        assert!(matches!(
            f.process(&mut lanes[0], HEAD, FRAME_LEN, Instant::ZERO),
            Verdict::Forward { .. }
        ));
    }
    let new = std::env::var("SIDESTEP_INSNS_NEW").is_ok_and(|v| v == "1");
    let aim: fn(&mut [u8], &[u8; 14], u32) = if new { aim_new } else { aim };
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut fresh = 1 << 20;
    let mut next = || {
        if new {
            fresh += 1;
            return fresh;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % u64::from(flows)) as u32
    };
    let mut verdicts = [Verdict::Local; LANES];
    let mut forwarded = 0;
    for _ in 0..rounds {
        for lane in lanes.iter_mut() {
            aim(lane, &eth, next());
        }
        let mut frames: Vec<RxFrame<'_>> = lanes
            .iter_mut()
            .map(|buf| RxFrame {
                buf,
                head: HEAD,
                len: FRAME_LEN,
            })
            .collect();
        burst(&mut f, &mut frames, &mut verdicts);
        forwarded += verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Forward { .. }))
            .count();
    }
    for _ in 0..rounds * LANES {
        aim(&mut lanes[0], &eth, next());
        if matches!(single(&mut f, &mut lanes[0]), Verdict::Forward { .. }) {
            forwarded += 1;
        }
    }
    assert_eq!(forwarded, 2 * rounds * LANES, "every packet is forwarded");
    println!("{} packets forwarded", black_box(forwarded));
}
