//! The host side of the management API (the README's "Management" section): `PUT /config` and
//! `GET /status` over plain HTTP/1.1.
//!
//! One request per connection (`Connection: close`), so a response ends where the stream ends
//! and no HTTP client library is needed. Every wait is bounded: an image ignores connections
//! from sources outside its `[management] allow`, and to the operator that looks exactly like a
//! dead address, so the messages say which of the two is likelier.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// How long to wait for a connection, and then for each read or write.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request got no HTTP answer at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// `to` is not `HOST:PORT`, or the host has no address.
    BadAddress(String),
    /// Nothing answered the connection attempt in time: a silent drop, as the image does for
    /// sources outside `[management] allow`.
    NoAnswer(String),
    /// The host answered that nothing listens on the port.
    Refused(String),
    /// Connected, but the answer did not come (in time, or whole, or as HTTP).
    Broken(String, String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadAddress(m) => f.write_str(m),
            ClientError::NoAnswer(to) => write!(
                f,
                "no answer from {to} within {}s (is this machine's address in the image's \
                 [management] allow? is {to} the image's address and management port?)",
                TIMEOUT.as_secs()
            ),
            ClientError::Refused(to) => write!(
                f,
                "{to} refused the connection: nothing listens there (is the image running, with \
                 [management] port set to this port?)"
            ),
            ClientError::Broken(to, why) => write!(f, "{to}: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The reason phrase of the status line, e.g. `OK`.
    pub reason: String,
    /// The body as text (lossily decoded: the API's bodies are text).
    pub body: String,
}

fn resolve(to: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let bad = |why: String| ClientError::BadAddress(format!("\"{to}\" is not HOST:PORT: {why}"));
    if !to.contains(':') {
        return Err(bad(
            "the port is missing (the image's [management] port, e.g. 9100)".into(),
        ));
    }
    let addrs: Vec<SocketAddr> = to
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(bad("the host has no address".into()));
    }
    Ok(addrs)
}

fn connect(to: &str) -> Result<TcpStream, ClientError> {
    let mut last = ClientError::NoAnswer(to.to_string());
    for addr in resolve(to)? {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = ClientError::Refused(to.to_string());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                last = ClientError::NoAnswer(to.to_string());
            }
            Err(e) => last = ClientError::Broken(to.to_string(), format!("cannot connect: {e}")),
        }
    }
    Err(last)
}

/// One request: `method path` with `body` (sent with a `Content-Length` when not empty).
pub fn request(to: &str, method: &str, path: &str, body: &[u8]) -> Result<Response, ClientError> {
    let mut stream = connect(to)?;
    let broken = |why: String| ClientError::Broken(to.to_string(), why);
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| broken(format!("cannot set timeouts: {e}")))?;
    let host = to;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sidestep/{}\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if !body.is_empty() || method == "PUT" || method == "POST" {
        head.push_str("Content-Type: application/octet-stream\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    stream
        .write_all(&message)
        .and_then(|()| stream.flush())
        .map_err(|e| broken(format!("sending the request failed: {e}")))?;
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A server may close right after a complete response with a reset; keep what came.
        if raw.is_empty() || !matches!(e.kind(), std::io::ErrorKind::ConnectionReset) {
            let why = if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                format!(
                    "connected, but no complete response within {}s",
                    TIMEOUT.as_secs()
                )
            } else {
                format!("reading the response failed: {e}")
            };
            return Err(broken(why));
        }
    }
    parse_response(&raw).map_err(broken)
}

/// Parse a whole HTTP/1.x response (the stream up to its end).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "not an HTTP response ({} bytes without a header end)",
                raw.len()
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code, reason) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    let status = match (version, code.and_then(|c| c.parse::<u16>().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code,
        _ => return Err(format!("not an HTTP response: {status_line:?}")),
    };
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        if rest.len() < n {
            return Err(format!(
                "the response was cut short: {} of {n} body bytes",
                rest.len()
            ));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        reason: reason.to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunked body was cut short")?;
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size {
            return Err("a chunked body was cut short".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// `PUT /config` with a signed envelope. Any HTTP answer is `Ok`; see [`push_refusal`].
pub fn push(to: &str, signed: &[u8]) -> Result<Response, ClientError> {
    request(to, "PUT", "/config", signed)
}

/// What a refused push means, for an operator: `None` for 200. `version` is the pushed
/// config's, if known.
pub fn push_refusal(response: &Response, version: Option<u64>) -> Option<String> {
    let body = response.body.trim();
    let said = if body.is_empty() {
        String::new()
    } else {
        format!(" (the image said: {body})")
    };
    match response.status {
        200 => None,
        400 => Some(format!(
            "the image refused the config: {}",
            if body.is_empty() { "no reason given" } else { body }
        )),
        403 => Some(format!(
            "signature refused: does the image's management.pubkey match this key?{said}"
        )),
        421 => Some(format!(
            "the config is for another balancer: its interface.address is not this one's{said}"
        )),
        409 => Some(match version {
            Some(v) => format!(
                "version {v} is not newer than the running one; raise `version` and sign again{said}"
            ),
            None => format!("the version is not newer than the running one{said}"),
        }),
        other => Some(format!("unexpected answer {other} {}{said}", response.reason)),
    }
}

/// `GET /status`: the JSON document (see [`crate::status`]).
pub fn status(from: &str) -> Result<String, String> {
    get_ok(from, "/status")
}

/// `GET /metrics`: Prometheus text.
pub fn metrics(from: &str) -> Result<String, String> {
    get_ok(from, "/metrics")
}

fn get_ok(from: &str, path: &str) -> Result<String, String> {
    let response = request(from, "GET", path, &[]).map_err(|e| e.to_string())?;
    if response.status != 200 {
        return Err(format!(
            "GET {path} from {from}: {} {}: {}",
            response.status,
            response.reason,
            response.body.trim()
        ));
    }
    Ok(response.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_chunks_or_eof() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.body.as_str()),
            (200, "OK", "abc")
        );
        let r = parse_response(b"HTTP/1.1 409 Conflict\r\n\r\nold\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (409, "old\n"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "abcde");
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
                .unwrap_err()
                .contains("cut short")
        );
    }

    #[test]
    fn refusals_are_explained() {
        let r = |status, body: &str| Response {
            status,
            reason: String::new(),
            body: body.into(),
        };
        assert_eq!(push_refusal(&r(200, "applied"), Some(2)), None);
        assert!(push_refusal(&r(403, ""), None)
            .unwrap()
            .starts_with("signature refused: does the image's management.pubkey match this key?"));
        assert!(push_refusal(&r(421, ""), Some(2))
            .unwrap()
            .starts_with("the config is for another balancer"));
        assert!(push_refusal(&r(409, ""), Some(3))
            .unwrap()
            .starts_with("version 3 is not newer than the running one"));
        let e = push_refusal(&r(400, "vip \"web\": port: 0 is not a port\n"), None).unwrap();
        assert_eq!(
            e,
            "the image refused the config: vip \"web\": port: 0 is not a port"
        );
    }

    #[test]
    fn addresses_need_a_port() {
        assert!(
            matches!(request("127.0.0.1", "GET", "/", &[]), Err(ClientError::BadAddress(m)) if m.contains("port is missing"))
        );
    }
}
