//! The server side of HTTP/1.1 as the management API speaks it: [`RequestParser`], which takes a
//! connection's bytes in whatever pieces they arrive, [`route`] from method and path to an
//! [`Endpoint`], and [`Response`] with its bytes on the wire.

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

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
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
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
