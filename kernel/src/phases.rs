//! Boot phases and their durations: each phase ends with [`end`], and [`report`] logs them all
//! in one line once the image is ready, so that a boot log (and `qemu/bench`) shows where the
//! time from kernel entry to `ready` went.

use core::fmt::Write;

use heapless::Vec;
use log::info;
use spin::Mutex;

use crate::clock;

/// Phases a boot has (more are dropped, never a panic).
const PHASES_MAX: usize = 12;

/// Each phase's name and the nanoseconds since boot at its end, in order.
static PHASES: Mutex<Vec<(&'static str, u64), PHASES_MAX>> = Mutex::new(Vec::new());

/// The phase `name` ends now.
pub fn end(name: &'static str) {
    let _ = PHASES.lock().push((name, clock::nanos_since_boot()));
}

/// Log `boot: kernel entry to ready T ms (phase a ms, phase b ms, ...)`.
pub fn report() {
    let phases = PHASES.lock();
    let mut line = heapless::String::<256>::new();
    let mut last = 0;
    for (i, &(name, at)) in phases.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let ms = at.saturating_sub(last);
        let _ = write!(
            line,
            "{sep}{name} {}.{:03} ms",
            ms / 1_000_000,
            (ms / 1000) % 1000
        );
        last = at;
    }
    info!(
        "boot: kernel entry to ready {}.{:03} ms ({line})",
        last / 1_000_000,
        (last / 1000) % 1000
    );
}
