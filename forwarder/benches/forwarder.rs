//! Per-packet cost of the forwarder's hot paths, with 1 000 and 4 000 000 flows in the table.
//!
//! Frames come from a small pool (one prebuilt frame per source address and burst lane); a
//! packet of flow `k` is made by writing `k`'s source port into the pool frame (two bytes, no
//! checksum involved) and restoring the 14-byte Ethernet header the previous rewrite changed.
//! Flows are visited in a random order, so at 4 M flows nearly every lookup misses the cache.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;

use control::config::Mode;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use forwarder::flow::FlowEntry;
use forwarder::sched::{maglev_table, Candidate};
use forwarder::{Forwarder, Instant, RxFrame, Verdict};

/// The image reaches its heap through the bootloader's mapping of physical memory, which uses
/// 2 MiB pages, so a flow table in the image costs few TLB misses. To measure the same thing
/// here, allocations of 4 MiB and more are 2 MiB-aligned and asked to be backed by transparent
/// huge pages before they are touched. `SIDESTEP_BENCH_SMALL_PAGES=1` turns this off (4 KiB
/// pages, as a plain host program gets).
struct HugePages;

const HUGE: usize = 2 << 20;

fn huge(layout: Layout) -> Option<Layout> {
    // Small allocations never look at the flag: reading the environment allocates, and an
    // allocation inside the flag's initialisation must not come back here.
    if layout.size() < 2 * HUGE {
        return None;
    }
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let off = *OFF.get_or_init(|| std::env::var_os("SIDESTEP_BENCH_SMALL_PAGES").is_some());
    if off {
        return None;
    }
    Layout::from_size_align(layout.size(), layout.align().max(HUGE)).ok()
}

// Safety: every call is forwarded to the system allocator with a layout that `dealloc` recomputes
// identically (`huge` depends only on the layout and a flag fixed before the first large
// allocation); `madvise` only advises the kernel about memory this allocation owns.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match huge(layout) {
            Some(big) => {
                // Safety: `big` has a non-zero size (>= 4 MiB).
                let p = unsafe { System.alloc(big) };
                if !p.is_null() {
                    // Safety: `p` points at `big.size()` bytes this allocation owns.
                    unsafe { libc::madvise(p.cast(), big.size(), libc::MADV_HUGEPAGE) };
                }
                p
            }
            // Safety: the caller's layout, as the trait requires.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Safety: as `alloc`; the memory is zeroed only after the advice, so it faults in as
        // huge pages.
        if huge(layout).is_none() {
            // Safety: the caller's layout, as the trait requires.
            return unsafe { System.alloc_zeroed(layout) };
        }
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // Safety: `p` points at `layout.size()` writable bytes.
            unsafe { p.write_bytes(0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: `ptr` came from `alloc` with the same layout, so `huge` gives the same answer.
        unsafe { System.dealloc(ptr, huge(layout).unwrap_or(layout)) }
    }
}

#[global_allocator]
static ALLOCATOR: HugePages = HugePages;

mod setup;
use setup::{
    config, config6, frame, frame6, resolve_all, resolve_all6, retarget_at, FRAME6_LEN, FRAME_LEN,
    HEAD, MAC, VIP,
};

const SRCS: usize = 64;
const LANES: usize = 32;

/// The address family of a bench's traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// Where the TCP header starts in a frame, and the frame's length.
    fn layout(self) -> (usize, usize) {
        match self {
            Family::V4 => (34, FRAME_LEN),
            Family::V6 => (54, FRAME6_LEN),
        }
    }
}

/// Frames: `[lane][source]`.
struct Pool {
    frames: Vec<Vec<Vec<u8>>>,
    eth: [u8; 14],
    l4: usize,
}

impl Pool {
    fn new(family: Family, flags: u8) -> Pool {
        let frames: Vec<Vec<Vec<u8>>> = (0..LANES)
            .map(|_| {
                (0..SRCS)
                    .map(|s| match family {
                        Family::V4 => frame(s, VIP, 80, flags),
                        Family::V6 => frame6(s, 80, flags),
                    })
                    .collect()
            })
            .collect();
        let mut eth = [0u8; 14];
        eth.copy_from_slice(&frames[0][0][HEAD..HEAD + 14]);
        Pool {
            frames,
            eth,
            l4: family.layout().0,
        }
    }

    /// Make lane `lane` carry flow `k` (source `k >> 16`, source port `k & 0xffff`).
    #[inline(always)]
    fn aim(&mut self, lane: usize, k: u32) -> &mut Vec<u8> {
        let buf = &mut self.frames[lane][(k >> 16) as usize % SRCS];
        retarget_at(buf, &self.eth, self.l4, k as u16, None);
        buf
    }
}

/// The table sizes to measure: 1 000 and 4 000 000 flows, or those listed in
/// `SIDESTEP_BENCH_FLOWS` (comma-separated), e.g. `1000` to skip building the large tables when
/// only the small ones are timed.
fn sizes() -> Vec<u32> {
    match std::env::var("SIDESTEP_BENCH_FLOWS") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        Err(_) => vec![1_000, 4_000_000],
    }
}

/// The modes of the established-flow benches: both, or only `SIDESTEP_BENCH_MODE` (`dsr-l2` or
/// `dsr-l3`), which skips building the other mode's tables (about 20 s each at 4 M flows).
fn modes() -> Vec<Mode> {
    let only = std::env::var("SIDESTEP_BENCH_MODE").ok();
    [Mode::DsrL2, Mode::DsrL3]
        .into_iter()
        .filter(|m| only.as_deref().is_none_or(|o| o == m.name()))
        .collect()
}

/// A random permutation-ish order of `n` flow ids (xorshift), repeated as needed.
fn order(n: u32, len: usize) -> Vec<u32> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(n)) as u32
        })
        .collect()
}

/// The address families of the established-flow benches: both, or only
/// `SIDESTEP_BENCH_FAMILY` (`ipv4` or `ipv6`).
fn families() -> Vec<Family> {
    let only = std::env::var("SIDESTEP_BENCH_FAMILY").ok();
    [(Family::V4, "ipv4"), (Family::V6, "ipv6")]
        .into_iter()
        .filter(|(_, name)| only.as_deref().is_none_or(|o| o == *name))
        .map(|(f, _)| f)
        .collect()
}

/// A forwarder in `mode` with flows `0..n` of `family` established (opened by a SYN each: an
/// ACK that misses the table of a maglev VIP makes no entry) and the pool of their ACKs.
fn populated(mode: Mode, family: Family, n: u32) -> (Forwarder, Pool) {
    let cfg = match family {
        Family::V4 => config(mode),
        Family::V6 => config6(mode),
    };
    let mut f = Forwarder::new(&cfg, MAC, (n as usize * 2).max(4096));
    match family {
        Family::V4 => resolve_all(&mut f, Instant::ZERO),
        Family::V6 => resolve_all6(&mut f, Instant::ZERO),
    }
    let mut syns = Pool::new(family, 0x02);
    let len = family.layout().1;
    for k in 0..n {
        let buf = syns.aim(0, k);
        assert!(matches!(
            f.process(buf, HEAD, len, Instant::ZERO),
            Verdict::Forward { .. }
        ));
    }
    assert_eq!(f.flow_count(), n as usize, "every flow has its entry");
    (f, Pool::new(family, 0x10))
}

fn established(c: &mut Criterion) {
    println!(
        "flow entry: {} bytes (size_of::<FlowEntry>())",
        std::mem::size_of::<FlowEntry>()
    );
    for (family, mode) in families()
        .into_iter()
        .flat_map(|f| modes().into_iter().map(move |m| (f, m)))
    {
        // IPv4 keeps the groups' old names, so figures compare across commits.
        let prefix = match family {
            Family::V4 => "established",
            Family::V6 => "established6",
        };
        let frame_len = family.layout().1;
        let mut g = c.benchmark_group(format!("{prefix}_{}", mode.name()));
        for n in sizes() {
            let (mut f, mut pool) = populated(mode, family, n);
            let seq = order(n, 1 << 20);
            let evicted_before = f.counters().drop_count(forwarder::DropReason::FlowEvicted);
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new("single", n), |b| {
                let mut i = 0;
                b.iter(|| {
                    let k = seq[i & (seq.len() - 1)];
                    i += 1;
                    let buf = pool.aim(0, k);
                    black_box(f.process(buf, HEAD, frame_len, Instant::ZERO))
                })
            });
            g.throughput(Throughput::Elements(LANES as u64));
            g.bench_function(BenchmarkId::new("burst32", n), |b| {
                let mut i = 0;
                let mut verdicts = [Verdict::Local; LANES];
                b.iter(|| {
                    let ks: [u32; LANES] = std::array::from_fn(|l| seq[(i + l) & (seq.len() - 1)]);
                    i += LANES;
                    for (l, &k) in ks.iter().enumerate() {
                        pool.aim(l, k);
                    }
                    // On the stack, as the kernel's receive loop would hold them.
                    let mut lanes = pool.frames.iter_mut();
                    let mut frames: [RxFrame<'_>; LANES] = std::array::from_fn(|l| RxFrame {
                        buf: lanes
                            .next()
                            .map(|lane| &mut lane[(ks[l] >> 16) as usize % SRCS][..])
                            .unwrap_or_default(),
                        head: HEAD,
                        len: frame_len,
                    });
                    f.process_burst(&mut frames, &mut verdicts, Instant::ZERO);
                    black_box(&verdicts);
                })
            });
            let evicted =
                f.counters().drop_count(forwarder::DropReason::FlowEvicted) - evicted_before;
            println!(
                "{prefix} {} with {n} flows: table {} / {} entries, {evicted} evictions while measuring",
                mode.name(),
                f.flow_count(),
                f.flow_capacity()
            );
        }
        g.finish();
    }
}

fn new_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_flow_dsr-l2");
    for n in sizes() {
        let (mut f, _) = populated(Mode::DsrL2, Family::V4, n);
        // New flows: sources the populated flows never used, and every destination port.
        let (mut frames, eth) = new_flow_frames();
        let mut k = 0u64;
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("maglev", n), |b| {
            b.iter(|| {
                k += 1;
                let buf = aim_new(&mut frames[0], &eth, k);
                black_box(f.process(buf, HEAD, FRAME_LEN, Instant::ZERO))
            })
        });
        let evicted_single = f.counters().drop_count(forwarder::DropReason::FlowEvicted);
        g.throughput(Throughput::Elements(LANES as u64));
        g.bench_function(BenchmarkId::new("maglev_burst32", n), |b| {
            let mut verdicts = [Verdict::Local; LANES];
            b.iter(|| {
                // 32 never-seen 5-tuples: a new (source, source port, destination port) each.
                let mut lanes = frames.iter_mut();
                let mut frames: [RxFrame<'_>; LANES] = std::array::from_fn(|_| {
                    k += 1;
                    let buf = lanes
                        .next()
                        .map(|lane| &mut aim_new(lane, &eth, k)[..])
                        .unwrap_or_default();
                    RxFrame {
                        buf,
                        head: HEAD,
                        len: FRAME_LEN,
                    }
                });
                f.process_burst(&mut frames, &mut verdicts, Instant::ZERO);
                black_box(&verdicts);
            })
        });
        println!(
            "new flows on {n} (burst): {} evictions",
            f.counters().drop_count(forwarder::DropReason::FlowEvicted) - evicted_single
        );
        println!(
            "new flows on {n}: {} created, {} evictions",
            f.counters().flows_created,
            f.counters().drop_count(forwarder::DropReason::FlowEvicted)
        );
    }
    g.finish();
}

/// SYN frames for new flows, one set per lane (sources from 100 up, which the established flows
/// never use; [`aim_new`] sets each one's ports), and their Ethernet header.
fn new_flow_frames() -> (Vec<Vec<Vec<u8>>>, [u8; 14]) {
    let frames: Vec<Vec<Vec<u8>>> = (0..LANES)
        .map(|_| (0..SRCS).map(|s| frame(s + 100, VIP, 1, 0x02)).collect())
        .collect();
    let mut eth = [0u8; 14];
    eth.copy_from_slice(&frames[0][0][HEAD..HEAD + 14]);
    (frames, eth)
}

/// Flow `k`'s SYN in a pool frame: source `k >> 32`, source port `k`, destination port `k >> 16`
/// (source numbers from 100 up, which the established flows never use).
#[inline(always)]
fn aim_new<'a>(frames: &'a mut [Vec<u8>], eth: &[u8; 14], k: u64) -> &'a mut Vec<u8> {
    let buf = &mut frames[(k >> 32) as usize % SRCS];
    retarget_at(buf, eth, 34, k as u16, Some((k >> 16) as u16));
    buf
}

/// A table that really holds about `n` live flows under steady churn: capacity `max(2n, 4096)`
/// (as the established bench), every new flow a SYN (60 s timeout), simulated time advancing
/// `60 s / n` per new flow, so the flows of the last 60 s, about `n`, are live and older ones
/// expire and make room. `poll` runs every 512 new flows (100 us at 5 M packets per second; the
/// kernel polls every 1 ms, so this sweeps more often than it would), sweeping as the kernel does,
/// and the next hops are re-learnt every 30 simulated seconds (an ARP reply each) so that they
/// stay resolved; both are inside the measured time.
struct Churn {
    f: Forwarder,
    frames: Vec<Vec<Vec<u8>>>,
    eth: [u8; 14],
    n: u64,
    k: u64,
}

impl Churn {
    const POLL_EVERY: u64 = 512;

    fn new(n: u32) -> Churn {
        let mut f = Forwarder::new(&config(Mode::DsrL2), MAC, (n as usize * 2).max(4096));
        resolve_all(&mut f, Instant::ZERO);
        let (frames, eth) = new_flow_frames();
        let mut c = Churn {
            f,
            frames,
            eth,
            n: u64::from(n),
            k: 0,
        };
        // Three timeouts' worth first: the table reaches its steady state (n live, the expired
        // ones being swept and reused).
        for _ in 0..3 * u64::from(n) {
            c.single();
        }
        c
    }

    /// The time of flow `k`.
    #[inline(always)]
    fn time(&self, k: u64) -> Instant {
        Instant::from_millis(k * 60_000 / self.n)
    }

    /// Housekeeping due before flow `k`, as the kernel would do it.
    #[inline(always)]
    fn housekeeping(&mut self, k: u64) {
        let now = self.time(k);
        if k.is_multiple_of(Self::POLL_EVERY) {
            self.f.poll(now, &mut |_| {});
        }
        if now.millis() / 30_000 != self.time(k.saturating_sub(1)).millis() / 30_000 {
            resolve_all(&mut self.f, now);
        }
    }

    #[inline(always)]
    fn single(&mut self) -> Verdict {
        self.k += 1;
        let k = self.k;
        let now = self.time(k);
        self.housekeeping(k);
        let buf = aim_new(&mut self.frames[0], &self.eth, k);
        self.f.process(buf, HEAD, FRAME_LEN, now)
    }

    #[inline(always)]
    fn burst(&mut self, verdicts: &mut [Verdict; LANES]) {
        let first = self.k + 1;
        let now = self.time(first);
        for k in first..first + LANES as u64 {
            self.housekeeping(k);
        }
        let eth = self.eth;
        let mut lanes = self.frames.iter_mut();
        let mut frames: [RxFrame<'_>; LANES] = std::array::from_fn(|l| {
            let buf = lanes
                .next()
                .map(|lane| &mut aim_new(lane, &eth, first + l as u64)[..])
                .unwrap_or_default();
            RxFrame {
                buf,
                head: HEAD,
                len: FRAME_LEN,
            }
        });
        self.k += LANES as u64;
        self.f.process_burst(&mut frames, verdicts, now);
    }

    fn report(&self, what: &str, created_before: u64, evicted_before: u64) {
        let c = self.f.counters();
        println!(
            "{what}: table {} / {} entries, {} live-flow target, {} created, {} evictions, {} dropped, {} queued for ARP",
            self.f.flow_count(),
            self.f.flow_capacity(),
            self.n,
            c.flows_created - created_before,
            c.drop_count(forwarder::DropReason::FlowEvicted) - evicted_before,
            c.drops.iter().sum::<u64>() - c.drop_count(forwarder::DropReason::FlowEvicted),
            c.arp_queued,
        );
    }
}

/// New flows in a table of about `n` live flows (capacity 2n) under steady churn: the realistic
/// case of "a new flow with n flows in the table", next to the full, evicting table above.
fn new_flows_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_flow_churn_dsr-l2");
    for n in sizes() {
        let mut ch = Churn::new(n);
        let before = |ch: &Churn| {
            let c = ch.f.counters();
            (
                c.flows_created,
                c.drop_count(forwarder::DropReason::FlowEvicted),
            )
        };
        let (created, evicted) = before(&ch);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("maglev", n), |b| {
            b.iter(|| black_box(ch.single()))
        });
        ch.report(&format!("churn on {n} (single)"), created, evicted);
        let (created, evicted) = before(&ch);
        g.throughput(Throughput::Elements(LANES as u64));
        g.bench_function(BenchmarkId::new("maglev_burst32", n), |b| {
            let mut verdicts = [Verdict::Local; LANES];
            b.iter(|| {
                ch.burst(&mut verdicts);
                black_box(&verdicts);
            })
        });
        ch.report(&format!("churn on {n} (burst)"), created, evicted);
    }
    g.finish();
}

fn non_vip(c: &mut Criterion) {
    let (mut f, _) = populated(Mode::DsrL2, Family::V4, 1_000);
    let mut buf = frame(0, Ipv4Addr::new(10, 77, 0, 55), 80, 0x10);
    c.bench_function("non_vip_drop", |b| {
        b.iter(|| black_box(f.process(&mut buf, HEAD, FRAME_LEN, Instant::ZERO)))
    });
}

fn maglev_build(c: &mut Criterion) {
    let cands: Vec<Candidate> = (0..100)
        .map(|i| Candidate {
            slot: i,
            weight: 1 + i % 7,
            id: 0x0a00_0000 + i,
        })
        .collect();
    c.bench_function("maglev_build_100_backends", |b| {
        b.iter(|| black_box(maglev_table(&cands)))
    });
    // Equal weights: every turn's walk meets the other 99 backends' claims (the longest walks).
    let equal: Vec<Candidate> = cands
        .iter()
        .map(|c| Candidate { weight: 7, ..*c })
        .collect();
    assert_eq!(maglev_table(&equal).len(), forwarder::sched::MAGLEV_SIZE);
    c.bench_function("maglev_build_100_equal_backends", |b| {
        b.iter(|| black_box(maglev_table(&equal)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = established, new_flows, new_flows_churn, non_vip, maglev_build
}
criterion_main!(benches);
