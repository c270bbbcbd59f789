//! A flow table is valid before any of it was written (issue 22): the image gives large zeroed
//! allocations as pages zeroed on first touch, so building a table must not fill it, and
//! looking up, sweeping and building a forwarder around it must not write it either.
//!
//! Here every large zeroed allocation is a fresh anonymous mapping that is read-only: zero, as
//! the kernel's pages are, and any write to it kills the test with SIGSEGV. Only after the reads
//! is it made writable, and then the same table takes flows.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use control::config::{Config, Vip, VipPort};
use forwarder::flow::{Displaced, FlowKey, FlowTable, WAYS};
use forwarder::{Forwarder, Instant};

/// Allocations of at least this many bytes are mappings of their own.
const BIG: usize = 1 << 20;

/// The read-only mappings made so far: (address, length); 0 marks a free record.
static READ_ONLY: [(AtomicUsize, AtomicUsize); 8] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 8];

struct ZeroPages;

fn map(len: usize, prot: libc::c_int) -> *mut u8 {
    // Safety: an anonymous private mapping at an address of the kernel's choosing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
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

// Safety: large blocks are whole mappings (page-aligned, which covers every alignment up to a
// page; larger ones go to `System`), freed by unmapping; everything else is `System`'s.
unsafe impl GlobalAlloc for ZeroPages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= BIG && layout.align() <= 4096 {
            return map(layout.size(), libc::PROT_READ | libc::PROT_WRITE);
        }
        // Safety: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= BIG && layout.align() <= 4096 {
            let p = map(layout.size(), libc::PROT_READ);
            for (addr, len) in &READ_ONLY {
                if addr
                    .compare_exchange(0, p as usize, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    len.store(layout.size(), Ordering::SeqCst);
                    return p;
                }
            }
            return p;
        }
        // Safety: the caller's contract is `System`'s.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= BIG && layout.align() <= 4096 {
            for (addr, _) in &READ_ONLY {
                let _ = addr.compare_exchange(ptr as usize, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
            // Safety: the block is a whole mapping of this length (see `alloc`).
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // Safety: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: ZeroPages = ZeroPages;

/// Make every read-only mapping writable (what a first touch does in the image).
fn touch_allowed() {
    for (addr, len) in &READ_ONLY {
        let (a, l) = (addr.load(Ordering::SeqCst), len.load(Ordering::SeqCst));
        if a != 0 {
            // Safety: `a..a + l` is a live mapping made by `alloc_zeroed`.
            let r = unsafe {
                libc::mprotect(
                    a as *mut libc::c_void,
                    l,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            assert_eq!(r, 0, "mprotect");
        }
    }
}

fn mapped_read_only() -> usize {
    READ_ONLY
        .iter()
        .filter(|(a, _)| a.load(Ordering::SeqCst) != 0)
        .map(|(_, l)| l.load(Ordering::SeqCst))
        .sum()
}

// One test only: the mappings are process-wide.
#[test]
fn a_table_is_looked_up_swept_and_built_into_a_forwarder_before_it_is_ever_written() {
    const CAPACITY: usize = 1 << 20;
    let mut t = FlowTable::new(CAPACITY, 7);
    assert!(
        mapped_read_only() >= CAPACITY * 32,
        "the buckets did not come from one zeroed allocation"
    );
    assert_eq!(t.capacity(), CAPACITY);
    assert!(t.is_empty());
    let keys: Vec<FlowKey> = (0..10_000u32)
        .map(|i| FlowKey::five_tuple(0x0a00_0000 | i, 0x0a4d_0064, 40_000 + i as u16, 80, 6))
        .collect();
    for &k in &keys {
        assert_eq!(t.find(t.hash(k), k), None);
        t.prefetch_both(t.hash(k));
    }
    let mut freed = 0;
    t.sweep(CAPACITY / WAYS, u32::MAX, |_| freed += 1);
    t.for_each(|_| freed += 1);
    assert_eq!(freed, 0);

    // A forwarder around a table as large, polled (its sweep reads the table) over ten seconds.
    let vip = Vip::builder("web", Ipv4Addr::new(10, 77, 0, 100), VipPort::One(80))
        .backend("be1", Ipv4Addr::new(10, 77, 0, 21), 1)
        .build();
    let config = Config::builder().vip(vip).build();
    let mut f = Forwarder::new(&config, [2, 0, 0, 0, 0, 1], CAPACITY);
    for s in 0..=10 {
        f.poll(Instant::from_millis(s * 1000), &mut |_| {});
    }
    assert_eq!(f.flow_capacity(), CAPACITY);

    touch_allowed();
    for (i, &k) in keys.iter().enumerate() {
        let h = t.hash(k);
        let (slot, displaced) = t.insert(h, k, 5);
        assert_eq!(displaced, Displaced::Nothing);
        t.entry_mut(slot).backend = i as u32;
    }
    assert_eq!(t.len(), keys.len());
    for (i, &k) in keys.iter().enumerate() {
        let slot = t.find(t.hash(k), k).expect("inserted");
        assert_eq!(t.entry(slot).backend, i as u32);
    }
}
