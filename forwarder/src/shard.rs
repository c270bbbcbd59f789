//! Which shard (receive queue, and the core that polls it) a packet belongs to.
//!
//! With one poll loop per receive queue, each loop owns its own flow table, so every packet of a
//! flow must reach the same loop. The NIC decides that, not software: receive-side scaling
//! hashes the packet's addresses and ports with the Toeplitz function (Microsoft's RSS spec,
//! which igb, ixgbe and virtio-net's RSS all implement) and looks the hash's low 7 bits up in a
//! 128-entry indirection table of queue numbers. This module computes the same thing, so a
//! test (or a software fallback) can say where the NIC will send a packet:
//!
//! - TCP and UDP over IPv4 or IPv6 that is not fragmented: the hash over source address,
//!   destination address, source port, destination port (RSS's "4-tuple" types);
//! - IPv4 fragments and other IP protocols (ICMP among them): the hash over the two addresses
//!   only, as the NIC does when it cannot see ports; so a fragment or an ICMP error about a flow
//!   may land on another core than the flow, which then decides by the consistent hash rather
//!   than its flow table;
//! - IPv6 with an extension header first: the two addresses here (a NIC may look past the
//!   headers for the ports, so such a packet can land elsewhere than this says; like a fragment,
//!   it is then placed by the consistent hash);
//! - anything else (ARP): no hash, shard 0, as the NIC sends unhashed frames to queue 0.
//!
//! The hash is not symmetric (a reply would hash elsewhere), which DSR does not need: the
//! balancer only sees the client-to-VIP direction.

/// The RSS key the kernel programs into the NIC: the one Microsoft's RSS spec verifies its
/// examples with, and many drivers' default.
pub const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Entries of the NIC's indirection table (igb's RETA has 128; the hash's low 7 bits index it).
pub const INDIRECTION_ENTRIES: usize = 128;

/// The Toeplitz hash of `input` under `key`: for every input bit that is set, the 32 key bits
/// starting at that bit's position are XORed in. `input` may be at most 36 bytes (IPv6 4-tuple),
/// which the 40-byte key covers.
pub fn toeplitz(key: &[u8; 40], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // The key window: 64 bits whose top 32 are the key bits at the current input bit.
    let mut window = u64::from_be_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    for (i, &byte) in input.iter().enumerate().take(key.len() - 4) {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= (window >> 32) as u32;
            }
            window <<= 1;
        }
        // Refill the window's low byte with the next key byte once 8 bits have shifted out.
        window |= u64::from(key.get(i + 8).copied().unwrap_or(0));
    }
    hash
}

/// The RSS hash of a frame as the NIC computes it (see the module doc), or `None` for frames
/// the NIC does not hash.
pub fn rss_hash(key: &[u8; 40], frame: &[u8]) -> Option<u32> {
    const ETHERTYPE: usize = 12;
    const L3: usize = 14;
    let ethertype = u16::from_be_bytes([*frame.get(ETHERTYPE)?, *frame.get(ETHERTYPE + 1)?]);
    let mut input = [0u8; 36];
    match ethertype {
        0x0800 => {
            let ip = frame.get(L3..L3 + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let protocol = ip[9];
            // More fragments, or a fragment offset: no ports to hash.
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            input[..8].copy_from_slice(&ip[12..20]);
            let ports = (protocol == 6 || protocol == 17) && !fragment && ihl >= 20;
            match ports.then(|| frame.get(L3 + ihl..L3 + ihl + 4)).flatten() {
                Some(p) => {
                    input[8..12].copy_from_slice(p);
                    Some(toeplitz(key, &input[..12]))
                }
                None => Some(toeplitz(key, &input[..8])),
            }
        }
        0x86dd => {
            let ip = frame.get(L3..L3 + 40)?;
            let next = ip[6];
            input[..32].copy_from_slice(&ip[8..40]);
            match (next == 6 || next == 17)
                .then(|| frame.get(L3 + 40..L3 + 44))
                .flatten()
            {
                Some(p) => {
                    input[32..36].copy_from_slice(p);
                    Some(toeplitz(key, &input[..36]))
                }
                None => Some(toeplitz(key, &input[..32])),
            }
        }
        _ => None,
    }
}

/// The shard (of `shards`, at least 1) that receives `frame` when the NIC's indirection table is
/// filled round robin (entry `i` holds queue `i % shards`), as the kernel fills it.
pub fn shard_of(frame: &[u8], shards: usize) -> usize {
    match rss_hash(&RSS_KEY, frame) {
        Some(hash) => (hash as usize % INDIRECTION_ENTRIES) % shards.max(1),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(src: &str, sport: u16, dst: &str, dport: u16) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&src.parse::<Ipv4Addr>().unwrap().octets());
        b[4..8].copy_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
        b[8..10].copy_from_slice(&sport.to_be_bytes());
        b[10..].copy_from_slice(&dport.to_be_bytes());
        b
    }

    fn v6(src: &str, sport: u16, dst: &str, dport: u16) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[..16].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        b[16..32].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        b[32..34].copy_from_slice(&sport.to_be_bytes());
        b[34..].copy_from_slice(&dport.to_be_bytes());
        b
    }

    /// Microsoft's "Verifying the RSS hash calculation" examples: (source, source port,
    /// destination, destination port, IPv4-only hash, IPv4-with-TCP hash).
    #[test]
    fn the_rss_specs_ipv4_examples() {
        for (src, sport, dst, dport, ip, tcp) in [
            (
                "66.9.149.187",
                2794,
                "161.142.100.80",
                1766,
                0x323e_8fc2,
                0x51cc_c178,
            ),
            (
                "199.92.111.2",
                14230,
                "65.69.140.83",
                4739,
                0xd718_262a,
                0xc626_b0ea,
            ),
            (
                "24.19.198.95",
                12898,
                "12.22.207.184",
                38024,
                0xd2d0_a5de,
                0x5c2b_394a,
            ),
            (
                "38.27.205.30",
                48228,
                "209.142.163.6",
                2217,
                0x8298_9176,
                0xafc7_327f,
            ),
            (
                "153.39.163.191",
                44251,
                "202.188.127.2",
                1303,
                0x5d18_09c5,
                0x10e8_28a2,
            ),
        ] {
            let input = v4(src, sport, dst, dport);
            assert_eq!(toeplitz(&RSS_KEY, &input[..8]), ip, "{src} -> {dst}");
            assert_eq!(
                toeplitz(&RSS_KEY, &input),
                tcp,
                "{src}:{sport} -> {dst}:{dport}"
            );
        }
    }

    #[test]
    fn the_rss_specs_ipv6_examples() {
        for (src, sport, dst, dport, ip, tcp) in [
            (
                "3ffe:2501:200:1fff::7",
                2794,
                "3ffe:2501:200:3::1",
                1766,
                0x2cc1_8cd5,
                0x4020_7d3d,
            ),
            (
                "3ffe:501:8::260:97ff:fe40:efab",
                14230,
                "ff02::1",
                4739,
                0x0f0c_461c,
                0xdde5_1bbf,
            ),
            (
                "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
                44251,
                "fe80::200:f8ff:fe21:67cf",
                38024,
                0x4b61_e985,
                0x02d1_feef,
            ),
        ] {
            let input = v6(src, sport, dst, dport);
            assert_eq!(toeplitz(&RSS_KEY, &input[..32]), ip, "{src} -> {dst}");
            assert_eq!(
                toeplitz(&RSS_KEY, &input),
                tcp,
                "[{src}]:{sport} -> [{dst}]:{dport}"
            );
        }
    }

    /// An Ethernet + IPv4 + TCP frame.
    fn frame(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        frag: u16,
        protocol: u8,
    ) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[14 + 6..14 + 8].copy_from_slice(&frag.to_be_bytes());
        f[14 + 9] = protocol;
        f[14 + 12..14 + 16].copy_from_slice(&src);
        f[14 + 16..14 + 20].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn frames_hash_as_the_nic_does() {
        let (src, dst) = ([66, 9, 149, 187], [161, 142, 100, 80]);
        let tcp = frame(src, 2794, dst, 1766, 0x4000, 6);
        assert_eq!(rss_hash(&RSS_KEY, &tcp), Some(0x51cc_c178));
        // UDP uses the same 4-tuple hash; a fragment or ICMP only the addresses.
        assert_eq!(
            rss_hash(&RSS_KEY, &frame(src, 2794, dst, 1766, 0, 17)),
            Some(0x51cc_c178)
        );
        assert_eq!(
            rss_hash(&RSS_KEY, &frame(src, 2794, dst, 1766, 0x2000, 6)),
            Some(0x323e_8fc2)
        );
        assert_eq!(
            rss_hash(&RSS_KEY, &frame(src, 2794, dst, 1766, 0x0010, 6)),
            Some(0x323e_8fc2)
        );
        assert_eq!(
            rss_hash(&RSS_KEY, &frame(src, 0, dst, 0, 0, 1)),
            Some(0x323e_8fc2)
        );
        // ARP, and a frame too short to hold its IPv4 header: queue 0.
        let mut arp = tcp.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(rss_hash(&RSS_KEY, &arp), None);
        assert_eq!(shard_of(&arp, 4), 0);
        assert_eq!(rss_hash(&RSS_KEY, &tcp[..30]), None);
        // 0x51ccc178 & 127 = 0x78 = 120: shard 0 of 2, 0 of 4, 0 of 3, 1 of 7 (120 = 7 * 17 + 1).
        assert_eq!([1, 2, 3, 4, 7].map(|n| shard_of(&tcp, n)), [0, 0, 0, 0, 1]);
    }
}
