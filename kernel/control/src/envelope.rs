//! The signed envelope of a config that reaches a running image (pushed with `PUT /config`, or
//! fetched at boot): [`SIGNED_MAGIC`], the 64-byte Ed25519 signature of the blob, then the blob
//! exactly as [`Config::to_blob`] writes it. The host tool signs (it holds the private key); the
//! image verifies with its config's `management.pubkey`.
//!
//! Compiled with the `signed` feature only, which is what links `ed25519-compact`: the forwarder
//! uses the config model without it.

use crate::config::{Config, ConfigError};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The first bytes of a signed config: magic, then the 64-byte Ed25519 signature of the blob,
/// then the blob itself (as [`Config::to_blob`] writes it).
pub const SIGNED_MAGIC: [u8; 8] = *b"SSSIGNED";
/// Length of the signed envelope's header (magic + signature).
pub const SIGNED_HEADER: usize = 8 + 64;

/// Why a signed config was refused. The management API maps `Malformed` and `Invalid` to 400
/// and `BadSignature` to 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedError {
    /// Not a signed config envelope at all.
    Malformed(String),
    /// The signature does not verify with the configured public key.
    BadSignature,
    /// Signed correctly, but the config inside is not valid (or not decodable).
    Invalid(ConfigError),
}

impl fmt::Display for SignedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignedError::Malformed(m) => write!(f, "not a signed config: {m}"),
            SignedError::BadSignature => {
                f.write_str("signature does not verify with management.pubkey")
            }
            SignedError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// Split a signed envelope into (signature, blob) without verifying anything.
pub fn split_signed(signed: &[u8]) -> Result<(&[u8], &[u8]), SignedError> {
    if signed.len() < SIGNED_HEADER || signed[..8] != SIGNED_MAGIC {
        return Err(SignedError::Malformed(format!(
            "a signed config starts with \"SSSIGNED\" and a 64-byte signature ({} bytes given)",
            signed.len()
        )));
    }
    Ok((&signed[8..SIGNED_HEADER], &signed[SIGNED_HEADER..]))
}

/// Verify a signed envelope with `pubkey`, then decode and validate the config inside.
pub fn verify_signed(signed: &[u8], pubkey: &[u8; 32]) -> Result<Config, SignedError> {
    let (signature, blob) = split_signed(signed)?;
    let key =
        ed25519_compact::PublicKey::from_slice(pubkey).map_err(|_| SignedError::BadSignature)?;
    let signature =
        ed25519_compact::Signature::from_slice(signature).map_err(|_| SignedError::BadSignature)?;
    key.verify(blob, &signature)
        .map_err(|_| SignedError::BadSignature)?;
    Config::from_blob(blob).map_err(SignedError::Invalid)
}

/// Wrap `blob` with its signature (made by the host tool, which holds the private key).
pub fn signed_envelope(blob: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNED_HEADER + blob.len());
    out.extend_from_slice(&SIGNED_MAGIC);
    out.extend_from_slice(signature);
    out.extend_from_slice(blob);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::example;
    use crate::config::VipPort;

    #[test]
    fn signed_envelopes_verify_only_with_the_right_key() {
        // A fixed key pair (RFC 8032 test vector 1's seed), so the test needs no randomness.
        let seed = ed25519_compact::Seed::from_slice(&[
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ])
        .unwrap();
        let pair = ed25519_compact::KeyPair::from_seed(seed);
        let blob = example().to_blob();
        let sig: [u8; 64] = *pair.sk.sign(&blob, None);
        let signed = signed_envelope(&blob, &sig);
        assert_eq!(verify_signed(&signed, &pair.pk), Ok(example()));
        // Another key, a flipped bit in the blob, a truncated envelope.
        assert_eq!(
            verify_signed(&signed, &[9; 32]),
            Err(SignedError::BadSignature)
        );
        let mut bad = signed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            verify_signed(&bad, &pair.pk),
            Err(SignedError::BadSignature)
        );
        assert!(matches!(
            verify_signed(&signed[..40], &pair.pk),
            Err(SignedError::Malformed(_))
        ));
        // Signed but invalid: refused naming the field.
        let mut c = example();
        c.vips[0].port = VipPort::One(0);
        let blob = c.to_blob();
        let signed = signed_envelope(&blob, &pair.sk.sign(&blob, None));
        match verify_signed(&signed, &pair.pk) {
            Err(SignedError::Invalid(e)) => assert_eq!(e.field, "vip \"web\": port"),
            other => panic!("{other:?}"),
        }
    }
}
