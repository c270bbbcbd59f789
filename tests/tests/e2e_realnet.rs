//! End-to-end tests on a real network path: the image, booted with `tests/configs/realnet.toml`,
//! on the network of [`Topology::NarrowLink`] (see `tests::netns`), where the client `far` sits
//! behind two Linux routers joined by a 1400-byte link.
//!
//! One image boots once for all checks (they run in one test, in an order that keeps them
//! independent): path MTU discovery through both DSR modes (a big download from `far` only
//! completes if the balancer passes the narrow router's "fragmentation needed" on to the
//! backend), the same over IPv6 (the narrow router's ICMPv6 packet too big), ping of a VIP, a
//! datagram of the largest MTU `sidestep check` accepts, and a spoofed ARP reply for a backend
//! whose MAC the config pins.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tests::fixture::{self, backend_of, Check, Fixture, TAP};
use tests::netns::{
    self, Host, Topology, BALANCER, BALANCER_MAC, BIG_FILE_LEN, BIG_FILE_PATH, NARROW_MTU,
    UDP_PORT, VIP_DNS, VIP_WEB, VIP_WEB3, VIP_WEB6,
};
use tests::qemu::Image;

/// A download that moves less than this many bytes a second for [`STALL_SECS`] has stalled
/// (a PMTU black hole): curl gives up then, not at its overall time limit.
const STALL_BYTES_PER_SEC: &str = "1000";
const STALL_SECS: &str = "20";

/// Sends one datagram of `argv[3]` bytes with DF set (`IP_PMTUDISC_DO`) from a socket
/// connected to `argv[1]:argv[2]`, and prints the length and start of the reply.
const UDP_DF_PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"x" * int(sys.argv[3]))
reply = s.recv(4096)
print(len(reply), reply[:16].decode(errors="replace"))
"#;

/// Sends `argv[6]` rounds, 0.7 s apart (longer than any neighbour lock time), of ARP frames
/// from `argv[1]` to the MAC `argv[2]` (only), claiming that `argv[4]` is at `argv[3]`: a
/// reply to `argv[5]` and a gratuitous request.
const ARP_SPOOF_PY: &str = r#"
import socket, sys, time
dev, dst, src, claim, target, rounds = sys.argv[1:7]
mac = lambda m: bytes.fromhex(m.replace(":", ""))
ip = socket.inet_aton
def frame(op, tha, tpa):
    arp = b"\x00\x01\x08\x00\x06\x04" + op + mac(src) + ip(claim) + tha + tpa
    return (mac(dst) + mac(src) + b"\x08\x06" + arp).ljust(60, b"\x00")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
for _ in range(int(rounds)):
    s.send(frame(b"\x00\x02", mac(dst), ip(target)))
    s.send(frame(b"\x00\x01", b"\x00" * 6, ip(claim)))
    time.sleep(0.7)
print("sent")
"#;

fn booted() -> Fixture {
    let image = Image::build(&fixture::realnet_config()).expect("build the realnet image");
    Fixture::boot_on(tests::helper_bins!(), Topology::NarrowLink, &image, |_| {
        Ok(())
    })
    .expect("boot the realnet fixture")
}

/// `far` downloads the big file through `vip`; it must arrive byte for byte, the balancer must
/// have received the narrow router's "fragmentation needed" (IPv6: "packet too big") for it,
/// and one of `backends` must have learnt the narrow path's MTU toward `far`.
fn check_download_through_narrow_link(f: &Fixture, vip: IpAddr, backends: &[Host]) {
    let started = Instant::now();
    let cap = f
        .net
        .capture(Host::Lb, TAP, "icmp or icmp6")
        .expect("capture the tap");
    let got = f.net.dir().join(format!("far-download-{vip}"));
    let url = format!("http://{}{BIG_FILE_PATH}", SocketAddr::new(vip, 80));
    let result = f.net.curl_on(
        Host::Far,
        180,
        &[
            "--speed-limit",
            STALL_BYTES_PER_SEC,
            "--speed-time",
            STALL_SECS,
            "-o",
            &got.to_string_lossy(),
            &url,
        ],
    );
    let seen = cap.finish().expect("read the tap capture");
    if let Err(e) = result {
        panic!(
            "download {url} from far stalled or failed (a PMTU black hole?): {e}\n{}",
            f.diagnostics()
        );
    }
    let bytes = std::fs::read(&got).expect("read the download");
    let _ = std::fs::remove_file(&got);
    assert_eq!(bytes.len(), BIG_FILE_LEN, "download through {vip}: length");
    assert!(
        bytes == netns::big_file_content(),
        "download through {vip}: content differs"
    );
    // ICMPv6 type 2 right after the 40-byte header: neighbour discovery never carries
    // extension headers, nor does a router's error.
    let too_big = match vip {
        IpAddr::V4(_) => "icmp[0] = 3 and icmp[1] = 4",
        IpAddr::V6(_) => "icmp6 and ip6[40] = 2",
    };
    let frag_needed = seen
        .matching(&format!("dst host {vip} and {too_big}"))
        .expect("filter the capture");
    assert!(
        !frag_needed.is_empty(),
        "no \"fragmentation needed\" (\"packet too big\") to {vip} reached the balancer, so \
         the narrow link was not in the path; {} ICMP packets on {}",
        seen.lines.len(),
        seen.what
    );
    let far = match vip {
        IpAddr::V4(_) => Host::Far.addr().expect("has one").to_string(),
        IpAddr::V6(_) => Host::Far.addr6().expect("has one").to_string(),
    };
    let learnt = backends.iter().any(|&be| {
        f.net
            .run_ok(be, &["ip", "route", "get", &far])
            .is_ok_and(|route| route.contains(&format!("mtu {NARROW_MTU}")))
    });
    assert!(
        learnt,
        "none of {backends:?} learnt the path MTU {NARROW_MTU} toward far"
    );
    eprintln!(
        "far: {BIG_FILE_LEN} bytes through {vip} in {:.1?}, {} frag-needed passed on",
        started.elapsed(),
        frag_needed.len()
    );
}

/// An operator pings the VIPs from behind the routers.
fn check_ping_vips(f: &Fixture) {
    for vip in [VIP_WEB, VIP_WEB3] {
        let out = f
            .net
            .run(
                Host::Far,
                &["ping", "-c", "3", "-i", "0.2", "-W", "2", &vip.to_string()],
            )
            .expect("run ping");
        assert!(
            out.success,
            "VIP {vip} did not answer ping: {}{}\n{}",
            out.stdout,
            out.stderr,
            f.diagnostics()
        );
    }
}

/// A datagram that fills the largest accepted MTU (`interface.mtu = 1500`: a 1514-byte frame)
/// with DF set passes the balancer to a dsr-l2 backend, which answers it.
fn check_largest_mtu_datagram(f: &Fixture) {
    let payload = 1500 - 20 - 8;
    let mut last = String::new();
    for _ in 0..3 {
        let out = f
            .net
            .run(
                Host::Client,
                &[
                    "python3",
                    "-c",
                    UDP_DF_PY,
                    &VIP_DNS.to_string(),
                    &UDP_PORT.to_string(),
                    &payload.to_string(),
                ],
            )
            .expect("run python3");
        if out.success {
            let (len, start) = out.stdout.trim().split_once(' ').unwrap_or(("", ""));
            let be = backend_of(start).unwrap_or_else(|| panic!("not an echo: {}", out.stdout));
            let want = payload + "backend= ".len() + be.len();
            assert_eq!(len, want.to_string(), "echo of {payload} bytes from {be}");
            return;
        }
        last = format!("{}{}", out.stdout, out.stderr);
    }
    panic!(
        "a {payload}-byte datagram with DF to {VIP_DNS}:{UDP_PORT} was not answered: {last}\n{}",
        f.diagnostics()
    );
}

/// The client claims be1's address in ARP to the balancer, more than once and over more than a
/// second; be1's MAC is pinned, so be1 keeps getting its share of `web` and nothing for a VIP
/// reaches the client.
fn check_spoofed_arp_changes_nothing(f: &Fixture) {
    let net = &f.net;
    let be1 = Host::Be1.addr().expect("has one");
    let client_mac = Host::Client.mac().expect("has one");
    let tap = net.capture(Host::Lb, TAP, "arp").expect("capture the tap");
    let out = net
        .run(
            Host::Client,
            &[
                "python3",
                "-c",
                ARP_SPOOF_PY,
                "eth0",
                BALANCER_MAC,
                &client_mac,
                &be1.to_string(),
                &BALANCER.to_string(),
                "4",
            ],
        )
        .expect("run python3");
    assert!(out.success, "spoofing failed: {}{}", out.stdout, out.stderr);
    let arp = tap.finish().expect("read the tap capture");
    let [a, b, c, d] = be1.octets();
    let spoofed = arp
        .matching(&format!(
            "ether src {client_mac} and arp[14:4] = 0x{a:02x}{b:02x}{c:02x}{d:02x}"
        ))
        .expect("filter");
    assert!(
        spoofed.len() >= 8,
        "the spoofed ARP did not reach the balancer: {:?}",
        arp.lines
    );

    let to_client = net
        .capture(Host::Lb, "v-client", "ip")
        .expect("capture v-client");
    let to_be1 = net.capture(Host::Lb, "v-be1", "ip").expect("capture v-be1");
    let url = format!("http://{VIP_WEB}/");
    let seen: Vec<String> = (0..10)
        .map(|_| {
            let body = net
                .curl_on(Host::Far, 10, &[&url])
                .unwrap_or_else(|e| panic!("GET {url} after the spoof: {e}\n{}", f.diagnostics()));
            backend_of(&body).unwrap_or("?").to_owned()
        })
        .collect();
    let to_client = to_client.finish().expect("read v-client");
    let to_be1 = to_be1.finish().expect("read v-be1");
    assert!(
        seen.iter().any(|s| s == "be1"),
        "be1 never answered: {seen:?}"
    );
    let stolen = to_client
        .matching(&format!("dst host {VIP_WEB}"))
        .expect("filter");
    assert!(
        stolen.is_empty(),
        "traffic for {VIP_WEB} went to the spoofer: {stolen:?}"
    );
    let kept = to_be1
        .matching(&format!(
            "ether dst {} and dst host {VIP_WEB}",
            Host::Be1.mac().expect("has one")
        ))
        .expect("filter");
    assert!(
        !kept.is_empty(),
        "no request for {VIP_WEB} reached be1's MAC"
    );
}

/// One boot for every check; each check runs even if an earlier one failed, and the test fails
/// naming every check that did.
#[test]
fn pmtu_ping_mtu_and_pinned_neighbours_on_a_real_path() {
    let started = Instant::now();
    let f = booted();
    eprintln!("realnet: booted in {:.1?}", started.elapsed());
    let checks: [(&str, &Check); 6] = [
        ("ping of a VIP from far", &check_ping_vips),
        ("a datagram of the largest MTU", &check_largest_mtu_datagram),
        (
            "a spoofed ARP reply for a pinned backend",
            &check_spoofed_arp_changes_nothing,
        ),
        ("dsr-l2 download through the narrow link", &|f| {
            check_download_through_narrow_link(f, VIP_WEB.into(), &[Host::Be1, Host::Be2])
        }),
        ("dsr-l3 download through the narrow link", &|f| {
            check_download_through_narrow_link(f, VIP_WEB3.into(), &[Host::Be3])
        }),
        ("IPv6 dsr-l2 download through the narrow link", &|f| {
            check_download_through_narrow_link(f, VIP_WEB6.into(), &[Host::Be1, Host::Be2])
        }),
    ];
    fixture::run_checks("realnet", &f, &checks);
}
