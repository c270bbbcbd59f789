//! The flow table: which backend each connection was given, so that every later packet of the
//! connection goes to the same one.
//!
//! Why this shape: the table is touched by every packet, so it is built for cache misses rather
//! than for generality. It is a fixed array of 4-way set-associative buckets; one bucket is four
//! 32-byte entries, 128 bytes, the pair of cache lines the adjacent-line prefetcher fetches
//! together, so a lookup costs one memory access whatever the table size. The bucket is chosen
//! by a seeded multiply-fold hash of the 5-tuple (computed once per packet and reusable for a
//! prefetch in the burst path). A key may also live in a second-choice bucket (two-choice
//! hashing), used only when its first bucket is full; a flag in the first bucket says whether
//! that ever happened, so a lookup reads one bucket nearly always and two at most: O(1) lookup
//! and insertion, no probing chains.
//!
//! The table never grows. When both buckets of a new flow are full, an expired entry is reused
//! first; otherwise the entry of the eight seen least recently is evicted (counted by the
//! caller), a flow that has only ever sent SYNs before one that got further (so that a SYN
//! flood evicts its own entries first, not the connections it competes with). LRU is therefore
//! *approximate*: exact among the eight candidate ways, at one-second resolution, not across
//! the whole table. Expired entries are also reclaimed by an incremental
//! sweep ([`FlowTable::sweep`]) that visits a bounded number of buckets per call, so backend
//! connection counts (used by the lc/wlc schedulers) do not keep counting dead flows.
//!
//! A table is valid before it was ever written: an all-zero entry is a free one and an all-zero
//! bucket has no flags, so the buckets come from a zeroed allocation (`alloc_zeroed`) and are
//! never filled. The image's allocator gives large zeroed allocations as pages zeroed on first
//! touch, so a table of tens of MiB costs nothing at boot; the paced sweep, which reads every
//! bucket once per period, completes its initialisation in the background.
//!
//! An entry is 32 bytes (IPVS uses about 128, Katran about 56): the key as two words, the backend
//! slot, last-seen and expiry seconds, and the TCP state that chose the timeout.

use alloc::vec;
use alloc::vec::Vec;
use zerocopy::FromZeros;

/// Ways per bucket.
pub const WAYS: usize = 4;

/// Tables of fewer buckets (1 MiB, twice this machine's L2) skip
/// [`FlowTable::prefetch_room`].
const PREFETCH_ROOM_MIN_BUCKETS: usize = (1 << 20) / 128;

/// Connection state as far as a one-way (DSR) observer can tell; it selects the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowState {
    /// TCP, only SYNs seen so far.
    SynSent = 1,
    /// TCP, an ACK without SYN seen (or picked up mid-stream).
    Established = 2,
    /// TCP, a FIN or RST seen.
    Closing = 3,
    /// UDP.
    Udp = 4,
    /// A source-IP persistence record (not a connection).
    Persist = 5,
}

impl FlowState {
    /// The timeout of this state in seconds, as IPVS's defaults (persistence records carry their
    /// own and report 0 here).
    pub const fn timeout_secs(self) -> u32 {
        match self {
            FlowState::SynSent => 60,
            FlowState::Established => 900,
            FlowState::Closing => 120,
            FlowState::Udp => 300,
            FlowState::Persist => 0,
        }
    }

    /// The state after a TCP segment with these flags (`SYN`, `ACK`, `FIN|RST`) in state `self`.
    pub const fn after_tcp(self, syn: bool, ack: bool, fin_or_rst: bool) -> FlowState {
        if fin_or_rst {
            FlowState::Closing
        } else if self as u8 == FlowState::Closing as u8 {
            // Retransmissions after FIN keep the short timeout.
            FlowState::Closing
        } else if syn && !ack {
            if self as u8 == FlowState::Established as u8 {
                self
            } else {
                FlowState::SynSent
            }
        } else {
            FlowState::Established
        }
    }

    /// The state stored as number `n` in a [`FlowEntry`] (a number that is none is read as UDP).
    pub const fn from_number(n: u8) -> FlowState {
        match n {
            1 => FlowState::SynSent,
            2 => FlowState::Established,
            3 => FlowState::Closing,
            5 => FlowState::Persist,
            _ => FlowState::Udp,
        }
    }

    /// The state after a packet of `kind` (see [`packet_kind`]) in state `self`.
    pub const fn after(self, kind: u8) -> FlowState {
        if kind & KIND_UDP != 0 {
            FlowState::Udp
        } else {
            self.after_tcp(kind & 0x02 != 0, kind & 0x10 != 0, kind & 0x05 != 0)
        }
    }
}

/// A packet's kind (see [`packet_kind`]) for UDP: a bit that [`packet_kind`] never keeps of TCP's
/// flags (PSH).
pub const KIND_UDP: u8 = 0x08;

/// What a packet can change in its flow's state: of a TCP segment, the flags byte with FIN, SYN,
/// RST and ACK kept (RFC 9293's bit positions); of a UDP datagram (`tcp_flags` `None`),
/// [`KIND_UDP`]. Five bits, the row of `NEXT_STATE`.
#[inline(always)]
pub const fn packet_kind(tcp_flags: Option<u8>) -> u8 {
    match tcp_flags {
        Some(flags) => flags & 0x17,
        None => KIND_UDP,
    }
}

/// [`FlowState::after`] as a table, by packet kind and stored state number: `NEXT_STATE[kind][n]`
/// is the number of `FlowState::from_number(n).after(kind)`. An established flow's packet
/// takes its next state in one load instead of branching on the flags.
static NEXT_STATE: [[u8; 8]; 32] = {
    let mut t = [[0; 8]; 32];
    let mut kind = 0;
    while kind < 32 {
        let mut n = 0;
        while n < 8 {
            t[kind][n] = FlowState::from_number(n as u8).after(kind as u8) as u8;
            n += 1;
        }
        kind += 1;
    }
    t
};

/// [`FlowState::timeout_secs`] by stored state number.
static TIMEOUT_SECS: [u32; 8] = {
    let mut t = [0; 8];
    let mut n = 0;
    while n < 8 {
        t[n] = FlowState::from_number(n as u8).timeout_secs();
        n += 1;
    }
    t
};

/// The identity of a connection (or of a persistence record) as two machine words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source and destination address: `src << 32 | dst`.
    pub addrs: u64,
    /// Ports and protocol: `sport << 24 | dport << 8 | proto`; never zero for a real key.
    pub rest: u64,
}

impl FlowKey {
    /// The key of a TCP or UDP 5-tuple (`proto` is the IP protocol number, never 0).
    #[inline]
    pub fn five_tuple(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            addrs: (u64::from(src) << 32) | u64::from(dst),
            rest: (u64::from(sport) << 24) | (u64::from(dport) << 8) | u64::from(proto) | (1 << 40),
        }
    }

    /// The key of an IPv6 TCP or UDP 5-tuple: the two 128-bit addresses folded into one word by
    /// [`fold_addrs6`] keyed with `seed`, the ports and protocol as for IPv4, and a family bit
    /// so that no IPv6 key equals an IPv4 one. An entry stays 32 bytes; the price is that two
    /// IPv6 flows with the same ports and protocol whose addresses fold alike share an entry
    /// (a chance of 2^-64 per pair under a secret seed, which no sender can aim at).
    #[inline]
    pub fn five_tuple6(
        src: u128,
        dst: u128,
        sport: u16,
        dport: u16,
        proto: u8,
        seed: u64,
    ) -> FlowKey {
        FlowKey {
            addrs: fold_addrs6(src, dst, seed),
            rest: (u64::from(sport) << 24)
                | (u64::from(dport) << 8)
                | u64::from(proto)
                | (1 << 40)
                | KEY_V6,
        }
    }

    /// The key of a source-IP persistence record for the VIP `vip` (an index, not an address).
    #[inline]
    pub fn persistence(src: u32, vip: u32) -> FlowKey {
        FlowKey {
            addrs: u64::from(src) << 32,
            rest: (u64::from(vip) << 8) | (2 << 40),
        }
    }
}

/// The family bit of an IPv6 [`FlowKey`]'s `rest`.
pub const KEY_V6: u64 = 1 << 41;

/// An IPv6 source and destination address folded into one word, keyed by `seed`: the
/// addresses part of an IPv6 [`FlowKey`]. Each address is folded with key words of its own
/// (so swapping source and destination changes the result), and the two folds are combined
/// with one of them rotated; the flow hash ([`hash_key`]) mixes the word again.
#[inline(always)]
pub fn fold_addrs6(src: u128, dst: u128, seed: u64) -> u64 {
    let a = fold_mul(
        (src >> 64) as u64 ^ seed,
        src as u64 ^ 0x9E37_79B9_7F4A_7C15,
    );
    let b = fold_mul(
        (dst >> 64) as u64 ^ seed.rotate_left(29),
        dst as u64 ^ 0xC2B2_AE3D_27D4_EB4F,
    );
    a ^ b.rotate_left(32)
}

/// A 32-bit stand-in for an IPv6 source address where a scheduler or a persistence record
/// identifies a client by its IPv4 address: the same on every balancer (no seed), so that
/// source hashing agrees across a group.
#[inline(always)]
pub fn source_id6(src: u128) -> u32 {
    let h = fold_mul(
        (src >> 64) as u64 ^ 0x5851_F42D_4C95_7F2D,
        src as u64 ^ 0x9E37_79B9_7F4A_7C15,
    );
    (h ^ (h >> 32)) as u32
}

/// A folded 64x64->128 multiply: the core of the flow hash (as in wyhash, written afresh).
#[inline(always)]
pub fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Hash a key with a seed: one folded multiply of the two key words, then one xor-shift and
/// multiply, so that the high bits that pick the bucket depend on every key bit even for the
/// very regular 5-tuples of real traffic. Every shape of traffic in
/// `evictions_stay_rare_until_nearly_full` then evicts 0.7 to 0.8 % of its flows at 90 % load,
/// as with MurmurHash3's whole two-round fmix64 finaliser; without the step, sequential source
/// addresses evicted 1.2 %. One round is cheaper than fmix64's two (forwarder/BENCHMARKS.md).
#[inline(always)]
pub fn hash_key(key: FlowKey, seed: u64) -> u64 {
    let h = fold_mul(
        key.addrs ^ seed,
        key.rest ^ 0x9E37_79B9_7F4A_7C15 ^ seed.rotate_left(32),
    );
    (h ^ (h >> 32)).wrapping_mul(0xFF51_AFD7_ED55_8CCD)
}

/// Start fetching the cache line that holds `e`. A real prefetch instruction retires at once,
/// so a whole burst's misses overlap. It is a safe (unstable) hint on the pinned nightly;
/// without the `prefetch` feature a plain load whose value is kept alive stands in (weaker: it
/// holds up retirement).
#[inline(always)]
fn prefetch_line(e: &FlowEntry) {
    #[cfg(feature = "prefetch")]
    core::hint::prefetch_read(e as *const FlowEntry, core::hint::Locality::L1);
    #[cfg(not(feature = "prefetch"))]
    core::hint::black_box(e.rest);
}

/// One flow: 32 bytes; all zeros is a free entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromZeros)]
#[repr(C, align(32))]
pub struct FlowEntry {
    /// Key word one (addresses).
    pub addrs: u64,
    /// Key word two (ports and protocol); zero marks a free entry.
    pub rest: u64,
    /// The backend slot the flow was given.
    pub backend: u32,
    /// Second (of [`crate::Instant::secs32`]) of the last packet.
    pub last_seen: u32,
    /// Second at which the entry expires.
    pub expires: u32,
    /// [`FlowState`] as its number.
    pub state: u8,
    /// Bucket flags, meaningful in way 0 only (see [`OVERFLOWED`]); kept when the entry changes.
    pub bucket_flags: u8,
}

/// Bucket flag: some key whose first-choice bucket is this one lives in its second choice, so a
/// lookup that misses here must look there too.
pub const OVERFLOWED: u8 = 1;

impl FlowEntry {
    const FREE: FlowEntry = FlowEntry {
        addrs: 0,
        rest: 0,
        backend: 0,
        last_seen: 0,
        expires: 0,
        state: 0,
        bucket_flags: 0,
    };

    /// Whether the entry holds a flow.
    #[inline]
    pub fn is_used(&self) -> bool {
        self.rest != 0
    }

    /// The number of the state this entry takes after a packet of `kind` (see [`packet_kind`]):
    /// [`FlowState::after`] by table.
    #[inline(always)]
    pub fn next_state(&self, kind: u8) -> u8 {
        NEXT_STATE[usize::from(kind & 31)][usize::from(self.state & 7)]
    }

    /// Record a packet at second `now` that left the flow in state number `state` (from
    /// [`next_state`](Self::next_state)), extending the expiry by that state's timeout.
    #[inline(always)]
    pub fn renew(&mut self, state: u8, now: u32) {
        self.state = state;
        self.last_seen = now;
        self.expires = now.saturating_add(TIMEOUT_SECS[usize::from(state & 7)]);
    }

    /// Record a packet in state `state` at second `now`, extending the expiry by `timeout`.
    #[inline]
    pub fn touch(&mut self, state: FlowState, now: u32, timeout: u32) {
        self.state = state as u8;
        self.last_seen = now;
        self.expires = now.saturating_add(timeout);
    }
}

#[derive(Clone, Copy, FromZeros)]
#[repr(C, align(128))]
struct Bucket([FlowEntry; WAYS]);

/// What [`FlowTable::insert`] had to displace to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Displaced {
    /// The new entry took a free way.
    Nothing,
    /// An expired flow's way was reused.
    Expired(FlowEntry),
    /// A live flow was evicted (the bucket was full of live flows).
    Evicted(FlowEntry),
}

/// A fixed-capacity, set-associative flow table.
#[derive(Clone)]
pub struct FlowTable {
    buckets: Vec<Bucket>,
    /// One bit per bucket, set while all its ways are in use (1/256 of the table's size): the
    /// cuckoo step of [`make_room`](Self::make_room) reads only buckets that have room, which
    /// in a nearly full table is almost none.
    full: Vec<u64>,
    seed: u64,
    used: usize,
    sweep_cursor: usize,
    /// Bucket-milliseconds of sweeping owed (see [`sweep_paced`](Self::sweep_paced)).
    sweep_credit: u64,
}

impl FlowTable {
    /// A table of at least `capacity` entries (rounded up to a whole bucket, at least one),
    /// from zeroed memory, which is an empty table: nothing is written here.
    pub fn new(capacity: usize, seed: u64) -> FlowTable {
        let n = capacity.div_ceil(WAYS).max(1);
        let buckets = Bucket::new_vec_zeroed(n).unwrap_or_else(|_| {
            let layout = core::alloc::Layout::array::<Bucket>(n);
            alloc::alloc::handle_alloc_error(layout.unwrap_or(core::alloc::Layout::new::<Bucket>()))
        });
        FlowTable {
            buckets,
            full: vec![0; n.div_ceil(64)],
            seed,
            used: 0,
            sweep_cursor: 0,
            sweep_credit: 0,
        }
    }

    /// How many flows fit.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// How many entries are in use (expired but unswept ones included).
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Whether every way of bucket `b` is in use (from the bitmap).
    #[inline(always)]
    fn is_full(&self, b: usize) -> bool {
        (self.full[b / 64] >> (b % 64)) & 1 != 0
    }

    /// Bring bucket `b`'s bit up to date after a way of it was filled.
    #[inline(always)]
    fn note_filled(&mut self, b: usize) {
        if self.buckets[b].0.iter().all(|e| e.is_used()) {
            self.full[b / 64] |= 1 << (b % 64);
        }
    }

    /// Bucket `b` has a free way now.
    #[inline(always)]
    fn note_freed(&mut self, b: usize) {
        self.full[b / 64] &= !(1 << (b % 64));
    }

    /// The hash of `key` under this table's seed.
    #[inline(always)]
    pub fn hash(&self, key: FlowKey) -> u64 {
        hash_key(key, self.seed)
    }

    #[inline(always)]
    fn bucket_of(&self, hash: u64) -> usize {
        // Lemire's multiply-shift range reduction: no division, any bucket count.
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    /// The second-choice bucket of `hash` (may equal the first in tiny tables).
    #[inline(always)]
    fn alt_bucket_of(&self, hash: u64) -> usize {
        self.bucket_of(fold_mul(hash, 0xD6E8_FEB8_6659_FD93))
    }

    /// Start fetching the bucket of `hash` into the cache (the burst path calls this for a whole
    /// burst before looking anything up, so the misses overlap).
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        // Both lines. The scan needs the second only for ways 2 and 3, but in a half-full
        // table a good share of the flows sit there, and each of those lookups would miss
        // again, unprefetched (forwarder/BENCHMARKS.md). Small tables, where the first line
        // alone was better, take their frames one by one and never come here.
        self.prefetch_bucket(self.bucket_of(hash));
    }

    /// Start fetching both candidate buckets of `hash`: for a packet that may start a flow,
    /// whose insertion looks at the second bucket whenever the first is full.
    #[inline(always)]
    pub fn prefetch_both(&self, hash: u64) {
        self.prefetch_bucket(self.bucket_of(hash));
        self.prefetch_bucket(self.alt_bucket_of(hash));
    }

    /// For a key about to be inserted (its two buckets fetched already, by
    /// [`prefetch_both`](Self::prefetch_both)): when both buckets are full of live entries, start
    /// fetching what [`insert`](Self::insert)'s cuckoo step will read, the other bucket of each
    /// of the eight, so that across a burst these misses overlap too. A hint only: it changes
    /// nothing, and a wrong guess (the key is present after all, or an earlier packet of the
    /// burst changed the buckets) costs a few useless prefetches.
    #[inline]
    pub fn prefetch_room(&self, hash: u64, now: u32) {
        // A table that fits in the caches gains nothing and would pay eight extra hashes; in a
        // table without a free way the cuckoo step is skipped (see `make_room`); and in one with
        // fewer than 1/64 of its ways free the step hardly ever finds room, so eight hashes and
        // eight bitmap reads here (which `make_room` repeats anyway) would fetch next to nothing.
        let free = self.capacity() - self.used;
        if self.buckets.len() < PREFETCH_ROOM_MIN_BUCKETS || free < self.capacity() / 64 {
            return;
        }
        let full = |b: usize| {
            self.buckets[b]
                .0
                .iter()
                .all(|e| e.is_used() && e.expires > now)
        };
        let b1 = self.bucket_of(hash);
        if !full(b1) {
            return;
        }
        let b2 = self.alt_bucket_of(hash);
        if !full(b2) {
            return;
        }
        for b in [b1, b2] {
            for e in &self.buckets[b].0 {
                let (_, other) = self.buckets_of_entry(e, b);
                if !self.is_full(other) {
                    self.prefetch_bucket(other);
                }
            }
        }
    }

    /// The two buckets of an entry found in bucket `b`: (its first choice, the one it is not in).
    #[inline(always)]
    fn buckets_of_entry(&self, e: &FlowEntry, b: usize) -> (usize, usize) {
        let h = self.hash(FlowKey {
            addrs: e.addrs,
            rest: e.rest,
        });
        let primary = self.bucket_of(h);
        let other = if primary == b {
            self.alt_bucket_of(h)
        } else {
            primary
        };
        (primary, other)
    }

    #[inline(always)]
    fn prefetch_bucket(&self, b: usize) {
        // Both cache lines (insertion reads all four ways): the adjacent-line prefetcher does not
        // fetch the second one (a profile of a full table shows the scan of ways 2 and 3 missing
        // after a prefetch of way 0).
        let b = &self.buckets[b];
        prefetch_line(&b.0[0]);
        prefetch_line(&b.0[2]);
    }

    /// The slot (index) of `key`'s entry, if present (expired or not: the caller decides).
    /// One bucket is read, two only when the first has overflowed into its second choice.
    #[inline(always)]
    pub fn find(&self, hash: u64, key: FlowKey) -> Option<usize> {
        self.locate(hash, key).map(|(b, w)| b * WAYS + w)
    }

    /// [`find`](Self::find), with the entry itself: the caller that goes on to read and update
    /// it need not index the table again from the slot number.
    #[inline(always)]
    pub fn find_mut(&mut self, hash: u64, key: FlowKey) -> Option<(usize, &mut FlowEntry)> {
        // The bucket is indexed once more but the way not: `way_of` returns one below WAYS.
        let (b, w) = self.locate(hash, key)?;
        Some((b * WAYS + w, &mut self.buckets[b].0[w]))
    }

    /// Bucket and way of `key`'s entry: its first-choice bucket, then the second only when the
    /// first has overflowed.
    #[inline(always)]
    fn locate(&self, hash: u64, key: FlowKey) -> Option<(usize, usize)> {
        let b = self.bucket_of(hash);
        if let Some(w) = Self::way_of(&self.buckets[b], key) {
            return Some((b, w));
        }
        if self.buckets[b].0[0].bucket_flags & OVERFLOWED == 0 {
            return None;
        }
        let b2 = self.alt_bucket_of(hash);
        if b2 == b {
            return None;
        }
        Self::way_of(&self.buckets[b2], key).map(|w| (b2, w))
    }

    /// The way of `bucket` that holds `key`. Ways 0 and 1 (the bucket's first cache line, where
    /// most flows live) are decided without a branch on which of them it is: way 0 is
    /// picked if it matches, else way 1, by a conditional move, and then one comparison tells
    /// whether the picked way holds the key. A scan that branches per way mispredicts whenever
    /// consecutive packets' flows sit in different ways, which with flows in random order is
    /// a coin toss (forwarder/BENCHMARKS.md). Ways 2 and 3 are read only
    /// when neither matches, so a lookup in the first line never touches the second. (Written
    /// as `h0 || h1`, the compiler splits the test back into one branch per way.)
    #[inline(always)]
    fn way_of(bucket: &Bucket, key: FlowKey) -> Option<usize> {
        let w = &bucket.0;
        let diff = |e: &FlowEntry| (e.rest ^ key.rest) | (e.addrs ^ key.addrs);
        // Way 0 if it matches, else way 1; then one comparison decides for both.
        let i = core::hint::select_unpredictable(diff(&w[0]) == 0, 0, 1);
        if diff(&w[i]) == 0 {
            return Some(i);
        }
        w[2..].iter().position(|e| diff(e) == 0).map(|i| i + 2)
    }

    /// The entry in `slot` (from [`find`](Self::find) or [`insert`](Self::insert)).
    #[inline(always)]
    pub fn entry_mut(&mut self, slot: usize) -> &mut FlowEntry {
        &mut self.buckets[slot / WAYS].0[slot % WAYS]
    }

    /// The entry in `slot`.
    #[inline(always)]
    pub fn entry(&self, slot: usize) -> &FlowEntry {
        &self.buckets[slot / WAYS].0[slot % WAYS]
    }

    /// Make room for `key` (which must not be present) and claim a way: a free way of its first
    /// bucket, else of its second bucket (two-choice hashing keeps evictions rare until the
    /// table is nearly full), else an expired way of either, else the least recently seen of
    /// the eight. The new entry has the key set and everything else zero; the caller fills it.
    #[inline]
    pub fn insert(&mut self, hash: u64, key: FlowKey, now: u32) -> (usize, Displaced) {
        let b1 = self.bucket_of(hash);
        let free = |t: &FlowTable, b: usize| t.buckets[b].0.iter().position(|e| !e.is_used());
        let (slot, displaced) = if let Some(w) = free(self, b1) {
            (b1 * WAYS + w, Displaced::Nothing)
        } else {
            let b2 = self.alt_bucket_of(hash);
            match free(self, b2) {
                Some(w) => (b2 * WAYS + w, Displaced::Nothing),
                None => self.make_room(b1, b2, now),
            }
        };
        if slot / WAYS != b1 {
            self.buckets[b1].0[0].bucket_flags |= OVERFLOWED;
        }
        if displaced == Displaced::Nothing {
            self.used += 1;
        }
        let e = self.entry_mut(slot);
        *e = FlowEntry {
            addrs: key.addrs,
            rest: key.rest,
            bucket_flags: e.bucket_flags,
            ..FlowEntry::FREE
        };
        if displaced == Displaced::Nothing {
            self.note_filled(slot / WAYS);
        }
        (slot, displaced)
    }

    /// Both buckets are full: reuse the oldest expired way; else move one live entry to its own
    /// other bucket if that has room (one cuckoo step, so no flow is lost); else evict the
    /// least recently seen of the eight, SYN-only flows first.
    fn make_room(&mut self, b1: usize, b2: usize, now: u32) -> (usize, Displaced) {
        // Rank: 1 expired, 2 live and only SYNs seen, 3 live and further along; then by age.
        let mut best = (b1 * WAYS, (4u8, u32::MAX));
        for b in [b1, b2] {
            for (w, e) in self.buckets[b].0.iter().enumerate() {
                let rank = if e.expires <= now {
                    (1, e.last_seen)
                } else if e.state == FlowState::SynSent as u8 {
                    (2, e.last_seen)
                } else {
                    (3, e.last_seen)
                };
                if rank < best.1 {
                    best = (b * WAYS + w, rank);
                }
            }
        }
        let old = *self.entry(best.0);
        if best.1 .0 == 1 {
            return (best.0, Displaced::Expired(old));
        }
        // Every way of the table is in use (`used` counts exactly the used ways): no other
        // bucket has room for a cuckoo move, so skip reading eight of them. This is the steady
        // state of a table that has filled up, e.g. under a SYN flood.
        if self.used == self.capacity() {
            return (best.0, Displaced::Evicted(old));
        }
        // Each of the eight lives in one of its two buckets; find the other one, and start
        // fetching at once those that have room (in a large table each is a cache miss of its
        // own; the bitmap says which, and a full one would not be read).
        let mut moves = [(0usize, 0usize); 2 * WAYS];
        for (i, m) in moves.iter_mut().enumerate() {
            let b = if i < WAYS { b1 } else { b2 };
            let (primary, other) = self.buckets_of_entry(&self.buckets[b].0[i % WAYS], b);
            if !self.is_full(other) {
                self.prefetch_bucket(other);
            }
            *m = (primary, other);
        }
        for b in [b1, b2] {
            for w in 0..WAYS {
                let e = self.buckets[b].0[w];
                let (primary, other) = moves[if b == b1 { w } else { WAYS + w }];
                if other == b || self.is_full(other) {
                    continue;
                }
                if let Some(w2) = self.buckets[other].0.iter().position(|x| !x.is_used()) {
                    let target = &mut self.buckets[other].0[w2];
                    *target = FlowEntry {
                        bucket_flags: target.bucket_flags,
                        ..e
                    };
                    if other != primary {
                        self.buckets[primary].0[0].bucket_flags |= OVERFLOWED;
                    }
                    self.note_filled(other);
                    // The moved entry filled a free way; `insert` counts the new entry.
                    return (b * WAYS + w, Displaced::Nothing);
                }
            }
        }
        (best.0, Displaced::Evicted(old))
    }

    /// Free the entry in `slot`, returning what it held.
    pub fn remove(&mut self, slot: usize) -> FlowEntry {
        let e = self.entry_mut(slot);
        let old = *e;
        *e = FlowEntry {
            bucket_flags: old.bucket_flags,
            ..FlowEntry::FREE
        };
        if old.is_used() {
            self.used -= 1;
            self.note_freed(slot / WAYS);
        }
        old
    }

    /// Visit up to `buckets` buckets (continuing where the previous call stopped), freeing every
    /// entry expired at second `now` and handing it to `freed`. Bounded work per call.
    pub fn sweep(&mut self, buckets: usize, now: u32, mut freed: impl FnMut(&FlowEntry)) {
        let n = self.buckets.len();
        for _ in 0..buckets.min(n) {
            let b = self.sweep_cursor;
            self.sweep_cursor = if b + 1 == n { 0 } else { b + 1 };
            let mut any = false;
            for e in self.buckets[b].0.iter_mut() {
                if e.is_used() && e.expires <= now {
                    freed(e);
                    *e = FlowEntry {
                        bucket_flags: e.bucket_flags,
                        ..FlowEntry::FREE
                    };
                    self.used -= 1;
                    any = true;
                }
            }
            if any {
                self.note_freed(b);
            }
        }
    }

    /// [`sweep`](Self::sweep) at a pace that visits the whole table once per `period_ms`:
    /// given the milliseconds since the previous call, it visits that share of the buckets (the
    /// fraction carried over to the next call), at most the whole table.
    pub fn sweep_paced(
        &mut self,
        elapsed_ms: u64,
        period_ms: u64,
        now: u32,
        freed: impl FnMut(&FlowEntry),
    ) {
        let n = self.buckets.len() as u64;
        let period = period_ms.max(1);
        let credit = self
            .sweep_credit
            .saturating_add(elapsed_ms.saturating_mul(n));
        let due = (credit / period).min(n);
        self.sweep_credit = if due == n { 0 } else { credit - due * period };
        if due > 0 {
            self.sweep(due as usize, now, freed);
        }
    }

    /// Visit every used entry (slow: for config changes and tests).
    pub fn for_each(&self, mut f: impl FnMut(&FlowEntry)) {
        for b in &self.buckets {
            for e in b.0.iter().filter(|e| e.is_used()) {
                f(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl FlowTable {
        /// The full-bucket bitmap agrees with the buckets.
        fn check_full_bits(&self) {
            for (b, bucket) in self.buckets.iter().enumerate() {
                assert_eq!(
                    self.is_full(b),
                    bucket.0.iter().all(|e| e.is_used()),
                    "bucket {b}"
                );
            }
        }
    }

    /// Filling a small table past full (evictions, cuckoo moves), removing and sweeping keeps
    /// the bitmap exact.
    #[test]
    fn full_bits_follow_the_buckets() {
        let mut t = FlowTable::new(256, 99);
        let mut slots = Vec::new();
        for i in 0..600u32 {
            let k = FlowKey::five_tuple(i, 7, i as u16, 80, 6);
            let h = t.hash(k);
            if t.find(h, k).is_some() {
                continue;
            }
            let (s, _) = t.insert(h, k, i);
            t.entry_mut(s)
                .touch(FlowState::Established, i, if i % 3 == 0 { 5 } else { 900 });
            slots.push(s);
            if i % 7 == 0 {
                t.remove(slots[(i as usize * 31) % slots.len()]);
            }
            t.check_full_bits();
        }
        assert_eq!(t.len(), {
            let mut n = 0;
            t.for_each(|_| n += 1);
            n
        });
        t.sweep(1000, 500, |_| {});
        t.check_full_bits();
    }

    /// One bucket (both choices the same): three established flows seen long ago and a SYN-only
    /// one seen just now; a fifth flow evicts the SYN-only one, then the oldest of the rest.
    #[test]
    fn a_full_table_evicts_syn_only_flows_first() {
        let mut t = FlowTable::new(WAYS, 5);
        let key = |i: u32| FlowKey::five_tuple(0x0a00_0000 + i, 7, 1000 + i as u16, 80, 6);
        for i in 0..4u32 {
            let k = key(i);
            let (s, d) = t.insert(t.hash(k), k, 10 + i);
            assert_eq!(d, Displaced::Nothing);
            let state = if i == 3 {
                FlowState::SynSent
            } else {
                FlowState::Established
            };
            t.entry_mut(s).touch(state, 10 + i, 900);
        }
        let k = key(4);
        let (s, d) = t.insert(t.hash(k), k, 20);
        assert!(
            matches!(d, Displaced::Evicted(e) if e.rest == key(3).rest),
            "{d:?}"
        );
        t.entry_mut(s).touch(FlowState::Established, 20, 900);
        let k = key(5);
        let (_, d) = t.insert(t.hash(k), k, 21);
        assert!(
            matches!(d, Displaced::Evicted(e) if e.rest == key(0).rest),
            "{d:?}"
        );
    }

    #[test]
    fn entry_is_32_bytes_and_bucket_two_lines() {
        assert_eq!(core::mem::size_of::<FlowEntry>(), 32);
        assert_eq!(core::mem::size_of::<Bucket>(), 128);
    }

    #[test]
    fn insert_find_remove() {
        let mut t = FlowTable::new(16, 1);
        let k = FlowKey::five_tuple(1, 2, 3, 4, 6);
        let h = t.hash(k);
        assert_eq!(t.find(h, k), None);
        let (slot, d) = t.insert(h, k, 10);
        assert_eq!(d, Displaced::Nothing);
        t.entry_mut(slot).touch(FlowState::Udp, 10, 300);
        assert_eq!(t.find(h, k), Some(slot));
        assert_eq!(t.len(), 1);
        t.remove(slot);
        assert_eq!(t.find(h, k), None);
        assert!(t.is_empty());
    }

    /// `way_of` decides ways 0 and 1 together and scans 2 and 3 apart: a key is found in each
    /// of the four ways, also with the ways before it free, and a missing key in none.
    #[test]
    fn each_way_is_found() {
        // One bucket: every key collides.
        let mut t = FlowTable::new(4, 3);
        let keys: Vec<FlowKey> = (0..4u32)
            .map(|i| FlowKey::five_tuple(i, 9, 1000 + i as u16, 80, 6))
            .collect();
        let slots: Vec<usize> = keys.iter().map(|&k| t.insert(t.hash(k), k, 0).0).collect();
        assert_eq!(slots, [0, 1, 2, 3]);
        let absent = FlowKey::five_tuple(7, 9, 1007, 80, 6);
        for (skip, &first) in slots.iter().enumerate() {
            for (w, &k) in keys.iter().enumerate().skip(skip) {
                assert_eq!(
                    t.find(t.hash(k), k),
                    Some(w),
                    "way {w}, ways 0..{skip} free"
                );
                assert_eq!(
                    t.find_mut(t.hash(k), k).map(|(s, e)| (s, e.rest)),
                    Some((w, k.rest))
                );
            }
            assert_eq!(t.find(t.hash(absent), absent), None);
            t.remove(first);
        }
    }

    #[test]
    fn full_bucket_evicts_least_recent_and_prefers_expired() {
        // One bucket: every key collides.
        let mut t = FlowTable::new(4, 7);
        for i in 0..4u32 {
            let k = FlowKey::five_tuple(i, 0, 0, 0, 17);
            let (s, _) = t.insert(t.hash(k), k, 0);
            t.entry_mut(s).touch(FlowState::Udp, 100 + i, 300);
        }
        let k = FlowKey::five_tuple(9, 0, 0, 0, 17);
        let (s, d) = t.insert(t.hash(k), k, 200);
        match d {
            Displaced::Evicted(e) => assert_eq!(e.last_seen, 100),
            other => panic!("{other:?}"),
        }
        t.entry_mut(s).touch(FlowState::Udp, 200, 300);
        // Expire the entry seen at 103 early: it is reused before any older live one.
        let k3 = FlowKey::five_tuple(3, 0, 0, 0, 17);
        let s3 = t.find(t.hash(k3), k3).unwrap();
        t.entry_mut(s3).expires = 150;
        let k = FlowKey::five_tuple(10, 0, 0, 0, 17);
        let (_, d) = t.insert(t.hash(k), k, 200);
        assert!(matches!(d, Displaced::Expired(e) if e.last_seen == 103));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn sweep_frees_expired_only() {
        let mut t = FlowTable::new(1024, 3);
        for i in 0..20u32 {
            let k = FlowKey::five_tuple(i, 0, 0, 0, 17);
            let (s, _) = t.insert(t.hash(k), k, 0);
            t.entry_mut(s)
                .touch(FlowState::Udp, 0, if i % 2 == 0 { 10 } else { 1000 });
        }
        let mut freed = 0;
        t.sweep(1000, 11, |_| freed += 1);
        assert_eq!(t.len(), t.capacity().min(20) - freed);
        assert!(freed <= 10);
    }

    #[test]
    fn paced_sweep_covers_the_table_once_per_period() {
        // 4096 entries = 1024 buckets; every entry expired at second 5.
        let mut t = FlowTable::new(4096, 5);
        for i in 0..2000u32 {
            let k = FlowKey::five_tuple(i, 7, 1, 2, 17);
            let (s, _) = t.insert(t.hash(k), k, 0);
            t.entry_mut(s).touch(FlowState::Udp, 0, 5);
        }
        let used = t.len();
        assert!(used > 1900);
        let mut freed = 0;
        // A quarter of the period: about a quarter of the buckets, so about a quarter of the
        // entries.
        t.sweep_paced(2_500, 10_000, 6, |_| freed += 1);
        assert!((used / 4 - 100..used / 4 + 100).contains(&freed), "{freed}");
        // One millisecond at a time: 1024 buckets / 10 000 ms is a tenth of a bucket a call,
        // carried over. 7 500 calls finish the table, and nothing is left.
        for _ in 0..7_499 {
            t.sweep_paced(1, 10_000, 6, |_| freed += 1);
        }
        assert!(!t.is_empty(), "one bucket-step short");
        t.sweep_paced(1, 10_000, 6, |_| freed += 1);
        assert_eq!(t.len(), 0);
        assert_eq!(freed, used);
        // A long pause sweeps the table once, not many times over.
        let k = FlowKey::five_tuple(1, 1, 1, 1, 17);
        let (s, _) = t.insert(t.hash(k), k, 0);
        t.entry_mut(s).touch(FlowState::Udp, 0, 5);
        t.sweep_paced(1_000_000, 10_000, 6, |_| freed += 1);
        assert_eq!(t.len(), 0);
    }

    /// Regular 5-tuples fill the table evenly: nothing is evicted at 40 % load and at most 1 %
    /// of the flows at 90 %, for each shape of real traffic: few sources with sequential ports,
    /// one source with every port, sequential source addresses, one source per /24, and one
    /// source to every port of an all-ports VIP.
    #[test]
    fn evictions_stay_rare_until_nearly_full() {
        type Shape = fn(u32) -> FlowKey;
        let shapes: [(&str, Shape); 5] = [
            ("few sources, sequential ports", |id| {
                let src = 0xC000_0000 + id / 50_000 * 7919 + id % 13;
                FlowKey::five_tuple(src, 0x0a4d_0064, (id % 50_000) as u16, 80, 6)
            }),
            ("one source, every port", |id| {
                FlowKey::five_tuple(0xC000_0201, 0x0a4d_0064, id as u16, 443, 6)
            }),
            ("sequential sources", |id| {
                FlowKey::five_tuple(0x0a00_0000 + id, 0x0a4d_0064, 40_000, 80, 6)
            }),
            ("one source per /24", |id| {
                FlowKey::five_tuple(
                    0x0a00_0001 + (id << 8),
                    0x0a4d_0064,
                    33_000 + (id % 7) as u16,
                    53,
                    17,
                )
            }),
            ("every destination port", |id| {
                FlowKey::five_tuple(0xC000_0201, 0x0a4d_0064, 5353, id as u16, 17)
            }),
        ];
        for (name, shape) in shapes {
            for (load, max_evicted) in [(0.4, 0), (0.9, 1)] {
                let mut t = FlowTable::new(1 << 16, 0x1234_5678_9abc_def1);
                let n = (65536.0 * load) as u32;
                let mut evicted = 0;
                for id in 0..n {
                    let k = shape(id);
                    let h = t.hash(k);
                    assert_eq!(t.find(h, k), None);
                    let (s, d) = t.insert(h, k, 0);
                    t.entry_mut(s).touch(FlowState::Established, 0, 900);
                    evicted += u32::from(matches!(d, Displaced::Evicted(_)));
                }
                std::println!("{name}: {evicted} of {n} evicted at {load}");
                // Percent of the flows inserted.
                assert!(
                    evicted * 100 <= max_evicted * n,
                    "{name}: {evicted} of {n} evicted at {load}"
                );
                assert_eq!(t.len() as u32, n - evicted);
                // Every flow still in the table is found where it is.
                let mut found = 0;
                t.for_each(|_| found += 1);
                assert_eq!(found, t.len());
                t.check_full_bits();
            }
        }
    }

    #[test]
    fn tcp_states() {
        use FlowState::*;
        assert_eq!(SynSent.after_tcp(true, false, false), SynSent);
        assert_eq!(SynSent.after_tcp(false, true, false), Established);
        assert_eq!(Established.after_tcp(false, true, true), Closing);
        assert_eq!(Closing.after_tcp(false, true, false), Closing);
        assert_eq!(Established.after_tcp(true, false, false), Established);
        // The entry's table agrees with `after_tcp` for every stored number and every flags
        // byte, and gives UDP for UDP; `renew` sets that state's timeout.
        for state in 1..=5 {
            let e = FlowEntry {
                state,
                ..FlowEntry::FREE
            };
            for flags in 0..=u8::MAX {
                let (syn, ack, fin_rst) = (flags & 0x02 != 0, flags & 0x10 != 0, flags & 0x05 != 0);
                let want = FlowState::from_number(state).after_tcp(syn, ack, fin_rst);
                let next = e.next_state(packet_kind(Some(flags)));
                assert_eq!(
                    FlowState::from_number(next),
                    want,
                    "state {state}, flags {flags:#x}"
                );
                let mut r = e;
                r.renew(next, 1000);
                assert_eq!((r.state, r.last_seen), (want as u8, 1000));
                assert_eq!(r.expires, 1000 + want.timeout_secs());
            }
            assert_eq!(e.next_state(packet_kind(None)), Udp as u8);
        }
    }
}
