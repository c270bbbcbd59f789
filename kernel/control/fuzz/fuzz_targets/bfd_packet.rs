//! Arbitrary bytes as BFD control packets to a session. Parsing must never panic; what parses
//! must write back to the same packet; and a session fed the packets (at times moving forward,
//! with TTL 255 or not as the first byte says) must never panic and only ever send packets that
//! parse (a packet of its own that the checks refuse would be one no neighbour takes).
#![no_main]

use control::bfd::{Packet, Session, LEN, TTL};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut session = Session::new(0x5eed, 0);
    let mut now = 0u64;
    for (i, chunk) in data.chunks(LEN).enumerate() {
        now += u64::from(chunk[0]) * 10_000;
        if let Ok(p) = Packet::parse(chunk) {
            assert_eq!(Packet::parse(&p.write()), Ok(p));
            let ttl = if mode >> (i % 8) & 1 == 1 { TTL } else { 64 };
            let _ = session.receive(&p, ttl, now);
        }
        if let Some(out) = session.poll(now) {
            assert!(Packet::parse(&out.write()).is_ok(), "{out:?}");
        }
    }
});
