//! VRRP (version 3, RFC 9568, and version 2, RFC 3768) for IPv4: an active/standby group of
//! balancers, or a balancer and keepalived, sharing every VIP.
//!
//! - [`packet`]: the advertisement codec (the VRRP message inside the IPv4 packet) and its two
//!   version 3 checksum forms.
//! - [`router`]: the Initialize/Backup/Master state machine of one virtual router, stepped with
//!   the time and the advertisements received, answering with what to send and which role the
//!   data path takes; every advertisement it refuses is counted by reason.
//!
//! The kernel owns the NIC and the clock: it frames what [`router::Router`] asks to send and
//! switches the forwarder's VIP role when it says so.

pub mod packet;
pub mod router;

pub use packet::{frame, received, Advert, ChecksumForm, ParseError, Received};
pub use router::{Output, Reject, Router, State, Status};

/// The IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The multicast group advertisements are sent to.
pub const GROUP: core::net::Ipv4Addr = core::net::Ipv4Addr::new(224, 0, 0, 18);
/// The Ethernet address of [`GROUP`] (RFC 1112's mapping of 224.0.0.18).
pub const GROUP_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
/// The IP TTL every advertisement is sent with, and the only one accepted (it proves the sender
/// is on the link).
pub const TTL: u8 = 255;

/// The virtual router's MAC address for IPv4 (RFC 9568 7.3): `00-00-5E-00-01-{vrid}`.
pub fn virtual_mac(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vrid]
}
