//! The library behind the `sidestep` host tool: reading config files, building images, running
//! them under QEMU. The end-to-end tests use it too, so they boot images exactly as operators do.

pub mod config_file;
pub mod image;
pub mod qemu;
