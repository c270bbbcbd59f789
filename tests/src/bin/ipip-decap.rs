//! `ipip-decap TUN`: decapsulates IP-in-IP in user space, for a dsr-l3 backend on a kernel
//! without the `ipip` module.
//!
//! A raw socket for IP protocol 4 receives every encapsulated packet addressed to this host
//! (outer header included; while it exists the kernel sends no protocol-unreachable). The outer
//! header is checked and stripped and the inner packet is written to the TUN device `TUN`, which
//! holds the VIP, so the host's own TCP/IP stack receives it as if from a tunnel and answers it
//! directly (by its normal route, not back through here). Anything that is not a well-formed
//! IPv4-in-IPv4 packet is counted and skipped. Runs until killed; prints its counters to stderr
//! every 1000 packets.

use ::tests::rawio::{RawIpSocket, TunTap};
use std::process::ExitCode;

const IPPROTO_IPIP: u8 = 4;

/// Why a received packet was not passed on.
#[derive(Debug, PartialEq, Eq)]
enum Skip {
    OuterTooShort,
    OuterNotIpv4,
    OuterBadIhl,
    OuterBadLength,
    OuterNotIpip,
    OuterFragment,
    InnerNotIpv4,
}

/// The inner packet of the IPv4 packet `packet` if it is a whole, unfragmented IP-in-IP packet
/// whose payload looks like IPv4 (the receiving stack checks the rest, as it would for a tunnel).
fn inner_packet(packet: &[u8]) -> Result<&[u8], Skip> {
    if packet.len() < 20 {
        return Err(Skip::OuterTooShort);
    }
    if packet[0] >> 4 != 4 {
        return Err(Skip::OuterNotIpv4);
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < 20 || ihl > packet.len() {
        return Err(Skip::OuterBadIhl);
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    // The kernel hands raw sockets reassembled packets; the length must still be coherent.
    if total < ihl || total > packet.len() {
        return Err(Skip::OuterBadLength);
    }
    if packet[9] != IPPROTO_IPIP {
        return Err(Skip::OuterNotIpip);
    }
    let frag = u16::from_be_bytes([packet[6], packet[7]]);
    if frag & 0x3fff != 0 {
        return Err(Skip::OuterFragment);
    }
    let inner = &packet[ihl..total];
    if inner.len() < 20 || inner[0] >> 4 != 4 {
        return Err(Skip::InnerNotIpv4);
    }
    Ok(inner)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, tun_name] = args.as_slice() else {
        eprintln!("usage: ipip-decap TUN");
        return ExitCode::from(2);
    };
    let tun = match TunTap::tun(tun_name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ipip-decap: cannot attach to TUN device {tun_name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let raw = match RawIpSocket::open(IPPROTO_IPIP) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipip-decap: cannot open a raw socket for IP protocol 4: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("ipip-decap: ready, decapsulating into {tun_name}");
    let mut buf = vec![0u8; 65536];
    let (mut passed, mut skipped) = (0u64, 0u64);
    loop {
        let n = match raw.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("ipip-decap: receive failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        match inner_packet(&buf[..n]) {
            Ok(inner) => match tun.send(inner) {
                Ok(_) => passed += 1,
                Err(e) => {
                    skipped += 1;
                    eprintln!("ipip-decap: writing to {tun_name} failed: {e}");
                }
            },
            Err(why) => {
                skipped += 1;
                eprintln!("ipip-decap: skipped a {n}-byte packet: {why:?}");
            }
        }
        if (passed + skipped) % 1000 == 0 {
            eprintln!("ipip-decap: {passed} packets passed, {skipped} skipped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::tests::rawio::ipv4_header;
    use std::net::Ipv4Addr;

    fn encapsulated(inner: &[u8]) -> Vec<u8> {
        let outer = ipv4_header(
            Ipv4Addr::new(10, 77, 0, 2),
            Ipv4Addr::new(10, 88, 0, 31),
            IPPROTO_IPIP,
            inner.len(),
            64,
        );
        [&outer[..], inner].concat()
    }

    fn inner() -> Vec<u8> {
        let mut p = ipv4_header(
            Ipv4Addr::new(10, 77, 0, 10),
            Ipv4Addr::new(10, 77, 0, 101),
            6,
            4,
            64,
        )
        .to_vec();
        p.extend_from_slice(&[1, 2, 3, 4]);
        p
    }

    #[test]
    fn strips_the_outer_header() {
        let p = encapsulated(&inner());
        assert_eq!(inner_packet(&p), Ok(&inner()[..]));
    }

    #[test]
    fn ignores_trailing_bytes_beyond_the_total_length() {
        let mut p = encapsulated(&inner());
        p.extend_from_slice(&[0; 6]);
        assert_eq!(inner_packet(&p), Ok(&inner()[..]));
    }

    #[test]
    fn refuses_junk() {
        let good = encapsulated(&inner());
        assert_eq!(inner_packet(&good[..19]), Err(Skip::OuterTooShort));
        let mut p = good.clone();
        p[0] = 0x65;
        assert_eq!(inner_packet(&p), Err(Skip::OuterNotIpv4));
        let mut p = good.clone();
        p[0] = 0x44;
        assert_eq!(inner_packet(&p), Err(Skip::OuterBadIhl));
        let mut p = good.clone();
        p[0] = 0x4f;
        assert_eq!(inner_packet(&p), Err(Skip::OuterBadIhl));
        let mut p = good.clone();
        p[2..4].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(inner_packet(&p), Err(Skip::OuterBadLength));
        let mut p = good.clone();
        p[9] = 41;
        assert_eq!(inner_packet(&p), Err(Skip::OuterNotIpip));
        let mut p = good.clone();
        p[6] = 0x20;
        assert_eq!(inner_packet(&p), Err(Skip::OuterFragment));
        let mut p = good.clone();
        p[20] = 0x60;
        assert_eq!(inner_packet(&p), Err(Skip::InnerNotIpv4));
        assert_eq!(inner_packet(&good[..30]), Err(Skip::OuterBadLength));
    }
}
