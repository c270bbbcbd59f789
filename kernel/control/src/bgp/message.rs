//! BGP-4 messages on the wire (RFC 4271 section 4): the 19-byte header and the OPEN, UPDATE,
//! NOTIFICATION and KEEPALIVE bodies, with the capabilities this speaker uses (multiprotocol
//! IPv4 and IPv6 unicast, RFC 4760 / RFC 5492; 4-octet AS numbers, RFC 6793).
//!
//! IPv4 routes travel in the UPDATE's own fields; IPv6 ones in the MP_REACH_NLRI and
//! MP_UNREACH_NLRI attributes (RFC 4760 section 3, next hops as RFC 2545 lays them out).
//!
//! Decoding is strict: anything malformed is reported as the [`Notification`] the RFC says to
//! send back (error code and subcode, and the data it asks for), so the session only has to
//! send it and close. Routes the peer announces are parsed for that check and then ignored by
//! the session (this speaker imports nothing), so UPDATE keeps only the attributes it knows
//! (multiprotocol ones of other families are checked for their framing and dropped).

use crate::config::{Prefix, Prefix6};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

/// The length of the header every message starts with (marker, length, type).
pub const HEADER_LEN: usize = 19;
/// The largest message (RFC 4271 4.1; the extended message capability is not offered).
pub const MAX_LEN: usize = 4096;
/// The 2-byte AS number that stands in for a 4-byte one (RFC 6793).
pub const AS_TRANS: u16 = 23456;
/// The BGP version spoken.
pub const VERSION: u8 = 4;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;

const PARAM_CAPABILITIES: u8 = 2;
const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_FOUR_OCTET_AS: u8 = 65;
const AFI_IPV4: u16 = 1;
const AFI_IPV6: u16 = 2;
const SAFI_UNICAST: u8 = 1;

const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_PARTIAL: u8 = 0x20;
const FLAG_EXTENDED: u8 = 0x10;

const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_NEXT_HOP: u8 = 3;
const ATTR_MED: u8 = 4;
const ATTR_LOCAL_PREF: u8 = 5;
const ATTR_ATOMIC_AGGREGATE: u8 = 6;
const ATTR_AGGREGATOR: u8 = 7;
const ATTR_MP_REACH_NLRI: u8 = 14;
const ATTR_MP_UNREACH_NLRI: u8 = 15;
const ATTR_AS4_PATH: u8 = 17;

/// ORIGIN IGP: the route was learnt inside the AS (here: configured).
pub const ORIGIN_IGP: u8 = 0;
/// AS_PATH segment type AS_SET.
pub const AS_SET: u8 = 1;
/// AS_PATH segment type AS_SEQUENCE.
pub const AS_SEQUENCE: u8 = 2;

/// NOTIFICATION error codes and subcodes (RFC 4271 4.5 and 6, RFC 4486, RFC 6608).
pub mod code {
    /// Message Header Error.
    pub const HEADER: u8 = 1;
    /// Header: the marker is not all ones.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// Header: the length field is out of range for the message.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// Header: the type is not one this speaker knows.
    pub const BAD_MESSAGE_TYPE: u8 = 3;
    /// OPEN Message Error.
    pub const OPEN: u8 = 2;
    /// OPEN: the version is not 4.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    /// OPEN: the peer's AS is not the configured one.
    pub const BAD_PEER_AS: u8 = 2;
    /// OPEN: the BGP identifier is not acceptable.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// OPEN: an optional parameter this speaker does not know.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// OPEN: a hold time of 1 or 2 seconds.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// UPDATE Message Error.
    pub const UPDATE: u8 = 3;
    /// UPDATE: the lengths do not add up, or an attribute appears twice.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// UPDATE: a well-known attribute this speaker does not know.
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    /// UPDATE: routes without ORIGIN, AS_PATH or NEXT_HOP.
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    /// UPDATE: attribute flags that do not match its type.
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    /// UPDATE: an attribute length that does not match its type.
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    /// UPDATE: an ORIGIN other than IGP, EGP, INCOMPLETE.
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    /// UPDATE: a NEXT_HOP that is not a unicast address.
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    /// UPDATE: a known optional attribute with a bad value.
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    /// UPDATE: a prefix longer than its address (32 or 128 bits) or cut short.
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    /// UPDATE: an AS_PATH whose segments do not parse.
    pub const MALFORMED_AS_PATH: u8 = 11;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// FSM: a message other than OPEN in OpenSent.
    pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    /// FSM: a message other than KEEPALIVE or NOTIFICATION in OpenConfirm.
    pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    /// FSM: an OPEN in Established.
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    /// Cease.
    pub const CEASE: u8 = 6;
    /// Cease: the peer was removed from the config.
    pub const PEER_DECONFIGURED: u8 = 3;
    /// Cease: the session's own settings changed.
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    /// Cease: the BFD session with the peer went down (RFC 9384).
    pub const BFD_DOWN: u8 = 10;
    /// Cease: this connection lost a collision with the other one to the same peer.
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
}

/// One BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Opens a session.
    Open(Open),
    /// Announces and withdraws routes.
    Update(Update),
    /// Reports an error and closes the session.
    Notification(Notification),
    /// Says the session is alive (and confirms an OPEN).
    Keepalive,
}

/// An OPEN message, as far as this speaker needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The sender's AS: the 4-octet AS capability's value if present, else the 2-byte field.
    pub asn: u32,
    /// The proposed hold time in seconds (0, or 3 and more).
    pub hold_time: u16,
    /// The BGP identifier.
    pub router_id: Ipv4Addr,
    /// Whether the sender has the 4-octet AS capability.
    pub four_octet_as: bool,
    /// Whether the sender takes IPv4 unicast routes: it advertised that multiprotocol
    /// capability, or no multiprotocol capability at all (which means IPv4 unicast only).
    pub ipv4_unicast: bool,
    /// Whether the sender takes IPv6 unicast routes (it advertised that multiprotocol
    /// capability: AFI 2, SAFI 1).
    pub ipv6_unicast: bool,
}

/// An UPDATE message: IPv4 unicast prefixes withdrawn and announced, and the path attributes of
/// the announced ones (IPv6 prefixes are among them: [`Attribute::MpReach6`],
/// [`Attribute::MpUnreach6`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Prefixes no longer reachable through the sender.
    pub withdrawn: Vec<Prefix>,
    /// The path attributes this speaker knows (others are checked and dropped).
    pub attributes: Vec<Attribute>,
    /// Prefixes reachable through the sender with these attributes.
    pub nlri: Vec<Prefix>,
}

/// A path attribute this speaker knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// ORIGIN: 0 IGP, 1 EGP, 2 INCOMPLETE.
    Origin(u8),
    /// AS_PATH, in the width the session negotiated.
    AsPath(Vec<Segment>),
    /// NEXT_HOP.
    NextHop(Ipv4Addr),
    /// MULTI_EXIT_DISC.
    Med(u32),
    /// LOCAL_PREF (to and from internal peers).
    LocalPref(u32),
    /// AS4_PATH: the real 4-byte path next to an AS_PATH of AS_TRANS (RFC 6793).
    As4Path(Vec<Segment>),
    /// MP_REACH_NLRI for IPv6 unicast: prefixes reachable through `next_hop`.
    MpReach6 {
        /// The global next hop.
        next_hop: Ipv6Addr,
        /// The link-local next hop a peer may add (RFC 2545 section 3); this speaker never
        /// sends one, having no link-local address configured.
        link_local: Option<Ipv6Addr>,
        /// The prefixes announced.
        nlri: Vec<Prefix6>,
    },
    /// MP_UNREACH_NLRI for IPv6 unicast: prefixes withdrawn. Empty, and alone in its UPDATE,
    /// it is the family's End-of-RIB marker (RFC 4724 section 2).
    MpUnreach6(Vec<Prefix6>),
}

impl Attribute {
    fn code(&self) -> u8 {
        match self {
            Attribute::Origin(_) => ATTR_ORIGIN,
            Attribute::AsPath(_) => ATTR_AS_PATH,
            Attribute::NextHop(_) => ATTR_NEXT_HOP,
            Attribute::Med(_) => ATTR_MED,
            Attribute::LocalPref(_) => ATTR_LOCAL_PREF,
            Attribute::As4Path(_) => ATTR_AS4_PATH,
            Attribute::MpReach6 { .. } => ATTR_MP_REACH_NLRI,
            Attribute::MpUnreach6(_) => ATTR_MP_UNREACH_NLRI,
        }
    }
}

/// One AS_PATH segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// [`AS_SET`], [`AS_SEQUENCE`], or a confederation type (3, 4).
    pub kind: u8,
    /// The AS numbers, 1..=255 of them.
    pub asns: Vec<u32>,
}

/// A NOTIFICATION: an error code, a subcode and the data the RFC asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The error code ([`code`]).
    pub code: u8,
    /// The subcode; 0 is "unspecific".
    pub subcode: u8,
    /// The data that goes with it (often the offending field).
    pub data: Vec<u8>,
}

impl Notification {
    /// A notification with `code`, `subcode` and `data`.
    pub fn new(code: u8, subcode: u8, data: &[u8]) -> Notification {
        Notification {
            code,
            subcode,
            data: data.to_vec(),
        }
    }

    /// The error code's name, for logs.
    pub fn code_name(&self) -> &'static str {
        match self.code {
            code::HEADER => "message header error",
            code::OPEN => "OPEN message error",
            code::UPDATE => "UPDATE message error",
            code::HOLD_TIMER_EXPIRED => "hold timer expired",
            code::FSM => "finite state machine error",
            code::CEASE => "cease",
            _ => "unknown error code",
        }
    }
}

/// Where the first message in `buf` ends: `Ok(None)` while it is incomplete, `Ok(Some(len))`
/// once `len` bytes hold it, or the header error to send.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, Notification> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|b| *b != 0xff) {
        return Err(Notification::new(
            code::HEADER,
            code::CONNECTION_NOT_SYNCHRONIZED,
            &[],
        ));
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    if !(HEADER_LEN..=MAX_LEN).contains(&len) {
        return Err(Notification::new(
            code::HEADER,
            code::BAD_MESSAGE_LENGTH,
            &buf[16..18],
        ));
    }
    Ok((buf.len() >= len).then_some(len))
}

/// A byte reader that reports running out as the error the caller chose.
struct Reader<'a> {
    bytes: &'a [u8],
    error: Notification,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], code: u8, subcode: u8) -> Self {
        Reader {
            bytes,
            error: Notification::new(code, subcode, &[]),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Notification> {
        if self.bytes.len() < n {
            return Err(self.error.clone());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Notification> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Notification> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Notification> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Message {
    /// Decode one whole message (as [`frame`] delimited it). `four_octet` says whether the
    /// session negotiated 4-byte AS numbers (it decides the width of AS_PATH).
    pub fn decode(msg: &[u8], four_octet: bool) -> Result<Message, Notification> {
        match frame(msg)? {
            Some(len) if len == msg.len() => {}
            _ => {
                let field = (msg.len().min(usize::from(u16::MAX)) as u16).to_be_bytes();
                return Err(Notification::new(
                    code::HEADER,
                    code::BAD_MESSAGE_LENGTH,
                    &field,
                ));
            }
        }
        let bad_length = || Notification::new(code::HEADER, code::BAD_MESSAGE_LENGTH, &msg[16..18]);
        let body = &msg[HEADER_LEN..];
        match msg[18] {
            TYPE_OPEN if msg.len() < 29 => Err(bad_length()),
            TYPE_OPEN => decode_open(body).map(Message::Open),
            TYPE_UPDATE if msg.len() < 23 => Err(bad_length()),
            TYPE_UPDATE => decode_update(body, four_octet).map(Message::Update),
            TYPE_NOTIFICATION if msg.len() < 21 => Err(bad_length()),
            TYPE_NOTIFICATION => Ok(Message::Notification(Notification::new(
                body[0],
                body[1],
                &body[2..],
            ))),
            TYPE_KEEPALIVE if msg.len() != HEADER_LEN => Err(bad_length()),
            TYPE_KEEPALIVE => Ok(Message::Keepalive),
            other => Err(Notification::new(
                code::HEADER,
                code::BAD_MESSAGE_TYPE,
                &[other],
            )),
        }
    }

    /// Encode, with AS_PATH in 4-byte numbers when `four_octet` was negotiated.
    pub fn encode(&self, four_octet: bool) -> Vec<u8> {
        let mut out = vec![0xff; 16];
        out.extend_from_slice(&[0, 0, 0]);
        out[18] = match self {
            Message::Open(open) => {
                encode_open(open, &mut out);
                TYPE_OPEN
            }
            Message::Update(update) => {
                encode_update(update, four_octet, &mut out);
                TYPE_UPDATE
            }
            Message::Notification(n) => {
                out.extend_from_slice(&[n.code, n.subcode]);
                out.extend_from_slice(&n.data);
                TYPE_NOTIFICATION
            }
            Message::Keepalive => TYPE_KEEPALIVE,
        };
        let len = (out.len() as u16).to_be_bytes();
        out[16..18].copy_from_slice(&len);
        out
    }
}

fn decode_open(body: &[u8]) -> Result<Open, Notification> {
    let mut r = Reader::new(body, code::OPEN, 0);
    let version = r.u8()?;
    if version != VERSION {
        return Err(Notification::new(
            code::OPEN,
            code::UNSUPPORTED_VERSION,
            &u16::from(VERSION).to_be_bytes(),
        ));
    }
    let as2 = r.u16()?;
    let hold_time = r.u16()?;
    if hold_time == 1 || hold_time == 2 {
        return Err(Notification::new(
            code::OPEN,
            code::UNACCEPTABLE_HOLD_TIME,
            &[],
        ));
    }
    let router_id = Ipv4Addr::from(r.u32()?);
    if router_id.is_unspecified() {
        return Err(Notification::new(
            code::OPEN,
            code::BAD_BGP_IDENTIFIER,
            &router_id.octets(),
        ));
    }
    let mut params_len = usize::from(r.u8()?);
    // RFC 9072: a first parameter of type 255 announces 2-byte parameter lengths.
    let extended = params_len == 255 && r.bytes.first() == Some(&255);
    if extended {
        r.u8()?;
        params_len = usize::from(r.u16()?);
    }
    if r.bytes.len() != params_len {
        return Err(Notification::new(code::OPEN, 0, &[]));
    }
    let mut open = Open {
        asn: u32::from(as2),
        hold_time,
        router_id,
        four_octet_as: false,
        ipv4_unicast: true,
        ipv6_unicast: false,
    };
    let mut multiprotocol = false;
    let mut ipv4_unicast = false;
    while !r.is_empty() {
        let kind = r.u8()?;
        let len = if extended {
            r.u16()?
        } else {
            u16::from(r.u8()?)
        };
        let value = r.take(usize::from(len))?;
        if kind != PARAM_CAPABILITIES {
            return Err(Notification::new(
                code::OPEN,
                code::UNSUPPORTED_OPTIONAL_PARAMETER,
                &[kind],
            ));
        }
        let mut caps = Reader::new(value, code::OPEN, 0);
        while !caps.is_empty() {
            let cap = caps.u8()?;
            let len = caps.u8()?;
            let value = caps.take(usize::from(len))?;
            match (cap, value) {
                (CAP_FOUR_OCTET_AS, [a, b, c, d]) => {
                    open.four_octet_as = true;
                    open.asn = u32::from_be_bytes([*a, *b, *c, *d]);
                }
                (CAP_MULTIPROTOCOL, [a0, a1, _, safi]) => {
                    multiprotocol = true;
                    match (u16::from_be_bytes([*a0, *a1]), *safi) {
                        (AFI_IPV4, SAFI_UNICAST) => ipv4_unicast = true,
                        (AFI_IPV6, SAFI_UNICAST) => open.ipv6_unicast = true,
                        _ => {}
                    }
                }
                (CAP_FOUR_OCTET_AS | CAP_MULTIPROTOCOL, _) => {
                    return Err(Notification::new(code::OPEN, 0, &[]));
                }
                // Capabilities this speaker does not use are ignored (RFC 5492 section 3).
                _ => {}
            }
        }
    }
    if multiprotocol {
        open.ipv4_unicast = ipv4_unicast;
    }
    Ok(open)
}

fn encode_open(open: &Open, out: &mut Vec<u8>) {
    let as2 = u16::try_from(open.asn).unwrap_or(AS_TRANS);
    out.push(VERSION);
    out.extend_from_slice(&as2.to_be_bytes());
    out.extend_from_slice(&open.hold_time.to_be_bytes());
    out.extend_from_slice(&open.router_id.octets());
    let mut caps = Vec::with_capacity(18);
    if open.ipv4_unicast {
        caps.extend_from_slice(&[CAP_MULTIPROTOCOL, 4, 0, AFI_IPV4 as u8, 0, SAFI_UNICAST]);
    }
    if open.ipv6_unicast {
        caps.extend_from_slice(&[CAP_MULTIPROTOCOL, 4, 0, AFI_IPV6 as u8, 0, SAFI_UNICAST]);
    }
    if open.four_octet_as {
        caps.extend_from_slice(&[CAP_FOUR_OCTET_AS, 4]);
        caps.extend_from_slice(&open.asn.to_be_bytes());
    }
    if caps.is_empty() {
        out.push(0);
    } else {
        out.extend_from_slice(&[caps.len() as u8 + 2, PARAM_CAPABILITIES, caps.len() as u8]);
        out.extend_from_slice(&caps);
    }
}

/// Split a run of (length, significant bytes) prefixes of `N`-byte addresses (RFC 4271 4.3,
/// RFC 4760 section 5), with the bytes past the significant ones zero.
fn split_prefixes<const N: usize>(mut bytes: &[u8]) -> Result<Vec<([u8; N], u8)>, Notification> {
    let bad = || Notification::new(code::UPDATE, code::INVALID_NETWORK_FIELD, &[]);
    let mut out = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        if usize::from(len) > N * 8 {
            return Err(bad());
        }
        let n = usize::from(len).div_ceil(8);
        if rest.len() < n {
            return Err(bad());
        }
        let mut octets = [0u8; N];
        octets[..n].copy_from_slice(&rest[..n]);
        out.push((octets, len));
        bytes = &rest[n..];
    }
    Ok(out)
}

// Bits past a prefix's length carry no meaning; the decoders keep each prefix in one spelling.
fn decode_prefixes(bytes: &[u8]) -> Result<Vec<Prefix>, Notification> {
    Ok(split_prefixes::<4>(bytes)?
        .into_iter()
        .map(|(octets, len)| {
            let address = Prefix {
                address: Ipv4Addr::from(octets),
                len,
            }
            .network();
            Prefix { address, len }
        })
        .collect())
}

fn decode_prefixes6(bytes: &[u8]) -> Result<Vec<Prefix6>, Notification> {
    Ok(split_prefixes::<16>(bytes)?
        .into_iter()
        .map(|(octets, len)| {
            let address = Prefix6 {
                address: Ipv6Addr::from(octets),
                len,
            }
            .network();
            Prefix6 { address, len }
        })
        .collect())
}

fn encode_prefix(octets: &[u8], len: u8, out: &mut Vec<u8>) {
    let len = len.min(octets.len() as u8 * 8);
    out.push(len);
    out.extend_from_slice(&octets[..usize::from(len).div_ceil(8)]);
}

fn encode_prefixes(prefixes: &[Prefix], out: &mut Vec<u8>) {
    for p in prefixes {
        encode_prefix(&p.network().octets(), p.len, out);
    }
}

fn encode_prefixes6(prefixes: &[Prefix6], out: &mut Vec<u8>) {
    for p in prefixes {
        encode_prefix(&p.network().octets(), p.len, out);
    }
}

fn decode_segments(mut value: &[u8], width: usize) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    while let [kind, count, rest @ ..] = value {
        let n = usize::from(*count) * width;
        if !(1..=4).contains(kind) || *count == 0 || rest.len() < n {
            return None;
        }
        let asns = rest[..n]
            .chunks_exact(width)
            .map(|c| match c {
                [a, b] => u32::from(u16::from_be_bytes([*a, *b])),
                [a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]),
                _ => 0,
            })
            .collect();
        out.push(Segment { kind: *kind, asns });
        value = &rest[n..];
    }
    value.is_empty().then_some(out)
}

fn encode_segments(segments: &[Segment], four_octet: bool, out: &mut Vec<u8>) {
    for s in segments {
        out.extend_from_slice(&[s.kind, s.asns.len() as u8]);
        for asn in &s.asns {
            if four_octet {
                out.extend_from_slice(&asn.to_be_bytes());
            } else {
                out.extend_from_slice(&u16::try_from(*asn).unwrap_or(AS_TRANS).to_be_bytes());
            }
        }
    }
}

fn decode_update(body: &[u8], four_octet: bool) -> Result<Update, Notification> {
    let malformed = || Notification::new(code::UPDATE, code::MALFORMED_ATTRIBUTE_LIST, &[]);
    let mut r = Reader::new(body, code::UPDATE, code::MALFORMED_ATTRIBUTE_LIST);
    let withdrawn_len = usize::from(r.u16()?);
    let withdrawn = r.take(withdrawn_len)?;
    let attrs_len = usize::from(r.u16()?);
    let attrs = r.take(attrs_len)?;
    let nlri = decode_prefixes(r.bytes)?;
    let withdrawn = decode_prefixes(withdrawn)?;
    let mut update = Update {
        withdrawn,
        attributes: Vec::new(),
        nlri,
    };
    let mut seen = [false; 256];
    let mut a = Reader::new(attrs, code::UPDATE, code::MALFORMED_ATTRIBUTE_LIST);
    while !a.is_empty() {
        let start = a.bytes;
        let flags = a.u8()?;
        let kind = a.u8()?;
        let len = if flags & FLAG_EXTENDED != 0 {
            usize::from(a.u16()?)
        } else {
            usize::from(a.u8()?)
        };
        let value = a.take(len)?;
        let whole = &start[..start.len() - a.bytes.len()];
        if core::mem::replace(&mut seen[usize::from(kind)], true) {
            return Err(malformed());
        }
        if let Some(attr) = decode_attribute(flags, kind, value, whole, four_octet)? {
            update.attributes.push(attr);
        }
    }
    // Routes need ORIGIN and AS_PATH wherever they are; NEXT_HOP only for the IPv4 ones in
    // the NLRI field (a multiprotocol family carries its next hop in MP_REACH_NLRI).
    let required: &[u8] = if !update.nlri.is_empty() {
        &[ATTR_ORIGIN, ATTR_AS_PATH, ATTR_NEXT_HOP]
    } else if seen[usize::from(ATTR_MP_REACH_NLRI)] {
        &[ATTR_ORIGIN, ATTR_AS_PATH]
    } else {
        &[]
    };
    if let Some(kind) = required.iter().find(|k| !seen[usize::from(**k)]) {
        return Err(Notification::new(
            code::UPDATE,
            code::MISSING_WELL_KNOWN_ATTRIBUTE,
            &[*kind],
        ));
    }
    Ok(update)
}

/// Check one attribute (RFC 4271 6.3) and keep it if this speaker knows it.
fn decode_attribute(
    flags: u8,
    kind: u8,
    value: &[u8],
    whole: &[u8],
    four_octet: bool,
) -> Result<Option<Attribute>, Notification> {
    let error = |subcode: u8| Notification::new(code::UPDATE, subcode, whole);
    // The flags each known attribute must carry (optional, transitive); partial only applies to
    // optional transitive ones.
    let expected = match kind {
        ATTR_ORIGIN | ATTR_AS_PATH | ATTR_NEXT_HOP | ATTR_LOCAL_PREF | ATTR_ATOMIC_AGGREGATE => {
            Some(FLAG_TRANSITIVE)
        }
        ATTR_MED | ATTR_MP_REACH_NLRI | ATTR_MP_UNREACH_NLRI => Some(FLAG_OPTIONAL),
        ATTR_AGGREGATOR | ATTR_AS4_PATH => Some(FLAG_OPTIONAL | FLAG_TRANSITIVE),
        _ => None,
    };
    let Some(expected) = expected else {
        if flags & FLAG_OPTIONAL == 0 {
            return Err(error(code::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE));
        }
        return Ok(None);
    };
    let partial_ok = expected == FLAG_OPTIONAL | FLAG_TRANSITIVE;
    let mask = FLAG_OPTIONAL | FLAG_TRANSITIVE | if partial_ok { 0 } else { FLAG_PARTIAL };
    if flags & mask != expected {
        return Err(error(code::ATTRIBUTE_FLAGS_ERROR));
    }
    let u32_value = || match value {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(error(code::ATTRIBUTE_LENGTH_ERROR)),
    };
    Ok(match kind {
        ATTR_ORIGIN => match value {
            [origin @ 0..=2] => Some(Attribute::Origin(*origin)),
            [_] => return Err(error(code::INVALID_ORIGIN_ATTRIBUTE)),
            _ => return Err(error(code::ATTRIBUTE_LENGTH_ERROR)),
        },
        ATTR_AS_PATH => {
            let width = if four_octet { 4 } else { 2 };
            let segments = decode_segments(value, width)
                .ok_or_else(|| Notification::new(code::UPDATE, code::MALFORMED_AS_PATH, &[]))?;
            Some(Attribute::AsPath(segments))
        }
        ATTR_NEXT_HOP => {
            let hop = Ipv4Addr::from(u32_value()?);
            if hop.is_unspecified() || hop.is_multicast() || hop.is_broadcast() {
                return Err(error(code::INVALID_NEXT_HOP_ATTRIBUTE));
            }
            Some(Attribute::NextHop(hop))
        }
        ATTR_MED => Some(Attribute::Med(u32_value()?)),
        ATTR_LOCAL_PREF => Some(Attribute::LocalPref(u32_value()?)),
        ATTR_ATOMIC_AGGREGATE if !value.is_empty() => {
            return Err(error(code::ATTRIBUTE_LENGTH_ERROR))
        }
        ATTR_AGGREGATOR if value.len() != if four_octet { 8 } else { 6 } => {
            return Err(error(code::OPTIONAL_ATTRIBUTE_ERROR))
        }
        // A malformed AS4_PATH is discarded, not an error (RFC 6793 section 6).
        ATTR_AS4_PATH => decode_segments(value, 4).map(Attribute::As4Path),
        ATTR_MP_REACH_NLRI => decode_mp_reach(value, whole)?,
        ATTR_MP_UNREACH_NLRI => match value {
            [a0, a1, safi, withdrawn @ ..] => {
                if (u16::from_be_bytes([*a0, *a1]), *safi) == (AFI_IPV6, SAFI_UNICAST) {
                    Some(Attribute::MpUnreach6(decode_prefixes6(withdrawn)?))
                } else {
                    None
                }
            }
            _ => return Err(error(code::OPTIONAL_ATTRIBUTE_ERROR)),
        },
        _ => None,
    })
}

/// MP_REACH_NLRI's value (RFC 4760 section 3): AFI, SAFI, next hop length and next hop, a
/// reserved byte, NLRI. A family this speaker does not use is dropped once its framing holds.
fn decode_mp_reach(value: &[u8], whole: &[u8]) -> Result<Option<Attribute>, Notification> {
    let broken = || Notification::new(code::UPDATE, code::OPTIONAL_ATTRIBUTE_ERROR, whole);
    let [a0, a1, safi, hop_len, rest @ ..] = value else {
        return Err(broken());
    };
    let hop_len = usize::from(*hop_len);
    // The reserved byte (once the count of SNPAs, RFC 2858) is ignored on receipt.
    let (Some(hop), Some(nlri)) = (rest.get(..hop_len), rest.get(hop_len + 1..)) else {
        return Err(broken());
    };
    if (u16::from_be_bytes([*a0, *a1]), *safi) != (AFI_IPV6, SAFI_UNICAST) {
        return Ok(None);
    }
    let address = |b: &[u8]| <[u8; 16]>::try_from(b).map(Ipv6Addr::from);
    let (next_hop, link_local) = match hop.len() {
        16 => (address(hop), None),
        32 => (address(&hop[..16]), address(&hop[16..]).ok()),
        _ => return Err(broken()),
    };
    let next_hop = next_hop.map_err(|_| broken())?;
    if next_hop.is_unspecified() || next_hop.is_multicast() {
        return Err(Notification::new(
            code::UPDATE,
            code::INVALID_NEXT_HOP_ATTRIBUTE,
            whole,
        ));
    }
    Ok(Some(Attribute::MpReach6 {
        next_hop,
        link_local,
        nlri: decode_prefixes6(nlri)?,
    }))
}

fn encode_update(update: &Update, four_octet: bool, out: &mut Vec<u8>) {
    let mut withdrawn = Vec::new();
    encode_prefixes(&update.withdrawn, &mut withdrawn);
    out.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    out.extend_from_slice(&withdrawn);
    let mut attrs = Vec::new();
    for attr in &update.attributes {
        let mut value = Vec::new();
        let flags = match attr {
            Attribute::Origin(o) => {
                value.push(*o);
                FLAG_TRANSITIVE
            }
            Attribute::AsPath(segments) => {
                encode_segments(segments, four_octet, &mut value);
                FLAG_TRANSITIVE
            }
            Attribute::NextHop(hop) => {
                value.extend_from_slice(&hop.octets());
                FLAG_TRANSITIVE
            }
            Attribute::Med(m) => {
                value.extend_from_slice(&m.to_be_bytes());
                FLAG_OPTIONAL
            }
            Attribute::LocalPref(p) => {
                value.extend_from_slice(&p.to_be_bytes());
                FLAG_TRANSITIVE
            }
            Attribute::As4Path(segments) => {
                encode_segments(segments, true, &mut value);
                FLAG_OPTIONAL | FLAG_TRANSITIVE
            }
            Attribute::MpReach6 {
                next_hop,
                link_local,
                nlri,
            } => {
                let hop_len = if link_local.is_some() { 32 } else { 16 };
                value.extend_from_slice(&[0, AFI_IPV6 as u8, SAFI_UNICAST, hop_len]);
                value.extend_from_slice(&next_hop.octets());
                if let Some(ll) = link_local {
                    value.extend_from_slice(&ll.octets());
                }
                value.push(0);
                encode_prefixes6(nlri, &mut value);
                FLAG_OPTIONAL
            }
            Attribute::MpUnreach6(withdrawn) => {
                value.extend_from_slice(&[0, AFI_IPV6 as u8, SAFI_UNICAST]);
                encode_prefixes6(withdrawn, &mut value);
                FLAG_OPTIONAL
            }
        };
        if value.len() > 255 {
            attrs.extend_from_slice(&[flags | FLAG_EXTENDED, attr.code()]);
            attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
        } else {
            attrs.extend_from_slice(&[flags, attr.code(), value.len() as u8]);
        }
        attrs.extend_from_slice(&value);
    }
    out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&attrs);
    encode_prefixes(&update.nlri, out);
}

#[cfg(test)]
mod tests;
