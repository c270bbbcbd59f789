//! The burst form against the single form: the same frames through `process_frames` on one
//! forwarder and through `process`, one at a time, on a twin, must give equal verdicts, equal
//! bytes in every buffer, equal counters, hints and `poll` output. The twins' tables hold more
//! than `DIRECT_MAX_FLOWS` flows, so the burst goes through its prefetch pass (classify a round
//! ahead, then act). Both live across inputs, fed identically, so they must stay identical.
#![no_main]

mod common;

use std::net::Ipv4Addr;
use std::sync::Mutex;

use forwarder::{Forwarder, Instant, RxFrame, Verdict, DIRECT_MAX_FLOWS};
use libfuzzer_sys::fuzz_target;

/// The client of the seeds.
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
/// The kernel's largest burst.
const BURST: usize = 32;
/// Flows kept in the tables: enough above `DIRECT_MAX_FLOWS` that the burst always prefetches.
const FLOWS: u16 = DIRECT_MAX_FLOWS as u16 + 904;

struct Twins {
    burst: Forwarder,
    single: Forwarder,
    now_ms: u64,
    inputs: u64,
    /// The packet buffers of each twin, reused (allocating them per input dominated the run
    /// time).
    bufs: [Vec<Vec<u8>>; 2],
}

/// Established flows from the seeds' client, source ports 1 and up, to the dsr-l2 VIP: the
/// seeds' frames (source port 1 and others) hit them. Refreshing them renews their timeouts.
fn fill(f: &mut Forwarder, now: Instant) {
    let mut frame = [0u8; 64 + 54];
    let t = &mut frame[64..];
    t[..6].copy_from_slice(&common::MAC);
    t[6..12].copy_from_slice(&[0x02, 0xcc, 0, 0, 0, 9]);
    t[12..14].copy_from_slice(&[0x08, 0x00]);
    t[14..24].copy_from_slice(&[0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 60, 6]);
    t[26..30].copy_from_slice(&CLIENT.octets());
    t[30..34].copy_from_slice(&common::VIP.octets());
    // The header checksum, by hand: the ones' complement of the sum of its words.
    let sum: u32 = (0..10)
        .map(|i| u32::from(u16::from_be_bytes([t[14 + 2 * i], t[15 + 2 * i]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let check = !(((folded & 0xffff) + (folded >> 16)) as u16);
    t[24..26].copy_from_slice(&check.to_be_bytes());
    t[36..38].copy_from_slice(&80u16.to_be_bytes());
    t[46] = 5 << 4;
    t[47] = 0x10; // ACK: an established flow (a new one is made all the same)
    for sport in 1..=FLOWS {
        frame[64 + 34..64 + 36].copy_from_slice(&sport.to_be_bytes());
        // The dsr-l2 rewrite of the previous round changed the destination MAC.
        frame[64..70].copy_from_slice(&common::MAC);
        let _ = f.process(&mut frame, 64, 54, now);
    }
}

static TWINS: Mutex<Option<Twins>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Some((head, frames)) = common::frames(data, BURST) else {
        return;
    };
    let mut guard = TWINS.lock().unwrap_or_else(|e| e.into_inner());
    let t = guard.get_or_insert_with(|| {
        let mut f = Forwarder::new(&common::config(), common::MAC, 4 * usize::from(FLOWS));
        common::resolve(&mut f, Instant::ZERO);
        fill(&mut f, Instant::ZERO);
        Twins {
            burst: f.clone(),
            single: f,
            now_ms: 0,
            inputs: 0,
            bufs: [0, 1].map(|_| vec![vec![0; common::BUF_LEN]; BURST]),
        }
    });
    t.now_ms += 50;
    t.inputs += 1;
    let now = Instant::from_millis(t.now_ms);
    // Now and then the next hops answer again (in between they may be forgotten, and frames
    // wait for ARP); both twins the same way.
    if t.inputs.is_multiple_of(512) {
        common::resolve(&mut t.burst, now);
        common::resolve(&mut t.single, now);
    }
    if t.burst.flow_count() <= DIRECT_MAX_FLOWS + 64 {
        // Flows expire as time goes on: renew them.
        fill(&mut t.burst, now);
        fill(&mut t.single, now);
    }
    assert!(t.burst.flow_count() > DIRECT_MAX_FLOWS);

    let [a, b] = &mut t.bufs;
    let mut lens = [0; BURST];
    for ((x, y), (frame, n)) in a
        .iter_mut()
        .zip(b.iter_mut())
        .zip(frames.iter().zip(&mut lens))
    {
        *n = common::place(x, head, frame);
        common::place(y, head, frame);
    }
    let count = frames.len();
    let mut lent: Vec<RxFrame<'_>> = a[..count]
        .iter_mut()
        .zip(lens)
        .map(|(buf, len)| RxFrame { buf, head, len })
        .collect();
    let mut verdicts = [Verdict::Queued; BURST];
    t.burst
        .process_burst(&mut lent, &mut verdicts[..count], now);
    for (i, (buf, v)) in b[..count].iter_mut().zip(&verdicts).enumerate() {
        let single = t.single.process(buf, head, lens[i], now);
        assert_eq!(single, *v, "frame {i}");
        if let Verdict::Forward { head, len } | Verdict::Reply { head, len } = single {
            assert!(head + len <= buf.len());
        }
    }
    for (i, (x, y)) in a[..count].iter().zip(&b[..count]).enumerate() {
        assert!(x == y, "frame {i}: different bytes");
    }
    assert_eq!(t.burst.counters(), t.single.counters());
    assert_eq!(
        common::drain_hints(&mut t.burst),
        common::drain_hints(&mut t.single)
    );
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    t.burst.poll(now, &mut |f| out_a.push(f.to_vec()));
    t.single.poll(now, &mut |f| out_b.push(f.to_vec()));
    assert_eq!(out_a, out_b);
    assert_eq!(t.burst.flow_count(), t.single.flow_count());
});
