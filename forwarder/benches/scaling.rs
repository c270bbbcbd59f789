//! Does the forwarder scale across cores when each core owns its own `Forwarder` (its own flow
//! table, as one poll loop per receive queue will)? The same fixed work, established-flow bursts
//! of 32, runs on one thread and then on two threads at once, each thread with its own
//! forwarder and frames, and the harness prints both rates and their ratio (2.0 is perfect).
//!
//! A plain harness rather than criterion: criterion times one closure on one thread, and what is
//! wanted here is the wall time of two threads that start together. Rounds alternate one and two
//! threads so that a change in the machine's load hits both; the median ratio is the figure.
//!
//! On a shared machine the wall-time ratio also measures how much of the second core the other
//! users left. So each thread's CPU time is measured too (`CLOCK_THREAD_CPUTIME_ID`), and the
//! harness prints the packets per CPU-second of the two threads against the one: 1.00 means the
//! threads do not slow each other down (no shared state, no fight over caches or memory), so the
//! wall-time ratio reaches the thread count wherever the cores are free.
//!
//! `SIDESTEP_BENCH_FLOWS` (comma-separated, default `1000,1000000`) sets the flows per forwarder;
//! `SIDESTEP_SCALING_ROUNDS` (default 7) the rounds; `SIDESTEP_SCALING_THREADS` (default 2) the
//! threads of the parallel run.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant as Clock};

use control::config::Mode;
use forwarder::{Forwarder, Instant, RxFrame, Verdict};

// Shared with the other bench, which uses the IPv6 half this one does not.
#[allow(dead_code)]
mod setup;
use setup::{config, frame, resolve_all, retarget_at, FRAME_LEN, HEAD, MAC, VIP};

const SRCS: usize = 64;
const LANES: usize = 32;
/// Bursts per thread per round: long enough (about 0.5 s at 1 k flows) that thread start and
/// the barrier do not count, short enough for several rounds.
const BURSTS: usize = 1 << 17;

/// One thread's state: its forwarder, its frames and its flow order.
struct Worker {
    f: Forwarder,
    frames: Vec<Vec<Vec<u8>>>,
    eth: [u8; 14],
    seq: Vec<u32>,
}

impl Worker {
    /// A forwarder with flows `0..n` established (each opened by a SYN) and ACK frames for them.
    /// `seed` varies the visiting order between workers.
    fn new(n: u32, seed: u64) -> Worker {
        let mut f = Forwarder::new(&config(Mode::DsrL2), MAC, (n as usize * 2).max(4096));
        resolve_all(&mut f, Instant::ZERO);
        let mut syns: Vec<Vec<u8>> = (0..SRCS).map(|s| frame(s, VIP, 80, 0x02)).collect();
        let mut eth = [0u8; 14];
        eth.copy_from_slice(&syns[0][HEAD..HEAD + 14]);
        for k in 0..n {
            let buf = &mut syns[(k >> 16) as usize % SRCS];
            retarget_at(buf, &eth, 34, k as u16, None);
            assert!(matches!(
                f.process(buf, HEAD, FRAME_LEN, Instant::ZERO),
                Verdict::Forward { .. }
            ));
        }
        assert_eq!(f.flow_count(), n as usize, "every flow has its entry");
        let frames = (0..LANES)
            .map(|_| (0..SRCS).map(|s| frame(s, VIP, 80, 0x10)).collect())
            .collect();
        let mut x = 0x2545_F491_4F6C_DD1Du64 ^ seed;
        let seq = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % u64::from(n)) as u32
            })
            .collect();
        Worker {
            f,
            frames,
            eth,
            seq,
        }
    }

    /// `BURSTS` bursts of 32 established-flow packets, as the established bench's burst32 form;
    /// the CPU time this thread spent on them.
    fn run(&mut self) -> Duration {
        let start = thread_cpu_time();
        let mut verdicts = [Verdict::Local; LANES];
        let mut i = 0;
        for _ in 0..BURSTS {
            let ks: [u32; LANES] =
                std::array::from_fn(|l| self.seq[(i + l) & (self.seq.len() - 1)]);
            i += LANES;
            for (l, &k) in ks.iter().enumerate() {
                let buf = &mut self.frames[l][(k >> 16) as usize % SRCS];
                retarget_at(buf, &self.eth, 34, k as u16, None);
            }
            let mut lanes = self.frames.iter_mut();
            let mut frames: [RxFrame<'_>; LANES] = std::array::from_fn(|l| RxFrame {
                buf: lanes
                    .next()
                    .map(|lane| &mut lane[(ks[l] >> 16) as usize % SRCS][..])
                    .unwrap_or_default(),
                head: HEAD,
                len: FRAME_LEN,
            });
            self.f
                .process_burst(&mut frames, &mut verdicts, Instant::ZERO);
            black_box(&verdicts);
        }
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, Verdict::Forward { .. })),
            "established flows are forwarded"
        );
        thread_cpu_time().saturating_sub(start)
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Run every worker on its own thread, all released at once: the wall time until the last ends,
/// and the CPU time all of them used.
fn parallel(workers: Vec<Worker>) -> (Duration, Duration, Vec<Worker>) {
    let start = Arc::new(Barrier::new(workers.len() + 1));
    let handles: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let cpu = w.run();
                (Clock::now(), cpu, w)
            })
        })
        .collect();
    start.wait();
    let t0 = Clock::now();
    let mut last = t0;
    let mut back = Vec::new();
    let mut cpu = Duration::ZERO;
    for h in handles {
        let (end, used, w) = h.join().expect("worker thread");
        last = last.max(end);
        cpu += used;
        back.push(w);
    }
    (last - t0, cpu, back)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter is not supported, the harness runs everything.
    let sizes: Vec<u32> = match std::env::var("SIDESTEP_BENCH_FLOWS") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        Err(_) => vec![1_000, 1_000_000],
    };
    let rounds: usize = env_or("SIDESTEP_SCALING_ROUNDS", 7);
    let threads: usize = env_or("SIDESTEP_SCALING_THREADS", 2);
    let packets = (BURSTS * LANES) as f64;
    print_load("at the start");
    for n in sizes {
        let mut workers: Vec<Worker> = (0..threads as u64).map(|t| Worker::new(n, t)).collect();
        // Warm-up: one run of each form, not counted.
        workers[0].run();
        let (_, _, w) = parallel(workers);
        workers = w;
        let mut ratios = Vec::new();
        let mut cpu_ratios = Vec::new();
        for round in 0..rounds {
            let t = Clock::now();
            let one_cpu = workers[0].run();
            let one = t.elapsed();
            let (many, many_cpu, w) = parallel(workers);
            workers = w;
            let rate1 = packets / one.as_secs_f64();
            let rate_n = threads as f64 * packets / many.as_secs_f64();
            // Packets per CPU-second: the work's own cost, whatever share of a core it got.
            let per_cpu1 = packets / one_cpu.as_secs_f64();
            let per_cpu_n = threads as f64 * packets / many_cpu.as_secs_f64();
            ratios.push(rate_n / rate1);
            cpu_ratios.push(per_cpu_n / per_cpu1);
            println!(
                "scaling {n} flows round {round}: 1 thread {:.2} Mpps ({:.1} ns/packet, {:.0} % of a core), \
                 {threads} threads {:.2} Mpps ({:.0} % of {threads} cores), ratio {:.2}, per CPU-second {:.2}",
                rate1 / 1e6,
                1e9 / rate1,
                100.0 * one_cpu.as_secs_f64() / one.as_secs_f64(),
                rate_n / 1e6,
                100.0 * many_cpu.as_secs_f64() / (threads as f64 * many.as_secs_f64()),
                rate_n / rate1,
                per_cpu_n / per_cpu1
            );
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let (m, lo, hi) = median(&mut ratios);
        let (c, clo, chi) = median(&mut cpu_ratios);
        println!(
            "scaling {n} flows: {threads} threads / 1 thread: median {m:.2} (min {lo:.2}, max {hi:.2}) by wall time, \
             {c:.2} (min {clo:.2}, max {chi:.2}) per CPU-second, {rounds} rounds"
        );
    }
    print_load("at the end");
}

fn print_load(when: &str) {
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average {when}: {}", l.trim());
    }
}
