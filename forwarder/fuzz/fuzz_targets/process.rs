//! Arbitrary frames (and the offsets they sit at) through `Forwarder::process` and `poll`: no
//! input may panic, and every verdict must point inside the buffer. One forwarder lives across
//! all inputs (building one, with its Maglev tables, costs far more than an input), so its
//! state (flows, fragments, neighbours, the ARP queue, hints) is part of what is fuzzed; time
//! only moves forward. A crash may therefore depend on the inputs before it: run the corpus
//! again with the crashing input last to reproduce it.
#![no_main]

mod common;

use std::sync::Mutex;

use forwarder::{arp, Forwarder, Instant, Verdict};
use libfuzzer_sys::fuzz_target;

struct State {
    f: Forwarder,
    now_ms: u64,
    inputs: u64,
    /// The packet buffer, reused (an allocation per frame dominated the run time).
    buf: Vec<u8>,
}

/// Frames an input may hold (a receive burst); the rest are ignored, so that the time per input
/// stays bounded however long the fuzzer makes it.
const FRAMES_MAX: usize = 32;

static STATE: Mutex<Option<State>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Some((head, frames)) = common::frames(data, FRAMES_MAX) else {
        return;
    };
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let s = guard.get_or_insert_with(|| {
        let mut f = Forwarder::new(&common::config(), common::MAC, 1024);
        common::resolve(&mut f, Instant::ZERO);
        State {
            f,
            now_ms: 0,
            inputs: 0,
            buf: vec![0; common::BUF_LEN],
        }
    });
    s.inputs += 1;
    if s.inputs.is_multiple_of(64) {
        // The next hops answer again now and then; in between they may be forgotten.
        common::resolve(&mut s.f, Instant::from_millis(s.now_ms));
    }
    for frame in frames {
        let buf = &mut s.buf;
        let n = common::place(buf, head, frame);
        s.now_ms += 700;
        let now = Instant::from_millis(s.now_ms);
        match s.f.process(buf, head, n, now) {
            Verdict::Forward { head, len } | Verdict::Reply { head, len } => {
                assert!(head + len <= buf.len());
                let _ = arp::is_arp_reply(&buf[head..head + len]);
            }
            _ => {}
        }
        s.f.poll(now, &mut |out| assert!(out.len() <= 2048));
        common::drain_hints(&mut s.f);
    }
});
