//! Where things lie in the headers the forwarder reads and writes: byte offsets and ranges of
//! each field, and the named values (ethertypes, protocol numbers, flag bits) it compares them
//! with, in the manner of smoltcp's private `field` modules. The hot path reads fixed-size
//! arrays at these constant offsets (no bounds checks, no enum mapping); the lengths are
//! smoltcp's own constants.

use core::ops::Range;

/// A field of several bytes.
pub(super) type Field = Range<usize>;

/// The big-endian `u16` at `f` of a fixed-size header (`f` is a constant: no bounds check).
#[inline(always)]
pub(super) fn be16<const N: usize>(h: &[u8; N], f: Field) -> u16 {
    u16::from_be_bytes([h[f.start], h[f.start + 1]])
}

/// The big-endian `u32` at `f` of a fixed-size header.
#[inline(always)]
pub(super) fn be32<const N: usize>(h: &[u8; N], f: Field) -> u32 {
    u32::from_be_bytes([h[f.start], h[f.start + 1], h[f.start + 2], h[f.start + 3]])
}

/// Ethernet II (IEEE 802.3).
pub(super) mod ethernet {
    use super::Field;

    /// Source MAC.
    pub const SRC: Field = 6..12;
    /// Length of the header.
    pub const HEADER_LEN: usize = smoltcp::wire::ETHERNET_HEADER_LEN;
    /// The shortest frame on the wire (without the FCS): what an ARP frame is padded to.
    pub const MIN_FRAME: usize = 60;
}

/// IPv4 (RFC 791).
pub(super) mod ipv4 {
    use super::Field;

    /// Version (high nibble) and header length in 32-bit words (low nibble).
    pub const VER_IHL: usize = 0;
    /// DSCP and ECN (the old TOS byte).
    pub const TOS: usize = 1;
    /// Total length, header and payload.
    pub const LENGTH: Field = 2..4;
    /// Identification.
    pub const IDENT: Field = 4..6;
    /// Flags (high three bits) and fragment offset (13 bits, 8-byte units).
    pub const FLG_OFF: Field = 6..8;
    /// The byte of [`FLG_OFF`] that holds the flags.
    pub const FLAGS: usize = 6;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol number of the payload.
    pub const PROTOCOL: usize = 9;
    /// Source address.
    pub const SRC: Field = 12..16;
    /// Destination address.
    pub const DST: Field = 16..20;
    /// Length of a header without options.
    pub const HEADER_LEN: usize = smoltcp::wire::IPV4_HEADER_LEN;

    /// [`VER_IHL`] of a plain 20-byte header.
    pub const VER_IHL_PLAIN: u8 = 0x45;
    /// Don't fragment, in the [`FLAGS`] byte.
    pub const DF: u8 = 0x40;
    /// More fragments, in the [`FLAGS`] byte.
    pub const MF: u8 = 0x20;
    /// The fragment offset bits of [`FLG_OFF`].
    pub const OFFSET_MASK: u16 = 0x1fff;

    /// Protocol numbers (IANA).
    pub const PROTO_ICMP: u8 = 1;
    /// IP in IP (RFC 2003).
    pub const PROTO_IPIP: u8 = 4;
    /// TCP.
    pub const PROTO_TCP: u8 = 6;
    /// UDP.
    pub const PROTO_UDP: u8 = 17;
    /// VRRP (RFC 9568).
    pub const PROTO_VRRP: u8 = 112;
    /// VRRP's multicast group, 224.0.0.18.
    pub const VRRP_GROUP: u32 = 0xe000_0012;
}

/// TCP (RFC 9293).
pub(super) mod tcp {
    use super::Field;

    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Data offset in 32-bit words (high nibble).
    pub const DATA_OFFSET: usize = 12;
    /// The flags byte (CWR ECE URG ACK PSH RST SYN FIN).
    pub const FLAGS: usize = 13;
    /// Length of a header without options.
    pub const HEADER_LEN: usize = smoltcp::wire::TCP_HEADER_LEN;

    /// SYN, in the [`FLAGS`] byte.
    pub const SYN: u8 = 0x02;
    /// ACK, in the [`FLAGS`] byte.
    pub const ACK: u8 = 0x10;
}

/// UDP (RFC 768).
pub(super) mod udp {
    /// Length of the header (ports, length, checksum).
    pub const HEADER_LEN: usize = smoltcp::wire::UDP_HEADER_LEN;
}

/// ICMPv4 (RFC 792, RFC 1191).
pub(super) mod icmp {
    use super::Field;

    /// Type.
    pub const TYPE: usize = 0;
    /// Unused in "destination unreachable" (zero).
    pub const UNUSED: Field = 4..6;
    /// Next-hop MTU of "fragmentation needed" (RFC 1191).
    pub const NEXT_HOP_MTU: Field = 6..8;
    /// Length of the header (type, code, checksum, four bytes of the message).
    pub const HEADER_LEN: usize = 8;
    /// Bytes of the offending datagram's payload quoted after its header (RFC 792).
    pub const QUOTED_PAYLOAD: usize = 8;

    /// Code.
    pub const CODE: usize = 1;
    /// Echo reply (type 0).
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (type 3).
    pub const DST_UNREACHABLE: u8 = 3;
    /// Echo request (type 8).
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded (type 11).
    pub const TIME_EXCEEDED: u8 = 11;
    /// "Fragmentation needed and DF set" (code 4 of type 3).
    pub const FRAG_NEEDED: u8 = 4;
}

/// ARP for IPv4 over Ethernet (RFC 826).
pub(super) mod arp {
    /// Length of the packet (hardware and protocol types and lengths, operation, two address
    /// pairs).
    pub const LEN: usize = 28;
}

/// IPv6 (RFC 8200).
pub(super) mod ipv6 {
    use super::Field;

    /// Version (high nibble of the first byte), traffic class and flow label.
    pub const VER_TC_FLOW: Field = 0..4;
    /// Payload length (everything after this 40-byte header).
    pub const PAYLOAD_LEN: Field = 4..6;
    /// Next header: the protocol number of what follows.
    pub const NEXT_HEADER: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC: Field = 8..24;
    /// Destination address.
    pub const DST: Field = 24..40;
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = 40;

    /// Extension headers (RFC 8200 4) that are skipped by their length: hop-by-hop options,
    /// routing, destination options.
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header (8 bytes: next header, reserved, offset and M flag, identification).
    pub const FRAGMENT: u8 = 44;
    /// Destination options.
    pub const DST_OPTS: u8 = 60;
    /// IPv6 in IPv6 (RFC 2473): the next header of an ip6ip6 encapsulation.
    pub const PROTO_IPV6: u8 = 41;
    /// ICMPv6 (RFC 4443).
    pub const PROTO_ICMPV6: u8 = 58;
    /// Length of the fragment header.
    pub const FRAG_HEADER_LEN: usize = 8;
    /// The fragment offset (8-byte units, high 13 bits) and M flag (low bit) of a fragment
    /// header.
    pub const FRAG_OFF_M: Field = 2..4;
    /// The identification of a fragment header.
    pub const FRAG_IDENT: Field = 4..8;
    /// The smallest link MTU IPv6 allows (RFC 8200 5): an ICMPv6 error never exceeds it.
    pub const MIN_MTU: usize = 1280;
}

/// ICMPv6 (RFC 4443) and neighbour discovery (RFC 4861).
pub(super) mod icmpv6 {
    /// Type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// Checksum (over the pseudo-header and the message).
    pub const CHECKSUM: super::Field = 2..4;
    /// The MTU of "packet too big", and the flags word of a neighbour advertisement.
    pub const WORD: super::Field = 4..8;
    /// Length of the header (type, code, checksum, one word).
    pub const HEADER_LEN: usize = 8;
    /// The target address of a neighbour solicitation or advertisement.
    pub const TARGET: super::Field = 8..24;
    /// Length of a neighbour solicitation or advertisement without options.
    pub const ND_LEN: usize = 24;
    /// Length of the link-layer address option for Ethernet (type, length in 8-byte units,
    /// MAC).
    pub const LL_OPT_LEN: usize = 8;

    /// Destination unreachable (type 1).
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big (type 2).
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded (type 3).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem (type 4).
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request (type 128).
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply (type 129).
    pub const ECHO_REPLY: u8 = 129;
    /// Neighbour solicitation (type 135).
    pub const NEIGHBOUR_SOLICIT: u8 = 135;
    /// Neighbour advertisement (type 136).
    pub const NEIGHBOUR_ADVERT: u8 = 136;
    /// The source link-layer address option.
    pub const OPT_SOURCE_LL: u8 = 1;
    /// The target link-layer address option.
    pub const OPT_TARGET_LL: u8 = 2;
    /// Neighbour advertisement flags: router, solicited, override (high bits of [`WORD`]).
    pub const NA_SOLICITED: u32 = 0x4000_0000;
    /// See [`NA_SOLICITED`].
    pub const NA_OVERRIDE: u32 = 0x2000_0000;
    /// The hop limit every neighbour discovery message is sent and must arrive with
    /// (RFC 4861 7.1.1: no router forwarded it).
    pub const ND_HOP_LIMIT: u8 = 255;
}
