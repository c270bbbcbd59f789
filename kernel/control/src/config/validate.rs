//! The rules of the config model: [`Config::validate`] and the checks it is made of. The first
//! broken rule is reported, naming its field in the words of the config file.

use super::{
    parse_http_url, parse_pci_address, Bgp, Config, ConfigError, Health, MacText, Management, Mode,
    Scheduler, Vip, VipPort, Vrrp, VrrpVersion, BACKENDS_MAX, BGP_HOLD_RANGE, BGP_PEERS_MAX,
    FLOWS_RANGE, MTU_RANGE, NAME_MAX, VIPS_MAX, VRRP_PRIORITY_RANGE, WEIGHT_MAX,
};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// A global or unique-local IPv6 host address: not unspecified, loopback, multicast or
/// link-local (a link-local address is no VIP, and a backend's would need a zone), nor an
/// IPv4-mapped one.
fn is_unicast6(addr: Ipv6Addr) -> bool {
    !(addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || addr.is_unicast_link_local()
        || addr.to_ipv4_mapped().is_some())
}

fn is_unicast_ip(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => is_unicast(a),
        IpAddr::V6(a) => is_unicast6(a),
    }
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
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
        if let Some(rate) = self.limits.new_flows_per_second {
            let (lo, hi) = super::NEW_FLOWS_RATE_RANGE;
            if !(lo..=hi).contains(&rate) {
                return Err(ConfigError::new(
                    "limits.new_flows_per_second",
                    format!("{rate} is out of range {lo}..={hi}"),
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
        if let Some(bgp) = &self.bgp {
            self.validate_bgp(bgp)?;
        }
        if let Some(vrrp) = &self.vrrp {
            self.validate_vrrp(vrrp)?;
        }
        Ok(())
    }

    fn validate_vrrp(&self, vrrp: &Vrrp) -> Result<(), ConfigError> {
        if vrrp.vrid == 0 {
            return Err(ConfigError::new(
                "vrrp.vrid",
                "0 is not a virtual router id; use 1..=255, the virtual_router_id of the group",
            ));
        }
        let (lo, hi) = VRRP_PRIORITY_RANGE;
        if !(lo..=hi).contains(&vrrp.priority) {
            return Err(ConfigError::new(
                "vrrp.priority",
                format!(
                    "{} is out of range {lo}..={hi} (255 belongs to the owner of the addresses, \
                     which a balancer is not)",
                    vrrp.priority
                ),
            ));
        }
        let (step, most, unit) = match vrrp.version {
            VrrpVersion::V3 => (10, 4095 * 10, "centiseconds"),
            VrrpVersion::V2 => (1000, 255 * 1000, "whole seconds"),
        };
        if vrrp.advert_ms == 0 || !vrrp.advert_ms.is_multiple_of(step) || vrrp.advert_ms > most {
            return Err(ConfigError::new(
                "vrrp.advert_ms",
                format!(
                    "{} ms cannot be sent by VRRP version {}, which counts in {unit}: use a \
                     multiple of {step} in {step}..={most}",
                    vrrp.advert_ms,
                    vrrp.version.number()
                ),
            ));
        }
        // The advertisements carry the IPv4 VIPs; IPv6 VIPs follow the master without being
        // advertised (as keepalived's virtual_ipaddress_excluded).
        let mut addresses: Vec<IpAddr> = self
            .vips
            .iter()
            .map(|v| v.address)
            .filter(IpAddr::is_ipv4)
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        if addresses.is_empty() {
            return Err(ConfigError::new(
                "vrrp",
                "no IPv4 VIP to share; [vrrp] advertises the IPv4 VIPs (IPv6 VIPs follow the \
                 master unadvertised) and needs at least one",
            ));
        }
        if addresses.len() > 255 {
            return Err(ConfigError::new(
                "vrrp",
                format!(
                    "{} VIP addresses given; one advertisement carries at most 255",
                    addresses.len()
                ),
            ));
        }
        self.require_consistent_schedulers(
            "[vrrp]",
            "a failover moves every flow to the new master",
        )
    }

    /// With `section` (`[bgp]`, `[vrrp]`) a flow may reach a balancer that has never seen it
    /// (`why`), so every VIP needs a scheduler that depends on the config alone.
    fn require_consistent_schedulers(&self, section: &str, why: &str) -> Result<(), ConfigError> {
        for vip in &self.vips {
            if !matches!(vip.scheduler, Scheduler::Maglev | Scheduler::Sh) {
                return Err(ConfigError::new(
                    format!("{}: scheduler", vip_field(vip)),
                    format!(
                        "\"{}\" cannot be used with {section}: {why}, so each balancer must \
                         pick the same backend for a flow it has never seen; use \"maglev\" or \
                         \"sh\", which depend on the config alone",
                        vip.scheduler.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_bgp(&self, bgp: &Bgp) -> Result<(), ConfigError> {
        // AS 0 is reserved (RFC 7607) and AS_TRANS only stands in for a 4-byte ASN (RFC 6793).
        let bad_asn = |asn: u32| asn == 0 || asn == u32::from(crate::bgp::AS_TRANS);
        if bad_asn(bgp.asn) {
            return Err(ConfigError::new(
                "bgp.asn",
                format!("{} is reserved; use 1..=4294967295 but 23456", bgp.asn),
            ));
        }
        if let Some(id) = bgp.router_id {
            if id.is_unspecified() {
                return Err(ConfigError::new(
                    "bgp.router_id",
                    "0.0.0.0 is not a BGP identifier; leave it out to use interface.address",
                ));
            }
        }
        if !(BGP_HOLD_RANGE.0..=BGP_HOLD_RANGE.1).contains(&bgp.hold_time) {
            return Err(ConfigError::new(
                "bgp.hold_time",
                format!(
                    "{} seconds is out of range {}..={}",
                    bgp.hold_time, BGP_HOLD_RANGE.0, BGP_HOLD_RANGE.1
                ),
            ));
        }
        if bgp.peers.is_empty() {
            return Err(ConfigError::new(
                "bgp.peer",
                "none given; [bgp] needs at least one [[bgp.peer]] to announce to",
            ));
        }
        if bgp.peers.len() > BGP_PEERS_MAX {
            return Err(ConfigError::new(
                "bgp.peer",
                format!("{} peers given; at most {BGP_PEERS_MAX}", bgp.peers.len()),
            ));
        }
        if self
            .management
            .as_ref()
            .is_some_and(|m| m.port == crate::bgp::PORT)
        {
            return Err(ConfigError::new(
                "management.port",
                "179 is the BGP port, which [bgp] listens on; pick another management port",
            ));
        }
        let net = self.interface.address;
        for (i, peer) in bgp.peers.iter().enumerate() {
            let field = format!("bgp.peer \"{}\"", peer.address);
            if !is_unicast(peer.address) || !net.contains(peer.address) {
                return Err(ConfigError::new(
                    format!("{field}: address"),
                    format!(
                        "{} is not a host on the interface subnet {}/{}; peers are single hop",
                        peer.address,
                        net.network(),
                        net.len
                    ),
                ));
            }
            if peer.address == net.address
                || self
                    .vips
                    .iter()
                    .any(|v| v.address == IpAddr::V4(peer.address))
            {
                return Err(ConfigError::new(
                    format!("{field}: address"),
                    "is the balancer's own address or a VIP",
                ));
            }
            if bad_asn(peer.asn) {
                return Err(ConfigError::new(
                    format!("{field}: asn"),
                    format!("{} is reserved; use 1..=4294967295 but 23456", peer.asn),
                ));
            }
            if bgp.peers[..i].iter().any(|p| p.address == peer.address) {
                return Err(ConfigError::new(
                    field,
                    "is listed twice; each router is one [[bgp.peer]]",
                ));
            }
        }
        self.require_consistent_schedulers(
            "[bgp]",
            "the routers spread a VIP's flows over every balancer (and move them when one fails)",
        )
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
        if iface.cores == Some(0) {
            return Err(ConfigError::new(
                "interface.cores",
                "is 0; at least 1 (the boot CPU), or leave it out to use every CPU",
            ));
        }
        if iface.mtu < MTU_RANGE.0 {
            return Err(ConfigError::new(
                "interface.mtu",
                format!(
                    "{} is below {}, the datagram size every IPv4 host must accept",
                    iface.mtu, MTU_RANGE.0
                ),
            ));
        }
        if iface.mtu > MTU_RANGE.1 {
            return Err(ConfigError::new(
                "interface.mtu",
                format!(
                    "{} is above {}, the largest packet every NIC driver receives whole \
                     (the 82599 runs without jumbo frames; virtio-net's 2 KiB buffers keep \
                     128 bytes of headroom); larger frames would be dropped unseen",
                    iface.mtu, MTU_RANGE.1
                ),
            ));
        }
        if let Some(net6) = iface.address6 {
            if net6.len == 0 || net6.len > 128 {
                return Err(ConfigError::new(
                    "interface.address6",
                    format!("prefix length /{} must be 1..=128", net6.len),
                ));
            }
            if !is_unicast6(net6.address) {
                return Err(ConfigError::new(
                    "interface.address6",
                    format!(
                        "{} is not a global or unique-local unicast address",
                        net6.address
                    ),
                ));
            }
            if net6.len < 127 && net6.address == net6.network() {
                return Err(ConfigError::new(
                    "interface.address6",
                    format!(
                        "{} is the subnet-router anycast address of {}/{}",
                        net6.address,
                        net6.network(),
                        net6.len
                    ),
                ));
            }
            if iface.mtu < 1280 {
                return Err(ConfigError::new(
                    "interface.mtu",
                    format!(
                        "{} is below 1280, the smallest link MTU IPv6 allows, and \
                         interface.address6 is set",
                        iface.mtu
                    ),
                ));
            }
        }
        if let Some(gw6) = iface.gateway6 {
            let Some(net6) = iface.address6 else {
                return Err(ConfigError::new(
                    "interface.gateway6",
                    "needs interface.address6: the balancer reaches its IPv6 gateway from it",
                ));
            };
            // A router's link-local address is the usual IPv6 next hop (RFC 4861).
            if !(gw6.is_unicast_link_local() || (is_unicast6(gw6) && net6.contains(gw6))) {
                return Err(ConfigError::new(
                    "interface.gateway6",
                    format!(
                        "{gw6} is neither link-local (fe80::/10) nor on the interface prefix {}/{}",
                        net6.network(),
                        net6.len
                    ),
                ));
            }
            if gw6 == net6.address {
                return Err(ConfigError::new(
                    "interface.gateway6",
                    "is the balancer's own address",
                ));
            }
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
        if m.allow.is_empty() && m.allow6.is_empty() {
            return Err(ConfigError::new(
                "management.allow",
                "is empty, so nobody could connect; list the prefixes that may",
            ));
        }
        for p in &m.allow6 {
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
        if !m.allow6.is_empty() && self.interface.address6.is_none() {
            return Err(ConfigError::new(
                "management.allow",
                "has IPv6 prefixes but interface.address6 is not set; the management port \
                 is reached over IPv6 at that address",
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
        if !is_unicast_ip(vip.address) {
            return Err(ConfigError::new(
                format!("{field}: address"),
                format!("{} is not a unicast address", vip.address),
            ));
        }
        if let IpAddr::V6(a) = vip.address {
            let Some(net6) = self.interface.address6 else {
                return Err(ConfigError::new(
                    format!("{field}: address"),
                    format!("{a} is IPv6 and interface.address6 is not set; IPv6 VIPs need it"),
                ));
            };
            if a == net6.address {
                return Err(ConfigError::new(
                    format!("{field}: address"),
                    "is the balancer's own interface.address6; a VIP needs an address of its own",
                ));
            }
        }
        if vip.address == IpAddr::V4(self.interface.address.address) {
            return Err(ConfigError::new(
                format!("{field}: address"),
                "is the balancer's own interface address; a VIP needs an address of its own",
            ));
        }
        self.validate_vip_address_is_free(vip)?;
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
            if be.address.is_ipv4() != vip.address.is_ipv4() {
                return Err(ConfigError::new(
                    format!("{bfield}: address"),
                    format!(
                        "{} is {} but the VIP is {}; a VIP and its backends are of one family",
                        be.address,
                        family(be.address),
                        family(vip.address)
                    ),
                ));
            }
            if !is_unicast_ip(be.address) {
                return Err(ConfigError::new(
                    format!("{bfield}: address"),
                    format!("{} is not a unicast address", be.address),
                ));
            }
            if self.is_own_address(be.address) || be.address == vip.address {
                return Err(ConfigError::new(
                    format!("{bfield}: address"),
                    format!("{} is the balancer's or the VIP's own address", be.address),
                ));
            }
            let on_link = self.on_link(be.address);
            let (subnet, gateway_field) = match be.address {
                IpAddr::V4(_) => (
                    format!(
                        "the interface subnet {}/{}",
                        self.interface.address.network(),
                        self.interface.address.len
                    ),
                    "interface.gateway",
                ),
                IpAddr::V6(_) => (
                    self.interface
                        .address6
                        .map(|n| format!("the interface prefix {}/{}", n.network(), n.len))
                        .unwrap_or_default(),
                    "interface.gateway6",
                ),
            };
            let has_gateway = match be.address {
                IpAddr::V4(_) => self.interface.gateway.is_some(),
                IpAddr::V6(_) => self.interface.gateway6.is_some(),
            };
            if let Some(mac) = be.mac {
                let mfield = format!("{bfield}: mac");
                if mac == [0; 6] || mac[0] & 1 != 0 {
                    return Err(ConfigError::new(
                        mfield,
                        format!(
                            "{} is not a unicast MAC (zero, or the group bit of the first byte \
                             is set); give the backend NIC's own address",
                            MacText(mac)
                        ),
                    ));
                }
                if !on_link {
                    return Err(ConfigError::new(
                        mfield,
                        format!(
                            "{} is off {subnet}, so frames to it go to the gateway's \
                             MAC; a MAC can be pinned only for a backend on the link",
                            be.address
                        ),
                    ));
                }
                let other = self
                    .vips
                    .iter()
                    .flat_map(|v| v.backends.iter().map(move |b| (v, b)))
                    .find(|(_, b)| b.address == be.address && b.mac.is_some_and(|m| m != mac));
                if let Some((v, b)) = other {
                    return Err(ConfigError::new(
                        mfield,
                        format!(
                            "{} is pinned to {} here but to {} by backend \"{}\" of vip \"{}\"; \
                             one address has one MAC",
                            be.address,
                            MacText(mac),
                            MacText(b.mac.unwrap_or_default()),
                            b.name,
                            v.name
                        ),
                    ));
                }
            }
            match vip.mode {
                Mode::DsrL2 if !on_link => {
                    return Err(ConfigError::new(
                        format!("{bfield}: address"),
                        format!(
                            "{} is not on {subnet}; dsr-l2 backends must be \
                             (use mode = \"dsr-l3\" for backends elsewhere)",
                            be.address,
                        ),
                    ));
                }
                Mode::DsrL3 if !on_link && !has_gateway => {
                    return Err(ConfigError::new(
                        format!("{bfield}: address"),
                        format!(
                            "{} is off {subnet} and {gateway_field} is not set",
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
}

impl Config {
    /// Whether `addr` is one of the balancer's interface addresses.
    fn is_own_address(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => a == self.interface.address.address,
            IpAddr::V6(a) => self.interface.address6.is_some_and(|n| n.address == a),
        }
    }

    /// Whether `addr` is on the interface's subnet of its family.
    pub fn on_link(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.interface.address.contains(a),
            IpAddr::V6(a) => self.interface.address6.is_some_and(|n| n.contains(a)),
        }
    }

    /// A VIP's address must belong to nobody else on the network: the balancer answers ARP for
    /// it and takes every packet sent to it, so sharing it with the gateway or a backend would
    /// capture their traffic, and the subnet's network or broadcast address is no host's.
    fn validate_vip_address_is_free(&self, vip: &Vip) -> Result<(), ConfigError> {
        let field = format!("{}: address", vip_field(vip));
        let net = self.interface.address;
        let gateway = match vip.address {
            IpAddr::V4(a) => self.interface.gateway == Some(a),
            IpAddr::V6(a) => self.interface.gateway6 == Some(a),
        };
        if gateway {
            return Err(ConfigError::new(
                field,
                format!(
                    "{} is interface.{}; a VIP needs an address of its own",
                    vip.address,
                    if vip.address.is_ipv4() {
                        "gateway"
                    } else {
                        "gateway6"
                    }
                ),
            ));
        }
        let special = match vip.address {
            IpAddr::V4(a) => {
                net.len < 31 && net.contains(a) && (a == net.network() || a == net.broadcast())
            }
            IpAddr::V6(_) => false,
        };
        if special {
            return Err(ConfigError::new(
                field,
                format!(
                    "{} is the network or broadcast address of the interface subnet {}/{}",
                    vip.address,
                    net.network(),
                    net.len
                ),
            ));
        }
        for other in &self.vips {
            if let Some(be) = other.backends.iter().find(|b| b.address == vip.address) {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "{} is the address of backend \"{}\" of vip \"{}\"; a VIP needs an \
                         address of its own",
                        vip.address, be.name, other.name
                    ),
                ));
            }
        }
        Ok(())
    }
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
    if nic == "virtio" || nic == "ixgbe" || nic == "igb" {
        return true;
    }
    parse_pci_address(nic).is_some()
}
