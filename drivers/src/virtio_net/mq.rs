//! Multiqueue (virtio 1.x 5.1.6.5.5) with receive-side scaling (5.1.6.5.7): one receive/transmit
//! queue pair per CPU, each a [`VirtioQueue`] handle that CPU owns outright.
//!
//! Bring-up is single-threaded (`super::bring_up`); it negotiates `CTRL_VQ` + `MQ` (+ `RSS`
//! when offered) only when more than one pair is wanted and available, so one pool gives exactly
//! the single-queue driver. The pairs are enabled with one control command: `RSS_CONFIG` (the
//! device spreads flows by Toeplitz hash over an indirection table), or, without `RSS` or if the
//! device refuses it, `VQ_PAIRS_SET` (the backend, e.g. a multiqueue tap, picks the queue).
//!
//! Notification. `PciTransport::notify` selects the queue in the common configuration and reads
//! its `queue_notify_off`: two CPUs doing that at once would ring each other's queues. So each
//! handle gets its queues' doorbell addresses, computed once at bring-up, and writes them
//! directly (4.1.4.4: `cap.offset + queue_notify_off * notify_off_multiplier` in the notify
//! BAR). The transport itself is shared by the handles only for device-configuration reads
//! (link state), which select nothing.
//!
//! No `CTRL_RX`, as in the single-queue driver: without it the device has no receive filter and
//! stays promiscuous (VRRP multicast, virtual router MACs).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::Transport;
use virtio_drivers::Hal;

use super::{
    bring_up, device_function, link_up, pci_transport, PciConfigAccess, QueuePair, VirtioNet,
    VirtioNetError,
};
use crate::nic::{Burst, Nic, NicStats};
use crate::pci::{self, ConfigSpace, PciAddress};
use crate::pool::{PacketBuf, PacketPool};
use crate::virtio_net::ring::{Refused, SplitQueue};

/// Bytes of the RSS hash key this driver programs (the Toeplitz key length of 5.1.6.5.7.1's
/// reference, and QEMU's `rss_max_key_size`).
pub const RSS_KEY_LEN: usize = 40;

/// Feature bits (5.1.3).
pub(super) const F_CTRL_VQ: u64 = 1 << 17;
pub(super) const F_MQ: u64 = 1 << 22;
pub(super) const F_RSS: u64 = 1 << 60;

/// Device configuration offsets (5.1.4).
pub(super) const CONFIG_MAX_PAIRS: usize = 8;
pub(super) const CONFIG_RSS_MAX_KEY: usize = 12;
pub(super) const CONFIG_RSS_MAX_TABLE: usize = 14;
pub(super) const CONFIG_HASH_TYPES: usize = 16;

/// Control class and commands (5.1.6.5.5, 5.1.6.5.7).
pub(super) const CTRL_MQ: u8 = 4;
pub(super) const MQ_VQ_PAIRS_SET: u8 = 0;
pub(super) const MQ_RSS_CONFIG: u8 = 1;
/// The ack the device writes for success (5.1.6.5); what we put there first is neither.
const CTRL_OK: u8 = 0;
const ACK_UNWRITTEN: u8 = 0xff;

/// Hash types (5.1.6.5.6.1): IPv4, TCPv4, UDPv4, IPv6, TCPv6, UDPv6 (no IPv6 extension headers).
pub(super) const HASH_TYPES: u32 = 0x3f;
/// The longest indirection table we program; QEMU's maximum (`VIRTIO_NET_RSS_MAX_TABLE_LEN`).
const MAX_TABLE_LEN: u16 = 128;
/// 5.1.4: `max_virtqueue_pairs` is at most 0x8000.
const MAX_PAIRS_LIMIT: u16 = 0x8000;

/// How long to wait for a control command: QEMU completes it within the notify write, so this
/// only bounds a broken device.
const CTRL_POLLS: u32 = 10_000_000;

/// What `super::bring_up` asks of the device beyond the single-queue features.
pub(super) struct Plan {
    /// `CTRL_VQ | MQ (| RSS)`, or nothing for one pair.
    pub(super) features: u64,
    /// Queue pairs to use.
    pub(super) pairs: u16,
    /// What the device offers (`max_virtqueue_pairs`, 1 without `MQ`).
    pub(super) max_pairs: u16,
    rss: bool,
}

impl Plan {
    /// Decide from the offered features and `max_virtqueue_pairs` (readable once the features
    /// are read: the configuration layout follows the offered ones) how many pairs to use.
    pub(super) fn new<T: Transport>(transport: &mut T, offered: u64, wanted: usize) -> Self {
        let max_pairs = if offered & (F_CTRL_VQ | F_MQ) == F_CTRL_VQ | F_MQ {
            transport
                .read_config_space::<u16>(CONFIG_MAX_PAIRS)
                .map_or(1, |n| n.clamp(1, MAX_PAIRS_LIMIT))
        } else {
            1
        };
        let pairs = u16::try_from(wanted).unwrap_or(u16::MAX).min(max_pairs);
        if pairs <= 1 {
            return Plan {
                features: 0,
                pairs: 1,
                max_pairs,
                rss: false,
            };
        }
        let rss = offered & F_RSS != 0;
        Plan {
            features: F_CTRL_VQ | F_MQ | if rss { F_RSS } else { 0 },
            pairs,
            max_pairs,
            rss,
        }
    }

    /// Enable the pairs (after DRIVER_OK): RSS when negotiated, falling back to `VQ_PAIRS_SET`
    /// if the device refuses the RSS configuration (logged: flows are then spread by the
    /// backend, not by our key). Returns the bring-up log's suffix.
    pub(super) fn enable<H: Hal, T: Transport>(
        &self,
        transport: &mut T,
        ctrl: &mut ControlQueue<H>,
        pool: &mut PacketPool,
        rss_key: &[u8; RSS_KEY_LEN],
    ) -> Result<&'static str, VirtioNetError> {
        let result = self.send_commands(transport, ctrl, pool, rss_key);
        if let Some(buf) = ctrl.buf.take() {
            pool.free(buf);
        }
        result
    }

    fn send_commands<H: Hal, T: Transport>(
        &self,
        transport: &mut T,
        ctrl: &mut ControlQueue<H>,
        pool: &mut PacketPool,
        rss_key: &[u8; RSS_KEY_LEN],
    ) -> Result<&'static str, VirtioNetError> {
        if self.rss {
            let limits = RssLimits::read(transport);
            let sent = ctrl.command(transport, pool, MQ_RSS_CONFIG, |data| {
                rss_config(self.pairs, rss_key, limits, data)
            });
            match sent {
                Ok(()) => return Ok(", rss on"),
                Err(VirtioNetError::CommandRefused(..)) => {
                    log::warn!("virtio-net: device refused the RSS configuration; using VQ_PAIRS_SET (the backend spreads flows)");
                }
                Err(e) => return Err(e),
            }
        }
        ctrl.command(transport, pool, MQ_VQ_PAIRS_SET, |data| {
            data[..2].copy_from_slice(&self.pairs.to_le_bytes());
            2
        })?;
        Ok(", rss off")
    }
}

/// The device's RSS limits (5.1.4, present with `RSS`).
#[derive(Clone, Copy)]
pub(super) struct RssLimits {
    pub(super) max_key: u8,
    pub(super) max_table: u16,
    pub(super) hash_types: u32,
}

impl RssLimits {
    fn read<T: Transport>(transport: &T) -> Self {
        // Unreadable fields leave our own choice in place; the device then judges it.
        RssLimits {
            max_key: transport
                .read_config_space::<u8>(CONFIG_RSS_MAX_KEY)
                .unwrap_or(RSS_KEY_LEN as u8),
            max_table: transport
                .read_config_space::<u16>(CONFIG_RSS_MAX_TABLE)
                .unwrap_or(MAX_TABLE_LEN),
            hash_types: transport
                .read_config_space::<u32>(CONFIG_HASH_TYPES)
                .unwrap_or(HASH_TYPES),
        }
    }
}

/// Write `virtio_net_rss_config` (5.1.6.5.7.1) for `pairs` queue pairs into `data`; returns its
/// length. Table entry i steers to receive queue i % pairs; unhashable packets go to queue 0.
pub(super) fn rss_config(
    pairs: u16,
    key: &[u8; RSS_KEY_LEN],
    limits: RssLimits,
    data: &mut [u8],
) -> usize {
    // A power of two (the mask is length - 1) no longer than the device takes.
    let table_len: u16 = match limits.max_table.min(MAX_TABLE_LEN) {
        0 => 1,
        n => 1 << n.ilog2(),
    };
    let key_len = usize::from(limits.max_key).min(RSS_KEY_LEN);
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        data[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&(HASH_TYPES & limits.hash_types).to_le_bytes());
    put(&(table_len - 1).to_le_bytes());
    put(&0u16.to_le_bytes()); // unclassified_queue
    for i in 0..table_len {
        put(&(i % pairs).to_le_bytes());
    }
    put(&pairs.to_le_bytes()); // max_tx_vq
    put(&[key_len as u8]);
    put(&key[..key_len]);
    at
}

/// The control virtqueue (5.1.6.5), used only at bring-up, one command at a time.
pub(super) struct ControlQueue<H: Hal> {
    queue: SplitQueue<H>,
    /// The buffer commands are written into, taken from the first pool before the receive rings
    /// are filled (so there is one); back in the pool after [`Plan::enable`].
    buf: Option<PacketBuf>,
}

impl<H: Hal> ControlQueue<H> {
    /// Set up controlq: virtqueue 2 * max_virtqueue_pairs (5.1.2), whatever number we use.
    pub(super) fn new<T: Transport>(
        transport: &mut T,
        max_pairs: u16,
        event_idx: bool,
        pool: &mut PacketPool,
    ) -> Result<Self, VirtioNetError> {
        let index = 2 * max_pairs;
        let queue = SplitQueue::new(transport, index, event_idx)
            .map_err(|_| VirtioNetError::QueueUnavailable(index))?;
        let buf = pool.alloc().ok_or(VirtioNetError::NoPool)?;
        Ok(ControlQueue {
            queue,
            buf: Some(buf),
        })
    }

    /// Send command `command` of class MQ with the data `write_data` puts in the slice it is
    /// given (returning its length), and wait for the device's ack.
    fn command<T: Transport>(
        &mut self,
        transport: &mut T,
        pool: &mut PacketPool,
        command: u8,
        write_data: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<(), VirtioNetError> {
        let timeout = VirtioNetError::CommandTimeout(CTRL_MQ, command);
        // A previous command timed out and the device still holds the buffer.
        let buf = self.buf.take().ok_or(timeout.clone())?;
        let bytes = pool.buffer_mut(&buf);
        bytes[0] = CTRL_MQ;
        bytes[1] = command;
        let ack = 2 + write_data(&mut bytes[2..]);
        bytes[ack] = ACK_UNWRITTEN;
        match self.queue.push_out_in(pool, buf, 0..ack, ack..ack + 1) {
            Ok(()) => {}
            Err(Refused::Full(buf) | Refused::OutOfBounds(buf)) => {
                // Not reachable: the queue is empty and the command fits in a buffer.
                self.buf = Some(buf);
                return Err(timeout);
            }
        }
        self.queue.publish();
        // Kick regardless of EVENT_IDX: one command, and the device must see it.
        transport.notify(self.queue.index());
        for _ in 0..CTRL_POLLS {
            let used = self.queue.used_idx();
            if let Some((buf, _)) = self.queue.pop(used) {
                let acked = pool.buffer(&buf)[ack];
                self.buf = Some(buf);
                return match acked {
                    CTRL_OK => Ok(()),
                    _ => Err(VirtioNetError::CommandRefused(CTRL_MQ, command)),
                };
            }
            core::hint::spin_loop();
        }
        Err(timeout)
    }
}

/// How a queue handle tells the device it has published buffers.
pub trait Doorbell: Send {
    /// Notify virtqueue `queue` (4.1.5.2: the queue index is the value written).
    fn ring(&mut self, queue: u16);
}

/// A virtqueue's notification address in the notify BAR, computed once at bring-up.
pub struct MmioDoorbell(NonNull<u16>);

// Safety: the pointer is to device MMIO that stays mapped for the device's lifetime; writing a
// queue index to it from any CPU is how virtio notification works, and only this handle writes
// this queue's doorbell.
unsafe impl Send for MmioDoorbell {}

impl Doorbell for MmioDoorbell {
    fn ring(&mut self, queue: u16) {
        // Safety: `NotifyMap::doorbell` checked the address lies inside the notify region, mapped
        // by `Hal::mmio_phys_to_virt`, and is 2-aligned (the multiplier is even).
        unsafe { self.0.as_ptr().write_volatile(queue) }
    }
}

/// The common and notify configuration structures of a virtio PCI function (4.1.4.3, 4.1.4.4),
/// mapped again here because `PciTransport` does not expose queue notify offsets.
struct NotifyMap {
    common: NonNull<u8>,
    notify: NonNull<u8>,
    notify_len: usize,
    multiplier: u32,
}

/// `virtio_pci_cap.cfg_type` values (4.1.4).
const CAP_COMMON_CFG: u8 = 1;
const CAP_NOTIFY_CFG: u8 = 2;
/// PCI capability id of vendor-specific capabilities.
const CAP_VENDOR: u8 = 0x09;
/// Offsets of `queue_select` and `queue_notify_off` in the common configuration (4.1.4.3).
const COMMON_QUEUE_SELECT: usize = 0x16;
const COMMON_QUEUE_NOTIFY_OFF: usize = 0x1e;
/// The common configuration's size in virtio 1.0 (up to `queue_device`).
const COMMON_LEN: u32 = 0x38;

impl NotifyMap {
    fn new<H: Hal>(config: &impl ConfigSpace, address: PciAddress) -> Result<Self, VirtioNetError> {
        let root = PciRoot::new(PciConfigAccess(config));
        let (mut common, mut notify) = (None, None);
        for cap in root.capabilities(device_function(address)) {
            let cfg_type = (cap.private_header >> 8) as u8;
            if cap.id != CAP_VENDOR || !matches!(cfg_type, CAP_COMMON_CFG | CAP_NOTIFY_CFG) {
                continue;
            }
            let word = |at: u8| config.read(address, cap.offset + at);
            // virtio_pci_cap: bar at 4, offset at 8, length at 12; notify multiplier at 16.
            let region = (word(4) as u8, word(8), word(12));
            match cfg_type {
                CAP_COMMON_CFG if common.is_none() => common = Some(region),
                CAP_NOTIFY_CFG if notify.is_none() => notify = Some((region, word(16))),
                _ => {}
            }
        }
        let map = |(bar, offset, length): (u8, u32, u32), min_len: u32| {
            let (base, size) =
                pci::memory_bar(config, address, bar).ok_or(VirtioNetError::Doorbell)?;
            if length < min_len || u64::from(offset) + u64::from(length) > size {
                return Err(VirtioNetError::Doorbell);
            }
            // Safety: the range is inside a memory BAR the firmware assigned to this function.
            Ok(unsafe { H::mmio_phys_to_virt(base + u64::from(offset), length as usize) })
        };
        let (notify_region, multiplier) = notify.ok_or(VirtioNetError::Doorbell)?;
        if multiplier % 2 != 0 {
            return Err(VirtioNetError::Doorbell);
        }
        Ok(NotifyMap {
            common: map(common.ok_or(VirtioNetError::Doorbell)?, COMMON_LEN)?,
            notify: map(notify_region, 2)?,
            notify_len: notify_region.2 as usize,
            multiplier,
        })
    }

    /// The doorbell of virtqueue `queue`. Selects the queue in the common configuration, so
    /// only at bring-up, on one CPU.
    fn doorbell(&self, queue: u16) -> Result<MmioDoorbell, VirtioNetError> {
        // Safety: both registers are u16 inside the common configuration mapped in `new` (at
        // least COMMON_LEN bytes), 2-aligned; bring-up is single-threaded and `PciTransport`
        // selects its queue anew before every use of `queue_select`.
        let notify_off = unsafe {
            let select = self.common.add(COMMON_QUEUE_SELECT).cast::<u16>();
            select.as_ptr().write_volatile(queue);
            let off = self.common.add(COMMON_QUEUE_NOTIFY_OFF).cast::<u16>();
            off.as_ptr().read_volatile()
        };
        let at = usize::from(notify_off) * self.multiplier as usize;
        if at + 2 > self.notify_len {
            return Err(VirtioNetError::Doorbell);
        }
        // Safety: `at + 2 <= notify_len`, the mapped length.
        Ok(MmioDoorbell(unsafe { self.notify.add(at) }.cast()))
    }
}

/// One receive/transmit queue pair of a (possibly multiqueue) virtio-net device, to be driven
/// by one CPU: it owns its rings, its pool and its counters, and rings its own doorbells.
///
/// The handles share the transport, read-only (link state); the last one dropped resets the
/// device. A handle dropped while others still run cannot take its queues back from the device
/// (virtio 1.0 has no per-queue reset), so its rings and pool are leaked rather than freed.
pub struct VirtioQueue<H: Hal, T: Transport = PciTransport, D: Doorbell = MmioDoorbell> {
    device: Option<Arc<T>>,
    pair: ManuallyDrop<QueuePair<H>>,
    rx_doorbell: D,
    tx_doorbell: D,
    mac: [u8; 6],
    has_status: bool,
}

// The kernel moves handles to other CPUs.
const _: () = {
    const fn assert_send<X: Send>() {}
    struct SendHal;
    // Safety: never called; only the `Send` bound of a handle over the real transport is checked.
    unsafe impl Hal for SendHal {
        fn dma_alloc(_: usize, _: virtio_drivers::BufferDirection) -> (u64, NonNull<u8>) {
            unreachable!()
        }
        unsafe fn dma_dealloc(_: u64, _: NonNull<u8>, _: usize) -> i32 {
            unreachable!()
        }
        unsafe fn mmio_phys_to_virt(_: u64, _: usize) -> NonNull<u8> {
            unreachable!()
        }
        unsafe fn share(_: NonNull<[u8]>, _: virtio_drivers::BufferDirection) -> u64 {
            unreachable!()
        }
        unsafe fn unshare(_: u64, _: NonNull<[u8]>, _: virtio_drivers::BufferDirection) {
            unreachable!()
        }
    }
    assert_send::<VirtioQueue<SendHal>>();
};

impl<H: Hal> VirtioNet<H, PciTransport> {
    /// Bring the device up with min(pools.len(), the device's `max_virtqueue_pairs`) queue
    /// pairs, one pool each (pools beyond that are dropped); returns one handle per pair, in
    /// queue order (at least one). With more than one pair, RSS (when offered) steers flows by
    /// `rss_key`; one pool gives exactly the single-queue driver (no control queue).
    pub fn new_queues(
        config: &impl ConfigSpace,
        address: PciAddress,
        pools: Vec<PacketPool>,
        rss_key: &[u8; RSS_KEY_LEN],
    ) -> Result<Vec<VirtioQueue<H>>, VirtioNetError> {
        let transport = pci_transport::<H>(config, address)?;
        let map = NotifyMap::new::<H>(config, address)?;
        Self::with_transport_queues(transport, pools, rss_key, |q| map.doorbell(q))
    }
}

impl<H: Hal, T: Transport> VirtioNet<H, T> {
    /// [`VirtioNet::new_queues`] behind an already constructed transport; `doorbell` gives each
    /// virtqueue's doorbell (called during bring-up only).
    pub fn with_transport_queues<D: Doorbell>(
        mut transport: T,
        pools: Vec<PacketPool>,
        rss_key: &[u8; RSS_KEY_LEN],
        mut doorbell: impl FnMut(u16) -> Result<D, VirtioNetError>,
    ) -> Result<Vec<VirtioQueue<H, T, D>>, VirtioNetError> {
        let up = bring_up::<H, T>(&mut transport, pools, rss_key)?;
        let mut bells = Vec::with_capacity(up.pairs.len());
        for pair in &up.pairs {
            let bell = (doorbell(pair.rx.index()), doorbell(pair.tx.index()));
            match bell {
                (Ok(rx), Ok(tx)) => bells.push((rx, tx)),
                (Err(e), _) | (_, Err(e)) => {
                    // Reset: the device stops using the queues before they are freed.
                    transport.set_status(virtio_drivers::transport::DeviceStatus::empty());
                    return Err(e);
                }
            }
        }
        let device = Arc::new(transport);
        Ok(up
            .pairs
            .into_iter()
            .zip(bells)
            .map(|(pair, (rx_doorbell, tx_doorbell))| VirtioQueue {
                device: Some(device.clone()),
                pair: ManuallyDrop::new(pair),
                rx_doorbell,
                tx_doorbell,
                mac: up.mac,
                has_status: up.has_status,
            })
            .collect())
    }
}

impl<H: Hal, T: Transport, D: Doorbell> VirtioQueue<H, T, D> {
    /// Used entries naming no buffer of ours, on either queue: a device bug, should stay 0.
    pub fn bogus_completions(&self) -> u64 {
        self.pair.bogus_completions()
    }

    /// The receive virtqueue's index (2n for queue pair n).
    pub fn rx_queue(&self) -> u16 {
        self.pair.rx.index()
    }
}

impl<H: Hal, T: Transport, D: Doorbell> Nic for VirtioQueue<H, T, D> {
    fn rx_burst(&mut self, rx: &mut Burst) -> usize {
        let bell = &mut self.rx_doorbell;
        self.pair.rx_burst(rx, |q| bell.ring(q))
    }

    fn tx_burst(&mut self, tx: &mut Burst) -> usize {
        let bell = &mut self.tx_doorbell;
        self.pair.tx_burst(tx, |q| bell.ring(q))
    }

    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// Any handle may ask: the status is in the device configuration, read without selecting
    /// anything, so handles on different CPUs do not disturb each other.
    fn link_up(&mut self) -> bool {
        self.device
            .as_deref()
            .is_some_and(|t| link_up(t, self.has_status))
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

impl<H: Hal, T: Transport, D: Doorbell> Drop for VirtioQueue<H, T, D> {
    fn drop(&mut self) {
        // Safety: `pair` is not touched again (this is drop).
        let pair = unsafe { ManuallyDrop::take(&mut self.pair) };
        match self.device.take().and_then(Arc::into_inner) {
            // The last handle: dropping the transport resets the device (for PCI), ending its
            // DMA, and only then are the rings freed.
            Some(transport) => {
                drop(transport);
                drop(pair);
            }
            None => core::mem::forget(pair),
        }
    }
}
