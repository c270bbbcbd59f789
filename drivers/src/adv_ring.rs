//! The advanced descriptor rings of Intel's 82599 (ixgbe) and 82576/i350/i210 (igb) and the
//! pool buffers behind them: which descriptor holds which buffer, the head/tail bookkeeping, and
//! the receive and transmit loops over them. Both families share the advanced formats (82599
//! datasheet 7.1.6 / 7.2.3.2.4, 82576 datasheet 7.1 / 7.2): the same one-buffer read
//! format, DD and EOP at the same bits, the same transmit data descriptor and DD write-back.
//! What differs, the receive error bit RXE, each driver passes in.
//!
//! Every access to descriptor memory is here, behind a safe API. A [`Ring`] knows its size (`N`)
//! and checks every index it is given; it writes a descriptor only for a pool buffer it then
//! holds, and computes the DMA address from that buffer itself, so no caller can aim the device
//! at memory the ring does not own. The doorbells (RDT, TDT) stay with the driver: the loops here
//! say where the tail goes, and the driver writes it once per burst.
//!
//! Section numbers below are the 82599's.
//!
//! - Receive (7.1.6 advanced descriptors, 7.1.9 ring): every descriptor holds a pool buffer at
//!   [`HEADROOM`], so the frame lands where the forwarder expects it. The driver owns the one
//!   descriptor before `next`; RDT always points at it, so head never meets tail. A completed
//!   descriptor (DD) with EOP is handed out and replaced by a fresh buffer. Frames spanning
//!   descriptors (no EOP: cannot happen with jumbo frames off, which bound frames to 1522 bytes,
//!   less than the 1920 a buffer has after its headroom) are dropped whole and counted, as are
//!   frames with RXE set.
//! - Transmit (7.2.3.2.4 advanced data descriptors): one descriptor per frame (EOP, IFCS, DEXT,
//!   PAYLEN = length), RS on every [`TX_CLEAN_BATCH`]-th descriptor; buffers are reclaimed a
//!   batch at a time once the batch's last descriptor reports DD. A full ring leaves frames in
//!   the burst.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{fence, Ordering};

use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE};

use crate::ixgbe::regs::Registers;
use crate::nic::{Burst, NicStats};
use crate::pool::{PacketBuf, PacketPool, BUF_SIZE, HEADROOM, MAX_FRAME, TX_MIN_HEAD};

/// Receive descriptors (a multiple of 8: RDLEN must be a multiple of 128 bytes).
pub const RX_RING_SIZE: usize = 512;
/// Transmit descriptors (a multiple of 8 and of [`TX_CLEAN_BATCH`]).
pub const TX_RING_SIZE: usize = 512;
/// Transmit descriptors reclaimed together; RS is set on the last descriptor of each batch.
pub const TX_CLEAN_BATCH: usize = 32;

/// Receive write-back, extended status: descriptor done.
pub const RXD_STAT_DD: u32 = 1 << 0;
/// Receive write-back, extended status: end of packet.
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// Transmit data descriptor DTYP (advanced data).
pub const TXD_DTYP_DATA: u32 = 0x3 << 20;
/// Transmit DCMD: end of packet.
pub const TXD_CMD_EOP: u32 = 1 << 24;
/// Transmit DCMD: insert FCS.
pub const TXD_CMD_IFCS: u32 = 1 << 25;
/// Transmit DCMD: report status (write DD back).
pub const TXD_CMD_RS: u32 = 1 << 27;
/// Transmit DCMD: descriptor extension (advanced format).
pub const TXD_CMD_DEXT: u32 = 1 << 29;
/// Transmit olinfo: PAYLEN starts at this bit.
pub const TXD_PAYLEN_SHIFT: u32 = 14;
/// Transmit write-back status: descriptor done.
pub const TXD_STAT_DD: u32 = 1 << 0;

/// Why a ring could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `Hal::dma_alloc` failed for the descriptors.
    DmaAlloc,
    /// The pool ran out while filling the receive ring.
    PoolTooSmall {
        /// Buffers needed.
        needed: usize,
        /// Buffers there were.
        available: usize,
    },
}

/// Bytes per descriptor, both directions (7.1.6, 7.2.3.2).
const DESC_SIZE: usize = 16;
/// The shortest frame worth passing on or sending: an Ethernet header.
const MIN_FRAME: usize = 14;

// Batches never straddle the end of the ring, so a batch is `clean..clean + TX_CLEAN_BATCH`.
const _: () = assert!(TX_RING_SIZE.is_multiple_of(TX_CLEAN_BATCH));
// With jumbo frames off the device writes at most 1522 bytes from HEADROOM (see `RX_BUF_KIB`).
const _: () = assert!(MAX_FRAME >= 1522);

/// One 16-byte descriptor, seen as two little-endian quadwords (x86 is little-endian).
#[repr(C, align(16))]
struct Descriptor {
    lo: u64,
    hi: u64,
}

/// `N` descriptors in DMA memory from `Hal::dma_alloc`, and the pool buffer each one holds.
pub(crate) struct Ring<H: Hal, const N: usize> {
    desc: NonNull<Descriptor>,
    phys: u64,
    pages: usize,
    /// The buffer behind each descriptor; a descriptor is written only while it holds one.
    bufs: [Option<PacketBuf>; N],
    _hal: PhantomData<H>,
}

impl<H: Hal, const N: usize> Ring<H, N> {
    /// Allocate the descriptors (zeroed, so no DD bit is set) with no buffers.
    pub(crate) fn new() -> Result<Self, RingError> {
        // RDLEN/TDLEN must be a multiple of 128 bytes (8.2.3.8.3, 8.2.3.9.7) and fit in 32 bits.
        const {
            assert!(N > 0 && N.is_multiple_of(8) && N * DESC_SIZE <= u32::MAX as usize);
        }
        let pages = (N * DESC_SIZE).div_ceil(PAGE_SIZE);
        let (phys, virt) = H::dma_alloc(pages, BufferDirection::Both);
        if phys == 0 {
            return Err(RingError::DmaAlloc);
        }
        Ok(Ring {
            desc: virt.cast(),
            phys,
            pages,
            bufs: [const { None }; N],
            _hal: PhantomData,
        })
    }

    /// Physical address of descriptor 0, for RDBAL/RDBAH (TDBAL/TDBAH).
    pub(crate) fn phys(&self) -> u64 {
        self.phys
    }

    /// Length of the ring in bytes, for RDLEN (TDLEN).
    pub(crate) fn bytes(&self) -> u32 {
        // Fits: checked in `new`.
        (N * DESC_SIZE) as u32
    }

    /// Point descriptor `i` at `buf`'s byte `offset` (first quadword) with `hi` as the second,
    /// and hold `buf` until [`Self::take`]. Gives `buf` back, writing nothing, if `i` is not
    /// below `N`, descriptor `i` already holds a buffer, or `offset` is outside the buffer.
    fn put(
        &mut self,
        i: usize,
        pool: &PacketPool,
        buf: PacketBuf,
        offset: usize,
        hi: u64,
    ) -> Result<(), PacketBuf> {
        if !matches!(self.bufs.get(i), Some(None)) || offset >= BUF_SIZE {
            return Err(buf);
        }
        let addr = pool.phys_addr(&buf) + offset as u64;
        // `hi` last: it holds what the device (transmit) or the driver (DD on receive) checks.
        // Safety: `i < N` (the `bufs` lookup above), so the descriptor lies inside the
        // allocation (`pages` cover `N * 16` bytes, page aligned hence 16 aligned). It holds no
        // buffer, so the device does not own it (the driver hands a descriptor to the device
        // only after `put`, by moving the tail past it), and `&mut self` excludes other writers.
        unsafe {
            let d = self.desc.as_ptr().add(i);
            (&raw mut (*d).lo).write_volatile(addr);
            (&raw mut (*d).hi).write_volatile(hi);
        }
        self.bufs[i] = Some(buf);
        Ok(())
    }

    /// Take back the buffer descriptor `i` holds (`None` past the end or if it holds none).
    /// The caller must know the device is done with it (DD, or never handed over).
    fn take(&mut self, i: usize) -> Option<PacketBuf> {
        self.bufs.get_mut(i).and_then(Option::take)
    }

    /// The second quadword of descriptor `i` (write-back status and length), `None` past the end.
    fn status(&self, i: usize) -> Option<u64> {
        if i >= N {
            return None;
        }
        // Safety: `i < N`: inside the allocation, as in `put`. The device may write this
        // descriptor at any time; a volatile aligned 8-byte load on x86 is a single access, so
        // it sees either the old or the new quadword, never a mix.
        Some(unsafe { (&raw const (*self.desc.as_ptr().add(i)).hi).read_volatile() })
    }
}

// Safety: the ring is the only owner of its descriptor memory (from `dma_alloc`, never lent
// out) and of the buffers in `bufs`; `H` is only named, no value of it is held. Moving the ring
// to another CPU moves all of it, so nothing is left shared (igb hands each CPU its own queue).
unsafe impl<H: Hal, const N: usize> Send for Ring<H, N> {}

impl<H: Hal, const N: usize> Drop for Ring<H, N> {
    fn drop(&mut self) {
        // Safety: exactly what `dma_alloc` returned. The driver ends the device's DMA to the
        // ring (a device reset, or igb disabling the ring's queue) before its rings are
        // dropped, and a ring whose address the device was never given was never in use.
        unsafe { H::dma_dealloc(self.phys, self.desc.cast(), self.pages) };
    }
}

/// The receive queue: a ring whose every descriptor holds a buffer, and where to read next.
pub(crate) struct RxRing<H: Hal> {
    ring: Ring<H, RX_RING_SIZE>,
    /// Next descriptor to look at; RDT is always the one before it.
    next: usize,
    /// Inside a frame that spans descriptors: drop until its EOP.
    discarding: bool,
    /// The device's RXE bit in the write-back's status/error dword (frame received with errors).
    rx_error: u32,
}

impl<H: Hal> RxRing<H> {
    /// An empty receive ring whose device reports frame errors with `rx_error` (RXE) in the
    /// write-back's status/error dword; [`Self::fill`] gives it its buffers.
    pub(crate) fn new(rx_error: u32) -> Result<Self, RingError> {
        Ok(RxRing {
            ring: Ring::new()?,
            next: 0,
            discarding: false,
            rx_error,
        })
    }

    /// The descriptor memory, for RDBAL/RDBAH/RDLEN.
    pub(crate) fn ring(&self) -> &Ring<H, RX_RING_SIZE> {
        &self.ring
    }

    /// Give every descriptor a buffer from `pool`, in advanced read format (7.1.6.1): packet
    /// address, header address 0 (which also clears DD). Reading starts at descriptor 0.
    pub(crate) fn fill(&mut self, pool: &mut PacketPool) -> Result<(), RingError> {
        for i in 0..RX_RING_SIZE {
            let Some(buf) = pool.alloc() else {
                return Err(RingError::PoolTooSmall {
                    needed: RX_RING_SIZE,
                    available: i,
                });
            };
            if let Err(buf) = self.arm(i, pool, buf) {
                // Not reachable: `i` is in range and the ring starts empty.
                pool.free(buf);
            }
        }
        self.next = 0;
        self.discarding = false;
        Ok(())
    }

    /// The value for RDT: the descriptor before `next`, the one the driver keeps.
    pub(crate) fn tail(&self) -> u32 {
        ((self.next + RX_RING_SIZE - 1) % RX_RING_SIZE) as u32
    }

    /// [`Self::receive`], then, if any descriptor was re-armed, hand them to the device by
    /// writing the tail register `rdt` once (after the descriptors: a release fence).
    pub(crate) fn burst<R: Registers>(
        &mut self,
        pool: &mut PacketPool,
        rx: &mut Burst,
        stats: &mut NicStats,
        regs: &R,
        rdt: u32,
    ) -> usize {
        let start = self.next;
        let received = self.receive(pool, rx, stats);
        if self.next != start {
            fence(Ordering::Release);
            regs.write(rdt, self.tail());
        }
        received
    }

    /// Move completed frames into `rx` (until it is full or the device has no more), re-arming
    /// each descriptor at once with a fresh buffer. Returns how many frames were added; the
    /// caller ([`Self::burst`]) then moves RDT to [`Self::tail`] if `next` moved.
    pub(crate) fn receive(
        &mut self,
        pool: &mut PacketPool,
        rx: &mut Burst,
        stats: &mut NicStats,
    ) -> usize {
        // The device owns every descriptor from `next` up to the one before the tail: when the
        // last of them is done, it had no descriptor left for the next frame.
        let last = (self.next + RX_RING_SIZE - 2) % RX_RING_SIZE;
        if self
            .ring
            .status(last)
            .is_some_and(|wb| wb as u32 & RXD_STAT_DD != 0)
        {
            stats.rx_ring_exhausted += 1;
        }
        let mut received = 0;
        while !rx.is_full() {
            let i = self.next;
            let Some(wb) = self.ring.status(i) else {
                break;
            };
            let status = wb as u32;
            if status & RXD_STAT_DD == 0 {
                break;
            }
            // The rest of the write-back and the frame are read after DD (x86 keeps loads in
            // order; this keeps the compiler from hoisting them).
            fence(Ordering::Acquire);
            let len = usize::from((wb >> 32) as u16);
            let eop = status & RXD_STAT_EOP != 0;
            let bad = status & self.rx_error != 0 || !(MIN_FRAME..=MAX_FRAME).contains(&len);
            if !eop || self.discarding || bad {
                // A piece of a multi-descriptor frame, or a frame we will not pass on: reuse the
                // buffer in place. Count the frame once, at its end.
                if eop {
                    stats.rx_dropped += 1;
                }
                self.discarding = !eop;
                if let Some(buf) = self.ring.take(i) {
                    self.rearm_or_free(i, pool, buf);
                }
                self.advance();
                continue;
            }
            let Some(fresh) = pool.alloc() else {
                // Leave the frame in the ring (still DD) and try again next burst.
                stats.rx_no_buffer += 1;
                break;
            };
            let taken = self.ring.take(i);
            self.rearm_or_free(i, pool, fresh);
            self.advance();
            let Some(mut buf) = taken else {
                // Not reachable: every descriptor holds a buffer.
                continue;
            };
            // `len <= MAX_FRAME` was checked, so HEADROOM + len fits the buffer.
            if buf.set_frame(HEADROOM, len).is_err() {
                stats.rx_dropped += 1;
                pool.free(buf);
                continue;
            }
            stats.rx_packets += 1;
            stats.rx_bytes += len as u64;
            match rx.push_back(buf) {
                Ok(()) => received += 1,
                // Not reachable: we checked for room.
                Err(buf) => pool.free(buf),
            }
        }
        received
    }

    /// Point descriptor `i` at `buf`, frame at HEADROOM, DD clear.
    fn arm(&mut self, i: usize, pool: &PacketPool, buf: PacketBuf) -> Result<(), PacketBuf> {
        self.ring.put(i, pool, buf, HEADROOM, 0)
    }

    /// [`Self::arm`], or back to the pool should the ring refuse (it cannot: the caller just
    /// emptied descriptor `i`), so no buffer leaks.
    fn rearm_or_free(&mut self, i: usize, pool: &mut PacketPool, buf: PacketBuf) {
        if let Err(buf) = self.arm(i, pool, buf) {
            pool.free(buf);
        }
    }

    fn advance(&mut self) {
        self.next = (self.next + 1) % RX_RING_SIZE;
    }
}

/// The transmit queue: a ring of in-flight frames between `clean` and `tail`.
pub(crate) struct TxRing<H: Hal> {
    ring: Ring<H, TX_RING_SIZE>,
    /// Next descriptor to fill (our TDT).
    tail: usize,
    /// Oldest descriptor not yet reclaimed; always a multiple of TX_CLEAN_BATCH.
    clean: usize,
}

impl<H: Hal> TxRing<H> {
    /// An empty transmit ring (TDH = TDT = 0).
    pub(crate) fn new() -> Result<Self, RingError> {
        Ok(TxRing {
            ring: Ring::new()?,
            tail: 0,
            clean: 0,
        })
    }

    /// The descriptor memory, for TDBAL/TDBAH/TDLEN.
    pub(crate) fn ring(&self) -> &Ring<H, TX_RING_SIZE> {
        &self.ring
    }

    /// The value for TDT: the next descriptor to fill.
    pub(crate) fn tail(&self) -> u32 {
        self.tail as u32
    }

    /// Return every completed batch of descriptors' buffers to the pool.
    pub(crate) fn reclaim(&mut self, pool: &mut PacketPool) {
        loop {
            let in_flight = (self.tail + TX_RING_SIZE - self.clean) % TX_RING_SIZE;
            if in_flight < TX_CLEAN_BATCH {
                return;
            }
            // RS is set on the batch's last descriptor, so its DD covers the whole batch
            // (descriptors complete in order).
            let last = self.clean + TX_CLEAN_BATCH - 1;
            let Some(wb) = self.ring.status(last) else {
                return;
            };
            if (wb >> 32) as u32 & TXD_STAT_DD == 0 {
                return;
            }
            fence(Ordering::Acquire);
            for i in self.clean..self.clean + TX_CLEAN_BATCH {
                if let Some(buf) = self.ring.take(i) {
                    pool.free(buf);
                }
            }
            self.clean = (self.clean + TX_CLEAN_BATCH) % TX_RING_SIZE;
        }
    }

    /// [`Self::reclaim`] and [`Self::transmit`], then, if any frame was queued, hand the
    /// descriptors to the device by writing the tail register `tdt` once (after a release
    /// fence).
    pub(crate) fn burst<R: Registers>(
        &mut self,
        pool: &mut PacketPool,
        tx: &mut Burst,
        stats: &mut NicStats,
        regs: &R,
        tdt: u32,
    ) -> usize {
        self.reclaim(pool);
        let queued = self.transmit(pool, tx, stats);
        if queued > 0 {
            fence(Ordering::Release);
            regs.write(tdt, self.tail());
        }
        queued
    }

    /// Put the frames of `tx` on the ring, front first, until it is full (frames left stay in
    /// `tx`, in order); malformed frames are freed and counted. Returns how many were queued;
    /// the caller ([`Self::burst`]) then moves TDT to [`Self::tail`] if any were.
    pub(crate) fn transmit(
        &mut self,
        pool: &mut PacketPool,
        tx: &mut Burst,
        stats: &mut NicStats,
    ) -> usize {
        let mut queued = 0;
        while let Some(buf) = tx.pop_front() {
            let (head, len) = (buf.head(), buf.len());
            if head < TX_MIN_HEAD || len < MIN_FRAME {
                stats.tx_dropped += 1;
                pool.free(buf);
                continue;
            }
            let next = (self.tail + 1) % TX_RING_SIZE;
            if next == self.clean {
                // Full: one descriptor always stays empty so that TDT == TDH means "empty".
                stats.tx_ring_full += 1;
                if let Err(buf) = tx.push_front(buf) {
                    // Not reachable: we just took it from the front.
                    pool.free(buf);
                }
                break;
            }
            let i = self.tail;
            let rs = if i % TX_CLEAN_BATCH == TX_CLEAN_BATCH - 1 {
                TXD_CMD_RS
            } else {
                0
            };
            // 7.2.3.2.4: one buffer per frame, so DTALEN = PAYLEN = len (at most 2 KiB, and
            // `head + len` lies inside the buffer, which `PacketBuf::set_frame` guarantees).
            let cmd_type_len =
                len as u32 | TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS | TXD_CMD_EOP | rs;
            let olinfo = (len as u32) << TXD_PAYLEN_SHIFT;
            let hi = u64::from(cmd_type_len) | (u64::from(olinfo) << 32);
            if let Err(buf) = self.ring.put(i, pool, buf, head, hi) {
                // Not reachable: descriptors between `clean` and `tail` were reclaimed.
                stats.tx_dropped += 1;
                pool.free(buf);
                continue;
            }
            self.tail = next;
            stats.tx_packets += 1;
            stats.tx_bytes += len as u64;
            queued += 1;
        }
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ixgbe::tests::{pool, TestHal};

    /// The raw quadwords of descriptor `i`, read past the ring's own checks.
    fn raw<const N: usize>(ring: &Ring<TestHal, N>, i: usize) -> (u64, u64) {
        // Safety: the tests read only inside the ring's allocation (a whole page for 8
        // descriptors), which the device model does not touch here.
        unsafe {
            let d = ring.desc.as_ptr().add(i);
            ((&raw const (*d).lo).read(), (&raw const (*d).hi).read())
        }
    }

    #[test]
    fn indices_past_the_end_are_refused_and_write_nothing() {
        let mut pool = pool(4);
        let mut ring = Ring::<TestHal, 8>::new().unwrap();
        assert_eq!(ring.bytes(), 128);
        for i in [8, 9, 255, usize::MAX] {
            let buf = pool.alloc().unwrap();
            let buf = ring.put(i, &pool, buf, HEADROOM, u64::MAX).unwrap_err();
            pool.free(buf);
            assert_eq!(ring.status(i), None);
            assert_eq!(ring.take(i), None);
        }
        // The bytes right after the ring (same page) are still the allocator's zeros.
        assert_eq!(raw(&ring, 8), (0, 0));
        assert!((0..8).all(|i| ring.status(i) == Some(0)));
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn a_descriptor_is_written_only_for_a_buffer_it_then_holds() {
        let mut pool = pool(4);
        let mut ring = Ring::<TestHal, 8>::new().unwrap();
        let a = pool.alloc().unwrap();
        let a_phys = pool.phys_addr(&a);
        ring.put(3, &pool, a, 100, 7).unwrap();
        assert_eq!(raw(&ring, 3), (a_phys + 100, 7));
        // Occupied: refused, descriptor unchanged.
        let b = pool.alloc().unwrap();
        let b = ring.put(3, &pool, b, 100, 9).unwrap_err();
        assert_eq!(raw(&ring, 3), (a_phys + 100, 7));
        // An offset outside the buffer: refused.
        let b = ring.put(4, &pool, b, BUF_SIZE, 9).unwrap_err();
        assert_eq!(raw(&ring, 4), (0, 0));
        pool.free(b);
        let a = ring.take(3).unwrap();
        assert_eq!(pool.phys_addr(&a), a_phys);
        assert_eq!(ring.take(3), None);
        pool.free(a);
        assert_eq!(pool.available(), 4);
    }
}
