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
//!    `VirtioNet::<KernelHal>::new(&PortConfigSpace, address, pool)`, or for an 82599
//!    [`ixgbe::pci_bring_up`], map BAR0 uncached, [`MmioRegisters::new`], then
//!    `Ixgbe::<KernelHal>::new(regs, pool, IxgbeConfig::new(delay_us))`; for an 82576 / i350 /
//!    i210 / i211 the same with [`igb::pci_bring_up`] and `Igb::<KernelHal>::new(regs, pool,
//!    IgbConfig::new(delay_us))`, or one handle per CPU with `IgbQueue::new_queues(regs, pools,
//!    config, &RSS_KEY)`. Every driver fills its receive ring at once.
//! 3. Poll forever, one burst at a time, over the [`Nic`] trait:
//!
//! ```
//! use drivers::{Burst, Nic, BURST_SIZE, HEADROOM};
//!
//! /// What the forwarder decides about a frame (the kernel's is `forwarder::Verdict`).
//! #[derive(Clone, Copy)]
//! enum Verdict {
//!     /// Send it, from where it now lies in its buffer.
//!     Forward { head: usize, len: usize },
//!     /// For the local stack (ARP, management, health checks).
//!     Local,
//!     Drop,
//! }
//!
//! /// One round of the poll loop. `decide` stands for the forwarder: it sees each frame's
//! /// whole 2 KiB buffer with the frame's `head` and `len`, may rewrite it in place or move
//! /// `head` back to prepend a header, and gives its verdict. `local` copies a frame for the
//! /// local stack.
//! fn poll_once<N: Nic>(
//!     nic: &mut N,
//!     rx: &mut Burst,
//!     tx: &mut Burst,
//!     mut decide: impl FnMut(&mut [u8], usize, usize) -> Verdict,
//!     mut local: impl FnMut(&[u8]),
//! ) {
//!     nic.rx_burst(rx);
//!     let count = rx.len();
//!     let mut verdicts = [Verdict::Drop; BURST_SIZE];
//!     {
//!         // The pool lends the burst's buffers one at a time, straight from the handles.
//!         let mut lent = nic.pool_mut().lend(rx.make_contiguous());
//!         for (i, verdict) in verdicts[..count].iter_mut().enumerate() {
//!             if let Some((pkt, buf)) = lent.get_mut(i) {
//!                 *verdict = decide(buf, pkt.head(), pkt.len());
//!             }
//!         }
//!     }
//!     for &verdict in &verdicts[..count] {
//!         let Some(mut pkt) = rx.pop_front() else { break };
//!         match verdict {
//!             // `set_frame` refuses a range outside the buffer; `tx` is full only if an
//!             // earlier round left frames in it.
//!             Verdict::Forward { head, len } => match pkt.set_frame(head, len) {
//!                 Ok(()) => {
//!                     if let Err(pkt) = tx.push_back(pkt) {
//!                         nic.recycle(pkt);
//!                     }
//!                 }
//!                 Err(_) => nic.recycle(pkt),
//!             },
//!             Verdict::Local => {
//!                 local(nic.pool().frame(&pkt));
//!                 nic.recycle(pkt);
//!             }
//!             Verdict::Drop => nic.recycle(pkt),
//!         }
//!     }
//!     // One doorbell for the whole burst; sent buffers are reclaimed first. Frames still in
//!     // `tx` found the ring full: keep them for the next round or recycle them.
//!     nic.tx_burst(tx);
//! }
//!
//! /// A frame the kernel makes itself (a local stack reply) joins the same transmit burst.
//! fn send_copy<N: Nic>(nic: &mut N, tx: &mut Burst, frame: &[u8]) {
//!     let Some(mut pkt) = nic.pool_mut().alloc() else { return };
//!     if frame.len() > nic.pool().buffer(&pkt).len() - HEADROOM {
//!         nic.recycle(pkt);
//!         return;
//!     }
//!     nic.pool_mut().buffer_mut(&pkt)[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
//!     match pkt.set_frame(HEADROOM, frame.len()) {
//!         Ok(()) => {
//!             if let Err(pkt) = tx.push_back(pkt) {
//!                 nic.recycle(pkt);
//!             }
//!         }
//!         Err(_) => nic.recycle(pkt),
//!     }
//! }
//! ```
//!
//! A received frame starts at [`HEADROOM`] (128) in its buffer; the forwarder may move `head`
//! back (down to [`pool::TX_MIN_HEAD`]) to prepend headers, and `tx_burst` sends
//! `buffer[head..head + len]` from the same buffer.
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
//! - Single-threaded use: the driver is `&mut self` everywhere and does no locking. For one poll
//!   loop per CPU, `VirtioNet::<KernelHal>::new_queues(&PortConfigSpace, address, pools, &key)`
//!   gives one [`virtio_net::VirtioQueue`] (a `Nic`, `Send`) per queue pair, each with its own
//!   pool, and `Igb::<KernelHal>::new_queues(regs, pools, config, &key)` one
//!   [`igb::IgbQueue`] per queue; move each to its CPU. They share no register on the packet
//!   path. Bring-up needs a global allocator (`Vec`, `Arc`); the packet path allocates nothing.
#![cfg_attr(not(test), no_std)]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod acpi;
mod adv_ring;
pub mod igb;
pub mod ixgbe;
pub mod nic;
pub mod pci;
pub mod pool;
pub mod virtio_net;

/// Bytes of an Ethernet header (no 802.1Q tag).
pub const ETH_HEADER_LEN: usize = 14;

/// The largest IPv4 packet (interface MTU) every driver receives whole: the shorter of the
/// drivers' longest frames ([`virtio_net::RX_FRAME_MAX`], bounded by the 2 KiB buffers less
/// [`HEADROOM`]; [`ixgbe::RX_FRAME_MAX`] and [`igb::RX_FRAME_MAX`], bounded by the devices
/// with jumbo frames off), less
/// the Ethernet header. A longer packet would be dropped by the NIC or its driver, unseen.
pub const MTU_MAX: usize = {
    let (v, i, g) = (
        virtio_net::RX_FRAME_MAX,
        ixgbe::RX_FRAME_MAX,
        igb::RX_FRAME_MAX,
    );
    let vi = if v < i { v } else { i };
    (if vi < g { vi } else { g }) - ETH_HEADER_LEN
};

pub use igb::{Igb, IgbConfig, IgbError, IgbQueue};
pub use ixgbe::{Ixgbe, IxgbeConfig, IxgbeError, MmioRegisters};
pub use nic::{Burst, Nic, NicStats, BURST_SIZE};
pub use pool::{Lender, PacketBuf, PacketPool, BUF_SIZE, HEADROOM};
pub use virtio_drivers::Hal;
pub use virtio_net::{VirtioNet, VirtioNetError};
