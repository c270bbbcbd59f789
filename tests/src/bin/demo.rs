//! `qemu/demo`: what Sidestep does, on a private network of real Linux hosts in namespaces (see
//! `tests::netns`). Two Sidestep images (A and B) sit side by side on the backends' segment and
//! announce the VIPs by BGP to BIRD on the router, which spreads flows over both (ECMP); a client
//! behind the router sends requests, the backends answer it directly (DSR, dsr-l2 and dsr-l3,
//! IPv4 and IPv6), and then the balancer carrying a slow download is killed while the download goes on through
//! the other. It is the scenario of the e2e test `e2e_bgp` (the shared pieces are in
//! `tests::scaleout`), told with the numbers of this run. Everything it creates is removed when
//! it ends, also on failure. `--wait` keeps the network up until Enter is pressed, for poking at
//! it by hand (`ip netns exec <prefix>wan curl http://10.77.0.100/`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tests::fixture::{backend_of, Balancers, Place};
use tests::netns::{
    self, HelperBins, Host, BIG_FILE_LEN, BIG_FILE_PATH, GATEWAY, VIP_WEB, VIP_WEB6,
};
use tests::qemu::Image;
use tests::scaleout::{self, BalancerConfig, ADDRS, LB_AS, RT_AS};

/// The dsr-l3 VIP (`web-l3`, be3 behind the router).
const WEB_L3: Ipv4Addr = netns::VIP_WEB3;
/// The balancers' names in what the demo prints, in boot order.
const NAMES: [&str; 2] = ["A", "B"];
/// Each VIP's backends, as `/metrics` labels them.
const BACKENDS: [(&str, &str); 5] = [
    ("web", "be1"),
    ("web", "be2"),
    ("web-l3", "be3"),
    ("web6", "be1"),
    ("web6", "be2"),
];

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The helper programs, built beside this one by `cargo build -p tests --bins`.
fn helper_bins() -> Result<HelperBins, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no directory for the demo binary")?;
    Ok(HelperBins {
        ipip_decap: dir.join("ipip-decap"),
        udp_echo: dir.join("udp-echo"),
        frame_flood: dir.join("frame-flood"),
        stub_lb: dir.join("stub-lb"),
    })
}

/// Where the demo writes its configs (and, on failure, the consoles and logs).
fn demo_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/demo");
    // Shown to the user: without the `tests/..` detour once it exists.
    let _ = std::fs::create_dir_all(&dir);
    dir.canonicalize().unwrap_or(dir)
}

/// Writes both balancers' configs and builds their images.
fn build_images() -> Result<[Image; 2], String> {
    let dir = demo_dir();
    // A failure log of an earlier run would be taken for this one's.
    let _ = std::fs::remove_file(dir.join("failure.log"));
    let mut images = Vec::with_capacity(2);
    for (name, address) in NAMES.iter().zip(ADDRS) {
        let text = scaleout::config_text(&BalancerConfig {
            address,
            written_by: "qemu/demo (tests/src/bin/demo.rs)",
            pubkey: None,
            extra_peer: None,
            dsr_l3: true,
        });
        let path = dir.join(format!("demo-{}.toml", name.to_lowercase()));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("   {name} ({address}): {}", path.display());
        images.push(Image::build(&path)?);
    }
    images
        .try_into()
        .map_err(|_| "two images were not built".to_owned())
}

fn demo() -> Result<(), String> {
    let wait = std::env::args().any(|a| a == "--wait");
    println!("== building two images; their configs differ only in interface.address:");
    let images = build_images()?;
    println!(
        "\n== building the network in namespaces: BIRD on the router {GATEWAY} (AS {RT_AS}), \
         balancers A and B (AS {LB_AS}) on the segment with be1 and be2, be3 behind the \
         router, a client {} behind the router; booting A and B under QEMU",
        Host::Wan.addr().map(|a| a.to_string()).unwrap_or_default()
    );
    let started = Instant::now();
    // Two vCPUs each: a poll loop and a virtio-net queue pair on each.
    let places = scaleout::places(&images).map(|p| Place { cpus: 2, ..p });
    let mut b = Balancers::boot(helper_bins()?, &places, scaleout::start_bird)
        .map_err(|e| e.to_string())?;
    println!(
        "   network built and both balancers ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let outcome = show(&mut b, Instant::now(), wait);
    if outcome.is_err() {
        let log = demo_dir().join("failure.log");
        match std::fs::write(&log, b.diagnostics()) {
            Ok(()) => eprintln!("demo: consoles and logs are in {}", log.display()),
            Err(e) => eprintln!("demo: cannot write {}: {e}", log.display()),
        }
    }
    drop(b);
    println!("\n== torn down (namespaces, taps, QEMU, BIRD, servers)");
    outcome
}

/// The router's route to `vip`, one line.
fn route_line(b: &Balancers, vip: Ipv4Addr) -> Result<String, String> {
    let route = b.net.route_of(vip).map_err(|e| e.to_string())?;
    Ok(route.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Packets each balancer sent to each backend, as its `/metrics` counts them.
fn backend_packets(b: &Balancers) -> Result<[[u64; BACKENDS.len()]; 2], String> {
    let mut all = [[0; BACKENDS.len()]; 2];
    for (i, row) in all.iter_mut().enumerate() {
        let text = scaleout::metrics(&b.net, i).map_err(|e| e.to_string())?;
        for (n, (vip, be)) in BACKENDS.iter().enumerate() {
            let sample =
                format!("sidestep_backend_packets_total{{vip=\"{vip}\",backend=\"{be}\"}}");
            row[n] = scaleout::sample_of(&text, &sample)
                .ok_or_else(|| format!("no {sample} in {}'s metrics:\n{text}", NAMES[i]))?;
        }
    }
    Ok(all)
}

/// `count` new connections from the client behind the router to `url`, each printed with the
/// backend that answered and the balancer that carried it: the one whose `/metrics` counted
/// packets to a backend meanwhile.
fn ask(b: &Balancers, url: &str, count: usize) -> Result<(), String> {
    for i in 1..=count {
        let before = backend_packets(b)?;
        let body = b
            .net
            .curl_on(Host::Wan, 10, &[url])
            .map_err(|e| format!("request {i} to {url}: {e}"))?;
        let after = backend_packets(b)?;
        let backend = backend_of(&body).ok_or_else(|| format!("not a backend's page: {body:?}"))?;
        let carried: Vec<String> = NAMES
            .iter()
            .enumerate()
            .filter_map(|(n, name)| {
                let sent = after[n]
                    .iter()
                    .sum::<u64>()
                    .saturating_sub(before[n].iter().sum());
                (sent > 0).then(|| format!("{name} ({sent} packets)"))
            })
            .collect();
        println!(
            "   request {i}: answered by {backend}, carried by {}",
            if carried.is_empty() {
                "neither balancer?".to_owned()
            } else {
                carried.join(" and ")
            }
        );
    }
    Ok(())
}

fn show(b: &mut Balancers, ready: Instant, wait: bool) -> Result<(), String> {
    for (i, name) in NAMES.iter().enumerate() {
        let Some(vm) = b.vm(i) else { continue };
        println!(
            "   {name} {} (QEMU PID {}), its console:",
            ADDRS[i],
            vm.pid()
        );
        for line in vm
            .serial_log()
            .lines()
            .filter(|l| l.contains("config v") || l.contains("ready"))
        {
            println!("   | {line}");
        }
    }

    println!("\n== BGP");
    let up = scaleout::wait_until(
        "BIRD has both sessions Established",
        Duration::from_secs(30),
        || Ok((scaleout::bird_sessions_established(&b.net)? == 2).then_some(2)),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "   BIRD: {up} of 2 sessions Established (seen {:.1} s after both balancers were ready)",
        ready.elapsed().as_secs_f64()
    );
    for (i, name) in NAMES.iter().enumerate() {
        let sample = format!("sidestep_bgp_session_up{{peer=\"{GATEWAY}\"}}");
        let v = scaleout::metric(&b.net, i, &sample).map_err(|e| e.to_string())?;
        println!("   {name}'s /metrics: {sample} {v}");
    }
    for vip in [VIP_WEB, WEB_L3] {
        scaleout::wait_for_hops(
            &b.net,
            &format!("the route to {vip} over both balancers"),
            vip,
            &ADDRS,
            Duration::from_secs(30),
        )
        .map_err(|e| e.to_string())?;
        let hops = scaleout::next_hops(&b.net, vip).map_err(|e| e.to_string())?;
        println!(
            "   router's table: {vip} has {} next hops (ECMP): {}",
            hops.len(),
            route_line(b, vip)?
        );
    }

    scaleout::wait_for_hops6(
        &b.net,
        &format!("the route to {VIP_WEB6} over both balancers"),
        VIP_WEB6,
        &scaleout::ADDRS6,
        Duration::from_secs(30),
    )
    .map_err(|e| e.to_string())?;
    let hops6 = scaleout::next_hops6(&b.net, VIP_WEB6).map_err(|e| e.to_string())?;
    let hops6: Vec<String> = hops6.iter().map(|h| h.to_string()).collect();
    println!(
        "   router's table: {VIP_WEB6}/128 has {} next hops (ECMP, over IPv6 too): {}",
        hops6.len(),
        hops6.join(", ")
    );

    let client = Host::Wan.addr().map(|a| a.to_string()).unwrap_or_default();
    let client6 = Host::Wan.addr6().map(|a| a.to_string()).unwrap_or_default();
    let before = backend_packets(b)?;
    let (traffic, taps) = b
        .watch_taps(
            &[IpAddr::from(VIP_WEB), WEB_L3.into(), VIP_WEB6.into()],
            || -> Result<(), String> {
                println!(
                    "\n== client {client} (behind the router) -> http://{VIP_WEB}/ \
                 (dsr-l2, maglev over be1 and be2), 8 new connections"
                );
                ask(b, &format!("http://{VIP_WEB}/"), 8)?;
                println!(
                    "\n== client -> http://{WEB_L3}/ (dsr-l3: IP-in-IP to be3 behind the router), \
                 4 new connections"
                );
                ask(b, &format!("http://{WEB_L3}/"), 4)?;
                println!(
                "\n== client {client6} -> http://[{VIP_WEB6}]/ (IPv6, dsr-l2, maglev over be1 and \
                 be2; the router's route is the /128 both balancers announce), 4 new connections"
            );
                ask(b, &format!("http://[{VIP_WEB6}]/"), 4)
            },
        )
        .map_err(|e| e.to_string())?;
    traffic?;
    let after = backend_packets(b)?;
    println!("\n== which balancer carried them: packets each sent to each backend (its /metrics)");
    for (i, name) in NAMES.iter().enumerate() {
        let counts: Vec<String> = BACKENDS
            .iter()
            .enumerate()
            .map(|(n, (vip, be))| {
                format!("{vip}/{be} {}", after[i][n].saturating_sub(before[i][n]))
            })
            .collect();
        println!("   {name} {}: {}", ADDRS[i], counts.join(", "));
    }
    println!("\n== each balancer's two cores (a poll loop and a NIC queue each): frames forwarded so far");
    for (i, name) in NAMES.iter().enumerate() {
        let text = scaleout::metrics(&b.net, i).map_err(|e| e.to_string())?;
        let cores: Vec<String> = (0..2)
            .map(|c| {
                let sample = format!("sidestep_core_forwarded_total{{core=\"{c}\"}}");
                let n = scaleout::sample_of(&text, &sample).unwrap_or(0);
                format!("core {c}: {n}")
            })
            .collect();
        println!("   {name}: {}", cores.join(", "));
    }
    println!("\n== on the balancers' taps during those requests");
    for (i, tap) in taps.iter().enumerate() {
        println!(
            "   {}: {} packets to a VIP came in, {} from a VIP went out",
            NAMES[i],
            tap.requests.len(),
            tap.responses.len()
        );
    }
    if taps.iter().all(|t| t.responses.is_empty()) {
        println!("   (the replies went straight from the backends to the client)");
    } else {
        return Err("a reply from a VIP crossed a balancer's tap, which DSR never does".into());
    }

    println!(
        "\n== a slow download (curl --limit-rate 1M) of {BIG_FILE_LEN} bytes from the client: \
         http://{VIP_WEB}{BIG_FILE_PATH}"
    );
    let r = scaleout::download_through_a_kill(b, VIP_WEB).map_err(|e| e.to_string())?;
    let (dead, alive) = (NAMES[r.carrier], NAMES[1 - r.carrier]);
    println!(
        "   {dead} carries it: VIP packets in {:.0?} on {}: {}, on {}: {}",
        r.measured, NAMES[0], r.rise[0], NAMES[1], r.rise[1]
    );
    println!(
        "   killed {dead}'s QEMU (PID {}) {:.1} s into the download, at {} bytes",
        r.pid,
        r.killed_after.as_secs_f64(),
        r.size_at_kill
    );
    println!(
        "   BIRD dropped {dead}'s route {:.1} s after the kill (BFD; the BGP hold time is {} s): {}",
        r.route_gone_after.as_secs_f64(),
        scaleout::HOLD_TIME,
        route_line(b, VIP_WEB)?
    );
    println!(
        "   download complete after {:.1} s: {} bytes received, {}",
        r.took.as_secs_f64(),
        r.received,
        if r.intact {
            "identical to the file the backends serve"
        } else {
            "DIFFERENT from the file the backends serve"
        }
    );
    if !r.intact {
        return Err("the download is not byte-exact".into());
    }
    println!(
        "   {} bytes arrived after the kill: {alive} took over the flow's packets and sent them \
         to the same backend (the VIP's consistent hash)",
        r.received as u64 - r.size_at_kill
    );

    if wait {
        println!(
            "\nThe network is up (namespaces {}*; {alive} still runs). Press Enter to tear it down.",
            b.net.ns(Host::Wan).trim_end_matches("wan")
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    Ok(())
}
