//! Sidestep's hardware access: PCI configuration space, NIC drivers behind one small trait, and
//! the DMA packet pool they share.
//!
//! Driver crates are libraries: the kernel owns the devices and adapts them (the smoltcp `Device`
//! adapter, the poll loop). `unsafe` is allowed here, and every block says why it holds.
#![cfg_attr(not(test), no_std)]

pub mod pci;
