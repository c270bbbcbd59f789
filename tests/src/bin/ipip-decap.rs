//! `ipip-decap TUN`: decapsulates IP-in-IP and IPv6-in-IPv6 in user space, for a dsr-l3
//! backend on a kernel without the `ipip` and `ip6_tunnel` modules.
//!
//! A raw IPv4 socket for protocol 4 receives every IP-in-IP packet addressed to this host (outer
//! header included; while it exists the kernel sends no protocol-unreachable). The outer header
//! is checked and stripped and the inner packet is written to the TUN device `TUN`, which holds
//! the VIP, so the host's own TCP/IP stack receives it as if from a tunnel and answers it
//! directly (by its normal route, not back through here). A raw IPv6 socket for next header 41
//! does the same for ip6ip6: there the kernel has already taken off the outer 40-byte header
//! (and any extension headers), as it does for every IPv6 raw socket, and the payload is the
//! inner packet. One TUN carries both families (without the packet-information prefix the
//! kernel reads the family from the version nibble). Anything that is not a well-formed
//! tunnelled packet is counted and skipped. Runs until killed; prints each family's counters to
//! stderr every 1000 packets.

use ::tests::rawio::{RawIpSocket, TunTap};
use std::process::ExitCode;

const IPPROTO_IPIP: u8 = 4;
/// IPv6-in-IPv6 (RFC 2473), the next header of the balancer's ip6ip6.
const IPPROTO_IPV6: u8 = 41;
/// Fixed IPv6 header length.
const IPV6_HEADER: usize = 40;

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
    InnerTooShort6,
    InnerNotIpv6,
    InnerBadLength6,
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

/// The inner packet of an ip6ip6 payload (what an IPv6 raw socket for next header 41 receives:
/// the outer header is gone) if it is a whole IPv6 packet; trailing bytes are cut off.
fn inner_packet6(payload: &[u8]) -> Result<&[u8], Skip> {
    if payload.len() < IPV6_HEADER {
        return Err(Skip::InnerTooShort6);
    }
    if payload[0] >> 4 != 6 {
        return Err(Skip::InnerNotIpv6);
    }
    let total = IPV6_HEADER + usize::from(u16::from_be_bytes([payload[4], payload[5]]));
    // A jumbogram (length 0 plus a hop-by-hop option) cannot arrive over a 1500-byte link.
    if total > payload.len() {
        return Err(Skip::InnerBadLength6);
    }
    Ok(&payload[..total])
}

/// One family's receive loop: every packet `raw` receives that `inner` accepts goes to `tun`.
/// Returns only when receiving fails.
fn decapsulate(
    family: &str,
    raw: &RawIpSocket,
    tun: &TunTap,
    inner: fn(&[u8]) -> Result<&[u8], Skip>,
) -> std::io::Error {
    let mut buf = vec![0u8; 65536];
    let (mut passed, mut skipped) = (0u64, 0u64);
    loop {
        let n = match raw.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return e,
        };
        match inner(&buf[..n]) {
            Ok(packet) => match tun.send(packet) {
                Ok(_) => passed += 1,
                Err(e) => {
                    skipped += 1;
                    eprintln!("ipip-decap: {family}: writing to the TUN failed: {e}");
                }
            },
            Err(why) => {
                skipped += 1;
                eprintln!("ipip-decap: {family}: skipped a {n}-byte packet: {why:?}");
            }
        }
        if (passed + skipped) % 1000 == 0 {
            eprintln!("ipip-decap: {family}: {passed} packets passed, {skipped} skipped");
        }
    }
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
    let raw4 = match RawIpSocket::open(IPPROTO_IPIP) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipip-decap: cannot open a raw socket for IP protocol 4: {e}");
            return ExitCode::FAILURE;
        }
    };
    let raw6 = match RawIpSocket::open6(IPPROTO_IPV6) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipip-decap: cannot open a raw IPv6 socket for next header 41: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("ipip-decap: ready, decapsulating IPIP and ip6ip6 into {tun_name}");
    let tun = std::sync::Arc::new(tun);
    let tun6 = std::sync::Arc::clone(&tun);
    // Either loop ends only when receiving fails; that ends the whole program, as it did when
    // there was one loop.
    std::thread::spawn(move || {
        let e = decapsulate("ip6ip6", &raw6, &tun6, inner_packet6);
        eprintln!("ipip-decap: ip6ip6: receive failed: {e}");
        std::process::exit(1)
    });
    let e = decapsulate("IPIP", &raw4, &tun, inner_packet);
    eprintln!("ipip-decap: IPIP: receive failed: {e}");
    ExitCode::FAILURE
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

    fn inner6() -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 4, 6, 64];
        p.extend_from_slice(
            &"fd00:77::10"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p.extend_from_slice(
            &"fd00:77::101"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p.extend_from_slice(&[1, 2, 3, 4]);
        p
    }

    #[test]
    fn passes_the_inner_ipv6_packet_and_cuts_trailing_bytes() {
        let p = inner6();
        assert_eq!(inner_packet6(&p), Ok(&p[..]));
        let mut longer = p.clone();
        longer.extend_from_slice(&[0; 6]);
        assert_eq!(inner_packet6(&longer), Ok(&p[..]));
    }

    #[test]
    fn refuses_ipv6_junk() {
        let good = inner6();
        assert_eq!(inner_packet6(&good[..39]), Err(Skip::InnerTooShort6));
        let mut p = good.clone();
        p[0] = 0x45;
        assert_eq!(inner_packet6(&p), Err(Skip::InnerNotIpv6));
        assert_eq!(inner_packet6(&good[..42]), Err(Skip::InnerBadLength6));
    }
}
