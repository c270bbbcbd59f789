//! 82599 registers: offsets and bits the driver uses (datasheet chapter 8.2.3), and the one small
//! trait through which every access goes.
//!
//! The trait exists so that the same driver code runs against the mapped BAR0 on hardware
//! ([`MmioRegisters`]) and against a model of the device in host tests. Only queue 0 is used, so
//! per-queue registers are plain constants for queue 0.

use core::ptr::NonNull;

/// 32-bit access to the device's register space (BAR0), by byte offset.
pub trait Registers {
    /// Read the register at byte offset `reg`.
    fn read(&self, reg: u32) -> u32;
    /// Write `value` to the register at byte offset `reg`.
    fn write(&self, reg: u32, value: u32);
}

/// A shared reference to register access is register access (tests keep the model and lend it).
impl<T: Registers + ?Sized> Registers for &T {
    fn read(&self, reg: u32) -> u32 {
        (**self).read(reg)
    }
    fn write(&self, reg: u32, value: u32) {
        (**self).write(reg, value)
    }
}

/// Poll `reg` until `mask` is all set (`set`) or all clear, at most `polls` times with
/// `interval_us` between reads. Whether it got there. (Shared by the 82599 and igb drivers.)
pub(crate) fn poll<R: Registers>(
    r: &R,
    reg: u32,
    mask: u32,
    set: bool,
    polls: u32,
    interval_us: u32,
    delay: fn(u32),
) -> bool {
    for _ in 0..polls {
        let v = r.read(reg) & mask;
        if (set && v == mask) || (!set && v == 0) {
            return true;
        }
        delay(interval_us);
    }
    false
}

/// The highest register offset the driver touches, plus 4: BAR0 must be at least this long.
pub const MIN_BAR_LEN: usize = (EEC + 4) as usize;

/// BAR0 mapped into the kernel's address space: volatile 32-bit loads and stores.
pub struct MmioRegisters {
    base: NonNull<u32>,
    len: usize,
}

// Safety: the mapping is owned by whoever owns this value and its clones (the caller of `new`
// promised that no one else uses it), so it can move between threads with its owner. Accesses
// are single volatile 32-bit loads and stores, never references into the mapping, so two
// clones on two CPUs cannot break memory safety; which registers each one writes is the
// driver's business (igb gives each queue's handle its own queue registers).
unsafe impl Send for MmioRegisters {}

/// A clone is a second handle on the same registers, for a driver that splits one device
/// between owners (igb's per-CPU queues). The mapping must outlive every clone, as `new`'s
/// caller already promised for the original.
impl Clone for MmioRegisters {
    fn clone(&self) -> Self {
        MmioRegisters {
            base: self.base,
            len: self.len,
        }
    }
}

impl MmioRegisters {
    /// Registers of the 82599 whose BAR0 is mapped at `base` for `len` bytes.
    ///
    /// # Safety
    ///
    /// `base..base + len` must be the device's BAR0 (memory space), mapped uncached (UC: every
    /// access reaches the device, in program order, with no speculative reads), 4-byte aligned,
    /// used by nothing else, and mapped for as long as this value (and the driver holding it)
    /// lives.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        MmioRegisters {
            base: base.cast(),
            len,
        }
    }

    /// The length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (it never is for a real device).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn in_range(&self, reg: u32) -> bool {
        (reg as usize).is_multiple_of(4) && (reg as usize) + 4 <= self.len
    }
}

impl Registers for MmioRegisters {
    fn read(&self, reg: u32) -> u32 {
        if !self.in_range(reg) {
            return u32::MAX; // What a read of an absent device returns; never reached in practice.
        }
        // Safety: `reg` is 4-aligned and inside the mapping (checked above), which `new`'s caller
        // promised is the device's uncached BAR0; a volatile load is exactly one device read.
        unsafe { self.base.as_ptr().add(reg as usize / 4).read_volatile() }
    }

    fn write(&self, reg: u32, value: u32) {
        if !self.in_range(reg) {
            return;
        }
        // Safety: as in `read`; a volatile store is exactly one device write.
        unsafe {
            self.base
                .as_ptr()
                .add(reg as usize / 4)
                .write_volatile(value)
        }
    }
}

// --- General (8.2.3.1) ---------------------------------------------------------------------------

/// Device Control (8.2.3.1.1).
pub const CTRL: u32 = 0x0_0000;
/// CTRL: PCIe master disable (5.2.5.3.2).
pub const CTRL_MASTER_DISABLE: u32 = 1 << 2;
/// CTRL: device reset, self-clearing (4.2.1.6.1).
pub const CTRL_RST: u32 = 1 << 26;
/// Device Status (8.2.3.1.2).
pub const STATUS: u32 = 0x0_0008;
/// STATUS: PCIe master enable status: requests may still be pending while set.
pub const STATUS_MASTER_ENABLE: u32 = 1 << 19;
/// Extended Device Control (8.2.3.1.3).
pub const CTRL_EXT: u32 = 0x0_0018;
/// CTRL_EXT: no-snoop disable (set per 4.6.7).
pub const CTRL_EXT_NS_DIS: u32 = 1 << 16;

// --- EEPROM (8.2.3.2) ----------------------------------------------------------------------------

/// EEPROM/Flash Control (8.2.3.2.1).
pub const EEC: u32 = 0x1_0010;
/// EEC: EEPROM present with a valid signature.
pub const EEC_PRES: u32 = 1 << 8;
/// EEC: EEPROM auto-read done.
pub const EEC_ARD: u32 = 1 << 9;

// --- Interrupts (8.2.3.5) ------------------------------------------------------------------------

/// Extended Interrupt Mask Set/Read (8.2.3.5.3), read by tests.
pub const EIMS: u32 = 0x0_0880;
/// Extended Interrupt Mask Clear (8.2.3.5.4); bit 31 is reserved.
pub const EIMC: u32 = 0x0_0888;
/// Extended Interrupt Mask Clear 1 and 2 (8.2.3.5.9): the MSI-X vectors 0..63.
pub const EIMC_EX: [u32; 2] = [0x0_0AB0, 0x0_0AB4];

// --- Receive (8.2.3.8) ---------------------------------------------------------------------------

/// Receive Descriptor Base Address Low, queue 0 (8.2.3.8.1).
pub const RDBAL: u32 = 0x0_1000;
/// Receive Descriptor Base Address High, queue 0 (8.2.3.8.2).
pub const RDBAH: u32 = 0x0_1004;
/// Receive Descriptor Length in bytes, queue 0 (8.2.3.8.3).
pub const RDLEN: u32 = 0x0_1008;
/// Rx DCA Control, queue 0 (8.2.3.11.1).
pub const DCA_RXCTRL: u32 = 0x0_100C;
/// DCA_RXCTRL: reserved bit 12, defaults to 1, must be cleared (4.6.7).
pub const DCA_RXCTRL_BIT12: u32 = 1 << 12;
/// Receive Descriptor Head, queue 0 (8.2.3.8.4).
pub const RDH: u32 = 0x0_1010;
/// Split Receive Control, queue 0 (8.2.3.8.7).
pub const SRRCTL: u32 = 0x0_1014;
/// SRRCTL: packet buffer size in 1 KiB units, bits 4:0.
pub const SRRCTL_BSIZEPACKET_MASK: u32 = 0x1f;
/// SRRCTL: header buffer size in 64-byte units, bits 13:8 (unused with one buffer).
pub const SRRCTL_BSIZEHEADER_MASK: u32 = 0x3f << 8;
/// SRRCTL: descriptor type, bits 27:25.
pub const SRRCTL_DESCTYPE_MASK: u32 = 0x7 << 25;
/// SRRCTL: descriptor type "advanced, one buffer".
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x1 << 25;
/// SRRCTL: drop frames when the queue has no free descriptor (instead of stalling the buffer).
pub const SRRCTL_DROP_EN: u32 = 1 << 28;
/// Receive Descriptor Tail, queue 0 (8.2.3.8.5).
pub const RDT: u32 = 0x0_1018;
/// Receive Descriptor Control, queue 0 (8.2.3.8.6).
pub const RXDCTL: u32 = 0x0_1028;
/// RXDCTL: queue enable; reads back 1 only once the queue is enabled.
pub const RXDCTL_ENABLE: u32 = 1 << 25;
/// Receive DMA Control (8.2.3.8.8).
pub const RDRXCTL: u32 = 0x0_2F00;
/// RDRXCTL: strip the Ethernet CRC (must equal HLREG0.RXCRCSTRP).
pub const RDRXCTL_CRCSTRIP: u32 = 1 << 1;
/// RDRXCTL: DMA initialisation done (read only).
pub const RDRXCTL_DMAIDONE: u32 = 1 << 3;
/// RDRXCTL: RSC first-segment size, bits 21:17; software sets it to 0.
pub const RDRXCTL_RSCFRSTSIZE_MASK: u32 = 0x1f << 17;
/// RDRXCTL: RSC coalescing on ACK change; "software should set this bit".
pub const RDRXCTL_RSCACKC: u32 = 1 << 25;
/// RDRXCTL: FCoE write fix; "software should set this bit".
pub const RDRXCTL_FCOE_WRFIX: u32 = 1 << 26;
/// Receive Control (8.2.3.8.10).
pub const RXCTRL: u32 = 0x0_3000;
/// RXCTRL: receive enable.
pub const RXCTRL_RXEN: u32 = 1 << 0;
/// Receive Packet Buffer Size, packet buffer `n` (8.2.3.8.9).
pub const fn rxpbsize(n: u32) -> u32 {
    0x0_3C00 + 4 * n
}
/// Flow Control Receive Threshold High, packet buffer `n` (8.2.3.3.4): a byte count, 32-byte
/// granular (bits 18:5).
pub const fn fcrth(n: u32) -> u32 {
    0x0_3260 + 4 * n
}
/// Security Rx Control (8.2.3.12.5).
pub const SECRXCTRL: u32 = 0x0_8D00;
/// SECRXCTRL: halt the receive data path.
pub const SECRXCTRL_RX_DIS: u32 = 1 << 1;
/// Security Rx Status (8.2.3.12.6).
pub const SECRXSTAT: u32 = 0x0_8D04;
/// SECRXSTAT: the receive data path is empty.
pub const SECRXSTAT_SECRX_RDY: u32 = 1 << 0;

// --- Filters (8.2.3.7) ---------------------------------------------------------------------------

/// Filter Control (8.2.3.7.1).
pub const FCTRL: u32 = 0x0_5080;
/// FCTRL: store bad packets.
pub const FCTRL_SBP: u32 = 1 << 1;
/// FCTRL: multicast promiscuous.
pub const FCTRL_MPE: u32 = 1 << 8;
/// FCTRL: unicast promiscuous.
pub const FCTRL_UPE: u32 = 1 << 9;
/// FCTRL: broadcast accept.
pub const FCTRL_BAM: u32 = 1 << 10;
/// Multicast Table Array, 128 registers (8.2.3.7.7).
pub const fn mta(n: u32) -> u32 {
    0x0_5200 + 4 * n
}
/// Number of MTA registers.
pub const MTA_LEN: u32 = 128;
/// Multicast Control (8.2.3.7.2): MO (bits 1:0) picks the 12 address bits that index the MTA,
/// 00b = bits 47:36; MFE enables the MTA.
pub const MCSTCTRL: u32 = 0x0_5090;
/// MCSTCTRL: multicast filter enable.
pub const MCSTCTRL_MFE: u32 = 1 << 2;
/// Receive Address Low, entry 0 (8.2.3.7.8): MAC bytes 0..4, loaded from the EEPROM.
pub const RAL0: u32 = 0x0_A200;
/// Receive Address High, entry 0 (8.2.3.7.9): MAC bytes 4..6 in bits 15:0.
pub const RAH0: u32 = 0x0_A204;
/// RAH: address valid.
pub const RAH_AV: u32 = 1 << 31;

// --- MAC (8.2.3.22) ------------------------------------------------------------------------------

/// MAC Core Control 0 (8.2.3.22.8).
pub const HLREG0: u32 = 0x0_4240;
/// HLREG0: append the Ethernet CRC on transmit.
pub const HLREG0_TXCRCEN: u32 = 1 << 0;
/// HLREG0: strip the Ethernet CRC on receive.
pub const HLREG0_RXCRCSTRP: u32 = 1 << 1;
/// HLREG0: accept jumbo frames (up to MAXFRS) instead of at most 1518 (1522 tagged) bytes.
pub const HLREG0_JUMBOEN: u32 = 1 << 2;
/// HLREG0: pad short frames to 64 bytes on transmit.
pub const HLREG0_TXPADEN: u32 = 1 << 10;
/// HLREG0: MAC loopback.
pub const HLREG0_LPBK: u32 = 1 << 15;
/// Auto-Negotiation Control (8.2.3.22.19).
pub const AUTOC: u32 = 0x0_42A0;
/// AUTOC: restart auto-negotiation (self-clearing).
pub const AUTOC_AN_RESTART: u32 = 1 << 12;
/// AUTOC: link mode select, bits 15:13.
pub const AUTOC_LMS_MASK: u32 = 0x7 << 13;
/// AUTOC.LMS: 10 GbE serial link (SFI/KR without backplane auto-negotiation).
pub const AUTOC_LMS_10G_SERIAL: u32 = 0x3 << 13;
/// Link Status (8.2.3.22.20).
pub const LINKS: u32 = 0x0_42A4;
/// LINKS: link up.
pub const LINKS_UP: u32 = 1 << 30;
/// LINKS: link speed, bits 29:28 (01 = 100 Mb/s, 10 = 1 Gb/s, 11 = 10 Gb/s).
pub const LINKS_SPEED_MASK: u32 = 0x3 << 28;
/// LINKS speed field value for 10 Gb/s.
pub const LINKS_SPEED_10G: u32 = 0x3 << 28;
/// LINKS speed field value for 1 Gb/s.
pub const LINKS_SPEED_1G: u32 = 0x2 << 28;

// --- Transmit (8.2.3.9) --------------------------------------------------------------------------

/// Transmit Descriptor Base Address Low, queue 0 (8.2.3.9.5).
pub const TDBAL: u32 = 0x0_6000;
/// Transmit Descriptor Base Address High, queue 0 (8.2.3.9.6).
pub const TDBAH: u32 = 0x0_6004;
/// Transmit Descriptor Length in bytes, queue 0 (8.2.3.9.7).
pub const TDLEN: u32 = 0x0_6008;
/// Transmit Descriptor Head, queue 0 (8.2.3.9.8).
pub const TDH: u32 = 0x0_6010;
/// Transmit Descriptor Tail, queue 0 (8.2.3.9.9).
pub const TDT: u32 = 0x0_6018;
/// Transmit Descriptor Control, queue 0 (8.2.3.9.10).
pub const TXDCTL: u32 = 0x0_6028;
/// TXDCTL: prefetch threshold, bits 6:0.
pub const TXDCTL_PTHRESH_SHIFT: u32 = 0;
/// TXDCTL: host threshold, bits 14:8.
pub const TXDCTL_HTHRESH_SHIFT: u32 = 8;
/// TXDCTL: write-back threshold, bits 22:16.
pub const TXDCTL_WTHRESH_SHIFT: u32 = 16;
/// TXDCTL: all three thresholds.
pub const TXDCTL_THRESH_MASK: u32 = 0x7f | (0x7f << 8) | (0x7f << 16);
/// TXDCTL: queue enable; reads back 1 only once the queue is enabled.
pub const TXDCTL_ENABLE: u32 = 1 << 25;
/// DMA Tx Control (8.2.3.9.2).
pub const DMATXCTL: u32 = 0x0_4A80;
/// DMATXCTL: transmit enable.
pub const DMATXCTL_TE: u32 = 1 << 0;
/// DMA Tx TCP Max Allow Size Requests (8.2.3.9.1).
pub const DTXMXSZRQ: u32 = 0x0_8100;
/// DTXMXSZRQ: Max_byte_num_req, bits 11:0.
pub const DTXMXSZRQ_MAX_MASK: u32 = 0xfff;
/// Multiple Transmit Queues Command (8.2.3.9.15).
pub const MTQC: u32 = 0x0_8120;
/// Transmit Packet Buffer Size, packet buffer `n` (8.2.3.9.13).
pub const fn txpbsize(n: u32) -> u32 {
    0x0_CC00 + 4 * n
}
/// DCB Transmit Descriptor Plane Control and Status (8.2.3.10.2).
pub const RTTDCS: u32 = 0x0_4900;
/// RTTDCS: descriptor plane arbiter disable.
pub const RTTDCS_ARBDIS: u32 = 1 << 6;

// --- Statistics (8.2.3.23), all clear-on-read ----------------------------------------------------

/// CRC Error Count.
pub const CRCERRS: u32 = 0x0_4000;
/// Missed Packets Count, packet buffer `n` (0..8): dropped for lack of room.
pub const fn mpc(n: u32) -> u32 {
    0x0_3FA0 + 4 * n
}
/// Good Packets Received Count.
pub const GPRC: u32 = 0x0_4074;
/// Good Packets Transmitted Count.
pub const GPTC: u32 = 0x0_4080;
/// Good Octets Received Count, low then high (read low first).
pub const GORCL: u32 = 0x0_4088;
/// Good Octets Received Count, high.
pub const GORCH: u32 = 0x0_408C;
/// Good Octets Transmitted Count, low.
pub const GOTCL: u32 = 0x0_4090;
/// Good Octets Transmitted Count, high.
pub const GOTCH: u32 = 0x0_4094;
/// Receive Oversize Count (frames longer than the maximum, dropped).
pub const ROC: u32 = 0x0_40AC;

// --- Descriptors (7.1.6, 7.2.3.2.4) --------------------------------------------------------------

/// The bits both families share live with the shared ring code.
pub use crate::adv_ring::{
    RXD_STAT_DD, RXD_STAT_EOP, TXD_CMD_DEXT, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS, TXD_DTYP_DATA,
    TXD_PAYLEN_SHIFT, TXD_STAT_DD,
};
/// Advanced receive write-back, extended error: RX data error (CRC, symbol, ...).
pub const RXD_ERR_RXE: u32 = 1 << 29;
