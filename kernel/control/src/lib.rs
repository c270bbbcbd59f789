//! Sidestep's control plane as pure logic: what the image decides that is not a packet decision.
//!
//! - [`bfd`]: BFD (RFC 5880/5881) single-hop sessions with the BGP peers.
//! - [`bgp`]: the BGP-4 speaker that announces the VIPs to routers (codec, session, routes).
//! - [`config`]: the config model, its validation and its blob (shared with the host tool and the
//!   forwarder); `envelope`: the signed envelope around a blob (feature `signed`).
//! - [`mgmt`]: the management API's HTTP parsing, routing and rendering; [`stats`]: the metrics
//!   view it renders.
//! - [`health`]: the rise/fall state machine and schedule of health checks.
//! - [`fetch`]: the retry and backoff schedule of the boot-time config fetch.
//! - [`vrrp`]: the VRRP advertisement codec and master/backup state machine (an HA pair).
//! - [`nap`]: the poll loop's idle policy (busy polling or napping, and how long a nap is).
//! - [`sizing`]: how big the flow table may be in the memory the image has.
//!
//! The kernel owns the sockets, the clock and the hardware and asks this crate what to do; every
//! state machine here is a plain value stepped by the kernel with the time and what happened, so
//! it is tested on the host without a network. The crate has no hardware access and no `unsafe`;
//! it is `no_std` (with `alloc`) on the image and plain std under `cargo test`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod bfd;
pub mod bgp;
pub mod config;
#[cfg(feature = "signed")]
pub mod envelope;
pub mod fetch;
pub mod health;
pub mod mgmt;
pub mod nap;
pub mod sizing;
pub mod stats;
pub mod vrrp;
