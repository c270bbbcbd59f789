//! The virtio-drivers `Hal` for this kernel: DMA memory from the heap, device registers mapped
//! by `memory::map_mmio`.

use crate::memory;
use core::ptr::NonNull;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// The kernel's side of the virtio-drivers hardware abstraction.
pub struct KernelHal;

// Safety: `dma_alloc` returns zeroed, page-aligned, physically contiguous memory that nothing
// else uses until `dma_dealloc`; `mmio_phys_to_virt` maps exactly the requested device range;
// `share` returns the real physical address of the (heap or mapped) buffer.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match memory::alloc_dma(pages * 4096) {
            Some((phys, virt)) => (phys, virt),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // Safety: virtio-drivers passes back what `dma_alloc` gave it, once the device is done.
        unsafe { memory::free_dma(vaddr, pages * 4096) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        match memory::map_mmio(paddr, size) {
            Some(v) => v,
            None => panic!("cannot map device registers at {paddr:#x} ({size} bytes)"),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let virt = buffer.as_ptr() as *mut u8 as u64;
        memory::virt_to_phys(virt).unwrap_or(0)
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // Buffers are shared in place (no bounce buffers), so there is nothing to copy back.
    }
}
