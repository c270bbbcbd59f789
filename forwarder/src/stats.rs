//! Counters the kernel exports as metrics.
//!
//! Counting is a plain `u64` increment on the forwarder's own core (the forwarder is owned by one
//! poll loop), so there is nothing atomic here; the kernel reads them between bursts. The per-VIP
//! view built from them ([`control::stats::VipStats`]) is the `control` crate's, which renders it.

pub(crate) use control::stats::{BackendStats, VipStats};

/// Why a frame was not forwarded. [`DropReason::name`] is a stable Prometheus label.
///
/// A whole word (`repr(u64)`), so that a [`crate::Verdict`] is three whole words, which the
/// burst path stores per frame as whole words rather than piece by piece
/// (forwarder/BENCHMARKS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum DropReason {
    /// Truncated, bad IHL or total length, bad IP header checksum, inconsistent ARP, ...
    Malformed,
    /// Unicast to another MAC, or ARP about an address that is neither ours nor a VIP.
    NotForUs,
    /// An ethertype or ARP variant the forwarder does not handle (IPv6, VLAN tags, ...).
    Unsupported,
    /// IPv4 that is neither to the balancer's address nor to a VIP (address, port, protocol).
    NotVip,
    /// TTL of 0 or 1.
    Ttl,
    /// The VIP has no backend that is up with a weight above 0.
    NoBackend,
    /// The next hop is unresolved and the ARP queue is full.
    ArpQueueFull,
    /// The frame waited for ARP too long.
    ArpTimeout,
    /// A non-first fragment whose first fragment was not seen and whose VIP is ambiguous.
    FragmentUnknown,
    /// Too big for the MTU after encapsulation with DF set (an ICMP "fragmentation needed" was
    /// sent back), or too big to fragment.
    TooBig,
    /// Less headroom in front of the frame than the rewrite needs (a kernel bug).
    NoHeadroom,
    /// Not a dropped packet but a dropped *flow*: a live flow was evicted from the full table.
    FlowEvicted,
    /// TCP to the management port from a source outside `[management] allow`, or a later
    /// fragment to the balancer's address from outside it: never handed to the local stack, so
    /// such a client gets no answer at all.
    MgmtDenied,
    /// ICMP to a VIP too short or broken to act on: a bad ICMP checksum, or an error whose
    /// quoted datagram is not an IPv4 header and 8 bytes of TCP or UDP (a first fragment or
    /// whole) from the VIP it was sent to.
    IcmpMalformed,
    /// An ICMP error quoting a datagram from no VIP (no VIP has that address, port and
    /// protocol).
    IcmpNotVip,
    /// An ICMP error quoting a VIP's datagram of no flow in the table, on a VIP whose scheduler
    /// is not a consistent hash (so no balancer can tell which backend sent it), or whose VIP
    /// has no backend up.
    IcmpNoFlow,
    /// ICMP to a VIP of a type the balancer neither forwards nor answers (only destination
    /// unreachable and time exceeded are forwarded, echo requests answered).
    IcmpUnsupported,
    /// A packet the balancer would answer with ICMP (an echo request to a VIP, or a packet too
    /// big for dsr-l3 with DF) left unanswered because the ICMP rate limit was reached.
    IcmpRateLimited,
    /// A packet the balancer never answers with ICMP though it would need an answer: a later
    /// fragment, an ICMP message too big for dsr-l3, one from a broadcast, multicast, zero,
    /// loopback or own (the balancer's, a VIP's) source address or from a group MAC; and any
    /// fragment of an ICMP message to a VIP (neither reassembled nor forwarded).
    IcmpRefused,
    /// TCP to the BGP port (179) from a source that is not a `[[bgp.peer]]`, or UDP to the BFD
    /// port (3784) from one or with a TTL other than 255: never handed to the local stack, so
    /// it gets no answer at all.
    BgpDenied,
    /// Traffic to a VIP (or ARP asking for one) while this balancer is a VRRP backup: the
    /// master answers for the VIPs.
    VrrpBackup,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 21] = [
        DropReason::Malformed,
        DropReason::NotForUs,
        DropReason::Unsupported,
        DropReason::NotVip,
        DropReason::Ttl,
        DropReason::NoBackend,
        DropReason::ArpQueueFull,
        DropReason::ArpTimeout,
        DropReason::FragmentUnknown,
        DropReason::TooBig,
        DropReason::NoHeadroom,
        DropReason::FlowEvicted,
        DropReason::MgmtDenied,
        DropReason::IcmpMalformed,
        DropReason::IcmpNotVip,
        DropReason::IcmpNoFlow,
        DropReason::IcmpUnsupported,
        DropReason::IcmpRateLimited,
        DropReason::IcmpRefused,
        DropReason::BgpDenied,
        DropReason::VrrpBackup,
    ];
    /// Number of reasons.
    pub const COUNT: usize = DropReason::ALL.len();

    /// The stable metric label.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotForUs => "not_for_us",
            DropReason::Unsupported => "unsupported",
            DropReason::NotVip => "not_vip",
            DropReason::Ttl => "ttl",
            DropReason::NoBackend => "no_backend",
            DropReason::ArpQueueFull => "arp_queue_full",
            DropReason::ArpTimeout => "arp_timeout",
            DropReason::FragmentUnknown => "fragment_unknown",
            DropReason::TooBig => "too_big",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::FlowEvicted => "flow_evicted",
            DropReason::MgmtDenied => "mgmt_denied",
            DropReason::IcmpMalformed => "icmp_malformed",
            DropReason::IcmpNotVip => "icmp_not_vip",
            DropReason::IcmpNoFlow => "icmp_no_flow",
            DropReason::IcmpUnsupported => "icmp_unsupported",
            DropReason::IcmpRateLimited => "icmp_rate_limited",
            DropReason::IcmpRefused => "icmp_refused",
            DropReason::BgpDenied => "bgp_denied",
            DropReason::VrrpBackup => "vrrp_backup",
        }
    }

    /// Position in [`DropReason::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Global counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Drops by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Frames forwarded to a backend (from `process`; released ARP waiters count when queued).
    pub forwarded: u64,
    /// Frames handed to the kernel's stack.
    pub local: u64,
    /// ARP replies written.
    pub arp_replies: u64,
    /// ARP requests emitted by `poll`.
    pub arp_requests: u64,
    /// Frames queued to wait for ARP.
    pub arp_queued: u64,
    /// IP fragments forwarded (first and later ones).
    pub fragments: u64,
    /// Encapsulated packets split in two because they exceeded the MTU without DF.
    pub fragmented: u64,
    /// ICMP "fragmentation needed" messages sent.
    pub icmp_frag_needed: u64,
    /// ICMP errors to a VIP (destination unreachable, time exceeded) forwarded to the backend
    /// of the flow they quote.
    pub icmp_forwarded: u64,
    /// ICMP echo requests to a VIP answered.
    pub icmp_echo_replies: u64,
    /// Next hops whose MAC changed (an ARP packet gave a resolved next hop a new MAC).
    pub neigh_changes: u64,
    /// Flows created.
    pub flows_created: u64,
    /// Flows moved off a backend that health checks marked down (on their next packet).
    pub flows_rescheduled: u64,
    /// TCP packets without SYN that matched no flow of a VIP whose consistent hash routes
    /// without one: forwarded by the hash, no entry made.
    pub flows_stateless: u64,
    /// New flows above `limits.new_flows_per_second` (of such VIPs): forwarded by the hash,
    /// not stored.
    pub flows_not_stored: u64,
}

impl Counters {
    /// The drop count for `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Add `other`'s counts to these (one poll loop's counters into the balancer's total).
    pub fn add(&mut self, other: &Counters) {
        for (d, o) in self.drops.iter_mut().zip(other.drops.iter()) {
            *d += o;
        }
        let Counters {
            drops: _,
            forwarded,
            local,
            arp_replies,
            arp_requests,
            arp_queued,
            fragments,
            fragmented,
            icmp_frag_needed,
            icmp_forwarded,
            icmp_echo_replies,
            neigh_changes,
            flows_created,
            flows_rescheduled,
            flows_stateless,
            flows_not_stored,
        } = other;
        self.forwarded += forwarded;
        self.local += local;
        self.arp_replies += arp_replies;
        self.arp_requests += arp_requests;
        self.arp_queued += arp_queued;
        self.fragments += fragments;
        self.fragmented += fragmented;
        self.icmp_frag_needed += icmp_frag_needed;
        self.icmp_forwarded += icmp_forwarded;
        self.icmp_echo_replies += icmp_echo_replies;
        self.neigh_changes += neigh_changes;
        self.flows_created += flows_created;
        self.flows_rescheduled += flows_rescheduled;
        self.flows_stateless += flows_stateless;
        self.flows_not_stored += flows_not_stored;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_match() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            for other in &DropReason::ALL[..i] {
                assert_ne!(r.name(), other.name());
            }
        }
    }
}
