//! VRRP on the wire against keepalived: frames keepalived 2.2.7 (Debian 12's) sent, captured
//! with tcpdump on a veth pair (vrid 51, priority 100, `advert_int 1`, one address 10.123.0.100,
//! from 10.123.0.2, once with `vrrp_version 3` and once with `vrrp_version 2`, and the
//! priority-0 advertisement it sends when stopped). They pin down what interop needs: keepalived
//! sums version 3 over the IPv4 pseudo-header and version 2 over the message alone with 8 zero
//! octets of authentication data after the addresses, and the codec must read those frames and
//! write the same bytes.

use control::config::{Vrrp, VrrpVersion};
use control::vrrp::{self, Advert, ChecksumForm, Router, State};
use std::net::Ipv4Addr;

const SENDER: Ipv4Addr = Ipv4Addr::new(10, 123, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 123, 0, 100);

/// keepalived's version 3 advertisement, Ethernet frame as captured.
const V3_FRAME: &str = "01005e0000128ef10b685635080045c0002000010000ff70d01d0a7b0002e0000012\
                        313364010064747c0a7b0064";
/// keepalived's version 3 advertisement on stopping: priority 0.
const V3_LEAVING: &str = "313300010064d87c0a7b0064";
/// keepalived's version 2 advertisement, Ethernet frame as captured.
const V2_FRAME: &str = "01005e0000128ef10b685635080045c0002800010000ff70d0150a7b0002e0000012\
                        2133640100016feb0a7b00640000000000000000";

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn advert(version: VrrpVersion, priority: u8) -> Advert {
    Advert {
        version,
        vrid: 51,
        priority,
        interval_ms: 1000,
        addresses: vec![VIP],
    }
}

#[test]
fn keepalived_version_3_is_read_and_written_byte_for_byte() {
    let frame = bytes(V3_FRAME);
    let r = vrrp::received(&frame).expect("an IPv4 VRRP frame");
    assert_eq!((r.src, r.dst, r.ttl), (SENDER, vrrp::GROUP, vrrp::TTL));
    let want = advert(VrrpVersion::V3, 100);
    assert_eq!(
        Advert::parse(r.msg, r.src, r.dst),
        Ok((want.clone(), ChecksumForm::PseudoHeader))
    );
    // What this balancer sends for the same advertisement is what keepalived sends.
    assert_eq!(
        want.encode(SENDER, vrrp::GROUP, ChecksumForm::PseudoHeader),
        r.msg
    );
    let leaving = bytes(V3_LEAVING);
    assert_eq!(
        Advert::parse(&leaving, SENDER, vrrp::GROUP),
        Ok((advert(VrrpVersion::V3, 0), ChecksumForm::PseudoHeader))
    );
    // The IP header around it is the one `frame` builds, but for the identification and the
    // source MAC (keepalived sends from the NIC's, this balancer from the virtual router's).
    let ours = vrrp::frame(r.msg, SENDER, 51, 1);
    assert_eq!(ours.len(), frame.len());
    assert_eq!(&ours[..6], &frame[..6]);
    assert_eq!(&ours[6..12], &vrrp::virtual_mac(51));
    assert_eq!(
        &ours[12..18],
        &frame[12..18],
        "ethertype, version, TOS, length"
    );
    assert_eq!(&ours[20..24], &frame[20..24], "flags, TTL, protocol");
    assert_eq!(&ours[26..], &frame[26..], "addresses and message");
}

#[test]
fn keepalived_version_2_is_read_and_written_byte_for_byte() {
    let frame = bytes(V2_FRAME);
    let r = vrrp::received(&frame).expect("an IPv4 VRRP frame");
    let want = advert(VrrpVersion::V2, 100);
    assert_eq!(
        Advert::parse(r.msg, r.src, r.dst),
        Ok((want.clone(), ChecksumForm::MessageOnly))
    );
    assert_eq!(
        want.encode(SENDER, vrrp::GROUP, ChecksumForm::PseudoHeader),
        r.msg
    );
}

#[test]
fn a_backup_follows_keepalived_as_master_and_takes_over_when_it_leaves() {
    let config = Vrrp {
        vrid: 51,
        priority: 50,
        advert_ms: 1000,
        preempt: true,
        version: VrrpVersion::V3,
    };
    let mut r = Router::new(&config, Ipv4Addr::new(10, 123, 0, 3), &[VIP]);
    assert_eq!(r.start(0).became, Some(State::Backup));
    let frame = bytes(V3_FRAME);
    let advert = vrrp::received(&frame).expect("an IPv4 VRRP frame");
    for t in [1000, 2000, 3000, 4000, 5000] {
        let out = r.receive(t, advert.src, advert.dst, advert.ttl, advert.msg);
        assert_eq!((out.became, out.addresses_differ), (None, None));
        assert_eq!(r.poll(t + 999).became, None);
    }
    assert_eq!(
        (r.state(), r.master(), r.accepted()),
        (State::Backup, Some(SENDER), 5)
    );
    // Priority 0: take over after the skew, (256 - 50) * 1000 / 256 = 804 ms.
    let leaving = bytes(V3_LEAVING);
    r.receive(6000, SENDER, vrrp::GROUP, 255, &leaving);
    assert_eq!(r.poll(6803).became, None);
    let out = r.poll(6804);
    assert_eq!(out.became, Some(State::Master));
    assert_eq!(out.send.map(|a| a.priority), Some(50));
}
