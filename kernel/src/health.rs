//! TCP health checks: a connect from the balancer's address to each checked backend's
//! `address : health.port` every `interval_ms`; `fall` consecutive failures take it down, `rise`
//! consecutive successes bring it back, and the forwarder learns through `set_backend_up`.
//!
//! A checked backend starts **up**, as the forwarder does for every new backend: a balancer that
//! reboots (or takes a new config) keeps forwarding at once instead of refusing every new flow
//! for `rise × interval` while it re-learns what was true a moment ago; a dead backend is found
//! within `fall × interval`. A backend kept across a config change keeps its state and counts.
//!
//! Each backend has its own small smoltcp socket, used for one check at a time: connect, and on
//! the handshake's completion abort (a reset; no data is exchanged). A reset in answer to the SYN
//! is "connection refused"; no answer within `timeout_ms` is a timeout.

use crate::local::Ports;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use forwarder::config::{Config, VipPort};
use forwarder::mgmt::Transitions;
use forwarder::Forwarder;
use log::{info, warn};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::{IpAddress, IpEndpoint};

/// Delay of a new backend's first check.
const FIRST_CHECK_MS: u64 = 500;

struct Check {
    vip: String,
    backend: String,
    address: Ipv4Addr,
    /// The backend itself when on the interface's subnet, else the gateway.
    next_hop: Option<Ipv4Addr>,
    port: u16,
    interval_ms: u64,
    timeout_ms: u64,
    rise: u32,
    fall: u32,
    handle: SocketHandle,
    up: bool,
    successes: u32,
    failures: u32,
    transitions: u64,
    next_ms: u64,
    started_ms: Option<u64>,
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
                // Leave the forwarder a moment to resolve the next hop (an unresolved one fails
                // a check), and spread the first checks over the interval.
                let interval_ms = u64::from(health.interval_ms);
                let first = now_ms + FIRST_CHECK_MS + (i as u64 * 97) % interval_ms;
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
                    interval_ms,
                    timeout_ms: u64::from(health.timeout_ms),
                    rise: u32::from(health.rise),
                    fall: u32::from(health.fall),
                    handle,
                    up,
                    successes: kept.as_ref().map_or(0, |c| c.successes),
                    failures: kept.as_ref().map_or(0, |c| c.failures),
                    transitions: kept.as_ref().map_or(0, |c| c.transitions),
                    next_ms: kept.as_ref().map_or(first, |c| c.next_ms),
                    started_ms: kept.as_ref().and_then(|c| c.started_ms),
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
            let Some(started) = c.started_ms else {
                if now_ms >= c.next_ms {
                    c.next_ms = now_ms + c.interval_ms;
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
                        Ok(()) => c.started_ms = Some(now_ms),
                        Err(e) => c.result(Err(format!("cannot connect: {e}")), fwd),
                    }
                    touched = true;
                }
                continue;
            };
            let outcome = match s.state() {
                State::SynSent | State::SynReceived => {
                    if now_ms.saturating_sub(started) >= c.timeout_ms {
                        Some(Err(format!("no answer within {} ms", c.timeout_ms)))
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
                c.started_ms = None;
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
                count: c.transitions,
            })
            .collect()
    }
}

impl Check {
    fn result(&mut self, result: Result<(), String>, fwd: &mut Forwarder) {
        match result {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if !self.up && self.successes >= self.rise {
                    self.set(true, fwd);
                    info!(
                        "health: vip \"{}\" backend \"{}\" up ({} successes)",
                        self.vip, self.backend, self.successes
                    );
                }
            }
            Err(why) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.up && self.failures >= self.fall {
                    self.set(false, fwd);
                    warn!(
                        "health: vip \"{}\" backend \"{}\" down ({} failures: {})",
                        self.vip, self.backend, self.failures, why
                    );
                }
            }
        }
    }

    fn set(&mut self, up: bool, fwd: &mut Forwarder) {
        self.up = up;
        self.transitions += 1;
        if let Err(e) = fwd.set_backend_up(&self.vip, &self.backend, up) {
            warn!(
                "health: vip \"{}\" backend \"{}\": {e}",
                self.vip, self.backend
            );
        }
    }
}
