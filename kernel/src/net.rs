//! The data NIC and the poll loop: receive a burst, let the forwarder decide, transmit a burst.
//!
//! Who answers what on the wire:
//! - **ARP belongs to the forwarder.** It answers requests for the balancer's address and every
//!   VIP, resolves backends and the gateway, and hands ARP replies to smoltcp as well, so the
//!   local stack (which only resolves for its own sockets) learns its neighbours from them.
//! - **Everything addressed to the balancer itself** (ICMP echo, later management and health
//!   checks) goes to a smoltcp `Interface` through [`LocalDevice`]. That path is rare, so it
//!   copies frames in and out of small queues instead of lending pool buffers to smoltcp.
//! - VIP traffic never leaves the fast path: it is rewritten in the buffer it arrived in and
//!   transmitted from that same buffer.

use crate::clock;
use crate::hal::KernelHal;
use crate::memory;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use drivers::pci::{PciFunction, PortConfigSpace};
use drivers::{ixgbe, Burst, Ixgbe, IxgbeConfig, MmioRegisters, Nic, PacketPool, VirtioNet, BUF_SIZE, HEADROOM};
use forwarder::config::Config;
use forwarder::{Forwarder, Instant, Verdict};
use log::{info, warn};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

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
fn choose_nic<'a>(config: &Config, functions: &'a [PciFunction]) -> Option<(&'a PciFunction, &'static str)> {
    let wanted = config.interface.nic.as_deref();
    functions.iter().find_map(|f| {
        let driver = driver_of(f)?;
        let chosen = match wanted {
            None => true,
            Some(name @ ("virtio" | "ixgbe")) => name == driver,
            Some(addr) => {
                forwarder::config::parse_pci_address(addr)
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

fn now() -> Instant {
    Instant::from_nanos(clock::nanos_since_boot())
}

/// Bring up the data NIC the config asks for (or the first usable one) and forward forever.
pub fn start(config: &Config, functions: &[PciFunction], heap_bytes: u64) -> ! {
    let Some((function, driver)) = choose_nic(config, functions) else {
        panic!(
            "no data NIC: no PCI device is {} (Sidestep drives virtio-net and the Intel 82599)",
            config.interface.nic.as_deref().unwrap_or("a NIC it has a driver for")
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
            panic!("82599 at {}: cannot map BAR0 at {:#x}", function.address, bar.phys);
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
    info!(
        "nic: mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, link {}, {} packet buffers",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
        if nic.link_up() { "up" } else { "down" },
        nic.pool().capacity()
    );
    info!(
        "forwarder: {} flows capacity ({} MiB)",
        fwd.flow_capacity(),
        (fwd.flow_capacity() * 32) >> 20
    );

    let own = config.interface.address;
    let mut device = LocalDevice {
        rx: VecDeque::new(),
        tx: VecDeque::new(),
        mtu: usize::from(config.interface.mtu),
    };
    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    iface_config.random_seed = clock::rdtsc();
    let mut iface = Interface::new(iface_config, &mut device, smoltcp_now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(own.address.into(), own.len));
    });
    if let Some(gw) = config.interface.gateway {
        let _ = iface.routes_mut().add_default_ipv4_route(Ipv4Address::from(gw));
    }
    let mut sockets = SocketSet::new(vec![]);

    let mut stats = StatsLog::default();
    let mut rx = Burst::new();
    let mut tx = Burst::new();
    info!(
        "ready: forwarding as {} ({} VIPs)",
        own,
        config.vips.len()
    );
    loop {
        let now = now();
        nic.rx_burst(&mut rx);
        while let Some(mut pkt) = rx.pop_front() {
            let (head, len) = (pkt.head(), pkt.len());
            let verdict = fwd.process(nic.pool_mut().buffer_mut(&pkt), head, len, now);
            match verdict {
                Verdict::Forward { head, len } | Verdict::Reply { head, len } => {
                    if pkt.set_frame(head, len).is_err() {
                        nic.recycle(pkt);
                        continue;
                    }
                    if tx.is_full() {
                        nic.tx_burst(&mut tx);
                    }
                    if let Err(pkt) = tx.push_back(pkt) {
                        nic.recycle(pkt);
                    }
                }
                Verdict::Local => {
                    if device.rx.len() < LOCAL_QUEUE {
                        device.rx.push_back(nic.pool().frame(&pkt).to_vec());
                    }
                    nic.recycle(pkt);
                }
                Verdict::Queued | Verdict::Drop(_) => nic.recycle(pkt),
            }
        }
        fwd.poll(now, &mut |frame| send_copy(&mut nic, &mut tx, frame));
        if !device.rx.is_empty() || iface.poll_delay(smoltcp_now(), &sockets).is_some_and(|d| d.total_millis() == 0) {
            iface.poll(smoltcp_now(), &mut device, &mut sockets);
        }
        while let Some(frame) = device.tx.pop_front() {
            send_copy(&mut nic, &mut tx, &frame);
        }
        stats.maybe_log(now, &fwd, &nic);
        if !tx.is_empty() {
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

fn smoltcp_now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(clock::micros_since_boot() as i64)
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
}

/// Seconds between two stats lines at most.
const STATS_EVERY_MS: u64 = 5_000;

impl StatsLog {
    fn maybe_log<N: Nic>(&mut self, now: Instant, fwd: &Forwarder, nic: &N) {
        if now.millis() < self.next {
            return;
        }
        self.next = now.millis() + STATS_EVERY_MS;
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
        info!(
            "stats: rx={} tx={} forwarded={} local={} flows={} drops:{}",
            n.rx_packets,
            n.tx_packets,
            c.forwarded,
            c.local,
            fwd.flow_count(),
            if drops.is_empty() { " none" } else { &drops }
        );
    }
}
