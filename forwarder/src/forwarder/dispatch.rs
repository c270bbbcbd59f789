//! Flow dispatch: the per-packet entry points ([`Forwarder::process`], and the burst forms
//! with their prefetch pass), acting on a classified frame, and the flow-table work of a VIP's
//! packet: find its flow (or schedule a new one, persistence first), keep its state and the
//! backends' connection counts, and hand it to the rewrite.
//!
//! Where a VIP's consistent hash alone routes its flows (`maglev`/`sh` without persistence),
//! the table holds only what the hash cannot recompute, which floods cannot abuse: a TCP
//! packet without SYN that matches no entry (an ACK flood, or a flow that moved here from
//! another balancer) is forwarded by the hash and stored nowhere, and above
//! `limits.new_flows_per_second` new flows are forwarded the same way instead of stored. The
//! backend is the one the entry would have named; only a later change of the backend set
//! moves such a flow (as the Maglev refill moves a few keys).

use super::classify::{opens_conversation, Class, FlowPacket, FP_MORE_FRAGS};
use super::tables::Slot;
use super::{Forwarder, Frames, RxFrame, Verdict, BURST, CONSISTENT_SEED};
use crate::config::Scheduler;
use crate::flow::{fold_addrs6, hash_key, source_id6, Displaced, FlowKey, FlowState, KIND_UDP};
use crate::stats::DropReason;
use crate::time::Instant;

impl Forwarder {
    /// Decide about the frame `buf[head..head + len]` and rewrite it in place. `buf` is the whole
    /// packet buffer and `head` must leave at least [`super::HEADROOM`] bytes in front for
    /// encapsulation and replies. Never panics, whatever the bytes.
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

    #[inline(always)]
    pub(super) fn drop(&mut self, reason: DropReason) -> Verdict {
        self.counters.drops[reason.index()] += 1;
        Verdict::Drop(reason)
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
            // A VRRP backup leaves the VIPs to the master (one test of a bool per packet).
            Class::Flow(_) | Class::LaterFragment(_) | Class::Icmp if !self.vip_active => {
                self.drop(DropReason::VrrpBackup)
            }
            Class::Flow(p) => self.flow_packet(buf, head, end, p, now),
            Class::Drop(reason) => self.drop(reason),
            Class::Local => self.local(buf, head, end),
            Class::Arp => self.arp(buf, head, end, now),
            Class::LaterFragment(p) => self.later_fragment(buf, head, end, p, now),
            Class::Icmp => self.icmp(buf, head, end, now),
            Class::Ipv6 => self.ipv6(buf, head, end, now),
        }
    }

    /// IPv4 for the local stack (`buf[head..end]`, its headers checked): unless the management
    /// allow-list refuses it, count it, and when it opens a conversation from a next hop, hint
    /// the MAC the forwarder resolved for it. A SYN or ping proves nothing about its sender's
    /// MAC (any host on the segment can send one from an allowed address): anyone but a resolved
    /// next hop, the local stack resolves by ARP itself, so a forged SYN's SYN-ACK goes to the
    /// address's real owner. Out of line, so that VIP traffic does not carry it (marked cold,
    /// the single-frame path got slower all the same).
    #[inline(never)]
    fn local(&mut self, buf: &[u8], head: usize, end: usize) -> Verdict {
        let frame = &buf[head..end];
        if self.mgmt_denied(frame) {
            return self.drop(DropReason::MgmtDenied);
        }
        if self.bgp_denied(frame) {
            return self.drop(DropReason::BgpDenied);
        }
        self.counters.local += 1;
        if let Some((ip, mac)) = opens_conversation(frame, self.subnet) {
            if self.neighbour(ip) == Some(mac) {
                self.hints.push(ip, mac);
            }
        }
        Verdict::Local
    }

    /// A TCP or UDP packet (or first fragment) to a VIP: find or make its flow, and forward.
    #[inline(always)]
    pub(super) fn flow_packet(
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
            Err(None) if self.vips[vip as usize].stateless && !self.may_store(kind, now) => {
                let v = &self.vips[vip as usize];
                let (ckey, src) = identity(buf, head, &p);
                let Some(b) =
                    consistent_hash(v.scheduler, ckey, src).and_then(|h| v.sched.maglev(h))
                else {
                    return self.drop(DropReason::NoBackend);
                };
                b
            }
            Err(slot) => {
                // New flow, or an entry that expired, whose backend left the config or went down.
                if let Some(fs) = slot {
                    let e = self.flows.entry(fs);
                    let s = &self.slots[e.backend as usize];
                    if s.live && !s.up && s.vip == vip && e.expires > now_s {
                        self.counters.flows_rescheduled += 1;
                    }
                }
                let (ckey, src) = identity(buf, head, &p);
                let Some(b) = self.schedule(vip as usize, ckey, src, now_s) else {
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
            self.remember_fragment(p.frag_key(), vip, backend, now);
            self.counters.fragments += 1;
        }
        self.forward(buf, head, end, &p, vip, backend, now)
    }

    /// Whether a packet of `kind` that matched no flow of a stateless VIP may make an entry:
    /// a TCP SYN or a UDP datagram, within the new-flow rate. Counts the refusals.
    #[inline(never)]
    fn may_store(&mut self, kind: u8, now: Instant) -> bool {
        if kind & (KIND_UDP | 0x02) == 0 {
            self.counters.flows_stateless += 1;
            return false;
        }
        let within = self.new_flows.as_mut().is_none_or(|l| l.take(now));
        if !within {
            self.counters.flows_not_stored += 1;
        }
        within
    }

    #[inline(always)]
    fn release_conn(&mut self, backend: u32) {
        Slot::release(&mut self.slots, backend);
    }

    /// Pick a backend for a new flow of VIP `vi`: persistence first, then the scheduler. `key`
    /// and `src` identify the flow and its client as [`identity`] does.
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
                    .is_some_and(|s| s.keeps == vi as u32 && s.weight > 0)
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
            Scheduler::Sh | Scheduler::Maglev => {
                consistent_hash(v.scheduler, key, src).and_then(|h| v.sched.maglev(h))
            }
        }?;
        if let (Some((k, h, secs)), Some(p)) = (pkey, self.persist.as_mut()) {
            let (ps, _) = p.insert(h, k, now_s);
            let e = p.entry_mut(ps);
            e.backend = choice;
            e.touch(FlowState::Persist, now_s, secs);
        }
        Some(choice)
    }
}

/// A flow's identity for what must not depend on the instance (consistent hashing) and its
/// client's for persistence and source hashing: of IPv4, the flow key and source address; of
/// IPv6, a key whose addresses are folded without the instance's secret seed (read again from
/// the frame, `buf[head..]`, whose header classification checked) and [`source_id6`] of the
/// source. Only new flows need it.
#[inline(always)]
pub(super) fn identity(buf: &[u8], head: usize, p: &FlowPacket) -> (FlowKey, u32) {
    if p.is_v6() {
        identity6(buf, head, p)
    } else {
        (p.key, p.ip().src)
    }
}

#[inline(never)]
fn identity6(buf: &[u8], head: usize, p: &FlowPacket) -> (FlowKey, u32) {
    let (src, dst) = super::ipv6::addrs(buf, head);
    (
        FlowKey {
            addrs: fold_addrs6(src, dst, CONSISTENT_SEED),
            rest: p.key.rest,
        },
        source_id6(src),
    )
}

/// The hash a consistent scheduler (`sh`, `maglev`) picks the backend of a new flow (`key`,
/// from `src`) by, the same on every balancer (a fixed seed); `None` for the others.
pub(super) fn consistent_hash(scheduler: Scheduler, key: FlowKey, src: u32) -> Option<u64> {
    match scheduler {
        Scheduler::Sh => Some(hash_key(
            FlowKey {
                addrs: u64::from(src),
                rest: 1,
            },
            CONSISTENT_SEED,
        )),
        Scheduler::Maglev => Some(hash_key(key, CONSISTENT_SEED)),
        Scheduler::Rr | Scheduler::Wrr | Scheduler::Lc | Scheduler::Wlc => None,
    }
}
