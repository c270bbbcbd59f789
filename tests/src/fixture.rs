//! The end-to-end fixture: the namespace network of [`crate::netns`] with a balancer in its
//! place, either the image booted under QEMU on the network's TAP or the stand-in `stub-lb`.
//!
//! The datapath tests, the control-plane tests and `qemu/demo` all set up through [`Fixture`],
//! so they boot the image the same way, and one definition ([`Fixture::watch_tap`]) says what
//! "a response crossed the balancer" means. Images are built by the caller (once per test
//! binary, in a `OnceLock`) and lent to each boot. A fixture holds the lock of
//! [`crate::one_at_a_time`] for its whole life, so the tests of one binary boot one VM at a time.
//!
//! [`Balancers`] is the scale-out form: several images side by side on the segment, each on a
//! TAP of its own, with [`Host::Wan`] as a client behind the router, whose route to a VIP spreads
//! over the balancers (ECMP). One of them can be killed mid-test ([`Balancers::kill`]).

use crate::netns::{self, Captured, DemoNet, HelperBins, Host, Topology, BALANCER_MAC};
use crate::qemu::{Image, NicModel, Vm};
use boot::qemu::{Firmware, Net};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

/// The balancer's TAP device in the lb namespace.
pub const TAP: &str = "tap0";

/// The IPv6 VIP `web6` every balancer of a group serves, as [`group_web_vip`] over be1 and be2's
/// IPv6 addresses, with health checks over IPv6.
pub fn group_web6_vip() -> String {
    let be = |h: netns::Host| IpAddr::from(h.addr6().expect("has one"));
    group_vip(
        "web6",
        netns::VIP_WEB6.into(),
        be(netns::Host::Be1),
        be(netns::Host::Be2),
    )
}

/// The `web` VIP every balancer of a group serves (the BGP and VRRP tests, the demo): maglev,
/// so that any of them sends a flow to the same backend, over be1 and be2 with TCP health
/// checks, as config-file text.
pub fn group_web_vip() -> String {
    let be = |h: netns::Host| IpAddr::from(h.addr().expect("has one"));
    group_vip(
        "web",
        netns::VIP_WEB.into(),
        be(netns::Host::Be1),
        be(netns::Host::Be2),
    )
}

/// A group's VIP `name` at `vip` port 80: maglev over `be1` and `be2`, health-checked.
fn group_vip(name: &str, vip: IpAddr, be1: IpAddr, be2: IpAddr) -> String {
    format!(
        r#"[[vip]]
name = "{name}"
address = "{vip}"
port = 80
protocol = "tcp"
mode = "dsr-l2"
scheduler = "maglev"

[vip.health]
kind = "tcp"
port = 80
interval_ms = 500
timeout_ms = 300
rise = 2
fall = 2

[[vip.backend]]
name = "be1"
address = "{be1}"
weight = 1

[[vip.backend]]
name = "be2"
address = "{be2}"
weight = 1
"#
    )
}

/// `tests/configs/e2e.toml`: the services the network of [`crate::netns`] is built for.
pub fn e2e_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/e2e.toml")
}

/// `tests/configs/realnet.toml`: the same services for [`Topology::NarrowLink`].
pub fn realnet_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/realnet.toml")
}

/// Why a fixture could not be set up.
pub enum Error {
    /// Building the network, or something run on it before the boot, failed.
    Network(netns::Error),
    /// QEMU did not start, or the image did not print `ready` in time; the message has its
    /// console.
    Boot(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Network(e) => write!(f, "cannot build the e2e network: {e}"),
            Error::Boot(e) => write!(f, "the image did not boot: {e}"),
        }
    }
}

// Debug is what `expect` prints: keep it the readable message.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

impl From<netns::Error> for Error {
    fn from(e: netns::Error) -> Error {
        Error::Network(e)
    }
}

/// What sits in the balancer's place.
enum Balancer {
    Image(Vm),
    Stub,
}

/// A network with a balancer on it. Fields drop in order: the balancer, then the network,
/// then the lock that keeps tests one at a time.
pub struct Fixture {
    balancer: Balancer,
    /// The network, its hosts and their servers.
    pub net: DemoNet,
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// What crossed the balancer's TAP while [`Fixture::watch_tap`] ran some traffic: `tcpdump -e`
/// lines of IPv4 and IPv6 packets only (the balancer's own ARP replies for a VIP carry the VIP
/// as sender address, and are neither requests nor responses). ICMPv6 from an IPv6 VIP is not a
/// response either: the balancer itself answers neighbour solicitations and echo requests for
/// its VIPs, from the VIP.
pub struct TapTraffic {
    /// The capture's interface, namespace and filter, for messages.
    pub what: String,
    /// Packets to a VIP sent to the balancer's MAC: the requests it received.
    pub requests: Vec<String>,
    /// Packets from a VIP: responses that passed the balancer, which DSR never does.
    pub responses: Vec<String>,
}

impl Fixture {
    /// Builds the network, runs `before_boot` on it (say, to start a config server), then boots
    /// `image` (BIOS) in the balancer's place and waits for `ready`.
    pub fn boot(
        bins: HelperBins,
        image: &Image,
        before_boot: impl FnOnce(&DemoNet) -> netns::Result<()>,
    ) -> Result<Fixture, Error> {
        Fixture::boot_on(bins, Topology::Segment, image, before_boot)
    }

    /// [`Fixture::boot`] on the network of `topology`, with the NIC of `SIDESTEP_NIC`.
    pub fn boot_on(
        bins: HelperBins,
        topology: Topology,
        image: &Image,
        before_boot: impl FnOnce(&DemoNet) -> netns::Result<()>,
    ) -> Result<Fixture, Error> {
        Fixture::boot_nic(bins, topology, NicModel::from_env(), image, before_boot)
    }

    /// [`Fixture::boot_on`] with the balancer's NIC model `nic`.
    pub fn boot_nic(
        bins: HelperBins,
        topology: Topology,
        nic: NicModel,
        image: &Image,
        before_boot: impl FnOnce(&DemoNet) -> netns::Result<()>,
    ) -> Result<Fixture, Error> {
        Fixture::boot_cpus(
            bins,
            topology,
            nic,
            crate::qemu::test_cpus(),
            image,
            before_boot,
        )
    }

    /// [`Fixture::boot_nic`] on `cpus` virtual CPUs: a poll loop and a NIC queue on each.
    pub fn boot_cpus(
        bins: HelperBins,
        topology: Topology,
        nic: NicModel,
        cpus: u32,
        image: &Image,
        before_boot: impl FnOnce(&DemoNet) -> netns::Result<()>,
    ) -> Result<Fixture, Error> {
        let lock = crate::one_at_a_time();
        let net = DemoNet::create_with(bins, topology)?;
        before_boot(&net)?;
        net.add_tap_queues(TAP, BALANCER_MAC, crate::qemu::tap_queues(nic, cpus))?;
        let vm = Vm::spawn_with_cpus(
            image,
            Firmware::Bios,
            nic,
            Net::Tap(TAP.into()),
            Some(BALANCER_MAC),
            Some(&net.lb_netns()),
            cpus,
        )
        .and_then(Vm::until_ready)
        .map_err(Error::Boot)?;
        Ok(Fixture {
            balancer: Balancer::Image(vm),
            net,
            _one_at_a_time: lock,
        })
    }

    /// The network with `stub-lb` in the balancer's place: proves the network, servers and
    /// assertions themselves.
    pub fn stub(bins: HelperBins) -> Result<Fixture, Error> {
        let lock = crate::one_at_a_time();
        let net = DemoNet::create(bins)?;
        net.start_stub_balancer()?;
        Ok(Fixture {
            balancer: Balancer::Stub,
            net,
            _one_at_a_time: lock,
        })
    }

    /// The booted image, if the balancer is one (not the stub).
    pub fn vm(&self) -> Option<&Vm> {
        match &self.balancer {
            Balancer::Image(vm) => Some(vm),
            Balancer::Stub => None,
        }
    }

    /// The image's serial console so far; empty for the stub.
    pub fn serial_log(&self) -> String {
        self.vm().map(Vm::serial_log).unwrap_or_default()
    }

    /// Serial console and helper logs, for failure messages.
    pub fn diagnostics(&self) -> String {
        let console = match self.vm() {
            Some(vm) => format!("--- serial console ---\n{}", vm.serial_log()),
            None => String::new(),
        };
        format!("{console}\n{}", self.net.all_logs())
    }

    /// Polls `probe` every 100 ms until it gives `Some`; panics with [`Fixture::diagnostics`]
    /// after `timeout`.
    pub fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl FnMut() -> Option<T>,
    ) -> T {
        eventually(what, timeout, || self.diagnostics(), probe)
    }

    /// `GET http://ADDR:PORT/PATH` from the client (ADDR in brackets if IPv6): the body; panics
    /// with the diagnostics if it fails.
    pub fn http_get(&self, addr: impl Into<IpAddr>, port: u16, path: &str) -> String {
        let url = format!("http://{}{path}", SocketAddr::new(addr.into(), port));
        self.net
            .curl(10, &[&url])
            .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", self.diagnostics()))
    }

    /// A new connection to `addr:port` from the client: the backend that answered; panics with
    /// the diagnostics if the answer is not a backend's page.
    pub fn backend_answering(&self, addr: impl Into<IpAddr>, port: u16) -> String {
        let addr = addr.into();
        let body = self.http_get(addr, port, "/");
        match backend_of(&body) {
            Some(name) => name.to_owned(),
            None => panic!(
                "http://{}/ is not a backend page: {body:?}\n{}",
                SocketAddr::new(addr, port),
                self.diagnostics()
            ),
        }
    }

    /// `count` new connections to `addr:port`; the backends that answered, in order.
    pub fn backends_answering(
        &self,
        addr: impl Into<IpAddr>,
        port: u16,
        count: usize,
    ) -> Vec<String> {
        let addr = addr.into();
        (0..count)
            .map(|_| self.backend_answering(addr, port))
            .collect()
    }

    /// Runs `traffic` while capturing the balancer's TAP, and sorts what crossed it by `vips`
    /// (IPv4, IPv6 or both).
    pub fn watch_tap<T, V: Into<IpAddr> + Copy>(
        &self,
        vips: &[V],
        traffic: impl FnOnce() -> T,
    ) -> Result<(T, TapTraffic), netns::Error> {
        let cap = self.net.capture(Host::Lb, TAP, TAP_FILTER)?;
        let result = traffic();
        Ok((result, sort_capture(cap.finish()?, BALANCER_MAC, vips)?))
    }
}

/// What a capture on a balancer's TAP keeps: IP of both families.
const TAP_FILTER: &str = "ip or ip6";

/// Sorts what a capture of the TAP of the balancer with `mac` saw by `vips`.
fn sort_capture<V: Into<IpAddr> + Copy>(
    seen: Captured,
    mac: &str,
    vips: &[V],
) -> netns::Result<TapTraffic> {
    let vips: Vec<IpAddr> = vips.iter().map(|&v| v.into()).collect();
    let requests = seen.matching(&format!("ether dst {mac} and ({})", netns::to_any(&vips)))?;
    let responses = seen.matching(&response_filter(&vips))?;
    Ok(TapTraffic {
        what: seen.what,
        requests,
        responses,
    })
}

/// A tcpdump filter for responses from `vips` (see [`TapTraffic`]): anything from an IPv4 VIP,
/// anything but ICMPv6 from an IPv6 VIP.
fn response_filter(vips: &[IpAddr]) -> String {
    vips.iter()
        .map(|vip| match vip {
            IpAddr::V4(v4) => format!("src host {v4}"),
            IpAddr::V6(v6) => format!("(src host {v6} and not icmp6)"),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The backend name in a `backend=NAME ...` body (the backends' index page and their UDP echo).
pub fn backend_of(body: &str) -> Option<&str> {
    body.trim()
        .strip_prefix("backend=")
        .and_then(|rest| rest.split_whitespace().next())
}

/// Polls `probe` every 100 ms until it gives `Some`; panics with `diagnostics()` after `timeout`.
fn eventually<T>(
    what: &str,
    timeout: Duration,
    diagnostics: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}\n{}",
            diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One balancer of [`Balancers`]: the image to boot, its TAP and its NIC's MAC.
pub struct Place<'a> {
    /// The image (its config names the balancer's address).
    pub image: &'a Image,
    /// The TAP device in the lb namespace.
    pub tap: &'a str,
    /// The MAC of its NIC.
    pub mac: &'a str,
    /// Its virtual CPUs (a poll loop and, on virtio-net, a queue pair on each).
    pub cpus: u32,
}

/// Several balancers on the network, with [`Host::Wan`] added. Fields drop in order: the
/// balancers, then the network, then the lock.
pub struct Balancers {
    vms: Vec<Option<Vm>>,
    /// Each balancer's TAP and MAC, in boot order.
    taps: Vec<(String, String)>,
    /// The network, its hosts and their servers.
    pub net: DemoNet,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Balancers {
    /// Builds the network with the wan client, runs `before_boot` on it, then boots every
    /// place's image (BIOS) side by side and waits until each prints `ready`.
    pub fn boot(
        bins: HelperBins,
        places: &[Place<'_>],
        before_boot: impl FnOnce(&DemoNet) -> netns::Result<()>,
    ) -> Result<Balancers, Error> {
        let lock = crate::one_at_a_time();
        let mut net = DemoNet::create(bins)?;
        net.add_wan_client()?;
        before_boot(&net)?;
        let mut vms = Vec::with_capacity(places.len());
        for p in places {
            let nic = NicModel::from_env();
            net.add_tap_queues(p.tap, p.mac, crate::qemu::tap_queues(nic, p.cpus))?;
            let vm = Vm::spawn_with_cpus(
                p.image,
                Firmware::Bios,
                nic,
                Net::Tap(p.tap.into()),
                Some(p.mac),
                Some(&net.lb_netns()),
                p.cpus,
            )
            .map_err(Error::Boot)?;
            vms.push(Some(vm));
        }
        // Booted together: under TCG each boot takes long, and they overlap.
        for vm in vms.iter_mut().flatten() {
            vm.wait_for("ready", crate::qemu::BOOT_TIMEOUT)
                .map_err(Error::Boot)?;
        }
        Ok(Balancers {
            vms,
            taps: places
                .iter()
                .map(|p| (p.tap.to_owned(), p.mac.to_owned()))
                .collect(),
            net,
            _one_at_a_time: lock,
        })
    }

    /// Balancer `i`, unless it was killed.
    pub fn vm(&self, i: usize) -> Option<&Vm> {
        self.vms.get(i).and_then(Option::as_ref)
    }

    /// Kills balancer `i`'s QEMU (by PID), as a crash or power loss would.
    pub fn kill(&mut self, i: usize) {
        if let Some(slot) = self.vms.get_mut(i) {
            drop(slot.take());
        }
    }

    /// Runs `traffic` while capturing every balancer's TAP, and sorts what crossed each (in
    /// boot order) by `vips`, as [`Fixture::watch_tap`] does for one.
    pub fn watch_taps<T, V: Into<IpAddr> + Copy>(
        &self,
        vips: &[V],
        traffic: impl FnOnce() -> T,
    ) -> Result<(T, Vec<TapTraffic>), netns::Error> {
        let caps = self
            .taps
            .iter()
            .map(|(tap, _)| self.net.capture(Host::Lb, tap, TAP_FILTER))
            .collect::<netns::Result<Vec<_>>>()?;
        let result = traffic();
        let seen = caps
            .into_iter()
            .zip(&self.taps)
            .map(|(cap, (_, mac))| sort_capture(cap.finish()?, mac, vips))
            .collect::<netns::Result<Vec<_>>>()?;
        Ok((result, seen))
    }

    /// Every balancer's serial console and the helper logs, for failure messages.
    pub fn diagnostics(&self) -> String {
        let consoles: String = self
            .vms
            .iter()
            .enumerate()
            .map(|(i, vm)| match vm {
                Some(vm) => format!(
                    "--- serial console of balancer {i} ---\n{}\n",
                    vm.serial_log()
                ),
                None => format!("--- balancer {i}: killed ---\n"),
            })
            .collect();
        format!("{consoles}{}", self.net.all_logs())
    }

    /// As [`Fixture::eventually`].
    pub fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl FnMut() -> Option<T>,
    ) -> T {
        eventually(what, timeout, || self.diagnostics(), probe)
    }
}

/// A check of an end-to-end test that runs several on one boot: what it asserts, on the booted
/// fixture (by panicking).
pub type Check = dyn Fn(&Fixture);

/// The message of a check's panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs every named check on `f` (one boot for all: a boot costs long under TCG), each even if
/// an earlier one failed, printing `LABEL: ok: NAME (time)` or `LABEL: FAILED: ...`; then
/// panics naming every check that failed, with its message.
pub fn run_checks(label: &str, f: &Fixture, checks: &[(&str, &Check)]) {
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    for &(name, check) in checks {
        let t = std::time::Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(f))) {
            Ok(()) => eprintln!("{label}: ok: {name} ({:.1?})", t.elapsed()),
            Err(p) => {
                eprintln!("{label}: FAILED: {name} ({:.1?})", t.elapsed());
                failed.push(format!("{name}: {}", panic_message(p.as_ref())));
            }
        }
    }
    eprintln!("{label}: all checks in {:.1?}", started.elapsed());
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The SHA-256 of the file at `path`, in hex (`sha256sum`).
pub fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{VIP_WEB, VIP_WEB6};

    #[test]
    fn responses_of_both_families_but_not_the_balancers_own_icmpv6() {
        assert_eq!(
            response_filter(&[VIP_WEB.into(), VIP_WEB6.into()]),
            "src host 10.77.0.100 or (src host fd00:77::100 and not icmp6)"
        );
    }
}
