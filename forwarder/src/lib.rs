//! Sidestep's forwarder: every decision about a packet, and the configuration those decisions
//! follow.
//!
//! The crate has no hardware access and no `unsafe`; it is `no_std` (with `alloc`) on the image
//! and plain std under `cargo test`, so all of its logic is tested, fuzzed and benchmarked on the
//! host.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod config;
