//! The configuration model: what a Sidestep image is told to do.
//!
//! One model serves every place a config passes through: the host tool parses the TOML file of
//! DESIGN.md into it and validates it, encodes it as a postcard *blob* that is baked into the
//! image (or, later, pushed to it), and the image decodes the blob and validates it again before
//! it builds its tables. Validation lives here, next to the types, so the host and the image can
//! never disagree about what is valid. Every error names the field it is about.
//!
//! The blob is versioned twice: [`BLOB_FORMAT`] is the layout of the encoding itself (bumped when
//! a field is added, since postcard is not self-describing), while [`Config::version`] is the
//! operator's revision number, which only ever grows.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use serde::{Deserialize, Serialize};

/// The first bytes of every config blob.
pub const BLOB_MAGIC: [u8; 8] = *b"SIDESTEP";
/// The layout of the encoded blob; bumped whenever the model's fields change.
pub const BLOB_FORMAT: u16 = 2;
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
/// Smallest and largest interface MTU.
pub const MTU_RANGE: (u16, u16) = (576, 9216);
/// Bounds of the flow table capacity an operator may ask for.
pub const FLOWS_RANGE: (u32, u32) = (1024, 64 * 1024 * 1024);

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
}

/// The balancer's own place on the data network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// The balancer's address and the on-link subnet.
    pub address: Prefix,
    /// Next hop for off-link destinations (dsr-l3 backends elsewhere).
    pub gateway: Option<Ipv4Addr>,
    /// Largest IP packet the segment carries.
    pub mtu: u16,
    /// Which NIC carries data: `None` takes the first usable one; else a driver name
    /// (`"virtio"`, `"ixgbe"`) or a PCI address `"bus:device.function"` in hex (`"00:03.0"`).
    pub nic: Option<String>,
    /// What the poll loop does while there is no traffic.
    pub poll: Polling,
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

/// The management port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Management {
    /// TCP port of the HTTP/1.1 server on the interface address.
    pub port: u16,
    /// Source prefixes that may connect; all others are ignored.
    pub allow: Vec<Prefix>,
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
    /// The virtual address clients connect to.
    pub address: Ipv4Addr,
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
    /// The real servers.
    pub backends: Vec<Backend>,
}

/// A real server behind a VIP. DSR cannot translate ports, so it has no port of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Name unique within its VIP (a metric label).
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// Relative share of new flows; 0 drains.
    pub weight: u32,
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

fn vip_field(vip: &Vip) -> String {
    format!("vip \"{}\"", vip.name)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn is_unicast(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() || addr.is_loopback())
}

impl Config {
    /// Check every rule of the model; the first broken one is reported, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version == 0 {
            return Err(ConfigError::new("version", "must be 1 or more"));
        }
        self.validate_interface()?;
        if let Some(m) = &self.management {
            self.validate_management(m)?;
        }
        if let Some(flows) = self.limits.flows {
            if !(FLOWS_RANGE.0..=FLOWS_RANGE.1).contains(&flows) {
                return Err(ConfigError::new(
                    "limits.flows",
                    format!(
                        "{flows} is out of range {}..={}",
                        FLOWS_RANGE.0, FLOWS_RANGE.1
                    ),
                ));
            }
        }
        if self.vips.len() > VIPS_MAX {
            return Err(ConfigError::new(
                "vip",
                format!("{} VIPs given; at most {VIPS_MAX}", self.vips.len()),
            ));
        }
        for (i, vip) in self.vips.iter().enumerate() {
            self.validate_vip(vip)?;
            for earlier in &self.vips[..i] {
                if earlier.name == vip.name {
                    return Err(ConfigError::new(
                        vip_field(vip),
                        "name is used by another VIP; VIP names must be unique",
                    ));
                }
                if earlier.address == vip.address
                    && earlier.port == vip.port
                    && earlier.protocol == vip.protocol
                {
                    return Err(ConfigError::new(
                        vip_field(vip),
                        format!(
                            "{}:{}/{} is already served by vip \"{}\"",
                            vip.address,
                            vip.port,
                            vip.protocol.name(),
                            earlier.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_interface(&self) -> Result<(), ConfigError> {
        let iface = &self.interface;
        let net = iface.address;
        if net.len == 0 || net.len > 32 {
            return Err(ConfigError::new(
                "interface.address",
                format!("prefix length /{} must be 1..=32", net.len),
            ));
        }
        if !is_unicast(net.address) {
            return Err(ConfigError::new(
                "interface.address",
                format!("{} is not a unicast host address", net.address),
            ));
        }
        if net.len < 31 && (net.address == net.network() || net.address == net.broadcast()) {
            return Err(ConfigError::new(
                "interface.address",
                format!(
                    "{} is the network or broadcast address of {}/{}",
                    net.address,
                    net.network(),
                    net.len
                ),
            ));
        }
        if let Some(gw) = iface.gateway {
            if !net.contains(gw) {
                return Err(ConfigError::new(
                    "interface.gateway",
                    format!(
                        "{gw} is not on the interface subnet {}/{}",
                        net.network(),
                        net.len
                    ),
                ));
            }
            if gw == net.address {
                return Err(ConfigError::new(
                    "interface.gateway",
                    "is the balancer's own address",
                ));
            }
        }
        if !(MTU_RANGE.0..=MTU_RANGE.1).contains(&iface.mtu) {
            return Err(ConfigError::new(
                "interface.mtu",
                format!(
                    "{} is out of range {}..={}",
                    iface.mtu, MTU_RANGE.0, MTU_RANGE.1
                ),
            ));
        }
        if let Some(nic) = &iface.nic {
            if !valid_nic(nic) {
                return Err(ConfigError::new(
                    "interface.nic",
                    format!(
                        "\"{nic}\" is neither a driver (virtio, ixgbe) nor a PCI address like 00:03.0"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_management(&self, m: &Management) -> Result<(), ConfigError> {
        if m.port == 0 {
            return Err(ConfigError::new("management.port", "must be 1..=65535"));
        }
        if m.allow.is_empty() {
            return Err(ConfigError::new(
                "management.allow",
                "is empty, so nobody could connect; list the prefixes that may",
            ));
        }
        for p in &m.allow {
            if p.len > 32 {
                return Err(ConfigError::new(
                    "management.allow",
                    format!("{p}: prefix length must be 0..=32"),
                ));
            }
            if p.address != p.network() {
                return Err(ConfigError::new(
                    "management.allow",
                    format!(
                        "{p} has host bits set; did you mean {}/{}?",
                        p.network(),
                        p.len
                    ),
                ));
            }
        }
        if let Some(url) = &m.fetch {
            if parse_http_url(url).is_none() {
                return Err(ConfigError::new(
                    "management.fetch",
                    format!("\"{url}\" is not a URL of the form http://A.B.C.D[:PORT]/PATH"),
                ));
            }
            if m.pubkey.is_none() {
                return Err(ConfigError::new(
                    "management.fetch",
                    "needs management.pubkey: a fetched config must be signed",
                ));
            }
        }
        // No VIP can collide with the management port: a VIP on the interface address is
        // refused by `validate_vip`.
        Ok(())
    }

    fn validate_vip(&self, vip: &Vip) -> Result<(), ConfigError> {
        let field = vip_field(vip);
        if !valid_name(&vip.name) {
            return Err(ConfigError::new(
                format!("vip \"{}\": name", vip.name),
                format!("must be 1..={NAME_MAX} characters of A-Z a-z 0-9 - _ ."),
            ));
        }
        if !is_unicast(vip.address) {
            return Err(ConfigError::new(
                format!("{field}: address"),
                format!("{} is not a unicast address", vip.address),
            ));
        }
        if vip.address == self.interface.address.address {
            return Err(ConfigError::new(
                format!("{field}: address"),
                "is the balancer's own interface address; a VIP needs an address of its own",
            ));
        }
        if vip.port == VipPort::One(0) {
            return Err(ConfigError::new(
                format!("{field}: port"),
                "0 is not a port; use 1..=65535, or \"*\" for all ports",
            ));
        }
        if let Some(p) = vip.persistence {
            if !(1..=86_400).contains(&p) {
                return Err(ConfigError::new(
                    format!("{field}: persistence"),
                    format!("{p} seconds is out of range 1..=86400"),
                ));
            }
        }
        if let Some(h) = &vip.health {
            validate_health(&field, vip, h)?;
        }
        if vip.backends.is_empty() {
            return Err(ConfigError::new(field, "has no backends"));
        }
        if vip.backends.len() > BACKENDS_MAX {
            return Err(ConfigError::new(
                field,
                format!(
                    "{} backends given; at most {BACKENDS_MAX}",
                    vip.backends.len()
                ),
            ));
        }
        for (i, be) in vip.backends.iter().enumerate() {
            let bfield = format!("{field}: backend \"{}\"", be.name);
            if !valid_name(&be.name) {
                return Err(ConfigError::new(
                    format!("{bfield}: name"),
                    format!("must be 1..={NAME_MAX} characters of A-Z a-z 0-9 - _ ."),
                ));
            }
            if be.weight > WEIGHT_MAX {
                return Err(ConfigError::new(
                    format!("{bfield}: weight"),
                    format!("{} is out of range 0..={WEIGHT_MAX}", be.weight),
                ));
            }
            if !is_unicast(be.address) {
                return Err(ConfigError::new(
                    format!("{bfield}: address"),
                    format!("{} is not a unicast address", be.address),
                ));
            }
            if be.address == self.interface.address.address || be.address == vip.address {
                return Err(ConfigError::new(
                    format!("{bfield}: address"),
                    format!("{} is the balancer's or the VIP's own address", be.address),
                ));
            }
            let on_link = self.interface.address.contains(be.address);
            match vip.mode {
                Mode::DsrL2 if !on_link => {
                    return Err(ConfigError::new(
                        format!("{bfield}: address"),
                        format!(
                            "{} is not on the interface subnet {}/{}; dsr-l2 backends must be \
                             (use mode = \"dsr-l3\" for backends elsewhere)",
                            be.address,
                            self.interface.address.network(),
                            self.interface.address.len
                        ),
                    ));
                }
                Mode::DsrL3 if !on_link && self.interface.gateway.is_none() => {
                    return Err(ConfigError::new(
                        format!("{bfield}: address"),
                        format!(
                            "{} is off the interface subnet and interface.gateway is not set",
                            be.address
                        ),
                    ));
                }
                _ => {}
            }
            for earlier in &vip.backends[..i] {
                if earlier.name == be.name {
                    return Err(ConfigError::new(
                        bfield,
                        "name is used by another backend of this VIP",
                    ));
                }
                if earlier.address == be.address {
                    return Err(ConfigError::new(
                        format!("{bfield}: address"),
                        format!("{} is already backend \"{}\"", be.address, earlier.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A one-line summary for logs: version, counts, then each VIP with its backends.
    pub fn summary(&self) -> String {
        let backends: usize = self.vips.iter().map(|v| v.backends.len()).sum();
        let mut s = format!(
            "config v{}: interface {}, {} vips, {} backends",
            self.version,
            self.interface.address,
            self.vips.len(),
            backends
        );
        for vip in &self.vips {
            s.push_str(&format!(
                "; {} {}:{}/{} {} {} [",
                vip.name,
                vip.address,
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
            }
            s.push(']');
        }
        s
    }

    /// Encode as a blob: magic, format, length, then the postcard encoding.
    pub fn to_blob(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).unwrap_or_default();
        let mut blob = Vec::with_capacity(14 + body.len());
        blob.extend_from_slice(&BLOB_MAGIC);
        blob.extend_from_slice(&BLOB_FORMAT.to_le_bytes());
        blob.extend_from_slice(&(body.len() as u32).to_le_bytes());
        blob.extend_from_slice(&body);
        blob
    }

    /// Decode a blob (anything may follow its end, e.g. ramdisk padding) and validate it.
    pub fn from_blob(blob: &[u8]) -> Result<Config, ConfigError> {
        let err = |m: String| ConfigError::new("blob", m);
        if blob.len() < 14 || blob[..8] != BLOB_MAGIC {
            return Err(err("does not start with the Sidestep magic".to_string()));
        }
        let format = u16::from_le_bytes([blob[8], blob[9]]);
        if format != BLOB_FORMAT {
            return Err(err(format!(
                "format {format} is not the {BLOB_FORMAT} this image reads; rebuild with a matching `sidestep`"
            )));
        }
        let len = u32::from_le_bytes([blob[10], blob[11], blob[12], blob[13]]) as usize;
        if len > BLOB_MAX || blob.len() - 14 < len {
            return Err(err(format!(
                "says {len} bytes follow but {} do",
                blob.len() - 14
            )));
        }
        let (config, rest) = postcard::take_from_bytes::<Config>(&blob[14..14 + len])
            .map_err(|e| err(format!("cannot be decoded: {e}")))?;
        if !rest.is_empty() {
            return Err(err(format!("{} bytes left after the config", rest.len())));
        }
        config.validate()?;
        Ok(config)
    }
}

/// The first bytes of a signed config: magic, then the 64-byte Ed25519 signature of the blob,
/// then the blob itself (as [`Config::to_blob`] writes it).
pub const SIGNED_MAGIC: [u8; 8] = *b"SSSIGNED";
/// Length of the signed envelope's header (magic + signature).
pub const SIGNED_HEADER: usize = 8 + 64;

/// Why a signed config was refused. The management API maps `Malformed` and `Invalid` to 400
/// and `BadSignature` to 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedError {
    /// Not a signed config envelope at all.
    Malformed(String),
    /// The signature does not verify with the configured public key.
    BadSignature,
    /// Signed correctly, but the config inside is not valid (or not decodable).
    Invalid(ConfigError),
}

impl fmt::Display for SignedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignedError::Malformed(m) => write!(f, "not a signed config: {m}"),
            SignedError::BadSignature => {
                f.write_str("signature does not verify with management.pubkey")
            }
            SignedError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// Split a signed envelope into (signature, blob) without verifying anything.
pub fn split_signed(signed: &[u8]) -> Result<(&[u8], &[u8]), SignedError> {
    if signed.len() < SIGNED_HEADER || signed[..8] != SIGNED_MAGIC {
        return Err(SignedError::Malformed(format!(
            "a signed config starts with \"SSSIGNED\" and a 64-byte signature ({} bytes given)",
            signed.len()
        )));
    }
    Ok((&signed[8..SIGNED_HEADER], &signed[SIGNED_HEADER..]))
}

/// Verify a signed envelope with `pubkey`, then decode and validate the config inside.
pub fn verify_signed(signed: &[u8], pubkey: &[u8; 32]) -> Result<Config, SignedError> {
    let (signature, blob) = split_signed(signed)?;
    let key =
        ed25519_compact::PublicKey::from_slice(pubkey).map_err(|_| SignedError::BadSignature)?;
    let signature =
        ed25519_compact::Signature::from_slice(signature).map_err(|_| SignedError::BadSignature)?;
    key.verify(blob, &signature)
        .map_err(|_| SignedError::BadSignature)?;
    Config::from_blob(blob).map_err(SignedError::Invalid)
}

/// Wrap `blob` with its signature (made by the host tool, which holds the private key).
pub fn signed_envelope(blob: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNED_HEADER + blob.len());
    out.extend_from_slice(&SIGNED_MAGIC);
    out.extend_from_slice(signature);
    out.extend_from_slice(blob);
    out
}

fn validate_health(field: &str, vip: &Vip, h: &Health) -> Result<(), ConfigError> {
    let hf = |name: &str| format!("{field}: health.{name}");
    match h.port {
        Some(0) => return Err(ConfigError::new(hf("port"), "must be 1..=65535")),
        None if vip.port == VipPort::All => {
            return Err(ConfigError::new(
                hf("port"),
                "is required when the VIP takes all ports",
            ))
        }
        _ => {}
    }
    if !(100..=3_600_000).contains(&h.interval_ms) {
        return Err(ConfigError::new(
            hf("interval_ms"),
            format!("{} is out of range 100..=3600000", h.interval_ms),
        ));
    }
    if h.timeout_ms < 10 || h.timeout_ms > h.interval_ms {
        return Err(ConfigError::new(
            hf("timeout_ms"),
            format!(
                "{} is out of range 10..=interval_ms ({})",
                h.timeout_ms, h.interval_ms
            ),
        ));
    }
    for (name, v) in [("rise", h.rise), ("fall", h.fall)] {
        if !(1..=100).contains(&v) {
            return Err(ConfigError::new(
                hf(name),
                format!("{v} is out of range 1..=100"),
            ));
        }
    }
    Ok(())
}

fn valid_nic(nic: &str) -> bool {
    if nic == "virtio" || nic == "ixgbe" {
        return true;
    }
    parse_pci_address(nic).is_some()
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn example() -> Config {
        Config {
            version: 1,
            interface: Interface {
                address: Prefix::parse("10.77.0.2/24").unwrap(),
                gateway: Some(Ipv4Addr::new(10, 77, 0, 1)),
                mtu: 1500,
                nic: None,
                poll: Polling::Auto,
            },
            management: Some(Management {
                port: 9100,
                allow: vec![Prefix::parse("10.77.0.0/24").unwrap()],
                pubkey: Some([7; 32]),
                fetch: None,
            }),
            limits: Limits::default(),
            vips: vec![Vip {
                name: "web".into(),
                address: Ipv4Addr::new(10, 77, 0, 100),
                port: VipPort::One(80),
                protocol: Protocol::Tcp,
                mode: Mode::DsrL2,
                scheduler: Scheduler::Wlc,
                persistence: Some(300),
                health: Some(Health::DEFAULT),
                backends: vec![
                    Backend {
                        name: "be1".into(),
                        address: Ipv4Addr::new(10, 77, 0, 21),
                        weight: 1,
                    },
                    Backend {
                        name: "be2".into(),
                        address: Ipv4Addr::new(10, 77, 0, 22),
                        weight: 2,
                    },
                ],
            }],
        }
    }

    fn refused(c: &Config) -> String {
        c.validate()
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn example_is_valid_and_round_trips_through_a_blob() {
        let c = example();
        c.validate().unwrap();
        let mut blob = c.to_blob();
        assert_eq!(&blob[..8], b"SIDESTEP");
        blob.extend_from_slice(&[0; 100]); // ramdisk padding is ignored
        assert_eq!(Config::from_blob(&blob).unwrap(), c);
    }

    #[test]
    fn blob_damage_is_reported() {
        let blob = example().to_blob();
        assert!(Config::from_blob(&blob[..10])
            .unwrap_err()
            .to_string()
            .starts_with("blob:"));
        assert!(Config::from_blob(&blob[..blob.len() - 1])
            .unwrap_err()
            .message
            .contains("bytes follow"));
        let mut bad = blob.clone();
        bad[8] = 9;
        assert!(Config::from_blob(&bad)
            .unwrap_err()
            .message
            .contains("format 9"));
        let mut bad = blob.clone();
        bad[0] = b'X';
        assert!(Config::from_blob(&bad).is_err());
    }

    #[test]
    fn blob_is_validated_on_decode() {
        let mut c = example();
        c.vips[0].backends[0].weight = WEIGHT_MAX + 1;
        let e = Config::from_blob(&c.to_blob()).unwrap_err();
        assert_eq!(e.field, "vip \"web\": backend \"be1\": weight");
    }

    #[test]
    fn version_zero() {
        let mut c = example();
        c.version = 0;
        assert!(refused(&c).starts_with("version:"));
    }

    #[test]
    fn port_zero() {
        let mut c = example();
        c.vips[0].port = VipPort::One(0);
        assert!(refused(&c).starts_with("vip \"web\": port: 0 is not a port"));
    }

    #[test]
    fn l2_backend_off_subnet() {
        let mut c = example();
        c.vips[0].backends[1].address = Ipv4Addr::new(10, 88, 0, 5);
        let e = refused(&c);
        assert!(e.starts_with("vip \"web\": backend \"be2\": address: 10.88.0.5 is not on the interface subnet 10.77.0.0/24"), "{e}");
        c.vips[0].mode = Mode::DsrL3;
        c.validate().unwrap();
        c.interface.gateway = None;
        assert!(refused(&c).contains("interface.gateway is not set"));
    }

    #[test]
    fn duplicate_vip_and_backend_names() {
        let mut c = example();
        let mut other = c.vips[0].clone();
        other.port = VipPort::One(443);
        c.vips.push(other);
        assert!(refused(&c).contains("VIP names must be unique"));
        let mut c = example();
        c.vips[0].backends[1].name = "be1".into();
        assert!(refused(&c).contains("name is used by another backend"));
        let mut c = example();
        c.vips[0].backends[1].address = c.vips[0].backends[0].address;
        assert!(refused(&c).contains("is already backend \"be1\""));
    }

    #[test]
    fn duplicate_vip_address_port_protocol() {
        let mut c = example();
        let mut other = c.vips[0].clone();
        other.name = "web2".into();
        c.vips.push(other.clone());
        assert_eq!(
            refused(&c),
            "vip \"web2\": 10.77.0.100:80/tcp is already served by vip \"web\""
        );
        // Same address and port over UDP is a different service.
        c.vips[1].protocol = Protocol::Udp;
        c.validate().unwrap();
        // An all-ports VIP beside a one-port VIP on the same address is allowed.
        c.vips[1].protocol = Protocol::Tcp;
        c.vips[1].port = VipPort::All;
        c.vips[1].health = None;
        c.validate().unwrap();
    }

    #[test]
    fn weight_out_of_range() {
        let mut c = example();
        c.vips[0].backends[0].weight = 10_001;
        assert_eq!(
            refused(&c),
            "vip \"web\": backend \"be1\": weight: 10001 is out of range 0..=10000"
        );
        c.vips[0].backends[0].weight = 0;
        c.validate().unwrap();
    }

    #[test]
    fn health_out_of_range() {
        type Mutation = fn(&mut Health);
        let cases: [(Mutation, &str); 6] = [
            (|h| h.interval_ms = 50, "health.interval_ms"),
            (|h| h.timeout_ms = 5, "health.timeout_ms"),
            (|h| h.timeout_ms = 2000, "health.timeout_ms"),
            (|h| h.rise = 0, "health.rise"),
            (|h| h.fall = 101, "health.fall"),
            (|h| h.port = Some(0), "health.port"),
        ];
        for (mutate, field) in cases {
            let mut c = example();
            mutate(c.vips[0].health.as_mut().unwrap());
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, format!("vip \"web\": {field}"));
        }
        let mut c = example();
        c.vips[0].port = VipPort::All;
        assert!(refused(&c).contains("health.port: is required"));
    }

    #[test]
    fn allow_with_host_bits() {
        let mut c = example();
        c.management.as_mut().unwrap().allow = vec![Prefix::parse("10.77.0.5/24").unwrap()];
        assert!(refused(&c).starts_with("management.allow: 10.77.0.5/24 has host bits set"));
        c.management.as_mut().unwrap().allow.clear();
        assert!(refused(&c).starts_with("management.allow: is empty"));
    }

    #[test]
    fn prefix_parsing() {
        assert_eq!(
            Prefix::parse("10.0.0.0/8"),
            Some(Prefix {
                address: Ipv4Addr::new(10, 0, 0, 0),
                len: 8
            })
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x/8",
        ] {
            assert_eq!(Prefix::parse(bad), None, "{bad}");
        }
        let p = Prefix::parse("10.77.0.2/24").unwrap();
        assert!(p.contains(Ipv4Addr::new(10, 77, 0, 200)));
        assert!(!p.contains(Ipv4Addr::new(10, 77, 1, 2)));
        assert_eq!(p.broadcast(), Ipv4Addr::new(10, 77, 0, 255));
        assert!(Prefix::parse("0.0.0.0/0")
            .unwrap()
            .contains(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn interface_rules() {
        let mut c = example();
        c.interface.address = Prefix::parse("10.77.0.0/24").unwrap();
        assert!(refused(&c).starts_with("interface.address: 10.77.0.0 is the network"));
        let mut c = example();
        c.interface.gateway = Some(Ipv4Addr::new(192, 168, 1, 1));
        assert!(refused(&c).starts_with("interface.gateway:"));
        let mut c = example();
        c.interface.mtu = 100;
        assert!(refused(&c).starts_with("interface.mtu:"));
        let mut c = example();
        c.interface.nic = Some("e1000".into());
        assert!(refused(&c).starts_with("interface.nic:"));
        c.interface.nic = Some("00:03.0".into());
        c.validate().unwrap();
    }

    #[test]
    fn vip_rules() {
        let mut c = example();
        c.vips[0].address = c.interface.address.address;
        assert!(refused(&c).contains("is the balancer's own interface address"));
        let mut c = example();
        c.vips[0].backends.clear();
        assert_eq!(refused(&c), "vip \"web\": has no backends");
        let mut c = example();
        c.vips[0].persistence = Some(0);
        assert!(refused(&c).starts_with("vip \"web\": persistence"));
        let mut c = example();
        c.vips[0].name = "we b".into();
        assert!(refused(&c).starts_with("vip \"we b\": name"));
    }

    #[test]
    fn fetch_needs_pubkey_and_a_url() {
        let mut c = example();
        let m = c.management.as_mut().unwrap();
        m.fetch = Some("http://10.77.0.5:8080/sidestep.cfg".into());
        c.validate().unwrap();
        c.management.as_mut().unwrap().fetch = Some("https://example/x".into());
        assert!(refused(&c).starts_with("management.fetch:"));
        let m = c.management.as_mut().unwrap();
        m.fetch = Some("http://10.77.0.5/cfg".into());
        m.pubkey = None;
        assert!(refused(&c).contains("needs management.pubkey"));
    }

    #[test]
    fn names_parse_with_the_list_in_the_message() {
        assert_eq!(
            parse_name(&Mode::ALL, Mode::name, "mode", "dsr-l3"),
            Ok(Mode::DsrL3)
        );
        assert_eq!(
            parse_name(&Mode::ALL, Mode::name, "mode", "dsr-l9"),
            Err("mode \"dsr-l9\" is not one of dsr-l2, dsr-l3".into())
        );
    }

    #[test]
    fn signed_envelopes_verify_only_with_the_right_key() {
        // A fixed key pair (RFC 8032 test vector 1's seed), so the test needs no randomness.
        let seed = ed25519_compact::Seed::from_slice(&[
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ])
        .unwrap();
        let pair = ed25519_compact::KeyPair::from_seed(seed);
        let blob = example().to_blob();
        let sig: [u8; 64] = *pair.sk.sign(&blob, None);
        let signed = signed_envelope(&blob, &sig);
        assert_eq!(verify_signed(&signed, &pair.pk), Ok(example()));
        // Another key, a flipped bit in the blob, a truncated envelope.
        assert_eq!(
            verify_signed(&signed, &[9; 32]),
            Err(SignedError::BadSignature)
        );
        let mut bad = signed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            verify_signed(&bad, &pair.pk),
            Err(SignedError::BadSignature)
        );
        assert!(matches!(
            verify_signed(&signed[..40], &pair.pk),
            Err(SignedError::Malformed(_))
        ));
        // Signed but invalid: refused naming the field.
        let mut c = example();
        c.vips[0].port = VipPort::One(0);
        let blob = c.to_blob();
        let signed = signed_envelope(&blob, &pair.sk.sign(&blob, None));
        match verify_signed(&signed, &pair.pk) {
            Err(SignedError::Invalid(e)) => assert_eq!(e.field, "vip \"web\": port"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn summary_lists_vips_and_backends() {
        assert_eq!(
            example().summary(),
            "config v1: interface 10.77.0.2/24, 1 vips, 2 backends; web 10.77.0.100:80/tcp dsr-l2 wlc [be1 10.77.0.21 w1, be2 10.77.0.22 w2]"
        );
    }
}
