//! Builders of configs for tests, benches and fuzz targets (feature `testing`), so that each of
//! them states only what it is about instead of spelling out a whole [`Config`] literal.
//!
//! [`Config::builder`] starts from the lab network every test of the project uses: the balancer
//! at `10.77.0.2/24`, the gateway `10.77.0.1`, MTU 1500, no management port, no VIPs.
//! [`Vip::builder`] starts a TCP dsr-l2 round-robin VIP without persistence, health checks or
//! backends. Addresses are given as text (or, for VIPs and backends, as [`Ipv4Addr`]s, see
//! [`BuilderAddress`]) and the builders panic on text that does not parse: they are for literals
//! in tests, never for outside input. Neither builder validates; call [`Config::validate`] where
//! the test needs a valid config.
//!
//! ```
//! use control::config::{Config, Mode, Scheduler, Vip, VipPort};
//!
//! let config = Config::builder()
//!     .version(7)
//!     .management(9100, &["10.77.0.0/24"])
//!     .vip(
//!         Vip::builder("web", "10.77.0.100", VipPort::One(80))
//!             .mode(Mode::DsrL3)
//!             .scheduler(Scheduler::Maglev)
//!             .backend("be1", "10.77.0.21", 1)
//!             .backend("be2", "10.77.0.22", 2)
//!             .build(),
//!     )
//!     .build();
//! config.validate().unwrap();
//! ```

use super::{
    Backend, Bgp, BgpPeer, Config, Health, Interface, Limits, Management, Mode, Polling, Prefix,
    Protocol, Scheduler, Vip, VipPort, Vrrp, VrrpVersion, BGP_HOLD_DEFAULT, VRRP_ADVERT_MS_DEFAULT,
};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn address(text: &str) -> Ipv4Addr {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not an IPv4 address"))
}

/// An address a VIP or backend is given: text `a.b.c.d` or `fd00::1` (panics if it does not
/// parse), or an address where the test computes it or names it by a constant.
pub trait BuilderAddress {
    /// The address.
    fn ip(self) -> IpAddr;
}

impl BuilderAddress for &str {
    fn ip(self) -> IpAddr {
        self.parse()
            .unwrap_or_else(|_| panic!("{self:?} is not an IP address"))
    }
}

impl BuilderAddress for Ipv4Addr {
    fn ip(self) -> IpAddr {
        IpAddr::V4(self)
    }
}

impl BuilderAddress for Ipv6Addr {
    fn ip(self) -> IpAddr {
        IpAddr::V6(self)
    }
}

impl BuilderAddress for IpAddr {
    fn ip(self) -> IpAddr {
        self
    }
}

fn prefix(text: &str) -> Prefix {
    Prefix::parse(text).unwrap_or_else(|| panic!("{text:?} is not a prefix a.b.c.d/len"))
}

/// A [`Config`] under construction; see the module documentation for where it starts.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
}

impl Config {
    /// A builder starting from the lab network (see [`crate::config::testing`]).
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                version: 1,
                interface: Interface {
                    address: prefix("10.77.0.2/24"),
                    gateway: Some(address("10.77.0.1")),
                    address6: None,
                    gateway6: None,
                    mtu: 1500,
                    nic: None,
                    poll: Polling::Auto,
                    cores: None,
                },
                management: None,
                limits: Limits::default(),
                vips: Vec::new(),
                bgp: None,
                vrrp: None,
            },
        }
    }
}

impl ConfigBuilder {
    /// The operator's revision.
    pub fn version(mut self, version: u64) -> Self {
        self.config.version = version;
        self
    }

    /// The balancer's address and subnet, `a.b.c.d/len`.
    pub fn address(mut self, prefix_text: &str) -> Self {
        self.config.interface.address = prefix(prefix_text);
        self
    }

    /// The next hop for off-link backends; `None` for none.
    pub fn gateway(mut self, gateway: Option<&str>) -> Self {
        self.config.interface.gateway = gateway.map(address);
        self
    }

    /// The balancer's IPv6 address and prefix, `fd00:77::2/64`.
    pub fn address6(mut self, prefix_text: &str) -> Self {
        self.config.interface.address6 = Some(
            super::Prefix6::parse(prefix_text)
                .unwrap_or_else(|| panic!("{prefix_text:?} is not an IPv6 prefix")),
        );
        self
    }

    /// The IPv6 next hop for off-link backends; `None` for none.
    pub fn gateway6(mut self, gateway: Option<&str>) -> Self {
        self.config.interface.gateway6 = gateway.map(|g| {
            g.parse()
                .unwrap_or_else(|_| panic!("{g:?} is not an IPv6 address"))
        });
        self
    }

    /// The interface MTU.
    pub fn mtu(mut self, mtu: u16) -> Self {
        self.config.interface.mtu = mtu;
        self
    }

    /// What the poll loop does without traffic.
    pub fn poll(mut self, poll: Polling) -> Self {
        self.config.interface.poll = poll;
        self
    }

    /// A management port open to the `allow` prefixes (IPv4 or IPv6), without a public key or
    /// fetch URL.
    pub fn management(mut self, port: u16, allow: &[&str]) -> Self {
        let (v6, v4): (Vec<&str>, Vec<&str>) = allow.iter().partition(|p| p.contains(':'));
        self.config.management = Some(Management {
            port,
            allow: v4.iter().map(|p| prefix(p)).collect(),
            allow6: v6
                .iter()
                .map(|p| {
                    super::Prefix6::parse(p)
                        .unwrap_or_else(|| panic!("{p:?} is not an IPv6 prefix"))
                })
                .collect(),
            pubkey: None,
            fetch: None,
        });
        self
    }

    /// The public key pushed configs must be signed with (after [`ConfigBuilder::management`]).
    ///
    /// # Panics
    /// Without a management port.
    pub fn pubkey(mut self, pubkey: [u8; 32]) -> Self {
        self.management_mut().pubkey = Some(pubkey);
        self
    }

    /// The URL of a signed config fetched at boot (after [`ConfigBuilder::management`]).
    ///
    /// # Panics
    /// Without a management port.
    pub fn fetch(mut self, url: &str) -> Self {
        self.management_mut().fetch = Some(String::from(url));
        self
    }

    /// The flow table's capacity.
    pub fn flows(mut self, flows: u32) -> Self {
        self.config.limits.flows = Some(flows);
        self
    }

    /// The most new flows per second the flow table takes (`limits.new_flows_per_second`).
    pub fn new_flows_per_second(mut self, rate: u32) -> Self {
        self.config.limits.new_flows_per_second = Some(rate);
        self
    }

    /// A `[bgp]` section with AS `asn`, the default hold time, announcing, without BFD or peers.
    pub fn bgp(mut self, asn: u32) -> Self {
        self.config.bgp = Some(Bgp {
            asn,
            router_id: None,
            hold_time: BGP_HOLD_DEFAULT,
            announce: true,
            bfd: false,
            peers: Vec::new(),
        });
        self
    }

    /// One more BGP peer at `address` (`a.b.c.d`) in AS `asn` (after [`ConfigBuilder::bgp`]).
    ///
    /// # Panics
    /// Without a `[bgp]` section.
    pub fn bgp_peer(mut self, address_text: &str, asn: u32) -> Self {
        self.bgp_mut().peers.push(BgpPeer {
            address: address(address_text),
            asn,
        });
        self
    }

    /// The BGP hold time in seconds (after [`ConfigBuilder::bgp`]).
    ///
    /// # Panics
    /// Without a `[bgp]` section.
    pub fn bgp_hold_time(mut self, seconds: u16) -> Self {
        self.bgp_mut().hold_time = seconds;
        self
    }

    /// Whether the VIPs are announced (after [`ConfigBuilder::bgp`]).
    ///
    /// # Panics
    /// Without a `[bgp]` section.
    pub fn bgp_announce(mut self, announce: bool) -> Self {
        self.bgp_mut().announce = announce;
        self
    }

    /// A `[vrrp]` section with virtual router `vrid` at `priority`, version 3, the default
    /// interval, preempting.
    pub fn vrrp(mut self, vrid: u8, priority: u8) -> Self {
        self.config.vrrp = Some(Vrrp {
            vrid,
            priority,
            advert_ms: VRRP_ADVERT_MS_DEFAULT,
            preempt: true,
            version: VrrpVersion::V3,
        });
        self
    }

    /// One more VIP (after those added before).
    pub fn vip(mut self, vip: Vip) -> Self {
        self.config.vips.push(vip);
        self
    }

    /// The config, not validated.
    pub fn build(self) -> Config {
        self.config
    }

    fn bgp_mut(&mut self) -> &mut Bgp {
        self.config
            .bgp
            .as_mut()
            .expect("ConfigBuilder::bgp must come first")
    }

    fn management_mut(&mut self) -> &mut Management {
        self.config
            .management
            .as_mut()
            .expect("ConfigBuilder::management must come first")
    }
}

/// A [`Vip`] under construction; see the module documentation for where it starts.
#[derive(Clone, Debug)]
pub struct VipBuilder {
    vip: Vip,
}

impl Vip {
    /// A builder of a VIP named `name` at `address` and `port`.
    pub fn builder(name: &str, address: impl BuilderAddress, port: VipPort) -> VipBuilder {
        VipBuilder {
            vip: Vip {
                name: String::from(name),
                address: address.ip(),
                port,
                protocol: Protocol::Tcp,
                mode: Mode::DsrL2,
                scheduler: Scheduler::Rr,
                persistence: None,
                health: None,
                fail_open: true,
                backends: Vec::new(),
            },
        }
    }
}

impl VipBuilder {
    /// TCP or UDP.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.vip.protocol = protocol;
        self
    }

    /// L2 or L3 DSR.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.vip.mode = mode;
        self
    }

    /// The backend choice for new flows.
    pub fn scheduler(mut self, scheduler: Scheduler) -> Self {
        self.vip.scheduler = scheduler;
        self
    }

    /// Seconds of source-IP stickiness.
    pub fn persistence(mut self, seconds: u32) -> Self {
        self.vip.persistence = Some(seconds);
        self
    }

    /// Whether traffic still goes to the backends when all are down (default true).
    pub fn fail_open(mut self, on: bool) -> Self {
        self.vip.fail_open = on;
        self
    }

    /// Health checks of the backends.
    pub fn health(mut self, health: Health) -> Self {
        self.vip.health = Some(health);
        self
    }

    /// One more backend named `name` at `address` with `weight`.
    pub fn backend(mut self, name: &str, address: impl BuilderAddress, weight: u32) -> Self {
        self.vip.backends.push(Backend {
            name: String::from(name),
            address: address.ip(),
            weight,
            mac: None,
        });
        self
    }

    /// Pin the MAC of the backend added last to `mac_text` (`02:00:0a:4d:00:15`).
    pub fn backend_mac(mut self, mac_text: &str) -> Self {
        let mac = super::parse_mac(mac_text)
            .unwrap_or_else(|| panic!("{mac_text:?} is not a MAC like 02:00:0a:4d:00:15"));
        self.vip
            .backends
            .last_mut()
            .expect("backend_mac follows backend")
            .mac = Some(mac);
        self
    }

    /// The VIP, not validated.
    pub fn build(self) -> Vip {
        self.vip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_starting_point_is_valid_once_it_has_a_vip() {
        let config = Config::builder()
            .vip(
                Vip::builder("web", "10.77.0.100", VipPort::One(80))
                    .backend("be1", "10.77.0.21", 1)
                    .build(),
            )
            .build();
        config.validate().unwrap();
        assert_eq!(config.interface.address.to_string(), "10.77.0.2/24");
        assert_eq!(config.vips[0].backends[0].address, address("10.77.0.21"));
    }

    #[test]
    fn addresses_as_text_and_as_ipv4addr_are_the_same() {
        let by_text = Vip::builder("web", "10.77.0.100", VipPort::All)
            .backend("be1", "10.77.0.21", 1)
            .build();
        let by_value = Vip::builder("web", Ipv4Addr::new(10, 77, 0, 100), VipPort::All)
            .backend("be1", Ipv4Addr::new(10, 77, 0, 21), 1)
            .build();
        assert_eq!(by_text, by_value);
    }

    #[test]
    #[should_panic(expected = "ConfigBuilder::management must come first")]
    fn a_pubkey_needs_a_management_port() {
        let _ = Config::builder().pubkey([1; 32]);
    }
}
