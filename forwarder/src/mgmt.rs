//! The management API's pure parts: an incremental HTTP/1.1 request parser, routing, response
//! formatting, the Prometheus and JSON renderings of the counters, the decision on a pushed
//! config, and the small HTTP client pieces the boot-time fetch needs.
//!
//! The kernel owns the sockets and the clock; everything that looks at bytes from the network
//! lives here so that it is host-tested and fuzzed. The parser never panics and never holds more
//! than [`MAX_HEAD`] bytes of request head plus [`MAX_BODY`] bytes of body; its errors carry the
//! status code to answer with. Connections are one request each (`Connection: close`), which
//! keeps the server's state to a parser and an output buffer per socket.

use crate::config::{verify_signed, Config, SignedError};
use crate::stats::VipStats;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Most bytes of request line plus headers.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most bytes of a request body (a signed config).
pub const MAX_BODY: usize = 1 << 20;
/// Longest request target.
const MAX_TARGET: usize = 2048;

/// A complete request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method token, e.g. `GET`.
    pub method: String,
    /// The target's path, without any query string.
    pub path: String,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
}

/// A request that cannot be served, with the status to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// Status code (400, 413, 431, 501, 505).
    pub status: u16,
    /// Why, for the response body.
    pub reason: &'static str,
}

impl HttpError {
    const fn new(status: u16, reason: &'static str) -> HttpError {
        HttpError { status, reason }
    }

    /// The response to send for this error.
    pub fn response(&self) -> Response {
        Response::text(self.status, format!("{}\n", self.reason))
    }
}

/// What [`RequestParser::push`] made of the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse {
    /// The request is not complete yet.
    NeedMore,
    /// The client sent `Expect: 100-continue`: write [`CONTINUE`], then call `push(&[])` (the
    /// body may already be buffered) and go on feeding bytes.
    Continue,
    /// The request is complete. Later bytes are ignored (one request per connection).
    Done(Request),
    /// The request is broken or too big; answer with the error and close.
    Error(HttpError),
}

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Head,
    Body {
        method: String,
        path: String,
        length: usize,
        expect_continue: bool,
    },
    Finished,
}

/// An incremental HTTP/1.1 request parser: feed it bytes as they arrive.
#[derive(Clone, Debug)]
pub struct RequestParser {
    state: State,
    buf: Vec<u8>,
}

impl Default for RequestParser {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestParser {
    /// A parser waiting for a request line.
    pub fn new() -> RequestParser {
        RequestParser {
            state: State::Head,
            buf: Vec::new(),
        }
    }

    /// Whether the parser returned `Done` or `Error` already.
    pub fn finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Feed the next bytes of the connection.
    pub fn push(&mut self, data: &[u8]) -> Parse {
        match self.state {
            State::Finished => Parse::NeedMore,
            State::Head => {
                let searched = self.buf.len().saturating_sub(3);
                let room = (MAX_HEAD + 4).saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&data[..data.len().min(room)]);
                let Some(end) = find(&self.buf[searched..], b"\r\n\r\n").map(|i| i + searched)
                else {
                    if self.buf.len() > MAX_HEAD {
                        return self.fail(HttpError::new(431, "request head too large"));
                    }
                    return Parse::NeedMore;
                };
                if end > MAX_HEAD {
                    return self.fail(HttpError::new(431, "request head too large"));
                }
                let head = match parse_head(&self.buf[..end]) {
                    Ok(h) => h,
                    Err(e) => return self.fail(e),
                };
                // Body bytes that came with the head: those in `buf` past the blank line, then
                // the rest of `data` that did not fit the head's room.
                let mut body = self.buf.split_off(end + 4);
                body.extend_from_slice(&data[data.len().min(room)..]);
                self.buf = body;
                if self.buf.len() > head.length {
                    self.buf.truncate(head.length);
                }
                let expect_continue = head.expect_continue && head.length > self.buf.len();
                self.state = State::Body {
                    method: head.method,
                    path: head.path,
                    length: head.length,
                    expect_continue: false,
                };
                if expect_continue {
                    return Parse::Continue;
                }
                self.push(&[])
            }
            State::Body {
                length,
                expect_continue,
                ..
            } => {
                if expect_continue {
                    return Parse::Continue;
                }
                let want = length - self.buf.len();
                let take = data.len().min(want);
                if self.buf.capacity() < self.buf.len() + take {
                    // Grow with what arrives, not with what the header promises.
                    self.buf
                        .reserve((self.buf.len() + take).max(4096).min(length) - self.buf.len());
                }
                self.buf.extend_from_slice(&data[..take]);
                if self.buf.len() < length {
                    return Parse::NeedMore;
                }
                let State::Body { method, path, .. } =
                    core::mem::replace(&mut self.state, State::Finished)
                else {
                    return Parse::NeedMore;
                };
                Parse::Done(Request {
                    method,
                    path,
                    body: core::mem::take(&mut self.buf),
                })
            }
        }
    }

    fn fail(&mut self, e: HttpError) -> Parse {
        self.state = State::Finished;
        self.buf = Vec::new();
        Parse::Error(e)
    }
}

struct Head {
    method: String,
    path: String,
    length: usize,
    expect_continue: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let bad = |reason| HttpError::new(400, reason);
    let text = core::str::from_utf8(head).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("request line is not METHOD TARGET VERSION"));
    };
    if !is_token(method) || method.len() > 16 {
        return Err(bad("bad method"));
    }
    if !target.starts_with('/')
        || target.len() > MAX_TARGET
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad("bad request target"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => {
            return Err(HttpError::new(505, "only HTTP/1.0 and HTTP/1.1 are served"))
        }
        _ => return Err(bad("bad HTTP version")),
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let mut length: Option<usize> = None;
    let mut expect_continue = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("header line without a colon"));
        };
        if !is_token(name) {
            return Err(bad("bad header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("bad Content-Length"));
            }
            let n: usize = value.parse().map_err(|_| bad("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            if n > MAX_BODY {
                return Err(HttpError::new(413, "request body larger than 1 MiB"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::new(
                501,
                "Transfer-Encoding is not supported; send Content-Length",
            ));
        } else if name.eq_ignore_ascii_case("expect") {
            if value.eq_ignore_ascii_case("100-continue") {
                expect_continue = true;
            } else {
                return Err(HttpError::new(
                    417,
                    "only Expect: 100-continue is understood",
                ));
            }
        }
    }
    Ok(Head {
        method: String::from(method),
        path: String::from(path),
        length: length.unwrap_or(0),
        expect_continue,
    })
}

/// The endpoints of the management API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /metrics`
    Metrics,
    /// `GET /status`
    Status,
    /// `PUT /config`
    Config,
}

/// Which endpoint serves `method` on `path`; 404 for an unknown path, 405 for a wrong method.
pub fn route(method: &str, path: &str) -> Result<Endpoint, Response> {
    let (endpoint, allowed) = match path {
        "/metrics" => (Endpoint::Metrics, "GET"),
        "/status" => (Endpoint::Status, "GET"),
        "/config" => (Endpoint::Config, "PUT"),
        _ => {
            return Err(Response::text(
                404,
                String::from("not found; try /metrics, /status or PUT /config\n"),
            ))
        }
    };
    if method == allowed {
        Ok(endpoint)
    } else {
        let mut r = Response::text(405, format!("{path} takes {allowed}\n"));
        r.allow = Some(allowed);
        Err(r)
    }
}

/// A response to write and then close the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Value of `Content-Type`.
    pub content_type: &'static str,
    /// Value of `Allow` (405 only).
    pub allow: Option<&'static str>,
    /// The body.
    pub body: Vec<u8>,
}

/// Content type of the Prometheus text format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            allow: None,
            body: body.into_bytes(),
        }
    }

    /// A response with `body` of type `content_type`.
    pub fn with(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            allow: None,
            body: body.into_bytes(),
        }
    }

    /// Status line, headers and body, ready for the socket.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            let _ = write!(head, "Allow: {allow}\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// The reason phrase of the status codes this server sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Decide on a pushed (or fetched) signed config: the config to apply, or the refusal.
/// 403 without a public key or with a bad signature, 400 when malformed or invalid (the reason
/// names the field), 409 when its version is not newer than `running`.
pub fn check_signed_config(
    signed: &[u8],
    pubkey: Option<&[u8; 32]>,
    running: u64,
) -> Result<Config, Response> {
    let Some(pubkey) = pubkey else {
        return Err(Response::text(
            403,
            String::from("no management.pubkey is configured, so no config is accepted\n"),
        ));
    };
    match verify_signed(signed, pubkey) {
        Ok(config) if config.version <= running => Err(Response::text(
            409,
            format!(
                "version {} is not newer than the running version {}\n",
                config.version, running
            ),
        )),
        Ok(config) => Ok(config),
        Err(e @ SignedError::BadSignature) => Err(Response::text(403, format!("{e}\n"))),
        Err(e) => Err(Response::text(400, format!("{e}\n"))),
    }
}

/// A health checker's transition count for one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transitions<'a> {
    /// The VIP's name.
    pub vip: &'a str,
    /// The backend's name.
    pub backend: &'a str,
    /// Up/down changes so far.
    pub count: u64,
}

/// Everything `/metrics` and `/status` show, as plain data.
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    /// The running config (VIP attributes; its version is the running version).
    pub config: &'a Config,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// The flow table's capacity.
    pub flows_capacity: u64,
    /// Drop counters by label, every label present.
    pub drops: &'a [(&'a str, u64)],
    /// Per-VIP state and counters, in config order.
    pub vips: &'a [VipStats],
    /// Health-check transitions of checked backends.
    pub transitions: &'a [Transitions<'a>],
    /// Frames received by the NIC.
    pub nic_rx_packets: u64,
    /// Frames sent by the NIC.
    pub nic_tx_packets: u64,
    /// Flows moved off backends that went down.
    pub flows_rescheduled: u64,
}

/// Escape a Prometheus label value.
fn label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escape a JSON string (without the quotes).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// The Prometheus text exposition of `s`.
pub fn render_metrics(s: &Snapshot<'_>) -> String {
    let mut o = String::new();
    family(
        &mut o,
        "sidestep_config_version",
        "gauge",
        "Version of the running config.",
    );
    let _ = writeln!(o, "sidestep_config_version {}", s.config.version);
    family(
        &mut o,
        "sidestep_uptime_seconds",
        "gauge",
        "Seconds since the image booted.",
    );
    let _ = writeln!(
        o,
        "sidestep_uptime_seconds {}.{:03}",
        s.uptime_ms / 1000,
        s.uptime_ms % 1000
    );
    family(
        &mut o,
        "sidestep_flows_capacity",
        "gauge",
        "Capacity of the flow table.",
    );
    let _ = writeln!(o, "sidestep_flows_capacity {}", s.flows_capacity);
    family(
        &mut o,
        "sidestep_nic_rx_packets_total",
        "counter",
        "Frames received by the data NIC.",
    );
    let _ = writeln!(o, "sidestep_nic_rx_packets_total {}", s.nic_rx_packets);
    family(
        &mut o,
        "sidestep_nic_tx_packets_total",
        "counter",
        "Frames sent by the data NIC.",
    );
    let _ = writeln!(o, "sidestep_nic_tx_packets_total {}", s.nic_tx_packets);
    family(
        &mut o,
        "sidestep_flows_rescheduled_total",
        "counter",
        "Flows moved off a backend that health checks marked down.",
    );
    let _ = writeln!(
        o,
        "sidestep_flows_rescheduled_total {}",
        s.flows_rescheduled
    );
    family(
        &mut o,
        "sidestep_drops_total",
        "counter",
        "Frames not forwarded, by reason.",
    );
    for (reason, n) in s.drops {
        let _ = writeln!(
            o,
            "sidestep_drops_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }

    type VipMetric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&VipStats) -> u64,
    );
    let vip_metrics: [VipMetric; 3] = [
        (
            "sidestep_vip_packets_total",
            "counter",
            "Packets forwarded for the VIP.",
            |v| v.packets,
        ),
        (
            "sidestep_vip_bytes_total",
            "counter",
            "IP bytes forwarded for the VIP.",
            |v| v.bytes,
        ),
        (
            "sidestep_flows_active",
            "gauge",
            "Flows of the VIP in the flow table.",
            |v| v.flows_active,
        ),
    ];
    for (name, kind, help, get) in vip_metrics {
        family(&mut o, name, kind, help);
        for v in s.vips {
            let _ = writeln!(o, "{name}{{vip=\"{}\"}} {}", label(&v.name), get(v));
        }
    }
    type BackendMetric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&crate::stats::BackendStats) -> u64,
    );
    let backend_metrics: [BackendMetric; 3] = [
        (
            "sidestep_backend_packets_total",
            "counter",
            "Packets forwarded to the backend.",
            |b| b.packets,
        ),
        (
            "sidestep_backend_bytes_total",
            "counter",
            "IP bytes forwarded to the backend.",
            |b| b.bytes,
        ),
        (
            "sidestep_backend_up",
            "gauge",
            "1 if the backend is up (health checks), else 0.",
            |b| u64::from(b.up),
        ),
    ];
    for (name, kind, help, get) in backend_metrics {
        family(&mut o, name, kind, help);
        for v in s.vips {
            for b in &v.backends {
                let _ = writeln!(
                    o,
                    "{name}{{vip=\"{}\",backend=\"{}\"}} {}",
                    label(&v.name),
                    label(&b.name),
                    get(b)
                );
            }
        }
    }
    family(
        &mut o,
        "sidestep_health_transitions_total",
        "counter",
        "Up/down changes decided by health checks.",
    );
    for t in s.transitions {
        let _ = writeln!(
            o,
            "sidestep_health_transitions_total{{vip=\"{}\",backend=\"{}\"}} {}",
            label(t.vip),
            label(t.backend),
            t.count
        );
    }
    o
}

/// The `/status` JSON of `s`:
/// `{"version":V,"uptime_ms":U,"flows_capacity":C,"drops":{"malformed":N,...},"vips":[{"name":..,
/// "address":..,"port":"80"|"*","protocol":..,"mode":..,"scheduler":..,"packets":N,"bytes":N,
/// "flows":N,"backends":[{"name":..,"address":..,"weight":N,"up":B,"packets":N,"bytes":N,
/// "flows":N}]}]}`.
pub fn render_status(s: &Snapshot<'_>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"version\":{},\"uptime_ms\":{},\"flows_capacity\":{},\"drops\":{{",
        s.config.version, s.uptime_ms, s.flows_capacity
    );
    for (i, (reason, n)) in s.drops.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(o, "{sep}\"{}\":{n}", json_str(reason));
    }
    o.push_str("},\"vips\":[");
    for (i, v) in s.vips.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let cfg = s.config.vips.iter().find(|c| c.name == v.name);
        let _ = write!(o, "{{\"name\":\"{}\"", json_str(&v.name));
        match cfg {
            Some(c) => {
                let _ = write!(
                    o,
                    ",\"address\":\"{}\",\"port\":\"{}\",\"protocol\":\"{}\",\"mode\":\"{}\",\"scheduler\":\"{}\"",
                    c.address,
                    c.port,
                    c.protocol.name(),
                    c.mode.name(),
                    c.scheduler.name()
                );
            }
            None => o.push_str(
                ",\"address\":\"\",\"port\":\"\",\"protocol\":\"\",\"mode\":\"\",\"scheduler\":\"\"",
            ),
        }
        let _ = write!(
            o,
            ",\"packets\":{},\"bytes\":{},\"flows\":{},\"backends\":[",
            v.packets, v.bytes, v.flows_active
        );
        for (j, b) in v.backends.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let _ = write!(
                o,
                "{{\"name\":\"{}\",\"address\":\"{}\",\"weight\":{},\"up\":{},\"packets\":{},\"bytes\":{},\"flows\":{}}}",
                json_str(&b.name),
                b.address,
                b.weight,
                b.up,
                b.packets,
                b.bytes,
                b.flows_active
            );
        }
        o.push_str("]}");
    }
    o.push_str("]}\n");
    o
}

/// The request of the boot-time fetch of `path` from `host:port`.
pub fn fetch_request(host: core::net::Ipv4Addr, port: u16, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: sidestep\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// A response read to the end of its connection: status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientResponse<'a> {
    /// The status code.
    pub status: u16,
    /// The body (cut to `Content-Length` when there is one).
    pub body: &'a [u8],
}

/// Parse a whole HTTP/1.x response (everything the server sent before closing).
pub fn parse_response(data: &[u8]) -> Result<ClientResponse<'_>, &'static str> {
    let end = find(&data[..data.len().min(MAX_HEAD + 4)], b"\r\n\r\n")
        .ok_or("the response has no complete head")?;
    let head = core::str::from_utf8(&data[..end]).map_err(|_| "the response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err("not an HTTP/1.x response");
    }
    let code = parts.next().unwrap_or("");
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad status code");
    }
    let status: u16 = code.parse().map_err(|_| "bad status code")?;
    let mut body = &data[end + 4..];
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err("header line without a colon");
        };
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity")
        {
            return Err("chunked responses are not supported");
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| "bad Content-Length")?;
            if body.len() < n {
                return Err("the connection closed before the whole body arrived");
            }
            body = &body[..n];
        }
    }
    Ok(ClientResponse { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{signed_envelope, Config};
    use crate::stats::BackendStats;

    fn one_shot(bytes: &[u8]) -> Parse {
        RequestParser::new().push(bytes)
    }

    #[test]
    fn get_in_one_piece() {
        let r = one_shot(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            r,
            Parse::Done(Request {
                method: "GET".into(),
                path: "/metrics".into(),
                body: vec![]
            })
        );
    }

    #[test]
    fn put_byte_by_byte() {
        let req = b"PUT /config HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        let mut p = RequestParser::new();
        let mut done = None;
        for (i, b) in req.iter().enumerate() {
            match p.push(&[*b]) {
                Parse::NeedMore => {}
                Parse::Done(r) => {
                    done = Some((i, r));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let (i, r) = done.expect("complete");
        assert_eq!(i, req.len() - 6);
        assert_eq!(r.body, b"hello");
        assert!(p.finished());
        assert_eq!(p.push(b"more"), Parse::NeedMore);
    }

    #[test]
    fn body_with_head_and_split() {
        let mut p = RequestParser::new();
        assert_eq!(
            p.push(b"PUT /config HTTP/1.1\r\ncontent-length: 6\r\n\r\nab"),
            Parse::NeedMore
        );
        match p.push(b"cdef") {
            Parse::Done(r) => assert_eq!(r.body, b"abcdef"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expect_continue() {
        let mut p = RequestParser::new();
        assert_eq!(
            p.push(b"PUT /config HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
            Parse::Continue
        );
        assert_eq!(p.push(&[]), Parse::NeedMore);
        match p.push(b"xyz") {
            Parse::Done(r) => assert_eq!(r.body, b"xyz"),
            other => panic!("{other:?}"),
        }
        // A client that did not wait: the body is already there.
        let mut p = RequestParser::new();
        match p
            .push(b"PUT /config HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nxyz")
        {
            Parse::Done(r) => assert_eq!(r.body, b"xyz"),
            other => panic!("{other:?}"),
        }
    }

    fn status_of(bytes: &[u8]) -> u16 {
        match one_shot(bytes) {
            Parse::Error(e) => e.status,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors() {
        assert_eq!(status_of(b"GARBAGE\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET metrics HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET /x HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status_of(b"GET /x HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
        assert_eq!(
            status_of(b"PUT /config HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"PUT /config HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"PUT /config HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n"),
            413
        );
        assert_eq!(
            status_of(b"PUT /config HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"PUT /config HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(status_of(b"GET /\xff HTTP/1.1\r\n\r\n"), 400);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 100, b'a');
        assert_eq!(status_of(&big), 431);
    }

    #[test]
    fn body_of_exactly_the_limit() {
        let mut req =
            format!("PUT /config HTTP/1.1\r\nContent-Length: {MAX_BODY}\r\n\r\n").into_bytes();
        req.resize(req.len() + MAX_BODY, 7);
        let mut p = RequestParser::new();
        let mut result = Parse::NeedMore;
        for chunk in req.chunks(1460) {
            result = p.push(chunk);
        }
        match result {
            Parse::Done(r) => assert_eq!(r.body.len(), MAX_BODY),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/metrics"), Ok(Endpoint::Metrics));
        assert_eq!(route("GET", "/status"), Ok(Endpoint::Status));
        assert_eq!(route("PUT", "/config"), Ok(Endpoint::Config));
        assert_eq!(route("GET", "/nope").unwrap_err().status, 404);
        let r = route("POST", "/config").unwrap_err();
        assert_eq!(r.status, 405);
        let bytes = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            bytes.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{bytes}"
        );
        assert!(bytes.contains("\r\nAllow: PUT\r\n"), "{bytes}");
    }

    #[test]
    fn response_bytes() {
        let r = Response::text(200, "applied config v2\n".into());
        assert_eq!(
            r.to_bytes(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 18\r\nConnection: close\r\n\r\napplied config v2\n"
        );
    }

    fn config() -> Config {
        use crate::config::{
            Backend, Interface, Limits, Mode, Prefix, Protocol, Scheduler, Vip, VipPort,
        };
        let backend = |name: &str, address: &str, weight| Backend {
            name: name.into(),
            address: address.parse().unwrap(),
            weight,
        };
        let config = Config {
            version: 7,
            interface: Interface {
                address: Prefix::parse("10.77.0.2/24").unwrap(),
                gateway: None,
                mtu: 1500,
                nic: None,
                poll: Default::default(),
            },
            management: None,
            limits: Limits::default(),
            vips: vec![Vip {
                name: "web".into(),
                address: "10.77.0.100".parse().unwrap(),
                port: VipPort::One(80),
                protocol: Protocol::Tcp,
                mode: Mode::DsrL2,
                scheduler: Scheduler::Rr,
                persistence: None,
                health: None,
                backends: vec![
                    backend("be1", "10.77.0.21", 1),
                    backend("be2", "10.77.0.22", 2),
                ],
            }],
        };
        config.validate().unwrap();
        config
    }

    fn stats() -> Vec<VipStats> {
        vec![VipStats {
            name: "web".into(),
            packets: 10,
            bytes: 1000,
            flows_active: 2,
            backends: vec![
                BackendStats {
                    name: "be1".into(),
                    address: "10.77.0.21".parse().unwrap(),
                    weight: 1,
                    up: true,
                    packets: 6,
                    bytes: 600,
                    flows_active: 1,
                },
                BackendStats {
                    name: "be\"2".into(),
                    address: "10.77.0.22".parse().unwrap(),
                    weight: 2,
                    up: false,
                    packets: 4,
                    bytes: 400,
                    flows_active: 1,
                },
            ],
        }]
    }

    #[test]
    fn status_json() {
        let config = config();
        let vips = stats();
        let drops = [("malformed", 3), ("not_vip", 0), ("mgmt_denied", 1)];
        let s = Snapshot {
            config: &config,
            uptime_ms: 1234,
            flows_capacity: 1024,
            drops: &drops,
            vips: &vips,
            transitions: &[],
            nic_rx_packets: 0,
            nic_tx_packets: 0,
            flows_rescheduled: 0,
        };
        assert_eq!(
            render_status(&s),
            "{\"version\":7,\"uptime_ms\":1234,\"flows_capacity\":1024,\
             \"drops\":{\"malformed\":3,\"not_vip\":0,\"mgmt_denied\":1},\
             \"vips\":[{\"name\":\"web\",\"address\":\"10.77.0.100\",\"port\":\"80\",\
             \"protocol\":\"tcp\",\"mode\":\"dsr-l2\",\"scheduler\":\"rr\",\
             \"packets\":10,\"bytes\":1000,\"flows\":2,\"backends\":[\
             {\"name\":\"be1\",\"address\":\"10.77.0.21\",\"weight\":1,\"up\":true,\"packets\":6,\"bytes\":600,\"flows\":1},\
             {\"name\":\"be\\\"2\",\"address\":\"10.77.0.22\",\"weight\":2,\"up\":false,\"packets\":4,\"bytes\":400,\"flows\":1}]}]}\n"
        );
    }

    #[test]
    fn metrics_text() {
        let config = config();
        let vips = stats();
        let drops = [("malformed", 3), ("mgmt_denied", 1)];
        let transitions = [Transitions {
            vip: "web",
            backend: "be1",
            count: 2,
        }];
        let s = Snapshot {
            config: &config,
            uptime_ms: 61_005,
            flows_capacity: 1024,
            drops: &drops,
            vips: &vips,
            transitions: &transitions,
            nic_rx_packets: 5,
            nic_tx_packets: 6,
            flows_rescheduled: 4,
        };
        let m = render_metrics(&s);
        for line in [
            "# TYPE sidestep_config_version gauge",
            "sidestep_config_version 7",
            "sidestep_uptime_seconds 61.005",
            "sidestep_drops_total{reason=\"malformed\"} 3",
            "sidestep_drops_total{reason=\"mgmt_denied\"} 1",
            "# TYPE sidestep_vip_packets_total counter",
            "sidestep_vip_packets_total{vip=\"web\"} 10",
            "sidestep_vip_bytes_total{vip=\"web\"} 1000",
            "sidestep_flows_active{vip=\"web\"} 2",
            "sidestep_backend_packets_total{vip=\"web\",backend=\"be1\"} 6",
            "sidestep_backend_bytes_total{vip=\"web\",backend=\"be\\\"2\"} 400",
            "sidestep_backend_up{vip=\"web\",backend=\"be1\"} 1",
            "sidestep_backend_up{vip=\"web\",backend=\"be\\\"2\"} 0",
            "sidestep_health_transitions_total{vip=\"web\",backend=\"be1\"} 2",
            "sidestep_nic_rx_packets_total 5",
            "sidestep_flows_rescheduled_total 4",
            "sidestep_flows_capacity 1024",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        // Every family has HELP and TYPE before its samples.
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(m.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(m.contains(&format!("# HELP {name} ")), "{name}");
        }
    }

    #[test]
    fn signed_config_decisions() {
        use ed25519_compact::{KeyPair, Seed};
        let kp = KeyPair::from_seed(Seed::new([9; 32]));
        let other = KeyPair::from_seed(Seed::new([8; 32]));
        let pk: [u8; 32] = *kp.pk;
        let blob = config().to_blob();
        let sign = |k: &KeyPair, b: &[u8]| signed_envelope(b, &k.sk.sign(b, None));
        let good = sign(&kp, &blob);
        assert_eq!(
            check_signed_config(&good, Some(&pk), 6).map(|c| c.version),
            Ok(7)
        );
        assert_eq!(
            check_signed_config(&good, Some(&pk), 7).unwrap_err().status,
            409
        );
        assert_eq!(check_signed_config(&good, None, 1).unwrap_err().status, 403);
        assert_eq!(
            check_signed_config(&sign(&other, &blob), Some(&pk), 1)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            check_signed_config(b"junk", Some(&pk), 1)
                .unwrap_err()
                .status,
            400
        );
        let mut bad = config();
        bad.vips[0].backends[0].weight = 100_000;
        let r = check_signed_config(&sign(&kp, &bad.to_blob()), Some(&pk), 1).unwrap_err();
        assert_eq!(r.status, 400);
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.contains("weight"), "{text}");
    }

    #[test]
    fn client_side() {
        assert_eq!(
            fetch_request("10.77.0.5".parse().unwrap(), 8080, "/s.cfg"),
            b"GET /s.cfg HTTP/1.1\r\nHost: 10.77.0.5:8080\r\nUser-Agent: sidestep\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let r = parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((r.status, r.body), (200, &b"abc"[..]));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((r.status, r.body), (404, &b"nope"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_response(b"").is_err());
    }
}
