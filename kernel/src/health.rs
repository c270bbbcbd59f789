//! TCP health checks: a connect from the balancer's address to each checked backend's
//! `address : health.port` every `interval_ms`, the result handed to `control::health` (which
//! decides when `rise` successes or `fall` failures change the backend's state, and when checks
//! run), and the forwarder told through `set_backend_up`.
//!
//! Each backend has its own small smoltcp socket, used for one check at a time: connect, and on
//! the handshake's completion abort (a reset; no data is exchanged). A reset in answer to the SYN
//! is "connection refused"; no answer within `timeout_ms` is a timeout. A timeout counts against
//! the backend only if the balancer's own receive path dropped nothing while the check waited
//! (the caller passes a running count of such drops), and a VIP's backends go down at most
//! `DownLimit::per_round` per interval (both decided in `control::health`).

use crate::local::Ports;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use control::config::{Config, VipPort};
use control::health::{CheckResult, DownLimit, RiseFall, Rules, Schedule, Transition};
use control::mgmt::Transitions;
use core::net::IpAddr;
use forwarder::Forwarder;
use log::{info, warn};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::{IpAddress, IpEndpoint};

struct Check {
    vip: String,
    backend: String,
    address: IpAddr,
    /// The backend itself when on the interface's subnet (or IPv6 prefix), else the gateway of
    /// its family.
    next_hop: Option<IpAddr>,
    port: u16,
    rules: Rules,
    handle: SocketHandle,
    state: RiseFall,
    schedule: Schedule,
    /// Index of its VIP's entry in [`Checker::limits`].
    group: usize,
    /// The receive-drop count when the check in flight (or the last one) started.
    drops_mark: u64,
    /// The last result was inconclusive (logged once per streak).
    inconclusive: bool,
}

/// One VIP's down limit and how many of its backends are checked.
struct Group {
    limit: DownLimit,
    backends: usize,
}

/// Every backend's health check.
#[derive(Default)]
pub struct Checker {
    checks: Vec<Check>,
    limits: Vec<Group>,
}

impl Checker {
    /// Follow `config`: a check for every backend of a VIP with `[vip.health]`, keeping the state
    /// of backends checked before (same VIP name and address). Backends of VIPs without health
    /// checks are marked up.
    pub fn configure(
        &mut self,
        config: &Config,
        fwd: &mut Forwarder,
        sockets: &mut SocketSet<'static>,
        now_ms: u64,
    ) {
        let mut old = core::mem::take(&mut self.checks);
        self.limits.clear();
        let stats = fwd.stats();
        for vip in &config.vips {
            let Some(health) = &vip.health else {
                for b in &vip.backends {
                    let _ = fwd.set_backend_up(&vip.name, &b.name, true);
                }
                continue;
            };
            let port = match (health.port, vip.port) {
                (Some(p), _) | (None, VipPort::One(p)) => p,
                (None, VipPort::All) => continue, // refused by validation
            };
            let rules = Rules::of(health);
            let group = self.limits.len();
            self.limits.push(Group {
                limit: DownLimit::default(),
                backends: vip.backends.len(),
            });
            for (i, b) in vip.backends.iter().enumerate() {
                let address = b.address;
                let kept = old
                    .iter()
                    .position(|c| c.vip == vip.name && c.address == address)
                    .map(|i| old.swap_remove(i));
                let up = stats
                    .iter()
                    .find(|v| v.name == vip.name)
                    .and_then(|v| v.backends.iter().find(|s| s.address == b.address))
                    .is_none_or(|s| s.up);
                let handle = match &kept {
                    Some(c) => c.handle,
                    None => sockets.add(Socket::new(
                        SocketBuffer::new(alloc::vec![0; 64]),
                        SocketBuffer::new(alloc::vec![0; 64]),
                    )),
                };
                let iface = &config.interface;
                let next_hop = match address {
                    IpAddr::V4(a) if iface.address.contains(a) => Some(address),
                    IpAddr::V4(_) => iface.gateway.map(IpAddr::V4),
                    IpAddr::V6(a) if iface.address6.is_some_and(|p| p.contains(a)) => Some(address),
                    IpAddr::V6(_) => iface.gateway6.map(IpAddr::V6),
                };
                self.checks.push(Check {
                    vip: vip.name.clone(),
                    backend: b.name.clone(),
                    address,
                    next_hop,
                    port,
                    rules,
                    handle,
                    state: kept
                        .as_ref()
                        .map_or(RiseFall::new(up), |c| c.state.reconfigured(up)),
                    schedule: kept
                        .as_ref()
                        .map_or_else(|| Schedule::first(i, &rules, now_ms), |c| c.schedule),
                    group,
                    drops_mark: kept.as_ref().map_or(0, |c| c.drops_mark),
                    inconclusive: false,
                });
            }
        }
        for gone in old {
            sockets.remove(gone.handle);
        }
    }

    /// Run due checks and collect finished ones. Returns whether any socket changed.
    ///
    /// A check starts only when the forwarder has resolved the backend's next hop, and that
    /// neighbour goes to `hints` for smoltcp's cache: smoltcp then never has to ARP for a
    /// backend. (Its ARP requests are rate-limited for the whole interface, so a dead backend
    /// asked for over and over would starve every other lookup, live backends included.) An
    /// unresolved next hop counts as an unanswered check.
    ///
    /// `receive_drops` is a running count of frames (or bursts) the balancer's receive path
    /// lost (NIC ring exhausted, no pool buffer, local queue full): an unanswered check during
    /// which it grew is inconclusive.
    #[allow(clippy::too_many_arguments)]
    pub fn poll(
        &mut self,
        now_ms: u64,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        ports: &mut Ports,
        fwd: &mut Forwarder,
        hints: &mut Vec<(IpAddr, [u8; 6])>,
        receive_drops: u64,
    ) -> bool {
        let mut touched = false;
        for c in &mut self.checks {
            let s = sockets.get_mut::<Socket>(c.handle);
            let dropping = receive_drops != c.drops_mark;
            let unanswered = CheckResult::Unanswered {
                receive_dropping: dropping,
            };
            let group = &mut self.limits[c.group];
            if !c.schedule.in_flight() {
                if c.schedule.take_due(now_ms, &c.rules) {
                    // Checks that end at once look back over the interval since the last one.
                    c.drops_mark = receive_drops;
                    let Some(hop) = c.next_hop else {
                        let why = String::from("no route (no interface.gateway or gateway6)");
                        c.result(CheckResult::Refused, why, now_ms, group, fwd);
                        continue;
                    };
                    let Some(mac) = fwd.neighbour(hop) else {
                        let why = format!("no ARP or neighbour advertisement from {hop}");
                        c.result(unanswered, why, now_ms, group, fwd);
                        continue;
                    };
                    hints.push((hop, mac));
                    let remote = IpEndpoint::new(IpAddress::from(c.address), c.port);
                    match s.connect(iface.context(), remote, ports.next()) {
                        Ok(()) => c.schedule.started(now_ms),
                        Err(e) => {
                            let why = format!("cannot connect: {e}");
                            c.result(unanswered, why, now_ms, group, fwd)
                        }
                    }
                    touched = true;
                }
                continue;
            }
            let outcome = match s.state() {
                State::SynSent | State::SynReceived => {
                    if c.schedule.timed_out(now_ms, &c.rules) {
                        let why = format!("no answer within {} ms", c.rules.timeout_ms);
                        Some((unanswered, why))
                    } else {
                        None
                    }
                }
                State::Closed => Some((CheckResult::Refused, String::from("connection refused"))),
                // Established, or already past it (the backend closed first): it accepted.
                _ => Some((CheckResult::Passed, String::new())),
            };
            if let Some((result, why)) = outcome {
                s.abort();
                c.schedule.finished();
                c.result(result, why, now_ms, group, fwd);
                touched = true;
            }
        }
        touched
    }

    /// Up/down transitions per checked backend, for metrics.
    pub fn transitions(&self) -> Vec<Transitions<'_>> {
        self.checks
            .iter()
            .map(|c| Transitions {
                vip: &c.vip,
                backend: &c.backend,
                count: c.state.transitions(),
            })
            .collect()
    }
}

impl Check {
    fn result(
        &mut self,
        result: CheckResult,
        why: String,
        now_ms: u64,
        group: &mut Group,
        fwd: &mut Forwarder,
    ) {
        let may_go_down = group.limit.allows(now_ms, &self.rules, group.backends);
        let (state, transition) = self.state.after(result, &self.rules, may_go_down);
        self.state = state;
        let inconclusive = result.evidence().is_none();
        if inconclusive && !self.inconclusive {
            info!(
                "health: vip \"{}\" backend \"{}\": {why} while the balancer was dropping received frames; not counted",
                self.vip, self.backend
            );
        }
        self.inconclusive = inconclusive;
        if transition == Some(Transition::Down) {
            group.limit.take(now_ms, &self.rules);
        }
        match transition {
            Some(Transition::Up) => {
                self.tell(true, fwd);
                info!(
                    "health: vip \"{}\" backend \"{}\" up ({} successes)",
                    self.vip,
                    self.backend,
                    self.state.successes()
                );
            }
            Some(Transition::Down) => {
                self.tell(false, fwd);
                warn!(
                    "health: vip \"{}\" backend \"{}\" down ({} failures: {})",
                    self.vip,
                    self.backend,
                    self.state.failures(),
                    why
                );
            }
            None if !may_go_down && self.state.up() && self.state.failures() >= self.rules.fall => {
                info!(
                    "health: vip \"{}\" backend \"{}\": {} failures, but this round already took down {} of the VIP's backends; waiting",
                    self.vip,
                    self.backend,
                    self.state.failures(),
                    DownLimit::per_round(group.backends)
                );
            }
            None => {}
        }
    }

    fn tell(&self, up: bool, fwd: &mut Forwarder) {
        let was_open = fwd.failing_open(&self.vip);
        if let Err(e) = fwd.set_backend_up(&self.vip, &self.backend, up) {
            warn!(
                "health: vip \"{}\" backend \"{}\": {e}",
                self.vip, self.backend
            );
        }
        match (was_open, fwd.failing_open(&self.vip)) {
            (false, true) => warn!(
                "health: vip \"{}\": every backend is down; failing open (traffic still goes to them by the consistent hash; fail_open = false drops it instead)",
                self.vip
            ),
            (true, false) => info!(
                "health: vip \"{}\": a backend is up again; no longer failing open",
                self.vip
            ),
            _ => {}
        }
    }
}
