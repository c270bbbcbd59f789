//! The TOML config file (the README's "Config file" section), read into the shared model of
//! `control::config`.
//!
//! The file is what operators write, so it is read strictly: unknown keys are refused (a typo
//! must not silently mean "default"), closed sets of names list the valid ones, and a key a
//! backend cannot have (`port`) says why. After this translation the model's own
//! [`Config::validate`] checks the cross-field rules, so the host and the image share one rule
//! book.

use base64::Engine;
use control::config::{
    parse_mac, parse_name, Backend, Bgp, BgpPeer, Config, ConfigError, Health, HealthKind,
    Interface, Limits, Management, Mode, Polling, Prefix, Prefix6, Protocol, Scheduler, Vip,
    VipPort, Vrrp, VrrpVersion, BGP_HOLD_DEFAULT, VRRP_ADVERT_MS_DEFAULT, VRRP_PRIORITY_DEFAULT,
};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    version: u64,
    interface: FileInterface,
    management: Option<FileManagement>,
    limits: Option<FileLimits>,
    #[serde(default)]
    vip: Vec<FileVip>,
    bgp: Option<FileBgp>,
    vrrp: Option<FileVrrp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileVrrp {
    vrid: i64,
    priority: Option<i64>,
    advert_ms: Option<i64>,
    preempt: Option<bool>,
    version: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBgp {
    asn: i64,
    router_id: Option<String>,
    hold_time: Option<i64>,
    announce: Option<bool>,
    bfd: Option<bool>,
    #[serde(default)]
    peer: Vec<FileBgpPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBgpPeer {
    address: String,
    asn: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileInterface {
    address: String,
    gateway: Option<String>,
    address6: Option<String>,
    gateway6: Option<String>,
    mtu: Option<i64>,
    nic: Option<String>,
    poll: Option<String>,
    cores: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileManagement {
    port: i64,
    #[serde(default)]
    allow: Vec<String>,
    pubkey: Option<String>,
    fetch: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    flows: Option<i64>,
    new_flows_per_second: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FilePort {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileVip {
    name: String,
    address: String,
    port: FilePort,
    protocol: Option<String>,
    mode: Option<String>,
    scheduler: Option<String>,
    persistence: Option<i64>,
    fail_open: Option<bool>,
    health: Option<FileHealth>,
    #[serde(default)]
    backend: Vec<FileBackend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealth {
    kind: Option<String>,
    port: Option<i64>,
    interval_ms: Option<i64>,
    timeout_ms: Option<i64>,
    rise: Option<i64>,
    fall: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackend {
    name: String,
    address: String,
    weight: Option<i64>,
    mac: Option<String>,
    /// Never valid: caught to explain why, instead of a bare "unknown field".
    port: Option<toml::Value>,
}

fn address(field: &str, text: &str) -> Result<Ipv4Addr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::new(
            field,
            format!("\"{text}\" is not an IPv4 address like 10.77.0.2"),
        )
    })
}

fn address6(field: &str, text: &str) -> Result<Ipv6Addr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::new(
            field,
            format!("\"{text}\" is not an IPv6 address like fd00:77::1"),
        )
    })
}

/// A VIP's or backend's address: either family.
fn ip_address(field: &str, text: &str) -> Result<IpAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::new(
            field,
            format!("\"{text}\" is not an IP address like 10.77.0.100 or fd00:77::100"),
        )
    })
}

fn prefix6(field: &str, text: &str) -> Result<Prefix6, ConfigError> {
    Prefix6::parse(text).ok_or_else(|| {
        ConfigError::new(
            field,
            format!("\"{text}\" is not an IPv6 prefix like fd00:77::2/64 (address/0..128)"),
        )
    })
}

fn prefix(field: &str, text: &str) -> Result<Prefix, ConfigError> {
    Prefix::parse(text).ok_or_else(|| {
        ConfigError::new(
            field,
            format!("\"{text}\" is not an IPv4 prefix like 10.77.0.0/24 (address/0..32)"),
        )
    })
}

/// An IPv4 prefix where an IPv4 or IPv6 one may stand (IPv6 ones are taken before this).
fn prefix_of_either(field: &str, text: &str) -> Result<Prefix, ConfigError> {
    Prefix::parse(text).ok_or_else(|| {
        ConfigError::new(
            field,
            format!("\"{text}\" is not an IPv4 or IPv6 prefix like 10.77.0.0/24 or fd00:77::/64"),
        )
    })
}

fn ranged<T: TryFrom<i64>>(field: &str, v: i64, lo: i64, hi: i64) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(
            field,
            format!("{v} is out of range {lo}..={hi}"),
        ));
    }
    T::try_from(v).map_err(|_| ConfigError::new(field, format!("{v} is out of range")))
}

/// Parse the TOML text of a config file and validate it.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        // toml's message names the key and shows the line; keep it whole.
        ConfigError::new("", e.to_string().trim_end().to_string())
    })?;
    let config = translate(file)?;
    config.validate()?;
    Ok(config)
}

fn translate(file: FileConfig) -> Result<Config, ConfigError> {
    let iface = file.interface;
    let interface = Interface {
        address: prefix("interface.address", &iface.address)?,
        gateway: iface
            .gateway
            .map(|g| address("interface.gateway", &g))
            .transpose()?,
        address6: iface
            .address6
            .map(|a| prefix6("interface.address6", &a))
            .transpose()?,
        gateway6: iface
            .gateway6
            .map(|g| address6("interface.gateway6", &g))
            .transpose()?,
        mtu: ranged("interface.mtu", iface.mtu.unwrap_or(1500), 0, 65535)?,
        nic: iface.nic,
        poll: named(
            "interface.poll",
            parse_name(
                &Polling::ALL,
                Polling::name,
                "poll",
                iface.poll.as_deref().unwrap_or("auto"),
            ),
        )?,
        cores: iface
            .cores
            .map(|c| ranged("interface.cores", c, 0, 65535))
            .transpose()?,
    };
    let management = file
        .management
        .map(|m| -> Result<Management, ConfigError> {
            let (mut allow, mut allow6) = (Vec::new(), Vec::new());
            for p in &m.allow {
                match Prefix6::parse(p) {
                    Some(p6) if p.contains(':') => allow6.push(p6),
                    _ => allow.push(prefix_of_either("management.allow", p)?),
                }
            }
            let pubkey = m.pubkey.map(|k| parse_pubkey(&k)).transpose()?;
            Ok(Management {
                port: ranged("management.port", m.port, 1, 65535)?,
                allow,
                allow6,
                pubkey,
                fetch: m.fetch,
            })
        })
        .transpose()?;
    let limits = Limits {
        flows: file
            .limits
            .as_ref()
            .and_then(|l| l.flows)
            .map(|f| ranged("limits.flows", f, 0, i64::from(u32::MAX)))
            .transpose()?,
        new_flows_per_second: file
            .limits
            .as_ref()
            .and_then(|l| l.new_flows_per_second)
            .map(|f| ranged("limits.new_flows_per_second", f, 0, i64::from(u32::MAX)))
            .transpose()?,
    };
    let vips = file
        .vip
        .into_iter()
        .map(translate_vip)
        .collect::<Result<Vec<_>, _>>()?;
    let bgp = file.bgp.map(translate_bgp).transpose()?;
    let vrrp = file.vrrp.map(translate_vrrp).transpose()?;
    Ok(Config {
        version: file.version,
        interface,
        management,
        limits,
        vips,
        bgp,
        vrrp,
    })
}

fn translate_vrrp(v: FileVrrp) -> Result<Vrrp, ConfigError> {
    let version = match v.version.unwrap_or(3) {
        3 => VrrpVersion::V3,
        2 => VrrpVersion::V2,
        other => {
            return Err(ConfigError::new(
                "vrrp.version",
                format!("{other} is not a VRRP version this balancer speaks; use 3 or 2"),
            ))
        }
    };
    Ok(Vrrp {
        vrid: ranged("vrrp.vrid", v.vrid, 0, 255)?,
        priority: ranged(
            "vrrp.priority",
            v.priority.unwrap_or(i64::from(VRRP_PRIORITY_DEFAULT)),
            0,
            255,
        )?,
        advert_ms: ranged(
            "vrrp.advert_ms",
            v.advert_ms.unwrap_or(i64::from(VRRP_ADVERT_MS_DEFAULT)),
            0,
            i64::from(u32::MAX),
        )?,
        preempt: v.preempt.unwrap_or(true),
        version,
    })
}

fn translate_bgp(b: FileBgp) -> Result<Bgp, ConfigError> {
    let mut peers = Vec::with_capacity(b.peer.len());
    for p in b.peer {
        let address = address("bgp.peer: address", &p.address)?;
        let field = format!("bgp.peer \"{address}\": asn");
        peers.push(BgpPeer {
            address,
            asn: ranged(&field, p.asn, 0, i64::from(u32::MAX))?,
        });
    }
    Ok(Bgp {
        asn: ranged("bgp.asn", b.asn, 0, i64::from(u32::MAX))?,
        router_id: b
            .router_id
            .map(|r| address("bgp.router_id", &r))
            .transpose()?,
        hold_time: ranged(
            "bgp.hold_time",
            b.hold_time.unwrap_or(i64::from(BGP_HOLD_DEFAULT)),
            0,
            65535,
        )?,
        announce: b.announce.unwrap_or(true),
        bfd: b.bfd.unwrap_or(false),
        peers,
    })
}

/// Decode a base64 Ed25519 public key (32 bytes).
pub fn parse_pubkey(text: &str) -> Result<[u8; 32], ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| ConfigError::new("management.pubkey", format!("is not base64: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        ConfigError::new(
            "management.pubkey",
            format!("is {} bytes; an Ed25519 public key is 32", b.len()),
        )
    })
}

fn named<T>(field: &str, r: Result<T, String>) -> Result<T, ConfigError> {
    r.map_err(|m| ConfigError::new(field, m))
}

fn translate_vip(v: FileVip) -> Result<Vip, ConfigError> {
    let field = format!("vip \"{}\"", v.name);
    let f = |name: &str| format!("{field}: {name}");
    let port = match v.port {
        FilePort::Text(t) if t == "*" => VipPort::All,
        FilePort::Text(t) => {
            return Err(ConfigError::new(
                f("port"),
                format!("\"{t}\" is not a port; use 1..=65535, or \"*\" for all ports"),
            ))
        }
        FilePort::Number(n) => VipPort::One(ranged(&f("port"), n, 0, 65535)?),
    };
    let health = v
        .health
        .map(|h| -> Result<Health, ConfigError> {
            let d = Health::DEFAULT;
            let hf = |name: &str| format!("{field}: health.{name}");
            Ok(Health {
                kind: match h.kind {
                    Some(k) => named(
                        &field,
                        parse_name(&HealthKind::ALL, HealthKind::name, "health.kind", &k),
                    )?,
                    None => d.kind,
                },
                port: h
                    .port
                    .map(|p| ranged(&hf("port"), p, 0, 65535))
                    .transpose()?,
                interval_ms: ranged(
                    &hf("interval_ms"),
                    h.interval_ms.unwrap_or(i64::from(d.interval_ms)),
                    0,
                    i64::from(u32::MAX),
                )?,
                timeout_ms: ranged(
                    &hf("timeout_ms"),
                    h.timeout_ms.unwrap_or(i64::from(d.timeout_ms)),
                    0,
                    i64::from(u32::MAX),
                )?,
                rise: ranged(&hf("rise"), h.rise.unwrap_or(i64::from(d.rise)), 0, 255)?,
                fall: ranged(&hf("fall"), h.fall.unwrap_or(i64::from(d.fall)), 0, 255)?,
            })
        })
        .transpose()?;
    let mut backends = Vec::with_capacity(v.backend.len());
    for b in v.backend {
        let bfield = format!("{field}: backend \"{}\"", b.name);
        if b.port.is_some() {
            return Err(ConfigError::new(
                format!("{bfield}: port"),
                "a backend has no port of its own: DSR cannot translate ports, so the \
                 backend receives the VIP's port (remove this key)",
            ));
        }
        backends.push(Backend {
            address: ip_address(&format!("{bfield}: address"), &b.address)?,
            weight: ranged(
                &format!("{bfield}: weight"),
                b.weight.unwrap_or(1),
                0,
                i64::from(u32::MAX),
            )?,
            mac: b
                .mac
                .map(|text| {
                    parse_mac(&text).ok_or_else(|| {
                        ConfigError::new(
                            format!("{bfield}: mac"),
                            format!("\"{text}\" is not a MAC address like 02:00:0a:4d:00:15"),
                        )
                    })
                })
                .transpose()?,
            name: b.name,
        });
    }
    Ok(Vip {
        address: ip_address(&f("address"), &v.address)?,
        port,
        protocol: named(
            &field,
            parse_name(
                &Protocol::ALL,
                Protocol::name,
                "protocol",
                v.protocol.as_deref().unwrap_or("tcp"),
            ),
        )?,
        mode: named(
            &field,
            parse_name(
                &Mode::ALL,
                Mode::name,
                "mode",
                v.mode.as_deref().unwrap_or("dsr-l2"),
            ),
        )?,
        scheduler: named(
            &field,
            parse_name(
                &Scheduler::ALL,
                Scheduler::name,
                "scheduler",
                v.scheduler.as_deref().unwrap_or("wlc"),
            ),
        )?,
        persistence: v
            .persistence
            .map(|p| ranged(&f("persistence"), p, 0, i64::from(u32::MAX)))
            .transpose()?,
        health,
        fail_open: v.fail_open.unwrap_or(true),
        backends,
        name: v.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
version = 1

[interface]
address = "10.77.0.2/24"
gateway = "10.77.0.1"
mtu = 1500

[management]
port = 9100
allow = ["10.77.0.0/24"]
pubkey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
fetch = "http://10.77.0.5:8080/sidestep.cfg"

[[vip]]
name = "web"
address = "10.77.0.100"
port = 80
protocol = "tcp"
mode = "dsr-l2"
scheduler = "wlc"
persistence = 300

[vip.health]
kind = "tcp"
port = 80
interval_ms = 1000
timeout_ms = 500
rise = 2
fall = 3

[[vip.backend]]
name = "be1"
address = "10.77.0.21"
weight = 1

[[vip.backend]]
name = "be2"
address = "10.77.0.22"
weight = 0
"#;

    fn refused(edit: impl Fn(&str) -> String) -> String {
        parse(&edit(EXAMPLE))
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn design_example_parses() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.version, 1);
        assert_eq!(c.interface.address.to_string(), "10.77.0.2/24");
        let m = c.management.as_ref().unwrap();
        assert_eq!(m.port, 9100);
        assert_eq!(m.pubkey.unwrap()[31], 31);
        let web = &c.vips[0];
        assert_eq!(
            (web.port, web.mode, web.scheduler),
            (VipPort::One(80), Mode::DsrL2, Scheduler::Wlc)
        );
        assert_eq!(web.persistence, Some(300));
        assert_eq!(web.health.as_ref().unwrap().fall, 3);
        assert_eq!(web.backends[1].weight, 0);
    }

    #[test]
    fn new_flows_per_second_is_read_and_checked() {
        let with = |n: &str| format!("{EXAMPLE}\n[limits]\nnew_flows_per_second = {n}\n");
        assert_eq!(parse(EXAMPLE).unwrap().limits.new_flows_per_second, None);
        let c = parse(&with("50000")).unwrap();
        assert_eq!(c.limits.new_flows_per_second, Some(50000));
        let zero = parse(&with("0")).unwrap_err().to_string();
        assert!(zero.contains("limits.new_flows_per_second"), "{zero}");
    }

    #[test]
    fn fail_open_defaults_to_true_and_takes_a_boolean() {
        assert!(parse(EXAMPLE).unwrap().vips[0].fail_open);
        let off = EXAMPLE.replace("persistence = 300", "persistence = 300\nfail_open = false");
        assert!(!parse(&off).unwrap().vips[0].fail_open);
        let bad = refused(|t| t.replace("persistence = 300", "persistence = 300\nfail_open = 1"));
        assert!(bad.contains("fail_open"), "{bad}");
    }

    #[test]
    fn unknown_mode() {
        assert_eq!(
            refused(|t| t.replace("\"dsr-l2\"", "\"dsr-l9\"")),
            "vip \"web\": mode \"dsr-l9\" is not one of dsr-l2, dsr-l3"
        );
    }

    #[test]
    fn unknown_scheduler() {
        assert_eq!(
            refused(|t| t.replace("\"wlc\"", "\"fastest\"")),
            "vip \"web\": scheduler \"fastest\" is not one of rr, wrr, lc, wlc, sh, maglev"
        );
    }

    #[test]
    fn poll_policy_defaults_to_auto_and_is_checked() {
        assert_eq!(parse(EXAMPLE).unwrap().interface.poll, Polling::Auto);
        let busy = parse(&EXAMPLE.replace("mtu = 1500", "mtu = 1500\npoll = \"busy\"")).unwrap();
        assert_eq!(busy.interface.poll, Polling::Busy);
        assert_eq!(
            refused(|t| t.replace("mtu = 1500", "mtu = 1500\npoll = \"sometimes\"")),
            "interface.poll: poll \"sometimes\" is not one of auto, busy, nap"
        );
    }

    #[test]
    fn cores_is_optional_and_at_least_one() {
        assert_eq!(parse(EXAMPLE).unwrap().interface.cores, None);
        let two = parse(&EXAMPLE.replace("mtu = 1500", "mtu = 1500\ncores = 2")).unwrap();
        assert_eq!(two.interface.cores, Some(2));
        assert!(
            refused(|t| t.replace("mtu = 1500", "mtu = 1500\ncores = 0"))
                .starts_with("interface.cores: is 0; at least 1")
        );
        assert_eq!(
            refused(|t| t.replace("mtu = 1500", "mtu = 1500\ncores = -1")),
            "interface.cores: -1 is out of range 0..=65535"
        );
    }

    #[test]
    fn unknown_protocol() {
        assert!(
            refused(|t| t.replace("protocol = \"tcp\"", "protocol = \"sctp\""))
                .contains("protocol \"sctp\" is not one of tcp, udp")
        );
    }

    #[test]
    fn port_zero_and_port_star() {
        assert!(
            refused(|t| t.replace("port = 80\nprotocol", "port = 0\nprotocol"))
                .starts_with("vip \"web\": port: 0 is not a port")
        );
        assert!(
            refused(|t| t.replace("port = 80\nprotocol", "port = 70000\nprotocol"))
                .starts_with("vip \"web\": port: 70000 is out of range")
        );
        assert!(
            refused(|t| t.replace("port = 80\nprotocol", "port = \"any\"\nprotocol"))
                .contains("\"any\" is not a port")
        );
        let c = parse(&EXAMPLE.replace("port = 80\nprotocol", "port = \"*\"\nprotocol")).unwrap();
        assert_eq!(c.vips[0].port, VipPort::All);
    }

    #[test]
    fn backend_with_a_port() {
        let e = refused(|t| t.replace("weight = 1\n", "weight = 1\nport = 8080\n"));
        assert!(
            e.starts_with("vip \"web\": backend \"be1\": port: a backend has no port"),
            "{e}"
        );
    }

    #[test]
    fn backend_mac_is_pinned_checked_and_named() {
        let pinned = "weight = 1\nmac = \"02:00:0A:4d:00:15\"\n";
        let c = parse(&EXAMPLE.replace("weight = 1\n", pinned)).unwrap();
        assert_eq!(c.vips[0].backends[0].mac, Some([2, 0, 0x0a, 0x4d, 0, 0x15]));
        assert_eq!(c.vips[0].backends[1].mac, None);
        assert_eq!(
            refused(|t| t.replace("weight = 1\n", "weight = 1\nmac = \"02:00:0a:4d:15\"\n")),
            "vip \"web\": backend \"be1\": mac: \"02:00:0a:4d:15\" is not a MAC address like \
             02:00:0a:4d:00:15"
        );
        for (mac, why) in [
            ("01:00:5e:00:00:01", "is not a unicast MAC"),
            ("00:00:00:00:00:00", "is not a unicast MAC"),
        ] {
            let e =
                refused(|t| t.replace("weight = 1\n", &format!("weight = 1\nmac = \"{mac}\"\n")));
            assert!(
                e.starts_with(&format!("vip \"web\": backend \"be1\": mac: {mac} {why}")),
                "{e}"
            );
        }
    }

    #[test]
    fn l2_backend_off_subnet() {
        let e = refused(|t| t.replace("10.77.0.22", "10.99.0.22"));
        assert!(
            e.starts_with(
                "vip \"web\": backend \"be2\": address: 10.99.0.22 is not on the interface subnet"
            ),
            "{e}"
        );
    }

    #[test]
    fn duplicate_names() {
        assert!(refused(|t| t.replace("\"be2\"", "\"be1\""))
            .contains("name is used by another backend"));
        let twice = format!(
            "{EXAMPLE}\n{}",
            EXAMPLE[EXAMPLE.find("[[vip]]").unwrap()..]
                .replace("port = 80\nprotocol", "port = 81\nprotocol")
        );
        assert!(parse(&twice)
            .unwrap_err()
            .to_string()
            .contains("VIP names must be unique"));
    }

    #[test]
    fn duplicate_vip_address_port_protocol() {
        let second = EXAMPLE[EXAMPLE.find("[[vip]]").unwrap()..]
            .replace("name = \"web\"", "name = \"web2\"");
        let e = parse(&format!("{EXAMPLE}\n{second}"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "vip \"web2\": 10.77.0.100:80/tcp is already served by vip \"web\""
        );
    }

    #[test]
    fn weight_out_of_range() {
        assert_eq!(
            refused(|t| t.replace("weight = 1\n", "weight = 20000\n")),
            "vip \"web\": backend \"be1\": weight: 20000 is out of range 0..=10000"
        );
        assert!(refused(|t| t.replace("weight = 1\n", "weight = -1\n"))
            .contains("weight: -1 is out of range"));
    }

    #[test]
    fn health_values_out_of_range() {
        for (from, to, field) in [
            (
                "interval_ms = 1000",
                "interval_ms = 10",
                "health.interval_ms",
            ),
            ("timeout_ms = 500", "timeout_ms = 5000", "health.timeout_ms"),
            ("rise = 2", "rise = 0", "health.rise"),
            ("fall = 3", "fall = 300", "health.fall"),
            ("kind = \"tcp\"", "kind = \"icmp\"", "health.kind"),
        ] {
            let e = refused(|t| t.replace(from, to));
            assert!(e.contains(field), "{to}: {e}");
        }
    }

    #[test]
    fn bad_cidr_in_allow() {
        for bad in [
            "10.77.0.0/33",
            "10.77.0/24",
            "ten/8",
            "fd00::/129",
            "fd00:::1/64",
        ] {
            let e = refused(|t| t.replace("\"10.77.0.0/24\"]", &format!("\"{bad}\"]")));
            assert!(
                e.starts_with(&format!(
                    "management.allow: \"{bad}\" is not an IPv4 or IPv6 prefix"
                )),
                "{e}"
            );
        }
        assert!(
            refused(|t| t.replace("\"10.77.0.0/24\"]", "\"10.77.0.9/24\"]"))
                .contains("host bits set")
        );
        // IPv6 sources: the management port is reached at address6, which must exist.
        assert!(
            refused(|t| t.replace("\"10.77.0.0/24\"]", "\"10.77.0.0/24\", \"fd00:77::/64\"]"))
                .starts_with("management.allow: has IPv6 prefixes but interface.address6")
        );
        assert!(refused(|t| t
            .replace("\"10.77.0.0/24\"]", "\"fd00:77::9/64\"]")
            .replace(
                "[interface]\n",
                "[interface]\naddress6 = \"fd00:77::2/64\"\n"
            ))
        .contains("fd00:77::9/64 has host bits set"));
    }

    #[test]
    fn bad_interface_address_and_pubkey() {
        assert!(refused(|t| t.replace("\"10.77.0.2/24\"", "\"10.77.0.2\""))
            .starts_with("interface.address:"));
        assert!(
            refused(|t| t.replace("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "AAEC"))
                .starts_with("management.pubkey: is 3 bytes")
        );
    }

    const BGP: &str = r#"
[bgp]
asn = 4200000000
router_id = "10.77.0.2"
hold_time = 9
announce = true
bfd = false

[[bgp.peer]]
address = "10.77.0.1"
asn = 65000
"#;

    fn with_bgp() -> String {
        format!("{}{BGP}", EXAMPLE.replace("\"wlc\"", "\"maglev\""))
    }

    #[test]
    fn bgp_section_parses_with_its_defaults() {
        let c = parse(&with_bgp()).unwrap();
        let bgp = c.bgp.as_ref().unwrap();
        assert_eq!(
            (bgp.asn, bgp.hold_time, bgp.announce, bgp.bfd),
            (4_200_000_000, 9, true, false)
        );
        assert_eq!(bgp.peers[0].address.to_string(), "10.77.0.1");
        let minimal = with_bgp()
            .replace("router_id = \"10.77.0.2\"\n", "")
            .replace("hold_time = 9\n", "")
            .replace("announce = true\n", "")
            .replace("bfd = false\n", "");
        let bgp = parse(&minimal).unwrap().bgp.unwrap();
        assert_eq!(
            (bgp.router_id, bgp.hold_time, bgp.announce),
            (None, 90, true)
        );
        assert!(parse(EXAMPLE).unwrap().bgp.is_none());
    }

    #[test]
    fn bgp_values_are_checked() {
        let bad = |from: &str, to: &str| {
            parse(&with_bgp().replace(from, to))
                .expect_err("should be refused")
                .to_string()
        };
        assert!(bad("asn = 4200000000", "asn = 4294967296")
            .starts_with("bgp.asn: 4294967296 is out of range"));
        assert!(bad("hold_time = 9", "hold_time = 70000")
            .starts_with("bgp.hold_time: 70000 is out of range"));
        let e = bad("bfd = false", "bfd = 1");
        assert!(e.contains("bfd"), "{e}");
        assert!(parse(&with_bgp().replace("bfd = false", "bfd = true"))
            .is_ok_and(|c| c.bgp.is_some_and(|b| b.bfd)));
        assert!(bad("\"10.77.0.1\"\nasn", "\"router\"\nasn")
            .starts_with("bgp.peer: address: \"router\""));
        assert!(bad("asn = 65000", "asn = -1")
            .starts_with("bgp.peer \"10.77.0.1\": asn: -1 is out of range"));
        assert!(bad("bfd = false", "bfd = false\nmed = 1").contains("med"));
        let e = parse(&format!("{EXAMPLE}{BGP}")).unwrap_err().to_string();
        assert!(
            e.starts_with("vip \"web\": scheduler: \"wlc\" cannot be used with [bgp]"),
            "{e}"
        );
    }

    const VRRP: &str = r#"
[vrrp]
vrid = 51
priority = 150
advert_ms = 1000
preempt = true
version = 3
"#;

    #[test]
    fn vrrp_section_parses_with_its_defaults() {
        let with = format!("{}{VRRP}", EXAMPLE.replace("\"wlc\"", "\"maglev\""));
        let v = parse(&with).unwrap().vrrp.unwrap();
        assert_eq!(
            (v.vrid, v.priority, v.advert_ms, v.preempt, v.version),
            (51, 150, 1000, true, VrrpVersion::V3)
        );
        let minimal = with
            .replace("priority = 150\n", "")
            .replace("advert_ms = 1000\n", "")
            .replace("preempt = true\n", "")
            .replace("version = 3\n", "");
        let v = parse(&minimal).unwrap().vrrp.unwrap();
        assert_eq!(
            (v.priority, v.advert_ms, v.preempt, v.version),
            (100, 1000, true, VrrpVersion::V3)
        );
        let bad = |from: &str, to: &str| {
            parse(&with.replace(from, to))
                .expect_err("should be refused")
                .to_string()
        };
        assert!(bad("version = 3", "version = 2\nadvert_ms = 1500").contains("advert_ms"));
        assert!(bad("version = 3", "version = 4").starts_with("vrrp.version: 4 is not"));
        assert!(bad("vrid = 51", "vrid = 256").starts_with("vrrp.vrid: 256 is out of range"));
        assert!(bad("priority = 150", "priority = 255").starts_with("vrrp.priority: 255"));
        assert!(bad("preempt = true", "preempt = true\nnopreempt = 1").contains("nopreempt"));
        let e = parse(&format!("{EXAMPLE}{VRRP}")).unwrap_err().to_string();
        assert!(
            e.starts_with("vip \"web\": scheduler: \"wlc\" cannot be used with [vrrp]"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = refused(|t| t.replace("scheduler = \"wlc\"", "schedular = \"wlc\""));
        assert!(e.contains("schedular"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = refused(|t| t.replace("name = \"web\"\n", ""));
        assert!(e.contains("name"), "{e}");
    }
}
