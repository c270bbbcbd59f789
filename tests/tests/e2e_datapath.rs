//! End-to-end datapath tests: the image, booted with `tests/configs/e2e.toml`, balancing real
//! Linux clients and backends in network namespaces (see `tests::netns`).
//!
//! Each check is a function over a [`Fixture`] (`tests::fixture`, shared with the control-plane
//! tests) so that the same assertions run against the
//! image (the plain tests) and against `stub-lb`, a user-space stand-in (the ignored `stub_*`
//! test), which proves the network, servers and assertions themselves. Tests run one at a time:
//! each boots its own balancer under TCG, and two cores do not run several well.
//!
//! The plain tests boot the NIC of `SIDESTEP_NIC` (virtio-net unless set; `SIDESTEP_NIC=igb`
//! runs them all on QEMU's Intel 82576). `igb_*` runs the DSR-L2, DSR-L3 and big-transfer checks
//! on the 82576 whatever `SIDESTEP_NIC` says, and is skipped, saying so, on a QEMU without it.
//!
//! Every check that sends traffic also captures the balancer's TAP and asserts that no packet
//! with a VIP as its source crossed it: in DSR, responses never pass the balancer.

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use tests::fixture::{self, backend_of, sha256_of, Fixture};
use tests::netns::{
    self, Host, Topology, BALANCER, BALANCER_MAC, BIG_FILE_LEN, BIG_FILE_PATH, UDP_PORT, UNUSED,
    VIPS, VIP_ANY, VIP_DNS, VIP_WEB, VIP_WEB3,
};
use tests::qemu::{Image, NicModel};

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| Image::build(&fixture::e2e_config()).expect("build the e2e image"))
}

/// The network with the image booted in the balancer's place.
fn booted() -> Fixture {
    Fixture::boot(tests::helper_bins!(), image(), |_| Ok(())).expect("boot the e2e fixture")
}

/// The network with the image booted in the balancer's place on the NIC model `nic`.
fn booted_on(nic: NicModel) -> Fixture {
    Fixture::boot_nic(
        tests::helper_bins!(),
        Topology::Segment,
        nic,
        image(),
        |_| Ok(()),
    )
    .expect("boot the e2e fixture")
}

/// Runs `traffic` while capturing the balancer's tap, then asserts no packet from a VIP crossed
/// it (a response passing the balancer means DSR is broken).
fn no_response_crosses_balancer(f: &Fixture, traffic: impl FnOnce()) {
    let ((), seen) = f.watch_tap(&VIPS, traffic).expect("capture the tap");
    // The capture must have seen the requests, or it proves nothing.
    assert!(
        !seen.requests.is_empty(),
        "the capture on {} saw no request",
        seen.what
    );
    assert_none(
        &seen.what,
        &seen.responses,
        "a response crossed the balancer",
    );
}

fn assert_none(what: &str, lines: &[String], why: &str) {
    assert!(
        lines.is_empty(),
        "{why}: {} packets on {what}:\n{}",
        lines.len(),
        lines
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn check_l2_http_spreads(f: &Fixture) {
    no_response_crosses_balancer(f, || {
        let seen = f.backends_answering(VIP_WEB, 80, 20);
        for be in ["be1", "be2"] {
            assert!(
                seen.iter().any(|s| s == be),
                "{be} never answered: {seen:?}"
            );
        }
        assert!(seen.iter().all(|s| s == "be1" || s == "be2"), "{seen:?}");
    });
}

fn check_l3_http(f: &Fixture) {
    no_response_crosses_balancer(f, || {
        let seen = f.backends_answering(VIP_WEB3, 80, 10);
        assert!(seen.iter().all(|s| s == "be3"), "{seen:?}");
    });
}

/// Downloads and uploads the big file through `vip` and checks both byte for byte.
fn check_big_transfer(f: &Fixture, vip: Ipv4Addr) {
    no_response_crosses_balancer(f, || {
        let got = f.net.dir().join(format!("download-{vip}"));
        let url = format!("http://{vip}{BIG_FILE_PATH}");
        f.net
            .curl(300, &["-o", &got.to_string_lossy(), &url])
            .unwrap_or_else(|e| panic!("download {url}: {e}\n{}", f.diagnostics()));
        let bytes = std::fs::read(&got).expect("read the download");
        assert_eq!(
            bytes.len(),
            BIG_FILE_LEN,
            "download through {vip}: wrong length"
        );
        assert!(
            bytes == netns::big_file_content(),
            "download through {vip}: content differs"
        );
        let _ = std::fs::remove_file(&got);

        // The upload carries the data through the balancer itself, in full-sized segments.
        let big = f.net.big_file();
        let reply = f
            .net
            .curl(
                300,
                &[
                    "-H",
                    "Expect:",
                    "-T",
                    &big.to_string_lossy(),
                    &format!("http://{vip}/upload"),
                ],
            )
            .unwrap_or_else(|e| panic!("upload to {vip}: {e}\n{}", f.diagnostics()));
        let want = format!("bytes={BIG_FILE_LEN} sha256={}", sha256_of(&big));
        assert!(
            reply.contains(&want),
            "upload through {vip}: {reply:?}, want {want}"
        );
    });
}

fn check_udp(f: &Fixture) {
    no_response_crosses_balancer(f, || {
        let replies = f
            .net
            .udp_ask(VIP_DNS, UDP_PORT, 20)
            .expect("ask the UDP VIP");
        assert_eq!(replies.len(), 20, "{replies:?}");
        assert!(
            !replies.iter().any(|r| r == "timeout"),
            "unanswered UDP requests (or answers from the wrong address): {replies:?}\n{}",
            f.diagnostics()
        );
        let seen: Vec<&str> = replies
            .iter()
            .map(|r| backend_of(r).unwrap_or_else(|| panic!("not a backend's echo: {r:?}")))
            .collect();
        for be in ["be1", "be2"] {
            assert!(seen.contains(&be), "{be} never answered: {seen:?}");
        }
    });
}

fn check_all_ports(f: &Fixture) {
    no_response_crosses_balancer(f, || {
        for port in [80, 8080] {
            let be = f.backend_answering(VIP_ANY, port);
            assert!(be == "be1" || be == "be2", "port {port}: {be}");
        }
    });
}

/// The client pings the balancer's own address. The balancer learns the client's MAC only by
/// ARP (a ping's source MAC is never taken as a neighbour's), and its stack drops the first
/// reply while it resolves and asks again at most once a second: the pings span 2 s.
fn check_ping_balancer(f: &Fixture) {
    let out = f
        .net
        .run(
            Host::Client,
            &[
                "ping",
                "-c",
                "5",
                "-i",
                "0.5",
                "-W",
                "2",
                &BALANCER.to_string(),
            ],
        )
        .expect("run ping");
    assert!(
        out.success,
        "the balancer did not answer ping on {BALANCER}: {}{}\n{}",
        out.stdout,
        out.stderr,
        f.diagnostics()
    );
}

/// Traffic the balancer must not forward: to an address nobody has, to a VIP on a port or
/// protocol it does not serve. Captured where a forwarded packet would go.
fn check_nothing_else_forwarded(f: &Fixture) {
    let net = &f.net;
    net.client_neighbour(UNUSED, BALANCER_MAC)
        .expect("static neighbour for the unused address");
    let l2_filter = format!(
        "dst host {UNUSED} or (dst host {VIP_WEB} and not tcp dst port 80) \
         or (dst host {VIP_DNS} and not udp dst port {UDP_PORT}) or (dst host {VIP_ANY} and not tcp)"
    );
    let l3_filter = format!("ip proto 4 or dst host {UNUSED}");
    let caps: Vec<_> = ["v-be1", "v-be2", "v-rt"]
        .iter()
        .map(|port| net.capture(Host::Lb, port, "ip").expect("capture"))
        .collect();

    let unused = UNUSED.to_string();
    let _ = net.run(
        Host::Client,
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", &unused],
    );
    let _ = net.curl(2, &[&format!("http://{UNUSED}/")]);
    let _ = net.curl(2, &[&format!("http://{VIP_WEB}:81/")]);
    let _ = net.udp_ask(VIP_WEB, 80, 2);
    let _ = net.udp_ask(VIP_DNS, 5354, 2);
    let _ = net.udp_ask(VIP_ANY, 80, 2);
    let _ = net.udp_ask(UNUSED, UDP_PORT, 2);
    // The control: what must be forwarded does show up in these captures.
    let be = f.backend_answering(VIP_WEB, 80);

    let mut control = 0;
    for cap in caps {
        let seen = cap.finish().expect("read a capture");
        let filter = if seen.what.starts_with("v-rt") {
            &l3_filter
        } else {
            &l2_filter
        };
        let wrong = seen.matching(filter).expect("filter");
        assert_none(
            &seen.what,
            &wrong,
            "the balancer forwarded what it must not",
        );
        control += seen
            .matching(&format!("dst host {VIP_WEB} and tcp dst port 80"))
            .expect("filter")
            .len();
    }
    assert!(
        control > 0,
        "the backend-side captures missed the request {be} answered"
    );
}

fn check_survives_malformed_frames(f: &Fixture) {
    for target in [VIP_WEB, VIP_WEB3, BALANCER] {
        f.net
            .flood_malformed(BALANCER_MAC, target, 200)
            .expect("send malformed frames");
    }
    check_ping_balancer(f);
    let be = f.backend_answering(VIP_WEB, 80);
    assert!(be == "be1" || be == "be2", "{be}");
    assert_eq!(f.backend_answering(VIP_WEB3, 80), "be3");
}

#[test]
fn l2_http_is_balanced_over_both_backends() {
    check_l2_http_spreads(&booted());
}

#[test]
fn l3_http_is_answered_by_the_ipip_backend() {
    check_l3_http(&booted());
}

#[test]
fn big_transfers_arrive_byte_exact_in_both_modes() {
    let f = booted();
    check_big_transfer(&f, VIP_WEB);
    check_big_transfer(&f, VIP_WEB3);
}

/// DSR-L2, DSR-L3 and the byte-exact big transfers through the igb driver, on one boot.
#[test]
fn igb_dsr_l2_l3_and_big_transfers() {
    if NicModel::Igb.skip("igb_dsr_l2_l3_and_big_transfers") {
        return;
    }
    let f = booted_on(NicModel::Igb);
    assert!(
        f.serial_log().contains("nic: igb at "),
        "the image did not drive the 82576 with igb:\n{}",
        f.serial_log()
    );
    check_l2_http_spreads(&f);
    check_l3_http(&f);
    check_big_transfer(&f, VIP_WEB);
    check_big_transfer(&f, VIP_WEB3);
    check_ping_balancer(&f);
}

#[test]
fn udp_vip_is_balanced() {
    check_udp(&booted());
}

#[test]
fn all_ports_vip_serves_any_port() {
    check_all_ports(&booted());
}

#[test]
fn balancer_answers_ping() {
    check_ping_balancer(&booted());
}

#[test]
fn nothing_but_vip_traffic_is_forwarded() {
    check_nothing_else_forwarded(&booted());
}

#[test]
fn malformed_frames_leave_it_forwarding() {
    let f = booted();
    check_survives_malformed_frames(&f);
    // The drops are counted: the image logs its counters every 5 s when they change.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let malformed = loop {
        let log = f.serial_log();
        let last = log
            .lines()
            .rfind(|l| l.contains("stats: "))
            .unwrap_or("")
            .to_owned();
        let count = last
            .split_whitespace()
            .find_map(|w| w.strip_prefix("malformed="))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = count.filter(|&n| n >= 1000) {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stats line counting the malformed frames; last: {last:?}\n{}",
            f.diagnostics()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    eprintln!("malformed frames counted: {malformed}");
}

/// Proves the network, servers, decapsulation and assertions with `stub-lb` in the balancer's
/// place. Not a test of Sidestep: run it by hand after changing `tests::netns`
/// (`cargo test -p tests --test e2e_datapath -- --ignored stub`).
#[test]
#[ignore = "proves the test network with a stand-in balancer; run by hand"]
fn stub_proves_the_network() {
    let f = Fixture::stub(tests::helper_bins!()).expect("set up the stub fixture");
    check_ping_balancer(&f);
    check_l2_http_spreads(&f);
    check_l3_http(&f);
    check_udp(&f);
    check_all_ports(&f);
    check_nothing_else_forwarded(&f);
    check_survives_malformed_frames(&f);
    check_big_transfer(&f, VIP_WEB);
    check_big_transfer(&f, VIP_WEB3);
}
