//! Private networks of real Linux hosts in network namespaces, for the end-to-end datapath tests.
//!
//! [`DemoNet`] builds the network the e2e config (`tests/configs/e2e.toml`) describes, entirely
//! inside namespaces of its own (nothing is created in, or sent through, the root namespace):
//!
//! ```text
//!                     lb namespace: bridge br0 (10.77.0.0/24), no address of its own
//!        +-----------+-------------+-------------+-------------+
//!      tap0        client         be1           be2            rt ---- 10.88.0.0/24 ---- be3
//!   (balancer,   10.77.0.10   10.77.0.21    10.77.0.22    10.77.0.1 / 10.88.0.1      10.88.0.31
//!    10.77.0.2)                VIPs on lo    VIPs on lo   (ip_forward)             VIP on a TUN,
//!                                                                                  IPIP decap in
//!                                                                                  user space
//! ```
//!
//! The backends are set up as a Linux DSR backend must be: the VIPs on `lo` as /32 with
//! `arp_ignore=1` / `arp_announce=2` (dsr-l2), or the VIP on a tunnel with `rp_filter=0`
//! (dsr-l3). The test kernels have no `ipip` module, so be3 runs `ipip-decap`, which does in
//! user space what the module would. Each backend runs a real HTTP server (Python's
//! `http.server`, extended with a PUT that answers the body's SHA-256) on ports 80 and 8080 and
//! the L2 backends a UDP echo bound to the UDP VIP. The balancer's place is a TAP device in the
//! lb namespace: QEMU's (see [`DemoNet::add_tap`]) or the stand-in `stub-lb`'s.
//!
//! [`Topology::NarrowLink`] adds a second client, `far`, behind two routers joined by a link
//! of [`NARROW_MTU`] bytes (a tunnel, VPN or PPPoE hop on a real path):
//!
//! ```text
//!   far 10.66.0.10 ---- edge 10.66.0.1 / 10.55.0.1 ==== 1400 ==== 10.55.0.2 rt ---- segment
//!   (MTU 1500)          (ip_forward)                              (eth2)
//! ```
//!
//! Every other link keeps 1500 bytes and `far` has no route with a smaller MTU, so a backend's
//! full-sized reply (DF set, the VIP as source) reaches `rt`, which sends ICMP "fragmentation
//! needed" to the VIP, that is to the balancer: the download works only if the balancer passes
//! it on to the backend (path MTU discovery through DSR).
//!
//! Why the segment client's route to the L3 VIP has `mtu 1480`: IP-in-IP adds 20 bytes, and every link
//! here has the usual 1500-byte MTU, so a full-sized client segment could not be encapsulated
//! without fragmenting. Real dsr-l3 deployments clamp the MSS the same way. Its route to the
//! IPv6 L3 VIP has `mtu 1460` for the same reason (ip6ip6 adds 40 bytes).
//!
//! IPv6 runs alongside on the same links (every IPv4 address and route stays as it is):
//!
//! ```text
//!   segment fd00:77::/64: balancer ::2, client ::10, be1 ::21, be2 ::22, rt ::1
//!   behind rt fd00:88::/64: rt ::1, be3 ::31
//!   NarrowLink: far fd00:66::10 -- fd00:66::1 edge fd00:55::1 ==== fd00:55::2 rt
//!   wan client (when added): fd00:99::10 -- fd00:99::1 rt
//! ```
//!
//! The hosts with an IPv6 address (not the lb namespace nor the VRRP peer) have
//! IPv6 on, with router advertisements and solicitations off and no duplicate address
//! detection, so the only IPv6 on the wire is what tests cause (plus the neighbour discovery
//! and MLD reports any IPv6 host sends). A dsr-l2 backend holds the IPv6 VIP as a /128 on `lo`:
//! Linux answers a neighbour solicitation only for an address of the interface it came in on,
//! so no `arp_ignore` counterpart is needed. be3's `ipip-decap` also decapsulates ip6ip6 (next
//! header 41) into the same TUN, which holds the IPv6 L3 VIP; there is no reverse-path filter
//! for IPv6 to turn off. The HTTP servers listen on both families. Over the narrow link, `rt`
//! sends ICMPv6 "packet too big" to an IPv6 VIP for a backend's full-sized reply.
//!
//! Everything a `DemoNet` creates (namespaces with their links, bridge and taps; processes;
//! its temporary directory) is removed by its `Drop`, also when a test panics. Processes are
//! ended by PID, and get `PR_SET_PDEATHSIG` so they die with the test thread that made them
//! even if the test process is killed outright: create a `DemoNet` in the thread that uses it.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The balancer's own address (the config's `interface.address`).
pub const BALANCER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The MAC tests give the balancer's NIC (QEMU `-device virtio-net-pci,mac=...`).
pub const BALANCER_MAC: &str = "52:54:00:77:00:02";
/// A second balancer's address, for tests with two balancers behind the router
/// ([`DemoNet::add_far_client`], [`DemoNet::route_over`]).
pub const BALANCER2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
/// The MAC tests give the second balancer's NIC.
pub const BALANCER2_MAC: &str = "52:54:00:77:00:03";
/// The router, the config's `interface.gateway`.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// VIP `web`: HTTP (tcp/80), dsr-l2, be1 + be2.
pub const VIP_WEB: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
/// VIP `web3`: HTTP (tcp/80), dsr-l3, be3.
pub const VIP_WEB3: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 101);
/// VIP `dns`: UDP echo (udp/5353), dsr-l2, be1 + be2.
pub const VIP_DNS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 102);
/// VIP `any`: every TCP port, dsr-l2, be1 + be2.
pub const VIP_ANY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 103);
/// Every IPv4 VIP of the e2e config.
pub const VIPS: [Ipv4Addr; 4] = [VIP_WEB, VIP_WEB3, VIP_DNS, VIP_ANY];
/// The balancer's IPv6 address (the config's `interface.address6`).
pub const BALANCER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
/// The router on the segment, the config's `interface.gateway6`.
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
/// VIP `web6`: HTTP (tcp/80) over IPv6, dsr-l2, be1 + be2.
pub const VIP_WEB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100);
/// VIP `web36`: HTTP (tcp/80) over IPv6, dsr-l3 (ip6ip6), be3.
pub const VIP_WEB36: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x101);
/// Every IPv6 VIP of the e2e config.
pub const VIPS6: [Ipv6Addr; 2] = [VIP_WEB6, VIP_WEB36];
/// The UDP echo port.
pub const UDP_PORT: u16 = 5353;
/// An address on the segment that nobody has.
pub const UNUSED: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 99);
/// Path of the large file every backend serves.
pub const BIG_FILE_PATH: &str = "/big.bin";
/// Size of that file: 24 MiB.
pub const BIG_FILE_LEN: usize = 24 << 20;

/// The MTU of the link between `edge` and `rt` in [`Topology::NarrowLink`].
pub const NARROW_MTU: u32 = 1400;

/// Which network [`DemoNet::create_with`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// The segment with its client, backends and router (the module documentation's first
    /// picture).
    Segment,
    /// The segment plus [`Host::Far`] behind [`Host::Edge`] and a [`NARROW_MTU`] link to `rt`.
    NarrowLink,
}

/// The hosts of the network. Each is a namespace; the balancer is not a host but a TAP device
/// in the [`Host::Lb`] namespace, which holds the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// Holds the bridge and the balancer's TAP; has no address.
    Lb,
    /// The client, 10.77.0.10 and fd00:77::10.
    Client,
    /// dsr-l2 backend 10.77.0.21 and fd00:77::21.
    Be1,
    /// dsr-l2 backend 10.77.0.22 and fd00:77::22.
    Be2,
    /// The router: 10.77.0.1 and fd00:77::1 on the segment, 10.88.0.1 and fd00:88::1 toward be3.
    Rt,
    /// dsr-l3 backend 10.88.0.31 and fd00:88::31, behind the router.
    Be3,
    /// [`Topology::NarrowLink`] only: the router between `far` and the narrow link,
    /// 10.66.0.1 and fd00:66::1 toward `far`, 10.55.0.1 and fd00:55::1 on the narrow link.
    Edge,
    /// [`Topology::NarrowLink`] only: the client behind the narrow link, 10.66.0.10 and
    /// fd00:66::10.
    Far,
    /// A client behind the router, 10.99.0.10; exists only after [`DemoNet::add_wan_client`].
    /// Its packets to a VIP take the router's route, as an Internet client's would.
    Wan,
    /// A VRRP peer on the segment (keepalived), 10.77.0.4; exists only after
    /// [`DemoNet::add_vrrp_peer`].
    Vrrp,
}

impl Host {
    /// Every host [`DemoNet::create`] builds, in that order ([`Host::Far`] is added on demand).
    pub const ALL: [Host; 6] = [
        Host::Lb,
        Host::Client,
        Host::Be1,
        Host::Be2,
        Host::Rt,
        Host::Be3,
    ];

    /// The hosts [`Topology::NarrowLink`] adds.
    pub const NARROW: [Host; 2] = [Host::Edge, Host::Far];

    /// The short name: the namespace's suffix and the backend name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Host::Lb => "lb",
            Host::Client => "client",
            Host::Be1 => "be1",
            Host::Be2 => "be2",
            Host::Rt => "rt",
            Host::Be3 => "be3",
            Host::Edge => "edge",
            Host::Wan => "wan",
            Host::Far => "far",
            Host::Vrrp => "vrrp",
        }
    }

    /// The address of `eth0` (none for [`Host::Lb`]).
    pub fn addr(self) -> Option<Ipv4Addr> {
        match self {
            Host::Lb => None,
            Host::Client => Some(Ipv4Addr::new(10, 77, 0, 10)),
            Host::Be1 => Some(Ipv4Addr::new(10, 77, 0, 21)),
            Host::Be2 => Some(Ipv4Addr::new(10, 77, 0, 22)),
            Host::Rt => Some(GATEWAY),
            Host::Be3 => Some(Ipv4Addr::new(10, 88, 0, 31)),
            Host::Edge => Some(EDGE_FAR),
            Host::Far => Some(Ipv4Addr::new(10, 66, 0, 10)),
            Host::Wan => Some(Ipv4Addr::new(10, 99, 0, 10)),
            Host::Vrrp => Some(Ipv4Addr::new(10, 77, 0, 4)),
        }
    }

    /// The IPv6 address of `eth0`, for the hosts that have IPv6 (see the module documentation).
    pub fn addr6(self) -> Option<Ipv6Addr> {
        let on = |net: u16, host: u16| Some(Ipv6Addr::new(0xfd00, net, 0, 0, 0, 0, 0, host));
        match self {
            Host::Client => on(0x77, 0x10),
            Host::Be1 => on(0x77, 0x21),
            Host::Be2 => on(0x77, 0x22),
            Host::Rt => Some(GATEWAY6),
            Host::Be3 => on(0x88, 0x31),
            Host::Edge => Some(EDGE_FAR6),
            Host::Far => on(0x66, 0x10),
            Host::Wan => on(0x99, 0x10),
            Host::Lb | Host::Vrrp => None,
        }
    }

    /// The MAC of `eth0`: fixed (02:00 then the address), so tests know it in advance.
    pub fn mac(self) -> Option<String> {
        self.addr().map(mac_for)
    }

    /// The bridge port (in the lb namespace) this host's `eth0` hangs on, if it is on the segment.
    pub fn bridge_port(self) -> Option<String> {
        match self {
            Host::Lb | Host::Be3 | Host::Edge | Host::Far | Host::Wan => None,
            h => Some(format!("v-{}", h.name())),
        }
    }
}

/// The router's address toward be3.
const RT_INNER: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// `edge`'s address toward `far`.
const EDGE_FAR: Ipv4Addr = Ipv4Addr::new(10, 66, 0, 1);
/// `edge`'s and `rt`'s addresses on the narrow link.
const EDGE_NARROW: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 1);
const RT_NARROW: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 2);
/// The router's address toward [`Host::Wan`].
const RT_WAN: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The router's IPv6 address toward [`Host::Wan`].
const RT_WAN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);
/// The router's IPv6 address toward be3.
const RT_INNER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 1);
/// `edge`'s IPv6 address toward `far`.
const EDGE_FAR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 1);
/// `edge`'s and `rt`'s IPv6 addresses on the narrow link.
const EDGE_NARROW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x55, 0, 0, 0, 0, 0, 1);
const RT_NARROW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x55, 0, 0, 0, 0, 0, 2);

fn mac_for(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Paths of this crate's helper programs. Only integration tests know them (Cargo tells them
/// through `CARGO_BIN_EXE_*`), so build it there with [`helper_bins!`](crate::helper_bins).
#[derive(Clone, Debug)]
pub struct HelperBins {
    /// `ipip-decap`.
    pub ipip_decap: PathBuf,
    /// `udp-echo`.
    pub udp_echo: PathBuf,
    /// `frame-flood`.
    pub frame_flood: PathBuf,
    /// `stub-lb`.
    pub stub_lb: PathBuf,
}

/// The [`HelperBins`] of this crate, for use in an integration test (`tests/tests/*.rs`).
#[macro_export]
macro_rules! helper_bins {
    () => {
        $crate::netns::HelperBins {
            ipip_decap: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_ipip-decap")),
            udp_echo: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_udp-echo")),
            frame_flood: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_frame-flood")),
            stub_lb: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_stub-lb")),
        }
    };
}

/// What went wrong building or using the network; the message says what and why.
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Debug is what `expect` prints: keep it the readable message.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}

/// The programs the network needs, with the Debian package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("bridge", "iproute2"),
    ("sysctl", "procps"),
    ("tcpdump", "tcpdump"),
    ("curl", "curl"),
    ("python3", "python3"),
    ("ping", "iputils-ping"),
    ("sha256sum", "coreutils"),
    ("hping3", "hping3"),
];

fn find_in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Fails, naming the Debian packages to install, if a program the network needs is missing or
/// we are not root.
pub fn require_tools() -> Result<()> {
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(program, _)| !find_in_path(program))
        .map(|(program, package)| format!("{program} (Debian package {package})"))
        .collect();
    if !missing.is_empty() {
        return err(format!(
            "the e2e network needs programs that are not installed: {}",
            missing.join(", ")
        ));
    }
    // Safety: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return err("the e2e network needs root (network namespaces, bridges, taps)");
    }
    Ok(())
}

/// The output of a finished command.
#[derive(Debug)]
pub struct Output {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// A process a `DemoNet` started and must end.
struct Owned {
    label: String,
    child: Child,
}

/// The e2e network. See the module documentation for its shape; dropping it removes it all.
pub struct DemoNet {
    prefix: String,
    dir: PathBuf,
    bins: HelperBins,
    topology: Topology,
    namespaces: Vec<String>,
    processes: Mutex<Vec<Owned>>,
}

impl DemoNet {
    /// Builds the whole network, with every backend's servers running and answering.
    pub fn create(bins: HelperBins) -> Result<DemoNet> {
        DemoNet::create_with(bins, Topology::Segment)
    }

    /// Builds the network of `topology`, with every backend's servers running and answering.
    pub fn create_with(bins: HelperBins, topology: Topology) -> Result<DemoNet> {
        require_tools()?;
        for (name, path) in [
            ("ipip-decap", &bins.ipip_decap),
            ("udp-echo", &bins.udp_echo),
            ("frame-flood", &bins.frame_flood),
            ("stub-lb", &bins.stub_lb),
        ] {
            if !path.is_file() {
                return err(format!("helper {name} not found at {}", path.display()));
            }
        }
        let prefix = format!(
            "ss{}-{}-",
            std::process::id(),
            NEXT_NET.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("sidestep-e2e-{prefix}"));
        // A directory left by an earlier process with our PID is stale: start clean.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("logs"))
            .map_err(|e| Error(format!("cannot create {}: {e}", dir.display())))?;
        let mut net = DemoNet {
            prefix,
            dir,
            bins,
            topology,
            namespaces: Vec::new(),
            processes: Mutex::new(Vec::new()),
        };
        // On any error below, `net` is dropped and removes what was built so far.
        net.build_links()?;
        net.configure_hosts()?;
        if topology == Topology::NarrowLink {
            net.build_narrow_link()?;
        }
        net.start_servers()?;
        Ok(net)
    }

    /// The namespace of `host` (a name for `ip netns exec`).
    pub fn ns(&self, host: Host) -> String {
        format!("{}{}", self.prefix, host.name())
    }

    /// The namespace the balancer (QEMU) runs in and where its TAP goes.
    pub fn lb_netns(&self) -> String {
        self.ns(Host::Lb)
    }

    /// The directory of this network's files (logs, captures, web roots).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The content every backend serves at [`BIG_FILE_PATH`].
    pub fn big_file(&self) -> PathBuf {
        self.dir.join("big.bin")
    }

    fn ip(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| Error(format!("cannot run ip: {e}")))?;
        if !out.status.success() {
            return err(format!(
                "`ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip -n NS ARGS...`.
    fn ip_in(&self, host: Host, args: &str) -> Result<String> {
        let ns = self.ns(host);
        let mut all = vec!["-n", ns.as_str()];
        all.extend(args.split_whitespace());
        self.ip(&all)
    }

    fn sysctl(&self, host: Host, settings: &[&str]) -> Result<()> {
        let mut args = vec!["sysctl", "-q", "-w"];
        args.extend_from_slice(settings);
        self.run_ok(host, &args).map(drop)
    }

    fn build_links(&mut self) -> Result<()> {
        let extra: &[Host] = match self.topology {
            Topology::Segment => &[],
            Topology::NarrowLink => &Host::NARROW,
        };
        for &host in Host::ALL.iter().chain(extra) {
            self.add_namespace(host)?;
        }
        // Without snooping the bridge floods every multicast frame, so neighbour solicitations
        // reach the balancer whatever MLD reports it has (not) sent.
        self.ip_in(Host::Lb, "link add br0 type bridge mcast_snooping 0")?;
        self.ip_in(Host::Lb, "link set br0 up")?;
        for host in [Host::Client, Host::Be1, Host::Be2, Host::Rt] {
            let port = host
                .bridge_port()
                .expect("hosts on the segment have a port");
            let peer_ns = self.ns(host);
            self.ip_in(
                Host::Lb,
                &format!("link add {port} type veth peer name eth0 netns {peer_ns}"),
            )?;
            self.ip_in(Host::Lb, &format!("link set {port} master br0 up"))?;
            self.up_with_address(host, "eth0", mac_for(host.addr().expect("on the segment")))?;
        }
        let be3_ns = self.ns(Host::Be3);
        self.ip_in(
            Host::Rt,
            &format!("link add eth1 type veth peer name eth0 netns {be3_ns}"),
        )?;
        self.ip_in(
            Host::Rt,
            &format!("link set eth1 address {}", mac_for(RT_INNER)),
        )?;
        self.ip_in(Host::Rt, &format!("addr add {RT_INNER}/24 dev eth1"))?;
        self.ip_in(Host::Rt, &format!("addr add {RT_INNER6}/64 dev eth1 nodad"))?;
        self.ip_in(Host::Rt, "link set eth1 up")?;
        self.up_with_address(
            Host::Be3,
            "eth0",
            mac_for(Host::Be3.addr().expect("has one")),
        )
    }

    /// `far` -- `edge` ==narrow== `rt`, with routes both ways and forwarding on `edge`. Both
    /// ends of the narrow link get its MTU, so `rt` sends "fragmentation needed" for a larger
    /// packet with DF set (and `edge` for one from `far`'s side).
    fn build_narrow_link(&self) -> Result<()> {
        let far = Host::Far.addr().expect("has one");
        let edge_ns = self.ns(Host::Edge);
        self.ip_in(
            Host::Far,
            &format!("link add eth0 type veth peer name eth0 netns {edge_ns}"),
        )?;
        self.up_with_address(Host::Far, "eth0", mac_for(far))?;
        self.up_with_address(Host::Edge, "eth0", mac_for(EDGE_FAR))?;
        self.ip_in(
            Host::Edge,
            &format!(
                "link add eth1 type veth peer name eth2 netns {}",
                self.ns(Host::Rt)
            ),
        )?;
        for (host, dev, addr) in [
            (Host::Edge, "eth1", EDGE_NARROW),
            (Host::Rt, "eth2", RT_NARROW),
        ] {
            self.ip_in(host, &format!("link set {dev} address {}", mac_for(addr)))?;
            self.ip_in(host, &format!("link set {dev} mtu {NARROW_MTU}"))?;
            self.ip_in(host, &format!("addr add {addr}/24 dev {dev}"))?;
            self.ip_in(host, &format!("link set {dev} up"))?;
        }
        for (host, dev, addr) in [
            (Host::Edge, "eth1", EDGE_NARROW6),
            (Host::Rt, "eth2", RT_NARROW6),
        ] {
            self.ip_in(host, &format!("addr add {addr}/64 dev {dev} nodad"))?;
        }
        self.ip_in(Host::Far, &format!("route add default via {EDGE_FAR}"))?;
        self.ip_in(Host::Far, &format!("-6 route add default via {EDGE_FAR6}"))?;
        self.ip_in(
            Host::Edge,
            &format!("-6 route add default via {RT_NARROW6}"),
        )?;
        self.ip_in(
            Host::Rt,
            &format!("-6 route add fd00:66::/64 via {EDGE_NARROW6} dev eth2"),
        )?;
        self.sysctl(Host::Edge, &["net.ipv6.conf.all.forwarding=1"])?;
        self.ip_in(Host::Edge, &format!("route add default via {RT_NARROW}"))?;
        self.ip_in(
            Host::Rt,
            &format!("route add 10.66.0.0/24 via {EDGE_NARROW} dev eth2"),
        )?;
        self.sysctl(
            Host::Edge,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        )?;
        self.sysctl(Host::Rt, &["net.ipv4.conf.eth2.rp_filter=0"])
    }

    /// Gives `host`'s `dev` its MAC, its address and its IPv6 address if it has one, and
    /// brings it up.
    fn up_with_address(&self, host: Host, dev: &str, mac: String) -> Result<()> {
        let addr = host.addr().expect("only hosts with addresses");
        self.ip_in(host, &format!("link set {dev} address {mac}"))?;
        self.ip_in(host, &format!("addr add {addr}/24 dev {dev}"))?;
        if let Some(addr6) = host.addr6() {
            self.ip_in(host, &format!("addr add {addr6}/64 dev {dev} nodad"))?;
        }
        self.ip_in(host, &format!("link set {dev} up"))?;
        Ok(())
    }

    fn configure_hosts(&self) -> Result<()> {
        // Client: be3's subnet is behind the router; the L3 VIP's path loses 20 bytes to IPIP.
        self.ip_in(
            Host::Client,
            &format!("route add 10.88.0.0/24 via {GATEWAY}"),
        )?;
        self.ip_in(
            Host::Client,
            &format!("route add {VIP_WEB3}/32 dev eth0 mtu 1480 advmss 1440"),
        )?;
        // The same for IPv6: ip6ip6 adds 40 bytes (an IPv6 MSS is the MTU less 60).
        self.ip_in(
            Host::Client,
            &format!("-6 route add fd00:88::/64 via {GATEWAY6}"),
        )?;
        self.ip_in(
            Host::Client,
            &format!("-6 route add {VIP_WEB36}/128 dev eth0 mtu 1460 advmss 1400"),
        )?;

        // dsr-l2 backends: VIPs on lo, never answered or announced in ARP.
        for be in [Host::Be1, Host::Be2] {
            for vip in [VIP_WEB, VIP_DNS, VIP_ANY] {
                self.ip_in(be, &format!("addr add {vip}/32 dev lo"))?;
            }
            // Not advertised in neighbour discovery: Linux answers a solicitation only for an
            // address of the interface it arrived on.
            self.ip_in(be, &format!("addr add {VIP_WEB6}/128 dev lo nodad"))?;
            self.ip_in(be, &format!("route add default via {GATEWAY}"))?;
            self.ip_in(be, &format!("-6 route add default via {GATEWAY6}"))?;
            self.sysctl(
                be,
                &[
                    "net.ipv4.conf.all.arp_ignore=1",
                    "net.ipv4.conf.all.arp_announce=2",
                    "net.ipv4.conf.eth0.arp_ignore=1",
                    "net.ipv4.conf.eth0.arp_announce=2",
                ],
            )?;
        }

        // Router: forwards both ways; be3's replies come in on eth1 with a source (the VIP)
        // that routes out of eth0, which strict reverse-path filtering would drop.
        self.sysctl(
            Host::Rt,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.eth0.rp_filter=0",
                "net.ipv4.conf.eth1.rp_filter=0",
                "net.ipv6.conf.all.forwarding=1",
            ],
        )?;

        // dsr-l3 backend: the VIP on a TUN that ipip-decap feeds; replies leave by eth0.
        self.ip_in(Host::Be3, "tuntap add dev ipip0 mode tun")?;
        self.ip_in(Host::Be3, &format!("addr add {VIP_WEB3}/32 dev ipip0"))?;
        self.ip_in(
            Host::Be3,
            &format!("addr add {VIP_WEB36}/128 dev ipip0 nodad"),
        )?;
        self.ip_in(Host::Be3, "link set ipip0 up")?;
        self.ip_in(Host::Be3, &format!("route add default via {RT_INNER}"))?;
        // Replies from the IPv6 VIP leave by eth0 too; IPv6 has no reverse-path filter.
        self.ip_in(Host::Be3, &format!("-6 route add default via {RT_INNER6}"))?;
        self.sysctl(
            Host::Be3,
            &[
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.eth0.rp_filter=0",
                "net.ipv4.conf.ipip0.rp_filter=0",
            ],
        )?;
        Ok(())
    }

    /// Writes `content` to `path` (a file of [`DemoNet::dir`], say a daemon's config).
    pub fn write_file(&self, path: &Path, content: &[u8]) -> Result<()> {
        fs::write(path, content).map_err(|e| Error(format!("cannot write {}: {e}", path.display())))
    }

    fn start_servers(&self) -> Result<()> {
        let big = self.big_file();
        let mut file = fs::File::create(&big)
            .map_err(|e| Error(format!("cannot create {}: {e}", big.display())))?;
        file.write_all(&big_file_content())
            .map_err(|e| Error(format!("cannot write {}: {e}", big.display())))?;
        self.write_file(&self.dir.join("server.py"), SERVER_PY.as_bytes())?;

        for be in [Host::Be1, Host::Be2, Host::Be3] {
            let root = self.dir.join(format!("www-{}", be.name()));
            fs::create_dir_all(&root)
                .map_err(|e| Error(format!("cannot create {}: {e}", root.display())))?;
            self.write_file(
                &root.join("index.html"),
                format!("backend={}\n", be.name()).as_bytes(),
            )?;
            std::os::unix::fs::symlink(&big, root.join("big.bin"))
                .map_err(|e| Error(format!("cannot link the big file: {e}")))?;
            self.spawn_http(be)?;
        }
        for be in [Host::Be1, Host::Be2] {
            let udp_echo = self.bins.udp_echo.to_string_lossy().into_owned();
            let label = format!("udp-{}", be.name());
            self.spawn(
                be,
                &label,
                &[
                    &udp_echo,
                    "serve",
                    be.name(),
                    &format!("{VIP_DNS}:{UDP_PORT}"),
                ],
            )?;
            self.wait_for_log(&label, "udp-echo: ready", Duration::from_secs(10))?;
        }
        let decap = self.bins.ipip_decap.to_string_lossy().into_owned();
        self.spawn(Host::Be3, "ipip-decap", &[&decap, "ipip0"])?;
        self.wait_for_log("ipip-decap", "ready", Duration::from_secs(10))?;

        for be in [Host::Be1, Host::Be2, Host::Be3] {
            self.wait_http(be)?;
        }
        Ok(())
    }

    /// Starts `be`'s HTTP server (ports 80 and 8080, web root `www-NAME` of [`DemoNet::dir`])
    /// as the process labelled `http-NAME`.
    fn spawn_http(&self, be: Host) -> Result<u32> {
        let script = self.dir.join("server.py").to_string_lossy().into_owned();
        let root = self
            .dir
            .join(format!("www-{}", be.name()))
            .to_string_lossy()
            .into_owned();
        self.spawn(
            be,
            &format!("http-{}", be.name()),
            &["python3", &script, be.name(), &root, "80", "8080"],
        )
    }

    /// Waits up to 20 s until `be`'s HTTP server answers on both ports, over both families.
    fn wait_http(&self, be: Host) -> Result<()> {
        for url in ["http://127.0.0.1", "http://[::1]"] {
            self.wait_http_at(be, url)?;
        }
        Ok(())
    }

    fn wait_http_at(&self, be: Host, base: &str) -> Result<()> {
        for port in [80, 8080] {
            let url = format!("{base}:{port}/");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let out = self.run(be, &["curl", "-sS", "--max-time", "2", &url])?;
                if out.success && out.stdout == format!("backend={}\n", be.name()) {
                    break;
                }
                if Instant::now() > deadline {
                    return err(format!(
                        "the HTTP server on {} did not answer {url}: {}\nserver log:\n{}",
                        be.name(),
                        out.stderr.trim(),
                        self.log(&format!("http-{}", be.name()))
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Stops `be`'s HTTP server (both ports), as a crashed or stopped service would: its
    /// process is killed by PID and connections to it are refused from then on.
    pub fn stop_http(&self, be: Host) -> Result<()> {
        self.stop(&format!("http-{}", be.name()))
    }

    /// Starts `be`'s HTTP server again after [`DemoNet::stop_http`] and waits until it answers.
    pub fn start_http(&self, be: Host) -> Result<()> {
        self.spawn_http(be)?;
        self.wait_http(be)
    }

    /// Ends the process started as `label` (by PID) and forgets it. Its log stays.
    pub fn stop(&self, label: &str) -> Result<()> {
        let owned = {
            let mut procs = self.processes.lock().unwrap_or_else(|p| p.into_inner());
            let i = procs
                .iter()
                .position(|p| p.label == label)
                .ok_or_else(|| Error(format!("no process {label} is running")))?;
            procs.remove(i)
        };
        let mut child = owned.child;
        // Child::kill signals exactly this PID (our own child, not yet reaped).
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Waits up to `timeout` for the process started as `label` to end by itself, forgets it,
    /// and returns its exit code (`None` if a signal ended it).
    pub fn wait(&self, label: &str, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut procs = self.processes.lock().unwrap_or_else(|p| p.into_inner());
                let i = procs
                    .iter()
                    .position(|p| p.label == label)
                    .ok_or_else(|| Error(format!("no process {label} is running")))?;
                match procs[i].child.try_wait() {
                    Ok(Some(status)) => {
                        procs.remove(i);
                        return Ok(status.code());
                    }
                    Ok(None) => {}
                    Err(e) => return err(format!("cannot wait for {label}: {e}")),
                }
            }
            if Instant::now() > deadline {
                return err(format!(
                    "{label} still running after {timeout:?}; its log:\n{}",
                    self.log(label)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Serves the files of `root` over HTTP on `host`'s address, port `port` (Python's
    /// `http.server`), as the process labelled `files-HOST-PORT`; waits until it answers.
    /// Returns the label (for [`DemoNet::stop`] and [`DemoNet::log`]).
    pub fn serve_files(&self, host: Host, port: u16, root: &Path) -> Result<String> {
        let addr = host
            .addr()
            .ok_or_else(|| Error(format!("{} has no address to serve on", host.name())))?
            .to_string();
        let label = format!("files-{}-{port}", host.name());
        let root = root.to_string_lossy().into_owned();
        self.spawn(
            host,
            &label,
            &[
                "python3",
                "-m",
                "http.server",
                "--bind",
                &addr,
                "--directory",
                &root,
                &port.to_string(),
            ],
        )?;
        let url = format!("http://{addr}:{port}/");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.run(
                host,
                &["curl", "-sS", "-o", "/dev/null", "--max-time", "2", &url],
            )?;
            if out.success {
                return Ok(label);
            }
            if Instant::now() > deadline {
                return err(format!(
                    "the file server on {addr}:{port} did not answer: {}\nits log:\n{}",
                    out.stderr.trim(),
                    self.log(&label)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `f` on a thread of its own that has joined `host`'s network namespace, so sockets
    /// it opens (say, the `sidestep` library's HTTP client) live in that host. Only that thread
    /// moves; the test's own threads stay where they are.
    pub fn in_netns<T: Send>(&self, host: Host, f: impl FnOnce() -> T + Send) -> Result<T> {
        use std::os::fd::AsRawFd as _;
        let path = format!("/run/netns/{}", self.ns(host));
        let ns = fs::File::open(&path).map_err(|e| Error(format!("cannot open {path}: {e}")))?;
        std::thread::scope(|scope| {
            let joined = scope
                .spawn(|| {
                    // Safety: setns(2) with a namespace file we hold open; CLONE_NEWNET moves
                    // only the calling thread, which is this scoped thread and ends below.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return err(format!(
                            "cannot join {path}: {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                    Ok(f())
                })
                .join();
            match joined {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A command that runs `argv` in `host`'s namespace.
    pub fn command(&self, host: Host, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)]).args(argv);
        cmd
    }

    /// Runs `argv` in `host`'s namespace and returns what it printed, whatever its status.
    pub fn run(&self, host: Host, argv: &[&str]) -> Result<Output> {
        let out = self
            .command(host, argv)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error(format!("cannot run {argv:?} in {}: {e}", host.name())))?;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `argv` in `host`'s namespace; its standard output if it succeeded, else an error
    /// with its standard error.
    pub fn run_ok(&self, host: Host, argv: &[&str]) -> Result<String> {
        let out = self.run(host, argv)?;
        if !out.success {
            return err(format!(
                "{argv:?} in {} failed: {}{}",
                host.name(),
                out.stderr.trim(),
                out.stdout.trim()
            ));
        }
        Ok(out.stdout)
    }

    /// `curl -sS --max-time SECS ARGS...` from the client; the body on success.
    pub fn curl(&self, secs: u32, args: &[&str]) -> Result<String> {
        self.curl_on(Host::Client, secs, args)
    }

    /// `curl -sS --max-time SECS ARGS...` from `host`; the body on success.
    pub fn curl_on(&self, host: Host, secs: u32, args: &[&str]) -> Result<String> {
        let secs = secs.to_string();
        let mut argv = vec!["curl", "-sS", "--max-time", &secs];
        argv.extend_from_slice(args);
        self.run_ok(host, &argv)
    }

    /// Creates `host`'s namespace (torn down with the network) with loopback up. A host
    /// without an IPv6 address gets no IPv6 at all; one with gets it without router
    /// advertisements, router solicitations and duplicate address detection (the link-local
    /// addresses too), which would only be noise on the tap and make tests wait. Set on
    /// `default` before any link exists, so every link inherits it. Returns its name.
    fn add_namespace(&mut self, host: Host) -> Result<String> {
        let ns = self.ns(host);
        self.ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        if host.addr6().is_none() {
            self.sysctl(
                host,
                &[
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            )?;
        } else {
            let mut quiet = Vec::new();
            for conf in ["all", "default"] {
                for (key, value) in [
                    ("accept_ra", 0),
                    ("autoconf", 0),
                    ("router_solicitations", 0),
                    ("accept_dad", 0),
                    ("dad_transmits", 0),
                ] {
                    quiet.push(format!("net.ipv6.conf.{conf}.{key}={value}"));
                }
            }
            let quiet: Vec<&str> = quiet.iter().map(String::as_str).collect();
            self.sysctl(host, &quiet)?;
        }
        self.ip_in(host, "link set lo up")?;
        Ok(ns)
    }

    /// Adds [`Host::Wan`], a client on 10.99.0.0/24 and fd00:99::/64 behind the router (its
    /// `eth2`), with default routes through it. Backends reach it through their default route (the router).
    pub fn add_wan_client(&mut self) -> Result<()> {
        let ns = self.add_namespace(Host::Wan)?;
        self.ip_in(
            Host::Rt,
            &format!("link add eth2 type veth peer name eth0 netns {ns}"),
        )?;
        self.ip_in(
            Host::Rt,
            &format!("link set eth2 address {}", mac_for(RT_WAN)),
        )?;
        self.ip_in(Host::Rt, &format!("addr add {RT_WAN}/24 dev eth2"))?;
        self.ip_in(Host::Rt, &format!("addr add {RT_WAN6}/64 dev eth2 nodad"))?;
        self.ip_in(Host::Rt, "link set eth2 up")?;
        self.sysctl(Host::Rt, &["net.ipv4.conf.eth2.rp_filter=0"])?;
        self.up_with_address(
            Host::Wan,
            "eth0",
            mac_for(Host::Wan.addr().expect("has one")),
        )?;
        self.ip_in(Host::Wan, &format!("route add default via {RT_WAN}"))?;
        self.ip_in(Host::Wan, &format!("-6 route add default via {RT_WAN6}"))?;
        Ok(())
    }

    /// Adds [`Host::Vrrp`], one more host on the segment (a port of the bridge), with a default
    /// route through the router: where a test runs a VRRP peer such as keepalived.
    pub fn add_vrrp_peer(&mut self) -> Result<()> {
        let host = Host::Vrrp;
        let ns = self.add_namespace(host)?;
        let port = host.bridge_port().expect("on the segment");
        self.ip_in(
            Host::Lb,
            &format!("link add {port} type veth peer name eth0 netns {ns}"),
        )?;
        self.ip_in(Host::Lb, &format!("link set {port} master br0 up"))?;
        self.up_with_address(host, "eth0", mac_for(host.addr().expect("has one")))?;
        self.ip_in(host, &format!("route add default via {GATEWAY}"))?;
        Ok(())
    }

    /// The MAC `host`'s neighbour table gives for `addr` on `eth0`, if it has a usable entry.
    pub fn neighbour_mac(&self, host: Host, addr: impl Into<IpAddr>) -> Result<Option<String>> {
        let addr = addr.into();
        let out = self.ip_in(host, &format!("neigh show {addr} dev eth0"))?;
        Ok(out
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .filter(|_| !out.contains("FAILED") && !out.contains("INCOMPLETE"))
            .map(str::to_owned))
    }

    /// Routes `vip`/32 on the router over `hops` (one next hop each, equal cost), replacing any
    /// route it had, with the layer-4 multipath hash (`fib_multipath_hash_policy=1`) so that
    /// flows of one client spread too: what a router's kernel holds for a VIP that several
    /// balancers announce (BIRD with `merge paths`). No hops removes the route.
    pub fn route_over(&self, vip: Ipv4Addr, hops: &[Ipv4Addr]) -> Result<()> {
        self.sysctl(Host::Rt, &["net.ipv4.fib_multipath_hash_policy=1"])?;
        if hops.is_empty() {
            return self
                .ip_in(Host::Rt, &format!("route del {vip}/32"))
                .map(drop);
        }
        let hops: String = hops
            .iter()
            .map(|h| format!(" nexthop via {h} dev eth0"))
            .collect();
        self.ip_in(Host::Rt, &format!("route replace {vip}/32{hops}"))
            .map(drop)
    }

    /// The router's route to `vip` as `ip route show VIP` prints it.
    pub fn route_of(&self, vip: Ipv4Addr) -> Result<String> {
        self.ip_in(Host::Rt, &format!("route show {vip}"))
    }

    /// `curl -sS -o /dev/null -w %{http_code} --connect-timeout CONNECT --max-time SECS ARGS...`
    /// on `host`, whatever its exit status: stdout is the HTTP status code, `000` when nothing
    /// answered.
    pub fn curl_status(
        &self,
        host: Host,
        connect: u32,
        secs: u32,
        args: &[&str],
    ) -> Result<Output> {
        let (connect, secs) = (connect.to_string(), secs.to_string());
        let mut argv = vec![
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--connect-timeout",
            &connect,
            "--max-time",
            &secs,
        ];
        argv.extend_from_slice(args);
        self.run(host, &argv)
    }

    /// `udp-echo ask ADDR:PORT COUNT` from the client: one line per request (`timeout` for
    /// an unanswered one; only a reply from exactly ADDR:PORT counts).
    pub fn udp_ask(&self, addr: Ipv4Addr, port: u16, count: u32) -> Result<Vec<String>> {
        let udp_echo = self.bins.udp_echo.to_string_lossy().into_owned();
        let out = self.run(
            Host::Client,
            &[
                &udp_echo,
                "ask",
                &format!("{addr}:{port}"),
                &count.to_string(),
            ],
        )?;
        Ok(out.stdout.lines().map(str::to_owned).collect())
    }

    /// Sends `rounds` rounds of malformed frames from the client to the Ethernet address `mac`,
    /// with the client's address as source and `dst` as destination where there is an IP
    /// header. Returns how many frames were sent.
    pub fn flood_malformed(
        &self,
        mac: &str,
        dst: impl Into<IpAddr>,
        rounds: u32,
    ) -> Result<String> {
        let dst: IpAddr = dst.into();
        let flood = self.bins.frame_flood.to_string_lossy().into_owned();
        let client = match dst {
            IpAddr::V4(_) => Host::Client.addr().map(IpAddr::V4),
            IpAddr::V6(_) => Host::Client.addr6().map(IpAddr::V6),
        }
        .expect("has one")
        .to_string();
        self.run_ok(
            Host::Client,
            &[
                &flood,
                "eth0",
                mac,
                &client,
                &dst.to_string(),
                &rounds.to_string(),
            ],
        )
    }

    /// A permanent neighbour entry on the client: `addr` is at `mac`. Lets a test send to an
    /// address nobody answers ARP for.
    pub fn client_neighbour(&self, addr: Ipv4Addr, mac: &str) -> Result<()> {
        self.ip_in(
            Host::Client,
            &format!("neigh replace {addr} lladdr {mac} dev eth0 nud permanent"),
        )
        .map(drop)
    }

    /// Creates the balancer's TAP device `name` in the lb namespace before QEMU (or the stub)
    /// starts, enslaved to the bridge and up, so the balancer's first frames are not lost.
    /// QEMU's `-netdev tap,ifname=NAME,script=no,downscript=no` attaches to it. The bridge
    /// also gets a static entry for `mac` on it, so frames to the balancer never flood to
    /// the backends (which would fake a forwarded packet in a capture).
    pub fn add_tap(&self, name: &str, mac: &str) -> Result<()> {
        self.add_tap_queues(name, mac, false)
    }

    /// [`DemoNet::add_tap`], a `multi_queue` tap if `multi_queue` (for QEMU's `queues=N`).
    pub fn add_tap_queues(&self, name: &str, mac: &str, multi_queue: bool) -> Result<()> {
        let mq = if multi_queue { " multi_queue" } else { "" };
        self.ip_in(Host::Lb, &format!("tuntap add dev {name} mode tap{mq}"))?;
        self.attach_tap(name, mac)
    }

    /// Enslaves an existing TAP device `name` in the lb namespace (one QEMU made itself) to the
    /// bridge, brings it up and pins `mac` to it, waiting up to 10 s for it to appear.
    pub fn attach_tap(&self, name: &str, mac: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ip_in(Host::Lb, &format!("link show {name}")).is_err() {
            if Instant::now() > deadline {
                return err(format!("no device {name} appeared in {}", self.lb_netns()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.ip_in(Host::Lb, &format!("link set {name} master br0 up"))?;
        let ns = self.lb_netns();
        let out = Command::new("bridge")
            .args([
                "-n", &ns, "fdb", "replace", mac, "dev", name, "master", "static",
            ])
            .output()
            .map_err(|e| Error(format!("cannot run bridge: {e}")))?;
        if !out.status.success() {
            return err(format!(
                "cannot pin {mac} to {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Starts `stub-lb`, the user-space stand-in balancer, on a new TAP `tap0` with
    /// [`BALANCER_MAC`]: dsr-l2 for web/dns/any to be1+be2, dsr-l3 for web3 to be3 via rt.
    /// Only for proving the network itself; the real tests boot the image instead. IPv4 only:
    /// `e2e_ipv6`'s ignored test proves the IPv6 network without any balancer.
    pub fn start_stub_balancer(&self) -> Result<()> {
        self.add_tap("tap0", BALANCER_MAC)?;
        let stub = self.bins.stub_lb.to_string_lossy().into_owned();
        let l2_backends = format!(
            "{},{}",
            Host::Be1.mac().expect("has one"),
            Host::Be2.mac().expect("has one")
        );
        // The services of tests/configs/e2e.toml.
        let rules = vec![
            format!("l2:{VIP_WEB}:tcp:80={l2_backends}"),
            format!("l2:{VIP_DNS}:udp:{UDP_PORT}={l2_backends}"),
            format!("l2:{VIP_ANY}:tcp:*={l2_backends}"),
            format!(
                "l3:{VIP_WEB3}:tcp:80={}",
                Host::Be3.addr().expect("has one")
            ),
        ];
        let mut argv = vec![
            stub.clone(),
            "tap0".into(),
            BALANCER_MAC.into(),
            BALANCER.to_string(),
            Host::Rt.mac().expect("has one"),
        ];
        argv.extend(rules);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.spawn(Host::Lb, "stub-lb", &argv)?;
        self.wait_for_log("stub-lb", "ready", Duration::from_secs(10))
    }

    /// Starts `argv` in `host`'s namespace as a process this network owns (ended by PID on
    /// drop), its output going to the log `label` (see [`DemoNet::log`]). Returns its PID.
    pub fn spawn(&self, host: Host, label: &str, argv: &[&str]) -> Result<u32> {
        let log_path = self.log_path(label);
        let log = fs::File::create(&log_path)
            .map_err(|e| Error(format!("cannot create {}: {e}", log_path.display())))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error(format!("cannot duplicate a log file: {e}")))?;
        let mut cmd = self.command(host, argv);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        // Safety: the closure runs between fork and exec and only calls prctl, which is
        // async-signal-safe. `ip netns exec` execs the program, which keeps the setting.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error(format!("cannot start {argv:?} in {}: {e}", host.name())))?;
        let pid = child.id();
        self.processes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Owned {
                label: label.to_owned(),
                child,
            });
        Ok(pid)
    }

    fn log_path(&self, label: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{label}.log"))
    }

    /// What the process started as `label` has printed so far.
    pub fn log(&self, label: &str) -> String {
        fs::read_to_string(self.log_path(label)).unwrap_or_default()
    }

    /// Every log, for a failure message.
    pub fn all_logs(&self) -> String {
        let procs = self.processes.lock().unwrap_or_else(|p| p.into_inner());
        procs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.label, self.log(&p.label)))
            .collect()
    }

    fn wait_for_log(&self, label: &str, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log(label);
            if log.contains(needle) {
                return Ok(());
            }
            let exited = {
                let mut procs = self.processes.lock().unwrap_or_else(|p| p.into_inner());
                procs
                    .iter_mut()
                    .find(|p| p.label == label)
                    .map(|p| matches!(p.child.try_wait(), Ok(Some(_))))
                    .unwrap_or(false)
            };
            if exited || Instant::now() > deadline {
                return err(format!(
                    "{label} did not print {needle:?}{}; its log:\n{log}",
                    if exited { " and exited" } else { " in time" }
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts tcpdump on `iface` in `host`'s namespace with the capture filter `filter`,
    /// and waits until it is listening. Read it with [`Capture::finish`].
    pub fn capture(&self, host: Host, iface: &str, filter: &str) -> Result<Capture> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let file = self
            .dir
            .join(format!("capture-{n}-{}-{iface}.pcap", host.name()));
        let log = self.dir.join(format!("capture-{n}.log"));
        let log_file =
            fs::File::create(&log).map_err(|e| Error(format!("cannot create a log: {e}")))?;
        let file_arg = file.to_string_lossy().into_owned();
        let mut argv = vec![
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "256",
            "-Z",
            "root",
            "-w",
            &file_arg,
        ];
        argv.extend(filter.split_whitespace());
        let mut child = self
            .command(host, &argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| Error(format!("cannot start tcpdump: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening on") {
                break;
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return err(format!(
                    "tcpdump on {iface} in {} did not start: {text}",
                    host.name()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Capture {
            child: Some(child),
            file,
            what: format!("{iface} in {} ({filter})", host.name()),
        })
    }
}

impl Drop for DemoNet {
    fn drop(&mut self) {
        let procs = std::mem::take(self.processes.get_mut().unwrap_or_else(|p| p.into_inner()));
        for mut p in procs {
            // Child::kill signals this PID only, and only if it has not been reaped.
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let ok = Command::new("ip")
                .args(["netns", "del", ns])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                eprintln!("warning: could not delete network namespace {ns}");
            }
        }
        if std::env::var_os("SIDESTEP_E2E_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("e2e: kept {}", self.dir.display());
        }
    }
}

/// A running tcpdump. [`Capture::finish`] stops it and gives what it saw; dropping it
/// unfinished kills it.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    what: String,
}

impl Capture {
    /// Stops the capture (SIGINT, so it flushes) and returns the packets it saw.
    pub fn finish(mut self) -> Result<Captured> {
        if let Some(mut child) = self.child.take() {
            // Give the last packets of the test a moment to arrive.
            std::thread::sleep(Duration::from_millis(300));
            // Safety: kill(2) on the PID of our own child, which has not been reaped yet
            // (we hold its `Child` and have not waited on it), so the PID is still ours.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
            let _ = child.wait();
        }
        let out = Command::new("tcpdump")
            .args(["-n", "-e", "-r"])
            .arg(&self.file)
            .output()
            .map_err(|e| Error(format!("cannot run tcpdump -r: {e}")))?;
        if !out.status.success() {
            return err(format!(
                "cannot read the capture of {}: {}",
                self.what,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Captured {
            what: self.what.clone(),
            file: self.file.clone(),
            lines: String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect(),
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The packets a capture saw, one `tcpdump -n -e` line each.
#[derive(Debug)]
pub struct Captured {
    /// Interface, namespace and filter, for messages.
    pub what: String,
    file: PathBuf,
    /// One line per packet.
    pub lines: Vec<String>,
}

impl Captured {
    /// The packets (lines) that also match the tcpdump filter `filter`.
    pub fn matching(&self, filter: &str) -> Result<Vec<String>> {
        let out = Command::new("tcpdump")
            .args(["-n", "-e", "-r"])
            .arg(&self.file)
            .args(filter.split_whitespace())
            .output()
            .map_err(|e| Error(format!("cannot run tcpdump -r: {e}")))?;
        if !out.status.success() {
            return err(format!(
                "cannot filter the capture of {} with {filter:?}: {}",
                self.what,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

/// A tcpdump filter matching packets whose destination (IPv4 or IPv6) is any of `addrs`.
pub fn to_any(addrs: &[impl fmt::Display]) -> String {
    addrs
        .iter()
        .map(|a| format!("dst host {a}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// A tcpdump filter matching packets whose source (IPv4 or IPv6) is any of `addrs`.
pub fn from_any(addrs: &[impl fmt::Display]) -> String {
    addrs
        .iter()
        .map(|a| format!("src host {a}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The deterministic content of the big file: a xorshift64 stream.
pub fn big_file_content() -> Vec<u8> {
    let mut state: u64 = 0x51de_57e9_b16f_11e5;
    let mut out = Vec::with_capacity(BIG_FILE_LEN);
    while out.len() < BIG_FILE_LEN {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(BIG_FILE_LEN);
    out
}

/// The backends' HTTP server: Python's own, threaded, on several ports of both families (one
/// dual-stack socket each), plus a PUT (and POST) that reads the body and answers its length
/// and SHA-256, so an upload through the balancer can be checked byte for byte.
const SERVER_PY: &str = r#"
import functools, hashlib, http.server, socket, sys, threading

name, root, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]

class Handler(http.server.SimpleHTTPRequestHandler):
    def do_PUT(self):
        left = int(self.headers.get("Content-Length", "0"))
        digest, got = hashlib.sha256(), 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            got += len(chunk)
            left -= len(chunk)
        body = f"backend={name} bytes={got} sha256={digest.hexdigest()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT

class DualStackServer(http.server.ThreadingHTTPServer):
    # One socket for both families: IPv4 clients arrive as IPv4-mapped addresses.
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

handler = functools.partial(Handler, directory=root)
servers = [DualStackServer(("::", p), handler) for p in ports]
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
print(f"serving {name} on {ports}", flush=True)
servers[0].serve_forever()
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_encode_the_address() {
        assert_eq!(Host::Be1.mac().unwrap(), "02:00:0a:4d:00:15");
        assert_eq!(Host::Lb.mac(), None);
    }

    #[test]
    fn big_file_is_deterministic_and_sized() {
        let a = big_file_content();
        assert_eq!(a.len(), BIG_FILE_LEN);
        assert_eq!(a[..64], big_file_content()[..64]);
    }

    #[test]
    fn source_filter() {
        assert_eq!(
            from_any(&[VIP_WEB, VIP_DNS]),
            "src host 10.77.0.100 or src host 10.77.0.102"
        );
        assert_eq!(
            from_any(&VIPS6),
            "src host fd00:77::100 or src host fd00:77::101"
        );
    }

    #[test]
    fn ipv6_addresses_match_the_e2e_config() {
        assert_eq!(Host::Be1.addr6().unwrap().to_string(), "fd00:77::21");
        assert_eq!(Host::Be3.addr6().unwrap().to_string(), "fd00:88::31");
        assert_eq!(Host::Far.addr6().unwrap().to_string(), "fd00:66::10");
        assert_eq!(Host::Lb.addr6(), None);
        let config =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/e2e.toml"))
                .unwrap();
        for addr in [BALANCER6, GATEWAY6, VIP_WEB6, VIP_WEB36] {
            assert!(
                config.contains(&format!("\"{addr}")),
                "{addr} not in e2e.toml"
            );
        }
    }
}
