//! The boot phases that are pure computation, timed on the host (issue 22): what the image's
//! `config` phase does (decode and validate the baked config blob) and its `forwarder tables`
//! phase does (build the forwarder: VIP index, schedulers with a Maglev table, and a flow table
//! of the size a 256 MiB guest gets), for the config of `qemu/demo.toml`. Under QEMU TCG the
//! same code runs tens of times slower, so these say what a boot costs on real hardware or KVM.
//!
//!     cargo run --release -p forwarder --example boot_phases
//!
//! Prints the median and the minimum of `SIDESTEP_BOOT_RUNS` (default 21) runs of each.
//!
//! Large zeroed allocations are fresh anonymous mappings here, zero pages the OS fills on first
//! touch, as the image's allocator gives them (std's `System` zeroes an allocation aligned
//! beyond 16 bytes, such as the flow table's buckets, with a memset).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use control::config::{Config, Mode, Scheduler, Vip, VipPort};
use forwarder::Forwarder;

/// Allocations of at least this size are mappings of their own.
const BIG: usize = 2 << 20;

fn map(len: usize) -> *mut u8 {
    // Safety: an anonymous private mapping at an address of the kernel's choosing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

fn is_big(layout: Layout) -> bool {
    layout.size() >= BIG && layout.align() <= 4096
}

struct ZeroPages;

// Safety: large blocks are whole page-aligned mappings (alignments up to a page), zero when
// fresh, freed by unmapping; everything else is `System`'s.
unsafe impl GlobalAlloc for ZeroPages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_big(layout) {
            return map(layout.size());
        }
        // Safety: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_big(layout) {
            return map(layout.size());
        }
        // Safety: the caller's contract is `System`'s.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_big(layout) {
            // Safety: the block is a whole mapping of this length.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // Safety: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: ZeroPages = ZeroPages;

/// Flows of the demo config in 256 MiB (the image's boot log: "1919808 flows capacity").
const DEMO_FLOWS: usize = 1_919_808;

/// `qemu/demo.toml` as a config.
fn demo() -> Config {
    let web = Vip::builder("web", Ipv4Addr::new(10, 77, 0, 100), VipPort::One(80))
        .backend("be1", Ipv4Addr::new(10, 77, 0, 21), 1)
        .backend("be2", Ipv4Addr::new(10, 77, 0, 22), 1)
        .build();
    let web_l3 = Vip::builder("web-l3", Ipv4Addr::new(10, 77, 0, 101), VipPort::One(80))
        .mode(Mode::DsrL3)
        .scheduler(Scheduler::Maglev)
        .backend("be3", Ipv4Addr::new(10, 88, 0, 31), 1)
        .build();
    Config::builder().vip(web).vip(web_l3).build()
}

/// Median and minimum of `runs` timings of `f`.
fn time(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    (t[runs / 2], t[0])
}

fn main() {
    let runs: usize = std::env::var("SIDESTEP_BOOT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21)
        .max(1);
    let config = demo();
    let blob = config.to_blob();
    let (med, min) = time(runs, || {
        black_box(Config::from_blob(black_box(&blob)).expect("the demo config is valid"));
    });
    println!(
        "config: decode and validate the blob ({} bytes): median {:.1} us, min {:.1} us",
        blob.len(),
        med.as_secs_f64() * 1e6,
        min.as_secs_f64() * 1e6
    );
    for flows in [65_536, DEMO_FLOWS] {
        let (med, min) = time(runs, || {
            black_box(Forwarder::with_seed(&config, [2, 0, 0, 0, 0, 1], flows, 7));
        });
        println!(
            "forwarder tables: Forwarder::with_seed, {flows} flows: median {:.1} us, min {:.1} us",
            med.as_secs_f64() * 1e6,
            min.as_secs_f64() * 1e6
        );
    }
}
