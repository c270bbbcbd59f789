//! Helpers for Sidestep's end-to-end tests: building images, running them under QEMU, building
//! private networks of real Linux hosts in network namespaces, and the fixture that puts a
//! balancer on such a network (used by the e2e tests and `qemu/demo`), and the
//! two-balancer BGP scenario both run ([`scaleout`]).
//!
//! Every resource a test creates (namespace, tap, QEMU process) is owned by a guard whose `Drop`
//! removes it, so a failing test cleans up too.

pub mod dsr;
pub mod fixture;
pub mod netns;
pub mod qemu;
pub mod rawio;
pub mod scaleout;

use std::sync::{Mutex, MutexGuard};

/// Held by a test for as long as its network and VM live, so that the tests of one binary run
/// one at a time (each boots QEMU on a namespace network; two at once would share the CPUs).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A panicking test poisons the lock; the next one must still run.
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
