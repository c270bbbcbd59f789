//! The control loop: the running config, the management API, health checks and the boot-time
//! fetch, run between bursts by the data plane's housekeeping.
//!
//! A config reaches the image two ways, a `PUT /config` push and the fetch at boot, and both go
//! through [`Controller::accept`]: the signature is checked with the newest key, and the version
//! must be newer than the newest config known, which is the running one or one accepted earlier
//! in the same round. So a slow fetch can never replace a config pushed while it ran. Accepted
//! configs are applied between two bursts: the forwarder's tables, the local stack's address,
//! the management port and the health checks all follow.

use crate::bgp::Bgp;
use crate::fetch::{Fetch, Outcome};
use crate::health::Checker;
use crate::local::{LocalStack, Ports};
use crate::server::Server;
use alloc::format;
use alloc::vec::Vec;
use control::config::Config;
use control::mgmt::{self, CoreView, Endpoint, Request, Response, Snapshot};
use control::vrrp::Status as VrrpStatus;
use core::net::IpAddr;
use forwarder::{DropReason, Forwarder, Instant};
use log::{info, warn};

/// NIC frame counts for metrics.
#[derive(Clone, Copy)]
pub struct NicCounts {
    /// Frames received.
    pub rx: u64,
    /// Frames transmitted.
    pub tx: u64,
    /// A running count of the balancer's own receive losses: bursts that found the NIC's ring
    /// exhausted, refills without a pool buffer, frames the local stack's queue refused.
    pub rx_drops: u64,
    /// Forwarded frames shed because the transmit ring stayed full.
    pub tx_shed: u64,
}

/// What one round of the control loop leaves for the data plane.
#[derive(Default)]
pub struct Round {
    /// A socket changed: let smoltcp send now.
    pub touched: bool,
    /// Addresses to announce with gratuitous ARP or unsolicited neighbour advertisements (the
    /// answered set changed).
    pub announce: Vec<IpAddr>,
}

/// The balancer's own side: the running config, the management server, health checks and the
/// fetch.
pub struct Controller {
    config: Config,
    server: Server,
    health: Checker,
    fetch: Option<Fetch>,
    ports: Ports,
    /// The BGP speaker (no sockets without `[bgp]`).
    bgp: Bgp,
    /// The version baked into the image, for log lines.
    baked_version: u64,
}

impl Controller {
    /// Start serving `config` (the baked one): open the management port, configure the health
    /// checks, start the fetch if the config asks for one.
    pub fn new(
        config: &Config,
        fwd: &mut Forwarder,
        local: &mut LocalStack,
        now_ms: u64,
    ) -> Controller {
        let port = config.management.as_ref().map(|m| m.port);
        let mut health = Checker::default();
        health.configure(config, fwd, &mut local.sockets, now_ms);
        let fetch = match config.management.as_ref().and_then(|m| m.fetch.as_deref()) {
            Some(url) => match Fetch::new(url, &mut local.sockets, now_ms) {
                Ok(f) => {
                    info!(
                        "fetch: getting a signed config from {url}; forwarding with the baked v{} meanwhile",
                        config.version
                    );
                    Some(f)
                }
                Err(e) => {
                    warn!("fetch: keeping the baked config v{}: {e}", config.version);
                    None
                }
            },
            None => None,
        };
        let mut ports = Ports::new(port.unwrap_or(0));
        let mut bgp = Bgp::new();
        bgp.configure(now_ms, config, fwd, local, &mut ports);
        Controller {
            config: config.clone(),
            server: Server::new(&mut local.sockets, port),
            health,
            fetch,
            ports,
            bgp,
            baked_version: config.version,
        }
    }

    /// The running config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Run health checks, serve the management API, drive the fetch, and apply what was
    /// accepted.
    pub fn poll(
        &mut self,
        now: Instant,
        fwd: &mut Forwarder,
        local: &mut LocalStack,
        nic: NicCounts,
        vrrp: Option<&VrrpStatus>,
    ) -> Round {
        let ms = now.millis();
        let mut hints = Vec::new();
        let mut touched = self.health.poll(
            ms,
            &mut local.iface,
            &mut local.sockets,
            &mut self.ports,
            fwd,
            &mut hints,
            nic.rx_drops,
        );
        for (ip, mac) in hints {
            local.learn(ip, mac);
        }
        touched |= self.bgp.poll(ms, &self.config, fwd, local, &mut self.ports);

        // Configs accepted this round; the newest is what a later one must be newer than.
        let mut accepted: Option<Config> = None;
        {
            let running = &self.config;
            let health = &self.health;
            let bgp = &self.bgp;
            // The clock counts from boot.
            let uptime_ms = ms;
            let fwd_ref: &Forwarder = fwd;
            let mut handler = |request: Request| -> Response {
                match mgmt::route(&request.method, &request.path) {
                    Err(r) => r,
                    Ok(Endpoint::Config) => {
                        match accept(accepted.as_ref().unwrap_or(running), &request.body) {
                            Ok(new) => {
                                let body = format!("applied config v{}\n", new.version);
                                accepted = Some(new);
                                Response::text(200, body)
                            }
                            Err(r) => {
                                info!(
                                    "config: refused a push ({}: {})",
                                    r.status,
                                    core::str::from_utf8(&r.body).unwrap_or("").trim_end()
                                );
                                r
                            }
                        }
                    }
                    Ok(endpoint) => {
                        let view = Parts {
                            config: running,
                            health,
                            bgp,
                            fwd: fwd_ref,
                            nic,
                            vrrp,
                        };
                        render(endpoint, &view, uptime_ms)
                    }
                }
            };
            touched |= self.server.poll(&mut local.sockets, ms, &mut handler);
        }

        if let Some(fetch) = &mut self.fetch {
            let (outcome, t) =
                fetch.poll(ms, &mut local.iface, &mut local.sockets, &mut self.ports);
            touched |= t;
            if let Some(outcome) = outcome {
                if let Some(f) = self.fetch.take() {
                    f.release(&mut local.sockets);
                }
                // A push may have replaced the baked config while the fetch ran.
                let keeping = self.config.version;
                let which = if keeping == self.baked_version {
                    "baked"
                } else {
                    "running"
                };
                match outcome {
                    Outcome::Failed(why) => {
                        warn!("fetch: keeping the {which} config v{keeping}: {why}")
                    }
                    Outcome::Blob(blob) => {
                        match accept(accepted.as_ref().unwrap_or(&self.config), &blob) {
                            Ok(new) => {
                                info!("fetch: got config v{}", new.version);
                                accepted = Some(new);
                            }
                            Err(r) => warn!(
                                "fetch: keeping the {which} config v{keeping}: {}",
                                core::str::from_utf8(&r.body)
                                    .unwrap_or("refused")
                                    .trim_end()
                            ),
                        }
                    }
                }
            }
        }

        let mut round = Round {
            touched,
            announce: Vec::new(),
        };
        if let Some(new) = accepted {
            round.announce = self.apply(new, now, fwd, local);
            round.touched = true;
        }
        round
    }

    /// Make `new` the running config; returns the addresses to announce if they changed.
    fn apply(
        &mut self,
        new: Config,
        now: Instant,
        fwd: &mut Forwarder,
        local: &mut LocalStack,
    ) -> Vec<IpAddr> {
        let before = announced(&self.config);
        fwd.apply_config(&new, now);
        info!("config applied: {}", new.summary());
        if new.interface != self.config.interface {
            local.set_interface(&new);
        }
        let port = new.management.as_ref().map(|m| m.port);
        self.server.set_port(port);
        self.ports.avoid = port.unwrap_or(0);
        self.health
            .configure(&new, fwd, &mut local.sockets, now.millis());
        self.bgp
            .configure(now.millis(), &new, fwd, local, &mut self.ports);
        let after = announced(&new);
        self.config = new;
        if after != before {
            after
        } else {
            Vec::new()
        }
    }
}

/// Every address the balancer answers for under `config`: IPv4 (by ARP) then IPv6 (by
/// neighbour discovery), its own first in each family.
pub fn announced(config: &Config) -> Vec<IpAddr> {
    let v4 = forwarder::arp::announced(config)
        .into_iter()
        .map(IpAddr::V4);
    v4.chain(
        forwarder::nd::announced6(config)
            .into_iter()
            .map(IpAddr::V6),
    )
    .collect()
}

/// The one accept path for a signed config blob (pushed or fetched): signed by the key of
/// `newest` (the newest config known), valid, and of a newer version than it.
fn accept(newest: &Config, blob: &[u8]) -> Result<Config, Response> {
    let pubkey = newest.management.as_ref().and_then(|m| m.pubkey.as_ref());
    mgmt::check_signed_config(
        blob,
        pubkey,
        newest.version,
        newest.interface.address.address,
    )
}

/// How long `/metrics` and `/status` wait for the other cores' fresh counters: a core reports
/// between two bursts, at most a housekeeping interval plus a nap (1 ms each) away.
const REPORT_WAIT_US: u64 = 5_000;

/// What `/metrics` and `/status` are rendered from.
struct Parts<'a> {
    config: &'a Config,
    health: &'a Checker,
    bgp: &'a Bgp,
    fwd: &'a Forwarder,
    nic: NicCounts,
    vrrp: Option<&'a VrrpStatus>,
}

/// `GET /metrics` or `GET /status`.
fn render(endpoint: Endpoint, parts: &Parts<'_>, uptime_ms: u64) -> Response {
    let Parts {
        config,
        health,
        bgp,
        fwd,
        nic,
        vrrp,
    } = *parts;
    // The other cores' forwarders: their counters are added to core 0's.
    let others = crate::cores::others(REPORT_WAIT_US);
    let mut vips = fwd.stats();
    let mut counters = fwd.counters().clone();
    let mut nic = nic;
    let mut flows_capacity = fwd.flow_capacity() as u64;
    let mut cores = Vec::with_capacity(1 + others.len());
    cores.push(CoreView {
        packets: nic.rx,
        forwarded: counters.forwarded,
        config_version: fwd.config_version(),
    });
    for r in &others {
        counters.add(&r.counters);
        nic.rx += r.nic.rx_packets;
        nic.tx += r.nic.tx_packets;
        nic.tx_shed += r.tx_shed;
        flows_capacity += r.flow_capacity;
        // Counters of a config this one has not caught up with yet wait for the next scrape.
        if r.version == fwd.config_version() {
            for (v, o) in vips.iter_mut().zip(r.vips.iter()) {
                v.add_counters(o);
            }
        }
        cores.push(CoreView {
            packets: r.nic.rx_packets,
            forwarded: r.counters.forwarded,
            config_version: r.version,
        });
    }
    let drops: Vec<(&str, u64)> = DropReason::ALL
        .iter()
        .map(|r| (r.name(), counters.drop_count(*r)))
        .collect();
    let transitions = health.transitions();
    let bgp_peers = bgp.peers(uptime_ms);
    let bgp_announced: Vec<IpAddr> = config
        .vips
        .iter()
        .map(|v| v.address)
        .filter(|a| bgp.announced(*a))
        .collect();
    let snapshot = Snapshot {
        config,
        uptime_ms,
        flows_capacity,
        drops: &drops,
        vips: &vips,
        transitions: &transitions,
        nic_rx_packets: nic.rx,
        nic_tx_packets: nic.tx,
        flows_rescheduled: counters.flows_rescheduled,
        icmp_forwarded: counters.icmp_forwarded,
        icmp_echo_replies: counters.icmp_echo_replies,
        icmp_frag_needed: counters.icmp_frag_needed,
        neigh_changes: counters.neigh_changes,
        bgp_peers: &bgp_peers,
        bgp_announced: &bgp_announced,
        vrrp,
        flows_stateless: counters.flows_stateless,
        flows_not_stored: counters.flows_not_stored,
        tx_shed: nic.tx_shed,
        cores: &cores,
    };
    if endpoint == Endpoint::Metrics {
        Response::with(200, mgmt::PROMETHEUS, mgmt::render_metrics(&snapshot))
    } else {
        Response::with(200, "application/json", mgmt::render_status(&snapshot))
    }
}
