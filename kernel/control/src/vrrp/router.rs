//! One virtual router's state machine (RFC 9568 section 6.4, RFC 3768 section 6.4).
//!
//! A [`Router`] is a plain value: the kernel calls [`Router::start`] once, then
//! [`Router::poll`] with the time (milliseconds from any fixed origin) whenever
//! [`Router::deadline`] passes and [`Router::receive`] with every VRRP packet for it; each answers
//! with an [`Output`]: an advertisement to send and the state entered, if any. Entering
//! [`State::Master`] means "answer ARP for the VIPs, forward their traffic and announce them by
//! gratuitous ARP"; entering [`State::Backup`] means "stop doing so".
//!
//! Timers: a master advertises every interval; a backup takes over when no advertisement of a
//! master it accepts came for the master-down interval, `3 * interval + skew` with
//! `skew = (256 - priority) * interval / 256`, so of several backups the highest priority wins.
//! With `preempt` a backup ignores a master of lower priority (and so takes over from it); a
//! master yields to a higher priority, or to an equal one with a higher primary address.
//! Priority 255 (the owner of the addresses) becomes master at once on start; a master leaving
//! says so with priority 0 ([`Router::shutdown`]), which lets a backup take over after its skew.

use super::packet::{Advert, ChecksumForm, ParseError};
use super::TTL;
use crate::config::{Vrrp, VrrpVersion};
use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// Where the virtual router stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not started.
    Initialize,
    /// Another router is master (or is presumed to be until the master-down timer fires).
    Backup,
    /// This router answers for the addresses.
    Master,
}

impl State {
    /// A lowercase name for logs, metrics and status.
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
        }
    }
}

/// Why a received advertisement was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// IP TTL other than 255: the sender is not on the link.
    Ttl,
    /// Too short for its header or address count.
    Length,
    /// Not the configured version (or not VRRP at all).
    Version,
    /// Not an advertisement.
    Type,
    /// Version 2 with authentication.
    AuthType,
    /// A checksum matching neither form.
    Checksum,
    /// An interval of zero, or (version 2) one other than ours.
    Interval,
    /// Another virtual router's.
    Vrid,
}

impl Reject {
    /// Every reason, in the order of [`Router::rejected`].
    pub const ALL: [Reject; 8] = [
        Reject::Ttl,
        Reject::Length,
        Reject::Version,
        Reject::Type,
        Reject::AuthType,
        Reject::Checksum,
        Reject::Interval,
        Reject::Vrid,
    ];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Ttl => "ttl",
            Reject::Length => "length",
            Reject::Version => "version",
            Reject::Type => "type",
            Reject::AuthType => "auth_type",
            Reject::Checksum => "checksum",
            Reject::Interval => "interval",
            Reject::Vrid => "vrid",
        }
    }

    fn from_parse(e: ParseError) -> Reject {
        match e {
            ParseError::Length => Reject::Length,
            ParseError::Version(_) => Reject::Version,
            ParseError::Type(_) => Reject::Type,
            ParseError::AuthType(_) => Reject::AuthType,
            ParseError::Checksum => Reject::Checksum,
            ParseError::Interval => Reject::Interval,
        }
    }
}

/// What the kernel must do after a step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// An advertisement to multicast now.
    pub send: Option<Advert>,
    /// The state just entered, if it changed.
    pub became: Option<State>,
    /// The sender of an accepted advertisement whose address list differs from ours (reported
    /// once until the lists agree again): worth a log line, not a refusal, as keepalived does.
    pub addresses_differ: Option<Ipv4Addr>,
}

/// A virtual router as `/status` and the metrics show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The virtual router id.
    pub vrid: u8,
    /// The protocol version spoken.
    pub version: u8,
    /// The current state.
    pub state: State,
    /// This router's priority.
    pub priority: u8,
    /// The current master's address, if known (ours while master).
    pub master: Option<Ipv4Addr>,
    /// The current master's priority (0 while unknown).
    pub master_priority: u8,
    /// Advertisements accepted.
    pub accepted: u64,
    /// Advertisements sent.
    pub sent: u64,
    /// Advertisements refused, by reason label.
    pub rejected: [(&'static str, u64); Reject::ALL.len()],
}

/// One virtual router.
#[derive(Clone, Debug)]
pub struct Router {
    version: VrrpVersion,
    vrid: u8,
    priority: u8,
    interval_ms: u32,
    preempt: bool,
    own: Ipv4Addr,
    /// Sorted, for comparing with a received list.
    addresses: Vec<Ipv4Addr>,
    state: State,
    /// The master's interval as learnt from its advertisements (version 3); ours otherwise.
    master_interval_ms: u32,
    master: Option<Ipv4Addr>,
    master_priority: u8,
    /// Master: when the next advertisement is due; backup: when the master is presumed down.
    deadline: u64,
    rejected: [u64; Reject::ALL.len()],
    accepted: u64,
    sent: u64,
    differ: bool,
}

impl Router {
    /// A router for `config`, speaking from the interface address `own` for the VIP `addresses`.
    pub fn new(config: &Vrrp, own: Ipv4Addr, addresses: &[Ipv4Addr]) -> Router {
        let mut addresses = addresses.to_vec();
        addresses.sort_unstable();
        addresses.dedup();
        Router {
            version: config.version,
            vrid: config.vrid,
            priority: config.priority,
            interval_ms: config.advert_ms,
            preempt: config.preempt,
            own,
            addresses,
            state: State::Initialize,
            master_interval_ms: config.advert_ms,
            master: None,
            master_priority: 0,
            deadline: 0,
            rejected: [0; Reject::ALL.len()],
            accepted: 0,
            sent: 0,
            differ: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// This router's priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The virtual router id.
    pub fn vrid(&self) -> u8 {
        self.vrid
    }

    /// The current master's address (ours while master), if one is known.
    pub fn master(&self) -> Option<Ipv4Addr> {
        self.master
    }

    /// When [`Router::poll`] has something to do next.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }

    /// Advertisements refused for `reason`.
    pub fn rejected(&self, reason: Reject) -> u64 {
        self.rejected[reason as usize]
    }

    /// Advertisements accepted (from any router of this group).
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Advertisements sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The VIP addresses changed (a config push): later advertisements carry `addresses`.
    pub fn set_addresses(&mut self, addresses: &[Ipv4Addr]) {
        let mut addresses = addresses.to_vec();
        addresses.sort_unstable();
        addresses.dedup();
        self.addresses = addresses;
    }

    /// The VIP addresses, sorted.
    pub fn addresses(&self) -> &[Ipv4Addr] {
        &self.addresses
    }

    /// What `/status` and the metrics show.
    pub fn status(&self) -> Status {
        Status {
            vrid: self.vrid,
            version: self.version.number(),
            state: self.state,
            priority: self.priority,
            master: self.master,
            master_priority: self.master_priority,
            accepted: self.accepted,
            sent: self.sent,
            rejected: Reject::ALL.map(|r| (r.name(), self.rejected(r))),
        }
    }

    fn skew_ms(&self) -> u64 {
        (u64::from(256 - u32::from(self.priority)) * u64::from(self.master_interval_ms)) / 256
    }

    fn master_down_ms(&self) -> u64 {
        3 * u64::from(self.master_interval_ms) + self.skew_ms()
    }

    fn advert(&self, priority: u8) -> Advert {
        Advert {
            version: self.version,
            vrid: self.vrid,
            priority,
            interval_ms: self.interval_ms,
            addresses: self.addresses.clone(),
        }
    }

    fn become_master(&mut self, now: u64) -> Output {
        self.state = State::Master;
        self.master = Some(self.own);
        self.master_priority = self.priority;
        self.deadline = now + u64::from(self.interval_ms);
        self.sent += 1;
        Output {
            send: Some(self.advert(self.priority)),
            became: Some(State::Master),
            addresses_differ: None,
        }
    }

    fn become_backup(&mut self, now: u64) -> Output {
        let was = self.state;
        self.state = State::Backup;
        self.deadline = now + self.master_down_ms();
        Output {
            became: (was != State::Backup).then_some(State::Backup),
            ..Output::default()
        }
    }

    /// Leave Initialize: the owner (priority 255) becomes master at once, others backup.
    pub fn start(&mut self, now: u64) -> Output {
        if self.priority == 255 {
            self.become_master(now)
        } else {
            self.master_interval_ms = self.interval_ms;
            self.master = None;
            self.become_backup(now)
        }
    }

    /// Run the timers at `now`.
    pub fn poll(&mut self, now: u64) -> Output {
        if now < self.deadline {
            return Output::default();
        }
        match self.state {
            State::Initialize => Output::default(),
            State::Backup => self.become_master(now),
            State::Master => {
                self.deadline = now + u64::from(self.interval_ms);
                self.sent += 1;
                Output {
                    send: Some(self.advert(self.priority)),
                    ..Output::default()
                }
            }
        }
    }

    /// The advertisement a leaving master sends (priority 0), if master; the router is then back
    /// in Initialize.
    pub fn shutdown(&mut self) -> Option<Advert> {
        let was = self.state;
        self.state = State::Initialize;
        self.master = None;
        (was == State::Master).then(|| {
            self.sent += 1;
            self.advert(0)
        })
    }

    /// A VRRP message `msg` from `src` to `dst` with IP TTL `ttl` arrived at `now`.
    pub fn receive(
        &mut self,
        now: u64,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
        msg: &[u8],
    ) -> Output {
        match self.check(src, dst, ttl, msg) {
            Ok(advert) => {
                self.accepted += 1;
                self.step(now, src, advert)
            }
            Err(reason) => {
                self.rejected[reason as usize] += 1;
                Output::default()
            }
        }
    }

    fn check(&self, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, msg: &[u8]) -> Result<Advert, Reject> {
        if ttl != TTL {
            return Err(Reject::Ttl);
        }
        let (advert, _form): (Advert, ChecksumForm) =
            Advert::parse(msg, src, dst).map_err(Reject::from_parse)?;
        if advert.version != self.version {
            return Err(Reject::Version);
        }
        if advert.vrid != self.vrid {
            return Err(Reject::Vrid);
        }
        if self.version == VrrpVersion::V2 && advert.interval_ms != self.interval_ms {
            return Err(Reject::Interval);
        }
        Ok(advert)
    }

    fn step(&mut self, now: u64, src: Ipv4Addr, advert: Advert) -> Output {
        let mut theirs = advert.addresses.clone();
        theirs.sort_unstable();
        theirs.dedup();
        let differs = advert.priority != 0 && theirs != self.addresses;
        let newly_differs = differs && !self.differ;
        self.differ = differs;
        let mut out = match self.state {
            State::Initialize => Output::default(),
            State::Backup => self.step_backup(now, src, &advert),
            State::Master => self.step_master(now, src, &advert),
        };
        if newly_differs {
            out.addresses_differ = Some(src);
        }
        out
    }

    fn step_backup(&mut self, now: u64, src: Ipv4Addr, advert: &Advert) -> Output {
        if advert.priority == 0 {
            // The master is leaving: take over after the skew alone.
            self.deadline = now + self.skew_ms();
            return Output::default();
        }
        if !self.preempt || advert.priority >= self.priority {
            if self.version == VrrpVersion::V3 {
                self.master_interval_ms = advert.interval_ms;
            }
            self.master = Some(src);
            self.master_priority = advert.priority;
            self.deadline = now + self.master_down_ms();
        }
        Output::default()
    }

    fn step_master(&mut self, now: u64, src: Ipv4Addr, advert: &Advert) -> Output {
        if advert.priority == 0 {
            // Another master left: reassert at once so the backups do not wait for us.
            self.deadline = now + u64::from(self.interval_ms);
            self.sent += 1;
            return Output {
                send: Some(self.advert(self.priority)),
                ..Output::default()
            };
        }
        let yields = advert.priority > self.priority
            || (advert.priority == self.priority && u32::from(src) > u32::from(self.own));
        if !yields {
            return Output::default();
        }
        if self.version == VrrpVersion::V3 {
            self.master_interval_ms = advert.interval_ms;
        }
        self.master = Some(src);
        self.master_priority = advert.priority;
        self.become_backup(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::GROUP;
    use alloc::vec;

    const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

    fn config(priority: u8) -> Vrrp {
        Vrrp {
            vrid: 51,
            priority,
            advert_ms: 1000,
            preempt: true,
            version: VrrpVersion::V3,
        }
    }

    fn router(priority: u8) -> Router {
        Router::new(&config(priority), OWN, &[VIP])
    }

    fn from_peer(priority: u8) -> Vec<u8> {
        Advert {
            version: VrrpVersion::V3,
            vrid: 51,
            priority,
            interval_ms: 1000,
            addresses: vec![VIP],
        }
        .encode(PEER, GROUP, ChecksumForm::PseudoHeader)
    }

    #[test]
    fn master_down_interval_and_skew_follow_the_rfc() {
        let mut r = router(150);
        assert_eq!(r.start(0).became, Some(State::Backup));
        // skew = (256 - 150) * 1000 / 256 = 414 ms; down = 3000 + 414.
        assert_eq!(r.deadline(), 3414);
        assert_eq!(r.poll(3413), Output::default());
        let out = r.poll(3414);
        assert_eq!(out.became, Some(State::Master));
        let sent = out.send.unwrap();
        assert_eq!((sent.priority, sent.addresses), (150, vec![VIP]));
        assert_eq!(r.master(), Some(OWN));
        assert_eq!(r.deadline(), 4414);
        assert_eq!(r.poll(4414).send.map(|a| a.priority), Some(150));
        let mut low = router(1);
        low.start(0);
        assert_eq!(low.deadline(), 3000 + 996);
    }

    #[test]
    fn a_higher_master_keeps_a_backup_down_and_a_lower_one_is_preempted() {
        let mut r = router(100);
        r.start(0);
        for t in (1000..20_000).step_by(1000) {
            assert_eq!(
                r.receive(t, PEER, GROUP, 255, &from_peer(150)),
                Output::default()
            );
            assert_eq!(r.poll(t), Output::default());
        }
        assert_eq!((r.state(), r.master()), (State::Backup, Some(PEER)));
        // A lower priority master is ignored with preempt: the timer runs out.
        let mut r = router(150);
        r.start(0);
        r.receive(1000, PEER, GROUP, 255, &from_peer(100));
        assert_eq!(r.poll(3414).became, Some(State::Master));
        // Without preempt it is accepted as master.
        let mut c = config(150);
        c.preempt = false;
        let mut r = Router::new(&c, OWN, &[VIP]);
        r.start(0);
        r.receive(3000, PEER, GROUP, 255, &from_peer(100));
        assert_eq!(r.poll(3414), Output::default());
        assert_eq!(r.master(), Some(PEER));
    }

    #[test]
    fn a_master_yields_to_higher_priority_or_equal_with_higher_address() {
        let mut r = router(150);
        r.start(0);
        r.poll(3414);
        assert_eq!(
            r.receive(4000, PEER, GROUP, 255, &from_peer(100)),
            Output::default()
        );
        assert_eq!(r.state(), State::Master);
        let out = r.receive(4100, PEER, GROUP, 255, &from_peer(200));
        assert_eq!(out.became, Some(State::Backup));
        assert_eq!(r.master(), Some(PEER));
        // Equal priority: 10.77.0.3 > 10.77.0.2, so we yield; the other way we do not.
        let mut r = router(150);
        r.start(0);
        r.poll(3414);
        let out = r.receive(4000, PEER, GROUP, 255, &from_peer(150));
        assert_eq!(out.became, Some(State::Backup));
        let mut high = Router::new(&config(150), Ipv4Addr::new(10, 77, 0, 9), &[VIP]);
        high.start(0);
        high.poll(3414);
        assert_eq!(
            high.receive(4000, PEER, GROUP, 255, &from_peer(150)).became,
            None
        );
        assert_eq!(high.state(), State::Master);
    }

    #[test]
    fn priority_zero_and_owner_semantics() {
        // A leaving master lets a backup take over after its skew only.
        let mut r = router(100);
        r.start(0);
        r.receive(1000, PEER, GROUP, 255, &from_peer(150));
        r.receive(2000, PEER, GROUP, 255, &from_peer(0));
        // skew = 156 * 1000 / 256 = 609.
        assert_eq!(r.deadline(), 2609);
        assert_eq!(r.poll(2609).became, Some(State::Master));
        // A master hearing priority 0 reasserts at once.
        let out = r.receive(3000, PEER, GROUP, 255, &from_peer(0));
        assert_eq!(out.send.map(|a| a.priority), Some(100));
        // Shutdown sends priority 0 from a master only.
        assert_eq!(r.shutdown().map(|a| a.priority), Some(0));
        assert_eq!(r.state(), State::Initialize);
        assert_eq!(r.shutdown(), None);
        // The owner is master at once.
        let mut owner = router(255);
        let out = owner.start(0);
        assert_eq!(out.became, Some(State::Master));
        assert_eq!(out.send.map(|a| a.priority), Some(255));
    }

    #[test]
    fn v3_backup_learns_the_masters_interval() {
        let mut r = router(100);
        r.start(0);
        let slow = Advert {
            version: VrrpVersion::V3,
            vrid: 51,
            priority: 150,
            interval_ms: 2000,
            addresses: vec![VIP],
        }
        .encode(PEER, GROUP, ChecksumForm::MessageOnly);
        r.receive(1000, PEER, GROUP, 255, &slow);
        // 3 * 2000 + 156 * 2000 / 256 = 6000 + 1218.
        assert_eq!(r.deadline(), 1000 + 7218);
    }

    #[test]
    fn refusals_are_counted_by_reason_and_change_nothing() {
        let mut r = router(100);
        r.start(0);
        let good = from_peer(150);
        let mut bad_sum = good.clone();
        bad_sum[7] ^= 1;
        let other_vrid = Advert {
            vrid: 52,
            ..Advert::parse(&good, PEER, GROUP).unwrap().0
        }
        .encode(PEER, GROUP, ChecksumForm::PseudoHeader);
        let v2 = Advert {
            version: VrrpVersion::V2,
            ..Advert::parse(&good, PEER, GROUP).unwrap().0
        }
        .encode(PEER, GROUP, ChecksumForm::MessageOnly);
        let cases: [(u8, &[u8], Reject); 6] = [
            (64, &good, Reject::Ttl),
            (255, &bad_sum, Reject::Checksum),
            (255, &good[..5], Reject::Length),
            (255, &other_vrid, Reject::Vrid),
            (255, &v2, Reject::Version),
            (255, &[0x51, 0, 0, 0, 0, 0, 0, 0], Reject::Version),
        ];
        for (ttl, msg, _) in &cases {
            assert_eq!(r.receive(100, PEER, GROUP, *ttl, msg), Output::default());
        }
        for reason in Reject::ALL {
            let want = cases.iter().filter(|c| c.2 == reason).count() as u64;
            assert_eq!(r.rejected(reason), want, "{}", reason.name());
        }
        assert_eq!(r.accepted(), 0);
        // None of them reset the master-down timer.
        assert_eq!(r.poll(3609).became, Some(State::Master));
    }

    #[test]
    fn v2_refuses_another_interval_and_accepts_its_own() {
        let mut c = config(100);
        c.version = VrrpVersion::V2;
        let mut r = Router::new(&c, OWN, &[VIP]);
        r.start(0);
        let mut a = Advert {
            version: VrrpVersion::V2,
            vrid: 51,
            priority: 150,
            interval_ms: 2000,
            addresses: vec![VIP],
        };
        r.receive(
            10,
            PEER,
            GROUP,
            255,
            &a.encode(PEER, GROUP, ChecksumForm::MessageOnly),
        );
        assert_eq!(r.rejected(Reject::Interval), 1);
        a.interval_ms = 1000;
        r.receive(
            20,
            PEER,
            GROUP,
            255,
            &a.encode(PEER, GROUP, ChecksumForm::MessageOnly),
        );
        assert_eq!((r.accepted(), r.master()), (1, Some(PEER)));
    }

    #[test]
    fn a_different_address_list_is_reported_once_and_still_accepted() {
        let mut r = router(100);
        r.start(0);
        let other = Advert {
            version: VrrpVersion::V3,
            vrid: 51,
            priority: 150,
            interval_ms: 1000,
            addresses: vec![Ipv4Addr::new(10, 77, 0, 200)],
        }
        .encode(PEER, GROUP, ChecksumForm::PseudoHeader);
        assert_eq!(
            r.receive(10, PEER, GROUP, 255, &other).addresses_differ,
            Some(PEER)
        );
        assert_eq!(
            r.receive(20, PEER, GROUP, 255, &other).addresses_differ,
            None
        );
        assert_eq!(r.master(), Some(PEER));
        r.receive(30, PEER, GROUP, 255, &from_peer(150));
        assert_eq!(
            r.receive(40, PEER, GROUP, 255, &other).addresses_differ,
            Some(PEER)
        );
    }
}
