//! `qemu/demo`: boots the Sidestep image built from `qemu/demo.toml` on a private network of real
//! Linux hosts (see `tests::netns`), sends it traffic, and shows DSR at work: which backend
//! answered each request, and that no reply crossed the balancer. Everything it creates is
//! removed when it ends. `--wait` keeps the network up until Enter is pressed, for poking at it
//! by hand (`ip netns exec <prefix>client curl http://10.77.0.100/`).

use boot::qemu::{Firmware, Net};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tests::netns::{self, DemoNet, HelperBins, Host, BALANCER, BALANCER_MAC, VIPS};
use tests::qemu::{Image, Vm};

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

fn backend_of(body: &str) -> String {
    body.trim()
        .strip_prefix("backend=")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_string()
}

fn demo() -> Result<(), String> {
    let wait = std::env::args().any(|a| a == "--wait");
    let config: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/demo.toml");
    println!("== building the image from {}", config.display());
    let image = Image::build(&config)?;
    println!("== building the demo network in namespaces");
    let net = DemoNet::create(helper_bins()?).map_err(|e| e.to_string())?;
    net.add_tap("tap0", BALANCER_MAC)
        .map_err(|e| e.to_string())?;
    println!("== booting {} under QEMU", image.bios.display());
    let vm = Vm::start(
        &image,
        Firmware::Bios,
        Net::Tap("tap0".into()),
        Some(BALANCER_MAC),
        Some(&net.lb_netns()),
    )?;
    println!(
        "   ready after {:.1} s; the console says:",
        vm.boot_time.as_secs_f64()
    );
    for line in vm
        .serial_log()
        .lines()
        .filter(|l| l.contains("config v") || l.contains("ready"))
    {
        println!("   | {line}");
    }

    let capture = net
        .capture(Host::Lb, "tap0", &netns::from_any(&VIPS))
        .map_err(|e| e.to_string())?;
    println!(
        "\n== client {} -> http://{WEB}/ (dsr-l2, round robin over be1 and be2)",
        Host::Client.addr().unwrap()
    );
    for i in 1..=6 {
        let body = net
            .curl(5, &[&format!("http://{WEB}/")])
            .map_err(|e| e.to_string())?;
        println!("   request {i}: answered by {}", backend_of(&body));
    }
    println!("\n== client -> http://{WEB_L3}/ (dsr-l3: IP-in-IP to be3 behind the router)");
    for i in 1..=3 {
        let body = net
            .curl(5, &[&format!("http://{WEB_L3}/")])
            .map_err(|e| e.to_string())?;
        println!("   request {i}: answered by {}", backend_of(&body));
    }
    println!("\n== client -> ping {BALANCER} (the balancer itself)");
    let ping = net
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
    let seen = capture.finish().map_err(|e| e.to_string())?;
    println!(
        "\n== packets from a VIP seen on the balancer's tap: {} (replies went straight to the client)",
        seen.lines.len()
    );
    std::thread::sleep(std::time::Duration::from_secs(5));
    if let Some(line) = vm.serial_log().lines().rfind(|l| l.contains("stats:")) {
        println!("   | {line}");
    }
    if wait {
        println!(
            "\nThe network is up (namespaces {}*). Press Enter to tear it down.",
            net.ns(Host::Client).trim_end_matches("client")
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    drop(vm);
    drop(net);
    println!("\n== torn down");
    Ok(())
}
