//! PCI configuration space through the legacy I/O ports (0xCF8 address, 0xCFC data), and a scan
//! of every bus, device and function.
//!
//! Port I/O works on every PC chipset and needs no memory mapping, which keeps bring-up simple;
//! the scan is done once at boot, so its speed does not matter.

use core::fmt;

/// Where a function lives on the PCI bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddress {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..32.
    pub device: u8,
    /// Function number, 0..8.
    pub function: u8,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Access to configuration space: 32-bit aligned reads and writes.
pub trait ConfigSpace {
    /// Read the dword at `offset` (a multiple of 4) of `addr`'s configuration space.
    fn read(&self, addr: PciAddress, offset: u8) -> u32;
    /// Write the dword at `offset` (a multiple of 4).
    fn write(&self, addr: PciAddress, offset: u8, value: u32);
}

/// Configuration mechanism #1: the 0xCF8/0xCFC I/O ports.
#[cfg(target_arch = "x86_64")]
pub struct PortConfigSpace;

#[cfg(target_arch = "x86_64")]
impl PortConfigSpace {
    fn select(addr: PciAddress, offset: u8) {
        let value = 0x8000_0000u32
            | (u32::from(addr.bus) << 16)
            | (u32::from(addr.device & 31) << 11)
            | (u32::from(addr.function & 7) << 8)
            | u32::from(offset & 0xfc);
        let mut port = x86_64::instructions::port::Port::<u32>::new(0xcf8);
        // Safety: 0xCF8 is the PCI configuration address register on every PC; writing it only
        // selects which dword the next access to 0xCFC reaches. The kernel is single-threaded,
        // so no other access can come between the select and the data access.
        unsafe { port.write(value) }
    }
}

#[cfg(target_arch = "x86_64")]
impl ConfigSpace for PortConfigSpace {
    fn read(&self, addr: PciAddress, offset: u8) -> u32 {
        Self::select(addr, offset);
        let mut port = x86_64::instructions::port::Port::<u32>::new(0xcfc);
        // Safety: reading 0xCFC returns the dword selected just above; it has no side effects
        // on memory.
        unsafe { port.read() }
    }

    fn write(&self, addr: PciAddress, offset: u8, value: u32) {
        Self::select(addr, offset);
        let mut port = x86_64::instructions::port::Port::<u32>::new(0xcfc);
        // Safety: writes the selected configuration dword; callers write only registers whose
        // meaning they know (command, BARs during sizing).
        unsafe { port.write(value) }
    }
}

/// What the scan found at one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Its address.
    pub address: PciAddress,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class, subclass and programming interface.
    pub class: (u8, u8, u8),
}

impl PciFunction {
    /// A short human name for the devices Sidestep cares about.
    pub fn kind(&self) -> &'static str {
        match (self.vendor, self.device) {
            (0x1af4, 0x1000) | (0x1af4, 0x1041) => "virtio-net",
            (0x1af4, _) => "virtio",
            (0x8086, 0x10fb)
            | (0x8086, 0x10fc)
            | (0x8086, 0x1557)
            | (0x8086, 0x10f7)
            | (0x8086, 0x1514)
            | (0x8086, 0x1517)
            | (0x8086, 0x10f8)
            | (0x8086, 0x10f9)
            | (0x8086, 0x151c)
            | (0x8086, 0x154d) => "82599 (ixgbe)",
            (vendor, device) if crate::igb::supports(vendor, device) => "82576/i350/i210 (igb)",
            _ => match self.class.0 {
                0x01 => "storage",
                0x02 => "network",
                0x03 => "display",
                0x06 => "bridge",
                _ => "other",
            },
        }
    }
}

impl fmt::Display for PciFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04x}:{:04x} class {:02x}{:02x}{:02x} {}",
            self.address,
            self.vendor,
            self.device,
            self.class.0,
            self.class.1,
            self.class.2,
            self.kind()
        )
    }
}

/// Visit every present function on buses 0..=255.
pub fn scan(cs: &impl ConfigSpace, mut visit: impl FnMut(PciFunction)) {
    for bus in 0..=255u8 {
        for device in 0..32u8 {
            let first = PciAddress {
                bus,
                device,
                function: 0,
            };
            if vendor_of(cs, first).is_none() {
                continue;
            }
            let multi = (cs.read(first, 0x0c) >> 16) & 0x80 != 0;
            let functions = if multi { 8 } else { 1 };
            for function in 0..functions {
                let address = PciAddress {
                    bus,
                    device,
                    function,
                };
                if let Some(f) = probe(cs, address) {
                    visit(f);
                }
            }
        }
    }
}

fn vendor_of(cs: &impl ConfigSpace, addr: PciAddress) -> Option<u16> {
    let id = cs.read(addr, 0);
    let vendor = id as u16;
    (vendor != 0xffff).then_some(vendor)
}

/// Read the identity of one function, if present.
pub fn probe(cs: &impl ConfigSpace, address: PciAddress) -> Option<PciFunction> {
    let id = cs.read(address, 0);
    let vendor = id as u16;
    if vendor == 0xffff {
        return None;
    }
    let class = cs.read(address, 0x08);
    Some(PciFunction {
        address,
        vendor,
        device: (id >> 16) as u16,
        class: ((class >> 24) as u8, (class >> 16) as u8, (class >> 8) as u8),
    })
}

/// Enable memory-space decoding and bus mastering (DMA) for a device (command register bits 1, 2).
pub fn enable_bus_master(cs: &impl ConfigSpace, addr: PciAddress) {
    let cmd = cs.read(addr, 0x04);
    cs.write(addr, 0x04, (cmd & 0xffff) | 0b110);
}

/// A memory BAR: physical base and size. `index` is 0..6; 64-bit BARs take two slots.
pub fn memory_bar(cs: &impl ConfigSpace, addr: PciAddress, index: u8) -> Option<(u64, u64)> {
    let off = 0x10 + index * 4;
    let low = cs.read(addr, off);
    if low & 1 != 0 {
        return None; // an I/O BAR
    }
    let is64 = (low >> 1) & 3 == 2;
    let high = if is64 { cs.read(addr, off + 4) } else { 0 };
    let base = (u64::from(high) << 32) | u64::from(low & !0xf);
    // Size it: write all ones, read back the mask, restore.
    cs.write(addr, off, 0xffff_ffff);
    let mask_low = cs.read(addr, off) & !0xf;
    cs.write(addr, off, low);
    let mask_high = if is64 {
        cs.write(addr, off + 4, 0xffff_ffff);
        let m = cs.read(addr, off + 4);
        cs.write(addr, off + 4, high);
        m
    } else {
        0xffff_ffff
    };
    let mask = (u64::from(mask_high) << 32) | u64::from(mask_low);
    let size = (!mask).wrapping_add(1);
    (base != 0 && size != 0).then_some((base, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Configuration space of a few fake functions, with BAR sizing behaviour.
    struct FakeBus {
        regs: RefCell<HashMap<(u8, u8, u8, u8), u32>>,
        bar_sizes: HashMap<(u8, u8, u8, u8), u32>,
    }

    impl ConfigSpace for FakeBus {
        fn read(&self, a: PciAddress, off: u8) -> u32 {
            *self
                .regs
                .borrow()
                .get(&(a.bus, a.device, a.function, off))
                .unwrap_or(&0xffff_ffff)
        }
        fn write(&self, a: PciAddress, off: u8, v: u32) {
            let key = (a.bus, a.device, a.function, off);
            let v = match self.bar_sizes.get(&key) {
                Some(size_mask) if v == 0xffff_ffff => *size_mask,
                _ => v,
            };
            self.regs.borrow_mut().insert(key, v);
        }
    }

    #[test]
    fn scan_finds_functions_and_sizes_a_64_bit_bar() {
        let mut regs = HashMap::new();
        regs.insert((0, 0, 0, 0), 0x29c0_8086);
        regs.insert((0, 0, 0, 8), 0x0600_0000);
        regs.insert((0, 0, 0, 0x0c), 0);
        regs.insert((0, 3, 0, 0), 0x1041_1af4);
        regs.insert((0, 3, 0, 8), 0x0200_0001);
        regs.insert((0, 3, 0, 0x0c), 0);
        regs.insert((0, 3, 0, 0x20), 0xfe00_000c); // 64-bit prefetchable BAR 4
        regs.insert((0, 3, 0, 0x24), 0x0000_0001);
        let mut bar_sizes = HashMap::new();
        bar_sizes.insert((0, 3, 0, 0x20), 0xffffc00c); // 16 KiB
        bar_sizes.insert((0, 3, 0, 0x24), 0xffff_ffff);
        let bus = FakeBus {
            regs: RefCell::new(regs),
            bar_sizes,
        };
        let mut found = Vec::new();
        scan(&bus, |f| found.push(f));
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].kind(), "virtio-net");
        assert_eq!(
            found[1].to_string(),
            "00:03.0 1af4:1041 class 020000 virtio-net"
        );
        let a = found[1].address;
        assert_eq!(memory_bar(&bus, a, 4), Some((0x1_fe00_0000, 0x4000)));
        // Sizing restored the BAR.
        assert_eq!(bus.read(a, 0x20), 0xfe00_000c);
    }
}
