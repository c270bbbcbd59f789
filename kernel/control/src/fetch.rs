//! When the boot-time config fetch tries, and when it gives up: [`Retry`], a schedule of at most
//! [`TRIES`] attempts with a backoff that starts at [`FIRST_BACKOFF_MS`] and doubles (about 15 s
//! in all when nothing answers), each attempt failing once it makes no progress for
//! [`STALL_MS`]. The kernel drives the socket and reports what happened; this decides what
//! comes next.

/// Attempts before giving up.
pub const TRIES: u32 = 5;
/// Wait before the second attempt; doubles after each failure.
pub const FIRST_BACKOFF_MS: u64 = 500;
/// An attempt that makes no progress for this long fails.
pub const STALL_MS: u64 = 3_000;

/// What to do between two attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet: the backoff is not over.
    Wait,
    /// Start the next attempt now (it is counted already).
    Attempt,
    /// Every try failed.
    GiveUp,
}

/// The retry schedule of one fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    tries: u32,
    next_ms: u64,
    /// Deadline of the attempt in flight (pushed forward by progress).
    deadline_ms: Option<u64>,
}

impl Retry {
    /// A fetch whose first attempt may start at `now_ms`.
    pub const fn new(now_ms: u64) -> Retry {
        Retry {
            tries: 0,
            next_ms: now_ms,
            deadline_ms: None,
        }
    }

    /// Between attempts (none [`in flight`](Retry::in_flight)): wait, attempt, or give up.
    pub fn poll(&mut self, now_ms: u64) -> Step {
        if now_ms < self.next_ms {
            Step::Wait
        } else if self.tries >= TRIES {
            Step::GiveUp
        } else {
            self.tries += 1;
            Step::Attempt
        }
    }

    /// The attempt started (its connection is under way) or made progress (bytes arrived): it
    /// now has [`STALL_MS`] from `now_ms` to make more.
    pub fn progress(&mut self, now_ms: u64) {
        self.deadline_ms = Some(now_ms + STALL_MS);
    }

    /// Whether an attempt is in flight.
    pub const fn in_flight(&self) -> bool {
        self.deadline_ms.is_some()
    }

    /// Whether the attempt in flight is past its deadline.
    pub fn stalled(&self, now_ms: u64) -> bool {
        self.deadline_ms.is_some_and(|deadline| now_ms > deadline)
    }

    /// The attempt in flight got a whole answer.
    pub fn answered(&mut self) {
        self.deadline_ms = None;
    }

    /// The attempt failed at `now_ms`: the backoff before the next one, or `None` when that was
    /// the last try (the next [`Retry::poll`] gives up).
    pub fn failed(&mut self, now_ms: u64) -> Option<u64> {
        self.deadline_ms = None;
        if self.tries < TRIES {
            let backoff = FIRST_BACKOFF_MS << self.tries.saturating_sub(1).min(8);
            self.next_ms = now_ms + backoff;
            Some(backoff)
        } else {
            self.next_ms = now_ms;
            None
        }
    }

    /// Attempts started so far.
    pub const fn tries(&self) -> u32 {
        self.tries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_tries_back_off_from_half_a_second_then_give_up() {
        let mut r = Retry::new(100);
        let mut now = 100;
        let mut backoffs = Vec::new();
        loop {
            match r.poll(now) {
                Step::Wait => panic!("waited at {now}"),
                Step::GiveUp => break,
                Step::Attempt => {}
            }
            r.progress(now);
            assert!(r.in_flight());
            // Nothing answers: the attempt stalls.
            assert!(!r.stalled(now + STALL_MS));
            now += STALL_MS + 1;
            assert!(r.stalled(now));
            match r.failed(now) {
                Some(backoff) => {
                    assert_eq!(r.poll(now + backoff - 1), Step::Wait);
                    backoffs.push(backoff);
                    now += backoff;
                }
                None => assert_eq!(r.poll(now), Step::GiveUp),
            }
        }
        assert_eq!(r.tries(), TRIES);
        assert_eq!(backoffs, [500, 1000, 2000, 4000]);
        // About 15 s of backoff and stalls in all.
        assert_eq!(now - 100, 5 * (STALL_MS + 1) + 7500);
    }

    #[test]
    fn progress_pushes_the_deadline() {
        let mut r = Retry::new(0);
        assert_eq!(r.poll(0), Step::Attempt);
        r.progress(0);
        r.progress(2_000);
        assert!(!r.stalled(4_000));
        assert!(r.stalled(5_001));
        r.answered();
        assert!(!r.in_flight() && !r.stalled(10_000));
    }

    #[test]
    fn a_failure_before_connecting_backs_off_as_well() {
        let mut r = Retry::new(0);
        assert_eq!(r.poll(0), Step::Attempt);
        assert_eq!(r.failed(0), Some(FIRST_BACKOFF_MS));
        assert_eq!(r.poll(499), Step::Wait);
        assert_eq!(r.poll(500), Step::Attempt);
        assert_eq!(r.tries(), 2);
    }
}
