//! The management HTTP/1.1 server: a few listening smoltcp sockets on the management port, one
//! request per connection.
//!
//! Parsing, routing and rendering are `control::mgmt` (host-tested and fuzzed); this file only
//! moves bytes between sockets and that code. Several sockets listen on the same port so that a
//! client that connects and says nothing holds one socket, not the server; every connection has a
//! deadline that progress pushes forward. Who may connect at all is decided before smoltcp sees
//! a frame (see `net`), so a refused source never gets a SYN-ACK or a reset.

use control::mgmt::{Parse, Request, RequestParser, Response, CONTINUE};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};

/// Connections served at the same time.
const CONNECTIONS: usize = 4;
/// Socket buffer sizes: a request head fits, a body streams through the parser.
const RX_BUFFER: usize = 16 * 1024;
const TX_BUFFER: usize = 16 * 1024;
/// A connection that makes no progress for this long is aborted.
const IDLE_MS: u64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Listening (or about to).
    Idle,
    /// Connected, reading the request.
    Reading,
    /// Writing the response.
    Writing,
    /// Closed by us; waiting for the socket to settle before listening again.
    Closing,
}

struct Conn {
    handle: SocketHandle,
    phase: Phase,
    parser: RequestParser,
    out: alloc::vec::Vec<u8>,
    sent: usize,
    deadline_ms: u64,
}

/// The management server's sockets and per-connection state.
pub struct Server {
    port: Option<u16>,
    conns: alloc::vec::Vec<Conn>,
}

impl Server {
    /// Make the sockets; they listen on `port` from the next [`Server::poll`] (never if `None`).
    pub fn new(sockets: &mut SocketSet<'static>, port: Option<u16>) -> Server {
        let conns = (0..CONNECTIONS)
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
                    deadline_ms: 0,
                }
            })
            .collect();
        Server { port, conns }
    }

    /// Follow a new config: idle sockets move to `port`; connections in progress finish first.
    pub fn set_port(&mut self, port: Option<u16>) {
        self.port = port;
    }

    /// Serve: accept, read, answer through `handler`, close. Returns whether any socket changed
    /// (so the caller lets smoltcp send what was queued).
    pub fn poll(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now_ms: u64,
        handler: &mut dyn FnMut(Request) -> Response,
    ) -> bool {
        let mut touched = false;
        for conn in &mut self.conns {
            touched |= conn.poll(
                sockets.get_mut::<Socket>(conn.handle),
                self.port,
                now_ms,
                handler,
            );
        }
        touched
    }
}

impl Conn {
    fn poll(
        &mut self,
        s: &mut Socket<'static>,
        port: Option<u16>,
        now_ms: u64,
        handler: &mut dyn FnMut(Request) -> Response,
    ) -> bool {
        if self.phase != Phase::Idle && now_ms > self.deadline_ms {
            s.abort();
            self.finish();
            return true;
        }
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
                _ => {
                    self.phase = Phase::Reading;
                    self.parser = RequestParser::new();
                    self.deadline_ms = now_ms + IDLE_MS;
                    self.read(s, now_ms, handler)
                }
            },
            Phase::Reading => self.read(s, now_ms, handler),
            Phase::Writing => self.write(s, now_ms),
            Phase::Closing => {
                if matches!(s.state(), State::Closed | State::TimeWait) {
                    self.phase = Phase::Idle;
                }
                false
            }
        }
    }

    fn read(
        &mut self,
        s: &mut Socket<'static>,
        now_ms: u64,
        handler: &mut dyn FnMut(Request) -> Response,
    ) -> bool {
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
            self.deadline_ms = now_ms + IDLE_MS;
            if result == Parse::Continue {
                let _ = s.send_slice(CONTINUE);
                result = self.parser.push(&[]);
            }
            match result {
                Parse::NeedMore | Parse::Continue => {}
                Parse::Done(request) => return self.respond(s, handler(request), now_ms),
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
            s.abort();
            self.finish();
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
            s.abort();
            self.finish();
            return true;
        }
        let mut touched = false;
        if s.can_send() && self.sent < self.out.len() {
            if let Ok(n) = s.send_slice(&self.out[self.sent..]) {
                if n > 0 {
                    self.sent += n;
                    self.deadline_ms = now_ms + IDLE_MS;
                    touched = true;
                }
            }
        }
        if self.sent >= self.out.len() {
            s.close();
            self.phase = Phase::Closing;
            self.out = alloc::vec::Vec::new();
            touched = true;
        }
        touched
    }

    fn finish(&mut self) {
        self.phase = Phase::Closing;
        self.out = alloc::vec::Vec::new();
        self.parser = RequestParser::new();
    }
}
