//! End-to-end test of how the management server shares its connections
//! (`control::mgmt::share`): the image, booted with `tests/configs/mgmt.toml`, whose management
//! port the client and the router may both reach.
//!
//! The client plays a slowloris: it opens more connections than one source's share and keeps
//! each alive by trickling a header line every two seconds. The connections past its share are
//! reset at once; the router, another allowed source, is served meanwhile; and the connections
//! within the share are reset at the absolute deadline although they never went idle. After
//! that the client is served again. One boot for the whole story, which also shows that a
//! `limits.flows` larger than the machine's memory boots with the table that fits (an error line
//! says so) instead of halting.

use std::time::{Duration, Instant};
use tests::fixture::Fixture;
use tests::netns::{Host, BALANCER, BALANCER6};
use tests::qemu::Image;

/// The config's management port.
const MGMT_PORT: u16 = 9100;
/// `control::mgmt::share::PER_SOURCE`.
const PER_SOURCE: usize = 4;
/// `control::mgmt::share::TOTAL_MS`, in seconds.
const TOTAL_SECS: f64 = 30.0;
/// Connections the slowloris opens: its share and two more.
const OPENED: usize = PER_SOURCE + 2;
/// How long the slowloris runs at most.
const SLOWLORIS_SECS: u32 = 60;

/// Opens `argv[3]` connections to `argv[1]:argv[2]` (0.3 s apart), sends each the start of a
/// request head, then sends each a header line every 2 s until the server ends it or `argv[4]`
/// seconds pass (a reset may come before the connect returns: that connection ends at once). Prints one line per connection: its index, `reset`/`closed`/`open`, and the
/// seconds from its connect to its end.
const SLOWLORIS_PY: &str = r#"
import select, socket, sys, time
host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
t0 = time.monotonic()
conns, opened, ended = [], [], {}
for i in range(n):
    opened.append(time.monotonic())
    try:
        s = socket.create_connection((host, port), timeout=5)
        conns.append(s)
        s.sendall(b"GET /status HTTP/1.1\r\nHost: sidestep\r\n")
    except OSError as e:
        print("connection", i, e, flush=True)
        conns.append(None)
        ended[i] = ("reset", time.monotonic() - opened[i])
    time.sleep(0.3)
print("opened", n, flush=True)
last = time.monotonic()
while time.monotonic() - t0 < secs and len(ended) < n:
    live = [s for i, s in enumerate(conns) if i not in ended]
    ready, _, _ = select.select(live, [], [], 0.2) if live else ([], [], [])
    for s in ready:
        i = conns.index(s)
        try:
            data = s.recv(4096)
            if not data:
                ended[i] = ("closed", time.monotonic() - opened[i])
        except OSError:
            ended[i] = ("reset", time.monotonic() - opened[i])
    if time.monotonic() - last >= 2:
        last = time.monotonic()
        for i, s in enumerate(conns):
            if i not in ended:
                try:
                    s.send(b"X-Slow: 1\r\n")
                except OSError:
                    ended[i] = ("reset", time.monotonic() - opened[i])
for i in range(n):
    kind, t = ended.get(i, ("open", time.monotonic() - opened[i]))
    print(i, kind, round(t, 1), flush=True)
"#;

/// How one slowloris connection ended, and when (seconds after its connect).
#[derive(Debug)]
struct Ended {
    kind: String,
    secs: f64,
}

fn parse_slowloris(log: &str) -> Vec<Ended> {
    log.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let _index: usize = w.next()?.parse().ok()?;
            let kind = w.next()?.to_owned();
            let secs = w.next()?.parse().ok()?;
            Some(Ended { kind, secs })
        })
        .collect()
}

/// `GET /status` from `host` within `secs`.
fn status_from(f: &Fixture, host: Host, secs: u32) -> Result<String, String> {
    f.net
        .curl_on(
            host,
            secs,
            &[&format!("http://{BALANCER}:{MGMT_PORT}/status")],
        )
        .map_err(|e| e.to_string())
}

#[test]
fn a_slowloris_keeps_its_share_and_its_deadline_and_others_are_served() {
    let config = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/mgmt.toml");
    let image = Image::build(&config).expect("build the mgmt image");
    let f = Fixture::boot(tests::helper_bins!(), &image, |_| Ok(())).expect("boot the fixture");
    f.eventually(
        "the management API answers the client",
        Duration::from_secs(20),
        || status_from(&f, Host::Client, 2).ok(),
    );
    // Over IPv6: the allowed client is answered at address6, be1 (not in the allow list) gets
    // nothing at all.
    let metrics6 = format!("http://[{BALANCER6}]:{MGMT_PORT}/metrics");
    let body = f
        .net
        .curl_on(Host::Client, 10, &[&metrics6])
        .unwrap_or_else(|e| {
            panic!(
                "/metrics over IPv6 from the client: {e}\n{}",
                f.diagnostics()
            )
        });
    assert!(body.contains("sidestep_config_version 1"), "{body}");
    let refused = f
        .net
        .curl_on(Host::Be1, 3, &["--connect-timeout", "2", &metrics6]);
    assert!(
        refused.is_err(),
        "be1 reached the management port over IPv6: {refused:?}"
    );
    let console = f.serial_log();
    assert!(
        console.contains("limits.flows = 67108864 needs 2048 MiB"),
        "no error line about the flow table that does not fit:\n{console}"
    );

    let started = Instant::now();
    f.net
        .spawn(
            Host::Client,
            "slowloris",
            &[
                "python3",
                "-c",
                SLOWLORIS_PY,
                &BALANCER.to_string(),
                &MGMT_PORT.to_string(),
                &OPENED.to_string(),
                &SLOWLORIS_SECS.to_string(),
            ],
        )
        .expect("start the slowloris");
    f.eventually(
        "the slowloris has its connections",
        Duration::from_secs(20),
        || f.net.log("slowloris").contains("opened").then_some(()),
    );
    // Another allowed source is served while the client holds its whole share.
    let t = Instant::now();
    let answer = status_from(&f, Host::Rt, 3);
    assert!(
        answer.as_deref().is_ok_and(|a| a.contains("\"version\"")),
        "the router was not served while the client held its share: {answer:?}\n{}",
        f.diagnostics()
    );
    eprintln!("router served in {:.1?} during the slowloris", t.elapsed());

    let code = f
        .net
        .wait(
            "slowloris",
            Duration::from_secs(u64::from(SLOWLORIS_SECS) + 30),
        )
        .expect("the slowloris ends");
    let log = f.net.log("slowloris");
    assert_eq!(code, Some(0), "the slowloris failed:\n{log}");
    eprintln!(
        "slowloris over after {:.1?}:\n{}",
        started.elapsed(),
        log.trim()
    );
    let ended = parse_slowloris(&log);
    assert_eq!(ended.len(), OPENED, "one line per connection:\n{log}");
    // The connections past the share are reset at once (their server socket aborts them on
    // admission)...
    for e in &ended[PER_SOURCE..] {
        assert!(
            e.kind != "open" && e.secs < 5.0,
            "a connection past the client's share of {PER_SOURCE} was not refused at once: \
             {ended:?}\n{}",
            f.diagnostics()
        );
    }
    // ...and those within it live until the absolute deadline, trickling all the while (the
    // idle deadline, 10 s, never comes). Timers of an emulated guest run late, not early.
    for e in &ended[..PER_SOURCE] {
        assert!(
            e.kind != "open" && e.secs >= TOTAL_SECS - 1.0 && e.secs < TOTAL_SECS + 15.0,
            "a trickling connection was not ended at the {TOTAL_SECS} s deadline: {ended:?}\n{}",
            f.diagnostics()
        );
    }
    // The client's sockets are free again: it is served.
    f.eventually(
        "the management API answers the client again",
        Duration::from_secs(10),
        || status_from(&f, Host::Client, 2).ok(),
    );
    assert!(
        f.serial_log().contains("management: aborted"),
        "no log line about aborted connections:\n{}",
        f.serial_log()
    );
}
