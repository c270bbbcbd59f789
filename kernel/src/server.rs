//! The management HTTP/1.1 server: listening smoltcp sockets on the management port, one
//! request per connection.
//!
//! Parsing, routing and rendering are `control::mgmt` (host-tested and fuzzed), and so is how
//! connections are shared (`control::mgmt::share`: how many at once, a share per source, a
//! deadline for the handshake, for progress, for the whole connection and for closing); this
//! file only moves bytes between sockets and that code. Every free socket listens on the port,
//! so that a client that connects and says nothing holds one socket, not the server; a
//! connection that missed a deadline, or that its source may not have, is aborted, and while
//! more than `share::UNSENT_BUDGET` bytes of responses wait, `/metrics` and `/status` are
//! answered 503 instead of rendered. Who may connect at all is decided before smoltcp sees a
//! frame (see `net`), so a refused source never gets a SYN-ACK or a reset.

use control::mgmt::share::{self, Admit, Expiry, Slot, Stage};
use control::mgmt::{Parse, Request, RequestParser, Response, CONTINUE};
use core::net::{IpAddr, Ipv4Addr};
use log::info;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::IpAddress;

/// Socket buffer sizes: a request head fits, a body streams through the parser.
const RX_BUFFER: usize = 16 * 1024;
const TX_BUFFER: usize = 16 * 1024;
/// Shortest interval between two log lines about aborted connections (an attacker decides how
/// many there are).
const ABORT_LOG_MS: u64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Listening (or about to).
    Idle,
    /// Connected, reading the request.
    Reading,
    /// Writing the response.
    Writing,
    /// Closed or aborted by us; waiting for the socket to settle before listening again.
    Closing,
}

struct Conn {
    handle: SocketHandle,
    phase: Phase,
    parser: RequestParser,
    out: alloc::vec::Vec<u8>,
    sent: usize,
    /// The connection's source and deadlines, from its SYN until its socket is free again.
    slot: Option<Slot>,
}

/// Connections aborted by the server's own rules, by why.
#[derive(Clone, Copy, Debug, Default)]
struct Aborted {
    over_share: u64,
    evicted: u64,
    expired: u64,
    logged_ms: Option<u64>,
}

/// The management server's sockets and per-connection state.
pub struct Server {
    port: Option<u16>,
    conns: alloc::vec::Vec<Conn>,
    aborted: Aborted,
}

impl Server {
    /// Make the sockets; they listen on `port` from the next [`Server::poll`] (never if `None`).
    pub fn new(sockets: &mut SocketSet<'static>, port: Option<u16>) -> Server {
        let conns = (0..share::CONNECTIONS)
            .map(|_| {
                let socket = Socket::new(
                    SocketBuffer::new(alloc::vec![0; RX_BUFFER]),
                    SocketBuffer::new(alloc::vec![0; TX_BUFFER]),
                );
                Conn {
                    handle: sockets.add(socket),
                    phase: Phase::Idle,
                    parser: RequestParser::new(),
                    out: alloc::vec::Vec::new(),
                    sent: 0,
                    slot: None,
                }
            })
            .collect();
        Server {
            port,
            conns,
            aborted: Aborted::default(),
        }
    }

    /// Follow a new config: idle sockets move to `port`; connections in progress finish first.
    pub fn set_port(&mut self, port: Option<u16>) {
        self.port = port;
    }

    /// Serve: admit, read, answer through `handler`, close, and abort connections that missed a
    /// deadline. Returns whether any socket changed (so the caller lets smoltcp send what was
    /// queued).
    pub fn poll(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now_ms: u64,
        handler: &mut dyn FnMut(Request) -> Response,
    ) -> bool {
        let mut touched = false;
        let mut unsent: usize = self.conns.iter().map(Conn::unsent).sum();
        for i in 0..self.conns.len() {
            touched |= self.admit(i, sockets, now_ms);
            let conn = &mut self.conns[i];
            let s = sockets.get_mut::<Socket>(conn.handle);
            if let Some(why) = conn.slot.and_then(|slot| slot.expired(now_ms)) {
                if why != Expiry::Closing {
                    self.aborted.expired += 1;
                }
                conn.abort(s);
                touched = true;
                continue;
            }
            touched |= conn.poll(s, self.port, now_ms, unsent, handler);
            unsent = self.conns.iter().map(Conn::unsent).sum();
        }
        self.log_aborted(now_ms);
        touched
    }

    /// If connection `i` was listening and has just received a SYN, decide whether it may
    /// stay (see `control::mgmt::share`). Returns whether a socket changed.
    fn admit(&mut self, i: usize, sockets: &mut SocketSet<'static>, now_ms: u64) -> bool {
        if self.conns[i].phase != Phase::Idle {
            return false;
        }
        let s = sockets.get_mut::<Socket>(self.conns[i].handle);
        if matches!(s.state(), State::Listen | State::Closed | State::TimeWait) {
            return false;
        }
        let source = match s.remote_endpoint().map(|e| e.addr) {
            Some(IpAddress::Ipv4(a)) => IpAddr::V4(a),
            Some(IpAddress::Ipv6(a)) => IpAddr::V6(a),
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let (held, index): (alloc::vec::Vec<Slot>, alloc::vec::Vec<usize>) = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(j, c)| c.slot.map(|slot| (slot, j)))
            .unzip();
        match share::admit(&held, source) {
            Admit::Refuse => {
                self.aborted.over_share += 1;
                let conn = &mut self.conns[i];
                conn.abort(sockets.get_mut::<Socket>(conn.handle));
                return true;
            }
            Admit::AcceptEvicting(k) => {
                self.aborted.evicted += 1;
                let victim = &mut self.conns[index[k]];
                victim.abort(sockets.get_mut::<Socket>(victim.handle));
            }
            Admit::Accept => {}
        }
        let conn = &mut self.conns[i];
        conn.slot = Some(Slot::new(source, now_ms));
        conn.phase = Phase::Reading;
        conn.parser = RequestParser::new();
        true
    }

    /// At most every [`ABORT_LOG_MS`], a line about connections aborted since the last one.
    fn log_aborted(&mut self, now_ms: u64) {
        let a = &mut self.aborted;
        let total = a.over_share + a.evicted + a.expired;
        if total == 0
            || a.logged_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < ABORT_LOG_MS)
        {
            return;
        }
        info!(
            "management: aborted {} connections ({} over a source's share of {}, {} to free the last socket, {} past a deadline)",
            total,
            a.over_share,
            share::PER_SOURCE,
            a.evicted,
            a.expired
        );
        *a = Aborted {
            logged_ms: Some(now_ms),
            ..Aborted::default()
        };
    }
}

impl Conn {
    fn poll(
        &mut self,
        s: &mut Socket<'static>,
        port: Option<u16>,
        now_ms: u64,
        unsent: usize,
        handler: &mut dyn FnMut(Request) -> Response,
    ) -> bool {
        match self.phase {
            Phase::Idle => match s.state() {
                State::Listen => {
                    if Some(s.listen_endpoint().port) != port {
                        s.abort();
                        return true;
                    }
                    false
                }
                State::Closed | State::TimeWait => match port {
                    Some(p) => s.listen(p).is_ok(),
                    None => false,
                },
                // A connection that `Server::admit` did not take: not ours to serve.
                _ => {
                    s.abort();
                    true
                }
            },
            Phase::Reading => self.read(s, now_ms, unsent, handler),
            Phase::Writing => self.write(s, now_ms),
            Phase::Closing => {
                if matches!(s.state(), State::Closed | State::TimeWait) {
                    self.phase = Phase::Idle;
                    self.slot = None;
                }
                false
            }
        }
    }

    /// Read what arrived; a complete request is answered through `handler`, unless `unsent`
    /// bytes of other responses already wait and it asks for a rendering (`share::may_render`).
    fn read(
        &mut self,
        s: &mut Socket<'static>,
        now_ms: u64,
        unsent: usize,
        handler: &mut dyn FnMut(Request) -> Response,
    ) -> bool {
        if s.state() != State::SynReceived {
            self.enter(Stage::Serving, now_ms);
        }
        let mut touched = false;
        // A ring buffer hands out at most two slices per wrap; a few rounds drain it.
        for _ in 0..4 {
            if !s.can_recv() {
                break;
            }
            let parser = &mut self.parser;
            let Ok(mut result) = s.recv(|buf| (buf.len(), parser.push(buf))) else {
                break;
            };
            touched = true;
            self.progressed(now_ms);
            if result == Parse::Continue {
                let _ = s.send_slice(CONTINUE);
                result = self.parser.push(&[]);
            }
            match result {
                Parse::NeedMore | Parse::Continue => {}
                Parse::Done(request) => {
                    let response = if share::may_render(&request, unsent) {
                        handler(request)
                    } else {
                        share::busy()
                    };
                    return self.respond(s, response, now_ms);
                }
                Parse::Error(e) => return self.respond(s, e.response(), now_ms),
            }
        }
        let gone = match s.state() {
            State::SynReceived | State::Established | State::FinWait1 | State::FinWait2 => false,
            State::CloseWait => !s.can_recv(),
            _ => true,
        };
        if gone {
            // The client closed or reset before a whole request arrived.
            self.abort(s);
            return true;
        }
        touched
    }

    fn respond(&mut self, s: &mut Socket<'static>, response: Response, now_ms: u64) -> bool {
        self.out = response.to_bytes();
        self.sent = 0;
        self.parser = RequestParser::new();
        self.phase = Phase::Writing;
        self.write(s, now_ms);
        true
    }

    fn write(&mut self, s: &mut Socket<'static>, now_ms: u64) -> bool {
        if !s.may_send() {
            self.abort(s);
            return true;
        }
        let mut touched = false;
        if s.can_send() && self.sent < self.out.len() {
            if let Ok(n) = s.send_slice(&self.out[self.sent..]) {
                if n > 0 {
                    self.sent += n;
                    self.progressed(now_ms);
                    touched = true;
                }
            }
        }
        if self.sent >= self.out.len() {
            s.close();
            self.phase = Phase::Closing;
            self.enter(Stage::Closing, now_ms);
            self.out = alloc::vec::Vec::new();
            touched = true;
        }
        touched
    }

    /// Abort the connection (smoltcp sends a reset on its next poll) and free its state; the
    /// socket listens again once it has settled.
    fn abort(&mut self, s: &mut Socket<'static>) {
        s.abort();
        self.phase = Phase::Closing;
        // Aborted means settled: nothing is left to wait for, so no deadline either.
        self.slot = None;
        self.out = alloc::vec::Vec::new();
        self.parser = RequestParser::new();
    }

    /// Response bytes this connection still has to send.
    fn unsent(&self) -> usize {
        self.out.len().saturating_sub(self.sent)
    }

    fn enter(&mut self, stage: Stage, now_ms: u64) {
        if let Some(slot) = &mut self.slot {
            slot.enter(stage, now_ms);
        }
    }

    fn progressed(&mut self, now_ms: u64) {
        if let Some(slot) = &mut self.slot {
            slot.progressed(now_ms);
        }
    }
}
