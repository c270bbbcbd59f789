//! One peer's BGP session (RFC 4271 section 8) as a value stepped by the kernel: each
//! [`Session::step`] takes the time in milliseconds and one [`Event`] (a tick, the outgoing TCP
//! connection up, a connection closed, bytes received) and appends the [`Action`]s to take
//! (open the outgoing connection, send bytes, close a connection). It never blocks or reads a
//! clock, so every path is tested on the host.
//!
//! **Connections.** The session opens actively (one outgoing connection to the peer's port 179)
//! and passively (the kernel offers it incoming connections from the peer's address with
//! [`Session::accept_incoming`]); it holds at most one connection each way. The outgoing one is
//! started only while there is no connection at all, so a collision needs both sides to dial at
//! the same moment; it is then resolved as RFC 4271 6.8 says: once both connections have
//! received an OPEN, the one opened by the side with the larger BGP identifier stays and the
//! other is closed with Cease / Connection Collision Resolution; a connection that reaches
//! Established closes the other; a connection still dialling is dropped as soon as the other
//! has an OPEN.
//!
//! **Timers.** OpenSent waits [`OPEN_HOLD_MS`] for the peer's OPEN; the hold time is the smaller
//! of the two proposed (0 turns both timers off) and a KEEPALIVE goes out every third of it
//! (also restarted by each UPDATE sent). A dial that is not up after [`CONNECT_TIMEOUT_MS`] is
//! abandoned.
//!
//! **Failures.** A malformed or unexpected message is answered with the NOTIFICATION the RFC
//! names and the connection closed; when no connection is left, the session waits a backoff
//! (1 s doubling to 60 s; back to 1 s after a session that stayed up a minute) before dialling
//! again. After an error on an open session it is Idle meanwhile and refuses incoming
//! connections too (as RFC 4271's DampPeerOscillations); after a dial that failed it is Active
//! and takes incoming ones.
//!
//! **Routes.** Once Established, the session sends UPDATEs that bring the peer from what it was
//! sent to the desired set of addresses given with each step: IPv4 ones as /32s (NEXT_HOP = the
//! interface address), IPv6 ones as /128s in MP_REACH_NLRI / MP_UNREACH_NLRI (next hop =
//! `interface.address6`), each with ORIGIN IGP, AS_PATH = [own AS] and LOCAL_PREF 100 to an
//! internal peer. A family goes only to a peer that negotiated it (both OPENs carried its
//! multiprotocol capability); IPv6 unicast is offered only when there is an IPv6 next hop, so
//! a balancer without `address6` opens exactly as an IPv4-only speaker. UPDATEs from the peer
//! are checked and ignored: nothing is imported.

use super::message::{
    code, Attribute, Message, Notification, Open, Segment, Update, AS_SEQUENCE, HEADER_LEN,
    MAX_LEN, ORIGIN_IGP,
};
use super::speaker::Routes;
use crate::config::{Prefix, Prefix6, VIPS_MAX};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How long OpenSent waits for the peer's OPEN (RFC 4271 8.2.2 suggests four minutes).
pub const OPEN_HOLD_MS: u64 = 240_000;
/// How long a dial may take before it is abandoned.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// The first wait after a failure; each further failure doubles it up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_MIN_MS: u64 = 1_000;
/// The longest wait between attempts.
pub const BACKOFF_MAX_MS: u64 = 60_000;
/// A session up this long before it fails starts the backoff again from its minimum.
pub const STABLE_MS: u64 = 60_000;
/// LOCAL_PREF sent to internal peers (the customary default).
pub const LOCAL_PREF: u32 = 100;

// One UPDATE always holds every IPv4 route: each /32 takes 5 bytes, withdrawn or announced.
const _: () = assert!(HEADER_LEN + 4 + 2 * VIPS_MAX * 5 + 64 <= MAX_LEN);
/// The most /128s (17 bytes each) in one UPDATE; more go in several.
const ROUTES6_PER_UPDATE: usize = 200;
// Beside them: the header, two length fields, MP_REACH_NLRI's framing with a link-local next
// hop (41 bytes) and ORIGIN, AS_PATH, LOCAL_PREF, AS4_PATH (at most 29 bytes).
const _: () = assert!(HEADER_LEN + 4 + 41 + 29 + ROUTES6_PER_UPDATE * 17 <= MAX_LEN);

/// Which of the session's two TCP connections an event or action is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// The one this balancer dials (to the peer's port 179).
    Outgoing,
    /// The one the peer dialled (to this balancer's port 179).
    Incoming,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Outgoing => 0,
            Dir::Incoming => 1,
        }
    }
    fn other(self) -> Dir {
        match self {
            Dir::Outgoing => Dir::Incoming,
            Dir::Incoming => Dir::Outgoing,
        }
    }
}

/// What happened, as the kernel tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Time passed (the kernel's poll): timers, dialling and route changes.
    Tick,
    /// The outgoing connection asked for by [`Action::Connect`] is established.
    Connected,
    /// A connection was closed or reset by the peer, or failed to connect.
    Closed(Dir),
    /// Bytes arrived on a connection (any part of the stream; messages may span events).
    Received(Dir, &'a [u8]),
}

/// What the kernel is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open the outgoing connection: from the interface address to the peer's port 179 (any
    /// earlier outgoing socket is discarded).
    Connect,
    /// Send these bytes on a connection.
    Send(Dir, Vec<u8>),
    /// Close a connection once what was sent on it has gone out.
    Close(Dir),
}

/// The session's state as RFC 4271 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Waiting out a backoff after an error; incoming connections are refused.
    Idle,
    /// Dialling the peer.
    Connect,
    /// Waiting for the peer to dial (and for the next own dial).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Up: routes are exchanged.
    Established,
}

impl State {
    /// The RFC's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

/// Why a session last went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Down {
    /// This side sent a NOTIFICATION (an error in what the peer sent, a timer, a config change).
    Sent(Notification),
    /// The peer sent a NOTIFICATION.
    Received(Notification),
    /// The TCP connection was closed or could not be opened.
    Closed,
}

impl fmt::Display for Down {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (who, n) = match self {
            Down::Sent(n) => ("sent", n),
            Down::Received(n) => ("received", n),
            Down::Closed => return f.write_str("connection closed"),
        };
        write!(
            f,
            "{who} NOTIFICATION {}/{} ({})",
            n.code,
            n.subcode,
            n.code_name()
        )
    }
}

/// What a session is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// This balancer's AS.
    pub local_asn: u32,
    /// This balancer's BGP identifier.
    pub router_id: Ipv4Addr,
    /// The hold time proposed, in seconds.
    pub hold_time: u16,
    /// The next hop announced for IPv4 VIPs: the interface address.
    pub next_hop: Ipv4Addr,
    /// The next hop announced for IPv6 VIPs: `interface.address6`; without it IPv6 unicast is
    /// not offered.
    pub next_hop6: Option<Ipv6Addr>,
    /// The peer's address.
    pub peer: Ipv4Addr,
    /// The peer's AS, checked against its OPEN.
    pub peer_asn: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Connecting,
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Clone, Debug)]
struct Link {
    phase: Phase,
    since: u64,
    /// When the hold timer expires; `None` with a negotiated hold time of 0.
    hold_at: Option<u64>,
    /// When the next KEEPALIVE is due.
    keepalive_at: Option<u64>,
    hold_ms: u64,
    four_octet: bool,
    ipv4_unicast: bool,
    ipv6_unicast: bool,
    remote_id: Ipv4Addr,
    rx: Vec<u8>,
}

impl Link {
    fn new(phase: Phase, now: u64) -> Link {
        Link {
            phase,
            since: now,
            hold_at: Some(now + OPEN_HOLD_MS),
            keepalive_at: None,
            hold_ms: 0,
            four_octet: false,
            ipv4_unicast: false,
            ipv6_unicast: false,
            remote_id: Ipv4Addr::UNSPECIFIED,
            rx: Vec::new(),
        }
    }
    fn keepalive_ms(&self) -> u64 {
        self.hold_ms / 3
    }
    fn heard(&mut self, now: u64) {
        if self.hold_ms > 0 {
            self.hold_at = Some(now + self.hold_ms);
        }
    }
    /// Whether the session negotiated the family of `address`.
    fn carries(&self, address: &IpAddr) -> bool {
        match address {
            IpAddr::V4(_) => self.ipv4_unicast,
            IpAddr::V6(_) => self.ipv6_unicast,
        }
    }
}

/// One peer's session; see the module documentation.
#[derive(Clone, Debug)]
pub struct Session {
    params: Params,
    links: [Option<Link>; 2],
    /// No dial and no incoming connection before this (after an error).
    idle_until: u64,
    /// No dial before this.
    next_dial: u64,
    /// Whether the wait after an error is on (until `idle_until`).
    idle: bool,
    /// Failures since the session was last stable, for the backoff.
    failures: u32,
    established_at: Option<u64>,
    /// What the peer was sent and holds from us.
    sent: Routes,
    last_down: Option<Down>,
}

fn send(out: &mut Vec<Action>, dir: Dir, message: &Message, four_octet: bool) {
    out.push(Action::Send(dir, message.encode(four_octet)));
}

impl Session {
    /// A session that dials on its first tick.
    pub fn new(params: Params) -> Session {
        Session {
            params,
            links: [None, None],
            idle_until: 0,
            next_dial: 0,
            idle: false,
            failures: 0,
            established_at: None,
            sent: Routes::new(),
            last_down: None,
        }
    }

    /// What the session was configured with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The state, as RFC 4271 names it.
    pub fn state(&self) -> State {
        match self.links.iter().flatten().map(|l| l.phase).max() {
            Some(Phase::Established) => State::Established,
            Some(Phase::OpenConfirm) => State::OpenConfirm,
            Some(Phase::OpenSent) => State::OpenSent,
            Some(Phase::Connecting) => State::Connect,
            None if self.idle => State::Idle,
            None => State::Active,
        }
    }

    /// When (in the kernel's milliseconds) the session became Established, while it is.
    pub fn established_since(&self) -> Option<u64> {
        self.established_at
    }

    /// The routes the peer holds from this balancer.
    pub fn announced(&self) -> &Routes {
        &self.sent
    }

    /// Why the session last went down, if it ever did.
    pub fn last_down(&self) -> Option<&Down> {
        self.last_down.as_ref()
    }

    /// Whether to take a connection the peer dialled; if so it becomes the incoming connection
    /// (replacing an earlier one that is not Established, whose socket the kernel drops) and
    /// its OPEN is in `out`. Refused while Idle and while a connection is Established.
    pub fn accept_incoming(&mut self, now: u64, out: &mut Vec<Action>) -> bool {
        let established = self
            .links
            .iter()
            .flatten()
            .any(|l| l.phase == Phase::Established);
        if now < self.idle_until || established {
            return false;
        }
        self.links[Dir::Incoming.index()] = Some(Link::new(Phase::OpenSent, now));
        send(out, Dir::Incoming, &self.open(), false);
        true
    }

    /// Close every connection with Cease and `subcode` (the peer left the config, or its
    /// settings changed).
    pub fn stop(&mut self, subcode: u8, out: &mut Vec<Action>) {
        for dir in [Dir::Outgoing, Dir::Incoming] {
            if let Some(link) = self.links[dir.index()].take() {
                if link.phase != Phase::Connecting {
                    let n = Notification::new(code::CEASE, subcode, &[]);
                    send(out, dir, &Message::Notification(n), link.four_octet);
                }
                out.push(Action::Close(dir));
            }
        }
        self.established_at = None;
        self.sent.clear();
    }

    /// Take one event at time `now` (milliseconds, never going back); `desired` is the set of
    /// host routes (/32s, /128s) the peer should hold from this balancer.
    pub fn step(&mut self, now: u64, event: Event<'_>, desired: &Routes, out: &mut Vec<Action>) {
        match event {
            Event::Tick => self.tick(now, out),
            Event::Connected => self.connected(now, out),
            Event::Closed(dir) => {
                if let Some(link) = self.links[dir.index()].take() {
                    self.fail(now, Down::Closed, link.phase == Phase::Connecting);
                }
            }
            Event::Received(dir, bytes) => self.received(now, dir, bytes, out),
        }
        self.announce(now, desired, out);
    }

    fn open(&self) -> Message {
        Message::Open(Open {
            asn: self.params.local_asn,
            hold_time: self.params.hold_time,
            router_id: self.params.router_id,
            four_octet_as: true,
            ipv4_unicast: true,
            ipv6_unicast: self.params.next_hop6.is_some(),
        })
    }

    fn tick(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.idle && now >= self.idle_until {
            self.idle = false;
        }
        for dir in [Dir::Outgoing, Dir::Incoming] {
            let Some(link) = &mut self.links[dir.index()] else {
                continue;
            };
            if link.phase == Phase::Connecting {
                if now >= link.since + CONNECT_TIMEOUT_MS {
                    self.links[dir.index()] = None;
                    out.push(Action::Close(dir));
                    self.fail(now, Down::Closed, true);
                }
                continue;
            }
            if link.hold_at.is_some_and(|t| now >= t) {
                let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0, &[]);
                self.error(now, dir, n, out);
                continue;
            }
            if let Some(at) = link.keepalive_at.filter(|t| now >= *t) {
                link.keepalive_at = Some(now.max(at) + link.keepalive_ms());
                send(out, dir, &Message::Keepalive, link.four_octet);
            }
        }
        if self.links.iter().all(Option::is_none) && now >= self.idle_until && now >= self.next_dial
        {
            self.links[Dir::Outgoing.index()] = Some(Link::new(Phase::Connecting, now));
            out.push(Action::Connect);
        }
    }

    fn connected(&mut self, now: u64, out: &mut Vec<Action>) {
        match &mut self.links[Dir::Outgoing.index()] {
            Some(link) if link.phase == Phase::Connecting => {
                *link = Link::new(Phase::OpenSent, now);
                send(out, Dir::Outgoing, &self.open(), false);
            }
            // A dial given up on (or one never asked for) is not taken.
            _ => out.push(Action::Close(Dir::Outgoing)),
        }
    }

    /// Send `n` on `dir`, close it, and count the failure.
    fn error(&mut self, now: u64, dir: Dir, n: Notification, out: &mut Vec<Action>) {
        let four_octet = self.links[dir.index()].take().is_some_and(|l| l.four_octet);
        send(out, dir, &Message::Notification(n.clone()), four_octet);
        out.push(Action::Close(dir));
        self.fail(now, Down::Sent(n), false);
    }

    /// A connection is gone; with none left, wait a backoff. `dial` says the failure was a dial
    /// that did not connect (Active: incoming connections are still taken) rather than an error
    /// on an open session (Idle: they are not).
    fn fail(&mut self, now: u64, down: Down, dial: bool) {
        if !dial {
            self.last_down = Some(down);
        }
        if self.established_at.is_some() {
            // Only the Established connection carried routes; the other one (if any) was
            // closed when it got there.
            if self.established_at.is_some_and(|t| now >= t + STABLE_MS) {
                self.failures = 0;
            }
            self.established_at = None;
            self.sent.clear();
        }
        if self.links.iter().any(Option::is_some) {
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let delay = (BACKOFF_MIN_MS << (self.failures - 1).min(6)).min(BACKOFF_MAX_MS);
        self.next_dial = now + delay;
        if !dial {
            self.idle = true;
            self.idle_until = now + delay;
        }
    }

    fn received(&mut self, now: u64, dir: Dir, bytes: &[u8], out: &mut Vec<Action>) {
        let Some(link) = &mut self.links[dir.index()] else {
            return;
        };
        if link.phase == Phase::Connecting {
            return;
        }
        link.rx.extend_from_slice(bytes);
        loop {
            let Some(link) = &mut self.links[dir.index()] else {
                return;
            };
            let len = match super::message::frame(&link.rx) {
                Ok(Some(len)) => len,
                Ok(None) => return,
                Err(n) => return self.error(now, dir, n, out),
            };
            let decoded = Message::decode(&link.rx[..len], link.four_octet);
            link.rx.drain(..len);
            match decoded {
                Ok(message) => self.message(now, dir, message, out),
                Err(n) => return self.error(now, dir, n, out),
            }
        }
    }

    fn message(&mut self, now: u64, dir: Dir, message: Message, out: &mut Vec<Action>) {
        let Some(link) = &mut self.links[dir.index()] else {
            return;
        };
        let fsm = |subcode| Notification::new(code::FSM, subcode, &[]);
        match (link.phase, message) {
            (_, Message::Notification(n)) => {
                self.links[dir.index()] = None;
                self.fail(now, Down::Received(n), false);
            }
            (Phase::OpenSent, Message::Open(open)) => self.open_received(now, dir, open, out),
            (Phase::OpenSent, _) => self.error(now, dir, fsm(code::UNEXPECTED_IN_OPEN_SENT), out),
            (Phase::OpenConfirm, Message::Keepalive) => {
                link.phase = Phase::Established;
                link.heard(now);
                self.established_at = Some(now);
                self.sent.clear();
                self.close_other(dir, out);
            }
            (Phase::OpenConfirm, _) => {
                self.error(now, dir, fsm(code::UNEXPECTED_IN_OPEN_CONFIRM), out)
            }
            (Phase::Established, Message::Open(_)) => {
                self.error(now, dir, fsm(code::UNEXPECTED_IN_ESTABLISHED), out)
            }
            // KEEPALIVE, or an UPDATE that parsed: the peer is alive; its routes are not used.
            (Phase::Established, _) => link.heard(now),
            (Phase::Connecting, _) => {}
        }
    }

    fn open_received(&mut self, now: u64, dir: Dir, open: Open, out: &mut Vec<Action>) {
        let p = &self.params;
        if open.asn != p.peer_asn {
            let data = match u16::try_from(open.asn) {
                Ok(as2) => as2.to_be_bytes().to_vec(),
                Err(_) => open.asn.to_be_bytes().to_vec(),
            };
            let n = Notification::new(code::OPEN, code::BAD_PEER_AS, &data);
            return self.error(now, dir, n, out);
        }
        if p.peer_asn == p.local_asn && open.router_id == p.router_id {
            let n = Notification::new(
                code::OPEN,
                code::BAD_BGP_IDENTIFIER,
                &open.router_id.octets(),
            );
            return self.error(now, dir, n, out);
        }
        let hold_ms = u64::from(open.hold_time.min(p.hold_time)) * 1000;
        let Some(link) = &mut self.links[dir.index()] else {
            return;
        };
        link.phase = Phase::OpenConfirm;
        link.hold_ms = hold_ms;
        link.hold_at = (hold_ms > 0).then_some(now + hold_ms);
        link.keepalive_at = (hold_ms > 0).then_some(now + link.keepalive_ms());
        link.four_octet = open.four_octet_as;
        link.ipv4_unicast = open.ipv4_unicast;
        // Offered by both sides: ours is offered only with an IPv6 next hop.
        link.ipv6_unicast = open.ipv6_unicast && p.next_hop6.is_some();
        link.remote_id = open.router_id;
        send(out, dir, &Message::Keepalive, link.four_octet);
        self.resolve_collision(dir, out);
    }

    /// `dir` just received its OPEN: settle which connection stays (RFC 4271 6.8).
    fn resolve_collision(&mut self, dir: Dir, out: &mut Vec<Action>) {
        let other = dir.other();
        let Some(o) = &self.links[other.index()] else {
            return;
        };
        let loser = match o.phase {
            Phase::Connecting => {
                self.links[other.index()] = None;
                out.push(Action::Close(other));
                return;
            }
            Phase::OpenSent => return,
            Phase::Established => dir,
            Phase::OpenConfirm => {
                let remote = self.links[dir.index()]
                    .as_ref()
                    .map_or(Ipv4Addr::UNSPECIFIED, |l| l.remote_id);
                // The connection opened by the side with the larger identifier stays.
                if u32::from(self.params.router_id) > u32::from(remote) {
                    Dir::Incoming
                } else {
                    Dir::Outgoing
                }
            }
        };
        self.cease_collision(loser, out);
    }

    fn close_other(&mut self, dir: Dir, out: &mut Vec<Action>) {
        if self.links[dir.other().index()].is_some() {
            self.cease_collision(dir.other(), out);
        }
    }

    fn cease_collision(&mut self, dir: Dir, out: &mut Vec<Action>) {
        if let Some(link) = self.links[dir.index()].take() {
            if link.phase != Phase::Connecting {
                let n = Notification::new(code::CEASE, code::CONNECTION_COLLISION_RESOLUTION, &[]);
                send(out, dir, &Message::Notification(n), link.four_octet);
            }
            out.push(Action::Close(dir));
        }
    }

    /// Bring the peer from what it was sent to `desired` (the families it negotiated): one
    /// UPDATE for IPv4, withdrawals before announcements for IPv6 (as many as the /128s need).
    fn announce(&mut self, now: u64, desired: &Routes, out: &mut Vec<Action>) {
        let Some(dir) = [Dir::Outgoing, Dir::Incoming].into_iter().find(|d| {
            self.links[d.index()]
                .as_ref()
                .is_some_and(|l| l.phase == Phase::Established)
        }) else {
            return;
        };
        let Some(link) = &mut self.links[dir.index()] else {
            return;
        };
        let wanted: Routes = desired
            .iter()
            .filter(|a| link.carries(a))
            .copied()
            .collect();
        if wanted == self.sent {
            return;
        }
        let p = &self.params;
        let (mut withdrawn4, mut withdrawn6) = (Vec::new(), Vec::new());
        for address in self.sent.difference(&wanted) {
            match *address {
                IpAddr::V4(address) => withdrawn4.push(Prefix { address, len: 32 }),
                IpAddr::V6(address) => withdrawn6.push(Prefix6 { address, len: 128 }),
            }
        }
        let (mut nlri4, mut nlri6) = (Vec::new(), Vec::new());
        for address in wanted.difference(&self.sent) {
            match *address {
                IpAddr::V4(address) => nlri4.push(Prefix { address, len: 32 }),
                IpAddr::V6(address) => nlri6.push(Prefix6 { address, len: 128 }),
            }
        }
        // The attributes every announcement shares, after its next hop.
        let path = vec![Segment {
            kind: AS_SEQUENCE,
            asns: vec![p.local_asn],
        }];
        let mut common = vec![
            Attribute::Origin(ORIGIN_IGP),
            Attribute::AsPath(path.clone()),
        ];
        if p.peer_asn == p.local_asn {
            common.push(Attribute::LocalPref(LOCAL_PREF));
        }
        if !link.four_octet && p.local_asn > u32::from(u16::MAX) {
            common.push(Attribute::As4Path(path));
        }
        let mut updates = Vec::new();
        if !withdrawn4.is_empty() || !nlri4.is_empty() {
            let mut attributes = Vec::new();
            if !nlri4.is_empty() {
                attributes.extend_from_slice(&common[..2]);
                attributes.push(Attribute::NextHop(p.next_hop));
                attributes.extend_from_slice(&common[2..]);
            }
            updates.push(Update {
                withdrawn: withdrawn4,
                attributes,
                nlri: nlri4,
            });
        }
        for chunk in withdrawn6.chunks(ROUTES6_PER_UPDATE) {
            updates.push(Update {
                attributes: vec![Attribute::MpUnreach6(chunk.to_vec())],
                ..Update::default()
            });
        }
        // `carries` admitted IPv6 routes only with a next hop.
        if let Some(next_hop) = p.next_hop6 {
            for chunk in nlri6.chunks(ROUTES6_PER_UPDATE) {
                // MP_REACH_NLRI first, as RFC 7606 section 5.1 asks.
                let mut attributes = vec![Attribute::MpReach6 {
                    next_hop,
                    link_local: None,
                    nlri: chunk.to_vec(),
                }];
                attributes.extend_from_slice(&common);
                updates.push(Update {
                    attributes,
                    ..Update::default()
                });
            }
        }
        for update in updates {
            send(out, dir, &Message::Update(update), link.four_octet);
        }
        if link.hold_ms > 0 {
            link.keepalive_at = Some(now + link.keepalive_ms());
        }
        self.sent = wanted;
    }
}

#[cfg(test)]
mod tests;
