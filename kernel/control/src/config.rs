//! The configuration model: what a Sidestep image is told to do.
//!
//! One model serves every place a config passes through: the host tool parses the TOML file
//! described in the README's "Config file" section into it and validates it, encodes it as a
//! postcard *blob* that is baked into the image (or pushed to it, or fetched by it), and the image
//! decodes the blob and validates it again before it builds its tables. Validation lives here,
//! next to the types, so the host and the image can never disagree about what is valid. Every
//! error names the field it is about.
//!
//! The blob is versioned twice: [`BLOB_FORMAT`] is the layout of the encoding itself (bumped when
//! a field is added, since postcard is not self-describing), while [`Config::version`] is the
//! operator's revision number, which only ever grows.
//!
//! This file holds the types and their names; the rules are in `validate.rs`, the encoding in
//! `blob.rs`, and the builders for tests in `testing.rs` (feature `testing`). The signed envelope
//! around a blob is `crate::envelope`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use serde::{Deserialize, Serialize};

/// The first bytes of every config blob.
pub const BLOB_MAGIC: [u8; 8] = *b"SIDESTEP";
/// The layout of the encoded blob; bumped whenever the model's fields change.
pub const BLOB_FORMAT: u16 = 5;
/// Largest blob the image accepts (a config of many VIPs and backends stays far below it).
pub const BLOB_MAX: usize = 1 << 20;

/// Largest backend weight.
pub const WEIGHT_MAX: u32 = 10_000;
/// Longest VIP or backend name (names become metric labels).
pub const NAME_MAX: usize = 32;
/// Most VIPs in one config.
pub const VIPS_MAX: usize = 256;
/// Most backends behind one VIP.
pub const BACKENDS_MAX: usize = 1024;
/// Smallest and largest interface MTU. The largest is what every NIC driver receives whole
/// (`drivers::MTU_MAX`, which the kernel asserts at compile time equals it): the 82599 runs with
/// jumbo frames off (1518-byte frames with the FCS), and virtio-net's 2 KiB buffers hold 1920
/// bytes of frame after their 128 bytes of headroom.
pub const MTU_RANGE: (u16, u16) = (576, 1500);
/// Bounds of the flow table capacity an operator may ask for.
pub const FLOWS_RANGE: (u32, u32) = (1024, 64 * 1024 * 1024);
/// Bounds of `limits.new_flows_per_second`.
pub const NEW_FLOWS_RATE_RANGE: (u32, u32) = (1, 1_000_000_000);
/// Most BGP peers of one balancer.
pub const BGP_PEERS_MAX: usize = 16;
/// Bounds of the BGP hold time in seconds (RFC 4271 allows 0 too; a balancer always wants one).
pub const BGP_HOLD_RANGE: (u16, u16) = (3, 65535);
/// The BGP hold time when the file gives none (RFC 4271's suggested value).
pub const BGP_HOLD_DEFAULT: u16 = 90;
/// Bounds of a VRRP priority an operator may give (255 is the address owner's, which a balancer
/// never is: the VIPs are not its interface address; 0 means "leaving" on the wire).
pub const VRRP_PRIORITY_RANGE: (u8, u8) = (1, 254);
/// The VRRP priority when the file gives none (keepalived's default too).
pub const VRRP_PRIORITY_DEFAULT: u8 = 100;
/// The VRRP advertisement interval when the file gives none.
pub const VRRP_ADVERT_MS_DEFAULT: u32 = 1000;

/// A whole Sidestep configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The operator's revision; a pushed config must carry a larger one than the running config.
    pub version: u64,
    /// The data interface: the balancer's own address.
    pub interface: Interface,
    /// The management port; `None` opens none.
    pub management: Option<Management>,
    /// Sizes of the balancer's tables.
    pub limits: Limits,
    /// The virtual services.
    pub vips: Vec<Vip>,
    /// Announcing the VIPs to routers by BGP; `None` announces nothing.
    pub bgp: Option<Bgp>,
    /// Sharing the VIPs with a standby balancer by VRRP; `None` serves them alone.
    pub vrrp: Option<Vrrp>,
}

/// VRRP: an active/standby group of balancers (or keepalived) sharing every VIP; only the master
/// answers ARP for the VIPs and forwards their traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vrrp {
    /// The virtual router id, 1..=255 (keepalived's `virtual_router_id`).
    pub vrid: u8,
    /// This balancer's priority, 1..=254; the highest live one is master.
    pub priority: u8,
    /// Milliseconds between advertisements: a multiple of 10 (version 3, sent in centiseconds)
    /// or of 1000 (version 2, sent in seconds).
    pub advert_ms: u32,
    /// Whether a higher priority takes over from a live master of lower priority.
    pub preempt: bool,
    /// Which protocol version is spoken.
    pub version: VrrpVersion,
}

/// A VRRP protocol version (keepalived's `vrrp_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VrrpVersion {
    /// VRRP version 2 (RFC 3768): intervals in whole seconds, no authentication.
    V2,
    /// VRRP version 3 (RFC 9568): intervals in centiseconds.
    V3,
}

impl VrrpVersion {
    /// The number on the wire and in the config file.
    pub fn number(self) -> u8 {
        match self {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        }
    }
}

/// BGP: the VIPs announced as /32 routes to the routers, which spread flows over balancers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bgp {
    /// This balancer's autonomous system number (4-byte ASNs allowed).
    pub asn: u32,
    /// The BGP identifier; `None` uses the interface address ([`Bgp::router_id`]).
    pub router_id: Option<Ipv4Addr>,
    /// Seconds without a message from a peer before its session is dropped; keepalives are sent
    /// every third of it.
    pub hold_time: u16,
    /// Whether the VIPs are announced at all; false withdraws every one (draining the balancer).
    pub announce: bool,
    /// A single-hop BFD session (RFC 5880/5881) with each peer, so that a peer notices a dead
    /// balancer in a fraction of a second instead of a hold time.
    pub bfd: bool,
    /// The routers, each on the interface subnet.
    pub peers: Vec<BgpPeer>,
}

impl Bgp {
    /// The BGP identifier in use: the configured one, else the interface address.
    pub fn router_id(&self, interface: &Interface) -> Ipv4Addr {
        self.router_id.unwrap_or(interface.address.address)
    }
}

/// One router this balancer keeps a BGP session with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpPeer {
    /// The router's address on the interface subnet (single hop).
    pub address: Ipv4Addr,
    /// The router's autonomous system number.
    pub asn: u32,
}

/// The balancer's own place on the data network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// The balancer's address and the on-link subnet.
    pub address: Prefix,
    /// Next hop for off-link destinations (dsr-l3 backends elsewhere).
    pub gateway: Option<Ipv4Addr>,
    /// The balancer's IPv6 address and on-link prefix; IPv6 VIPs need it.
    pub address6: Option<Prefix6>,
    /// IPv6 next hop for off-link IPv6 destinations.
    pub gateway6: Option<Ipv6Addr>,
    /// Largest IP packet the segment carries.
    pub mtu: u16,
    /// Which NIC carries data: `None` takes the first usable one; else a driver name
    /// (`"virtio"`, `"ixgbe"`) or a PCI address `"bus:device.function"` in hex (`"00:03.0"`).
    pub nic: Option<String>,
    /// What the poll loop does while there is no traffic.
    pub poll: Polling,
    /// How many CPUs to start, the boot CPU included: `None` starts every CPU the firmware
    /// lists (more than there are is not an error: all are started).
    pub cores: Option<u16>,
}

/// What the poll loop does while there is no traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Polling {
    /// `Nap` under a hypervisor, `Busy` on bare metal.
    #[default]
    Auto,
    /// Poll without pause: the lowest latency, a whole core always busy.
    Busy,
    /// Halt for 20 us to 1 ms (adapted to the traffic) after 10 us without work, giving the
    /// core back to the host (under QEMU: to the thread that emulates the NIC).
    Nap,
}

impl Polling {
    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Polling::Auto => "auto",
            Polling::Busy => "busy",
            Polling::Nap => "nap",
        }
    }
    /// Every policy, for parsing and messages.
    pub const ALL: [Polling; 3] = [Polling::Auto, Polling::Busy, Polling::Nap];
}

/// An IPv4 prefix, e.g. `10.77.0.0/24`; for the interface the address part is the host's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Prefix {
    /// The address.
    pub address: Ipv4Addr,
    /// Number of leading network bits, 0..=32.
    pub len: u8,
}

impl Prefix {
    /// The network mask as a number.
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len.min(32)))
        }
    }

    /// Whether `addr` lies within this prefix.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        (u32::from(addr) & self.mask()) == (u32::from(self.address) & self.mask())
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.mask())
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) | !self.mask())
    }

    /// Parse `a.b.c.d/len`.
    pub fn parse(text: &str) -> Option<Prefix> {
        let (addr, len) = text.split_once('/')?;
        let address: Ipv4Addr = addr.parse().ok()?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: u8 = len.parse().ok()?;
        (len <= 32).then_some(Prefix { address, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

/// An IPv6 prefix, e.g. `fd00:77::/64`; for the interface the address part is the host's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Prefix6 {
    /// The address.
    pub address: Ipv6Addr,
    /// Number of leading network bits, 0..=128.
    pub len: u8,
}

impl Prefix6 {
    /// The network mask as a number.
    pub fn mask(&self) -> u128 {
        if self.len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.len.min(128)))
        }
    }

    /// Whether `addr` lies within this prefix.
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        (u128::from(addr) & self.mask()) == (u128::from(self.address) & self.mask())
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.address) & self.mask())
    }

    /// Parse `addr/len` (IPv6).
    pub fn parse(text: &str) -> Option<Prefix6> {
        let (addr, len) = text.split_once('/')?;
        let address: Ipv6Addr = addr.parse().ok()?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: u8 = len.parse().ok()?;
        (len <= 128).then_some(Prefix6 { address, len })
    }
}

impl fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

/// The management port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Management {
    /// TCP port of the HTTP/1.1 server on the interface address.
    pub port: u16,
    /// IPv4 source prefixes that may connect; all others are ignored.
    pub allow: Vec<Prefix>,
    /// IPv6 source prefixes that may connect (to `interface.address6`); written in the same
    /// `allow` list of the file.
    pub allow6: Vec<Prefix6>,
    /// Ed25519 public key that pushed or fetched configs must be signed with.
    pub pubkey: Option<[u8; 32]>,
    /// URL of a signed config blob fetched at boot (`http://host:port/path`).
    pub fetch: Option<String>,
}

/// Table sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Flow table capacity; `None` sizes it from the memory the image has.
    pub flows: Option<u32>,
    /// Most new flows per second the flow table takes for VIPs whose consistent hash can route
    /// without it (`maglev`, `sh`, no persistence); above it their new flows are forwarded by
    /// the hash and not stored (a flood of made-up flows cannot evict real ones). `None`: no
    /// limit.
    pub new_flows_per_second: Option<u32>,
}

/// Which destination ports a VIP takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VipPort {
    /// Every port (`port = "*"`).
    All,
    /// One port, 1..=65535.
    One(u16),
}

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

/// How a packet reaches its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Rewrite the Ethernet destination to the backend's MAC (backend on the same segment).
    DsrL2,
    /// Encapsulate in an outer IPv4 header to the backend (IP-in-IP).
    DsrL3,
}

/// How a VIP picks a backend for a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scheduler {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections.
    Wlc,
    /// Source-address hash.
    Sh,
    /// Weighted Maglev consistent hashing.
    Maglev,
}

/// Kind of health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthKind {
    /// A TCP connect to the backend's address and the check port.
    Tcp,
}

/// Health checking of a VIP's backends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// What the check does.
    pub kind: HealthKind,
    /// Port checked; `None` uses the VIP port.
    pub port: Option<u16>,
    /// Time between checks of one backend.
    pub interval_ms: u32,
    /// How long one check may take.
    pub timeout_ms: u32,
    /// Consecutive successes that bring a down backend up.
    pub rise: u8,
    /// Consecutive failures that take an up backend down.
    pub fall: u8,
}

impl Health {
    /// Defaults for every field the file leaves out.
    pub const DEFAULT: Health = Health {
        kind: HealthKind::Tcp,
        port: None,
        interval_ms: 1000,
        timeout_ms: 500,
        rise: 2,
        fall: 3,
    };
}

/// A virtual service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vip {
    /// Unique name (a metric label).
    pub name: String,
    /// The virtual address clients connect to, IPv4 or IPv6 (its backends are of its family).
    pub address: IpAddr,
    /// Port or all ports.
    pub port: VipPort,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// L2 or L3 DSR.
    pub mode: Mode,
    /// Backend choice for new flows.
    pub scheduler: Scheduler,
    /// Seconds of source-IP stickiness, if any.
    pub persistence: Option<u32>,
    /// Health checks; `None` counts every backend as up.
    pub health: Option<Health>,
    /// When every backend is down, send new flows to them all the same by the consistent hash
    /// (true, the default: a health-check outage costs no traffic) or drop them (false).
    pub fail_open: bool,
    /// The real servers.
    pub backends: Vec<Backend>,
}

/// A real server behind a VIP. DSR cannot translate ports, so it has no port of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Name unique within its VIP (a metric label).
    pub name: String,
    /// Its address, of its VIP's family.
    pub address: IpAddr,
    /// Relative share of new flows; 0 drains.
    pub weight: u32,
    /// Its MAC, pinned (on-link backends only): the balancer sends to it without ARP and
    /// ignores ARP about the backend's address, so no other host on the link can claim it.
    pub mac: Option<[u8; 6]>,
}

/// A config that is not valid, or a blob that cannot be read: which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: `interface.address`, `vip "web"`, `vip "web": backend "be1"`, ...
    pub field: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl Mode {
    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Mode::DsrL2 => "dsr-l2",
            Mode::DsrL3 => "dsr-l3",
        }
    }
    /// Every mode, for parsing and messages.
    pub const ALL: [Mode; 2] = [Mode::DsrL2, Mode::DsrL3];
}

impl Scheduler {
    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sh => "sh",
            Scheduler::Maglev => "maglev",
        }
    }
    /// Every scheduler, for parsing and messages.
    pub const ALL: [Scheduler; 6] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Sh,
        Scheduler::Maglev,
    ];
}

impl Protocol {
    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
    /// Every protocol, for parsing and messages.
    pub const ALL: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];
}

impl HealthKind {
    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            HealthKind::Tcp => "tcp",
        }
    }
    /// Every kind, for parsing and messages.
    pub const ALL: [HealthKind; 1] = [HealthKind::Tcp];
}

impl fmt::Display for VipPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VipPort::All => f.write_str("*"),
            VipPort::One(p) => write!(f, "{p}"),
        }
    }
}

/// Parse one of a closed set of names, or say which names there are.
pub fn parse_name<T: Copy>(
    all: &[T],
    name_of: fn(T) -> &'static str,
    what: &str,
    text: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|v| name_of(*v) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| name_of(*v)).collect();
            format!("{what} \"{text}\" is not one of {}", names.join(", "))
        })
}

impl Config {
    /// A one-line summary for logs: version, counts, then each VIP with its backends.
    pub fn summary(&self) -> String {
        let backends: usize = self.vips.iter().map(|v| v.backends.len()).sum();
        let mut s = format!(
            "config v{}: interface {}",
            self.version, self.interface.address
        );
        if let Some(a6) = self.interface.address6 {
            s.push_str(&format!(" {}/{}", a6.address, a6.len));
        }
        s.push_str(&format!(
            ", {} vips, {} backends",
            self.vips.len(),
            backends
        ));
        for vip in &self.vips {
            // An IPv6 address in brackets before its port, as in a URL.
            let address = match vip.address {
                IpAddr::V4(a) => format!("{a}"),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            s.push_str(&format!(
                "; {} {}:{}/{} {} {} [",
                vip.name,
                address,
                vip.port,
                vip.protocol.name(),
                vip.mode.name(),
                vip.scheduler.name()
            ));
            for (i, be) in vip.backends.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(&format!("{} {} w{}", be.name, be.address, be.weight));
                if let Some(mac) = be.mac {
                    s.push_str(&format!(" mac {}", MacText(mac)));
                }
            }
            s.push(']');
        }
        s
    }
}

/// Parse a MAC address written as six hex pairs joined by colons (`02:00:0a:4d:00:15`).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A MAC address shown as [`parse_mac`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacText(pub [u8; 6]);

impl fmt::Display for MacText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Parse a PCI address `bus:device.function` (hex, e.g. `00:03.0`).
pub fn parse_pci_address(text: &str) -> Option<(u8, u8, u8)> {
    let (bus, rest) = text.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let dev = u8::from_str_radix(dev, 16).ok()?;
    let func = u8::from_str_radix(func, 16).ok()?;
    (dev < 32 && func < 8).then_some((bus, dev, func))
}

/// The parts of `http://A.B.C.D[:PORT]/PATH`: address, port, path.
pub fn parse_http_url(url: &str) -> Option<(Ipv4Addr, u16, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => (authority, 80),
    };
    let addr: Ipv4Addr = host.parse().ok()?;
    path.bytes()
        .all(|b| b.is_ascii_graphic())
        .then_some((addr, port, path))
}

mod blob;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod validate;

#[cfg(test)]
pub(crate) mod tests;
