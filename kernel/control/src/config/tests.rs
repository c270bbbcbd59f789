//! Tests of the config model: validation rules by field, the blob's round trip and damage.

use super::*;
use alloc::vec;

/// A valid config with every optional part: management with a key, persistence, health checks.
pub(crate) fn example() -> Config {
    Config::builder()
        .management(9100, &["10.77.0.0/24"])
        .pubkey([7; 32])
        .vip(
            Vip::builder("web", "10.77.0.100", VipPort::One(80))
                .scheduler(Scheduler::Wlc)
                .persistence(300)
                .health(Health::DEFAULT)
                .backend("be1", "10.77.0.21", 1)
                .backend("be2", "10.77.0.22", 2)
                .build(),
        )
        .build()
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
    c.vips[0].backends[1].address = core::net::IpAddr::from(Ipv4Addr::new(10, 88, 0, 5));
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
    assert!(refused(&c).starts_with("interface.mtu: 100 is below 576"));
    c.interface.mtu = MTU_RANGE.1;
    c.validate().unwrap();
    c.interface.mtu = MTU_RANGE.1 + 1;
    assert_eq!(
        refused(&c),
        "interface.mtu: 1501 is above 1500, the largest packet every NIC driver receives whole \
         (the 82599 runs without jumbo frames; virtio-net's 2 KiB buffers keep 128 bytes of \
         headroom); larger frames would be dropped unseen"
    );
    c.interface.mtu = 9000;
    assert!(refused(&c).starts_with("interface.mtu: 9000 is above 1500"));
    let mut c = example();
    c.interface.nic = Some("e1000".into());
    assert!(refused(&c).starts_with("interface.nic:"));
    c.interface.nic = Some("00:03.0".into());
    c.validate().unwrap();
}

#[test]
fn vip_rules() {
    let mut c = example();
    c.vips[0].address = core::net::IpAddr::from(c.interface.address.address);
    assert!(refused(&c).contains("is the balancer's own interface address"));
    let mut c = example();
    c.vips[0].address = core::net::IpAddr::from(c.interface.gateway.unwrap());
    assert_eq!(
        refused(&c),
        "vip \"web\": address: 10.77.0.1 is interface.gateway; a VIP needs an address of its own"
    );
    for (addr, what) in [("10.77.0.0", "network"), ("10.77.0.255", "broadcast")] {
        let mut c = example();
        c.vips[0].address = addr.parse().unwrap();
        assert_eq!(
            refused(&c),
            format!(
                "vip \"web\": address: {addr} is the network or broadcast address of the \
                 interface subnet 10.77.0.0/24"
            ),
            "{what}"
        );
    }
    // A /31 has no network or broadcast address (RFC 3021): both are hosts.
    let mut c = example();
    c.interface.address = Prefix::parse("10.77.0.2/31").unwrap();
    c.interface.gateway = Some(Ipv4Addr::new(10, 77, 0, 3));
    c.vips[0].mode = Mode::DsrL3;
    c.vips[0].address = core::net::IpAddr::from(Ipv4Addr::new(10, 77, 0, 100));
    c.validate().unwrap();
    // A backend of this VIP or of another one.
    let mut c = example();
    c.vips[0].address = c.vips[0].backends[1].address;
    assert!(refused(&c).starts_with(
        "vip \"web\": address: 10.77.0.22 is the address of backend \"be2\" of vip \"web\""
    ));
    let mut c = example();
    c.vips.push(
        Vip::builder("web2", "10.77.0.21", VipPort::One(8080))
            .backend("be2", "10.77.0.22", 1)
            .build(),
    );
    assert!(refused(&c).starts_with(
        "vip \"web2\": address: 10.77.0.21 is the address of backend \"be1\" of vip \"web\""
    ));
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
fn summary_lists_vips_and_backends() {
    assert_eq!(
        example().summary(),
        "config v1: interface 10.77.0.2/24, 1 vips, 2 backends; web 10.77.0.100:80/tcp dsr-l2 wlc [be1 10.77.0.21 w1, be2 10.77.0.22 w2]"
    );
    // IPv6: the interface's address6 after its IPv4 one, a VIP's address in brackets.
    let v6: core::net::Ipv6Addr = "fd00:77::100".parse().unwrap();
    let be: core::net::Ipv6Addr = "fd00:77::21".parse().unwrap();
    let c = Config::builder()
        .address6("fd00:77::2/64")
        .vip(
            Vip::builder("web6", v6, VipPort::One(443))
                .backend("be1", be, 1)
                .build(),
        )
        .build();
    assert!(
        c.summary().contains(
            "interface 10.77.0.2/24 fd00:77::2/64, 1 vips, 1 backends; web6 [fd00:77::100]:443/tcp"
        ),
        "{}",
        c.summary()
    );
}

#[test]
fn a_pinned_backend_mac_is_unicast_on_link_and_one_per_address_and_survives_the_blob() {
    let pinned = |mac: &str| {
        Config::builder()
            .vip(
                Vip::builder("web", "10.77.0.100", VipPort::One(80))
                    .mode(Mode::DsrL3)
                    .backend("be1", "10.77.0.21", 1)
                    .backend_mac(mac)
                    .build(),
            )
            .build()
    };
    let c = pinned("02:00:0a:4d:00:15");
    c.validate().unwrap();
    assert_eq!(Config::from_blob(&c.to_blob()).unwrap(), c);
    assert!(c
        .summary()
        .contains("be1 10.77.0.21 w1 mac 02:00:0a:4d:00:15"));
    for mac in [
        "00:00:00:00:00:00",
        "ff:ff:ff:ff:ff:ff",
        "01:00:5e:00:00:01",
    ] {
        let e = refused(&pinned(mac));
        assert!(
            e.starts_with(&format!(
                "vip \"web\": backend \"be1\": mac: {mac} is not a unicast MAC"
            )),
            "{e}"
        );
    }
    let mut off_link = pinned("02:00:0a:4d:00:15");
    off_link.vips[0].backends[0].address = core::net::IpAddr::from(Ipv4Addr::new(10, 88, 0, 5));
    let e = refused(&off_link);
    assert!(
        e.starts_with("vip \"web\": backend \"be1\": mac: 10.88.0.5 is off the interface subnet"),
        "{e}"
    );
    // Another VIP may share the backend, unpinned or pinned alike, not pinned otherwise.
    let mut two = pinned("02:00:0a:4d:00:15");
    let mut other = two.vips[0].clone();
    other.name = "api".into();
    other.address = core::net::IpAddr::from(Ipv4Addr::new(10, 77, 0, 101));
    other.backends[0].mac = None;
    two.vips.push(other);
    two.validate().unwrap();
    two.vips[1].backends[0].mac = Some([2, 0, 0x0a, 0x4d, 0, 0x15]);
    two.validate().unwrap();
    two.vips[1].backends[0].mac = Some([2, 0, 0x0a, 0x4d, 0, 0x99]);
    let e = refused(&two);
    assert!(
        e.starts_with(
            "vip \"web\": backend \"be1\": mac: 10.77.0.21 is pinned to 02:00:0a:4d:00:15 here \
             but to 02:00:0a:4d:00:99 by backend \"be1\" of vip \"api\""
        ),
        "{e}"
    );
}

#[test]
fn mac_text_is_six_hex_pairs() {
    assert_eq!(
        parse_mac("02:00:0A:4d:00:15"),
        Some([2, 0, 10, 0x4d, 0, 0x15])
    );
    for bad in [
        "",
        "02:00:0a:4d:00",
        "02:00:0a:4d:00:15:01",
        "2:00:0a:4d:00:15",
        "02-00-0a-4d-00-15",
        "0g:00:0a:4d:00:15",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
    assert_eq!(
        MacText([2, 0, 10, 0x4d, 0, 0x15]).to_string(),
        "02:00:0a:4d:00:15"
    );
}

fn with_bgp() -> Config {
    let mut c = Config::builder()
        .bgp(65010)
        .bgp_peer("10.77.0.1", 65000)
        .vip(
            Vip::builder("web", "10.77.0.100", VipPort::One(80))
                .scheduler(Scheduler::Maglev)
                .backend("be1", "10.77.0.21", 1)
                .build(),
        )
        .build();
    c.bgp.as_mut().unwrap().hold_time = 9;
    c
}

#[test]
fn bgp_section_round_trips_and_defaults_its_router_id() {
    let c = with_bgp();
    c.validate().unwrap();
    assert_eq!(Config::from_blob(&c.to_blob()).unwrap(), c);
    let bgp = c.bgp.as_ref().unwrap();
    assert_eq!(bgp.router_id(&c.interface).to_string(), "10.77.0.2");
}

/// A change to a valid `[bgp]` and the start of the error it must cause.
type BgpCase = (fn(&mut Bgp), &'static str);

#[test]
fn bgp_rules_name_their_field() {
    let cases: [BgpCase; 8] = [
        (|b| b.asn = 0, "bgp.asn: 0 is reserved"),
        (|b| b.asn = 23456, "bgp.asn: 23456 is reserved"),
        (
            |b| b.router_id = Some(core::net::Ipv4Addr::UNSPECIFIED),
            "bgp.router_id: 0.0.0.0",
        ),
        (
            |b| b.hold_time = 2,
            "bgp.hold_time: 2 seconds is out of range 3..=65535",
        ),
        (|b| b.peers.clear(), "bgp.peer: none given"),
        (
            |b| b.peers[0].address = "10.99.0.1".parse().unwrap(),
            "bgp.peer \"10.99.0.1\": address: 10.99.0.1 is not a host on the interface subnet",
        ),
        (
            |b| b.peers[0].asn = 0,
            "bgp.peer \"10.77.0.1\": asn: 0 is reserved",
        ),
        (
            |b| b.peers.push(b.peers[0].clone()),
            "bgp.peer \"10.77.0.1\": is listed twice",
        ),
    ];
    for (edit, want) in cases {
        let mut c = with_bgp();
        edit(c.bgp.as_mut().unwrap());
        let e = refused(&c);
        assert!(e.starts_with(want), "{e}");
    }
    let mut c = with_bgp();
    c.bgp.as_mut().unwrap().peers[0].address = "10.77.0.2".parse().unwrap();
    assert!(refused(&c).contains("the balancer's own address or a VIP"));
    let mut c = with_bgp();
    c.bgp.as_mut().unwrap().peers = (1..=17)
        .map(|i| BgpPeer {
            address: core::net::Ipv4Addr::new(10, 77, 0, 100 + i),
            asn: 65000,
        })
        .collect();
    assert!(refused(&c).starts_with("bgp.peer: 17 peers given; at most 16"));
    let mut c = with_bgp();
    c.management = example().management;
    c.validate().unwrap();
    c.management.as_mut().unwrap().port = 179;
    assert!(refused(&c).starts_with("management.port: 179 is the BGP port"));
}

#[test]
fn bgp_needs_schedulers_every_balancer_agrees_on() {
    for s in [Scheduler::Rr, Scheduler::Wrr, Scheduler::Lc, Scheduler::Wlc] {
        let mut c = with_bgp();
        c.vips[0].scheduler = s;
        let e = refused(&c);
        assert!(
            e.starts_with(&format!(
                "vip \"web\": scheduler: \"{}\" cannot be used with [bgp]",
                s.name()
            )),
            "{e}"
        );
        assert!(
            e.contains("same backend for a flow it has never seen"),
            "{e}"
        );
        c.bgp = None;
        c.validate().unwrap();
    }
    let mut c = with_bgp();
    c.vips[0].scheduler = Scheduler::Sh;
    c.validate().unwrap();
}

#[test]
fn bgp_announces_ipv6_vips_with_address6_as_next_hop() {
    let mut c = ipv6_example();
    c.bgp = with_bgp().bgp;
    for v in &mut c.vips {
        v.scheduler = Scheduler::Maglev;
    }
    c.validate().unwrap();
    assert_eq!(Config::from_blob(&c.to_blob()).unwrap(), c);
    // The next hop of their routes is interface.address6: the error names it.
    c.interface.address6 = None;
    c.interface.gateway6 = None;
    let e = refused(&c);
    assert!(e.contains("interface.address6 is not set"), "{e}");
}

fn with_vrrp() -> Config {
    Config::builder()
        .vrrp(51, 150)
        .vip(
            Vip::builder("web", "10.77.0.100", VipPort::One(80))
                .scheduler(Scheduler::Maglev)
                .backend("be1", "10.77.0.21", 1)
                .build(),
        )
        .build()
}

#[test]
fn vrrp_section_round_trips() {
    let c = with_vrrp();
    c.validate().unwrap();
    assert_eq!(Config::from_blob(&c.to_blob()).unwrap(), c);
    let mut v2 = with_vrrp();
    v2.vrrp.as_mut().unwrap().version = VrrpVersion::V2;
    assert_eq!(Config::from_blob(&v2.to_blob()).unwrap(), v2);
}

/// A change to a valid `[vrrp]` and the start of the error it must cause.
type VrrpCase = (fn(&mut Vrrp), &'static str);

#[test]
fn vrrp_rules_name_their_field() {
    let cases: [VrrpCase; 7] = [
        (|v| v.vrid = 0, "vrrp.vrid: 0 is not a virtual router id"),
        (|v| v.priority = 0, "vrrp.priority: 0 is out of range 1..=254"),
        (|v| v.priority = 255, "vrrp.priority: 255 is out of range"),
        (|v| v.advert_ms = 0, "vrrp.advert_ms: 0 ms cannot be sent"),
        (|v| v.advert_ms = 1005, "vrrp.advert_ms: 1005 ms cannot be sent"),
        (|v| v.advert_ms = 40960, "vrrp.advert_ms: 40960 ms cannot be sent"),
        (
            |v| {
                v.version = VrrpVersion::V2;
                v.advert_ms = 500;
            },
            "vrrp.advert_ms: 500 ms cannot be sent by VRRP version 2, which counts in whole seconds",
        ),
    ];
    for (edit, want) in cases {
        let mut c = with_vrrp();
        edit(c.vrrp.as_mut().unwrap());
        let e = refused(&c);
        assert!(e.starts_with(want), "{e}");
    }
    let mut c = with_vrrp();
    c.vrrp.as_mut().unwrap().advert_ms = 10;
    c.validate().unwrap();
    c.vips.clear();
    assert!(refused(&c).starts_with("vrrp: no IPv4 VIP to share"));
    // IPv6 VIPs follow the master, unadvertised; alone they give the advertisements nothing.
    let mut c = ipv6_example();
    c.vips.retain(|v| v.name == "web6");
    c.vips[0].scheduler = Scheduler::Maglev;
    c.vrrp = with_vrrp().vrrp;
    assert!(
        refused(&c).starts_with("vrrp: no IPv4 VIP to share"),
        "{}",
        refused(&c)
    );
    c.vips.extend(with_vrrp().vips);
    c.validate().unwrap();
}

#[test]
fn vrrp_needs_schedulers_every_balancer_agrees_on() {
    for s in [Scheduler::Rr, Scheduler::Wrr, Scheduler::Lc, Scheduler::Wlc] {
        let mut c = with_vrrp();
        c.vips[0].scheduler = s;
        let e = refused(&c);
        assert!(
            e.starts_with(&format!(
                "vip \"web\": scheduler: \"{}\" cannot be used with [vrrp]: a failover",
                s.name()
            )),
            "{e}"
        );
        c.vrrp = None;
        c.validate().unwrap();
    }
    let mut c = with_vrrp();
    c.vips[0].scheduler = Scheduler::Sh;
    c.validate().unwrap();
}

/// An IPv6 VIP over dsr-l2 and one over dsr-l3 behind `gateway6`.
fn ipv6_example() -> Config {
    Config::builder()
        .address6("fd00:77::2/64")
        .gateway6(Some("fd00:77::1"))
        .vip(
            Vip::builder("web6", "fd00:77::100", VipPort::One(80))
                .backend("be1", "fd00:77::21", 1)
                .backend("be2", "fd00:77::22", 1)
                .build(),
        )
        .vip(
            Vip::builder("far6", "fd00:77::101", VipPort::One(80))
                .mode(Mode::DsrL3)
                .backend("be3", "fd00:88::5", 1)
                .build(),
        )
        .build()
}

#[test]
fn ipv6_vips_are_valid_and_round_trip_through_a_blob() {
    let c = ipv6_example();
    c.validate().unwrap();
    assert_eq!(Config::from_blob(&c.to_blob()).unwrap(), c);
}

#[test]
fn ipv6_families_are_checked_by_field() {
    let mut c = ipv6_example();
    c.interface.address6 = None;
    c.interface.gateway6 = None;
    assert_eq!(
        refused(&c),
        "vip \"web6\": address: fd00:77::100 is IPv6 and interface.address6 is not set; IPv6 \
         VIPs need it"
    );

    let mut c = ipv6_example();
    c.vips[0].backends[1].address = "10.77.0.22".parse().unwrap();
    assert_eq!(
        refused(&c),
        "vip \"web6\": backend \"be2\": address: 10.77.0.22 is IPv4 but the VIP is IPv6; a VIP \
         and its backends are of one family"
    );

    let mut c = example();
    c.vips[0].backends[0].address = "fd00:77::21".parse().unwrap();
    assert!(refused(&c).starts_with("vip \"web\": backend \"be1\": address: fd00:77::21 is IPv6"));

    let mut c = ipv6_example();
    c.vips[0].backends[0].address = "fd00:99::21".parse().unwrap();
    assert!(refused(&c).starts_with(
        "vip \"web6\": backend \"be1\": address: fd00:99::21 is not on the interface prefix \
         fd00:77::/64; dsr-l2 backends must be"
    ));

    let mut c = ipv6_example();
    c.interface.gateway6 = None;
    assert_eq!(
        refused(&c),
        "vip \"far6\": backend \"be3\": address: fd00:88::5 is off the interface prefix \
         fd00:77::/64 and interface.gateway6 is not set"
    );

    let mut c = ipv6_example();
    c.vips[0].address = "fd00:77::2".parse().unwrap();
    assert!(refused(&c).contains("is the balancer's own interface.address6"));
    c.vips[0].address = "fd00:77::1".parse().unwrap();
    assert!(refused(&c).contains("is interface.gateway6"));
    c.vips[0].address = "fe80::1".parse().unwrap();
    assert!(refused(&c).contains("is not a unicast address"));

    let mut c = ipv6_example();
    c.interface.mtu = 1000;
    assert!(refused(&c).starts_with("interface.mtu: 1000 is below 1280"));
    let mut c = ipv6_example();
    c.interface.gateway6 = Some("fd00:99::1".parse().unwrap());
    assert!(refused(&c).starts_with("interface.gateway6: fd00:99::1 is neither link-local"));
    c.interface.gateway6 = Some("fe80::1".parse().unwrap());
    c.validate().unwrap();
}

#[test]
fn cores_zero_is_refused_and_a_limit_round_trips_through_a_blob() {
    let mut c = example();
    c.interface.cores = Some(0);
    assert!(
        refused(&c).starts_with("interface.cores: is 0"),
        "{}",
        refused(&c)
    );
    c.interface.cores = Some(3);
    c.validate().unwrap();
    let back = Config::from_blob(&c.to_blob()).unwrap();
    assert_eq!(back.interface.cores, Some(3));
}
