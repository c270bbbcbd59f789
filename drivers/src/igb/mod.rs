//! Intel 82576 / i350 / i210 / i211 (igb) 1 GbE, polled, in bursts, zero copy: one receive and
//! one transmit queue whose buffers are pool buffers.
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
//! | RX queue 0: RDBAL/RDBAH/RDLEN, SRRCTL (advanced one buffer, 2 KiB, drop), RXDCTL.ENABLE + poll, RDT = len-1, then RCTL.EN | 4.5.9 |
//! | TX: TCTL (PSP, CT, COLD), queue 0 TDBAL/TDBAH/TDLEN, TXDCTL thresholds + ENABLE + poll, then TCTL.EN | 4.5.10 |
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
//! # What the kernel must provide
//!
//! The same as for the 82599 ([`crate::ixgbe`]): BAR0 mapped uncached as [`MmioRegisters`] (use
//! [`pci_bring_up`]), ring memory through [`Hal::dma_alloc`], a [`PacketPool`] with at least
//! [`RX_RING_SIZE`] free buffers, and a busy-wait `delay_us`.

pub mod regs;

#[cfg(test)]
mod tests;

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
}

impl IgbConfig {
    /// Default link wait: 1000BASE-T auto-negotiation takes up to about 3 s.
    pub const DEFAULT_LINK_WAIT_MS: u32 = 4000;

    /// A configuration with the default link wait.
    pub fn new(delay_us: fn(u32)) -> Self {
        IgbConfig {
            delay_us,
            link_wait_ms: Self::DEFAULT_LINK_WAIT_MS,
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

/// An igb NIC with one receive and one transmit queue, receiving into its own pool.
///
/// `H` is the kernel's `Hal` (descriptor ring memory); `R` the register access.
pub struct Igb<H: Hal, R: Registers = MmioRegisters> {
    regs: R,
    rx: RxRing<H>,
    tx: TxRing<H>,
    pool: PacketPool,
    mac: [u8; 6],
    link_was_up: bool,
    delay_us: fn(u32),
    stats: NicStats,
    counters: DeviceCounters,
}

impl<H: Hal, R: Registers> Igb<H, R> {
    /// Bring up the NIC behind `regs` (datasheet 4.5), fill its receive ring from `pool`, and
    /// enable receive and transmit. Returns once the queues run; the link may still be down.
    pub fn new(regs: R, pool: PacketPool, config: IgbConfig) -> Result<Self, IgbError> {
        if pool.available() < RX_RING_SIZE {
            return Err(IgbError::PoolTooSmall {
                needed: RX_RING_SIZE,
                available: pool.available(),
            });
        }
        let delay = config.delay_us;
        reset(&regs, delay)?;
        let mac = read_mac(&regs)?;
        regs.write(
            regs::CTRL_EXT,
            regs.read(regs::CTRL_EXT) | regs::CTRL_EXT_DRV_LOAD,
        );
        let rx = RxRing::new(regs::RXD_ERR_RXE)?;
        let tx = TxRing::new()?;
        let mut nic = Igb {
            regs,
            rx,
            tx,
            pool,
            mac,
            link_was_up: false,
            delay_us: delay,
            stats: NicStats::default(),
            counters: DeviceCounters::default(),
        };
        // 4.5.7: copper link set-up is "set link up" and let the PHY auto-negotiate speed and
        // duplex (CTRL.FRCSPD/FRCDPLX clear); the reset left the PHY idle, so restart its
        // auto-negotiation. Started here, waited for at the end.
        nic.start_link();
        // 4.5.8: statistics are clear-on-read; read them all so they start from zero.
        nic.read_counters();
        nic.counters = DeviceCounters::default();
        nic.init_rx()?;
        nic.init_tx()?;
        nic.wait_for_link(config.link_wait_ms);
        log::info!(
            "igb: mac {:02x?}, rx {} tx {} descriptors",
            nic.mac,
            RX_RING_SIZE,
            TX_RING_SIZE
        );
        Ok(nic)
    }

    /// 4.5.7 (copper): CTRL.SLU, then auto-negotiation enabled and restarted in the PHY's
    /// control register over MDIC (8.2). A PHY that does not answer is logged; the link
    /// wait then says whether the link came up anyway.
    fn start_link(&mut self) {
        let r = &self.regs;
        let ctrl = r.read(regs::CTRL) & !(regs::CTRL_FRCSPD | regs::CTRL_FRCDPX);
        r.write(regs::CTRL, ctrl | regs::CTRL_SLU);
        let restarted =
            mdic(r, regs::MDIC_OP_READ, regs::PHY_BMCR, 0, self.delay_us).and_then(|bmcr| {
                let bmcr = bmcr | regs::BMCR_AUTOEN | regs::BMCR_ANRESTART;
                mdic(r, regs::MDIC_OP_WRITE, regs::PHY_BMCR, bmcr, self.delay_us)
            });
        if restarted.is_none() {
            log::warn!("igb: the PHY did not answer over MDIC; auto-negotiation not restarted");
        }
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

    /// 4.5.9 Receive Initialization, for queue 0.
    fn init_rx(&mut self) -> Result<(), IgbError> {
        let r = &self.regs;
        // RAL/RAH[0] hold our MAC from the EEPROM (read in `new`). Multicast is accepted whole
        // (MPE) rather than through MTA hashes: VRRP (01:00:5e:00:00:12), and IPv6 neighbour
        // discovery's solicited-node groups, which depend on the addresses configured.
        for n in 0..regs::MTA_LEN {
            r.write(regs::mta(n), 0);
        }
        let rctl = r.read(regs::RCTL)
            & !(regs::RCTL_EN
                | regs::RCTL_SBP
                | regs::RCTL_UPE
                | regs::RCTL_LPE
                | regs::RCTL_LBM_MASK);
        r.write(
            regs::RCTL,
            rctl | regs::RCTL_BAM | regs::RCTL_MPE | regs::RCTL_SECRC,
        );

        // The ring: every descriptor gets a buffer (`new` checked the pool has enough).
        self.rx.fill(&mut self.pool)?;
        let r = &self.regs;
        let ring = self.rx.ring();
        r.write(regs::RDBAL, ring.phys() as u32);
        r.write(regs::RDBAH, (ring.phys() >> 32) as u32);
        r.write(regs::RDLEN, ring.bytes());
        let srrctl = r.read(regs::SRRCTL)
            & !(regs::SRRCTL_BSIZEPACKET_MASK
                | regs::SRRCTL_BSIZEHEADER_MASK
                | regs::SRRCTL_DESCTYPE_MASK);
        r.write(
            regs::SRRCTL,
            srrctl | RX_BUF_KIB | regs::SRRCTL_DESCTYPE_ADV_ONEBUF | regs::SRRCTL_DROP_EN,
        );
        r.write(regs::RDH, 0);
        r.write(regs::RDT, 0);
        r.write(regs::RXDCTL, r.read(regs::RXDCTL) | regs::RXDCTL_ENABLE);
        // The tail is bumped only once the queue reads as enabled.
        if !poll(
            r,
            regs::RXDCTL,
            regs::RXDCTL_ENABLE,
            true,
            QUEUE_ENABLE_POLLS,
            10,
            self.delay_us,
        ) {
            return Err(IgbError::QueueEnableTimeout { rx: true });
        }
        // Hand all but one descriptor to the device, then start receiving.
        r.write(regs::RDT, self.rx.tail());
        r.write(regs::RCTL, r.read(regs::RCTL) | regs::RCTL_EN);
        Ok(())
    }

    /// 4.5.10 Transmit Initialization, for queue 0.
    fn init_tx(&mut self) -> Result<(), IgbError> {
        let r = &self.regs;
        // Pad short frames; collision threshold and full-duplex distance as 4.5.10 gives them.
        let tctl =
            r.read(regs::TCTL) & !(regs::TCTL_EN | regs::TCTL_CT_MASK | regs::TCTL_COLD_MASK);
        r.write(
            regs::TCTL,
            tctl | regs::TCTL_PSP | regs::TCTL_CT_DEFAULT | regs::TCTL_COLD_FULL_DUPLEX,
        );
        let ring = self.tx.ring();
        r.write(regs::TDBAL, ring.phys() as u32);
        r.write(regs::TDBAH, (ring.phys() >> 32) as u32);
        r.write(regs::TDLEN, ring.bytes());
        r.write(regs::TDH, 0);
        r.write(regs::TDT, 0);
        // Prefetch when 16 descriptors are free and at least one is ready (the fields are 5
        // bits here); write back only descriptors with RS (WTHRESH = 0), which is what batch
        // reclaim reads.
        let txdctl = (r.read(regs::TXDCTL) & !regs::TXDCTL_THRESH_MASK)
            | (16 << regs::TXDCTL_PTHRESH_SHIFT)
            | (1 << regs::TXDCTL_HTHRESH_SHIFT)
            | (0 << regs::TXDCTL_WTHRESH_SHIFT);
        r.write(regs::TXDCTL, txdctl | regs::TXDCTL_ENABLE);
        if !poll(
            r,
            regs::TXDCTL,
            regs::TXDCTL_ENABLE,
            true,
            QUEUE_ENABLE_POLLS,
            10,
            self.delay_us,
        ) {
            return Err(IgbError::QueueEnableTimeout { rx: false });
        }
        r.write(regs::TCTL, r.read(regs::TCTL) | regs::TCTL_EN);
        Ok(())
    }

    /// Read the clear-on-read statistics registers into [`Self::device_counters`].
    fn read_counters(&mut self) {
        let r = &self.regs;
        let c = &mut self.counters;
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

    /// The device's own counters, accumulated (reads the clear-on-read registers: call it
    /// rarely, e.g. once per second for metrics, not per burst).
    pub fn device_counters(&mut self) -> DeviceCounters {
        self.read_counters();
        self.counters
    }
}

impl<H: Hal, R: Registers> Nic for Igb<H, R> {
    fn rx_burst(&mut self, rx: &mut Burst) -> usize {
        self.rx
            .burst(&mut self.pool, rx, &mut self.stats, &self.regs, regs::RDT)
    }

    fn tx_burst(&mut self, tx: &mut Burst) -> usize {
        self.tx
            .burst(&mut self.pool, tx, &mut self.stats, &self.regs, regs::TDT)
    }

    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&mut self) -> bool {
        let status = self.regs.read(regs::STATUS);
        let up = status & regs::STATUS_LU != 0;
        if up != self.link_was_up {
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
            self.link_was_up = up;
        }
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

impl<H: Hal, R: Registers> Drop for Igb<H, R> {
    fn drop(&mut self) {
        // Stop all DMA before the rings (and the pool the descriptors point into) go away.
        mask_interrupts(&self.regs);
        self.regs
            .write(regs::CTRL, self.regs.read(regs::CTRL) | regs::CTRL_RST);
        (self.delay_us)(1000);
    }
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
