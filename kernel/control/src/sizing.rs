//! How big the flow table may be in the memory the image has. `sidestep check` cannot know the
//! memory of the machine an image will boot on, so a `limits.flows` too large for it is found at
//! boot, and the image then runs with the largest table that fits (saying so in an error line)
//! rather than halting when the allocation fails.
//!
//! The table is one allocation of [`FLOW_BYTES`] per flow, made once at boot after the NIC's
//! packet pool. What is left after it must serve everything else the image allocates (the local
//! stack and the management server's buffers, request bodies, `/metrics` renderings, config
//! pushes), so the table may take the free heap less a reserve of an eighth of the heap, at least
//! [`RESERVE_MIN`].

/// Bytes of heap one flow-table entry takes.
pub const FLOW_BYTES: u64 = 32;
/// The smallest table (and `limits.flows`' lower bound, [`FLOWS_RANGE`](crate::config::FLOWS_RANGE).0).
pub const FLOWS_MIN: u64 = crate::config::FLOWS_RANGE.0 as u64;
/// The largest table the image sizes by itself, when the config does not say.
pub const DEFAULT_FLOWS_MAX: u64 = 4 << 20;
/// Heap kept free after the table, at least.
pub const RESERVE_MIN: u64 = 16 << 20;

/// The flow table's size, and what the config asked when it did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTableSize {
    /// Entries to allocate.
    pub flows: usize,
    /// `limits.flows`, when it was more than fits (and `flows` is what fits instead).
    pub requested_too_many: Option<u32>,
    /// The most that fits.
    pub fits: usize,
}

/// The table for `limits.flows = requested` (or the image's choice, a quarter of the heap, when
/// `None`) on a heap of `heap` bytes of which `free` are free now.
pub fn flow_table(requested: Option<u32>, heap: u64, free: u64) -> FlowTableSize {
    let reserve = RESERVE_MIN.max(heap / 8);
    let fits = (free.saturating_sub(reserve) / FLOW_BYTES).max(FLOWS_MIN);
    let (flows, requested_too_many) = match requested {
        Some(n) if u64::from(n) > fits => (fits, Some(n)),
        Some(n) => (u64::from(n), None),
        None => (
            (heap / 4 / FLOW_BYTES)
                .clamp(FLOWS_MIN, DEFAULT_FLOWS_MAX)
                .min(fits),
            None,
        ),
    };
    FlowTableSize {
        flows: flows as usize,
        requested_too_many,
        fits: fits as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_limit_that_fits_is_taken_as_it_is() {
        let s = flow_table(Some(1_000_000), 200 * MIB, 180 * MIB);
        assert_eq!(s.flows, 1_000_000);
        assert_eq!(s.requested_too_many, None);
    }

    #[test]
    fn a_limit_beyond_the_memory_becomes_what_fits() {
        // 64 Mi flows need 2 GiB; a 256 MiB guest has ~200 MiB of heap, ~180 MiB free after the
        // pool, and keeps an eighth (25 MiB) for the rest.
        let s = flow_table(Some(64 << 20), 200 * MIB, 180 * MIB);
        assert_eq!(s.requested_too_many, Some(64 << 20));
        assert_eq!(s.flows as u64, (180 * MIB - 25 * MIB) / FLOW_BYTES);
        assert_eq!(s.flows, s.fits);
        // The reserve is at least RESERVE_MIN on a small heap.
        let s = flow_table(Some(64 << 20), 40 * MIB, 30 * MIB);
        assert_eq!(s.flows as u64, (30 * MIB - RESERVE_MIN) / FLOW_BYTES);
    }

    #[test]
    fn the_default_is_a_quarter_of_the_heap_within_bounds_and_what_fits() {
        assert_eq!(
            flow_table(None, 200 * MIB, 180 * MIB).flows as u64,
            50 * MIB / FLOW_BYTES
        );
        assert_eq!(
            flow_table(None, 64 << 30, 60 << 30).flows as u64,
            DEFAULT_FLOWS_MAX
        );
        // Little free memory: the default shrinks to fit, never below the minimum.
        assert_eq!(
            flow_table(None, 200 * MIB, 30 * MIB).flows as u64,
            (30 * MIB - 25 * MIB) / FLOW_BYTES
        );
        let tiny = flow_table(None, 8 * MIB, 4 * MIB);
        assert_eq!(tiny.flows as u64, FLOWS_MIN);
        assert_eq!(tiny.requested_too_many, None);
    }
}
