//! Schedulers: which backend of a VIP a *new* flow gets.
//!
//! Only new flows reach a scheduler; the flow table keeps established ones where they are, which
//! is why weight 0 (drain) and "down" only take a backend out of the *eligible* list here and
//! never touch flows. Every scheduler works on that eligible list, rebuilt whenever weights,
//! membership or health change, so the per-packet work is small:
//!
//! - `rr`: a cursor over the eligible backends.
//! - `wrr`: smooth weighted round robin (each pick adds every weight to a running credit and takes
//!   the largest): the same long-run split as IPVS's wrr, interleaved rather than in runs.
//! - `lc` / `wlc`: the fewest flows in the flow table (divided by weight for wlc), as IPVS does
//!   with its connection counts; O(backends) per new flow.
//! - `maglev`: weighted Maglev consistent hashing over a lookup table of [`MAGLEV_SIZE`] (a prime)
//!   entries, keyed by the flow's 5-tuple under a fixed seed so that several balancers in front
//!   of the same backends agree. Removing one backend moves only the keys it held (plus a small
//!   fraction caused by refilling).
//! - `sh`: source hashing uses the same weighted Maglev table keyed by the client address alone,
//!   which gives IPVS sh's stickiness with Maglev's small disruption when a backend changes.

use alloc::vec;
use alloc::vec::Vec;

use crate::flow::fold_mul;

/// Maglev lookup table size: a prime >= 65537, so that every skip is coprime with it.
pub const MAGLEV_SIZE: usize = 65537;
const EMPTY: u16 = u16::MAX;

/// One eligible backend as a scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The backend slot (global id).
    pub slot: u32,
    /// Its weight, >= 1.
    pub weight: u32,
    /// A stable identity (its address) that positions it in Maglev's permutations.
    pub id: u32,
}

/// Per-VIP scheduling state.
#[derive(Clone, Debug, Default)]
pub struct SchedState {
    /// The eligible backends (up, weight > 0), in config order.
    pub eligible: Vec<Candidate>,
    rr_next: usize,
    wrr_credit: Vec<i64>,
    wrr_total: i64,
    /// Maglev table of indices into `eligible`; empty unless the VIP uses maglev or sh.
    maglev: Vec<u16>,
}

impl SchedState {
    /// State for `eligible`, with a Maglev table when `needs_table`.
    pub fn new(eligible: Vec<Candidate>, needs_table: bool) -> SchedState {
        let maglev = if needs_table {
            maglev_table(&eligible)
        } else {
            Vec::new()
        };
        SchedState {
            wrr_credit: vec![0; eligible.len()],
            wrr_total: eligible.iter().map(|c| i64::from(c.weight)).sum(),
            eligible,
            rr_next: 0,
            maglev,
        }
    }

    /// Round robin.
    pub fn rr(&mut self) -> Option<u32> {
        if self.eligible.is_empty() {
            return None;
        }
        let i = self.rr_next % self.eligible.len();
        self.rr_next = i + 1;
        Some(self.eligible[i].slot)
    }

    /// Smooth weighted round robin.
    pub fn wrr(&mut self) -> Option<u32> {
        let mut best: Option<usize> = None;
        for (i, c) in self.eligible.iter().enumerate() {
            self.wrr_credit[i] += i64::from(c.weight);
            if best.is_none_or(|b| self.wrr_credit[i] > self.wrr_credit[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.wrr_credit[b] -= self.wrr_total;
        Some(self.eligible[b].slot)
    }

    /// Least connections (`weighted` divides by weight); `conns` reads a slot's flow count.
    pub fn least_conns(&self, weighted: bool, conns: impl Fn(u32) -> u32) -> Option<u32> {
        let mut best: Option<(u64, u64, u32)> = None;
        for c in &self.eligible {
            let n = u64::from(conns(c.slot));
            let w = if weighted { u64::from(c.weight) } else { 1 };
            // n / w < bn / bw  <=>  n * bw < bn * w  (no division, as IPVS).
            if best.is_none_or(|(bn, bw, _)| n * bw < bn * w) {
                best = Some((n, w, c.slot));
            }
        }
        best.map(|(_, _, s)| s)
    }

    /// The Maglev choice for `hash`.
    #[inline]
    pub fn maglev(&self, hash: u64) -> Option<u32> {
        if self.maglev.is_empty() {
            return None;
        }
        let i = self.maglev[(hash % MAGLEV_SIZE as u64) as usize];
        self.eligible.get(usize::from(i)).map(|c| c.slot)
    }

    /// A deterministic choice for `hash` from any scheduler state (Maglev when there is a table,
    /// else the eligible list by hash): what fragments without a known first fragment get.
    pub fn by_hash(&self, hash: u64) -> Option<u32> {
        self.maglev(hash).or_else(|| {
            let n = self.eligible.len() as u64;
            (n > 0).then(|| self.eligible[(hash % n) as usize].slot)
        })
    }
}

/// Build a weighted Maglev table over `eligible` (empty if there is nobody).
///
/// Each backend walks its own permutation `(offset + k * skip) mod M` (offset and skip from a
/// hash of its stable id) and claims the first free entry on its turn, as in the Maglev paper;
/// weights decide how many turns a backend gets per round (a credit of `weight` per round, one
/// turn per `max_weight` of credit), so shares follow weights.
///
/// That definition is the contract (several balancers must build the same table), and the test
/// `maglev_matches_the_plain_walk` keeps it as a straightforward reference. This function
/// computes the same table faster, in four phases by the number of entries filled so far:
///
/// 1. Up to `M / 4`: the plain walk, turn by turn (most turns take their first probe).
/// 2. Up to `7 M / 8`: `LANES` consecutive turns of one round first walk side by side, a fixed
///    number of steps without branching on what they find (`claim_lockstep`): the walk's exit
///    is a coin toss at this fill, and a mispredicted branch costs more than a few probes.
/// 3. Up to `M - TAIL`: the plain walk, probing `CHAINS` permutation positions per step
///    (`first_free_chains`): the walks are long and bound by the add-and-wrap chain.
/// 4. The last `TAIL` entries: a walk would now cost about `M / free` probes per turn, so each
///    turn instead picks, among the free entries, the one that comes first in the backend's
///    permutation (`earliest_free`): `free` modular products per turn.
///
/// Why phase 4 is the walk's result: a backend's walk only ever moves forward, and every entry
/// it has passed was taken when it passed it (else it would have claimed it), and entries are
/// never freed. So all entries before its current position are taken, and its next claim is the
/// free entry `s` with the smallest permutation index `k(s) = (s - offset) * skip⁻¹ mod M`
/// (`skip` is invertible because M is prime). Phases 2 and 3 visit the same permutation
/// positions in the same order as the walk; see `claim_lockstep` for why walking several
/// turns against the table as it was before the first of them gives the same claims.
///
/// Phases 3 and 4 are skipped (the plain walk goes on) when one to three backends take most
/// turns (see `walks_get_long`).
///
/// Weights of 0 get no turns, as in the walk. If no backend has a weight, the walk would never
/// finish; the table is then empty (callers only pass backends of weight >= 1). Backend indices
/// are stored as `u16`, so at most 65 535 backends are told apart from an empty entry; with more,
/// phase 4 is skipped and the walk's (then meaningless) result is reproduced as well.
pub fn maglev_table(eligible: &[Candidate]) -> Vec<u16> {
    let mut turns = Turns {
        order: turn_order(eligible),
        next: 0,
    };
    if turns.order.is_empty() {
        return Vec::new();
    }
    let mut walks: Vec<Walk> = eligible.iter().map(Walk::new).collect();
    let mut table = vec![EMPTY; MAGLEV_SIZE];
    let long = walks_get_long(eligible);
    // Phase 4 removes an entry from the free list per turn: only right if every claim fills one.
    let tail = if long && eligible.len() < usize::from(EMPTY) {
        TAIL
    } else {
        0
    };
    // The plain walk for backend `i`.
    let walk = |table: &mut [u16], w: &mut Walk, i: usize| {
        let (s, after) = first_free(table, w.next, w.skip);
        table[s as usize] = i as u16;
        w.next = after;
    };
    let mut filled = 0;
    // Phase 1.
    while filled < LOCKSTEP_FROM {
        let i = turns.take();
        walk(&mut table, &mut walks[i], i);
        filled += 1;
    }
    // Phase 2.
    while filled + LANES <= LOCKSTEP_TO {
        if let Some(group) = turns.take_group() {
            claim_lockstep(&mut table, &mut walks, group, LOCKSTEP_STEPS[filled >> 10]);
            filled += LANES;
        } else {
            let i = turns.take();
            walk(&mut table, &mut walks[i], i);
            filled += 1;
        }
    }
    // Phase 3 (or the plain walk to the end).
    while filled < MAGLEV_SIZE - tail {
        let i = turns.take();
        let w = &mut walks[i];
        if long && filled >= LOCKSTEP_TO {
            let (s, after) = first_free_chains(&table, w.next, w.skip);
            table[s as usize] = i as u16;
            w.next = after;
        } else {
            walk(&mut table, w, i);
        }
        filled += 1;
    }
    // Phase 4.
    if tail > 0 {
        let mut free: Vec<u32> = Vec::with_capacity(tail);
        for (c, chunk) in table.chunks(32).enumerate() {
            // Branch-free test first (most chunks are full).
            if chunk.iter().fold(false, |any, &e| any | (e == EMPTY)) {
                for (x, &e) in chunk.iter().enumerate() {
                    if e == EMPTY {
                        free.push((c * 32 + x) as u32);
                    }
                }
            }
        }
        while !free.is_empty() {
            let i = turns.take();
            let w = &mut walks[i];
            if w.inverse == 0 {
                w.inverse = inverse_mod_m(w.skip);
            }
            let s = free.swap_remove(earliest_free(&free, w.offset, w.inverse));
            table[s as usize] = i as u16;
        }
    }
    table
}

/// The turn order (one period of it, see [`turn_order`]) and the next turn in it.
struct Turns {
    order: Vec<u32>,
    next: usize,
}

impl Turns {
    /// The backend of the next turn.
    fn take(&mut self) -> usize {
        let i = self.order[self.next] as usize;
        self.next += 1;
        if self.next == self.order.len() {
            self.next = 0;
        }
        i
    }

    /// The backends of the next [`LANES`] turns, if they are distinct: backend indices rise
    /// within a round, so a rising run is part of one round.
    fn take_group(&mut self) -> Option<[usize; LANES]> {
        let run = self.order.get(self.next..self.next + LANES)?;
        if !run.windows(2).all(|w| w[0] < w[1]) {
            return None;
        }
        let group = core::array::from_fn(|x| run[x] as usize);
        self.next += LANES;
        if self.next == self.order.len() {
            self.next = 0;
        }
        Some(group)
    }
}

/// [`MAGLEV_SIZE`] as the type positions are computed in.
const M: u32 = MAGLEV_SIZE as u32;
/// Phase 2 of [`maglev_table`] covers entries `LOCKSTEP_FROM..LOCKSTEP_TO` (fill 1/4 to 7/8,
/// where a turn takes 1.3 to 8 probes and the walk's exit is a coin toss).
const LOCKSTEP_FROM: usize = MAGLEV_SIZE / 4;
const LOCKSTEP_TO: usize = MAGLEV_SIZE / 8 * 7;
/// Turns walked side by side in phase 2.
const LANES: usize = 6;
/// Steps the lanes of phase 2 take together, by fill level (`filled >> 10`): the fewest `t`
/// with `f^t <= 1/5`, `f` the fill fraction in the middle of that level, so that about four
/// lanes in five end on a free entry (the others finish with the plain walk). A fixed count
/// keeps that loop's exit predictable.
const LOCKSTEP_STEPS: [usize; 64] = {
    let mut steps = [0; 64];
    let mut level = 0;
    while level < 64 {
        // f in 1/65536: (level + 1/2) * 1024 / M.
        let f = (((2 * level + 1) as u64) << 25) / MAGLEV_SIZE as u64;
        let (mut p, mut t) = (1u64 << 16, 0);
        while p * 5 > 1 << 16 {
            p = (p * f) >> 16;
            t += 1;
        }
        steps[level] = t;
        level += 1;
    }
    steps
};
/// Permutation positions probed per step in phase 3.
const CHAINS: usize = 4;
/// Entries filled by search (phase 4): a search costs one modular product per free entry, a
/// walk about `M / free` probes, which cross near sqrt(M) = 256.
const TAIL: usize = 256;
// `earliest_free` packs an index into the list of free entries in 15 bits.
const _: () = assert!(TAIL <= 1 << 15);

/// Whether phases 3 and 4 of [`maglev_table`] pay. A walk only meets entries taken by the
/// *other* backends (its own claims are behind it), so when one to three backends take most
/// turns, walks stay short to the end, and searching all free entries, or setting up several
/// chains, costs more than it saves. The test is an effective number of backends
/// `(sum w)^2 / sum w^2` of at least 4, where the two phases were measured to break even
/// (forwarder/BENCHMARKS.md).
fn walks_get_long(eligible: &[Candidate]) -> bool {
    let sum: u128 = eligible.iter().map(|c| u128::from(c.weight)).sum();
    let squares: u128 = eligible.iter().map(|c| u128::from(c.weight).pow(2)).sum();
    4 * squares <= sum * sum
}

/// Where one backend is in its permutation `(offset + k * skip) mod M`.
#[derive(Clone, Copy, Debug)]
struct Walk {
    /// The next position to probe.
    next: u32,
    /// The permutation's step, 1..M.
    skip: u32,
    /// The permutation's first position.
    offset: u32,
    /// `skip⁻¹ mod M` once phase 4 needs it; 0 (never an inverse) until then.
    inverse: u32,
}

/// A backend's Maglev permutation `(offset + k * skip) mod M`, from a hash of its stable id:
/// `(offset, skip)` with `offset < M` and `1 <= skip < M`.
fn permutation(id: u32) -> (u32, u32) {
    let m = u64::from(M);
    let h1 = fold_mul(u64::from(id) ^ 0x5851_F42D_4C95_7F2D, 0x9E37_79B9_7F4A_7C15);
    let h2 = fold_mul(u64::from(id) ^ 0x1405_7B7E_F767_814F, 0xC2B2_AE3D_27D4_EB4F);
    ((h1 % m) as u32, (h2 % (m - 1) + 1) as u32)
}

impl Walk {
    fn new(c: &Candidate) -> Walk {
        let (offset, skip) = permutation(c.id);
        Walk {
            next: offset,
            skip,
            offset,
            inverse: 0,
        }
    }
}

/// `p + skip mod M` for `p, skip < M`.
#[inline(always)]
fn advance(p: u32, skip: u32) -> u32 {
    let q = p + skip;
    if q >= M {
        q - M
    } else {
        q
    }
}

/// The walk: the first free entry at or after position `p` of a permutation, and the position
/// after it.
#[inline(always)]
fn first_free(table: &[u16], mut p: u32, skip: u32) -> (u32, u32) {
    loop {
        let s = p;
        p = advance(p, skip);
        if table[s as usize] == EMPTY {
            return (s, p);
        }
    }
}

/// [`first_free`] probing [`CHAINS`] consecutive permutation positions per step, in order, so
/// that the position updates are [`CHAINS`] independent chains instead of one.
#[inline(never)]
fn first_free_chains(table: &[u16], p: u32, skip: u32) -> (u32, u32) {
    let mut at = [p; CHAINS];
    for x in 1..CHAINS {
        at[x] = advance(at[x - 1], skip);
    }
    let mut stride = 0; // CHAINS * skip mod M, never 0 as M is prime
    for _ in 0..CHAINS {
        stride = advance(stride, skip);
    }
    loop {
        for &s in &at {
            if table[s as usize] == EMPTY {
                return (s, advance(s, skip));
            }
        }
        for s in &mut at {
            *s = advance(*s, stride);
        }
    }
}

/// The claims of [`LANES`] consecutive turns of distinct backends (`group`, in turn order).
///
/// First every lane walks `steps` positions against the table as it was before the first of
/// these turns, without branching on its own result: a lane on a free entry stays there. Then
/// the turns claim in order, each with the plain walk from where its lane stopped. Why that is
/// the walk's result: the entries a lane passed were taken before the group and still are, so
/// its walk may start where the lane stopped; that entry is usually free (unless the lane ran
/// out of steps or an earlier turn of the group took it), and the walk then ends at once.
fn claim_lockstep(table: &mut [u16], walks: &mut [Walk], group: [usize; LANES], steps: usize) {
    let mut at: [u32; LANES] = core::array::from_fn(|x| walks[group[x]].next);
    let skip: [u32; LANES] = core::array::from_fn(|x| walks[group[x]].skip);
    for _ in 0..steps {
        for x in 0..LANES {
            let free = table[at[x] as usize] == EMPTY;
            at[x] = core::hint::select_unpredictable(free, at[x], advance(at[x], skip[x]));
        }
    }
    for x in 0..LANES {
        let (s, after) = first_free(table, at[x], skip[x]);
        table[s as usize] = group[x] as u16;
        walks[group[x]].next = after;
    }
}

/// The index in `free` of the entry that comes first in the permutation with this `offset` and
/// `inverse` (of its skip): the smallest `k(s) = (s - offset) * inverse mod M`. The `k` are
/// distinct, so there are no ties. Each entry gets the key `k << 15 | index` (`k <= 2^16`, at
/// most `TAIL <= 2^15` entries), and the smallest key is found without branches.
fn earliest_free(free: &[u32], offset: u32, inverse: u32) -> usize {
    let best = if inverse == M - 1 {
        free.iter().zip(0u32..).fold(u32::MAX, |best, (&s, x)| {
            best.min(index_back(s, offset) << 15 | x)
        })
    } else {
        free.iter().zip(0u32..).fold(u32::MAX, |best, (&s, x)| {
            best.min(index_forward(s, offset, inverse) << 15 | x)
        })
    };
    (best & 0x7FFF) as usize
}

/// `(s - offset) * inverse mod M` for `s, offset < M` and `inverse < M - 1`, in 32 bits.
#[inline(always)]
fn index_forward(s: u32, offset: u32, inverse: u32) -> u32 {
    let d = if s >= offset {
        s - offset
    } else {
        s + (M - offset)
    };
    // d <= 2^16 and inverse < 2^16: p < 2^32. Mod 2^16 + 1, hi * 2^16 + lo = lo - hi.
    let p = d * inverse;
    let (lo, hi) = (p & 0xFFFF, p >> 16);
    if lo >= hi {
        lo - hi
    } else {
        lo + M - hi
    }
}

/// [`index_forward`] for `inverse = M - 1` (skip = M - 1 = -1 is its own inverse), whose
/// product would not fit in 32 bits: `offset - s mod M`.
#[inline(always)]
fn index_back(s: u32, offset: u32) -> u32 {
    if offset >= s {
        offset - s
    } else {
        offset + (M - s)
    }
}

/// `a⁻¹ mod M` for `0 < a < M` (Fermat: `a^(M-2)`).
fn inverse_mod_m(a: u32) -> u32 {
    let m = u64::from(M);
    let (mut base, mut e, mut r) = (u64::from(a), m - 2, 1u64);
    while e > 0 {
        if e & 1 == 1 {
            r = r * base % m;
        }
        base = base * base % m;
        e >>= 1;
    }
    r as u32
}

/// The order of turns: each round adds its weight to every backend's credit, and a backend whose
/// credit reached `max_weight` takes one turn (and gives `max_weight` back) in config order. A
/// credit stays below `max_weight` and gains at most that per round, so a round gives at most
/// one turn per backend. When all credits are 0 again after a round, the rounds repeat; the
/// list holds one such period (the caller cycles through it), or at least `MAGLEV_SIZE` turns.
/// Empty if no backend has a weight.
fn turn_order(eligible: &[Candidate]) -> Vec<u32> {
    let max_w = u64::from(eligible.iter().map(|c| c.weight).max().unwrap_or(1).max(1));
    let mut credit = vec![0u64; eligible.len()];
    let mut turns: Vec<u32> = Vec::new();
    loop {
        let mut owed = 0;
        for (i, (c, cr)) in eligible.iter().zip(credit.iter_mut()).enumerate() {
            *cr += u64::from(c.weight);
            if *cr >= max_w {
                *cr -= max_w;
                turns.push(i as u32);
            }
            owed |= *cr;
        }
        if owed == 0 || turns.len() >= MAGLEV_SIZE {
            return turns;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Candidate {
                slot: i as u32,
                weight: w,
                id: 0x0a00_0000 + i as u32,
            })
            .collect()
    }

    #[test]
    fn rr_cycles() {
        let mut s = SchedState::new(cands(&[1, 1, 1]), false);
        let picks: Vec<u32> = (0..6).filter_map(|_| s.rr()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(SchedState::new(Vec::new(), true).rr(), None);
    }

    #[test]
    fn wrr_follows_weights_exactly_per_cycle() {
        let mut s = SchedState::new(cands(&[5, 1, 1]), false);
        let mut n = [0; 3];
        for _ in 0..70 {
            n[s.wrr().unwrap() as usize] += 1;
        }
        assert_eq!(n, [50, 10, 10]);
    }

    #[test]
    fn least_conns_and_weighted() {
        let s = SchedState::new(cands(&[1, 3]), false);
        let conns = |slot: u32| if slot == 0 { 2 } else { 4 };
        assert_eq!(s.least_conns(false, conns), Some(0));
        assert_eq!(s.least_conns(true, conns), Some(1)); // 4/3 < 2/1
    }

    #[test]
    fn maglev_is_full_and_weighted() {
        let t = maglev_table(&cands(&[1, 2, 1]));
        assert_eq!(t.len(), MAGLEV_SIZE);
        let mut n = [0usize; 3];
        for &i in &t {
            n[usize::from(i)] += 1;
        }
        assert!(n.iter().all(|&c| c > 0));
        let share = n[1] as f64 / MAGLEV_SIZE as f64;
        assert!((share - 0.5).abs() < 0.01, "{n:?}");
    }

    /// The Maglev table as defined: every turn walks the backend's permutation to the first free
    /// entry (the code `maglev_table` had before it was made faster, kept as the reference).
    fn plain_walk_table(eligible: &[Candidate]) -> Vec<u16> {
        if eligible.is_empty() {
            return Vec::new();
        }
        let m = MAGLEV_SIZE as u64;
        let mut pos: Vec<u64> = Vec::with_capacity(eligible.len());
        let mut skip: Vec<u64> = Vec::with_capacity(eligible.len());
        for c in eligible {
            let (offset, step) = permutation(c.id);
            pos.push(u64::from(offset));
            skip.push(u64::from(step));
        }
        let max_w = u64::from(eligible.iter().map(|c| c.weight).max().unwrap_or(1).max(1));
        let mut credit = vec![0u64; eligible.len()];
        let mut table = vec![EMPTY; MAGLEV_SIZE];
        let mut filled = 0;
        loop {
            for (i, c) in eligible.iter().enumerate() {
                credit[i] += u64::from(c.weight);
                while credit[i] >= max_w {
                    credit[i] -= max_w;
                    loop {
                        let p = pos[i] as usize;
                        pos[i] += skip[i];
                        if pos[i] >= m {
                            pos[i] -= m;
                        }
                        if table[p] == EMPTY {
                            table[p] = i as u16;
                            break;
                        }
                    }
                    filled += 1;
                    if filled == MAGLEV_SIZE {
                        return table;
                    }
                }
            }
        }
    }

    /// Candidates with these weights; ids from a fixed pseudo-random sequence when `seed` is not
    /// 0, else consecutive addresses as in `cands`.
    fn weighted(weights: &[u32], seed: u64) -> Vec<Candidate> {
        let mut x = seed;
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                Candidate {
                    slot: i as u32,
                    weight: w,
                    id: if seed == 0 {
                        0x0a00_0000 + i as u32
                    } else {
                        (x >> 32) as u32
                    },
                }
            })
            .collect()
    }

    #[test]
    fn maglev_matches_the_plain_walk() {
        let mut cases: Vec<(String, Vec<Candidate>)> = Vec::new();
        for n in [1usize, 2, 3, 10, 100, 257, 1000] {
            for seed in [0u64, 1, 0xdead_beef] {
                let equal = vec![1; n];
                let heavy = vec![10_000; n];
                let ramp: Vec<u32> = (0..n as u32).map(|i| 1 + i % 7).collect();
                let mut lopsided = vec![1; n];
                lopsided[n / 2] = 1000;
                let mut drained: Vec<u32> = (0..n as u32).map(|i| 1 + i % 5).collect();
                drained[0] = 0;
                if n > 2 {
                    drained[n - 1] = 0;
                }
                for (name, w) in [
                    ("equal", equal),
                    ("heavy", heavy),
                    ("1..7", ramp),
                    ("one at 1000", lopsided),
                    ("some at 0", drained),
                ] {
                    if w.iter().all(|&w| w == 0) {
                        continue; // n = 1 and 2 of "some at 0": nobody can take a turn
                    }
                    cases.push((
                        format!("{n} backends, {name}, seed {seed:#x}"),
                        weighted(&w, seed),
                    ));
                }
            }
        }
        // Large ratios, long periods of the weighted rounds, the bench's input.
        cases.push(("1 and 1000".into(), weighted(&[1, 1000], 7)));
        cases.push(("1000 and 1".into(), weighted(&[1000, 1], 7)));
        cases.push(("1, 9999, 10000".into(), weighted(&[1, 9999, 10_000], 3)));
        cases.push(("primes".into(), weighted(&[7919, 7907, 7901, 1, 2, 3], 5)));
        cases.push(("0 then 1".into(), weighted(&[0, 1], 9)));
        // More backends than u16 indices can tell from EMPTY: the walk's result all the same.
        cases.push(("65 536 backends".into(), weighted(&[1; 65_536], 11)));
        cases.push((
            "duplicate ids".into(),
            weighted(&[1, 2, 3], 0)
                .into_iter()
                .chain(weighted(&[3, 2, 1], 0))
                .collect(),
        ));
        cases.push((
            "bench".into(),
            (0..100)
                .map(|i| Candidate {
                    slot: i,
                    weight: 1 + i % 7,
                    id: 0x0a00_0000 + i,
                })
                .collect(),
        ));
        for (name, c) in &cases {
            let want = plain_walk_table(c);
            let got = maglev_table(c);
            assert!(got == want, "{name}: tables differ");
        }
        assert!(maglev_table(&[]).is_empty());
        // Nobody with a weight: the walk never ends; the table is empty (callers filter these).
        assert!(maglev_table(&weighted(&[0, 0], 1)).is_empty());
    }

    #[test]
    fn maglev_modular_helpers() {
        for a in [1u32, 2, 3, 255, 256, 257, 65_535, 65_536] {
            assert_eq!(u64::from(a) * u64::from(inverse_mod_m(a)) % u64::from(M), 1);
        }
        // The earliest free entry is where the walk would go: position k of the permutation.
        let w = Walk::new(&Candidate {
            slot: 0,
            weight: 1,
            id: 42,
        });
        let inverse = inverse_mod_m(w.skip);
        let at = |k: u64| ((u64::from(w.offset) + k * u64::from(w.skip)) % u64::from(M)) as u32;
        let free = [at(65_536), at(3), at(0x8000), at(2), at(65_535)];
        assert_eq!(earliest_free(&free, w.offset, inverse), 3);
        assert_eq!(earliest_free(&free[..3], w.offset, inverse), 1);
        assert_eq!(
            earliest_free(&[at(65_536), at(65_535)], w.offset, inverse),
            1
        );
        // skip = M - 1, its own inverse (the one that takes the other branch).
        assert_eq!(inverse_mod_m(M - 1), M - 1);
        let (offset, at) = (1000u32, |k: u32| (1000 + M - k) % M);
        let free = [at(65_536), at(7), at(0), at(9), at(1000), at(1001)];
        assert_eq!(earliest_free(&free, offset, M - 1), 2);
        assert_eq!(earliest_free(&free[..2], offset, M - 1), 1);
        assert_eq!(earliest_free(&free[4..], offset, M - 1), 0);
        // Against 64-bit arithmetic: every entry for a few permutations, and random free lists.
        let mut x = 0x1234_5678_u64;
        let mut rand = move || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 33) % u64::from(M)) as u32
        };
        let m = u64::from(M);
        let mut cases = vec![
            (0, 1),
            (M - 1, 2),
            (12_345, M - 2),
            (1, M - 1),
            (rand(), 65_535),
        ];
        for _ in 0..20 {
            cases.push((rand(), rand().max(1)));
        }
        for (offset, skip) in cases {
            let inverse = inverse_mod_m(skip);
            let k =
                |s: u32| ((u64::from(s) + m - u64::from(offset)) * u64::from(inverse) % m) as u32;
            for s in 0..M {
                let fast = if inverse == M - 1 {
                    index_back(s, offset)
                } else {
                    index_forward(s, offset, inverse)
                };
                assert_eq!(fast, k(s), "s {s} offset {offset} skip {skip}");
            }
            for len in [1, 2, 255, 256] {
                let free: Vec<u32> = (0..len).map(|_| rand()).collect();
                let mut unique = free.clone();
                unique.sort_unstable();
                unique.dedup();
                if unique.len() < free.len() {
                    continue; // the free list never holds an entry twice
                }
                let want = (0..free.len()).min_by_key(|&j| k(free[j])).unwrap();
                assert_eq!(earliest_free(&free, offset, inverse), want);
            }
        }
    }
}
