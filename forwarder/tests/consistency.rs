//! Consistency across balancers (issue 16, item 4): several Sidestep instances behind one ECMP
//! router must send every flow of a consistent VIP (`maglev`, `sh`) to the same backend, whichever
//! of them a packet reaches. Here two forwarders that differ in everything a config does not say
//! (interface address, MAC, flow-hash seed, flow-table size, the configs they ran before) see the
//! same 100 000 random 5-tuples; one of them has seen half of the flows open first (their SYNs),
//! the other sees only the mid-stream packets (ACKs, as after an ECMP move or the first
//! balancer's death), and the two must agree on every packet. Backends are told apart by the
//! destination MAC of the forwarded (dsr-l2) frame.

use std::net::Ipv4Addr;

use control::config::{Config, Mode, Scheduler, Vip, VipPort};
use forwarder::{Forwarder, Instant, Verdict};
use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
    IpProtocol, Ipv4Packet,
};

const HEAD: usize = forwarder::HEADROOM;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const TUPLES: usize = 100_000;
/// Weights of the backends `be0..`, unequal so that the weighted table is exercised.
const WEIGHTS: [u32; 7] = [1, 2, 3, 1, 1, 4, 2];

/// A balancer instance: what differs between two of them beside the config they share.
struct Instance {
    address: &'static str,
    mac: [u8; 6],
    capacity: usize,
    seed: Option<u64>,
}

const A: Instance = Instance {
    address: "10.77.0.2/24",
    mac: [0x02, 0x5e, 0, 0, 0, 0x0a],
    capacity: 1 << 18,
    seed: Some(0x1234_5678_9abc_def0),
};
const B: Instance = Instance {
    address: "10.77.0.3/24",
    mac: [0x02, 0x5e, 0, 0, 0, 0x0b],
    capacity: 1 << 17,
    seed: None,
};

fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 21 + i as u8)
}

/// The MAC the test gives backend `i` (its index in the last byte, to read it back).
fn backend_mac(i: usize) -> [u8; 6] {
    [0x02, 0xbe, 0, 0, 0, i as u8]
}

/// The config the balancers share, with backends `backends` (indices into [`WEIGHTS`]), on
/// `instance`'s interface address.
fn config(instance: &Instance, scheduler: Scheduler, backends: &[usize], version: u64) -> Config {
    let mut vip = Vip::builder("web", "10.77.0.100", VipPort::One(80))
        .mode(Mode::DsrL2)
        .scheduler(scheduler);
    for &i in backends {
        vip = vip.backend(&format!("be{i}"), backend_addr(i), WEIGHTS[i]);
    }
    let c = Config::builder()
        .version(version)
        .address(instance.address)
        .vip(vip.build())
        .build();
    c.validate().expect("the test config is valid");
    c
}

fn own(instance: &Instance) -> Ipv4Addr {
    instance.address[..instance.address.len() - 3]
        .parse()
        .expect("an address")
}

/// A forwarder of `instance` on `config`, every backend resolved by an ARP reply.
fn start(instance: &Instance, config: &Config) -> Forwarder {
    let mut f = match instance.seed {
        Some(seed) => Forwarder::with_seed(config, instance.mac, instance.capacity, seed),
        None => Forwarder::new(config, instance.mac, instance.capacity),
    };
    resolve(&mut f, instance);
    f
}

fn resolve(f: &mut Forwarder, instance: &Instance) {
    for i in 0..WEIGHTS.len() {
        let mut buf = vec![0u8; 2048];
        let len = 60;
        let mut eth = EthernetFrame::new_unchecked(&mut buf[HEAD..HEAD + len]);
        eth.set_dst_addr(EthernetAddress(instance.mac));
        eth.set_src_addr(EthernetAddress(backend_mac(i)));
        eth.set_ethertype(EthernetProtocol::Arp);
        let mut p = ArpPacket::new_unchecked(&mut buf[HEAD + 14..HEAD + 42]);
        p.set_hardware_type(ArpHardware::Ethernet);
        p.set_protocol_type(EthernetProtocol::Ipv4);
        p.set_hardware_len(6);
        p.set_protocol_len(4);
        p.set_operation(ArpOperation::Reply);
        p.set_source_hardware_addr(&backend_mac(i));
        p.set_source_protocol_addr(&backend_addr(i).octets());
        p.set_target_hardware_addr(&instance.mac);
        p.set_target_protocol_addr(&own(instance).octets());
        f.process(&mut buf, HEAD, len, Instant::ZERO);
    }
}

/// A client's TCP 5-tuple to the VIP: (source address, source port).
type Tuple = (Ipv4Addr, u16);

/// `n` pseudo-random clients (xorshift from a fixed start: the same every run).
fn tuples(n: usize) -> Vec<Tuple> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Off-subnet clients (reached through the router), any port above 1023.
            let src = Ipv4Addr::from(0xC600_0000 | (x as u32 & 0x01FF_FFFF));
            let sport = 1024 + ((x >> 32) as u16 % (u16::MAX - 1024));
            (src, sport)
        })
        .collect()
}

/// Send the client's TCP segment with `flags` to `f` and return the backend (index) it was
/// forwarded to.
fn send(f: &mut Forwarder, instance: &Instance, (src, sport): Tuple, flags: u8) -> usize {
    let mut buf = vec![0u8; 256];
    let len = 14 + 20 + 20;
    let frame = &mut buf[HEAD..HEAD + len];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(EthernetAddress(instance.mac));
    // The router's MAC: every client packet reaches a balancer through it.
    eth.set_src_addr(EthernetAddress([0x02, 0x77, 0, 0, 0, 1]));
    eth.set_ethertype(EthernetProtocol::Ipv4);
    let tcp = &mut frame[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..34]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len(40);
    ip.set_dont_frag(true);
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::Tcp);
    ip.set_src_addr(src);
    ip.set_dst_addr(VIP);
    ip.fill_checksum();
    match f.process(&mut buf, HEAD, len, Instant::ZERO) {
        Verdict::Forward { head, .. } => {
            let dst = EthernetFrame::new_unchecked(&buf[head..head + 14])
                .dst_addr()
                .0;
            assert_eq!(dst[..5], backend_mac(0)[..5], "forwarded to a backend");
            usize::from(dst[5])
        }
        v => panic!("{src}:{sport} flags {flags:#x} not forwarded: {v:?}"),
    }
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// `a` has seen the first half of the flows open; then both see an ACK of every flow and must
/// send it to the same backend, which for the first half is the one `a` chose at the SYN.
/// Returns how many flows each backend got, to check the spread.
fn agree(a: &mut Forwarder, b: &mut Forwarder, all: &[Tuple]) -> Vec<u32> {
    let half = all.len() / 2;
    let first: Vec<usize> = all[..half].iter().map(|&t| send(a, &A, t, SYN)).collect();
    let mut spread = vec![0; WEIGHTS.len()];
    for (i, &t) in all.iter().enumerate() {
        let on_a = send(a, &A, t, ACK);
        let on_b = send(b, &B, t, ACK);
        assert_eq!(on_a, on_b, "flow {i} ({t:?}): the balancers disagree");
        if let Some(&chosen) = first.get(i) {
            assert_eq!(on_a, chosen, "flow {i} ({t:?}) left the backend of its SYN");
        }
        spread[on_a] += 1;
    }
    spread
}

#[test]
fn two_balancers_agree_on_every_flow() {
    let all = tuples(TUPLES);
    let backends: Vec<usize> = (0..WEIGHTS.len()).collect();
    for scheduler in [Scheduler::Maglev, Scheduler::Sh] {
        let mut a = start(&A, &config(&A, scheduler, &backends, 1));
        let mut b = start(&B, &config(&B, scheduler, &backends, 1));
        let spread = agree(&mut a, &mut b, &all);
        // Every backend takes part (sh hashes sources only, which are random here as well).
        assert!(spread.iter().all(|&n| n > 0), "{scheduler:?}: {spread:?}");
        if scheduler == Scheduler::Maglev {
            // Shares follow the weights (within 10% of the expected count).
            let total: u32 = WEIGHTS.iter().sum();
            for (i, &n) in spread.iter().enumerate() {
                let want = TUPLES as f64 * f64::from(WEIGHTS[i]) / f64::from(total);
                assert!((f64::from(n) - want).abs() < want * 0.1, "{spread:?}");
            }
        }
    }
}

#[test]
fn two_balancers_agree_with_a_backend_down_on_both() {
    let all = tuples(TUPLES);
    let backends: Vec<usize> = (0..WEIGHTS.len()).collect();
    for scheduler in [Scheduler::Maglev, Scheduler::Sh] {
        let mut a = start(&A, &config(&A, scheduler, &backends, 1));
        let mut b = start(&B, &config(&B, scheduler, &backends, 1));
        a.set_backend_up("web", "be2", false).unwrap();
        b.set_backend_up("web", "be2", false).unwrap();
        let spread = agree(&mut a, &mut b, &all);
        assert_eq!(spread[2], 0, "{scheduler:?}: the down backend got flows");
        // When it comes back, both agree again on the flows neither has a flow entry for.
        a.set_backend_up("web", "be2", true).unwrap();
        b.set_backend_up("web", "be2", true).unwrap();
        let fresh = tuples(TUPLES + 1000)[TUPLES..].to_vec();
        for t in fresh {
            assert_eq!(send(&mut a, &A, t, ACK), send(&mut b, &B, t, ACK));
        }
    }
}

/// The table depends on the running config only: a balancer that ran other configs before
/// (other backends, so other slots and a different slot order) agrees with one that booted on
/// the final config.
#[test]
fn a_balancer_with_a_config_history_agrees_with_a_fresh_one() {
    let all = tuples(TUPLES / 4);
    let last = [0, 1, 3, 4, 5, 6];
    for scheduler in [Scheduler::Maglev, Scheduler::Sh] {
        let mut a = start(&A, &config(&A, scheduler, &last, 3));
        let mut b = start(&B, &config(&B, scheduler, &[6, 2, 1], 1));
        b.apply_config(&config(&B, scheduler, &[2, 5, 0, 1], 2), Instant::ZERO);
        b.apply_config(&config(&B, scheduler, &last, 3), Instant::ZERO);
        resolve(&mut b, &B);
        for &t in &all {
            assert_eq!(send(&mut a, &A, t, SYN), send(&mut b, &B, t, ACK), "{t:?}");
        }
    }
}
