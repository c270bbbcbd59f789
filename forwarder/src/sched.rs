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
pub fn maglev_table(eligible: &[Candidate]) -> Vec<u16> {
    if eligible.is_empty() {
        return Vec::new();
    }
    let m = MAGLEV_SIZE as u64;
    let mut pos: Vec<u64> = Vec::with_capacity(eligible.len());
    let mut skip: Vec<u64> = Vec::with_capacity(eligible.len());
    for c in eligible {
        let h1 = fold_mul(
            u64::from(c.id) ^ 0x5851_F42D_4C95_7F2D,
            0x9E37_79B9_7F4A_7C15,
        );
        let h2 = fold_mul(
            u64::from(c.id) ^ 0x1405_7B7E_F767_814F,
            0xC2B2_AE3D_27D4_EB4F,
        );
        pos.push(h1 % m);
        skip.push(h2 % (m - 1) + 1);
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

    #[test]
    fn maglev_build_is_fast_for_100_backends() {
        let c = cands(&[7; 100]);
        let start = std::time::Instant::now();
        let t = maglev_table(&c);
        let took = start.elapsed();
        assert_eq!(t.len(), MAGLEV_SIZE);
        // Debug builds are slow; the release figure is printed by the benchmark.
        assert!(took.as_millis() < 200, "{took:?}");
    }
}
