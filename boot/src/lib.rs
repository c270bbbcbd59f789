//! The library behind the `sidestep` host tool: reading config files, building images, running
//! them under QEMU, signing configs and talking to a running image's management API. The
//! end-to-end tests use it too, so they boot, push to and read images exactly as operators do.

pub mod client;
pub mod compact;
pub mod config_file;
pub mod image;
pub mod qemu;
pub mod signing;
pub mod status;

/// The config model and its signed envelope, for users of this library that build configs in
/// code (the end-to-end tests sign invalid ones on purpose).
pub use control;
