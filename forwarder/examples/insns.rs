//! Driver for counting instructions per packet with callgrind (see BENCHMARKS.md): the bench's
//! config, `SIDESTEP_INSNS_FLOWS` (default 1 000) established flows (each opened with a SYN)
//! visited in random order, `SIDESTEP_INSNS_ROUNDS` (default 100) bursts of 32 frames through
//! `process_burst` and as many frames through `process`. `SIDESTEP_INSNS_MODE=dsr-l3` for
//! IP-in-IP (ip6ip6), `SIDESTEP_INSNS_FAMILY=ipv6` for IPv6 traffic; `SIDESTEP_INSNS_NEW=1`
//! sends SYNs of never-seen flows instead (source and destination port counting up), into a
//! table of `max(2 x flows, 4096)` entries that fills up and then evicts.
//!
//!     cargo build --release -p forwarder --example insns
//!     valgrind --tool=callgrind --toggle-collect=insns::burst --toggle-collect=insns::single \
//!         target/release/examples/insns
//!
//! The difference between two round counts, over the extra packets, is the cost per packet.

use std::hint::black_box;

use control::config::Mode;
use forwarder::{Forwarder, Instant, RxFrame, Verdict};

#[path = "../benches/setup/mod.rs"]
mod setup;
use setup::{
    config, config6, frame, frame6, resolve_all, resolve_all6, retarget_at, FRAME6_LEN, FRAME_LEN,
    HEAD, MAC, VIP,
};

const LANES: usize = 32;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Make `buf` (TCP header at `l4`) carry established flow `k` (source port `k`).
fn aim(buf: &mut [u8], eth: &[u8; 14], l4: usize, k: u32) {
    retarget_at(buf, eth, l4, k as u16, None);
}

/// Make `buf` (a SYN) carry new flow `k`: source port `k`'s low half, destination port its high
/// half plus one.
fn aim_new(buf: &mut [u8], eth: &[u8; 14], l4: usize, k: u32) {
    retarget_at(buf, eth, l4, k as u16, Some((k >> 16) as u16 + 1));
}

#[inline(never)]
fn burst(f: &mut Forwarder, frames: &mut [RxFrame<'_>], verdicts: &mut [Verdict]) {
    f.process_burst(frames, verdicts, Instant::ZERO);
}

#[inline(never)]
fn single(f: &mut Forwarder, buf: &mut [u8], len: usize) -> Verdict {
    f.process(buf, HEAD, len, Instant::ZERO)
}

fn main() {
    let flows = env("SIDESTEP_INSNS_FLOWS", 1000) as u32;
    let rounds = env("SIDESTEP_INSNS_ROUNDS", 100);
    let mode = match std::env::var("SIDESTEP_INSNS_MODE").as_deref() {
        Ok("dsr-l3") => Mode::DsrL3,
        _ => Mode::DsrL2,
    };
    let v6 = std::env::var("SIDESTEP_INSNS_FAMILY").is_ok_and(|v| v == "ipv6");
    let cfg = if v6 { config6(mode) } else { config(mode) };
    let mut f = Forwarder::new(&cfg, MAC, (flows as usize * 2).max(4096));
    if v6 {
        resolve_all6(&mut f, Instant::ZERO);
    } else {
        resolve_all(&mut f, Instant::ZERO);
    }
    let (l4, len) = if v6 {
        (54, FRAME6_LEN)
    } else {
        (34, FRAME_LEN)
    };
    let frame = |flags| {
        if v6 {
            frame6(0, 80, flags)
        } else {
            frame(0, VIP, 80, flags)
        }
    };
    let mut lanes: Vec<Vec<u8>> = (0..LANES).map(|_| frame(0x10)).collect();
    let mut eth = [0u8; 14];
    eth.copy_from_slice(&lanes[0][HEAD..HEAD + 14]);
    // Each flow opens with a SYN (a maglev VIP's ACK that misses the table makes no entry, so
    // ACK-opened flows would measure the stateless hash path instead of table hits).
    let mut opener = frame(0x02);
    for k in 0..flows {
        aim(&mut opener, &eth, l4, k);
        assert!(matches!(
            f.process(&mut opener, HEAD, len, Instant::ZERO),
            Verdict::Forward { .. }
        ));
    }
    let new = std::env::var("SIDESTEP_INSNS_NEW").is_ok_and(|v| v == "1");
    if new {
        lanes = (0..LANES).map(|_| frame(0x02)).collect();
    }
    let aim: fn(&mut [u8], &[u8; 14], usize, u32) = if new { aim_new } else { aim };
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
            aim(lane, &eth, l4, next());
        }
        let mut frames: Vec<RxFrame<'_>> = lanes
            .iter_mut()
            .map(|buf| RxFrame {
                buf,
                head: HEAD,
                len,
            })
            .collect();
        burst(&mut f, &mut frames, &mut verdicts);
        forwarded += verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Forward { .. }))
            .count();
    }
    for _ in 0..rounds * LANES {
        aim(&mut lanes[0], &eth, l4, next());
        if matches!(single(&mut f, &mut lanes[0], len), Verdict::Forward { .. }) {
            forwarded += 1;
        }
    }
    assert_eq!(forwarded, 2 * rounds * LANES, "every packet is forwarded");
    println!("{} packets forwarded", black_box(forwarded));
}
