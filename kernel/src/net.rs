//! The data NIC and the poll loop: receive a burst, let the forwarder decide, transmit a burst;
//! between bursts, the balancer's own traffic (management API, health checks, config fetch).
//!
//! Who answers what on the wire:
//! - **ARP belongs to the forwarder.** It answers requests for the balancer's address and every
//!   VIP, resolves backends and the gateway, and hands ARP replies to smoltcp as well, so the
//!   local stack (which only resolves for its own sockets) learns its neighbours from them.
//!   smoltcp must also learn who asked for *our* address, or its first answer to a new peer
//!   waits for an ARP round trip of its own (and a SYN-ACK or echo reply is lost to it). The
//!   kernel *tells* smoltcp about neighbours with a synthesized ARP reply addressed to it
//!   ([`neighbour_hint`]): whom the forwarder's ARP answer for our address went to (seen on
//!   the way out, so the receive path never looks at ARP), the Ethernet source of an on-link
//!   peer's TCP SYN or ICMP echo request (a peer that already knows our MAC does not ask), and,
//!   before each health check, the backend's next hop as the forwarder resolved it. smoltcp's
//!   own ARP replies are redundant and [`is_arp_reply`] drops them on the way out. smoltcp
//!   then ARPs only for peers nobody told it about (the fetch server), and a dead backend never
//!   occupies its interface-wide ARP rate limit.
//!   The kernel sends gratuitous ARP for the balancer's address and every VIP at start and
//!   whenever the set of addresses changes.
//! - **Everything addressed to the balancer itself** (ICMP echo, the management API, health
//!   checks' and the fetch's answers) goes to a smoltcp `Interface` through [`LocalDevice`]. That
//!   path is rare, so it copies frames in and out of small queues instead of lending pool buffers
//!   to smoltcp. TCP to the management port from a source outside `[management] allow` is dropped
//!   before smoltcp sees it (counted as `mgmt_denied`): such a client gets no answer at all.
//! - VIP traffic never leaves the fast path: it is rewritten in the buffer it arrived in and
//!   transmitted from that same buffer.
//!
//! A new config (pushed with `PUT /config`, or fetched at boot) is applied between two bursts;
//! the management port, allow list, health checks and the interface address follow it.

use crate::clock;
use crate::fetch::{Fetch, Outcome};
use crate::hal::KernelHal;
use crate::health::Checker;
use crate::idle::{Idle, Mode as IdleMode};
use crate::memory;
use crate::server::Server;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use control::config::{Config, Prefix};
use control::mgmt::{self, Endpoint, Request, Response, Snapshot};
use core::net::Ipv4Addr;
use drivers::pci::{PciFunction, PortConfigSpace};
use drivers::{
    ixgbe, Burst, Ixgbe, IxgbeConfig, MmioRegisters, Nic, PacketPool, VirtioNet, BUF_SIZE, HEADROOM,
};
use forwarder::{DropReason, Forwarder, Instant, Verdict};
use log::{info, warn};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, IpCidr, IpProtocol, Ipv4Packet, TcpPacket,
};

/// Bytes of packet buffers (2 KiB each) given to the NIC.
const POOL_BYTES: usize = 8 << 20;
/// Most frames waiting for the local stack; more are dropped (the local path is not a fast path).
const LOCAL_QUEUE: usize = 256;
/// Flow-table entries when the config does not say, at most.
const DEFAULT_FLOWS_MAX: usize = 4 << 20;

/// smoltcp's view of the NIC: queues of copied frames.
pub struct LocalDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

/// Hands one received frame to smoltcp.
pub struct LocalRx(Vec<u8>);
/// Lets smoltcp write one frame into the transmit queue.
pub struct LocalTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for LocalRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for LocalTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        if self.0.len() < LOCAL_QUEUE {
            self.0.push_back(frame);
        }
        r
    }
}

impl Device for LocalDevice {
    type RxToken<'a> = LocalRx;
    type TxToken<'a> = LocalTx<'a>;

    fn receive(
        &mut self,
        _timestamp: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((LocalRx(frame), LocalTx(&mut self.tx)))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(LocalTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps.max_burst_size = Some(drivers::BURST_SIZE);
        caps
    }
}

/// Which driver a PCI function needs, if it is a NIC Sidestep drives.
fn driver_of(f: &PciFunction) -> Option<&'static str> {
    match f.kind() {
        "virtio-net" => Some("virtio"),
        "82599 (ixgbe)" => Some("ixgbe"),
        _ => None,
    }
}

/// Choose the data NIC: the one the config names (driver or PCI address), else the first NIC
/// Sidestep has a driver for.
fn choose_nic<'a>(
    config: &Config,
    functions: &'a [PciFunction],
) -> Option<(&'a PciFunction, &'static str)> {
    let wanted = config.interface.nic.as_deref();
    functions.iter().find_map(|f| {
        let driver = driver_of(f)?;
        let chosen = match wanted {
            None => true,
            Some(name @ ("virtio" | "ixgbe")) => name == driver,
            Some(addr) => {
                control::config::parse_pci_address(addr)
                    == Some((f.address.bus, f.address.device, f.address.function))
            }
        };
        chosen.then_some((f, driver))
    })
}

/// Flow-table size: the config's, else a quarter of the heap at 32 bytes a flow (capped).
fn flow_capacity(config: &Config, heap_bytes: u64) -> usize {
    match config.limits.flows {
        Some(n) => n as usize,
        None => ((heap_bytes / 4 / 32) as usize).clamp(1024, DEFAULT_FLOWS_MAX),
    }
}

/// Bring up the data NIC the config asks for (or the first usable one) and forward forever.
pub fn start(config: &Config, functions: &[PciFunction], heap_bytes: u64) -> ! {
    let Some((function, driver)) = choose_nic(config, functions) else {
        panic!(
            "no data NIC: no PCI device is {} (Sidestep drives virtio-net and the Intel 82599)",
            config
                .interface
                .nic
                .as_deref()
                .unwrap_or("a NIC it has a driver for")
        );
    };
    let Some((phys, virt)) = memory::alloc_dma(POOL_BYTES) else {
        panic!("cannot allocate {} MiB of packet buffers", POOL_BYTES >> 20);
    };
    // Safety: the region comes from `alloc_dma`: physically contiguous, page-aligned, mapped
    // read-write, used for nothing else, and never freed (the NIC lives as long as the image).
    let pool = match unsafe { PacketPool::new(virt, phys, POOL_BYTES) } {
        Ok(p) => p,
        Err(e) => panic!("packet pool: {e:?}"),
    };
    info!("nic: {driver} at {}", function.address);
    if driver == "ixgbe" {
        let bar = match ixgbe::pci_bring_up(&PortConfigSpace, function.address) {
            Ok(b) => b,
            Err(e) => panic!("82599 at {}: {e}", function.address),
        };
        let Some(regs) = memory::map_mmio(bar.phys, bar.size as usize) else {
            panic!(
                "82599 at {}: cannot map BAR0 at {:#x}",
                function.address, bar.phys
            );
        };
        // Safety: `regs` maps exactly BAR0 of this 82599, uncached, for the image's lifetime,
        // and nothing else accesses it.
        let regs = unsafe { MmioRegisters::new(regs, bar.size as usize) };
        match Ixgbe::<KernelHal>::new(regs, pool, IxgbeConfig::new(clock::delay_us)) {
            Ok(nic) => run(nic, config, heap_bytes),
            Err(e) => panic!("82599 at {}: {e}", function.address),
        }
    }
    match VirtioNet::<KernelHal>::new(&PortConfigSpace, function.address, pool) {
        Ok(nic) => run(nic, config, heap_bytes),
        Err(e) => panic!("virtio-net at {}: {e}", function.address),
    }
}

/// The poll loop over any NIC: receive a burst, decide, transmit a burst.
pub fn run<N: Nic>(mut nic: N, config: &Config, heap_bytes: u64) -> ! {
    let mac = nic.mac_address();
    let capacity = flow_capacity(config, heap_bytes);
    let mut fwd = Forwarder::new(config, mac, capacity);
    if crate::idle::emulated_cpu() {
        // The prefetch pass only adds instructions where prefetching does nothing.
        fwd.set_prefetch(false);
        info!("forwarder: emulated CPU (QEMU TCG): bursts taken frame by frame, no prefetch pass");
    }
    info!(
        "nic: mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, link {}, {} packet buffers",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        if nic.link_up() { "up" } else { "down" },
        nic.pool().capacity()
    );
    info!(
        "forwarder: {} flows capacity ({} MiB)",
        fwd.flow_capacity(),
        (fwd.flow_capacity() * 32) >> 20
    );

    let mut device = LocalDevice {
        rx: VecDeque::new(),
        tx: VecDeque::new(),
        mtu: usize::from(config.interface.mtu),
    };
    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    iface_config.random_seed = clock::rdtsc();
    let mut iface = Interface::new(iface_config, &mut device, smoltcp_now());
    set_interface(&mut iface, config);
    let mut sockets = SocketSet::new(vec![]);
    let mut ctl = Control::new(config, &mut fwd, &mut sockets, now_ms());

    let mut stats = StatsLog::default();
    let mut rx = Burst::new();
    let mut tx = Burst::new();
    for addr in announced(config) {
        send_copy(&mut nic, &mut tx, &garp(mac, addr));
    }
    info!(
        "ready: forwarding as {} ({} VIPs){}",
        config.interface.address,
        config.vips.len(),
        match &config.management {
            Some(m) => alloc::format!(", management on port {}", m.port),
            None => String::new(),
        }
    );
    let mut idle = Idle::init(config.interface.poll);
    let housekeeping_cycles = HOUSEKEEPING_US * clock::tsc_hz() / 1_000_000;
    let mut last_housekeeping = 0u64;
    // Under a hypervisor, reload CR3 now and then: see TLB_FLUSH_MS.
    let tlb_flush_cycles =
        crate::idle::under_hypervisor().then(|| TLB_FLUSH_MS * clock::tsc_hz() / 1_000);
    let mut last_tlb_flush = 0u64;
    // Written by the forwarder for the first `count` frames of each burst; initialised once.
    let mut verdicts = [Verdict::Queued; drivers::BURST_SIZE];
    loop {
        // This round's time, for the forwarder and for the housekeeping and idle decisions
        // (one read of the TSC: under QEMU TCG `rdtsc` calls into the emulator).
        let tsc = clock::rdtsc();
        let now = Instant::from_nanos(clock::nanos_at(tsc));
        let received = nic.rx_burst(&mut rx);
        #[cfg(feature = "ceiling")]
        ceiling::bounce(&mut nic, &mut rx, &mut tx, mac);
        let count = rx.len();
        if count > 0 {
            forward_burst(
                &mut nic,
                &mut fwd,
                &mut rx,
                &mut tx,
                &mut verdicts,
                now,
                &mut ctl,
                &mut device,
                mac,
            );
        }
        // Housekeeping (neighbour timers, the local stack, management, health checks, fetch)
        // runs at most every HOUSEKEEPING_US, or at once when a frame for the local stack
        // arrived: its timers are milliseconds, and running it on every round of the loop
        // made each round several times dearer than the forwarding it serves.
        if !device.rx.is_empty() || tsc.wrapping_sub(last_housekeeping) >= housekeeping_cycles {
            last_housekeeping = tsc;
            if tlb_flush_cycles.is_some_and(|c| tsc.wrapping_sub(last_tlb_flush) >= c) {
                last_tlb_flush = tsc;
                crate::memory::flush_tlb();
            }
            fwd.poll(now, &mut |frame| send_copy(&mut nic, &mut tx, frame));
            if !device.rx.is_empty()
                || iface
                    .poll_delay(smoltcp_now(), &sockets)
                    .is_some_and(|d| d.total_millis() == 0)
            {
                iface.poll(smoltcp_now(), &mut device, &mut sockets);
            }
            let counts = NicCounts {
                rx: nic.stats().rx_packets,
                tx: nic.stats().tx_packets,
            };
            let mut hints = Vec::new();
            let (touched, announce) =
                ctl.poll(now, &mut fwd, &mut iface, &mut sockets, counts, &mut hints);
            for (ip, peer) in hints {
                device
                    .rx
                    .push_back(neighbour_hint(mac, ctl.own, ip, peer).to_vec());
            }
            if touched || !device.rx.is_empty() {
                iface.poll(smoltcp_now(), &mut device, &mut sockets);
            }
            for addr in announce {
                send_copy(&mut nic, &mut tx, &garp(mac, addr));
            }
            while let Some(frame) = device.tx.pop_front() {
                // The forwarder answers ARP requests; smoltcp's own replies are redundant.
                if !is_arp_reply(&frame) {
                    send_copy(&mut nic, &mut tx, &frame);
                }
            }
        }
        stats.maybe_log(now, &fwd, &nic, &idle);
        let sent = !tx.is_empty();
        if received > 0 || sent {
            idle.worked(tsc, received);
        } else {
            idle.nothing(tsc);
        }
        if sent {
            nic.tx_burst(&mut tx);
            if tx.is_full() {
                // The TX ring stayed full for a whole round: shed rather than stall receive.
                warn!("tx ring full; dropping {} frames", tx.len());
                while let Some(p) = tx.pop_front() {
                    nic.recycle(p);
                }
            }
        }
    }
}

/// Hand a received burst (`rx`, not empty) to the forwarder in one call and act on its verdicts:
/// transmit, pass to the local stack, or recycle.
#[allow(clippy::too_many_arguments)]
fn forward_burst<N: Nic>(
    nic: &mut N,
    fwd: &mut Forwarder,
    rx: &mut Burst,
    tx: &mut Burst,
    verdicts: &mut [Verdict; drivers::BURST_SIZE],
    now: Instant,
    ctl: &mut Control,
    device: &mut LocalDevice,
    mac: [u8; 6],
) {
    // The whole burst in one call (with a large flow table the forwarder classifies every
    // frame and prefetches their buckets before it looks any of them up). The pool lends it
    // the buffers one at a time, straight from the handles (nothing is built or checked per
    // burst).
    let count = rx.len();
    fwd.process_frames(
        &mut Lent(nic.pool_mut().lend(rx.make_contiguous())),
        &mut verdicts[..count],
        now,
    );
    for &verdict in &verdicts[..count] {
        let Some(mut pkt) = rx.pop_front() else {
            break;
        };
        match verdict {
            Verdict::Forward { head, len } | Verdict::Reply { head, len } => {
                if pkt.set_frame(head, len).is_err() {
                    nic.recycle(pkt);
                    continue;
                }
                // A reply may be the forwarder's answer to an ARP request for our address:
                // smoltcp learns the asker from it (see the module documentation).
                if let Verdict::Reply { .. } = verdict {
                    if let Some((ip, peer)) = arp_answer_from(nic.pool().frame(&pkt), ctl.own) {
                        if device.rx.len() < LOCAL_QUEUE {
                            device
                                .rx
                                .push_back(neighbour_hint(mac, ctl.own, ip, peer).to_vec());
                        }
                    }
                }
                queue_tx(nic, tx, pkt);
            }
            Verdict::Local => {
                let frame = nic.pool().frame(&pkt);
                if ctl.denied(frame) {
                    ctl.mgmt_denied += 1;
                } else if device.rx.len() + 1 < LOCAL_QUEUE {
                    if let Some((ip, peer)) = first_packet_peer(frame, ctl.subnet) {
                        device
                            .rx
                            .push_back(neighbour_hint(mac, ctl.own, ip, peer).to_vec());
                    }
                    device.rx.push_back(frame.to_vec());
                }
                nic.recycle(pkt);
            }
            Verdict::Queued | Verdict::Drop(_) => nic.recycle(pkt),
        }
    }
    if rx.is_empty() {
        // Start the next burst at the front of the ring, so that `make_contiguous` moves
        // nothing.
        rx.clear();
    }
}

/// The received burst as the forwarder reads it: the pool's buffers, lent one at a time.
struct Lent<'p>(drivers::Lender<'p>);

impl forwarder::Frames for Lent<'_> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn frame(&self, i: usize) -> Option<(&[u8], usize, usize)> {
        self.0.get(i).map(|(p, buf)| (buf, p.head(), p.len()))
    }

    #[inline(always)]
    fn frame_mut(&mut self, i: usize) -> Option<(&mut [u8], usize, usize)> {
        self.0.get_mut(i).map(|(p, buf)| (buf, p.head(), p.len()))
    }
}

/// Under a hypervisor the loop flushes the TLB (reloads CR3) this often. Under QEMU TCG the
/// guest's TLB is QEMU's software TLB, which starts at 256 entries and is resized only when the
/// guest flushes it; the image otherwise never does, so every flow-table lookup that strayed
/// from the last 256 pages took a page walk in the emulator (`perf` on the vCPU thread: 23 % of
/// its time in the soft-MMU fill path, 16 % with the reloads). Each reload can double the TLB;
/// in `qemu/bench` (64 k flows over a 32 MiB table) 100 and 250 ms forwarded 10 to 15 % more
/// than never, and 1 s less (slower growth). On a real or hardware-virtualized CPU a reload
/// every 200 ms costs a few microseconds of refills.
const TLB_FLUSH_MS: u64 = 200;

/// Longest interval between two rounds of housekeeping in the poll loop. Its timers are
/// milliseconds (ARP retries, TCP, health checks), and frames for the local stack run it at
/// once. Each round also sweeps a share of the flow table for expired flows, paced by time
/// (`forwarder::SWEEP_PERIOD_MS`), so the interval does not change how fast the table is
/// swept. At 100 us with a fixed 256 buckets a round, the sweep alone had cost the image under
/// QEMU TCG about 130 guest instructions per forwarded frame (the whole image about 1 400),
/// measured with qemu/tbprof.
const HOUSEKEEPING_US: u64 = 1000;

fn smoltcp_now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(clock::micros_since_boot() as i64)
}

fn now_ms() -> u64 {
    clock::micros_since_boot() / 1000
}

/// Give smoltcp the config's interface address and default route.
fn set_interface(iface: &mut Interface, config: &Config) {
    let own = config.interface.address;
    iface.update_ip_addrs(|addrs| {
        addrs.clear();
        let _ = addrs.push(IpCidr::new(own.address.into(), own.len));
    });
    iface.routes_mut().remove_default_ipv4_route();
    if let Some(gw) = config.interface.gateway {
        let _ = iface.routes_mut().add_default_ipv4_route(gw);
    }
}

/// The addresses the balancer answers ARP for: its own, then every VIP's (sorted, unique).
fn announced(config: &Config) -> Vec<Ipv4Addr> {
    let mut vips: Vec<Ipv4Addr> = config.vips.iter().map(|v| v.address).collect();
    vips.sort_unstable();
    vips.dedup();
    let mut all = vec![config.interface.address.address];
    all.extend(
        vips.into_iter()
            .filter(|a| *a != config.interface.address.address),
    );
    all
}

/// A gratuitous ARP for `addr`: a broadcast request with sender = target = `addr`.
fn garp(mac: [u8; 6], addr: Ipv4Addr) -> [u8; 60] {
    let mut frame = [0u8; 60];
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: addr,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: addr,
    };
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    frame
}

/// An ARP reply from `peer` (`ip`) to us: how the kernel tells smoltcp a neighbour it knows.
fn neighbour_hint(mac: [u8; 6], own: Ipv4Addr, ip: Ipv4Addr, peer: [u8; 6]) -> [u8; 60] {
    let mut frame = [0u8; 60];
    let eth = EthernetRepr {
        src_addr: EthernetAddress(peer),
        dst_addr: EthernetAddress(mac),
        ethertype: EthernetProtocol::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(peer),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress(mac),
        target_protocol_addr: own,
    };
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    frame
}

/// The on-link sender of a frame that opens a conversation with us (a TCP SYN or an ICMP echo
/// request), with its MAC: smoltcp's answer must not wait for an ARP round trip.
fn first_packet_peer(frame: &[u8], subnet: Prefix) -> Option<(Ipv4Addr, [u8; 6])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let src = ip.src_addr();
    if !subnet.contains(src) || ip.frag_offset() != 0 {
        return None;
    }
    let opens = match ip.next_header() {
        IpProtocol::Tcp => TcpPacket::new_checked(ip.payload()).is_ok_and(|t| t.syn() && !t.ack()),
        IpProtocol::Icmp => ip.payload().first() == Some(&8),
        _ => false,
    };
    let src_mac = eth.src_addr();
    (opens && src_mac.is_unicast()).then_some((src, src_mac.0))
}

/// An ARP reply sent as `own` (the forwarder's answer to a request for our address): whom it
/// answers, address and MAC.
fn arp_answer_from(frame: &[u8], own: Ipv4Addr) -> Option<(Ipv4Addr, [u8; 6])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let a = ArpPacket::new_checked(eth.payload()).ok()?;
    if a.operation() != ArpOperation::Reply
        || a.source_protocol_addr() != own.octets()
        || a.hardware_len() != 6
        || a.protocol_len() != 4
    {
        return None;
    }
    let ip = Ipv4Addr::from_octets(a.target_protocol_addr().try_into().ok()?);
    let peer = a.target_hardware_addr().try_into().ok()?;
    Some((ip, peer))
}

/// An ARP reply (smoltcp's, on its way out).
fn is_arp_reply(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    eth.ethertype() == EthernetProtocol::Arp
        && ArpPacket::new_checked(eth.payload()).is_ok_and(|a| a.operation() == ArpOperation::Reply)
}

/// Whether `frame` (already classified as the balancer's own) is TCP to the management port
/// from a source outside the allow list.
fn mgmt_denied(frame: &[u8], port: u16, allow: &[Prefix]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return false;
    };
    if ip.next_header() != IpProtocol::Tcp {
        return false;
    }
    // A later fragment has no ports; the forwarder's own traffic is never fragmented, so a
    // fragment to us from outside the allow list is dropped too.
    let src = ip.src_addr();
    if allow.iter().any(|p| p.contains(src)) {
        return false;
    }
    if ip.frag_offset() != 0 {
        return true;
    }
    TcpPacket::new_checked(ip.payload()).is_ok_and(|t| t.dst_port() == port)
}

/// NIC frame counts for metrics.
#[derive(Clone, Copy)]
struct NicCounts {
    rx: u64,
    tx: u64,
}

/// Local ports for the balancer's own connections: 49152..=65535 in turn, skipping the
/// management port.
pub struct Ports {
    next: u16,
    avoid: u16,
}

impl Ports {
    /// The next port to connect from.
    pub fn next(&mut self) -> u16 {
        loop {
            let p = self.next;
            self.next = if p == u16::MAX { 49152 } else { p + 1 };
            if p != self.avoid {
                return p;
            }
        }
    }
}

/// The balancer's own side: the running config, the management server, health checks, the
/// boot-time fetch, and the kernel's own counters.
struct Control {
    config: Config,
    own: Ipv4Addr,
    subnet: Prefix,
    server: Server,
    health: Checker,
    fetch: Option<Fetch>,
    ports: Ports,
    mgmt_denied: u64,
    booted_ms: u64,
}

impl Control {
    fn new(
        config: &Config,
        fwd: &mut Forwarder,
        sockets: &mut SocketSet<'static>,
        now_ms: u64,
    ) -> Control {
        let port = config.management.as_ref().map(|m| m.port);
        let mut health = Checker::default();
        health.configure(config, fwd, sockets, now_ms);
        let fetch = match config.management.as_ref().and_then(|m| m.fetch.as_deref()) {
            Some(url) => match Fetch::new(url, sockets, now_ms) {
                Ok(f) => {
                    info!("fetch: getting a signed config from {url}; forwarding with the baked v{} meanwhile", config.version);
                    Some(f)
                }
                Err(e) => {
                    warn!("fetch: keeping the baked config v{}: {e}", config.version);
                    None
                }
            },
            None => None,
        };
        Control {
            config: config.clone(),
            own: config.interface.address.address,
            subnet: config.interface.address,
            server: Server::new(sockets, port),
            health,
            fetch,
            ports: Ports {
                next: 49152 + (clock::rdtsc() % 16384) as u16,
                avoid: port.unwrap_or(0),
            },
            mgmt_denied: 0,
            booted_ms: 0,
        }
    }

    /// Whether a frame for the balancer must not reach smoltcp (management from outside `allow`).
    fn denied(&self, frame: &[u8]) -> bool {
        match &self.config.management {
            Some(m) => mgmt_denied(frame, m.port, &m.allow),
            None => false,
        }
    }

    /// Serve the management API, run health checks and the fetch, apply a new config. Returns
    /// whether smoltcp has something to send, and addresses to announce with gratuitous ARP.
    fn poll(
        &mut self,
        now: Instant,
        fwd: &mut Forwarder,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        nic: NicCounts,
        hints: &mut Vec<(Ipv4Addr, [u8; 6])>,
    ) -> (bool, Vec<Ipv4Addr>) {
        let ms = now.millis();
        let mut touched = self
            .health
            .poll(ms, iface, sockets, &mut self.ports, fwd, hints);

        let mut accepted: Option<Config> = None;
        {
            let (config, health, denied, booted) =
                (&self.config, &self.health, self.mgmt_denied, self.booted_ms);
            let fwd_ref: &Forwarder = fwd;
            let mut handler = |request: Request| -> Response {
                match mgmt::route(&request.method, &request.path) {
                    Err(r) => r,
                    Ok(Endpoint::Config) => {
                        let running = accepted.as_ref().unwrap_or(config);
                        let pubkey = running.management.as_ref().and_then(|m| m.pubkey.as_ref());
                        match mgmt::check_signed_config(&request.body, pubkey, running.version) {
                            Ok(new) => {
                                let body = alloc::format!("applied config v{}\n", new.version);
                                accepted = Some(new);
                                Response::text(200, body)
                            }
                            Err(r) => {
                                info!(
                                    "config: refused a push ({}: {})",
                                    r.status,
                                    core::str::from_utf8(&r.body).unwrap_or("").trim_end()
                                );
                                r
                            }
                        }
                    }
                    Ok(endpoint) => {
                        let vips = fwd_ref.stats();
                        let counters = fwd_ref.counters();
                        let mut drops: Vec<(&str, u64)> = DropReason::ALL
                            .iter()
                            .map(|r| (r.name(), counters.drop_count(*r)))
                            .collect();
                        drops.push(("mgmt_denied", denied));
                        let transitions = health.transitions();
                        let snapshot = Snapshot {
                            config,
                            uptime_ms: ms.saturating_sub(booted),
                            flows_capacity: fwd_ref.flow_capacity() as u64,
                            drops: &drops,
                            vips: &vips,
                            transitions: &transitions,
                            nic_rx_packets: nic.rx,
                            nic_tx_packets: nic.tx,
                            flows_rescheduled: counters.flows_rescheduled,
                        };
                        if endpoint == Endpoint::Metrics {
                            Response::with(200, mgmt::PROMETHEUS, mgmt::render_metrics(&snapshot))
                        } else {
                            Response::with(200, "application/json", mgmt::render_status(&snapshot))
                        }
                    }
                }
            };
            touched |= self.server.poll(sockets, ms, &mut handler);
        }

        if let Some(fetch) = &mut self.fetch {
            let (outcome, t) = fetch.poll(ms, iface, sockets, &mut self.ports);
            touched |= t;
            if let Some(outcome) = outcome {
                if let Some(f) = self.fetch.take() {
                    f.release(sockets);
                }
                let baked = self.config.version;
                match outcome {
                    Outcome::Failed(why) => {
                        warn!("fetch: keeping the baked config v{baked}: {why}")
                    }
                    Outcome::Blob(blob) => {
                        let pubkey = self
                            .config
                            .management
                            .as_ref()
                            .and_then(|m| m.pubkey.as_ref());
                        match mgmt::check_signed_config(&blob, pubkey, fwd.config_version()) {
                            Ok(new) => {
                                info!("fetch: got config v{}", new.version);
                                accepted = Some(new);
                            }
                            Err(r) => warn!(
                                "fetch: keeping the baked config v{baked}: {}",
                                core::str::from_utf8(&r.body)
                                    .unwrap_or("refused")
                                    .trim_end()
                            ),
                        }
                    }
                }
            }
        }

        let mut announce = Vec::new();
        if let Some(new) = accepted {
            let before = announced(&self.config);
            fwd.apply_config(&new, now);
            info!("config applied: {}", new.summary());
            if new.interface != self.config.interface {
                set_interface(iface, &new);
            }
            let port = new.management.as_ref().map(|m| m.port);
            self.server.set_port(port);
            self.ports.avoid = port.unwrap_or(0);
            self.own = new.interface.address.address;
            self.subnet = new.interface.address;
            self.health.configure(&new, fwd, sockets, ms);
            let after = announced(&new);
            if after != before {
                announce = after;
            }
            self.config = new;
            touched = true;
        }
        (touched, announce)
    }
}

/// Copy a frame made elsewhere (ARP request, local stack reply) into a pool buffer and queue it.
fn send_copy<N: Nic>(nic: &mut N, tx: &mut Burst, frame: &[u8]) {
    if frame.len() > BUF_SIZE - HEADROOM {
        return;
    }
    let Some(mut pkt) = nic.pool_mut().alloc() else {
        return;
    };
    nic.pool_mut().buffer_mut(&pkt)[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
    if pkt.set_frame(HEADROOM, frame.len()).is_err() {
        nic.recycle(pkt);
        return;
    }
    queue_tx(nic, tx, pkt);
}

/// Queue `pkt` for transmission, sending the burst first if it is full; a frame that still finds
/// no room goes back to the pool.
pub(crate) fn queue_tx<N: Nic>(nic: &mut N, tx: &mut Burst, pkt: drivers::PacketBuf) {
    if tx.is_full() {
        nic.tx_burst(tx);
    }
    if let Err(pkt) = tx.push_back(pkt) {
        nic.recycle(pkt);
    }
}

/// A periodic one-line summary of the counters on the console, when they changed: the operator's
/// view until a management port is configured.
#[derive(Default)]
struct StatsLog {
    next: u64,
    last: u64,
    /// `Idle::napped_cycles` and the TSC at the last line.
    napped_cycles: u64,
    tsc: u64,
}

/// Seconds between two stats lines at most.
const STATS_EVERY_MS: u64 = 5_000;

impl StatsLog {
    fn maybe_log<N: Nic>(&mut self, now: Instant, fwd: &Forwarder, nic: &N, idle: &Idle) {
        if now.millis() < self.next {
            return;
        }
        self.next = now.millis() + STATS_EVERY_MS;
        // Share of the interval spent napping (only when the idle policy naps).
        let napped = idle.napped_cycles - self.napped_cycles;
        let tsc = clock::rdtsc();
        let elapsed = tsc.wrapping_sub(self.tsc).max(1);
        self.napped_cycles = idle.napped_cycles;
        self.tsc = tsc;
        let c = fwd.counters();
        let n = nic.stats();
        let total = n.rx_packets + n.tx_packets;
        if total == self.last {
            return;
        }
        self.last = total;
        let mut drops = alloc::string::String::new();
        for reason in forwarder::DropReason::ALL {
            let count = c.drop_count(reason);
            if count > 0 {
                drops.push_str(&alloc::format!(" {}={}", reason.name(), count));
            }
        }
        let napping = match idle.mode() {
            IdleMode::Nap => alloc::format!(" napping={}%", napped * 100 / elapsed),
            IdleMode::Busy => String::new(),
        };
        info!(
            "stats: rx={} tx={} forwarded={} local={} flows={}{} drops:{}",
            n.rx_packets,
            n.tx_packets,
            c.forwarded,
            c.local,
            fwd.flow_count(),
            napping,
            if drops.is_empty() { " none" } else { &drops }
        );
    }
}

/// The I/O ceiling `qemu/bench` compares the forwarder with: a kernel built with the `ceiling`
/// feature sends every received frame to [`ceiling::SINK_MAC`] without looking at it, so the
/// difference between its rate and the normal image's is what classification costs. Never part
/// of a normal build.
#[cfg(feature = "ceiling")]
mod ceiling {
    use drivers::{Burst, Nic};

    /// Where every frame goes: the MAC `qemu/bench` gives its first sink.
    pub const SINK_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xbe, 0x00, 0x01];

    /// Rewrite the Ethernet addresses of every frame in `rx` and queue it for transmission.
    pub fn bounce<N: Nic>(nic: &mut N, rx: &mut Burst, tx: &mut Burst, mac: [u8; 6]) {
        while let Some(pkt) = rx.pop_front() {
            if pkt.len() < 14 {
                nic.recycle(pkt);
                continue;
            }
            let frame = nic.pool_mut().frame_mut(&pkt);
            frame[..6].copy_from_slice(&SINK_MAC);
            frame[6..12].copy_from_slice(&mac);
            super::queue_tx(nic, tx, pkt);
        }
    }
}
