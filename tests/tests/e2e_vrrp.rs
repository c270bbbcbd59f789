//! End-to-end HA pair tests (issue 17): two Sidestep images and keepalived in one VRRP group
//! (vrid 51, version 3, one-second adverts) on the balancer segment, with the client on the same
//! segment reaching the VIP by ARP, as a client of an active/standby pair does:
//!
//! ```text
//!   client 10.77.0.10 --+-- tap0: balancer A 10.77.0.2, priority 150
//!   be1, be2 (dsr-l2) --+-- tap1: balancer B 10.77.0.3, priority 100
//!                       +-- vrrp 10.77.0.4: keepalived, priority 50
//! ```
//!
//! keepalived runs in its own namespace with its config, PID files and notify script in the
//! network's temporary directory; the notify script writes its state to a file. In front of it
//! sit the nftables DSR rules an nftlb appliance has (netdev ingress: a VIP's packet gets a
//! backend's MAC by a hash of the client's address and port and goes back out), so that when
//! keepalived holds the VIP it serves it, as the appliance Sidestep replaces would. It is started
//! and killed by PID. For a while it runs at priority 200 instead, so that the balancers are
//! backups of keepalived: both sides then parse the other's advertisements.
//!
//! One boot of both images serves every check (CI time): they run in order in one test, A's
//! death during a slow download, then B's.

use boot::status::Status;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::fixture::{backend_of, Balancers, Place};
use tests::netns::{
    big_file_content, Host, BALANCER, BALANCER2, BALANCER2_MAC, BALANCER_MAC, BIG_FILE_LEN,
    BIG_FILE_PATH, VIP_WEB, VIP_WEB6,
};
use tests::qemu::Image;

/// The management port of both balancers.
const MGMT_PORT: u16 = 9100;
/// Rate of the download the master dies under: about 24 s for the 24 MiB file.
const SLOW_RATE: &str = "1M";
/// The group's advertisement interval.
const ADVERT_MS: u64 = 1000;

/// The config of the balancer at `address` with VRRP `priority` and `version`.
fn config_text(address: Ipv4Addr, priority: u8, version: u8) -> String {
    let client = Host::Client.addr().expect("has one");
    format!(
        r#"# Written by tests/tests/e2e_vrrp.rs: one balancer of a VRRP group.
version = 1

[interface]
address = "{address}/24"
gateway = "10.77.0.1"
address6 = "{address6}/64"

[management]
port = {MGMT_PORT}
allow = ["{client}/32"]

[vrrp]
vrid = 51
priority = {priority}
advert_ms = {ADVERT_MS}
preempt = true
version = {version}

{web_vip}
# Not advertised (the advertisements are IPv4): it follows the master.
{web6_vip}"#,
        web_vip = tests::fixture::group_web_vip(),
        web6_vip = tests::fixture::group_web6_vip(),
        address6 = tests::scaleout::address6_of(address),
    )
}

/// The run's images: target/test-images/vrrp-setup/vrrp-{a,b}.toml, replaced each run.
fn images() -> (Image, Image) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-images/vrrp-setup");
    std::fs::create_dir_all(&dir).expect("create the config directory");
    let build = |name: &str, address: Ipv4Addr, priority: u8| {
        let path: PathBuf = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config_text(address, priority, 3)).expect("write a config");
        Image::build(&path).unwrap_or_else(|e| panic!("build {name}: {e}"))
    };
    (
        build("vrrp-a", BALANCER, 150),
        build("vrrp-b", BALANCER2, 100),
    )
}

/// The balancers' addresses, in boot order.
const ADDRS: [Ipv4Addr; 2] = [BALANCER, BALANCER2];

/// keepalived in [`Host::Vrrp`]: its files, and the PID of its VRRP child (which it forks and
/// which must end with it).
struct Keepalived {
    dir: PathBuf,
    label: String,
}

impl Keepalived {
    /// Writes the config (`priority`, `version`, the balancers' vrid and VIP) and the notify
    /// script, and starts keepalived in the foreground (VRRP only, logging to its console).
    fn start(b: &Balancers, priority: u8, version: u8) -> Keepalived {
        let label = format!("keepalived-v{version}-{priority}");
        let dir = b.net.dir().join(&label);
        std::fs::create_dir_all(&dir).expect("create keepalived's directory");
        let state = dir.join("state");
        // A state left by an earlier run of the same instance must not count.
        let _ = std::fs::remove_file(&state);
        let notify = dir.join("notify.sh");
        // notify gets: "INSTANCE" NAME STATE PRIORITY.
        std::fs::write(
            &notify,
            format!("#!/bin/sh\necho \"$3\" > '{}'\n", state.display()),
        )
        .expect("write the notify script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&notify, std::fs::Permissions::from_mode(0o755))
            .expect("make the notify script executable");
        let conf = dir.join("keepalived.conf");
        std::fs::write(
            &conf,
            format!(
                "global_defs {{
    router_id sidestep_e2e
    script_user root
    vrrp_version {version}
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {}
    virtual_ipaddress {{
        {VIP_WEB}/32 dev eth0
    }}
    notify {}
}}
",
                ADVERT_MS / 1000,
                notify.display()
            ),
        )
        .expect("write keepalived.conf");
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let (conf, pid, vrrp_pid, check_pid, bfd_pid) = (
            path("keepalived.conf"),
            path("keepalived.pid"),
            path("vrrp.pid"),
            path("checkers.pid"),
            path("bfd.pid"),
        );
        b.net
            .spawn(
                Host::Vrrp,
                &label,
                &[
                    "keepalived",
                    "--dont-fork",
                    "--log-console",
                    "--log-detail",
                    "--no-syslog",
                    "--vrrp",
                    "--dont-respawn",
                    "--use-file",
                    &conf,
                    "--pid",
                    &pid,
                    "--vrrp_pid",
                    &vrrp_pid,
                    "--checkers_pid",
                    &check_pid,
                    "--bfd_pid",
                    &bfd_pid,
                ],
            )
            .expect("start keepalived");
        Keepalived { dir, label }
    }

    /// What it logged so far.
    fn log(&self, b: &Balancers) -> String {
        b.net.log(&self.label)
    }

    /// The state its notify script wrote last (`BACKUP`, `MASTER`, `FAULT`), if any yet.
    fn state(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("state"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// Ends keepalived's VRRP child by the PID it wrote (the parent, started with
    /// `--dont-respawn`, does not restart it).
    fn stop_child(&self) {
        let pid_file = self.dir.join("vrrp.pid");
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|&p| p > 1)
        {
            // Safety: kill(2) with the PID keepalived wrote for its VRRP child, which removes
            // the file when it ends; the file is removed here too, so it is signalled once.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let _ = std::fs::remove_file(pid_file);
        }
    }

    /// Ends keepalived: its VRRP child, then the parent (by the PID the network started).
    fn stop(&self, b: &Balancers) {
        self.stop_child();
        // Give the child a moment to say it leaves (priority 0) before its parent goes.
        std::thread::sleep(Duration::from_millis(500));
        let _ = b.net.stop(&self.label);
    }
}

impl Drop for Keepalived {
    /// On a failed check: the child here; the network ends the parent when it drops.
    fn drop(&mut self) {
        self.stop_child();
    }
}

/// The DSR rules of an nftlb appliance on keepalived's host: TCP to the VIP's port 80 that
/// reaches its MAC (only while keepalived holds the VIP) gets be1's or be2's MAC, by a hash of
/// the client's address and port, and goes straight back out; the source MAC becomes the
/// host's own so the bridge never learns the client's MAC on this port.
fn install_nftlb_dsr(b: &Balancers) {
    let mac = |h: Host| h.mac().expect("has one");
    let rules = format!(
        "table netdev sidestep_e2e_dsr {{\n\
         \tchain ingress {{\n\
         \t\ttype filter hook ingress device \"eth0\" priority 0; policy accept;\n\
         \t\tmeta pkttype host ip daddr {VIP_WEB} tcp dport 80 ether saddr set {own} \
         ether daddr set jhash ip saddr . tcp sport mod 2 map {{ 0 : {be1}, 1 : {be2} }} \
         fwd to \"eth0\"\n\
         \t}}\n\
         }}\n",
        own = mac(Host::Vrrp),
        be1 = mac(Host::Be1),
        be2 = mac(Host::Be2),
    );
    let path = b.net.dir().join("nftlb-dsr.nft");
    b.net
        .write_file(&path, rules.as_bytes())
        .expect("write the nft rules");
    b.net
        .run_ok(Host::Vrrp, &["nft", "-f", &path.to_string_lossy()])
        .unwrap_or_else(|e| panic!("load the DSR rules on keepalived's host: {e}"));
}

/// Balancer `i`'s `/status`, read from the client.
fn status(b: &Balancers, i: usize) -> Option<Status> {
    let url = format!("http://{}:{MGMT_PORT}/status", ADDRS[i]);
    let json = b.net.curl(5, &[&url]).ok()?;
    Status::parse(&json).ok()
}

/// Balancer `i`'s VRRP state and the master it knows.
fn role(b: &Balancers, i: usize) -> Option<(String, Option<String>)> {
    let v = status(b, i)?.vrrp?;
    Some((v.state, v.master))
}

/// `sidestep_vrrp_master` of balancer `i`.
fn master_metric(b: &Balancers, i: usize) -> Option<u64> {
    let url = format!("http://{}:{MGMT_PORT}/metrics", ADDRS[i]);
    let text = b.net.curl(5, &[&url]).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("sidestep_vrrp_master "))
        .and_then(|n| n.trim().parse().ok())
}

fn check_roles_agree(b: &Balancers, ka: &Keepalived) {
    let a = BALANCER.to_string();
    b.eventually(
        "A master, B and keepalived backup",
        Duration::from_secs(30),
        || {
            let ok = role(b, 0)? == ("master".into(), Some(a.clone()))
                && role(b, 1)? == ("backup".into(), Some(a.clone()))
                && ka.state()? == "BACKUP";
            ok.then_some(())
        },
    );
    assert_eq!(master_metric(b, 0), Some(1), "A's sidestep_vrrp_master");
    assert_eq!(master_metric(b, 1), Some(0), "B's sidestep_vrrp_master");
}

/// Balancer `i`'s count of advertisements refused for `reason`.
fn rejected(b: &Balancers, i: usize, reason: &str) -> u64 {
    let url = format!("http://{}:{MGMT_PORT}/metrics", ADDRS[i]);
    let text = b.net.curl(5, &[&url]).unwrap_or_default();
    let key = format!("sidestep_vrrp_adverts_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

/// keepalived at priority 200 preempts A: both balancers accept its advertisements (their
/// checksum form included) and become backups of it, and the client's entry for the VIP moves
/// to its host; when it stops (priority 0) A takes over again.
fn check_keepalived_as_master_with_sidestep_backups(b: &Balancers) {
    let ka = Keepalived::start(b, 200, 3);
    let peer = Host::Vrrp.addr().expect("has one").to_string();
    let peer_mac = Host::Vrrp.mac().expect("has one");
    b.eventually(
        "keepalived master, both balancers its backups",
        Duration::from_secs(30),
        || {
            let ok = ka.state()? == "MASTER"
                && role(b, 0)? == ("backup".into(), Some(peer.clone()))
                && role(b, 1)? == ("backup".into(), Some(peer.clone()))
                && b.net.neighbour_mac(Host::Client, VIP_WEB).ok()?? == peer_mac;
            ok.then_some(())
        },
    );
    assert_eq!(master_metric(b, 0), Some(0), "A's sidestep_vrrp_master");
    for i in 0..2 {
        assert_eq!(
            rejected(b, i, "checksum"),
            0,
            "balancer {i} refused checksums"
        );
    }
    let log = ka.log(b);
    assert!(
        !log.to_lowercase().contains("checksum"),
        "keepalived complained about a checksum:\n{log}"
    );
    ka.stop(b);
    let a = BALANCER.to_string();
    b.eventually(
        "A master again after keepalived left",
        Duration::from_secs(20),
        || (role(b, 0)? == ("master".into(), Some(a.clone()))).then_some(()),
    );
    b.eventually(
        "the client's entry for the VIP back at A",
        Duration::from_secs(10),
        || (b.net.neighbour_mac(Host::Client, VIP_WEB).ok()?? == BALANCER_MAC).then_some(()),
    );
}

/// New connections to the VIP from the client reach a backend, and the client's neighbour
/// entry for the VIP names A's NIC only.
/// The IPv6 VIP `web6` answered over IPv6 (`curl -6`), and the client's neighbour entry for it.
fn check_vip6_served_by(b: &Balancers, mac: &str) {
    for n in 0..4 {
        let body = b
            .net
            .curl(10, &[&format!("http://[{VIP_WEB6}]/")])
            .unwrap_or_else(|e| panic!("IPv6 connection {n}: {e}\n{}", b.diagnostics()));
        assert!(
            matches!(backend_of(&body), Some("be1" | "be2")),
            "IPv6 connection {n}: not a backend's page: {body:?}"
        );
    }
    b.eventually(
        "the client's entry for the IPv6 VIP names the master",
        Duration::from_secs(10),
        || {
            let got = b.net.neighbour_mac(Host::Client, VIP_WEB6).ok()??;
            (got == mac).then_some(())
        },
    );
}

fn check_the_vip_is_served_by_the_master(b: &Balancers) {
    for n in 0..10 {
        let body = b
            .net
            .curl(10, &[&format!("http://{VIP_WEB}/")])
            .unwrap_or_else(|e| panic!("connection {n}: {e}\n{}", b.diagnostics()));
        assert!(
            matches!(backend_of(&body), Some("be1" | "be2")),
            "connection {n}: not a backend's page: {body:?}"
        );
    }
    let mac = b
        .net
        .neighbour_mac(Host::Client, VIP_WEB)
        .expect("ip neigh");
    assert_eq!(
        mac.as_deref(),
        Some(BALANCER_MAC),
        "the client's entry for the VIP"
    );
    // Only the master answers neighbour solicitations for the IPv6 VIP.
    check_vip6_served_by(b, BALANCER_MAC);
}

/// A slow download through the VIP; A is killed mid-way; B takes over (its gratuitous ARP
/// moves the client's neighbour entry), keepalived stays backup, and the download completes
/// byte-exact (B picks the flow's backend by the VIP's consistent hash).
fn check_a_download_survives_the_master(b: &mut Balancers, ka: &Keepalived) {
    let out = b.net.dir().join("download.bin");
    let url = format!("http://{VIP_WEB}{BIG_FILE_PATH}");
    let out_arg = out.to_string_lossy().into_owned();
    b.net
        .spawn(
            Host::Client,
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
    b.eventually("the download is under way", Duration::from_secs(30), || {
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        (size > 1 << 20).then_some(())
    });
    let size_at_kill = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let killed = Instant::now();
    b.kill(0);
    let b2 = BALANCER2.to_string();
    b.eventually("B becomes master", Duration::from_secs(20), || {
        (role(b, 1)? == ("master".into(), Some(b2.clone()))).then_some(())
    });
    let takeover = killed.elapsed();
    b.eventually(
        "the client's entry for the VIP moves to B",
        Duration::from_secs(10),
        || {
            let mac = b.net.neighbour_mac(Host::Client, VIP_WEB).ok()??;
            (mac == BALANCER2_MAC).then_some(())
        },
    );
    let code = b
        .net
        .wait("download", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\n{}", b.diagnostics()));
    assert_eq!(
        code,
        Some(0),
        "the download failed after the master died: {}\n{}",
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
        "the master died too late to prove anything ({size_at_kill} bytes were there)"
    );
    assert_eq!(
        ka.state().as_deref(),
        Some("BACKUP"),
        "keepalived while B lives"
    );
    assert_eq!(master_metric(b, 1), Some(1), "B's sidestep_vrrp_master");
    // B's unsolicited advertisement moved the IPv6 VIP too.
    check_vip6_served_by(b, BALANCER2_MAC);
    // B's master-down interval is 3 s + skew (0.61 s); the rest is polling /status under TCG.
    assert!(
        takeover < Duration::from_secs(10),
        "B took over only after {takeover:?}"
    );
    eprintln!(
        "e2e_vrrp: A killed at {size_at_kill} bytes; B master (seen on /status) after {takeover:?}"
    );
}

/// With both balancers gone keepalived takes over and claims the VIP for its own MAC.
fn check_keepalived_takes_over_last(b: &mut Balancers, ka: &Keepalived) {
    let killed = Instant::now();
    b.kill(1);
    b.eventually("keepalived becomes master", Duration::from_secs(20), || {
        (ka.state()? == "MASTER").then_some(())
    });
    let peer_mac = Host::Vrrp.mac().expect("has one");
    b.eventually(
        "the client's entry for the VIP moves to keepalived's host",
        Duration::from_secs(10),
        || {
            let mac = b.net.neighbour_mac(Host::Client, VIP_WEB).ok()??;
            (mac == peer_mac).then_some(())
        },
    );
    eprintln!(
        "e2e_vrrp: keepalived master {:?} after B was killed",
        killed.elapsed()
    );
    // And it serves the VIP through its DSR rules: new connections answered by the backends.
    let url = format!("http://{VIP_WEB}/");
    let mut seen = Vec::new();
    for n in 0..10 {
        let body = b
            .net
            .curl(10, &[&url])
            .unwrap_or_else(|e| panic!("connection {n} through keepalived's host: {e}"));
        let be = backend_of(&body).unwrap_or("?").to_owned();
        assert!(matches!(be.as_str(), "be1" | "be2"), "{body}");
        seen.push(be);
    }
    eprintln!("e2e_vrrp: keepalived's host served 10 connections: {seen:?}");
}

#[test]
fn a_vrrp_group_with_keepalived_fails_over_without_breaking_a_download() {
    let (a, b) = images();
    let places = [
        Place {
            image: &a,
            tap: "tap0",
            mac: BALANCER_MAC,
            cpus: tests::qemu::test_cpus(),
        },
        Place {
            image: &b,
            tap: "tap1",
            mac: BALANCER2_MAC,
            cpus: tests::qemu::test_cpus(),
        },
    ];
    let started = Instant::now();
    let mut balancers = Balancers::boot(tests::helper_bins!(), &places, |_| Ok(()))
        .unwrap_or_else(|e| panic!("boot two balancers: {e}"));
    balancers
        .net
        .add_vrrp_peer()
        .expect("add keepalived's host");
    install_nftlb_dsr(&balancers);
    eprintln!(
        "e2e_vrrp: both balancers ready after {:?}",
        started.elapsed()
    );
    let ka = Keepalived::start(&balancers, 50, 3);
    check_roles_agree(&balancers, &ka);
    check_the_vip_is_served_by_the_master(&balancers);
    // keepalived again, at a priority above both balancers for a while.
    ka.stop(&balancers);
    check_keepalived_as_master_with_sidestep_backups(&balancers);
    let ka = Keepalived::start(&balancers, 50, 3);
    check_roles_agree(&balancers, &ka);
    check_the_vip_is_served_by_the_master(&balancers);
    check_a_download_survives_the_master(&mut balancers, &ka);
    check_keepalived_takes_over_last(&mut balancers, &ka);
    ka.stop(&balancers);
}

/// VRRP version 2 against keepalived's `vrrp_version 2`: one image (priority 100) with
/// keepalived at 150, then at 50.
#[test]
fn vrrp_version_2_interoperates_with_keepalived() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-images/vrrp-setup");
    std::fs::create_dir_all(&dir).expect("create the config directory");
    let path = dir.join("vrrp-v2.toml");
    std::fs::write(&path, config_text(BALANCER, 100, 2)).expect("write a config");
    let image = Image::build(&path).unwrap_or_else(|e| panic!("build vrrp-v2: {e}"));
    let places = [Place {
        image: &image,
        tap: "tap0",
        mac: BALANCER_MAC,
        cpus: tests::qemu::test_cpus(),
    }];
    let mut b = Balancers::boot(tests::helper_bins!(), &places, |_| Ok(()))
        .unwrap_or_else(|e| panic!("boot the balancer: {e}"));
    b.net.add_vrrp_peer().expect("add keepalived's host");
    let ka = Keepalived::start(&b, 150, 2);
    let peer = Host::Vrrp.addr().expect("has one").to_string();
    b.eventually(
        "keepalived master, the balancer its backup",
        Duration::from_secs(30),
        || {
            let ok =
                ka.state()? == "MASTER" && role(&b, 0)? == ("backup".into(), Some(peer.clone()));
            ok.then_some(())
        },
    );
    let accepted = status(&b, 0)
        .and_then(|s| s.vrrp)
        .map(|v| v.master_priority);
    assert_eq!(
        accepted,
        Some(150),
        "the master's priority as the balancer saw it"
    );
    for reason in ["checksum", "version", "interval", "auth_type"] {
        assert_eq!(rejected(&b, 0, reason), 0, "adverts refused for {reason}");
    }
    let log = ka.log(&b);
    assert!(
        !log.to_lowercase().contains("checksum"),
        "keepalived complained about a checksum:\n{log}"
    );
    ka.stop(&b);
    let own = BALANCER.to_string();
    b.eventually(
        "the balancer master after keepalived left",
        Duration::from_secs(20),
        || (role(&b, 0)? == ("master".into(), Some(own.clone()))).then_some(()),
    );
    let ka = Keepalived::start(&b, 50, 2);
    b.eventually(
        "keepalived at 50 stays backup",
        Duration::from_secs(30),
        || (ka.state()? == "BACKUP").then_some(()),
    );
    check_the_vip_is_served_by_the_master(&b);
    assert_eq!(role(&b, 0).map(|r| r.0).as_deref(), Some("master"));
    ka.stop(&b);
}
