//! Scale-out on the namespace network: two Sidestep images side by side on the segment
//! ([`crate::fixture::Balancers`]) announce their VIPs by BGP to BIRD 2 on the router, which
//! installs each VIP with both balancers as next hops (`merge paths`) and spreads flows over them
//! by the layer-4 multipath hash; [`Host::Wan`] is the client behind the router. Each
//! balancer also has an IPv6 address on the segment and announces the IPv6 VIP `web6` as a
//! /128 over multiprotocol BGP on the same IPv4 session (BIRD's `ipv6` channel).
//!
//! What the e2e test `e2e_bgp` and `qemu/demo` both need lives here, so that the demo shows
//! exactly what the test checks: the balancers' config, BIRD's config and start, the router's
//! table, the balancers' `/metrics`, and a slow download whose balancer is killed mid-way
//! ([`download_through_a_kill`]). Nothing here panics on what the network or the balancers
//! answer: the test turns an [`Error`] into a failure with its diagnostics, the demo prints it.

use crate::fixture::{Balancers, Place};
use crate::netns::{
    self, big_file_content, DemoNet, Host, BALANCER, BALANCER2, BALANCER2_MAC, BALANCER_MAC,
    BIG_FILE_LEN, BIG_FILE_PATH, GATEWAY, VIP_WEB3,
};
use crate::qemu::Image;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The management port of both balancers.
pub const MGMT_PORT: u16 = 9100;
/// The balancers' AS.
pub const LB_AS: u32 = 65010;
/// The router's AS.
pub const RT_AS: u32 = 65000;
/// The hold time both sides propose: long, so that only BFD (100 ms x 3, on both balancers and
/// BIRD) can explain a dead balancer's routes going within a second or two.
pub const HOLD_TIME: u16 = 9;
/// How soon after a balancer's death the router must have dropped its route: BFD's detection
/// time (0.3 s) plus slack for a loaded machine, well under [`HOLD_TIME`].
pub const BFD_DETECTION: Duration = Duration::from_secs(3);
/// The balancers' addresses, in boot order (balancer 0 is "A", 1 is "B").
pub const ADDRS: [Ipv4Addr; 2] = [BALANCER, BALANCER2];
/// The router's IPv6 address on the segment (the balancers' `address6` prefix, so that BIRD
/// takes their IPv6 next hops as directly connected).
pub use crate::netns::GATEWAY6;
/// The IPv6 VIP `web6`, announced as a /128 by both balancers.
pub use crate::netns::VIP_WEB6;
/// The balancers' `interface.address6`, in boot order: fd00:77::N for 10.77.0.N.
pub const ADDRS6: [Ipv6Addr; 2] = [address6_of(BALANCER), address6_of(BALANCER2)];

/// The IPv6 address of the balancer at `address`: fd00:77:: with the same last byte.
pub const fn address6_of(address: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, address.octets()[3] as u16)
}

/// How long a route change may take to show in the router's table: the balancer sends it
/// within a second; the rest is slack for a loaded machine.
pub const ROUTE_CHANGE: Duration = Duration::from_secs(5);
/// Rate of the download a balancer dies under: about 24 s for the 24 MiB file.
const SLOW_RATE: &str = "1M";

/// What went wrong; each message says what was expected and what was seen.
#[derive(Debug)]
pub enum Error {
    /// A command on the network could not run or failed.
    Network(netns::Error),
    /// A condition did not come true in time.
    NotWithin {
        /// The condition.
        what: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// A balancer's `/metrics` lacks a sample (or its value is not a number).
    NoSample {
        /// The balancer's index.
        balancer: usize,
        /// The sample's name with labels.
        sample: String,
        /// The whole answer.
        metrics: String,
    },
    /// The download did not behave as the scenario needs; the message says how.
    Download(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Network(e) => write!(f, "{e}"),
            Error::NotWithin { what, timeout } => write!(f, "{what}: not within {timeout:?}"),
            Error::NoSample {
                balancer,
                sample,
                metrics,
            } => write!(
                f,
                "no {sample} in balancer {balancer}'s metrics (is it running?):\n{metrics}"
            ),
            Error::Download(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<netns::Error> for Error {
    fn from(e: netns::Error) -> Error {
        Error::Network(e)
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// What differs between the balancers' configs, and between the test's and the demo's.
pub struct BalancerConfig<'a> {
    /// `interface.address`.
    pub address: Ipv4Addr,
    /// Who writes the file, for its first comment line.
    pub written_by: &'a str,
    /// `management.pubkey` (for signed pushes), if any.
    pub pubkey: Option<&'a str>,
    /// A further BGP peer (address, AS) besides the router.
    pub extra_peer: Option<(Ipv4Addr, u32)>,
    /// Also VIP `web-l3` ([`VIP_WEB3`], dsr-l3 to be3 behind the router).
    pub dsr_l3: bool,
}

/// The config (version 1) of one balancer: a maglev dsr-l2 VIP `web` over be1 and be2 with
/// health checks, the IPv6 VIP `web6` likewise over their IPv6 addresses,
/// management open to the segment client, `[bgp]` AS [`LB_AS`] with the router as peer and a
/// [`HOLD_TIME`] hold time.
pub fn config_text(c: &BalancerConfig<'_>) -> String {
    let client = Host::Client.addr().expect("has one");
    let address = c.address;
    let address6 = address6_of(address);
    let pubkey = c
        .pubkey
        .map(|k| format!("pubkey = \"{k}\"\n"))
        .unwrap_or_default();
    let extra_peer = c
        .extra_peer
        .map(|(a, asn)| format!("\n[[bgp.peer]]\naddress = \"{a}\"\nasn = {asn}\n"))
        .unwrap_or_default();
    let web3 = if c.dsr_l3 {
        format!(
            r#"
# No health check: be3 is behind the router, the VIP is announced while the balancer runs.
[[vip]]
name = "web-l3"
address = "{VIP_WEB3}"
port = 80
protocol = "tcp"
mode = "dsr-l3"
scheduler = "maglev"

[[vip.backend]]
name = "be3"
address = "{be3}"
weight = 1
"#,
            be3 = Host::Be3.addr().expect("has one")
        )
    } else {
        String::new()
    };
    format!(
        r#"# Written by {written_by}: one of two balancers behind the router.
version = 1

[interface]
address = "{address}/24"
gateway = "{GATEWAY}"
address6 = "{address6}/64"

[management]
port = {MGMT_PORT}
allow = ["{client}/32"]
{pubkey}
[bgp]
asn = {LB_AS}
hold_time = {HOLD_TIME}
bfd = true

[[bgp.peer]]
address = "{GATEWAY}"
asn = {RT_AS}
{extra_peer}
{web_vip}
# Announced over MP-BGP as a /128 with address6 as next hop, while a backend is up.
{web6_vip}
{web3}"#,
        web_vip = crate::fixture::group_web_vip(),
        web6_vip = crate::fixture::group_web6_vip(),
        written_by = c.written_by,
    )
}

/// The two balancers' places on the segment: `images[0]` at [`BALANCER`] on `tap0`,
/// `images[1]` at [`BALANCER2`] on `tap1`.
pub fn places(images: &[Image; 2]) -> [Place<'_>; 2] {
    [
        Place {
            image: &images[0],
            tap: "tap0",
            mac: BALANCER_MAC,
            cpus: crate::qemu::test_cpus(),
        },
        Place {
            image: &images[1],
            tap: "tap1",
            mac: BALANCER2_MAC,
            cpus: crate::qemu::test_cpus(),
        },
    ]
}

/// BIRD's control socket in the run's directory.
fn bird_socket(net: &DemoNet) -> String {
    net.dir().join("bird.ctl").to_string_lossy().into_owned()
}

/// BIRD on the router, its files in the run's directory: a session with each balancer
/// (passive and active) carrying IPv4 and IPv6 unicast, their IPv4 routes into the kernel table
/// with both next hops merged, the layer-4 multipath hash. The router's segment address
/// [`GATEWAY6`] (from `DemoNet`) puts the balancers' IPv6 next hops on a directly connected
/// network, the only kind BIRD takes.
pub fn start_bird(net: &DemoNet) -> netns::Result<()> {
    net.run_ok(
        Host::Rt,
        &[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv6.fib_multipath_hash_policy=1",
        ],
    )?;
    let conf = net.dir().join("bird.conf");
    let peers: String = ADDRS
        .iter()
        .enumerate()
        .map(|(i, a)| format!("protocol bgp lb{i} from balancer {{ neighbor {a} as {LB_AS}; }}\n"))
        .collect();
    let text = format!(
        r#"# Written by tests/src/scaleout.rs: the router in front of the balancers.
router id {GATEWAY};
protocol device {{ scan time 1; }}
protocol kernel {{
    ipv4 {{ import none; export all; }};
    merge paths on;
}}
protocol kernel kernel6 {{
    ipv6 {{ import none; export all; }};
    merge paths on;
}}
protocol bfd {{
    interface "*" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};
}}
template bgp balancer {{
    local {GATEWAY} as {RT_AS};
    hold time {HOLD_TIME};
    bfd on;
    keepalive time 1;
    connect retry time 1;
    error wait time 1, 5;
    ipv4 {{ import all; export none; }};
    ipv6 {{ import all; export none; }};
}}
{peers}"#
    );
    net.write_file(&conf, text.as_bytes())?;
    let conf = conf.to_string_lossy().into_owned();
    let pid = net.dir().join("bird.pid").to_string_lossy().into_owned();
    let sock = bird_socket(net);
    net.spawn(
        Host::Rt,
        "bird",
        &["bird", "-f", "-c", &conf, "-s", &sock, "-P", &pid],
    )?;
    Ok(())
}

/// `birdc ARGS...` on the router: what it printed. Its exit status is not an answer
/// ("Network not found", for a missing route, exits non-zero too).
pub fn birdc(net: &DemoNet, args: &[&str]) -> Result<String> {
    let sock = bird_socket(net);
    let mut argv = vec!["birdc", "-s", sock.as_str()];
    argv.extend_from_slice(args);
    Ok(net.run(Host::Rt, &argv)?.stdout)
}

/// How many of BIRD's sessions with the balancers are Established.
pub fn bird_sessions_established(net: &DemoNet) -> Result<usize> {
    let out = birdc(net, &["show", "protocols"])?;
    Ok(out
        .lines()
        .filter(|l| l.starts_with("lb") && l.contains("Established"))
        .count())
}

/// The next hops of the router's kernel route to `vip`, sorted (none without a route).
pub fn next_hops(net: &DemoNet, vip: Ipv4Addr) -> Result<Vec<Ipv4Addr>> {
    Ok(hops_via(&net.route_of(vip)?))
}

/// The next hops of BIRD's routes to `vip` (IPv6: BIRD's table, not the kernel's), sorted
/// (none without a route).
pub fn next_hops6(net: &DemoNet, vip: Ipv6Addr) -> Result<Vec<Ipv6Addr>> {
    let out = birdc(net, &["show", "route", "for", &vip.to_string()])?;
    // Only routes for the /128 itself: `for` would also match a shorter covering prefix.
    if !out.contains(&format!("{vip}/128")) {
        return Ok(Vec::new());
    }
    Ok(hops_via(&out))
}

/// The addresses after each "via" in `route` (as `ip route` and `birdc` print them), sorted.
fn hops_via<A: std::str::FromStr + Ord>(route: &str) -> Vec<A> {
    let words: Vec<&str> = route.split_whitespace().collect();
    let mut hops: Vec<A> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    hops.sort();
    hops
}

/// Waits (up to `timeout`) until BIRD's routes to `vip` go over exactly `hops` (sorted).
pub fn wait_for_hops6(
    net: &DemoNet,
    what: &str,
    vip: Ipv6Addr,
    hops: &[Ipv6Addr],
    timeout: Duration,
) -> Result<Duration> {
    wait_for_exactly(what, timeout, hops, || next_hops6(net, vip))
}

/// Waits (up to `timeout`) until `current` gives exactly `hops`; returns how long it took.
fn wait_for_exactly<A: PartialEq>(
    what: &str,
    timeout: Duration,
    hops: &[A],
    current: impl Fn() -> Result<Vec<A>>,
) -> Result<Duration> {
    let started = Instant::now();
    wait_until(what, timeout, || Ok((current()? == hops).then_some(())))?;
    Ok(started.elapsed())
}

/// Polls `probe` every 100 ms until it gives `Some(value)`; an error of `probe` ends it at once.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::NotWithin {
                what: what.to_owned(),
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (up to `timeout`) until the router's route to `vip` goes over exactly `hops`
/// (sorted); returns how long it took.
pub fn wait_for_hops(
    net: &DemoNet,
    what: &str,
    vip: Ipv4Addr,
    hops: &[Ipv4Addr],
    timeout: Duration,
) -> Result<Duration> {
    wait_for_exactly(what, timeout, hops, || next_hops(net, vip))
}

/// `/metrics` of balancer `i`, read from the segment client.
pub fn metrics(net: &DemoNet, i: usize) -> Result<String> {
    let url = format!("http://{}:{MGMT_PORT}/metrics", ADDRS[i]);
    Ok(net.curl(10, &[&url])?)
}

/// The value of `sample` (full name with labels) in a `/metrics` text.
pub fn sample_of(metrics: &str, sample: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
}

/// One sample of balancer `i`'s metrics, by its full name with labels.
pub fn metric(net: &DemoNet, i: usize, sample: &str) -> Result<u64> {
    let text = metrics(net, i)?;
    sample_of(&text, sample).ok_or_else(|| Error::NoSample {
        balancer: i,
        sample: sample.to_owned(),
        metrics: text,
    })
}

/// `sidestep_vip_packets_total{vip="web"}` of balancer `i`.
pub fn vip_packets(net: &DemoNet, i: usize) -> Result<u64> {
    metric(net, i, "sidestep_vip_packets_total{vip=\"web\"}")
}

/// `sidestep_vip_packets_total{vip="web"}` of both balancers, read at the same time (a read
/// takes long on a loaded machine, and the download's progress is measured between two).
pub fn vip_packets_both(net: &DemoNet) -> Result<[u64; 2]> {
    std::thread::scope(|s| {
        let a = s.spawn(|| vip_packets(net, 0));
        let b = vip_packets(net, 1);
        let a = a
            .join()
            .map_err(|_| Error::Download("reading A's metrics panicked".into()))?;
        Ok([a?, b?])
    })
}

/// What [`download_through_a_kill`] measured.
#[derive(Debug)]
pub struct KillReport {
    /// The balancer that carried the download and was killed.
    pub carrier: usize,
    /// Its QEMU's PID.
    pub pid: u32,
    /// Each balancer's VIP packets over the seconds (three, or six) that found the carrier.
    pub rise: [u64; 2],
    /// Bytes received when it was killed.
    pub size_at_kill: u64,
    /// Time from the download's start to the kill.
    pub killed_after: Duration,
    /// Of that, the time spent measuring which balancer carried it.
    pub measured: Duration,
    /// Time from the kill until the router's route to the VIP went over the other balancer
    /// only (BFD, else BIRD's hold timer).
    pub route_gone_after: Duration,
    /// The download's whole duration.
    pub took: Duration,
    /// Bytes received in all.
    pub received: usize,
    /// Whether they are exactly the file the backends serve.
    pub intact: bool,
}

/// A slow download of the big file from [`Host::Wan`] through `vip` (`web`, over be1 and be2);
/// the balancer carrying it (found from both balancers' metrics: the one whose VIP count rises,
/// the client's ACKs, while the other's does not) is killed by its QEMU's PID; the route to
/// the VIP is waited for to go over the other balancer only; then the download is waited for
/// (it must exit 0). Whether it is byte-exact is in the report, for the caller to judge.
pub fn download_through_a_kill(b: &mut Balancers, vip: Ipv4Addr) -> Result<KillReport> {
    let out = b.net.dir().join("download.bin");
    let url = format!("http://{vip}{BIG_FILE_PATH}");
    let out_arg = out.to_string_lossy().into_owned();
    b.net.spawn(
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
    )?;
    let size = || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    wait_until("the download is under way", Duration::from_secs(30), || {
        Ok((size() > 1 << 19).then_some(()))
    })?;
    let measuring = Instant::now();
    let first = vip_packets_both(&b.net)?;
    let mut rise = [0, 0];
    // Three seconds, or six if the download paused in the first three (curl's rate limit and a
    // loaded host's scheduling can hold a slow download for a while).
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(3));
        let second = vip_packets_both(&b.net)?;
        rise = [
            second[0].saturating_sub(first[0]),
            second[1].saturating_sub(first[1]),
        ];
        if rise.iter().any(|&r| r >= 3) {
            break;
        }
    }
    let carrier = if rise[0] > rise[1] { 0 } else { 1 };
    let other = 1 - carrier;
    if rise[carrier] < 3 || rise[other] != 0 {
        return Err(Error::Download(format!(
            "one balancer should carry the download: VIP packets in {:.1?} {rise:?}",
            measuring.elapsed()
        )));
    }
    let size_at_kill = size();
    let measured = measuring.elapsed();
    let killed_after = started.elapsed();
    let pid = b
        .vm(carrier)
        .map(|vm| vm.pid())
        .ok_or_else(|| Error::Download(format!("balancer {carrier} is not running")))?;
    b.kill(carrier);
    let killed = Instant::now();
    wait_for_hops(
        &b.net,
        "the router drops the dead balancer's route (BFD, else BIRD's hold timer)",
        vip,
        &[ADDRS[other]],
        Duration::from_secs(u64::from(HOLD_TIME) + 10),
    )?;
    let route_gone_after = killed.elapsed();
    let code = b.net.wait("download", Duration::from_secs(120))?;
    if code != Some(0) {
        return Err(Error::Download(format!(
            "the download failed after its balancer died (exit {code:?}): {}",
            b.net.log("download")
        )));
    }
    let got = std::fs::read(&out)
        .map_err(|e| Error::Download(format!("cannot read {}: {e}", out.display())))?;
    Ok(KillReport {
        carrier,
        pid,
        rise,
        size_at_kill,
        killed_after,
        measured,
        route_gone_after,
        took: started.elapsed(),
        received: got.len(),
        intact: got.len() == BIG_FILE_LEN && got == big_file_content(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_configs_are_valid_and_differ_only_in_the_address() {
        for dsr_l3 in [false, true] {
            let text = |address| {
                config_text(&BalancerConfig {
                    address,
                    written_by: "a test",
                    pubkey: None,
                    extra_peer: None,
                    dsr_l3,
                })
            };
            let (a, b) = (text(BALANCER), text(BALANCER2));
            let a_cfg = boot::config_file::parse(&a).unwrap_or_else(|e| panic!("{e}\n{a}"));
            let b_cfg = boot::config_file::parse(&b).unwrap_or_else(|e| panic!("{e}\n{b}"));
            assert_eq!(a_cfg.vips, b_cfg.vips);
            assert_eq!(a_cfg.vips.len(), 2 + usize::from(dsr_l3));
            assert_eq!(a_cfg.interface.address6.map(|p| p.address), Some(ADDRS6[0]));
            let a = a
                .replace("10.77.0.2/24", "10.77.0.3/24")
                .replace("fd00:77::2/64", "fd00:77::3/64");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn an_extra_peer_and_a_key_are_written() {
        let text = config_text(&BalancerConfig {
            address: BALANCER,
            written_by: "a test",
            pubkey: Some(&boot::signing::SigningKey::generate().public_base64()),
            extra_peer: Some((Ipv4Addr::new(10, 77, 0, 10), 65001)),
            dsr_l3: false,
        });
        assert!(
            text.contains("address = \"10.77.0.10\"\nasn = 65001"),
            "{text}"
        );
        assert!(text.contains("pubkey = \""), "{text}");
        boot::config_file::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }

    #[test]
    fn samples_are_found_by_full_name() {
        let text = "a{x=\"1\"} 5\na{x=\"10\"} 7\n";
        assert_eq!(sample_of(text, "a{x=\"1\"}"), Some(5));
        assert_eq!(sample_of(text, "a{x=\"10\"}"), Some(7));
        assert_eq!(sample_of(text, "a{x=\"2\"}"), None);
    }
}
