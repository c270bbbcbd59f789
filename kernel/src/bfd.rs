//! BFD with the BGP peers (`[bgp] bfd = true`): a `control::bfd` session per peer (the state
//! machine, host-tested) over smoltcp UDP and the clock, owned by [`crate::bgp::Bgp`], which
//! stops a peer's BGP session when its BFD session goes down.
//!
//! Control packets arrive on one socket bound to port 3784; the forwarder has already dropped
//! any that is not from a peer or not at TTL 255 (RFC 5881 5), so what reaches the socket is
//! from the link. Each session sends from its own socket and source port (RFC 5881 4: one port
//! per session, from 49152), with TTL 255.

use crate::clock;
use crate::local::LocalStack;
use alloc::vec;
use alloc::vec::Vec;
use control::bfd::{Packet, Received, Session, State, PORT, SOURCE_PORTS, TTL};
use control::config::Config;
use core::net::Ipv4Addr;
use log::{info, warn};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp::{PacketBuffer, PacketMetadata, Socket};
use smoltcp::wire::{IpAddress, IpEndpoint};

/// Packets a socket holds each way: a few intervals' worth.
const PACKETS: usize = 8;

struct Peer {
    address: Ipv4Addr,
    session: Session,
    socket: SocketHandle,
    /// The session's state as last logged.
    logged: State,
}

/// Every BFD session and the receiving socket; empty without `bfd = true`.
#[derive(Default)]
pub struct Bfd {
    rx: Option<SocketHandle>,
    peers: Vec<Peer>,
    /// Discriminators handed out so far (the next one is one more).
    discs: u32,
    /// Sockets of removed sessions, kept until their last packet (admin-down) went out, with
    /// the time to remove them.
    closing: Vec<(SocketHandle, u64)>,
}

/// How long a removed session's socket is kept for its admin-down packet to leave.
const LINGER_US: u64 = 200_000;

fn new_socket(sockets: &mut SocketSet<'static>, port: u16) -> Option<SocketHandle> {
    let buffer = || {
        PacketBuffer::new(
            vec![PacketMetadata::EMPTY; PACKETS],
            vec![0; PACKETS * control::bfd::LEN * 2],
        )
    };
    let mut socket = Socket::new(buffer(), buffer());
    socket.set_hop_limit(Some(TTL));
    if let Err(e) = socket.bind(port) {
        warn!("bfd: cannot bind UDP port {port}: {e}");
        return None;
    }
    Some(sockets.add(socket))
}

impl Bfd {
    /// Follow `config`: a session for each peer while `[bgp] bfd = true` (an existing one goes
    /// on), and none otherwise; a removed session tells its neighbour it is admin-down.
    pub fn configure(&mut self, config: &Config, local: &mut LocalStack) {
        let now_us = clock::micros_since_boot();
        let wanted: Vec<Ipv4Addr> = match &config.bgp {
            Some(b) if b.bfd => b.peers.iter().map(|p| p.address).collect(),
            _ => Vec::new(),
        };
        let sockets = &mut local.sockets;
        for mut peer in core::mem::take(&mut self.peers) {
            if wanted.contains(&peer.address) {
                self.peers.push(peer);
                continue;
            }
            peer.session.set_admin_down(true, now_us);
            if let Some(p) = peer.session.poll(now_us) {
                let s = sockets.get_mut::<Socket>(peer.socket);
                let _ = s.send_slice(&p.write(), IpEndpoint::new(peer.address.into(), PORT));
            }
            info!("bfd: peer {}: session removed", peer.address);
            self.closing.push((peer.socket, now_us + LINGER_US));
        }
        for address in wanted {
            if self.peers.iter().any(|p| p.address == address) {
                continue;
            }
            let used: Vec<u16> = self
                .peers
                .iter()
                .map(|p| sockets.get::<Socket>(p.socket).endpoint().port)
                .collect();
            let Some(port) = SOURCE_PORTS.clone().find(|p| !used.contains(p)) else {
                continue;
            };
            let Some(socket) = new_socket(sockets, port) else {
                continue;
            };
            self.discs += 1;
            // Distinct across this boot's sessions, and unlikely to repeat a previous boot's.
            let disc = ((clock::rdtsc() as u32) & 0xffff_0000) | (self.discs & 0xffff);
            self.peers.push(Peer {
                address,
                session: Session::new(disc, now_us),
                socket,
                logged: State::Down,
            });
        }
        match (self.peers.is_empty(), self.rx) {
            (false, None) => self.rx = new_socket(sockets, PORT),
            (true, Some(h)) => {
                sockets.remove(h);
                self.rx = None;
            }
            _ => {}
        }
    }

    /// Take what arrived, run the timers, send what is due. Returns whether a socket changed,
    /// and the peers whose session went down from up (their BGP sessions must stop).
    pub fn poll(&mut self, local: &mut LocalStack) -> (bool, Vec<Ipv4Addr>) {
        let mut touched = false;
        let mut down = Vec::new();
        let now_us = clock::micros_since_boot();
        let sockets = &mut local.sockets;
        self.closing.retain(|&(h, until)| {
            let keep = now_us < until;
            if !keep {
                sockets.remove(h);
            }
            keep
        });
        let Some(rx) = self.rx else {
            return (touched, down);
        };
        let s = sockets.get_mut::<Socket>(rx);
        while let Ok((data, meta)) = s.recv() {
            // Peers are IPv4 (the forwarder passes no BFD over IPv6 up).
            let IpAddress::Ipv4(from) = meta.endpoint.addr else {
                continue;
            };
            let packet = match Packet::parse(data) {
                Ok(p) => p,
                Err(why) => {
                    info!("bfd: packet from {from} refused ({})", why.label());
                    continue;
                }
            };
            // By our discriminator once the neighbour knows it, by address before.
            let peer = self.peers.iter_mut().find(|p| {
                if packet.your_disc != 0 {
                    p.session.my_disc() == packet.your_disc
                } else {
                    p.address == from
                }
            });
            let Some(peer) = peer else {
                info!("bfd: packet from {from} for no session");
                continue;
            };
            // The forwarder let it through only at TTL 255.
            if let Received::Refused(why) = peer.session.receive(&packet, TTL, now_us) {
                info!("bfd: packet from {from} refused ({})", why.label());
            }
        }
        for peer in &mut self.peers {
            if let Some(p) = peer.session.poll(now_us) {
                let s = sockets.get_mut::<Socket>(peer.socket);
                if s.send_slice(&p.write(), IpEndpoint::new(peer.address.into(), PORT))
                    .is_ok()
                {
                    touched = true;
                }
            }
            let state = peer.session.state();
            if state != peer.logged {
                if peer.logged == State::Up {
                    warn!(
                        "bfd: peer {}: up -> {} ({:?})",
                        peer.address,
                        state.name(),
                        peer.session.diag()
                    );
                    down.push(peer.address);
                } else {
                    info!(
                        "bfd: peer {}: {} -> {}",
                        peer.address,
                        peer.logged.name(),
                        state.name()
                    );
                }
                peer.logged = state;
            }
        }
        (touched, down)
    }

    /// The state of `peer`'s session, if it has one.
    pub fn state(&self, peer: Ipv4Addr) -> Option<State> {
        self.peers
            .iter()
            .find(|p| p.address == peer)
            .map(|p| p.session.state())
    }
}
