//! End-to-end tests of the control plane: the image's management API (`/metrics`, `/status`,
//! `PUT /config`), its health checks and its boot-time fetch, on the namespace network of
//! `tests::netns` with real Linux clients and backends (set up by `tests::fixture`, as for the
//! datapath tests).
//!
//! The config is written at run time, because it must carry the public key of a key pair made
//! for this run (by the same code as `sidestep keygen`): the datapath config of
//! `tests/configs/e2e.toml`, plus a management port that the client and the router may reach
//! and be1 may not, plus health checks on the L2 web VIP. Pushes and status reads go through the
//! `sidestep` tool's own library (`boot::client`), run on a thread inside the client's network
//! namespace; `curl` does the rest, as an operator's scripts would.
//!
//! One test floods the health-checked VIP (hping3, spoofed sources, full rate) to show that
//! the balancer's own overload takes no live backend down and breaks no established download.
//!
//! Tests run one at a time (each boots its own balancer under TCG) and every namespace, tap and
//! QEMU process is owned by a guard, so a failing test cleans up too.

use boot::client::{ClientError, Response};
use boot::control::config::{Config, VipPort};
use boot::signing::SigningKey;
use boot::status::Status;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tests::dsr::{
    check_all_ports, check_big_transfer, check_l2_http_spreads, check_l3_http,
    check_nothing_else_forwarded, check_ping_balancer, check_survives_malformed_frames, check_udp,
};
use tests::fixture::{self, Fixture};
use tests::netns::{
    self, DemoNet, Host, Topology, BALANCER, BALANCER2, BALANCER_MAC, BIG_FILE_LEN, BIG_FILE_PATH,
    GATEWAY, VIP_WEB, VIP_WEB3,
};
use tests::qemu::{Image, NicModel};

/// The management port of the test config.
const MGMT_PORT: u16 = 9100;
/// Health checks of the web VIP: every 500 ms, down after 2 failures, up after 2 successes.
const HEALTH_INTERVAL_MS: u64 = 500;
const HEALTH_FALL: u64 = 2;
const HEALTH_RISE: u64 = 2;
/// Extra time a health transition may take under TCG (an emulated guest's timers are late).
const HEALTH_SLACK: Duration = Duration::from_secs(5);
/// Where the fetching image looks for its config: the router, port 8080.
const FETCH_PORT: u16 = 8080;
const FETCH_PATH: &str = "/sidestep.cfg";

/// The management API's address as `sidestep push --to` / `stats --from` take it.
fn mgmt_addr() -> String {
    format!("{BALANCER}:{MGMT_PORT}")
}

/// The config file of this test run: the datapath services plus management and health checks.
/// `version` and `fetch` vary between the configs the tests need.
fn config_text(pubkey: &str, version: u64, fetch: Option<&str>, health: bool) -> String {
    let datapath =
        std::fs::read_to_string(fixture::e2e_config()).expect("read tests/configs/e2e.toml");
    let fetch = fetch
        .map(|url| format!("fetch = \"{url}\"\n"))
        .unwrap_or_default();
    let management = format!(
        "[management]\nport = {MGMT_PORT}\nallow = [\"{}/32\", \"{GATEWAY}/32\"]\npubkey = \"{pubkey}\"\n{fetch}\n",
        Host::Client.addr().expect("has one")
    );
    let checked = health;
    let health = if checked {
        format!(
            "[vip.health]\nkind = \"tcp\"\nport = 80\ninterval_ms = {HEALTH_INTERVAL_MS}\ntimeout_ms = 300\nrise = {HEALTH_RISE}\nfall = {HEALTH_FALL}\n\n"
        )
    } else {
        String::new()
    };
    // Management goes before the first [[vip]]; health checks into the first VIP (web, dsr-l2),
    // before its first backend.
    let text = datapath
        .replacen("version = 1", &format!("version = {version}"), 1)
        .replacen("[[vip]]", &format!("{management}[[vip]]"), 1)
        .replacen("[[vip.backend]]", &format!("{health}[[vip.backend]]"), 1);
    assert!(
        text.contains("[management]")
            && (text.matches("[vip.health]").count() > datapath.matches("[vip.health]").count())
                == checked,
        "tests/configs/e2e.toml changed shape"
    );
    text
}

/// What every test of one run shares: the key pair, the configs and the images built from them.
struct Setup {
    dir: PathBuf,
    key: SigningKey,
    /// The config baked into `image` (v1, no fetch).
    config: Config,
    image: Image,
    /// The same, but fetching its config from the router at boot.
    fetch_image: Image,
    /// The config of `image` without health checks (for the tests on several CPUs, whose
    /// assertions are about the datapath), and the image of it.
    plain_config: Config,
    plain_image: Image,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        // Beside the images (a static is never dropped, so nothing would remove a temporary
        // directory); each run starts it afresh.
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-images/control-setup");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's directory");
        // As `sidestep keygen --out DIR/operator.key` does.
        let key = SigningKey::generate();
        key.save(&dir.join("operator.key"), false)
            .expect("write the key");
        let key = SigningKey::load(&dir.join("operator.key")).expect("read the key back");
        let pubkey = key.public_base64();

        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, &text).expect("write a config");
            let config =
                boot::config_file::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            (path, config)
        };
        let (path, config) = write("e2e-control.toml", config_text(&pubkey, 1, None, true));
        let (plain_path, plain_config) =
            write("e2e-cores.toml", config_text(&pubkey, 1, None, false));
        let url = format!("http://{GATEWAY}:{FETCH_PORT}{FETCH_PATH}");
        let (fetch_path, _) = write(
            "e2e-control-fetch.toml",
            config_text(&pubkey, 1, Some(&url), true),
        );
        let image = Image::build(&path).expect("build the control image");
        let fetch_image = Image::build(&fetch_path).expect("build the fetching image");
        let plain_image = Image::build(&plain_path).expect("build the image without health checks");
        Setup {
            dir,
            key,
            config,
            image,
            fetch_image,
            plain_config,
            plain_image,
        }
    })
}

/// The network with `image` booted in the balancer's place (`before_boot` run on the network
/// first, e.g. to start a config server), once its management API answers.
fn boot(image: &Image, before_boot: impl FnOnce(&DemoNet) -> netns::Result<()>) -> Fixture {
    let f =
        Fixture::boot(tests::helper_bins!(), image, before_boot).expect("boot the control fixture");
    until_managed(f)
}

/// `f` once its management API answers.
fn until_managed(f: Fixture) -> Fixture {
    // The management server is up soon after `ready`; wait for its first answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = f.try_status() {
        if Instant::now() > deadline {
            let curl = f.net.curl(5, &[&format!("http://{}/status", mgmt_addr())]);
            panic!(
                "the management API does not answer: {e}\ncurl from the client: {curl:?}\n{}",
                f.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f
}

/// The management API of the fixture's image, through the `sidestep` tool's library or curl,
/// from the client unless said otherwise.
trait Management {
    /// `GET /status` with the `sidestep` library.
    fn try_status(&self) -> Result<Status, String>;
    /// The same; panics with the diagnostics on failure.
    fn status(&self) -> Status;
    /// `GET /metrics` with curl.
    fn metrics(&self) -> String;
    /// `PUT /config` with the `sidestep` library from `host`.
    fn push_from(&self, host: Host, signed: &[u8]) -> Result<Response, ClientError>;
    /// `PUT /config` from the client; panics with the diagnostics if no response came.
    fn push(&self, signed: &[u8]) -> Response;
}

impl Management for Fixture {
    fn try_status(&self) -> Result<Status, String> {
        let json = self
            .net
            .in_netns(Host::Client, || boot::client::status(&mgmt_addr()))
            .map_err(|e| e.to_string())??;
        Status::parse(&json)
    }

    fn status(&self) -> Status {
        self.try_status()
            .unwrap_or_else(|e| panic!("GET /status: {e}\n{}", self.diagnostics()))
    }

    fn metrics(&self) -> String {
        self.net
            .curl(10, &[&format!("http://{}/metrics", mgmt_addr())])
            .unwrap_or_else(|e| panic!("GET /metrics: {e}\n{}", self.diagnostics()))
    }

    fn push_from(&self, host: Host, signed: &[u8]) -> Result<Response, ClientError> {
        self.net
            .in_netns(host, || boot::client::push(&mgmt_addr(), signed))
            .expect("join a namespace")
    }

    fn push(&self, signed: &[u8]) -> Response {
        self.push_from(Host::Client, signed)
            .unwrap_or_else(|e| panic!("push: {e}\n{}", self.diagnostics()))
    }
}

/// The value of the sample `series` (name and labels exactly as printed) in Prometheus text.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no sample {series} in /metrics:\n{text}"))
}

fn web(status: &Status) -> &boot::status::VipStatus {
    status
        .vip("web")
        .unwrap_or_else(|| panic!("no VIP web in /status: {status:?}"))
}

fn backend_up(status: &Status, name: &str) -> bool {
    web(status)
        .backend(name)
        .unwrap_or_else(|| panic!("no backend {name} of web: {status:?}"))
        .up
}

/// The IP length of each packet of a `tcpdump -e` listing (the frame length less 14).
fn ip_bytes(lines: &[String]) -> u64 {
    lines
        .iter()
        .map(|l| {
            let frame = l
                .split(", length ")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no frame length in {l:?}"));
            frame - 14
        })
        .sum()
}

#[test]
fn counters_match_the_traffic() {
    let f = boot(&setup().image, |_| Ok(()));
    let before = f.status();
    let metrics_before = f.metrics();
    let series = "sidestep_vip_packets_total{vip=\"web\"}";

    // Count exactly what reaches the balancer for the web VIP. In DSR only client -> VIP
    // packets pass it; the responses go straight back from the backends. The tap also carries
    // the balancer's forwarded copies (to a backend's MAC): only frames to its own MAC count.
    let filter = format!("ether dst {BALANCER_MAC} and dst host {VIP_WEB} and tcp dst port 80");
    let cap = f
        .net
        .capture(Host::Lb, "tap0", &filter)
        .expect("capture the tap");
    let requests = 10;
    let seen = f.backends_answering(VIP_WEB, 80, requests);
    let captured = cap.finish().expect("read the capture");
    let sent = captured.lines.len() as u64;
    let sent_bytes = ip_bytes(&captured.lines);
    assert!(
        sent >= 3 * requests as u64,
        "the capture saw only {sent} packets for {requests} connections"
    );
    assert!(seen.iter().all(|b| b == "be1" || b == "be2"), "{seen:?}");

    let mut last = None;
    let after = f.eventually(
        "the counters catch up with the capture",
        Duration::from_secs(5),
        || {
            let s = f.status();
            let grown = web(&s).packets - web(&before).packets;
            if grown >= sent {
                return Some(s);
            }
            if last != Some(grown) {
                eprintln!(
                    "/status web packets grew by {grown}, the capture saw {sent}:\n{}\n{}",
                    boot::status::render(&s),
                    captured.lines.join("\n")
                );
                last = Some(grown);
            }
            None
        },
    );
    let metrics_after = f.metrics();
    eprintln!("{}", boot::status::render(&after));
    let (w0, w1) = (web(&before), web(&after));
    eprintln!(
        "captured {sent} packets ({sent_bytes} IP bytes) to web; /status grew by {} packets, {} bytes; \
         /metrics by {}",
        w1.packets - w0.packets,
        w1.bytes - w0.bytes,
        metric(&metrics_after, series) - metric(&metrics_before, series)
    );
    assert!(
        w1.bytes - w0.bytes >= sent_bytes,
        "bytes grew by {} < {sent_bytes} captured",
        w1.bytes - w0.bytes
    );
    assert!(
        metric(&metrics_after, series) - metric(&metrics_before, series) >= sent,
        "{series} grew by less than the {sent} packets captured"
    );
    // The VIP's counters are the sum of its backends', in /status and in /metrics.
    let sum = |vip: &boot::status::VipStatus| -> (u64, u64) {
        vip.backends
            .iter()
            .fold((0, 0), |(p, b), be| (p + be.packets, b + be.bytes))
    };
    assert_eq!(
        sum(w1),
        (w1.packets, w1.bytes),
        "backend counters do not add up to the VIP's: {w1:?}"
    );
    let m = f.metrics();
    let backends: u64 = ["be1", "be2"]
        .iter()
        .map(|b| {
            metric(
                &m,
                &format!("sidestep_backend_packets_total{{vip=\"web\",backend=\"{b}\"}}"),
            )
        })
        .sum();
    assert_eq!(
        backends,
        metric(&m, series),
        "/metrics: backend packets do not add up to the VIP's"
    );
    for name in ["be1", "be2"] {
        assert!(
            w1.backend(name).unwrap().packets > w0.backend(name).unwrap().packets,
            "{name} answered ({seen:?}) but its packet counter did not grow"
        );
    }
    assert_eq!(metric(&m, "sidestep_config_version"), 1);
    assert!(
        after.uptime_ms > before.uptime_ms && after.uptime_ms > 0,
        "uptime_ms does not grow: {} then {}",
        before.uptime_ms,
        after.uptime_ms
    );
}

#[test]
fn health_checks_take_a_stopped_backend_out_and_back() {
    let f = boot(&setup().image, |_| Ok(()));
    let rise = Duration::from_millis(HEALTH_INTERVAL_MS * HEALTH_RISE) + HEALTH_SLACK;
    let fall = Duration::from_millis(HEALTH_INTERVAL_MS * HEALTH_FALL) + HEALTH_SLACK;
    f.eventually("both backends up", rise, || {
        let s = f.status();
        (backend_up(&s, "be1") && backend_up(&s, "be2")).then_some(())
    });

    f.net.stop_http(Host::Be1).expect("stop be1's HTTP server");
    let stopped = Instant::now();
    f.eventually("be1 down in /status after its server stopped", fall, || {
        (!backend_up(&f.status(), "be1")).then_some(())
    });
    eprintln!(
        "be1 went down {:?} after its server stopped (interval x fall = {} ms)",
        stopped.elapsed(),
        HEALTH_INTERVAL_MS * HEALTH_FALL
    );
    assert!(backend_up(&f.status(), "be2"), "be2 went down too");
    assert_eq!(
        metric(
            &f.metrics(),
            "sidestep_backend_up{vip=\"web\",backend=\"be1\"}"
        ),
        0
    );
    let seen = f.backends_answering(VIP_WEB, 80, 8);
    assert!(
        seen.iter().all(|b| b == "be2"),
        "with be1 down every request must go to be2: {seen:?}"
    );

    f.net
        .start_http(Host::Be1)
        .expect("start be1's HTTP server again");
    let started = Instant::now();
    f.eventually("be1 up again in /status", rise, || {
        backend_up(&f.status(), "be1").then_some(())
    });
    eprintln!(
        "be1 came back up {:?} after its server started",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &f.metrics(),
            "sidestep_backend_up{vip=\"web\",backend=\"be1\"}"
        ),
        1
    );
    let seen = f.backends_answering(VIP_WEB, 80, 8);
    assert!(
        seen.iter().any(|b| b == "be1"),
        "be1 is up again but gets no requests: {seen:?}"
    );
}

/// A copy of the running config with `version` and `edit` applied.
fn edited(version: u64, edit: impl FnOnce(&mut Config)) -> Config {
    edited_from(&setup().config, version, edit)
}

/// A copy of `base` with `version` and `edit` applied.
fn edited_from(base: &Config, version: u64, edit: impl FnOnce(&mut Config)) -> Config {
    let mut c = base.clone();
    c.version = version;
    edit(&mut c);
    c
}

fn set_weight(c: &mut Config, backend: &str, weight: u32) {
    let web = c.vips.iter_mut().find(|v| v.name == "web").expect("web");
    web.backends
        .iter_mut()
        .find(|b| b.name == backend)
        .expect("backend")
        .weight = weight;
}

#[test]
fn a_signed_push_drains_a_backend_and_spares_its_transfers() {
    let s = setup();
    let f = boot(&s.image, |_| Ok(()));
    let download = f.net.dir().join("long-download.bin");
    let _ = std::fs::remove_file(&download);

    let url = format!("http://{VIP_WEB}{BIG_FILE_PATH}");
    let out = download.to_string_lossy().into_owned();
    // 24 MiB at 3 MiB/s: about 8 s, long enough to push a config in the middle.
    f.net
        .spawn(
            Host::Client,
            "long-download",
            &[
                "curl",
                "-sS",
                "--max-time",
                "120",
                "--limit-rate",
                "3M",
                "-o",
                &out,
                &url,
            ],
        )
        .expect("start the long download");
    f.eventually("the download under way", Duration::from_secs(10), || {
        std::fs::metadata(&download)
            .ok()
            .filter(|m| m.len() > 0)
            .map(drop)
    });
    // Which backend carries it: rr's rotation is per poll loop, so with several CPUs the next
    // backend cannot be foretold; the one that has it is drained.
    let get = format!("GET {BIG_FILE_PATH}");
    let carriers: Vec<&str> = ["be1", "be2"]
        .into_iter()
        .filter(|be| f.net.log(&format!("http-{be}")).contains(&get))
        .collect();
    let [carrier] = carriers[..] else {
        panic!("the long download is not on exactly one backend: {carriers:?}");
    };
    let other = if carrier == "be1" { "be2" } else { "be1" };
    std::thread::sleep(Duration::from_secs(1));

    let v2 = edited(2, |c| set_weight(c, carrier, 0));
    let response = f.push(&s.key.sign(&v2));
    let in_flight = std::fs::metadata(&download).map(|m| m.len()).unwrap_or(0);
    assert_eq!(response.status, 200, "{response:?}\n{}", f.diagnostics());
    assert!(
        (in_flight as usize) < BIG_FILE_LEN,
        "the download finished before the push; nothing was in flight"
    );
    eprintln!(
        "pushed v2 ({carrier} weight 0) with {in_flight} of {BIG_FILE_LEN} bytes downloaded: {}",
        response.body.trim()
    );

    let status = f.status();
    assert_eq!(status.version, 2);
    assert_eq!(web(&status).backend(carrier).unwrap().weight, 0);
    let seen = f.backends_answering(VIP_WEB, 80, 8);
    assert!(
        seen.iter().all(|b| b == other),
        "{carrier} drains: new requests go to {other} only: {seen:?}"
    );

    let code = f
        .net
        .wait("long-download", Duration::from_secs(120))
        .expect("the download ends");
    assert_eq!(
        code,
        Some(0),
        "curl of the long download failed: {}",
        f.net.log("long-download")
    );
    let got = std::fs::read(&download).expect("read the download");
    assert_eq!(
        got.len(),
        BIG_FILE_LEN,
        "the download through {carrier} was cut"
    );
    assert!(
        got == netns::big_file_content(),
        "the download through {carrier} differs from the file"
    );
}

#[test]
fn refused_pushes_change_nothing() {
    let s = setup();
    let f = boot(&s.image, |_| Ok(()));
    let good = s.key.sign(&edited(2, |c| set_weight(c, "be2", 0)));
    let unchanged = |after: &str| {
        let status = f.status();
        assert_eq!(
            status.version, 1,
            "after {after}: the running config changed"
        );
        assert_eq!(
            web(&status).backend("be2").unwrap().weight,
            1,
            "after {after}"
        );
    };

    // Signed with another key.
    let stranger = SigningKey::generate();
    let r = f.push(&stranger.sign(&edited(2, |c| set_weight(c, "be2", 0))));
    assert_eq!(r.status, 403, "{r:?}");
    let why = boot::client::push_refusal(&r, Some(2)).unwrap();
    assert!(why.starts_with("signature refused"), "{why}");
    unchanged("a push with a bad signature");

    // Correctly signed, but invalid: the TOML layer would refuse it, so build it in Rust.
    let invalid = edited(2, |c| c.vips[0].port = VipPort::One(0));
    assert!(invalid.validate().is_err());
    let r = f.push(&s.key.sign(&invalid));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("vip \"web\": port"),
        "the refusal does not name the field: {:?}",
        r.body
    );
    unchanged("an invalid config");

    // Correctly signed and newer, but for another balancer of the fleet (its address).
    let elsewhere = edited(2, |c| {
        set_weight(c, "be2", 0);
        c.interface.address.address = BALANCER2;
    });
    assert!(elsewhere.validate().is_ok());
    let r = f.push(&s.key.sign(&elsewhere));
    assert_eq!(r.status, 421, "{r:?}");
    let why = boot::client::push_refusal(&r, Some(2)).unwrap();
    assert!(
        why.starts_with("the config is for another balancer")
            && why.contains(&BALANCER2.to_string()),
        "{why}"
    );
    unchanged("a config for another instance");

    // Not newer than the running one.
    let r = f.push(&s.key.sign(&edited(1, |c| set_weight(c, "be2", 0))));
    assert_eq!(r.status, 409, "{r:?}");
    unchanged("an old version");

    // From be1, outside [management] allow: no answer at all, neither to curl nor to the tool.
    let payload = f.net.dir().join("good.signed");
    std::fs::write(&payload, &good).expect("write the envelope");
    let out = f
        .net
        .curl_status(
            Host::Be1,
            4,
            6,
            &[
                "-X",
                "PUT",
                "--data-binary",
                &format!("@{}", payload.display()),
                &format!("http://{}/config", mgmt_addr()),
            ],
        )
        .expect("run curl on be1");
    assert!(!out.success, "be1 got an answer: {out:?}");
    assert_eq!(out.stdout.trim(), "000", "be1 got an HTTP status: {out:?}");
    assert!(
        out.stderr.contains("timed out")
            || out.stderr.contains("Timeout")
            || out.stderr.contains("Failed to connect"),
        "{out:?}"
    );
    match f.push_from(Host::Be1, &good) {
        Err(e @ ClientError::NoAnswer(_)) => eprintln!("push from be1: {e}"),
        other => panic!("a push from be1 (outside allow) must get no answer: {other:?}"),
    }
    unchanged("pushes from outside allow");
    let seen = f.backends_answering(VIP_WEB, 80, 6);
    for be in ["be1", "be2"] {
        assert!(
            seen.iter().any(|b| b == be),
            "{be} no longer answers after refused pushes: {seen:?}"
        );
    }

    // The control: the same good envelope from the client is applied.
    let r = f.push(&good);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(f.status().version, 2);
}

/// The config a fetching image gets from the router: v5, with a different set of VIPs.
fn fetched_config() -> Config {
    edited(5, |c| {
        c.vips.retain(|v| v.name == "web");
        c.vips[0].backends.retain(|b| b.name == "be2");
        if let Some(m) = c.management.as_mut() {
            m.fetch = None;
        }
    })
}

#[test]
fn fetch_at_boot_takes_a_newer_signed_config() {
    let s = setup();
    let root = s.dir.join("config-server");
    std::fs::create_dir_all(&root).expect("create the config server's root");
    std::fs::write(
        root.join(FETCH_PATH.trim_start_matches('/')),
        s.key.sign(&fetched_config()),
    )
    .expect("write the envelope");
    let f = boot(&s.fetch_image, |net| {
        net.serve_files(Host::Rt, FETCH_PORT, &root).map(drop)
    });
    let status = f.eventually(
        "/status shows the fetched v5",
        Duration::from_secs(30),
        || {
            let st = f.status();
            (st.version == 5).then_some(st)
        },
    );
    eprintln!("{}", boot::status::render(&status));
    let names: Vec<&str> = status.vips.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["web"], "the fetched VIP set");
    assert!(
        f.serial_log().contains("fetch: got config v5"),
        "{}",
        f.diagnostics()
    );
    assert!(f
        .net
        .log(&format!("files-rt-{FETCH_PORT}"))
        .contains(&format!("GET {FETCH_PATH}")));
    let seen = f.backends_answering(VIP_WEB, 80, 4);
    assert!(
        seen.iter().all(|b| b == "be2"),
        "v5 has only be2 behind web: {seen:?}"
    );
}

/// A config server that holds every request open without an answer until `release` exists,
/// then answers with the file `envelope`: a fetch that is still trying when the test is ready.
const HELD_SERVER: &str = r#"
import os, socket, sys, threading, time
addr, port, release, envelope = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def serve(conn):
    try:
        conn.recv(4096)
        deadline = time.time() + 10
        while not os.path.exists(release) and time.time() < deadline:
            time.sleep(0.05)
        if os.path.exists(release):
            body = open(envelope, "rb").read()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            print("answered", flush=True)
    except OSError as e:
        print("client gone:", e, flush=True)
    finally:
        conn.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    print("request", flush=True)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn a_fetch_that_ends_after_a_push_does_not_roll_it_back() {
    let s = setup();
    let root = s.dir.join("held-server");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create the held server's directory");
    let envelope = root.join("v5.signed");
    let release = root.join("release");
    std::fs::write(&envelope, s.key.sign(&fetched_config())).expect("write the envelope");
    let f = boot(&s.fetch_image, |net| {
        let args = [
            "python3",
            "-c",
            HELD_SERVER,
            &GATEWAY.to_string(),
            &FETCH_PORT.to_string(),
            &release.to_string_lossy(),
            &envelope.to_string_lossy(),
        ];
        net.spawn(Host::Rt, "held-server", &args).map(drop)
    });
    // The fetch of v5 is in flight (held); the operator pushes v7 meanwhile.
    let pushed = edited(7, |c| {
        c.vips.retain(|v| v.name != "dns");
        if let Some(m) = c.management.as_mut() {
            m.fetch = None;
        }
    });
    f.eventually(
        "the fetch's request held by the server",
        Duration::from_secs(15),
        || f.net.log("held-server").contains("request").then_some(()),
    );
    let response = f.push(&s.key.sign(&pushed));
    assert_eq!(response.status, 200, "{response:?}\n{}", f.diagnostics());
    assert_eq!(f.status().version, 7);
    std::fs::write(&release, b"").expect("release the held server");
    let line = f.eventually(
        "the fetched v5 refused as older than the pushed v7",
        Duration::from_secs(40),
        || {
            f.serial_log()
                .lines()
                .find(|l| l.contains("fetch: keeping the running config v7"))
                .map(str::to_owned)
        },
    );
    eprintln!("{line}");
    assert!(
        f.net.log("held-server").contains("answered"),
        "the server sent v5: {}",
        f.net.log("held-server")
    );
    let status = f.status();
    assert_eq!(status.version, 7, "v5 must not replace the newer v7");
    let names: Vec<&str> = status.vips.iter().map(|v| v.name.as_str()).collect();
    assert!(
        names.contains(&"web3") && !names.contains(&"dns"),
        "the pushed VIP set, not the fetched one: {names:?}"
    );
}

#[test]
fn fetch_without_a_server_keeps_the_baked_config() {
    let f = boot(&setup().fetch_image, |_| Ok(()));
    // Nothing listens on the router's port 8080: each try is refused, then the image gives up.
    let line = f.eventually(
        "a log line saying why the fetch was given up",
        Duration::from_secs(60),
        || {
            f.serial_log()
                .lines()
                .find(|l| l.contains("fetch: keeping the baked config v1"))
                .map(str::to_owned)
        },
    );
    eprintln!("{line}");
    assert_eq!(f.status().version, 1);
    let seen = f.backends_answering(VIP_WEB, 80, 6);
    for be in ["be1", "be2"] {
        assert!(
            seen.iter().any(|b| b == be),
            "the baked config serves both backends: {seen:?}"
        );
    }
}

/// be1 (outside `allow`) gets no answer from the management port, for reads neither, nor by
/// forging an allowed address (an on-link SYN spoofer); the router (inside) does.
#[test]
fn the_management_port_is_not_served_to_be1_even_for_reads() {
    let f = boot(&setup().image, |_| Ok(()));
    let out = f
        .net
        .curl_status(
            Host::Be1,
            3,
            4,
            &[&format!("http://{}/status", mgmt_addr())],
        )
        .expect("run curl on be1");
    assert_eq!(out.stdout.trim(), "000", "be1 read /status: {out:?}");
    // The router may.
    let out = f
        .net
        .run(
            Host::Rt,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                &format!("http://{}/status", mgmt_addr()),
            ],
        )
        .expect("run curl on the router");
    assert!(out.success, "{out:?}");
    assert_eq!(Status::parse(&out.stdout).expect("JSON").version, 1);

    // be1 forging the client's address (allowed) gets no session either: the balancer answers
    // a SYN at the MAC it resolved for the client, not at the MAC the SYN came from, so the
    // SYN-ACK reaches the client (which resets it) and be1 never sees one.
    let client = Host::Client.addr().expect("has one").to_string();
    let synack = format!("tcp src port {MGMT_PORT} and tcp[tcpflags] & tcp-syn != 0");
    let at_be1 = f
        .net
        .capture(Host::Be1, "eth0", &synack)
        .expect("capture on be1");
    let at_client = f
        .net
        .capture(Host::Client, "eth0", &synack)
        .expect("capture on the client");
    let port = MGMT_PORT.to_string();
    let balancer = BALANCER.to_string();
    let out = f
        .net
        .run(
            Host::Be1,
            &[
                "hping3", "-S", "-a", &client, "-p", &port, "-c", "3", "-i", "u300000", &balancer,
            ],
        )
        .expect("run hping3 on be1");
    std::thread::sleep(Duration::from_secs(1));
    let (at_be1, at_client) = (
        at_be1.finish().expect("read be1's capture"),
        at_client.finish().expect("read the client's capture"),
    );
    assert!(
        at_be1.lines.is_empty(),
        "be1, forging the client's address, got SYN-ACKs from the management port: {:?}\n{out:?}",
        at_be1.lines
    );
    assert!(
        !at_client.lines.is_empty(),
        "the forged SYNs were not answered to the client either (did hping3 run? {out:?})\n{}",
        f.diagnostics()
    );
    // The client itself is still served.
    f.status();
}

/// `hping3 --flood --rand-source` with `flags` (`-S` SYN, `-A` ACK) from the client to the web
/// VIP's port 80, for `secs` seconds, while `during` polls; the flood is stopped by its PID.
/// The spoofed sources' answers (the backends' SYN-ACKs and resets) go to the router, which has
/// no route beyond the test's namespaces and drops them.
fn flood(f: &Fixture, label: &str, flags: &str, secs: u64, mut during: impl FnMut()) {
    let vip = VIP_WEB.to_string();
    f.net
        .spawn(
            Host::Client,
            label,
            &[
                "hping3",
                "--flood",
                "--rand-source",
                flags,
                "-p",
                "80",
                &vip,
            ],
        )
        .expect("start hping3 (Debian package hping3)");
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        during();
        std::thread::sleep(Duration::from_millis(500));
    }
    f.net.stop(label).expect("stop hping3");
    eprintln!("{label}: {}", f.net.log(label).trim());
}

/// Under a spoofed-source SYN flood and then an ACK flood at full rate, both live backends of
/// the health-checked VIP stay up (no transition at all), and a rate-limited download that
/// runs through the VIP the whole time completes byte-exact: the floods cost throughput, not
/// an outage. The checks' timeouts during the floods are the balancer's own losses (its receive
/// ring overflows) and count for nothing.
#[test]
fn floods_do_not_take_healthy_backends_out_and_a_download_survives() {
    let f = boot(&setup().image, |_| Ok(()));
    let rise = Duration::from_millis(HEALTH_INTERVAL_MS * HEALTH_RISE) + HEALTH_SLACK;
    f.eventually("both backends up", rise, || {
        let s = f.status();
        (backend_up(&s, "be1") && backend_up(&s, "be2")).then_some(())
    });
    let transitions = |m: &str| {
        ["be1", "be2"].map(|b| {
            metric(
                m,
                &format!("sidestep_health_transitions_total{{vip=\"web\",backend=\"{b}\"}}"),
            )
        })
    };
    let before = transitions(&f.metrics());

    let download = f.net.dir().join("flooded-download.bin");
    let _ = std::fs::remove_file(&download);
    let out = download.to_string_lossy().into_owned();
    let url = format!("http://{VIP_WEB}{BIG_FILE_PATH}");
    // 24 MiB at 1 MiB/s: it runs through both floods.
    f.net
        .spawn(
            Host::Client,
            "flooded-download",
            &[
                "curl",
                "-sS",
                "--max-time",
                "240",
                "--limit-rate",
                "1M",
                "-o",
                &out,
                &url,
            ],
        )
        .expect("start the download");
    f.eventually("the download under way", Duration::from_secs(10), || {
        std::fs::metadata(&download)
            .ok()
            .filter(|m| m.len() > 0)
            .map(drop)
    });

    // /metrics read during the floods (when it answers in time): every backend up.
    let mut samples = Vec::new();
    let mut sample = |what: &str| {
        let started = Instant::now();
        let got = f.net.curl(5, &[&format!("http://{}/metrics", mgmt_addr())]);
        if let Ok(m) = got {
            let up = ["be1", "be2"].map(|b| {
                metric(
                    &m,
                    &format!("sidestep_backend_up{{vip=\"web\",backend=\"{b}\"}}"),
                )
            });
            assert_eq!(
                up,
                [1, 1],
                "a backend went down during the {what}\n{}",
                f.diagnostics()
            );
            samples.push((what.to_owned(), started.elapsed()));
        }
    };
    flood(&f, "syn-flood", "-S", 10, || sample("SYN flood"));
    flood(&f, "ack-flood", "-A", 10, || sample("ACK flood"));
    eprintln!("/metrics answered during the floods: {samples:?}");

    let code = f
        .net
        .wait("flooded-download", Duration::from_secs(240))
        .expect("the download ends");
    assert_eq!(
        code,
        Some(0),
        "the download through the floods failed: {}\n{}",
        f.net.log("flooded-download"),
        f.diagnostics()
    );
    let got = std::fs::read(&download).expect("read the download");
    assert_eq!(got.len(), BIG_FILE_LEN, "the download was cut");
    assert!(
        got == netns::big_file_content(),
        "the download through the floods differs from the file"
    );

    let m = f.metrics();
    assert_eq!(
        transitions(&m),
        before,
        "a live backend changed state during the floods\n{}",
        f.diagnostics()
    );
    for b in ["be1", "be2"] {
        assert_eq!(
            metric(
                &m,
                &format!("sidestep_backend_up{{vip=\"web\",backend=\"{b}\"}}"),
            ),
            1
        );
    }
    assert_eq!(metric(&m, "sidestep_vip_failopen{vip=\"web\"}"), 0);
    eprintln!(
        "inconclusive checks logged: {}",
        f.serial_log()
            .lines()
            .filter(|l| l.contains("not counted"))
            .count()
    );
}

/// The samples `family{core="0"}`, `family{core="1"}`, ... of `/metrics`, core 0 first.
fn per_core(text: &str, family: &str) -> Vec<u64> {
    (0..)
        .map_while(|i| {
            let series = format!("{family}{{core=\"{i}\"}}");
            text.lines().find_map(|l| {
                l.strip_prefix(&series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .collect()
}

/// The image on two CPUs with a NIC queue each: every datapath check passes, both cores
/// forward, and a pushed config reaches both (all of many new connections, spread over the two
/// queues by the NIC's hash, follow it).
fn two_cores(nic: NicModel) {
    let label = format!("two_cores_{}", nic.driver());
    if nic.skip(&label) {
        return;
    }
    let s = setup();
    let f = Fixture::boot_cpus(
        tests::helper_bins!(),
        Topology::Segment,
        nic,
        2,
        &s.plain_image,
        |_| Ok(()),
    )
    .expect("boot on two CPUs");
    let f = until_managed(f);
    let log = f.serial_log();
    let queues = match nic {
        NicModel::VirtioNet => "virtio-net: 2 queue pairs (device offers 2), rss on",
        NicModel::Igb => "igb: 2 queues, rss on",
    };
    for line in [queues, "cores: 2 poll loops", "core 1: forwarding"] {
        assert!(log.contains(line), "no {line:?} in the boot log:\n{log}");
    }
    fixture::run_checks(
        &label,
        &f,
        &[
            ("dsr-l2 http over both backends", &check_l2_http_spreads),
            ("dsr-l3 http", &check_l3_http),
            ("udp", &check_udp),
            ("all-ports VIP", &check_all_ports),
            ("ping the balancer", &check_ping_balancer),
            ("nothing else forwarded", &check_nothing_else_forwarded),
            ("byte-exact over dsr-l2", &|f: &Fixture| {
                check_big_transfer(f, VIP_WEB)
            }),
            ("byte-exact over dsr-l3", &|f: &Fixture| {
                check_big_transfer(f, VIP_WEB3)
            }),
            ("malformed frames", &check_survives_malformed_frames),
        ],
    );
    // Each core reports every 100 ms.
    std::thread::sleep(Duration::from_millis(500));
    let before = per_core(&f.metrics(), "sidestep_core_forwarded_total");
    assert_eq!(before.len(), 2, "two cores in /metrics: {before:?}");
    assert!(
        before.iter().all(|&n| n > 0),
        "a core forwarded nothing: {before:?}\n{}",
        f.diagnostics()
    );

    let v2 = edited_from(&s.plain_config, 2, |c| set_weight(c, "be2", 0));
    let response = f.push(&s.key.sign(&v2));
    assert_eq!(response.status, 200, "{response:?}\n{}", f.diagnostics());
    f.eventually("both cores on config v2", Duration::from_secs(10), || {
        (per_core(&f.metrics(), "sidestep_core_config_version") == [2, 2]).then_some(())
    });
    let seen = f.backends_answering(VIP_WEB, 80, 30);
    assert!(
        seen.iter().all(|b| b == "be1"),
        "be2 has weight 0 in v2, yet it answered: {seen:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = per_core(&f.metrics(), "sidestep_core_forwarded_total");
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "the 30 connections after the push did not reach both cores ({before:?} -> {after:?}), \
         so the push was not shown to reach both"
    );
}

#[test]
fn two_cores_virtio_forward_and_follow_a_push() {
    two_cores(NicModel::VirtioNet);
}

#[test]
fn two_cores_igb_forward_and_follow_a_push() {
    two_cores(NicModel::Igb);
}
