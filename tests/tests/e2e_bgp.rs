//! End-to-end scale-out tests (issue 16): two Sidestep images side by side on the balancer
//! segment announce the VIP by BGP to BIRD 2 on the router `rt`, which installs it in its
//! kernel table with both balancers as next hops (`merge paths`) and spreads flows over them by
//! the layer-4 multipath hash; a client (`wan`, 10.99.0.10) sits behind the router, as an
//! Internet client would. GoBGP, then FRR's bgpd, in the segment client's namespace, peer with
//! balancer A as independent implementations.
//!
//! ```text
//!   wan 10.99.0.10 --- rt (10.99.0.1 | 10.77.0.1) --- br0 --+-- tap0: balancer A 10.77.0.2
//!                      BIRD, AS 65000                       +-- tap1: balancer B 10.77.0.3
//!                                                           +-- be1, be2 (dsr-l2)
//!                                                           +-- client 10.77.0.10: GoBGP, then
//!                                                               FRR, AS 65001
//! ```
//!
//! Both images run the same services (a maglev dsr-l2 VIP over be1 and be2, health checks,
//! management open to the client for `/metrics` and signed pushes, `[bgp]` AS 65010 with a 3 s
//! hold time); only the interface address differs, and A also peers with the client's address.
//!
//! The pieces `qemu/demo` shows too (the configs, BIRD, the router's table, the balancers'
//! metrics, the download whose balancer is killed) are in `tests::scaleout`.
//!
//! Both also announce the IPv6 VIP `web6` (fd00:77::100/128) over multiprotocol BGP on the same
//! sessions, next hop their `address6` (fd00:77::2, ::3; the router is fd00:77::1): BIRD's
//! `ipv6` channel must learn it from both, lose B's with the drain and the dead balancer's with
//! the kill and with every backend down, as the IPv4 route does; and the wan client's IPv6
//! connections, through the router's kernel route (BIRD's `kernel6` export, ECMP), reach both.
//!
//! One boot of both images serves every check (CI time): they run in order in one test, the
//! balancer kill last.

use boot::control::config::Config;
use boot::signing::SigningKey;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::fixture::{backend_of, Balancers};
use tests::netns::{DemoNet, Host, BALANCER, BALANCER2, BIG_FILE_LEN, GATEWAY, VIP_WEB};
use tests::qemu::Image;
use tests::scaleout::{
    self, BalancerConfig, ADDRS, ADDRS6, HOLD_TIME, LB_AS, MGMT_PORT, ROUTE_CHANGE, VIP_WEB6,
};

/// The AS of GoBGP and FRR on the client.
const CLIENT_AS: u32 = 65001;
/// GoBGP's gRPC API, on the loopback of the client's namespace.
const GOBGP_API_PORT: &str = "50051";

fn client() -> Ipv4Addr {
    Host::Client.addr().expect("has one")
}

/// Fails the test with `e` and every console and log.
fn fail(b: &Balancers, what: &str, e: impl std::fmt::Display) -> ! {
    panic!("{what}: {e}\n{}", b.diagnostics())
}

/// The run's key, configs and images: target/test-images/bgp-setup/, replaced each run.
struct Setup {
    key: SigningKey,
    configs: [Config; 2],
    images: [Image; 2],
}

fn setup() -> Setup {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-images/bgp-setup");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the config directory");
    let key = SigningKey::generate();
    let pubkey = key.public_base64();
    let build = |name: &str, address: Ipv4Addr, gobgp: bool| {
        let text = scaleout::config_text(&BalancerConfig {
            address,
            written_by: "tests/tests/e2e_bgp.rs",
            pubkey: Some(&pubkey),
            extra_peer: gobgp.then_some((client(), CLIENT_AS)),
            dsr_l3: false,
        });
        let path: PathBuf = dir.join(format!("{name}.toml"));
        std::fs::write(&path, &text).expect("write a config");
        let config =
            boot::config_file::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        let image = Image::build(&path).unwrap_or_else(|e| panic!("build {name}: {e}"));
        (config, image)
    };
    let (ca, ia) = build("bgp-a", BALANCER, true);
    let (cb, ib) = build("bgp-b", BALANCER2, false);
    Setup {
        key,
        configs: [ca, cb],
        images: [ia, ib],
    }
}

/// GoBGP in the segment client's namespace, peering with balancer A.
fn start_gobgp(net: &DemoNet) -> tests::netns::Result<()> {
    let conf = net.dir().join("gobgpd.toml");
    let client = client();
    let text = format!(
        r#"# Written by tests/tests/e2e_bgp.rs: a second BGP implementation peering with A.
[global.config]
  as = {CLIENT_AS}
  router-id = "{client}"
  port = 179

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{BALANCER}"
    peer-as = {LB_AS}
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
    connect-retry = 1
"#
    );
    std::fs::write(&conf, text).expect("write gobgpd.toml");
    let conf = conf.to_string_lossy().into_owned();
    let api = format!("127.0.0.1:{GOBGP_API_PORT}");
    net.spawn(
        Host::Client,
        "gobgpd",
        &[
            "gobgpd",
            "-f",
            &conf,
            "-t",
            "toml",
            "--api-hosts",
            &api,
            "--pprof-disable",
            "-p",
        ],
    )?;
    Ok(())
}

fn birdc(b: &Balancers, args: &[&str]) -> String {
    scaleout::birdc(&b.net, args).unwrap_or_else(|e| fail(b, &format!("birdc {args:?}"), e))
}

fn gobgp(b: &Balancers, args: &[&str]) -> String {
    let mut argv = vec!["gobgp", "-u", "127.0.0.1", "-p", GOBGP_API_PORT];
    argv.extend_from_slice(args);
    b.net
        .run_ok(Host::Client, &argv)
        .unwrap_or_else(|e| panic!("gobgp {args:?}: {e}\n{}", b.diagnostics()))
}

/// The next hops of the router's kernel route to the VIP (none without a route).
fn next_hops(b: &Balancers) -> Vec<Ipv4Addr> {
    scaleout::next_hops(&b.net, VIP_WEB).unwrap_or_else(|e| fail(b, "the router's route", e))
}

/// Waits until the router's route to the VIP goes over exactly `hops`; returns how long.
fn wait_for_hops(b: &Balancers, what: &str, hops: &[Ipv4Addr]) -> Duration {
    scaleout::wait_for_hops(&b.net, what, VIP_WEB, hops, ROUTE_CHANGE)
        .unwrap_or_else(|e| fail(b, what, e))
}

/// Waits until BIRD's routes to the IPv6 VIP go over exactly `hops`; returns how long.
fn wait_for_hops6(b: &Balancers, what: &str, hops: &[Ipv6Addr]) -> Duration {
    scaleout::wait_for_hops6(&b.net, what, VIP_WEB6, hops, ROUTE_CHANGE)
        .unwrap_or_else(|e| fail(b, what, e))
}

/// One sample of balancer `i`'s metrics, by its full name with labels.
fn metric(b: &Balancers, i: usize, sample: &str) -> u64 {
    scaleout::metric(&b.net, i, sample).unwrap_or_else(|e| fail(b, "metrics", e))
}

/// Push `config` (signed) to balancer `i` from the client.
fn push(b: &Balancers, key: &SigningKey, i: usize, config: &Config) {
    let to = format!("{}:{MGMT_PORT}", ADDRS[i]);
    let signed = key.sign(config);
    let response = b
        .net
        .in_netns(Host::Client, || boot::client::push(&to, &signed))
        .expect("enter the client's namespace")
        .unwrap_or_else(|e| panic!("push to {to}: {e}\n{}", b.diagnostics()));
    assert_eq!(
        response.status, 200,
        "push of v{} to {to}: {}",
        config.version, response.body
    );
}

/// Both balancers' sessions with BIRD are Established, as BIRD and the balancers say.
fn check_sessions_established(b: &Balancers) {
    b.eventually(
        "BIRD has both sessions Established",
        Duration::from_secs(30),
        || {
            let up = scaleout::bird_sessions_established(&b.net)
                .unwrap_or_else(|e| fail(b, "BIRD's sessions", e));
            (up == 2).then_some(())
        },
    );
    for (i, addr) in ADDRS.iter().enumerate() {
        let peer = format!("sidestep_bgp_session_up{{peer=\"{GATEWAY}\"}}");
        assert_eq!(metric(b, i, &peer), 1, "balancer {i}: {peer}");
        let status = b
            .net
            .curl(10, &[&format!("http://{addr}:{MGMT_PORT}/status")])
            .expect("GET /status");
        let parsed = boot::status::Status::parse(&status)
            .unwrap_or_else(|e| panic!("balancer {i}'s /status: {e}\n{status}"));
        let rt = parsed
            .bgp
            .as_ref()
            .and_then(|bgp| bgp.peers.iter().find(|p| p.address == GATEWAY.to_string()))
            .unwrap_or_else(|| panic!("balancer {i}: no BGP peer {GATEWAY} in {status}"));
        assert_eq!(rt.state, "Established", "balancer {i}: {status}");
        assert!(rt.uptime_ms.is_some(), "balancer {i}: {status}");
    }
    // BFD beside each session: up in BIRD and on both balancers.
    b.eventually(
        "BIRD has both BFD sessions up",
        Duration::from_secs(30),
        || {
            let out = scaleout::birdc(&b.net, &["show", "bfd", "sessions"])
                .unwrap_or_else(|e| fail(b, "BIRD's BFD sessions", e));
            let up = ADDRS
                .iter()
                .filter(|a| {
                    out.lines()
                        .any(|l| l.starts_with(&a.to_string()) && l.contains(" Up "))
                })
                .count();
            (up == 2).then_some(())
        },
    );
    for i in 0..ADDRS.len() {
        let peer = format!("sidestep_bfd_session_up{{peer=\"{GATEWAY}\"}}");
        b.eventually(
            "the balancer's BFD session is up",
            Duration::from_secs(10),
            || (metric(b, i, &peer) == 1).then_some(()),
        );
    }
}

/// Many new connections from the wan client: every one answered by a backend, and the
/// balancers in `carrying` carried some, the others none.
fn check_connections_over(b: &Balancers, carrying: &[usize]) {
    connections_over(b, "web", &format!("http://{VIP_WEB}/"), carrying);
}

/// 40 new connections from the wan client to `url` (VIP `vip`): every one answered by a
/// backend, and the balancers in `carrying` carried some (its `/metrics`), the others none.
fn connections_over(b: &Balancers, vip: &str, url: &str, carrying: &[usize]) {
    let sample = format!("sidestep_vip_packets_total{{vip=\"{vip}\"}}");
    let packets = |i| metric(b, i, &sample);
    let before = [packets(0), packets(1)];
    for n in 0..40 {
        let body = b
            .net
            .curl_on(Host::Wan, 10, &[url])
            .unwrap_or_else(|e| panic!("connection {n} to {url}: {e}\n{}", b.diagnostics()));
        assert!(
            matches!(backend_of(&body), Some("be1" | "be2")),
            "connection {n} to {url}: not a backend's page: {body:?}"
        );
    }
    let carried = [packets(0) - before[0], packets(1) - before[1]];
    for (i, n) in carried.iter().enumerate() {
        assert_eq!(
            *n > 0,
            carrying.contains(&i),
            "{vip}'s packets per balancer over 40 connections: {carried:?} (expected traffic on {carrying:?})"
        );
    }
}

/// Waits (up to 30 s) until a request from the wan client to `url` is answered by a backend.
fn wait_for_a_backend(b: &Balancers, what: &str, url: &str) {
    b.eventually(what, Duration::from_secs(30), || {
        let body = b.net.curl_on(Host::Wan, 3, &[url]).ok()?;
        backend_of(&body).map(drop)
    });
}

/// The IPv6 VIP's /128 is in BIRD's IPv6 table from both balancers (MP-BGP over the IPv4
/// sessions), next hops their `address6`, AS path [65010]; both count it announced in
/// `/metrics` and list it in `/status`.
fn check_ipv6_vip_announced(b: &Balancers) {
    let took = wait_for_hops6(b, "the IPv6 VIP's route from both balancers", &ADDRS6);
    eprintln!("e2e_bgp: the IPv6 VIP over both balancers (waited {took:?})");
    let bird = birdc(b, &["show", "route", "for", &VIP_WEB6.to_string(), "all"]);
    assert!(
        bird.contains(&format!("{VIP_WEB6}/128"))
            && bird.contains(&format!("BGP.as_path: {LB_AS}"))
            && ADDRS6
                .iter()
                .all(|a| bird.contains(&format!("BGP.next_hop: {a}"))),
        "BIRD's routes for the IPv6 VIP: {bird}"
    );
    for (i, addr) in ADDRS.iter().enumerate() {
        assert_eq!(
            metric(b, i, "sidestep_bgp_announced{vip=\"web6\"}"),
            1,
            "balancer {i}"
        );
        let status = b
            .net
            .curl(10, &[&format!("http://{addr}:{MGMT_PORT}/status")])
            .expect("GET /status");
        let parsed = boot::status::Status::parse(&status)
            .unwrap_or_else(|e| panic!("balancer {i}'s /status: {e}\n{status}"));
        assert!(
            parsed
                .bgp
                .is_some_and(|bgp| bgp.announced.contains(&VIP_WEB6.to_string())),
            "balancer {i} announces {VIP_WEB6}: {status}"
        );
    }
}

/// GoBGP's session with A is Established and it holds the same /32 BIRD got from A.
fn check_gobgp_interop(b: &Balancers) {
    b.eventually(
        "GoBGP's session with balancer A is Established",
        Duration::from_secs(30),
        || {
            let out = gobgp(b, &["neighbor"]);
            out.lines()
                .any(|l| l.contains(&BALANCER.to_string()) && l.contains("Establ"))
                .then_some(())
        },
    );
    let route = b.eventually(
        "GoBGP holds the VIP's route from A",
        Duration::from_secs(10),
        || {
            let rib = gobgp(b, &["global", "rib", "-a", "ipv4"]);
            rib.lines()
                .find(|l| l.contains(&format!("{VIP_WEB}/32")))
                .map(str::to_owned)
        },
    );
    assert!(
        route.contains(&BALANCER.to_string()) && route.contains(&LB_AS.to_string()),
        "GoBGP's route: next hop A, AS path [{LB_AS}]: {route}"
    );
    let bird = birdc(b, &["show", "route", "for", &VIP_WEB.to_string(), "all"]);
    assert!(
        bird.contains(&format!("{VIP_WEB}/32")) && bird.contains(&format!("BGP.as_path: {LB_AS}")),
        "BIRD's route for the VIP: {bird}"
    );
    let rib = gobgp(b, &["global", "rib", "-a", "ipv4"]);
    assert_eq!(
        rib.matches("/32").count(),
        1,
        "GoBGP got exactly the one VIP route: {rib}"
    );
    let peer = format!("sidestep_bgp_session_up{{peer=\"{}\"}}", client());
    assert_eq!(metric(b, 0, &peer), 1, "balancer A: {peer}");
}

/// A peer that sends a malformed message gets the NOTIFICATION RFC 4271 names for it (here a
/// message of unknown type: Message Header Error / Bad Message Type), and nothing else is
/// disturbed: the other session stays Established and the VIP is still served. GoBGP is
/// stopped first, so that its address may connect again.
fn check_malformed_message_gets_notification(b: &Balancers) {
    b.net.stop("gobgpd").expect("stop gobgpd");
    let script = format!(
        r#"
import socket, struct, sys, time
def messages(s):
    buf = b""
    while True:
        while len(buf) >= 19:
            n = struct.unpack("!H", buf[16:18])[0]
            if len(buf) < n:
                break
            yield buf[18], buf[19:n]
            buf = buf[n:]
        chunk = s.recv(4096)
        if not chunk:
            return
        buf += chunk
deadline = time.time() + 30
while time.time() < deadline:
    try:
        s = socket.create_connection(("{BALANCER}", 179), timeout=5)
        got = messages(s)
        kind, _ = next(got)
    except (OSError, StopIteration):
        time.sleep(0.5)
        continue
    if kind != 1:
        sys.exit("the first message was of type %d, not an OPEN" % kind)
    s.sendall(bytes([255]) * 16 + struct.pack("!HB", 19, 9))
    for kind, body in got:
        if kind == 3:
            print("NOTIFICATION %d/%d" % (body[0], body[1]))
            sys.exit(0)
    sys.exit("closed without a NOTIFICATION")
sys.exit("no connection to port 179 was taken")
"#
    );
    let out = b
        .net
        .run_ok(Host::Client, &["python3", "-c", &script])
        .unwrap_or_else(|e| panic!("a malformed message to A: {e}\n{}", b.diagnostics()));
    assert_eq!(
        out.trim(),
        "NOTIFICATION 1/3",
        "A's answer to a message of type 9"
    );
    let peer = format!("sidestep_bgp_session_up{{peer=\"{GATEWAY}\"}}");
    assert_eq!(metric(b, 0, &peer), 1, "A's session with the router");
    let serial = b.vm(0).map(|vm| vm.serial_log()).unwrap_or_default();
    assert!(
        serial.contains(&format!("bgp: peer {} ", client()))
            && serial.contains("sent NOTIFICATION 1/3"),
        "A logs the session's end with the NOTIFICATION it sent:\n{serial}"
    );
    check_connections_over(b, &[0, 1]);
}

/// FRR's bgpd (without zebra: it installs nothing) in the client's namespace, in GoBGP's place:
/// its session with A comes up and it receives the same /32 with next hop A and AS path
/// [65010]. bgpd drops its privileges to the `frr` user, so its directory is open to it.
fn check_frr_interop(b: &Balancers) {
    let dir = b.net.dir().join("frr");
    std::fs::create_dir_all(&dir).expect("create frr's directory");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("open frr's directory to bgpd");
    let client = client();
    let conf = dir.join("bgpd.conf");
    std::fs::write(
        &conf,
        format!(
            "! Written by tests/tests/e2e_bgp.rs: FRR peering with balancer A.\n\
             router bgp {CLIENT_AS}\n \
             bgp router-id {client}\n \
             no bgp ebgp-requires-policy\n \
             neighbor {BALANCER} remote-as {LB_AS}\n \
             neighbor {BALANCER} timers 3 9\n \
             neighbor {BALANCER} timers connect 1\n"
        ),
    )
    .expect("write bgpd.conf");
    let dir_arg = dir.to_string_lossy().into_owned();
    let conf_arg = conf.to_string_lossy().into_owned();
    let pid_arg = dir.join("bgpd.pid").to_string_lossy().into_owned();
    b.net
        .spawn(
            Host::Client,
            "bgpd",
            &[
                "/usr/lib/frr/bgpd",
                "-Z",
                "-f",
                &conf_arg,
                "-i",
                &pid_arg,
                "--vty_socket",
                &dir_arg,
                "-u",
                "frr",
                "-g",
                "frr",
            ],
        )
        .expect("start FRR's bgpd");
    let vtysh = |command: &str| {
        b.net
            .run(
                Host::Client,
                &[
                    "vtysh",
                    "--vty_socket",
                    &dir_arg,
                    "-d",
                    "bgpd",
                    "-c",
                    command,
                ],
            )
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    let route = b.eventually(
        "FRR's session with A is up and holds the VIP's route",
        Duration::from_secs(40),
        || {
            vtysh("show bgp ipv4 unicast")
                .lines()
                .find(|l| l.contains(&format!("{VIP_WEB}/32")))
                .map(str::to_owned)
        },
    );
    assert!(
        route.contains(&BALANCER.to_string()) && route.contains(&format!("{LB_AS} i")),
        "FRR's route: next hop A, AS path [{LB_AS}], origin IGP: {route}"
    );
    let summary = vtysh("show bgp summary");
    let peer = format!("sidestep_bgp_session_up{{peer=\"{client}\"}}");
    assert_eq!(metric(b, 0, &peer), 1, "balancer A: {peer}\n{summary}");
    b.net.stop("bgpd").expect("stop FRR's bgpd");
}

/// Every backend down (their servers stopped): both balancers withdraw the VIP, and the IPv6
/// VIP (checked over IPv6); back up, both announce them again.
fn check_withdrawn_when_every_backend_is_down(b: &Balancers) {
    b.net.stop_http(Host::Be1).expect("stop be1");
    b.net.stop_http(Host::Be2).expect("stop be2");
    // Two failed checks at 500 ms, then the withdrawal.
    let took = wait_for_hops(b, "the VIP withdrawn with every backend down", &[]);
    wait_for_hops6(b, "the IPv6 VIP withdrawn with every backend down", &[]);
    let bird = birdc(b, &["show", "route", "for", &VIP_WEB.to_string()]);
    assert!(
        !bird.contains(&format!("{VIP_WEB}/32")),
        "BIRD still has a route: {bird}"
    );
    for i in 0..2 {
        assert_eq!(
            metric(b, i, "sidestep_bgp_announced{vip=\"web\"}"),
            0,
            "balancer {i}"
        );
    }
    eprintln!("e2e_bgp: withdrawn {took:?} after the backends stopped");
    b.net.start_http(Host::Be1).expect("start be1");
    b.net.start_http(Host::Be2).expect("start be2");
    wait_for_hops(b, "the VIP announced again by both", &ADDRS);
    wait_for_hops6(b, "the IPv6 VIP announced again by both", &ADDRS6);
}

/// `announce = false` pushed to B: its route is withdrawn (within a second, plus slack) while
/// its session stays up, and new connections all go to A; `announce = true` brings it back.
fn check_drain_by_push(b: &Balancers, setup: &Setup) {
    let mut drained = setup.configs[1].clone();
    drained.version = 2;
    drained.bgp.as_mut().expect("has [bgp]").announce = false;
    let pushed = Instant::now();
    push(b, &setup.key, 1, &drained);
    wait_for_hops(b, "B's route withdrawn after announce = false", &[BALANCER]);
    let took = pushed.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the withdrawal took {took:?}"
    );
    eprintln!("e2e_bgp: B withdrawn {took:?} after the push");
    assert_eq!(metric(b, 1, "sidestep_bgp_announced{vip=\"web\"}"), 0);
    // The IPv6 VIP goes with it: its /128 only over A.
    wait_for_hops6(
        b,
        "B's IPv6 route withdrawn after announce = false",
        &ADDRS6[..1],
    );
    assert_eq!(metric(b, 1, "sidestep_bgp_announced{vip=\"web6\"}"), 0);
    let peer = format!("sidestep_bgp_session_up{{peer=\"{GATEWAY}\"}}");
    assert_eq!(metric(b, 1, &peer), 1, "B's session stays up");
    check_connections_over(b, &[0]);

    let mut back = drained;
    back.version = 3;
    back.bgp.as_mut().expect("has [bgp]").announce = true;
    push(b, &setup.key, 1, &back);
    wait_for_hops(b, "B announces again after announce = true", &ADDRS);
    wait_for_hops6(b, "B announces the IPv6 VIP again", &ADDRS6);
}

/// A slow download from the wan client; the balancer carrying it is killed mid-way; BFD drops
/// its route within [`scaleout::BFD_DETECTION`] (the hold time is far longer); the download completes byte-exact through the other balancer,
/// which sends the flow's packets to the same backend by the VIP's consistent hash.
fn check_a_download_survives_its_balancer(b: &mut Balancers) {
    let report = scaleout::download_through_a_kill(b, VIP_WEB)
        .unwrap_or_else(|e| fail(b, "a download through a balancer's death", e));
    eprintln!(
        "e2e_bgp: the dead balancer's route was gone {:?} after the kill",
        report.route_gone_after
    );
    assert!(
        report.route_gone_after < scaleout::BFD_DETECTION,
        "the route went {:?} after the kill: BFD did not detect it (hold time {HOLD_TIME} s)",
        report.route_gone_after
    );
    // The dead balancer's IPv6 route went with its session.
    let other = 1 - report.carrier;
    wait_for_hops6(
        b,
        "the dead balancer's IPv6 route withdrawn",
        &ADDRS6[other..=other],
    );
    assert_eq!(report.received, BIG_FILE_LEN, "the download's length");
    assert!(report.intact, "the download differs from the file");
    // A quarter of the file or more must come through the other balancer.
    assert!(
        report.size_at_kill < BIG_FILE_LEN as u64 / 4 * 3,
        "the balancer died too late to prove anything ({} bytes were there)",
        report.size_at_kill
    );
    eprintln!(
        "e2e_bgp: balancer {} killed at {} bytes, {:?} into the download ({:?} measuring which \
         balancer carried it); the download took {:?}",
        report.carrier, report.size_at_kill, report.killed_after, report.measured, report.took
    );
}

#[test]
fn two_balancers_announce_a_vip_to_bird_and_a_flow_survives_losing_its_balancer() {
    let setup = setup();
    let places = scaleout::places(&setup.images);
    let started = Instant::now();
    let mut balancers = Balancers::boot(tests::helper_bins!(), &places, |net| {
        scaleout::start_bird(net)?;
        start_gobgp(net)
    })
    .unwrap_or_else(|e| panic!("boot two balancers: {e}"));
    eprintln!(
        "e2e_bgp: both balancers ready after {:?}",
        started.elapsed()
    );
    let b = &balancers;
    check_sessions_established(b);
    eprintln!(
        "e2e_bgp: both sessions Established after {:?}",
        started.elapsed()
    );
    // The health checks raise both backends on both balancers, which then announce the VIP.
    b.eventually(
        "the VIP's route over both balancers",
        Duration::from_secs(30),
        || (next_hops(b) == ADDRS).then_some(()),
    );
    let url = format!("http://{VIP_WEB}/");
    wait_for_a_backend(b, "both balancers answer on the VIP", &url);
    for i in 0..2 {
        assert_eq!(
            metric(b, i, "sidestep_bgp_announced{vip=\"web\"}"),
            1,
            "balancer {i}"
        );
    }
    check_connections_over(b, &[0, 1]);
    check_ipv6_vip_announced(b);
    // IPv6 through the router's kernel ECMP route (BIRD's kernel6 export) to both balancers.
    let url6 = format!("http://[{VIP_WEB6}]/");
    wait_for_a_backend(b, "the router's kernel routes the IPv6 VIP", &url6);
    connections_over(b, "web6", &url6, &[0, 1]);
    check_gobgp_interop(b);
    check_malformed_message_gets_notification(b);
    check_frr_interop(b);
    check_withdrawn_when_every_backend_is_down(b);
    check_drain_by_push(b, &setup);
    check_a_download_survives_its_balancer(&mut balancers);
}
