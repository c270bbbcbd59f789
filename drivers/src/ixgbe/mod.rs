//! Intel 82599 (ixgbe) 10 GbE, polled, in bursts, zero copy: one receive and one transmit queue
//! whose buffers are pool buffers.
//!
//! **Verified only against a model of the 82599 (`model.rs`, host tests), never on hardware.** QEMU
//! does not emulate this NIC and none was available. The model implements the datasheet
//! behaviour the driver relies on (self-clearing reset, EEPROM and DMA init flags, link after
//! auto-negotiation, queue enable handshakes, head/tail ring ownership, advanced descriptor
//! formats, clear-on-read counters), written from the datasheet, not from this driver.
//!
//! # Bring-up, by datasheet section (82599 datasheet rev. 3.x)
//!
//! | step | section |
//! |---|---|
//! | disable interrupts (EIMC), before and again after the reset | 4.6.3.1 |
//! | master disable: CTRL.PCIe_Master_Disable, poll STATUS | 5.2.5.3.2 |
//! | global reset: CTRL.RST, wait 1 ms, poll until it self-clears, wait 10 ms | 4.2.1.6.1, 8.2.3.1.1, 4.6.3.2 |
//! | wait for EEPROM auto-read done (EEC.ARD) | 4.6.3 |
//! | wait for DMA init done (RDRXCTL.DMAIDONE) | 4.6.3 |
//! | link: AUTOC.LMS = 10 GbE serial, restart AN, wait for LINKS.Link_Up (bounded) | 4.6.4 |
//! | read every clear-on-read counter | 4.6.5 |
//! | MAC from RAL/RAH\[0\] (loaded from the EEPROM), MTA with [`RX_MULTICAST`] only (MCSTCTRL.MFE, MO = 00b), FCTRL.BAM | 4.6.7, 8.2.3.7.2, 8.2.3.7.7, 8.2.3.7.9 |
//! | HLREG0.RXCRCSTRP + RDRXCTL.CRCSTRIP, RSCFRSTSIZE=0, RSCACKC, FCOE_WRFIX | 4.6.7, 8.2.3.8.8 |
//! | RXPBSIZE\[0\]=512 KiB, others 0 (DCB off, VT off); FCRTH\[0\] = 512 KiB - 0x6000 | 4.6.11.3.4, 4.6.3.2 |
//! | RX queue 0: RDBAL/RDBAH/RDLEN, SRRCTL (advanced one buffer, 2 KiB, drop), RXDCTL.ENABLE + poll, RDT = len-1 | 4.6.7 |
//! | RXCTRL.RXEN between SECRXCTRL.RX_DIS / SECRXSTAT.SECRX_RDY and clearing RX_DIS; CTRL_EXT.NS_DIS; DCA_RXCTRL bit 12 | 4.6.7 |
//! | HLREG0.TXCRCEN/TXPADEN; RTTDCS.ARBDIS around DTXMXSZRQ, TXPBSIZE, MTQC | 4.6.8, 4.6.11.3.4 |
//! | DMATXCTL.TE, TX queue 0: TDBAL/TDBAH/TDLEN, TXDCTL thresholds + ENABLE + poll | 4.6.8 |
//!
//! Interrupts stay disabled (the driver polls). Link down at bring-up is not an error: it is
//! logged, and [`Nic::link_up`] re-reads LINKS.
//!
//! # Data path
//!
//! One receive and one transmit ring (`adv_ring.rs`, shared with the igb driver), whose descriptors hold pool buffers: a frame
//! is received at [`HEADROOM`](crate::pool::HEADROOM) and sent from wherever the forwarder left
//! it, without a copy. Each doorbell (RDT, TDT) is written once per burst; transmitted buffers
//! are reclaimed [`TX_CLEAN_BATCH`] at a time.
//!
//! # What the kernel must provide
//!
//! - BAR0 mapped **uncached**, as [`MmioRegisters`] (use [`pci_bring_up`] to find and size it and
//!   to enable bus mastering).
//! - DMA memory for the two descriptor rings through virtio-drivers' [`Hal::dma_alloc`] (the same
//!   `KernelHal` virtio-net uses): physically contiguous, page aligned, zeroed; 2 pages per ring.
//!   `dma_dealloc` is called only when the driver is dropped (after a device reset).
//! - A [`PacketPool`] with at least [`RX_RING_SIZE`] free buffers (more for transmit and for the
//!   frames the kernel holds).
//! - A busy-wait `delay_us` function. Every wait in bring-up is a bounded number of polls with a
//!   delay in between, so a dead device yields an error, not a hang.

pub mod regs;

#[cfg(test)]
pub(crate) mod model;
#[cfg(test)]
pub(crate) mod tests;

use core::fmt;

use virtio_drivers::Hal;

use crate::adv_ring::{RingError, RxRing, TxRing};
pub use crate::adv_ring::{RX_RING_SIZE, TX_CLEAN_BATCH, TX_RING_SIZE};
use crate::nic::{Burst, Nic, NicStats};
use crate::pci::{self, ConfigSpace, PciAddress};
use crate::pool::PacketPool;
use regs::poll;
pub use regs::{MmioRegisters, Registers};

/// SRRCTL.BSIZEPACKET in KiB. The device writes at most 1522 bytes (jumbo off) from HEADROOM,
/// which fits the 1920 bytes there; 1 KiB would split ordinary 1500-byte MTU frames.
const RX_BUF_KIB: u32 = 2;

/// The longest frame (Ethernet header on, FCS stripped) the device receives with jumbo frames
/// off (HLREG0.JUMBOEN clear): 1518 bytes including the 4-byte FCS.
pub const RX_FRAME_MAX: usize = 1518 - 4;

/// The multicast groups the NIC receives: VRRP's 224.0.0.18 (a VRRP backup must hear the
/// master's advertisements, or it takes over and there are two masters).
pub const RX_MULTICAST: [[u8; 6]; 1] = [[0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]];

/// The MTA register and bit that pass frames to `group` with MCSTCTRL.MO = 00b (8.2.3.7.7):
/// address bits 47:36 (the high nibble of the fifth octet and the sixth octet) form a 12-bit
/// index whose upper 7 bits pick the register and lower 5 bits the bit.
pub const fn mta_slot(group: [u8; 6]) -> (usize, u32) {
    let index = (group[4] as u16 >> 4) | ((group[5] as u16) << 4);
    ((index >> 5) as usize, (index & 0x1f) as u32)
}

/// Intel's PCI vendor id, and the 82599 device ids this driver accepts.
const INTEL: u16 = 0x8086;
const DEVICE_IDS: [u16; 10] = [
    0x10f7, 0x10f8, 0x10f9, 0x10fb, 0x10fc, 0x1514, 0x1517, 0x151c, 0x154d, 0x1557,
];

/// Bounded waits: how many polls, and how long between them.
const RESET_POLLS: u32 = 1000; // x 10 us, after the first 1 ms
const MASTER_DISABLE_POLLS: u32 = 100; // x 10 us
const EEPROM_POLLS: u32 = 1000; // x 1 ms
const DMA_INIT_POLLS: u32 = 1000; // x 1 ms
const QUEUE_ENABLE_POLLS: u32 = 1000; // x 10 us
const SECRX_POLLS: u32 = 1000; // x 10 us

/// Settings the kernel chooses.
#[derive(Clone, Copy, Debug)]
pub struct IxgbeConfig {
    /// Busy-wait at least this many microseconds (the kernel's clock). Tests pass a no-op.
    pub delay_us: fn(u32),
    /// How long bring-up waits for the link before going on without it (polled every 1 ms).
    pub link_wait_ms: u32,
}

impl IxgbeConfig {
    /// Default link wait (auto-negotiation on 10GBASE-KR/SFI usually settles well within this).
    pub const DEFAULT_LINK_WAIT_MS: u32 = 2000;

    /// A configuration with the default link wait.
    pub fn new(delay_us: fn(u32)) -> Self {
        IxgbeConfig {
            delay_us,
            link_wait_ms: Self::DEFAULT_LINK_WAIT_MS,
        }
    }
}

/// Why an 82599 could not be brought up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IxgbeError {
    /// Nothing answers at the PCI address.
    NoDevice,
    /// The function is not a supported 82599 (vendor, device).
    NotIxgbe(u16, u16),
    /// BAR0 is not an assigned memory BAR.
    NoBar0,
    /// BAR0 (or the mapping given) is shorter than the registers the driver uses.
    BarTooSmall(usize),
    /// CTRL.RST did not self-clear: the device did not come out of reset.
    ResetTimeout,
    /// EEC.ARD never set: the EEPROM auto-read did not finish.
    EepromTimeout,
    /// RDRXCTL.DMAIDONE never set: DMA initialisation did not finish.
    DmaInitTimeout,
    /// RAH\[0\] has no valid address: the EEPROM did not provide a MAC.
    NoMacAddress,
    /// RXDCTL.ENABLE or TXDCTL.ENABLE did not read back as 1.
    QueueEnableTimeout(Direction),
    /// SECRXSTAT.SECRX_RDY never set while enabling receive.
    RxPathTimeout,
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

/// Which queue an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The receive queue.
    Rx,
    /// The transmit queue.
    Tx,
}

impl fmt::Display for IxgbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => f.write_str("no PCI function at that address"),
            Self::NotIxgbe(v, d) => write!(f, "{v:04x}:{d:04x} is not a supported Intel 82599"),
            Self::NoBar0 => f.write_str("82599 BAR0 is not an assigned memory BAR"),
            Self::BarTooSmall(len) => write!(
                f,
                "82599 register window is {len:#x} bytes, need at least {:#x}",
                regs::MIN_BAR_LEN
            ),
            Self::ResetTimeout => {
                f.write_str("82599 did not come out of reset (CTRL.RST never self-cleared)")
            }
            Self::EepromTimeout => {
                f.write_str("82599 EEPROM auto-read did not complete (EEC.ARD never set)")
            }
            Self::DmaInitTimeout => f.write_str(
                "82599 DMA initialisation did not complete (RDRXCTL.DMAIDONE never set)",
            ),
            Self::NoMacAddress => {
                f.write_str("82599 has no valid MAC in RAL/RAH[0] (EEPROM missing or blank?)")
            }
            Self::QueueEnableTimeout(Direction::Rx) => {
                f.write_str("82599 receive queue did not enable (RXDCTL.ENABLE stayed 0)")
            }
            Self::QueueEnableTimeout(Direction::Tx) => {
                f.write_str("82599 transmit queue did not enable (TXDCTL.ENABLE stayed 0)")
            }
            Self::RxPathTimeout => {
                f.write_str("82599 receive data path did not drain (SECRXSTAT.SECRX_RDY never set)")
            }
            Self::DmaAlloc => f.write_str("DMA allocation for an 82599 descriptor ring failed"),
            Self::PoolTooSmall { needed, available } => write!(
                f,
                "packet pool has {available} free buffers, the 82599 receive ring needs {needed}"
            ),
        }
    }
}

impl From<RingError> for IxgbeError {
    fn from(e: RingError) -> Self {
        match e {
            RingError::DmaAlloc => Self::DmaAlloc,
            RingError::PoolTooSmall { needed, available } => {
                Self::PoolTooSmall { needed, available }
            }
        }
    }
}

/// BAR0 of an 82599, ready to be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar0 {
    /// Physical base address.
    pub phys: u64,
    /// Length in bytes.
    pub size: u64,
}

/// Check that `address` is an 82599, size its BAR0, and enable memory decoding and bus mastering.
///
/// The kernel then maps `phys..phys + size` uncached and calls [`MmioRegisters::new`] and
/// [`Ixgbe::new`].
pub fn pci_bring_up(config: &impl ConfigSpace, address: PciAddress) -> Result<Bar0, IxgbeError> {
    let function = pci::probe(config, address).ok_or(IxgbeError::NoDevice)?;
    if function.vendor != INTEL || !DEVICE_IDS.contains(&function.device) {
        return Err(IxgbeError::NotIxgbe(function.vendor, function.device));
    }
    // Size the BAR before decoding is enabled, so the all-ones probe never decodes.
    let (phys, size) = pci::memory_bar(config, address, 0).ok_or(IxgbeError::NoBar0)?;
    if size < regs::MIN_BAR_LEN as u64 {
        return Err(IxgbeError::BarTooSmall(size as usize));
    }
    pci::enable_bus_master(config, address);
    Ok(Bar0 { phys, size })
}

/// Device counters accumulated from the clear-on-read statistics registers (4.6.5, 8.2.3.23).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Good packets received (GPRC).
    pub rx_good_packets: u64,
    /// Good octets received (GORC).
    pub rx_good_bytes: u64,
    /// Packets missed for lack of buffer space or descriptors (MPC, all packet buffers).
    pub rx_missed: u64,
    /// Frames with a bad CRC (CRCERRS).
    pub rx_crc_errors: u64,
    /// Oversized frames dropped (ROC).
    pub rx_oversize: u64,
    /// Good packets transmitted (GPTC).
    pub tx_good_packets: u64,
    /// Good octets transmitted (GOTC).
    pub tx_good_bytes: u64,
}

/// An 82599 with one receive and one transmit queue, receiving into its own pool.
///
/// `H` is the kernel's `Hal` (descriptor ring memory); `R` the register access (MMIO on hardware,
/// the model in tests).
pub struct Ixgbe<H: Hal, R: Registers = MmioRegisters> {
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

impl<H: Hal, R: Registers> Ixgbe<H, R> {
    /// Bring up the 82599 behind `regs` (datasheet 4.6.3), fill its receive ring from `pool`, and
    /// enable receive and transmit. Returns once the queues run; the link may still be down.
    pub fn new(regs: R, pool: PacketPool, config: IxgbeConfig) -> Result<Self, IxgbeError> {
        if pool.available() < RX_RING_SIZE {
            return Err(IxgbeError::PoolTooSmall {
                needed: RX_RING_SIZE,
                available: pool.available(),
            });
        }
        let delay = config.delay_us;
        reset(&regs, delay)?;
        let mac = read_mac(&regs)?;
        let rx = RxRing::new(regs::RXD_ERR_RXE)?;
        let tx = TxRing::new()?;
        let mut nic = Ixgbe {
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
        // 4.6.4: link setup. Started here, waited for at the end, so the queues come up while
        // auto-negotiation runs.
        nic.start_link();
        // 4.6.5: statistics are clear-on-read; read them all so they start from zero.
        nic.read_counters();
        nic.counters = DeviceCounters::default();
        nic.init_rx()?;
        nic.init_tx()?;
        nic.wait_for_link(config.link_wait_ms);
        log::info!(
            "ixgbe: mac {:02x?}, rx {} tx {} descriptors",
            nic.mac,
            RX_RING_SIZE,
            TX_RING_SIZE
        );
        Ok(nic)
    }

    /// 4.6.4: 10 GbE serial link mode, then restart auto-negotiation.
    fn start_link(&mut self) {
        let autoc = self.regs.read(regs::AUTOC);
        let autoc = (autoc & !regs::AUTOC_LMS_MASK) | regs::AUTOC_LMS_10G_SERIAL;
        self.regs.write(regs::AUTOC, autoc | regs::AUTOC_AN_RESTART);
    }

    /// Poll LINKS for up to `ms` milliseconds; say clearly if the link is still down.
    fn wait_for_link(&mut self, ms: u32) {
        for waited in 0..=ms {
            if self.regs.read(regs::LINKS) & regs::LINKS_UP != 0 {
                // Boot time counts this wait (the image's `nic` phase): say how much of it.
                log::info!("ixgbe: link came up after {waited} ms of waiting");
                break;
            }
            (self.delay_us)(1000);
        }
        if !self.link_up() {
            log::warn!(
                "ixgbe: link down after waiting {ms} ms; continuing without it \
                 (check the cable/module; link_up() reports when it comes up)"
            );
        }
    }

    /// 4.6.7 Receive Initialization, for queue 0.
    fn init_rx(&mut self) -> Result<(), IxgbeError> {
        let r = &self.regs;
        // Filters: RAL/RAH[0] hold our MAC from the EEPROM (read in `new`); of multicast only
        // the groups of RX_MULTICAST, through the MTA hash (other groups sharing a bit pass too
        // and are dropped by the forwarder).
        let mut mta = [0u32; regs::MTA_LEN as usize];
        for group in RX_MULTICAST {
            let (reg, bit) = mta_slot(group);
            mta[reg] |= 1 << bit;
        }
        for (n, bits) in (0..regs::MTA_LEN).zip(mta) {
            r.write(regs::mta(n), bits);
        }
        r.write(regs::MCSTCTRL, regs::MCSTCTRL_MFE);
        // Unicast to our MAC plus broadcast (ARP); not promiscuous, no bad frames.
        let fctrl = r.read(regs::FCTRL) & !(regs::FCTRL_UPE | regs::FCTRL_MPE | regs::FCTRL_SBP);
        r.write(regs::FCTRL, fctrl | regs::FCTRL_BAM);
        // CRC strip in both places (they must agree, 8.2.3.8.8); jumbo off bounds frames to
        // 1518/1522 bytes, which the 2 KiB buffers after HEADROOM hold.
        let hl = r.read(regs::HLREG0) & !(regs::HLREG0_JUMBOEN | regs::HLREG0_LPBK);
        r.write(regs::HLREG0, hl | regs::HLREG0_RXCRCSTRP);
        let rdrxctl = r.read(regs::RDRXCTL) & !regs::RDRXCTL_RSCFRSTSIZE_MASK;
        r.write(
            regs::RDRXCTL,
            rdrxctl | regs::RDRXCTL_CRCSTRIP | regs::RDRXCTL_RSCACKC | regs::RDRXCTL_FCOE_WRFIX,
        );
        // 4.6.11.3.4 (DCB off, VT off): all of the receive packet buffer to PB0.
        r.write(regs::rxpbsize(0), 512 << 10);
        for n in 1..8 {
            r.write(regs::rxpbsize(n), 0);
        }
        // 4.6.3.2: "FCRTH[n].RTH fields must be set by default regardless if flow control is
        // enabled or not", typically RXPBSIZE[n] - 0x6000 (flow control itself stays off).
        r.write(regs::fcrth(0), (512 << 10) - 0x6000);

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
        // "The tail should not be bumped before this bit was read as 1b."
        if !poll(
            r,
            regs::RXDCTL,
            regs::RXDCTL_ENABLE,
            true,
            QUEUE_ENABLE_POLLS,
            10,
            self.delay_us,
        ) {
            return Err(IxgbeError::QueueEnableTimeout(Direction::Rx));
        }
        // Hand all but one descriptor to the device.
        r.write(regs::RDT, self.rx.tail());

        // Enable receive the way 4.6.7 asks: halt the security block's receive path, wait for
        // it to drain, set RXEN, release the path.
        r.write(
            regs::SECRXCTRL,
            r.read(regs::SECRXCTRL) | regs::SECRXCTRL_RX_DIS,
        );
        if !poll(
            r,
            regs::SECRXSTAT,
            regs::SECRXSTAT_SECRX_RDY,
            true,
            SECRX_POLLS,
            10,
            self.delay_us,
        ) {
            return Err(IxgbeError::RxPathTimeout);
        }
        r.write(regs::RXCTRL, r.read(regs::RXCTRL) | regs::RXCTRL_RXEN);
        r.write(
            regs::SECRXCTRL,
            r.read(regs::SECRXCTRL) & !regs::SECRXCTRL_RX_DIS,
        );
        // Last sentence of 4.6.7: set CTRL_EXT.NS_DIS, clear bit 12 of DCA_RXCTRL.
        r.write(
            regs::CTRL_EXT,
            r.read(regs::CTRL_EXT) | regs::CTRL_EXT_NS_DIS,
        );
        r.write(
            regs::DCA_RXCTRL,
            r.read(regs::DCA_RXCTRL) & !regs::DCA_RXCTRL_BIT12,
        );
        Ok(())
    }

    /// 4.6.8 Transmit Initialization, for queue 0.
    fn init_tx(&mut self) -> Result<(), IxgbeError> {
        let r = &self.regs;
        r.write(
            regs::HLREG0,
            r.read(regs::HLREG0) | regs::HLREG0_TXCRCEN | regs::HLREG0_TXPADEN,
        );
        // DCB and VT off (4.6.11.3.4), with the descriptor arbiter disabled meanwhile.
        r.write(regs::RTTDCS, r.read(regs::RTTDCS) | regs::RTTDCS_ARBDIS);
        r.write(
            regs::DTXMXSZRQ,
            (r.read(regs::DTXMXSZRQ) & !regs::DTXMXSZRQ_MAX_MASK) | regs::DTXMXSZRQ_MAX_MASK,
        );
        r.write(regs::txpbsize(0), 0xa0 << 10);
        for n in 1..8 {
            r.write(regs::txpbsize(n), 0);
        }
        r.write(regs::MTQC, 0);
        r.write(regs::RTTDCS, r.read(regs::RTTDCS) & !regs::RTTDCS_ARBDIS);

        let ring = self.tx.ring();
        r.write(regs::TDBAL, ring.phys() as u32);
        r.write(regs::TDBAH, (ring.phys() >> 32) as u32);
        r.write(regs::TDLEN, ring.bytes());
        r.write(regs::TDH, 0);
        r.write(regs::TDT, 0);
        // Prefetch when 32 descriptors are free and at least one is ready; write back only
        // descriptors with RS (WTHRESH = 0), which is what batch reclaim reads (7.2.3.4).
        let txdctl = (r.read(regs::TXDCTL) & !regs::TXDCTL_THRESH_MASK)
            | (32 << regs::TXDCTL_PTHRESH_SHIFT)
            | (1 << regs::TXDCTL_HTHRESH_SHIFT)
            | (0 << regs::TXDCTL_WTHRESH_SHIFT);
        r.write(regs::TXDCTL, txdctl);
        // TE first: a queue can be enabled only while transmit is enabled.
        r.write(regs::DMATXCTL, r.read(regs::DMATXCTL) | regs::DMATXCTL_TE);
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
            return Err(IxgbeError::QueueEnableTimeout(Direction::Tx));
        }
        Ok(())
    }

    /// Read the clear-on-read statistics registers into [`Self::device_counters`].
    fn read_counters(&mut self) {
        let r = &self.regs;
        let c = &mut self.counters;
        c.rx_good_packets += u64::from(r.read(regs::GPRC));
        c.tx_good_packets += u64::from(r.read(regs::GPTC));
        // Low before high: reading the low half latches the high half (8.2.3.23).
        let gorc = u64::from(r.read(regs::GORCL)) | (u64::from(r.read(regs::GORCH)) << 32);
        let gotc = u64::from(r.read(regs::GOTCL)) | (u64::from(r.read(regs::GOTCH)) << 32);
        c.rx_good_bytes += gorc;
        c.tx_good_bytes += gotc;
        for n in 0..8 {
            c.rx_missed += u64::from(r.read(regs::mpc(n)));
        }
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

impl<H: Hal, R: Registers> Nic for Ixgbe<H, R> {
    fn rx_burst(&mut self, rx: &mut Burst) -> usize {
        // Descriptors are written before the tail that hands them over (8.2.3.8.5).
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
        let links = self.regs.read(regs::LINKS);
        let up = links & regs::LINKS_UP != 0;
        if up != self.link_was_up {
            if up {
                let speed = match links & regs::LINKS_SPEED_MASK {
                    regs::LINKS_SPEED_10G => "10 Gb/s",
                    regs::LINKS_SPEED_1G => "1 Gb/s",
                    _ => "100 Mb/s",
                };
                log::info!("ixgbe: link up, {speed}");
            } else {
                log::warn!("ixgbe: link down");
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

impl<H: Hal, R: Registers> Drop for Ixgbe<H, R> {
    fn drop(&mut self) {
        // Stop all DMA before the rings (and the pool the descriptors point into) go away.
        disable_interrupts(&self.regs);
        self.regs
            .write(regs::CTRL, self.regs.read(regs::CTRL) | regs::CTRL_RST);
        (self.delay_us)(1000);
    }
}

/// 4.6.3.1: mask every interrupt cause (EIMC bit 31 is reserved) and MSI-X vector.
fn disable_interrupts<R: Registers>(r: &R) {
    r.write(regs::EIMC, 0x7fff_ffff);
    for reg in regs::EIMC_EX {
        r.write(reg, 0xffff_ffff);
    }
}

/// 4.6.3.1 - 4.6.3.2 and the waits of 4.6.3: from any state to "reset, EEPROM read, DMA ready".
fn reset<R: Registers>(r: &R, delay: fn(u32)) -> Result<(), IxgbeError> {
    disable_interrupts(r);
    // 4.2.1.6.1 asks for the master disable of 5.2.5.3.2 before a software reset, so no DMA is
    // in flight when the device resets. If requests stay pending the datasheet's fallback is a
    // (second) reset anyway, which is what follows.
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
        log::warn!("ixgbe: PCIe master disable did not complete; resetting anyway");
    }
    // 4.2.1.6.1: software reset is CTRL.RST (LRST would only reset the link, which AN restart
    // in 4.6.4 takes care of). 8.2.3.1.1: wait ~1 ms before reading anything.
    r.write(regs::CTRL, r.read(regs::CTRL) | regs::CTRL_RST);
    delay(1000);
    if !poll(r, regs::CTRL, regs::CTRL_RST, false, RESET_POLLS, 10, delay) {
        log::error!("ixgbe: CTRL.RST did not self-clear within ~11 ms");
        return Err(IxgbeError::ResetTimeout);
    }
    // 4.6.3.2: "wait at least 10 msec to enable smooth initialization flow".
    delay(10_000);
    // 4.6.3.1: the reset re-enabled the defaults; disable interrupts again.
    disable_interrupts(r);
    if !poll(r, regs::EEC, regs::EEC_ARD, true, EEPROM_POLLS, 1000, delay) {
        return Err(IxgbeError::EepromTimeout);
    }
    if !poll(
        r,
        regs::RDRXCTL,
        regs::RDRXCTL_DMAIDONE,
        true,
        DMA_INIT_POLLS,
        1000,
        delay,
    ) {
        return Err(IxgbeError::DmaInitTimeout);
    }
    Ok(())
}

/// The station address the EEPROM loaded into RAL/RAH[0] (8.2.3.7.8-9): little-endian bytes.
fn read_mac<R: Registers>(r: &R) -> Result<[u8; 6], IxgbeError> {
    let ral = r.read(regs::RAL0);
    let rah = r.read(regs::RAH0);
    if rah & regs::RAH_AV == 0 {
        return Err(IxgbeError::NoMacAddress);
    }
    let [a, b, c, d] = ral.to_le_bytes();
    let [e, f, _, _] = rah.to_le_bytes();
    Ok([a, b, c, d, e, f])
}
