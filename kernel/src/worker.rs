//! The poll loop of every core but the first: one NIC queue and one forwarder, its shard of the
//! flows (the NIC's receive-side hashing sends every packet of a flow to one queue). It forwards
//! and answers what the forwarder answers (ARP, ICMP echo); everything else the balancer itself
//! handles goes to core 0, and what core 0's control plane decides comes back (`crate::cores`).

use crate::clock;
use crate::cores::{self, Follower, Report};
use crate::dataplane::{Lane, Rhythm};
use crate::idle::Idle;
use control::config::Config;
use drivers::Nic;
use forwarder::{Instant, Verdict};

/// How often a core reports its counters unasked (`/metrics` asks for fresh ones).
const REPORT_MS: u64 = 1000;

/// How often a core follows core 0's decisions again when they have not changed: that keeps
/// its next hops confirmed (`Forwarder::follow`), well within their refresh time.
const REFOLLOW_MS: u64 = 1000;

/// A core's loop, built on core 0 and moved to its CPU.
pub struct Worker<N: Nic> {
    core: usize,
    lane: Lane<N>,
    poll: control::config::Polling,
    follower: Follower,
}

impl<N: Nic + Send + 'static> Worker<N> {
    /// The loop of core `core` over `nic`, with a forwarder for `config` and `flows` flows.
    pub fn new(core: usize, nic: N, config: &Config, flows: usize) -> Worker<N> {
        Worker {
            core,
            lane: Lane::new(nic, config, flows),
            poll: config.interface.poll,
            follower: Follower::new(),
        }
    }

    /// [`run`](Self::run) as an `smp` job (which has no return type of its own).
    pub fn start(self) {
        self.run()
    }

    /// Forward forever (on the CPU that calls it).
    pub fn run(mut self) -> ! {
        let mut idle = Idle::init_ap(self.poll);
        let mut rhythm = Rhythm::new();
        let mut reported = 0u64;
        let mut followed = 0u64;
        let mut decided: Option<(alloc::sync::Arc<Config>, forwarder::Decisions)> = None;
        // Core 0 published before starting this CPU: begin in step with it (a VRRP backup's
        // loops must not serve the VIPs even for a moment).
        if let Some((config, decisions)) = self.follower.changed() {
            let now = Instant::from_nanos(clock::nanos_at(clock::rdtsc()));
            self.lane.fwd.follow(&config, &decisions, now);
            followed = now.millis();
            decided = Some((config, decisions));
        }
        log::info!("core {}: forwarding", self.core);
        loop {
            let tsc = clock::rdtsc();
            let now = Instant::from_nanos(clock::nanos_at(tsc));
            let received = self.lane.receive();
            cores::take_retries(self.core, |frame| self.lane.receive_copy(frame));
            if self.lane.has_input() {
                self.lane.decide(now);
                // The forwarder's neighbour hints are for core 0's local stack, which learns
                // from the relayed frames themselves.
                while self.lane.fwd.take_neighbour_hint().is_some() {}
                let core = self.core;
                self.lane.dispatch(core, |frame, verdict| {
                    if verdict == Verdict::Local || cores::neighbour_frame(frame) {
                        cores::relay(core, frame);
                    }
                });
            }
            if rhythm.housekeeping_due(tsc, false) {
                self.lane.poll_forwarder(now);
                if let Some(d) = self.follower.changed() {
                    decided = Some(d);
                    followed = 0;
                }
                if let Some((config, decisions)) = &decided {
                    if now.millis().saturating_sub(followed) >= REFOLLOW_MS {
                        followed = now.millis();
                        self.lane.fwd.follow(config, decisions, now);
                    }
                }
                if cores::report_wanted(self.core)
                    || now.millis().saturating_sub(reported) >= REPORT_MS
                {
                    reported = now.millis();
                    self.report();
                }
            }
            self.lane.end_round(&mut idle, tsc, received, now);
        }
    }

    fn report(&self) {
        let fwd = &self.lane.fwd;
        cores::report(
            self.core,
            Report {
                counters: fwd.counters().clone(),
                vips: fwd.stats(),
                version: fwd.config_version(),
                nic: self.lane.nic.stats(),
                tx_shed: self.lane.tx_shed,
                flow_capacity: fwd.flow_capacity() as u64,
            },
        );
    }
}
