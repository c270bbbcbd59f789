//! Arbitrary bytes as received VRRP frames. The first byte picks the router's version, priority
//! and preemption. Parsing a frame and its message must never panic; a message that parses must
//! encode back to one that parses the same; and every frame fed to a router (as a backup and as
//! a master) must never panic, and whatever it answers with must encode to an advertisement of
//! its own group that parses.
#![no_main]

use control::config::{Vrrp, VrrpVersion};
use control::vrrp::{received, Advert, ChecksumForm, Router, GROUP};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;

const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let config = Vrrp {
        vrid: 51,
        priority: (mode >> 2).max(1),
        advert_ms: 1000,
        preempt: mode & 2 != 0,
        version: if mode & 1 == 0 { VrrpVersion::V3 } else { VrrpVersion::V2 },
    };
    if let Some(r) = received(data) {
        if let Ok((advert, form)) = Advert::parse(r.msg, r.src, r.dst) {
            let again = advert.encode(r.src, r.dst, form);
            let (back, _) = Advert::parse(&again, r.src, r.dst).expect("an encoded advert parses");
            assert_eq!(back.vrid, advert.vrid);
            assert_eq!(back.priority, advert.priority);
            assert_eq!(back.addresses, advert.addresses);
        }
    }
    let mut backup = Router::new(&config, OWN, &[Ipv4Addr::new(10, 77, 0, 100)]);
    backup.start(0);
    let mut master = backup.clone();
    master.poll(10_000);
    for (t, router) in [(1u64, &mut backup), (10_001, &mut master)] {
        let mut outs = Vec::new();
        // The whole input as one message, and each 20-byte piece of it.
        for (i, msg) in core::iter::once(data).chain(data.chunks(20)).enumerate() {
            let src = Ipv4Addr::new(10, 77, 0, (i % 250) as u8 + 3);
            outs.push(router.receive(t + i as u64, src, GROUP, 255, msg));
        }
        outs.push(router.poll(t + 1_000_000));
        for out in outs {
            if let Some(advert) = out.send {
                let msg = advert.encode(OWN, GROUP, ChecksumForm::PseudoHeader);
                let (back, _) = Advert::parse(&msg, OWN, GROUP).expect("our advert parses");
                assert_eq!(back.vrid, 51);
            }
        }
    }
});
