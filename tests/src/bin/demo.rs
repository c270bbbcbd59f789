//! `qemu/demo`: boots the Sidestep image built from `qemu/demo.toml` on a private network of real
//! Linux hosts (see `tests::netns`, set up by `tests::fixture` as in the e2e tests), sends it
//! traffic, and shows DSR at work: which backend answered each request, and that no reply
//! crossed the balancer. Everything it creates is removed when it ends. `--wait` keeps the
//! network up until Enter is pressed, for poking at it by hand
//! (`ip netns exec <prefix>client curl http://10.77.0.100/`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tests::fixture::{backend_of, Fixture};
use tests::netns::{self, HelperBins, Host, BALANCER};
use tests::qemu::Image;

/// The VIPs of `qemu/demo.toml`.
const WEB: Ipv4Addr = netns::VIP_WEB;
const WEB_L3: Ipv4Addr = netns::VIP_WEB3;

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

/// `count` requests to `url` from the client, each printed with the backend that answered.
fn ask(f: &Fixture, url: &str, count: usize) -> Result<(), String> {
    for i in 1..=count {
        let body = f.net.curl(5, &[url]).map_err(|e| e.to_string())?;
        println!(
            "   request {i}: answered by {}",
            backend_of(&body).unwrap_or("?")
        );
    }
    Ok(())
}

fn demo() -> Result<(), String> {
    let wait = std::env::args().any(|a| a == "--wait");
    let config: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/demo.toml");
    println!("== building the image from {}", config.display());
    let image = Image::build(&config)?;
    println!(
        "== building the demo network in namespaces and booting {} under QEMU",
        image.bios.display()
    );
    let f = Fixture::boot(helper_bins()?, &image, |_| Ok(())).map_err(|e| e.to_string())?;
    if let Some(vm) = f.vm() {
        println!(
            "   ready after {:.1} s; the console says:",
            vm.boot_time.as_secs_f64()
        );
    }
    for line in f
        .serial_log()
        .lines()
        .filter(|l| l.contains("config v") || l.contains("ready"))
    {
        println!("   | {line}");
    }

    let (traffic, tap) = f
        .watch_tap(&[WEB, WEB_L3], || -> Result<(), String> {
            println!(
                "\n== client {} -> http://{WEB}/ (dsr-l2, round robin over be1 and be2)",
                Host::Client
                    .addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            );
            ask(&f, &format!("http://{WEB}/"), 6)?;
            println!("\n== client -> http://{WEB_L3}/ (dsr-l3: IP-in-IP to be3 behind the router)");
            ask(&f, &format!("http://{WEB_L3}/"), 3)
        })
        .map_err(|e| e.to_string())?;
    traffic?;
    println!("\n== client -> ping {BALANCER} (the balancer itself)");
    let ping = f
        .net
        .run(
            Host::Client,
            &["ping", "-c", "2", "-W", "1", &BALANCER.to_string()],
        )
        .map_err(|e| e.to_string())?;
    if let Some(line) = ping
        .stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
    {
        println!("   {line}");
    }
    println!(
        "\n== on the balancer's tap: {} packets to a VIP came in, {} from a VIP went out \
         (the replies went straight from the backends to the client)",
        tap.requests.len(),
        tap.responses.len()
    );
    std::thread::sleep(std::time::Duration::from_secs(5));
    if let Some(line) = f.serial_log().lines().rfind(|l| l.contains("stats:")) {
        println!("   | {line}");
    }
    if wait {
        println!(
            "\nThe network is up (namespaces {}*). Press Enter to tear it down.",
            f.net.ns(Host::Client).trim_end_matches("client")
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    drop(f);
    println!("\n== torn down");
    Ok(())
}
