//! 82576 / i350 / i210 registers: offsets and bits the driver uses (82576 datasheet chapter 8;
//! the i350 and i210 keep these offsets and bits). Access goes through the same
//! [`Registers`](crate::ixgbe::Registers) trait as the 82599's. Per-queue registers are
//! functions of the queue number: queue `n`'s block sits `0x40 * n` above queue 0's (8.10, 8.12;
//! QEMU's `igb_regs.h` has the same `E1000_RDBAL(_n)` layout).

// --- General (8.2) ---------------------------------------------------------------------------

/// Device Control.
pub const CTRL: u32 = 0x0_0000;
/// CTRL: GIO master disable (stop issuing PCIe requests).
pub const CTRL_MASTER_DISABLE: u32 = 1 << 2;
/// CTRL: set link up (copper: the MAC follows the PHY's auto-negotiation).
pub const CTRL_SLU: u32 = 1 << 6;
/// CTRL: force speed (clear: speed from the PHY).
pub const CTRL_FRCSPD: u32 = 1 << 11;
/// CTRL: force duplex (clear: duplex from the PHY).
pub const CTRL_FRCDPX: u32 = 1 << 12;
/// CTRL: device reset, self-clearing.
pub const CTRL_RST: u32 = 1 << 26;
/// Device Status.
pub const STATUS: u32 = 0x0_0008;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS: speed (00 10 Mb/s, 01 100 Mb/s, 1x 1000 Mb/s).
pub const STATUS_SPEED_MASK: u32 = 0x3 << 6;
/// STATUS: 100 Mb/s.
pub const STATUS_SPEED_100: u32 = 0x1 << 6;
/// STATUS: 10 Mb/s.
pub const STATUS_SPEED_10: u32 = 0;
/// STATUS: GIO master enable (clears once master disable has taken effect).
pub const STATUS_MASTER_ENABLE: u32 = 1 << 19;
/// Extended Device Control.
pub const CTRL_EXT: u32 = 0x0_0018;
/// CTRL_EXT: driver loaded (manageability firmware leaves the port to the driver).
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
/// EEPROM/Flash Control.
pub const EECD: u32 = 0x0_0010;
/// EECD: EEPROM auto-read done.
pub const EECD_AUTO_RD: u32 = 1 << 9;

/// MDI Control: access to the PHY's registers.
pub const MDIC: u32 = 0x0_0020;
/// MDIC: register address field.
pub const MDIC_REG_SHIFT: u32 = 16;
/// MDIC: PHY address field.
pub const MDIC_PHY_SHIFT: u32 = 21;
/// MDIC: the internal PHY's address.
pub const MDIC_PHY_INTERNAL: u32 = 1;
/// MDIC: opcode write.
pub const MDIC_OP_WRITE: u32 = 0x1 << 26;
/// MDIC: opcode read.
pub const MDIC_OP_READ: u32 = 0x2 << 26;
/// MDIC: ready (the access completed).
pub const MDIC_READY: u32 = 1 << 28;
/// MDIC: error (the PHY did not answer).
pub const MDIC_ERROR: u32 = 1 << 30;
/// PHY control register (IEEE 802.3 clause 22 register 0).
pub const PHY_BMCR: u32 = 0;
/// BMCR: restart auto-negotiation (self-clearing).
pub const BMCR_ANRESTART: u16 = 1 << 9;
/// BMCR: auto-negotiation enable.
pub const BMCR_AUTOEN: u16 = 1 << 12;

// --- Interrupts (8.8) ------------------------------------------------------------------------

/// Interrupt Mask Clear (legacy and MSI causes).
pub const IMC: u32 = 0x0_00D8;
/// Extended Interrupt Mask Clear (MSI-X vectors / queue causes).
pub const EIMC: u32 = 0x0_1528;
/// Extended Interrupt Auto Mask Enable: cleared so nothing re-arms by itself.
pub const EIAM: u32 = 0x0_1530;

// --- Receive (8.10) --------------------------------------------------------------------------

/// Receive Control.
pub const RCTL: u32 = 0x0_0100;
/// RCTL: receiver enable.
pub const RCTL_EN: u32 = 1 << 1;
/// RCTL: store bad packets.
pub const RCTL_SBP: u32 = 1 << 2;
/// RCTL: unicast promiscuous.
pub const RCTL_UPE: u32 = 1 << 3;
/// RCTL: multicast promiscuous.
pub const RCTL_MPE: u32 = 1 << 4;
/// RCTL: long packet enable (jumbo).
pub const RCTL_LPE: u32 = 1 << 5;
/// RCTL: loopback mode.
pub const RCTL_LBM_MASK: u32 = 0x3 << 6;
/// RCTL: broadcast accept mode.
pub const RCTL_BAM: u32 = 1 << 15;
/// RCTL: strip the Ethernet CRC.
pub const RCTL_SECRC: u32 = 1 << 26;
/// Multicast Table Array, 128 registers.
pub const fn mta(n: u32) -> u32 {
    0x0_5200 + 4 * n
}
/// MTA registers.
pub const MTA_LEN: u32 = 128;
/// Receive Address Low \[0\].
pub const RAL0: u32 = 0x0_5400;
/// Receive Address High \[0\].
pub const RAH0: u32 = 0x0_5404;
/// RAH: address valid.
pub const RAH_AV: u32 = 1 << 31;
/// Receive queue `n`'s descriptor base low.
pub const fn rdbal(n: u32) -> u32 {
    0x0_C000 + 0x40 * n
}
/// Receive queue `n`'s descriptor base high.
pub const fn rdbah(n: u32) -> u32 {
    0x0_C004 + 0x40 * n
}
/// Receive queue `n`'s ring length in bytes.
pub const fn rdlen(n: u32) -> u32 {
    0x0_C008 + 0x40 * n
}
/// Receive queue `n`'s split and replication receive control.
pub const fn srrctl(n: u32) -> u32 {
    0x0_C00C + 0x40 * n
}
/// SRRCTL: packet buffer size in KiB.
pub const SRRCTL_BSIZEPACKET_MASK: u32 = 0x7f;
/// SRRCTL: header buffer size in 64-byte units.
pub const SRRCTL_BSIZEHEADER_MASK: u32 = 0xf << 8;
/// SRRCTL: descriptor type.
pub const SRRCTL_DESCTYPE_MASK: u32 = 0x7 << 25;
/// SRRCTL: advanced descriptors, one buffer.
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x1 << 25;
/// SRRCTL: drop when no descriptor is free (instead of stalling the other queues).
pub const SRRCTL_DROP_EN: u32 = 1 << 31;
/// Receive queue `n`'s head.
pub const fn rdh(n: u32) -> u32 {
    0x0_C010 + 0x40 * n
}
/// Receive queue `n`'s tail.
pub const fn rdt(n: u32) -> u32 {
    0x0_C018 + 0x40 * n
}
/// Receive queue `n`'s descriptor control.
pub const fn rxdctl(n: u32) -> u32 {
    0x0_C028 + 0x40 * n
}
/// RXDCTL: queue enable.
pub const RXDCTL_ENABLE: u32 = 1 << 25;

// --- Multiple receive queues (7.1.1.7, 8.10) --------------------------------------------

/// The most queue pairs the driver uses on any part: the 82576 and i350 run RSS over 8 (the
/// i210 has 4, the i211 2; see [`super::queues_of`]).
pub const MAX_QUEUES: u32 = 8;
/// Receive Checksum Control.
pub const RXCSUM: u32 = 0x0_5000;
/// RXCSUM: packet checksum disable; the descriptor's checksum field carries the RSS hash
/// instead. QEMU's model applies RSS only with it set (`igb_rss_enabled`).
pub const RXCSUM_PCSD: u32 = 1 << 13;
/// Multiple Receive Queues Command.
pub const MRQC: u32 = 0x0_5818;
/// MRQC.MRQE (bits 2:0): RSS only, no VMDq pools.
pub const MRQC_MRQE_RSS: u32 = 0x2;
/// MRQC: hash TCP over IPv4 (addresses and ports).
pub const MRQC_RSS_IPV4_TCP: u32 = 1 << 16;
/// MRQC: hash IPv4 addresses.
pub const MRQC_RSS_IPV4: u32 = 1 << 17;
/// MRQC: hash TCP over IPv6, extension-header aware (the bit QEMU's model reads for IPv6 TCP).
pub const MRQC_RSS_IPV6_TCP_EX: u32 = 1 << 18;
/// MRQC: hash IPv6 addresses.
pub const MRQC_RSS_IPV6: u32 = 1 << 20;
/// MRQC: hash TCP over IPv6 (the datasheet's bit; QEMU's model ignores it).
pub const MRQC_RSS_IPV6_TCP: u32 = 1 << 21;
/// MRQC: hash UDP over IPv4.
pub const MRQC_RSS_IPV4_UDP: u32 = 1 << 22;
/// MRQC: hash UDP over IPv6.
pub const MRQC_RSS_IPV6_UDP: u32 = 1 << 23;
/// Redirection table register `n` of [`RETA_LEN`]: entries `4n..4n + 4`, one byte each, entry
/// `4n` in the low byte; an entry's low bits are the queue.
pub const fn reta(n: u32) -> u32 {
    0x0_5C00 + 4 * n
}
/// RETA registers (128 one-byte entries).
pub const RETA_LEN: u32 = 32;
/// RSS random key register `n` of [`RSSRK_LEN`]: key bytes `4n..4n + 4`, byte `4n` in the low
/// byte (QEMU hashes with the registers' memory as the key's byte string).
pub const fn rssrk(n: u32) -> u32 {
    0x0_5C80 + 4 * n
}
/// RSSRK registers (a 40-byte key).
pub const RSSRK_LEN: u32 = 10;

// --- Transmit (8.12) -------------------------------------------------------------------------

/// Transmit Control.
pub const TCTL: u32 = 0x0_0400;
/// TCTL: transmitter enable.
pub const TCTL_EN: u32 = 1 << 1;
/// TCTL: pad short packets.
pub const TCTL_PSP: u32 = 1 << 3;
/// TCTL: collision threshold field.
pub const TCTL_CT_MASK: u32 = 0xff << 4;
/// TCTL: collision threshold, the datasheet's recommended 0xF.
pub const TCTL_CT_DEFAULT: u32 = 0xf << 4;
/// TCTL: collision distance field.
pub const TCTL_COLD_MASK: u32 = 0x3ff << 12;
/// TCTL: collision distance for full duplex (0x3F).
pub const TCTL_COLD_FULL_DUPLEX: u32 = 0x3f << 12;
/// Transmit queue `n`'s descriptor base low.
pub const fn tdbal(n: u32) -> u32 {
    0x0_E000 + 0x40 * n
}
/// Transmit queue `n`'s descriptor base high.
pub const fn tdbah(n: u32) -> u32 {
    0x0_E004 + 0x40 * n
}
/// Transmit queue `n`'s ring length in bytes.
pub const fn tdlen(n: u32) -> u32 {
    0x0_E008 + 0x40 * n
}
/// Transmit queue `n`'s head.
pub const fn tdh(n: u32) -> u32 {
    0x0_E010 + 0x40 * n
}
/// Transmit queue `n`'s tail.
pub const fn tdt(n: u32) -> u32 {
    0x0_E018 + 0x40 * n
}
/// Transmit queue `n`'s descriptor control.
pub const fn txdctl(n: u32) -> u32 {
    0x0_E028 + 0x40 * n
}
/// TXDCTL: prefetch threshold (bits 4:0).
pub const TXDCTL_PTHRESH_SHIFT: u32 = 0;
/// TXDCTL: host threshold (bits 12:8).
pub const TXDCTL_HTHRESH_SHIFT: u32 = 8;
/// TXDCTL: write-back threshold (bits 20:16).
pub const TXDCTL_WTHRESH_SHIFT: u32 = 16;
/// TXDCTL: all three thresholds.
pub const TXDCTL_THRESH_MASK: u32 = 0x1f | (0x1f << 8) | (0x1f << 16);
/// TXDCTL: queue enable.
pub const TXDCTL_ENABLE: u32 = 1 << 25;

// --- Statistics (8.19), clear on read ------------------------------------------------------

/// CRC Error Count.
pub const CRCERRS: u32 = 0x0_4000;
/// Missed Packets Count (no room in the packet buffer).
pub const MPC: u32 = 0x0_4010;
/// Good Packets Received Count.
pub const GPRC: u32 = 0x0_4074;
/// Good Packets Transmitted Count.
pub const GPTC: u32 = 0x0_4080;
/// Good Octets Received Count, low.
pub const GORCL: u32 = 0x0_4088;
/// Good Octets Received Count, high.
pub const GORCH: u32 = 0x0_408C;
/// Good Octets Transmitted Count, low.
pub const GOTCL: u32 = 0x0_4090;
/// Good Octets Transmitted Count, high.
pub const GOTCH: u32 = 0x0_4094;
/// Receive No Buffers Count (no free descriptor).
pub const RNBC: u32 = 0x0_40A0;
/// Receive Oversize Count.
pub const ROC: u32 = 0x0_40AC;

/// The highest register offset the driver touches, plus 4: BAR0 must be at least this long.
pub const MIN_BAR_LEN: usize = (txdctl(MAX_QUEUES - 1) + 4) as usize;

// --- Descriptors (7.1, 7.2) ----------------------------------------------------------

/// Advanced receive write-back, extended error: RX data error (CRC, symbol, ...). Bit 31 here
/// (the 82599 has it at bit 29, which on the 82576 is the L4 checksum error).
pub const RXD_ERR_RXE: u32 = 1 << 31;
