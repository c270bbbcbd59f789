//! `frame-flood IFACE DST_MAC SRC_IP DST_IP ROUNDS`: sends malformed Ethernet frames to a
//! balancer, to show that it survives what no sane stack sends.
//!
//! Each round sends one frame of every kind in [`KINDS`] (truncated headers, impossible IHL,
//! lengths that disagree with the frame, bad checksums, wrong versions, broken TCP/UDP/ICMP/ARP,
//! IP-in-IP with junk inside, fragments, random bytes) from IFACE's MAC to DST_MAC, with SRC_IP
//! and DST_IP (a VIP, say) where there is an IP header. With IPv6 addresses it sends the kinds
//! of [`KINDS6`] instead (broken extension header chains, lengths, versions, neighbour
//! discovery that breaks RFC 4861's rules). Contents are deterministic (a fixed seed), so a
//! failure can be replayed. Prints how many frames it sent.

use ::tests::rawio::{internet_checksum, ipv4_header, parse_mac, PacketSocket};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;

/// The kinds of malformed frame, in the order each round sends them.
const KINDS: &[&str] = &[
    "runt",
    "ethernet header only",
    "truncated ipv4 header",
    "ihl below 5",
    "ihl beyond the frame",
    "total length beyond the frame",
    "total length below the header",
    "bad header checksum",
    "version 6 in an ipv4 frame",
    "truncated tcp header",
    "tcp data offset below 5",
    "tcp data offset beyond the segment",
    "udp length beyond the datagram",
    "udp length below 8",
    "middle fragment",
    "ipip with junk inside",
    "ipip truncated inner header",
    "icmp echo truncated",
    "truncated arp",
    "arp with odd address sizes",
    "vlan tag then nothing",
    "random bytes as ipv4",
];

/// The kinds of malformed IPv6 frame, in the order each round sends them.
const KINDS6: &[&str] = &[
    "truncated ipv6 header",
    "payload length beyond the frame",
    "version 4 in an ipv6 frame",
    "hop-by-hop after another extension header",
    "extension header beyond the packet",
    "nine destination options headers",
    "routing header with segments left",
    "two fragment headers",
    "truncated tcp after an extension header",
    "icmpv6 with a bad checksum",
    "neighbour solicitation at hop limit 64",
    "neighbour advertisement with a zero-length option",
    "random bytes as ipv6",
];

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

struct Builder {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

impl Builder {
    fn ethernet(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(14 + payload.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A correct IPv4 packet with `payload`, then `damage` applied to the whole packet.
    fn ipv4(&self, protocol: u8, payload: &[u8], damage: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut p = ipv4_header(self.src, self.dst, protocol, payload.len(), 64).to_vec();
        p.extend_from_slice(payload);
        damage(&mut p);
        self.ethernet(0x0800, &p)
    }

    fn tcp_header(&self, data_offset: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[12] = data_offset << 4;
        t[13] = 0x02; // SYN
        t
    }

    fn frame(&self, kind: &str, rng: &mut Rng) -> Vec<u8> {
        let fix_checksum = |p: &mut Vec<u8>| {
            p[10] = 0;
            p[11] = 0;
            let ihl = (usize::from(p[0] & 0x0f) * 4).clamp(20, p.len());
            let sum = internet_checksum(&p[..ihl]);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
        };
        match kind {
            "runt" => {
                // Shorter than 14 bytes cannot be sent (nor arrive from a tap at all).
                let n = (rng.next() % 6) as usize;
                self.ethernet(0x0800, &rng.bytes(n))
            }
            "ethernet header only" => self.ethernet(0x0800, &[]),
            "truncated ipv4 header" => {
                let mut f = self.ipv4(6, &self.tcp_header(5), |_| {});
                f.truncate(14 + 1 + (rng.next() % 19) as usize);
                f
            }
            "ihl below 5" => self.ipv4(6, &self.tcp_header(5), |p| {
                p[0] = 0x40 | (rng.next() % 5) as u8;
                fix_checksum(p);
            }),
            "ihl beyond the frame" => self.ipv4(6, &[], |p| {
                p[0] = 0x4f;
                fix_checksum(p);
            }),
            "total length beyond the frame" => self.ipv4(6, &self.tcp_header(5), |p| {
                p[2..4].copy_from_slice(&1400u16.to_be_bytes());
                fix_checksum(p);
            }),
            "total length below the header" => self.ipv4(6, &self.tcp_header(5), |p| {
                p[2..4].copy_from_slice(&((rng.next() % 20) as u16).to_be_bytes());
                fix_checksum(p);
            }),
            "bad header checksum" => self.ipv4(6, &self.tcp_header(5), |p| p[10] ^= 0x5a),
            "version 6 in an ipv4 frame" => self.ipv4(6, &self.tcp_header(5), |p| {
                p[0] = 0x65;
                fix_checksum(p);
            }),
            "truncated tcp header" => self.ipv4(6, &self.tcp_header(5)[..7], |_| {}),
            "tcp data offset below 5" => self.ipv4(6, &self.tcp_header(2), |_| {}),
            "tcp data offset beyond the segment" => self.ipv4(6, &self.tcp_header(15), |_| {}),
            "udp length beyond the datagram" => {
                let mut u = vec![0u8; 12];
                u[0..2].copy_from_slice(&40000u16.to_be_bytes());
                u[2..4].copy_from_slice(&5353u16.to_be_bytes());
                u[4..6].copy_from_slice(&900u16.to_be_bytes());
                self.ipv4(17, &u, |_| {})
            }
            "udp length below 8" => {
                let mut u = vec![0u8; 12];
                u[2..4].copy_from_slice(&5353u16.to_be_bytes());
                u[4..6].copy_from_slice(&3u16.to_be_bytes());
                self.ipv4(17, &u, |_| {})
            }
            "middle fragment" => self.ipv4(6, &rng.bytes(64), |p| {
                p[6] = 0x20; // more fragments, offset 16 bytes
                p[7] = 0x02;
                fix_checksum(p);
            }),
            "ipip with junk inside" => self.ipv4(4, &rng.bytes(48), |_| {}),
            "ipip truncated inner header" => {
                let inner = ipv4_header(self.src, self.dst, 6, 20, 64);
                self.ipv4(4, &inner[..11], |_| {})
            }
            "icmp echo truncated" => self.ipv4(1, &[8, 0, 0], |_| {}),
            "truncated arp" => {
                let arp = [0, 1, 8, 0, 6, 4, 0, 1, 1, 2, 3];
                self.ethernet(0x0806, &arp)
            }
            "arp with odd address sizes" => {
                let mut arp = vec![0, 1, 8, 0, 9, 7, 0, 1];
                arp.extend(rng.bytes(2 * 9 + 2 * 7));
                self.ethernet(0x0806, &arp)
            }
            "vlan tag then nothing" => self.ethernet(0x8100, &[0x00, 0x05]),
            "random bytes as ipv4" => {
                let n = 1 + (rng.next() % 200) as usize;
                self.ethernet(0x0800, &rng.bytes(n))
            }
            other => unreachable!("no frame kind {other}"),
        }
    }
}

/// IPv6 frames from `src` to `dst`.
struct Builder6 {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
}

impl Builder6 {
    /// An IPv6 frame: fixed header (`next`, hop limit `hop`, the payload length of `payload`)
    /// and `payload` (extension headers and what follows).
    fn ipv6(&self, next: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(54 + payload.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next, hop]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(payload);
        f
    }

    /// An ICMPv6 message (type, code, then `rest`) with its checksum, from `src` to `dst`.
    fn icmp6(&self, kind: u8, code: u8, rest: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, code, 0, 0];
        m.extend_from_slice(rest);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&self.src.octets());
        pseudo.extend_from_slice(&self.dst.octets());
        pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(&m);
        let sum = internet_checksum(&pseudo);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        m
    }

    fn tcp(&self) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x02;
        t
    }

    fn frame(&self, kind: &str, rng: &mut Rng) -> Vec<u8> {
        let with = |ext: &[u8], rest: &[u8]| [ext, rest].concat();
        match kind {
            "truncated ipv6 header" => {
                let mut f = self.ipv6(6, 64, &self.tcp());
                f.truncate(14 + 1 + (rng.next() % 39) as usize);
                f
            }
            "payload length beyond the frame" => {
                let mut f = self.ipv6(6, 64, &self.tcp());
                f[18..20].copy_from_slice(&1400u16.to_be_bytes());
                f
            }
            "version 4 in an ipv6 frame" => {
                let mut f = self.ipv6(6, 64, &self.tcp());
                f[14] = 0x45;
                f
            }
            "hop-by-hop after another extension header" => self.ipv6(
                60,
                64,
                &with(
                    &[0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0],
                    &self.tcp(),
                ),
            ),
            "extension header beyond the packet" => {
                self.ipv6(60, 64, &with(&[6, 200, 0, 0, 0, 0, 0, 0], &self.tcp()))
            }
            "nine destination options headers" => {
                let mut chain = [60u8, 0, 1, 4, 0, 0, 0, 0].repeat(9);
                chain[8 * 8] = 6;
                self.ipv6(60, 64, &with(&chain, &self.tcp()))
            }
            "routing header with segments left" => {
                self.ipv6(43, 64, &with(&[6, 0, 0, 3, 0, 0, 0, 0], &self.tcp()))
            }
            "two fragment headers" => self.ipv6(
                44,
                64,
                &with(
                    &[44, 0, 0, 1, 0, 0, 0, 7, 6, 0, 0, 1, 0, 0, 0, 7],
                    &self.tcp(),
                ),
            ),
            "truncated tcp after an extension header" => {
                self.ipv6(60, 64, &with(&[6, 0, 1, 4, 0, 0, 0, 0], &self.tcp()[..9]))
            }
            "icmpv6 with a bad checksum" => {
                let mut m = self.icmp6(128, 0, &[0, 1, 0, 1, 1, 2, 3, 4]);
                m[2] ^= 0x5a;
                self.ipv6(58, 64, &m)
            }
            "neighbour solicitation at hop limit 64" => {
                let mut ns = vec![0u8; 4];
                ns.extend_from_slice(&self.dst.octets());
                ns.extend_from_slice(&[1, 1]);
                ns.extend_from_slice(&self.src_mac);
                self.ipv6(58, 64, &self.icmp6(135, 0, &ns))
            }
            "neighbour advertisement with a zero-length option" => {
                let mut na = vec![0x20, 0, 0, 0];
                na.extend_from_slice(&self.src.octets());
                na.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
                self.ipv6(58, 255, &self.icmp6(136, 0, &na))
            }
            "random bytes as ipv6" => {
                let n = 1 + (rng.next() % 200) as usize;
                let mut f = self.ipv6(6, 64, &[]);
                f.truncate(14);
                f.extend(rng.bytes(n));
                f
            }
            other => unreachable!("no frame kind {other}"),
        }
    }
}

fn run(args: &[String]) -> Result<u64, String> {
    let [_, iface, dst_mac, src, dst, rounds] = args else {
        return Err("usage: frame-flood IFACE DST_MAC SRC_IP DST_IP ROUNDS".into());
    };
    let dst_mac = parse_mac(dst_mac).ok_or(format!("{dst_mac:?} is not a MAC"))?;
    let mac_path = format!("/sys/class/net/{iface}/address");
    let own = std::fs::read_to_string(&mac_path).map_err(|e| format!("{mac_path}: {e}"))?;
    let src_mac = parse_mac(own.trim()).ok_or(format!("{mac_path} holds no MAC"))?;
    let src: IpAddr = src.parse().map_err(|e| format!("{src:?}: {e}"))?;
    let dst: IpAddr = dst.parse().map_err(|e| format!("{dst:?}: {e}"))?;
    let rounds: u64 = rounds.parse().map_err(|e| format!("{rounds:?}: {e}"))?;
    let socket = PacketSocket::open(iface).map_err(|e| format!("packet socket on {iface}: {e}"))?;
    let mut rng = Rng(0x005e_ed0f_51de_57e9);
    let mut sent = 0;
    let send = |kind: &str, frame: Vec<u8>| {
        socket
            .send(&frame)
            .map_err(|e| format!("sending a {kind:?} frame failed: {e}"))
    };
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let builder = Builder {
                dst_mac,
                src_mac,
                src,
                dst,
            };
            for _ in 0..rounds {
                for kind in KINDS {
                    send(kind, builder.frame(kind, &mut rng))?;
                    sent += 1;
                }
            }
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let builder = Builder6 {
                dst_mac,
                src_mac,
                src,
                dst,
            };
            for _ in 0..rounds {
                for kind in KINDS6 {
                    send(kind, builder.frame(kind, &mut rng))?;
                    sent += 1;
                }
            }
        }
        _ => return Err("SRC_IP and DST_IP must be of one family".into()),
    }
    Ok(sent)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(sent) => {
            println!("sent {sent} malformed frames");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("frame-flood: {e}");
            ExitCode::FAILURE
        }
    }
}
