//! The metrics view of the data plane: each VIP's and backend's state and counters, as the
//! forwarder reports them and as `/metrics` and `/status` render them. Plain data; the forwarder
//! fills it from its own counters between bursts.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

/// A backend's state and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendStats {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: IpAddr,
    /// Its weight.
    pub weight: u32,
    /// Whether health checks say it is up.
    pub up: bool,
    /// Packets forwarded to it.
    pub packets: u64,
    /// IP bytes forwarded to it (before encapsulation).
    pub bytes: u64,
    /// Flows in the table that point to it.
    pub flows_active: u64,
}

/// A VIP's counters and its backends'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipStats {
    /// Its name.
    pub name: String,
    /// Packets forwarded.
    pub packets: u64,
    /// IP bytes forwarded.
    pub bytes: u64,
    /// Flows in the table.
    pub flows_active: u64,
    /// Every backend is down and the VIP fails open: its traffic goes to them all the same.
    pub failing_open: bool,
    /// Per backend, in config order.
    pub backends: Vec<BackendStats>,
}

impl VipStats {
    /// Add the counters of `other` (the same VIP in another poll loop's forwarder) to these.
    /// State (up, failing open, weights) stays this one's: every loop follows one control plane.
    pub fn add_counters(&mut self, other: &VipStats) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.flows_active += other.flows_active;
        for (b, o) in self.backends.iter_mut().zip(other.backends.iter()) {
            b.packets += o.packets;
            b.bytes += o.bytes;
            b.flows_active += o.flows_active;
        }
    }
}
