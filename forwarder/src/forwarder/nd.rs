//! Neighbour discovery (RFC 4861) on the data plane, IPv6's ARP (see [`crate::neigh`] for why
//! the forwarder owns it): answering solicitations for the balancer's IPv6 address and every
//! IPv6 VIP, learning next hops (backends on the link, `gateway6`) from advertisements and
//! from the source link-layer option of solicitations, with the neighbour table's hygiene rules
//! (only next hops, no zero, group or own MAC, no change within a second, nothing over a
//! pinned MAC), and building the frames the balancer sends: solicitations for next hops and
//! unsolicited advertisements for its addresses (IPv6's gratuitous ARP).
//!
//! What arrives is checked as RFC 4861 7.1 asks: hop limit 255 (no router forwarded it), code
//! 0, a valid checksum (checked before), a target that is not multicast, options of nonzero
//! length, and no source link-layer option from the unspecified address.

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv6Addr};

use super::field::{ethernet, icmpv6, ipv6};
use super::ipv6::{fill_icmpv6_checksum, is_multicast, write_headers6, Ip6, Ipv6Out};
use super::{Forwarder, Verdict};
use crate::config::Config;
use crate::neigh::Learnt;
use crate::stats::DropReason;
use crate::time::Instant;

/// Length of every neighbour discovery frame the balancer sends: Ethernet, IPv6, the 24-byte
/// message and one link-layer address option.
pub const ND_FRAME_LEN: usize =
    ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmpv6::ND_LEN + icmpv6::LL_OPT_LEN;

/// A neighbour discovery frame.
pub type NdFrame = [u8; ND_FRAME_LEN];

/// All nodes on the link, ff02::1: where unsolicited advertisements go.
const ALL_NODES: u128 = 0xff02_0000_0000_0000_0000_0000_0000_0001;

/// The solicited-node multicast address of `target` (ff02::1:ffXX:XXXX, RFC 4291 2.7.1).
fn solicited_node(target: u128) -> u128 {
    0xff02_0000_0000_0000_0000_0001_ff00_0000 | (target & 0x00ff_ffff)
}

/// The Ethernet group address of IPv6 multicast address `group` (33:33 and its low 32 bits,
/// RFC 2464 7).
fn group_mac(group: u128) -> [u8; 6] {
    let low = (group as u32).to_be_bytes();
    [0x33, 0x33, low[0], low[1], low[2], low[3]]
}

/// A neighbour discovery message from `src` to `dst` (Ethernet `to`, from `mac`): `kind`
/// (solicitation or advertisement) with `flags` in its second word, about `target`, with
/// `mac` in a link-layer option of type `option`.
#[allow(clippy::too_many_arguments)]
fn write(
    frame: &mut [u8],
    to: [u8; 6],
    mac: [u8; 6],
    src: u128,
    dst: u128,
    kind: u8,
    flags: u32,
    target: u128,
    option: u8,
) {
    let out = Ipv6Out {
        vtf: [0x60, 0, 0, 0],
        payload: icmpv6::ND_LEN + icmpv6::LL_OPT_LEN,
        next: ipv6::PROTO_ICMPV6,
        hop_limit: icmpv6::ND_HOP_LIMIT,
        src,
        dst,
    };
    write_headers6(frame, to, mac, &out);
    let m = &mut frame[ethernet::HEADER_LEN + ipv6::HEADER_LEN..ND_FRAME_LEN];
    m[icmpv6::TYPE] = kind;
    m[icmpv6::CODE] = 0;
    m[icmpv6::WORD].copy_from_slice(&flags.to_be_bytes());
    m[icmpv6::TARGET].copy_from_slice(&target.to_be_bytes());
    let opt = &mut m[icmpv6::ND_LEN..];
    opt[0] = option;
    opt[1] = 1;
    opt[2..8].copy_from_slice(&mac);
    fill_icmpv6_checksum(src, dst, m);
}

/// A solicitation for `target` from (`mac`, `own`), to the target's solicited-node group.
pub fn solicitation(mac: [u8; 6], own: Ipv6Addr, target: Ipv6Addr) -> NdFrame {
    let mut frame = [0; ND_FRAME_LEN];
    let group = solicited_node(u128::from(target));
    write(
        &mut frame,
        group_mac(group),
        mac,
        u128::from(own),
        group,
        icmpv6::NEIGHBOUR_SOLICIT,
        0,
        u128::from(target),
        icmpv6::OPT_SOURCE_LL,
    );
    frame
}

/// An unsolicited advertisement of `addr` at `mac` to all nodes, with the override flag, so
/// that every neighbour's cache points `addr` here (RFC 4861 7.2.6).
pub fn unsolicited_advertisement(mac: [u8; 6], addr: Ipv6Addr) -> NdFrame {
    let mut frame = [0; ND_FRAME_LEN];
    write(
        &mut frame,
        group_mac(ALL_NODES),
        mac,
        u128::from(addr),
        ALL_NODES,
        icmpv6::NEIGHBOUR_ADVERT,
        icmpv6::NA_OVERRIDE,
        u128::from(addr),
        icmpv6::OPT_TARGET_LL,
    );
    frame
}

/// An advertisement of `ip` at `peer`, as if `ip` sent it to (`mac`, `own`) in answer to a
/// solicitation: how the kernel tells its local stack a neighbour the forwarder resolved (as
/// [`super::arp::neighbour_hint`] does for IPv4).
pub fn neighbour_hint(mac: [u8; 6], own: Ipv6Addr, ip: Ipv6Addr, peer: [u8; 6]) -> NdFrame {
    let mut frame = [0; ND_FRAME_LEN];
    write(
        &mut frame,
        mac,
        peer,
        u128::from(ip),
        u128::from(own),
        icmpv6::NEIGHBOUR_ADVERT,
        icmpv6::NA_SOLICITED | icmpv6::NA_OVERRIDE,
        u128::from(ip),
        icmpv6::OPT_TARGET_LL,
    );
    frame
}

/// The IPv6 addresses the balancer answers solicitations for under `config`, as it announces
/// them: its own (with `interface.address6`), then every IPv6 VIP's (sorted, unique).
pub fn announced6(config: &Config) -> Vec<Ipv6Addr> {
    let own = config.interface.address6.map(|p| p.address);
    let mut vips: Vec<Ipv6Addr> = config
        .vips
        .iter()
        .filter_map(|v| match v.address {
            IpAddr::V6(a) if Some(a) != own => Some(a),
            _ => None,
        })
        .collect();
    vips.sort_unstable();
    vips.dedup();
    own.into_iter().chain(vips).collect()
}

/// The MAC of the first link-layer address option of type `kind` in `options`;
/// `Err(())` when an option has length 0 or runs past the end.
fn ll_option(mut options: &[u8], kind: u8) -> Result<Option<[u8; 6]>, ()> {
    let mut found = None;
    while !options.is_empty() {
        let [t, len, ..] = *options else {
            return Err(());
        };
        let len = usize::from(len) * 8;
        if len == 0 || len > options.len() {
            return Err(());
        }
        if t == kind && len == icmpv6::LL_OPT_LEN && found.is_none() {
            let mut mac = [0; 6];
            mac.copy_from_slice(&options[2..8]);
            found = Some(mac);
        }
        options = &options[len..];
    }
    Ok(found)
}

/// The checked parts of the neighbour solicitation or advertisement in the frame at
/// `buf[head..]` (`ip` parsed from it): its target and the MAC of its link-layer option of type
/// `option`.
fn checked(buf: &[u8], head: usize, ip: &Ip6, option: u8) -> Option<(u128, Option<[u8; 6]>)> {
    let l3 = head + ethernet::HEADER_LEN;
    let message = &buf[l3 + ip.l4..l3 + ip.total];
    if ip.hop_limit != icmpv6::ND_HOP_LIMIT
        || message.len() < icmpv6::ND_LEN
        || message[icmpv6::CODE] != 0
    {
        return None;
    }
    let target = u128::from_be_bytes(message[icmpv6::TARGET].try_into().ok()?);
    if is_multicast(target) {
        return None;
    }
    let mac = ll_option(&message[icmpv6::ND_LEN..], option).ok()?;
    Some((target, mac))
}

impl Forwarder {
    /// Learn next hop `ip` at `mac` by the neighbour table's rules, counting a changed MAC.
    fn learn6(&mut self, ip: u128, mac: [u8; 6], now: Instant) {
        if self.neigh.learn(IpAddr::V6(Ipv6Addr::from(ip)), mac, now) == Learnt::Changed {
            self.counters.neigh_changes += 1;
        }
    }

    /// A neighbour solicitation (`ip` parsed from `buf[head..]`, checksum checked): learn the
    /// sender if it is a next hop, and answer in place when the target is the balancer's
    /// address or (while it serves them) a VIP.
    pub(super) fn solicited(
        &mut self,
        buf: &mut [u8],
        head: usize,
        ip: Ip6,
        own6: u128,
        now: Instant,
    ) -> Verdict {
        let Some((target, sender_mac)) = checked(buf, head, &ip, icmpv6::OPT_SOURCE_LL) else {
            return self.drop(DropReason::IcmpMalformed);
        };
        // Duplicate address detection: from the unspecified address, never with an option.
        let dad = ip.src == 0;
        if dad && sender_mac.is_some() {
            return self.drop(DropReason::IcmpMalformed);
        }
        if let Some(mac) = sender_mac {
            self.learn6(ip.src, mac, now);
        }
        let vip = target != own6 && self.vip_addrs6.binary_search(&target).is_ok();
        if vip && !self.vip_active {
            return self.drop(DropReason::VrrpBackup);
        }
        if target != own6 && !vip {
            return self.drop(DropReason::NotForUs);
        }
        if buf.len() < head + ND_FRAME_LEN {
            return self.drop(DropReason::NoHeadroom);
        }
        let mut asker_mac = [0; 6];
        asker_mac.copy_from_slice(&buf[head + ethernet::SRC.start..head + ethernet::SRC.end]);
        let (to, dst, flags) = if dad {
            (group_mac(ALL_NODES), ALL_NODES, icmpv6::NA_OVERRIDE)
        } else {
            let flags = icmpv6::NA_SOLICITED | icmpv6::NA_OVERRIDE;
            (sender_mac.unwrap_or(asker_mac), ip.src, flags)
        };
        write(
            &mut buf[head..head + ND_FRAME_LEN],
            to,
            self.mac,
            target,
            dst,
            icmpv6::NEIGHBOUR_ADVERT,
            flags,
            target,
            icmpv6::OPT_TARGET_LL,
        );
        self.counters.arp_replies += 1;
        Verdict::Reply {
            head,
            len: ND_FRAME_LEN,
        }
    }

    /// A neighbour advertisement (`ip` parsed from `buf[head..]`, checksum checked): learn the
    /// target if it is a next hop. Addressed to the balancer's address it also goes up to the
    /// local stack (which resolves the peers it talks to itself); to a group it is consumed
    /// here; to anyone else it is dropped as not for us.
    pub(super) fn advertised(
        &mut self,
        buf: &mut [u8],
        head: usize,
        ip: Ip6,
        own6: u128,
        now: Instant,
    ) -> Verdict {
        let Some((target, mac)) = checked(buf, head, &ip, icmpv6::OPT_TARGET_LL) else {
            return self.drop(DropReason::IcmpMalformed);
        };
        if let Some(mac) = mac {
            self.learn6(target, mac, now);
        }
        if ip.dst == own6 {
            // An answer to the local stack's own solicitation (it resolves the peers it talks
            // to that are no next hop, as with ARP replies to the balancer's address).
            self.counters.local += 1;
            return Verdict::Local;
        }
        if is_multicast(ip.dst) {
            self.counters.local += 1;
            return Verdict::Consumed;
        }
        self.drop(DropReason::NotForUs)
    }
}

#[cfg(test)]
mod tests;
