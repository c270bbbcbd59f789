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
//!
//! Under overload a check must not turn the balancer's own trouble into a backend's outage. Only
//! evidence from the backend counts against it: a refused or reset connection always does, a
//! check left unanswered only when the balancer's receive path dropped nothing while it waited
//! (else the answer may have been among the frames the balancer lost: the result is
//! inconclusive and counts for nothing, see [`CheckResult`]). And [`DownLimit`] bounds how many
//! backends of one VIP one round of checks (an interval) may take down, so that whatever fails
//! alike for all of them at once costs the VIP at most that many per round.

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
    /// The backend's own answer says it is not serving: the connection was refused or reset,
    /// or the check cannot be made at all (no route to it). Always counts as a failure.
    Refused,
    /// No answer came within the timeout (or the next hop did not answer ARP). A failure only
    /// if `receive_dropping` is false: while the balancer's own receive path was dropping frames
    /// (its ring overflowed, its pool or its local queue ran out), the answer may have been one
    /// of them, and the result is inconclusive.
    Unanswered {
        /// The balancer lost received frames between the check's start and its end.
        receive_dropping: bool,
    },
}

impl CheckResult {
    /// What the result says about the backend: `Some(true)` passed, `Some(false)` failed,
    /// `None` inconclusive.
    pub const fn evidence(self) -> Option<bool> {
        match self {
            CheckResult::Passed => Some(true),
            CheckResult::Refused => Some(false),
            CheckResult::Unanswered { receive_dropping } => {
                if receive_dropping {
                    None
                } else {
                    Some(false)
                }
            }
        }
    }
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
    inconclusive: u64,
}

impl RiseFall {
    /// A backend checked for the first time, `up` or not, with nothing counted yet.
    pub const fn new(up: bool) -> RiseFall {
        RiseFall {
            up,
            successes: 0,
            failures: 0,
            transitions: 0,
            inconclusive: 0,
        }
    }

    /// The same backend under a new config: its counts carry over (a change of `rise` or `fall`
    /// applies to them), its state is `up` as the forwarder has it now.
    pub const fn reconfigured(self, up: bool) -> RiseFall {
        RiseFall { up, ..self }
    }

    /// The state after a check ended with `result`, and the transition that result caused.
    /// `may_go_down` is whether the VIP's [`DownLimit`] leaves room for one more backend this
    /// round: without it a failure that reaches `fall` is counted but the backend stays up (the
    /// next failure tries again). An inconclusive result changes nothing but its own count.
    pub fn after(
        self,
        result: CheckResult,
        rules: &Rules,
        may_go_down: bool,
    ) -> (RiseFall, Option<Transition>) {
        let mut next = self;
        let transition = match result.evidence() {
            Some(true) => {
                next.failures = 0;
                next.successes = next.successes.saturating_add(1);
                (!next.up && next.successes >= rules.rise).then_some(Transition::Up)
            }
            Some(false) => {
                next.successes = 0;
                next.failures = next.failures.saturating_add(1);
                (next.up && next.failures >= rules.fall && may_go_down).then_some(Transition::Down)
            }
            None => {
                next.inconclusive += 1;
                None
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

    /// Inconclusive results so far (a metric): checks unanswered while the balancer dropped.
    pub const fn inconclusive(&self) -> u64 {
        self.inconclusive
    }
}

/// How many backends of one VIP one round of checks may take down: at most a third of them
/// (at least one) per interval. Checks of a VIP's backends run spread over the interval; a
/// round is the interval that started with the first down it allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownLimit {
    round_start_ms: Option<u64>,
    taken: u32,
}

impl DownLimit {
    /// Most downs per round for a VIP of `backends` checked backends.
    pub const fn per_round(backends: usize) -> u32 {
        let n = backends.div_ceil(3);
        if n == 0 {
            1
        } else {
            n as u32
        }
    }

    /// Whether one more backend of a VIP of `backends` may go down at `now_ms`.
    pub fn allows(&self, now_ms: u64, rules: &Rules, backends: usize) -> bool {
        match self.round_start_ms {
            Some(start) if now_ms.saturating_sub(start) < rules.interval_ms => {
                self.taken < Self::per_round(backends)
            }
            _ => true,
        }
    }

    /// A backend went down at `now_ms` (after [`allows`](Self::allows) said it may).
    pub fn take(&mut self, now_ms: u64, rules: &Rules) {
        match self.round_start_ms {
            Some(start) if now_ms.saturating_sub(start) < rules.interval_ms => self.taken += 1,
            _ => {
                self.round_start_ms = Some(now_ms);
                self.taken = 1;
            }
        }
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

    /// Feed `results` (`+` passed, `-` refused, `t` unanswered, `?` unanswered while the
    /// balancer dropped) and write down the transitions (`U`, `D`, `.`).
    fn run(start: RiseFall, results: &str) -> (RiseFall, String) {
        let mut state = start;
        let mut seen = String::new();
        for r in results.chars() {
            let result = match r {
                '+' => CheckResult::Passed,
                '-' => CheckResult::Refused,
                't' => CheckResult::Unanswered {
                    receive_dropping: false,
                },
                _ => CheckResult::Unanswered {
                    receive_dropping: true,
                },
            };
            let (next, t) = state.after(result, &RULES, true);
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
            inconclusive: 0,
        };
        let (state, t) = state.after(CheckResult::Refused, &RULES, true);
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
    fn timeouts_while_the_balancer_drops_are_inconclusive() {
        // A flood overflows the balancer's ring: however many checks go unanswered, the
        // backend stays up, and the counts it had are kept.
        let (state, seen) = run(RiseFall::new(true), "t??????????");
        assert_eq!(seen, "...........");
        assert!(state.up());
        assert_eq!((state.failures(), state.inconclusive()), (1, 10));
        // Timeouts while nothing was dropped are the backend's own: fall of them take it down.
        let (_, seen) = run(state, "tt");
        assert_eq!(seen, ".D");
        // A refusal is evidence even during a flood; an inconclusive result resets nothing.
        let (state, seen) = run(RiseFall::new(true), "-?-?-");
        assert_eq!(seen, "....D");
        let (state, seen) = run(state, "+?+");
        assert_eq!(seen, "..U");
        assert!(state.up());
    }

    #[test]
    fn a_failure_past_fall_waits_for_the_down_limit() {
        let (state, _) = run(RiseFall::new(true), "--");
        let (state, t) = state.after(CheckResult::Refused, &RULES, false);
        assert_eq!(t, None);
        assert!(state.up());
        assert_eq!(state.failures(), 3);
        let (state, t) = state.after(CheckResult::Refused, &RULES, true);
        assert_eq!(t, Some(Transition::Down));
        assert!(!state.up());
    }

    #[test]
    fn one_round_takes_down_at_most_a_third_of_a_vips_backends() {
        assert_eq!(
            [0, 1, 2, 3, 4, 6, 7, 10].map(DownLimit::per_round),
            [1, 1, 1, 1, 2, 2, 3, 4]
        );
        let mut limit = DownLimit::default();
        assert!(limit.allows(5000, &RULES, 2));
        limit.take(5000, &RULES);
        // The other backend of two waits for the next round...
        assert!(!limit.allows(5999, &RULES, 2));
        // ...which starts an interval after the first down.
        assert!(limit.allows(6000, &RULES, 2));
        limit.take(6000, &RULES);
        assert!(!limit.allows(6500, &RULES, 2));
        // Six backends: two per round.
        let mut limit = DownLimit::default();
        limit.take(0, &RULES);
        assert!(limit.allows(10, &RULES, 6));
        limit.take(10, &RULES);
        assert!(!limit.allows(20, &RULES, 6));
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
