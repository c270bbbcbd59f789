//! A periodic one-line summary of the counters on the serial console, when they changed: the
//! operator's view of a balancer that has no management port.

use crate::clock;
use crate::idle::{Idle, Mode as IdleMode};
use alloc::format;
use alloc::string::String;
use drivers::Nic;
use forwarder::{DropReason, Forwarder, Instant};
use log::info;

/// Milliseconds between two stats lines at most.
const STATS_EVERY_MS: u64 = 5_000;

/// When the last line was written and what it said.
#[derive(Default)]
pub struct StatsLog {
    next: u64,
    last: u64,
    /// `Idle::napped_cycles` and the TSC at the last line.
    napped_cycles: u64,
    tsc: u64,
}

impl StatsLog {
    /// Log a line if one is due and the NIC's counts moved since the last one.
    pub fn maybe_log<N: Nic>(&mut self, now: Instant, fwd: &Forwarder, nic: &N, idle: &Idle) {
        if now.millis() < self.next {
            return;
        }
        self.next = now.millis() + STATS_EVERY_MS;
        // Share of the interval spent napping (only when the idle policy naps).
        let napped = idle.napped_cycles - self.napped_cycles;
        let tsc = clock::rdtsc();
        let elapsed = tsc.wrapping_sub(self.tsc).max(1);
        self.napped_cycles = idle.napped_cycles;
        self.tsc = tsc;
        let c = fwd.counters();
        let n = nic.stats();
        let total = n.rx_packets + n.tx_packets;
        if total == self.last {
            return;
        }
        self.last = total;
        let mut drops = String::new();
        for reason in DropReason::ALL {
            let count = c.drop_count(reason);
            if count > 0 {
                drops.push_str(&format!(" {}={}", reason.name(), count));
            }
        }
        let napping = match idle.mode() {
            IdleMode::Nap => format!(" napping={}%", napped * 100 / elapsed),
            IdleMode::Busy => String::new(),
        };
        info!(
            "stats: rx={} tx={} forwarded={} local={} flows={}{} drops:{}",
            n.rx_packets,
            n.tx_packets,
            c.forwarded,
            c.local,
            fwd.flow_count(),
            napping,
            if drops.is_empty() { " none" } else { &drops }
        );
    }
}
