//! The monotonic clock: the time-stamp counter, its rate known once at boot.
//!
//! Timeouts (flows, ARP, health checks) need a cheap clock in the poll loop; `rdtsc` is one
//! instruction. Its rate comes from CPUID where the CPU or hypervisor states it (leaf 0x15's
//! crystal ratio, the hypervisor timing leaf 0x40000010), otherwise it is measured by counting
//! TSC ticks while the PIT's channel 2 (a fixed 1.193182 MHz crystal) counts down a known
//! interval. Leaf 0x16 (a nominal "base frequency" in MHz) is not used: it is a marketing figure
//! that can be off by a percent, which timeouts would inherit.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick as a 32.32 fixed-point number: a multiply and a shift turn ticks
/// into nanoseconds, where a 128-bit division (a software loop, `__udivti3`) cost the poll loop
/// about 14 guest instructions per forwarded frame under QEMU TCG.
static NANOS_PER_TICK_Q32: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;

/// Read the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // Safety: `rdtsc` only reads a counter; it is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measure the TSC rate against the PIT over `ms` milliseconds; returns Hz.
fn measure(ms: u64) -> u64 {
    let count = (PIT_HZ * ms / 1000) as u16;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // Safety: ports 0x61 (speaker/gate control), 0x43 (PIT command) and 0x42 (channel 2) are
    // the PC's legacy timer; channel 2 drives only the speaker, which stays off (bit 1 = 0).
    unsafe {
        let g = gate.read();
        gate.write((g & !0x02) & !0x01); // gate low: counter holds
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        let g = gate.read();
        gate.write(g | 0x01); // gate high: counting starts
        let start = rdtsc();
        // Output (bit 5) goes high when the count reaches zero; bounded in case there is no PIT.
        let mut spins = 0u64;
        while gate.read() & 0x20 == 0 {
            spins += 1;
            if spins > 200_000_000 {
                break;
            }
        }
        let end = rdtsc();
        let g = gate.read();
        gate.write(g & !0x01);
        (end - start) * 1000 / ms
    }
}

/// Where the TSC rate came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// CPUID leaf 0x15: the core crystal clock times the TSC/crystal ratio.
    Crystal,
    /// The hypervisor's timing leaf 0x40000010 (KVM with invariant TSC, VMware).
    Hypervisor,
    /// Measured against the PIT.
    Pit,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Crystal => "from CPUID leaf 0x15",
            Source::Hypervisor => "from the hypervisor's CPUID leaf 0x40000010",
            Source::Pit => "calibrated against the PIT",
        }
    }
}

/// PIT measurements taken (the lowest wins: an emulator's stalls only make a measurement
/// longer, never shorter) and the length of each: 2 ms of boot in all. 1 ms is 1 193 PIT ticks,
/// so one tick of error is 0.08 %.
const PIT_ROUNDS: usize = 2;
const PIT_MS: u64 = 1;

/// The TSC rate in Hz stated by CPUID leaf 0x15 (TSC = crystal * EBX / EAX), if the CPU gives
/// both the ratio and the crystal's frequency.
fn crystal_hz() -> Option<u64> {
    // An unsupported leaf returns zeros or the highest leaf's values, which the checks reject.
    if core::arch::x86_64::__cpuid(0).eax < 0x15 {
        return None;
    }
    let r = core::arch::x86_64::__cpuid(0x15);
    (r.eax != 0 && r.ebx != 0 && r.ecx != 0)
        .then(|| u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax))
}

/// The TSC rate in Hz from the hypervisor timing leaf (EAX: TSC kHz), where the hypervisor
/// (CPUID 1 ECX bit 31) lists that leaf.
fn hypervisor_hz() -> Option<u64> {
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 31) == 0
        || core::arch::x86_64::__cpuid(0x4000_0000).eax < 0x4000_0010
    {
        return None;
    }
    let khz = core::arch::x86_64::__cpuid(0x4000_0010).eax;
    (khz != 0).then(|| u64::from(khz) * 1000)
}

/// The local APIC timer's rate in Hz from the hypervisor timing leaf (EBX: bus kHz), if given.
pub fn hypervisor_apic_hz() -> Option<u64> {
    hypervisor_hz()?;
    let khz = core::arch::x86_64::__cpuid(0x4000_0010).ebx;
    (khz != 0).then(|| u64::from(khz) * 1000)
}

/// Learn the TSC rate (CPUID where given, else the lowest of a few short PIT measurements).
/// Returns it in Hz and where it came from.
pub fn init() -> (u64, Source) {
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    let (hz, source) = if let Some(hz) = crystal_hz() {
        (hz, Source::Crystal)
    } else if let Some(hz) = hypervisor_hz() {
        (hz, Source::Hypervisor)
    } else {
        let hz = (0..PIT_ROUNDS).map(|_| measure(PIT_MS)).min().unwrap_or(0);
        (hz, Source::Pit)
    };
    let hz = hz.max(1_000_000);
    TSC_HZ.store(hz, Ordering::Relaxed);
    // hz >= 1 MHz, so the quotient is below 1000 << 32 and fits.
    NANOS_PER_TICK_Q32.store(
        ((1_000_000_000u128 << 32) / hz as u128) as u64,
        Ordering::Relaxed,
    );
    (hz, source)
}

/// Whether the CPU says its TSC runs at a constant rate in every power state (CPUID 0x80000007).
pub fn invariant_tsc() -> bool {
    // Leaf 0x80000007 is valid only when the maximum extended leaf covers it.
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// TSC ticks per second (0 before `init`).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since boot.
pub fn nanos_since_boot() -> u64 {
    nanos_at(rdtsc())
}

/// Nanoseconds since boot at the TSC reading `tsc` (0 before `init`). The fixed-point rate is
/// off by less than 2^-32 relative (under a millisecond a month).
#[inline]
pub fn nanos_at(tsc: u64) -> u64 {
    let ticks = tsc.wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    ((u128::from(ticks) * u128::from(NANOS_PER_TICK_Q32.load(Ordering::Relaxed))) >> 32) as u64
}

/// Microseconds since boot.
pub fn micros_since_boot() -> u64 {
    nanos_since_boot() / 1000
}

/// Busy-wait at least `us` microseconds (device bring-up delays).
pub fn delay_us(us: u32) {
    let hz = tsc_hz().max(1_000_000);
    let ticks = u64::from(us) * (hz / 1_000_000);
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}
