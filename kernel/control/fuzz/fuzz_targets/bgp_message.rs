//! Arbitrary bytes as BGP messages. The first byte picks the AS_PATH width and how the rest is
//! cut into reads. Decoding must never panic; what decodes must encode and decode back to the
//! same message (an OPEN at least back to an OPEN); and the same bytes fed to a session that
//! has sent its OPEN must never panic and only ever answer with messages that decode.
#![no_main]

use control::bgp::message::{frame, Message};
use control::bgp::session::Params;
use control::bgp::{Action, Dir, Event, Routes, Session};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let four_octet = mode & 1 == 1;
    // Every whole message in the input, decoded alone.
    let mut rest = data;
    while let Ok(Some(len)) = frame(rest) {
        if let Ok(message) = Message::decode(&rest[..len], four_octet) {
            let again = Message::decode(&message.encode(four_octet), four_octet)
                .expect("an encoded message decodes");
            match (&message, &again) {
                (Message::Open(_), Message::Open(_)) => {}
                _ => assert_eq!(message, again),
            }
        }
        rest = &rest[len..];
    }
    // The whole input as a stream on an open connection, in reads of 1..=128 bytes.
    let mut session = Session::new(Params {
        local_asn: 65010,
        router_id: Ipv4Addr::new(10, 77, 0, 2),
        hold_time: 9,
        next_hop: Ipv4Addr::new(10, 77, 0, 2),
        next_hop6: Some(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2)),
        peer: Ipv4Addr::new(10, 77, 0, 1),
        peer_asn: 65000,
    });
    let desired: Routes = [
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100)),
    ]
    .into();
    let mut out = Vec::new();
    session.step(0, Event::Tick, &desired, &mut out);
    session.step(0, Event::Connected, &desired, &mut out);
    let piece = usize::from(mode >> 1) + 1;
    for (i, chunk) in data.chunks(piece).enumerate() {
        session.step(i as u64, Event::Received(Dir::Outgoing, chunk), &desired, &mut out);
    }
    session.step(1_000_000, Event::Tick, &desired, &mut out);
    for action in out {
        if let Action::Send(_, bytes) = action {
            assert!(Message::decode(&bytes, true).is_ok() || Message::decode(&bytes, false).is_ok());
        }
    }
});
