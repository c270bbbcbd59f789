//! A split virtqueue (virtio 1.0 section 2.4) specialised for packet buffers: every chain is one
//! descriptor pointing into the packet pool, buffers are added in bursts and published with a
//! single index store, and the notify decision honours `VIRTIO_F_EVENT_IDX` with wrapping
//! arithmetic.
//!
//! Why not `virtio_drivers::queue::VirtQueue` (0.13)? Three things it does per packet, or wrongly,
//! on a fast path:
//! - `add` calls `Hal::share` for every buffer, and `pop_used` calls `Hal::unshare` and needs the
//!   original slices back; our buffers already have physical addresses (see [`crate::pool`]).
//! - `add` publishes `avail.idx` per buffer (a store and full fence each time).
//! - `should_notify` with EVENT_IDX compares `avail_idx >= avail_event + 1` without wrapping: after
//!   65536 buffers it stops notifying and the device can stall waiting for a kick. Linux's
//!   `vring_need_event` (implemented here as [`need_event`]) is the correct test.
//!
//! So the queue memory is laid out here; the transport (`PciTransport`) is still virtio-drivers'.

use core::marker::PhantomData;
use core::ops::Range;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU16, Ordering};

use virtio_drivers::transport::Transport;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE};

use crate::pool::{PacketBuf, PacketPool, BUF_SIZE};

/// The largest queue this driver sets up (QEMU's default for virtio-net is 256).
pub(crate) const MAX_QUEUE_SIZE: usize = 256;

/// Descriptor flags: the chain continues at `next`; the device writes this buffer (2.4.5).
const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
/// `SplitQueue::chained` entry of a descriptor that ends its chain.
const NO_NEXT: u16 = u16::MAX;
/// Available ring flag: the driver does not want interrupts (2.4.7).
const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring flag: the device does not need notifications (2.4.8).
const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// Whether a driver that moved the available index from `old` to `new` must notify a device that
/// asked to be notified once the index passes `event` (virtio 1.0 2.4.7.2; Linux's
/// `vring_need_event`). All arithmetic wraps at 2^16: true exactly when `event` lies in
/// `old..new` taken modulo 2^16.
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Why a queue could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The device has no such queue (size 0) or it is already enabled.
    Unavailable,
    /// `Hal::dma_alloc` returned physical address 0.
    DmaAlloc,
}

/// Why [`SplitQueue::push`] gave a buffer back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every descriptor is in use.
    Full(PacketBuf),
    /// The span to describe does not lie inside the buffer.
    OutOfBounds(PacketBuf),
}

/// One descriptor of the table (2.4.5).
#[repr(C)]
struct Descriptor {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// A split virtqueue whose chains are single pool buffers.
pub(crate) struct SplitQueue<H: Hal> {
    /// Queue number on the device.
    index: u16,
    size: u16,
    /// The DMA allocation holding all three parts, for `dma_dealloc`.
    mem: NonNull<u8>,
    mem_phys: u64,
    pages: usize,
    /// Descriptor table (16 * size bytes).
    desc: NonNull<Descriptor>,
    /// Available ring: flags, idx, ring[size], used_event (all u16).
    avail: NonNull<u16>,
    /// Used ring: flags (u16), idx (u16), ring[size] of (id u32, len u32), avail_event (u16).
    used: NonNull<u8>,
    /// Next available index we will publish (our trusted copy; the device never writes it).
    avail_idx: u16,
    /// The available index as of the last notify decision (Linux: `avail_idx - num_added`).
    kicked_idx: u16,
    /// Next used ring entry to read.
    last_used: u16,
    event_idx: bool,
    /// Which buffer each descriptor holds while the device owns it.
    owner: [Option<PacketBuf>; MAX_QUEUE_SIZE],
    /// The second descriptor of a two-descriptor chain, by head id (control commands only).
    chained: [u16; MAX_QUEUE_SIZE],
    /// Stack of free descriptor ids.
    free_desc: [u16; MAX_QUEUE_SIZE],
    free_len: u16,
    /// Used entries the device returned that named no descriptor we gave it.
    bogus: u64,
    _hal: PhantomData<H>,
}

// Safety: the queue owns its DMA allocation outright (the raw pointers are into memory no other
// driver object refers to), and every access through them takes `&mut self` or is atomic, so
// moving it to another CPU moves sole access with it. The device is the only other party.
unsafe impl<H: Hal> Send for SplitQueue<H> {}

impl<H: Hal> SplitQueue<H> {
    /// Allocate queue `index`, tell the device where it is (4.1.5.1.3) and enable it.
    pub(crate) fn new<T: Transport>(
        transport: &mut T,
        index: u16,
        event_idx: bool,
    ) -> Result<Self, QueueError> {
        if transport.queue_used(index) {
            return Err(QueueError::Unavailable);
        }
        let max = transport.max_queue_size(index) as usize;
        if max == 0 {
            return Err(QueueError::Unavailable);
        }
        // The largest power of two that the device and we both allow.
        let size = if max >= MAX_QUEUE_SIZE {
            MAX_QUEUE_SIZE
        } else {
            1 << max.ilog2()
        };
        let (avail_off, used_off, total) = layout(size);
        let pages = total.div_ceil(PAGE_SIZE);
        let (mem_phys, mem) = H::dma_alloc(pages, BufferDirection::Both);
        if mem_phys == 0 {
            return Err(QueueError::DmaAlloc);
        }
        let mut queue = SplitQueue {
            index,
            size: size as u16,
            mem,
            mem_phys,
            pages,
            desc: mem.cast(),
            // Safety: both offsets are inside the `total` bytes just allocated (see `layout`).
            avail: unsafe { mem.add(avail_off) }.cast(),
            // Safety: as above.
            used: unsafe { mem.add(used_off) },
            avail_idx: 0,
            kicked_idx: 0,
            last_used: 0,
            event_idx,
            owner: [const { None }; MAX_QUEUE_SIZE],
            chained: [NO_NEXT; MAX_QUEUE_SIZE],
            free_desc: [0; MAX_QUEUE_SIZE],
            free_len: 0,
            bogus: 0,
            _hal: PhantomData,
        };
        for id in (0..size as u16).rev() {
            queue.free_desc[usize::from(queue.free_len)] = id;
            queue.free_len += 1;
        }
        // We poll and never want interrupts. Without EVENT_IDX the flag says so; with it the
        // device ignores the flag and interrupts when the used index passes `used_event`, which
        // stays 0 (at most once per 65536 buffers), as Linux does when it disables callbacks.
        // Safety: `avail` points at the available ring's flags, inside our allocation; the device
        // only reads it.
        unsafe { queue.avail.write_volatile(VIRTQ_AVAIL_F_NO_INTERRUPT) };
        transport.queue_set(
            index,
            size as u32,
            mem_phys,
            mem_phys + avail_off as u64,
            mem_phys + used_off as u64,
        );
        Ok(queue)
    }

    /// Queue number on the device.
    pub(crate) fn index(&self) -> u16 {
        self.index
    }

    /// Number of descriptors.
    pub(crate) fn size(&self) -> usize {
        usize::from(self.size)
    }

    /// Descriptors not owned by the device.
    pub(crate) fn free_descriptors(&self) -> usize {
        usize::from(self.free_len)
    }

    /// Used entries the device returned that named no buffer of ours.
    pub(crate) fn bogus_completions(&self) -> u64 {
        self.bogus
    }

    /// Put `buf` on the available ring, described as its bytes `offset..offset + len`. Not
    /// visible to the device until [`Self::publish`]. Gives the buffer back, describing nothing,
    /// if no descriptor is free or the span does not lie inside the buffer: the queue computes
    /// every address it hands the device from a buffer it then holds.
    pub(crate) fn push(
        &mut self,
        pool: &PacketPool,
        buf: PacketBuf,
        offset: usize,
        len: usize,
        device_writes: bool,
    ) -> Result<(), Refused> {
        if !offset.checked_add(len).is_some_and(|end| end <= BUF_SIZE) {
            return Err(Refused::OutOfBounds(buf));
        }
        if self.free_len == 0 {
            return Err(Refused::Full(buf));
        }
        let flags = if device_writes { VIRTQ_DESC_F_WRITE } else { 0 };
        let id = self.take_descriptor(pool.phys_addr(&buf) + offset as u64, len, flags, NO_NEXT);
        self.make_available(id, buf);
        Ok(())
    }

    /// Put `buf` on the available ring as a chain of two descriptors: its bytes `out` for the
    /// device to read, then its bytes `into` for the device to write (a control command and its
    /// ack, 5.1.6.5). Same contract as [`Self::push`].
    pub(crate) fn push_out_in(
        &mut self,
        pool: &PacketPool,
        buf: PacketBuf,
        out: Range<usize>,
        into: Range<usize>,
    ) -> Result<(), Refused> {
        let inside = |r: &Range<usize>| r.start < r.end && r.end <= BUF_SIZE;
        if !inside(&out) || !inside(&into) {
            return Err(Refused::OutOfBounds(buf));
        }
        if self.free_len < 2 {
            return Err(Refused::Full(buf));
        }
        let base = pool.phys_addr(&buf);
        let tail = self.take_descriptor(
            base + into.start as u64,
            into.len(),
            VIRTQ_DESC_F_WRITE,
            NO_NEXT,
        );
        let head = self.take_descriptor(base + out.start as u64, out.len(), 0, tail);
        self.chained[usize::from(head)] = tail;
        self.make_available(head, buf);
        Ok(())
    }

    /// Fill a free descriptor (there must be one) and return its id; `next` is the chain's next
    /// descriptor or `NO_NEXT`.
    fn take_descriptor(&mut self, addr: u64, len: usize, flags: u16, next: u16) -> u16 {
        self.free_len -= 1;
        let id = self.free_desc[usize::from(self.free_len)];
        let (flags, next) = if next == NO_NEXT {
            (flags, 0)
        } else {
            (flags | VIRTQ_DESC_F_NEXT, next)
        };
        // Safety: `id < size` (the free stack holds only ids of this table: `new` fills it with
        // `0..size`, and `pop` returns only ids of chains `push` made), so the descriptor is
        // inside the table; it is free, so the device does not read it now (it reads it only
        // after `publish`).
        unsafe {
            self.desc.add(usize::from(id)).write_volatile(Descriptor {
                addr,
                // Fits: callers checked `len <= BUF_SIZE`.
                len: len as u32,
                flags,
                next,
            })
        };
        id
    }

    /// Append chain `head`, holding `buf`, to the available ring (not yet published).
    fn make_available(&mut self, head: u16, buf: PacketBuf) {
        let slot = usize::from(self.avail_idx & (self.size - 1));
        // Safety: ring entry `slot < size` sits at u16 offset 2 + slot of the available ring; the
        // device reads entries only below the published index, which this one is not yet.
        unsafe { self.avail.add(2 + slot).write_volatile(head) };
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.owner[usize::from(head)] = Some(buf);
    }

    /// Make everything pushed since the last publish visible to the device with one index store,
    /// and say whether the device must be notified (2.4.7.2). Call at most once per burst.
    pub(crate) fn publish(&mut self) -> bool {
        if self.avail_idx == self.kicked_idx {
            return false;
        }
        // Release: the descriptors and ring entries written in `push` are visible before the
        // index that hands them over.
        self.avail_idx_atomic()
            .store(self.avail_idx, Ordering::Release);
        // The index store must be visible before we read the device's suppression state, or we
        // may read a stale "don't notify" while the device goes to sleep (Linux: virtio_mb).
        fence(Ordering::SeqCst);
        let old = self.kicked_idx;
        self.kicked_idx = self.avail_idx;
        if self.event_idx {
            need_event(self.avail_event(), self.avail_idx, old)
        } else {
            self.used_flags() & VIRTQ_USED_F_NO_NOTIFY == 0
        }
    }

    /// Whether the device has used every buffer published to it (given its `used_idx`): it has
    /// none left to receive into until the driver publishes more.
    pub(crate) fn device_starved(&self, used_idx: u16) -> bool {
        self.free_len < self.size && used_idx == self.kicked_idx
    }

    /// The device's used index; read once per burst and pass to [`Self::pop`].
    pub(crate) fn used_idx(&self) -> u16 {
        // Safety: the used index is the u16 at byte 2 of the used ring, 2-aligned, inside our
        // allocation; the device writes it concurrently, hence the atomic.
        let idx = unsafe { AtomicU16::from_ptr(self.used.add(2).cast::<u16>().as_ptr()) };
        // Acquire: the used entries below the index are read after it.
        idx.load(Ordering::Acquire)
    }

    /// Take the next buffer the device has finished with, up to `used_idx`, and how many bytes it
    /// wrote into it. Entries naming a descriptor we do not own are skipped and counted.
    pub(crate) fn pop(&mut self, used_idx: u16) -> Option<(PacketBuf, u32)> {
        while self.last_used != used_idx {
            let slot = usize::from(self.last_used & (self.size - 1));
            self.last_used = self.last_used.wrapping_add(1);
            // Safety: entry `slot < size` is 8 bytes at byte 4 + 8 * slot of the used ring, inside
            // our allocation and 4-aligned; the device wrote it before publishing `used_idx`,
            // which we loaded with Acquire.
            let (id, written) = unsafe {
                let entry = self.used.add(4 + 8 * slot).cast::<u32>();
                (entry.read_volatile(), entry.add(1).read_volatile())
            };
            let taken = self.owner.get_mut(id as usize).and_then(Option::take);
            match taken {
                Some(buf) => {
                    let tail = core::mem::replace(&mut self.chained[id as usize], NO_NEXT);
                    for id in [id as u16, tail] {
                        if id != NO_NEXT {
                            self.free_desc[usize::from(self.free_len)] = id;
                            self.free_len += 1;
                        }
                    }
                    return Some((buf, written));
                }
                None => self.bogus += 1,
            }
        }
        None
    }

    fn avail_idx_atomic(&self) -> &AtomicU16 {
        // Safety: the available index is the u16 at u16 offset 1 of the available ring, inside our
        // allocation and 2-aligned; the device reads it concurrently, hence the atomic.
        unsafe { AtomicU16::from_ptr(self.avail.add(1).as_ptr()) }
    }

    fn avail_event(&self) -> u16 {
        let offset = 4 + 8 * usize::from(self.size);
        // Safety: `avail_event` is the u16 right after the used ring's entries, inside our
        // allocation (see `layout`) and 2-aligned; the device writes it concurrently.
        unsafe { AtomicU16::from_ptr(self.used.add(offset).cast::<u16>().as_ptr()) }
            .load(Ordering::Relaxed)
    }

    fn used_flags(&self) -> u16 {
        // Safety: the used ring's flags are its first u16, inside our allocation; the device
        // writes them concurrently.
        unsafe { AtomicU16::from_ptr(self.used.cast::<u16>().as_ptr()) }.load(Ordering::Relaxed)
    }
}

impl<H: Hal> Drop for SplitQueue<H> {
    fn drop(&mut self) {
        // The driver drops its transport (which resets the device, ending its DMA) before its
        // queues, so the memory is no longer in use.
        // Safety: `mem`, `mem_phys` and `pages` are exactly what `dma_alloc` returned / was given.
        unsafe { H::dma_dealloc(self.mem_phys, self.mem, self.pages) };
    }
}

/// Byte offsets of the available and used rings in one allocation, and its total size, for a
/// queue of `size` entries (2.4: descriptors 16-aligned, available ring 2-aligned, used ring
/// 4-aligned; we put the used ring, which the device writes, on its own cache line).
fn layout(size: usize) -> (usize, usize, usize) {
    let desc = 16 * size;
    let avail = 2 * (3 + size);
    let used = 2 * 3 + 8 * size;
    let used_off = (desc + avail).next_multiple_of(64);
    (desc, used_off, used_off + used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_matches_the_spec_window() {
        // The device wants a kick once index 5 is made available.
        assert!(need_event(5, 6, 5)); // published exactly entry 5
        assert!(need_event(5, 10, 3)); // 5 lies in 3..10
        assert!(!need_event(5, 5, 3)); // 3 and 4 published; 5 not yet
        assert!(!need_event(5, 9, 6)); // already past 5 before this burst: device is awake
        assert!(!need_event(5, 7, 7)); // nothing published
    }

    #[test]
    fn need_event_wraps() {
        // Burst crossing the 16-bit wrap: old = 65530, new = 4.
        assert!(need_event(65535, 4, 65530));
        assert!(need_event(0, 4, 65530));
        assert!(need_event(3, 4, 65530));
        assert!(!need_event(4, 4, 65530));
        assert!(!need_event(65529, 4, 65530));
        // The naive `new >= event + 1` would say "no" here and stall the device.
        assert!(need_event(65533, 2, 65532));
    }

    #[test]
    fn layout_respects_alignment_and_size() {
        for size in [1, 2, 16, 256] {
            let (avail, used, total) = layout(size);
            assert_eq!(avail % 16, 0);
            assert_eq!(used % 64, 0);
            assert!(avail + 2 * (3 + size) <= used);
            assert_eq!(total, used + 6 + 8 * size);
        }
        assert!(layout(256).2 <= 2 * PAGE_SIZE);
    }
}
