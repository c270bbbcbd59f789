//! Property tests: flow affinity, weight splits, Maglev's small disruption, exact IP-in-IP
//! round trips, a bounded flow table, and no panic on arbitrary bytes.

use super::classify::ipv4_checksum_ok;
use super::tests::*;
use super::*;
use crate::config::{Mode, Protocol, Scheduler};
use alloc::collections::BTreeMap;
use proptest::prelude::*;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};

fn sched_strategy() -> impl Strategy<Value = Scheduler> {
    prop::sample::select(Scheduler::ALL.to_vec())
}

/// A TCP packet of flow `id` (source address and port derived from it).
fn flow_pkt(id: u32, flags: u8) -> Pkt {
    let mut p = Pkt::tcp((id % 50_000) as u16 + 1024, flags);
    p.src = Ipv4Addr::from(0xC000_0000 + id / 50_000 * 7919 + id % 13);
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The header checksum check agrees with smoltcp's on any 20-byte header (IHL 5), with a
    /// correct checksum, an arbitrary one, or one that is one off.
    #[test]
    fn checksum_check_agrees_with_smoltcp(mut h in prop::array::uniform20(any::<u8>()), fix in 0u8..3) {
        h[0] = (h[0] & 0xf0) | 5;
        if fix > 0 {
            Ipv4Packet::new_unchecked(&mut h[..]).fill_checksum();
            if fix == 2 {
                h[11] = h[11].wrapping_add(1);
            }
        }
        prop_assert_eq!(
            ipv4_checksum_ok(&h),
            Ipv4Packet::new_unchecked(&h[..]).verify_checksum()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every packet of a flow goes to one backend, whatever the scheduler and interleaving.
    #[test]
    fn every_packet_of_a_flow_goes_to_one_backend(
        sched in sched_strategy(),
        weights in prop::collection::vec(1u32..5, 1..6),
        packets in prop::collection::vec((0u32..40, prop::sample::select(vec![0x02u8, 0x10, 0x18, 0x11])), 1..400),
    ) {
        let mut f = ready(&config(Mode::DsrL2, sched, &weights));
        let mut owner = BTreeMap::new();
        for (id, flags) in packets {
            let b = send(&mut f, &flow_pkt(id, flags), Instant::ZERO).unwrap();
            prop_assert_eq!(*owner.entry(id).or_insert(b), b);
        }
    }

    /// IP-in-IP output decapsulates to exactly the input, fragmented or not.
    #[test]
    fn ipip_decapsulates_to_the_exact_input(
        payload in 0usize..1460,
        df in any::<bool>(),
        udp in any::<bool>(),
        ttl in 2u8..=255,
        sport in 1u16..,
        ident in any::<u16>(),
    ) {
        let mut c = config(Mode::DsrL3, Scheduler::Maglev, &[1, 1]);
        let mut p = if udp { Pkt::udp(sport, 80) } else { Pkt::tcp(sport, 0x18) };
        if udp {
            c.vips[0].protocol = Protocol::Udp;
        }
        let mut f = ready(&c);
        p.payload = payload;
        p.df = df;
        p.ttl = ttl;
        p.ident = ident;
        let (mut buf, len) = p.build();
        let inner = buf[HEAD + 14..HEAD + len].to_vec();
        let v = f.process(&mut buf, HEAD, len, Instant::ZERO);
        let too_big = inner.len() + 20 > 1500;
        match v {
            Verdict::Forward { head, len } => {
                prop_assert!(!(too_big && df));
                let mut frames = vec![buf[head..head + len].to_vec()];
                f.poll(Instant::ZERO, &mut |fr| {
                    if EthernetFrame::new_unchecked(fr).ethertype() == EthernetProtocol::Ipv4 {
                        frames.push(fr.to_vec());
                    }
                });
                prop_assert_eq!(frames.len(), if too_big { 2 } else { 1 });
                prop_assert_eq!(reassemble(&frames), inner);
            }
            Verdict::Reply { .. } => prop_assert!(too_big && df),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    /// A flood of new 5-tuples never grows the table, and connection counts stay exact.
    #[test]
    fn table_never_exceeds_capacity(seed in any::<u32>(), n in 1000usize..6000) {
        let c = config(Mode::DsrL2, Scheduler::Lc, &[1, 1, 1]);
        let mut f = Forwarder::with_seed(&c, OUR_MAC, 1024, u64::from(seed));
        resolve(&mut f, &[backend_addr(0), backend_addr(1), backend_addr(2)]);
        for i in 0..n as u32 {
            let mut p = flow_pkt(i.wrapping_mul(2_654_435_761) ^ seed, 0x02);
            p.sport = (i as u16) | 1;
            prop_assert!(send(&mut f, &p, Instant::from_millis(u64::from(i))).is_ok());
            prop_assert!(f.flow_count() <= f.flow_capacity());
        }
        prop_assert_eq!(f.flow_capacity(), 1024);
        let active: u64 = f.stats()[0].flows_active;
        prop_assert_eq!(active, f.flow_count() as u64);
        let created = f.counters().flows_created;
        let evicted = f.counters().drop_count(DropReason::FlowEvicted);
        prop_assert_eq!(created - evicted, f.flow_count() as u64);
    }

    /// Arbitrary bytes never panic, wherever the frame sits in the buffer.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        head in 0usize..100,
        extra in 0usize..20,
    ) {
        let mut f = ready(&config(Mode::DsrL3, Scheduler::Wrr, &[1, 2]));
        let mut buf = vec![0u8; 256];
        let n = bytes.len().min(256 - head);
        buf[head..head + n].copy_from_slice(&bytes[..n]);
        let _ = f.process(&mut buf, head, n + extra, Instant::ZERO);
        // The same bytes as a valid-looking Ethernet/IPv4 frame to the VIP.
        let (mut good, len) = Pkt::tcp(1, 2).build();
        let m = bytes.len().min(len - 34);
        good[HEAD + 34..HEAD + 34 + m].copy_from_slice(&bytes[..m]);
        let _ = f.process(&mut good, HEAD, len, Instant::ZERO);
        f.poll(Instant::from_secs(5), &mut |_| {});
    }
}

/// wrr splits new flows by weight within 1% over 100 000 flows.
#[test]
fn wrr_splits_by_weight_within_one_percent() {
    let weights = [1u32, 2, 3, 4, 10];
    let c = config(Mode::DsrL2, Scheduler::Wrr, &weights);
    let mut f = Forwarder::new(&c, OUR_MAC, 1 << 18);
    resolve(
        &mut f,
        &(0..weights.len()).map(backend_addr).collect::<Vec<_>>(),
    );
    let mut n = [0u64; 5];
    let flows = 100_000u32;
    for i in 0..flows {
        n[send(&mut f, &flow_pkt(i, 0x02), Instant::ZERO).unwrap()] += 1;
    }
    let total: u32 = weights.iter().sum();
    for (i, &w) in weights.iter().enumerate() {
        let expected = f64::from(flows) * f64::from(w) / f64::from(total);
        assert!(
            (n[i] as f64 - expected).abs() <= 0.01 * expected,
            "backend {i}: {} vs {expected}",
            n[i]
        );
    }
    assert_eq!(f.counters().drop_count(DropReason::FlowEvicted), 0);
}

/// Under Maglev, removing 1 of 10 backends moves at most 2% of the keys that were not on it,
/// and no flow already in the flow table moves at all.
#[test]
fn maglev_removal_moves_few_keys_and_no_established_flow() {
    let all = config(Mode::DsrL2, Scheduler::Maglev, &[1; 10]);
    let mut less = all.clone();
    less.version = 2;
    let removed = 3;
    less.vips[0].backends.remove(removed);
    let keys = 100_000u32;
    let mut f = Forwarder::new(&all, OUR_MAC, 1 << 18);
    resolve(&mut f, &(0..10).map(backend_addr).collect::<Vec<_>>());
    let before: Vec<usize> = (0..keys)
        .map(|i| send(&mut f, &flow_pkt(i, 0x02), Instant::ZERO).unwrap())
        .collect();
    // Established flows: none moves, except those on the removed backend.
    f.apply_config(&less, Instant::ZERO);
    for (i, &b) in before.iter().enumerate() {
        let now = send(&mut f, &flow_pkt(i as u32, 0x10), Instant::ZERO).unwrap();
        if b == removed {
            assert_ne!(now, removed);
        } else {
            assert_eq!(now, b, "flow {i} moved");
        }
    }
    // New flows (an empty table) on the smaller set: few keys move.
    let mut fresh = Forwarder::new(&less, OUR_MAC, 1 << 18);
    resolve(&mut fresh, &(0..10).map(backend_addr).collect::<Vec<_>>());
    let mut kept = 0u32;
    let mut moved = 0u32;
    for (i, &b) in before.iter().enumerate() {
        if b == removed {
            continue;
        }
        kept += 1;
        if send(&mut fresh, &flow_pkt(i as u32, 0x02), Instant::ZERO).unwrap() != b {
            moved += 1;
        }
    }
    let share = f64::from(moved) / f64::from(kept);
    assert!(share <= 0.02, "{moved} of {kept} keys moved ({share:.4})");
}
