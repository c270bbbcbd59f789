//! Neighbours: the MAC addresses of the next hops (backends on the link, and the gateway), and
//! the frames waiting for them.
//!
//! Why the forwarder owns ARP on the data plane: the kernel's smoltcp interface resolves only
//! for its own sockets, and a DSR balancer must resolve hundreds of next hops per packet with no
//! allocation and no locking, and must answer ARP for every VIP (which smoltcp knows nothing
//! about). So the forwarder answers requests for its own address and every VIP in place, learns
//! from every ARP reply and request sender that is a next hop of ours, asks for next hops it
//! lacks from [`crate::Forwarder::poll`], and refreshes entries before they age out. ARP replies
//! addressed to the balancer are *also* handed to smoltcp ([`crate::Verdict::Local`]) so that its
//! own cache (used for health checks and management) fills too.
//!
//! A frame whose next hop is not resolved yet is copied into a small bounded queue
//! ([`PENDING_MAX`] frames) and released by `poll` once the reply arrives; when the queue is full,
//! or a frame has waited [`PENDING_TIMEOUT_MS`], it is dropped and counted. The queue's buffers
//! are allocated once, up front.
//!
//! Hygiene, since any host on the link can send ARP: only next hops get entries (ARP about
//! other addresses creates none); the balancer's own MAC, broadcast, multicast and zero MACs
//! are never learnt ([`usable_mac`]); a resolved next hop's MAC is replaced only if its last
//! update is [`LOCKTIME_MS`] old (Linux's `locktime`), and each replacement is reported
//! ([`Learnt::Changed`], counted by the forwarder); a backend whose MAC the config pins
//! (`mac` on `[[vip.backend]]`) is never asked for and ignores ARP about its address.
//!
//! The kernel's local stack (smoltcp) learns neighbours only from what it is told; the forwarder
//! keeps a small queue of [`Hints`], neighbours it saw talking to the balancer's own address,
//! for the kernel to pass on.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use crate::time::Instant;

/// Frames that can wait for ARP at once.
pub const PENDING_MAX: usize = 32;
/// Longest a frame waits for ARP.
pub const PENDING_TIMEOUT_MS: u64 = 3_000;
/// Largest frame that can wait (a 2 KiB packet buffer).
pub const PENDING_FRAME_MAX: usize = 2048;
/// A resolved entry is re-confirmed after this long.
pub const REFRESH_MS: u64 = 60_000;
/// A resolved entry not re-confirmed within this long after its refresh began is forgotten;
/// until then frames keep going to the MAC it has, and it is asked for every [`RETRY_MS`].
/// Thirty chances, because an overloaded balancer loses ARP replies with everything else its
/// receive ring cannot take, and a backend forgotten that way makes every frame to it wait for
/// ARP and be dropped (`arp_queue_full`) until it answers again; a few seconds of grace were
/// not enough under load (forwarder/BENCHMARKS.md).
pub const STALE_GRACE_MS: u64 = 30_000;
/// Time between requests for one address while it is being resolved or refreshed.
pub const RETRY_MS: u64 = 1_000;
/// Time between requests for an address that did not answer its first few.
pub const BACKOFF_MS: u64 = 10_000;
/// Neighbours visited per `poll` call, to bound its work.
pub const POLL_BATCH: usize = 64;
/// A resolved next hop's MAC is not replaced within this long of its last update (Linux's
/// `locktime`): of two hosts answering for one address, the first answer holds, rather than
/// frames flapping between them.
pub const LOCKTIME_MS: u64 = 1_000;

/// Whether `mac` may be a neighbour's: not zero, not a group (multicast or broadcast) address,
/// not the balancer's own `own`. Anything else in an ARP packet is a mistake or a spoof.
pub fn usable_mac(mac: [u8; 6], own: [u8; 6]) -> bool {
    mac != [0; 6] && mac[0] & 1 == 0 && mac != own
}

/// What [`Neighbours::learn`] did with an ARP packet's sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learnt {
    /// Nothing: not a next hop, an unusable MAC ([`usable_mac`]), or a pinned next hop.
    Ignored,
    /// The next hop's MAC is now known, or confirmed unchanged.
    Resolved,
    /// The next hop had another MAC, now replaced.
    Changed,
    /// The next hop had another MAC, updated less than [`LOCKTIME_MS`] ago: kept.
    Locked,
}

/// One next hop.
#[derive(Clone, Copy, Debug)]
pub struct Neighbour {
    /// Its address (IPv4, resolved by ARP, or IPv6, by neighbour discovery).
    pub ip: IpAddr,
    /// Its MAC, meaningful when `resolved`.
    pub mac: [u8; 6],
    /// Whether `mac` is known.
    pub resolved: bool,
    /// Whether `mac` is pinned by the config: never asked for, never replaced by ARP.
    pub pinned: bool,
    confirmed: Instant,
    last_request: Option<Instant>,
    requests: u8,
}

/// What `poll` should send: an ARP request (IPv4) or a neighbour solicitation (IPv6) for this
/// address.
pub type Request = IpAddr;

#[derive(Clone)]
struct Pending {
    next_hop: IpAddr,
    queued: Instant,
    len: usize,
}

/// The neighbour table and the frames waiting on it.
#[derive(Clone)]
pub struct Neighbours {
    /// The balancer's own MAC, never a neighbour's.
    own: [u8; 6],
    list: Vec<Neighbour>,
    by_ip: BTreeMap<IpAddr, u32>,
    cursor: usize,
    pending: Vec<Option<Pending>>,
    pending_bufs: Vec<u8>,
    pending_count: usize,
}

impl Neighbours {
    /// An empty table with its queue allocated, for a balancer at `own`.
    pub fn new(own: [u8; 6]) -> Neighbours {
        Neighbours {
            own,
            list: Vec::new(),
            by_ip: BTreeMap::new(),
            cursor: 0,
            pending: (0..PENDING_MAX).map(|_| None).collect(),
            pending_bufs: vec![0; PENDING_MAX * PENDING_FRAME_MAX],
            pending_count: 0,
        }
    }

    /// Replace the set of next hops by `hops` (deduplicated; each with its pinned MAC, if
    /// any), keeping what is known about the ones that stay. A hop pinned by any of its
    /// entries is pinned; one no longer pinned keeps its MAC until ARP replaces or ages it.
    /// Look indices up with [`index_of`](Self::index_of).
    pub fn set_hops(&mut self, hops: &[(IpAddr, Option<[u8; 6]>)]) {
        let mut list: Vec<Neighbour> = Vec::with_capacity(hops.len());
        let mut by_ip = BTreeMap::new();
        for &(ip, pin) in hops {
            let k = ip;
            let i = match by_ip.get(&k) {
                Some(&i) => i as usize,
                None => {
                    let n = match self.by_ip.get(&k) {
                        Some(&i) => Neighbour {
                            pinned: false,
                            ..self.list[i as usize]
                        },
                        None => Neighbour {
                            ip,
                            mac: [0; 6],
                            resolved: false,
                            pinned: false,
                            confirmed: Instant::ZERO,
                            last_request: None,
                            requests: 0,
                        },
                    };
                    by_ip.insert(k, list.len() as u32);
                    list.push(n);
                    list.len() - 1
                }
            };
            if let Some(mac) = pin {
                let n = &mut list[i];
                n.mac = mac;
                n.resolved = true;
                n.pinned = true;
                n.requests = 0;
                n.last_request = None;
            }
        }
        self.list = list;
        self.by_ip = by_ip;
        self.cursor = 0;
    }

    /// The index of next hop `ip`.
    pub fn index_of(&self, ip: IpAddr) -> Option<u32> {
        self.by_ip.get(&ip).copied()
    }

    /// Next hop number `i`.
    #[inline(always)]
    pub fn get(&self, i: u32) -> Option<&Neighbour> {
        self.list.get(i as usize)
    }

    /// Every next hop.
    pub fn all(&self) -> &[Neighbour] {
        &self.list
    }

    /// Learn `ip` is at `mac` (from an ARP packet's sender) if `ip` is one of our next hops,
    /// `mac` is [usable](usable_mac), the hop is not pinned, and a different MAC it had was
    /// not updated within [`LOCKTIME_MS`]. Addresses that are no next hop get no entry.
    pub fn learn(&mut self, ip: IpAddr, mac: [u8; 6], now: Instant) -> Learnt {
        if !usable_mac(mac, self.own) {
            return Learnt::Ignored;
        }
        let Some(&i) = self.by_ip.get(&ip) else {
            return Learnt::Ignored;
        };
        let n = &mut self.list[i as usize];
        if n.pinned {
            return Learnt::Ignored;
        }
        let changed = n.resolved && n.mac != mac;
        if changed && now.millis_since(n.confirmed) < LOCKTIME_MS {
            return Learnt::Locked;
        }
        n.mac = mac;
        n.resolved = true;
        n.confirmed = now;
        n.requests = 0;
        n.last_request = None;
        if changed {
            Learnt::Changed
        } else {
            Learnt::Resolved
        }
    }

    /// Copy `frame` into the queue to wait for `next_hop`; false when the queue is full or the
    /// frame too large.
    pub fn enqueue(&mut self, next_hop: IpAddr, frame: &[u8], now: Instant) -> bool {
        if frame.len() > PENDING_FRAME_MAX {
            return false;
        }
        let Some(i) = self.pending.iter().position(Option::is_none) else {
            return false;
        };
        let base = i * PENDING_FRAME_MAX;
        self.pending_bufs[base..base + frame.len()].copy_from_slice(frame);
        self.pending[i] = Some(Pending {
            next_hop,
            queued: now,
            len: frame.len(),
        });
        self.pending_count += 1;
        true
    }

    /// How many frames wait.
    pub fn pending_len(&self) -> usize {
        self.pending_count
    }

    /// Release waiting frames whose next hop is now resolved (their destination MAC is written
    /// first) through `emit`, and drop those that waited too long; returns how many were dropped.
    pub fn release(&mut self, now: Instant, emit: &mut dyn FnMut(&[u8])) -> u64 {
        if self.pending_count == 0 {
            return 0;
        }
        let mut dropped = 0;
        for i in 0..PENDING_MAX {
            let Some(p) = &self.pending[i] else { continue };
            let mac = self
                .by_ip
                .get(&p.next_hop)
                .map(|&n| self.list[n as usize])
                .filter(|n| n.resolved)
                .map(|n| n.mac);
            let base = i * PENDING_FRAME_MAX;
            let len = p.len;
            if let Some(mac) = mac {
                let frame = &mut self.pending_bufs[base..base + len];
                frame[..6].copy_from_slice(&mac);
                emit(frame);
            } else if now.millis_since(p.queued) >= PENDING_TIMEOUT_MS {
                dropped += 1;
            } else {
                continue;
            }
            self.pending[i] = None;
            self.pending_count -= 1;
        }
        dropped
    }

    /// Walk up to [`POLL_BATCH`] neighbours and return (through `request`) those that need an
    /// ARP request now: unresolved ones every [`RETRY_MS`] (then every [`BACKOFF_MS`] after three
    /// tries), resolved ones every [`RETRY_MS`] once they are [`REFRESH_MS`] old; a resolved
    /// entry that stays unconfirmed past its grace period ([`STALE_GRACE_MS`]) is forgotten.
    /// Pinned ones are never asked for.
    pub fn due_requests(&mut self, now: Instant, request: &mut dyn FnMut(Request)) {
        let n = self.list.len();
        for _ in 0..POLL_BATCH.min(n) {
            let i = self.cursor;
            self.cursor = if i + 1 >= n { 0 } else { i + 1 };
            let nb = &mut self.list[i];
            if nb.pinned {
                continue;
            }
            let age = now.millis_since(nb.confirmed);
            if nb.resolved && age >= REFRESH_MS + STALE_GRACE_MS {
                nb.resolved = false;
                nb.requests = 0;
            }
            let wanted = !nb.resolved || age >= REFRESH_MS;
            if !wanted {
                continue;
            }
            // An unresolved address that did not answer backs off; a resolved one being
            // refreshed keeps asking every RETRY_MS through its grace period.
            let gap = if nb.requests >= 3 && !nb.resolved {
                BACKOFF_MS
            } else {
                RETRY_MS
            };
            if nb.last_request.is_none_or(|t| now.millis_since(t) >= gap) {
                nb.last_request = Some(now);
                nb.requests = nb.requests.saturating_add(1);
                request(nb.ip);
            }
        }
    }
}

/// Neighbour hints that can wait at once; when more arrive the oldest is dropped (the peer
/// asks again, or the local stack resolves it itself).
pub const HINTS_MAX: usize = 16;

/// Neighbours the local stack must learn before it answers them: a bounded queue (oldest
/// dropped), filled by the forwarder, emptied by the kernel between bursts. A hint already
/// waiting is not queued twice.
#[derive(Clone, Debug)]
pub struct Hints {
    queue: VecDeque<(Ipv4Addr, [u8; 6])>,
}

impl Hints {
    /// An empty queue, its room allocated.
    pub fn new() -> Hints {
        Hints {
            queue: VecDeque::with_capacity(HINTS_MAX),
        }
    }

    /// Queue `ip` at `mac`, dropping the oldest hint when [`HINTS_MAX`] wait already.
    pub fn push(&mut self, ip: Ipv4Addr, mac: [u8; 6]) {
        if self.queue.contains(&(ip, mac)) {
            return;
        }
        if self.queue.len() >= HINTS_MAX {
            self.queue.pop_front();
        }
        self.queue.push_back((ip, mac));
    }

    /// The oldest hint.
    pub fn pop(&mut self) -> Option<(Ipv4Addr, [u8; 6])> {
        self.queue.pop_front()
    }

    /// How many hints wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl Default for Hints {
    fn default() -> Self {
        Hints::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 6));
    const OWN_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 1];

    #[test]
    fn requests_retry_then_back_off_and_refresh() {
        let mut n = Neighbours::new(OWN_MAC);
        n.set_hops(&[(A, None), (A, None)]);
        assert_eq!(n.all().len(), 1);
        let mut asked = Vec::new();
        for t in (0..20_000).step_by(500) {
            n.due_requests(Instant::from_millis(t), &mut |ip| asked.push((t, ip)));
        }
        // 0, 1000, 2000 then every 10 s.
        let times: Vec<u64> = asked.iter().map(|a| a.0).collect();
        assert_eq!(times, vec![0, 1000, 2000, 12000]);
        assert_eq!(
            n.learn(A, [2, 0, 0, 0, 0, 1], Instant::from_millis(20_000)),
            Learnt::Resolved
        );
        assert_eq!(
            n.learn(B, [2, 0, 0, 0, 0, 1], Instant::from_millis(20_000)),
            Learnt::Ignored
        );
        asked.clear();
        let refresh = 20_000 + REFRESH_MS;
        n.due_requests(Instant::from_millis(refresh - 1000), &mut |ip| {
            asked.push((0, ip))
        });
        assert!(asked.is_empty());
        // Being refreshed: asked every RETRY_MS, no back-off, and still used, through the grace.
        for t in (refresh..refresh + STALE_GRACE_MS).step_by(500) {
            n.due_requests(Instant::from_millis(t), &mut |ip| asked.push((t, ip)));
            assert!(n.get(0).unwrap().resolved, "forgotten at {t}");
        }
        assert_eq!(asked.len() as u64, STALE_GRACE_MS / RETRY_MS);
        assert!(asked.windows(2).all(|w| w[1].0 - w[0].0 == RETRY_MS));
        n.due_requests(Instant::from_millis(refresh + STALE_GRACE_MS), &mut |_| {});
        assert!(!n.get(0).unwrap().resolved);
        // A reply during the grace re-confirms it: no request until the next refresh.
        assert_eq!(
            n.learn(A, [2, 0, 0, 0, 0, 2], Instant::from_millis(200_000)),
            Learnt::Resolved
        );
        asked.clear();
        n.due_requests(
            Instant::from_millis(200_000 + REFRESH_MS + 3_500),
            &mut |ip| asked.push((0, ip)),
        );
        assert_eq!(
            n.learn(
                A,
                [2, 0, 0, 0, 0, 2],
                Instant::from_millis(200_000 + REFRESH_MS + 4_000)
            ),
            Learnt::Resolved
        );
        n.due_requests(
            Instant::from_millis(200_000 + REFRESH_MS + 5_000),
            &mut |ip| asked.push((1, ip)),
        );
        assert_eq!(asked, vec![(0, A)]);
        assert!(n.get(0).unwrap().resolved);
    }

    #[test]
    fn hints_are_bounded_oldest_dropped_and_not_repeated() {
        let mut h = Hints::new();
        let mac = |i: u8| [2, 0, 0, 0, 0, i];
        for i in 0..HINTS_MAX as u8 + 3 {
            h.push(Ipv4Addr::new(10, 0, 0, i), mac(i));
            h.push(Ipv4Addr::new(10, 0, 0, i), mac(i));
        }
        assert_eq!(h.len(), HINTS_MAX);
        assert_eq!(h.pop(), Some((Ipv4Addr::new(10, 0, 0, 3), mac(3))));
        while h.pop().is_some() {}
        assert!(h.is_empty());
    }

    #[test]
    fn queue_releases_on_resolution_and_times_out() {
        let mut n = Neighbours::new(OWN_MAC);
        n.set_hops(&[(A, None), (B, None)]);
        let frame = [0u8; 60];
        assert!(n.enqueue(A, &frame, Instant::ZERO));
        assert!(n.enqueue(B, &frame, Instant::ZERO));
        for _ in 2..PENDING_MAX {
            assert!(n.enqueue(B, &frame, Instant::ZERO));
        }
        assert!(!n.enqueue(B, &frame, Instant::ZERO));
        n.learn(A, [2, 1, 2, 3, 4, 5], Instant::ZERO);
        let mut out = Vec::new();
        let dropped = n.release(Instant::from_millis(10), &mut |f| out.push(f.to_vec()));
        assert_eq!((dropped, out.len()), (0, 1));
        assert_eq!(out[0][..6], [2, 1, 2, 3, 4, 5]);
        let dropped = n.release(Instant::from_millis(PENDING_TIMEOUT_MS), &mut |_| {});
        assert_eq!(dropped as usize, PENDING_MAX - 1);
        assert_eq!(n.pending_len(), 0);
    }

    #[test]
    fn zero_group_and_own_macs_are_never_learnt_nor_are_other_addresses() {
        let mut n = Neighbours::new(OWN_MAC);
        n.set_hops(&[(A, None)]);
        for mac in [
            [0; 6],
            [0xff; 6],
            [0x01, 0x00, 0x5e, 0, 0, 1],
            [0x33, 0x33, 0, 0, 0, 1],
            OWN_MAC,
        ] {
            assert_eq!(n.learn(A, mac, Instant::ZERO), Learnt::Ignored, "{mac:?}");
        }
        assert!(!n.get(0).unwrap().resolved);
        // ARP from an address that is no next hop makes no entry.
        assert_eq!(
            n.learn(B, [2, 0, 0, 0, 0, 6], Instant::ZERO),
            Learnt::Ignored
        );
        assert_eq!((n.all().len(), n.index_of(B)), (1, None));
        // Nor does a good MAC for a next hop, once learnt, give way to a bad one.
        assert_eq!(
            n.learn(A, [2, 0, 0, 0, 0, 5], Instant::ZERO),
            Learnt::Resolved
        );
        let later = Instant::from_secs(10);
        assert_eq!(n.learn(A, [0xff; 6], later), Learnt::Ignored);
        assert_eq!(n.get(0).unwrap().mac, [2, 0, 0, 0, 0, 5]);
        assert!(usable_mac([2, 0, 0, 0, 0, 5], OWN_MAC));
    }

    #[test]
    fn a_changed_mac_is_reported_and_held_back_within_the_locktime() {
        let mut n = Neighbours::new(OWN_MAC);
        n.set_hops(&[(A, None)]);
        let (m1, m2) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let t = |ms| Instant::from_millis(ms);
        assert_eq!(n.learn(A, m1, t(5_000)), Learnt::Resolved);
        // A second host answering for A within a second of the first: the first holds.
        assert_eq!(n.learn(A, m2, t(5_999)), Learnt::Locked);
        assert_eq!(n.get(0).unwrap().mac, m1);
        // The same MAC again is a confirmation, and restarts the lock.
        assert_eq!(n.learn(A, m1, t(5_500)), Learnt::Resolved);
        assert_eq!(n.learn(A, m2, t(6_499)), Learnt::Locked);
        assert_eq!(n.learn(A, m2, t(6_500)), Learnt::Changed);
        assert_eq!(n.get(0).unwrap().mac, m2);
        assert_eq!(n.learn(A, m1, t(7_000)), Learnt::Locked);
        assert_eq!(n.learn(A, m1, t(7_500)), Learnt::Changed);
    }

    #[test]
    fn a_pinned_mac_is_resolved_at_once_never_asked_for_and_never_replaced() {
        let pin = [2, 0, 0, 0, 0, 0x77];
        let mut n = Neighbours::new(OWN_MAC);
        // A pinned by one VIP's backend and not by another's: pinned.
        n.set_hops(&[(A, None), (A, Some(pin)), (B, None)]);
        assert_eq!(n.all().len(), 2);
        let a = n.get(n.index_of(A).unwrap()).copied().unwrap();
        assert!(a.resolved && a.pinned);
        assert_eq!(a.mac, pin);
        for ms in (0..200_000).step_by(500) {
            let t = Instant::from_millis(ms);
            assert_eq!(n.learn(A, [2, 0, 0, 0, 0, 1], t), Learnt::Ignored);
            n.due_requests(t, &mut |ip| assert_ne!(ip, A, "asked for a pinned hop"));
        }
        let a = n.get(n.index_of(A).unwrap()).copied().unwrap();
        assert!(a.resolved);
        assert_eq!(a.mac, pin);
        // Unpinned by a new config: ARP may replace it again.
        n.set_hops(&[(A, None)]);
        assert!(!n.get(0).unwrap().pinned);
        assert_eq!(
            n.learn(A, [2, 0, 0, 0, 0, 1], Instant::from_secs(300)),
            Learnt::Changed
        );
    }
}
