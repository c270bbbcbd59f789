//! What the poll loops share: one loop per receive queue, each on its own CPU with its own
//! forwarder (its shard of the flows), and the control plane beside the first one (core 0).
//!
//! Nothing here is touched per packet. Between bursts:
//! - core 0 publishes what its control plane decided (the running config, backend health, the
//!   VIP role, resolved next hops: [`Decisions`]); the others check a generation number every
//!   housekeeping round and follow it when it moved;
//! - the others hand core 0 the frames that are the balancer's own (management, health-check
//!   answers, BGP, VRRP) and every ARP / neighbour advertisement, which the NIC may hash to any
//!   queue: core 0 runs them through its forwarder as if it had received them, so its local
//!   stack and neighbour table see them all;
//! - an ICMP error to a VIP whose flow a core does not have is tried on the other cores (the
//!   NIC hashes it on its addresses, not on the flow's ports);
//! - every core reports its counters when core 0 asks (for `/metrics` and `/status`, which sum
//!   them) and every second.

use alloc::sync::Arc;
use alloc::vec::Vec;
use control::config::Config;
use control::stats::VipStats;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use drivers::NicStats;
use forwarder::{Counters, Decisions};
use spin::{Mutex, Once};

/// ICMP errors a core may hold for another at once (routers rate-limit them; more are dropped).
const RETRY_MAX: usize = 64;

/// Frames a core may hold for core 0 at once; more are dropped and counted (a flood of
/// management or ARP traffic must not grow memory).
const RELAY_MAX: usize = 256;

/// One core's counters as it last reported them.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub counters: Counters,
    /// Per-VIP counters, for the config of `version`.
    pub vips: Vec<VipStats>,
    pub version: u64,
    pub nic: NicStats,
    pub tx_shed: u64,
    pub flow_capacity: u64,
}

struct Core {
    /// ICMP errors another core found no flow for, to try on this one.
    retry: Inbox,
    /// The newest request (of `Shared::wanted`) this core's report answers.
    answered: AtomicU64,
    relay: Inbox,
    relay_dropped: AtomicU64,
    report: Mutex<Report>,
}

struct Shared {
    cores: Vec<Core>,
    /// Bumped (after `decisions` is written) whenever core 0 publishes.
    generation: AtomicU64,
    /// Bumped by core 0 when it wants fresh reports (for `/metrics` and `/status`).
    wanted: AtomicU64,
    decisions: Mutex<(Arc<Config>, Decisions)>,
}

static SHARED: Once<Shared> = Once::new();

/// Set up the shared state for `count` poll loops, starting from `config`.
pub fn init(count: usize, config: &Config) {
    SHARED.call_once(|| Shared {
        cores: (0..count)
            .map(|_| Core {
                retry: Inbox::new(),
                answered: AtomicU64::new(0),
                relay: Inbox::new(),
                relay_dropped: AtomicU64::new(0),
                report: Mutex::new(Report::default()),
            })
            .collect(),
        generation: AtomicU64::new(0),
        wanted: AtomicU64::new(0),
        decisions: Mutex::new((Arc::new(config.clone()), Decisions::default())),
    });
}

fn shared() -> &'static Shared {
    SHARED
        .get()
        .expect("cores::init runs before the poll loops")
}

/// How many poll loops there are.
pub fn count() -> usize {
    SHARED.get().map_or(1, |s| s.cores.len())
}

/// Core 0: publish its control plane's decisions (when they differ from the last ones).
pub struct Publisher {
    last: Decisions,
    scratch: Decisions,
    version: u64,
}

impl Publisher {
    pub fn new() -> Publisher {
        Publisher {
            last: Decisions::default(),
            scratch: Decisions::default(),
            version: u64::MAX,
        }
    }

    /// Publish `fwd`'s decisions under `config` if anything changed since the last call.
    pub fn publish(&mut self, config: &Config, fwd: &forwarder::Forwarder) {
        if count() <= 1 {
            return;
        }
        fwd.decisions(&mut self.scratch);
        if self.scratch == self.last && self.version == config.version {
            return;
        }
        let s = shared();
        {
            let mut d = s.decisions.lock();
            if d.0.version != config.version {
                d.0 = Arc::new(config.clone());
            }
            d.1.clone_from(&self.scratch);
        }
        s.generation.fetch_add(1, Ordering::Release);
        core::mem::swap(&mut self.last, &mut self.scratch);
        self.version = config.version;
    }
}

/// Another core: what it last followed.
pub struct Follower {
    generation: u64,
}

impl Follower {
    pub fn new() -> Follower {
        Follower { generation: 0 }
    }

    /// The decisions to follow, if core 0 published since the last call.
    pub fn changed(&mut self) -> Option<(Arc<Config>, Decisions)> {
        let s = shared();
        let g = s.generation.load(Ordering::Acquire);
        if g == self.generation {
            return None;
        }
        self.generation = g;
        let d = s.decisions.lock();
        Some((d.0.clone(), d.1.clone()))
    }
}

/// Frames handed from one core to another: copied in, bounded, and looked at by the receiver
/// without the lock while empty.
struct Inbox {
    frames: Mutex<Vec<Vec<u8>>>,
    len: AtomicUsize,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            frames: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Add a copy of `frame` unless `max` frames wait already; whether it was added.
    fn push(&self, frame: &[u8], max: usize) -> bool {
        let mut q = self.frames.lock();
        if q.len() >= max {
            return false;
        }
        q.push(frame.to_vec());
        self.len.store(q.len(), Ordering::Release);
        true
    }

    /// Hand the waiting frames, oldest first, to `take` while it accepts them (it returns false
    /// when it has no room: that frame waits for the next round); whether all were taken.
    fn take(&self, take: &mut impl FnMut(&[u8]) -> bool) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return true;
        }
        let mut q = self.frames.lock();
        let used = q.iter().take_while(|f| take(f)).count();
        q.drain(..used);
        self.len.store(q.len(), Ordering::Release);
        q.is_empty()
    }
}

/// Another core: hand `frame` to core 0.
pub fn relay(core: usize, frame: &[u8]) {
    let c = &shared().cores[core];
    if !c.relay.push(frame, RELAY_MAX) {
        c.relay_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Core 0: take frames the other cores relayed, while `take` accepts them (it returns false
/// when it has no room; that frame waits for the next round).
pub fn take_relayed(mut take: impl FnMut(&[u8]) -> bool) {
    let Some(s) = SHARED.get() else { return };
    for c in s.cores.iter().skip(1) {
        if !c.relay.take(&mut take) {
            return;
        }
    }
}

/// Hand an ICMP error about a VIP flow that core `from` does not have to every other core: the
/// NIC hashes an error on its addresses only, so it can land away from the flow's core (whose
/// forwarder alone knows the flow's backend; the others drop it again).
pub fn retry_elsewhere(from: usize, frame: &[u8]) {
    let Some(s) = SHARED.get() else { return };
    for (i, c) in s.cores.iter().enumerate() {
        if i != from {
            c.retry.push(frame, RETRY_MAX);
        }
    }
}

/// Take the ICMP errors other cores handed to `core`, while `take` accepts them.
pub fn take_retries(core: usize, mut take: impl FnMut(&[u8]) -> bool) {
    if let Some(s) = SHARED.get() {
        s.cores[core].retry.take(&mut take);
    }
}

/// Frames the other cores could not hand to core 0 (their relay was full): the balancer's own
/// receive losses, as the local stack's full queue is.
pub fn relay_dropped() -> u64 {
    SHARED.get().map_or(0, |s| {
        s.cores
            .iter()
            .map(|c| c.relay_dropped.load(Ordering::Relaxed))
            .sum()
    })
}

/// Another core: whether core 0 asked for a report it has not had yet.
pub fn report_wanted(core: usize) -> bool {
    SHARED.get().is_some_and(|s| {
        s.wanted.load(Ordering::Acquire) > s.cores[core].answered.load(Ordering::Relaxed)
    })
}

/// A core's report of its counters (answering every request so far).
pub fn report(core: usize, report: Report) {
    if let Some(s) = SHARED.get() {
        let wanted = s.wanted.load(Ordering::Acquire);
        let c = &s.cores[core];
        *c.report.lock() = report;
        c.answered.store(wanted, Ordering::Release);
    }
}

/// Core 0: the other cores' reports, core 1 first, as fresh as they give them within
/// `wait_us` (each reports between two bursts, so within a housekeeping interval and a nap; a
/// core that does not is shown as it last reported).
pub fn others(wait_us: u64) -> Vec<Report> {
    let Some(s) = SHARED.get() else {
        return Vec::new();
    };
    if s.cores.len() > 1 {
        let want = s.wanted.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = crate::clock::micros_since_boot() + wait_us;
        while s
            .cores
            .iter()
            .skip(1)
            .any(|c| c.answered.load(Ordering::Acquire) < want)
            && crate::clock::micros_since_boot() < deadline
        {
            core::hint::spin_loop();
        }
    }
    s.cores
        .iter()
        .skip(1)
        .map(|c| c.report.lock().clone())
        .collect()
}

/// Whether `frame` is ARP or an IPv6 neighbour advertisement: what every core's neighbour
/// table learns from, through core 0.
pub fn neighbour_frame(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x06]) => true,
        // IPv6, next header ICMPv6 (no extension headers: ND forbids none it needs), type 136.
        Some([0x86, 0xdd]) => frame.get(20) == Some(&58) && frame.get(54) == Some(&136),
        _ => false,
    }
}
