//! The codec against literal bytes laid out as in RFC 4271 section 4 (and RFC 5492, 6793 for
//! the capabilities, RFC 4760 for IPv6 routes), and the error code and subcode of each kind of
//! malformed message.

use super::*;

const M: [u8; 16] = [0xff; 16];

fn msg(len: u16, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = M.to_vec();
    v.extend_from_slice(&len.to_be_bytes());
    v.push(kind);
    v.extend_from_slice(body);
    v
}

fn prefix(a: [u8; 4], len: u8) -> Prefix {
    Prefix {
        address: Ipv4Addr::from(a),
        len,
    }
}

fn open(asn: u32) -> Open {
    Open {
        asn,
        hold_time: 9,
        router_id: Ipv4Addr::new(10, 77, 0, 2),
        four_octet_as: true,
        ipv4_unicast: true,
        ipv6_unicast: false,
    }
}

fn err(bytes: &[u8]) -> (u8, u8, Vec<u8>) {
    let n = Message::decode(bytes, true).expect_err("should be refused");
    (n.code, n.subcode, n.data)
}

#[test]
fn open_with_both_capabilities() {
    let wire = msg(
        43,
        1,
        &[
            4, 0xfd, 0xf2, 0, 9, 10, 77, 0, 2, 14, // version, AS 65010, hold 9, id, opt len
            2, 12, // capabilities, 12 bytes
            1, 4, 0, 1, 0, 1, // multiprotocol: AFI 1, reserved, SAFI 1
            65, 4, 0, 0, 0xfd, 0xf2, // 4-octet AS 65010
        ],
    );
    assert_eq!(Message::Open(open(65010)).encode(true), wire);
    assert_eq!(
        Message::decode(&wire, false).unwrap(),
        Message::Open(open(65010))
    );
}

#[test]
fn open_with_a_4_byte_asn_carries_as_trans() {
    let wire = Message::Open(open(4_200_000_000)).encode(true);
    assert_eq!(&wire[20..22], &[0x5b, 0xa0]); // 23456
    assert_eq!(&wire[37..43], &[65, 4, 0xfa, 0x56, 0xea, 0x00]);
    assert_eq!(
        Message::decode(&wire, true).unwrap(),
        Message::Open(open(4_200_000_000))
    );
}

#[test]
fn open_without_capabilities_is_a_2_byte_ipv4_speaker() {
    let wire = msg(29, 1, &[4, 0xfd, 0xe8, 0, 90, 10, 77, 0, 1, 0]);
    let Message::Open(o) = Message::decode(&wire, false).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(
        (o.asn, o.hold_time, o.four_octet_as, o.ipv4_unicast),
        (65000, 90, false, true)
    );
}

#[test]
fn open_with_several_parameters_and_unknown_capabilities() {
    // As BIRD sends it: route refresh (2), graceful restart (64) and enhanced route refresh
    // (70) beside the two used here, some in parameters of their own.
    let body = [
        4, 0xfd, 0xe8, 0, 240, 10, 77, 0, 1, 22, // opt len 22
        2, 6, 1, 4, 0, 2, 0, 1, // IPv6 unicast only
        2, 2, 2, 0, // route refresh
        2, 8, 64, 2, 0, 120, 70, 0, 65, 0, // graceful restart, enhanced RR, bad AS4 (len 0)
    ];
    let mut wire = msg(29 + 22, 1, &body);
    // The 4-octet AS capability of length 0 is malformed.
    assert_eq!(err(&wire), (2, 0, vec![]));
    let at = wire.len() - 2;
    wire.truncate(at);
    wire[28] = 20;
    wire[16..18].copy_from_slice(&49u16.to_be_bytes());
    wire[42] = 6;
    let Message::Open(o) = Message::decode(&wire, false).unwrap() else {
        panic!("not an OPEN")
    };
    assert!(!o.ipv4_unicast, "only IPv6 unicast was offered");
    assert!(o.ipv6_unicast);
    assert!(!o.four_octet_as);
}

#[test]
fn open_errors() {
    let good = [4, 0xfd, 0xe8, 0, 90, 10, 77, 0, 1, 0];
    let with = |i: usize, v: u8| {
        let mut b = good;
        b[i] = v;
        msg(29, 1, &b)
    };
    assert_eq!(err(&with(0, 3)), (2, 1, vec![0, 4]));
    assert_eq!(err(&with(4, 2)), (2, 6, vec![]));
    let mut zero_id = good;
    zero_id[5..9].copy_from_slice(&[0; 4]);
    assert_eq!(err(&msg(29, 1, &zero_id)), (2, 3, vec![0; 4]));
    // Optional parameter length larger than what follows.
    assert_eq!(err(&with(9, 3)), (2, 0, vec![]));
    // An optional parameter other than capabilities (type 1, authentication, is deprecated).
    let mut b = good.to_vec();
    b[9] = 3;
    b.extend_from_slice(&[1, 1, 0]);
    assert_eq!(err(&msg(32, 1, &b)), (2, 4, vec![1]));
    // Shorter than the fixed OPEN fields.
    assert_eq!(err(&msg(28, 1, &good[..9])), (1, 2, vec![0, 28]));
}

#[test]
fn keepalive_and_notification() {
    let keepalive = msg(19, 4, &[]);
    assert_eq!(Message::Keepalive.encode(true), keepalive);
    assert_eq!(
        Message::decode(&keepalive, true).unwrap(),
        Message::Keepalive
    );
    assert_eq!(err(&msg(20, 4, &[0])), (1, 2, vec![0, 20]));
    let hold = msg(21, 3, &[4, 0]);
    let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0, &[]);
    assert_eq!(Message::Notification(n.clone()).encode(true), hold);
    assert_eq!(
        Message::decode(&hold, true).unwrap(),
        Message::Notification(n)
    );
    let bad_as = msg(23, 3, &[2, 2, 0xfd, 0xe9]);
    let Message::Notification(n) = Message::decode(&bad_as, true).unwrap() else {
        panic!("not a NOTIFICATION")
    };
    assert_eq!((n.code, n.subcode, n.data), (2, 2, vec![0xfd, 0xe9]));
    assert_eq!(err(&msg(20, 3, &[6])), (1, 2, vec![0, 20]));
}

#[test]
fn header_errors() {
    let mut bad_marker = msg(19, 4, &[]);
    bad_marker[3] = 0;
    assert_eq!(err(&bad_marker), (1, 1, vec![]));
    assert_eq!(frame(&bad_marker).unwrap_err().subcode, 1);
    assert_eq!(err(&msg(18, 4, &[])), (1, 2, vec![0, 18]));
    let long = msg(4097, 2, &[0; 4078]);
    assert_eq!(err(&long), (1, 2, vec![0x10, 0x01]));
    assert_eq!(frame(&long).unwrap_err().subcode, 2);
    assert_eq!(err(&msg(19, 7, &[])), (1, 3, vec![7]));
    // The stated length and the bytes given disagree.
    assert_eq!(err(&msg(23, 2, &[0, 0, 0, 0, 0])), (1, 2, vec![0, 24]));
}

#[test]
fn framing_waits_for_whole_messages() {
    let two = [msg(19, 4, &[]), msg(21, 3, &[6, 4])].concat();
    assert_eq!(frame(&two[..18]).unwrap(), None);
    assert_eq!(frame(&two).unwrap(), Some(19));
    assert_eq!(frame(&two[19..39]).unwrap(), None);
    assert_eq!(frame(&two[19..]).unwrap(), Some(21));
}

fn announce_update() -> Update {
    Update {
        withdrawn: vec![],
        attributes: vec![
            Attribute::Origin(ORIGIN_IGP),
            Attribute::AsPath(vec![Segment {
                kind: AS_SEQUENCE,
                asns: vec![65010],
            }]),
            Attribute::NextHop(Ipv4Addr::new(10, 77, 0, 2)),
        ],
        nlri: vec![prefix([10, 77, 0, 100], 32)],
    }
}

#[test]
fn update_announcing_a_slash_32_with_a_4_byte_as_path() {
    let wire = msg(
        48,
        2,
        &[
            0, 0, // no withdrawn routes
            0, 20, // 20 bytes of path attributes
            0x40, 1, 1, 0, // ORIGIN IGP, well-known transitive
            0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xf2, // AS_PATH: AS_SEQUENCE of one, 65010
            0x40, 3, 4, 10, 77, 0, 2, // NEXT_HOP 10.77.0.2
            32, 10, 77, 0, 100, // 10.77.0.100/32
        ],
    );
    let u = announce_update();
    assert_eq!(Message::Update(u.clone()).encode(true), wire);
    assert_eq!(Message::decode(&wire, true).unwrap(), Message::Update(u));
}

#[test]
fn update_with_a_2_byte_as_path() {
    let wire = Message::Update(announce_update()).encode(false);
    assert_eq!(&wire[27..35], &[0x40, 2, 4, 2, 1, 0xfd, 0xf2, 0x40]);
    assert_eq!(
        Message::decode(&wire, false).unwrap(),
        Message::Update(announce_update())
    );
    // A 4-byte AS in a 2-byte path is written as AS_TRANS.
    let mut u = announce_update();
    u.attributes[1] = Attribute::AsPath(vec![Segment {
        kind: AS_SEQUENCE,
        asns: vec![4_200_000_000],
    }]);
    let wire = Message::Update(u).encode(false);
    assert_eq!(&wire[30..34], &[2, 1, 0x5b, 0xa0]);
}

#[test]
fn update_withdrawing_only() {
    let wire = msg(28, 2, &[0, 5, 32, 10, 77, 0, 100, 0, 0]);
    let u = Update {
        withdrawn: vec![prefix([10, 77, 0, 100], 32)],
        ..Update::default()
    };
    assert_eq!(Message::Update(u.clone()).encode(true), wire);
    assert_eq!(Message::decode(&wire, true).unwrap(), Message::Update(u));
}

#[test]
fn update_with_short_prefixes_and_unknown_optional_attributes() {
    // 10.0.0.0/8 and 192.168.0.0/23 announced; a community (8, optional transitive) is dropped.
    let body = [
        0, 0, 0, 28, 0x40, 1, 1, 2, 0x40, 2, 0, 0x40, 3, 4, 10, 77, 0, 1, 0xc0, 8, 4, 0xfd, 0xe8,
        0, 1, 0x80, 4, 4, 0, 0, 0, 5, 8, 10, 23, 192, 168, 0,
    ];
    let wire = msg(19 + body.len() as u16, 2, &body);
    let Message::Update(u) = Message::decode(&wire, true).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(
        u.nlri,
        vec![prefix([10, 0, 0, 0], 8), prefix([192, 168, 0, 0], 23)]
    );
    assert_eq!(
        u.attributes,
        vec![
            Attribute::Origin(2),
            Attribute::AsPath(vec![]),
            Attribute::NextHop(Ipv4Addr::new(10, 77, 0, 1)),
            Attribute::Med(5),
        ]
    );
}

/// An UPDATE of `attrs` announcing 10.77.0.100/32.
fn update_with(attrs: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(&[32, 10, 77, 0, 100]);
    msg(19 + body.len() as u16, 2, &body)
}

const ORIGIN: [u8; 4] = [0x40, 1, 1, 0];
const PATH: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8];
const HOP: [u8; 7] = [0x40, 3, 4, 10, 77, 0, 1];

#[test]
fn update_errors() {
    let all = [&ORIGIN[..], &PATH, &HOP].concat();
    assert!(Message::decode(&update_with(&all), true).is_ok());
    // Lengths that run past the message.
    assert_eq!(err(&msg(23, 2, &[0, 1, 0, 0])), (3, 1, vec![]));
    assert_eq!(err(&msg(24, 2, &[0, 0, 0, 2, 0])), (3, 1, vec![]));
    // An attribute whose length runs past the attributes.
    assert_eq!(err(&update_with(&[0x40, 1, 9, 0])), (3, 1, vec![]));
    // A prefix longer than /32, and one cut short.
    let mut bad = update_with(&all);
    let at = bad.len() - 5;
    bad[at] = 33;
    assert_eq!(err(&bad), (3, 10, vec![]));
    assert_eq!(err(&msg(25, 2, &[0, 2, 24, 10, 0, 0])), (3, 10, vec![]));
    // Each well-known attribute missing.
    for (i, kind) in [(0, 1), (1, 2), (2, 3)] {
        let parts = [&ORIGIN[..], &PATH, &HOP];
        let rest: Vec<u8> = (0..3)
            .filter(|j| *j != i)
            .flat_map(|j| parts[j].to_vec())
            .collect();
        assert_eq!(err(&update_with(&rest)), (3, 3, vec![kind]));
    }
    // ORIGIN marked optional; of length 2; of value 3.
    let flagged = [&[0xc0, 1, 1, 0][..], &PATH, &HOP].concat();
    assert_eq!(err(&update_with(&flagged)), (3, 4, vec![0xc0, 1, 1, 0]));
    let long = [&[0x40, 1, 2, 0, 0][..], &PATH, &HOP].concat();
    assert_eq!(err(&update_with(&long)), (3, 5, vec![0x40, 1, 2, 0, 0]));
    let three = [&[0x40, 1, 1, 3][..], &PATH, &HOP].concat();
    assert_eq!(err(&update_with(&three)), (3, 6, vec![0x40, 1, 1, 3]));
    // NEXT_HOP 0.0.0.0.
    let zero = [&ORIGIN[..], &PATH, &[0x40, 3, 4, 0, 0, 0, 0]].concat();
    assert_eq!(
        err(&update_with(&zero)),
        (3, 8, vec![0x40, 3, 4, 0, 0, 0, 0])
    );
    // AS_PATH: a segment of type 9, of count 0, cut short.
    for path in [
        [0x40, 2, 6, 9, 1, 0, 0, 0xfd, 0xe8],
        [0x40, 2, 6, 2, 0, 0, 0, 0xfd, 0xe8],
        [0x40, 2, 6, 2, 2, 0, 0, 0xfd, 0xe8],
    ] {
        let bad = [&ORIGIN[..], &path, &HOP].concat();
        assert_eq!(err(&update_with(&bad)), (3, 11, vec![]));
    }
    // The same attribute twice.
    let twice = [&ORIGIN[..], &ORIGIN, &PATH, &HOP].concat();
    assert_eq!(err(&update_with(&twice)), (3, 1, vec![]));
    // An unknown well-known attribute (type 99, not optional).
    let unknown = [&all[..], &[0x40, 99, 1, 7]].concat();
    assert_eq!(err(&update_with(&unknown)), (3, 2, vec![0x40, 99, 1, 7]));
    // AGGREGATOR of the wrong length for a 4-byte session.
    let aggregator = [&all[..], &[0xc0, 7, 6, 0xfd, 0xe8, 10, 77, 0, 1]].concat();
    assert_eq!(
        err(&update_with(&aggregator)),
        (3, 9, vec![0xc0, 7, 6, 0xfd, 0xe8, 10, 77, 0, 1])
    );
    // An extended-length attribute is read with a 2-byte length.
    let extended = [&ORIGIN[..], &[0x50, 2, 0, 6, 2, 1, 0, 0, 0xfd, 0xe8], &HOP].concat();
    assert!(Message::decode(&update_with(&extended), true).is_ok());
}

#[test]
fn a_malformed_as4_path_is_discarded() {
    let as4 = [&ORIGIN[..], &PATH, &HOP, &[0xc0, 17, 3, 2, 1, 0]].concat();
    let Message::Update(u) = Message::decode(&update_with(&as4), true).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.attributes.len(), 3);
}

// IPv6 unicast over multiprotocol BGP (RFC 4760, next hops as in RFC 2545).

/// fd00:77::2, the balancer's address6 in these tests.
const OWN6: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// fd00:77::100, an IPv6 VIP.
const VIP6: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

fn prefix6(a: [u8; 16], len: u8) -> Prefix6 {
    Prefix6 {
        address: Ipv6Addr::from(a),
        len,
    }
}

#[test]
fn open_with_ipv4_and_ipv6_unicast() {
    let wire = msg(
        49,
        1,
        &[
            4, 0xfd, 0xf2, 0, 9, 10, 77, 0, 2, 20, // version, AS 65010, hold 9, id, opt len
            2, 18, // capabilities, 18 bytes
            1, 4, 0, 1, 0, 1, // multiprotocol: AFI 1 (IPv4), SAFI 1
            1, 4, 0, 2, 0, 1, // multiprotocol: AFI 2 (IPv6), SAFI 1
            65, 4, 0, 0, 0xfd, 0xf2, // 4-octet AS 65010
        ],
    );
    let both = Open {
        ipv6_unicast: true,
        ..open(65010)
    };
    assert_eq!(Message::Open(both.clone()).encode(true), wire);
    assert_eq!(Message::decode(&wire, false).unwrap(), Message::Open(both));
}

/// The attributes of an UPDATE announcing fd00:77::100/128 through fd00:77::2 from AS 65010.
fn mp_reach_attributes() -> Vec<u8> {
    let mut a = vec![0x80, 14, 38, 0, 2, 1, 16]; // optional, MP_REACH_NLRI; AFI 2, SAFI 1, hop 16
    a.extend_from_slice(&OWN6);
    a.extend_from_slice(&[0, 128]); // reserved; a /128
    a.extend_from_slice(&VIP6);
    a.extend_from_slice(&[0x40, 1, 1, 0]); // ORIGIN IGP
    a.extend_from_slice(&[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xf2]); // AS_PATH 65010
    a
}

#[test]
fn update_announcing_a_slash_128_in_mp_reach_nlri() {
    let attrs = mp_reach_attributes();
    let mut body = vec![0, 0, 0, attrs.len() as u8];
    body.extend_from_slice(&attrs);
    let wire = msg(77, 2, &body);
    let u = Update {
        attributes: vec![
            Attribute::MpReach6 {
                next_hop: Ipv6Addr::from(OWN6),
                link_local: None,
                nlri: vec![prefix6(VIP6, 128)],
            },
            Attribute::Origin(ORIGIN_IGP),
            Attribute::AsPath(vec![Segment {
                kind: AS_SEQUENCE,
                asns: vec![65010],
            }]),
        ],
        ..Update::default()
    };
    assert_eq!(Message::Update(u.clone()).encode(true), wire);
    assert_eq!(Message::decode(&wire, true).unwrap(), Message::Update(u));
}

#[test]
fn update_withdrawing_a_slash_128_in_mp_unreach_nlri() {
    let mut body = vec![0, 0, 0, 23, 0x80, 15, 20, 0, 2, 1, 128];
    body.extend_from_slice(&VIP6);
    let wire = msg(46, 2, &body);
    let u = Update {
        attributes: vec![Attribute::MpUnreach6(vec![prefix6(VIP6, 128)])],
        ..Update::default()
    };
    assert_eq!(Message::Update(u.clone()).encode(true), wire);
    assert_eq!(Message::decode(&wire, true).unwrap(), Message::Update(u));
}

#[test]
fn ipv6_end_of_rib_and_other_families_are_taken() {
    // IPv6 unicast End-of-RIB: an UPDATE holding only an empty MP_UNREACH_NLRI.
    let eor = msg(29, 2, &[0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1]);
    let end = Update {
        attributes: vec![Attribute::MpUnreach6(vec![])],
        ..Update::default()
    };
    assert_eq!(Message::decode(&eor, true).unwrap(), Message::Update(end));
    // IPv4 unicast End-of-RIB sent as MP_UNREACH_NLRI, and an MP_REACH_NLRI of AFI 1 SAFI 128
    // (VPN): framed correctly, of no use here, dropped.
    let other = [
        &[0x80, 15, 3, 0, 1, 1][..],
        &[
            0x80, 14, 19, 0, 1, 128, 12, 0, 0, 0, 0, 0, 0, 0, 0, 10, 77, 0, 1, 0, 0, 0,
        ],
        &ORIGIN,
        &PATH,
    ]
    .concat();
    let mut body = vec![0, 0, 0, other.len() as u8];
    body.extend_from_slice(&other);
    let Message::Update(u) = Message::decode(&msg(19 + body.len() as u16, 2, &body), true).unwrap()
    else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.attributes.len(), 2, "{u:?}");
    assert!(u.nlri.is_empty() && u.withdrawn.is_empty());
}

#[test]
fn a_peers_ipv6_route_with_a_link_local_next_hop() {
    // As a router sends it (RFC 2545 section 3): global and link-local next hops, a /48 whose
    // last significant byte carries a stray bit past the length, and a MED.
    let link_local = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut a = vec![0x80, 14, 44, 0, 2, 1, 32];
    a.extend_from_slice(&OWN6);
    a.extend_from_slice(&link_local);
    a.extend_from_slice(&[0, 47, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01]); // 2001:db8::/47 + 1 bit
    a.extend_from_slice(&[&ORIGIN[..], &PATH, &[0x80, 4, 4, 0, 0, 0, 7]].concat());
    let mut body = vec![0, 0, 0, a.len() as u8];
    body.extend_from_slice(&a);
    let wire = msg(19 + body.len() as u16, 2, &body);
    let Message::Update(u) = Message::decode(&wire, true).unwrap() else {
        panic!("not an UPDATE")
    };
    let mut db8 = [0u8; 16];
    db8[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    assert_eq!(
        u.attributes[0],
        Attribute::MpReach6 {
            next_hop: Ipv6Addr::from(OWN6),
            link_local: Some(Ipv6Addr::from(link_local)),
            nlri: vec![prefix6(db8, 47)],
        }
    );
    assert_eq!(u.attributes[3], Attribute::Med(7));
    // Written back, the stray bit is gone and nothing else changes.
    let again = Message::Update(u).encode(true);
    assert_eq!(again.len(), wire.len());
    let at = HEADER_LEN + 4 + 3 + 4 + 32 + 1;
    assert_eq!(
        &again[at..at + 7],
        &[47, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00]
    );
}

/// An UPDATE whose path attributes are `attrs` and which has no IPv4 NLRI.
fn update_of(attrs: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    msg(19 + body.len() as u16, 2, &body)
}

#[test]
fn mp_nlri_errors() {
    let good = mp_reach_attributes();
    assert!(Message::decode(&update_of(&good), true).is_ok());
    let reach = &good[..41];
    let rest = &good[41..];
    // Marked transitive: an attribute flags error with the whole attribute.
    let mut flagged = good.clone();
    flagged[0] = 0xc0;
    assert_eq!(err(&update_of(&flagged)), (3, 4, flagged[..41].to_vec()));
    // A 4-byte next hop for IPv6, and a next hop length running past the attribute.
    for hop_len in [4, 40] {
        let mut bad = good.clone();
        bad[6] = hop_len;
        assert_eq!(err(&update_of(&bad)), (3, 9, bad[..41].to_vec()));
    }
    // Next hop ::.
    let mut zero = good.clone();
    zero[7..23].copy_from_slice(&[0; 16]);
    assert_eq!(err(&update_of(&zero)), (3, 8, zero[..41].to_vec()));
    // A /129, and a /128 cut short.
    let mut long = good.clone();
    long[24] = 129;
    assert_eq!(err(&update_of(&long)), (3, 10, vec![]));
    let mut short = reach[..40].to_vec();
    short[2] = 37;
    assert_eq!(
        err(&update_of(&[&short[..], rest].concat())),
        (3, 10, vec![])
    );
    // Routes in MP_REACH_NLRI without ORIGIN, or without AS_PATH (NEXT_HOP is not needed).
    assert_eq!(
        err(&update_of(&[reach, &good[45..]].concat())),
        (3, 3, vec![1])
    );
    assert_eq!(err(&update_of(&good[..45])), (3, 3, vec![2]));
    // MP_UNREACH_NLRI too short for its AFI and SAFI.
    assert_eq!(
        err(&update_of(&[0x80, 15, 2, 0, 2])),
        (3, 9, vec![0x80, 15, 2, 0, 2])
    );
}
