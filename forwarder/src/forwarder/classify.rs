//! Classification: what a received frame is, decided from its bytes and the running config
//! alone (no flow, fragment or neighbour state), so that the burst path can classify a whole
//! round ahead and prefetch. Ethernet, IPv4 and TCP/UDP headers are checked here (lengths,
//! version, header checksum) and the flow key is hashed once. The judgements about frames to
//! the balancer's own address live here too, though they are applied when such a frame is
//! acted on: the management allow-list ([`Forwarder::mgmt_denied`]) and the first packets of a
//! conversation, whose senders become neighbour hints ([`opens_conversation`]).

use core::net::Ipv4Addr;

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

use super::field::{be16, be32, ethernet, icmp, ipv4, tcp, udp};
use super::Forwarder;
use crate::config::Prefix;
use crate::flow::{packet_kind, FlowKey, KIND_UDP};
use crate::stats::DropReason;

/// Facts about an IPv4 packet, read once.
#[derive(Clone, Copy)]
pub(super) struct Ip {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    /// Header length in bytes (20..=60).
    pub ihl: u8,
    /// Total length (header and payload) in bytes.
    pub total: u16,
    pub df: bool,
}

impl Ip {
    #[inline(always)]
    pub fn ihl(&self) -> usize {
        usize::from(self.ihl)
    }

    #[inline(always)]
    pub fn total(&self) -> usize {
        usize::from(self.total)
    }
}

/// A TCP or UDP packet (or first fragment) to a VIP, with its flow key hashed: what
/// [`Forwarder::classify`] hands on to the flow table.
///
/// Packed into whole words: the burst path stores one per frame and reads it back, which for
/// a dozen separate small fields (bools, u8s, u16s) took many times the instructions.
#[derive(Clone, Copy)]
pub(super) struct FlowPacket {
    pub key: FlowKey,
    pub hash: u64,
    /// VIP index (bits 0..32; the TTL for a later fragment), IP total length (32..48), IP
    /// ident (48..64).
    meta: u64,
    /// The packet's kind ([`packet_kind`]: the TCP flags byte's FIN, SYN, RST and ACK bits as
    /// received, or [`KIND_UDP`]) in bits 0..8, the IPv4 flags DF and MF as received in the
    /// high byte of the flags/offset field (bits 8..16), and the IP header length in bytes
    /// (bits 16..24). Raw header bits, so building this is a few shifts, not a select per flag.
    bits: u32,
}

/// TCP SYN and ACK where [`FlowPacket::bits`] has them (the TCP flags byte).
const FP_SYN: u32 = tcp::SYN as u32;
const FP_ACK: u32 = tcp::ACK as u32;
/// IPv4 DF and MF where [`FlowPacket::bits`] has them (the high byte of the flags/offset field).
const FP_DF: u32 = (ipv4::DF as u32) << 8;
pub(super) const FP_MORE_FRAGS: u32 = (ipv4::MF as u32) << 8;
/// An IPv6 packet (bit 24 of [`FlowPacket::bits`]): its key's addresses are a fold
/// ([`FlowKey::five_tuple6`]), and its length is the IPv6 header and payload.
const FP_V6: u32 = 1 << 24;

impl FlowPacket {
    /// `ip_flags` is the high byte of the IPv4 flags/offset field with only DF and MF kept,
    /// `kind` the packet's [`packet_kind`].
    #[inline(always)]
    fn new(
        ip: Ip,
        key: FlowKey,
        hash: u64,
        vip: u32,
        ident: u16,
        ip_flags: u8,
        kind: u8,
    ) -> FlowPacket {
        FlowPacket {
            key,
            hash,
            meta: u64::from(vip) | (u64::from(ip.total) << 32) | (u64::from(ident) << 48),
            bits: u32::from(kind) | (u32::from(ip_flags) << 8) | (u32::from(ip.ihl) << 16),
        }
    }

    /// A packet without ports (a later fragment, an ICMP message): its addresses and protocol
    /// as the key (not a flow's key), its TTL in place of the VIP.
    #[inline(always)]
    pub(super) fn no_ports(ip: Ip, ttl: u8, ident: u16) -> FlowPacket {
        let key = FlowKey {
            addrs: (u64::from(ip.src) << 32) | u64::from(ip.dst),
            rest: u64::from(ip.proto),
        };
        // Only DF is kept: nothing reads a later fragment's MF.
        let df = if ip.df { ipv4::DF } else { 0 };
        FlowPacket::new(ip, key, 0, u32::from(ttl), ident, df, 0)
    }

    /// An IPv6 packet (or first fragment) of a flow, or (with `vip` holding the hop limit) a
    /// later fragment or ICMPv6 message: `total` is the fixed header and payload length (at most
    /// a packet buffer, so it fits), `ident` a fragment header's identification folded to 16 bits,
    /// `more_frags` its M flag. IPv6 routers never fragment, so every IPv6 packet counts as DF.
    #[inline(always)]
    pub(super) fn new6(
        key: FlowKey,
        hash: u64,
        vip: u32,
        total: u16,
        ident: u32,
        more_frags: bool,
        kind: u8,
    ) -> FlowPacket {
        let flags = ipv4::DF | if more_frags { ipv4::MF } else { 0 };
        let ident16 = (ident ^ (ident >> 16)) as u16;
        FlowPacket {
            key,
            hash,
            meta: u64::from(vip) | (u64::from(total) << 32) | (u64::from(ident16) << 48),
            bits: u32::from(kind) | (u32::from(flags) << 8) | FP_V6,
        }
    }

    /// Whether this is an IPv6 packet (see [`new6`](Self::new6)); [`ip`](Self::ip) is then
    /// meaningless but for its length.
    #[inline(always)]
    pub fn is_v6(&self) -> bool {
        self.bits & FP_V6 != 0
    }

    /// What identifies the datagram a fragment belongs to, for the fragment table: the key's
    /// addresses word and (identification, protocol, family).
    #[inline(always)]
    pub fn frag_key(&self) -> (u64, u64) {
        let family = u64::from(self.is_v6()) << 33;
        (
            self.key.addrs,
            (1 << 32) | family | (u64::from(self.ident()) << 8) | u64::from(self.proto()),
        )
    }

    /// The IPv4 facts, back from the key and the packed words.
    #[inline(always)]
    pub fn ip(&self) -> Ip {
        Ip {
            src: (self.key.addrs >> 32) as u32,
            dst: self.key.addrs as u32,
            proto: self.proto(),
            ihl: (self.bits >> 16) as u8,
            total: self.total(),
            df: self.flag(FP_DF),
        }
    }

    /// The VIP index (of a later fragment: its TTL).
    #[inline(always)]
    pub fn vip(&self) -> u32 {
        self.meta as u32
    }

    #[inline(always)]
    fn proto(&self) -> u8 {
        self.key.rest as u8
    }

    /// The IP total length.
    #[inline(always)]
    pub fn total(&self) -> u16 {
        (self.meta >> 32) as u16
    }

    #[inline(always)]
    pub fn ident(&self) -> u16 {
        (self.meta >> 48) as u16
    }

    #[inline(always)]
    pub fn flag(&self, f: u32) -> bool {
        self.bits & f != 0
    }

    /// A TCP SYN (without ACK): most likely the first packet of a flow, so worth fetching what
    /// an insertion reads. (UDP gives no such hint; its first packets take the plain path.)
    #[inline(always)]
    pub fn opens(&self) -> bool {
        self.bits & (FP_SYN | FP_ACK) == FP_SYN
    }

    /// The packet's kind, see [`packet_kind`].
    #[inline(always)]
    pub fn kind(&self) -> u8 {
        self.bits as u8
    }
}

/// What a frame is, decided from its bytes and the config alone (no flow or neighbour state).
/// [`Forwarder::process_burst`] keeps one per frame of a round, so it is kept small.
#[derive(Clone, Copy)]
pub(super) enum Class {
    /// A packet of a VIP's flow.
    Flow(FlowPacket),
    /// Drop for this reason (not counted yet).
    Drop(DropReason),
    /// IPv4 to the balancer's own address (the management allow-list is applied when it is
    /// acted on: [`Forwarder::mgmt_denied`]).
    Local,
    /// An ARP frame.
    Arp,
    /// A TCP or UDP fragment other than the first (no ports, no hash; the TTL where a flow
    /// packet has its VIP: see [`FlowPacket::no_ports`]). The same payload type as
    /// `Flow`, so that the compiler stores one set of words whichever variant it is.
    LaterFragment(FlowPacket),
    /// An ICMP message (its IPv4 header checked) not to the balancer's own address; the `icmp`
    /// module decides what it is.
    Icmp,
    /// An IPv6 frame: the `ipv6` module (out of line) parses and decides everything about it.
    Ipv6,
}

// Whole words; a dozen separate small fields made it nearly twice as large.
const _: () = assert!(core::mem::size_of::<Class>() <= 48);

/// The management server's port and who may reach it, from `[management]`.
#[derive(Clone, Debug)]
pub(super) struct MgmtGuard {
    pub port: u16,
    pub allow: alloc::vec::Vec<Prefix>,
    pub allow6: alloc::vec::Vec<crate::config::Prefix6>,
}

impl Forwarder {
    /// Everything that can be known about a frame from its bytes and the config alone: the
    /// first half of [`process`](Self::process), split off so that the burst path can do it
    /// (and hash the flow) while prefetching.
    #[inline(always)]
    pub(super) fn classify(&self, buf: &[u8], head: usize, len: usize) -> Class {
        let Some(end) = head.checked_add(len).filter(|&e| e <= buf.len()) else {
            return Class::Drop(DropReason::Malformed);
        };
        if len < ethernet::HEADER_LEN {
            return Class::Drop(DropReason::Malformed);
        }
        let (dst, ethertype) = {
            let eth = EthernetFrame::new_unchecked(&buf[head..end]);
            (eth.dst_addr(), eth.ethertype())
        };
        if dst.0 != self.mac && !dst.is_broadcast() && !dst.is_multicast() {
            return Class::Drop(DropReason::NotForUs);
        }
        match ethertype {
            EthernetProtocol::Ipv4 => self.classify_ipv4(buf, head, end),
            EthernetProtocol::Arp => Class::Arp,
            EthernetProtocol::Ipv6 => Class::Ipv6,
            _ => Class::Drop(DropReason::Unsupported),
        }
    }

    #[inline(always)]
    fn classify_ipv4(&self, buf: &[u8], head: usize, end: usize) -> Class {
        let l3 = head + ethernet::HEADER_LEN;
        let packet = &buf[l3..end];
        // The checks of `Ipv4Packet::check_len`, once; the fixed header is then read as an array
        // (constant offsets, no bounds checks).
        let Some(h) = packet.first_chunk::<{ ipv4::HEADER_LEN }>() else {
            return Class::Drop(DropReason::Malformed);
        };
        // Version 4; the header length in bytes (a plain 20-byte header is one comparison).
        let ver_ihl = h[ipv4::VER_IHL];
        let ihl = if ver_ihl == ipv4::VER_IHL_PLAIN {
            ipv4::HEADER_LEN as u8
        } else if ver_ihl >> 4 == 4 && ver_ihl & 0x0f >= 5 {
            (ver_ihl & 0x0f) * 4
        } else {
            return Class::Drop(DropReason::Malformed);
        };
        let total = be16(h, ipv4::LENGTH);
        if u16::from(ihl) > total
            || usize::from(total) > packet.len()
            || !ipv4_checksum_ok(&packet[..usize::from(ihl)])
        {
            return Class::Drop(DropReason::Malformed);
        }
        let (flags, frag_offset) = (h[ipv4::FLAGS], be16(h, ipv4::FLG_OFF) & ipv4::OFFSET_MASK);
        let ip = Ip {
            src: be32(h, ipv4::SRC),
            dst: be32(h, ipv4::DST),
            proto: h[ipv4::PROTOCOL],
            ihl,
            total,
            df: flags & ipv4::DF != 0,
        };
        let (ttl, more_frags, ident) = (h[ipv4::TTL], flags & ipv4::MF != 0, be16(h, ipv4::IDENT));
        if ip.dst == u32::from(self.own) {
            return Class::Local;
        }
        if ip.proto != ipv4::PROTO_TCP && ip.proto != ipv4::PROTO_UDP {
            // VRRP advertisements are for the kernel's VRRP router (through the local path).
            if ip.proto == ipv4::PROTO_VRRP && ip.dst == ipv4::VRRP_GROUP {
                return Class::Local;
            }
            // ICMP is told apart only here, off the TCP/UDP path, by a tag alone: the icmp
            // module (out of line) reads the rest. Building its packet here cost every TCP and
            // UDP packet instructions (see forwarder/BENCHMARKS.md).
            if ip.proto == ipv4::PROTO_ICMP {
                return Class::Icmp;
            }
            return Class::Drop(DropReason::NotVip);
        }
        if frag_offset != 0 {
            return Class::LaterFragment(FlowPacket::no_ports(ip, ttl, ident));
        }
        let ports = ports(&packet[ip.ihl()..ip.total()], ip.proto, more_frags);
        let Some((sport, dport, kind)) = ports else {
            return Class::Drop(DropReason::Malformed);
        };
        let Some(vip) = self.index.lookup(ip.dst, dport, ip.proto) else {
            return Class::Drop(DropReason::NotVip);
        };
        if ttl <= 1 {
            return Class::Drop(DropReason::Ttl);
        }
        let key = FlowKey::five_tuple(ip.src, ip.dst, sport, dport, ip.proto);
        Class::Flow(FlowPacket::new(
            ip,
            key,
            self.flows.hash(key),
            vip,
            ident,
            flags & (ipv4::DF | ipv4::MF),
            kind,
        ))
    }

    /// Whether `frame`, IPv4 to the balancer's own address (classified as [`Class::Local`],
    /// so its lengths and header checksum are checked), must not reach the local stack: TCP to
    /// the management port from a source outside `[management] allow` (such a client gets no
    /// answer at all), or a later fragment (no ports) from outside it, since the balancer's own
    /// traffic is never fragmented. Decided when the frame is acted on rather than in
    /// [`classify`](Self::classify): it reads only the frame and the config all the same, and a
    /// branch there cost VIP traffic instructions.
    pub(super) fn mgmt_denied(&self, frame: &[u8]) -> bool {
        let Some(m) = &self.mgmt else {
            return false;
        };
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return false;
        };
        if ip.next_header() != IpProtocol::Tcp || m.allow.iter().any(|p| p.contains(ip.src_addr()))
        {
            return false;
        }
        if ip.frag_offset() != 0 {
            return true;
        }
        TcpPacket::new_checked(ip.payload()).is_ok_and(|t| t.dst_port() == m.port)
    }

    /// Whether `frame` (as for [`mgmt_denied`](Self::mgmt_denied)) is, while the config has
    /// `[bgp]`, TCP to the BGP port from a source that is not a `[[bgp.peer]]` (such a source
    /// gets no answer at all: no SYN-ACK, no reset), or UDP to the BFD port from a source that
    /// is not a peer or with a TTL other than 255.
    pub(super) fn bgp_denied(&self, frame: &[u8]) -> bool {
        let Some(peers) = &self.bgp_peers else {
            return false;
        };
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return false;
        };
        if ip.frag_offset() != 0 {
            return false;
        }
        let stranger = !peers.contains(&ip.src_addr());
        match ip.next_header() {
            IpProtocol::Tcp => TcpPacket::new_checked(ip.payload())
                .is_ok_and(|t| t.dst_port() == BGP_PORT && stranger),
            // BFD: from a peer on the link only (RFC 5881 5: TTL 255, which no router in
            // between would leave).
            IpProtocol::Udp => UdpPacket::new_checked(ip.payload())
                .is_ok_and(|u| u.dst_port() == BFD_PORT && (stranger || ip.hop_limit() != BFD_TTL)),
            _ => false,
        }
    }
}

/// The (source port, destination port, [`packet_kind`]) of a TCP segment or UDP datagram `l4`
/// (IP protocol `proto`, 6 or 17), its header checked; of a first fragment (`more_frags`) only
/// the ports are checked, since its UDP length covers the whole datagram. `None` when they are
/// not all there.
#[inline(always)]
pub(super) fn ports(l4: &[u8], proto: u8, more_frags: bool) -> Option<(u16, u16, u8)> {
    if proto == ipv4::PROTO_TCP {
        // `TcpPacket::check_len`'s checks: a data offset of at least the fixed header and
        // within the segment.
        match l4.first_chunk::<{ tcp::HEADER_LEN }>() {
            Some(t)
                if (tcp::HEADER_LEN..=l4.len())
                    .contains(&(usize::from(t[tcp::DATA_OFFSET] >> 4) * 4)) =>
            {
                Some((
                    be16(t, tcp::SRC_PORT),
                    be16(t, tcp::DST_PORT),
                    packet_kind(Some(t[tcp::FLAGS])),
                ))
            }
            _ => None,
        }
    } else if more_frags {
        // A first fragment's UDP length covers the whole datagram: only the ports are here.
        UdpPacket::new_checked(&l4[..l4.len().min(udp::HEADER_LEN)])
            .ok()
            .or_else(|| {
                (l4.len() >= udp::HEADER_LEN)
                    .then(|| UdpPacket::new_unchecked(&l4[..udp::HEADER_LEN]))
            })
            .map(|u| (u.src_port(), u.dst_port(), KIND_UDP))
    } else {
        UdpPacket::new_checked(l4)
            .ok()
            .map(|u| (u.src_port(), u.dst_port(), KIND_UDP))
    }
}

/// The TCP port BGP sessions are opened to.
pub(super) const BGP_PORT: u16 = 179;
/// The UDP port of single-hop BFD control packets, and the only TTL they may arrive with.
pub(super) const BFD_PORT: u16 = 3784;
const BFD_TTL: u8 = 255;

/// The on-link sender of a frame to the balancer that opens a conversation (a TCP SYN without
/// ACK or an ICMP echo request, first fragment), if it came from a unicast MAC: its address
/// and MAC, which the local stack must know before it answers (see
/// [`Forwarder::take_neighbour_hint`]).
pub(super) fn opens_conversation(frame: &[u8], subnet: Prefix) -> Option<(Ipv4Addr, [u8; 6])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let src = ip.src_addr();
    if !subnet.contains(src) || ip.frag_offset() != 0 {
        return None;
    }
    let opens = match ip.next_header() {
        IpProtocol::Tcp => TcpPacket::new_checked(ip.payload()).is_ok_and(|t| t.syn() && !t.ack()),
        IpProtocol::Icmp => ip.payload().get(icmp::TYPE) == Some(&icmp::ECHO_REQUEST),
        _ => false,
    };
    let mac = eth.src_addr();
    (opens && mac.is_unicast()).then_some((src, mac.0))
}

/// Whether an IPv4 header (all `header_len` bytes of it) has a valid checksum, i.e. the ones'-
/// complement sum of its 16-bit words is 0xffff. The usual 20-byte header is summed as five
/// 32-bit words in a `u64`; longer headers go through smoltcp. Like smoltcp's
/// `verify_checksum`, it accepts anything in a fuzzing build, so that the fuzzer gets past it.
///
/// No folding: since 2^16 = 1 modulo 0xffff, the ones'-complement sum of 16-bit words is 0xffff
/// exactly when their plain sum is a nonzero multiple of 0xffff, and the plain sum of the
/// 32-bit words is the same modulo 0xffff. So is that of byte-swapped words (a swap multiplies
/// a word by 256 modulo 0xffff, which is prime to 256), so the words are read in native order.
/// A remainder by a constant is a multiply and a shift, where folding took four rounds.
#[inline(always)]
pub(super) fn ipv4_checksum_ok(header: &[u8]) -> bool {
    if cfg!(fuzzing) {
        return true;
    }
    let Some(h) = header
        .first_chunk::<{ ipv4::HEADER_LEN }>()
        .filter(|_| header.len() == ipv4::HEADER_LEN)
    else {
        return Ipv4Packet::new_unchecked(header).verify_checksum();
    };
    let word = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let sum = word(0) + word(4) + word(8) + word(12) + word(16);
    sum % 0xffff == 0 && sum != 0
}
