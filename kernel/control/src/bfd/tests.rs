//! BFD sessions against each other and against literal packets.

use super::*;

/// Drive `a` and `b` for `until_us`, delivering every packet at once; returns the packets
/// each sent (time, packet).
fn run(a: &mut Session, b: &mut Session, from_us: u64, until_us: u64) -> [Vec<(u64, Packet)>; 2] {
    let mut sent = [Vec::new(), Vec::new()];
    let mut now = from_us;
    while now <= until_us {
        if let Some(p) = a.poll(now) {
            sent[0].push((now, p));
            b.receive(&p, TTL, now);
        }
        if let Some(p) = b.poll(now) {
            sent[1].push((now, p));
            a.receive(&p, TTL, now);
        }
        now += 1_000;
    }
    sent
}

#[test]
fn a_packet_on_the_wire_is_rfc_5880_section_4_1() {
    let p = Packet {
        diag: Diag::Expired as u8,
        state: State::Up,
        poll: true,
        fin: false,
        detect_mult: 3,
        my_disc: 0x0102_0304,
        your_disc: 0x0a0b_0c0d,
        desired_min_tx: 100_000,
        required_min_rx: 300_000,
    };
    let wire = p.write();
    assert_eq!(
        wire,
        [
            0x21, // version 1, diag 1
            0xe0, // state Up (3 << 6), Poll
            3, 24, // multiplier, length
            1, 2, 3, 4, // my discriminator
            0x0a, 0x0b, 0x0c, 0x0d, // your discriminator
            0x00, 0x01, 0x86, 0xa0, // desired min TX 100 000 us
            0x00, 0x04, 0x93, 0xe0, // required min RX 300 000 us
            0, 0, 0, 0, // required min echo RX
        ]
    );
    assert_eq!(Packet::parse(&wire), Ok(p));
}

#[test]
fn packets_failing_the_reception_checks_are_refused_by_reason() {
    let good = Packet {
        diag: 0,
        state: State::Up,
        poll: false,
        fin: false,
        detect_mult: 3,
        my_disc: 7,
        your_disc: 9,
        desired_min_tx: 100_000,
        required_min_rx: 100_000,
    }
    .write();
    let edit = |f: fn(&mut [u8; LEN])| {
        let mut b = good;
        f(&mut b);
        Packet::parse(&b)
    };
    assert_eq!(Packet::parse(&good[..23]), Err(Refused::Length));
    assert_eq!(edit(|b| b[3] = 23), Err(Refused::Length));
    assert_eq!(edit(|b| b[3] = 48), Err(Refused::Length));
    assert_eq!(edit(|b| b[0] = 0x01), Err(Refused::Version));
    assert_eq!(edit(|b| b[1] |= 0x04), Err(Refused::Authenticated));
    assert_eq!(edit(|b| b[2] = 0), Err(Refused::Field));
    assert_eq!(edit(|b| b[1] |= 0x01), Err(Refused::Field));
    assert_eq!(edit(|b| b[4..8].fill(0)), Err(Refused::Field));
    assert_eq!(edit(|b| b[8..12].fill(0)), Err(Refused::Discriminator));
    // Your Discriminator 0 is fine from a neighbour that is down.
    let down = edit(|b| {
        b[8..12].fill(0);
        b[1] = 1 << 6;
    })
    .unwrap();
    assert_eq!((down.state, down.your_disc), (State::Down, 0));
    // A longer datagram than the length field is fine (the rest is ignored).
    let mut long = good.to_vec();
    long.extend_from_slice(&[0; 8]);
    assert!(Packet::parse(&long).is_ok());
}

#[test]
fn two_sessions_come_up_by_the_three_way_handshake_then_speed_up_by_a_poll_sequence() {
    let mut a = Session::new(11, 0);
    let mut b = Session::new(22, 0);
    let sent = run(&mut a, &mut b, 0, 3_000_000);
    assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    // The first packets are Down, then Init, then Up, at the slow rate while not up.
    let states: Vec<State> = sent[0].iter().map(|(_, p)| p.state).collect();
    assert_eq!(states[0], State::Down);
    assert!(states.contains(&State::Up));
    let first_up = sent[0]
        .iter()
        .position(|(_, p)| p.state == State::Up)
        .unwrap();
    for (_, p) in &sent[0][..first_up] {
        assert_eq!(p.desired_min_tx, SLOW_US, "{p:?}");
    }
    // Once up: a Poll with the fast interval, answered with Final, then no more Polls.
    let (_, poll) = sent[0][first_up];
    assert!(poll.poll && poll.desired_min_tx == INTERVAL_US, "{poll:?}");
    assert!(sent[1].iter().any(|(_, p)| p.fin));
    assert!(!sent[0].last().unwrap().1.poll);
    // And the fast rate: packets 75 to 100 % of 100 ms apart.
    let times: Vec<u64> = sent[0][first_up + 2..].iter().map(|(t, _)| *t).collect();
    assert!(times.len() > 10, "{times:?}");
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!((75_000..=101_000).contains(&gap), "gap {gap} us");
    }
    assert_eq!(sent[0].last().unwrap().1.your_disc, 22);
}

#[test]
fn a_quiet_neighbour_takes_the_session_down_after_the_detection_time() {
    let mut a = Session::new(11, 0);
    let mut b = Session::new(22, 0);
    run(&mut a, &mut b, 0, 3_000_000);
    assert_eq!(a.state(), State::Up);
    // b dies: a hears nothing more; the detection time is 3 x 100 ms.
    let mut now = 3_000_000;
    while a.state() == State::Up {
        now += 1_000;
        let _ = a.poll(now);
        assert!(now < 3_000_000 + 400_000, "still up at {now}");
    }
    assert!(
        now >= 3_000_000 + 300_000 - 101_000,
        "down too early at {now}"
    );
    assert_eq!((a.state(), a.diag()), (State::Down, Diag::Expired));
    // Down again, it goes back to the slow rate and forgets the neighbour's discriminator.
    let p = a.poll(now + SLOW_US as u64).unwrap();
    assert_eq!(
        (p.state, p.your_disc, p.desired_min_tx),
        (State::Down, 0, SLOW_US)
    );
}

#[test]
fn a_neighbour_going_down_or_admin_down_takes_the_session_down() {
    for neighbour in [State::Down, State::AdminDown] {
        let mut a = Session::new(11, 0);
        let mut b = Session::new(22, 0);
        run(&mut a, &mut b, 0, 3_000_000);
        let p = Packet {
            diag: 0,
            state: neighbour,
            poll: false,
            fin: false,
            detect_mult: 3,
            my_disc: 22,
            your_disc: 11,
            desired_min_tx: SLOW_US,
            required_min_rx: INTERVAL_US,
        };
        assert_eq!(a.receive(&p, TTL, 3_000_001), Received::Taken(State::Down));
        assert_eq!(a.diag(), Diag::NeighborDown);
    }
}

#[test]
fn packets_not_from_the_link_or_for_another_session_change_nothing() {
    let mut a = Session::new(11, 0);
    let mut b = Session::new(22, 0);
    run(&mut a, &mut b, 0, 3_000_000);
    let mut p = b
        .poll(3_100_000)
        .unwrap_or_else(|| b.poll(4_000_000).unwrap());
    p.state = State::AdminDown;
    assert_eq!(
        a.receive(&p, 254, 3_100_000),
        Received::Refused(Refused::Ttl)
    );
    p.your_disc = 12;
    assert_eq!(
        a.receive(&p, TTL, 3_100_000),
        Received::Refused(Refused::Discriminator)
    );
    assert_eq!(a.state(), State::Up);
}

#[test]
fn admin_down_is_told_to_the_neighbour_and_ignores_it_until_lifted() {
    let mut a = Session::new(11, 0);
    let mut b = Session::new(22, 0);
    run(&mut a, &mut b, 0, 3_000_000);
    a.set_admin_down(true, 3_000_000);
    let p = a.poll(3_000_000).unwrap();
    assert_eq!((p.state, p.diag), (State::AdminDown, Diag::AdminDown as u8));
    b.receive(&p, TTL, 3_000_000);
    assert_eq!((b.state(), b.diag()), (State::Down, Diag::NeighborDown));
    let q = b.poll(3_000_000 + SLOW_US as u64).unwrap();
    assert_eq!(a.receive(&q, TTL, 3_000_001), Received::Ignored);
    a.set_admin_down(false, 4_000_000);
    run(&mut a, &mut b, 4_000_000, 8_000_000);
    assert_eq!((a.state(), b.state()), (State::Up, State::Up));
}

#[test]
fn a_neighbour_that_wants_nothing_gets_nothing_but_finals() {
    let mut a = Session::new(11, 0);
    let quiet = Packet {
        diag: 0,
        state: State::Down,
        poll: true,
        fin: false,
        detect_mult: 3,
        my_disc: 22,
        your_disc: 0,
        desired_min_tx: SLOW_US,
        required_min_rx: 0,
    };
    a.receive(&quiet, TTL, 0);
    let p = a.poll(0).expect("the Final is owed");
    assert!(p.fin && !p.poll);
    // Until the neighbour's detection time (3 x its 1 s) ends the session.
    for t in 1..29 {
        assert_eq!(a.poll(t * 100_000), None);
    }
}
