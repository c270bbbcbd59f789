//! The forwarder: the one entry point the kernel's poll loop calls for every received frame.
//!
//! A frame is classified (ARP, IPv4 to the balancer, IPv4 to a VIP, anything else), a VIP frame is
//! matched to its flow (or a new flow is scheduled), and the frame is rewritten *in the buffer it
//! arrived in*: dsr-l2 changes the two Ethernet addresses, dsr-l3 writes a 20-byte outer IPv4
//! header (and a new Ethernet header) into the headroom in front of the frame. Nothing on the hot
//! path allocates, and the whole per-packet state is one flow-table bucket, one backend slot and
//! one neighbour entry.
//!
//! Decisions worth knowing:
//! - **TTL.** Frames with TTL <= 1 are dropped (counted). Neither mode decrements the TTL: dsr-l2
//!   is a bridge-like hop, and dsr-l3 leaves the inner packet byte-for-byte unchanged (the outer
//!   header carries TTL 64); IPVS's tunnel mode does not decrement the inner TTL either.
//! - **MTU (dsr-l3).** When the inner packet plus 20 exceeds the MTU and DF is set, the client
//!   gets ICMP "fragmentation needed" with next-hop MTU = MTU - 20 (from the balancer's own
//!   address), as IPVS's tunnel mode does. Without DF, IPVS lets the kernel's `ip_fragment` split
//!   the *outer* packet; so do we: the first fragment is returned as the verdict and the second
//!   is released by the next [`Forwarder::poll`]; the backend reassembles before decapsulating.
//! - **Fragments.** A first fragment is scheduled like any packet and later ones follow it
//!   (see the `fragments` module).
//! - **Config changes** rebuild every table in [`Forwarder::apply_config`], between two packets.
//!   Backends are kept in *slots* identified by (VIP name, backend address); a slot that survives
//!   a change keeps its flows, counters and health state. A flow whose slot was removed is
//!   rescheduled on its next packet. A slot is reused only once no flow points to it.
//! - **Health.** Backends start up. Weight 0 (drain) removes a backend from scheduling only: its
//!   existing flows stay. Down (failed health checks) also moves its existing flows: each is
//!   rescheduled on its next packet to a backend that is up, as IPVS's `expire_nodest_conn` does
//!   for a removed destination (a TCP connection moved mid-stream is reset by its new backend;
//!   the client reconnects instead of waiting on a dead server). When no backend of a VIP is up
//!   (and its config says `fail_open`, the default), the VIP *fails open*, as AWS NLB and
//!   Maglev do: its scheduler takes every backend with a weight again and flows stay where they
//!   are, so a health-check outage (the checker's fault as often as the backends') costs no
//!   traffic ([`Forwarder::failing_open`]).
//! - **The balancer's own traffic** goes up to the kernel's local stack ([`Verdict::Local`]),
//!   except TCP to the management port from outside `[management] allow`
//!   ([`DropReason::MgmtDenied`]). The forwarder notes the neighbours the local stack must learn
//!   before it answers ([`Forwarder::take_neighbour_hint`]); [`arp`] builds the frames that tell
//!   it.
//! - **Several balancers** (ECMP behind routers that speak BGP): a `maglev` or `sh` VIP picks a
//!   new flow's backend from the running config alone (backend addresses, weights, config order,
//!   health) and a fixed hash seed, never from the instance's address, MAC, flow-hash seed or
//!   the configs it ran before; so a packet that reaches this balancer mid-stream (its flow
//!   moved here from another balancer) and misses the flow table goes where the first balancer
//!   sent its SYN (forwarder/tests/consistency.rs). Such a miss creates no entry (without
//!   persistence): it is routed by the hash each time, so a flood of made-up ACKs stores
//!   nothing; the price is that such a flow follows the hash when the backend set changes
//!   later (a Maglev refill moves a few keys), where an entry would have kept it.
//! - **Floods.** When the flow table is full, SYN-only entries are evicted before flows that
//!   got further; `limits.new_flows_per_second` caps what new flows of hash-routed VIPs may
//!   store (the rest are routed by the hash); and the table and fragment hashes are keyed by a
//!   secret seed ([`Forwarder::with_seed`]), so no sender can aim at one bucket.
//!
//! - **ICMP to a VIP.** Errors (destination unreachable, fragmentation needed, time exceeded)
//!   go to the backend of the flow they quote, as that flow's packets do, so that path MTU
//!   discovery works through the balancer; echo requests are answered from the VIP. The ICMP
//!   the balancer sends is rate-limited ([`ICMP_RATE`], [`ICMP_BURST`]) and never goes to a
//!   broadcast, multicast, zero or own address nor answers a later fragment (the `icmp`
//!   module). Classification tells ICMP apart only once a packet is neither TCP nor UDP.
//!
//! One module per concern: `field` (header layouts), `classify` (what a frame is), `tables`
//! (what a config becomes), `dispatch` (the entry points and the flow table), `fragments`,
//! `rewrite` (dsr-l2/dsr-l3 output, the one IPv4 header writer, "fragmentation needed"),
//! `icmp` (ICMP to a VIP, the limits on ICMP sent), [`arp`], `ipv6` (everything IPv6, out of
//! line of IPv4: extension headers, ip6ip6, ICMPv6) and [`nd`] (neighbour discovery).

use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{Config, Prefix, Prefix6};
use crate::flow::FlowTable;
use crate::neigh::{Hints, Neighbours};
use crate::stats::{Counters, DropReason};
use crate::time::Instant;

pub mod arp;
mod classify;
mod dispatch;
mod field;
mod follow;
mod fragments;
mod icmp;
mod ipv6;
pub mod nd;
mod rewrite;
mod tables;

use classify::MgmtGuard;
pub use follow::Decisions;
use fragments::{FragEntry, FRAG_SLOTS};
use icmp::TokenBucket;
pub use icmp::{ICMP_BURST, ICMP_RATE};
use tables::{NewFlowLimit, Slot, VipIndex, VipRt};

/// Headroom the kernel must leave in front of every frame.
pub const HEADROOM: usize = 64;
/// Frames handled per prefetch round in [`Forwarder::process_burst`].
pub const BURST: usize = 16;
/// With at most this many entries in use in the flow table, [`Forwarder::process_frames`]
/// takes a burst frame by frame, without its prefetch pass: the buckets those entries occupy
/// stay in the L2 cache, where a prefetch hides little and the pass costs instructions on
/// every frame. The value is where the two ways meet on the build host
/// (forwarder/BENCHMARKS.md).
pub const DIRECT_MAX_FLOWS: usize = 4096;
/// [`Forwarder::poll`] sweeps the whole flow table (and the persistence table) for expired
/// entries once in this period, a share of it per call. Expired entries are also reused where
/// a new flow lands; the sweep keeps the counts of active flows and the least-connection
/// schedulers' connection counts current, for which seconds are soon enough next to timeouts
/// of 60 s and more, and a share paced by time costs the same whatever the caller's polling
/// rate (forwarder/BENCHMARKS.md).
pub const SWEEP_PERIOD_MS: u64 = 10_000;
/// Fixed seed of the Maglev/source-hash key hash, so that several balancers agree (the
/// per-instance `seed` only places flows in this instance's flow table).
const CONSISTENT_SEED: u64 = 0x5349_4445_5354_4550; // "SIDESTEP"

/// What to do with a frame after [`Forwarder::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit `buf[head..head + len]` (rewritten in place) on the data NIC.
    Forward {
        /// Start of the frame to send.
        head: usize,
        /// Its length.
        len: usize,
    },
    /// Transmit `buf[head..head + len]`, a reply written in place (ARP reply, ICMP).
    Reply {
        /// Start of the frame to send.
        head: usize,
        /// Its length.
        len: usize,
    },
    /// Hand the frame, unchanged, to the kernel's own stack (smoltcp).
    Local,
    /// The frame was copied to wait for ARP; the buffer is free again. `poll` releases it.
    Queued,
    /// The forwarder took what it needed from the frame (a neighbour advertisement to all
    /// nodes); the buffer is free again.
    Consumed,
    /// Drop the frame (already counted).
    Drop(DropReason),
}

/// A frame of a burst: a whole packet buffer and where the received frame lies in it.
#[derive(Debug)]
pub struct RxFrame<'a> {
    /// The packet buffer (headroom, frame, tailroom).
    pub buf: &'a mut [u8],
    /// Start of the frame (>= [`HEADROOM`]).
    pub head: usize,
    /// Length of the frame.
    pub len: usize,
}

/// The frames of a burst as [`Forwarder::process_frames`] reads them: each frame's whole packet
/// buffer (headroom, frame, tailroom) and where the frame lies in it, one frame at a time. A
/// driver can lend its buffers through this directly instead of building a list of slices
/// ([`RxFrame`]) for every burst.
pub trait Frames {
    /// How many frames there are.
    fn count(&self) -> usize;
    /// Frame `i` (`< count()`), read-only: its buffer, the frame's start in it (at least
    /// [`HEADROOM`]) and its length. `None` for a frame that cannot be lent: it is dropped as
    /// malformed.
    fn frame(&self, i: usize) -> Option<(&[u8], usize, usize)>;
    /// Frame `i`, writable; the same frame as [`frame`](Self::frame) returns.
    fn frame_mut(&mut self, i: usize) -> Option<(&mut [u8], usize, usize)>;
}

impl Frames for [RxFrame<'_>] {
    #[inline(always)]
    fn count(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn frame(&self, i: usize) -> Option<(&[u8], usize, usize)> {
        self.get(i).map(|f| (&*f.buf, f.head, f.len))
    }

    #[inline(always)]
    fn frame_mut(&mut self, i: usize) -> Option<(&mut [u8], usize, usize)> {
        self.get_mut(i).map(|f| (&mut *f.buf, f.head, f.len))
    }
}

/// Errors of the forwarder's control calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwarderError {
    /// No VIP of that name or index in the running config.
    UnknownVip,
    /// No backend of that name or index behind the VIP.
    UnknownBackend,
}

impl core::fmt::Display for ForwarderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ForwarderError::UnknownVip => "no such VIP in the running config",
            ForwarderError::UnknownBackend => "no such backend behind this VIP",
        })
    }
}

/// Sidestep's data path: VIPs, schedulers, flows, neighbours and counters.
#[derive(Clone)]
pub struct Forwarder {
    mac: [u8; 6],
    own: Ipv4Addr,
    subnet: Prefix,
    gateway: Option<Ipv4Addr>,
    /// `interface.address6`: the balancer's IPv6 address and on-link prefix. Without it every
    /// IPv6 frame is dropped as unsupported.
    prefix6: Option<Prefix6>,
    /// `prefix6`'s address as a number, as the IPv6 path compares it.
    own6: Option<u128>,
    gateway6: Option<Ipv6Addr>,
    mtu: usize,
    version: u64,
    /// `[management]`'s port and allow list, when the config has a management section.
    mgmt: Option<MgmtGuard>,
    /// `[bgp]`'s peers, when the config has a BGP section: the only sources taken on port 179.
    bgp_peers: Option<Vec<Ipv4Addr>>,
    vips: Vec<VipRt>,
    index: VipIndex,
    vip_addrs: Vec<u32>,
    /// IPv6 VIPs, by the rank of their address in `vip_addrs6`.
    index6: VipIndex,
    /// IPv6 VIP addresses, sorted, unique.
    vip_addrs6: Vec<u128>,
    slots: Vec<Slot>,
    flows: FlowTable,
    persist: Option<FlowTable>,
    frags: Vec<FragEntry>,
    neigh: Neighbours,
    /// Neighbours the local stack must learn, for [`take_neighbour_hint`](Self::take_neighbour_hint).
    hints: Hints,
    scratch: Vec<u8>,
    ident: u16,
    /// What the ICMP the balancer sends may spend ([`ICMP_RATE`], [`ICMP_BURST`]).
    icmp_bucket: TokenBucket,
    seed: u64,
    /// `limits.new_flows_per_second`, when the config sets it.
    new_flows: Option<NewFlowLimit>,
    /// When `poll` last swept (ms).
    swept_ms: u64,
    /// Above this many flows in the table a burst goes through the prefetch pass
    /// ([`DIRECT_MAX_FLOWS`], or never: see [`set_prefetch`](Self::set_prefetch)).
    direct_max_flows: usize,
    /// Whether this balancer answers for the VIPs (false while it is a VRRP backup).
    vip_active: bool,
    counters: Counters,
}

impl Forwarder {
    /// A forwarder for `config` (already validated) on a NIC with address `mac`, with a flow
    /// table of `flow_capacity` entries (32 bytes each), allocated now and never grown, and a
    /// fixed hash seed: deterministic, for tests and benches. The image uses
    /// [`with_seed`](Self::with_seed) with a seed from the CPU's random source.
    pub fn new(config: &Config, mac: [u8; 6], flow_capacity: usize) -> Forwarder {
        Self::with_seed(config, mac, flow_capacity, 0x2545_F491_4F6C_DD1D)
    }

    /// As [`new`](Self::new), with the seed of the flow-table, persistence-table and fragment
    /// hashes given. It must be secret and random (RDSEED/RDRAND): whoever can predict it can
    /// send flows that all land in one bucket, or fragments that all land in one slot, and
    /// evict what is there. It never decides a backend (consistent schedulers use a fixed seed).
    pub fn with_seed(config: &Config, mac: [u8; 6], flow_capacity: usize, seed: u64) -> Forwarder {
        let mut f = Forwarder {
            mac,
            own: config.interface.address.address,
            subnet: config.interface.address,
            gateway: config.interface.gateway,
            prefix6: None,
            own6: None,
            gateway6: None,
            mtu: usize::from(config.interface.mtu),
            version: 0,
            mgmt: None,
            bgp_peers: None,
            vips: Vec::new(),
            index: VipIndex::build(&[]),
            vip_addrs: Vec::new(),
            index6: VipIndex::build(&[]),
            vip_addrs6: Vec::new(),
            slots: Vec::new(),
            flows: FlowTable::new(flow_capacity, seed),
            persist: None,
            frags: vec![FragEntry::default(); FRAG_SLOTS],
            neigh: Neighbours::new(mac),
            hints: Hints::new(),
            scratch: vec![0; 2048],
            ident: 0,
            icmp_bucket: TokenBucket::full(),
            seed,
            new_flows: None,
            swept_ms: 0,
            direct_max_flows: DIRECT_MAX_FLOWS,
            vip_active: true,
            counters: Counters::default(),
        };
        f.apply_config(config, Instant::ZERO);
        f
    }

    /// Whether a burst over a table of more than [`DIRECT_MAX_FLOWS`] flows goes through the
    /// prefetch pass (the default) or, like a small table's, frame by frame. On a CPU the pass
    /// overlaps the flow-table misses of up to [`BURST`] frames; where prefetching does nothing
    /// (an emulated CPU, as QEMU's TCG) it only adds work (forwarder/BENCHMARKS.md). The
    /// verdicts are the same either way.
    pub fn set_prefetch(&mut self, on: bool) {
        self.direct_max_flows = if on { DIRECT_MAX_FLOWS } else { usize::MAX };
    }

    /// Whether this balancer serves the VIPs (the default, and a VRRP master) or stands by (a
    /// VRRP backup): then VIP traffic is dropped as [`DropReason::VrrpBackup`] and ARP for a VIP
    /// goes unanswered, while flows, persistence and health state are kept, so that a takeover
    /// needs no warm-up. A config change leaves the role as it is.
    pub fn set_vip_role(&mut self, active: bool) {
        self.vip_active = active;
    }

    /// Whether the VIPs are served (see [`set_vip_role`](Self::set_vip_role)).
    pub fn vip_role(&self) -> bool {
        self.vip_active
    }

    /// Take back `n` drops counted as `reason`: frames another forwarder took over (with one
    /// forwarder per core, an ICMP error whose flow is on another core is tried there too).
    pub fn uncount_drops(&mut self, reason: DropReason, n: u64) {
        let d = &mut self.counters.drops[reason.index()];
        *d = d.saturating_sub(n);
    }

    /// The global counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The running config's version.
    pub fn config_version(&self) -> u64 {
        self.version
    }

    /// Flows in the table (including expired ones not swept yet).
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// The flow table's fixed capacity.
    pub fn flow_capacity(&self) -> usize {
        self.flows.capacity()
    }

    /// Frames waiting for ARP (or for the next `poll`).
    pub fn pending_frames(&self) -> usize {
        self.neigh.pending_len()
    }

    /// The resolved MAC of next hop `ip` (IPv4 or IPv6), if it is one and is resolved.
    pub fn neighbour(&self, ip: impl Into<IpAddr>) -> Option<[u8; 6]> {
        let i = self.neigh.index_of(ip.into())?;
        self.neigh.get(i).filter(|n| n.resolved).map(|n| n.mac)
    }

    /// The oldest neighbour (address, MAC) the local stack must learn, taken off a small
    /// bounded queue (the oldest dropped when it is full): whom the forwarder's ARP answer for
    /// the balancer's own address went to, and the sender of a TCP SYN (without ACK) or ICMP
    /// echo request it passed up as [`Verdict::Local`] when that is a next hop whose MAC the
    /// forwarder resolved and the frame came from (never a MAC only the frame claims). The local
    /// stack learns neighbours only from ARP it sees; without the hint its first answer to such
    /// a peer would wait for an ARP round trip of its own. The kernel hands each to the local
    /// stack as [`arp::neighbour_hint`].
    pub fn take_neighbour_hint(&mut self) -> Option<(Ipv4Addr, [u8; 6])> {
        self.hints.pop()
    }

    /// Timers: send ARP requests that are due (through `emit`), release frames whose next hop
    /// resolved (and the second halves of fragmented encapsulations), drop frames that waited
    /// too long, and expire flows (a share of the table: see [`SWEEP_PERIOD_MS`]). Call it every
    /// loop iteration or at least every few milliseconds.
    pub fn poll(&mut self, now: Instant, emit: &mut dyn FnMut(&[u8])) {
        let (mac, own, own6) = (self.mac, self.own, self.prefix6.map(|p| p.address));
        let mut sent = 0;
        self.neigh.due_requests(now, &mut |target| match target {
            IpAddr::V4(t) => {
                emit(&arp::request(mac, own, t));
                sent += 1;
            }
            // An IPv6 next hop exists only with an IPv6 address (the config's rule).
            IpAddr::V6(t) => {
                if let Some(own6) = own6 {
                    emit(&nd::solicitation(mac, own6, t));
                    sent += 1;
                }
            }
        });
        self.counters.arp_requests += sent;
        let dropped = self.neigh.release(now, emit);
        self.counters.drops[DropReason::ArpTimeout.index()] += dropped;
        let elapsed = now.millis().saturating_sub(self.swept_ms);
        self.swept_ms = now.millis();
        let slots = &mut self.slots;
        self.flows
            .sweep_paced(elapsed, SWEEP_PERIOD_MS, now.secs32(), |e| {
                Slot::release(slots, e.backend)
            });
        if let Some(p) = &mut self.persist {
            p.sweep_paced(elapsed, SWEEP_PERIOD_MS, now.secs32(), |_| {});
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod golden;

#[cfg(test)]
mod props;
