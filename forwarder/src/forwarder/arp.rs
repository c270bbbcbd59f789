//! ARP on the data plane (see [`crate::neigh`] for why the forwarder owns it): answering
//! requests for the balancer's address and every VIP in place, learning next hops from every
//! ARP packet (by the neighbour table's hygiene rules: no zero, group or own MAC, no change
//! within a second, nothing over a pinned MAC), passing replies addressed to the balancer up to the local stack, and building
//! the ARP frames the balancer sends: requests for next hops, gratuitous ARP for its addresses,
//! and the synthesized replies that tell the local stack about a neighbour
//! ([`neighbour_hint`]). [`is_arp_reply`] recognises the local stack's own replies, which the
//! kernel drops on the way out: the forwarder has answered already.

use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::wire::EthernetProtocol;
use smoltcp::wire::{ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame};

use super::field::{arp, ethernet};
use super::{Forwarder, Verdict};
use crate::config::Config;
use crate::neigh::{usable_mac, Learnt};
use crate::stats::DropReason;
use crate::time::Instant;

/// An ARP frame (padded to the Ethernet minimum).
pub type ArpFrame = [u8; ethernet::MIN_FRAME];

/// The two address pairs of an ARP packet.
struct Pairs {
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
}

/// Write an Ethernet/IPv4 ARP packet with Ethernet addresses `to` and `from` into `frame`.
fn write(frame: &mut ArpFrame, to: [u8; 6], from: [u8; 6], op: ArpOperation, p: &Pairs) {
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(EthernetAddress(to));
    eth.set_src_addr(EthernetAddress(from));
    eth.set_ethertype(EthernetProtocol::Arp);
    let mut a =
        ArpPacket::new_unchecked(&mut frame[ethernet::HEADER_LEN..ethernet::HEADER_LEN + arp::LEN]);
    a.set_hardware_type(ArpHardware::Ethernet);
    a.set_protocol_type(EthernetProtocol::Ipv4);
    a.set_hardware_len(6);
    a.set_protocol_len(4);
    a.set_operation(op);
    a.set_source_hardware_addr(&p.sha);
    a.set_source_protocol_addr(&p.spa.octets());
    a.set_target_hardware_addr(&p.tha);
    a.set_target_protocol_addr(&p.tpa.octets());
}

/// A broadcast ARP request for `target` from (`mac`, `own`).
pub(super) fn request(mac: [u8; 6], own: Ipv4Addr, target: Ipv4Addr) -> ArpFrame {
    let mut frame = [0; ethernet::MIN_FRAME];
    let pairs = Pairs {
        sha: mac,
        spa: own,
        tha: [0; 6],
        tpa: target,
    };
    write(
        &mut frame,
        EthernetAddress::BROADCAST.0,
        mac,
        ArpOperation::Request,
        &pairs,
    );
    frame
}

/// A gratuitous ARP for `addr` from the NIC `mac`: a broadcast request with sender = target =
/// `addr`, so that the link's caches (and switches) learn where `addr` now is.
pub fn gratuitous(mac: [u8; 6], addr: Ipv4Addr) -> ArpFrame {
    let mut frame = [0; ethernet::MIN_FRAME];
    let pairs = Pairs {
        sha: mac,
        spa: addr,
        tha: [0; 6],
        tpa: addr,
    };
    write(
        &mut frame,
        EthernetAddress::BROADCAST.0,
        mac,
        ArpOperation::Request,
        &pairs,
    );
    frame
}

/// An ARP reply from `peer` (at `ip`) to the balancer (`mac`, `own`): handed to the local stack
/// as if received, it is how the kernel tells smoltcp a neighbour it knows (see
/// [`Forwarder::take_neighbour_hint`]).
pub fn neighbour_hint(mac: [u8; 6], own: Ipv4Addr, ip: Ipv4Addr, peer: [u8; 6]) -> ArpFrame {
    let mut frame = [0; ethernet::MIN_FRAME];
    let pairs = Pairs {
        sha: peer,
        spa: ip,
        tha: mac,
        tpa: own,
    };
    write(&mut frame, mac, peer, ArpOperation::Reply, &pairs);
    frame
}

/// Whether `frame` is an ARP reply (the local stack's, on its way out: redundant, since the
/// forwarder answers every request for the balancer's addresses).
pub fn is_arp_reply(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    eth.ethertype() == EthernetProtocol::Arp
        && ArpPacket::new_checked(eth.payload()).is_ok_and(|a| a.operation() == ArpOperation::Reply)
}

/// The addresses the balancer answers ARP for under `config`, as it announces them: its own,
/// then every VIP's (sorted, unique, without its own).
pub fn announced(config: &Config) -> Vec<Ipv4Addr> {
    let own = config.interface.address.address;
    let mut vips: Vec<Ipv4Addr> = config
        .vips
        .iter()
        .filter_map(|v| match v.address {
            core::net::IpAddr::V4(a) => Some(a),
            core::net::IpAddr::V6(_) => None,
        })
        .collect();
    vips.sort_unstable();
    vips.dedup();
    let mut all = vec![own];
    all.extend(vips.into_iter().filter(|a| *a != own));
    all
}

fn ip_of(bytes: &[u8]) -> Ipv4Addr {
    let mut o = [0u8; 4];
    o.copy_from_slice(&bytes[..4]);
    Ipv4Addr::from(o)
}

impl Forwarder {
    /// An ARP frame `buf[head..end]` (its Ethernet header checked): learn the sender if it is
    /// a next hop, answer a request for one of our addresses in place, pass a reply to us up.
    pub(super) fn arp(&mut self, buf: &mut [u8], head: usize, end: usize, now: Instant) -> Verdict {
        let l3 = head + ethernet::HEADER_LEN;
        let parsed = match ArpPacket::new_checked(&buf[l3..end]) {
            Ok(p)
                if p.hardware_type() == ArpHardware::Ethernet
                    && p.protocol_type() == EthernetProtocol::Ipv4
                    && p.hardware_len() == 6
                    && p.protocol_len() == 4 =>
            {
                let mut sha = [0u8; 6];
                sha.copy_from_slice(p.source_hardware_addr());
                let spa = ip_of(p.source_protocol_addr());
                let tpa = ip_of(p.target_protocol_addr());
                Some((p.operation(), sha, spa, tpa))
            }
            _ => None,
        };
        let Some((op, sha, spa, tpa)) = parsed else {
            return self.drop(DropReason::Malformed);
        };
        if self.neigh.learn(spa.into(), sha, now) == Learnt::Changed {
            self.counters.neigh_changes += 1;
        }
        let vip = tpa != self.own && self.vip_addrs.binary_search(&u32::from(tpa)).is_ok();
        if vip && !self.vip_active {
            // A VRRP backup: the master answers for the VIPs.
            return self.drop(DropReason::VrrpBackup);
        }
        let ours = tpa == self.own || vip;
        match op {
            ArpOperation::Request if ours => {
                let mut eth = EthernetFrame::new_unchecked(&mut buf[head..end]);
                eth.set_dst_addr(EthernetAddress(sha));
                eth.set_src_addr(EthernetAddress(self.mac));
                let mut p = ArpPacket::new_unchecked(&mut buf[l3..end]);
                p.set_operation(ArpOperation::Reply);
                p.set_source_hardware_addr(&self.mac);
                p.set_source_protocol_addr(&tpa.octets());
                p.set_target_hardware_addr(&sha);
                p.set_target_protocol_addr(&spa.octets());
                self.counters.arp_replies += 1;
                if tpa == self.own && usable_mac(sha, self.mac) {
                    // The asker will talk to the local stack next, which must know it to answer.
                    self.hints.push(spa, sha);
                }
                Verdict::Reply {
                    head,
                    len: end - head,
                }
            }
            ArpOperation::Reply if tpa == self.own => {
                self.counters.local += 1;
                Verdict::Local
            }
            ArpOperation::Request | ArpOperation::Reply => self.drop(DropReason::NotForUs),
            _ => self.drop(DropReason::Unsupported),
        }
    }
}

#[cfg(test)]
mod tests;
