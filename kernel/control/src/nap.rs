//! What the poll loop does when there is nothing to do: spin (busy polling) or nap, and for how
//! long. The kernel owns the halting (a local APIC one-shot timer and `hlt`); this decides.
//!
//! On a dedicated machine the loop owns its core and busy polling gives the lowest latency: a
//! frame is picked up the moment the NIC writes it. Under a hypervisor the core is a host thread
//! that competes with the threads emulating the NIC (QEMU's main loop reads the tap, fills the
//! receive ring and writes what we transmit), and a guest that spins while its rings are empty
//! takes CPU time from exactly the thread that would fill them (kernel/control/BENCHMARKS.md has
//! the measurement). So [`Choice::of`] picks from the config's `interface.poll`: `busy`, `nap`,
//! or `auto` (the default), which naps under a hypervisor and spins on bare metal.
//!
//! When napping, [`Naps`] keeps the bookkeeping: the loop naps once it has found no work for
//! [`SPIN_US`], for [`NAP_MIN_US`] to [`NAP_MAX_US`] adapted to the traffic. The NIC keeps
//! receiving into its ring meanwhile (256 descriptors hold more than a millisecond at 200 k
//! frames/s), and the next round takes the frames that arrived as one burst.

use crate::config::Polling;

/// Work-free time after which the loop naps.
pub const SPIN_US: u64 = 10;
/// Shortest nap. A nap after which more frames were waiting than [`BACKLOG`] halves the next
/// one, down to this, so the receive ring (256 descriptors) never fills while the loop sleeps.
pub const NAP_MIN_US: u64 = 20;
/// Longest nap. A nap that was followed by no frame at all doubles the next one, up to this (an
/// idle balancer wakes about 1 000 times a second).
pub const NAP_MAX_US: u64 = 1000;
/// Frames received between two naps above which the next nap is halved.
pub const BACKLOG: u64 = 64;

/// How the poll loop waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Never stop polling.
    Busy,
    /// Halt for a short while after a stretch without work.
    Nap,
}

/// The mode the config asks for on this machine, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// `interface.poll = "busy"`.
    Busy,
    /// `auto` on bare metal.
    BareMetal,
    /// `interface.poll = "nap"`.
    Nap,
    /// `auto` under a hypervisor.
    Hypervisor,
}

impl Choice {
    /// The choice for `policy` on a machine that is `under_hypervisor` or not.
    pub const fn of(policy: Polling, under_hypervisor: bool) -> Choice {
        match policy {
            Polling::Busy => Choice::Busy,
            Polling::Nap => Choice::Nap,
            Polling::Auto if under_hypervisor => Choice::Hypervisor,
            Polling::Auto => Choice::BareMetal,
        }
    }

    /// The mode chosen (napping still needs a timer the kernel may fail to set up).
    pub const fn mode(self) -> Mode {
        match self {
            Choice::Busy | Choice::BareMetal => Mode::Busy,
            Choice::Nap | Choice::Hypervisor => Mode::Nap,
        }
    }

    /// Why, for the boot log.
    pub const fn why(self) -> &'static str {
        match self {
            Choice::Busy => "interface.poll = \"busy\"",
            Choice::BareMetal => "bare metal; interface.poll = \"nap\" to nap",
            Choice::Nap => "interface.poll = \"nap\"",
            Choice::Hypervisor => "under a hypervisor",
        }
    }
}

/// When to nap and for how long. Times are in ticks of the caller's clock (the kernel's TSC),
/// nap lengths in microseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naps {
    /// Ticks without work before a nap.
    spin: u64,
    last_work: u64,
    /// Length of the next nap, adapted between [`NAP_MIN_US`] and [`NAP_MAX_US`].
    nap_us: u64,
    /// Frames received since the last nap ended.
    since_nap: u64,
    /// Naps taken (the first one has no previous nap to adapt from).
    naps: u64,
}

impl Naps {
    /// A loop that worked last at `now`, and naps after `spin` ticks without work.
    pub const fn new(spin: u64, now: u64) -> Naps {
        Naps {
            spin,
            last_work: now,
            nap_us: NAP_MIN_US,
            since_nap: 0,
            naps: 0,
        }
    }

    /// The loop did something at `now`: received `frames`, or transmitted.
    #[inline]
    pub fn worked(&mut self, now: u64, frames: usize) {
        self.last_work = now;
        self.since_nap += frames as u64;
    }

    /// Whether the loop, finding nothing to do at `now`, has spun long enough to nap.
    #[inline]
    pub fn should_nap(&self, now: u64) -> bool {
        now.wrapping_sub(self.last_work) > self.spin
    }

    /// The length of the nap about to be taken, in microseconds: the last one's, doubled after
    /// a nap that no frame followed, halved after one that left more than [`BACKLOG`] waiting.
    pub fn nap_us(&mut self) -> u64 {
        if self.naps > 0 {
            self.nap_us = if self.since_nap == 0 {
                (self.nap_us * 2).min(NAP_MAX_US)
            } else if self.since_nap > BACKLOG {
                (self.nap_us / 2).max(NAP_MIN_US)
            } else {
                self.nap_us
            };
        }
        self.nap_us
    }

    /// The nap ended at `now`. A nap is not work, but the spin interval restarts: the frames
    /// that arrived meanwhile are taken by the next round, and only if that round is empty does
    /// the loop nap again.
    pub fn napped(&mut self, now: u64) {
        self.naps += 1;
        self.since_nap = 0;
        self.last_work = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_naps_only_under_a_hypervisor() {
        assert_eq!(Choice::of(Polling::Auto, true), Choice::Hypervisor);
        assert_eq!(Choice::of(Polling::Auto, false), Choice::BareMetal);
        assert_eq!(Choice::of(Polling::Busy, true).mode(), Mode::Busy);
        assert_eq!(Choice::of(Polling::Nap, false).mode(), Mode::Nap);
        assert_eq!(Choice::of(Polling::Auto, true).mode(), Mode::Nap);
        assert_eq!(Choice::of(Polling::Auto, false).mode(), Mode::Busy);
    }

    #[test]
    fn naps_after_spinning_without_work() {
        let mut n = Naps::new(100, 1_000);
        assert!(!n.should_nap(1_100));
        assert!(n.should_nap(1_101));
        n.worked(1_050, 0);
        assert!(!n.should_nap(1_150));
        // The clock may wrap.
        let n = Naps::new(100, u64::MAX - 10);
        assert!(!n.should_nap(50));
        assert!(n.should_nap(100));
    }

    /// Take a nap followed by `frames` and return the length of the one after it.
    fn after(n: &mut Naps, frames: usize) -> u64 {
        n.napped(0);
        n.worked(0, frames);
        n.nap_us()
    }

    #[test]
    fn naps_double_while_idle_and_halve_under_a_backlog() {
        let mut n = Naps::new(0, 0);
        // The first nap has nothing to adapt from.
        assert_eq!(n.nap_us(), NAP_MIN_US);
        assert_eq!(after(&mut n, 0), 40);
        assert_eq!(after(&mut n, 0), 80);
        let lengths: Vec<u64> = (0..6).map(|_| after(&mut n, 0)).collect();
        assert_eq!(lengths, [160, 320, 640, 1000, 1000, 1000]);
        // Some traffic, not a backlog: unchanged.
        assert_eq!(after(&mut n, 64), 1000);
        assert_eq!(after(&mut n, 65), 500);
        let lengths: Vec<u64> = (0..6).map(|_| after(&mut n, 300)).collect();
        assert_eq!(lengths, [250, 125, 62, 31, 20, 20]);
    }

    #[test]
    fn a_nap_restarts_the_spin_interval() {
        let mut n = Naps::new(100, 0);
        assert!(n.should_nap(500));
        n.napped(500);
        assert!(!n.should_nap(600));
        assert!(n.should_nap(601));
    }
}
