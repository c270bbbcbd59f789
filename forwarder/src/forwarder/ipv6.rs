//! IPv6 on the data path, out of line of IPv4's (classification only tags an IPv6 frame, so
//! IPv4 traffic pays one comparison for it).
//!
//! **Parsing.** The fixed header is checked (version, payload length within the frame), then
//! the extension headers are walked: hop-by-hop options (only first, as RFC 8200 4.1 orders),
//! routing (with segments left 0: otherwise the VIP is not the packet's final destination) and
//! destination options are skipped by their length, at most [`MAX_EXT_HEADERS`] of them; a
//! fragment header makes the packet a fragment, handled as IPv4 fragments are (a first
//! fragment carries the ports and is scheduled, later ones follow it; an atomic fragment,
//! offset 0 without M, is a whole packet, RFC 6946). Anything else after them (ESP, AH, "no
//! next header") is no TCP, UDP or ICMPv6 and is dropped as `not_vip`.
//!
//! **Flows.** A VIP's TCP and UDP packets take the IPv4 path from the flow table on
//! ([`Forwarder::flow_packet`]) with a 32-byte entry as IPv4's: the addresses are folded into
//! the key ([`FlowKey::five_tuple6`]). Consistent hashing reads the full addresses again
//! (`dispatch::identity`), so every balancer picks the same backend.
//!
//! **Output.** dsr-l2 rewrites the Ethernet addresses as for IPv4 (next hops resolved by
//! neighbour discovery: the `nd` module); dsr-l3 is ip6ip6 (RFC 2473): an outer 40-byte IPv6
//! header, next header 41, in the headroom. IPv6 routers never fragment, so a packet that
//! does not fit the MTU once encapsulated is answered with ICMPv6 "packet too big" (MTU - 40)
//! to its sender, within the ICMP rate limit.
//!
//! **ICMPv6.** Neighbour solicitations for the balancer's address and the VIPs are answered,
//! advertisements teach next hops (the `nd` module); echo requests to the balancer's address
//! or a VIP are answered in place; errors addressed to a VIP (packet too big above all) go to
//! the backend of the flow they quote, as for IPv4, so path MTU discovery works for DSR
//! replies.
//!
//! **The balancer's own address.** TCP and UDP to `address6` go to the local stack (health
//! checks of IPv6 backends, the management port from `[management] allow`'s IPv6 prefixes),
//! but for BGP and BFD, whose peers are IPv4; anything else to it is dropped as `unsupported`, as is all IPv6 without
//! `interface.address6`. As for IPv4, the local stack is told the next hops the forwarder
//! resolved, and resolves anyone else itself (advertisements addressed to the balancer go up, as
//! ARP replies do).

use core::net::IpAddr;

use super::classify::{ports, FlowPacket};
use super::field::{be16, be32, ethernet, icmpv6, ipv4, ipv6};
use super::{Forwarder, Verdict, CONSISTENT_SEED};
use crate::flow::{fold_addrs6, hash_key, source_id6, FlowKey, KEY_V6};
use crate::stats::DropReason;
use crate::time::Instant;

/// Extension headers walked at most before the upper-layer header; a longer chain is
/// dropped as malformed (a hostile chain must not cost unbounded work).
pub(super) const MAX_EXT_HEADERS: usize = 8;
/// Hop limit of the IPv6 headers the balancer writes, but for neighbour discovery's.
const OUT_HOP_LIMIT: u8 = 64;

/// A fragment header's facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Frag6 {
    /// Offset in bytes (a multiple of 8).
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    pub ident: u32,
}

/// Facts about an IPv6 packet, read once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ip6 {
    pub src: u128,
    pub dst: u128,
    /// The upper-layer protocol after the extension headers (of a later fragment: the
    /// fragment header's next header).
    pub proto: u8,
    /// Where the upper-layer header starts, from the start of the IPv6 header.
    pub l4: usize,
    /// Fixed header and payload length (of a quote: what is there).
    pub total: usize,
    pub hop_limit: u8,
    /// The fragment header, unless the packet is whole.
    pub frag: Option<Frag6>,
}

impl Ip6 {
    /// A fragment other than the first: no upper-layer header.
    pub fn later_fragment(&self) -> bool {
        self.frag.is_some_and(|f| f.offset != 0)
    }
}

/// Parse the IPv6 packet `packet` (from its fixed header on), walking its extension headers.
/// A `quote` (the packet an ICMPv6 error quotes) may be cut short: its payload length is not
/// held against what is there.
pub(super) fn parse(packet: &[u8], quote: bool) -> Result<Ip6, DropReason> {
    let malformed = Err(DropReason::Malformed);
    let Some(h) = packet.first_chunk::<{ ipv6::HEADER_LEN }>() else {
        return malformed;
    };
    if h[0] >> 4 != 6 {
        return malformed;
    }
    let declared = ipv6::HEADER_LEN + usize::from(be16(h, ipv6::PAYLOAD_LEN));
    let total = if quote {
        declared.min(packet.len())
    } else if declared <= packet.len() {
        declared
    } else {
        return malformed;
    };
    let packet = &packet[..total];
    let mut ip = Ip6 {
        src: be128(h, ipv6::SRC.start),
        dst: be128(h, ipv6::DST.start),
        proto: h[ipv6::NEXT_HEADER],
        l4: ipv6::HEADER_LEN,
        total,
        hop_limit: h[ipv6::HOP_LIMIT],
        frag: None,
    };
    for n in 0..=MAX_EXT_HEADERS {
        match ip.proto {
            ipv6::HOP_BY_HOP | ipv6::ROUTING | ipv6::DST_OPTS => {
                if ip.proto == ipv6::HOP_BY_HOP && n != 0 {
                    return malformed;
                }
                let Some(ext) = packet.get(ip.l4..).and_then(|e| e.first_chunk::<4>()) else {
                    return malformed;
                };
                let len = (usize::from(ext[1]) + 1) * 8;
                if ip.l4 + len > total {
                    return malformed;
                }
                // Segments left: the packet is on its way to another address.
                if ip.proto == ipv6::ROUTING && ext[3] != 0 {
                    return Err(DropReason::Unsupported);
                }
                ip.proto = ext[0];
                ip.l4 += len;
            }
            ipv6::FRAGMENT => {
                let Some(f) = packet
                    .get(ip.l4..)
                    .and_then(|f| f.first_chunk::<{ ipv6::FRAG_HEADER_LEN }>())
                else {
                    return malformed;
                };
                if ip.frag.is_some() {
                    return malformed;
                }
                let off_m = be16(f, ipv6::FRAG_OFF_M);
                let frag = Frag6 {
                    offset: off_m & 0xfff8,
                    more: off_m & 1 != 0,
                    ident: be32(f, ipv6::FRAG_IDENT),
                };
                ip.proto = f[0];
                ip.l4 += ipv6::FRAG_HEADER_LEN;
                // An atomic fragment (offset 0, no M) is a whole packet (RFC 6946).
                if frag.offset != 0 || frag.more {
                    ip.frag = Some(frag);
                }
                if frag.offset != 0 {
                    return Ok(ip);
                }
            }
            _ => return Ok(ip),
        }
    }
    malformed
}

/// [`parse`] of the usual packet, TCP or UDP right after the fixed header, inline; `None` for
/// anything else (extension headers, other protocols, bad lengths), which `parse` decides.
#[inline(always)]
fn fast_parse(packet: &[u8]) -> Option<Ip6> {
    let h = packet.first_chunk::<{ ipv6::HEADER_LEN }>()?;
    let next = h[ipv6::NEXT_HEADER];
    let total = ipv6::HEADER_LEN + usize::from(be16(h, ipv6::PAYLOAD_LEN));
    let plain = h[0] >> 4 == 6
        && (next == ipv4::PROTO_TCP || next == ipv4::PROTO_UDP)
        && total <= packet.len();
    plain.then(|| Ip6 {
        src: be128(h, ipv6::SRC.start),
        dst: be128(h, ipv6::DST.start),
        proto: next,
        l4: ipv6::HEADER_LEN,
        total,
        hop_limit: h[ipv6::HOP_LIMIT],
        frag: None,
    })
}

/// The big-endian `u128` at byte `at` of the fixed header (a constant: no bounds check).
#[inline(always)]
fn be128(h: &[u8; ipv6::HEADER_LEN], at: usize) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[at..at + 16]);
    u128::from_be_bytes(b)
}

/// The source and destination addresses of the IPv6 frame at `buf[head..]` (checked by
/// classification; zero where the bytes are not there).
pub(super) fn addrs(buf: &[u8], head: usize) -> (u128, u128) {
    let l3 = head + ethernet::HEADER_LEN;
    let at = |f: core::ops::Range<usize>| {
        buf.get(l3 + f.start..l3 + f.end)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map_or(0, u128::from_be_bytes)
    };
    (at(ipv6::SRC), at(ipv6::DST))
}

/// Whether `a` is a multicast address (ff00::/8).
pub(super) fn is_multicast(a: u128) -> bool {
    a >> 120 == 0xff
}

/// The fields of an IPv6 header the balancer writes.
pub(super) struct Ipv6Out {
    /// Version, traffic class and flow label, as the first four header bytes (the version
    /// nibble is set whatever these hold).
    pub vtf: [u8; 4],
    /// Payload length.
    pub payload: usize,
    pub next: u8,
    pub hop_limit: u8,
    pub src: u128,
    pub dst: u128,
}

/// Write the Ethernet header (to `to`, from `from`, IPv6) and the IPv6 header `h` at the front
/// of `frame` (at least 54 bytes): the one writer of the IPv6 headers the balancer originates
/// (ip6ip6, ICMPv6, neighbour discovery).
pub(super) fn write_headers6(frame: &mut [u8], to: [u8; 6], from: [u8; 6], h: &Ipv6Out) {
    frame[0..6].copy_from_slice(&to);
    frame[6..12].copy_from_slice(&from);
    frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut frame[ethernet::HEADER_LEN..ethernet::HEADER_LEN + ipv6::HEADER_LEN];
    ip[ipv6::VER_TC_FLOW].copy_from_slice(&h.vtf);
    ip[0] = 0x60 | (ip[0] & 0x0f);
    ip[ipv6::PAYLOAD_LEN].copy_from_slice(&(h.payload as u16).to_be_bytes());
    ip[ipv6::NEXT_HEADER] = h.next;
    ip[ipv6::HOP_LIMIT] = h.hop_limit;
    ip[ipv6::SRC].copy_from_slice(&h.src.to_be_bytes());
    ip[ipv6::DST].copy_from_slice(&h.dst.to_be_bytes());
}

/// The ones'-complement sum of `data` as big-endian 16-bit words (an odd last byte padded),
/// added to `acc`, unfolded.
fn sum16(data: &[u8], mut acc: u64) -> u64 {
    let (words, rest) = data.as_chunks::<2>();
    for w in words {
        acc += u64::from(u16::from_be_bytes(*w));
    }
    if let [last] = rest {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// The ICMPv6 checksum sum of `message` with its pseudo-header (RFC 8200 8.1), folded.
fn icmpv6_sum(src: u128, dst: u128, message: &[u8]) -> u16 {
    let mut acc = sum16(&src.to_be_bytes(), 0);
    acc = sum16(&dst.to_be_bytes(), acc);
    acc += message.len() as u64 + u64::from(ipv6::PROTO_ICMPV6);
    acc = sum16(message, acc);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Whether ICMPv6 `message` from `src` to `dst` has a valid checksum (any, in a fuzzing
/// build, as for IPv4).
pub(super) fn icmpv6_checksum_ok(src: u128, dst: u128, message: &[u8]) -> bool {
    cfg!(fuzzing) || icmpv6_sum(src, dst, message) == 0xffff
}

/// Fill in the checksum of ICMPv6 `message` from `src` to `dst`.
pub(super) fn fill_icmpv6_checksum(src: u128, dst: u128, message: &mut [u8]) {
    message[icmpv6::CHECKSUM].fill(0);
    let sum = !icmpv6_sum(src, dst, message);
    message[icmpv6::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
}

impl Forwarder {
    /// The balancer's own IPv6 address, when it has one.
    #[inline(always)]
    pub(super) fn own6(&self) -> Option<u128> {
        self.own6
    }

    /// An IPv6 frame `buf[head..end]` (its Ethernet header checked). Marked cold only to keep
    /// its call out of the IPv4 burst loop's layout: that saved IPv4 3 instructions a packet
    /// and cost IPv6 none (forwarder/BENCHMARKS.md).
    #[cold]
    #[inline(never)]
    pub(super) fn ipv6(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        now: Instant,
    ) -> Verdict {
        let Some(own6) = self.own6() else {
            return self.drop(DropReason::Unsupported);
        };
        let l3 = head + ethernet::HEADER_LEN;
        let ip = match fast_parse(&buf[l3..end]) {
            Some(ip) => ip,
            None => match parse(&buf[l3..end], false) {
                Ok(ip) => ip,
                Err(reason) => return self.drop(reason),
            },
        };
        let tcp_or_udp = ip.proto == ipv4::PROTO_TCP || ip.proto == ipv4::PROTO_UDP;
        if !tcp_or_udp || ip.later_fragment() {
            return self.ipv6_other(buf, head, end, ip, own6, now);
        }
        let more = ip.frag.is_some_and(|f| f.more);
        let Some((sport, dport, kind)) = ports(&buf[l3 + ip.l4..l3 + ip.total], ip.proto, more)
        else {
            return self.drop(DropReason::Malformed);
        };
        let Some(vip) = self.lookup6(ip.dst, dport, ip.proto) else {
            if ip.dst == own6 && !more {
                return self.local6(ip.src, ip.proto, dport);
            }
            return self.drop(DropReason::NotVip);
        };
        if !self.vip_active {
            return self.drop(DropReason::VrrpBackup);
        }
        let Ok(total) = u16::try_from(ip.total) else {
            return self.drop(DropReason::TooBig);
        };
        if ip.hop_limit <= 1 {
            return self.drop(DropReason::Ttl);
        }
        let key = FlowKey::five_tuple6(ip.src, ip.dst, sport, dport, ip.proto, self.seed);
        let ident = ip.frag.map_or(0, |f| f.ident);
        let p = FlowPacket::new6(key, self.flows.hash(key), vip, total, ident, more, kind);
        self.flow_packet(buf, head, end, p, now)
    }

    /// TCP or UDP from `src` to the balancer's own IPv6 address (to port `dport`): up to the
    /// local stack (health checks, management), except to the management port from outside
    /// `[management] allow`'s IPv6 prefixes and to BGP and BFD (their peers are IPv4).
    fn local6(&mut self, src: u128, proto: u8, dport: u16) -> Verdict {
        let denied = self.mgmt.as_ref().is_some_and(|m| {
            let allowed = m.allow6.iter().any(|p| p.contains(src.into()));
            m.port == dport && !allowed
        });
        if proto == ipv4::PROTO_TCP && denied {
            return self.drop(DropReason::MgmtDenied);
        }
        let bgp = (proto, dport) == (ipv4::PROTO_TCP, super::classify::BGP_PORT)
            || (proto, dport) == (ipv4::PROTO_UDP, super::classify::BFD_PORT);
        if self.bgp_peers.is_some() && bgp {
            return self.drop(DropReason::BgpDenied);
        }
        self.counters.local += 1;
        Verdict::Local
    }

    /// IPv6 that is not a whole TCP or UDP packet or first fragment: ICMPv6, a later
    /// fragment, another protocol.
    fn ipv6_other(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        ip: Ip6,
        own6: u128,
        now: Instant,
    ) -> Verdict {
        let to_vip = self.vip_addrs6.binary_search(&ip.dst).is_ok();
        if ip.proto == ipv6::PROTO_ICMPV6 && ip.frag.is_none() {
            return self.icmpv6(buf, head, ip, own6, to_vip, now);
        }
        if !to_vip {
            let reason = if ip.dst == own6 {
                DropReason::Unsupported
            } else {
                DropReason::NotVip
            };
            return self.drop(reason);
        }
        if !self.vip_active {
            return self.drop(DropReason::VrrpBackup);
        }
        let Ok(total) = u16::try_from(ip.total) else {
            return self.drop(DropReason::TooBig);
        };
        match ip.proto {
            ipv4::PROTO_TCP | ipv4::PROTO_UDP => {
                self.later_fragment6(buf, head, end, ip, total, now)
            }
            // A fragment of ICMPv6 is neither reassembled nor forwarded.
            ipv6::PROTO_ICMPV6 => self.drop(DropReason::IcmpRefused),
            _ => self.drop(DropReason::NotVip),
        }
    }

    /// A fragment other than the first: where its first fragment went, else (none seen) the
    /// all-ports VIP of its address by a 3-tuple hash, as for IPv4.
    fn later_fragment6(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        ip: Ip6,
        total: u16,
        now: Instant,
    ) -> Verdict {
        let key = FlowKey {
            addrs: fold_addrs6(ip.src, ip.dst, self.seed),
            rest: u64::from(ip.proto) | KEY_V6,
        };
        let ident = ip.frag.map_or(0, |f| f.ident);
        let p = FlowPacket::new6(key, 0, u32::from(ip.hop_limit), total, ident, false, 0);
        let choice = self.fragment_choice(&p, now).or_else(|| {
            let vip = self.all_ports6(ip.dst, ip.proto)?;
            let h = hash_key(
                FlowKey {
                    addrs: fold_addrs6(ip.src, ip.dst, CONSISTENT_SEED),
                    rest: u64::from(ip.proto) | KEY_V6,
                },
                CONSISTENT_SEED,
            );
            let b = self.vips[vip as usize].sched.by_hash(h)?;
            Some((vip, b))
        });
        self.forward_fragment(buf, head, end, p, choice, ip.hop_limit, now)
    }

    /// A whole ICMPv6 message (`ip` parsed from `buf[head..]`).
    fn icmpv6(
        &mut self,
        buf: &mut [u8],
        head: usize,
        ip: Ip6,
        own6: u128,
        to_vip: bool,
        now: Instant,
    ) -> Verdict {
        let l3 = head + ethernet::HEADER_LEN;
        let message = &buf[l3 + ip.l4..l3 + ip.total];
        if message.len() < icmpv6::HEADER_LEN || !icmpv6_checksum_ok(ip.src, ip.dst, message) {
            return self.drop(DropReason::IcmpMalformed);
        }
        match message[icmpv6::TYPE] {
            icmpv6::NEIGHBOUR_SOLICIT => self.solicited(buf, head, ip, own6, now),
            icmpv6::NEIGHBOUR_ADVERT => self.advertised(buf, head, ip, own6, now),
            _ if to_vip && !self.vip_active => self.drop(DropReason::VrrpBackup),
            icmpv6::ECHO_REQUEST if to_vip || ip.dst == own6 => {
                self.echo_reply6(buf, head, ip, now)
            }
            icmpv6::DST_UNREACHABLE
            | icmpv6::PACKET_TOO_BIG
            | icmpv6::TIME_EXCEEDED
            | icmpv6::PARAM_PROBLEM
                if to_vip =>
            {
                self.forward_error6(buf, head, ip, now)
            }
            _ if to_vip || ip.dst == own6 => self.drop(DropReason::IcmpUnsupported),
            // Router and multicast listener messages to groups: nothing the balancer takes part in.
            _ => self.drop(DropReason::NotForUs),
        }
    }

    /// An ICMPv6 error to a VIP: to the backend of the flow it quotes (the reply VIP ->
    /// client, reversed), as that flow's packets go.
    fn forward_error6(&mut self, buf: &mut [u8], head: usize, ip: Ip6, now: Instant) -> Verdict {
        let l3 = head + ethernet::HEADER_LEN;
        let quote_at = l3 + ip.l4 + icmpv6::HEADER_LEN;
        let q = match parse(&buf[quote_at..l3 + ip.total], true) {
            Ok(q) => q,
            Err(_) => return self.drop(DropReason::IcmpMalformed),
        };
        if q.src != ip.dst || q.later_fragment() {
            return self.drop(DropReason::IcmpMalformed);
        }
        if q.proto != ipv4::PROTO_TCP && q.proto != ipv4::PROTO_UDP {
            return self.drop(DropReason::IcmpNotVip);
        }
        let Some(p) = buf
            .get(quote_at + q.l4..l3 + ip.total)
            .and_then(|b| b.first_chunk::<4>())
        else {
            return self.drop(DropReason::IcmpMalformed);
        };
        let (vip_port, client_port) = (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        );
        let Some(vip) = self.lookup6(q.src, vip_port, q.proto) else {
            return self.drop(DropReason::IcmpNotVip);
        };
        if ip.hop_limit <= 1 {
            return self.drop(DropReason::Ttl);
        }
        let (client, v) = (q.dst, q.src);
        let key = FlowKey::five_tuple6(client, v, client_port, vip_port, q.proto, self.seed);
        let ckey = FlowKey {
            addrs: fold_addrs6(client, v, CONSISTENT_SEED),
            rest: key.rest,
        };
        let Some(backend) = self.error_backend(vip, key, ckey, source_id6(client), now) else {
            return self.drop(DropReason::IcmpNoFlow);
        };
        let Ok(total) = u16::try_from(ip.total) else {
            return self.drop(DropReason::TooBig);
        };
        let p = FlowPacket::new6(key, 0, vip, total, 0, false, 0);
        self.forward_error_to(buf, head, l3 + ip.total, p, vip, backend, now)
    }

    /// Whether the balancer may answer the IPv6 frame at `buf[head..]` (from `ip.src`) with
    /// ICMPv6 now, taking a token when it may: not from a group MAC, nor from an address that
    /// is not a unicast peer (unspecified, loopback, multicast, the balancer's own or a VIP's),
    /// and within the rate limit shared with ICMPv4.
    fn may_send_icmp6(
        &mut self,
        buf: &[u8],
        head: usize,
        src: u128,
        now: Instant,
    ) -> Result<(), DropReason> {
        let group_mac = buf
            .get(head + ethernet::SRC.start)
            .is_none_or(|m| m & 1 != 0);
        let own = Some(src) == self.own6() || self.vip_addrs6.binary_search(&src).is_ok();
        if group_mac || src <= 1 || is_multicast(src) || own {
            return Err(DropReason::IcmpRefused);
        }
        if !self.icmp_bucket.take(now) {
            return Err(DropReason::IcmpRateLimited);
        }
        Ok(())
    }

    /// Answer an echo request to `ip.dst` (the balancer's address or a VIP) in place, from
    /// that address: a fixed header that ends where the request's extension headers ended, so
    /// the message stays where it is.
    fn echo_reply6(&mut self, buf: &mut [u8], head: usize, ip: Ip6, now: Instant) -> Verdict {
        if let Err(reason) = self.may_send_icmp6(buf, head, ip.src, now) {
            return self.drop(reason);
        }
        let l3 = head + ethernet::HEADER_LEN;
        let start = head + ip.l4 - ipv6::HEADER_LEN;
        let message_len = ip.total - ip.l4;
        let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + message_len;
        let mut peer_mac = [0; 6];
        peer_mac.copy_from_slice(&buf[head + ethernet::SRC.start..head + ethernet::SRC.end]);
        let mut vtf = [0; 4];
        vtf.copy_from_slice(&buf[l3..l3 + 4]);
        let out = Ipv6Out {
            vtf,
            payload: message_len,
            next: ipv6::PROTO_ICMPV6,
            hop_limit: OUT_HOP_LIMIT,
            src: ip.dst,
            dst: ip.src,
        };
        let frame = &mut buf[start..start + len];
        write_headers6(frame, peer_mac, self.mac, &out);
        let message = &mut frame[ethernet::HEADER_LEN + ipv6::HEADER_LEN..];
        message[icmpv6::TYPE] = icmpv6::ECHO_REPLY;
        message[icmpv6::CODE] = 0;
        fill_icmpv6_checksum(ip.dst, ip.src, message);
        self.counters.icmp_echo_replies += 1;
        Verdict::Reply { head: start, len }
    }

    /// ip6ip6: write Ethernet and an outer IPv6 header (from the balancer's address to
    /// backend slot `slot`, next header 41) in front of the untouched inner packet of `total` bytes; too
    /// big for the MTU, answer "packet too big" instead.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn encapsulate6(
        &mut self,
        buf: &mut [u8],
        head: usize,
        total: u16,
        slot: u32,
        mac: Option<[u8; 6]>,
        now: Instant,
    ) -> Verdict {
        let total = usize::from(total);
        let IpAddr::V6(backend) = self.slots[slot as usize].ip else {
            return self.drop(DropReason::NotVip);
        };
        if total + ipv6::HEADER_LEN > self.mtu {
            return self.too_big6(buf, head, total, now);
        }
        let Some(own6) = self.own6() else {
            return self.drop(DropReason::Unsupported);
        };
        if head < ipv6::HEADER_LEN {
            return self.drop(DropReason::NoHeadroom);
        }
        let l3 = head + ethernet::HEADER_LEN;
        let start = head - ipv6::HEADER_LEN;
        let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + total;
        // The inner traffic class and flow label go outside too: the flow label keeps the
        // flow's ECMP path through routers that hash on it (RFC 6438).
        let mut vtf = [0; 4];
        vtf.copy_from_slice(&buf[l3..l3 + 4]);
        let out = Ipv6Out {
            vtf,
            payload: total,
            next: ipv6::PROTO_IPV6,
            hop_limit: OUT_HOP_LIMIT,
            src: own6,
            dst: u128::from(backend),
        };
        write_headers6(
            &mut buf[start..start + len],
            mac.unwrap_or([0; 6]),
            self.mac,
            &out,
        );
        match mac {
            Some(_) => {
                self.counters.forwarded += 1;
                Verdict::Forward { head: start, len }
            }
            None => self.wait_for_arp(slot, &buf[start..start + len], now),
        }
    }

    /// Answer the sender of the IPv6 packet at `buf[head..]` (`total` bytes) with ICMPv6
    /// "packet too big", MTU = MTU - 40, from the balancer's address, quoting as much of the
    /// packet as keeps the error within 1280 bytes; written in the headroom so that the quoted
    /// bytes stay where they are.
    fn too_big6(&mut self, buf: &mut [u8], head: usize, total: usize, now: Instant) -> Verdict {
        const HEADERS: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmpv6::HEADER_LEN;
        let (src, _) = addrs(buf, head);
        let Some(own6) = self.own6() else {
            return self.drop(DropReason::Unsupported);
        };
        let l3 = head + ethernet::HEADER_LEN;
        // Never answer an ICMPv6 error with one (RFC 4443 2.4 e).
        if buf.get(l3 + ipv6::NEXT_HEADER) == Some(&ipv6::PROTO_ICMPV6)
            && buf
                .get(l3 + ipv6::HEADER_LEN)
                .is_some_and(|&t| t < icmpv6::ECHO_REQUEST)
        {
            return self.drop(DropReason::IcmpRefused);
        }
        if let Err(reason) = self.may_send_icmp6(buf, head, src, now) {
            return self.drop(reason);
        }
        let pre = HEADERS - ethernet::HEADER_LEN;
        if head < pre {
            return self.drop(DropReason::NoHeadroom);
        }
        let start = head - pre;
        let quoted = total.min(ipv6::MIN_MTU - ipv6::HEADER_LEN - icmpv6::HEADER_LEN);
        let len = HEADERS + quoted;
        let mut client_mac = [0; 6];
        client_mac.copy_from_slice(&buf[head + ethernet::SRC.start..head + ethernet::SRC.end]);
        let out = Ipv6Out {
            vtf: [0x60, 0, 0, 0],
            payload: icmpv6::HEADER_LEN + quoted,
            next: ipv6::PROTO_ICMPV6,
            hop_limit: OUT_HOP_LIMIT,
            src: own6,
            dst: src,
        };
        let frame = &mut buf[start..start + len];
        write_headers6(frame, client_mac, self.mac, &out);
        let message = &mut frame[ethernet::HEADER_LEN + ipv6::HEADER_LEN..];
        message[icmpv6::TYPE] = icmpv6::PACKET_TOO_BIG;
        message[icmpv6::CODE] = 0;
        message[icmpv6::WORD]
            .copy_from_slice(&((self.mtu - ipv6::HEADER_LEN) as u32).to_be_bytes());
        fill_icmpv6_checksum(own6, src, message);
        self.counters.icmp_frag_needed += 1;
        self.counters.drops[DropReason::TooBig.index()] += 1;
        Verdict::Reply { head: start, len }
    }
}

#[cfg(test)]
pub(super) mod tests;
