//! The data plane: core 0's poll loop, which owns a NIC queue, a forwarder, the burst buffers,
//! the local stack and the control loop, and the [`Lane`] every poll loop is built on (the
//! other cores' loops are `crate::worker`; what the loops share is `crate::cores`).
//!
//! Each round receives a burst, lets the forwarder decide every frame of it, and transmits a
//! burst. What the forwarder decides is acted on here without looking at the bytes again:
//! forwarded frames and the forwarder's own replies (ARP answers) leave from the buffer they
//! arrived in; frames for the balancer itself are copied to the local stack, after the
//! neighbours the forwarder saw for it (so smoltcp's first answer needs no ARP round trip);
//! VRRP advertisements among them go to the virtual router (`crate::vrrp`) instead.
//! Between bursts, at most every [`HOUSEKEEPING_US`], the forwarder's timers, the local stack
//! and the control loop run.
//!
//! Frames the balancer makes itself (ARP, health checks, management replies) have a transmit
//! burst of their own, sent before the forwarded one each round: a flood that fills the transmit
//! ring sheds forwarded frames, never the balancer's own (so its health checks keep going out
//! and its answers keep coming back).

use crate::clock;
use crate::controller::{Controller, NicCounts};
use crate::idle::{self, Idle};
use crate::local::LocalStack;
use crate::memory;
use crate::statslog::StatsLog;
use crate::vrrp::VrrpNode;
use alloc::format;
use alloc::string::String;
use control::config::Config;
use core::net::IpAddr;
use drivers::{Burst, Nic, PacketBuf, BUF_SIZE, HEADROOM};
use forwarder::{DropReason, Forwarder, Instant, Verdict};
use log::{error, info, warn};

// The forwarder writes outer headers into the headroom the drivers leave in front of a frame.
const _: () = assert!(HEADROOM >= forwarder::HEADROOM);
// `sidestep check` refuses an MTU above what the drivers receive whole; one number for both.
const _: () = assert!(control::config::MTU_RANGE.1 as usize == drivers::MTU_MAX);

/// Under a hypervisor the loop flushes the TLB (reloads CR3) this often. Under QEMU TCG the
/// guest's TLB is QEMU's software TLB, which starts small and grows only when the guest flushes
/// it; the image otherwise never does, so flow-table lookups beyond its reach took a page walk
/// in the emulator each. On a real or hardware-virtualized CPU a reload this rarely costs a few
/// microseconds of refills. (Measurements: qemu/BENCHMARKS.md.)
const TLB_FLUSH_MS: u64 = 200;

/// Longest interval between two rounds of housekeeping. Its timers are milliseconds (ARP
/// retries, TCP, health checks), frames for the local stack run it at once, and the flow-table
/// sweep is paced by time (`forwarder::SWEEP_PERIOD_MS`), so a longer interval only saves work
/// on the forwarding path.
const HOUSEKEEPING_US: u64 = 1000;

/// Flow-table size: the config's, else a quarter of the heap (capped), and never more than the
/// free heap leaves room for (see `control::sizing`); a `limits.flows` that does not fit is an
/// error line and the largest table that does, not a failed allocation.
pub fn flow_capacity(config: &Config, heap_bytes: u64) -> usize {
    let size = control::sizing::flow_table(config.limits.flows, heap_bytes, memory::heap_free());
    if let Some(asked) = size.requested_too_many {
        error!(
            "limits.flows = {asked} needs {} MiB, but {} MiB of the heap are free for the flow table: using {} flows; give the machine more memory or lower limits.flows",
            (u64::from(asked) * control::sizing::FLOW_BYTES) >> 20,
            (size.fits as u64 * control::sizing::FLOW_BYTES) >> 20,
            size.flows
        );
    }
    size.flows
}

/// What every poll loop owns: its NIC queue, its forwarder (its shard of the flows) and its
/// bursts. Core 0's [`Dataplane`] and the other cores' [`crate::worker::Worker`] each have one.
pub struct Lane<N: Nic> {
    pub nic: N,
    pub fwd: Forwarder,
    rx: Burst,
    tx: Burst,
    /// Frames the balancer makes itself, sent before `tx`.
    pub local_tx: Burst,
    /// Forwarded frames shed because the transmit ring stayed full, and when that was last logged.
    pub tx_shed: u64,
    tx_shed_logged: Option<Instant>,
    /// Written by the forwarder for the first `count` frames of each burst.
    verdicts: [Verdict; drivers::BURST_SIZE],
    /// Where in the receive burst the frames copied from other cores start.
    foreign_from: usize,
}

/// Core 0's poll loop: its lane, and the balancer's own side (local stack, control loop, VRRP).
pub struct Dataplane<N: Nic> {
    lane: Lane<N>,
    mac: [u8; 6],
    local: LocalStack,
    ctl: Controller,
    stats: StatsLog,
    /// The VRRP router of `[vrrp]`, and the config version it follows.
    vrrp: Option<VrrpNode>,
    vrrp_version: u64,
    /// What the other cores' forwarders follow.
    publisher: crate::cores::Publisher,
    /// VRRP frames of the current burst, for the virtual router after it.
    vrrp_frames: alloc::vec::Vec<alloc::vec::Vec<u8>>,
}

impl<N: Nic> Lane<N> {
    /// A lane over `nic` with a forwarder for `config` and `flows` flows.
    pub fn new(nic: N, config: &Config, flows: usize) -> Lane<N> {
        let mac = nic.mac_address();
        let seed = crate::entropy::table_seed();
        let mut fwd = Forwarder::with_seed(config, mac, flows, seed);
        if idle::emulated_cpu() {
            // The prefetch pass only adds instructions where prefetching does nothing.
            fwd.set_prefetch(false);
        }
        Lane {
            nic,
            fwd,
            rx: Burst::new(),
            tx: Burst::new(),
            local_tx: Burst::new(),
            tx_shed: 0,
            tx_shed_logged: None,
            verdicts: [Verdict::Queued; drivers::BURST_SIZE],
            foreign_from: drivers::BURST_SIZE,
        }
    }

    /// Receive a burst; how many frames came.
    #[inline]
    pub fn receive(&mut self) -> usize {
        self.nic.rx_burst(&mut self.rx)
    }

    /// Whether the receive burst holds frames.
    #[inline]
    pub fn has_input(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Add a copy of `frame` to the receive burst (a frame another core relayed); false if the
    /// burst is full or no buffer is free.
    pub fn receive_copy(&mut self, frame: &[u8]) -> bool {
        if self.rx.is_full() {
            return false;
        }
        self.foreign_from = self.foreign_from.min(self.rx.len());
        match copy_to_pool(&mut self.nic, frame) {
            Some(pkt) => self.rx.push_back(pkt).is_ok(),
            // Too long for a buffer: never taken, so dropped rather than retried.
            None => frame.len() > BUF_SIZE - HEADROOM,
        }
    }

    /// Let the forwarder decide the received burst (not empty) in one call.
    #[inline]
    pub fn decide(&mut self, now: Instant) {
        // The pool lends the forwarder the burst's buffers one at a time, straight from the
        // handles (nothing is built or checked per burst).
        let count = self.rx.len();
        self.fwd.process_frames(
            &mut Lent(self.nic.pool_mut().lend(self.rx.make_contiguous())),
            &mut self.verdicts[..count],
            now,
        );
    }

    /// Act on the verdicts: transmit forwarded frames and the forwarder's own answers; show
    /// every other frame to `other` with its verdict and whether it came from another core,
    /// then recycle it. `core`'s ICMP errors without a flow here are handed to the other cores;
    /// those of other cores that find none here either are not counted twice.
    #[inline]
    pub fn dispatch(&mut self, core: usize, mut other: impl FnMut(&[u8], Verdict)) {
        let mut foreign_no_flow = 0;
        let count = self.rx.len();
        for i in 0..count {
            let Some(mut pkt) = self.rx.pop_front() else {
                break;
            };
            match self.verdicts[i] {
                Verdict::Forward { head, len } => {
                    if pkt.set_frame(head, len).is_err() {
                        self.nic.recycle(pkt);
                        continue;
                    }
                    queue_tx(&mut self.nic, &mut self.tx, pkt);
                }
                // The forwarder's own answers (ARP, ICMP) are the balancer's frames.
                Verdict::Reply { head, len } => {
                    if pkt.set_frame(head, len).is_err() {
                        self.nic.recycle(pkt);
                        continue;
                    }
                    queue_tx(&mut self.nic, &mut self.local_tx, pkt);
                }
                verdict => {
                    let frame = self.nic.pool().frame(&pkt);
                    if verdict == Verdict::Drop(DropReason::IcmpNoFlow) && crate::cores::count() > 1
                    {
                        if i < self.foreign_from {
                            crate::cores::retry_elsewhere(core, frame);
                        } else {
                            foreign_no_flow += 1;
                        }
                    }
                    other(frame, verdict);
                    self.nic.recycle(pkt);
                }
            }
        }
        self.foreign_from = drivers::BURST_SIZE;
        if foreign_no_flow > 0 {
            self.fwd
                .uncount_drops(DropReason::IcmpNoFlow, foreign_no_flow);
        }
        if self.rx.is_empty() {
            // Start the next burst at the front of the ring, so that `make_contiguous` moves
            // nothing.
            self.rx.clear();
        }
    }

    /// End a round of a poll loop: tell the idle policy whether there was work (`received`
    /// frames, or frames to send), and send what waits.
    #[inline]
    pub fn end_round(&mut self, idle: &mut Idle, tsc: u64, received: usize, now: Instant) {
        let sent = !self.tx.is_empty() || !self.local_tx.is_empty();
        if received > 0 || sent {
            idle.worked(tsc, received);
        } else {
            idle.nothing(tsc);
        }
        if sent {
            self.transmit(now);
        }
    }

    /// Send what waits: the balancer's own frames first (those that find no room wait a
    /// round), then the forwarded ones, shedding those if the ring stayed full.
    #[inline]
    fn transmit(&mut self, now: Instant) {
        if !self.local_tx.is_empty() {
            self.nic.tx_burst(&mut self.local_tx);
        }
        self.nic.tx_burst(&mut self.tx);
        if self.tx.is_full() {
            // The TX ring stayed full for a whole round: shed rather than stall receive.
            self.shed_tx(now);
        }
    }

    /// Drop the forwarded frames left in `tx`, counted, with a log line at most every second.
    fn shed_tx(&mut self, now: Instant) {
        self.tx_shed += self.tx.len() as u64;
        while let Some(p) = self.tx.pop_front() {
            self.nic.recycle(p);
        }
        if self
            .tx_shed_logged
            .is_none_or(|t| now.millis().saturating_sub(t.millis()) >= 1000)
        {
            self.tx_shed_logged = Some(now);
            warn!(
                "tx ring full: {} forwarded frames shed so far",
                self.tx_shed
            );
        }
    }

    /// Queue a copy of a frame made elsewhere among the balancer's own.
    pub fn send_copy(&mut self, frame: &[u8]) {
        send_copy(&mut self.nic, &mut self.local_tx, frame);
    }

    /// The forwarder's timers (ARP, held fragments, the flow-table sweep).
    pub fn poll_forwarder(&mut self, now: Instant) {
        let Lane {
            nic, fwd, local_tx, ..
        } = self;
        fwd.poll(now, &mut |frame| send_copy(nic, local_tx, frame));
    }
}

/// Timers every poll loop keeps between bursts.
pub struct Rhythm {
    housekeeping_cycles: u64,
    last_housekeeping: u64,
    tlb_flush_cycles: Option<u64>,
    last_tlb_flush: u64,
}

impl Rhythm {
    pub fn new() -> Rhythm {
        Rhythm {
            housekeeping_cycles: HOUSEKEEPING_US * clock::tsc_hz() / 1_000_000,
            last_housekeeping: 0,
            tlb_flush_cycles: idle::under_hypervisor()
                .then(|| TLB_FLUSH_MS * clock::tsc_hz() / 1_000),
            last_tlb_flush: 0,
        }
    }

    /// Whether housekeeping is due at `tsc` (or `now` is true); flushes the TLB when that is
    /// due too.
    #[inline]
    pub fn housekeeping_due(&mut self, tsc: u64, now: bool) -> bool {
        if !now && tsc.wrapping_sub(self.last_housekeeping) < self.housekeeping_cycles {
            return false;
        }
        self.last_housekeeping = tsc;
        if self
            .tlb_flush_cycles
            .is_some_and(|c| tsc.wrapping_sub(self.last_tlb_flush) >= c)
        {
            self.last_tlb_flush = tsc;
            memory::flush_tlb();
        }
        true
    }
}

impl<N: Nic> Dataplane<N> {
    /// Build core 0's forwarder (`flows` flows) for `config` over `nic`, and the local stack
    /// and control loop beside it.
    pub fn new(nic: N, config: &Config, flows: usize) -> Dataplane<N> {
        crate::phases::end("nic");
        let mut lane = Lane::new(nic, config, flows);
        let mac = lane.nic.mac_address();
        crate::phases::end("forwarder tables");
        if idle::emulated_cpu() {
            info!(
                "forwarder: emulated CPU (QEMU TCG): bursts taken frame by frame, no prefetch pass"
            );
        }
        info!(
            "nic: mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, link {}, {} packet buffers",
            mac[0],
            mac[1],
            mac[2],
            mac[3],
            mac[4],
            mac[5],
            if lane.nic.link_up() { "up" } else { "down" },
            lane.nic.pool().capacity()
        );
        let cores = crate::cores::count();
        info!(
            "forwarder: {} flows capacity ({} MiB){}",
            lane.fwd.flow_capacity() * cores,
            (lane.fwd.flow_capacity() * cores * 32) >> 20,
            if cores > 1 {
                format!(
                    ", {cores} poll loops with {} each",
                    lane.fwd.flow_capacity()
                )
            } else {
                String::new()
            }
        );
        let mut local = LocalStack::new(config, mac);
        let now_ms = clock::micros_since_boot() / 1000;
        let ctl = Controller::new(config, &mut lane.fwd, &mut local, now_ms);
        let vrrp = VrrpNode::new(config, mac, &mut lane.fwd, now_ms);
        Dataplane {
            lane,
            mac,
            local,
            ctl,
            stats: StatsLog::default(),
            vrrp,
            vrrp_version: config.version,
            publisher: crate::cores::Publisher::new(),
            vrrp_frames: alloc::vec::Vec::new(),
        }
    }

    /// Publish what the control plane decided so far, for the other cores' loops to start from.
    pub fn publish(&mut self) {
        self.publisher.publish(self.ctl.config(), &self.lane.fwd);
    }

    /// Announce the balancer's addresses and forward forever.
    pub fn run(mut self) -> ! {
        let config = self.ctl.config();
        // With [vrrp] the VIPs are announced by whoever becomes master.
        let own = own_addresses(config);
        let vrrp = self.vrrp.is_some();
        for addr in crate::controller::announced(config) {
            if !vrrp || own.contains(&Some(addr)) {
                let mac = self.mac;
                announce(mac, addr, &mut |f| self.send_copy(f));
            }
        }
        let config = self.ctl.config();
        crate::phases::end("control");
        info!(
            "ready: forwarding as {} ({} VIPs){}",
            config.interface.address,
            config.vips.len(),
            match &config.management {
                Some(m) => format!(", management on port {}", m.port),
                None => String::new(),
            }
        );
        // After the ready line: tools take the first line that says "ready".
        crate::phases::report();
        let mut idle = Idle::init(config.interface.poll);
        let mut rhythm = Rhythm::new();
        self.publisher.publish(self.ctl.config(), &self.lane.fwd);
        loop {
            // This round's time, for the forwarder and for the housekeeping and idle decisions
            // (one read of the TSC: under QEMU TCG `rdtsc` calls into the emulator).
            let tsc = clock::rdtsc();
            let now = Instant::from_nanos(clock::nanos_at(tsc));
            let received = self.lane.receive();
            #[cfg(feature = "ceiling")]
            crate::ceiling::bounce(
                &mut self.lane.nic,
                &mut self.lane.rx,
                &mut self.lane.tx,
                self.mac,
            );
            // The balancer's own frames that reached the other cores, and ICMP errors for flows
            // they do not have.
            crate::cores::take_relayed(|frame| self.lane.receive_copy(frame));
            crate::cores::take_retries(0, |frame| self.lane.receive_copy(frame));
            if self.lane.has_input() {
                self.forward_burst(now);
            }
            if rhythm.housekeeping_due(tsc, self.local.has_input()) {
                self.housekeeping(now);
            }
            self.stats
                .maybe_log(now, &self.lane.fwd, &self.lane.nic, &idle);
            self.lane.end_round(&mut idle, tsc, received, now);
        }
    }

    /// Hand the received burst (not empty) to the forwarder in one call and act on its
    /// verdicts: transmit, pass to the local stack, or recycle.
    fn forward_burst(&mut self, now: Instant) {
        self.lane.decide(now);
        // Neighbours first, so that smoltcp knows the sender before it answers the frame.
        while let Some((ip, mac)) = self.lane.fwd.take_neighbour_hint() {
            self.local.learn(ip.into(), mac);
        }
        let Dataplane {
            lane,
            local,
            vrrp_frames,
            ..
        } = self;
        lane.dispatch(0, |frame, verdict| {
            if verdict != Verdict::Local {
                return;
            }
            if control::vrrp::received(frame).is_some() {
                // VRRP is never the local stack's; without [vrrp] it is ignored.
                vrrp_frames.push(frame.to_vec());
            } else {
                local.deliver(frame);
            }
        });
        for frame in core::mem::take(&mut self.vrrp_frames) {
            self.vrrp_frame(&frame, now);
        }
    }

    /// The forwarder's timers (ARP, held fragments, the flow-table sweep), the local stack and
    /// the control loop; then what they decided is published to the other cores.
    fn housekeeping(&mut self, now: Instant) {
        self.lane.poll_forwarder(now);
        let Dataplane {
            lane,
            local,
            ctl,
            mac,
            vrrp,
            vrrp_version,
            publisher,
            ..
        } = self;
        let Lane {
            nic,
            fwd,
            local_tx: tx,
            tx_shed,
            ..
        } = lane;
        if local.due() {
            local.poll();
        }
        let stats = nic.stats();
        let counts = NicCounts {
            rx: stats.rx_packets,
            tx: stats.tx_packets,
            rx_drops: stats.rx_ring_exhausted
                + stats.rx_no_buffer
                + local.dropped()
                + crate::cores::relay_dropped(),
            tx_shed: *tx_shed,
        };
        let status = vrrp.as_ref().map(VrrpNode::status);
        let round = ctl.poll(now, fwd, local, counts, status.as_ref());
        if round.touched || local.has_input() {
            local.poll();
        }
        let ms = now.millis();
        if ctl.config().version != *vrrp_version {
            *vrrp_version = ctl.config().version;
            *vrrp = VrrpNode::follow(vrrp.take(), ctl.config(), *mac, fwd, ms, &mut |f| {
                send_copy(nic, tx, f)
            });
        }
        if let Some(v) = vrrp.as_mut() {
            v.poll(ms, fwd, &mut |f| send_copy(nic, tx, f));
        }
        // A VRRP backup announces its own address only.
        let own = own_addresses(ctl.config());
        let backup = vrrp.as_ref().is_some_and(|v| !v.is_master());
        for addr in round.announce {
            if !backup || own.contains(&Some(addr)) {
                announce(*mac, addr, &mut |f| send_copy(nic, tx, f));
            }
        }
        local.drain_tx(|frame| send_copy(nic, tx, frame));
        publisher.publish(ctl.config(), fwd);
    }

    /// A VRRP frame for the virtual router, if there is one.
    fn vrrp_frame(&mut self, frame: &[u8], now: Instant) {
        let Dataplane { lane, vrrp, .. } = self;
        let Lane {
            nic, fwd, local_tx, ..
        } = lane;
        if let Some(v) = vrrp {
            v.receive(frame, now.millis(), fwd, &mut |f| {
                send_copy(nic, local_tx, f)
            });
        }
    }

    fn send_copy(&mut self, frame: &[u8]) {
        self.lane.send_copy(frame);
    }
}

/// A pool buffer holding a copy of `frame` (at [`HEADROOM`]); none if the pool is empty or the
/// frame longer than a buffer.
fn copy_to_pool<N: Nic>(nic: &mut N, frame: &[u8]) -> Option<PacketBuf> {
    if frame.len() > BUF_SIZE - HEADROOM {
        return None;
    }
    let mut pkt = nic.pool_mut().alloc()?;
    nic.pool_mut().buffer_mut(&pkt)[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
    if pkt.set_frame(HEADROOM, frame.len()).is_err() {
        nic.recycle(pkt);
        return None;
    }
    Some(pkt)
}

/// Copy a frame made elsewhere (ARP request, local stack reply) into a pool buffer and queue it.
fn send_copy<N: Nic>(nic: &mut N, tx: &mut Burst, frame: &[u8]) {
    if let Some(pkt) = copy_to_pool(nic, frame) {
        queue_tx(nic, tx, pkt);
    }
}

/// Queue `pkt` for transmission, sending the burst first if it is full; a frame that still finds
/// no room goes back to the pool.
pub(crate) fn queue_tx<N: Nic>(nic: &mut N, tx: &mut Burst, pkt: PacketBuf) {
    if tx.is_full() {
        nic.tx_burst(tx);
    }
    if let Err(pkt) = tx.push_back(pkt) {
        nic.recycle(pkt);
    }
}

/// The received burst as the forwarder reads it: the pool's buffers, lent one at a time.
struct Lent<'p>(drivers::Lender<'p>);

impl forwarder::Frames for Lent<'_> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn frame(&self, i: usize) -> Option<(&[u8], usize, usize)> {
        self.0.get(i).map(|(p, buf)| (buf, p.head(), p.len()))
    }

    #[inline(always)]
    fn frame_mut(&mut self, i: usize) -> Option<(&mut [u8], usize, usize)> {
        self.0.get_mut(i).map(|(p, buf)| (buf, p.head(), p.len()))
    }
}

/// The balancer's own addresses (not the VIPs'): its IPv4 address and its IPv6 one, if any.
fn own_addresses(config: &Config) -> [Option<IpAddr>; 2] {
    [
        Some(IpAddr::V4(config.interface.address.address)),
        config.interface.address6.map(|p| IpAddr::V6(p.address)),
    ]
}

/// Tell the link that `addr` is at `mac`: gratuitous ARP (IPv4) or an unsolicited neighbour
/// advertisement (IPv6).
fn announce(mac: [u8; 6], addr: IpAddr, send: &mut dyn FnMut(&[u8])) {
    match addr {
        IpAddr::V4(a) => send(&forwarder::arp::gratuitous(mac, a)),
        IpAddr::V6(a) => send(&forwarder::nd::unsolicited_advertisement(mac, a)),
    }
}
