//! Every peer's session and what they announce: the [`Speaker`] holds one [`Session`] per
//! `[[bgp.peer]]`, follows config pushes (a peer removed or changed is closed with Cease, an
//! unchanged one keeps its session), and hands each session the desired set of routes that
//! [`desired_routes`] computes from the config and the backends' health.
//!
//! Actions come out tagged with the peer's address, which is how the kernel finds the sockets.

use super::message::code;
use super::session::{Action, Event, Params, Session};
use crate::config::Config;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

/// A set of host routes (VIP addresses): /32s for IPv4, /128s for IPv6.
pub type Routes = BTreeSet<IpAddr>;

/// The host routes that should be announced: with `[bgp] announce = true`, the address of
/// every VIP with at least one backend up (`up(vip, backend)` by index into `config.vips` and its
/// backends); none without `[bgp]` or with `announce = false`. An address shared by several
/// VIPs (other ports or protocols) is announced while any of them has a backend up.
pub fn desired_routes(config: &Config, up: impl Fn(usize, usize) -> bool) -> Routes {
    match &config.bgp {
        Some(bgp) if bgp.announce => config
            .vips
            .iter()
            .enumerate()
            .filter(|(v, vip)| (0..vip.backends.len()).any(|b| up(*v, b)))
            .map(|(_, vip)| vip.address)
            .collect(),
        _ => Routes::new(),
    }
}

/// Every peer's session; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Speaker {
    sessions: Vec<Session>,
    desired: Routes,
}

impl Speaker {
    /// A speaker without peers.
    pub fn new() -> Speaker {
        Speaker::default()
    }

    /// Follow `config`: sessions of peers whose settings are unchanged go on; the others are
    /// closed (Cease: peer de-configured, or other configuration change) and new ones start
    /// dialling on the next tick. The desired routes are left to [`Speaker::set_desired`].
    pub fn configure(&mut self, config: &Config, out: &mut Vec<(Ipv4Addr, Action)>) {
        let wanted: Vec<Params> = match &config.bgp {
            Some(bgp) => bgp
                .peers
                .iter()
                .map(|peer| Params {
                    local_asn: bgp.asn,
                    router_id: bgp.router_id(&config.interface),
                    hold_time: bgp.hold_time,
                    next_hop: config.interface.address.address,
                    next_hop6: config.interface.address6.map(|p| p.address),
                    peer: peer.address,
                    peer_asn: peer.asn,
                })
                .collect(),
            None => Vec::new(),
        };
        let mut kept = Vec::with_capacity(wanted.len());
        for mut session in core::mem::take(&mut self.sessions) {
            let peer = session.params().peer;
            if wanted.contains(session.params()) {
                kept.push(session);
                continue;
            }
            let subcode = if wanted.iter().any(|p| p.peer == peer) {
                code::OTHER_CONFIGURATION_CHANGE
            } else {
                code::PEER_DECONFIGURED
            };
            let mut actions = Vec::new();
            session.stop(subcode, &mut actions);
            out.extend(actions.into_iter().map(|a| (peer, a)));
        }
        for params in wanted {
            if !kept.iter().any(|s| *s.params() == params) {
                kept.push(Session::new(params));
            }
        }
        self.sessions = kept;
    }

    /// The routes every session should bring its peer to from now on.
    pub fn set_desired(&mut self, routes: Routes) {
        self.desired = routes;
    }

    /// Tick every session.
    pub fn tick(&mut self, now: u64, out: &mut Vec<(Ipv4Addr, Action)>) {
        let mut actions = Vec::new();
        for session in &mut self.sessions {
            session.step(now, Event::Tick, &self.desired, &mut actions);
            let peer = session.params().peer;
            out.extend(actions.drain(..).map(|a| (peer, a)));
        }
    }

    /// Give one peer's session an event about its connections (ignored for an address that is
    /// not a peer).
    pub fn step(
        &mut self,
        now: u64,
        peer: Ipv4Addr,
        event: Event<'_>,
        out: &mut Vec<(Ipv4Addr, Action)>,
    ) {
        if let Some(session) = self.sessions.iter_mut().find(|s| s.params().peer == peer) {
            let mut actions = Vec::new();
            session.step(now, event, &self.desired, &mut actions);
            out.extend(actions.into_iter().map(|a| (peer, a)));
        }
    }

    /// Whether to take a connection that `from` dialled to port 179 (never from an address
    /// that is not a peer); see [`Session::accept_incoming`].
    pub fn accept_incoming(
        &mut self,
        now: u64,
        from: Ipv4Addr,
        out: &mut Vec<(Ipv4Addr, Action)>,
    ) -> bool {
        let Some(session) = self.sessions.iter_mut().find(|s| s.params().peer == from) else {
            return false;
        };
        let mut actions = Vec::new();
        let taken = session.accept_incoming(now, &mut actions);
        out.extend(actions.into_iter().map(|a| (from, a)));
        taken
    }

    /// Stop `peer`'s session because its BFD session went down (Cease, subcode BFD down); it
    /// dials again as after any other close.
    pub fn bfd_down(&mut self, peer: Ipv4Addr, out: &mut Vec<(Ipv4Addr, Action)>) {
        if let Some(session) = self.sessions.iter_mut().find(|s| s.params().peer == peer) {
            let mut actions = Vec::new();
            session.stop(code::BFD_DOWN, &mut actions);
            out.extend(actions.into_iter().map(|a| (peer, a)));
        }
    }

    /// Every peer's session, in config order.
    pub fn sessions(&self) -> &[Session] {
        &self.sessions
    }

    /// Whether `address` is announced to at least one peer.
    pub fn announced(&self, address: IpAddr) -> bool {
        self.sessions
            .iter()
            .any(|s| s.announced().contains(&address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::message::{Message, Open};
    use crate::bgp::session::{Dir, State};
    use crate::config::{Scheduler, Vip, VipPort};

    fn config(announce: bool) -> Config {
        let vip = |name: &str, address: &str, port: u16| {
            Vip::builder(name, address, VipPort::One(port))
                .scheduler(Scheduler::Maglev)
                .backend("be1", "10.77.0.21", 1)
                .backend("be2", "10.77.0.22", 1)
                .build()
        };
        Config::builder()
            .bgp(65010)
            .bgp_peer("10.77.0.1", 65000)
            .bgp_announce(announce)
            .vip(vip("web", "10.77.0.100", 80))
            .vip(vip("tls", "10.77.0.100", 443))
            .vip(vip("dns", "10.77.0.101", 53))
            .build()
    }

    #[test]
    fn desired_routes_follow_health_and_announce() {
        let c = config(true);
        c.validate().unwrap();
        let all = desired_routes(&c, |_, _| true);
        let addr = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(all, [addr("10.77.0.100"), addr("10.77.0.101")].into());
        // dns with no backend up is withdrawn; one backend of web is enough.
        let some = desired_routes(&c, |v, b| v == 0 && b == 1);
        assert_eq!(some, [addr("10.77.0.100")].into());
        // The shared address stays while tls (index 1) has a backend up.
        assert_eq!(desired_routes(&c, |v, _| v == 1), some);
        assert!(desired_routes(&config(false), |_, _| true).is_empty());
        let mut plain = c.clone();
        plain.bgp = None;
        assert!(desired_routes(&plain, |_, _| true).is_empty());
    }

    fn establish(speaker: &mut Speaker, now: u64) {
        let peer = Ipv4Addr::new(10, 77, 0, 1);
        let mut out = Vec::new();
        speaker.tick(now, &mut out);
        speaker.step(now, peer, Event::Connected, &mut out);
        let open = Message::Open(Open {
            asn: 65000,
            hold_time: 90,
            router_id: peer,
            four_octet_as: true,
            ipv4_unicast: true,
            ipv6_unicast: false,
        });
        let bytes = [open.encode(true), Message::Keepalive.encode(true)].concat();
        speaker.step(now, peer, Event::Received(Dir::Outgoing, &bytes), &mut out);
        assert_eq!(speaker.sessions()[0].state(), State::Established);
    }

    #[test]
    fn a_push_keeps_unchanged_sessions_and_closes_changed_ones() {
        let c = config(true);
        let mut speaker = Speaker::new();
        let mut out = Vec::new();
        speaker.configure(&c, &mut out);
        assert!(out.is_empty());
        speaker.set_desired(desired_routes(&c, |_, _| true));
        establish(&mut speaker, 0);
        let addr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
        assert!(speaker.announced(addr));

        // The same peers with announce = false: the session stays, every route is withdrawn.
        let drained = config(false);
        speaker.configure(&drained, &mut out);
        assert!(out.is_empty(), "{out:?}");
        speaker.set_desired(desired_routes(&drained, |_, _| true));
        speaker.tick(10, &mut out);
        let [(_, Action::Send(Dir::Outgoing, bytes))] = &out[..] else {
            panic!("{out:?}")
        };
        let Message::Update(u) = Message::decode(bytes, true).unwrap() else {
            panic!("not an UPDATE")
        };
        assert_eq!((u.withdrawn.len(), u.nlri.len()), (2, 0));
        assert!(!speaker.announced(addr));
        assert_eq!(speaker.sessions()[0].state(), State::Established);

        // Another peer AS: the old session is closed with Cease / other configuration change.
        out.clear();
        let mut changed = drained.clone();
        changed.bgp.as_mut().unwrap().peers[0].asn = 65001;
        speaker.configure(&changed, &mut out);
        let Action::Send(_, bytes) = &out[0].1 else {
            panic!("{out:?}")
        };
        assert_eq!(&bytes[19..21], &[6, 6]);
        assert_eq!(out[1].1, Action::Close(Dir::Outgoing));
        assert_eq!(speaker.sessions()[0].state(), State::Active);

        // No [bgp] at all: Cease / peer de-configured, no sessions left.
        establish_with(&mut speaker, 65001);
        out.clear();
        let mut none = changed.clone();
        none.bgp = None;
        speaker.configure(&none, &mut out);
        let Action::Send(_, bytes) = &out[0].1 else {
            panic!("{out:?}")
        };
        assert_eq!(&bytes[19..21], &[6, 3]);
        assert!(speaker.sessions().is_empty());
    }

    fn establish_with(speaker: &mut Speaker, asn: u32) {
        let peer = Ipv4Addr::new(10, 77, 0, 1);
        let mut out = Vec::new();
        speaker.tick(100, &mut out);
        speaker.step(100, peer, Event::Connected, &mut out);
        let open = Message::Open(Open {
            asn,
            hold_time: 90,
            router_id: peer,
            four_octet_as: true,
            ipv4_unicast: true,
            ipv6_unicast: false,
        });
        speaker.step(
            100,
            peer,
            Event::Received(Dir::Outgoing, &open.encode(true)),
            &mut out,
        );
        assert_eq!(speaker.sessions()[0].state(), State::OpenConfirm);
    }

    #[test]
    fn ipv6_vips_are_announced_with_address6_as_next_hop() {
        let mut c = config(true);
        c.interface.address6 = Some(crate::config::Prefix6::parse("fd00:77::2/64").unwrap());
        c.vips.push(
            Vip::builder("web6", "fd00:77::100", VipPort::One(80))
                .scheduler(Scheduler::Maglev)
                .backend("be1", "fd00:77::21", 1)
                .build(),
        );
        c.validate().unwrap();
        let vip6: IpAddr = "fd00:77::100".parse().unwrap();
        assert!(desired_routes(&c, |_, _| true).contains(&vip6));
        assert!(!desired_routes(&c, |v, _| v != 3).contains(&vip6));
        assert!(desired_routes(&config(false), |_, _| true).is_empty());

        let mut speaker = Speaker::new();
        let mut out = Vec::new();
        speaker.configure(&c, &mut out);
        assert_eq!(
            speaker.sessions()[0].params().next_hop6,
            Some("fd00:77::2".parse().unwrap())
        );
        speaker.set_desired(desired_routes(&c, |_, _| true));
        let peer = Ipv4Addr::new(10, 77, 0, 1);
        speaker.tick(0, &mut out);
        speaker.step(0, peer, Event::Connected, &mut out);
        let open = Message::Open(Open {
            asn: 65000,
            hold_time: 90,
            router_id: peer,
            four_octet_as: true,
            ipv4_unicast: true,
            ipv6_unicast: true,
        });
        let bytes = [open.encode(true), Message::Keepalive.encode(true)].concat();
        speaker.step(0, peer, Event::Received(Dir::Outgoing, &bytes), &mut out);
        assert!(speaker.announced(vip6));
        speaker.set_desired(desired_routes(&c, |v, _| v != 3));
        speaker.tick(10, &mut out);
        assert!(!speaker.announced(vip6));
        assert!(speaker.announced("10.77.0.100".parse().unwrap()));
    }

    #[test]
    fn incoming_connections_only_from_peers() {
        let mut speaker = Speaker::new();
        let mut out = Vec::new();
        speaker.configure(&config(true), &mut out);
        assert!(!speaker.accept_incoming(0, Ipv4Addr::new(10, 77, 0, 9), &mut out));
        assert!(out.is_empty());
        assert!(speaker.accept_incoming(0, Ipv4Addr::new(10, 77, 0, 1), &mut out));
        assert!(matches!(out[..], [(_, Action::Send(Dir::Incoming, _))]));
    }
}
