//! Shards never share a flow (issue 21, item 5): with one forwarder per receive queue, the NIC's
//! RSS decides which forwarder sees a packet, and `forwarder::shard::shard_of` says what it will
//! decide. Here 20 000 TCP flows are opened (a SYN each) and continued (an ACK and a data
//! segment each) through two forwarders, every packet handed to the one `shard_of` names: every
//! flow must have exactly one entry, in its own shard's table, and every later packet of it must
//! find that entry there.

use control::config::Mode;
use forwarder::shard::shard_of;
use forwarder::{Forwarder, Instant, Verdict};

#[path = "../benches/setup/mod.rs"]
#[allow(dead_code)]
mod setup;
use setup::{config, frame, resolve_all, retarget_at, FRAME_LEN, HEAD, MAC, VIP};

const FLOWS: u32 = 20_000;
const SOURCES: u32 = 64;

/// Flow `k`'s packet with TCP `flags`: source `k % 64`, source port `1024 + k / 64`.
fn packet(k: u32, flags: u8) -> Vec<u8> {
    let mut buf = frame((k % SOURCES) as usize, VIP, 80, flags);
    let mut eth = [0u8; 14];
    eth.copy_from_slice(&buf[HEAD..HEAD + 14]);
    retarget_at(&mut buf, &eth, 34, 1024 + (k / SOURCES) as u16, None);
    buf
}

fn shard(buf: &[u8]) -> usize {
    shard_of(&buf[HEAD..HEAD + FRAME_LEN], 2)
}

#[test]
fn two_shards_never_share_a_flow() {
    let mut shards: Vec<Forwarder> = (0..2)
        .map(|_| {
            let mut f = Forwarder::new(&config(Mode::DsrL2), MAC, 4 * FLOWS as usize);
            resolve_all(&mut f, Instant::ZERO);
            f
        })
        .collect();
    let mut owner = Vec::new();
    for k in 0..FLOWS {
        let mut syn = packet(k, 0x02);
        let s = shard(&syn);
        owner.push(s);
        let v = shards[s].process(&mut syn, HEAD, FRAME_LEN, Instant::ZERO);
        assert!(matches!(v, Verdict::Forward { .. }), "flow {k}: {v:?}");
    }
    let per_shard = |s: usize| owner.iter().filter(|&&o| o == s).count();
    for (s, f) in shards.iter().enumerate() {
        assert_eq!(
            f.flow_count(),
            per_shard(s),
            "shard {s} holds its flows only"
        );
        // The hash spreads the flows (a fixed set, so this is exact, not statistical).
        assert!(
            per_shard(s) > FLOWS as usize * 2 / 5,
            "shard {s} got {} of {FLOWS}",
            per_shard(s)
        );
    }
    // Later packets of each flow (other flags, so other bytes than the SYN) go to the same shard
    // and find the flow there: no shard makes a second entry.
    for k in 0..FLOWS {
        for flags in [0x10, 0x18] {
            let mut p = packet(k, flags);
            let s = shard(&p);
            assert_eq!(s, owner[k as usize], "flow {k} moved shards");
            let v = shards[s].process(&mut p, HEAD, FRAME_LEN, Instant::ZERO);
            assert!(matches!(v, Verdict::Forward { .. }), "flow {k}: {v:?}");
        }
    }
    let created: u64 = shards.iter().map(|f| f.counters().flows_created).sum();
    assert_eq!(
        created,
        u64::from(FLOWS),
        "one entry per flow across the shards"
    );
    assert_eq!(
        shards.iter().map(Forwarder::flow_count).sum::<usize>(),
        FLOWS as usize
    );
}
