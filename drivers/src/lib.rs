//! Sidestep's hardware access: PCI configuration space, NIC drivers behind one small trait, and
//! the DMA packet pool they share.
//!
//! Driver crates are libraries: the kernel owns the devices and adapts them (the smoltcp `Device`
//! adapter, the poll loop). `unsafe` is allowed here, and every block says why it holds.
#![cfg_attr(not(test), no_std)]

pub mod nic;
pub mod pci;
pub mod pool;
pub mod virtio_net;

pub use nic::{Burst, Nic, NicStats, BURST_SIZE};
pub use pool::{PacketBuf, PacketPool, BUF_SIZE, HEADROOM};
pub use virtio_drivers::Hal;
pub use virtio_net::{VirtioNet, VirtioNetError};
