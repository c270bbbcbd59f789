//! Memory: the heap, physical addresses for DMA, and mappings for device registers.
//!
//! The bootloader maps all physical memory at one offset. The heap is the largest usable region
//! of the memory map, reached through that mapping, so every heap address has a physical address
//! at a fixed distance: DMA buffers (rings, the packet pool) are plain heap allocations, and
//! physically contiguous because the region is. Device registers (PCI BARs) can lie beyond the
//! mapped RAM, so they get their own uncached mappings in an unused top-level page-table slot.
//!
//! Large zeroed allocations (the flow tables: tens of MiB sized from the memory) are zeroed on
//! first touch rather than at boot, as an OS gives fresh pages: their RAM is taken from the heap
//! at once (so the sizing from free memory holds) but reached through a second mapping in
//! another top-level slot whose 2 MiB pages start absent; the first access to one faults, and
//! [`page_fault`] zeroes that page's RAM and maps it. Boot then writes none of it, hot paths keep
//! 2 MiB pages, and a first touch costs one 2 MiB zeroing (what boot paid for every page).

use alloc::alloc::{GlobalAlloc, Layout};
use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use linked_list_allocator::LockedHeap;
use spin::Mutex;
use x86_64::registers::control::{Cr2, Cr3};
use x86_64::structures::idt::{InterruptStackFrame, PageFaultErrorCode};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
    Translate,
};
use x86_64::{PhysAddr, VirtAddr};

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// The heap proper: every allocation's RAM comes from here.
static HEAP: LockedHeap = LockedHeap::empty();

static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);
static HEAP_START: AtomicU64 = AtomicU64::new(0);
static HEAP_END: AtomicU64 = AtomicU64::new(0);

struct Mmio {
    mapper: OffsetPageTable<'static>,
    /// Next free virtual address for device mappings.
    next: u64,
    /// End of the page-table slot reserved for them.
    end: u64,
}

static MMIO: Mutex<Option<Mmio>> = Mutex::new(None);

/// What `init` set up, for the boot log.
pub struct MemoryInfo {
    /// Usable RAM in the memory map, bytes.
    pub usable: u64,
    /// Heap size, bytes.
    pub heap: u64,
    /// Physical start of the heap.
    pub heap_phys: u64,
}

/// Errors that stop the image from starting.
#[derive(Debug)]
pub enum MemoryError {
    /// The bootloader did not map physical memory (the kernel's boot config asks it to).
    PhysicalMemoryUnmapped,
    /// No usable region in the memory map.
    UsableMemoryMissing,
    /// No free top-level page-table slot for device mappings.
    VirtualSpaceExhausted,
}

/// Build the heap on the largest usable region and prepare device mappings.
pub fn init(
    physical_memory_offset: Option<u64>,
    regions: &MemoryRegions,
) -> Result<MemoryInfo, MemoryError> {
    let offset = physical_memory_offset.ok_or(MemoryError::PhysicalMemoryUnmapped)?;
    PHYS_OFFSET.store(offset, Ordering::Relaxed);
    let usable = regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .map(|r| r.end - r.start)
        .sum();
    let largest = regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .max_by_key(|r| r.end - r.start)
        .ok_or(MemoryError::UsableMemoryMissing)?;
    let start = offset + largest.start;
    let size = largest.end - largest.start;
    // Safety: the region is usable RAM according to the bootloader's memory map, nothing else
    // uses it, and it is mapped read-write at `offset`; it is handed to the allocator once.
    unsafe { HEAP.lock().init(start as *mut u8, size as usize) };
    HEAP_START.store(start, Ordering::Relaxed);
    HEAP_END.store(start + size, Ordering::Relaxed);

    let (level_4_frame, _) = Cr3::read();
    let table_virt = offset + level_4_frame.start_address().as_u64();
    // Safety: CR3 holds the active level-4 table, which lies in RAM mapped at `offset`; this is
    // the only reference made to it, kept behind the MMIO mutex.
    let table: &'static mut PageTable = unsafe { &mut *(table_virt as *mut PageTable) };
    // Without a free slot for it, large zeroed allocations are zeroed at once (slower boot).
    if let Some(slot) = (256..512).find(|&i| table[i].is_unused()) {
        if let Some((pdpt_phys, pdpt)) = alloc_dma(4096) {
            table[slot].set_addr(
                PhysAddr::new(pdpt_phys),
                PageTableFlags::PRESENT | PageTableFlags::WRITABLE,
            );
            LAZY_PDPT.store(pdpt.as_ptr() as u64, Ordering::Relaxed);
            LAZY_BASE.store(
                0xffff_0000_0000_0000u64 | ((slot as u64) << 39),
                Ordering::Relaxed,
            );
        }
    }
    // A free upper-half slot (index 256..512) gives 512 GiB of virtual space for devices.
    let slot = (256..512)
        .find(|&i| table[i].is_unused())
        .ok_or(MemoryError::VirtualSpaceExhausted)?;
    let base = 0xffff_0000_0000_0000u64 | ((slot as u64) << 39);
    // Safety: the complete physical memory is mapped at `offset`, as `OffsetPageTable` requires.
    let mapper = unsafe { OffsetPageTable::new(table, VirtAddr::new(offset)) };
    *MMIO.lock() = Some(Mmio {
        mapper,
        next: base,
        end: base + (1 << 39),
    });
    Ok(MemoryInfo {
        usable,
        heap: size,
        heap_phys: largest.start,
    })
}

/// Where the bootloader mapped physical address 0 (all RAM lies at this offset).
pub fn physical_offset() -> u64 {
    PHYS_OFFSET.load(Ordering::Relaxed)
}

/// Map the 4 KiB page at physical `phys` at the same virtual address, writable and executable:
/// an application processor switches paging on while it runs from its start-up page (see
/// `smp`). Already identity-mapped is fine; a page used for something else is an error.
pub fn identity_map(phys: u64) -> Result<(), &'static str> {
    let mut guard = MMIO.lock();
    let mmio = guard.as_mut().ok_or("memory is not set up")?;
    let virt = VirtAddr::new(phys);
    match mmio.mapper.translate_addr(virt) {
        Some(p) if p.as_u64() == phys => return Ok(()),
        Some(_) => return Err("the trampoline's virtual page is mapped to other memory"),
        None => {}
    }
    let page = Page::<Size4KiB>::containing_address(virt);
    let frame = PhysFrame::containing_address(PhysAddr::new(phys));
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    // Safety: the virtual page was unmapped (checked above), so no reference into it exists;
    // the frame is RAM below 1 MiB that the bootloader leaves free and the heap does not hold.
    unsafe { mmio.mapper.map_to(page, frame, flags, &mut HeapFrames) }
        .map_err(|_| "cannot identity-map the trampoline page")?
        .flush();
    Ok(())
}

/// Bytes of heap free now.
pub fn heap_free() -> u64 {
    HEAP.lock().free() as u64
}

/// The physical address of a kernel virtual address (heap fast path; page walk otherwise).
pub fn virt_to_phys(virt: u64) -> Option<u64> {
    if (HEAP_START.load(Ordering::Relaxed)..HEAP_END.load(Ordering::Relaxed)).contains(&virt) {
        return Some(virt - PHYS_OFFSET.load(Ordering::Relaxed));
    }
    let guard = MMIO.lock();
    let mmio = guard.as_ref()?;
    mmio.mapper
        .translate_addr(VirtAddr::new(virt))
        .map(|p| p.as_u64())
}

/// Zeroed, page-aligned, physically contiguous memory from the heap: (physical, virtual).
pub fn alloc_dma(bytes: usize) -> Option<(u64, NonNull<u8>)> {
    let (phys, ptr) = alloc_dma_unzeroed(bytes)?;
    // Safety: `ptr` starts `bytes` of memory just allocated for the caller and used by nothing.
    unsafe { ptr.as_ptr().write_bytes(0, bytes) };
    Some((phys, ptr))
}

/// As [`alloc_dma`] but not zeroed: for packet buffers, which the NIC or the forwarder write
/// before anything reads them (zeroing 8 MiB took 24 ms of boot under TCG).
pub fn alloc_dma_unzeroed(bytes: usize) -> Option<(u64, NonNull<u8>)> {
    let layout = Layout::from_size_align(bytes.max(1), 4096).ok()?;
    // Always the heap proper, never the zero-on-touch mapping: a device needs the RAM's
    // physical address at a fixed distance from the virtual one.
    // Safety: the layout has a non-zero size.
    let ptr = NonNull::new(unsafe { HEAP.alloc(layout) })?;
    let phys = virt_to_phys(ptr.as_ptr() as u64)?;
    Some((phys, ptr))
}

/// Free memory from `alloc_dma`.
///
/// # Safety
/// `ptr` and `bytes` must come from one `alloc_dma` call, and the device must no longer use it.
pub unsafe fn free_dma(ptr: NonNull<u8>, bytes: usize) {
    if let Ok(layout) = Layout::from_size_align(bytes.max(1), 4096) {
        // Safety: per this function's contract, `ptr` came from `HEAP` with this layout.
        unsafe { HEAP.dealloc(ptr.as_ptr(), layout) }
    }
}

/// Page-table frames come from the heap (which is physical RAM at a known offset).
struct HeapFrames;

// Safety: every frame returned is a fresh, zeroed, 4 KiB-aligned heap allocation that is never
// freed, so it is unused by anything else.
unsafe impl FrameAllocator<Size4KiB> for HeapFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let (phys, _) = alloc_dma(4096)?;
        Some(PhysFrame::containing_address(PhysAddr::new(phys)))
    }
}

/// Map `size` bytes of device registers at physical `phys` uncached; returns the virtual
/// address of `phys` itself (its offset within the page kept).
pub fn map_mmio(phys: u64, size: usize) -> Option<NonNull<u8>> {
    let mut guard = MMIO.lock();
    let mmio = guard.as_mut()?;
    let first = phys & !0xfff;
    let last = (phys + size.max(1) as u64 - 1) & !0xfff;
    let pages = (last - first) / 4096 + 1;
    let virt_base = mmio.next;
    if virt_base + pages * 4096 > mmio.end {
        return None;
    }
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH;
    for i in 0..pages {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt_base + i * 4096));
        let frame = PhysFrame::containing_address(PhysAddr::new(first + i * 4096));
        // Safety: the virtual page lies in a top-level slot that was empty and is used only by
        // this bump allocator, so it aliases nothing; the frame is device memory the caller
        // (a driver with the BAR address from PCI) owns.
        unsafe { mmio.mapper.map_to(page, frame, flags, &mut HeapFrames) }
            .ok()?
            .flush();
    }
    mmio.next = virt_base + pages * 4096;
    NonNull::new((virt_base + (phys - first)) as *mut u8)
}

/// Flush the TLB by reloading CR3 with its own value (see `net::TLB_FLUSH_MS` for why).
pub fn flush_tlb() {
    let (frame, flags) = Cr3::read();
    // Safety: the same top-level page table and flags as now: no mapping changes.
    unsafe { Cr3::write(frame, flags) };
}

/// Zeroed allocations of at least this many bytes are zeroed on first touch.
const LAZY_MIN: usize = 2 << 20;
/// The page size of the zero-on-touch mapping.
const LAZY_PAGE: u64 = 2 << 20;
/// Address space per zero-on-touch allocation (64 page directories of the slot's 512).
const LAZY_SPAN: u64 = 64 << 30;
/// Zero-on-touch allocations at one time (the slot's 512 GiB in spans).
const LAZY_REGIONS: usize = 8;

/// The zero-on-touch slot's virtual base (0: none) and its page-directory-pointer table.
static LAZY_BASE: AtomicU64 = AtomicU64::new(0);
static LAZY_PDPT: AtomicU64 = AtomicU64::new(0);

/// One zero-on-touch allocation; `backing` 0 marks a free one. The fault handler reads these
/// without a lock: they are written before the allocation is handed out.
struct LazyRegion {
    /// Physical address of its RAM (2 MiB-aligned, from the heap).
    backing: AtomicU64,
    /// Bytes, a multiple of [`LAZY_PAGE`].
    len: AtomicU64,
    /// Virtual address of its page directories, one per GiB, contiguous.
    directories: AtomicU64,
}

static LAZY: [LazyRegion; LAZY_REGIONS] = [const {
    LazyRegion {
        backing: AtomicU64::new(0),
        len: AtomicU64::new(0),
        directories: AtomicU64::new(0),
    }
}; LAZY_REGIONS];

/// Serialises allocating and freeing zero-on-touch regions (never taken by the fault handler).
static LAZY_LOCK: Mutex<()> = Mutex::new(());

/// The global allocator: the heap, with large zeroed allocations zeroed on first touch.
struct Allocator;

// Safety: every allocation is a block of `HEAP` (a correct allocator) or a zero-on-touch
// region whose RAM is such a block, used by nothing else until it is freed.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Safety: the caller's contract is `HEAP`'s.
        unsafe { HEAP.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LAZY_MIN {
            if let Some(ptr) = lazy_alloc(layout) {
                return ptr;
            }
        }
        // Safety: the caller's contract is `HEAP`'s; the block has `layout.size()` bytes.
        unsafe {
            let ptr = HEAP.alloc(layout);
            if !ptr.is_null() {
                ptr.write_bytes(0, layout.size());
            }
            ptr
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !lazy_free(ptr) {
            // Safety: not a zero-on-touch region, so `ptr` came from `HEAP` with `layout`.
            unsafe { HEAP.dealloc(ptr, layout) }
        }
    }
}

/// A zero-on-touch region of `layout`'s size: RAM from the heap behind absent 2 MiB pages.
fn lazy_alloc(layout: Layout) -> Option<*mut u8> {
    let base = LAZY_BASE.load(Ordering::Relaxed);
    let len = (layout.size() as u64).div_ceil(LAZY_PAGE) * LAZY_PAGE;
    if base == 0 || layout.align() as u64 > LAZY_PAGE || len > LAZY_SPAN {
        return None;
    }
    let _guard = LAZY_LOCK.lock();
    let k = LAZY
        .iter()
        .position(|r| r.backing.load(Ordering::Relaxed) == 0)?;
    let ram_layout = Layout::from_size_align(len as usize, LAZY_PAGE as usize).ok()?;
    // Safety: a non-zero size.
    let ram = unsafe { HEAP.alloc(ram_layout) };
    if ram.is_null() {
        return None;
    }
    let gibs = len.div_ceil(1 << 30);
    let Some((dir_phys, dirs)) = alloc_dma(gibs as usize * 4096) else {
        // Safety: allocated just above with this layout and not handed out.
        unsafe { HEAP.dealloc(ram, ram_layout) };
        return None;
    };
    let pdpt = LAZY_PDPT.load(Ordering::Relaxed) as *mut u64;
    for g in 0..gibs {
        let entry = (k as u64) * (LAZY_SPAN >> 30) + g;
        let flags = (PageTableFlags::PRESENT | PageTableFlags::WRITABLE).bits();
        // Safety: `pdpt` is this slot's page-directory-pointer table (4 KiB, ours alone) and
        // `entry` < 512 (region k's span is entries k*64 .. k*64+64, and `gibs` <= 64).
        unsafe {
            pdpt.add(entry as usize)
                .write_volatile((dir_phys + g * 4096) | flags)
        };
    }
    let region = &LAZY[k];
    region
        .directories
        .store(dirs.as_ptr() as u64, Ordering::Relaxed);
    region.len.store(len, Ordering::Relaxed);
    region.backing.store(
        ram as u64 - PHYS_OFFSET.load(Ordering::Relaxed),
        Ordering::Release,
    );
    Some((base + k as u64 * LAZY_SPAN) as *mut u8)
}

/// If `ptr` is a zero-on-touch region, unmap and free it and say so.
fn lazy_free(ptr: *mut u8) -> bool {
    let base = LAZY_BASE.load(Ordering::Relaxed);
    let addr = ptr as u64;
    if base == 0 || !(base..base + LAZY_SPAN * LAZY_REGIONS as u64).contains(&addr) {
        return false;
    }
    let _guard = LAZY_LOCK.lock();
    let k = ((addr - base) / LAZY_SPAN) as usize;
    let region = &LAZY[k];
    let len = region.len.load(Ordering::Relaxed);
    let gibs = len.div_ceil(1 << 30);
    let pdpt = LAZY_PDPT.load(Ordering::Relaxed) as *mut u64;
    for g in 0..gibs {
        // Safety: as in `lazy_alloc`, which wrote these entries.
        unsafe {
            pdpt.add((k as u64 * (LAZY_SPAN >> 30) + g) as usize)
                .write_volatile(0)
        };
    }
    flush_tlb();
    let offset = PHYS_OFFSET.load(Ordering::Relaxed);
    let ram = region.backing.swap(0, Ordering::Relaxed) + offset;
    let dirs = region.directories.load(Ordering::Relaxed);
    // Safety: both blocks came from `HEAP` in `lazy_alloc` with these layouts, and after the
    // flush nothing maps the RAM any more.
    unsafe {
        HEAP.dealloc(
            ram as *mut u8,
            Layout::from_size_align_unchecked(len as usize, LAZY_PAGE as usize),
        );
        HEAP.dealloc(
            dirs as *mut u8,
            Layout::from_size_align_unchecked(gibs as usize * 4096, 4096),
        );
    }
    true
}

/// Page faults: a first touch of a zero-on-touch page zeroes its RAM and maps it (and the
/// access is retried); any other fault is a bug, and panics with the address.
pub extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let addr = Cr2::read_raw();
    let base = LAZY_BASE.load(Ordering::Relaxed);
    if base != 0 && addr >= base {
        let k = ((addr - base) / LAZY_SPAN) as usize;
        let offset = (addr - base) % LAZY_SPAN;
        if let Some(region) = LAZY.get(k) {
            let backing = region.backing.load(Ordering::Acquire);
            if backing != 0 && offset < region.len.load(Ordering::Relaxed) {
                let page = offset / LAZY_PAGE;
                let ram = backing + page * LAZY_PAGE;
                let entry = region.directories.load(Ordering::Relaxed) as *mut u64;
                let flags = (PageTableFlags::PRESENT
                    | PageTableFlags::WRITABLE
                    | PageTableFlags::HUGE_PAGE)
                    .bits();
                // Safety: `ram` is one 2 MiB page of the region's own RAM (a heap block no one
                // else uses), reached through the physical-memory mapping; `entry + page` is
                // its page-directory entry, inside the region's directories (`offset` < len).
                // The entry was absent, so no stale translation needs flushing.
                unsafe {
                    let virt = (ram + PHYS_OFFSET.load(Ordering::Relaxed)) as *mut u8;
                    virt.write_bytes(0, LAZY_PAGE as usize);
                    entry.add(page as usize).write_volatile(ram | flags);
                }
                return;
            }
        }
    }
    panic!(
        "page fault at {addr:#x} ({code:?}) by the instruction at {:#x}",
        frame.instruction_pointer.as_u64()
    );
}
