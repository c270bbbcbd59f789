//! The management API's pure parts: an incremental HTTP/1.1 request parser, routing and response
//! formatting ([`RequestParser`], [`route`], [`Response`]; `http.rs`), the Prometheus and JSON
//! renderings of the counters ([`render_metrics`], [`render_status`]; `render.rs`), the decision
//! on a pushed config (`check_signed_config`, feature `signed`), and the small HTTP client pieces
//! the boot-time fetch needs ([`fetch_request`], [`parse_response`]; `client.rs`), and how the
//! server shares its connections among sources, with their deadlines ([`share`]).
//!
//! The kernel owns the sockets and the clock; everything that looks at bytes from the network
//! lives here so that it is host-tested and fuzzed. The parser never panics and never holds more
//! than [`MAX_HEAD`] bytes of request head plus [`MAX_BODY`] bytes of body; its errors carry the
//! status code to answer with. Connections are one request each (`Connection: close`), which
//! keeps the server's state to a parser and an output buffer per socket.

mod client;
mod http;
mod render;
pub mod share;

pub use client::{fetch_request, parse_response, ClientResponse};
pub use http::{
    reason_phrase, route, Endpoint, HttpError, Parse, Request, RequestParser, Response, CONTINUE,
    MAX_BODY, MAX_HEAD,
};
pub use render::{
    render_metrics, render_status, BgpPeer, CoreView, Snapshot, Transitions, PROMETHEUS,
};

#[cfg(feature = "signed")]
use crate::config::Config;
#[cfg(feature = "signed")]
use crate::envelope::{verify_signed, SignedError};
#[cfg(feature = "signed")]
use alloc::{format, string::String};
#[cfg(feature = "signed")]
use core::net::Ipv4Addr;

/// Decide on a pushed (or fetched) signed config: the config to apply, or the refusal.
/// 403 without a public key or with a bad signature; 421 (Misdirected Request) when the config
/// is for another instance (its `interface.address` is not `instance`, the running one's: a
/// config signed for one balancer of a fleet is refused by the others, replayed or not); 400
/// when malformed or invalid (the reason names the field); 409 when its version is not newer
/// than `running`.
#[cfg(feature = "signed")]
pub fn check_signed_config(
    signed: &[u8],
    pubkey: Option<&[u8; 32]>,
    running: u64,
    instance: Ipv4Addr,
) -> Result<Config, Response> {
    let Some(pubkey) = pubkey else {
        return Err(Response::text(
            403,
            String::from("no management.pubkey is configured, so no config is accepted\n"),
        ));
    };
    match verify_signed(signed, pubkey) {
        Ok(config) if config.interface.address.address != instance => Err(Response::text(
            421,
            format!(
                "this config is for the balancer at {} (its interface.address), not this one at {instance}\n",
                config.interface.address.address
            ),
        )),
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

#[cfg(all(test, feature = "signed"))]
mod tests {
    use super::*;
    use crate::envelope::signed_envelope;
    use crate::mgmt::render::tests::config;

    #[test]
    fn signed_config_decisions() {
        use ed25519_compact::{KeyPair, Seed};
        let kp = KeyPair::from_seed(Seed::new([9; 32]));
        let other = KeyPair::from_seed(Seed::new([8; 32]));
        let pk: [u8; 32] = *kp.pk;
        let blob = config().to_blob();
        let here = config().interface.address.address;
        let sign = |k: &KeyPair, b: &[u8]| signed_envelope(b, &k.sk.sign(b, None));
        let good = sign(&kp, &blob);
        assert_eq!(
            check_signed_config(&good, Some(&pk), 6, here).map(|c| c.version),
            Ok(7)
        );
        assert_eq!(
            check_signed_config(&good, Some(&pk), 7, here)
                .unwrap_err()
                .status,
            409
        );
        assert_eq!(
            check_signed_config(&good, None, 1, here)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            check_signed_config(&sign(&other, &blob), Some(&pk), 1, here)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            check_signed_config(b"junk", Some(&pk), 1, here)
                .unwrap_err()
                .status,
            400
        );
        let mut bad = config();
        bad.vips[0].backends[0].weight = 100_000;
        let r = check_signed_config(&sign(&kp, &bad.to_blob()), Some(&pk), 1, here).unwrap_err();
        assert_eq!(r.status, 400);
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.contains("weight"), "{text}");
        // Signed for another balancer of the fleet: refused, whatever its version.
        let elsewhere = Ipv4Addr::new(192, 0, 2, 1);
        let r = check_signed_config(&good, Some(&pk), 1, elsewhere).unwrap_err();
        assert_eq!(r.status, 421);
        let text = String::from_utf8(r.body).unwrap();
        assert!(
            text.contains(&format!("for the balancer at {here}")),
            "{text}"
        );
    }
}
