//! The management API's `GET /status` document, and the table `sidestep stats` prints of it.
//!
//! The document's shape is a contract with the image:
//! `{"version":V,"uptime_ms":U,"flows_capacity":C,"drops":{"malformed":N,...},"vips":[{"name",
//! "address","port","protocol","mode","scheduler","packets","bytes","flows","backends":[{"name",
//! "address","weight","up","packets","bytes","flows"}]}]}`, with `[bgp]` also
//! `"bgp":{"peers":[{"address","asn","state","uptime_ms"}],"announced":["A.B.C.D"|"IPv6",..]}`.
//! With `[vrrp]` also `"vrrp":{"vrid","version","state","priority","master","master_priority",
//! ...}`. Fields the image adds later are ignored here, so an older tool still reads a newer
//! image.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole `/status` document.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The running config's version.
    pub version: u64,
    /// Time since the image booted.
    #[serde(default)]
    pub uptime_ms: u64,
    /// Capacity of the flow table.
    #[serde(default)]
    pub flows_capacity: u64,
    /// Dropped frames by reason.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Every VIP with its counters.
    #[serde(default)]
    pub vips: Vec<VipStatus>,
    /// The BGP speaker's sessions and announcements (only with `[bgp]`).
    #[serde(default)]
    pub bgp: Option<BgpStatus>,
    /// The VRRP router, with `[vrrp]`.
    #[serde(default)]
    pub vrrp: Option<VrrpStatus>,
}

/// The VRRP router of an image in a VRRP group.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct VrrpStatus {
    /// The virtual router id.
    pub vrid: u8,
    /// `"master"`, `"backup"` or `"initialize"`.
    pub state: String,
    /// The image's priority.
    pub priority: u8,
    /// The current master's address, if known.
    #[serde(default)]
    pub master: Option<String>,
    /// The current master's priority.
    #[serde(default)]
    pub master_priority: u8,
}

/// The BGP speaker.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BgpStatus {
    /// Every configured peer's session.
    #[serde(default)]
    pub peers: Vec<BgpPeerStatus>,
    /// The VIP addresses announced to at least one peer.
    #[serde(default)]
    pub announced: Vec<String>,
}

/// One BGP peer's session.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BgpPeerStatus {
    /// The peer's address.
    pub address: String,
    /// The peer's AS.
    #[serde(default)]
    pub asn: u64,
    /// The session's state as RFC 4271 names it.
    pub state: String,
    /// How long the session has been Established, while it is.
    #[serde(default)]
    pub uptime_ms: Option<u64>,
}

/// One VIP.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct VipStatus {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// `"80"` or `"*"` (a number is accepted too).
    #[serde(default)]
    pub port: PortValue,
    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: String,
    /// `dsr-l2` or `dsr-l3`.
    #[serde(default)]
    pub mode: String,
    /// The scheduler's name.
    #[serde(default)]
    pub scheduler: String,
    /// Packets forwarded for it.
    #[serde(default)]
    pub packets: u64,
    /// Bytes forwarded for it.
    #[serde(default)]
    pub bytes: u64,
    /// Its flows in the flow table.
    #[serde(default)]
    pub flows: u64,
    /// Its backends.
    #[serde(default)]
    pub backends: Vec<BackendStatus>,
}

/// A VIP's port as the document gives it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortValue {
    /// `"80"`, `"*"`.
    Text(String),
    /// `80`.
    Number(u64),
    /// Missing.
    #[default]
    None,
}

impl std::fmt::Display for PortValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortValue::Text(t) => f.write_str(t),
            PortValue::Number(n) => write!(f, "{n}"),
            PortValue::None => f.write_str("?"),
        }
    }
}

/// One backend of a VIP.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BackendStatus {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its weight (0 drains).
    #[serde(default)]
    pub weight: u64,
    /// Whether health checks (if any) count it as up.
    pub up: bool,
    /// Packets forwarded to it.
    #[serde(default)]
    pub packets: u64,
    /// Bytes forwarded to it.
    #[serde(default)]
    pub bytes: u64,
    /// Its flows in the flow table.
    #[serde(default)]
    pub flows: u64,
}

impl Status {
    /// Parse the JSON document.
    pub fn parse(json: &str) -> Result<Status, String> {
        serde_json::from_str(json)
            .map_err(|e| format!("the /status answer is not the expected JSON: {e}"))
    }

    /// The VIP named `name`.
    pub fn vip(&self, name: &str) -> Option<&VipStatus> {
        self.vips.iter().find(|v| v.name == name)
    }
}

impl VipStatus {
    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendStatus> {
        self.backends.iter().find(|b| b.name == name)
    }
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// The table `sidestep stats` prints: a summary line, one row per VIP (its totals) followed
/// by one row per backend, then the drops.
pub fn render(status: &Status) -> String {
    let flows: u64 = status.vips.iter().map(|v| v.flows).sum();
    let mut out = format!(
        "config version {}, up {}, flows {flows} of {}\n\n",
        status.version,
        uptime(status.uptime_ms),
        status.flows_capacity
    );
    let mut rows: Vec<[String; 9]> = vec![[
        "VIP", "BACKEND", "ADDRESS", "MODE", "STATE", "WEIGHT", "PACKETS", "BYTES", "FLOWS",
    ]
    .map(String::from)];
    for vip in &status.vips {
        let up = vip.backends.iter().filter(|b| b.up).count();
        rows.push([
            vip.name.clone(),
            "-".into(),
            format!("{}:{}/{}", vip.address, vip.port, vip.protocol),
            format!("{} {}", vip.mode, vip.scheduler),
            format!("{up}/{} up", vip.backends.len()),
            "-".into(),
            vip.packets.to_string(),
            vip.bytes.to_string(),
            vip.flows.to_string(),
        ]);
        for be in &vip.backends {
            rows.push([
                String::new(),
                be.name.clone(),
                be.address.clone(),
                String::new(),
                if be.up { "up" } else { "down" }.into(),
                be.weight.to_string(),
                be.packets.to_string(),
                be.bytes.to_string(),
                be.flows.to_string(),
            ]);
        }
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            // Names and words on the left, numbers on the right.
            if i >= 5 {
                line.push_str(&format!("{cell:>w$}"));
            } else {
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if status.vips.is_empty() {
        out.push_str("(no VIPs)\n");
    }
    out.push('\n');
    if let Some(bgp) = &status.bgp {
        out.push_str(&render_bgp(bgp));
    }
    if let Some(v) = &status.vrrp {
        out.push_str(&format!(
            "vrrp: vrid {} {} at priority {}, master {}\n",
            v.vrid,
            v.state,
            v.priority,
            match &v.master {
                Some(m) => format!("{m} (priority {})", v.master_priority),
                None => "unknown".into(),
            }
        ));
    }
    if status.drops.is_empty() {
        out.push_str("drops: none\n");
    } else {
        let drops: Vec<String> = status
            .drops
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        out.push_str(&format!("drops: {}\n", drops.join(", ")));
    }
    out
}

/// The BGP lines of the table: one per peer, then what is announced.
fn render_bgp(bgp: &BgpStatus) -> String {
    let mut out = String::new();
    for p in &bgp.peers {
        let up = match p.uptime_ms {
            Some(ms) => format!(", up {}", uptime(ms)),
            None => String::new(),
        };
        out.push_str(&format!(
            "bgp peer {} AS {}: {}{up}\n",
            p.address, p.asn, p.state
        ));
    }
    if bgp.peers.is_empty() {
        out.push_str("bgp: no peers\n");
    }
    if bgp.announced.is_empty() {
        out.push_str("bgp announced: none\n\n");
    } else {
        out.push_str(&format!("bgp announced: {}\n\n", bgp.announced.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's example, with two VIPs.
    pub const EXAMPLE: &str = r#"{"version":3,"uptime_ms":3723000,"flows_capacity":65536,
        "drops":{"malformed":7,"no_vip":2},
        "vips":[{"name":"web","address":"10.77.0.100","port":"80","protocol":"tcp","mode":"dsr-l2",
                 "scheduler":"rr","packets":120,"bytes":9000,"flows":3,
                 "backends":[{"name":"be1","address":"10.77.0.21","weight":1,"up":true,"packets":70,"bytes":5000,"flows":2},
                             {"name":"be2","address":"10.77.0.22","weight":0,"up":false,"packets":50,"bytes":4000,"flows":1}]},
                {"name":"any","address":"10.77.0.103","port":"*","protocol":"tcp","mode":"dsr-l3",
                 "scheduler":"maglev","packets":0,"bytes":0,"flows":0,"backends":[]}]}"#;

    #[test]
    fn the_contract_parses() {
        let s = Status::parse(EXAMPLE).unwrap();
        assert_eq!(
            (s.version, s.flows_capacity, s.drops["malformed"]),
            (3, 65536, 7)
        );
        let web = s.vip("web").unwrap();
        assert_eq!(web.port, PortValue::Text("80".into()));
        assert!(!web.backend("be2").unwrap().up);
        assert!(Status::parse("{\"vips\":[]}")
            .unwrap_err()
            .contains("version"));
    }

    #[test]
    fn the_table_shows_every_vip_backend_and_drop() {
        let table = render(&Status::parse(EXAMPLE).unwrap());
        let want = "\
config version 3, up 01:02:03, flows 3 of 65536

VIP  BACKEND  ADDRESS             MODE           STATE   WEIGHT  PACKETS  BYTES  FLOWS
web  -        10.77.0.100:80/tcp  dsr-l2 rr      1/2 up       -      120   9000      3
     be1      10.77.0.21                         up           1       70   5000      2
     be2      10.77.0.22                         down         0       50   4000      1
any  -        10.77.0.103:*/tcp   dsr-l3 maglev  0/0 up       -        0      0      0

drops: malformed 7, no_vip 2
";
        assert_eq!(table, want, "\n{table}");
    }

    #[test]
    fn bgp_sessions_are_listed() {
        let json = r#"{"version":2,"uptime_ms":0,"vips":[],
            "bgp":{"peers":[{"address":"10.77.0.1","asn":65000,"state":"Established","uptime_ms":61000},
                            {"address":"10.77.0.5","asn":65001,"state":"Active","uptime_ms":null}],
                   "announced":["10.77.0.100"]}}"#;
        let table = render(&Status::parse(json).unwrap());
        assert!(
            table.contains(
                "bgp peer 10.77.0.1 AS 65000: Established, up 00:01:01\n\
                 bgp peer 10.77.0.5 AS 65001: Active\n\
                 bgp announced: 10.77.0.100\n"
            ),
            "{table}"
        );
        let plain = render(&Status::parse(EXAMPLE).unwrap());
        assert!(!plain.contains("bgp"), "{plain}");
    }

    #[test]
    fn an_empty_image_says_so() {
        let table = render(&Status::parse("{\"version\":1,\"uptime_ms\":90061000}").unwrap());
        assert!(
            table.starts_with("config version 1, up 1d 01:01:01"),
            "{table}"
        );
        assert!(
            table.contains("(no VIPs)") && table.contains("drops: none"),
            "{table}"
        );
    }

    #[test]
    fn a_vrrp_member_shows_its_role_and_master() {
        let json = r#"{"version":1,"vrrp":{"vrid":51,"version":3,"state":"backup",
            "priority":100,"master":"10.77.0.2","master_priority":150,"accepted":3,"sent":0,
            "rejected":{"ttl":0}}}"#;
        let table = render(&Status::parse(json).unwrap());
        assert!(
            table.contains(
                "vrrp: vrid 51 backup at priority 100, master 10.77.0.2 (priority 150)\n"
            ),
            "{table}"
        );
        assert!(Status::parse(EXAMPLE).unwrap().vrrp.is_none());
    }
}
