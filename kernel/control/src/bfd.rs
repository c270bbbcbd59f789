//! Bidirectional Forwarding Detection (RFC 5880), asynchronous mode, single hop (RFC 5881): a
//! session per BGP peer, so that a router notices a dead balancer in a fraction of a second
//! rather than after a BGP hold time, and the balancer notices a dead router as fast.
//!
//! [`Packet`] is the control packet codec (no authentication: a packet with the A bit is
//! refused, as RFC 5881 single-hop sessions are protected by TTL 255 instead). [`Session`] is the
//! state machine of RFC 5880 6.8.6, with the timers of 6.8.2 to 6.8.4 and 6.8.7 and the poll
//! sequence of 6.5 that a change of intervals after the session is up needs. Times are
//! microseconds since boot, never going back; the kernel owns the UDP socket and the clock.

/// UDP port a single-hop session's control packets go to (RFC 5881 4).
pub const PORT: u16 = 3784;
/// Source ports a session sends from (RFC 5881 4: 49152 to 65535).
pub const SOURCE_PORTS: core::ops::RangeInclusive<u16> = 49152..=65535;
/// TTL of every packet sent, and the only one accepted (RFC 5881 5).
pub const TTL: u8 = 255;
/// Length of a control packet without authentication.
pub const LEN: usize = 24;

/// How often the balancer sends once the session is up, and how often it asks to receive.
pub const INTERVAL_US: u32 = 100_000;
/// Detection multiplier: packets missed before the session is declared down (so a peer that
/// accepts [`INTERVAL_US`] detects a dead balancer in 300 ms).
pub const DETECT_MULT: u8 = 3;
/// While not up, the balancer sends no faster than once a second (RFC 5880 6.8.3).
pub const SLOW_US: u32 = 1_000_000;

/// A session's state (RFC 5880 4.1, the Sta field).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    /// Held down by its owner.
    AdminDown,
    /// No session (or it failed).
    Down,
    /// The peer is heard, and has not yet said it hears us.
    Init,
    /// Both ends hear each other.
    Up,
}

impl State {
    fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// The state's name, lower case, as `/status` shows it.
    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "admin_down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        }
    }
}

/// Why a session last went down (RFC 5880 4.1, the Diag field; the ones this end uses).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Diag {
    /// None.
    None = 0,
    /// Control detection time expired: nothing heard for the detection time.
    Expired = 1,
    /// The neighbour said it went down.
    NeighborDown = 3,
    /// Administratively down.
    AdminDown = 7,
}

/// A control packet (RFC 5880 4.1) without authentication.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Packet {
    /// The sender's diagnostic code.
    pub diag: u8,
    /// The sender's state.
    pub state: State,
    /// Poll: the sender asks for a packet with Final.
    pub poll: bool,
    /// Final: the answer to a Poll.
    pub fin: bool,
    /// Detection multiplier.
    pub detect_mult: u8,
    /// The sender's discriminator.
    pub my_disc: u32,
    /// The discriminator the sender has heard from us (0 if none).
    pub your_disc: u32,
    /// Microseconds: the fastest the sender wants to send.
    pub desired_min_tx: u32,
    /// Microseconds: the fastest the sender can receive (0: send it nothing).
    pub required_min_rx: u32,
}

/// Why a received control packet was discarded (RFC 5880 6.8.6's checks).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refused {
    /// Shorter than a packet, or its length field disagrees with the datagram.
    Length,
    /// Not version 1.
    Version,
    /// The A bit: authentication, which single-hop sessions here do not use.
    Authenticated,
    /// Detection multiplier 0, the M bit, or My Discriminator 0.
    Field,
    /// Your Discriminator 0 while the sender is neither down nor admin-down, or not ours.
    Discriminator,
    /// Not TTL 255: not from a neighbour on the link (RFC 5881 5).
    Ttl,
}

impl Refused {
    /// The reason's label for counters.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Length => "length",
            Refused::Version => "version",
            Refused::Authenticated => "authenticated",
            Refused::Field => "field",
            Refused::Discriminator => "discriminator",
            Refused::Ttl => "ttl",
        }
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Packet {
    /// Parse a UDP payload, with the checks of RFC 5880 6.8.6 that need no session.
    pub fn parse(b: &[u8]) -> Result<Packet, Refused> {
        if b.len() < LEN {
            return Err(Refused::Length);
        }
        if b[0] >> 5 != 1 {
            return Err(Refused::Version);
        }
        let flags = b[1];
        if flags & 0x04 != 0 {
            return Err(Refused::Authenticated);
        }
        if usize::from(b[3]) < LEN || usize::from(b[3]) > b.len() {
            return Err(Refused::Length);
        }
        let p = Packet {
            diag: b[0] & 0x1f,
            state: State::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            fin: flags & 0x10 != 0,
            detect_mult: b[2],
            my_disc: be32(b, 4),
            your_disc: be32(b, 8),
            desired_min_tx: be32(b, 12),
            required_min_rx: be32(b, 16),
        };
        if p.detect_mult == 0 || flags & 0x01 != 0 || p.my_disc == 0 {
            return Err(Refused::Field);
        }
        if p.your_disc == 0 && !matches!(p.state, State::Down | State::AdminDown) {
            return Err(Refused::Discriminator);
        }
        Ok(p)
    }

    /// The packet on the wire.
    pub fn write(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (1 << 5) | (self.diag & 0x1f);
        b[1] = (self.state.bits() << 6) | (u8::from(self.poll) << 5) | (u8::from(self.fin) << 4);
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        b[4..8].copy_from_slice(&self.my_disc.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_disc.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx.to_be_bytes());
        // Required Min Echo RX Interval stays 0: no echo function.
        b
    }
}

/// One single-hop session with a neighbour.
#[derive(Clone, Debug)]
pub struct Session {
    state: State,
    diag: Diag,
    my_disc: u32,
    your_disc: u32,
    /// What the neighbour last said.
    remote_state: State,
    remote_min_rx: u32,
    remote_desired_tx: u32,
    remote_mult: u8,
    /// The desired TX interval in force (slow while not up, [`INTERVAL_US`] once a poll
    /// sequence has confirmed it).
    desired_tx: u32,
    /// A poll sequence is under way (the interval is changing).
    polling: bool,
    /// The next packet must carry Final (answering a Poll).
    owe_final: bool,
    next_tx_us: u64,
    /// When the session goes down if nothing more is heard (only while Init or Up).
    detect_at: Option<u64>,
    /// Pseudo-random state for the transmit jitter.
    jitter: u32,
    /// When the state last changed.
    since_us: u64,
}

/// What [`Session::receive`] did with a packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Received {
    /// Taken; the state is now the one given (it may be unchanged).
    Taken(State),
    /// Discarded (counted by reason).
    Refused(Refused),
    /// Discarded: the session is held admin-down.
    Ignored,
}

impl Session {
    /// A session in Down, identified by `my_disc` (non-zero, unique among this balancer's
    /// sessions), starting at `now_us`.
    pub fn new(my_disc: u32, now_us: u64) -> Session {
        Session {
            state: State::Down,
            diag: Diag::None,
            my_disc: my_disc.max(1),
            your_disc: 0,
            remote_state: State::Down,
            remote_min_rx: 1,
            remote_desired_tx: 0,
            remote_mult: 0,
            desired_tx: SLOW_US,
            polling: false,
            owe_final: false,
            next_tx_us: now_us,
            detect_at: None,
            jitter: my_disc | 1,
            since_us: now_us,
        }
    }

    /// The session's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Why the session last went down.
    pub fn diag(&self) -> Diag {
        self.diag
    }

    /// When the state last changed (microseconds since boot).
    pub fn since_us(&self) -> u64 {
        self.since_us
    }

    /// This end's discriminator.
    pub fn my_disc(&self) -> u32 {
        self.my_disc
    }

    fn set_state(&mut self, state: State, diag: Diag, now_us: u64) {
        if state == self.state {
            return;
        }
        self.state = state;
        self.since_us = now_us;
        if state == State::Up {
            // Speed up from the slow rate by a poll sequence (RFC 5880 6.8.3).
            self.desired_tx = INTERVAL_US;
            self.polling = true;
            self.next_tx_us = now_us;
        } else {
            self.diag = diag;
            self.desired_tx = SLOW_US;
            self.polling = false;
            if state == State::Down {
                self.your_disc = 0;
                self.detect_at = None;
            }
        }
    }

    /// Hold the session down (a config push that removes the peer, or BFD turned off), telling
    /// the neighbour so; or let it come up again.
    pub fn set_admin_down(&mut self, down: bool, now_us: u64) {
        if down {
            self.set_state(State::AdminDown, Diag::AdminDown, now_us);
            self.detect_at = None;
            self.next_tx_us = now_us;
        } else if self.state == State::AdminDown {
            self.set_state(State::Down, Diag::None, now_us);
        }
    }

    /// The detection time the neighbour's packets are held to: its multiplier times the agreed
    /// interval (the slower of what it sends and what we can receive; RFC 5880 6.8.4).
    fn detection_us(&self) -> u64 {
        u64::from(self.remote_mult) * u64::from(INTERVAL_US.max(self.remote_desired_tx))
    }

    /// Take a packet that arrived with `ttl` at `now_us`.
    pub fn receive(&mut self, p: &Packet, ttl: u8, now_us: u64) -> Received {
        if ttl != TTL {
            return Received::Refused(Refused::Ttl);
        }
        if p.your_disc != 0 && p.your_disc != self.my_disc {
            return Received::Refused(Refused::Discriminator);
        }
        if self.state == State::AdminDown {
            return Received::Ignored;
        }
        self.your_disc = p.my_disc;
        self.remote_min_rx = p.required_min_rx;
        self.remote_desired_tx = p.desired_min_tx;
        self.remote_mult = p.detect_mult;
        self.remote_state = p.state;
        if p.fin {
            self.polling = false;
        }
        if p.poll {
            self.owe_final = true;
            self.next_tx_us = now_us;
        }
        match (self.state, p.state) {
            (_, State::AdminDown) => {
                self.set_state(State::Down, Diag::NeighborDown, now_us);
                return Received::Taken(self.state);
            }
            (State::Down, State::Down) => self.set_state(State::Init, Diag::None, now_us),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                self.set_state(State::Up, Diag::None, now_us)
            }
            (State::Up, State::Down) => {
                self.set_state(State::Down, Diag::NeighborDown, now_us);
                return Received::Taken(self.state);
            }
            _ => {}
        }
        if matches!(self.state, State::Init | State::Up) {
            self.detect_at = Some(now_us + self.detection_us());
        }
        Received::Taken(self.state)
    }

    /// The transmit interval in force: the slower of ours and what the neighbour can receive
    /// (RFC 5880 6.8.7); `None` when the neighbour asked for nothing (Required Min RX 0).
    fn tx_interval(&self) -> Option<u32> {
        (self.remote_min_rx != 0).then(|| self.desired_tx.max(self.remote_min_rx))
    }

    /// What to send at `now_us`, if anything, after expiring the session if the neighbour went
    /// quiet. Call it whenever [`Session::next_event_us`] is due (or more often).
    pub fn poll(&mut self, now_us: u64) -> Option<Packet> {
        if let Some(at) = self.detect_at {
            if now_us >= at {
                self.set_state(State::Down, Diag::Expired, now_us);
                self.remote_min_rx = 1;
            }
        }
        if now_us < self.next_tx_us && !self.owe_final {
            return None;
        }
        let interval = self.tx_interval();
        let fin = core::mem::take(&mut self.owe_final);
        if interval.is_none() && !fin {
            return None;
        }
        // The next regular packet 75 to 100 % of the interval away; 90 % at most with a
        // multiplier of 1 (RFC 5880 6.8.7).
        let interval = u64::from(interval.unwrap_or(SLOW_US));
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 17;
        self.jitter ^= self.jitter << 5;
        let top = if DETECT_MULT == 1 { 90 } else { 100 };
        let percent = 75 + u64::from(self.jitter) % (top - 75 + 1);
        self.next_tx_us = now_us + interval * percent / 100;
        Some(Packet {
            diag: self.diag as u8,
            state: self.state,
            poll: self.polling && !fin,
            fin,
            detect_mult: DETECT_MULT,
            my_disc: self.my_disc,
            your_disc: self.your_disc,
            desired_min_tx: self.desired_tx,
            required_min_rx: INTERVAL_US,
        })
    }

    /// When [`Session::poll`] next has something to do.
    pub fn next_event_us(&self) -> u64 {
        match self.detect_at {
            Some(at) => at.min(self.next_tx_us),
            None => self.next_tx_us,
        }
    }
}

#[cfg(test)]
mod tests;
