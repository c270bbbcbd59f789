//! VRRP on the image: owns the virtual router of `[vrrp]` (`control::vrrp::Router`), feeds it
//! the advertisements the forwarder passed up and the time, sends what it asks, and switches the
//! forwarder's VIP role with its state.
//!
//! Advertisements leave from the interface address to 224.0.0.18 with TTL 255, from the virtual
//! router's MAC `00:00:5e:00:01:{vrid}` as RFC 9568 asks (virtio-net sends any source MAC).
//! Everything that answers for a VIP, however, uses the NIC's own MAC: the forwarder's ARP
//! replies and the gratuitous ARP sent on becoming master (as keepalived does without
//! `use_vmac`). The NIC then never has to receive frames to the virtual MAC (a unicast filter
//! the drivers do not program), and a client's neighbour entry for a VIP names the master's NIC,
//! which a takeover's gratuitous ARP moves to the new master. Entering master sends a
//! gratuitous ARP for every VIP at once and again [`GARP_REPEAT`] times, [`GARP_GAP_MS`] apart
//! (keepalived's `garp_master_repeat`), so that a lost frame or a slow switch does not leave
//! clients at the old master.

use alloc::vec::Vec;
use control::config::{Config, Vrrp};
use control::vrrp::{self as logic, Output, Router, State, Status};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use forwarder::Forwarder;
use log::{info, warn};

/// Rounds of gratuitous ARP after the first one on becoming master.
const GARP_REPEAT: u8 = 4;
/// Time between two rounds of gratuitous ARP.
const GARP_GAP_MS: u64 = 500;

/// The IPv4 VIP addresses of `config` (sorted, unique): what the advertisements carry.
fn vip_addresses(config: &Config) -> Vec<Ipv4Addr> {
    addresses_of(config, |a| match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    })
}

/// The IPv6 VIP addresses of `config` (sorted, unique): not advertised (the advertisements are
/// IPv4's), they follow the master as keepalived's `virtual_ipaddress_excluded` do.
fn vip_addresses6(config: &Config) -> Vec<Ipv6Addr> {
    addresses_of(config, |a| match a {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    })
}

/// The VIP addresses of `config` that `pick` takes, sorted and unique.
fn addresses_of<A: Ord>(config: &Config, pick: impl Fn(IpAddr) -> Option<A>) -> Vec<A> {
    let mut a: Vec<A> = config.vips.iter().filter_map(|v| pick(v.address)).collect();
    a.sort_unstable();
    a.dedup();
    a
}

/// The image's virtual router.
pub struct VrrpNode {
    config: Vrrp,
    router: Router,
    own: Ipv4Addr,
    /// The IPv6 VIPs, announced by unsolicited neighbour advertisements with the gratuitous ARP.
    vips6: Vec<Ipv6Addr>,
    mac: [u8; 6],
    ident: u16,
    /// Rounds of gratuitous ARP still to send, and when the next is due.
    garp_left: u8,
    garp_at: u64,
}

impl VrrpNode {
    /// The virtual router of `config`'s `[vrrp]`, if any, started at `now_ms`: a backup (the
    /// forwarder stops serving the VIPs) until the master-down timer says otherwise.
    pub fn new(config: &Config, mac: [u8; 6], fwd: &mut Forwarder, now_ms: u64) -> Option<Self> {
        let v = config.vrrp.as_ref()?;
        let own = config.interface.address.address;
        let mut node = VrrpNode {
            config: v.clone(),
            router: Router::new(v, own, &vip_addresses(config)),
            own,
            vips6: vip_addresses6(config),
            mac,
            ident: 0,
            garp_left: 0,
            garp_at: 0,
        };
        info!(
            "vrrp: vrid {} version {} priority {} every {} ms{}",
            v.vrid,
            v.version.number(),
            v.priority,
            v.advert_ms,
            if v.preempt { ", preempting" } else { "" }
        );
        let out = node.router.start(now_ms);
        node.act(out, now_ms, fwd, &mut |_| {});
        Some(node)
    }

    /// Whether this balancer serves the VIPs now.
    pub fn is_master(&self) -> bool {
        self.router.state() == State::Master
    }

    /// What `/status` and the metrics show.
    pub fn status(&self) -> Status {
        self.router.status()
    }

    /// A frame the forwarder passed to the local path: if it is VRRP, take it (true).
    pub fn receive(
        &mut self,
        frame: &[u8],
        now_ms: u64,
        fwd: &mut Forwarder,
        send: &mut dyn FnMut(&[u8]),
    ) -> bool {
        let Some(r) = logic::received(frame) else {
            return false;
        };
        let out = self.router.receive(now_ms, r.src, r.dst, r.ttl, r.msg);
        self.act(out, now_ms, fwd, send);
        true
    }

    /// Run the timers: advertisements, the master-down timer, gratuitous ARP rounds.
    pub fn poll(&mut self, now_ms: u64, fwd: &mut Forwarder, send: &mut dyn FnMut(&[u8])) {
        if now_ms >= self.router.deadline() {
            let out = self.router.poll(now_ms);
            self.act(out, now_ms, fwd, send);
        }
        if self.garp_left > 0 && now_ms >= self.garp_at {
            self.garp_left -= 1;
            self.garp_at = now_ms + GARP_GAP_MS;
            self.announce(send);
        }
    }

    /// Follow a new running config: the same `[vrrp]` only updates the advertised addresses;
    /// another one restarts the router (a master first says it leaves); none gives the VIPs back
    /// to this balancer alone. Returns the node to keep.
    pub fn follow(
        node: Option<VrrpNode>,
        config: &Config,
        mac: [u8; 6],
        fwd: &mut Forwarder,
        now_ms: u64,
        send: &mut dyn FnMut(&[u8]),
    ) -> Option<VrrpNode> {
        match (node, &config.vrrp) {
            (Some(mut n), Some(v))
                if *v == n.config && n.own == config.interface.address.address =>
            {
                n.router.set_addresses(&vip_addresses(config));
                n.vips6 = vip_addresses6(config);
                Some(n)
            }
            (Some(mut n), _) => {
                n.leave(send);
                fwd.set_vip_role(true);
                if config.vrrp.is_none() {
                    info!("vrrp: [vrrp] removed; serving the VIPs alone");
                }
                VrrpNode::new(config, mac, fwd, now_ms)
            }
            (None, Some(_)) => VrrpNode::new(config, mac, fwd, now_ms),
            (None, None) => None,
        }
    }

    /// Say a master leaves (priority 0), so that a backup takes over after its skew only.
    fn leave(&mut self, send: &mut dyn FnMut(&[u8])) {
        if let Some(advert) = self.router.shutdown() {
            self.send_advert(&advert, send);
        }
    }

    fn act(&mut self, out: Output, now_ms: u64, fwd: &mut Forwarder, send: &mut dyn FnMut(&[u8])) {
        if let Some(from) = out.addresses_differ {
            warn!(
                "vrrp: vrid {}: {from} advertises other addresses than our VIPs {:?}",
                self.config.vrid,
                self.router.addresses()
            );
        }
        if let Some(state) = out.became {
            info!(
                "vrrp: vrid {} now {} (priority {}, master {})",
                self.config.vrid,
                state.name(),
                self.config.priority,
                self.router.master().map_or_else(
                    || alloc::string::String::from("unknown"),
                    |m| alloc::format!("{m}")
                )
            );
            fwd.set_vip_role(state == State::Master);
        }
        if let Some(advert) = &out.send {
            self.send_advert(advert, send);
        }
        if out.became == Some(State::Master) {
            self.announce(send);
            self.garp_left = GARP_REPEAT;
            self.garp_at = now_ms + GARP_GAP_MS;
        } else if out.became.is_some() {
            self.garp_left = 0;
        }
    }

    fn send_advert(&mut self, advert: &logic::Advert, send: &mut dyn FnMut(&[u8])) {
        let msg = advert.encode(self.own, logic::GROUP, logic::ChecksumForm::PseudoHeader);
        self.ident = self.ident.wrapping_add(1);
        send(&logic::frame(&msg, self.own, self.config.vrid, self.ident));
    }

    /// Gratuitous ARP for every IPv4 VIP and an unsolicited neighbour advertisement for every
    /// IPv6 one, from the NIC's MAC.
    fn announce(&self, send: &mut dyn FnMut(&[u8])) {
        for &addr in self.router.addresses() {
            if addr != self.own {
                send(&forwarder::arp::gratuitous(self.mac, addr));
            }
        }
        for &addr in &self.vips6 {
            send(&forwarder::nd::unsolicited_advertisement(self.mac, addr));
        }
    }
}
