//! Helpers for Sidestep's end-to-end tests: building images, running them under QEMU, and
//! building private networks of real Linux hosts in network namespaces.
//!
//! Every resource a test creates (namespace, tap, QEMU process) is owned by a guard whose `Drop`
//! removes it, so a failing test cleans up too.

pub mod netns;
pub mod qemu;
pub mod rawio;
