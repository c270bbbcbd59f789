//! Sidestep's hardware access: PCI configuration space, NIC drivers behind one small trait, and
//! the DMA packet pool they share.
//!
//! Driver crates are libraries: the kernel owns the devices and adapts them (the smoltcp `Device`
//! adapter, the poll loop). `unsafe` is allowed here, and every block says why it holds.
//!
//! # How the kernel uses it
//!
//! 1. Allocate one physically contiguous, 4 KiB aligned DMA region for packets (e.g. 8 MiB:
//!    ~4000 buffers) and make a [`PacketPool`] of it with [`PacketPool::new`].
//! 2. Find the NIC with [`pci::scan`] and bring it up, handing it the pool:
//!    `VirtioNet::<KernelHal>::new(&PortConfigSpace, address, pool)?`. The driver fills its
//!    receive ring at once.
//! 3. Poll forever:
//!
//! ```ignore
//! let mut rx = Burst::new();
//! let mut tx = Burst::new();
//! loop {
//!     nic.rx_burst(&mut rx);
//!     while let Some(mut pkt) = rx.pop_front() {
//!         let (head, len) = (pkt.head(), pkt.len());
//!         let buf = nic.pool_mut().buffer_mut(&pkt); // the whole 2 KiB, frame at head..head+len
//!         match forwarder.process(buf, head, len, now) {
//!             Forward { head, len } | Reply { head, len } => match pkt.set_frame(head, len) {
//!                 // `tx` is full only if an earlier round left frames in it: drop this one.
//!                 Ok(()) => {
//!                     if let Err(pkt) = tx.push_back(pkt) {
//!                         nic.recycle(pkt);
//!                     }
//!                 }
//!                 Err(_) => nic.recycle(pkt),
//!             },
//!             Local => smoltcp_rx(&mut nic, pkt), // recycles the buffer when consumed
//!             Drop => nic.recycle(pkt),
//!         }
//!     }
//!     nic.tx_burst(&mut tx); // one notify; reclaims sent buffers first
//!     // Frames still in `tx` found the ring full: keep them for the next round or recycle them.
//! }
//! ```
//!
//! A received frame starts at [`HEADROOM`] (128) in its buffer; the forwarder may move `head`
//! back (down to [`pool::TX_MIN_HEAD`]) to prepend headers, and `tx_burst` sends
//! `buffer[head..head + len]` from the same buffer. Locally generated frames (smoltcp replies)
//! take a buffer with `nic.pool_mut().alloc()`, write at `HEADROOM`, `set_frame`, and go into the
//! same `tx` burst.
//!
//! # What the kernel must provide
//!
//! - The packet region: mapped writable (write-back caching is fine: x86 DMA is coherent),
//!   physically contiguous, 4 KiB aligned virtually and physically, never used for anything else,
//!   alive for as long as the driver. It need not be zeroed.
//! - `impl virtio_drivers::Hal for KernelHal` ([`Hal`]):
//!   - `dma_alloc(pages, _)`: physically contiguous, 4 KiB aligned, **zeroed** pages (the rings:
//!     2 pages per queue for 256 entries, two queues, allocated once at bring-up). Return
//!     physical address 0 on failure. `dma_dealloc` is called only if the driver is dropped.
//!   - `mmio_phys_to_virt(paddr, size)`: map `paddr..paddr+size` of a device BAR (the virtio
//!     common, notify, ISR and device configuration structures; QEMU puts them in a 16 KiB
//!     64-bit BAR 4, firmware has assigned it) as uncached MMIO and return the virtual address,
//!     keeping the offset within the page (virtio-drivers checks its alignment).
//!     Called four times at bring-up.
//!   - `share` / `unshare`: never called by this driver (the data path uses the pool's physical
//!     addresses). Implement them as virtual-to-physical translation / no-op for completeness.
//! - PCI configuration access ([`pci::ConfigSpace`], e.g. `PortConfigSpace`). The driver enables
//!   memory decoding and bus mastering itself.
//! - No interrupts: the driver never enables MSI-X and asks the device not to interrupt; leave
//!   the device's INTx line masked.
//! - Single-threaded use: the driver is `&mut self` everywhere and does no locking.
#![cfg_attr(not(test), no_std)]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

pub mod ixgbe;
pub mod nic;
pub mod pci;
pub mod pool;
pub mod virtio_net;

pub use ixgbe::{Ixgbe, IxgbeConfig, IxgbeError, MmioRegisters};
pub use nic::{Burst, Nic, NicStats, BURST_SIZE};
pub use pool::{Lender, PacketBuf, PacketPool, BUF_SIZE, HEADROOM};
pub use virtio_drivers::Hal;
pub use virtio_net::{VirtioNet, VirtioNetError};
