//! The tables a config becomes, and the control calls that change them: backend slots (kept
//! across configs by VIP name and backend address, with their flows, counters and health), the
//! per-VIP runtime (mode, scheduler state, counters), the VIP index that maps (address, port,
//! protocol) to a VIP, the next hops, and the management guard. [`Forwarder::apply_config`]
//! rebuilds all of them between two packets; health calls rebuild one VIP's scheduler.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use super::classify::MgmtGuard;
use super::field::ipv4;
use super::fragments::FragEntry;
use super::{Forwarder, ForwarderError};
use crate::config::{Config, Mode, Protocol, Scheduler, VipPort};
use crate::flow::FlowTable;
use crate::sched::{Candidate, SchedState};
use crate::stats::{BackendStats, VipStats};
use crate::time::Instant;

/// A backend as the data path sees it; identified across configs by (VIP name, address).
#[derive(Clone, Debug)]
pub(super) struct Slot {
    /// Part of the running config (else retired, waiting for its flows to end).
    pub live: bool,
    pub vip: u32,
    /// Its address: what identifies it across configs, and its statistics' label.
    pub ip: IpAddr,
    /// Its IPv4 address, read per packet by dsr-l3 (unspecified for an IPv6 backend).
    pub address: Ipv4Addr,
    pub name: String,
    pub weight: u32,
    pub up: bool,
    /// Its VIP is failing open (every backend down, `fail_open`): it keeps and takes flows
    /// although down.
    pub open: bool,
    /// Index of its next hop in the neighbour table.
    pub neigh: u32,
    /// `vip` while the slot is live and up (or failing open), else [`NO_VIP`]: the one comparison a packet of an
    /// existing flow makes to know it may stay here (kept by [`Slot::sync`] whenever `live`,
    /// `up` or `vip` change, instead of testing the three per packet).
    pub keeps: u32,
    /// Flows in the table pointing here.
    pub conns: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// The new-flow rate limit (`limits.new_flows_per_second`): a token bucket that holds one
/// second of the rate, refilled by the millisecond.
#[derive(Clone, Copy, Debug)]
pub(super) struct NewFlowLimit {
    rate: u32,
    /// Tokens in thousandths.
    milli: u64,
    at: Instant,
}

impl NewFlowLimit {
    fn new(rate: u32, now: Instant) -> NewFlowLimit {
        NewFlowLimit {
            rate,
            milli: u64::from(rate) * 1000,
            at: now,
        }
    }

    fn rate(&self) -> u32 {
        self.rate
    }

    /// Take a token at `now` if there is one.
    #[inline]
    pub fn take(&mut self, now: Instant) -> bool {
        let full = u64::from(self.rate) * 1000;
        let ms = now.millis_since(self.at);
        if ms > 0 {
            self.at = self.at.plus_millis(ms);
            let refill = ms.saturating_mul(u64::from(self.rate));
            self.milli = self.milli.saturating_add(refill).min(full);
        }
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// No VIP's index (see [`Slot::keeps`]).
const NO_VIP: u32 = u32::MAX;

impl Slot {
    /// One flow fewer points at slot `backend` (if that slot still exists).
    #[inline(always)]
    pub fn release(slots: &mut [Slot], backend: u32) {
        if let Some(s) = slots.get_mut(backend as usize) {
            s.conns = s.conns.saturating_sub(1);
        }
    }

    /// Bring [`keeps`](Self::keeps) up to date after `live`, `up`, `open` or `vip` changed.
    fn sync(&mut self) {
        self.keeps = if self.live && (self.up || self.open) {
            self.vip
        } else {
            NO_VIP
        };
    }
}

/// A VIP of the running config, with its scheduler state and counters.
#[derive(Clone)]
pub(super) struct VipRt {
    pub name: String,
    pub mode: Mode,
    pub scheduler: Scheduler,
    pub persistence: Option<u32>,
    /// `fail_open` of the config.
    pub fail_open: bool,
    /// The consistent hash alone routes its flows (`maglev` or `sh`, no persistence): packets
    /// that cannot open a flow, or new flows above the rate limit, are forwarded without an
    /// entry.
    pub stateless: bool,
    /// Every backend is down and `fail_open`: the scheduler takes them all the same.
    pub failing_open: bool,
    /// Slots in config order.
    pub backends: Vec<u32>,
    pub sched: SchedState,
    pub packets: u64,
    pub bytes: u64,
}

/// (address, port or 0 for all ports, protocol) -> VIP index; open addressing, O(1).
///
/// A lookup probes the specific port, then the all-ports entry; a config that has only one kind
/// of VIP (the usual case) skips the other probe.
#[derive(Clone)]
pub(super) struct VipIndex {
    /// (key, VIP index) side by side: one bounds check and one cache line per probe.
    slots: Vec<(u64, u32)>,
    mask: usize,
    /// Some VIP takes one port.
    has_specific: bool,
    /// Some VIP takes all ports.
    has_all: bool,
}

impl VipIndex {
    fn key(addr: u32, port: u16, proto: u8) -> u64 {
        (1 << 56) | (u64::from(addr) << 24) | (u64::from(port) << 8) | u64::from(proto)
    }

    #[inline(always)]
    fn slot(key: u64, mask: usize) -> usize {
        (crate::flow::fold_mul(key, 0x9E37_79B9_7F4A_7C15) as usize) & mask
    }

    /// An index of `entries`: (address, port or 0, protocol, VIP index).
    pub fn build(entries: &[(u32, u16, u8, u32)]) -> VipIndex {
        let size = (entries.len() * 4).next_power_of_two().max(16);
        let mut t = VipIndex {
            slots: vec![(0, 0); size],
            mask: size - 1,
            has_specific: entries.iter().any(|e| e.1 != 0),
            has_all: entries.iter().any(|e| e.1 == 0),
        };
        for &(addr, port, proto, vip) in entries {
            let k = Self::key(addr, port, proto);
            let mut i = Self::slot(k, t.mask);
            while t.slots[i].0 != 0 {
                i = (i + 1) & t.mask;
            }
            t.slots[i] = (k, vip);
        }
        t
    }

    /// The VIP of exactly (address, port, protocol); port 0 is the all-ports VIP.
    #[inline(always)]
    pub fn get(&self, addr: u32, port: u16, proto: u8) -> Option<u32> {
        let k = Self::key(addr, port, proto);
        let mut i = Self::slot(k, self.mask);
        loop {
            let (here, vip) = self.slots[i];
            if here == k {
                return Some(vip);
            }
            if here == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The VIP a packet goes to: a specific-port VIP wins over an all-ports VIP on the same
    /// address and protocol.
    #[inline(always)]
    pub fn lookup(&self, addr: u32, port: u16, proto: u8) -> Option<u32> {
        if self.has_specific {
            if let Some(v) = self.get(addr, port, proto) {
                return Some(v);
            }
        }
        if self.has_all {
            return self.get(addr, 0, proto);
        }
        None
    }
}

impl Forwarder {
    /// Swap in `config` (already validated): every table is rebuilt before this returns, so the
    /// change falls between two packets. Flows keep their backend where that backend (same VIP
    /// name and backend address) is still configured; counters and up/down state of kept
    /// backends and VIPs carry over.
    pub fn apply_config(&mut self, config: &Config, now: Instant) {
        let iface = &config.interface;
        self.own = iface.address.address;
        self.subnet = iface.address;
        self.gateway = iface.gateway;
        self.prefix6 = iface.address6;
        self.own6 = iface.address6.map(|p| u128::from(p.address));
        self.gateway6 = iface.gateway6;
        self.mtu = usize::from(iface.mtu);
        self.version = config.version;
        self.mgmt = config.management.as_ref().map(|m| MgmtGuard {
            port: m.port,
            allow: m.allow.clone(),
            allow6: m.allow6.clone(),
        });
        self.bgp_peers = config
            .bgp
            .as_ref()
            .map(|b| b.peers.iter().map(|p| p.address).collect());
        let rate = config.limits.new_flows_per_second;
        if self.new_flows.map(|l| l.rate()) != rate {
            self.new_flows = rate.map(|r| NewFlowLimit::new(r, now));
        }

        // Match surviving backends to their slots by (VIP name, address).
        let mut old: BTreeMap<(String, IpAddr), u32> = BTreeMap::new();
        for (id, s) in self.slots.iter_mut().enumerate() {
            if s.live {
                if let Some(v) = self.vips.get(s.vip as usize) {
                    old.insert((v.name.clone(), s.ip), id as u32);
                }
                s.live = false;
            }
        }
        let mut placed: Vec<Vec<Option<u32>>> = Vec::with_capacity(config.vips.len());
        for (vi, v) in config.vips.iter().enumerate() {
            let mut row = Vec::with_capacity(v.backends.len());
            for b in &v.backends {
                let id = old.remove(&(v.name.clone(), b.address));
                if let Some(id) = id {
                    let s = &mut self.slots[id as usize];
                    s.live = true;
                    s.vip = vi as u32;
                    s.weight = b.weight;
                    s.name.clone_from(&b.name);
                }
                row.push(id);
            }
            placed.push(row);
        }
        // New backends take a retired slot that no flow points to, or a new one.
        let mut free: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| !self.slots[i as usize].live && self.slots[i as usize].conns == 0)
            .rev()
            .collect();
        for (vi, v) in config.vips.iter().enumerate() {
            for (bi, b) in v.backends.iter().enumerate() {
                if placed[vi][bi].is_some() {
                    continue;
                }
                let slot = Slot {
                    live: true,
                    vip: vi as u32,
                    ip: b.address,
                    address: match b.address {
                        IpAddr::V4(a) => a,
                        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                    },
                    name: b.name.clone(),
                    weight: b.weight,
                    up: true,
                    open: false,
                    neigh: 0,
                    keeps: NO_VIP,
                    conns: 0,
                    packets: 0,
                    bytes: 0,
                };
                let id = match free.pop() {
                    Some(id) => {
                        self.slots[id as usize] = slot;
                        id
                    }
                    None => {
                        self.slots.push(slot);
                        (self.slots.len() - 1) as u32
                    }
                };
                placed[vi][bi] = Some(id);
            }
        }

        for s in &mut self.slots {
            s.sync();
        }

        // Next hops: the backend itself when on-link (with the MAC the config pins, if any),
        // else the gateway.
        let hops: Vec<(IpAddr, Option<[u8; 6]>)> = config
            .vips
            .iter()
            .flat_map(|v| v.backends.iter())
            .map(|b| {
                let hop = self.next_hop_of(b.address);
                (hop, b.mac.filter(|_| hop == b.address))
            })
            .collect();
        self.neigh.set_hops(&hops);
        for i in 0..self.slots.len() {
            if self.slots[i].live {
                let hop = self.next_hop_of(self.slots[i].ip);
                self.slots[i].neigh = self.neigh.index_of(hop).unwrap_or(0);
            }
        }

        // VIPs, carrying counters over by name.
        let mut vips = Vec::with_capacity(config.vips.len());
        let mut entries = Vec::with_capacity(config.vips.len());
        let mut entries6 = Vec::new();
        for (vi, v) in config.vips.iter().enumerate() {
            let (packets, bytes) = self
                .vips
                .iter()
                .find(|o| o.name == v.name)
                .map_or((0, 0), |o| (o.packets, o.bytes));
            let proto = match v.protocol {
                Protocol::Tcp => ipv4::PROTO_TCP,
                Protocol::Udp => ipv4::PROTO_UDP,
            };
            let port = match v.port {
                VipPort::All => 0,
                VipPort::One(p) => p,
            };
            match v.address {
                IpAddr::V4(a) => entries.push((u32::from(a), port, proto, vi as u32)),
                IpAddr::V6(a) => entries6.push((u128::from(a), port, proto, vi as u32)),
            }
            vips.push(VipRt {
                name: v.name.clone(),
                mode: v.mode,
                scheduler: v.scheduler,
                persistence: v.persistence,
                fail_open: v.fail_open,
                stateless: matches!(v.scheduler, Scheduler::Maglev | Scheduler::Sh)
                    && v.persistence.is_none(),
                failing_open: false,
                backends: placed[vi].iter().map(|p| p.unwrap_or(0)).collect(),
                sched: SchedState::default(),
                packets,
                bytes,
            });
        }
        self.vips = vips;
        self.index = VipIndex::build(&entries);
        self.vip_addrs = entries.iter().map(|e| e.0).collect();
        self.vip_addrs.sort_unstable();
        self.vip_addrs.dedup();
        self.vip_addrs6 = entries6.iter().map(|e| e.0).collect();
        self.vip_addrs6.sort_unstable();
        self.vip_addrs6.dedup();
        // IPv6 VIPs go into an index of their own by the rank of their address among
        // `vip_addrs6`, so one structure serves both families.
        let ranked: Vec<(u32, u16, u8, u32)> = entries6
            .iter()
            .map(|&(a, port, proto, vi)| {
                let rank = self.vip_addrs6.binary_search(&a).unwrap_or(0);
                (rank as u32, port, proto, vi)
            })
            .collect();
        self.index6 = VipIndex::build(&ranked);
        for vi in 0..self.vips.len() {
            self.rebuild_sched(vi);
        }
        if self.persist.is_none() && config.vips.iter().any(|v| v.persistence.is_some()) {
            let cap = (self.flows.capacity() / 4).clamp(1024, 1 << 20);
            self.persist = Some(FlowTable::new(cap, self.seed.rotate_left(17)));
        }
        // Remembered fragments name VIP indices of the old config.
        self.frags.fill(FragEntry::default());
        let _ = now;
    }

    /// The neighbour a packet to `addr` goes to: `addr` itself on the interface's subnet (or
    /// IPv6 prefix), else the gateway of its family (without one, `addr`, which then never
    /// resolves).
    fn next_hop_of(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) if self.subnet.contains(a) => addr,
            IpAddr::V4(_) => self.gateway.map_or(addr, IpAddr::V4),
            IpAddr::V6(a) if self.prefix6.is_some_and(|p| p.contains(a)) => addr,
            IpAddr::V6(_) => self.gateway6.map_or(addr, IpAddr::V6),
        }
    }

    /// The rank of IPv6 VIP address `addr` in `vip_addrs6`, its key in `index6`.
    #[inline(always)]
    fn rank6(&self, addr: u128) -> Option<u32> {
        // A few addresses are found sooner by a scan than by halving.
        let r = if self.vip_addrs6.len() <= 8 {
            self.vip_addrs6.iter().position(|&a| a == addr)
        } else {
            self.vip_addrs6.binary_search(&addr).ok()
        };
        r.map(|r| r as u32)
    }

    /// The IPv6 VIP a packet goes to: a specific-port VIP wins over an all-ports VIP on the
    /// same address and protocol.
    #[inline(always)]
    pub(super) fn lookup6(&self, addr: u128, port: u16, proto: u8) -> Option<u32> {
        self.index6.lookup(self.rank6(addr)?, port, proto)
    }

    /// The all-ports IPv6 VIP on (address, protocol), for a later fragment without ports.
    pub(super) fn all_ports6(&self, addr: u128, proto: u8) -> Option<u32> {
        self.index6.get(self.rank6(addr)?, 0, proto)
    }

    /// The scheduler of VIP `vi` over its eligible backends: those up with a weight, or, when
    /// none is up and the VIP fails open, all with a weight (the consistent hash then sends
    /// each flow where it went while they were up).
    fn rebuild_sched(&mut self, vi: usize) {
        let v = &self.vips[vi];
        let candidates = |need_up: bool| -> Vec<Candidate> {
            v.backends
                .iter()
                .map(|&id| (id, &self.slots[id as usize]))
                .filter(|(_, s)| (s.up || !need_up) && s.weight > 0)
                .map(|(id, s)| Candidate {
                    slot: id,
                    weight: s.weight,
                    id: match s.ip {
                        IpAddr::V4(a) => u32::from(a),
                        IpAddr::V6(a) => crate::flow::fold_mul(
                            (u128::from(a) >> 64) as u64,
                            u128::from(a) as u64,
                        ) as u32,
                    },
                })
                .collect()
        };
        let mut eligible = candidates(true);
        let open = eligible.is_empty() && v.fail_open;
        if open {
            eligible = candidates(false);
        }
        let table = matches!(v.scheduler, Scheduler::Maglev | Scheduler::Sh);
        let v = &mut self.vips[vi];
        v.sched = SchedState::new(eligible, table);
        v.failing_open = open;
        for &id in &v.backends {
            let s = &mut self.slots[id as usize];
            s.open = open;
            s.sync();
        }
    }

    /// Whether VIP `vip` (by name) is failing open now: every backend down, its flows sent to
    /// them all the same.
    pub fn failing_open(&self, vip: &str) -> bool {
        self.vips.iter().any(|v| v.name == vip && v.failing_open)
    }

    /// Mark backend number `backend` (config order) of VIP number `vip` up or down. Down means
    /// no new flows, and its existing flows move to live backends on their next packet.
    pub fn set_backend_up_by_index(
        &mut self,
        vip: usize,
        backend: usize,
        up: bool,
    ) -> Result<(), ForwarderError> {
        let v = self.vips.get(vip).ok_or(ForwarderError::UnknownVip)?;
        let &id = v
            .backends
            .get(backend)
            .ok_or(ForwarderError::UnknownBackend)?;
        let s = &mut self.slots[id as usize];
        if s.up != up {
            s.up = up;
            s.sync();
            self.rebuild_sched(vip);
        }
        Ok(())
    }

    /// Mark backend `backend` (by name) of VIP `vip` (by name) up or down.
    pub fn set_backend_up(
        &mut self,
        vip: &str,
        backend: &str,
        up: bool,
    ) -> Result<(), ForwarderError> {
        let vi = self
            .vips
            .iter()
            .position(|v| v.name == vip)
            .ok_or(ForwarderError::UnknownVip)?;
        let bi = self.vips[vi]
            .backends
            .iter()
            .position(|&id| self.slots[id as usize].name == backend)
            .ok_or(ForwarderError::UnknownBackend)?;
        self.set_backend_up_by_index(vi, bi, up)
    }

    /// Per-VIP and per-backend state and counters (allocates: for metrics, not per packet).
    pub fn stats(&self) -> Vec<VipStats> {
        self.vips
            .iter()
            .map(|v| {
                let backends: Vec<BackendStats> = v
                    .backends
                    .iter()
                    .map(|&id| {
                        let s = &self.slots[id as usize];
                        BackendStats {
                            name: s.name.clone(),
                            address: s.ip,
                            weight: s.weight,
                            up: s.up,
                            packets: s.packets,
                            bytes: s.bytes,
                            flows_active: u64::from(s.conns),
                        }
                    })
                    .collect();
                VipStats {
                    name: v.name.clone(),
                    failing_open: v.failing_open,
                    packets: v.packets,
                    bytes: v.bytes,
                    flows_active: backends.iter().map(|b| b.flows_active).sum(),
                    backends,
                }
            })
            .collect()
    }
}
