//! ICMP to a VIP, and the limits on the ICMP the balancer sends.
//!
//! **Errors to a VIP.** A backend's replies leave with the VIP as their source, so a router on
//! the way back that cannot pass one (fragmentation needed, time exceeded, unreachable) sends
//! its ICMP error to the VIP, that is to the balancer. Dropped here, the backend would never
//! learn the path MTU (a PMTU black hole). The error quotes the reply's IPv4 header and its
//! first 8 bytes: VIP:port -> client:port. Reversed, that is the key of the flow client ->
//! VIP, which is looked up in the flow table *without* creating an entry (an error creates no
//! state); on a miss, a VIP with a consistent scheduler (`maglev`, `sh`) gives the backend a
//! first packet of that flow would get, so that any balancer of a group finds the same one.
//! The error then goes to that backend exactly as the flow's packets do (dsr-l2 rewrites the
//! MAC, dsr-l3 encapsulates), unchanged: the backend's stack reads the quote itself.
//!
//! **Echo requests to a VIP** are answered by the balancer, from the VIP, in the buffer they
//! arrived in (operators ping VIPs).
//!
//! **What the balancer sends** (echo replies, dsr-l3's "fragmentation needed") passes
//! [`Forwarder::may_send_icmp`]: never in answer to a later fragment, nor to a broadcast,
//! multicast, zero, loopback or own source address, nor to a non-unicast MAC, and at most
//! [`ICMP_RATE`] a second after a burst of [`ICMP_BURST`] (a token bucket), as Linux's
//! `icmp_ratelimit` bounds its own; so a flood of pings or of oversized packets cannot turn
//! the balancer into an amplifier.

use core::net::Ipv4Addr;

use smoltcp::wire::{Icmpv4Packet, Ipv4Packet};

use super::classify::{FlowPacket, Ip};
use super::dispatch::consistent_hash;
use super::field::{be16, be32, ethernet, icmp, ipv4, tcp};
use super::rewrite::Ipv4Out;
use super::{Forwarder, Verdict};
use crate::flow::FlowKey;
use crate::stats::DropReason;
use crate::time::Instant;

/// ICMP messages the balancer sends per second, at most, once its burst is spent.
pub const ICMP_RATE: u64 = 100;
/// ICMP messages the balancer may send at once after a quiet spell.
pub const ICMP_BURST: u64 = 50;

/// A token bucket in thousandths of a token, so that a millisecond's refill is whole.
#[derive(Clone, Copy, Debug)]
pub(super) struct TokenBucket {
    milli: u64,
    at: Instant,
}

impl TokenBucket {
    const FULL: u64 = ICMP_BURST * 1000;

    /// A full bucket.
    pub const fn full() -> TokenBucket {
        TokenBucket {
            milli: TokenBucket::FULL,
            at: Instant::ZERO,
        }
    }

    /// Take a token at `now` if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let refill = now.millis_since(self.at).saturating_mul(ICMP_RATE);
        self.at = self.at.max(now);
        self.milli = self.milli.saturating_add(refill).min(TokenBucket::FULL);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// The flow an ICMP error quotes, as the quote reads (the backend's reply): from the VIP
/// `vip`:`vip_port` to `client`:`client_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Quoted {
    vip: u32,
    client: u32,
    proto: u8,
    vip_port: u16,
    client_port: u16,
}

/// The quoted datagram of an ICMP error (the bytes after its 8-byte header): an IPv4 header
/// with its first 8 bytes of payload, which hold the ports. `Err(IcmpMalformed)` when it is
/// short or not IPv4, or is a later fragment (no ports); `Err(IcmpNotVip)` when it is neither
/// TCP nor UDP, which no VIP carries. The quote's own lengths and checksum are not checked: a
/// router may quote a packet it truncated or whose header it changed.
fn quoted(quote: &[u8]) -> Result<Quoted, DropReason> {
    let malformed = Err(DropReason::IcmpMalformed);
    let Some(&ver_ihl) = quote.first() else {
        return malformed;
    };
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < ipv4::HEADER_LEN || quote.len() < ihl + icmp::QUOTED_PAYLOAD {
        return malformed;
    }
    let ip = Ipv4Packet::new_unchecked(quote);
    let proto = ip.next_header().into();
    if proto != ipv4::PROTO_TCP && proto != ipv4::PROTO_UDP {
        return Err(DropReason::IcmpNotVip);
    }
    if ip.frag_offset() != 0 {
        return malformed;
    }
    let Some(ports) = quote[ihl..].first_chunk::<{ icmp::QUOTED_PAYLOAD }>() else {
        return malformed;
    };
    Ok(Quoted {
        vip: u32::from(ip.src_addr()),
        client: u32::from(ip.dst_addr()),
        proto,
        vip_port: be16(ports, tcp::SRC_PORT),
        client_port: be16(ports, tcp::DST_PORT),
    })
}

/// Whether the balancer may send ICMP to `src`: not zero (0/8), loopback, multicast, reserved
/// or the limited broadcast (224/3), nor the subnet's broadcast address.
fn unicast_peer(src: u32, subnet_broadcast: u32) -> bool {
    let top = src >> 24;
    top != 0 && top != 127 && top < 224 && src != subnet_broadcast
}

impl Forwarder {
    /// An ICMP message not to the balancer's own address (`buf[head..end]`, its IPv4 header
    /// checked; `p` from [`FlowPacket::no_ports`]): to a VIP and whole, forward an error or
    /// answer an echo request; anything else is dropped.
    /// Out of line: TCP and UDP never come here.
    #[inline(never)]
    pub(super) fn icmp(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        now: Instant,
    ) -> Verdict {
        let Some(h) = buf
            .get(head + ethernet::HEADER_LEN..)
            .and_then(|h| h.first_chunk::<{ ipv4::HEADER_LEN }>())
        else {
            return self.drop(DropReason::Malformed);
        };
        let ip = Ip {
            src: be32(h, ipv4::SRC),
            dst: be32(h, ipv4::DST),
            proto: ipv4::PROTO_ICMP,
            ihl: (h[ipv4::VER_IHL] & 0x0f) * 4,
            total: be16(h, ipv4::LENGTH),
            df: h[ipv4::FLAGS] & ipv4::DF != 0,
        };
        if self.vip_addrs.binary_search(&ip.dst).is_err() {
            return self.drop(DropReason::NotVip);
        }
        // A fragment of ICMP is neither reassembled nor forwarded.
        if be16(h, ipv4::FLG_OFF) & ipv4::OFFSET_MASK != 0 || h[ipv4::FLAGS] & ipv4::MF != 0 {
            return self.drop(DropReason::IcmpRefused);
        }
        let p = FlowPacket::no_ports(ip, h[ipv4::TTL], be16(h, ipv4::IDENT));
        let l4 = head + ethernet::HEADER_LEN + ip.ihl();
        let Some(message) = buf.get(l4..head + ethernet::HEADER_LEN + ip.total()) else {
            return self.drop(DropReason::Malformed);
        };
        if message.len() < icmp::HEADER_LEN
            || !Icmpv4Packet::new_unchecked(message).verify_checksum()
        {
            return self.drop(DropReason::IcmpMalformed);
        }
        match message[icmp::TYPE] {
            icmp::ECHO_REQUEST => self.echo_reply(buf, head, p, now),
            icmp::DST_UNREACHABLE | icmp::TIME_EXCEEDED => {
                match quoted(&message[icmp::HEADER_LEN..]) {
                    Ok(q) => self.forward_error(buf, head, end, p, q, now),
                    Err(reason) => self.drop(reason),
                }
            }
            _ => self.drop(DropReason::IcmpUnsupported),
        }
    }

    /// An ICMP error about flow `q` of a VIP: to the flow's backend, as its packets go.
    fn forward_error(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        p: FlowPacket,
        q: Quoted,
        now: Instant,
    ) -> Verdict {
        let ip = p.ip();
        // Sent to the VIP the quote is from, or it is no reply of ours.
        if q.vip != ip.dst {
            return self.drop(DropReason::IcmpMalformed);
        }
        let Some(vip) = self.index.lookup(q.vip, q.vip_port, q.proto) else {
            return self.drop(DropReason::IcmpNotVip);
        };
        // The TTL, where `no_ports` keeps it.
        if p.vip() <= 1 {
            return self.drop(DropReason::Ttl);
        }
        let key = FlowKey::five_tuple(q.client, q.vip, q.client_port, q.vip_port, q.proto);
        let Some(backend) = self.error_backend(vip, key, key, q.client, now) else {
            return self.drop(DropReason::IcmpNoFlow);
        };
        self.forward_error_to(buf, head, end, p, vip, backend, now)
    }

    /// The backend of flow `key` of VIP `vip` that an ICMP error quotes: its entry's, else the
    /// one its first packet would get (`ckey` and `src` identify it as
    /// `dispatch::identity` does). Creates nothing.
    pub(super) fn error_backend(
        &self,
        vip: u32,
        key: FlowKey,
        ckey: FlowKey,
        src: u32,
        now: Instant,
    ) -> Option<u32> {
        let now_s = now.secs32();
        self.flows
            .find(self.flows.hash(key), key)
            .map(|fs| *self.flows.entry(fs))
            .filter(|e| self.slots[e.backend as usize].keeps == vip && e.expires > now_s)
            .map(|e| e.backend)
            .or_else(|| self.first_choice(vip, ckey, src, now_s))
    }

    /// Forward an ICMP error (`p`) to `backend` of `vip` and count it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_error_to(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        p: FlowPacket,
        vip: u32,
        backend: u32,
        now: Instant,
    ) -> Verdict {
        let v = self.forward(buf, head, end, &p, vip, backend, now);
        if matches!(v, Verdict::Forward { .. } | Verdict::Queued) {
            self.counters.icmp_forwarded += 1;
        }
        v
    }

    /// The backend a first packet of flow `key` (from `src`) of VIP `vip` would get, where that
    /// can be told without scheduling it: a live persistence record of `src`, else the VIP's
    /// consistent hash. Creates nothing.
    fn first_choice(&self, vip: u32, key: FlowKey, src: u32, now_s: u32) -> Option<u32> {
        let v = &self.vips[vip as usize];
        if let (Some(_), Some(p)) = (v.persistence, &self.persist) {
            let k = FlowKey::persistence(src, vip);
            let kept = p
                .find(p.hash(k), k)
                .map(|ps| *p.entry(ps))
                .filter(|e| e.expires > now_s)
                .map(|e| e.backend)
                .filter(|&b| {
                    self.slots
                        .get(b as usize)
                        .is_some_and(|s| s.live && s.vip == vip && s.up && s.weight > 0)
                });
            if kept.is_some() {
                return kept;
            }
        }
        v.sched.maglev(consistent_hash(v.scheduler, key, src)?)
    }

    /// Answer an echo request to a VIP in place: from the VIP back to the sender's address and
    /// MAC, the identifier, sequence number and data unchanged. The reply's 20-byte IPv4
    /// header ends where the request's ended (past any options), so the message stays where
    /// it is.
    fn echo_reply(&mut self, buf: &mut [u8], head: usize, p: FlowPacket, now: Instant) -> Verdict {
        if let Err(reason) = self.may_send_icmp(&buf[head..], now) {
            return self.drop(reason);
        }
        let ip = p.ip();
        let l3 = head + ethernet::HEADER_LEN;
        let start = head + ip.ihl() - ipv4::HEADER_LEN;
        let message = ip.total() - ip.ihl();
        let len = ethernet::HEADER_LEN + ipv4::HEADER_LEN + message;
        let mut peer_mac = [0; 6];
        peer_mac.copy_from_slice(&buf[head + ethernet::SRC.start..head + ethernet::SRC.end]);
        let reply = Ipv4Out {
            tos: buf[l3 + ipv4::TOS],
            total: ipv4::HEADER_LEN + message,
            ident: self.next_ident(),
            df: false,
            more_frags: false,
            frag_offset: 0,
            proto: ipv4::PROTO_ICMP,
            src: Ipv4Addr::from(ip.dst),
            dst: Ipv4Addr::from(ip.src),
        };
        let frame = &mut buf[start..start + len];
        self.write_headers(frame, peer_mac, &reply);
        let message = &mut frame[ethernet::HEADER_LEN + ipv4::HEADER_LEN..];
        message[icmp::TYPE] = icmp::ECHO_REPLY;
        message[icmp::CODE] = 0;
        Icmpv4Packet::new_unchecked(message).fill_checksum();
        self.counters.icmp_echo_replies += 1;
        Verdict::Reply { head: start, len }
    }

    /// Whether the balancer may answer `frame` (an IPv4 frame whose header classification
    /// checked) with ICMP now, taking a token when it may: not a later fragment, not from a
    /// multicast or broadcast MAC, nor from an address that is not a unicast peer (zero,
    /// loopback, multicast, broadcast, the balancer's own or a VIP's), and within the rate
    /// limit.
    pub(super) fn may_send_icmp(&mut self, frame: &[u8], now: Instant) -> Result<(), DropReason> {
        let l3 = ethernet::HEADER_LEN;
        let (Some(&src_mac0), Some(h)) = (
            frame.get(ethernet::SRC.start),
            frame
                .get(l3..)
                .and_then(|b| b.first_chunk::<{ ipv4::HEADER_LEN }>()),
        ) else {
            return Err(DropReason::Malformed);
        };
        let later_fragment = be16(h, ipv4::FLG_OFF) & ipv4::OFFSET_MASK != 0;
        let src = be32(h, ipv4::SRC);
        let own = src == u32::from(self.own) || self.vip_addrs.binary_search(&src).is_ok();
        if later_fragment
            || src_mac0 & 1 != 0
            || own
            || !unicast_peer(src, u32::from(self.subnet.broadcast()))
        {
            return Err(DropReason::IcmpRefused);
        }
        if !self.icmp_bucket.take(now) {
            return Err(DropReason::IcmpRateLimited);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests;
