//! How the management server shares its connections: how many at once, how many one source may
//! hold, and how long each may live. The kernel's server owns the sockets; it asks
//! [`admit`] about every new connection and [`Slot::expired`] about every connection it holds.
//!
//! The threats are clients that hold connections without finishing them: one that connects and
//! trickles a byte now and then (a deadline that progress pushes forward never fires, so every
//! connection also has an absolute one, [`TOTAL_MS`]), a flood of spoofed SYNs from an allowed
//! prefix (a handshake must complete within [`HANDSHAKE_MS`]), a peer that vanishes while we
//! close (closing has [`CLOSING_MS`]), and one source opening many connections (at most
//! [`PER_SOURCE`]). And when a new connection takes the last free socket, the oldest connection
//! of the source holding the most goes, so that the server keeps a socket listening for a source
//! it has not seen yet.
//!
//! Responses are held whole until sent, and a `/metrics` or `/status` of the largest valid
//! config is megabytes: while more than [`UNSENT_BUDGET`] bytes of responses wait to be sent,
//! those two are answered 503 instead of rendered ([`may_render`]), so slow readers hold at most
//! the budget and one rendering, not one rendering each.

use super::{Request, Response};
use alloc::string::String;
use core::fmt;
use core::net::IpAddr;

/// Response bytes waiting to be sent, over all connections, above which [`may_render`] says no.
pub const UNSENT_BUDGET: usize = 1 << 20;

/// Connections served at the same time (listening sockets included: a free socket listens).
pub const CONNECTIONS: usize = 16;
/// Most connections one source address may hold at once.
pub const PER_SOURCE: usize = 4;
/// From the SYN to the handshake's completion.
pub const HANDSHAKE_MS: u64 = 3_000;
/// Longest time without progress (bytes read or written) on an established connection.
pub const IDLE_MS: u64 = 10_000;
/// Longest life of a connection from its SYN to our close, however it progresses: long enough
/// for the largest request body ([`MAX_BODY`](super::MAX_BODY)) and response on a slow path.
pub const TOTAL_MS: u64 = 30_000;
/// From our close (or abort) until the socket must be free again.
pub const CLOSING_MS: u64 = 3_000;

/// Where a connection is, for its deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// SYN received, handshake not complete.
    Handshake,
    /// Established: reading the request or writing the response.
    Serving,
    /// We closed it; waiting for the socket to settle.
    Closing,
}

/// Which deadline a connection missed (for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The handshake did not complete within [`HANDSHAKE_MS`] (a spoofed SYN, or a lost ACK).
    Handshake,
    /// No progress for [`IDLE_MS`].
    Idle,
    /// Alive for [`TOTAL_MS`].
    Total,
    /// Not settled [`CLOSING_MS`] after our close.
    Closing,
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expiry::Handshake => "handshake not completed in time",
            Expiry::Idle => "no progress in time",
            Expiry::Total => "connection lived too long",
            Expiry::Closing => "close not completed in time",
        })
    }
}

/// One connection the server holds: who it is from and its clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    source: IpAddr,
    accepted_ms: u64,
    progress_ms: u64,
    stage: Stage,
    stage_ms: u64,
}

impl Slot {
    /// A connection from `source` whose SYN arrived by `now_ms`.
    pub const fn new(source: IpAddr, now_ms: u64) -> Slot {
        Slot {
            source,
            accepted_ms: now_ms,
            progress_ms: now_ms,
            stage: Stage::Handshake,
            stage_ms: now_ms,
        }
    }

    /// The peer's address.
    pub const fn source(&self) -> IpAddr {
        self.source
    }

    /// When its SYN arrived.
    pub const fn accepted_ms(&self) -> u64 {
        self.accepted_ms
    }

    /// Where it is.
    pub const fn stage(&self) -> Stage {
        self.stage
    }

    /// It moved to `stage` at `now_ms` (a move to the stage it is in changes nothing).
    pub fn enter(&mut self, stage: Stage, now_ms: u64) {
        if stage != self.stage {
            self.stage = stage;
            self.stage_ms = now_ms;
            self.progress_ms = now_ms;
        }
    }

    /// Bytes moved at `now_ms`: the idle deadline starts again (the absolute one does not).
    pub fn progressed(&mut self, now_ms: u64) {
        self.progress_ms = now_ms;
    }

    /// The deadline it has missed at `now_ms`, if any: the server aborts it then.
    pub fn expired(&self, now_ms: u64) -> Option<Expiry> {
        let since = |t: u64| now_ms.saturating_sub(t);
        match self.stage {
            Stage::Closing => (since(self.stage_ms) > CLOSING_MS).then_some(Expiry::Closing),
            _ if since(self.accepted_ms) > TOTAL_MS => Some(Expiry::Total),
            Stage::Handshake => (since(self.stage_ms) > HANDSHAKE_MS).then_some(Expiry::Handshake),
            Stage::Serving => (since(self.progress_ms) > IDLE_MS).then_some(Expiry::Idle),
        }
    }
}

/// What to do with a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Serve it.
    Accept,
    /// Serve it, and abort the connection at this index of `held` to keep a socket listening.
    AcceptEvicting(usize),
    /// Abort it: its source holds [`PER_SOURCE`] connections already.
    Refuse,
}

/// Whether a new connection from `source` may have a socket, given the connections `held`
/// already (not counting the new one; closing ones count, they still hold a socket).
pub fn admit(held: &[Slot], source: IpAddr) -> Admit {
    let from = |a: IpAddr| held.iter().filter(|s| s.source == a).count();
    if from(source) >= PER_SOURCE {
        return Admit::Refuse;
    }
    // With the new one every socket would be busy: make room, from the source with the most
    // (the oldest connection among those of such sources), if some source has more than one.
    if held.len() + 1 < CONNECTIONS {
        return Admit::Accept;
    }
    let most = held.iter().map(|s| from(s.source)).max().unwrap_or(0);
    if most < 2 {
        return Admit::Accept;
    }
    held.iter()
        .enumerate()
        .filter(|(_, s)| from(s.source) == most)
        .min_by_key(|(_, s)| s.accepted_ms)
        .map_or(Admit::Accept, |(i, _)| Admit::AcceptEvicting(i))
}

/// Whether `request` may be answered while `unsent` response bytes wait to be sent: always,
/// except for the renderings that grow with the config (`/metrics`, `/status`) over the budget.
pub fn may_render(request: &Request, unsent: usize) -> bool {
    unsent <= UNSENT_BUDGET || !matches!(request.path.as_str(), "/metrics" | "/status")
}

/// The answer to a request [`may_render`] refused.
pub fn busy() -> Response {
    Response::text(
        503,
        String::from("other responses are still being sent; retry in a second\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(core::net::Ipv4Addr::new(10, 77, 0, last))
    }

    #[test]
    fn a_handshake_must_complete_in_time() {
        let mut s = Slot::new(ip(10), 1000);
        assert_eq!(s.expired(1000 + HANDSHAKE_MS), None);
        assert_eq!(s.expired(1001 + HANDSHAKE_MS), Some(Expiry::Handshake));
        s.enter(Stage::Serving, 1500);
        assert_eq!(s.expired(1001 + HANDSHAKE_MS), None);
    }

    #[test]
    fn progress_delays_the_idle_deadline_but_not_the_total_one() {
        let mut s = Slot::new(ip(10), 0);
        s.enter(Stage::Serving, 10);
        assert_eq!(s.expired(10 + IDLE_MS), None);
        assert_eq!(s.expired(11 + IDLE_MS), Some(Expiry::Idle));
        // A client that trickles a byte every few seconds keeps the idle deadline away...
        let mut t = 10;
        while t < TOTAL_MS {
            s.progressed(t);
            assert_eq!(s.expired(t + 1), None, "at {t}");
            t += 5000;
        }
        // ...but not the absolute one.
        s.progressed(TOTAL_MS);
        assert_eq!(s.expired(TOTAL_MS + 1), Some(Expiry::Total));
        // Neither does the handshake stage escape it.
        let s = Slot::new(ip(10), 0);
        assert_eq!(s.expired(TOTAL_MS + 1), Some(Expiry::Total));
    }

    #[test]
    fn closing_has_a_deadline_of_its_own() {
        let mut s = Slot::new(ip(10), 0);
        s.enter(Stage::Serving, 100);
        s.enter(Stage::Closing, 29_000);
        // Past the total deadline, but closing: only its own deadline counts.
        assert_eq!(s.expired(29_000 + CLOSING_MS), None);
        assert_eq!(s.expired(29_001 + CLOSING_MS), Some(Expiry::Closing));
        // Entering the stage it is in does not restart the clock.
        s.enter(Stage::Closing, 31_000);
        assert_eq!(s.expired(29_001 + CLOSING_MS), Some(Expiry::Closing));
    }

    #[test]
    fn renderings_wait_while_the_budget_is_spent_and_pushes_do_not() {
        let req = |method: &str, path: &str| Request {
            method: method.into(),
            path: path.into(),
            body: Vec::new(),
        };
        for path in ["/metrics", "/status"] {
            assert!(may_render(&req("GET", path), UNSENT_BUDGET));
            assert!(!may_render(&req("GET", path), UNSENT_BUDGET + 1));
        }
        assert!(may_render(&req("PUT", "/config"), usize::MAX));
        let b = busy();
        assert_eq!(b.status, 503);
        assert!(String::from_utf8(b.to_bytes())
            .unwrap()
            .starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    }

    #[test]
    fn one_source_holds_at_most_its_share() {
        let mut held = Vec::new();
        for t in 0..PER_SOURCE as u64 {
            assert_eq!(admit(&held, ip(10)), Admit::Accept);
            held.push(Slot::new(ip(10), t));
        }
        assert_eq!(admit(&held, ip(10)), Admit::Refuse);
        assert_eq!(admit(&held, ip(1)), Admit::Accept);
    }

    #[test]
    fn the_last_socket_is_made_room_for_from_the_heaviest_source() {
        // Four sources hold 4 + 4 + 4 + 3 = 15 sockets: a 16th connection would leave none
        // listening, so the oldest connection of a source with the most goes.
        let mut held = Vec::new();
        for (src, n) in [(1u8, 4u64), (2, 4), (3, 4), (4, 3)] {
            for k in 0..n {
                held.push(Slot::new(ip(src), u64::from(src) * 100 + (n - k)));
            }
        }
        assert_eq!(held.len(), CONNECTIONS - 1);
        match admit(&held, ip(5)) {
            Admit::AcceptEvicting(i) => {
                assert_eq!(held[i].source(), ip(1));
                assert_eq!(held[i].accepted_ms(), 101, "the oldest of its connections");
            }
            other => panic!("{other:?}"),
        }
        // The source already at its share is refused, whatever room there is.
        assert_eq!(admit(&held, ip(1)), Admit::Refuse);
        // One connection per source: nobody to evict; the new one takes the last socket.
        let one_each: Vec<Slot> = (0..CONNECTIONS as u8 - 1)
            .map(|i| Slot::new(ip(100 + i), 0))
            .collect();
        assert_eq!(admit(&one_each, ip(1)), Admit::Accept);
    }
}
