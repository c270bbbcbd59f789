//! `stub-lb TAP MAC ADDR GW_MAC RULE...`: a minimal user-space stand-in for the Sidestep image,
//! used only to prove the end-to-end test network (tests/tests/e2e_datapath.rs, the ignored
//! `stub_*` tests) before the image forwards.
//!
//! It sits exactly where QEMU does: it creates the TAP device `TAP` in the balancer's
//! namespace and speaks Ethernet on it with MAC `MAC`. It answers ARP for `ADDR` and every VIP,
//! answers ping on `ADDR`, and forwards frames to VIPs as DSR does. A RULE is
//! - `l2:VIP:PROTO:PORT=MAC,MAC...`: rewrite the Ethernet destination to one backend's MAC
//!   (source = ours);
//! - `l3:VIP:PROTO:PORT=IP`: wrap in an outer IPv4 header (protocol 4) to IP, sent to the
//!   gateway `GW_MAC`;
//!
//! where PROTO is `tcp` or `udp` and PORT a number or `*` (every port).
//!
//! The backend is chosen by a hash of the source address and ports, so a flow stays put. Every
//! other frame is dropped. Runs until killed.

use ::tests::rawio::{internet_checksum, ipv4_header, parse_mac, TunTap};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::ExitCode;

enum Target {
    L2(Vec<[u8; 6]>),
    L3(Ipv4Addr),
}

struct Stub {
    mac: [u8; 6],
    addr: Ipv4Addr,
    gw_mac: [u8; 6],
    /// Services by (VIP, IP protocol, port; `None` = every port).
    services: HashMap<(Ipv4Addr, u8, Option<u16>), Target>,
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

impl Stub {
    /// What to send in answer to `frame`, if anything.
    fn handle(&self, frame: &[u8]) -> Option<Vec<u8>> {
        if frame.len() < 14 {
            return None;
        }
        let to_us = frame[0..6] == self.mac;
        let broadcast = frame[0..6] == [0xff; 6];
        match u16::from_be_bytes([frame[12], frame[13]]) {
            0x0806 if to_us || broadcast => self.arp(frame),
            0x0800 if to_us => self.ipv4(frame),
            _ => None,
        }
    }

    fn arp(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let a = frame.get(14..42)?;
        // Ethernet/IPv4 request only.
        if a[0..8] != [0, 1, 8, 0, 6, 4, 0, 1] {
            return None;
        }
        let target = ip_at(a, 24);
        if target != self.addr && !self.services.keys().any(|(vip, _, _)| *vip == target) {
            return None;
        }
        let mut r = Vec::with_capacity(42);
        r.extend_from_slice(&a[8..14]);
        r.extend_from_slice(&self.mac);
        r.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
        r.extend_from_slice(&self.mac);
        r.extend_from_slice(&target.octets());
        r.extend_from_slice(&a[8..18]);
        Some(r)
    }

    fn ipv4(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let ip = &frame[14..];
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ihl < 20 || total < ihl || total > ip.len() || internet_checksum(&ip[..ihl]) != 0 {
            return None;
        }
        let ip = &ip[..total];
        let dst = ip_at(ip, 16);
        if dst == self.addr {
            return self.echo_reply(frame, ip, ihl);
        }
        let protocol = ip[9];
        if !matches!(protocol, 6 | 17) || ip.len() < ihl + 4 {
            return None;
        }
        let ports = u32::from_be_bytes(ip[ihl..ihl + 4].try_into().ok()?);
        let target = self
            .services
            .get(&(dst, protocol, Some(ports as u16)))
            .or_else(|| self.services.get(&(dst, protocol, None)))?;
        // Hash the source address and both ports.
        let key = (ip_at(ip, 12).to_bits() as u64) << 32 | u64::from(ports);
        let hash = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        match target {
            Target::L2(macs) => {
                let mac = macs[(hash % macs.len() as u64) as usize];
                let mut out = Vec::with_capacity(14 + ip.len());
                out.extend_from_slice(&mac);
                out.extend_from_slice(&self.mac);
                out.extend_from_slice(&[0x08, 0x00]);
                out.extend_from_slice(ip);
                Some(out)
            }
            Target::L3(backend) => {
                let outer = ipv4_header(self.addr, *backend, 4, ip.len(), 64);
                let mut out = Vec::with_capacity(34 + ip.len());
                out.extend_from_slice(&self.gw_mac);
                out.extend_from_slice(&self.mac);
                out.extend_from_slice(&[0x08, 0x00]);
                out.extend_from_slice(&outer);
                out.extend_from_slice(ip);
                Some(out)
            }
        }
    }

    fn echo_reply(&self, frame: &[u8], ip: &[u8], ihl: usize) -> Option<Vec<u8>> {
        let icmp = &ip[ihl..];
        if ip[9] != 1 || icmp.len() < 8 || icmp[0] != 8 || internet_checksum(icmp) != 0 {
            return None;
        }
        let mut reply_icmp = icmp.to_vec();
        reply_icmp[0] = 0;
        reply_icmp[2] = 0;
        reply_icmp[3] = 0;
        let sum = internet_checksum(&reply_icmp);
        reply_icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let header = ipv4_header(self.addr, ip_at(ip, 12), 1, reply_icmp.len(), 64);
        let mut out = Vec::with_capacity(34 + reply_icmp.len());
        out.extend_from_slice(&frame[6..12]);
        out.extend_from_slice(&self.mac);
        out.extend_from_slice(&[0x08, 0x00]);
        out.extend_from_slice(&header);
        out.extend_from_slice(&reply_icmp);
        Some(out)
    }
}

type Service = (Ipv4Addr, u8, Option<u16>);

fn parse_rule(rule: &str) -> Result<(Service, Target), String> {
    let bad = || format!("{rule:?} is not l2:VIP:PROTO:PORT=MAC,MAC... or l3:VIP:PROTO:PORT=IP");
    let (service, to) = rule.split_once('=').ok_or_else(bad)?;
    let [kind, vip, protocol, port] = service.split(':').collect::<Vec<_>>()[..] else {
        return Err(bad());
    };
    let vip: Ipv4Addr = vip.parse().map_err(|_| bad())?;
    let protocol = match protocol {
        "tcp" => 6,
        "udp" => 17,
        _ => return Err(bad()),
    };
    let port = match port {
        "*" => None,
        p => Some(p.parse().map_err(|_| bad())?),
    };
    let target = match kind {
        "l2" => Target::L2(
            to.split(',')
                .map(|m| parse_mac(m).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
        "l3" => Target::L3(to.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    Ok(((vip, protocol, port), target))
}

fn run(args: &[String]) -> Result<(), String> {
    let [_, tap_name, mac, addr, gw_mac, rules @ ..] = args else {
        return Err("usage: stub-lb TAP MAC ADDR GW_MAC RULE...".into());
    };
    let stub = Stub {
        mac: parse_mac(mac).ok_or(format!("{mac:?} is not a MAC"))?,
        addr: addr.parse().map_err(|e| format!("{addr:?}: {e}"))?,
        gw_mac: parse_mac(gw_mac).ok_or(format!("{gw_mac:?} is not a MAC"))?,
        services: rules
            .iter()
            .map(|r| parse_rule(r))
            .collect::<Result<_, _>>()?,
    };
    let tap = TunTap::tap(tap_name).map_err(|e| format!("cannot create TAP {tap_name}: {e}"))?;
    println!("stub-lb: ready on {tap_name}");
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match tap.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading {tap_name}: {e}")),
        };
        if let Some(out) = stub.handle(&buf[..n]) {
            if let Err(e) = tap.send(&out) {
                eprintln!("stub-lb: writing {tap_name}: {e}");
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stub-lb: {e}");
            ExitCode::FAILURE
        }
    }
}
