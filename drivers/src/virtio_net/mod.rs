//! virtio-net (virtio 1.0 section 5.1) over PCI, polled, in bursts, zero copy.
//!
//! The device setup (PCI capabilities, common configuration, feature bits) is virtio-drivers'
//! `PciTransport`; the data path is ours (see [`ring`]): receive and transmit queues whose
//! buffers are pool buffers. [`VirtioNet`] is one queue pair notified through the transport;
//! [`VirtioNet::new_queues`] gives one [`VirtioQueue`] handle per queue pair, one per CPU, each
//! with its own doorbells (see [`mq`]). Both are brought up by one function, `bring_up`.
//!
//! Buffer layout. virtio-net puts a 12-byte `virtio_net_hdr` (with `VIRTIO_F_VERSION_1`, no
//! mergeable buffers) in front of every frame. On receive the descriptor starts 12 bytes before
//! [`HEADROOM`], so the frame itself lands at exactly `HEADROOM` (128). On transmit the driver
//! zeroes the 12 bytes before the frame's head (wherever the forwarder left it) and describes
//! `[head - 12, head + len)`: a zeroed header means "no checksum offload, no GSO".
//!
//! Only `MAC`, `STATUS`, `VERSION_1` and `RING_EVENT_IDX` are negotiated (plus `CTRL_VQ`, `MQ`
//! and `RSS` for more than one queue pair): no offloads, no mergeable buffers, no interrupts (the
//! driver is polled). Without `CTRL_RX` there is no receive filter to program: the device
//! delivers every frame (QEMU's stays promiscuous then), so multicast such as VRRP's 224.0.0.18
//! arrives, and frames are sent with whatever source MAC they carry (VRRP's virtual router MAC).

pub mod mq;
pub mod ring;

use alloc::vec;
use alloc::vec::Vec;

use core::fmt;

use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::{PciTransport, VirtioPciError};
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::Hal;

use crate::nic::{Burst, Nic, NicStats};
use crate::pci::{self, ConfigSpace, PciAddress};
use crate::pool::{PacketPool, BUF_SIZE, HEADROOM, TX_MIN_HEAD};
use ring::{QueueError, Refused, SplitQueue};

pub use mq::{Doorbell, MmioDoorbell, VirtioQueue, RSS_KEY_LEN};

/// Size of `virtio_net_hdr` with `VIRTIO_F_VERSION_1` (5.1.6).
pub const NET_HDR_LEN: usize = 12;

/// Where a receive descriptor starts within its buffer: the header, then the frame at HEADROOM.
const RX_DESC_OFFSET: usize = HEADROOM - NET_HDR_LEN;
/// Bytes a receive descriptor offers: header plus up to `MAX_FRAME` bytes of frame.
const RX_DESC_LEN: usize = BUF_SIZE - RX_DESC_OFFSET;
/// The longest frame (Ethernet header on, no FCS) a receive descriptor holds whole: the device
/// cannot split a longer one without mergeable buffers, which this driver does not offer.
pub const RX_FRAME_MAX: usize = RX_DESC_LEN - NET_HDR_LEN;
/// The shortest frame worth passing on: an Ethernet header.
const MIN_FRAME: usize = 14;

// The header goes in front of the frame: on receive inside the headroom, on transmit inside the
// room every frame handed to `tx_burst` has (its head is at least TX_MIN_HEAD).
const _: () = assert!(NET_HDR_LEN <= TX_MIN_HEAD && NET_HDR_LEN <= HEADROOM);

/// Feature bits (5.1.3, 6).
const F_MAC: u64 = 1 << 5;
const F_STATUS: u64 = 1 << 16;
const F_RING_EVENT_IDX: u64 = 1 << 29;
const F_VERSION_1: u64 = 1 << 32;
/// `VIRTIO_NET_S_LINK_UP` in the config's status field (5.1.4).
const S_LINK_UP: u16 = 1;
/// Byte offsets in the device configuration (5.1.4).
const CONFIG_MAC: usize = 0;
const CONFIG_STATUS: usize = 6;

/// The PCI vendor and device ids of virtio-net: modern, and transitional (4.1.2).
const VIRTIO_VENDOR: u16 = 0x1af4;
const VIRTIO_NET_MODERN: u16 = 0x1041;
const VIRTIO_NET_TRANSITIONAL: u16 = 0x1000;

/// Why a virtio-net device could not be brought up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VirtioNetError {
    /// Nothing answers at the PCI address.
    NoDevice,
    /// The function is not a virtio-net device (vendor, device id).
    NotVirtioNet(u16, u16),
    /// virtio-drivers could not set up the PCI transport (missing capability, BAR not assigned, ...).
    Transport(VirtioPciError),
    /// The device does not offer `VIRTIO_F_VERSION_1`: a legacy-only device is not supported.
    LegacyOnly,
    /// The device cleared FEATURES_OK: it refused our feature subset.
    FeaturesRejected,
    /// The receive or transmit queue does not exist or is already in use.
    QueueUnavailable(u16),
    /// `Hal::dma_alloc` failed for a queue.
    DmaAlloc,
    /// The device configuration (MAC) could not be read.
    Config,
    /// No packet pool was given (every queue pair needs one), or the first pool had no buffer
    /// for the control commands.
    NoPool,
    /// The device answered a control command (class, command) with an error (5.1.6.5).
    CommandRefused(u8, u8),
    /// The device did not complete a control command (class, command) in time.
    CommandTimeout(u8, u8),
    /// The notify capability (4.1.4.4) is missing or a queue's doorbell lies outside it.
    Doorbell,
}

impl fmt::Display for VirtioNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => f.write_str("no PCI function at that address"),
            Self::NotVirtioNet(v, d) => write!(f, "{v:04x}:{d:04x} is not a virtio-net device"),
            Self::Transport(e) => write!(f, "virtio PCI transport: {e}"),
            Self::LegacyOnly => {
                f.write_str("device lacks VIRTIO_F_VERSION_1 (legacy-only virtio is unsupported)")
            }
            Self::FeaturesRejected => f.write_str("device refused the negotiated features"),
            Self::QueueUnavailable(q) => write!(f, "virtqueue {q} is missing or already enabled"),
            Self::DmaAlloc => f.write_str("DMA allocation for a virtqueue failed"),
            Self::Config => f.write_str("could not read the virtio-net configuration space"),
            Self::NoPool => f.write_str("no packet pool given, or the first pool is empty"),
            Self::CommandRefused(c, n) => {
                write!(f, "device refused control command class {c} command {n}")
            }
            Self::CommandTimeout(c, n) => {
                write!(
                    f,
                    "device did not complete control command class {c} command {n}"
                )
            }
            Self::Doorbell => f.write_str("no usable virtio notify capability for a queue"),
        }
    }
}

/// virtio-drivers' view of configuration space, over ours.
pub struct PciConfigAccess<'a, C: ConfigSpace + ?Sized>(pub &'a C);

impl<C: ConfigSpace + ?Sized> ConfigurationAccess for PciConfigAccess<'_, C> {
    fn read_word(&self, df: DeviceFunction, register_offset: u8) -> u32 {
        self.0.read(to_address(df), register_offset)
    }

    fn write_word(&mut self, df: DeviceFunction, register_offset: u8, data: u32) {
        self.0.write(to_address(df), register_offset, data);
    }

    // The trait's contract (no two clones used to race on one configuration access) is the
    // caller's; a copy of the shared reference is all a clone takes.
    unsafe fn unsafe_clone(&self) -> Self {
        PciConfigAccess(self.0)
    }
}

fn to_address(df: DeviceFunction) -> PciAddress {
    PciAddress {
        bus: df.bus,
        device: df.device,
        function: df.function,
    }
}

/// A virtio-net device with one receive and one transmit queue, receiving into its own pool.
///
/// `H` is the kernel's `Hal`; `T` is the transport (PCI on real systems, a fake in tests).
pub struct VirtioNet<H: Hal, T: Transport = PciTransport> {
    // Field order matters: the transport is dropped first, and dropping a `PciTransport` resets
    // the device, which stops its DMA before the queues' memory is freed.
    transport: T,
    pair: QueuePair<H>,
    mac: [u8; 6],
    has_status: bool,
}

/// Map a PCI function at `address` to a `PciTransport` (after checking it is virtio-net and
/// enabling bus mastering).
fn pci_transport<H: Hal>(
    config: &impl ConfigSpace,
    address: PciAddress,
) -> Result<PciTransport, VirtioNetError> {
    let function = pci::probe(config, address).ok_or(VirtioNetError::NoDevice)?;
    if function.vendor != VIRTIO_VENDOR
        || !matches!(function.device, VIRTIO_NET_MODERN | VIRTIO_NET_TRANSITIONAL)
    {
        return Err(VirtioNetError::NotVirtioNet(
            function.vendor,
            function.device,
        ));
    }
    pci::enable_bus_master(config, address);
    let mut root = PciRoot::new(PciConfigAccess(config));
    PciTransport::new::<H, _>(&mut root, device_function(address))
        .map_err(VirtioNetError::Transport)
}

fn device_function(address: PciAddress) -> DeviceFunction {
    DeviceFunction {
        bus: address.bus,
        device: address.device,
        function: address.function,
    }
}

impl<H: Hal> VirtioNet<H, PciTransport> {
    /// Bring up the virtio-net PCI function at `address`: enable bus mastering, map its virtio
    /// structures (through `H::mmio_phys_to_virt`), negotiate features, set up the queues, fill
    /// the receive ring from `pool`.
    pub fn new(
        config: &impl ConfigSpace,
        address: PciAddress,
        pool: PacketPool,
    ) -> Result<Self, VirtioNetError> {
        Self::with_transport(pci_transport::<H>(config, address)?, pool)
    }
}

impl<H: Hal, T: Transport> VirtioNet<H, T> {
    /// Bring up a virtio-net device behind an already constructed transport.
    pub fn with_transport(mut transport: T, pool: PacketPool) -> Result<Self, VirtioNetError> {
        // One pool means one queue pair and no control queue, so the key is never used.
        let mut up = bring_up::<H, T>(&mut transport, vec![pool], &[0; RSS_KEY_LEN])?;
        let Some(pair) = up.pairs.pop() else {
            unreachable!("bring_up returns at least one queue pair")
        };
        Ok(VirtioNet {
            transport,
            pair,
            mac: up.mac,
            has_status: up.has_status,
        })
    }

    /// Used entries naming no buffer of ours, on either queue: a device bug, should stay 0.
    pub fn bogus_completions(&self) -> u64 {
        self.pair.bogus_completions()
    }

    /// The transport, e.g. to inspect the device status.
    pub fn transport(&self) -> &T {
        &self.transport
    }
}

impl<H: Hal, T: Transport> Nic for VirtioNet<H, T> {
    fn rx_burst(&mut self, rx: &mut Burst) -> usize {
        let transport = &mut self.transport;
        self.pair.rx_burst(rx, |q| transport.notify(q))
    }

    fn tx_burst(&mut self, tx: &mut Burst) -> usize {
        let transport = &mut self.transport;
        self.pair.tx_burst(tx, |q| transport.notify(q))
    }

    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&mut self) -> bool {
        link_up(&self.transport, self.has_status)
    }

    fn stats(&self) -> NicStats {
        self.pair.stats
    }

    fn pool(&self) -> &PacketPool {
        &self.pair.pool
    }

    fn pool_mut(&mut self) -> &mut PacketPool {
        &mut self.pair.pool
    }
}

/// Whether the device reports its link up (5.1.4: without `VIRTIO_NET_F_STATUS` it is up).
fn link_up(transport: &impl Transport, has_status: bool) -> bool {
    !has_status
        || transport
            .read_config_space::<u16>(CONFIG_STATUS)
            .is_ok_and(|s| s & S_LINK_UP != 0)
}

/// The data path of one receive/transmit queue pair: its rings, its pool, its counters. How the
/// device is notified is the owner's (the transport, or a per-queue doorbell).
pub(crate) struct QueuePair<H: Hal> {
    rx: SplitQueue<H>,
    tx: SplitQueue<H>,
    pool: PacketPool,
    stats: NicStats,
}

impl<H: Hal> QueuePair<H> {
    /// Set up receiveq`n` and transmitq`n` (virtqueues 2n and 2n + 1, 5.1.2).
    fn new<T: Transport>(
        transport: &mut T,
        n: u16,
        event_idx: bool,
        pool: PacketPool,
    ) -> Result<Self, VirtioNetError> {
        let queue = |transport: &mut T, index: u16| {
            SplitQueue::new(transport, index, event_idx).map_err(|e| match e {
                QueueError::Unavailable => VirtioNetError::QueueUnavailable(index),
                QueueError::DmaAlloc => VirtioNetError::DmaAlloc,
            })
        };
        Ok(QueuePair {
            rx: queue(transport, 2 * n)?,
            tx: queue(transport, 2 * n + 1)?,
            pool,
            stats: NicStats::default(),
        })
    }

    /// Put free pool buffers on every free receive descriptor (not yet published).
    fn fill_rx(&mut self) {
        while self.rx.free_descriptors() > 0 {
            let Some(buf) = self.pool.alloc() else {
                self.stats.rx_no_buffer += 1;
                return;
            };
            let pushed = self
                .rx
                .push(&self.pool, buf, RX_DESC_OFFSET, RX_DESC_LEN, true);
            if let Err(Refused::Full(buf) | Refused::OutOfBounds(buf)) = pushed {
                self.pool.free(buf);
                return;
            }
        }
    }

    /// Return the buffers of every transmitted frame to the pool, in one pass over the used ring.
    fn reclaim_tx(&mut self) {
        let used = self.tx.used_idx();
        while let Some((buf, _)) = self.tx.pop(used) {
            self.pool.free(buf);
        }
    }

    fn bogus_completions(&self) -> u64 {
        self.rx.bogus_completions() + self.tx.bogus_completions()
    }

    /// [`Nic::rx_burst`], calling `notify` with the receive queue's index if the device needs a
    /// kick.
    fn rx_burst(&mut self, rx: &mut Burst, notify: impl FnOnce(u16)) -> usize {
        let used = self.rx.used_idx();
        if self.rx.device_starved(used) {
            self.stats.rx_ring_exhausted += 1;
        }
        let mut received = 0;
        while !rx.is_full() {
            let Some((mut buf, written)) = self.rx.pop(used) else {
                break;
            };
            let written = written as usize;
            let frame_len = written.wrapping_sub(NET_HDR_LEN);
            if !(NET_HDR_LEN + MIN_FRAME..=NET_HDR_LEN + RX_FRAME_MAX).contains(&written)
                || buf.set_frame(HEADROOM, frame_len).is_err()
            {
                self.stats.rx_dropped += 1;
                self.pool.free(buf);
                continue;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += frame_len as u64;
            if let Err(buf) = rx.push_back(buf) {
                // Not reachable (we checked for room), but never leak a buffer.
                self.pool.free(buf);
                continue;
            }
            received += 1;
        }
        if self.rx.free_descriptors() > 0 && self.pool.available() > 0 {
            self.fill_rx();
            if self.rx.publish() {
                notify(self.rx.index());
            }
        }
        received
    }

    /// [`Nic::tx_burst`], calling `notify` with the transmit queue's index if the device needs a
    /// kick.
    fn tx_burst(&mut self, tx: &mut Burst, notify: impl FnOnce(u16)) -> usize {
        self.reclaim_tx();
        let mut queued = 0;
        while let Some(buf) = tx.pop_front() {
            let (head, len) = (buf.head(), buf.len());
            if head < TX_MIN_HEAD || len < MIN_FRAME {
                self.stats.tx_dropped += 1;
                self.pool.free(buf);
                continue;
            }
            // Zeroed header: no checksum to complete, no segmentation (5.1.6.2).
            self.pool.buffer_mut(&buf)[head - NET_HDR_LEN..head].fill(0);
            let offset = head - NET_HDR_LEN;
            match self
                .tx
                .push(&self.pool, buf, offset, len + NET_HDR_LEN, false)
            {
                Ok(()) => {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += len as u64;
                    queued += 1;
                }
                Err(Refused::OutOfBounds(buf)) => {
                    // Not reachable: `set_frame` keeps `head + len` inside the buffer.
                    self.stats.tx_dropped += 1;
                    self.pool.free(buf);
                }
                Err(Refused::Full(buf)) => {
                    self.stats.tx_ring_full += 1;
                    if let Err(buf) = tx.push_front(buf) {
                        // Not reachable: we just took it from the front.
                        self.pool.free(buf);
                    }
                    break;
                }
            }
        }
        if self.tx.publish() {
            notify(self.tx.index());
        }
        queued
    }
}

/// A device brought up by [`bring_up`]: running (DRIVER_OK), receive rings filled and kicked,
/// control commands done.
struct BroughtUp<H: Hal> {
    pairs: Vec<QueuePair<H>>,
    mac: [u8; 6],
    has_status: bool,
}

/// 3.1.1 Device Initialization, for `pools.len()` queue pairs or as many as the device has. With
/// more than one, the control queue is set up and the pairs are enabled (see [`mq`]).
fn bring_up<H: Hal, T: Transport>(
    transport: &mut T,
    mut pools: Vec<PacketPool>,
    rss_key: &[u8; RSS_KEY_LEN],
) -> Result<BroughtUp<H>, VirtioNetError> {
    if transport.device_type() != DeviceType::Network {
        return Err(VirtioNetError::NotVirtioNet(VIRTIO_VENDOR, 0));
    }
    if pools.is_empty() {
        return Err(VirtioNetError::NoPool);
    }
    // 1: reset. 2, 3: ACKNOWLEDGE, DRIVER.
    transport.set_status(DeviceStatus::empty());
    let mut status = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
    transport.set_status(status);
    // 4: read the device's features, write the subset we understand.
    let offered = transport.read_device_features();
    if offered & F_VERSION_1 == 0 {
        transport.set_status(status | DeviceStatus::FAILED);
        return Err(VirtioNetError::LegacyOnly);
    }
    let plan = mq::Plan::new(transport, offered, pools.len());
    let features = offered & (F_MAC | F_STATUS | F_RING_EVENT_IDX | F_VERSION_1) | plan.features;
    transport.write_driver_features(features);
    // 5, 6: FEATURES_OK, and check the device kept it.
    status |= DeviceStatus::FEATURES_OK;
    transport.set_status(status);
    if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
        transport.set_status(status | DeviceStatus::FAILED);
        return Err(VirtioNetError::FeaturesRejected);
    }
    log::debug!("virtio-net: offered {offered:#x}, using {features:#x}");
    // 7: device-specific setup: the queues (4.1.5.1.3), then the configuration.
    let event_idx = features & F_RING_EVENT_IDX != 0;
    pools.truncate(usize::from(plan.pairs));
    let mut pairs = Vec::with_capacity(pools.len());
    let mut ctrl: Option<mq::ControlQueue<H>> = None;
    let setup = (|| {
        for (n, pool) in (0..).zip(pools) {
            pairs.push(QueuePair::new(transport, n, event_idx, pool)?);
        }
        if plan.pairs > 1 {
            ctrl = Some(mq::ControlQueue::new(
                transport,
                plan.max_pairs,
                event_idx,
                &mut pairs[0].pool,
            )?);
        }
        read_mac(transport, features)
    })();
    let mac = match setup {
        Ok(mac) => mac,
        Err(e) => {
            transport.set_status(status | DeviceStatus::FAILED);
            return Err(e);
        }
    };
    // Buffers may be made available before DRIVER_OK, but the device may not be notified
    // until after it (3.1.1, 2.4.7.2): fill now, kick once below.
    for pair in &mut pairs {
        pair.fill_rx();
        let _ = pair.rx.publish();
    }
    // 8: DRIVER_OK.
    transport.set_status(status | DeviceStatus::DRIVER_OK);
    for pair in &pairs {
        transport.notify(pair.rx.index());
    }
    let steering = match ctrl {
        Some(mut ctrl) => {
            let done = plan.enable(transport, &mut ctrl, &mut pairs[0].pool, rss_key);
            // The control queue stays the device's (no queue can be taken back from a running
            // virtio 1.0 device), so its few pages are left to it rather than freed.
            core::mem::forget(ctrl);
            match done {
                Ok(steering) => steering,
                Err(e) => {
                    // Reset: the device stops using the queues before they are freed.
                    transport.set_status(DeviceStatus::empty());
                    return Err(e);
                }
            }
        }
        None => "",
    };
    log::info!(
        "virtio-net: mac {:02x?}, rx {} tx {} descriptors, event_idx {}",
        mac,
        pairs[0].rx.size(),
        pairs[0].tx.size(),
        event_idx
    );
    log::info!(
        "virtio-net: {} queue pairs (device offers {}){steering}",
        pairs.len(),
        plan.max_pairs
    );
    Ok(BroughtUp {
        pairs,
        mac,
        has_status: features & F_STATUS != 0,
    })
}

/// The MAC from the device configuration, or a fixed locally administered one without
/// `VIRTIO_NET_F_MAC` (5.1.5: the driver picks one).
fn read_mac(transport: &mut impl Transport, features: u64) -> Result<[u8; 6], VirtioNetError> {
    if features & F_MAC == 0 {
        log::warn!("virtio-net: device has no MAC; using 02:00:00:00:00:01");
        return Ok([0x02, 0, 0, 0, 0, 1]);
    }
    transport
        .read_consistent(|| {
            let mut mac = [0u8; 6];
            for (i, byte) in mac.iter_mut().enumerate() {
                *byte = transport.read_config_space::<u8>(CONFIG_MAC + i)?;
            }
            Ok(mac)
        })
        .map_err(|_| VirtioNetError::Config)
}

#[cfg(test)]
mod tests;
