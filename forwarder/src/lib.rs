//! Sidestep's forwarder: every decision about a packet.
//!
//! The crate has no hardware access and no `unsafe`; it is `no_std` (with `alloc`) on the image
//! and plain std under `cargo test`, so all of its logic is tested, fuzzed and benchmarked on the
//! host. The kernel talks to [`Forwarder`]: [`Forwarder::process`] (or
//! [`Forwarder::process_burst`]) per received frame, [`Forwarder::poll`] for timers,
//! [`Forwarder::apply_config`] for a new config, [`Forwarder::set_backend_up`] for health, and
//! [`Forwarder::counters`] / [`Forwarder::stats`] for metrics. The config it follows and the
//! metrics view it fills are the `control` crate's ([`control::config`], [`control::stats`]).
#![cfg_attr(not(test), no_std)]
#![cfg_attr(feature = "prefetch", feature(hint_prefetch))]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

// The forwarder's modules name the config model `crate::config`.
use control::config;

pub mod flow;
pub mod forwarder;
pub mod neigh;
pub mod sched;
pub mod shard;
pub mod stats;
pub mod time;

pub use forwarder::{
    arp, nd, Decisions, Forwarder, ForwarderError, Frames, RxFrame, Verdict, DIRECT_MAX_FLOWS,
    HEADROOM, ICMP_BURST, ICMP_RATE, SWEEP_PERIOD_MS,
};
pub use stats::{Counters, DropReason};
pub use time::Instant;
