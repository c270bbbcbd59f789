//! Monotonic time as the forwarder sees it.
//!
//! The forwarder never reads a clock: the kernel passes the current [`Instant`] (derived from its
//! TSC clock) into every call, which keeps the crate deterministic under tests, fuzzing and
//! benchmarks. Milliseconds are fine enough for every timer here (the shortest is the ARP retry,
//! one second) and a `u64` of them never wraps.

/// A point on the kernel's monotonic clock, in milliseconds since an arbitrary origin (boot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(0);

    /// An instant `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms)
    }

    /// An instant `s` seconds after the origin.
    pub const fn from_secs(s: u64) -> Instant {
        Instant(s.saturating_mul(1000))
    }

    /// An instant `ns` nanoseconds after the origin (rounded down to the millisecond).
    pub const fn from_nanos(ns: u64) -> Instant {
        Instant(ns / 1_000_000)
    }

    /// Milliseconds since the origin.
    pub const fn millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the origin, as stored in flow entries (wraps after 136 years).
    pub const fn secs32(self) -> u32 {
        (self.0 / 1000) as u32
    }

    /// This instant moved `ms` milliseconds later.
    pub const fn plus_millis(self, ms: u64) -> Instant {
        Instant(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn millis_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(Instant::from_secs(3).millis(), 3000);
        assert_eq!(Instant::from_nanos(2_500_000).millis(), 2);
        assert_eq!(Instant::from_millis(61_999).secs32(), 61);
        assert_eq!(
            Instant::from_millis(5).millis_since(Instant::from_millis(9)),
            0
        );
        assert_eq!(
            Instant::from_millis(5).plus_millis(7),
            Instant::from_millis(12)
        );
    }
}
