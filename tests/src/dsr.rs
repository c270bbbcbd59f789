//! The datapath checks of the end-to-end tests, as functions over a [`Fixture`], so that the
//! same assertions run on one CPU (`tests/tests/e2e_datapath.rs`), on several CPUs with a NIC
//! queue each (`tests/tests/e2e_control.rs`), and against the stand-in `stub-lb`.
//!
//! Every check that sends traffic also captures the balancer's TAP and asserts that no packet
//! with a VIP as its source crossed it: in DSR, responses never pass the balancer.

use crate::fixture::{backend_of, sha256_of, Fixture};
use crate::netns::{
    self, Host, BALANCER, BALANCER_MAC, BIG_FILE_LEN, BIG_FILE_PATH, UDP_PORT, UNUSED, VIPS,
    VIP_ANY, VIP_DNS, VIP_WEB, VIP_WEB3,
};
use std::net::Ipv4Addr;

/// Runs `traffic` while capturing the balancer's tap, then asserts no packet from a VIP crossed
/// it (a response passing the balancer means DSR is broken).
pub fn no_response_crosses_balancer(f: &Fixture, traffic: impl FnOnce()) {
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

pub fn assert_none(what: &str, lines: &[String], why: &str) {
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

pub fn check_l2_http_spreads(f: &Fixture) {
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

pub fn check_l3_http(f: &Fixture) {
    no_response_crosses_balancer(f, || {
        let seen = f.backends_answering(VIP_WEB3, 80, 10);
        assert!(seen.iter().all(|s| s == "be3"), "{seen:?}");
    });
}

/// Downloads and uploads the big file through `vip` and checks both byte for byte.
pub fn check_big_transfer(f: &Fixture, vip: Ipv4Addr) {
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

pub fn check_udp(f: &Fixture) {
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

pub fn check_all_ports(f: &Fixture) {
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
pub fn check_ping_balancer(f: &Fixture) {
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
pub fn check_nothing_else_forwarded(f: &Fixture) {
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

pub fn check_survives_malformed_frames(f: &Fixture) {
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
