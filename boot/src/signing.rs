//! Keys and signatures for configs that reach a running image (pushed, or fetched at boot).
//!
//! An image trusts exactly one Ed25519 public key, its config's `[management] pubkey`. The
//! operator holds the private key in a file of one line: the base64 of the 32-byte seed the key
//! pair is derived from (the seed is the whole secret, and is what RFC 8032 calls the private
//! key). The file is created with mode 0600 and never silently overwritten, because losing it
//! locks the operator out of every image built with its public key.
//!
//! A signed config is the envelope of `control::envelope`: `SSSIGNED`, the 64-byte signature of
//! the blob, then the blob exactly as it would be baked into an image.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use control::config::Config;
use control::envelope::{signed_envelope, split_signed, SIGNED_MAGIC};
use ed25519_compact::{KeyPair, Seed};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// An operator's signing key, read from (or just written to) a key file.
pub struct SigningKey {
    pair: KeyPair,
}

impl SigningKey {
    /// A new key pair from the operating system's randomness.
    pub fn generate() -> SigningKey {
        SigningKey {
            pair: KeyPair::from_seed(Seed::generate()),
        }
    }

    /// The key pair derived from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey {
            pair: KeyPair::from_seed(Seed::new(*seed)),
        }
    }

    /// Read a key file: one line, the base64 of the 32-byte seed.
    pub fn load(path: &Path) -> Result<SigningKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the key {}: {e}", path.display()))?;
        let seed = BASE64.decode(text.trim()).map_err(|e| {
            format!(
                "{}: not a key file of `sidestep keygen` (not base64: {e})",
                path.display()
            )
        })?;
        let seed: [u8; 32] = seed.try_into().map_err(|s: Vec<u8>| {
            format!(
                "{}: not a key file of `sidestep keygen` ({} bytes; a key is 32)",
                path.display(),
                s.len()
            )
        })?;
        Ok(SigningKey::from_seed(&seed))
    }

    /// Write the key file (mode 0600). An existing file is refused unless `force`.
    pub fn save(&self, path: &Path, force: bool) -> Result<(), String> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).mode(0o600);
        if force {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "{} exists; images built with its public key would no longer accept your \
                     configs if it were replaced (use --force to overwrite it)",
                    path.display()
                )
            } else {
                format!("cannot create {}: {e}", path.display())
            }
        })?;
        // `mode` applies only when the file is created; a forced overwrite must tighten it too.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
        writeln!(file, "{}", BASE64.encode(*self.pair.sk.seed()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The public key's 32 bytes.
    pub fn public(&self) -> [u8; 32] {
        *self.pair.pk
    }

    /// The public key as `[management] pubkey` takes it (base64).
    pub fn public_base64(&self) -> String {
        BASE64.encode(self.public())
    }

    /// The signed envelope of `blob`.
    pub fn sign_blob(&self, blob: &[u8]) -> Vec<u8> {
        let signature: [u8; 64] = *self.pair.sk.sign(blob, None);
        signed_envelope(blob, &signature)
    }

    /// The signed envelope of `config`'s blob. The config is not validated here: that is the
    /// caller's choice (the tool always validates; tests sign invalid configs on purpose).
    pub fn sign(&self, config: &Config) -> Vec<u8> {
        self.sign_blob(&config.to_blob())
    }
}

/// Whether `bytes` is a signed envelope (rather than, say, TOML text).
pub fn is_signed(bytes: &[u8]) -> bool {
    bytes.starts_with(&SIGNED_MAGIC)
}

/// The config inside a signed envelope, decoded and validated but not verified (for messages
/// such as the version that was pushed).
pub fn peek_signed(signed: &[u8]) -> Result<Config, String> {
    let (_, blob) = split_signed(signed).map_err(|e| e.to_string())?;
    Config::from_blob(blob).map_err(|e| e.to_string())
}

/// A warning when `config` would not accept configs signed by `key` once it runs, since then
/// its operator could not push again: `None` when its `[management] pubkey` is `key`'s.
pub fn lockout_warning(config: &Config, key: &SigningKey) -> Option<String> {
    let ours = key.public_base64();
    match config.management.as_ref().map(|m| m.pubkey) {
        None => Some(format!(
            "this config has no [management] section: an image running it takes no pushes at \
             all (add one with pubkey = \"{ours}\")"
        )),
        Some(None) => Some(format!(
            "this config's [management] has no pubkey: an image running it refuses every push \
             (set pubkey = \"{ours}\")"
        )),
        Some(Some(theirs)) if theirs != key.public() => Some(format!(
            "this config's [management] pubkey {} is not this key's {ours}: once it runs, \
             configs signed with this key are refused",
            BASE64.encode(theirs)
        )),
        Some(Some(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::envelope::{verify_signed, SignedError};

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sidestep-signing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_saved_key_loads_back_and_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = temp("key-roundtrip");
        let _ = std::fs::remove_file(&path);
        let key = SigningKey::generate();
        key.save(&path, false).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(SigningKey::load(&path).unwrap().public(), key.public());
        let again = SigningKey::generate().save(&path, false).unwrap_err();
        assert!(
            again.contains("exists") && again.contains("--force"),
            "{again}"
        );
        let other = SigningKey::generate();
        other.save(&path, true).unwrap();
        assert_eq!(SigningKey::load(&path).unwrap().public(), other.public());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_broken_key_file_is_named() {
        let path = temp("key-broken");
        std::fs::write(&path, "AAEC\n").unwrap();
        let e = SigningKey::load(&path).err().unwrap();
        assert!(e.contains("3 bytes; a key is 32"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn envelopes_verify_with_the_public_key_only() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../qemu/demo.toml"))
                .unwrap();
        let config = crate::config_file::parse(&text).unwrap();
        let key = SigningKey::from_seed(&[7; 32]);
        let signed = key.sign(&config);
        assert!(is_signed(&signed));
        assert_eq!(verify_signed(&signed, &key.public()), Ok(config.clone()));
        assert_eq!(peek_signed(&signed).unwrap(), config);
        let other = SigningKey::from_seed(&[8; 32]);
        assert_eq!(
            verify_signed(&signed, &other.public()),
            Err(SignedError::BadSignature)
        );
    }

    #[test]
    fn lockout_is_warned_about() {
        let key = SigningKey::from_seed(&[7; 32]);
        let managed = || Config::builder().management(9100, &["10.77.0.0/24"]);
        assert!(lockout_warning(&Config::builder().build(), &key)
            .unwrap()
            .contains("no [management]"));
        assert!(lockout_warning(&managed().build(), &key)
            .unwrap()
            .contains("has no pubkey"));
        assert!(lockout_warning(&managed().pubkey([1; 32]).build(), &key)
            .unwrap()
            .contains("is not this key's"));
        assert_eq!(
            lockout_warning(&managed().pubkey(key.public()).build(), &key),
            None
        );
    }
}
