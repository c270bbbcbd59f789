//! The blob: a config as the image carries it. [`BLOB_MAGIC`], the little-endian
//! [`BLOB_FORMAT`] and body length, then the postcard encoding of [`Config`]. Decoding validates,
//! so a decoded config is always a valid one.

use super::{Config, ConfigError, BLOB_FORMAT, BLOB_MAGIC, BLOB_MAX};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

impl Config {
    /// Encode as a blob: magic, format, length, then the postcard encoding.
    pub fn to_blob(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).unwrap_or_default();
        let mut blob = Vec::with_capacity(14 + body.len());
        blob.extend_from_slice(&BLOB_MAGIC);
        blob.extend_from_slice(&BLOB_FORMAT.to_le_bytes());
        blob.extend_from_slice(&(body.len() as u32).to_le_bytes());
        blob.extend_from_slice(&body);
        blob
    }

    /// Decode a blob (anything may follow its end, e.g. ramdisk padding) and validate it.
    pub fn from_blob(blob: &[u8]) -> Result<Config, ConfigError> {
        let err = |m: String| ConfigError::new("blob", m);
        if blob.len() < 14 || blob[..8] != BLOB_MAGIC {
            return Err(err("does not start with the Sidestep magic".to_string()));
        }
        let format = u16::from_le_bytes([blob[8], blob[9]]);
        if format != BLOB_FORMAT {
            return Err(err(format!(
                "format {format} is not the {BLOB_FORMAT} this image reads; rebuild with a matching `sidestep`"
            )));
        }
        let len = u32::from_le_bytes([blob[10], blob[11], blob[12], blob[13]]) as usize;
        if len > BLOB_MAX || blob.len() - 14 < len {
            return Err(err(format!(
                "says {len} bytes follow but {} do",
                blob.len() - 14
            )));
        }
        let (config, rest) = postcard::take_from_bytes::<Config>(&blob[14..14 + len])
            .map_err(|e| err(format!("cannot be decoded: {e}")))?;
        if !rest.is_empty() {
            return Err(err(format!("{} bytes left after the config", rest.len())));
        }
        config.validate()?;
        Ok(config)
    }
}
