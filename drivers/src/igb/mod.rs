//! Intel 82576 / i350 / i210 / i211 (igb) 1 GbE, polled, in bursts, zero copy: one or more
//! queue pairs whose buffers are pool buffers, spread by RSS, one handle per CPU.
//!
//! Verified against QEMU's igb model (`-device igb`, an 82576 written by others from the
//! datasheet) in the end-to-end tests; not yet on hardware. The descriptor rings are the ones
//! the 82599 driver uses (`adv_ring.rs`): both families have the same advanced descriptors.
//!
//! # Bring-up, by datasheet section (82576 datasheet rev. 2.6x; the i350 and i210 follow it)
//!
//! | step | section |
//! |---|---|
//! | mask every interrupt (IMC, EIMC, EIAM), before and again after the reset | 4.5.4 |
//! | master disable: CTRL.GIO_Master_Disable, poll STATUS.GIO_Master_Enable | 8.2.1, 8.2.2 |
//! | stop receive and transmit (RCTL.EN, TCTL.EN), global reset CTRL.RST, wait 1 ms, poll until it self-clears | 4.5.5, 8.2.1 |
//! | wait for the EEPROM auto-read (EECD.AUTO_RD), which loads RAL/RAH\[0\] (bounded; a valid RAH\[0\] also does) | 4.5.5, 8.2.3 |
//! | CTRL_EXT.DRV_LOAD: tell manageability firmware a driver runs the port | 8.2.5 |
//! | link: CTRL.SLU with speed and duplex from the PHY; restart the PHY's auto-negotiation (BMCR over MDIC); wait for STATUS.LU (bounded) | 4.5.7, 8.2 (MDIC) |
//! | read every clear-on-read counter | 4.5.8 |
//! | filters: RAL/RAH\[0\] (own MAC), RCTL.BAM (broadcast), RCTL.MPE (all multicast: VRRP's 01:00:5e:00:00:12 and IPv6's groups), MTA zeroed, CRC strip (RCTL.SECRC), no long packets | 4.5.9, 8.10.1 |
//! | RX, each queue n: RDBAL/RDBAH/RDLEN(n), SRRCTL(n) (advanced one buffer, 2 KiB, drop), RXDCTL(n).ENABLE + poll, RDT(n) = len-1 | 4.5.9 |
//! | RSS (more than one queue): RSSRK (the key), RETA (entry i -> queue i % n), RXCSUM.PCSD, MRQC (RSS, IPv4/IPv6 with TCP and UDP), then RCTL.EN | 7.1.1.7, 8.10 |
//! | TX: TCTL (PSP, CT, COLD), each queue n: TDBAL/TDBAH/TDLEN(n), TXDCTL(n) thresholds + ENABLE + poll, then TCTL.EN | 4.5.10 |
//!
//! Interrupts stay masked (the driver polls). Link down at bring-up is not an error: it is
//! logged, and [`Nic::link_up`] re-reads STATUS.
//!
//! # Data path
//!
//! As the 82599's: a frame is received at [`HEADROOM`](crate::pool::HEADROOM) and sent from
//! wherever the forwarder left it, without a copy; each doorbell (RDT, TDT) is written once per
//! burst; transmitted buffers are reclaimed [`TX_CLEAN_BATCH`] at a time.
//!
//! # Queues
//!
//! [`IgbQueue::new_queues`] returns one [`IgbQueue`] per queue pair, each with its own rings,
//! pool and counters, for one poll loop per CPU. On the packet path a handle writes only its
//! queue's tail registers, so the handles share no lock. They share the register mapping: each
//! holds a clone of the [`MmioRegisters`] (a pointer and a length; every access is one volatile
//! 32-bit load or store, so concurrent use from several CPUs is sound, and no two handles write
//! the same register). Device-wide state (link log, device counters, the reset on drop) belongs
//! to queue 0.
//!
//! Which queue a frame reaches is the device's choice: RSS's Toeplitz hash of its addresses
//! (and ports for TCP and UDP) under the key the kernel passes, whose low 7 bits pick an entry
//! of the 128-entry redirection table filled round robin; what the device does not hash (ARP)
//! goes to queue 0. `forwarder::shard::shard_of` predicts it. Checked against QEMU's model
//! (`hw/net/igb_core.c`: `igb_receive_assign`, `igb_rss_parse_packet`): it applies RSS only with
//! MRQC.MRQE = RSS and RXCSUM.PCSD set, delivers only to queues whose RXDCTL.ENABLE is set,
//! and sends a queue's frames when its TDT is written and its TXDCTL.ENABLE and TCTL.EN are set.
//!
//! # What the kernel must provide
//!
//! The same as for the 82599 ([`crate::ixgbe`]): BAR0 mapped uncached as [`MmioRegisters`] (use
//! [`pci_bring_up`]), ring memory through [`Hal::dma_alloc`], one [`PacketPool`] per queue
//! with at least [`RX_RING_SIZE`] free buffers each, the part's queue count
//! ([`queues_of`] of its PCI device id, in [`IgbConfig::max_queues`]), and a busy-wait
//! `delay_us`. QEMU needs nothing more on its command line: `-device igb` has 16 queues.

pub mod regs;

#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use virtio_drivers::Hal;

use crate::adv_ring::{RingError, RxRing, TxRing};
pub use crate::adv_ring::{RX_RING_SIZE, TX_CLEAN_BATCH, TX_RING_SIZE};
use crate::ixgbe::regs::poll;
pub use crate::ixgbe::regs::{MmioRegisters, Registers};
pub use crate::ixgbe::Bar0;
use crate::nic::{Burst, Nic, NicStats};
use crate::pci::{self, ConfigSpace, PciAddress};
use crate::pool::PacketPool;

/// SRRCTL.BSIZEPACKET in KiB: the device writes at most 1522 bytes (RCTL.LPE clear) from
/// HEADROOM, which fits the 1920 bytes there.
const RX_BUF_KIB: u32 = 2;

/// The longest frame (Ethernet header on, FCS stripped) the device receives with long packets
/// off (RCTL.LPE clear): 1518 bytes including the 4-byte FCS.
pub const RX_FRAME_MAX: usize = 1518 - 4;

/// Intel's PCI vendor id.
const INTEL: u16 = 0x8086;
/// The device ids this driver accepts: 82576 (copper, fiber, serdes, quad, NS, ET2), i350
/// (copper, fiber, serdes, SGMII), i210 (copper, fiber, serdes, SGMII, and the flash-less
/// copper and serdes parts), i211.
pub const DEVICE_IDS: [u16; 19] = [
    0x10c9, 0x10e6, 0x10e7, 0x10e8, 0x150a, 0x1518, 0x1526, // 82576
    0x1521, 0x1522, 0x1523, 0x1524, // i350
    0x1533, 0x1536, 0x1537, 0x1538, 0x157b, 0x157c, // i210
    0x1539, // i211
    0x150d, // 82576 serdes quad
];

/// Whether `vendor:device` is a NIC this driver takes.
pub fn supports(vendor: u16, device: u16) -> bool {
    vendor == INTEL && DEVICE_IDS.contains(&device)
}

/// Bounded waits: how many polls, and how long between them.
const RESET_POLLS: u32 = 1000; // x 10 us, after the first 1 ms
const MASTER_DISABLE_POLLS: u32 = 100; // x 10 us
const EEPROM_POLLS: u32 = 10; // x 1 ms
const MDIC_POLLS: u32 = 1000; // x 10 us
const QUEUE_ENABLE_POLLS: u32 = 1000; // x 10 us

/// Settings the kernel chooses.
#[derive(Clone, Copy, Debug)]
pub struct IgbConfig {
    /// Busy-wait at least this many microseconds (the kernel's clock). Tests pass a no-op.
    pub delay_us: fn(u32),
    /// How long bring-up waits for the link before going on without it (polled every 1 ms).
    pub link_wait_ms: u32,
    /// The most queue pairs to use: the part's own count, [`queues_of`] its PCI device id
    /// (clamped to 1..=[`regs::MAX_QUEUES`]).
    pub max_queues: usize,
}

impl IgbConfig {
    /// Default link wait: 1000BASE-T auto-negotiation takes up to about 3 s.
    pub const DEFAULT_LINK_WAIT_MS: u32 = 4000;

    /// A configuration with the default link wait and at most two queue pairs, which every
    /// supported part has (the i211 no more); set [`Self::max_queues`] from [`queues_of`] for
    /// more.
    pub fn new(delay_us: fn(u32)) -> Self {
        IgbConfig {
            delay_us,
            link_wait_ms: Self::DEFAULT_LINK_WAIT_MS,
            max_queues: 2,
        }
    }
}

/// Why an igb NIC could not be brought up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IgbError {
    /// Nothing answers at the PCI address.
    NoDevice,
    /// The function is not a supported 82576 / i350 / i210 / i211 (vendor, device).
    NotIgb(u16, u16),
    /// BAR0 is not an assigned memory BAR.
    NoBar0,
    /// BAR0 is shorter than the registers the driver uses.
    BarTooSmall(usize),
    /// CTRL.RST did not self-clear: the device did not come out of reset.
    ResetTimeout,
    /// EECD.AUTO_RD never set: the EEPROM auto-read did not finish.
    EepromTimeout,
    /// RAH\[0\] has no valid address: the EEPROM did not provide a MAC.
    NoMacAddress,
    /// RXDCTL.ENABLE (receive) or TXDCTL.ENABLE (transmit, `false`) did not read back as 1.
    QueueEnableTimeout {
        /// Whether it is the receive queue.
        rx: bool,
    },
    /// `Hal::dma_alloc` failed for a descriptor ring.
    DmaAlloc,
    /// No packet pool was given: a queue needs one.
    NoPool,
    /// The pool has fewer free buffers than the receive ring needs.
    PoolTooSmall {
        /// Buffers needed.
        needed: usize,
        /// Buffers free.
        available: usize,
    },
}

impl fmt::Display for IgbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => f.write_str("no PCI function at that address"),
            Self::NotIgb(v, d) => {
                write!(
                    f,
                    "{v:04x}:{d:04x} is not a supported Intel 82576/i350/i210/i211"
                )
            }
            Self::NoBar0 => f.write_str("igb BAR0 is not an assigned memory BAR"),
            Self::BarTooSmall(len) => write!(
                f,
                "igb register window is {len:#x} bytes, need at least {:#x}",
                regs::MIN_BAR_LEN
            ),
            Self::ResetTimeout => {
                f.write_str("igb did not come out of reset (CTRL.RST never self-cleared)")
            }
            Self::EepromTimeout => {
                f.write_str("igb EEPROM auto-read did not complete (EECD.AUTO_RD never set)")
            }
            Self::NoMacAddress => {
                f.write_str("igb has no valid MAC in RAL/RAH[0] (EEPROM missing or blank?)")
            }
            Self::QueueEnableTimeout { rx: true } => {
                f.write_str("igb receive queue did not enable (RXDCTL.ENABLE stayed 0)")
            }
            Self::QueueEnableTimeout { rx: false } => {
                f.write_str("igb transmit queue did not enable (TXDCTL.ENABLE stayed 0)")
            }
            Self::DmaAlloc => f.write_str("DMA allocation for an igb descriptor ring failed"),
            Self::NoPool => f.write_str("igb needs at least one packet pool (one per queue)"),
            Self::PoolTooSmall { needed, available } => write!(
                f,
                "packet pool has {available} free buffers, the igb receive ring needs {needed}"
            ),
        }
    }
}

impl From<RingError> for IgbError {
    fn from(e: RingError) -> Self {
        match e {
            RingError::DmaAlloc => Self::DmaAlloc,
            RingError::PoolTooSmall { needed, available } => {
                Self::PoolTooSmall { needed, available }
            }
        }
    }
}

/// Check that `address` is an igb NIC, size its BAR0, and enable memory decoding and bus
/// mastering. The kernel then maps `phys..phys + size` uncached and calls
/// [`MmioRegisters::new`] and [`Igb::new`].
pub fn pci_bring_up(config: &impl ConfigSpace, address: PciAddress) -> Result<Bar0, IgbError> {
    let function = pci::probe(config, address).ok_or(IgbError::NoDevice)?;
    if !supports(function.vendor, function.device) {
        return Err(IgbError::NotIgb(function.vendor, function.device));
    }
    // Size the BAR before decoding is enabled, so the all-ones probe never decodes.
    let (phys, size) = pci::memory_bar(config, address, 0).ok_or(IgbError::NoBar0)?;
    if size < regs::MIN_BAR_LEN as u64 {
        return Err(IgbError::BarTooSmall(size as usize));
    }
    pci::enable_bus_master(config, address);
    Ok(Bar0 { phys, size })
}

/// Device counters accumulated from the clear-on-read statistics registers (4.5.8, 8.19).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Good packets received (GPRC).
    pub rx_good_packets: u64,
    /// Good octets received (GORC).
    pub rx_good_bytes: u64,
    /// Packets missed for lack of packet buffer space (MPC).
    pub rx_missed: u64,
    /// Packets that found no free receive descriptor (RNBC).
    pub rx_no_descriptor: u64,
    /// Frames with a bad CRC (CRCERRS).
    pub rx_crc_errors: u64,
    /// Oversized frames dropped (ROC).
    pub rx_oversize: u64,
    /// Good packets transmitted (GPTC).
    pub tx_good_packets: u64,
    /// Good octets transmitted (GOTC).
    pub tx_good_bytes: u64,
}

/// The queue pairs each part has (Linux's igb uses as many for RSS): 2 on the i211, 4 on the
/// i210, 8 on the 82576 and i350 (QEMU's `-device igb` is an 82576).
pub fn queues_of(device: u16) -> usize {
    match device {
        0x1539 => 2,
        0x1533 | 0x1536 | 0x1537 | 0x1538 | 0x157b | 0x157c => 4,
        _ => regs::MAX_QUEUES as usize,
    }
}

/// One queue pair of an igb NIC: its receive and transmit rings, the pool it receives into and
/// its counters. [`IgbQueue::new_queues`] makes one per CPU; each is `Send` and, on the packet
/// path, writes only its own queue's tail registers (RDT(n), TDT(n)), so the CPUs that own them
/// share no lock and no register.
///
/// The device-wide duties stay with queue 0 (the first handle): the link log of
/// [`Nic::link_up`], the clear-on-read [`Self::device_counters`] and, on drop, the device reset.
///
/// `H` is the kernel's `Hal` (descriptor ring memory); `R` the register access, one clone per
/// queue.
pub struct IgbQueue<H: Hal, R: Registers = MmioRegisters> {
    regs: R,
    /// Which queue pair this is (0 is the first, device-wide handle).
    queue: u32,
    rx: RxRing<H>,
    tx: TxRing<H>,
    pool: PacketPool,
    mac: [u8; 6],
    link_was_up: bool,
    delay_us: fn(u32),
    stats: NicStats,
    counters: DeviceCounters,
}

/// A single-queue igb NIC is its queue 0: [`Igb::new`] brings one up.
pub type Igb<H, R = MmioRegisters> = IgbQueue<H, R>;

impl<H: Hal, R: Registers + Clone> IgbQueue<H, R> {
    /// Bring up the NIC behind `regs` with one queue pair receiving into `pool` (no RSS): the
    /// same as [`Self::new_queues`] with one pool.
    pub fn new(regs: R, pool: PacketPool, config: IgbConfig) -> Result<Self, IgbError> {
        let mut queues = Self::new_queues(regs, Vec::from([pool]), config, &[0; 40])?;
        queues.pop().ok_or(IgbError::NoPool)
    }

    /// Bring up the NIC behind `regs` (datasheet 4.5) with `n = min(pools.len(),
    /// config.max_queues)` queue pairs, queue `i` receiving into `pools[i]` (pools past `n` are
    /// dropped), and enable receive and transmit. Returns one handle per queue, queue 0 first;
    /// the link may still be down.
    ///
    /// With `n > 1` the receive side spreads frames by RSS (7.1.1.7): key `rss_key`,
    /// redirection table entry `i` to queue `i % n`, and the Toeplitz hash over addresses and
    /// ports of TCP and UDP over IPv4 and IPv6, over addresses for other IP; frames it does not
    /// hash (ARP) go to queue 0. `forwarder::shard::shard_of` computes the same queue for the
    /// key the kernel passes. With one queue, no RSS register is written.
    pub fn new_queues(
        regs: R,
        mut pools: Vec<PacketPool>,
        config: IgbConfig,
        rss_key: &[u8; 40],
    ) -> Result<Vec<Self>, IgbError> {
        let n = pools
            .len()
            .min(config.max_queues.clamp(1, regs::MAX_QUEUES as usize));
        if n == 0 {
            return Err(IgbError::NoPool);
        }
        pools.truncate(n);
        if let Some(short) = pools.iter().find(|p| p.available() < RX_RING_SIZE) {
            return Err(IgbError::PoolTooSmall {
                needed: RX_RING_SIZE,
                available: short.available(),
            });
        }
        let delay = config.delay_us;
        reset(&regs, delay)?;
        let mac = read_mac(&regs)?;
        regs.write(
            regs::CTRL_EXT,
            regs.read(regs::CTRL_EXT) | regs::CTRL_EXT_DRV_LOAD,
        );
        let mut queues = Vec::with_capacity(n);
        for (queue, pool) in (0..).zip(pools) {
            queues.push(IgbQueue {
                regs: regs.clone(),
                queue,
                rx: RxRing::new(regs::RXD_ERR_RXE)?,
                tx: TxRing::new()?,
                pool,
                mac,
                link_was_up: false,
                delay_us: delay,
                stats: NicStats::default(),
                counters: DeviceCounters::default(),
            });
        }
        // 4.5.7: copper link set-up is "set link up" and let the PHY auto-negotiate speed and
        // duplex (CTRL.FRCSPD/FRCDPLX clear); the reset left the PHY idle, so restart its
        // auto-negotiation. Started here, waited for at the end.
        start_link(&regs, delay);
        // 4.5.8: statistics are clear-on-read; read them all so they start from zero.
        let mut ignored = DeviceCounters::default();
        read_counters(&regs, &mut ignored);

        // 4.5.9 Receive Initialization: filters, every queue's ring, RSS, then RCTL.EN.
        init_rx_filters(&regs);
        for q in &mut queues {
            q.init_rx()?;
        }
        if n > 1 {
            // QEMU drops a frame whose RSS queue is not enabled, so the table may name a
            // queue only once all are (they are, above).
            init_rss(&regs, n as u32, rss_key);
        }
        regs.write(regs::RCTL, regs.read(regs::RCTL) | regs::RCTL_EN);

        // 4.5.10 Transmit Initialization: TCTL, every queue's ring, then TCTL.EN.
        init_tx_control(&regs);
        for q in &mut queues {
            q.init_tx()?;
        }
        regs.write(regs::TCTL, regs.read(regs::TCTL) | regs::TCTL_EN);

        queues[0].wait_for_link(config.link_wait_ms);
        log::info!(
            "igb: mac {:02x?}, rx {} tx {} descriptors",
            mac,
            RX_RING_SIZE,
            TX_RING_SIZE
        );
        if n > 1 {
            log::info!("igb: {n} queues, rss on");
        } else {
            log::info!("igb: 1 queue, rss off");
        }
        Ok(queues)
    }
}

impl<H: Hal, R: Registers> IgbQueue<H, R> {
    /// Which queue pair this handle drives (0 is the device-wide one).
    pub fn queue(&self) -> usize {
        self.queue as usize
    }

    /// Poll STATUS.LU for up to `ms` milliseconds; say clearly if the link is still down.
    fn wait_for_link(&mut self, ms: u32) {
        for waited in 0..=ms {
            if self.regs.read(regs::STATUS) & regs::STATUS_LU != 0 {
                // Boot time counts this wait (the image's `nic` phase): say how much of it.
                log::info!("igb: link came up after {waited} ms of waiting");
                break;
            }
            (self.delay_us)(1000);
        }
        if !self.link_up() {
            log::warn!(
                "igb: link down after waiting {ms} ms; continuing without it \
                 (check the cable; link_up() reports when it comes up)"
            );
        }
    }

    /// 4.5.9 for this queue: ring base and length, SRRCTL, RXDCTL.ENABLE, then the tail.
    fn init_rx(&mut self) -> Result<(), IgbError> {
        // The ring: every descriptor gets a buffer (`new_queues` checked the pool has enough).
        self.rx.fill(&mut self.pool)?;
        let (r, q) = (&self.regs, self.queue);
        let ring = self.rx.ring();
        r.write(regs::rdbal(q), ring.phys() as u32);
        r.write(regs::rdbah(q), (ring.phys() >> 32) as u32);
        r.write(regs::rdlen(q), ring.bytes());
        // Per queue: QEMU sizes each queue's buffers from its own SRRCTL.
        let srrctl = r.read(regs::srrctl(q))
            & !(regs::SRRCTL_BSIZEPACKET_MASK
                | regs::SRRCTL_BSIZEHEADER_MASK
                | regs::SRRCTL_DESCTYPE_MASK);
        r.write(
            regs::srrctl(q),
            srrctl | RX_BUF_KIB | regs::SRRCTL_DESCTYPE_ADV_ONEBUF | regs::SRRCTL_DROP_EN,
        );
        r.write(regs::rdh(q), 0);
        r.write(regs::rdt(q), 0);
        r.write(
            regs::rxdctl(q),
            r.read(regs::rxdctl(q)) | regs::RXDCTL_ENABLE,
        );
        // The tail is bumped only once the queue reads as enabled.
        if !poll(
            r,
            regs::rxdctl(q),
            regs::RXDCTL_ENABLE,
            true,
            QUEUE_ENABLE_POLLS,
            10,
            self.delay_us,
        ) {
            return Err(IgbError::QueueEnableTimeout { rx: true });
        }
        // Hand all but one descriptor to the device.
        r.write(regs::rdt(q), self.rx.tail());
        Ok(())
    }

    /// 4.5.10 for this queue: ring base and length, TXDCTL thresholds and ENABLE.
    fn init_tx(&mut self) -> Result<(), IgbError> {
        let (r, q) = (&self.regs, self.queue);
        let ring = self.tx.ring();
        r.write(regs::tdbal(q), ring.phys() as u32);
        r.write(regs::tdbah(q), (ring.phys() >> 32) as u32);
        r.write(regs::tdlen(q), ring.bytes());
        r.write(regs::tdh(q), 0);
        r.write(regs::tdt(q), 0);
        // Prefetch when 16 descriptors are free and at least one is ready (the fields are 5
        // bits here); write back only descriptors with RS (WTHRESH = 0), which is what batch
        // reclaim reads.
        let txdctl = (r.read(regs::txdctl(q)) & !regs::TXDCTL_THRESH_MASK)
            | (16 << regs::TXDCTL_PTHRESH_SHIFT)
            | (1 << regs::TXDCTL_HTHRESH_SHIFT)
            | (0 << regs::TXDCTL_WTHRESH_SHIFT);
        r.write(regs::txdctl(q), txdctl | regs::TXDCTL_ENABLE);
        if !poll(
            r,
            regs::txdctl(q),
            regs::TXDCTL_ENABLE,
            true,
            QUEUE_ENABLE_POLLS,
            10,
            self.delay_us,
        ) {
            return Err(IgbError::QueueEnableTimeout { rx: false });
        }
        Ok(())
    }

    /// The device's own counters, accumulated (reads the clear-on-read registers: call it
    /// rarely, e.g. once per second for metrics, not per burst). Device-wide, so only queue 0
    /// reads them; other queues report zeros, and the sum over all handles is the device's.
    pub fn device_counters(&mut self) -> DeviceCounters {
        if self.queue == 0 {
            read_counters(&self.regs, &mut self.counters);
        }
        self.counters
    }
}

impl<H: Hal, R: Registers> Nic for IgbQueue<H, R> {
    fn rx_burst(&mut self, rx: &mut Burst) -> usize {
        let tail = regs::rdt(self.queue);
        self.rx
            .burst(&mut self.pool, rx, &mut self.stats, &self.regs, tail)
    }

    fn tx_burst(&mut self, tx: &mut Burst) -> usize {
        let tail = regs::tdt(self.queue);
        self.tx
            .burst(&mut self.pool, tx, &mut self.stats, &self.regs, tail)
    }

    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// Any handle may read STATUS (a read changes nothing); only queue 0 logs the changes, so
    /// one line per change however many CPUs ask.
    fn link_up(&mut self) -> bool {
        let status = self.regs.read(regs::STATUS);
        let up = status & regs::STATUS_LU != 0;
        if up != self.link_was_up && self.queue == 0 {
            if up {
                let speed = match status & regs::STATUS_SPEED_MASK {
                    regs::STATUS_SPEED_10 => "10 Mb/s",
                    regs::STATUS_SPEED_100 => "100 Mb/s",
                    _ => "1 Gb/s",
                };
                log::info!("igb: link up, {speed}");
            } else {
                log::warn!("igb: link down");
            }
        }
        self.link_was_up = up;
        up
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

impl<H: Hal, R: Registers> Drop for IgbQueue<H, R> {
    fn drop(&mut self) {
        // Stop all DMA into this queue's rings (and the pool its descriptors point into) before
        // they go away. Queue 0 resets the whole device, which stops every queue; another queue
        // disables only its own pair, leaving the rest running.
        let r = &self.regs;
        if self.queue == 0 {
            mask_interrupts(r);
            r.write(regs::CTRL, r.read(regs::CTRL) | regs::CTRL_RST);
            (self.delay_us)(1000);
            return;
        }
        let q = self.queue;
        r.write(
            regs::rxdctl(q),
            r.read(regs::rxdctl(q)) & !regs::RXDCTL_ENABLE,
        );
        r.write(
            regs::txdctl(q),
            r.read(regs::txdctl(q)) & !regs::TXDCTL_ENABLE,
        );
        // 4.5.9.1: a disabled queue reads ENABLE clear once its last DMA is done.
        for (reg, bit) in [
            (regs::rxdctl(q), regs::RXDCTL_ENABLE),
            (regs::txdctl(q), regs::TXDCTL_ENABLE),
        ] {
            if !poll(r, reg, bit, false, QUEUE_ENABLE_POLLS, 10, self.delay_us) {
                log::warn!("igb: queue {q} did not stop; resetting the device");
                r.write(regs::CTRL, r.read(regs::CTRL) | regs::CTRL_RST);
                (self.delay_us)(1000);
                return;
            }
        }
    }
}

/// 4.5.7 (copper): CTRL.SLU, then auto-negotiation enabled and restarted in the PHY's control
/// register over MDIC (8.2). A PHY that does not answer is logged; the link wait then says
/// whether the link came up anyway.
fn start_link<R: Registers>(r: &R, delay: fn(u32)) {
    let ctrl = r.read(regs::CTRL) & !(regs::CTRL_FRCSPD | regs::CTRL_FRCDPX);
    r.write(regs::CTRL, ctrl | regs::CTRL_SLU);
    let restarted = mdic(r, regs::MDIC_OP_READ, regs::PHY_BMCR, 0, delay).and_then(|bmcr| {
        let bmcr = bmcr | regs::BMCR_AUTOEN | regs::BMCR_ANRESTART;
        mdic(r, regs::MDIC_OP_WRITE, regs::PHY_BMCR, bmcr, delay)
    });
    if restarted.is_none() {
        log::warn!("igb: the PHY did not answer over MDIC; auto-negotiation not restarted");
    }
}

/// Read the clear-on-read statistics registers (8.19) into `c`.
fn read_counters<R: Registers>(r: &R, c: &mut DeviceCounters) {
    c.rx_good_packets += u64::from(r.read(regs::GPRC));
    c.tx_good_packets += u64::from(r.read(regs::GPTC));
    // Low before high: the pair clears when the high half is read (8.19).
    let gorc = u64::from(r.read(regs::GORCL)) | (u64::from(r.read(regs::GORCH)) << 32);
    let gotc = u64::from(r.read(regs::GOTCL)) | (u64::from(r.read(regs::GOTCH)) << 32);
    c.rx_good_bytes += gorc;
    c.tx_good_bytes += gotc;
    c.rx_missed += u64::from(r.read(regs::MPC));
    c.rx_no_descriptor += u64::from(r.read(regs::RNBC));
    c.rx_crc_errors += u64::from(r.read(regs::CRCERRS));
    c.rx_oversize += u64::from(r.read(regs::ROC));
}

/// 4.5.9, device-wide part: the address filters and RCTL, receive still off.
fn init_rx_filters<R: Registers>(r: &R) {
    // RAL/RAH[0] hold our MAC from the EEPROM (read in `new_queues`). Multicast is accepted
    // whole (MPE) rather than through MTA hashes: VRRP (01:00:5e:00:00:12), and IPv6 neighbour
    // discovery's solicited-node groups, which depend on the addresses configured.
    for n in 0..regs::MTA_LEN {
        r.write(regs::mta(n), 0);
    }
    let rctl = r.read(regs::RCTL)
        & !(regs::RCTL_EN | regs::RCTL_SBP | regs::RCTL_UPE | regs::RCTL_LPE | regs::RCTL_LBM_MASK);
    r.write(
        regs::RCTL,
        rctl | regs::RCTL_BAM | regs::RCTL_MPE | regs::RCTL_SECRC,
    );
}

/// 7.1.1.7 RSS over `n` queues: the key, a round-robin redirection table and the hashed
/// packet types, with RXCSUM.PCSD (QEMU's model applies RSS only with it; the 82576 then reports
/// the hash in the descriptor, which the driver ignores).
fn init_rss<R: Registers>(r: &R, n: u32, key: &[u8; 40]) {
    let (words, _) = key.as_chunks::<4>();
    for (i, word) in (0..regs::RSSRK_LEN).zip(words) {
        r.write(regs::rssrk(i), u32::from_le_bytes(*word));
    }
    // Entry e (byte e % 4 of register e / 4) names queue e % n, as `shard_of` assumes.
    for i in 0..regs::RETA_LEN {
        let entries = [0, 1, 2, 3].map(|j| ((4 * i + j) % n) as u8);
        r.write(regs::reta(i), u32::from_le_bytes(entries));
    }
    r.write(regs::RXCSUM, r.read(regs::RXCSUM) | regs::RXCSUM_PCSD);
    // Both IPv6 TCP bits: the datasheet's, and the extension-header one QEMU reads instead
    // (`igb_rss_get_hash_type`); without extension headers the two hash the same bytes.
    r.write(
        regs::MRQC,
        regs::MRQC_MRQE_RSS
            | regs::MRQC_RSS_IPV4
            | regs::MRQC_RSS_IPV4_TCP
            | regs::MRQC_RSS_IPV4_UDP
            | regs::MRQC_RSS_IPV6
            | regs::MRQC_RSS_IPV6_TCP
            | regs::MRQC_RSS_IPV6_TCP_EX
            | regs::MRQC_RSS_IPV6_UDP,
    );
}

/// 4.5.10, device-wide part: TCTL, transmit still off.
fn init_tx_control<R: Registers>(r: &R) {
    // Pad short frames; collision threshold and full-duplex distance as 4.5.10 gives them.
    let tctl = r.read(regs::TCTL) & !(regs::TCTL_EN | regs::TCTL_CT_MASK | regs::TCTL_COLD_MASK);
    r.write(
        regs::TCTL,
        tctl | regs::TCTL_PSP | regs::TCTL_CT_DEFAULT | regs::TCTL_COLD_FULL_DUPLEX,
    );
}

/// One PHY register access over MDIC (8.2): `op` on register `reg` of the internal PHY
/// (address 1). The register's value (read) or 0 (write); `None` if the access failed or never
/// completed.
fn mdic<R: Registers>(r: &R, op: u32, reg: u32, data: u16, delay: fn(u32)) -> Option<u16> {
    r.write(
        regs::MDIC,
        u32::from(data)
            | (reg << regs::MDIC_REG_SHIFT)
            | (regs::MDIC_PHY_INTERNAL << regs::MDIC_PHY_SHIFT)
            | op,
    );
    for _ in 0..MDIC_POLLS {
        let v = r.read(regs::MDIC);
        if v & regs::MDIC_ERROR != 0 {
            return None;
        }
        if v & regs::MDIC_READY != 0 {
            return Some(v as u16);
        }
        delay(10);
    }
    None
}

/// 4.5.4: mask every interrupt cause and MSI-X vector, and let none re-arm itself.
fn mask_interrupts<R: Registers>(r: &R) {
    r.write(regs::IMC, 0xffff_ffff);
    r.write(regs::EIMC, 0xffff_ffff);
    r.write(regs::EIAM, 0);
}

/// 4.5.4 - 4.5.5: from any state to "reset, EEPROM read".
fn reset<R: Registers>(r: &R, delay: fn(u32)) -> Result<(), IgbError> {
    mask_interrupts(r);
    // No new frames in either direction, then no DMA in flight (master disable) before the
    // reset. If requests stay pending the reset that follows clears them anyway.
    r.write(regs::RCTL, r.read(regs::RCTL) & !regs::RCTL_EN);
    r.write(regs::TCTL, r.read(regs::TCTL) & !regs::TCTL_EN);
    r.write(regs::CTRL, r.read(regs::CTRL) | regs::CTRL_MASTER_DISABLE);
    if !poll(
        r,
        regs::STATUS,
        regs::STATUS_MASTER_ENABLE,
        false,
        MASTER_DISABLE_POLLS,
        10,
        delay,
    ) {
        log::warn!("igb: PCIe master disable did not complete; resetting anyway");
    }
    r.write(regs::CTRL, r.read(regs::CTRL) | regs::CTRL_RST);
    // CTRL.RST (8.2.1): give the reset about 1 ms before accessing the device again.
    delay(1000);
    if !poll(r, regs::CTRL, regs::CTRL_RST, false, RESET_POLLS, 10, delay) {
        log::error!("igb: CTRL.RST did not self-clear within ~11 ms");
        return Err(IgbError::ResetTimeout);
    }
    if !poll(
        r,
        regs::EECD,
        regs::EECD_AUTO_RD,
        true,
        EEPROM_POLLS,
        1000,
        delay,
    ) {
        // Some parts and models never report the auto-read; an address marked valid in
        // RAH[0] shows the EEPROM was read all the same.
        if r.read(regs::RAH0) & regs::RAH_AV == 0 {
            return Err(IgbError::EepromTimeout);
        }
        log::info!("igb: EECD.AUTO_RD not reported; RAH[0] holds a valid address, continuing");
    }
    // 4.5.4: the reset re-enabled the defaults; mask again.
    mask_interrupts(r);
    Ok(())
}

/// The station address the EEPROM loaded into RAL/RAH[0] (8.10): little-endian bytes.
fn read_mac<R: Registers>(r: &R) -> Result<[u8; 6], IgbError> {
    let ral = r.read(regs::RAL0);
    let rah = r.read(regs::RAH0);
    if rah & regs::RAH_AV == 0 {
        return Err(IgbError::NoMacAddress);
    }
    let [a, b, c, d] = ral.to_le_bytes();
    let [e, f, _, _] = rah.to_le_bytes();
    Ok([a, b, c, d, e, f])
}
