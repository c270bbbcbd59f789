//! Memory: the heap, physical addresses for DMA, and mappings for device registers.
//!
//! The bootloader maps all physical memory at one offset. The heap is the largest usable region
//! of the memory map, reached through that mapping, so every heap address has a physical address
//! at a fixed distance: DMA buffers (rings, the packet pool) are plain heap allocations, and
//! physically contiguous because the region is. Device registers (PCI BARs) can lie beyond the
//! mapped RAM, so they get their own uncached mappings in an unused top-level page-table slot.

use alloc::alloc::{alloc_zeroed, Layout};
use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use linked_list_allocator::LockedHeap;
use spin::Mutex;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
    Translate,
};
use x86_64::{PhysAddr, VirtAddr};

#[global_allocator]
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
    let layout = Layout::from_size_align(bytes.max(1), 4096).ok()?;
    // Safety: the layout has a non-zero size.
    let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
    let phys = virt_to_phys(ptr.as_ptr() as u64)?;
    Some((phys, ptr))
}

/// Free memory from `alloc_dma`.
///
/// # Safety
/// `ptr` and `bytes` must come from one `alloc_dma` call, and the device must no longer use it.
pub unsafe fn free_dma(ptr: NonNull<u8>, bytes: usize) {
    if let Ok(layout) = Layout::from_size_align(bytes.max(1), 4096) {
        // Safety: per this function's contract.
        unsafe { alloc::alloc::dealloc(ptr.as_ptr(), layout) }
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
