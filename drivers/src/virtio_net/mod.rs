//! virtio-net (virtio 1.0 section 5.1) over PCI, polled, in bursts, zero copy.
//!
//! The device setup (PCI capabilities, common configuration, feature bits, notify region) is
//! virtio-drivers' `PciTransport`; the data path is ours (see [`ring`]): one receive and one
//! transmit queue whose buffers are pool buffers.
//!
//! Buffer layout. virtio-net puts a 12-byte `virtio_net_hdr` (with `VIRTIO_F_VERSION_1`, no
//! mergeable buffers) in front of every frame. On receive the descriptor starts 12 bytes before
//! [`HEADROOM`], so the frame itself lands at exactly `HEADROOM` (128). On transmit the driver
//! zeroes the 12 bytes before the frame's head (wherever the forwarder left it) and describes
//! `[head - 12, head + len)`: a zeroed header means "no checksum offload, no GSO".
//!
//! Only `MAC`, `STATUS`, `VERSION_1` and `RING_EVENT_IDX` are negotiated: no offloads, no
//! mergeable buffers, no control queue, no interrupts (the driver is polled). Without the
//! control queue (`CTRL_RX`) there is no receive filter to program: the device delivers every
//! frame (QEMU's stays promiscuous then), so multicast such as VRRP's 224.0.0.18 arrives, and
//! frames are sent with whatever source MAC they carry (VRRP's virtual router MAC).

pub mod ring;

use core::fmt;

use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::{PciTransport, VirtioPciError};
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::Hal;

use crate::nic::{Burst, Nic, NicStats};
use crate::pci::{self, ConfigSpace, PciAddress};
use crate::pool::{PacketPool, BUF_SIZE, HEADROOM, TX_MIN_HEAD};
use ring::{QueueError, Refused, SplitQueue};

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

/// receiveq1 and transmitq1 (5.1.2).
const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;

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
    rx: SplitQueue<H>,
    tx: SplitQueue<H>,
    pool: PacketPool,
    mac: [u8; 6],
    has_status: bool,
    stats: NicStats,
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
        let df = DeviceFunction {
            bus: address.bus,
            device: address.device,
            function: address.function,
        };
        let transport =
            PciTransport::new::<H, _>(&mut root, df).map_err(VirtioNetError::Transport)?;
        Self::with_transport(transport, pool)
    }
}

impl<H: Hal, T: Transport> VirtioNet<H, T> {
    /// Bring up a virtio-net device behind an already constructed transport.
    pub fn with_transport(mut transport: T, pool: PacketPool) -> Result<Self, VirtioNetError> {
        if transport.device_type() != DeviceType::Network {
            return Err(VirtioNetError::NotVirtioNet(VIRTIO_VENDOR, 0));
        }
        // 3.1.1 Device Initialization. 1: reset. 2, 3: ACKNOWLEDGE, DRIVER.
        transport.set_status(DeviceStatus::empty());
        let mut status = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
        transport.set_status(status);
        // 4: read the device's features, write the subset we understand.
        let offered = transport.read_device_features();
        if offered & F_VERSION_1 == 0 {
            transport.set_status(status | DeviceStatus::FAILED);
            return Err(VirtioNetError::LegacyOnly);
        }
        let features = offered & (F_MAC | F_STATUS | F_RING_EVENT_IDX | F_VERSION_1);
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
        let fail = |transport: &mut T, e: QueueError, q: u16| {
            transport.set_status(status | DeviceStatus::FAILED);
            match e {
                QueueError::Unavailable => VirtioNetError::QueueUnavailable(q),
                QueueError::DmaAlloc => VirtioNetError::DmaAlloc,
            }
        };
        let rx = SplitQueue::new(&mut transport, RX_QUEUE, event_idx)
            .map_err(|e| fail(&mut transport, e, RX_QUEUE))?;
        let tx = SplitQueue::new(&mut transport, TX_QUEUE, event_idx)
            .map_err(|e| fail(&mut transport, e, TX_QUEUE))?;
        let mac = if features & F_MAC != 0 {
            let read = transport.read_consistent(|| {
                let mut mac = [0u8; 6];
                for (i, byte) in mac.iter_mut().enumerate() {
                    *byte = transport.read_config_space::<u8>(CONFIG_MAC + i)?;
                }
                Ok(mac)
            });
            match read {
                Ok(mac) => mac,
                Err(_) => {
                    transport.set_status(status | DeviceStatus::FAILED);
                    return Err(VirtioNetError::Config);
                }
            }
        } else {
            // 5.1.5: without VIRTIO_NET_F_MAC the driver picks one. Locally administered.
            log::warn!("virtio-net: device has no MAC; using 02:00:00:00:00:01");
            [0x02, 0, 0, 0, 0, 1]
        };
        let mut nic = VirtioNet {
            transport,
            rx,
            tx,
            pool,
            mac,
            has_status: features & F_STATUS != 0,
            stats: NicStats::default(),
        };
        // Buffers may be made available before DRIVER_OK, but the device may not be notified
        // until after it (3.1.1, 2.4.7.2): fill now, kick once below.
        nic.fill_rx();
        let _ = nic.rx.publish();
        // 8: DRIVER_OK.
        nic.transport.set_status(status | DeviceStatus::DRIVER_OK);
        nic.transport.notify(RX_QUEUE);
        log::info!(
            "virtio-net: mac {:02x?}, rx {} tx {} descriptors, event_idx {}",
            nic.mac,
            nic.rx.size(),
            nic.tx.size(),
            event_idx
        );
        Ok(nic)
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

    /// Used entries naming no buffer of ours, on either queue: a device bug, should stay 0.
    pub fn bogus_completions(&self) -> u64 {
        self.rx.bogus_completions() + self.tx.bogus_completions()
    }

    /// The transport, e.g. to inspect the device status.
    pub fn transport(&self) -> &T {
        &self.transport
    }
}

impl<H: Hal, T: Transport> Nic for VirtioNet<H, T> {
    fn rx_burst(&mut self, rx: &mut Burst) -> usize {
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
                self.transport.notify(self.rx.index());
            }
        }
        received
    }

    fn tx_burst(&mut self, tx: &mut Burst) -> usize {
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
            self.transport.notify(self.tx.index());
        }
        queued
    }

    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&mut self) -> bool {
        if !self.has_status {
            return true; // 5.1.4: without VIRTIO_NET_F_STATUS the link is assumed up.
        }
        self.transport
            .read_config_space::<u16>(CONFIG_STATUS)
            .is_ok_and(|s| s & S_LINK_UP != 0)
    }

    fn stats(&self) -> NicStats {
        self.stats
    }

    fn pool(&self) -> &PacketPool {
        &self.pool
    }

    fn pool_mut(&mut self) -> &mut PacketPool {
        &mut self.pool
    }
}

#[cfg(test)]
mod tests;
