//! A BGP-4 speaker (RFC 4271) that announces the VIPs to routers and imports nothing.
//!
//! - [`message`]: the wire codec: OPEN with the 4-octet AS (RFC 6793) and multiprotocol IPv4
//!   and IPv6 unicast (RFC 4760) capabilities, KEEPALIVE, UPDATE (IPv6 routes in
//!   MP_REACH_NLRI / MP_UNREACH_NLRI), NOTIFICATION; parsing is strict and a malformed message
//!   yields the RFC 4271 error code and subcode to send back.
//! - [`session`]: one peer's finite state machine, stepped with the time and what its TCP
//!   connections did (connected, closed, bytes received), answering with what to do (connect,
//!   send, close). It keeps up to one connection each way and resolves collisions by BGP
//!   identifier (RFC 4271 6.8); timers and backoff are deadlines in milliseconds.
//! - [`speaker`]: every peer's session, the set of routes that should be announced (VIPs with a
//!   backend up while `announce` is true) and config pushes.
//!
//! The kernel owns the TCP sockets (smoltcp) and the clock; nothing here touches either.

pub mod message;
pub mod session;
pub mod speaker;

pub use message::AS_TRANS;
pub use session::{Action, Dir, Event, Session, State};
pub use speaker::{desired_routes, Routes, Speaker};

/// The TCP port BGP listens on and connects to.
pub const PORT: u16 = 179;
