//! The DMA packet pool: fixed 2 KiB buffers carved from one physically contiguous region.
//!
//! Every frame Sidestep forwards lives its whole life in one of these buffers: the NIC writes it,
//! the forwarder rewrites it in place (and may prepend a 20-byte IPIP header into the headroom),
//! and the NIC transmits it from the same buffer. Nothing is copied.
//!
//! Why this shape:
//! - Fixed-size buffers in one contiguous region make the physical address of buffer `i` a
//!   multiply-add (`phys + i * BUF_SIZE`): no page-table walk or `Hal::share` per packet.
//! - A received frame always starts at [`HEADROOM`] (128), so there are 128 bytes in front of it
//!   for a virtio-net header, an IPIP header, or both.
//! - Buffers are named by [`PacketBuf`] handles: an index plus the frame's `head` and `len`. A
//!   handle is neither `Copy` nor `Clone` and cannot be made outside this crate, so whoever holds
//!   it owns the buffer, and a buffer the NIC owns has no handle outside the driver.
//! - The free list is a stack of indices kept in the tail of the same region, so the pool needs no
//!   heap and the most recently freed (cache-warm) buffer is reused first.

use core::fmt;
use core::ptr::NonNull;

/// Size of every buffer in bytes.
pub const BUF_SIZE: usize = 2048;

/// Offset within its buffer at which a received frame starts.
///
/// Room in front of the frame for the driver's own header (virtio-net's 12 bytes) and for the
/// forwarder to prepend an outer IPv4 header (20 bytes) without copying. The kernel checks at
/// compile time that it covers the headroom the forwarder asks for.
pub const HEADROOM: usize = 128;

/// The smallest `head` a frame may have when it is handed to `tx_burst`.
///
/// Drivers may need this much room in front of a frame (virtio-net writes its 12-byte header
/// there). Frames with a smaller head are dropped by `tx_burst`, not sent.
pub const TX_MIN_HEAD: usize = 16;

/// The largest frame a buffer can hold when it starts at [`HEADROOM`].
pub const MAX_FRAME: usize = BUF_SIZE - HEADROOM;

// A received frame may be sent back unchanged, so its head must pass `tx_burst`'s check.
const _: () = assert!(TX_MIN_HEAD <= HEADROOM && HEADROOM < BUF_SIZE);

/// Bytes of the region used per buffer: the buffer plus its slot in the free stack.
const BYTES_PER_BUF: usize = BUF_SIZE + core::mem::size_of::<u32>();

/// Why a DMA region cannot become a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The region's virtual or physical address is not 4 KiB aligned.
    Misaligned,
    /// The region holds fewer than two buffers (or more than `u32::MAX`).
    BadSize,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Misaligned => {
                f.write_str("packet pool region must be 4 KiB aligned (virtual and physical)")
            }
            PoolError::BadSize => {
                f.write_str("packet pool region must hold at least two 2 KiB buffers")
            }
        }
    }
}

/// Why a frame range was refused by [`PacketBuf::set_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameOutOfBounds;

impl fmt::Display for FrameOutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("frame range does not fit in a 2 KiB packet buffer")
    }
}

/// An owned packet buffer: which buffer of the pool, and where the frame lies in it.
///
/// Not `Clone`: a handle is the buffer. Give it back with [`PacketPool::free`] or by handing it to
/// a driver's `tx_burst` (which frees it once the NIC has sent it). Dropping a handle leaks its
/// buffer until reboot.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a dropped PacketBuf leaks its buffer; free it or transmit it"]
pub struct PacketBuf {
    index: u32,
    head: u16,
    len: u16,
}

impl PacketBuf {
    /// Index of the buffer within its pool.
    pub fn index(&self) -> usize {
        self.index as usize
    }

    /// Offset of the frame's first byte within the buffer.
    pub fn head(&self) -> usize {
        usize::from(self.head)
    }

    /// Length of the frame in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Say where the frame now lies, e.g. after the forwarder prepended a header
    /// (`head - 20`, `len + 20`).
    pub fn set_frame(&mut self, head: usize, len: usize) -> Result<(), FrameOutOfBounds> {
        match head.checked_add(len) {
            Some(end) if end <= BUF_SIZE => {
                // Both fit in u16 because BUF_SIZE does.
                self.head = head as u16;
                self.len = len as u16;
                Ok(())
            }
            _ => Err(FrameOutOfBounds),
        }
    }
}

/// A pool of [`BUF_SIZE`] DMA buffers with known physical addresses.
pub struct PacketPool {
    /// Virtual address of buffer 0.
    virt: NonNull<u8>,
    /// Physical (bus) address of buffer 0.
    phys: u64,
    /// Number of buffers.
    count: u32,
    /// Stack of free buffer indices, `free[..free_len]`, in the tail of the region.
    free: NonNull<u32>,
    free_len: u32,
}

// Safety: the pool exclusively owns its region (the caller of `new` promised that), and all access
// goes through `&self`/`&mut self`, so moving it to another thread moves that ownership with it.
unsafe impl Send for PacketPool {}

impl PacketPool {
    /// Make a pool of the DMA region at `virt` (`len` bytes), which devices see at `phys`.
    ///
    /// The region holds `len / (2048 + 4)` buffers; the last few KiB keep the free stack. Every
    /// buffer starts free. The memory need not be zeroed.
    ///
    /// # Safety
    ///
    /// - `virt..virt + len` is mapped, writable, and used by nothing else for as long as the pool
    ///   (or any driver it is given to) lives: the pool hands it out as `&mut [u8]` and to devices.
    /// - It is physically contiguous: virtual byte `virt + k` is physical byte `phys + k`, for
    ///   every `k < len`, and `phys` is an address the NIC can reach by DMA.
    /// - Mapped cacheable write-back is fine on x86 (DMA is cache coherent there).
    pub unsafe fn new(virt: NonNull<u8>, phys: u64, len: usize) -> Result<Self, PoolError> {
        if !(virt.as_ptr() as usize).is_multiple_of(4096) || !phys.is_multiple_of(4096) {
            return Err(PoolError::Misaligned);
        }
        let count = len / BYTES_PER_BUF;
        if count < 2 || count > u32::MAX as usize {
            return Err(PoolError::BadSize);
        }
        // Safety: `count * BUF_SIZE + count * 4 <= len`, so the free stack lies inside the region;
        // the offset is a multiple of 2048, so it is aligned for u32.
        let free = unsafe { virt.add(count * BUF_SIZE) }.cast::<u32>();
        let mut pool = PacketPool {
            virt,
            phys,
            count: count as u32,
            free,
            free_len: 0,
        };
        // Push in reverse so that buffer 0 is handed out first (handy when reading dumps).
        for index in (0..pool.count).rev() {
            pool.push_free(index);
        }
        Ok(pool)
    }

    /// How many buffers the pool has in all.
    pub fn capacity(&self) -> usize {
        self.count as usize
    }

    /// How many buffers are free now.
    pub fn available(&self) -> usize {
        self.free_len as usize
    }

    /// Take a free buffer, with an empty frame at [`HEADROOM`]. `None` when all are in use.
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        if self.free_len == 0 {
            return None;
        }
        self.free_len -= 1;
        // Safety: `free_len < count`, so the slot is inside the free stack (see `new`), which only
        // this pool touches.
        let index = unsafe { self.free.add(self.free_len as usize).read() };
        Some(PacketBuf {
            index,
            head: HEADROOM as u16,
            len: 0,
        })
    }

    /// Give a buffer back.
    pub fn free(&mut self, buf: PacketBuf) {
        self.push_free(buf.index);
    }

    fn push_free(&mut self, index: u32) {
        // Every handle came from `alloc` of this pool, and handles are unique, so at most `count`
        // indices are ever free: the stack cannot overflow. Guard anyway rather than write past it
        // if a handle of another pool were freed here.
        if self.free_len < self.count && index < self.count {
            // Safety: `free_len < count`: the slot is inside the free stack.
            unsafe { self.free.add(self.free_len as usize).write(index) };
            self.free_len += 1;
        }
    }

    /// The whole 2 KiB buffer behind a handle, to read or rewrite the frame in place.
    pub fn buffer_mut(&mut self, buf: &PacketBuf) -> &mut [u8] {
        let index = self.checked_index(buf);
        // Safety: the index is in range, so the 2 KiB lie inside the region. The handle is unique
        // and held by the caller, so neither the device nor another handle uses this buffer, and
        // `&mut self` prevents a second borrow through the pool.
        unsafe {
            core::slice::from_raw_parts_mut(self.virt.add(index * BUF_SIZE).as_ptr(), BUF_SIZE)
        }
    }

    /// The buffers behind `bufs`, lent one at a time, e.g. to hand a received burst to the
    /// forwarder in one call. Each access borrows the [`Lender`], so no two `&mut` to one buffer
    /// can exist even if two handles named the same buffer (possible only with a handle of
    /// another pool, whose index this pool clamps into its own range), and nothing needs
    /// checking or building per burst; the handles stay borrowed, so none is freed or
    /// transmitted meanwhile.
    pub fn lend<'p>(&'p mut self, bufs: &'p [PacketBuf]) -> Lender<'p> {
        Lender { pool: self, bufs }
    }

    /// The whole 2 KiB buffer behind a handle, read-only.
    pub fn buffer(&self, buf: &PacketBuf) -> &[u8] {
        let index = self.checked_index(buf);
        // Safety: as in `buffer_mut`; shared access through `&self` only.
        unsafe { core::slice::from_raw_parts(self.virt.add(index * BUF_SIZE).as_ptr(), BUF_SIZE) }
    }

    /// The frame bytes `buffer[head..head + len]`.
    pub fn frame(&self, buf: &PacketBuf) -> &[u8] {
        &self.buffer(buf)[buf.head()..buf.head() + buf.len()]
    }

    /// The frame bytes, writable.
    pub fn frame_mut(&mut self, buf: &PacketBuf) -> &mut [u8] {
        let (head, len) = (buf.head(), buf.len());
        &mut self.buffer_mut(buf)[head..head + len]
    }

    /// Physical address of the first byte of a buffer, for descriptors.
    pub fn phys_addr(&self, buf: &PacketBuf) -> u64 {
        self.phys + (self.checked_index(buf) * BUF_SIZE) as u64
    }

    /// The buffer index, clamped into range so that a handle from another pool cannot reach
    /// outside this one (handles from this pool are always in range). The division only for
    /// such a stray handle: this runs several times per frame, and under QEMU TCG a `div` is a
    /// call into the emulator.
    #[inline]
    fn checked_index(&self, buf: &PacketBuf) -> usize {
        if buf.index < self.count {
            buf.index as usize
        } else {
            (buf.index % self.count) as usize
        }
    }
}

/// The buffers of a list of handles, from [`PacketPool::lend`].
pub struct Lender<'p> {
    pool: &'p mut PacketPool,
    bufs: &'p [PacketBuf],
}

impl Lender<'_> {
    /// How many handles were lent.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Whether no handle was lent.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Handle `i` and its whole buffer, read-only.
    pub fn get(&self, i: usize) -> Option<(&PacketBuf, &[u8])> {
        let buf = self.bufs.get(i)?;
        Some((buf, self.pool.buffer(buf)))
    }

    /// Handle `i` and its whole buffer, writable.
    pub fn get_mut(&mut self, i: usize) -> Option<(&PacketBuf, &mut [u8])> {
        let buf = self.bufs.get(i)?;
        Some((buf, self.pool.buffer_mut(buf)))
    }
}

impl fmt::Debug for PacketPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketPool")
            .field("phys", &format_args!("{:#x}", self.phys))
            .field("capacity", &self.count)
            .field("available", &self.free_len)
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pool over leaked, page-aligned host memory whose "physical" address is its virtual one.
    pub(crate) fn host_pool(buffers: usize) -> PacketPool {
        let len = buffers * BYTES_PER_BUF;
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // Safety: the layout is non-zero in size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) }).unwrap();
        // Safety: freshly allocated, leaked for the test, identity "physical" mapping.
        unsafe { PacketPool::new(ptr, ptr.as_ptr() as u64, len) }.unwrap()
    }

    #[test]
    fn alloc_until_empty_then_reuse_last_freed() {
        let mut pool = host_pool(4);
        assert_eq!(pool.capacity(), 4);
        let bufs: Vec<_> = (0..4).map(|_| pool.alloc().unwrap()).collect();
        assert_eq!(
            bufs.iter().map(PacketBuf::index).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert!(pool.alloc().is_none());
        assert_eq!(pool.available(), 0);
        let mut it = bufs.into_iter();
        let b2 = it.nth(2).unwrap();
        pool.free(b2);
        let again = pool.alloc().unwrap();
        assert_eq!(again.index(), 2);
        assert_eq!(again.head(), HEADROOM);
        assert!(again.is_empty());
        for b in it.chain([again]) {
            pool.free(b);
        }
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn lent_buffers_are_the_handles_own() {
        let mut pool = host_pool(1100);
        let bufs: Vec<_> = (0..1100).map(|_| pool.alloc().unwrap()).collect();
        let picked = [bufs[3].index(), bufs[1027].index(), bufs[7].index()];
        let mut handles: Vec<_> = bufs;
        // Move the picked handles to the front, in order.
        for (k, &want) in picked.iter().enumerate() {
            let at = handles.iter().position(|b| b.index() == want).unwrap();
            handles.swap(k, at);
        }
        {
            let mut lent = pool.lend(&handles[..3]);
            assert_eq!(lent.len(), 3);
            for (k, &want) in picked.iter().enumerate() {
                let (h, b) = lent.get_mut(k).unwrap();
                assert_eq!(h.index(), want);
                assert_eq!(b.len(), BUF_SIZE);
                b[0] = 0xa0 + k as u8;
            }
            assert!(lent.get(3).is_none());
            assert_eq!(lent.get(1).unwrap().1[0], 0xa1);
        }
        for (k, &want) in picked.iter().enumerate() {
            let h = handles.iter().find(|b| b.index() == want).unwrap();
            assert_eq!(pool.buffer(h)[0], 0xa0 + k as u8);
        }
        for b in handles {
            pool.free(b);
        }
    }

    #[test]
    fn buffers_are_disjoint_and_phys_is_linear() {
        let mut pool = host_pool(3);
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        pool.buffer_mut(&a).fill(0xaa);
        pool.buffer_mut(&b).fill(0xbb);
        assert!(pool.buffer(&a).iter().all(|&x| x == 0xaa));
        assert!(pool.buffer(&b).iter().all(|&x| x == 0xbb));
        assert_eq!(pool.phys_addr(&b) - pool.phys_addr(&a), BUF_SIZE as u64);
        assert_eq!(pool.phys_addr(&a), pool.buffer(&a).as_ptr() as u64);
        // The free stack in the tail was not overwritten by the buffer fills.
        pool.free(a);
        pool.free(b);
        assert_eq!(pool.available(), 3);
        let idx: Vec<_> = (0..3).map(|_| pool.alloc().unwrap().index()).collect();
        assert_eq!(idx, [1, 0, 2]);
    }

    #[test]
    fn frame_can_grow_into_headroom() {
        let mut pool = host_pool(2);
        let mut p = pool.alloc().unwrap();
        p.set_frame(HEADROOM, 60).unwrap();
        pool.frame_mut(&p).copy_from_slice(&[7; 60]);
        // The forwarder prepends 20 bytes (IPIP) in place.
        p.set_frame(p.head() - 20, p.len() + 20).unwrap();
        assert_eq!(p.head(), 108);
        assert_eq!(&pool.frame(&p)[20..], &[7; 60][..]);
        assert_eq!(p.set_frame(2000, 49), Err(FrameOutOfBounds));
        assert_eq!(p.set_frame(usize::MAX, 2), Err(FrameOutOfBounds));
        assert_eq!((p.head(), p.len()), (108, 80));
        pool.free(p);
    }

    #[test]
    fn rejects_bad_regions() {
        let layout = std::alloc::Layout::from_size_align(8192, 4096).unwrap();
        // Safety: non-zero layout; leaked.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) }).unwrap();
        let phys = ptr.as_ptr() as u64;
        // Safety: the region is valid; these calls only fail validation.
        unsafe {
            assert_eq!(
                PacketPool::new(ptr, phys + 8, 8192).unwrap_err(),
                PoolError::Misaligned
            );
            assert_eq!(
                PacketPool::new(ptr, phys, 2048).unwrap_err(),
                PoolError::BadSize
            );
        }
    }
}
