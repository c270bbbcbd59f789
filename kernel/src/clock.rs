//! The monotonic clock: the time-stamp counter, calibrated once against the PIT.
//!
//! Timeouts (flows, ARP, health checks) need a cheap clock in the poll loop; `rdtsc` is one
//! instruction. Its rate is measured at boot by counting TSC ticks while the PIT's channel 2
//! (a fixed 1.193182 MHz crystal) counts down a known interval.

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

/// Calibrate: take the lowest of three 10 ms measurements (an emulator's stalls only make a
/// measurement longer, never shorter). Returns the TSC rate in Hz.
pub fn init() -> u64 {
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    let hz = (0..3)
        .map(|_| measure(10))
        .min()
        .unwrap_or(0)
        .max(1_000_000);
    TSC_HZ.store(hz, Ordering::Relaxed);
    // hz >= 1 MHz, so the quotient is below 1000 << 32 and fits.
    NANOS_PER_TICK_Q32.store(
        ((1_000_000_000u128 << 32) / hz as u128) as u64,
        Ordering::Relaxed,
    );
    hz
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
