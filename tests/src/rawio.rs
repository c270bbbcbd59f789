//! Raw packet I/O for the helper programs under `src/bin/`: TUN/TAP devices, raw IP sockets and
//! packet sockets, plus the few header helpers they share.
//!
//! The helpers stand in for kernel features the test machines lack (the `ipip` module) or play
//! hosts that must send what no well-behaved stack sends (malformed frames). Each wrapper owns
//! its file descriptor and closes it on drop; the `unsafe` is confined to the libc calls here.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `_IOW('T', 202, int)` from `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags member of the union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// A TUN (IP packets) or TAP (Ethernet frames) device, attached by name, without the packet
/// information prefix: every read returns one packet or frame, every write sends one.
pub struct TunTap {
    fd: OwnedFd,
}

impl TunTap {
    /// Attaches to (or creates) the TUN device `name`.
    pub fn tun(name: &str) -> io::Result<TunTap> {
        TunTap::open(name, IFF_TUN)
    }

    /// Attaches to (or creates) the TAP device `name`.
    pub fn tap(name: &str) -> io::Result<TunTap> {
        TunTap::open(name, IFF_TAP)
    }

    fn open(name: &str, kind: libc::c_short) -> io::Result<TunTap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name:?} must have 1 to 15 characters"),
            ));
        }
        let path = CString::new("/dev/net/tun").expect("no NUL in a literal");
        // Safety: `path` is a valid NUL-terminated string; the result is checked.
        let raw = check(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        // Safety: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: kind | IFF_NO_PI,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // Safety: TUNSETIFF reads and writes a `struct ifreq`, which `IfReqFlags` lays out
        // (40 bytes, name then the flags member of the union); it lives across the call.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReqFlags) })?;
        Ok(TunTap { fd })
    }

    /// Reads one packet (TUN) or frame (TAP) into `buf`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.fd.as_raw_fd(), buf)
    }

    /// Writes one packet (TUN) or frame (TAP).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        // Safety: `packet` is a valid readable buffer of the given length.
        check_size(unsafe {
            libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len())
        })
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // Safety: `buf` is a valid writable buffer of the given length.
    check_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// A raw IP socket for one protocol (IPv4) or next header (IPv6): receives every packet of it
/// addressed to this host. An IPv4 one gets the IP header too; an IPv6 one, as every IPv6 raw
/// socket (RFC 3542), only what follows the IPv6 header and its extension headers.
pub struct RawIpSocket {
    fd: OwnedFd,
}

impl RawIpSocket {
    /// Opens a raw IPv4 socket for IP protocol `protocol` (4 = IP-in-IP).
    pub fn open(protocol: u8) -> io::Result<RawIpSocket> {
        RawIpSocket::open_family(libc::AF_INET, protocol)
    }

    /// Opens a raw IPv6 socket for next header `next_header` (41 = IPv6-in-IPv6).
    pub fn open6(next_header: u8) -> io::Result<RawIpSocket> {
        RawIpSocket::open_family(libc::AF_INET6, next_header)
    }

    fn open_family(family: libc::c_int, protocol: u8) -> io::Result<RawIpSocket> {
        // Safety: plain socket(2) call; the result is checked.
        let raw = check(unsafe {
            libc::socket(
                family,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(protocol),
            )
        })?;
        // Safety: `raw` is a freshly created descriptor that nothing else owns.
        Ok(RawIpSocket {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// Receives one packet: a whole IPv4 packet, or an IPv6 packet's payload.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.fd.as_raw_fd(), buf)
    }
}

/// An `AF_PACKET` socket bound to one interface: sends whole Ethernet frames as given and
/// receives every frame the interface sees, with the kernel's packet type.
pub struct PacketSocket {
    fd: OwnedFd,
}

/// What a received frame was to this host (`sll_pkttype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// Addressed to this interface's MAC.
    Host,
    /// Broadcast.
    Broadcast,
    /// Multicast.
    Multicast,
    /// Addressed to someone else (seen because of flooding or promiscuity).
    OtherHost,
    /// Sent by this host.
    Outgoing,
}

impl PacketSocket {
    /// Opens a packet socket on interface `ifname` for every protocol.
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        let cname = CString::new(ifname)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
        // Safety: `cname` is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {ifname:?}: {}", io::Error::last_os_error()),
            ));
        }
        let all = (libc::ETH_P_ALL as u16).to_be();
        // Safety: plain socket(2) call; the result is checked.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(all),
            )
        })?;
        // Safety: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Safety: an all-zero sockaddr_ll is a valid value of this plain C struct.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = index as i32;
        // Safety: `addr` is a valid sockaddr_ll and the length passed is its size.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket { fd })
    }

    /// Sends one whole Ethernet frame, exactly as given.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // Safety: `frame` is a valid readable buffer of the given length.
        check_size(unsafe {
            libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0)
        })
    }

    /// Receives one frame and what it was to this host.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, PacketType)> {
        // Safety: an all-zero sockaddr_ll is a valid value of this plain C struct.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // Safety: `buf` is writable for its length; `addr`/`len` describe a valid sockaddr_ll.
        let n = check_size(unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut addr as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        })?;
        let kind = match addr.sll_pkttype {
            0 => PacketType::Host,
            1 => PacketType::Broadcast,
            2 => PacketType::Multicast,
            4 => PacketType::Outgoing,
            _ => PacketType::OtherHost,
        };
        Ok((n, kind))
    }
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let (pairs, rest) = data.as_chunks::<2>();
    for pair in pairs {
        sum += u32::from(u16::from_be_bytes(*pair));
    }
    if let [last] = rest {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 20-byte IPv4 header (no options) with a correct checksum.
pub fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload_len: usize,
    ttl: u8,
) -> [u8; 20] {
    let total = (20 + payload_len) as u16;
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6] = 0x40; // don't fragment
    h[8] = ttl;
    h[9] = protocol;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = internet_checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_header_with_its_checksum_is_zero() {
        let h = ipv4_header(
            Ipv4Addr::new(10, 77, 0, 2),
            Ipv4Addr::new(10, 88, 0, 31),
            4,
            60,
            64,
        );
        assert_eq!(internet_checksum(&h), 0);
        assert_eq!(&h[2..4], &80u16.to_be_bytes());
    }

    #[test]
    fn mac_round_trip() {
        let mac = parse_mac("52:54:00:77:00:02").unwrap();
        assert_eq!(format_mac(&mac), "52:54:00:77:00:02");
        assert_eq!(parse_mac("52:54:00:77:00"), None);
        assert_eq!(parse_mac("52:54:00:77:00:02:01"), None);
        assert_eq!(parse_mac("zz:54:00:77:00:02"), None);
    }
}
