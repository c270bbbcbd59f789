//! The client side the boot-time fetch needs: the GET it sends, and the parse of the whole
//! response it reads until the server closes.

use super::http::{find, MAX_HEAD};
use alloc::format;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// The request of the boot-time fetch of `path` from `host:port`.
pub fn fetch_request(host: Ipv4Addr, port: u16, path: &str) -> Vec<u8> {
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
