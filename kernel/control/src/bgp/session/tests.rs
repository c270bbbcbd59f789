//! The session state machine driven through whole conversations: opens both ways, timers,
//! backoff, errors with their NOTIFICATIONs, collisions and the routes it sends.

use super::*;
use crate::bgp::message::Message;

const PEER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const VIP2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 101);

fn params(local_asn: u32, peer_asn: u32) -> Params {
    Params {
        local_asn,
        router_id: OWN,
        hold_time: 9,
        next_hop: OWN,
        next_hop6: None,
        peer: PEER,
        peer_asn,
    }
}

/// A session and the routes it is asked to announce.
struct Harness {
    s: Session,
    desired: Routes,
}

impl Harness {
    fn new(p: Params) -> Harness {
        Harness {
            s: Session::new(p),
            desired: Routes::new(),
        }
    }
    fn step(&mut self, now: u64, event: Event<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        self.s.step(now, event, &self.desired, &mut out);
        out
    }
    fn recv(&mut self, now: u64, dir: Dir, m: &Message) -> Vec<Action> {
        self.step(now, Event::Received(dir, &m.encode(true)))
    }
    /// Dial and exchange OPEN and KEEPALIVE with a peer proposing `hold`.
    fn establish(&mut self, now: u64, hold: u16) -> Vec<Action> {
        assert_eq!(self.step(now, Event::Tick), vec![Action::Connect]);
        assert_eq!(self.s.state(), State::Connect);
        let out = self.step(now, Event::Connected);
        assert!(matches!(&out[..], [Action::Send(Dir::Outgoing, _)]));
        assert_eq!(self.s.state(), State::OpenSent);
        let out = self.recv(now, Dir::Outgoing, &peer_open(65000, hold));
        assert_eq!(out, vec![send(&Message::Keepalive)]);
        assert_eq!(self.s.state(), State::OpenConfirm);
        let out = self.recv(now, Dir::Outgoing, &Message::Keepalive);
        assert_eq!(self.s.state(), State::Established);
        out
    }
}

fn peer_open(asn: u32, hold_time: u16) -> Message {
    Message::Open(Open {
        asn,
        hold_time,
        router_id: PEER,
        four_octet_as: true,
        ipv4_unicast: true,
        ipv6_unicast: false,
    })
}

fn send(m: &Message) -> Action {
    Action::Send(Dir::Outgoing, m.encode(true))
}

fn notification(code: u8, subcode: u8, data: &[u8]) -> Action {
    send(&Message::Notification(Notification::new(
        code, subcode, data,
    )))
}

fn decoded(action: &Action) -> Message {
    let Action::Send(_, bytes) = action else {
        panic!("not a send: {action:?}")
    };
    Message::decode(bytes, true).unwrap()
}

#[test]
fn active_open_sends_our_open_and_announces_once_established() {
    let mut h = Harness::new(params(65010, 65000));
    h.desired.insert(VIP.into());
    h.step(0, Event::Tick);
    let out = h.step(0, Event::Connected);
    // OPEN: version 4, AS 65010, hold 9, id 10.77.0.2, multiprotocol IPv4 unicast, 4-octet AS.
    let mut open = vec![0xff; 16];
    open.extend_from_slice(&[0, 43, 1, 4, 0xfd, 0xf2, 0, 9, 10, 77, 0, 2, 14, 2, 12]);
    open.extend_from_slice(&[1, 4, 0, 1, 0, 1, 65, 4, 0, 0, 0xfd, 0xf2]);
    assert_eq!(out, vec![Action::Send(Dir::Outgoing, open)]);
    h.recv(5, Dir::Outgoing, &peer_open(65000, 90));
    let out = h.recv(6, Dir::Outgoing, &Message::Keepalive);
    assert_eq!(h.s.established_since(), Some(6));
    let Message::Update(u) = decoded(&out[0]) else {
        panic!("{out:?}")
    };
    assert_eq!(
        u.attributes,
        vec![
            Attribute::Origin(ORIGIN_IGP),
            Attribute::AsPath(vec![Segment {
                kind: AS_SEQUENCE,
                asns: vec![65010]
            }]),
            Attribute::NextHop(OWN),
        ]
    );
    assert_eq!(
        u.nlri,
        vec![Prefix {
            address: VIP,
            len: 32
        }]
    );
    assert!(u.withdrawn.is_empty());
    assert_eq!(h.s.announced(), &h.desired);
    // Nothing more while nothing changes.
    assert!(h.step(7, Event::Tick).is_empty());
}

#[test]
fn routes_follow_the_desired_set() {
    let mut h = Harness::new(params(65010, 65000));
    h.desired = [VIP.into(), VIP2.into()].into();
    assert_eq!(h.establish(0, 90).len(), 1);
    h.desired.remove(&VIP.into());
    let out = h.step(100, Event::Tick);
    let Message::Update(u) = decoded(&out[0]) else {
        panic!("{out:?}")
    };
    assert_eq!(
        u.withdrawn,
        vec![Prefix {
            address: VIP,
            len: 32
        }]
    );
    assert!(u.nlri.is_empty() && u.attributes.is_empty());
    h.desired.clear();
    let out = h.step(200, Event::Tick);
    let Message::Update(u) = decoded(&out[0]) else {
        panic!("{out:?}")
    };
    assert_eq!(
        u.withdrawn,
        vec![Prefix {
            address: VIP2,
            len: 32
        }]
    );
    assert!(h.s.announced().is_empty());
}

#[test]
fn routes_the_peer_announces_are_ignored() {
    let mut h = Harness::new(params(65010, 65000));
    h.establish(0, 90);
    let update = Message::Update(Update {
        withdrawn: vec![],
        attributes: vec![
            Attribute::Origin(ORIGIN_IGP),
            Attribute::AsPath(vec![Segment {
                kind: AS_SEQUENCE,
                asns: vec![65000],
            }]),
            Attribute::NextHop(PEER),
        ],
        nlri: vec![Prefix {
            address: Ipv4Addr::new(0, 0, 0, 0),
            len: 0,
        }],
    });
    assert!(h.recv(10, Dir::Outgoing, &update).is_empty());
    assert_eq!(h.s.state(), State::Established);
    assert!(h.s.announced().is_empty());
}

#[test]
fn keepalives_every_third_of_the_smaller_hold_time_and_the_hold_timer() {
    let mut h = Harness::new(params(65010, 65000));
    h.establish(0, 90); // ours (9) is smaller
    assert!(h.step(2_999, Event::Tick).is_empty());
    assert_eq!(h.step(3_000, Event::Tick), vec![send(&Message::Keepalive)]);
    assert!(h.step(5_000, Event::Tick).is_empty());
    assert_eq!(h.step(6_000, Event::Tick), vec![send(&Message::Keepalive)]);
    // The peer spoke at 5 s: its hold time runs to 14 s.
    h.recv(5_000, Dir::Outgoing, &Message::Keepalive);
    h.step(9_000, Event::Tick);
    h.step(12_000, Event::Tick);
    assert_eq!(h.s.state(), State::Established);
    let out = h.step(14_000, Event::Tick);
    assert_eq!(
        out,
        vec![
            notification(code::HOLD_TIMER_EXPIRED, 0, &[]),
            Action::Close(Dir::Outgoing)
        ]
    );
    assert_eq!(h.s.state(), State::Idle);
    assert_eq!(
        h.s.last_down().unwrap().to_string(),
        "sent NOTIFICATION 4/0 (hold timer expired)"
    );
}

#[test]
fn a_hold_time_of_zero_turns_both_timers_off() {
    let mut h = Harness::new(params(65010, 65000));
    h.establish(0, 0);
    assert!(h.step(1_000_000, Event::Tick).is_empty());
    assert_eq!(h.s.state(), State::Established);
}

#[test]
fn open_sent_waits_four_minutes_for_an_open() {
    let mut h = Harness::new(params(65010, 65000));
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    assert!(h.step(OPEN_HOLD_MS - 1, Event::Tick).is_empty());
    let out = h.step(OPEN_HOLD_MS, Event::Tick);
    assert_eq!(out[0], notification(code::HOLD_TIMER_EXPIRED, 0, &[]));
}

#[test]
fn after_an_error_idle_with_backoff_then_dial_again() {
    let mut h = Harness::new(params(65010, 65000));
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    // The peer says it is AS 65099.
    let out = h.recv(1, Dir::Outgoing, &peer_open(65099, 90));
    assert_eq!(
        out,
        vec![
            notification(code::OPEN, code::BAD_PEER_AS, &[0xfe, 0x4b]),
            Action::Close(Dir::Outgoing)
        ]
    );
    assert_eq!(h.s.state(), State::Idle);
    let mut out = Vec::new();
    assert!(!h.s.accept_incoming(500, &mut out), "Idle refuses");
    assert!(out.is_empty());
    assert!(h.step(1_000, Event::Tick).is_empty());
    assert_eq!(h.step(1_001, Event::Tick), vec![Action::Connect]);
    // Second failure: the peer's NOTIFICATION; two seconds.
    h.step(1_001, Event::Connected);
    let cease = Message::Notification(Notification::new(code::CEASE, 2, &[]));
    assert!(h.recv(1_002, Dir::Outgoing, &cease).is_empty());
    assert_eq!(
        h.s.last_down().unwrap().to_string(),
        "received NOTIFICATION 6/2 (cease)"
    );
    assert!(h.step(3_001, Event::Tick).is_empty());
    assert_eq!(h.step(3_002, Event::Tick), vec![Action::Connect]);
}

#[test]
fn failed_dials_back_off_while_taking_incoming_connections() {
    let mut h = Harness::new(params(65010, 65000));
    let mut now = 0;
    for wait in [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000] {
        assert_eq!(h.step(now, Event::Tick), vec![Action::Connect]);
        h.step(now, Event::Closed(Dir::Outgoing)); // refused
        assert_eq!(h.s.state(), State::Active);
        assert!(h.step(now + wait - 1, Event::Tick).is_empty());
        now += wait;
    }
    // A dial that hangs is abandoned after the connect timeout.
    assert_eq!(h.step(now, Event::Tick), vec![Action::Connect]);
    assert_eq!(
        h.step(now + CONNECT_TIMEOUT_MS, Event::Tick),
        vec![Action::Close(Dir::Outgoing)]
    );
    // Active takes the peer's connection and answers with an OPEN on it.
    let mut out = Vec::new();
    assert!(h.s.accept_incoming(now + CONNECT_TIMEOUT_MS, &mut out));
    assert!(matches!(&out[..], [Action::Send(Dir::Incoming, _)]));
    assert_eq!(h.s.state(), State::OpenSent);
    // A late Connected for an abandoned dial is closed at once.
    assert_eq!(
        h.step(now + CONNECT_TIMEOUT_MS, Event::Connected),
        vec![Action::Close(Dir::Outgoing)]
    );
}

#[test]
fn a_stable_session_starts_the_backoff_again() {
    let mut h = Harness::new(params(65010, 65000));
    for t in [0, 1_000, 3_000] {
        assert_eq!(h.step(t, Event::Tick), vec![Action::Connect], "{t}");
        h.step(t, Event::Closed(Dir::Outgoing));
    }
    // Next wait would be 4 s; a session up for a minute resets it to 1 s.
    h.step(7_000, Event::Tick);
    h.step(7_000, Event::Connected);
    h.recv(7_000, Dir::Outgoing, &peer_open(65000, 0));
    h.recv(7_000, Dir::Outgoing, &Message::Keepalive);
    h.step(7_000 + STABLE_MS, Event::Closed(Dir::Outgoing));
    let down = 7_000 + STABLE_MS;
    assert!(h.step(down + 999, Event::Tick).is_empty());
    assert_eq!(h.step(down + 1_000, Event::Tick), vec![Action::Connect]);
}

#[test]
fn passive_open_to_established() {
    let mut h = Harness::new(params(65010, 65000));
    let mut out = Vec::new();
    assert!(h.s.accept_incoming(0, &mut out));
    h.desired.insert(VIP.into());
    // A dial is not started while a connection exists.
    let out = h.step(10, Event::Tick);
    assert!(out.is_empty(), "{out:?}");
    let open = peer_open(65000, 90).encode(true);
    let out = h.step(20, Event::Received(Dir::Incoming, &open));
    assert_eq!(
        out,
        vec![Action::Send(Dir::Incoming, Message::Keepalive.encode(true))]
    );
    let out = h.step(
        30,
        Event::Received(Dir::Incoming, &Message::Keepalive.encode(true)),
    );
    assert_eq!(h.s.state(), State::Established);
    assert!(matches!(&out[..], [Action::Send(Dir::Incoming, _)]));
    // Established refuses further connections (RFC 4271 6.8).
    let mut out = Vec::new();
    assert!(!h.s.accept_incoming(40, &mut out));
}

#[test]
fn messages_split_across_reads_and_several_in_one() {
    let mut h = Harness::new(params(65010, 65000));
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    let bytes = [
        peer_open(65000, 90).encode(true),
        Message::Keepalive.encode(true),
    ]
    .concat();
    for chunk in bytes[..40].chunks(7) {
        h.step(1, Event::Received(Dir::Outgoing, chunk));
    }
    assert_eq!(h.s.state(), State::OpenSent);
    h.step(1, Event::Received(Dir::Outgoing, &bytes[40..]));
    assert_eq!(h.s.state(), State::Established);
}

#[test]
fn unexpected_messages_get_fsm_errors() {
    // A KEEPALIVE in OpenSent.
    let mut h = Harness::new(params(65010, 65000));
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    let out = h.recv(1, Dir::Outgoing, &Message::Keepalive);
    assert_eq!(
        out[0],
        notification(code::FSM, code::UNEXPECTED_IN_OPEN_SENT, &[])
    );
    // An UPDATE in OpenConfirm.
    let mut h = Harness::new(params(65010, 65000));
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    h.recv(1, Dir::Outgoing, &peer_open(65000, 90));
    let out = h.recv(2, Dir::Outgoing, &Message::Update(Update::default()));
    assert_eq!(
        out[0],
        notification(code::FSM, code::UNEXPECTED_IN_OPEN_CONFIRM, &[])
    );
    // An OPEN in Established.
    let mut h = Harness::new(params(65010, 65000));
    h.establish(0, 90);
    let out = h.recv(3, Dir::Outgoing, &peer_open(65000, 90));
    assert_eq!(
        out,
        vec![
            notification(code::FSM, code::UNEXPECTED_IN_ESTABLISHED, &[]),
            Action::Close(Dir::Outgoing)
        ]
    );
    assert_eq!(h.s.state(), State::Idle);
}

#[test]
fn malformed_messages_get_the_rfc_error() {
    let mut h = Harness::new(params(65010, 65000));
    h.establish(0, 90);
    let mut bad = Message::Keepalive.encode(true);
    bad[0] = 0;
    let out = h.step(1, Event::Received(Dir::Outgoing, &bad));
    assert_eq!(
        out,
        vec![
            notification(code::HEADER, code::CONNECTION_NOT_SYNCHRONIZED, &[]),
            Action::Close(Dir::Outgoing)
        ]
    );
    // Bytes after the error are not read: the connection is gone.
    assert!(h
        .step(
            2,
            Event::Received(Dir::Outgoing, &Message::Keepalive.encode(true))
        )
        .is_empty());
}

#[test]
fn ibgp_sends_local_pref_and_refuses_our_own_identifier() {
    let mut h = Harness::new(params(65000, 65000));
    h.desired.insert(VIP.into());
    let out = h.establish(0, 90);
    let Message::Update(u) = decoded(&out[0]) else {
        panic!("{out:?}")
    };
    assert!(u.attributes.contains(&Attribute::LocalPref(LOCAL_PREF)));

    let mut h = Harness::new(params(65000, 65000));
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    let mine = Message::Open(Open {
        asn: 65000,
        hold_time: 90,
        router_id: OWN,
        four_octet_as: true,
        ipv4_unicast: true,
        ipv6_unicast: false,
    });
    let out = h.recv(1, Dir::Outgoing, &mine);
    assert_eq!(
        out[0],
        notification(code::OPEN, code::BAD_BGP_IDENTIFIER, &OWN.octets())
    );
}

#[test]
fn a_4_byte_asn_to_a_2_byte_peer_goes_as_as_trans_with_as4_path() {
    let mut h = Harness::new(params(4_200_000_000, 65000));
    h.desired.insert(VIP.into());
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    let old = Message::Open(Open {
        asn: 65000,
        hold_time: 90,
        router_id: PEER,
        four_octet_as: false,
        ipv4_unicast: true,
        ipv6_unicast: false,
    });
    h.recv(1, Dir::Outgoing, &old);
    let out = h.recv(2, Dir::Outgoing, &Message::Keepalive);
    let Action::Send(_, bytes) = &out[0] else {
        panic!("{out:?}")
    };
    let Message::Update(u) = Message::decode(bytes, false).unwrap() else {
        panic!("not an UPDATE")
    };
    let seq = |asn| {
        vec![Segment {
            kind: AS_SEQUENCE,
            asns: vec![asn],
        }]
    };
    assert!(u.attributes.contains(&Attribute::AsPath(seq(23456))));
    assert!(u
        .attributes
        .contains(&Attribute::As4Path(seq(4_200_000_000))));
}

#[test]
fn a_peer_without_ipv4_unicast_is_sent_no_routes() {
    let mut h = Harness::new(params(65010, 65000));
    h.desired.insert(VIP.into());
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    // An OPEN whose only multiprotocol capability is IPv6 unicast (AFI 2, SAFI 1).
    let mut v6 = vec![0xff; 16];
    v6.extend_from_slice(&[0, 37, 1, 4, 0xfd, 0xe8, 0, 90, 10, 77, 0, 1, 8, 2, 6]);
    v6.extend_from_slice(&[1, 4, 0, 2, 0, 1]);
    h.step(1, Event::Received(Dir::Outgoing, &v6));
    assert_eq!(h.s.state(), State::OpenConfirm);
    assert!(h.recv(2, Dir::Outgoing, &Message::Keepalive).is_empty());
    assert_eq!(h.s.state(), State::Established);
}

/// Both sides dial at once; each connection gets an OPEN. `peer_id` decides which stays.
fn collide(peer_id: Ipv4Addr) -> (Harness, Vec<Action>) {
    let mut h = Harness::new(params(65010, 65000));
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    let mut out = Vec::new();
    assert!(h.s.accept_incoming(1, &mut out));
    let open = Message::Open(Open {
        asn: 65000,
        hold_time: 90,
        router_id: peer_id,
        four_octet_as: true,
        ipv4_unicast: true,
        ipv6_unicast: false,
    })
    .encode(true);
    assert_eq!(
        h.step(2, Event::Received(Dir::Outgoing, &open)).len(),
        1,
        "the other is still in OpenSent: both stay"
    );
    let out = h.step(3, Event::Received(Dir::Incoming, &open));
    (h, out)
}

#[test]
fn a_collision_keeps_the_connection_of_the_larger_identifier() {
    let cease = Message::Notification(Notification::new(
        code::CEASE,
        code::CONNECTION_COLLISION_RESOLUTION,
        &[],
    ))
    .encode(true);
    // The peer's identifier is smaller than ours (10.77.0.2): our dial stays.
    let (mut h, out) = collide(PEER);
    assert_eq!(
        out,
        vec![
            Action::Send(Dir::Incoming, Message::Keepalive.encode(true)),
            Action::Send(Dir::Incoming, cease.clone()),
            Action::Close(Dir::Incoming),
        ]
    );
    h.recv(4, Dir::Outgoing, &Message::Keepalive);
    assert_eq!(h.s.state(), State::Established);
    // Larger: the peer's connection stays.
    let (mut h, out) = collide(Ipv4Addr::new(10, 77, 0, 200));
    assert_eq!(
        out,
        vec![
            Action::Send(Dir::Incoming, Message::Keepalive.encode(true)),
            Action::Send(Dir::Outgoing, cease),
            Action::Close(Dir::Outgoing),
        ]
    );
    let ka = Message::Keepalive.encode(true);
    h.step(4, Event::Received(Dir::Incoming, &ka));
    assert_eq!(h.s.state(), State::Established);
    // Losing a collision is not a failure: nothing waits for a backoff.
    assert!(h.s.last_down().is_none());
}

#[test]
fn the_first_connection_established_closes_the_other() {
    let mut h = Harness::new(params(65010, 65000));
    h.step(0, Event::Tick);
    h.step(0, Event::Connected);
    let mut out = Vec::new();
    assert!(h.s.accept_incoming(1, &mut out));
    h.recv(2, Dir::Outgoing, &peer_open(65000, 90));
    let out = h.recv(3, Dir::Outgoing, &Message::Keepalive);
    assert_eq!(out.last(), Some(&Action::Close(Dir::Incoming)));
    assert_eq!(h.s.state(), State::Established);
    // A connection dialling is dropped once the other has an OPEN.
    let mut h = Harness::new(params(65010, 65000));
    h.step(0, Event::Tick);
    let mut out = Vec::new();
    assert!(h.s.accept_incoming(1, &mut out));
    let open = peer_open(65000, 90).encode(true);
    let out = h.step(2, Event::Received(Dir::Incoming, &open));
    assert_eq!(out.last(), Some(&Action::Close(Dir::Outgoing)));
    assert_eq!(h.s.state(), State::OpenConfirm);
}

#[test]
fn stop_ceases_every_connection() {
    let mut h = Harness::new(params(65010, 65000));
    h.desired.insert(VIP.into());
    h.establish(0, 90);
    let mut out = Vec::new();
    h.s.stop(code::PEER_DECONFIGURED, &mut out);
    assert_eq!(
        out,
        vec![
            notification(code::CEASE, code::PEER_DECONFIGURED, &[]),
            Action::Close(Dir::Outgoing)
        ]
    );
    assert!(h.s.announced().is_empty());
}

// IPv6 VIPs: /128s over multiprotocol BGP to peers that negotiated IPv6 unicast.

const OWN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100);

fn params6() -> Params {
    Params {
        next_hop6: Some(OWN6),
        ..params(65010, 65000)
    }
}

/// Establish `h` with a peer that offers IPv6 unicast when `ipv6` is true.
fn establish6(h: &mut Harness, ipv6: bool) -> Vec<Action> {
    h.step(0, Event::Tick);
    let out = h.step(0, Event::Connected);
    let Message::Open(ours) = decoded(&out[0]) else {
        panic!("{out:?}")
    };
    assert_eq!(
        (ours.ipv4_unicast, ours.ipv6_unicast),
        (true, h.s.params().next_hop6.is_some())
    );
    let open = Message::Open(Open {
        ipv6_unicast: ipv6,
        ..open_of(peer_open(65000, 90))
    });
    h.recv(1, Dir::Outgoing, &open);
    let out = h.recv(2, Dir::Outgoing, &Message::Keepalive);
    assert_eq!(h.s.state(), State::Established);
    out
}

fn open_of(m: Message) -> Open {
    let Message::Open(o) = m else {
        panic!("not an OPEN")
    };
    o
}

fn update(action: &Action) -> Update {
    let Message::Update(u) = decoded(action) else {
        panic!("not an UPDATE: {action:?}")
    };
    u
}

fn host6(address: Ipv6Addr) -> Prefix6 {
    Prefix6 { address, len: 128 }
}

#[test]
fn our_open_offers_ipv6_unicast_with_an_ipv6_next_hop() {
    let mut h = Harness::new(params6());
    h.step(0, Event::Tick);
    let out = h.step(0, Event::Connected);
    // As without address6, plus the multiprotocol capability AFI 2, SAFI 1.
    let mut open = vec![0xff; 16];
    open.extend_from_slice(&[0, 49, 1, 4, 0xfd, 0xf2, 0, 9, 10, 77, 0, 2, 20, 2, 18]);
    open.extend_from_slice(&[1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1, 65, 4, 0, 0, 0xfd, 0xf2]);
    assert_eq!(out, vec![Action::Send(Dir::Outgoing, open)]);
}

#[test]
fn ipv6_vips_are_announced_and_withdrawn_as_slash_128s() {
    let mut h = Harness::new(params6());
    h.desired = [VIP.into(), VIP6.into()].into();
    let out = establish6(&mut h, true);
    // The IPv4 UPDATE as before, then the IPv6 one: MP_REACH_NLRI first, no NEXT_HOP.
    assert_eq!(out.len(), 2, "{out:?}");
    let v4 = update(&out[0]);
    assert_eq!(
        v4.nlri,
        vec![Prefix {
            address: VIP,
            len: 32
        }]
    );
    let v6 = update(&out[1]);
    assert!(v6.nlri.is_empty() && v6.withdrawn.is_empty());
    assert_eq!(
        v6.attributes,
        vec![
            Attribute::MpReach6 {
                next_hop: OWN6,
                link_local: None,
                nlri: vec![host6(VIP6)],
            },
            Attribute::Origin(ORIGIN_IGP),
            Attribute::AsPath(vec![Segment {
                kind: AS_SEQUENCE,
                asns: vec![65010]
            }]),
        ]
    );
    assert_eq!(h.s.announced(), &h.desired);

    // The IPv6 VIP's backends went down: one MP_UNREACH_NLRI, the IPv4 route untouched.
    h.desired.remove(&VIP6.into());
    let out = h.step(100, Event::Tick);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        update(&out[0]).attributes,
        vec![Attribute::MpUnreach6(vec![host6(VIP6)])]
    );
    assert_eq!(h.s.announced(), &[IpAddr::from(VIP)].into());
    assert!(h.step(200, Event::Tick).is_empty());

    // Back up, and the session drops: nothing is left announced.
    h.desired.insert(VIP6.into());
    assert_eq!(h.step(300, Event::Tick).len(), 1);
    assert!(h.s.announced().contains(&IpAddr::from(VIP6)));
    h.step(400, Event::Closed(Dir::Outgoing));
    assert!(h.s.announced().is_empty());
}

#[test]
fn ipv6_goes_only_to_peers_that_negotiated_it() {
    // The peer does not offer IPv6 unicast: IPv4 only, and the IPv6 VIP is not announced.
    let mut h = Harness::new(params6());
    h.desired = [VIP.into(), VIP6.into()].into();
    let out = establish6(&mut h, false);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        update(&out[0]).nlri,
        vec![Prefix {
            address: VIP,
            len: 32
        }]
    );
    assert_eq!(h.s.announced(), &[IpAddr::from(VIP)].into());
    // No address6 here: IPv6 is not offered, so a peer offering it gets no IPv6 route either.
    let mut h = Harness::new(params(65010, 65000));
    h.desired = [VIP6.into()].into();
    assert!(establish6(&mut h, true).is_empty());
    assert!(h.s.announced().is_empty());
    assert!(h.step(100, Event::Tick).is_empty());
}

#[test]
fn many_ipv6_vips_are_spread_over_updates_that_fit() {
    let mut h = Harness::new(params6());
    let vips: Vec<Ipv6Addr> = (1..=VIPS_MAX as u16)
        .map(|i| Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 1, i))
        .collect();
    h.desired = vips.iter().map(|a| IpAddr::from(*a)).collect();
    let out = establish6(&mut h, true);
    let mut announced = Vec::new();
    for action in &out {
        let Action::Send(_, bytes) = action else {
            panic!("{action:?}")
        };
        assert!(bytes.len() <= MAX_LEN);
        let Some(Attribute::MpReach6 { nlri, .. }) = update(action).attributes.first().cloned()
        else {
            panic!("{action:?}")
        };
        announced.extend(nlri.iter().map(|p| p.address));
    }
    assert_eq!(out.len(), VIPS_MAX.div_ceil(ROUTES6_PER_UPDATE));
    assert_eq!(announced, vips);
    h.desired.clear();
    let out = h.step(100, Event::Tick);
    assert_eq!(out.len(), VIPS_MAX.div_ceil(ROUTES6_PER_UPDATE));
    let withdrawn: usize = out
        .iter()
        .map(|a| match &update(a).attributes[..] {
            [Attribute::MpUnreach6(w)] => w.len(),
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(withdrawn, VIPS_MAX);
    assert!(h.s.announced().is_empty());
}

#[test]
fn ipv6_routes_and_end_of_rib_from_the_peer_are_ignored() {
    let mut h = Harness::new(params6());
    establish6(&mut h, true);
    let routes = Message::Update(Update {
        attributes: vec![
            Attribute::MpReach6 {
                next_hop: Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1),
                link_local: Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
                nlri: vec![Prefix6 {
                    address: Ipv6Addr::UNSPECIFIED,
                    len: 0,
                }],
            },
            Attribute::Origin(ORIGIN_IGP),
            Attribute::AsPath(vec![]),
        ],
        ..Update::default()
    });
    let end_of_rib = Message::Update(Update {
        attributes: vec![Attribute::MpUnreach6(vec![])],
        ..Update::default()
    });
    assert!(h.recv(10, Dir::Outgoing, &routes).is_empty());
    assert!(h.recv(11, Dir::Outgoing, &end_of_rib).is_empty());
    assert_eq!(h.s.state(), State::Established);
    assert!(h.s.announced().is_empty());
}
