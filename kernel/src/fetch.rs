//! The boot-time fetch of a signed config (`[management] fetch = "http://A.B.C.D:PORT/PATH"`).
//!
//! The image does not wait for it: it prints `ready` and forwards with the baked config while the
//! fetch runs in the poll loop, so a config server that is down costs nothing but a log line.
//! The fetch is a plain HTTP/1.1 GET over a smoltcp socket from the balancer's own address,
//! read until the server closes. Transport failures and non-200 answers are retried on the
//! schedule of `control::fetch` (5 tries, backing off from half a second, about 15 s in all when
//! nothing answers); a blob that arrives but does not verify is final. The caller decides what to
//! do with the blob (`control::mgmt::check_signed_config`, then apply it or log why not).

use crate::local::Ports;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use control::fetch::{Retry, Step, STALL_MS, TRIES};
use control::mgmt::{fetch_request, parse_response, MAX_BODY, MAX_HEAD};
use core::net::Ipv4Addr;
use log::warn;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::{IpAddress, IpEndpoint};

/// A fetch in progress.
pub struct Fetch {
    addr: Ipv4Addr,
    port: u16,
    path: String,
    handle: SocketHandle,
    retry: Retry,
    sent: bool,
    established: bool,
    data: Vec<u8>,
    last_error: String,
}

/// What a finished fetch got.
pub enum Outcome {
    /// The body of a 200 answer.
    Blob(Vec<u8>),
    /// Why there is nothing after every try.
    Failed(String),
}

impl Fetch {
    /// Start fetching `url` (checked by config validation; an unusable one is an error here).
    pub fn new(url: &str, sockets: &mut SocketSet<'static>, now_ms: u64) -> Result<Fetch, String> {
        let (addr, port, path) = control::config::parse_http_url(url)
            .ok_or_else(|| format!("{url:?} is not http://A.B.C.D[:PORT]/PATH"))?;
        let handle = sockets.add(Socket::new(
            SocketBuffer::new(alloc::vec![0; 64 * 1024]),
            SocketBuffer::new(alloc::vec![0; 1024]),
        ));
        Ok(Fetch {
            addr,
            port,
            path: String::from(path),
            handle,
            retry: Retry::new(now_ms),
            sent: false,
            established: false,
            data: Vec::new(),
            last_error: String::new(),
        })
    }

    /// Drive the fetch. `Some` once it is over (then drop it with [`Fetch::release`]); the bool
    /// says whether a socket changed.
    pub fn poll(
        &mut self,
        now_ms: u64,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        ports: &mut Ports,
    ) -> (Option<Outcome>, bool) {
        let s = sockets.get_mut::<Socket>(self.handle);
        if !self.retry.in_flight() {
            match self.retry.poll(now_ms) {
                Step::Wait => return (None, false),
                Step::GiveUp => {
                    let why = format!(
                        "no config after {} tries: {}",
                        self.retry.tries(),
                        self.last_error
                    );
                    return (Some(Outcome::Failed(why)), false);
                }
                Step::Attempt => {}
            }
            self.sent = false;
            self.established = false;
            self.data.clear();
            let remote = IpEndpoint::new(IpAddress::Ipv4(self.addr), self.port);
            match s.connect(iface.context(), remote, ports.next()) {
                Ok(()) => self.retry.progress(now_ms),
                Err(e) => self.fail(format!("cannot connect: {e}"), now_ms),
            }
            return (None, true);
        }
        // Judged on the deadline as it was before this round's bytes.
        let stalled = self.retry.stalled(now_ms);
        let mut touched = false;
        if s.may_send() && !self.sent {
            self.established = true;
            let request = fetch_request(self.addr, self.port, &self.path);
            if s.send_slice(&request) == Ok(request.len()) {
                self.sent = true;
                touched = true;
            }
        }
        while s.can_recv() {
            let data = &mut self.data;
            match s.recv(|buf| {
                data.extend_from_slice(buf);
                (buf.len(), buf.len())
            }) {
                Ok(n) if n > 0 => {
                    self.retry.progress(now_ms);
                    touched = true;
                }
                _ => break,
            }
            if self.data.len() > MAX_BODY + MAX_HEAD {
                s.abort();
                self.fail(String::from("the answer is larger than 1 MiB"), now_ms);
                return (None, true);
            }
        }
        let state = s.state();
        if self.sent && !s.may_recv() && !s.can_recv() {
            // The server closed after its answer: that is the end of the body.
            s.abort();
            self.retry.answered();
            let result = match parse_response(&self.data) {
                Ok(r) if r.status == 200 => Ok(Vec::from(r.body)),
                Ok(r) => Err(format!("the server answered {}", r.status)),
                Err(e) => Err(String::from(e)),
            };
            return match result {
                Ok(blob) => (Some(Outcome::Blob(blob)), true),
                Err(e) => {
                    self.fail(e, now_ms);
                    (None, true)
                }
            };
        }
        if state == State::Closed {
            let why = if self.established {
                "the connection was reset"
            } else {
                "connection refused"
            };
            self.fail(String::from(why), now_ms);
            return (None, true);
        }
        if stalled {
            s.abort();
            let why = if self.established {
                format!("the server stalled for {} s", STALL_MS / 1000)
            } else {
                format!("no answer within {} s", STALL_MS / 1000)
            };
            self.fail(why, now_ms);
            return (None, true);
        }
        (None, touched)
    }

    fn fail(&mut self, why: String, now_ms: u64) {
        self.data = Vec::new();
        if let Some(backoff) = self.retry.failed(now_ms) {
            warn!(
                "fetch: try {} of {} failed ({why}); again in {} ms",
                self.retry.tries(),
                TRIES,
                backoff
            );
        }
        self.last_error = why;
    }

    /// Give the socket back.
    pub fn release(self, sockets: &mut SocketSet<'static>) {
        sockets.remove(self.handle);
    }
}
