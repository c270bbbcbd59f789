//! TCP health checks: a connect from the balancer's address to each checked backend's
//! `address : health.port` every `interval_ms`, the result handed to `control::health` (which
//! decides when `rise` successes or `fall` failures change the backend's state, and when checks
//! run), and the forwarder told through `set_backend_up`.
//!
//! Each backend has its own small smoltcp socket, used for one check at a time: connect, and on
//! the handshake's completion abort (a reset; no data is exchanged). A reset in answer to the SYN
//! is "connection refused"; no answer within `timeout_ms` is a timeout.

use crate::local::Ports;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use control::config::{Config, VipPort};
use control::health::{CheckResult, RiseFall, Rules, Schedule, Transition};
use control::mgmt::Transitions;
use core::net::Ipv4Addr;
use forwarder::Forwarder;
use log::{info, warn};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::{IpAddress, IpEndpoint};

struct Check {
    vip: String,
    backend: String,
    address: Ipv4Addr,
    /// The backend itself when on the interface's subnet, else the gateway.
    next_hop: Option<Ipv4Addr>,
    port: u16,
    rules: Rules,
    handle: SocketHandle,
    state: RiseFall,
    schedule: Schedule,
}

/// Every backend's health check.
#[derive(Default)]
pub struct Checker {
    checks: Vec<Check>,
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
            for (i, b) in vip.backends.iter().enumerate() {
                let kept = old
                    .iter()
                    .position(|c| c.vip == vip.name && c.address == b.address)
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
                let on_link = config.interface.address.contains(b.address);
                self.checks.push(Check {
                    vip: vip.name.clone(),
                    backend: b.name.clone(),
                    address: b.address,
                    next_hop: if on_link {
                        Some(b.address)
                    } else {
                        config.interface.gateway
                    },
                    port,
                    rules,
                    handle,
                    state: kept
                        .as_ref()
                        .map_or(RiseFall::new(up), |c| c.state.reconfigured(up)),
                    schedule: kept
                        .as_ref()
                        .map_or_else(|| Schedule::first(i, &rules, now_ms), |c| c.schedule),
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
    /// unresolved next hop counts as a failed check.
    pub fn poll(
        &mut self,
        now_ms: u64,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        ports: &mut Ports,
        fwd: &mut Forwarder,
        hints: &mut Vec<(Ipv4Addr, [u8; 6])>,
    ) -> bool {
        let mut touched = false;
        for c in &mut self.checks {
            let s = sockets.get_mut::<Socket>(c.handle);
            if !c.schedule.in_flight() {
                if c.schedule.take_due(now_ms, &c.rules) {
                    let Some(hop) = c.next_hop else {
                        c.result(Err(String::from("no route (no interface.gateway)")), fwd);
                        continue;
                    };
                    let Some(mac) = fwd.neighbour(hop) else {
                        c.result(Err(format!("no ARP reply from {hop}")), fwd);
                        continue;
                    };
                    hints.push((hop, mac));
                    let remote = IpEndpoint::new(IpAddress::Ipv4(c.address), c.port);
                    match s.connect(iface.context(), remote, ports.next()) {
                        Ok(()) => c.schedule.started(now_ms),
                        Err(e) => c.result(Err(format!("cannot connect: {e}")), fwd),
                    }
                    touched = true;
                }
                continue;
            }
            let outcome = match s.state() {
                State::SynSent | State::SynReceived => {
                    if c.schedule.timed_out(now_ms, &c.rules) {
                        Some(Err(format!("no answer within {} ms", c.rules.timeout_ms)))
                    } else {
                        None
                    }
                }
                State::Closed => Some(Err(String::from("connection refused"))),
                // Established, or already past it (the backend closed first): it accepted.
                _ => Some(Ok(())),
            };
            if let Some(result) = outcome {
                s.abort();
                c.schedule.finished();
                c.result(result, fwd);
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
    fn result(&mut self, result: Result<(), String>, fwd: &mut Forwarder) {
        let outcome = match result {
            Ok(()) => CheckResult::Passed,
            Err(_) => CheckResult::Failed,
        };
        let (state, transition) = self.state.after(outcome, &self.rules);
        self.state = state;
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
                    result.err().unwrap_or_default()
                );
            }
            None => {}
        }
    }

    fn tell(&self, up: bool, fwd: &mut Forwarder) {
        if let Err(e) = fwd.set_backend_up(&self.vip, &self.backend, up) {
            warn!(
                "health: vip \"{}\" backend \"{}\": {e}",
                self.vip, self.backend
            );
        }
    }
}
