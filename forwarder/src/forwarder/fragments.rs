//! Received IP fragments: a first fragment carries the ports and is scheduled like any packet;
//! its choice is remembered (source, destination, protocol, IP id) in a small direct-mapped
//! table, and later fragments follow it. A later fragment whose first one was not seen goes, by
//! a 3-tuple hash (as Maglev does), to a backend of the all-ports VIP on that address; without
//! one it is dropped as `fragment_unknown`. (Splitting an encapsulation that exceeds the MTU is
//! the rewrite's business, not this module's.)

use super::classify::{FlowPacket, Ip};
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
    /// `ident << 8 | proto`, with bit 32 set when used.
    id: u64,
    vip: u32,
    backend: u32,
    expires: Instant,
}

impl Forwarder {
    fn frag_slot(&self, ip: &Ip, ident: u16) -> (usize, u64, u64) {
        let addrs = (u64::from(ip.src) << 32) | u64::from(ip.dst);
        let id = (1 << 32) | (u64::from(ident) << 8) | u64::from(ip.proto);
        let h = hash_key(FlowKey { addrs, rest: id }, self.seed.rotate_left(41));
        ((h as usize) & (FRAG_SLOTS - 1), addrs, id)
    }

    /// Remember that the datagram of this first fragment went to `backend` of `vip`.
    pub(super) fn remember_fragment(
        &mut self,
        ip: Ip,
        ident: u16,
        vip: u32,
        backend: u32,
        now: Instant,
    ) {
        let (i, addrs, id) = self.frag_slot(&ip, ident);
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
        let (ip, ttl, ident) = (p.ip(), p.vip() as u8, p.ident());
        let (i, addrs, id) = self.frag_slot(&ip, ident);
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
}
