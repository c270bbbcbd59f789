//! The VRRP advertisement on the wire (the payload of an IPv4 packet of protocol 112).
//!
//! ```text
//!  0        4        8               16              24              32
//! | version | type=1 | virtual rtr id |   priority    | count IPv4 addrs |
//! v3: | rsvd | max advert int (12 bits, centiseconds) |     checksum    |
//! v2: | auth type (0)  | advert int (seconds)          |     checksum    |
//! | IPv4 address 1 ... count                                            |
//! v2 only: 8 octets of authentication data (zero; keepalived sends them)
//! ```
//!
//! The checksum is the Internet checksum of the message. For version 3 over IPv4, RFC 5798
//! includes an IPv4 pseudo-header (source, destination, zero, protocol, length) and keepalived
//! computes it so by default; RFC 9568 and keepalived's `v3_checksum_as_v2` leave it out. Both
//! forms are accepted and [`Advert::parse`] says which one matched; this balancer sends the
//! pseudo-header form, which every keepalived version accepts unless told otherwise.

use super::PROTOCOL;
use crate::config::VrrpVersion;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 8;
/// Length of version 2's authentication data after the addresses.
pub const V2_AUTH_LEN: usize = 8;
/// The only packet type: an advertisement.
const TYPE_ADVERT: u8 = 1;

/// One advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Protocol version.
    pub version: VrrpVersion,
    /// Virtual router id.
    pub vrid: u8,
    /// The sender's priority; 0 means it is leaving the master role.
    pub priority: u8,
    /// The advertisement interval in milliseconds (sent in centiseconds or seconds).
    pub interval_ms: u32,
    /// The virtual addresses (at most 255 are sent).
    pub addresses: Vec<Ipv4Addr>,
}

/// Which checksum a received version 3 advertisement carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumForm {
    /// Over the message and an IPv4 pseudo-header (RFC 5798; keepalived's default).
    PseudoHeader,
    /// Over the message alone (RFC 9568; version 2; keepalived's `v3_checksum_as_v2`).
    MessageOnly,
}

/// Why bytes are not an advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the header or than its address count says.
    Length,
    /// A version other than 2 or 3.
    Version(u8),
    /// A packet type other than advertisement.
    Type(u8),
    /// Version 2 with authentication (this balancer speaks only auth type 0).
    AuthType(u8),
    /// The checksum matches neither form.
    Checksum,
    /// An advertisement interval of zero.
    Interval,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Length => write!(f, "shorter than its header and address count"),
            ParseError::Version(v) => write!(f, "version {v} is neither 2 nor 3"),
            ParseError::Type(t) => write!(f, "type {t} is not an advertisement"),
            ParseError::AuthType(a) => write!(f, "authentication type {a} is not supported"),
            ParseError::Checksum => write!(f, "bad checksum"),
            ParseError::Interval => write!(f, "advertisement interval of zero"),
        }
    }
}

/// The Internet checksum (RFC 1071) of `parts` taken as one byte string.
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum of `msg` (its checksum field zeroed or not: the sum over a correct message with
/// its checksum is zero) in `form`, for a packet from `src` to `dst`.
fn checksum(msg: &[u8], form: ChecksumForm, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    match form {
        ChecksumForm::MessageOnly => internet_checksum(&[msg]),
        ChecksumForm::PseudoHeader => {
            let len = (msg.len() as u16).to_be_bytes();
            let pseudo = [
                src.octets().as_slice(),
                dst.octets().as_slice(),
                &[0, PROTOCOL],
                &len,
            ]
            .concat();
            internet_checksum(&[&pseudo, msg])
        }
    }
}

impl Advert {
    /// The message for a packet from `src` to `dst`, with the checksum in `form` (version 2 always
    /// uses [`ChecksumForm::MessageOnly`]).
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr, form: ChecksumForm) -> Vec<u8> {
        let count = self.addresses.len().min(255);
        let mut msg = Vec::with_capacity(HEADER_LEN + 4 * count + V2_AUTH_LEN);
        msg.push((self.version.number() << 4) | TYPE_ADVERT);
        msg.push(self.vrid);
        msg.push(self.priority);
        msg.push(count as u8);
        let form = match self.version {
            VrrpVersion::V3 => {
                let cs = (self.interval_ms / 10).clamp(1, 0x0fff) as u16;
                msg.extend_from_slice(&cs.to_be_bytes());
                form
            }
            VrrpVersion::V2 => {
                msg.push(0);
                msg.push((self.interval_ms / 1000).clamp(1, 255) as u8);
                ChecksumForm::MessageOnly
            }
        };
        msg.extend_from_slice(&[0, 0]);
        for a in &self.addresses[..count] {
            msg.extend_from_slice(&a.octets());
        }
        if self.version == VrrpVersion::V2 {
            msg.extend_from_slice(&[0; V2_AUTH_LEN]);
        }
        let sum = checksum(&msg, form, src, dst);
        msg[6..8].copy_from_slice(&sum.to_be_bytes());
        msg
    }

    /// Parse the message of a packet from `src` to `dst` and check its checksum; anything after
    /// the addresses (version 2's authentication data, padding) is ignored but for the checksum.
    pub fn parse(
        msg: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<(Advert, ChecksumForm), ParseError> {
        if msg.len() < HEADER_LEN {
            return Err(ParseError::Length);
        }
        let version = match msg[0] >> 4 {
            3 => VrrpVersion::V3,
            2 => VrrpVersion::V2,
            v => return Err(ParseError::Version(v)),
        };
        if msg[0] & 0x0f != TYPE_ADVERT {
            return Err(ParseError::Type(msg[0] & 0x0f));
        }
        let count = usize::from(msg[3]);
        if msg.len() < HEADER_LEN + 4 * count {
            return Err(ParseError::Length);
        }
        let (interval_ms, form) = match version {
            VrrpVersion::V3 => {
                let cs = u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff;
                let form = if checksum(msg, ChecksumForm::PseudoHeader, src, dst) == 0 {
                    ChecksumForm::PseudoHeader
                } else if checksum(msg, ChecksumForm::MessageOnly, src, dst) == 0 {
                    ChecksumForm::MessageOnly
                } else {
                    return Err(ParseError::Checksum);
                };
                (u32::from(cs) * 10, form)
            }
            VrrpVersion::V2 => {
                if msg[4] != 0 {
                    return Err(ParseError::AuthType(msg[4]));
                }
                if checksum(msg, ChecksumForm::MessageOnly, src, dst) != 0 {
                    return Err(ParseError::Checksum);
                }
                (u32::from(msg[5]) * 1000, ChecksumForm::MessageOnly)
            }
        };
        if interval_ms == 0 {
            return Err(ParseError::Interval);
        }
        let addresses = msg[HEADER_LEN..HEADER_LEN + 4 * count]
            .as_chunks::<4>()
            .0
            .iter()
            .map(|a| Ipv4Addr::from(*a))
            .collect();
        Ok((
            Advert {
                version,
                vrid: msg[1],
                priority: msg[2],
                interval_ms,
                addresses,
            },
            form,
        ))
    }
}

/// Length of the Ethernet header and of the plain IPv4 header the frames here carry.
const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;

/// The Ethernet frame of a VRRP message `msg` sent by the master of `vrid` from `src`: to the
/// group's MAC from the virtual router's MAC (RFC 9568 7.3), IPv4 with TTL 255, precedence
/// "internetwork control" (as keepalived sends), IP identification `ident`.
pub fn frame(msg: &[u8], src: Ipv4Addr, vrid: u8, ident: u16) -> Vec<u8> {
    let total = IP_LEN + msg.len();
    let mut f = Vec::with_capacity(ETH_LEN + total);
    f.extend_from_slice(&super::GROUP_MAC);
    f.extend_from_slice(&super::virtual_mac(vrid));
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; IP_LEN];
    ip[0] = 0x45;
    ip[1] = 0xc0;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&ident.to_be_bytes());
    ip[8] = super::TTL;
    ip[9] = PROTOCOL;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&super::GROUP.octets());
    let sum = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(msg);
    f
}

/// The IPv4 parts of a received frame that a [`super::Router`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received<'a> {
    /// The sender's address.
    pub src: Ipv4Addr,
    /// The destination address.
    pub dst: Ipv4Addr,
    /// The IP TTL.
    pub ttl: u8,
    /// The VRRP message (the IP payload, without Ethernet padding).
    pub msg: &'a [u8],
}

/// The VRRP message in an Ethernet frame, if it is IPv4 protocol 112 and not fragmented (its
/// IP header checksum was checked by the forwarder).
pub fn received(frame: &[u8]) -> Option<Received<'_>> {
    if frame.len() < ETH_LEN + IP_LEN || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ihl < IP_LEN || total < ihl || total > ip.len() || fragmented {
        return None;
    }
    if ip[9] != PROTOCOL {
        return None;
    }
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Some(Received {
        src: addr(12),
        dst: addr(16),
        ttl: ip[8],
        msg: &ip[ihl..total],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::GROUP;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    fn advert(version: VrrpVersion) -> Advert {
        Advert {
            version,
            vrid: 51,
            priority: 150,
            interval_ms: 1000,
            addresses: alloc::vec![Ipv4Addr::new(10, 77, 0, 100), Ipv4Addr::new(10, 77, 0, 101)],
        }
    }

    #[test]
    fn v3_layout_and_round_trip_in_both_checksum_forms() {
        let a = advert(VrrpVersion::V3);
        for form in [ChecksumForm::PseudoHeader, ChecksumForm::MessageOnly] {
            let msg = a.encode(SRC, GROUP, form);
            assert_eq!(&msg[..6], &[0x31, 51, 150, 2, 0, 100]);
            assert_eq!(msg.len(), 16);
            assert_eq!(Advert::parse(&msg, SRC, GROUP), Ok((a.clone(), form)));
        }
    }

    #[test]
    fn v3_pseudo_header_checksum_matches_a_hand_computed_one() {
        // 10.77.0.2 -> 224.0.0.18, proto 112, len 12; vrid 1, prio 100, one address 10.0.0.1,
        // 100 cs. The sum of the 16-bit words, folded, then complemented.
        let a = Advert {
            version: VrrpVersion::V3,
            vrid: 1,
            priority: 100,
            interval_ms: 1000,
            addresses: alloc::vec![Ipv4Addr::new(10, 0, 0, 1)],
        };
        let msg = a.encode(SRC, GROUP, ChecksumForm::PseudoHeader);
        let words: u32 = [
            0x0a4d, 0x0002, 0xe000, 0x0012, 0x0070, 0x000c, 0x3101, 0x6401, 0x0064, 0x0a00, 0x0001,
        ]
        .iter()
        .sum();
        let folded = (words & 0xffff) + (words >> 16);
        assert_eq!(u16::from_be_bytes([msg[6], msg[7]]), !(folded as u16));
    }

    #[test]
    fn v2_layout_carries_seconds_auth_zero_and_auth_data() {
        let a = advert(VrrpVersion::V2);
        let msg = a.encode(SRC, GROUP, ChecksumForm::PseudoHeader);
        assert_eq!(&msg[..6], &[0x21, 51, 150, 2, 0, 1]);
        assert_eq!(msg.len(), 8 + 8 + V2_AUTH_LEN);
        assert_eq!(
            Advert::parse(&msg, SRC, GROUP),
            Ok((a.clone(), ChecksumForm::MessageOnly))
        );
        // Without the authentication data (some senders leave it out).
        let mut short = msg[..16].to_vec();
        short[6..8].fill(0);
        let sum = internet_checksum(&[&short]);
        short[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(Advert::parse(&short, SRC, GROUP).map(|p| p.0), Ok(a));
    }

    #[test]
    fn damage_is_refused_by_kind() {
        let good = advert(VrrpVersion::V3).encode(SRC, GROUP, ChecksumForm::PseudoHeader);
        let edit = |f: fn(&mut Vec<u8>)| {
            let mut m = good.clone();
            f(&mut m);
            Advert::parse(&m, SRC, GROUP).unwrap_err()
        };
        assert_eq!(edit(|m| m.truncate(7)), ParseError::Length);
        assert_eq!(edit(|m| m.truncate(15)), ParseError::Length);
        assert_eq!(edit(|m| m[0] = 0x41), ParseError::Version(4));
        assert_eq!(edit(|m| m[0] = 0x32), ParseError::Type(2));
        assert_eq!(edit(|m| m[2] ^= 1), ParseError::Checksum);
        // Same bytes from another source: the pseudo-header no longer matches.
        assert_eq!(
            Advert::parse(&good, Ipv4Addr::new(10, 77, 0, 3), GROUP),
            Err(ParseError::Checksum)
        );
        let mut zero = advert(VrrpVersion::V3);
        zero.interval_ms = 0;
        let mut m = zero.encode(SRC, GROUP, ChecksumForm::MessageOnly);
        m[4..6].fill(0);
        m[6..8].fill(0);
        let sum = internet_checksum(&[&m]);
        m[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(Advert::parse(&m, SRC, GROUP), Err(ParseError::Interval));
        let mut v2 = advert(VrrpVersion::V2).encode(SRC, GROUP, ChecksumForm::MessageOnly);
        v2[4] = 1;
        assert_eq!(Advert::parse(&v2, SRC, GROUP), Err(ParseError::AuthType(1)));
    }

    #[test]
    fn frames_are_built_and_read_back() {
        let msg = advert(VrrpVersion::V3).encode(SRC, GROUP, ChecksumForm::PseudoHeader);
        let mut f = frame(&msg, SRC, 51, 7);
        assert_eq!(&f[..6], &crate::vrrp::GROUP_MAC);
        assert_eq!(&f[6..12], &[0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(f.len(), 14 + 20 + msg.len());
        assert_eq!(internet_checksum(&[&f[14..34]]), 0);
        // Ethernet padding after the IP packet is not part of the message.
        f.extend_from_slice(&[0; 10]);
        let r = received(&f).unwrap();
        assert_eq!((r.src, r.dst, r.ttl, r.msg), (SRC, GROUP, 255, &msg[..]));
        let mut frag = f.clone();
        frag[14 + 6] = 0x20;
        assert_eq!(received(&frag), None);
        let mut tcp = f.clone();
        tcp[14 + 9] = 6;
        assert_eq!(received(&tcp), None);
        assert_eq!(received(&f[..30]), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678u32;
        for len in 0..64 {
            for _ in 0..64 {
                let m: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        (seed >> 16) as u8
                    })
                    .collect();
                let _ = Advert::parse(&m, SRC, GROUP);
                let _ = received(&m);
            }
        }
    }
}
