//! The local APIC's registers, for whoever programs them (the idle policy's timer, the start-up
//! of the other CPUs): in xAPIC mode a 4 KiB page, mapped once and shared, in x2APIC mode MSRs
//! (0x800 + offset / 16). Which one is the boot CPU's mode; every AP is switched to it.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::model_specific::Msr;

pub const IA32_APIC_BASE: u32 = 0x1b;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
pub const APIC_BASE_X2APIC: u64 = 1 << 10;

// Register offsets (xAPIC MMIO).
pub const REG_ID: u32 = 0x20;
pub const REG_EOI: u32 = 0xb0;
pub const REG_SVR: u32 = 0xf0;
pub const REG_ICR_LOW: u32 = 0x300;
pub const REG_ICR_HIGH: u32 = 0x310;
pub const REG_LVT_TIMER: u32 = 0x320;
pub const REG_LVT_LINT0: u32 = 0x350;
pub const REG_LVT_LINT1: u32 = 0x360;
pub const REG_LVT_ERROR: u32 = 0x370;
pub const REG_TIMER_INITIAL: u32 = 0x380;
pub const REG_TIMER_CURRENT: u32 = 0x390;
pub const REG_TIMER_DIVIDE: u32 = 0x3e0;
pub const LVT_MASKED: u32 = 1 << 16;

/// Where the xAPIC registers are mapped (0: x2APIC mode, or not set up yet).
static XAPIC: AtomicU64 = AtomicU64::new(0);

/// Make this CPU's registers reachable: in xAPIC mode map their page (once; a later call reuses
/// the mapping). Returns the page's physical address in xAPIC mode, `None` in x2APIC mode.
pub fn init() -> Result<Option<u64>, &'static str> {
    // Safety: IA32_APIC_BASE exists on every x86_64 CPU (the APIC is architectural there).
    let base = unsafe { Msr::new(IA32_APIC_BASE).read() };
    if base & APIC_BASE_ENABLE == 0 {
        return Err("the local APIC is disabled in IA32_APIC_BASE");
    }
    if base & APIC_BASE_X2APIC != 0 {
        return Ok(None);
    }
    let phys = base & 0x000f_ffff_ffff_f000;
    if XAPIC.load(Ordering::Relaxed) == 0 {
        let regs = crate::memory::map_mmio(phys, 4096).ok_or("cannot map the local APIC")?;
        XAPIC.store(regs.as_ptr() as u64, Ordering::Relaxed);
    }
    Ok(Some(phys))
}

/// Whether the registers are the mapped xAPIC page (else x2APIC MSRs).
pub fn xapic() -> bool {
    XAPIC.load(Ordering::Relaxed) != 0
}

/// Write register `reg`.
pub fn write(reg: u32, value: u32) {
    let base = XAPIC.load(Ordering::Relaxed);
    if base != 0 {
        // Safety: `base` maps the xAPIC's 4 KiB register page uncached (every CPU sees its own
        // APIC there); `reg` is one of the 16-byte-aligned 32-bit registers above.
        unsafe { ((base + u64::from(reg)) as *mut u32).write_volatile(value) };
    } else {
        let mut msr = Msr::new(0x800 + (reg >> 4));
        // Safety: in x2APIC mode the register is this MSR; writing it has the same effect.
        unsafe { msr.write(u64::from(value)) };
    }
}

/// Read register `reg`.
pub fn read(reg: u32) -> u32 {
    let base = XAPIC.load(Ordering::Relaxed);
    if base != 0 {
        // Safety: as in `write`.
        unsafe { ((base + u64::from(reg)) as *const u32).read_volatile() }
    } else {
        let msr = Msr::new(0x800 + (reg >> 4));
        // Safety: as in `write`.
        unsafe { msr.read() as u32 }
    }
}
