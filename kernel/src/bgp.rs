//! The BGP speaker on the local stack: `control::bgp::Speaker` (the sessions' state machines,
//! host-tested) driven over smoltcp TCP sockets and the poll loop's clock.
//!
//! - **Passive open**: one socket listens on port 179 while `[bgp]` is configured. Once a peer
//!   connects to it, the speaker decides whether to take the connection (only from a peer, and
//!   not while its session is Idle or Established); either way a fresh socket listens again,
//!   since a smoltcp socket serves one connection. The forwarder already drops TCP to 179 from
//!   an address that is not a peer, so such a SYN is never answered.
//! - **Active open**: one socket per dial, from the interface address and a port of
//!   [`Ports`], to the peer's port 179.
//! - **Bytes**: what a socket received goes to its session as it arrives; what the session
//!   sends waits in a per-connection queue until the socket takes it.
//! - **Routes**: the desired /32s and /128s are recomputed from the forwarder's backend health every
//!   [`EVALUATE_MS`] and after every config apply, so a change reaches the peers well within a
//!   second.
//!
//! With `bfd = true`, a BFD session runs beside each peer's ([`crate::bfd`]); when it goes
//! down, the peer's BGP session is stopped (Cease, BFD down) and dials again.
//!
//! A closed connection's socket stays in the set until its close has gone out (FIN or reset),
//! at most [`LINGER_MS`]. Without `[bgp]` there are no sockets and [`Bgp::poll`] returns at once.

use crate::bfd::Bfd;
use crate::local::{LocalStack, Ports};
use alloc::vec::Vec;
use control::bgp::{desired_routes, Action, Dir, Event, Speaker, State, PORT};
use control::config::Config;
use control::mgmt::BgpPeer;
use core::net::Ipv4Addr;
use forwarder::Forwarder;
use log::{info, warn};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State as TcpState};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

/// How often the desired routes are recomputed from the backends' health.
pub const EVALUATE_MS: u64 = 100;
/// Longest a closed connection's socket is kept for its FIN or reset to go out.
pub const LINGER_MS: u64 = 2_000;
/// Socket buffers: a whole message (at most 4096 bytes) fits each way, twice.
const RX_BUFFER: usize = 8 * 1024;
const TX_BUFFER: usize = 8 * 1024;

/// One TCP connection of a session.
struct Conn {
    peer: Ipv4Addr,
    dir: Dir,
    handle: SocketHandle,
    /// For an outgoing connection: its establishment was reported to the session.
    connected: bool,
    /// Bytes the session sent that the socket has not taken yet.
    pending: Vec<u8>,
}

/// The speaker and its sockets; see the module documentation.
#[derive(Default)]
pub struct Bgp {
    speaker: Speaker,
    listener: Option<SocketHandle>,
    conns: Vec<Conn>,
    /// Closed sockets waiting for their close to go out, with the time to remove them anyway.
    closing: Vec<(SocketHandle, u64)>,
    /// Dials smoltcp refused to start, reported to their sessions on the next poll.
    failed_dials: Vec<Ipv4Addr>,
    /// When the desired routes are next recomputed.
    evaluate_at: u64,
    /// Each session's state as last logged.
    logged: Vec<(Ipv4Addr, State)>,
    /// BFD with the peers (`bfd = true`).
    bfd: Bfd,
}

fn new_socket(sockets: &mut SocketSet<'static>) -> SocketHandle {
    let mut socket = Socket::new(
        SocketBuffer::new(alloc::vec![0; RX_BUFFER]),
        SocketBuffer::new(alloc::vec![0; TX_BUFFER]),
    );
    // BGP messages are small and each one is complete: send them as they are written.
    socket.set_nagle_enabled(false);
    sockets.add(socket)
}

/// The routes to announce now under `config`, from the forwarder's view of backend health.
fn desired(config: &Config, fwd: &Forwarder) -> control::bgp::Routes {
    let stats = fwd.stats();
    desired_routes(config, |v, b| {
        let vip = &config.vips[v];
        let backend = &vip.backends[b];
        stats
            .iter()
            .find(|s| s.name == vip.name)
            .and_then(|s| s.backends.iter().find(|s| s.name == backend.name))
            .is_some_and(|s| s.up)
    })
}

impl Bgp {
    /// A speaker without peers (until [`Bgp::configure`]).
    pub fn new() -> Bgp {
        Bgp::default()
    }

    /// Follow `config` (at boot and on every apply): sessions of changed or removed peers are
    /// closed with Cease, new peers dial on the next poll, the listening socket follows
    /// `[bgp]`, and the desired routes are recomputed at once (a removed VIP or
    /// `announce = false` is withdrawn on the next poll).
    pub fn configure(
        &mut self,
        now_ms: u64,
        config: &Config,
        fwd: &Forwarder,
        local: &mut LocalStack,
        ports: &mut Ports,
    ) {
        let mut out = Vec::new();
        self.speaker.configure(config, &mut out);
        self.bfd.configure(config, local);
        self.speaker.set_desired(desired(config, fwd));
        self.evaluate_at = 0;
        let sockets = &mut local.sockets;
        match (&config.bgp, self.listener) {
            (Some(_), None) => {
                let handle = new_socket(sockets);
                self.listener = Some(handle);
                self.relisten(sockets);
            }
            (None, Some(handle)) => {
                self.listener = None;
                sockets.remove(handle);
            }
            _ => {}
        }
        self.act(out, now_ms, ports, local);
    }

    /// Move bytes between the sockets and the sessions, run their timers and send route
    /// changes. Returns whether a socket changed (the caller lets smoltcp send).
    pub fn poll(
        &mut self,
        now_ms: u64,
        config: &Config,
        fwd: &Forwarder,
        local: &mut LocalStack,
        ports: &mut Ports,
    ) -> bool {
        if self.listener.is_none() && self.conns.is_empty() && self.closing.is_empty() {
            return false;
        }
        let (mut touched, down) = self.bfd.poll(local);
        self.reap(now_ms, &mut local.sockets);
        let mut out = Vec::new();
        for peer in down {
            self.speaker.bfd_down(peer, &mut out);
        }
        for peer in core::mem::take(&mut self.failed_dials) {
            self.speaker
                .step(now_ms, peer, Event::Closed(Dir::Outgoing), &mut out);
        }
        touched |= self.accept(now_ms, local, &mut out);
        self.act(core::mem::take(&mut out), now_ms, ports, local);

        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            let s = local.sockets.get_mut::<Socket>(c.handle);
            let (peer, dir, handle) = (c.peer, c.dir, c.handle);
            if dir == Dir::Outgoing && !c.connected && s.may_send() {
                c.connected = true;
                self.speaker.step(now_ms, peer, Event::Connected, &mut out);
            }
            let mut bytes = Vec::new();
            while s.can_recv() {
                match s.recv(|buf| {
                    bytes.extend_from_slice(buf);
                    (buf.len(), buf.len())
                }) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            if !bytes.is_empty() {
                touched = true;
                self.speaker
                    .step(now_ms, peer, Event::Received(dir, &bytes), &mut out);
            }
            let gone = match s.state() {
                TcpState::Closed | TcpState::Listen | TcpState::TimeWait => true,
                TcpState::CloseWait | TcpState::LastAck | TcpState::Closing => !s.can_recv(),
                _ => false,
            };
            self.act(core::mem::take(&mut out), now_ms, ports, local);
            // The actions may have closed this connection (an error in what it received).
            let still = self.conns.get(i).is_some_and(|c| c.handle == handle);
            if !still {
                continue;
            }
            if gone {
                let c = self.conns.remove(i);
                // Our FIN in answer to the peer's (or nothing, for a socket already closed).
                local.sockets.get_mut::<Socket>(c.handle).close();
                self.linger(c.handle, now_ms);
                self.speaker
                    .step(now_ms, peer, Event::Closed(dir), &mut out);
                self.act(core::mem::take(&mut out), now_ms, ports, local);
                touched = true;
                continue;
            }
            i += 1;
        }

        if now_ms >= self.evaluate_at {
            self.evaluate_at = now_ms + EVALUATE_MS;
            self.speaker.set_desired(desired(config, fwd));
        }
        self.speaker.tick(now_ms, &mut out);
        touched |= !out.is_empty();
        self.act(out, now_ms, ports, local);
        touched |= self.flush(&mut local.sockets);
        self.log_transitions(now_ms);
        touched
    }

    /// Hand a connection on the listening socket to its peer's session (or refuse it), and
    /// listen again on a fresh socket.
    fn accept(
        &mut self,
        now_ms: u64,
        local: &mut LocalStack,
        out: &mut Vec<(Ipv4Addr, Action)>,
    ) -> bool {
        let Some(handle) = self.listener else {
            return false;
        };
        let s = local.sockets.get_mut::<Socket>(handle);
        match s.state() {
            TcpState::Listen => return false,
            TcpState::Closed => {
                self.relisten(&mut local.sockets);
                return true;
            }
            _ => {}
        }
        let from = match s.remote_endpoint().map(|e| e.addr) {
            Some(IpAddress::Ipv4(a)) => Some(a),
            _ => None,
        };
        let taken = from.is_some_and(|a| self.speaker.accept_incoming(now_ms, a, out));
        match from {
            Some(peer) if taken => {
                // An earlier incoming connection of this peer is replaced (the session said so).
                if let Some(i) = self
                    .conns
                    .iter()
                    .position(|c| c.peer == peer && c.dir == Dir::Incoming)
                {
                    let old = self.conns.remove(i);
                    local.sockets.get_mut::<Socket>(old.handle).abort();
                    self.linger(old.handle, now_ms);
                }
                self.conns.push(Conn {
                    peer,
                    dir: Dir::Incoming,
                    handle,
                    connected: true,
                    pending: Vec::new(),
                });
            }
            _ => {
                if let Some(a) = from {
                    info!("bgp: refused a connection from {a} (its session does not take one now)");
                }
                s.abort();
                self.linger(handle, now_ms);
            }
        }
        self.listener = Some(new_socket(&mut local.sockets));
        self.relisten(&mut local.sockets);
        true
    }

    fn relisten(&mut self, sockets: &mut SocketSet<'static>) {
        if let Some(handle) = self.listener {
            let s = sockets.get_mut::<Socket>(handle);
            if let Err(e) = s.listen(IpListenEndpoint {
                addr: None,
                port: PORT,
            }) {
                warn!("bgp: cannot listen on port {PORT}: {e}");
            }
        }
    }

    /// Do what the sessions asked.
    fn act(
        &mut self,
        actions: Vec<(Ipv4Addr, Action)>,
        now_ms: u64,
        ports: &mut Ports,
        local: &mut LocalStack,
    ) {
        for (peer, action) in actions {
            let find = |conns: &[Conn], dir: Dir| {
                conns.iter().position(|c| c.peer == peer && c.dir == dir)
            };
            match action {
                Action::Connect => {
                    if let Some(i) = find(&self.conns, Dir::Outgoing) {
                        let old = self.conns.remove(i);
                        local.sockets.get_mut::<Socket>(old.handle).abort();
                        self.linger(old.handle, now_ms);
                    }
                    let handle = new_socket(&mut local.sockets);
                    let remote = IpEndpoint::new(IpAddress::Ipv4(peer), PORT);
                    let s = local.sockets.get_mut::<Socket>(handle);
                    match s.connect(local.iface.context(), remote, ports.next()) {
                        Ok(()) => self.conns.push(Conn {
                            peer,
                            dir: Dir::Outgoing,
                            handle,
                            connected: false,
                            pending: Vec::new(),
                        }),
                        Err(e) => {
                            warn!("bgp: peer {peer}: cannot connect: {e}");
                            local.sockets.remove(handle);
                            self.failed_dials.push(peer);
                        }
                    }
                }
                Action::Send(dir, bytes) => {
                    if let Some(i) = find(&self.conns, dir) {
                        self.conns[i].pending.extend_from_slice(&bytes);
                    }
                }
                Action::Close(dir) => {
                    if let Some(i) = find(&self.conns, dir) {
                        let c = self.conns.remove(i);
                        let s = local.sockets.get_mut::<Socket>(c.handle);
                        // The NOTIFICATION before it, if the socket has room (it always
                        // has for one message after the others were taken).
                        if s.may_send() && !c.pending.is_empty() {
                            let _ = s.send_slice(&c.pending);
                        }
                        s.close();
                        self.linger(c.handle, now_ms);
                    }
                }
            }
        }
    }

    /// Give every socket what waits for it. Returns whether any took bytes.
    fn flush(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let mut touched = false;
        for c in &mut self.conns {
            if c.pending.is_empty() {
                continue;
            }
            let s = sockets.get_mut::<Socket>(c.handle);
            if !s.may_send() {
                continue;
            }
            if let Ok(n) = s.send_slice(&c.pending) {
                c.pending.drain(..n);
                touched |= n > 0;
            }
        }
        touched
    }

    /// Keep a closed socket until its close went out.
    fn linger(&mut self, handle: SocketHandle, now_ms: u64) {
        self.closing.push((handle, now_ms + LINGER_MS));
    }

    /// Remove closed sockets whose close went out, or whose time is up.
    fn reap(&mut self, now_ms: u64, sockets: &mut SocketSet<'static>) {
        self.closing.retain_mut(|(handle, until)| {
            let s = sockets.get_mut::<Socket>(*handle);
            let done = matches!(s.state(), TcpState::Closed | TcpState::TimeWait);
            if done || now_ms >= *until {
                sockets.remove(*handle);
                false
            } else {
                true
            }
        });
    }

    fn log_transitions(&mut self, now_ms: u64) {
        let sessions = self.speaker.sessions();
        if self.logged.len() == sessions.len()
            && sessions
                .iter()
                .zip(&self.logged)
                .all(|(s, (peer, state))| s.params().peer == *peer && s.state() == *state)
        {
            return;
        }
        let mut logged = Vec::with_capacity(sessions.len());
        for s in sessions {
            let peer = s.params().peer;
            let before = self
                .logged
                .iter()
                .find(|(p, _)| *p == peer)
                .map(|(_, st)| *st);
            let state = s.state();
            if before != Some(state) {
                let was = before.map_or("new", State::name);
                match (state, s.last_down()) {
                    (State::Established, _) => info!(
                        "bgp: peer {peer} AS {}: {was} -> Established at {now_ms} ms",
                        s.params().peer_asn
                    ),
                    (State::Idle | State::Active, Some(down))
                        if before.is_some_and(|b| b > State::Active) =>
                    {
                        warn!("bgp: peer {peer}: {was} -> {} ({down})", state.name())
                    }
                    _ => info!("bgp: peer {peer}: {was} -> {}", state.name()),
                }
            }
            logged.push((peer, state));
        }
        self.logged = logged;
    }

    /// Each peer's session for `/status` and `/metrics`.
    pub fn peers(&self, now_ms: u64) -> Vec<BgpPeer> {
        self.speaker
            .sessions()
            .iter()
            .map(|s| BgpPeer {
                address: s.params().peer,
                asn: s.params().peer_asn,
                state: s.state().name(),
                up_ms: s.established_since().map(|t| now_ms.saturating_sub(t)),
                bfd: self.bfd.state(s.params().peer).map(|b| b.name()),
            })
            .collect()
    }

    /// Whether `address` is announced to at least one peer.
    pub fn announced(&self, address: core::net::IpAddr) -> bool {
        self.speaker.announced(address)
    }
}
