//! End-to-end scale-out tests (issue 16): two Sidestep images side by side on the balancer
//! segment, the router `rt` spreading a VIP's flows over both by ECMP (the layer-4 multipath
//! hash), and a client (`far`, 10.99.0.10) behind the router, as an Internet client would be:
//!
//! ```text
//!   far 10.99.0.10 --- rt (10.99.0.1 | 10.77.0.1) --- br0 --+-- tap0: balancer A 10.77.0.2
//!                       VIP/32: nexthop A, nexthop B        +-- tap1: balancer B 10.77.0.3
//!                                                           +-- be1, be2 (dsr-l2), client
//! ```
//!
//! Both images run the same services (a maglev dsr-l2 VIP over be1 and be2, health checks,
//! management open to the client for `/metrics`); only the interface address differs. The
//! router's route is set here as the one BIRD would install for a VIP both balancers announce
//! (`merge paths`), and changed as a withdrawal would change it: the BGP speaker is not in the
//! image yet, so these checks prove the two-balancer harness and the property the speaker relies
//! on, that a flow moved from one balancer to the other keeps its backend.
//!
//! One boot of both images serves every check (CI time): they run in order in one test, the
//! balancer kill last.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::fixture::{backend_of, Balancers, Place};
use tests::netns::{
    big_file_content, Host, BALANCER, BALANCER2, BALANCER2_MAC, BALANCER_MAC, BIG_FILE_LEN,
    BIG_FILE_PATH, VIP_WEB,
};
use tests::qemu::Image;

/// The management port of both balancers.
const MGMT_PORT: u16 = 9100;
/// Rate of the download a balancer dies under: about 12 s for the 24 MiB file.
const SLOW_RATE: &str = "2M";

/// The config of the balancer at `address`: everything else is the same for both.
fn config_text(address: Ipv4Addr) -> String {
    let client = Host::Client.addr().expect("has one");
    format!(
        r#"# Written by tests/tests/e2e_bgp.rs: one of two balancers behind the router.
version = 1

[interface]
address = "{address}/24"
gateway = "10.77.0.1"

[management]
port = {MGMT_PORT}
allow = ["{client}/32"]

[[vip]]
name = "web"
address = "{VIP_WEB}"
port = 80
protocol = "tcp"
mode = "dsr-l2"
scheduler = "maglev"

[vip.health]
kind = "tcp"
port = 80
interval_ms = 500
timeout_ms = 300
rise = 2
fall = 2

[[vip.backend]]
name = "be1"
address = "10.77.0.21"
weight = 1

[[vip.backend]]
name = "be2"
address = "10.77.0.22"
weight = 1
"#
    )
}

/// The run's configs and images: target/test-images/ecmp-setup/ecmp-{a,b}.toml, replaced
/// each run.
fn images() -> (Image, Image) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-images/ecmp-setup");
    std::fs::create_dir_all(&dir).expect("create the config directory");
    let build = |name: &str, address: Ipv4Addr| {
        let path: PathBuf = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config_text(address)).expect("write a config");
        Image::build(&path).unwrap_or_else(|e| panic!("build {name}: {e}"))
    };
    (build("ecmp-a", BALANCER), build("ecmp-b", BALANCER2))
}

/// The balancers' addresses, in boot order.
const ADDRS: [Ipv4Addr; 2] = [BALANCER, BALANCER2];

/// `sidestep_vip_packets_total{vip="web"}` of balancer `i`, read from the client.
fn vip_packets(b: &Balancers, i: usize) -> u64 {
    let url = format!("http://{}:{MGMT_PORT}/metrics", ADDRS[i]);
    let text = b
        .net
        .curl(10, &[&url])
        .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", b.diagnostics()));
    text.lines()
        .find_map(|l| l.strip_prefix("sidestep_vip_packets_total{vip=\"web\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VIP packet count in {url}:\n{text}"))
}

fn check_the_route_has_two_next_hops(b: &Balancers) {
    let route = b.net.route_of(VIP_WEB).expect("ip route show");
    for hop in ADDRS {
        assert!(
            route.contains(&format!("nexthop via {hop} ")),
            "no next hop {hop} in the router's route: {route}"
        );
    }
}

/// Many new connections from the wan client: every one answered by a backend, and both
/// balancers carried some (the router's hash spreads the source ports).
fn check_connections_spread_over_both(b: &Balancers) {
    let before = [vip_packets(b, 0), vip_packets(b, 1)];
    let url = format!("http://{VIP_WEB}/");
    for n in 0..40 {
        let body = b
            .net
            .curl_on(Host::Wan, 10, &[&url])
            .unwrap_or_else(|e| panic!("connection {n}: {e}\n{}", b.diagnostics()));
        assert!(
            matches!(backend_of(&body), Some("be1" | "be2")),
            "connection {n}: not a backend's page: {body:?}"
        );
    }
    let carried = [vip_packets(b, 0) - before[0], vip_packets(b, 1) - before[1]];
    assert!(
        carried.iter().all(|&n| n > 0),
        "VIP packets per balancer over 40 connections: {carried:?}"
    );
}

/// A slow download from the wan client; the balancer carrying it is killed mid-way and the
/// router's route loses it (as a withdrawal, or its hold timer, would do); the download
/// completes byte-exact through the other balancer, which sends the flow's packets to the same
/// backend by the VIP's consistent hash.
fn check_a_download_survives_its_balancer(b: &mut Balancers) {
    let out = b.net.dir().join("download.bin");
    let url = format!("http://{VIP_WEB}{BIG_FILE_PATH}");
    let out_arg = out.to_string_lossy().into_owned();
    b.net
        .spawn(
            Host::Wan,
            "download",
            &[
                "curl",
                "-sS",
                "--limit-rate",
                SLOW_RATE,
                "--max-time",
                "120",
                "-o",
                &out_arg,
                &url,
            ],
        )
        .expect("start the download");
    // Which balancer carries it: the one whose VIP count rises while it runs (the client's
    // ACKs; few, as the client's receive path coalesces segments), while the other's does not.
    let started = Instant::now();
    b.eventually("the download is under way", Duration::from_secs(30), || {
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        (size > 1 << 20).then_some(())
    });
    let first = [vip_packets(b, 0), vip_packets(b, 1)];
    std::thread::sleep(Duration::from_secs(2));
    let second = [vip_packets(b, 0), vip_packets(b, 1)];
    let rise = [second[0] - first[0], second[1] - first[1]];
    let carrier = if rise[0] > rise[1] { 0 } else { 1 };
    let other = 1 - carrier;
    assert!(
        rise[carrier] >= 5 && rise[other] == 0,
        "one balancer should carry the download: VIP packets in two seconds {rise:?}"
    );
    let size_at_kill = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    b.kill(carrier);
    b.net
        .route_over(VIP_WEB, &[ADDRS[other]])
        .expect("withdraw the dead balancer's route");
    let code = b
        .net
        .wait("download", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\n{}", b.diagnostics()));
    assert_eq!(
        code,
        Some(0),
        "the download failed after its balancer died: {}\n{}",
        b.net.log("download"),
        b.diagnostics()
    );
    let got = std::fs::read(&out).expect("read the download");
    assert_eq!(got.len(), BIG_FILE_LEN, "the download's length");
    assert!(
        got == big_file_content(),
        "the download differs from the file"
    );
    assert!(
        size_at_kill < BIG_FILE_LEN as u64 / 2,
        "the balancer died too late to prove anything ({size_at_kill} bytes were there)"
    );
    eprintln!(
        "e2e_bgp: balancer {carrier} killed at {size_at_kill} bytes; the download took {:?}",
        started.elapsed()
    );
}

#[test]
fn two_balancers_share_a_vip_and_a_flow_survives_losing_its_balancer() {
    let (a, b) = images();
    let places = [
        Place {
            image: &a,
            tap: "tap0",
            mac: BALANCER_MAC,
        },
        Place {
            image: &b,
            tap: "tap1",
            mac: BALANCER2_MAC,
        },
    ];
    let started = Instant::now();
    let mut balancers = Balancers::boot(tests::helper_bins!(), &places, |net| {
        net.route_over(VIP_WEB, &ADDRS)
    })
    .unwrap_or_else(|e| panic!("boot two balancers: {e}"));
    eprintln!(
        "e2e_bgp: both balancers ready after {:?}",
        started.elapsed()
    );
    // The health checks must have raised both backends on both balancers first.
    let b = &balancers;
    b.eventually(
        "both balancers answer on the VIP",
        Duration::from_secs(30),
        || {
            let body = b
                .net
                .curl_on(Host::Wan, 3, &[&format!("http://{VIP_WEB}/")])
                .ok()?;
            backend_of(&body).map(drop)
        },
    );
    check_the_route_has_two_next_hops(b);
    check_connections_spread_over_both(b);
    check_a_download_survives_its_balancer(&mut balancers);
}
