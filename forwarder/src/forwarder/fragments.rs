//! Received IP fragments: a first fragment carries the ports and is scheduled like any packet;
//! its choice is remembered (source, destination, protocol, IP id) in a small direct-mapped
//! table, and later fragments follow it. A later fragment whose first one was not seen goes, by
//! a 3-tuple hash (as Maglev does), to a backend of the all-ports VIP on that address; without
//! one it is dropped as `fragment_unknown`. (Splitting an encapsulation that exceeds the MTU is
//! the rewrite's business, not this module's.)

use super::classify::FlowPacket;
use super::{Forwarder, Verdict, CONSISTENT_SEED};
use crate::flow::{hash_key, FlowKey};
use crate::stats::DropReason;
use crate::time::Instant;

/// Entries of the fragment table (direct-mapped by a hash of the datagram's identity).
pub(super) const FRAG_SLOTS: usize = 4096;
/// How long a first fragment's choice is remembered.
const FRAG_TIMEOUT_MS: u64 = 30_000;

/// Where a fragmented datagram went.
#[derive(Clone, Copy, Default)]
pub(super) struct FragEntry {
    addrs: u64,
    /// `ident << 8 | proto`, with bit 32 set when used and bit 33 for IPv6
    /// ([`FlowPacket::frag_key`]).
    id: u64,
    vip: u32,
    backend: u32,
    expires: Instant,
}

impl Forwarder {
    fn frag_slot(&self, (addrs, id): (u64, u64)) -> usize {
        let h = hash_key(FlowKey { addrs, rest: id }, self.seed.rotate_left(41));
        (h as usize) & (FRAG_SLOTS - 1)
    }

    /// Remember that the datagram of a first fragment (`key` from [`FlowPacket::frag_key`])
    /// went to `backend` of `vip`.
    pub(super) fn remember_fragment(
        &mut self,
        key: (u64, u64),
        vip: u32,
        backend: u32,
        now: Instant,
    ) {
        let i = self.frag_slot(key);
        let (addrs, id) = key;
        self.frags[i] = FragEntry {
            addrs,
            id,
            vip,
            backend,
            expires: now.plus_millis(FRAG_TIMEOUT_MS),
        };
    }

    /// A later fragment (`p` from classification's `LaterFragment`).
    pub(super) fn later_fragment(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        p: FlowPacket,
        now: Instant,
    ) -> Verdict {
        let (ip, ttl) = (p.ip(), p.vip() as u8);
        let addrs = p.key.addrs;
        let choice = self.fragment_choice(&p, now).or_else(|| {
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
        self.forward_fragment(buf, head, end, p, choice, ttl, now)
    }

    /// Where the first fragment of later fragment `p`'s datagram went, if it is remembered and
    /// that backend is still in the config.
    pub(super) fn fragment_choice(&self, p: &FlowPacket, now: Instant) -> Option<(u32, u32)> {
        let key = p.frag_key();
        let f = self.frags[self.frag_slot(key)];
        (f.addrs == key.0 && f.id == key.1 && f.expires > now)
            .then_some((f.vip, f.backend))
            .filter(|&(v, b)| {
                self.slots
                    .get(b as usize)
                    .is_some_and(|s| s.live && s.vip == v)
            })
    }

    /// Forward later fragment `p` (hop limit or TTL `ttl`) to `choice` (VIP, backend), or drop
    /// it when there is none.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_fragment(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        p: FlowPacket,
        choice: Option<(u32, u32)>,
        ttl: u8,
        now: Instant,
    ) -> Verdict {
        let Some((vip, backend)) = choice else {
            return self.drop(DropReason::FragmentUnknown);
        };
        if ttl <= 1 {
            return self.drop(DropReason::Ttl);
        }
        self.counters.fragments += 1;
        self.forward(buf, head, end, &p, vip, backend, now)
    }
}
