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
//! - **Fragments.** A first fragment carries the ports and is scheduled like any packet; its
//!   choice is remembered (source, destination, protocol, IP id) in a small table, and later
//!   fragments follow it. A later fragment whose first one was not seen goes, by a 3-tuple hash
//!   (as Maglev does), to a backend of the all-ports VIP on that address; without one it is
//!   dropped as `fragment_unknown`.
//! - **Config changes** rebuild every table in [`Forwarder::apply_config`], between two packets.
//!   Backends are kept in *slots* identified by (VIP name, backend address); a slot that survives
//!   a change keeps its flows, counters and health state. A flow whose slot was removed is
//!   rescheduled on its next packet. A slot is reused only once no flow points to it.
//! - **Health.** Backends start up. Weight 0 (drain) removes a backend from scheduling only: its
//!   existing flows stay. Down (failed health checks) also moves its existing flows: each is
//!   rescheduled on its next packet to a backend that is up, as IPVS's `expire_nodest_conn` does
//!   for a removed destination (a TCP connection moved mid-stream is reset by its new backend;
//!   the client reconnects instead of waiting on a dead server).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, UdpPacket,
};

use crate::config::{Config, Mode, Prefix, Protocol, Scheduler, VipPort};
use crate::flow::{hash_key, packet_kind, Displaced, FlowKey, FlowState, FlowTable, KIND_UDP};
use crate::neigh::Neighbours;
use crate::sched::{Candidate, SchedState};
use crate::stats::{BackendStats, Counters, DropReason, VipStats};
use crate::time::Instant;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const ICMP_LEN: usize = 8;
const TCP_LEN: usize = 20;
/// Offset of the protocol number in the IPv4 header (RFC 791).
const IPV4_PROTOCOL: usize = 9;
/// Headroom the kernel must leave in front of every frame.
pub const HEADROOM: usize = 64;
/// Frames handled per prefetch round in [`Forwarder::process_burst`].
pub const BURST: usize = 16;
/// With at most this many entries in use in the flow table, [`Forwarder::process_frames`]
/// takes a burst frame by frame, without its prefetch pass: the buckets those entries occupy
/// (at most 64 or 128 bytes each, 256 to 512 KiB here) stay in the L2 cache, where a prefetch
/// hides little and the pass costs about 90 instructions per frame (callgrind). Measured on
/// the build host, the two ways meet at about 4 000 flows (forwarder/BENCHMARKS.md).
pub const DIRECT_MAX_FLOWS: usize = 4096;
/// [`Forwarder::poll`] sweeps the whole flow table (and the persistence table) for expired
/// entries once in this period, a share of it per call. Expired entries are also reused where
/// a new flow lands; the sweep keeps the counts of active flows and the least-connection
/// schedulers' connection counts current, for which seconds are soon enough next to timeouts
/// of 60 s and more. (It was 256 buckets per call; with the kernel calling every millisecond
/// that swept a million-flow table every second, about 30 guest instructions per forwarded
/// frame in `qemu/bench`.)
pub const SWEEP_PERIOD_MS: u64 = 10_000;
const FRAG_SLOTS: usize = 4096;
const FRAG_TIMEOUT_MS: u64 = 30_000;
const IPPROTO_IPIP: u8 = 4;
/// Fixed seed of the Maglev/source-hash key hash, so that several balancers agree.
const CONSISTENT_SEED: u64 = 0x5349_4445_5354_4550; // "SIDESTEP"
const OUTER_TTL: u8 = 64;

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

/// A backend as the data path sees it; identified across configs by (VIP name, address).
#[derive(Clone, Debug)]
struct Slot {
    /// Part of the running config (else retired, waiting for its flows to end).
    live: bool,
    vip: u32,
    address: Ipv4Addr,
    name: String,
    weight: u32,
    up: bool,
    /// Index of its next hop in the neighbour table.
    neigh: u32,
    /// `vip` while the slot is live and up, else [`NO_VIP`]: the one comparison a packet of an
    /// existing flow makes to know it may stay here (kept by [`Slot::sync`] whenever `live`,
    /// `up` or `vip` change, instead of testing the three per packet).
    keeps: u32,
    /// Flows in the table pointing here.
    conns: u32,
    packets: u64,
    bytes: u64,
}

/// No VIP's index (see [`Slot::keeps`]).
const NO_VIP: u32 = u32::MAX;

impl Slot {
    /// One flow fewer points at slot `backend` (if that slot still exists).
    #[inline(always)]
    fn release(slots: &mut [Slot], backend: u32) {
        if let Some(s) = slots.get_mut(backend as usize) {
            s.conns = s.conns.saturating_sub(1);
        }
    }

    /// Bring [`keeps`](Self::keeps) up to date after `live`, `up` or `vip` changed.
    fn sync(&mut self) {
        self.keeps = if self.live && self.up {
            self.vip
        } else {
            NO_VIP
        };
    }
}

#[derive(Clone)]
struct VipRt {
    name: String,
    mode: Mode,
    scheduler: Scheduler,
    persistence: Option<u32>,
    /// Slots in config order.
    backends: Vec<u32>,
    sched: SchedState,
    packets: u64,
    bytes: u64,
}

/// (address, port or 0 for all ports, protocol) -> VIP index; open addressing, O(1).
///
/// A lookup probes the specific port, then the all-ports entry; a config that has only one kind
/// of VIP (the usual case) skips the other probe.
#[derive(Clone)]
struct VipIndex {
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

    fn build(entries: &[(u32, u16, u8, u32)]) -> VipIndex {
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

    #[inline(always)]
    fn get(&self, addr: u32, port: u16, proto: u8) -> Option<u32> {
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

    /// A specific-port VIP wins over an all-ports VIP on the same address and protocol.
    #[inline(always)]
    fn lookup(&self, addr: u32, port: u16, proto: u8) -> Option<u32> {
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

#[derive(Clone, Copy, Default)]
struct FragEntry {
    addrs: u64,
    /// `ident << 8 | proto`, with bit 32 set when used.
    id: u64,
    vip: u32,
    backend: u32,
    expires: Instant,
}

/// Facts about an IPv4 packet, read once.
#[derive(Clone, Copy)]
struct Ip {
    src: u32,
    dst: u32,
    proto: u8,
    /// Header length in bytes (20..=60).
    ihl: u8,
    /// Total length (header and payload) in bytes.
    total: u16,
    df: bool,
}

impl Ip {
    #[inline(always)]
    fn ihl(&self) -> usize {
        usize::from(self.ihl)
    }

    #[inline(always)]
    fn total(&self) -> usize {
        usize::from(self.total)
    }
}

/// A TCP or UDP packet (or first fragment) to a VIP, with its flow key hashed: what
/// [`Forwarder::classify`] hands on to the flow table.
///
/// Packed into whole words: the burst path stores one per frame and reads it back, and as a
/// dozen separate small fields (bools, u8s, u16s) building, storing and reloading it took
/// about 90 instructions per frame (callgrind); as words it is a handful of moves.
#[derive(Clone, Copy)]
struct FlowPacket {
    key: FlowKey,
    hash: u64,
    /// VIP index (bits 0..32; the TTL for a later fragment), IP total length (32..48), IP
    /// ident (48..64).
    meta: u64,
    /// The packet's kind ([`packet_kind`]: the TCP flags byte's FIN, SYN, RST and ACK bits as
    /// received, or [`KIND_UDP`]) in bits 0..8, the IPv4 flags DF and MF as received in the
    /// high byte of the flags/offset field (bits 8..16), and the IP header length in bytes
    /// (bits 16..24). Raw header bits, so building this is a few shifts, not a select per flag
    /// (that took 17 instructions per packet).
    bits: u32,
}

/// TCP SYN and ACK, where the TCP flags byte has them (RFC 9293).
const FP_SYN: u32 = 0x02;
const FP_ACK: u32 = 0x10;
/// IPv4 DF and MF, where the high byte of the flags/offset field has them (RFC 791).
const FP_DF: u32 = 0x40 << 8;
const FP_MORE_FRAGS: u32 = 0x20 << 8;
const IP_DF: u8 = 0x40;
const IP_MORE_FRAGS: u8 = 0x20;

impl FlowPacket {
    /// `ip_flags` is the high byte of the IPv4 flags/offset field with only DF and MF kept,
    /// `kind` the packet's [`packet_kind`].
    #[inline(always)]
    fn new(
        ip: Ip,
        key: FlowKey,
        hash: u64,
        vip: u32,
        ident: u16,
        ip_flags: u8,
        kind: u8,
    ) -> FlowPacket {
        FlowPacket {
            key,
            hash,
            meta: u64::from(vip) | (u64::from(ip.total) << 32) | (u64::from(ident) << 48),
            bits: u32::from(kind) | (u32::from(ip_flags) << 8) | (u32::from(ip.ihl) << 16),
        }
    }

    /// A later fragment (no ports): its addresses and protocol as the key (not a flow's key),
    /// its TTL in place of the VIP.
    #[inline(always)]
    fn later_fragment(ip: Ip, ttl: u8, ident: u16) -> FlowPacket {
        let key = FlowKey {
            addrs: (u64::from(ip.src) << 32) | u64::from(ip.dst),
            rest: u64::from(ip.proto),
        };
        // Only DF is kept: nothing reads a later fragment's MF.
        let df = if ip.df { IP_DF } else { 0 };
        FlowPacket::new(ip, key, 0, u32::from(ttl), ident, df, 0)
    }

    /// The IPv4 facts, back from the key and the packed words.
    #[inline(always)]
    fn ip(&self) -> Ip {
        Ip {
            src: (self.key.addrs >> 32) as u32,
            dst: self.key.addrs as u32,
            proto: self.proto(),
            ihl: (self.bits >> 16) as u8,
            total: self.total(),
            df: self.flag(FP_DF),
        }
    }

    #[inline(always)]
    fn vip(&self) -> u32 {
        self.meta as u32
    }

    #[inline(always)]
    fn proto(&self) -> u8 {
        self.key.rest as u8
    }

    /// The IP total length.
    #[inline(always)]
    fn total(&self) -> u16 {
        (self.meta >> 32) as u16
    }

    #[inline(always)]
    fn ident(&self) -> u16 {
        (self.meta >> 48) as u16
    }

    #[inline(always)]
    fn flag(&self, f: u32) -> bool {
        self.bits & f != 0
    }

    /// A TCP SYN (without ACK): most likely the first packet of a flow, so worth fetching what
    /// an insertion reads. (UDP gives no such hint; its first packets take the plain path.)
    #[inline(always)]
    fn opens(&self) -> bool {
        self.bits & (FP_SYN | FP_ACK) == FP_SYN
    }

    /// The packet's kind, see [`packet_kind`].
    #[inline(always)]
    fn kind(&self) -> u8 {
        self.bits as u8
    }
}

/// What a frame is, decided from its bytes and the config alone (no flow or neighbour state).
/// [`Forwarder::process_burst`] keeps one per frame of a round, so it is kept small.
#[derive(Clone, Copy)]
enum Class {
    /// A packet of a VIP's flow.
    Flow(FlowPacket),
    /// Drop for this reason (not counted yet).
    Drop(DropReason),
    /// IPv4 to the balancer's own address.
    Local,
    /// An ARP frame.
    Arp,
    /// A TCP or UDP fragment other than the first (no ports, no hash; the TTL where a flow
    /// packet has its VIP: see [`FlowPacket::later_fragment`]). The same payload type as
    /// `Flow`, so that the compiler stores one set of words whichever variant it is.
    LaterFragment(FlowPacket),
}

// 48 bytes today (whole words; 80 with a dozen separate fields, 40 with fewer but smaller ones).
const _: () = assert!(core::mem::size_of::<Class>() <= 48);

/// Sidestep's data path: VIPs, schedulers, flows, neighbours and counters.
#[derive(Clone)]
pub struct Forwarder {
    mac: [u8; 6],
    own: Ipv4Addr,
    subnet: Prefix,
    gateway: Option<Ipv4Addr>,
    mtu: usize,
    version: u64,
    vips: Vec<VipRt>,
    index: VipIndex,
    vip_addrs: Vec<u32>,
    slots: Vec<Slot>,
    flows: FlowTable,
    persist: Option<FlowTable>,
    frags: Vec<FragEntry>,
    neigh: Neighbours,
    scratch: Vec<u8>,
    ident: u16,
    seed: u64,
    /// When `poll` last swept (ms).
    swept_ms: u64,
    /// Above this many flows in the table a burst goes through the prefetch pass
    /// ([`DIRECT_MAX_FLOWS`], or never: see [`set_prefetch`](Self::set_prefetch)).
    direct_max_flows: usize,
    counters: Counters,
}

impl Forwarder {
    /// A forwarder for `config` (already validated) on a NIC with address `mac`, with a flow
    /// table of `flow_capacity` entries (32 bytes each), allocated now and never grown.
    pub fn new(config: &Config, mac: [u8; 6], flow_capacity: usize) -> Forwarder {
        let mut m = [0u8; 8];
        m[..6].copy_from_slice(&mac);
        let seed = crate::flow::fold_mul(
            u64::from_le_bytes(m) ^ 0x2545_F491_4F6C_DD1D,
            (flow_capacity as u64) ^ 0x9E37_79B9_7F4A_7C15,
        );
        Self::with_seed(config, mac, flow_capacity, seed)
    }

    /// As [`new`](Self::new), with the flow-hash seed given (the kernel may pass the TSC or
    /// RDRAND so that a sender cannot aim at one bucket).
    pub fn with_seed(config: &Config, mac: [u8; 6], flow_capacity: usize, seed: u64) -> Forwarder {
        let mut f = Forwarder {
            mac,
            own: config.interface.address.address,
            subnet: config.interface.address,
            gateway: config.interface.gateway,
            mtu: usize::from(config.interface.mtu),
            version: 0,
            vips: Vec::new(),
            index: VipIndex::build(&[]),
            vip_addrs: Vec::new(),
            slots: Vec::new(),
            flows: FlowTable::new(flow_capacity, seed),
            persist: None,
            frags: vec![FragEntry::default(); FRAG_SLOTS],
            neigh: Neighbours::new(),
            scratch: vec![0; 2048],
            ident: 0,
            seed,
            swept_ms: 0,
            direct_max_flows: DIRECT_MAX_FLOWS,
            counters: Counters::default(),
        };
        f.apply_config(config, Instant::ZERO);
        f
    }

    /// Whether a burst over a table of more than [`DIRECT_MAX_FLOWS`] flows goes through the
    /// prefetch pass (the default) or, like a small table's, frame by frame. On a CPU the pass
    /// overlaps the flow-table misses of up to [`BURST`] frames; where prefetching does nothing
    /// (an emulated CPU, as QEMU's TCG) it only adds work: in the image under TCG, with 64 k
    /// flows, `process_frames` ran 452 guest instructions a frame with it and 358 without
    /// (qemu/tbprof). The verdicts are the same either way.
    pub fn set_prefetch(&mut self, on: bool) {
        self.direct_max_flows = if on { DIRECT_MAX_FLOWS } else { usize::MAX };
    }

    /// Swap in `config` (already validated): every table is rebuilt before this returns, so the
    /// change falls between two packets. Flows keep their backend where that backend (same VIP
    /// name and backend address) is still configured; counters and up/down state of kept
    /// backends and VIPs carry over.
    pub fn apply_config(&mut self, config: &Config, now: Instant) {
        let iface = &config.interface;
        self.own = iface.address.address;
        self.subnet = iface.address;
        self.gateway = iface.gateway;
        self.mtu = usize::from(iface.mtu);
        self.version = config.version;

        // Match surviving backends to their slots by (VIP name, address).
        let mut old: BTreeMap<(String, u32), u32> = BTreeMap::new();
        for (id, s) in self.slots.iter_mut().enumerate() {
            if s.live {
                if let Some(v) = self.vips.get(s.vip as usize) {
                    old.insert((v.name.clone(), u32::from(s.address)), id as u32);
                }
                s.live = false;
            }
        }
        let mut placed: Vec<Vec<Option<u32>>> = Vec::with_capacity(config.vips.len());
        for (vi, v) in config.vips.iter().enumerate() {
            let mut row = Vec::with_capacity(v.backends.len());
            for b in &v.backends {
                let id = old.remove(&(v.name.clone(), u32::from(b.address)));
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
                    address: b.address,
                    name: b.name.clone(),
                    weight: b.weight,
                    up: true,
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

        // Next hops: the backend itself when on-link, else the gateway.
        let hops: Vec<Ipv4Addr> = self
            .slots
            .iter()
            .filter(|s| s.live)
            .map(|s| self.next_hop_of(s.address))
            .collect();
        self.neigh.set_hops(&hops);
        for i in 0..self.slots.len() {
            if self.slots[i].live {
                let hop = self.next_hop_of(self.slots[i].address);
                self.slots[i].neigh = self.neigh.index_of(hop).unwrap_or(0);
            }
        }

        // VIPs, carrying counters over by name.
        let mut vips = Vec::with_capacity(config.vips.len());
        let mut entries = Vec::with_capacity(config.vips.len());
        for (vi, v) in config.vips.iter().enumerate() {
            let (packets, bytes) = self
                .vips
                .iter()
                .find(|o| o.name == v.name)
                .map_or((0, 0), |o| (o.packets, o.bytes));
            let proto = match v.protocol {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
            };
            let port = match v.port {
                VipPort::All => 0,
                VipPort::One(p) => p,
            };
            entries.push((u32::from(v.address), port, proto, vi as u32));
            vips.push(VipRt {
                name: v.name.clone(),
                mode: v.mode,
                scheduler: v.scheduler,
                persistence: v.persistence,
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

    fn next_hop_of(&self, addr: Ipv4Addr) -> Ipv4Addr {
        if self.subnet.contains(addr) {
            addr
        } else {
            self.gateway.unwrap_or(addr)
        }
    }

    fn rebuild_sched(&mut self, vi: usize) {
        let v = &self.vips[vi];
        let eligible: Vec<Candidate> = v
            .backends
            .iter()
            .map(|&id| (id, &self.slots[id as usize]))
            .filter(|(_, s)| s.up && s.weight > 0)
            .map(|(id, s)| Candidate {
                slot: id,
                weight: s.weight,
                id: u32::from(s.address),
            })
            .collect();
        let table = matches!(v.scheduler, Scheduler::Maglev | Scheduler::Sh);
        self.vips[vi].sched = SchedState::new(eligible, table);
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

    /// The global counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
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
                            address: s.address,
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
                    packets: v.packets,
                    bytes: v.bytes,
                    flows_active: backends.iter().map(|b| b.flows_active).sum(),
                    backends,
                }
            })
            .collect()
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

    /// The resolved MAC of next hop `ip`, if it is one and is resolved.
    pub fn neighbour(&self, ip: Ipv4Addr) -> Option<[u8; 6]> {
        let i = self.neigh.index_of(ip)?;
        self.neigh.get(i).filter(|n| n.resolved).map(|n| n.mac)
    }

    #[inline(always)]
    fn drop(&mut self, reason: DropReason) -> Verdict {
        self.counters.drops[reason.index()] += 1;
        Verdict::Drop(reason)
    }

    /// Timers: send ARP requests that are due (through `emit`), release frames whose next hop
    /// resolved (and the second halves of fragmented encapsulations), drop frames that waited
    /// too long, and expire flows (a share of the table: see [`SWEEP_PERIOD_MS`]). Call it every
    /// loop iteration or at least every few milliseconds.
    pub fn poll(&mut self, now: Instant, emit: &mut dyn FnMut(&[u8])) {
        let (mac, own) = (self.mac, self.own);
        let mut sent = 0;
        self.neigh.due_requests(now, &mut |target| {
            let mut frame = [0u8; 60];
            arp_request(&mut frame, mac, own, target);
            emit(&frame);
            sent += 1;
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

    /// Decide about the frame `buf[head..head + len]` and rewrite it in place. `buf` is the whole
    /// packet buffer and `head` must leave at least [`HEADROOM`] bytes in front for encapsulation
    /// and replies. Never panics, whatever the bytes.
    pub fn process(&mut self, buf: &mut [u8], head: usize, len: usize, now: Instant) -> Verdict {
        let class = self.classify(buf, head, len);
        self.act(buf, head, len, class, now)
    }

    /// [`process`](Self::process) for a burst, writing one verdict per frame into `verdicts`
    /// (which must be at least as long): [`process_frames`](Self::process_frames) over a list
    /// of frames.
    pub fn process_burst(
        &mut self,
        frames: &mut [RxFrame<'_>],
        verdicts: &mut [Verdict],
        now: Instant,
    ) {
        self.process_frames(frames, verdicts, now);
    }

    /// [`process`](Self::process) for a burst, writing one verdict per frame into `verdicts`
    /// (which must be at least as long). Up to [`BURST`] frames are classified (parsed, checked,
    /// matched to a VIP and their flow hashed) and their flow-table buckets prefetched before any
    /// is looked up, so the cache misses overlap; each frame is parsed and hashed once.
    pub fn process_frames<F: Frames + ?Sized>(
        &mut self,
        frames: &mut F,
        verdicts: &mut [Verdict],
        now: Instant,
    ) {
        let total = frames.count().min(verdicts.len());
        if self.flows.len() <= self.direct_max_flows {
            // Few flows: their buckets stay in the caches, so a prefetch pass would only add
            // work (keeping each frame's class and reading it back); take the frames one by one.
            for (i, v) in verdicts[..total].iter_mut().enumerate() {
                *v = match frames.frame_mut(i) {
                    Some((buf, head, len)) => {
                        let class = self.classify(buf, head, len);
                        self.act(buf, head, len, class, now)
                    }
                    None => self.drop(DropReason::Malformed),
                };
            }
            return;
        }
        let mut classes = [Class::Local; BURST];
        let now_s = now.secs32();
        let mut start = 0;
        while start < total {
            let n = (total - start).min(BURST);
            // Classifying reads only the frame and the config, never flow or neighbour state, so
            // doing it ahead for the whole chunk decides nothing differently.
            let mut syns = false;
            for (i, c) in classes[..n].iter_mut().enumerate() {
                *c = match frames.frame(start + i) {
                    Some((buf, head, len)) => self.classify(buf, head, len),
                    None => Class::Drop(DropReason::Malformed),
                };
                if let Class::Flow(p) = c {
                    if p.opens() {
                        // Its insertion reads the second bucket too when the first is full.
                        self.flows.prefetch_both(p.hash);
                        syns = true;
                    } else {
                        self.flows.prefetch(p.hash);
                    }
                }
            }
            // A second pass for the SYNs only, once their buckets have arrived: where both are
            // full, fetch what making room will read.
            if syns {
                for c in &classes[..n] {
                    if let Class::Flow(p) = c {
                        if p.opens() {
                            self.flows.prefetch_room(p.hash, now_s);
                        }
                    }
                }
            }
            for (i, (v, &c)) in verdicts[start..start + n]
                .iter_mut()
                .zip(classes.iter())
                .enumerate()
            {
                *v = match frames.frame_mut(start + i) {
                    Some((buf, head, len)) => self.act(buf, head, len, c, now),
                    // Lent for classifying but not now: whatever it was, it is not touched.
                    None => self.drop(DropReason::Malformed),
                };
            }
            start += n;
        }
    }

    /// Everything that can be known about a frame from its bytes and the config alone: the
    /// first half of [`process`](Self::process), split off so that the burst path can do it
    /// (and hash the flow) while prefetching.
    #[inline(always)]
    fn classify(&self, buf: &[u8], head: usize, len: usize) -> Class {
        let Some(end) = head.checked_add(len).filter(|&e| e <= buf.len()) else {
            return Class::Drop(DropReason::Malformed);
        };
        if len < ETH_LEN {
            return Class::Drop(DropReason::Malformed);
        }
        let (dst, ethertype) = {
            let eth = EthernetFrame::new_unchecked(&buf[head..end]);
            (eth.dst_addr(), eth.ethertype())
        };
        if dst.0 != self.mac && !dst.is_broadcast() && !dst.is_multicast() {
            return Class::Drop(DropReason::NotForUs);
        }
        match ethertype {
            EthernetProtocol::Ipv4 => self.classify_ipv4(buf, head, end),
            EthernetProtocol::Arp => Class::Arp,
            _ => Class::Drop(DropReason::Unsupported),
        }
    }

    #[inline(always)]
    fn classify_ipv4(&self, buf: &[u8], head: usize, end: usize) -> Class {
        let l3 = head + ETH_LEN;
        let packet = &buf[l3..end];
        // The checks of `Ipv4Packet::check_len`, once; the fixed header is then read as an array
        // (constant offsets, no bounds checks), field by field as RFC 791 lays it out.
        let Some(h) = packet.first_chunk::<IPV4_LEN>() else {
            return Class::Drop(DropReason::Malformed);
        };
        // Version 4; the header length in bytes (a plain 20-byte header is one comparison).
        let ihl = if h[0] == 0x45 {
            IPV4_LEN as u8
        } else if h[0] >> 4 == 4 && h[0] & 0x0f >= 5 {
            (h[0] & 0x0f) * 4
        } else {
            return Class::Drop(DropReason::Malformed);
        };
        let total = u16::from_be_bytes([h[2], h[3]]);
        if u16::from(ihl) > total
            || usize::from(total) > packet.len()
            || !ipv4_checksum_ok(&packet[..usize::from(ihl)])
        {
            return Class::Drop(DropReason::Malformed);
        }
        // Flags and fragment offset: DF, MF, then 13 bits of offset.
        let (flags, frag_offset) = (h[6], u16::from_be_bytes([h[6], h[7]]) & 0x1fff);
        let ip = Ip {
            src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
            proto: h[IPV4_PROTOCOL],
            ihl,
            total,
            df: flags & IP_DF != 0,
        };
        let (ttl, more_frags, ident) = (
            h[8],
            flags & IP_MORE_FRAGS != 0,
            u16::from_be_bytes([h[4], h[5]]),
        );
        if ip.dst == u32::from(self.own) {
            return Class::Local;
        }
        if ip.proto != 6 && ip.proto != 17 {
            return Class::Drop(DropReason::NotVip);
        }
        if frag_offset != 0 {
            return Class::LaterFragment(FlowPacket::later_fragment(ip, ttl, ident));
        }
        let l4 = &packet[ip.ihl()..ip.total()];
        // (source port, destination port, packet kind)
        let ports = if ip.proto == 6 {
            // `TcpPacket::check_len`'s checks (RFC 9293 layout: data offset in the high nibble of
            // byte 12, the flags in byte 13).
            match l4.first_chunk::<TCP_LEN>() {
                Some(t) if (TCP_LEN..=l4.len()).contains(&(usize::from(t[12] >> 4) * 4)) => Some((
                    u16::from_be_bytes([t[0], t[1]]),
                    u16::from_be_bytes([t[2], t[3]]),
                    packet_kind(Some(t[13])),
                )),
                _ => None,
            }
        } else if more_frags {
            // A first fragment's UDP length covers the whole datagram: only the ports are here.
            UdpPacket::new_checked(&l4[..l4.len().min(8)])
                .ok()
                .or_else(|| (l4.len() >= 8).then(|| UdpPacket::new_unchecked(&l4[..8])))
                .map(|u| (u.src_port(), u.dst_port(), KIND_UDP))
        } else {
            UdpPacket::new_checked(l4)
                .ok()
                .map(|u| (u.src_port(), u.dst_port(), KIND_UDP))
        };
        let Some((sport, dport, kind)) = ports else {
            return Class::Drop(DropReason::Malformed);
        };
        let Some(vip) = self.index.lookup(ip.dst, dport, ip.proto) else {
            return Class::Drop(DropReason::NotVip);
        };
        if ttl <= 1 {
            return Class::Drop(DropReason::Ttl);
        }
        let key = FlowKey::five_tuple(ip.src, ip.dst, sport, dport, ip.proto);
        Class::Flow(FlowPacket::new(
            ip,
            key,
            self.flows.hash(key),
            vip,
            ident,
            flags & (IP_DF | IP_MORE_FRAGS),
            kind,
        ))
    }

    /// The second half of [`process`](Self::process): act on a frame classified as `class`.
    #[inline(always)]
    fn act(
        &mut self,
        buf: &mut [u8],
        head: usize,
        len: usize,
        class: Class,
        now: Instant,
    ) -> Verdict {
        // `classify` returned a class other than `Drop` only for `head + len <= buf.len()`.
        let end = head.wrapping_add(len);
        match class {
            Class::Flow(p) => self.flow_packet(buf, head, end, p, now),
            Class::Drop(reason) => self.drop(reason),
            Class::Local => {
                self.counters.local += 1;
                Verdict::Local
            }
            Class::Arp => self.arp(buf, head, end, now),
            Class::LaterFragment(p) => self.later_fragment(buf, head, end, p, now),
        }
    }

    /// A TCP or UDP packet (or first fragment) to a VIP: find or make its flow, and forward.
    #[inline(always)]
    fn flow_packet(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        p: FlowPacket,
        now: Instant,
    ) -> Verdict {
        let (key, hash, vip, kind) = (p.key, p.hash, p.vip(), p.kind());
        let more_frags = p.flag(FP_MORE_FRAGS);
        let now_s = now.secs32();
        let found = match self.flows.find_mut(hash, key) {
            // A backend marked down by health checks loses its flows too: they are rescheduled
            // here, on their next packet. A drained one (weight 0) keeps them. (`keeps` is the
            // slot's VIP only while it is live and up.)
            Some((_, e)) if self.slots[e.backend as usize].keeps == vip && e.expires > now_s => {
                let state = e.next_state(kind);
                if e.last_seen != now_s || e.state != state {
                    e.renew(state, now_s);
                }
                Ok(e.backend)
            }
            other => Err(other.map(|(fs, _)| fs)),
        };
        let backend = match found {
            Ok(b) => b,
            Err(slot) => {
                // New flow, or an entry that expired, whose backend left the config or went down.
                if let Some(fs) = slot {
                    let e = self.flows.entry(fs);
                    let s = &self.slots[e.backend as usize];
                    if s.live && !s.up && s.vip == vip && e.expires > now_s {
                        self.counters.flows_rescheduled += 1;
                    }
                }
                let Some(b) = self.schedule(vip as usize, key, p.ip().src, now_s) else {
                    if let Some(fs) = slot {
                        let old = self.flows.remove(fs);
                        self.release_conn(old.backend);
                    }
                    return self.drop(DropReason::NoBackend);
                };
                let fs = match slot {
                    Some(fs) => {
                        let old = *self.flows.entry(fs);
                        self.release_conn(old.backend);
                        fs
                    }
                    None => {
                        let (fs, displaced) = self.flows.insert(hash, key, now_s);
                        match displaced {
                            Displaced::Nothing => {}
                            Displaced::Expired(old) => self.release_conn(old.backend),
                            Displaced::Evicted(old) => {
                                self.release_conn(old.backend);
                                self.counters.drops[DropReason::FlowEvicted.index()] += 1;
                            }
                        }
                        fs
                    }
                };
                let state = FlowState::SynSent.after(kind);
                let e = self.flows.entry_mut(fs);
                e.backend = b;
                e.renew(state as u8, now_s);
                self.slots[b as usize].conns += 1;
                self.counters.flows_created += 1;
                b
            }
        };
        if more_frags {
            self.remember_fragment(p.ip(), p.ident(), vip, backend, now);
            self.counters.fragments += 1;
        }
        self.forward(buf, head, end, &p, vip, backend, now)
    }

    #[inline(always)]
    fn release_conn(&mut self, backend: u32) {
        Slot::release(&mut self.slots, backend);
    }

    /// Pick a backend for a new flow of VIP `vi`: persistence first, then the scheduler.
    fn schedule(&mut self, vi: usize, key: FlowKey, src: u32, now_s: u32) -> Option<u32> {
        let v = &mut self.vips[vi];
        let mut pkey = None;
        if let (Some(secs), Some(p)) = (v.persistence, self.persist.as_mut()) {
            let k = FlowKey::persistence(src, vi as u32);
            let h = p.hash(k);
            if let Some(ps) = p.find(h, k) {
                let e = p.entry_mut(ps);
                let b = e.backend;
                let ok = self
                    .slots
                    .get(b as usize)
                    .is_some_and(|s| s.live && s.vip == vi as u32 && s.up && s.weight > 0)
                    && e.expires > now_s;
                if ok {
                    e.touch(FlowState::Persist, now_s, secs);
                    return Some(b);
                }
                p.remove(ps);
            }
            pkey = Some((k, h, secs));
        }
        let slots = &self.slots;
        let choice = match v.scheduler {
            Scheduler::Rr => v.sched.rr(),
            Scheduler::Wrr => v.sched.wrr(),
            Scheduler::Lc => v.sched.least_conns(false, |s| slots[s as usize].conns),
            Scheduler::Wlc => v.sched.least_conns(true, |s| slots[s as usize].conns),
            Scheduler::Sh => v.sched.maglev(hash_key(
                FlowKey {
                    addrs: u64::from(src),
                    rest: 1,
                },
                CONSISTENT_SEED,
            )),
            Scheduler::Maglev => v.sched.maglev(hash_key(key, CONSISTENT_SEED)),
        }?;
        if let (Some((k, h, secs)), Some(p)) = (pkey, self.persist.as_mut()) {
            let (ps, _) = p.insert(h, k, now_s);
            let e = p.entry_mut(ps);
            e.backend = choice;
            e.touch(FlowState::Persist, now_s, secs);
        }
        Some(choice)
    }

    fn frag_slot(ip: &Ip, ident: u16) -> (usize, u64, u64) {
        let addrs = (u64::from(ip.src) << 32) | u64::from(ip.dst);
        let id = (1 << 32) | (u64::from(ident) << 8) | u64::from(ip.proto);
        let h = crate::flow::fold_mul(addrs ^ 0xD6E8_FEB8_6659_FD93, id ^ 0x9E37_79B9_7F4A_7C15);
        ((h as usize) & (FRAG_SLOTS - 1), addrs, id)
    }

    fn remember_fragment(&mut self, ip: Ip, ident: u16, vip: u32, backend: u32, now: Instant) {
        let (i, addrs, id) = Self::frag_slot(&ip, ident);
        self.frags[i] = FragEntry {
            addrs,
            id,
            vip,
            backend,
            expires: now.plus_millis(FRAG_TIMEOUT_MS),
        };
    }

    /// A later fragment (`p` from [`FlowPacket::later_fragment`]).
    fn later_fragment(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        p: FlowPacket,
        now: Instant,
    ) -> Verdict {
        let (ip, ttl, ident) = (p.ip(), p.vip() as u8, p.ident());
        let (i, addrs, id) = Self::frag_slot(&ip, ident);
        let f = self.frags[i];
        let known = (f.addrs == addrs && f.id == id && f.expires > now)
            .then_some((f.vip, f.backend))
            .filter(|&(v, b)| {
                self.slots
                    .get(b as usize)
                    .is_some_and(|s| s.live && s.vip == v)
            });
        let choice = known.or_else(|| {
            // No first fragment seen: the all-ports VIP of this address, by a 3-tuple hash.
            let vip = self.index.get(ip.dst, 0, ip.proto)?;
            let h = hash_key(
                FlowKey {
                    addrs,
                    rest: u64::from(ip.proto),
                },
                CONSISTENT_SEED,
            );
            let b = self.vips[vip as usize].sched.by_hash(h)?;
            Some((vip, b))
        });
        let Some((vip, backend)) = choice else {
            return self.drop(DropReason::FragmentUnknown);
        };
        if ttl <= 1 {
            return self.drop(DropReason::Ttl);
        }
        self.counters.fragments += 1;
        self.forward(buf, head, end, &p, vip, backend, now)
    }

    /// Count and rewrite a packet (`p`, a flow's packet or a later fragment) for `backend` of
    /// `vip`. The packet's IPv4 facts are unpacked only where dsr-l3 needs them: built up front,
    /// they were kept on the stack for every packet.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn forward(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        p: &FlowPacket,
        vip: u32,
        backend: u32,
        now: Instant,
    ) -> Verdict {
        let total = u64::from(p.total());
        let v = &mut self.vips[vip as usize];
        v.packets += 1;
        v.bytes += total;
        let mode = v.mode;
        let s = &mut self.slots[backend as usize];
        s.packets += 1;
        s.bytes += total;
        let address = s.address;
        let (hop, mac) = match self.neigh.get(s.neigh) {
            Some(n) => (n.ip, n.resolved.then_some(n.mac)),
            None => (address, None),
        };
        match mode {
            Mode::DsrL2 => {
                let mut eth = EthernetFrame::new_unchecked(&mut buf[head..end]);
                eth.set_src_addr(EthernetAddress(self.mac));
                match mac {
                    Some(mac) => {
                        eth.set_dst_addr(EthernetAddress(mac));
                        self.counters.forwarded += 1;
                        Verdict::Forward {
                            head,
                            len: end - head,
                        }
                    }
                    None => self.wait_for_arp(hop, &buf[head..end], now),
                }
            }
            Mode::DsrL3 => self.encapsulate(buf, head, p.ip(), address, hop, mac, now),
        }
    }

    fn wait_for_arp(&mut self, hop: Ipv4Addr, frame: &[u8], now: Instant) -> Verdict {
        if self.neigh.enqueue(hop, frame, now) {
            self.counters.arp_queued += 1;
            Verdict::Queued
        } else {
            self.drop(DropReason::ArpQueueFull)
        }
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// IP-in-IP: write Ethernet + outer IPv4 in front of the untouched inner packet.
    #[allow(clippy::too_many_arguments)]
    fn encapsulate(
        &mut self,
        buf: &mut [u8],
        head: usize,
        ip: Ip,
        backend: Ipv4Addr,
        hop: Ipv4Addr,
        mac: Option<[u8; 6]>,
        now: Instant,
    ) -> Verdict {
        if ip.total() + IPV4_LEN > self.mtu {
            if ip.df {
                return self.frag_needed(buf, head, ip);
            }
            return self.encapsulate_fragmented(buf, head, ip, backend, hop, mac, now);
        }
        if head < IPV4_LEN {
            return self.drop(DropReason::NoHeadroom);
        }
        let start = head - IPV4_LEN;
        let len = ETH_LEN + IPV4_LEN + ip.total();
        let tos = buf[head + ETH_LEN + 1];
        let ident = self.next_ident();
        let frame = &mut buf[start..start + len];
        self.write_outer(
            frame,
            mac,
            tos,
            ip.total() + IPV4_LEN,
            ident,
            ip.df,
            false,
            0,
            backend,
        );
        match mac {
            Some(_) => {
                self.counters.forwarded += 1;
                Verdict::Forward { head: start, len }
            }
            None => self.wait_for_arp(hop, &buf[start..start + len], now),
        }
    }

    /// Ethernet header and outer IPv4 header at the front of `frame`.
    #[allow(clippy::too_many_arguments)]
    fn write_outer(
        &self,
        frame: &mut [u8],
        mac: Option<[u8; 6]>,
        tos: u8,
        total: usize,
        ident: u16,
        df: bool,
        more_frags: bool,
        frag_offset: u16,
        backend: Ipv4Addr,
    ) {
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..ETH_LEN]);
        eth.set_dst_addr(EthernetAddress(mac.unwrap_or([0; 6])));
        eth.set_src_addr(EthernetAddress(self.mac));
        eth.set_ethertype(EthernetProtocol::Ipv4);
        let mut outer = Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..ETH_LEN + IPV4_LEN]);
        outer.set_version(4);
        outer.set_header_len(IPV4_LEN as u8);
        outer.set_dscp(tos >> 2);
        outer.set_ecn(tos & 3);
        outer.set_total_len(total as u16);
        outer.set_ident(ident);
        outer.clear_flags();
        outer.set_dont_frag(df);
        outer.set_more_frags(more_frags);
        outer.set_frag_offset(frag_offset);
        outer.set_hop_limit(OUTER_TTL);
        outer.set_next_header(IpProtocol::Unknown(IPPROTO_IPIP));
        outer.set_src_addr(self.own);
        outer.set_dst_addr(backend);
        outer.fill_checksum();
    }

    /// Without DF, split the *outer* packet in two (as Linux's ip_fragment does for IPVS): the
    /// first fragment is the verdict, the second waits in the neighbour queue for `poll`.
    #[allow(clippy::too_many_arguments)]
    fn encapsulate_fragmented(
        &mut self,
        buf: &mut [u8],
        head: usize,
        ip: Ip,
        backend: Ipv4Addr,
        hop: Ipv4Addr,
        mac: Option<[u8; 6]>,
        now: Instant,
    ) -> Verdict {
        let first = (self.mtu - IPV4_LEN) / 8 * 8;
        let rest = ip.total() - first;
        if rest + IPV4_LEN > self.mtu || ETH_LEN + IPV4_LEN + rest > self.scratch.len() {
            return self.drop(DropReason::TooBig);
        }
        if head < IPV4_LEN {
            return self.drop(DropReason::NoHeadroom);
        }
        let l3 = head + ETH_LEN;
        let tos = buf[l3 + 1];
        let ident = self.next_ident();
        // Second fragment first, while the inner bytes are all still in place.
        let mut scratch = core::mem::take(&mut self.scratch);
        let second_len = ETH_LEN + IPV4_LEN + rest;
        scratch[ETH_LEN + IPV4_LEN..second_len].copy_from_slice(&buf[l3 + first..l3 + ip.total()]);
        self.write_outer(
            &mut scratch[..second_len],
            mac,
            tos,
            IPV4_LEN + rest,
            ident,
            false,
            false,
            first as u16,
            backend,
        );
        let queued = self.neigh.enqueue(hop, &scratch[..second_len], now);
        self.scratch = scratch;
        if !queued {
            return self.drop(DropReason::ArpQueueFull);
        }
        let start = head - IPV4_LEN;
        let len = ETH_LEN + IPV4_LEN + first;
        self.write_outer(
            &mut buf[start..start + len],
            mac,
            tos,
            IPV4_LEN + first,
            ident,
            false,
            true,
            0,
            backend,
        );
        self.counters.fragmented += 1;
        match mac {
            Some(_) => {
                self.counters.forwarded += 1;
                Verdict::Forward { head: start, len }
            }
            None => self.wait_for_arp(hop, &buf[start..start + len], now),
        }
    }

    /// Answer the client with ICMP "fragmentation needed" (type 3 code 4, next-hop MTU =
    /// MTU - 20) quoting the original IP header and 8 bytes, written in the headroom so that the
    /// quoted bytes stay where they are.
    fn frag_needed(&mut self, buf: &mut [u8], head: usize, ip: Ip) -> Verdict {
        let pre = ETH_LEN + IPV4_LEN + ICMP_LEN - ETH_LEN; // new headers minus the old Ethernet
        if head < pre {
            return self.drop(DropReason::NoHeadroom);
        }
        let start = head - pre;
        let quoted = (ip.ihl() + 8).min(ip.total());
        let len = ETH_LEN + IPV4_LEN + ICMP_LEN + quoted;
        let client_mac = EthernetFrame::new_unchecked(&buf[head..head + ETH_LEN]).src_addr();
        let frame = &mut buf[start..start + len];
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..ETH_LEN]);
        eth.set_dst_addr(client_mac);
        eth.set_src_addr(EthernetAddress(self.mac));
        eth.set_ethertype(EthernetProtocol::Ipv4);
        {
            let mut icmp = Icmpv4Packet::new_unchecked(&mut frame[ETH_LEN + IPV4_LEN..]);
            icmp.set_msg_type(Icmpv4Message::DstUnreachable);
            icmp.set_msg_code(4);
            let data = icmp.into_inner();
            data[4..6].copy_from_slice(&[0, 0]);
            data[6..8].copy_from_slice(&((self.mtu - IPV4_LEN) as u16).to_be_bytes());
            Icmpv4Packet::new_unchecked(data).fill_checksum();
        }
        let ident = self.next_ident();
        let mut out = Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..ETH_LEN + IPV4_LEN]);
        out.set_version(4);
        out.set_header_len(IPV4_LEN as u8);
        out.set_dscp(0);
        out.set_ecn(0);
        out.set_total_len((IPV4_LEN + ICMP_LEN + quoted) as u16);
        out.set_ident(ident);
        out.clear_flags();
        out.set_frag_offset(0);
        out.set_hop_limit(OUTER_TTL);
        out.set_next_header(IpProtocol::Icmp);
        out.set_src_addr(self.own);
        out.set_dst_addr(Ipv4Addr::from(ip.src));
        out.fill_checksum();
        self.counters.icmp_frag_needed += 1;
        self.counters.drops[DropReason::TooBig.index()] += 1;
        Verdict::Reply { head: start, len }
    }

    fn arp(&mut self, buf: &mut [u8], head: usize, end: usize, now: Instant) -> Verdict {
        let l3 = head + ETH_LEN;
        let parsed = match ArpPacket::new_checked(&buf[l3..end]) {
            Ok(p)
                if p.hardware_type() == ArpHardware::Ethernet
                    && p.protocol_type() == EthernetProtocol::Ipv4
                    && p.hardware_len() == 6
                    && p.protocol_len() == 4 =>
            {
                let mut sha = [0u8; 6];
                sha.copy_from_slice(p.source_hardware_addr());
                let spa = ip_of(p.source_protocol_addr());
                let tpa = ip_of(p.target_protocol_addr());
                Some((p.operation(), sha, spa, tpa))
            }
            _ => None,
        };
        let Some((op, sha, spa, tpa)) = parsed else {
            return self.drop(DropReason::Malformed);
        };
        self.neigh.learn(spa, sha, now);
        let ours = tpa == self.own || self.vip_addrs.binary_search(&u32::from(tpa)).is_ok();
        match op {
            ArpOperation::Request if ours => {
                let mut eth = EthernetFrame::new_unchecked(&mut buf[head..end]);
                eth.set_dst_addr(EthernetAddress(sha));
                eth.set_src_addr(EthernetAddress(self.mac));
                let mut p = ArpPacket::new_unchecked(&mut buf[l3..end]);
                p.set_operation(ArpOperation::Reply);
                p.set_source_hardware_addr(&self.mac);
                p.set_source_protocol_addr(&tpa.octets());
                p.set_target_hardware_addr(&sha);
                p.set_target_protocol_addr(&spa.octets());
                self.counters.arp_replies += 1;
                Verdict::Reply {
                    head,
                    len: end - head,
                }
            }
            ArpOperation::Reply if tpa == self.own => {
                self.counters.local += 1;
                Verdict::Local
            }
            ArpOperation::Request | ArpOperation::Reply => self.drop(DropReason::NotForUs),
            _ => self.drop(DropReason::Unsupported),
        }
    }
}

/// Whether an IPv4 header (all `header_len` bytes of it) has a valid checksum, i.e. the ones'-
/// complement sum of its 16-bit words is 0xffff. The usual 20-byte header is summed as five
/// 32-bit words in a `u64`; longer headers go through smoltcp. Like smoltcp's
/// `verify_checksum`, it accepts anything in a fuzzing build, so that the fuzzer gets past it.
///
/// No folding: since 2^16 = 1 modulo 0xffff, the ones'-complement sum of 16-bit words is 0xffff
/// exactly when their plain sum is a nonzero multiple of 0xffff, and the plain sum of the
/// 32-bit words is the same modulo 0xffff. So is that of byte-swapped words (a swap multiplies
/// a word by 256 modulo 0xffff, which is prime to 256), so the words are read in native order.
/// A remainder by a constant is a multiply and a shift, where folding took four rounds.
#[inline(always)]
fn ipv4_checksum_ok(header: &[u8]) -> bool {
    if cfg!(fuzzing) {
        return true;
    }
    let Some(h) = header
        .first_chunk::<IPV4_LEN>()
        .filter(|_| header.len() == IPV4_LEN)
    else {
        return Ipv4Packet::new_unchecked(header).verify_checksum();
    };
    let word = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let sum = word(0) + word(4) + word(8) + word(12) + word(16);
    sum % 0xffff == 0 && sum != 0
}

fn ip_of(bytes: &[u8]) -> Ipv4Addr {
    let mut o = [0u8; 4];
    o.copy_from_slice(&bytes[..4]);
    Ipv4Addr::from(o)
}

/// Write a broadcast ARP request for `target` from (`mac`, `own`) into `frame` (60 bytes).
fn arp_request(frame: &mut [u8; 60], mac: [u8; 6], own: Ipv4Addr, target: Ipv4Addr) {
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(EthernetAddress::BROADCAST);
    eth.set_src_addr(EthernetAddress(mac));
    eth.set_ethertype(EthernetProtocol::Arp);
    let mut p = ArpPacket::new_unchecked(&mut frame[ETH_LEN..ETH_LEN + 28]);
    p.set_hardware_type(ArpHardware::Ethernet);
    p.set_protocol_type(EthernetProtocol::Ipv4);
    p.set_hardware_len(6);
    p.set_protocol_len(4);
    p.set_operation(ArpOperation::Request);
    p.set_source_hardware_addr(&mac);
    p.set_source_protocol_addr(&own.octets());
    p.set_target_hardware_addr(&[0; 6]);
    p.set_target_protocol_addr(&target.octets());
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod props;
