//! What `GET /metrics` and `GET /status` show: a [`Snapshot`] of the running state rendered as
//! the Prometheus text format or as JSON. Label values and strings are escaped, so names from a
//! config can never break the format.

use crate::config::Config;
use crate::stats::{BackendStats, VipStats};
use crate::vrrp::{State as VrrpState, Status as VrrpStatus};
use alloc::string::String;
use core::fmt::Write;

/// Content type of the Prometheus text format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A health checker's transition count for one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transitions<'a> {
    /// The VIP's name.
    pub vip: &'a str,
    /// The backend's name.
    pub backend: &'a str,
    /// Up/down changes so far.
    pub count: u64,
}

/// One BGP peer's session as `/status` and `/metrics` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpPeer {
    /// The peer's address.
    pub address: core::net::Ipv4Addr,
    /// The peer's AS.
    pub asn: u32,
    /// The session's state as RFC 4271 names it (`Established` when up).
    pub state: &'static str,
    /// Milliseconds the session has been Established, while it is.
    pub up_ms: Option<u64>,
    /// The state of the BFD session with the peer (`up`, `down`, ...), with `bfd = true`.
    pub bfd: Option<&'static str>,
}

/// One poll loop (a CPU and its receive queue) as `/metrics` and `/status` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreView {
    /// Frames its receive queue delivered.
    pub packets: u64,
    /// Frames its forwarder forwarded.
    pub forwarded: u64,
    /// The config version its forwarder runs.
    pub config_version: u64,
}

/// Everything `/metrics` and `/status` show, as plain data.
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    /// The running config (VIP attributes; its version is the running version).
    pub config: &'a Config,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// The flow table's capacity.
    pub flows_capacity: u64,
    /// Drop counters by label, every label present.
    pub drops: &'a [(&'a str, u64)],
    /// Per-VIP state and counters, in config order.
    pub vips: &'a [VipStats],
    /// Health-check transitions of checked backends.
    pub transitions: &'a [Transitions<'a>],
    /// Frames received by the NIC.
    pub nic_rx_packets: u64,
    /// Frames sent by the NIC.
    pub nic_tx_packets: u64,
    /// Flows moved off backends that went down.
    pub flows_rescheduled: u64,
    /// ICMP errors to a VIP forwarded to the backend of the flow they quote.
    pub icmp_forwarded: u64,
    /// ICMP echo requests to a VIP answered.
    pub icmp_echo_replies: u64,
    /// ICMP "fragmentation needed" sent to clients whose DF packet would not fit once
    /// encapsulated (dsr-l3).
    pub icmp_frag_needed: u64,
    /// Next hops whose MAC an ARP packet changed.
    pub neigh_changes: u64,
    /// Every BGP peer's session, in config order (empty without `[bgp]`).
    pub bgp_peers: &'a [BgpPeer],
    /// The VIP addresses (either family) announced to at least one BGP peer.
    pub bgp_announced: &'a [core::net::IpAddr],
    /// The VRRP router, with `[vrrp]`.
    pub vrrp: Option<&'a VrrpStatus>,
    /// TCP packets without SYN of no known flow, routed by the consistent hash without an entry.
    pub flows_stateless: u64,
    /// New flows above `limits.new_flows_per_second`, routed by the hash and not stored.
    pub flows_not_stored: u64,
    /// Forwarded frames shed because the transmit ring stayed full.
    pub tx_shed: u64,
    /// Every poll loop, core 0 first (the counters above are their sums).
    pub cores: &'a [CoreView],
}

/// Escape a Prometheus label value.
fn label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escape a JSON string (without the quotes).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// The Prometheus text exposition of `s`.
pub fn render_metrics(s: &Snapshot<'_>) -> String {
    let mut o = String::new();
    family(
        &mut o,
        "sidestep_config_version",
        "gauge",
        "Version of the running config.",
    );
    let _ = writeln!(o, "sidestep_config_version {}", s.config.version);
    family(
        &mut o,
        "sidestep_uptime_seconds",
        "gauge",
        "Seconds since the image booted.",
    );
    let _ = writeln!(
        o,
        "sidestep_uptime_seconds {}.{:03}",
        s.uptime_ms / 1000,
        s.uptime_ms % 1000
    );
    family(
        &mut o,
        "sidestep_flows_capacity",
        "gauge",
        "Capacity of the flow table.",
    );
    let _ = writeln!(o, "sidestep_flows_capacity {}", s.flows_capacity);
    family(
        &mut o,
        "sidestep_nic_rx_packets_total",
        "counter",
        "Frames received by the data NIC.",
    );
    let _ = writeln!(o, "sidestep_nic_rx_packets_total {}", s.nic_rx_packets);
    family(
        &mut o,
        "sidestep_nic_tx_packets_total",
        "counter",
        "Frames sent by the data NIC.",
    );
    let _ = writeln!(o, "sidestep_nic_tx_packets_total {}", s.nic_tx_packets);
    family(
        &mut o,
        "sidestep_flows_rescheduled_total",
        "counter",
        "Flows moved off a backend that health checks marked down.",
    );
    let _ = writeln!(
        o,
        "sidestep_flows_rescheduled_total {}",
        s.flows_rescheduled
    );
    family(
        &mut o,
        "sidestep_icmp_forwarded_total",
        "counter",
        "ICMP errors to a VIP forwarded to the backend of the flow they quote.",
    );
    let _ = writeln!(o, "sidestep_icmp_forwarded_total {}", s.icmp_forwarded);
    family(
        &mut o,
        "sidestep_icmp_echo_replies_total",
        "counter",
        "ICMP echo requests to a VIP answered by the balancer.",
    );
    let _ = writeln!(
        o,
        "sidestep_icmp_echo_replies_total {}",
        s.icmp_echo_replies
    );
    family(
        &mut o,
        "sidestep_icmp_frag_needed_total",
        "counter",
        "ICMP fragmentation needed sent for DF packets too big to encapsulate (dsr-l3).",
    );
    let _ = writeln!(o, "sidestep_icmp_frag_needed_total {}", s.icmp_frag_needed);
    family(
        &mut o,
        "sidestep_neigh_changes_total",
        "counter",
        "Next hops (backends, the gateway) whose MAC an ARP packet changed.",
    );
    let _ = writeln!(o, "sidestep_neigh_changes_total {}", s.neigh_changes);
    let flood_counters = [
        (
            "sidestep_flows_stateless_total",
            "TCP packets without SYN that matched no flow of a maglev/sh VIP: routed by the hash, no entry made.",
            s.flows_stateless,
        ),
        (
            "sidestep_flows_not_stored_total",
            "New flows above limits.new_flows_per_second: routed by the hash, not stored.",
            s.flows_not_stored,
        ),
        (
            "sidestep_tx_shed_total",
            "Forwarded frames dropped because the transmit ring stayed full for a round.",
            s.tx_shed,
        ),
    ];
    for (name, help, value) in flood_counters {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {value}");
    }
    family(
        &mut o,
        "sidestep_drops_total",
        "counter",
        "Frames not forwarded, by reason.",
    );
    for (reason, n) in s.drops {
        let _ = writeln!(
            o,
            "sidestep_drops_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }

    core_metrics(&mut o, s.cores);

    type VipMetric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&VipStats) -> u64,
    );
    let vip_metrics: [VipMetric; 4] = [
        (
            "sidestep_vip_packets_total",
            "counter",
            "Packets forwarded for the VIP.",
            |v| v.packets,
        ),
        (
            "sidestep_vip_bytes_total",
            "counter",
            "IP bytes forwarded for the VIP.",
            |v| v.bytes,
        ),
        (
            "sidestep_flows_active",
            "gauge",
            "Flows of the VIP in the flow table.",
            |v| v.flows_active,
        ),
        (
            "sidestep_vip_failopen",
            "gauge",
            "1 while every backend of the VIP is down and its traffic goes to them all the same (fail_open), else 0.",
            |v| u64::from(v.failing_open),
        ),
    ];
    for (name, kind, help, get) in vip_metrics {
        family(&mut o, name, kind, help);
        for v in s.vips {
            let _ = writeln!(o, "{name}{{vip=\"{}\"}} {}", label(&v.name), get(v));
        }
    }
    type BackendMetric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&BackendStats) -> u64,
    );
    let backend_metrics: [BackendMetric; 3] = [
        (
            "sidestep_backend_packets_total",
            "counter",
            "Packets forwarded to the backend.",
            |b| b.packets,
        ),
        (
            "sidestep_backend_bytes_total",
            "counter",
            "IP bytes forwarded to the backend.",
            |b| b.bytes,
        ),
        (
            "sidestep_backend_up",
            "gauge",
            "1 if the backend is up (health checks), else 0.",
            |b| u64::from(b.up),
        ),
    ];
    for (name, kind, help, get) in backend_metrics {
        family(&mut o, name, kind, help);
        for v in s.vips {
            for b in &v.backends {
                let _ = writeln!(
                    o,
                    "{name}{{vip=\"{}\",backend=\"{}\"}} {}",
                    label(&v.name),
                    label(&b.name),
                    get(b)
                );
            }
        }
    }
    family(
        &mut o,
        "sidestep_health_transitions_total",
        "counter",
        "Up/down changes decided by health checks.",
    );
    for t in s.transitions {
        let _ = writeln!(
            o,
            "sidestep_health_transitions_total{{vip=\"{}\",backend=\"{}\"}} {}",
            label(t.vip),
            label(t.backend),
            t.count
        );
    }
    if s.config.bgp.is_some() {
        bgp_metrics(&mut o, s);
    }
    if let Some(v) = s.vrrp {
        vrrp_metrics(&mut o, v);
    }
    o
}

/// The BGP families, present only with `[bgp]`.
fn bgp_metrics(o: &mut String, s: &Snapshot<'_>) {
    family(
        o,
        "sidestep_bgp_session_up",
        "gauge",
        "1 if the BGP session with the peer is Established, else 0.",
    );
    for p in s.bgp_peers {
        let _ = writeln!(
            o,
            "sidestep_bgp_session_up{{peer=\"{}\"}} {}",
            p.address,
            u8::from(p.up_ms.is_some())
        );
    }
    if s.bgp_peers.iter().any(|p| p.bfd.is_some()) {
        family(
            o,
            "sidestep_bfd_session_up",
            "gauge",
            "1 if the BFD session with the BGP peer is up, else 0.",
        );
        for p in s.bgp_peers {
            if let Some(state) = p.bfd {
                let _ = writeln!(
                    o,
                    "sidestep_bfd_session_up{{peer=\"{}\"}} {}",
                    p.address,
                    u8::from(state == "up")
                );
            }
        }
    }
    family(
        o,
        "sidestep_bgp_announced",
        "gauge",
        "1 if the VIP's address is announced to at least one BGP peer, else 0.",
    );
    for v in &s.config.vips {
        let _ = writeln!(
            o,
            "sidestep_bgp_announced{{vip=\"{}\"}} {}",
            label(&v.name),
            u8::from(s.bgp_announced.contains(&v.address))
        );
    }
}

fn core_metrics(o: &mut String, cores: &[CoreView]) {
    type CoreMetric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&CoreView) -> u64,
    );
    let metrics: [CoreMetric; 3] = [
        (
            "sidestep_core_packets_total",
            "counter",
            "Frames received by the core's queue.",
            |c| c.packets,
        ),
        (
            "sidestep_core_forwarded_total",
            "counter",
            "Frames the core forwarded to a backend.",
            |c| c.forwarded,
        ),
        (
            "sidestep_core_config_version",
            "gauge",
            "Version of the config the core's forwarder runs.",
            |c| c.config_version,
        ),
    ];
    for (name, kind, help, value) in metrics {
        family(o, name, kind, help);
        for (i, c) in cores.iter().enumerate() {
            let _ = writeln!(o, "{name}{{core=\"{i}\"}} {}", value(c));
        }
    }
}

fn vrrp_metrics(o: &mut String, v: &VrrpStatus) {
    family(
        o,
        "sidestep_vrrp_master",
        "gauge",
        "1 while this balancer is the VRRP master (serves the VIPs), else 0.",
    );
    let master = u8::from(v.state == VrrpState::Master);
    let _ = writeln!(o, "sidestep_vrrp_master {master}");
    family(
        o,
        "sidestep_vrrp_priority",
        "gauge",
        "This balancer's VRRP priority.",
    );
    let _ = writeln!(o, "sidestep_vrrp_priority {}", v.priority);
    family(
        o,
        "sidestep_vrrp_adverts_sent_total",
        "counter",
        "VRRP advertisements sent.",
    );
    let _ = writeln!(o, "sidestep_vrrp_adverts_sent_total {}", v.sent);
    family(
        o,
        "sidestep_vrrp_adverts_accepted_total",
        "counter",
        "VRRP advertisements of this virtual router accepted.",
    );
    let _ = writeln!(o, "sidestep_vrrp_adverts_accepted_total {}", v.accepted);
    family(
        o,
        "sidestep_vrrp_adverts_rejected_total",
        "counter",
        "VRRP advertisements ignored, by reason.",
    );
    for (reason, n) in &v.rejected {
        let _ = writeln!(
            o,
            "sidestep_vrrp_adverts_rejected_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

/// The `"vrrp"` member of `/status`: `{"vrid":N,"version":N,"state":"master"|"backup"|
/// "initialize","priority":N,"master":"a.b.c.d"|null,"master_priority":N,"accepted":N,"sent":N,
/// "rejected":{"ttl":N,...}}`.
fn vrrp_status(o: &mut String, v: &VrrpStatus) {
    let _ = write!(
        o,
        ",\"vrrp\":{{\"vrid\":{},\"version\":{},\"state\":\"{}\",\"priority\":{},\"master\":",
        v.vrid,
        v.version,
        v.state.name(),
        v.priority
    );
    match v.master {
        Some(m) => {
            let _ = write!(o, "\"{m}\"");
        }
        None => o.push_str("null"),
    }
    let _ = write!(
        o,
        ",\"master_priority\":{},\"accepted\":{},\"sent\":{},\"rejected\":{{",
        v.master_priority, v.accepted, v.sent
    );
    for (i, (reason, n)) in v.rejected.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(o, "{sep}\"{reason}\":{n}");
    }
    o.push_str("}}");
}

/// The `/status` JSON of `s`:
/// `{"version":V,"uptime_ms":U,"flows_capacity":C,"drops":{"malformed":N,...},"vips":[{"name":..,
/// "address":..,"port":"80"|"*","protocol":..,"mode":..,"scheduler":..,"packets":N,"bytes":N,
/// "flows":N,"backends":[{"name":..,"address":..,"weight":N,"up":B,"packets":N,"bytes":N,
/// "flows":N}]}]}`, and with `[bgp]` also `"bgp":{"peers":[{"address":..,"asn":N,"state":..,
/// "uptime_ms":N|null,"bfd":..(with bfd = true)}],"announced":["A.B.C.D"|"IPv6",..]}` before the
/// closing brace.
pub fn render_status(s: &Snapshot<'_>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"version\":{},\"uptime_ms\":{},\"flows_capacity\":{},\"drops\":{{",
        s.config.version, s.uptime_ms, s.flows_capacity
    );
    for (i, (reason, n)) in s.drops.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(o, "{sep}\"{}\":{n}", json_str(reason));
    }
    o.push_str("},\"vips\":[");
    for (i, v) in s.vips.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let cfg = s.config.vips.iter().find(|c| c.name == v.name);
        let _ = write!(o, "{{\"name\":\"{}\"", json_str(&v.name));
        match cfg {
            Some(c) => {
                let _ = write!(
                    o,
                    ",\"address\":\"{}\",\"port\":\"{}\",\"protocol\":\"{}\",\"mode\":\"{}\",\"scheduler\":\"{}\"",
                    c.address,
                    c.port,
                    c.protocol.name(),
                    c.mode.name(),
                    c.scheduler.name()
                );
            }
            None => o.push_str(
                ",\"address\":\"\",\"port\":\"\",\"protocol\":\"\",\"mode\":\"\",\"scheduler\":\"\"",
            ),
        }
        let _ = write!(
            o,
            ",\"packets\":{},\"bytes\":{},\"flows\":{},\"backends\":[",
            v.packets, v.bytes, v.flows_active
        );
        for (j, b) in v.backends.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let _ = write!(
                o,
                "{{\"name\":\"{}\",\"address\":\"{}\",\"weight\":{},\"up\":{},\"packets\":{},\"bytes\":{},\"flows\":{}}}",
                json_str(&b.name),
                b.address,
                b.weight,
                b.up,
                b.packets,
                b.bytes,
                b.flows_active
            );
        }
        o.push_str("]}");
    }
    o.push(']');
    if s.config.bgp.is_some() {
        o.push_str(",\"bgp\":{\"peers\":[");
        for (i, p) in s.bgp_peers.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(
                o,
                "{sep}{{\"address\":\"{}\",\"asn\":{},\"state\":\"{}\",\"uptime_ms\":",
                p.address,
                p.asn,
                json_str(p.state)
            );
            match p.up_ms {
                Some(ms) => {
                    let _ = write!(o, "{ms}");
                }
                None => o.push_str("null"),
            }
            if let Some(bfd) = p.bfd {
                let _ = write!(o, ",\"bfd\":\"{}\"", json_str(bfd));
            }
            o.push('}');
        }
        o.push_str("],\"announced\":[");
        for (i, a) in s.bgp_announced.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(o, "{sep}\"{a}\"");
        }
        o.push_str("]}");
    }
    if let Some(v) = s.vrrp {
        vrrp_status(&mut o, v);
    }
    if !s.cores.is_empty() {
        o.push_str(",\"cores\":[");
        for (i, c) in s.cores.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(
                o,
                "{sep}{{\"core\":{i},\"packets\":{},\"forwarded\":{},\"config_version\":{}}}",
                c.packets, c.forwarded, c.config_version
            );
        }
        o.push(']');
    }
    o.push_str("}\n");
    o
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Vip, VipPort};

    /// A config of version 7 with one VIP of two backends, so the renderings below are short.
    pub(crate) fn config() -> Config {
        let config = Config::builder()
            .version(7)
            .gateway(None)
            .vip(
                Vip::builder("web", "10.77.0.100", VipPort::One(80))
                    .backend("be1", "10.77.0.21", 1)
                    .backend("be2", "10.77.0.22", 2)
                    .build(),
            )
            .build();
        config.validate().unwrap();
        config
    }

    /// A snapshot of `config` with every counter 0 and nothing else: the tests set what they
    /// look at.
    fn quiet(config: &Config) -> Snapshot<'_> {
        Snapshot {
            config,
            uptime_ms: 0,
            flows_capacity: 0,
            drops: &[],
            vips: &[],
            transitions: &[],
            nic_rx_packets: 0,
            nic_tx_packets: 0,
            flows_rescheduled: 0,
            icmp_forwarded: 0,
            icmp_echo_replies: 0,
            icmp_frag_needed: 0,
            neigh_changes: 0,
            bgp_peers: &[],
            bgp_announced: &[],
            vrrp: None,
            flows_stateless: 0,
            flows_not_stored: 0,
            tx_shed: 0,
            cores: &[],
        }
    }

    fn stats() -> Vec<VipStats> {
        vec![VipStats {
            name: "web".into(),
            packets: 10,
            bytes: 1000,
            flows_active: 2,
            failing_open: false,
            backends: vec![
                BackendStats {
                    name: "be1".into(),
                    address: "10.77.0.21".parse().unwrap(),
                    weight: 1,
                    up: true,
                    packets: 6,
                    bytes: 600,
                    flows_active: 1,
                },
                BackendStats {
                    name: "be\"2".into(),
                    address: "10.77.0.22".parse().unwrap(),
                    weight: 2,
                    up: false,
                    packets: 4,
                    bytes: 400,
                    flows_active: 1,
                },
            ],
        }]
    }

    #[test]
    fn status_json() {
        let config = config();
        let vips = stats();
        let drops = [("malformed", 3), ("not_vip", 0), ("mgmt_denied", 1)];
        let s = Snapshot {
            uptime_ms: 1234,
            flows_capacity: 1024,
            drops: &drops,
            vips: &vips,
            ..quiet(&config)
        };
        assert_eq!(
            render_status(&s),
            "{\"version\":7,\"uptime_ms\":1234,\"flows_capacity\":1024,\
             \"drops\":{\"malformed\":3,\"not_vip\":0,\"mgmt_denied\":1},\
             \"vips\":[{\"name\":\"web\",\"address\":\"10.77.0.100\",\"port\":\"80\",\
             \"protocol\":\"tcp\",\"mode\":\"dsr-l2\",\"scheduler\":\"rr\",\
             \"packets\":10,\"bytes\":1000,\"flows\":2,\"backends\":[\
             {\"name\":\"be1\",\"address\":\"10.77.0.21\",\"weight\":1,\"up\":true,\"packets\":6,\"bytes\":600,\"flows\":1},\
             {\"name\":\"be\\\"2\",\"address\":\"10.77.0.22\",\"weight\":2,\"up\":false,\"packets\":4,\"bytes\":400,\"flows\":1}]}]}\n"
        );
    }

    #[test]
    fn every_core_has_its_lines_and_status_lists_them() {
        let config = config();
        let cores = [
            CoreView {
                packets: 5,
                forwarded: 4,
                config_version: 7,
            },
            CoreView {
                packets: 9,
                forwarded: 8,
                config_version: 6,
            },
        ];
        let s = Snapshot {
            cores: &cores,
            ..quiet(&config)
        };
        let m = render_metrics(&s);
        for line in [
            "# TYPE sidestep_core_packets_total counter",
            "sidestep_core_packets_total{core=\"0\"} 5",
            "sidestep_core_packets_total{core=\"1\"} 9",
            "sidestep_core_forwarded_total{core=\"1\"} 8",
            "sidestep_core_config_version{core=\"0\"} 7",
            "sidestep_core_config_version{core=\"1\"} 6",
        ] {
            assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
        }
        let status = render_status(&s);
        assert!(
            status.ends_with(
                ",\"cores\":[{\"core\":0,\"packets\":5,\"forwarded\":4,\"config_version\":7},\
                 {\"core\":1,\"packets\":9,\"forwarded\":8,\"config_version\":6}]}\n"
            ),
            "{status}"
        );
    }

    #[test]
    fn metrics_text() {
        let config = config();
        let vips = stats();
        let drops = [("malformed", 3), ("mgmt_denied", 1)];
        let transitions = [Transitions {
            vip: "web",
            backend: "be1",
            count: 2,
        }];
        let s = Snapshot {
            uptime_ms: 61_005,
            flows_capacity: 1024,
            drops: &drops,
            vips: &vips,
            transitions: &transitions,
            nic_rx_packets: 5,
            nic_tx_packets: 6,
            flows_rescheduled: 4,
            icmp_forwarded: 8,
            icmp_echo_replies: 9,
            icmp_frag_needed: 3,
            neigh_changes: 10,
            flows_stateless: 11,
            flows_not_stored: 12,
            tx_shed: 13,
            ..quiet(&config)
        };
        let m = render_metrics(&s);
        for line in [
            "# TYPE sidestep_config_version gauge",
            "sidestep_config_version 7",
            "sidestep_uptime_seconds 61.005",
            "sidestep_drops_total{reason=\"malformed\"} 3",
            "sidestep_drops_total{reason=\"mgmt_denied\"} 1",
            "# TYPE sidestep_vip_packets_total counter",
            "sidestep_vip_packets_total{vip=\"web\"} 10",
            "sidestep_vip_bytes_total{vip=\"web\"} 1000",
            "sidestep_flows_active{vip=\"web\"} 2",
            "# TYPE sidestep_vip_failopen gauge",
            "sidestep_vip_failopen{vip=\"web\"} 0",
            "sidestep_backend_packets_total{vip=\"web\",backend=\"be1\"} 6",
            "sidestep_backend_bytes_total{vip=\"web\",backend=\"be\\\"2\"} 400",
            "sidestep_backend_up{vip=\"web\",backend=\"be1\"} 1",
            "sidestep_backend_up{vip=\"web\",backend=\"be\\\"2\"} 0",
            "sidestep_health_transitions_total{vip=\"web\",backend=\"be1\"} 2",
            "sidestep_nic_rx_packets_total 5",
            "sidestep_flows_rescheduled_total 4",
            "# TYPE sidestep_icmp_forwarded_total counter",
            "sidestep_icmp_forwarded_total 8",
            "sidestep_icmp_echo_replies_total 9",
            "sidestep_icmp_frag_needed_total 3",
            "sidestep_neigh_changes_total 10",
            "# TYPE sidestep_flows_stateless_total counter",
            "sidestep_flows_stateless_total 11",
            "sidestep_flows_not_stored_total 12",
            "sidestep_tx_shed_total 13",
            "sidestep_flows_capacity 1024",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        // Every family has HELP and TYPE before its samples.
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(m.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(m.contains(&format!("# HELP {name} ")), "{name}");
        }
    }

    #[test]
    fn bgp_sessions_and_announcements() {
        let mut config = config();
        let plain = render_status(&quiet(&config));
        assert!(!plain.contains("bgp"), "{plain}");
        config.bgp = Config::builder()
            .bgp(65010)
            .bgp_peer("10.77.0.1", 65000)
            .build()
            .bgp;
        let peers = [
            BgpPeer {
                address: "10.77.0.1".parse().unwrap(),
                asn: 65000,
                state: "Established",
                up_ms: Some(4200),
                bfd: Some("up"),
            },
            BgpPeer {
                address: "10.77.0.9".parse().unwrap(),
                asn: 65000,
                state: "Active",
                up_ms: None,
                bfd: None,
            },
        ];
        let announced = ["10.77.0.100".parse().unwrap()];
        let s = Snapshot {
            bgp_peers: &peers,
            bgp_announced: &announced,
            ..quiet(&config)
        };
        let status = render_status(&s);
        assert!(
            status.ends_with(
                "\"vips\":[],\"bgp\":{\"peers\":[\
                 {\"address\":\"10.77.0.1\",\"asn\":65000,\"state\":\"Established\",\"uptime_ms\":4200,\"bfd\":\"up\"},\
                 {\"address\":\"10.77.0.9\",\"asn\":65000,\"state\":\"Active\",\"uptime_ms\":null}],\
                 \"announced\":[\"10.77.0.100\"]}}\n"
            ),
            "{status}"
        );
        let m = render_metrics(&s);
        for line in [
            "# TYPE sidestep_bgp_session_up gauge",
            "sidestep_bgp_session_up{peer=\"10.77.0.1\"} 1",
            "sidestep_bgp_session_up{peer=\"10.77.0.9\"} 0",
            "sidestep_bfd_session_up{peer=\"10.77.0.1\"} 1",
            "sidestep_bgp_announced{vip=\"web\"} 1",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        let none = render_metrics(&Snapshot {
            bgp_announced: &[],
            ..s
        });
        assert!(none
            .lines()
            .any(|l| l == "sidestep_bgp_announced{vip=\"web\"} 0"));
    }

    #[test]
    fn ipv6_vips_in_bgp_announcements() {
        let mut config = config();
        config.bgp = Config::builder()
            .bgp(65010)
            .bgp_peer("10.77.0.1", 65000)
            .build()
            .bgp;
        config.vips.push(
            Vip::builder("web6", "fd00:77::100", VipPort::One(80))
                .backend("be1", "fd00:77::21", 1)
                .build(),
        );
        let announced = ["fd00:77::100".parse().unwrap()];
        let s = Snapshot {
            bgp_announced: &announced,
            ..quiet(&config)
        };
        let status = render_status(&s);
        assert!(
            status.ends_with("\"announced\":[\"fd00:77::100\"]}}\n"),
            "{status}"
        );
        let m = render_metrics(&s);
        for line in [
            "sidestep_bgp_announced{vip=\"web\"} 0",
            "sidestep_bgp_announced{vip=\"web6\"} 1",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
    }

    #[test]
    fn vrrp_in_metrics_and_status() {
        let config = config();
        let vrrp_config = crate::config::Vrrp {
            vrid: 51,
            priority: 150,
            advert_ms: 1000,
            preempt: true,
            version: crate::config::VrrpVersion::V3,
        };
        let own = "10.77.0.2".parse().unwrap();
        let mut router = crate::vrrp::Router::new(&vrrp_config, own, &[]);
        router.start(0);
        router.poll(10_000);
        let status = router.status();
        let s = Snapshot {
            vrrp: Some(&status),
            ..quiet(&config)
        };
        let m = render_metrics(&s);
        for line in [
            "sidestep_vrrp_master 1",
            "sidestep_vrrp_priority 150",
            "sidestep_vrrp_adverts_sent_total 1",
            "sidestep_vrrp_adverts_rejected_total{reason=\"checksum\"} 0",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        assert!(render_status(&s).ends_with(
            "\"vips\":[],\"vrrp\":{\"vrid\":51,\"version\":3,\"state\":\"master\",\
             \"priority\":150,\"master\":\"10.77.0.2\",\"master_priority\":150,\"accepted\":0,\
             \"sent\":1,\"rejected\":{\"ttl\":0,\"length\":0,\"version\":0,\"type\":0,\
             \"auth_type\":0,\"checksum\":0,\"interval\":0,\"vrid\":0}}}\n"
        ));
    }
}
