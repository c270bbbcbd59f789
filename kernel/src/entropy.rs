//! A secret seed for the forwarder's hash tables (flow, persistence and fragment tables), from
//! the CPU's random source: RDSEED (the conditioned entropy source itself), else RDRAND (its
//! DRBG), else, where the CPU has neither (QEMU's default CPU models), the jitter of timing a
//! short loop with the TSC many times over. A sender who could predict the seed could pick
//! flows that all land in one bucket; nothing about the instance (its MAC, its table size) is
//! secret, so none of it goes in.

use core::arch::x86_64::{__cpuid, __cpuid_count};
use forwarder::flow::fold_mul;
use log::info;

/// Retries of one RDSEED/RDRAND read before giving up on it (Intel suggests 10 for RDRAND).
const RETRIES: u32 = 10;

/// Timed loops folded into the TSC-jitter seed.
const JITTER_SAMPLES: u32 = 4096;

/// Where a seed came from, for the boot log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Rdseed,
    Rdrand,
    TscJitter,
}

/// 64 random bits for the forwarder's table hashes, logged by source (never by value).
pub fn table_seed() -> u64 {
    let (seed, source) = read();
    info!("forwarder: table hash seed from {source:?}");
    seed
}

fn read() -> (u64, Source) {
    // CPUID.(EAX=7,ECX=0):EBX bit 18 is RDSEED; CPUID.1:ECX bit 30 is RDRAND.
    let has_rdseed = __cpuid(0).eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 18) != 0;
    let has_rdrand = __cpuid(1).ecx & (1 << 30) != 0;
    if has_rdseed {
        // Safety: CPUID says the CPU implements RDSEED.
        if let Some(v) = unsafe { rdseed() } {
            return (v, Source::Rdseed);
        }
    }
    if has_rdrand {
        // Safety: CPUID says the CPU implements RDRAND.
        if let Some(v) = unsafe { rdrand() } {
            return (v, Source::Rdrand);
        }
    }
    (tsc_jitter(), Source::TscJitter)
}

/// One RDSEED read (it may fail while the entropy source refills: retry a few times).
///
/// # Safety
/// The CPU must implement RDSEED.
#[target_feature(enable = "rdseed")]
unsafe fn rdseed() -> Option<u64> {
    let mut v = 0u64;
    for _ in 0..RETRIES {
        // Inside a function compiled for RDSEED the intrinsic is safe to call.
        if core::arch::x86_64::_rdseed64_step(&mut v) == 1 {
            return Some(v);
        }
    }
    None
}

/// One RDRAND read, retried as Intel's guidance says.
///
/// # Safety
/// The CPU must implement RDRAND.
#[target_feature(enable = "rdrand")]
unsafe fn rdrand() -> Option<u64> {
    let mut v = 0u64;
    for _ in 0..RETRIES {
        // Inside a function compiled for RDRAND the intrinsic is safe to call.
        if core::arch::x86_64::_rdrand64_step(&mut v) == 1 {
            return Some(v);
        }
    }
    None
}

/// Fold the low bits of many TSC-timed runs of a short loop: each run's length varies with
/// cache, TLB and host (or emulator) scheduling state, which nobody outside sees.
fn tsc_jitter() -> u64 {
    let mut acc = crate::clock::rdtsc();
    let mut spin = acc;
    for i in 0..JITTER_SAMPLES {
        let start = crate::clock::rdtsc();
        for _ in 0..(i % 7) + 1 {
            spin = core::hint::black_box(fold_mul(spin, 0x9E37_79B9_7F4A_7C15));
        }
        let took = crate::clock::rdtsc().wrapping_sub(start);
        acc = fold_mul(acc ^ took, 0xD6E8_FEB8_6659_FD93).rotate_left(i % 64);
    }
    acc ^ spin
}
