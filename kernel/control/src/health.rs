//! The health of one checked backend as a state machine: [`RiseFall`] turns check results into
//! up/down transitions, [`Schedule`] says when the next check runs and when one in flight has
//! taken too long. The kernel owns the sockets that do the checking and tells the forwarder
//! about transitions; everything it decides on is here.
//!
//! `fall` consecutive failures take an up backend down, `rise` consecutive successes bring a down
//! one back, and any other result only resets the opposite count. A checked backend starts
//! **up**, as the forwarder does for every new backend: a balancer that reboots (or takes a new
//! config) keeps forwarding at once instead of refusing every new flow for `rise × interval`
//! while it re-learns what was true a moment ago; a dead backend is found within
//! `fall × interval`. A backend kept across a config change keeps its counts and its schedule
//! (see [`RiseFall::reconfigured`]).

use crate::config::Health;

/// Delay of a new backend's first check: leaves the forwarder a moment to resolve the next hop
/// (an unresolved one fails a check).
pub const FIRST_CHECK_MS: u64 = 500;

/// Step between the first checks of a VIP's backends, so they do not all start at once.
const FIRST_CHECK_SPREAD_MS: u64 = 97;

/// What the config says about checking a VIP's backends, in the units the state machine counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
    /// Time between the starts of two checks.
    pub interval_ms: u64,
    /// How long one check may take.
    pub timeout_ms: u64,
}

impl Rules {
    /// The rules of a VIP's `[vip.health]`.
    pub fn of(health: &Health) -> Rules {
        Rules {
            rise: u32::from(health.rise),
            fall: u32::from(health.fall),
            interval_ms: u64::from(health.interval_ms),
            timeout_ms: u64::from(health.timeout_ms),
        }
    }
}

/// How one check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The backend accepted the connection.
    Passed,
    /// Refused, timed out, or could not even be tried (no route, no neighbour).
    Failed,
}

/// A change of a backend's state, for the forwarder and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// `rise` successes in a row: the backend takes new flows again.
    Up,
    /// `fall` failures in a row: no new flows, and its flows move on their next packet.
    Down,
}

/// A backend's up/down state and the counts that decide its next change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiseFall {
    up: bool,
    successes: u32,
    failures: u32,
    transitions: u64,
}

impl RiseFall {
    /// A backend checked for the first time, `up` or not, with nothing counted yet.
    pub const fn new(up: bool) -> RiseFall {
        RiseFall {
            up,
            successes: 0,
            failures: 0,
            transitions: 0,
        }
    }

    /// The same backend under a new config: its counts carry over (a change of `rise` or `fall`
    /// applies to them), its state is `up` as the forwarder has it now.
    pub const fn reconfigured(self, up: bool) -> RiseFall {
        RiseFall { up, ..self }
    }

    /// The state after a check ended with `result`, and the transition that result caused.
    pub fn after(self, result: CheckResult, rules: &Rules) -> (RiseFall, Option<Transition>) {
        let mut next = self;
        let transition = match result {
            CheckResult::Passed => {
                next.failures = 0;
                next.successes = next.successes.saturating_add(1);
                (!next.up && next.successes >= rules.rise).then_some(Transition::Up)
            }
            CheckResult::Failed => {
                next.successes = 0;
                next.failures = next.failures.saturating_add(1);
                (next.up && next.failures >= rules.fall).then_some(Transition::Down)
            }
        };
        if let Some(t) = transition {
            next.up = t == Transition::Up;
            next.transitions += 1;
        }
        (next, transition)
    }

    /// Whether the backend is up.
    pub const fn up(&self) -> bool {
        self.up
    }

    /// Successes in a row so far.
    pub const fn successes(&self) -> u32 {
        self.successes
    }

    /// Failures in a row so far.
    pub const fn failures(&self) -> u32 {
        self.failures
    }

    /// Up/down changes so far (a metric).
    pub const fn transitions(&self) -> u64 {
        self.transitions
    }
}

/// When a backend's checks run: the next start, and the start of the check in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    next_ms: u64,
    started_ms: Option<u64>,
}

impl Schedule {
    /// The schedule of a VIP's backend number `index` that was not checked before: the first
    /// check [`FIRST_CHECK_MS`] from `now_ms`, the backends' first checks spread over the interval.
    pub fn first(index: usize, rules: &Rules, now_ms: u64) -> Schedule {
        let spread = (index as u64).wrapping_mul(FIRST_CHECK_SPREAD_MS) % rules.interval_ms.max(1);
        Schedule {
            next_ms: now_ms + FIRST_CHECK_MS + spread,
            started_ms: None,
        }
    }

    /// Whether a check is due at `now_ms` (none is in flight and its time has come); if so, the
    /// one after it is scheduled an interval from now, however this one goes.
    pub fn take_due(&mut self, now_ms: u64, rules: &Rules) -> bool {
        let due = self.started_ms.is_none() && now_ms >= self.next_ms;
        if due {
            self.next_ms = now_ms + rules.interval_ms;
        }
        due
    }

    /// The check that was due went out at `now_ms` (its connection attempt started).
    pub fn started(&mut self, now_ms: u64) {
        self.started_ms = Some(now_ms);
    }

    /// Whether a check is in flight.
    pub const fn in_flight(&self) -> bool {
        self.started_ms.is_some()
    }

    /// Whether the check in flight has been waiting for its answer for the whole timeout.
    pub fn timed_out(&self, now_ms: u64, rules: &Rules) -> bool {
        self.started_ms
            .is_some_and(|started| now_ms.saturating_sub(started) >= rules.timeout_ms)
    }

    /// The check in flight is over (its result goes to [`RiseFall::after`]).
    pub fn finished(&mut self) {
        self.started_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        rise: 2,
        fall: 3,
        interval_ms: 1000,
        timeout_ms: 500,
    };

    /// Feed `results` (`+` passed, `-` failed) and write down the transitions (`U`, `D`, `.`).
    fn run(start: RiseFall, results: &str) -> (RiseFall, String) {
        let mut state = start;
        let mut seen = String::new();
        for r in results.chars() {
            let result = if r == '+' {
                CheckResult::Passed
            } else {
                CheckResult::Failed
            };
            let (next, t) = state.after(result, &RULES);
            state = next;
            seen.push(match t {
                Some(Transition::Up) => 'U',
                Some(Transition::Down) => 'D',
                None => '.',
            });
        }
        (state, seen)
    }

    #[test]
    fn fall_failures_in_a_row_take_it_down_and_rise_successes_bring_it_back() {
        let (state, seen) = run(RiseFall::new(true), "--+---++-+");
        assert_eq!(seen, ".....D.U..");
        assert!(state.up());
        assert_eq!(state.transitions(), 2);
        assert_eq!((state.successes(), state.failures()), (1, 0));
    }

    #[test]
    fn a_down_backend_stays_down_until_rise_successes() {
        let (state, seen) = run(RiseFall::new(false), "+-+-+");
        assert_eq!(seen, ".....");
        assert!(!state.up());
        assert_eq!(state.transitions(), 0);
    }

    #[test]
    fn results_in_the_current_state_cause_no_transition() {
        let (state, seen) = run(RiseFall::new(true), "+++++");
        assert_eq!(seen, ".....");
        assert_eq!(state.successes(), 5);
    }

    #[test]
    fn counts_saturate() {
        let state = RiseFall {
            up: false,
            successes: 0,
            failures: u32::MAX,
            transitions: 0,
        };
        let (state, t) = state.after(CheckResult::Failed, &RULES);
        assert_eq!((state.failures(), t), (u32::MAX, None));
    }

    #[test]
    fn a_kept_backend_keeps_its_counts_and_takes_the_forwarders_state() {
        let (state, _) = run(RiseFall::new(true), "---+-");
        let kept = state.reconfigured(true);
        assert!(kept.up());
        assert_eq!(kept.transitions(), 1);
        assert_eq!((kept.successes(), kept.failures()), (0, 1));
        // Two more failures reach `fall` again from the kept count.
        let (_, seen) = run(kept, "--");
        assert_eq!(seen, ".D");
    }

    #[test]
    fn first_checks_are_spread_over_the_interval() {
        let firsts: Vec<u64> = (0..12)
            .map(|i| Schedule::first(i, &RULES, 10_000).next_ms)
            .collect();
        assert_eq!(firsts[0], 10_500);
        assert_eq!(firsts[1], 10_597);
        assert_eq!(firsts[11], 10_500 + 1067 % 1000);
        assert!(firsts.iter().all(|t| (10_500..11_500).contains(t)));
    }

    #[test]
    fn a_check_is_due_once_per_interval_and_times_out() {
        let mut s = Schedule::first(0, &RULES, 0);
        assert!(!s.take_due(499, &RULES));
        assert!(s.take_due(500, &RULES));
        s.started(500);
        assert!(s.in_flight());
        // Not due again while one is in flight, even past the next start.
        assert!(!s.take_due(1600, &RULES));
        assert!(!s.timed_out(999, &RULES));
        assert!(s.timed_out(1000, &RULES));
        s.finished();
        assert!(!s.in_flight() && !s.timed_out(5000, &RULES));
        // The next start was set when the last one was taken: 500 + interval.
        assert!(!s.take_due(1499, &RULES));
        assert!(s.take_due(1600, &RULES));
        assert!(s.take_due(2600, &RULES));
    }
}
