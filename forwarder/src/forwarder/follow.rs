//! One forwarder per poll loop: the control plane (health checks, VRRP, config pushes, ARP and
//! neighbour discovery) runs beside the first loop's forwarder, and every other loop's
//! forwarder follows what it decided. [`Decisions`] is that state, taken from the leading
//! forwarder and applied to the others between two bursts.

use alloc::vec::Vec;
use core::net::IpAddr;

use super::Forwarder;
use crate::config::Config;
use crate::neigh::Learnt;
use crate::time::Instant;

/// What the control plane decided on the leading forwarder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    /// The running config's version.
    pub version: u64,
    /// Every backend's health, VIP by VIP, each in config order.
    pub up: Vec<bool>,
    /// Whether the VIPs are served (VRRP master or no VRRP).
    pub vip_active: bool,
    /// Resolved next hops (backends, gateways) and their MACs.
    pub neighbours: Vec<(IpAddr, [u8; 6])>,
}

impl Forwarder {
    /// Write this forwarder's decisions into `out` (reusing its vectors: called every few
    /// milliseconds to see whether anything changed).
    pub fn decisions(&self, out: &mut Decisions) {
        out.version = self.version;
        out.vip_active = self.vip_active;
        out.up.clear();
        for v in &self.vips {
            out.up
                .extend(v.backends.iter().map(|&id| self.slots[id as usize].up));
        }
        out.neighbours.clear();
        out.neighbours.extend(
            self.neigh
                .all()
                .iter()
                .filter(|n| n.resolved)
                .map(|n| (n.ip, n.mac)),
        );
    }

    /// Follow `decisions`, made by a forwarder running `config`: its config first (when the
    /// version differs), then backend health, the VIP role and the resolved next hops. Call it
    /// again every second or so with the same decisions: that keeps the next hops confirmed.
    pub fn follow(&mut self, config: &Config, decisions: &Decisions, now: Instant) {
        if self.version != decisions.version && config.version == decisions.version {
            self.apply_config(config, now);
        }
        if self.version == decisions.version {
            let mut up = decisions.up.iter();
            for vi in 0..self.vips.len() {
                for bi in 0..self.vips[vi].backends.len() {
                    let Some(&u) = up.next() else { break };
                    // Indices come from a forwarder on the same config, so they exist.
                    let _ = self.set_backend_up_by_index(vi, bi, u);
                }
            }
        }
        self.vip_active = decisions.vip_active;
        // Learnt again even when known: that confirms the entry, which would otherwise go
        // stale here (the ARP replies that confirm it reach the leading forwarder).
        for &(ip, mac) in &decisions.neighbours {
            if self.neigh.learn(ip, mac, now) == Learnt::Changed {
                self.counters.neigh_changes += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, Scheduler};
    use crate::forwarder::tests::{config as make_config, OUR_MAC as MAC};
    use crate::stats::DropReason;

    fn base_config() -> Config {
        make_config(Mode::DsrL2, Scheduler::Maglev, &[1, 1, 1])
    }

    #[test]
    fn a_follower_takes_config_health_role_and_neighbours() {
        let config = base_config();
        let mut lead = Forwarder::new(&config, MAC, 1024);
        let mut follower = Forwarder::new(&config, MAC, 1024);
        let vip = config.vips[0].name.clone();
        let backend = config.vips[0].backends[0].name.clone();
        lead.set_backend_up(&vip, &backend, false).unwrap();
        lead.set_vip_role(false);
        let hop = config.vips[0].backends[0].address;
        let now = Instant::from_millis(5_000);
        let mac = [0x02, 0, 0, 0, 0x42, 0x01];
        assert_eq!(lead.neigh.learn(hop, mac, now), Learnt::Resolved);

        let mut d = Decisions::default();
        lead.decisions(&mut d);
        assert_eq!(d.up.first(), Some(&false));
        follower.follow(&config, &d, now);
        let mut seen = Decisions::default();
        follower.decisions(&mut seen);
        assert_eq!(seen, d);
        assert_eq!(follower.neighbour(hop), Some(mac));
        assert!(!follower.vip_role());

        // A newer config reaches the follower with the decisions made on it.
        let mut newer = config.clone();
        newer.version += 1;
        lead.apply_config(&newer, now);
        lead.decisions(&mut d);
        follower.follow(&newer, &d, now);
        assert_eq!(follower.config_version(), newer.version);
        follower.decisions(&mut seen);
        assert_eq!(seen, d);
    }

    #[test]
    fn decisions_of_another_config_leave_the_backends_alone() {
        let config = base_config();
        let mut follower = Forwarder::new(&config, MAC, 1024);
        let mut before = Decisions::default();
        follower.decisions(&mut before);
        let stale = Decisions {
            version: config.version + 7,
            up: vec![false; before.up.len()],
            vip_active: true,
            neighbours: Vec::new(),
        };
        // The config it names has not arrived: nothing applied out of step with it.
        follower.follow(&config, &stale, Instant::from_millis(1));
        let mut after = Decisions::default();
        follower.decisions(&mut after);
        assert_eq!(after, before);
    }

    #[test]
    fn drops_taken_back_leave_the_others_and_never_go_below_zero() {
        let config = base_config();
        let mut f = Forwarder::new(&config, MAC, 1024);
        f.counters.drops[DropReason::IcmpNoFlow.index()] = 3;
        f.counters.drops[DropReason::Malformed.index()] = 5;
        f.uncount_drops(DropReason::IcmpNoFlow, 2);
        assert_eq!(f.counters().drop_count(DropReason::IcmpNoFlow), 1);
        f.uncount_drops(DropReason::IcmpNoFlow, 4);
        assert_eq!(f.counters().drop_count(DropReason::IcmpNoFlow), 0);
        assert_eq!(f.counters().drop_count(DropReason::Malformed), 5);
    }
}
