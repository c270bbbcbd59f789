//! Rewriting a VIP's packet for its backend, in the buffer it arrived in: dsr-l2 changes the
//! two Ethernet addresses; dsr-l3 writes an outer IPv4 header (and a new Ethernet header) into
//! the headroom in front of the untouched inner packet, splits the *outer* packet in two when
//! it exceeds the MTU without DF, and answers ICMP "fragmentation needed" when it exceeds it
//! with DF. Every IPv4 header the balancer originates on the data path is written by one
//! function, [`Forwarder::write_headers`].

use core::net::{IpAddr, Ipv4Addr};

use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet, IpProtocol,
    Ipv4Packet,
};

use super::classify::{FlowPacket, Ip};
use super::field::{ethernet, icmp, ipv4};
use super::{Forwarder, Verdict};
use crate::config::Mode;
use crate::stats::DropReason;
use crate::time::Instant;

/// TTL of every IPv4 header the balancer writes.
const OUTER_TTL: u8 = 64;

/// The variable fields of an IPv4 header the balancer writes (no options; the TTL
/// [`OUTER_TTL`]).
pub(super) struct Ipv4Out {
    /// DSCP and ECN.
    pub tos: u8,
    /// Total length, header included.
    pub total: usize,
    pub ident: u16,
    pub df: bool,
    pub more_frags: bool,
    /// In bytes (a multiple of 8).
    pub frag_offset: u16,
    pub proto: u8,
    /// The balancer's address, or a VIP's (an echo reply).
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Forwarder {
    /// Count and rewrite a packet (`p`, a flow's packet or a later fragment) for `backend` of
    /// `vip`. The packet's IPv4 facts are unpacked only where dsr-l3 needs them: built up front,
    /// they were kept on the stack for every packet.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn forward(
        &mut self,
        buf: &mut [u8],
        head: usize,
        end: usize,
        p: &FlowPacket,
        vip: u32,
        backend: u32,
        now: Instant,
    ) -> Verdict {
        let total = u64::from(p.total());
        let v = &mut self.vips[vip as usize];
        v.packets += 1;
        v.bytes += total;
        let mode = v.mode;
        let s = &mut self.slots[backend as usize];
        s.packets += 1;
        s.bytes += total;
        let address = s.address;
        // The next hop's address is read only when its MAC is missing.
        let mac = self
            .neigh
            .get(s.neigh)
            .filter(|n| n.resolved)
            .map(|n| n.mac);
        match mode {
            Mode::DsrL2 => {
                let mut eth = EthernetFrame::new_unchecked(&mut buf[head..end]);
                eth.set_src_addr(EthernetAddress(self.mac));
                match mac {
                    Some(mac) => {
                        eth.set_dst_addr(EthernetAddress(mac));
                        self.counters.forwarded += 1;
                        Verdict::Forward {
                            head,
                            len: end - head,
                        }
                    }
                    None => self.wait_for_arp(backend, &buf[head..end], now),
                }
            }
            Mode::DsrL3 if p.is_v6() => self.encapsulate6(buf, head, p.total(), backend, mac, now),
            Mode::DsrL3 => self.encapsulate(buf, head, p.ip(), address, backend, mac, now),
        }
    }

    /// The next hop of backend slot `backend`: its neighbour's address (itself or the
    /// gateway), or its own where it has none.
    pub(super) fn hop_of(&self, backend: u32) -> IpAddr {
        let s = &self.slots[backend as usize];
        self.neigh.get(s.neigh).map_or(s.ip, |n| n.ip)
    }

    /// Copy `frame` to wait for the MAC of backend slot `backend`'s next hop
    /// ([`Forwarder::poll`] releases it).
    pub(super) fn wait_for_arp(&mut self, backend: u32, frame: &[u8], now: Instant) -> Verdict {
        if self.neigh.enqueue(self.hop_of(backend), frame, now) {
            self.counters.arp_queued += 1;
            Verdict::Queued
        } else {
            self.drop(DropReason::ArpQueueFull)
        }
    }

    pub(super) fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// The Ethernet header (to `dst_mac`, from us, IPv4) and the IPv4 header `h` at the front
    /// of `frame`: the one writer of the IPv4 headers the balancer originates here
    /// (encapsulation, each outer fragment, ICMP replies).
    #[inline(always)]
    pub(super) fn write_headers(&self, frame: &mut [u8], dst_mac: [u8; 6], h: &Ipv4Out) {
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..ethernet::HEADER_LEN]);
        eth.set_dst_addr(EthernetAddress(dst_mac));
        eth.set_src_addr(EthernetAddress(self.mac));
        eth.set_ethertype(EthernetProtocol::Ipv4);
        let mut ip = Ipv4Packet::new_unchecked(
            &mut frame[ethernet::HEADER_LEN..ethernet::HEADER_LEN + ipv4::HEADER_LEN],
        );
        ip.set_version(4);
        ip.set_header_len(ipv4::HEADER_LEN as u8);
        ip.set_dscp(h.tos >> 2);
        ip.set_ecn(h.tos & 3);
        ip.set_total_len(h.total as u16);
        ip.set_ident(h.ident);
        ip.clear_flags();
        ip.set_dont_frag(h.df);
        ip.set_more_frags(h.more_frags);
        ip.set_frag_offset(h.frag_offset);
        ip.set_hop_limit(OUTER_TTL);
        ip.set_next_header(IpProtocol::from(h.proto));
        ip.set_src_addr(h.src);
        ip.set_dst_addr(h.dst);
        ip.fill_checksum();
    }

    /// IP-in-IP: write Ethernet + outer IPv4 in front of the untouched inner packet.
    #[allow(clippy::too_many_arguments)]
    fn encapsulate(
        &mut self,
        buf: &mut [u8],
        head: usize,
        ip: Ip,
        backend: Ipv4Addr,
        slot: u32,
        mac: Option<[u8; 6]>,
        now: Instant,
    ) -> Verdict {
        if ip.total() + ipv4::HEADER_LEN > self.mtu {
            if ip.df {
                return self.frag_needed(buf, head, ip, now);
            }
            return self.encapsulate_fragmented(buf, head, ip, backend, slot, mac, now);
        }
        if head < ipv4::HEADER_LEN {
            return self.drop(DropReason::NoHeadroom);
        }
        let start = head - ipv4::HEADER_LEN;
        let len = ethernet::HEADER_LEN + ipv4::HEADER_LEN + ip.total();
        let tos = buf[head + ethernet::HEADER_LEN + ipv4::TOS];
        let outer = Ipv4Out {
            tos,
            total: ip.total() + ipv4::HEADER_LEN,
            ident: self.next_ident(),
            df: ip.df,
            more_frags: false,
            frag_offset: 0,
            proto: ipv4::PROTO_IPIP,
            src: self.own,
            dst: backend,
        };
        self.write_headers(&mut buf[start..start + len], mac.unwrap_or([0; 6]), &outer);
        match mac {
            Some(_) => {
                self.counters.forwarded += 1;
                Verdict::Forward { head: start, len }
            }
            None => self.wait_for_arp(slot, &buf[start..start + len], now),
        }
    }

    /// Without DF, split the *outer* packet in two (as Linux's ip_fragment does for IPVS): the
    /// first fragment is the verdict, the second waits in the neighbour queue for `poll`.
    #[allow(clippy::too_many_arguments)]
    fn encapsulate_fragmented(
        &mut self,
        buf: &mut [u8],
        head: usize,
        ip: Ip,
        backend: Ipv4Addr,
        slot: u32,
        mac: Option<[u8; 6]>,
        now: Instant,
    ) -> Verdict {
        const HEADERS: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
        let first = (self.mtu - ipv4::HEADER_LEN) / 8 * 8;
        let rest = ip.total() - first;
        if rest + ipv4::HEADER_LEN > self.mtu || HEADERS + rest > self.scratch.len() {
            return self.drop(DropReason::TooBig);
        }
        if head < ipv4::HEADER_LEN {
            return self.drop(DropReason::NoHeadroom);
        }
        let l3 = head + ethernet::HEADER_LEN;
        let mut outer = Ipv4Out {
            tos: buf[l3 + ipv4::TOS],
            total: ipv4::HEADER_LEN + rest,
            ident: self.next_ident(),
            df: false,
            more_frags: false,
            frag_offset: first as u16,
            proto: ipv4::PROTO_IPIP,
            src: self.own,
            dst: backend,
        };
        let dst_mac = mac.unwrap_or([0; 6]);
        // Second fragment first, while the inner bytes are all still in place.
        let mut scratch = core::mem::take(&mut self.scratch);
        let second_len = HEADERS + rest;
        scratch[HEADERS..second_len].copy_from_slice(&buf[l3 + first..l3 + ip.total()]);
        self.write_headers(&mut scratch[..second_len], dst_mac, &outer);
        let queued = self
            .neigh
            .enqueue(self.hop_of(slot), &scratch[..second_len], now);
        self.scratch = scratch;
        if !queued {
            return self.drop(DropReason::ArpQueueFull);
        }
        let start = head - ipv4::HEADER_LEN;
        let len = HEADERS + first;
        outer.total = ipv4::HEADER_LEN + first;
        outer.more_frags = true;
        outer.frag_offset = 0;
        self.write_headers(&mut buf[start..start + len], dst_mac, &outer);
        self.counters.fragmented += 1;
        match mac {
            Some(_) => {
                self.counters.forwarded += 1;
                Verdict::Forward { head: start, len }
            }
            None => self.wait_for_arp(slot, &buf[start..start + len], now),
        }
    }

    /// Answer the client with ICMP "fragmentation needed" (type 3 code 4, next-hop MTU =
    /// MTU - 20) quoting the original IP header and 8 bytes, written in the headroom so that the
    /// quoted bytes stay where they are. Not for an ICMP message (an error is never answered
    /// with one), nor where [`Forwarder::may_send_icmp`] refuses.
    fn frag_needed(&mut self, buf: &mut [u8], head: usize, ip: Ip, now: Instant) -> Verdict {
        const HEADERS: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + icmp::HEADER_LEN;
        if ip.proto == ipv4::PROTO_ICMP {
            return self.drop(DropReason::IcmpRefused);
        }
        if let Err(reason) = self.may_send_icmp(&buf[head..], now) {
            return self.drop(reason);
        }
        // The new headers take the old Ethernet header's place and this much in front of it.
        let pre = HEADERS - ethernet::HEADER_LEN;
        if head < pre {
            return self.drop(DropReason::NoHeadroom);
        }
        let start = head - pre;
        let quoted = (ip.ihl() + icmp::QUOTED_PAYLOAD).min(ip.total());
        let len = HEADERS + quoted;
        let mut client_mac = [0; 6];
        client_mac.copy_from_slice(&buf[head + ethernet::SRC.start..head + ethernet::SRC.end]);
        let reply = Ipv4Out {
            tos: 0,
            total: ipv4::HEADER_LEN + icmp::HEADER_LEN + quoted,
            ident: self.next_ident(),
            df: false,
            more_frags: false,
            frag_offset: 0,
            proto: ipv4::PROTO_ICMP,
            src: self.own,
            dst: Ipv4Addr::from(ip.src),
        };
        let frame = &mut buf[start..start + len];
        self.write_headers(frame, client_mac, &reply);
        let message = &mut frame[ethernet::HEADER_LEN + ipv4::HEADER_LEN..];
        message[icmp::UNUSED].fill(0);
        message[icmp::NEXT_HOP_MTU]
            .copy_from_slice(&((self.mtu - ipv4::HEADER_LEN) as u16).to_be_bytes());
        let mut msg = Icmpv4Packet::new_unchecked(message);
        msg.set_msg_type(Icmpv4Message::DstUnreachable);
        msg.set_msg_code(icmp::FRAG_NEEDED);
        msg.fill_checksum();
        self.counters.icmp_frag_needed += 1;
        self.counters.drops[DropReason::TooBig.index()] += 1;
        Verdict::Reply { head: start, len }
    }
}
