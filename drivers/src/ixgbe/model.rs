//! A host-side model of the parts of the 82599 the driver relies on, written from the datasheet
//! (sections cited inline), for testing the real driver code without hardware.
//!
//! What it models:
//! - CTRL.RST starts a reset that completes after a configurable number of CTRL reads (or never);
//!   any other access while in reset is a violation (8.2.3.1.1: no access for ~1 ms). Reset
//!   restores power-on defaults, reloads RAL/RAH\[0\] from the "EEPROM", clears counters.
//! - STATUS.PCIe_Master_Enable follows CTRL.PCIe_Master_Disable (5.2.5.3.2).
//! - EEC.ARD and RDRXCTL.DMAIDONE set a few reads after reset (4.6.3).
//! - AUTOC.Restart_AN (self-clearing) brings LINKS.Link_Up after some LINKS reads if a cable is
//!   plugged in; plugging one in later brings the link up by itself (4.6.4, 8.2.3.22.19-20).
//! - RXDCTL/TXDCTL.ENABLE read back as 1 only a few reads after being set; TXDCTL only while
//!   DMATXCTL.TE is set (4.6.8). Bumping a tail before its ENABLE read back 1 is a violation
//!   (4.6.7, 4.6.8). RXCTRL.RXEN set without SECRXCTRL.RX_DIS is a violation (4.6.7); so is MTQC
//!   written without RTTDCS.ARBDIS (4.6.8).
//! - Rings (7.1.9, 7.2.3): the device owns descriptors from head to tail - 1, never passes the
//!   tail, and wraps the head at RDLEN/16 (TDLEN/16).
//! - Receive: L2 filter (RAL/RAH\[0\], FCTRL.BAM/UPE/MPE, MCSTCTRL.MFE/MO with the MTA), 1518-byte limit without JUMBOEN
//!   (ROC), CRC stripped only if HLREG0.RXCRCSTRP (and RDRXCTL.CRCSTRIP agrees), frames split
//!   over SRRCTL.BSIZEPACKET-sized buffers, no free descriptor -> MPC, advanced one-buffer
//!   write-back (DD, EOP, length) over the read-format descriptor (7.1.6.2).
//! - Transmit: advanced data descriptors (7.2.3.2.4): address + DTALEN, EOP ends a frame
//!   (PAYLEN must match), DD written back only for RS descriptors, TDH advances; the frame goes
//!   into a list (padded to 60 bytes with TXPADEN).
//! - Statistics registers are clear-on-read (8.2.3.23).
//!
//! DMA: "physical" addresses are host addresses; the model only touches memory inside regions
//! the test registered (the pool, the rings), anything else is a violation.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::regs::*;

thread_local! {
    /// DMA regions (address, length) this thread's tests handed out: pool and rings.
    pub(crate) static DMA_REGIONS: RefCell<Vec<(u64, usize)>> = const { RefCell::new(Vec::new()) };
}

/// One register access, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read(u32, u32),
    Write(u32, u32),
}

/// What happened to a frame offered to the wire side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RxOutcome {
    /// Written into `n` descriptors.
    Written(usize),
    /// Not for us (L2 filter).
    Filtered,
    /// No link or receive disabled: nothing arrives.
    Disabled,
    /// Too long without jumbo frames.
    Oversize,
    /// No free descriptors (or the queue is disabled): counted in MPC.
    Missed,
}

/// Knobs of the model.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Behaviour {
    /// CTRL reads until a reset completes; `None`: never.
    pub reset_reads: Option<u32>,
    /// EEC reads after reset until ARD; `None`: never.
    pub eeprom_reads: Option<u32>,
    /// RDRXCTL reads after reset until DMAIDONE.
    pub dma_init_reads: u32,
    /// LINKS reads after AN restart (or plugging in) until link up.
    pub link_reads: u32,
    /// A cable (and link partner) is present.
    pub cable: bool,
    /// RXDCTL/TXDCTL reads after ENABLE until it reads back 1; `None`: never.
    pub queue_enable_reads: Option<u32>,
    /// The MAC the EEPROM holds.
    pub mac: [u8; 6],
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            reset_reads: Some(3),
            eeprom_reads: Some(2),
            dma_init_reads: 2,
            link_reads: 5,
            cable: true,
            queue_enable_reads: Some(2),
            mac: [0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c],
        }
    }
}

/// Countdown that fires after `n` ticks; `None` never fires.
#[derive(Clone, Copy, Debug, Default)]
enum Countdown {
    #[default]
    Idle,
    Running(Option<u32>),
    Done,
}

impl Countdown {
    fn start(n: Option<u32>) -> Self {
        Countdown::Running(n)
    }
    /// Tick once; whether it is done.
    fn tick(&mut self) -> bool {
        match self {
            Countdown::Idle => false,
            Countdown::Done => true,
            Countdown::Running(None) => false,
            Countdown::Running(Some(0)) => {
                *self = Countdown::Done;
                true
            }
            Countdown::Running(Some(n)) => {
                *n -= 1;
                false
            }
        }
    }
    fn done(&self) -> bool {
        matches!(self, Countdown::Done)
    }
}

#[derive(Default)]
struct Queue {
    enable: Countdown,
    /// The driver has read ENABLE as 1 (so it may bump the tail).
    seen_enabled: bool,
    head: u32,
    tail: u32,
}

#[derive(Default)]
struct State {
    b: Behaviour,
    regs: HashMap<u32, u32>,
    log: Vec<Access>,
    violations: Vec<String>,
    reset: Countdown,
    resets: u32,
    eeprom: Countdown,
    dma_init: Countdown,
    link: Countdown,
    link_up: bool,
    rx: Queue,
    tx: Queue,
    secrx: Countdown,
    counters: HashMap<u32, u32>,
    sent: Vec<Vec<u8>>,
    tx_partial: Vec<u8>,
}

/// The model: register access through [`super::Registers`] plus a wire side for tests.
pub(crate) struct Model {
    st: RefCell<State>,
    /// Reads of CTRL while a reset was pending (for the timeout test).
    pub ctrl_reads_in_reset: Cell<u32>,
}

const COUNTERS: [u32; 16] = [
    CRCERRS, GPRC, GPTC, GORCL, GORCH, GOTCL, GOTCH, ROC, 0x3FA0, 0x3FA4, 0x3FA8, 0x3FAC, 0x3FB0,
    0x3FB4, 0x3FB8, 0x3FBC,
];

impl Model {
    pub(crate) fn new(b: Behaviour) -> Self {
        let m = Model {
            st: RefCell::new(State {
                b,
                ..State::default()
            }),
            ctrl_reads_in_reset: Cell::new(0),
        };
        // Power-on state equals the state after a reset, with some leftovers a previous driver
        // (or firmware) could have left: interrupts enabled, RX running.
        {
            let mut s = m.st.borrow_mut();
            s.power_on();
            s.regs.insert(EIMS, 0x7fff_ffff);
            s.counters.insert(GPRC, 1234);
        }
        m
    }

    pub(crate) fn log(&self) -> Vec<Access> {
        self.st.borrow().log.clone()
    }

    pub(crate) fn violations(&self) -> Vec<String> {
        self.st.borrow().violations.clone()
    }

    pub(crate) fn resets(&self) -> u32 {
        self.st.borrow().resets
    }

    /// The register's current value, without side effects or logging.
    pub(crate) fn peek(&self, reg: u32) -> u32 {
        self.st.borrow().regs.get(&reg).copied().unwrap_or(0)
    }

    pub(crate) fn rx_head_tail(&self) -> (u32, u32) {
        let s = self.st.borrow();
        (s.rx.head, s.rx.tail)
    }

    pub(crate) fn tx_head_tail(&self) -> (u32, u32) {
        let s = self.st.borrow();
        (s.tx.head, s.tx.tail)
    }

    /// Plug in (or pull) the cable. A plugged cable brings the link up after a few LINKS reads.
    pub(crate) fn set_cable(&self, cable: bool) {
        let mut s = self.st.borrow_mut();
        s.b.cable = cable;
        if cable {
            let n = s.b.link_reads;
            s.link = Countdown::start(Some(n));
        } else {
            s.link = Countdown::Idle;
            s.link_up = false;
        }
    }

    /// Frames transmitted so far (taken).
    pub(crate) fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.st.borrow_mut().sent)
    }

    /// A frame (without FCS) arrives from the wire.
    pub(crate) fn deliver(&self, frame: &[u8]) -> RxOutcome {
        self.st.borrow_mut().receive(frame, None)
    }

    /// As `deliver`, but the device splits the frame into `chunk`-byte buffers regardless of
    /// SRRCTL (as it would with a smaller BSIZEPACKET): to exercise multi-descriptor frames.
    pub(crate) fn deliver_split(&self, frame: &[u8], chunk: usize) -> RxOutcome {
        self.st.borrow_mut().receive(frame, Some(chunk))
    }

    /// Process up to `max` frames from the transmit ring. Returns how many were sent.
    pub(crate) fn run_tx(&self, max: usize) -> usize {
        self.st.borrow_mut().transmit(max)
    }
}

impl super::Registers for Model {
    fn read(&self, reg: u32) -> u32 {
        let mut s = self.st.borrow_mut();
        if reg == CTRL && matches!(s.reset, Countdown::Running(_)) {
            self.ctrl_reads_in_reset
                .set(self.ctrl_reads_in_reset.get() + 1);
        }
        let v = s.read(reg);
        s.log.push(Access::Read(reg, v));
        v
    }

    fn write(&self, reg: u32, value: u32) {
        let mut s = self.st.borrow_mut();
        s.log.push(Access::Write(reg, value));
        s.write(reg, value);
    }
}

impl State {
    fn get(&self, reg: u32) -> u32 {
        self.regs.get(&reg).copied().unwrap_or(0)
    }

    fn set(&mut self, reg: u32, v: u32) {
        self.regs.insert(reg, v);
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// Register defaults after power-on or a reset (chapter 8 "init val"s that matter here).
    fn power_on(&mut self) {
        self.regs.clear();
        self.counters.clear();
        let mac = self.b.mac;
        self.set(RAL0, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
        self.set(RAH0, u32::from_le_bytes([mac[4], mac[5], 0, 0]) | RAH_AV);
        self.set(HLREG0, HLREG0_TXCRCEN | HLREG0_RXCRCSTRP | HLREG0_TXPADEN);
        self.set(RDRXCTL, 0x8 << 17); // RSCFRSTSIZE default; CRCSTRIP 0
        self.set(AUTOC, 0x4 << 13); // LMS as an EEPROM might set it (KX4/KX/KR)
        self.set(SRRCTL, 2 | (4 << 8)); // 2 KiB, legacy descriptors
        self.set(DCA_RXCTRL, DCA_RXCTRL_BIT12);
        self.set(rxpbsize(0), 512 << 10);
        self.set(txpbsize(0), 0xa0 << 10);
        self.set(TXDCTL, 0);
        self.set(RXDCTL, 0);
        self.rx = Queue::default();
        self.tx = Queue::default();
        self.eeprom = Countdown::start(self.b.eeprom_reads);
        self.dma_init = Countdown::start(Some(self.b.dma_init_reads));
        self.link_up = false;
        self.link = Countdown::Idle;
        self.secrx = Countdown::Idle;
        self.tx_partial.clear();
    }

    fn in_reset(&self) -> bool {
        matches!(self.reset, Countdown::Running(_))
    }

    fn read(&mut self, reg: u32) -> u32 {
        if self.in_reset() {
            if reg != CTRL {
                self.violation(format!("read of {reg:#x} during reset"));
                return 0;
            }
            if self.reset.tick() {
                self.power_on();
                self.reset = Countdown::Idle;
                return self.get(CTRL);
            }
            return self.get(CTRL) | CTRL_RST;
        }
        match reg {
            STATUS => {
                if self.get(CTRL) & CTRL_MASTER_DISABLE == 0 {
                    STATUS_MASTER_ENABLE
                } else {
                    0
                }
            }
            EEC => EEC_PRES | if self.eeprom.tick() { EEC_ARD } else { 0 },
            RDRXCTL => {
                let done = self.dma_init.tick();
                (self.get(RDRXCTL) & !RDRXCTL_DMAIDONE) | if done { RDRXCTL_DMAIDONE } else { 0 }
            }
            LINKS => {
                if self.link.tick() && self.b.cable {
                    self.link_up = true;
                }
                if self.link_up {
                    LINKS_UP | LINKS_SPEED_10G
                } else {
                    0
                }
            }
            RXDCTL => {
                let on = self.rx.enable.tick();
                self.rx.seen_enabled |= on;
                (self.get(RXDCTL) & !RXDCTL_ENABLE) | if on { RXDCTL_ENABLE } else { 0 }
            }
            TXDCTL => {
                let on = self.tx.enable.tick();
                self.tx.seen_enabled |= on;
                (self.get(TXDCTL) & !TXDCTL_ENABLE) | if on { TXDCTL_ENABLE } else { 0 }
            }
            SECRXSTAT => u32::from(self.secrx.tick()) * SECRXSTAT_SECRX_RDY,
            RDH => self.rx.head,
            RDT => self.rx.tail,
            TDH => self.tx.head,
            TDT => self.tx.tail,
            _ if COUNTERS.contains(&reg) => self.counters.remove(&reg).unwrap_or(0),
            _ => self.get(reg),
        }
    }

    fn write(&mut self, reg: u32, v: u32) {
        if self.in_reset() {
            self.violation(format!("write of {v:#x} to {reg:#x} during reset"));
            return;
        }
        match reg {
            CTRL => {
                if v & CTRL_RST != 0 {
                    self.resets += 1;
                    self.reset = Countdown::start(self.b.reset_reads);
                }
                self.set(CTRL, v & !CTRL_RST);
            }
            EIMC => {
                let eims = self.get(EIMS) & !(v & 0x7fff_ffff);
                self.set(EIMS, eims);
            }
            EIMS => {
                let eims = self.get(EIMS) | v;
                self.set(EIMS, eims);
            }
            AUTOC => {
                if v & AUTOC_AN_RESTART != 0 {
                    self.link_up = false;
                    self.link = if self.b.cable {
                        Countdown::start(Some(self.b.link_reads))
                    } else {
                        Countdown::Idle
                    };
                }
                self.set(AUTOC, v & !AUTOC_AN_RESTART);
            }
            RXDCTL => {
                if v & RXDCTL_ENABLE != 0 {
                    if matches!(self.rx.enable, Countdown::Idle) {
                        self.rx.enable = Countdown::start(self.b.queue_enable_reads);
                    }
                } else {
                    self.rx.enable = Countdown::Idle;
                    self.rx.seen_enabled = false;
                }
                self.set(RXDCTL, v & !RXDCTL_ENABLE);
            }
            TXDCTL => {
                if v & TXDCTL_ENABLE != 0 {
                    if self.get(DMATXCTL) & DMATXCTL_TE == 0 {
                        self.violation("TXDCTL.ENABLE set while DMATXCTL.TE is clear".into());
                    } else if matches!(self.tx.enable, Countdown::Idle) {
                        self.tx.enable = Countdown::start(self.b.queue_enable_reads);
                    }
                } else {
                    self.tx.enable = Countdown::Idle;
                    self.tx.seen_enabled = false;
                }
                self.set(TXDCTL, v & !TXDCTL_ENABLE);
            }
            RDH | TDH => {
                let q = if reg == RDH {
                    &mut self.rx
                } else {
                    &mut self.tx
                };
                if q.seen_enabled {
                    self.violation(format!("head {reg:#x} written while the queue runs"));
                } else {
                    q.head = v;
                }
            }
            RDT | TDT => {
                let (len_reg, name) = if reg == RDT {
                    (RDLEN, "RDT")
                } else {
                    (TDLEN, "TDT")
                };
                let entries = self.get(len_reg) / 16;
                let q = if reg == RDT { &self.rx } else { &self.tx };
                let running = q.seen_enabled;
                if !running && v != 0 {
                    self.violation(format!("{name} bumped before the queue's ENABLE read 1"));
                }
                if entries != 0 && v >= entries {
                    self.violation(format!("{name} = {v} beyond the ring ({entries})"));
                }
                if reg == RDT {
                    self.rx.tail = v;
                } else {
                    self.tx.tail = v;
                }
            }
            RXCTRL => {
                let was = self.get(RXCTRL) & RXCTRL_RXEN != 0;
                if !was && v & RXCTRL_RXEN != 0 && self.get(SECRXCTRL) & SECRXCTRL_RX_DIS == 0 {
                    self.violation("RXCTRL.RXEN set without SECRXCTRL.RX_DIS (4.6.7)".into());
                }
                self.set(RXCTRL, v);
            }
            SECRXCTRL => {
                self.secrx = if v & SECRXCTRL_RX_DIS != 0 {
                    Countdown::start(Some(1))
                } else {
                    Countdown::Idle
                };
                self.set(SECRXCTRL, v);
            }
            MTQC => {
                if self.get(RTTDCS) & RTTDCS_ARBDIS == 0 {
                    self.violation("MTQC written without RTTDCS.ARBDIS (4.6.8)".into());
                }
                self.set(MTQC, v);
            }
            RDRXCTL => {
                let keep = self.get(RDRXCTL) & RDRXCTL_DMAIDONE;
                self.set(RDRXCTL, (v & !RDRXCTL_DMAIDONE) | keep);
            }
            _ => self.set(reg, v),
        }
    }

    fn count(&mut self, reg: u32, by: u32) {
        *self.counters.entry(reg).or_insert(0) += by;
    }

    fn dma_ok(&mut self, addr: u64, len: usize) -> bool {
        let ok = DMA_REGIONS.with(|r| {
            r.borrow()
                .iter()
                .any(|&(base, n)| addr >= base && addr + len as u64 <= base + n as u64)
        });
        if !ok {
            self.violation(format!("DMA to {addr:#x}+{len} outside any region"));
        }
        ok
    }

    fn read_desc(&mut self, base_lo: u32, base_hi: u32, index: u32) -> Option<(u64, u64)> {
        let addr = (u64::from(self.get(base_hi)) << 32 | u64::from(self.get(base_lo)))
            + 16 * u64::from(index);
        if !self.dma_ok(addr, 16) {
            return None;
        }
        // Safety: the 16 bytes lie inside a registered live DMA region (checked above), and
        // descriptor rings are 16-aligned.
        unsafe {
            let p = addr as *const u64;
            Some((p.read_volatile(), p.add(1).read_volatile()))
        }
    }

    fn write_desc(&mut self, base_lo: u32, base_hi: u32, index: u32, lo: u64, hi: u64) {
        let addr = (u64::from(self.get(base_hi)) << 32 | u64::from(self.get(base_lo)))
            + 16 * u64::from(index);
        if self.dma_ok(addr, 16) {
            // Safety: as in `read_desc`.
            unsafe {
                let p = addr as *mut u64;
                p.write_volatile(lo);
                p.add(1).write_volatile(hi);
            }
        }
    }

    /// 8.2.3.7.7: with MCSTCTRL.MFE, a multicast frame passes if the MTA bit its address
    /// selects is set; MO picks which 12 of the 48 address bits (counted from the first octet's
    /// least significant bit) index the table: 47:36, 46:35, 45:34 or 43:32.
    fn mta_hit(&self, dst: &[u8]) -> bool {
        let mcst = self.get(MCSTCTRL);
        if mcst & MCSTCTRL_MFE == 0 {
            return false;
        }
        let mut octets = [0u8; 8];
        octets[..6].copy_from_slice(&dst[..6]);
        let bits = u64::from_le_bytes(octets);
        let low = [36, 35, 34, 32][(mcst & 3) as usize];
        let index = ((bits >> low) & 0xfff) as u32;
        self.get(mta(index / 32)) & (1 << (index % 32)) != 0
    }

    fn receive(&mut self, frame: &[u8], split: Option<usize>) -> RxOutcome {
        if !self.link_up || self.get(RXCTRL) & RXCTRL_RXEN == 0 {
            return RxOutcome::Disabled;
        }
        // 7.1.1.1 L2 filtering.
        let fctrl = self.get(FCTRL);
        let dst = &frame[..6];
        let rah = self.get(RAH0);
        let ours = [self.get(RAL0).to_le_bytes(), rah.to_le_bytes()].concat();
        let accept = if dst == [0xff; 6] {
            fctrl & (FCTRL_BAM | FCTRL_MPE) != 0
        } else if dst[0] & 1 != 0 {
            fctrl & FCTRL_MPE != 0 || self.mta_hit(dst)
        } else {
            (rah & RAH_AV != 0 && dst == &ours[..6]) || fctrl & FCTRL_UPE != 0
        };
        if !accept {
            return RxOutcome::Filtered;
        }
        let hl = self.get(HLREG0);
        if frame.len() + 4 > 1518 && hl & HLREG0_JUMBOEN == 0 {
            self.count(ROC, 1);
            return RxOutcome::Oversize;
        }
        let strip = hl & HLREG0_RXCRCSTRP != 0;
        if strip != (self.get(RDRXCTL) & RDRXCTL_CRCSTRIP != 0) {
            self.violation("HLREG0.RXCRCSTRP and RDRXCTL.CRCSTRIP differ (8.2.3.8.8)".into());
        }
        let mut data = frame.to_vec();
        if !strip {
            data.extend_from_slice(&[0; 4]); // the FCS stays in memory
        }
        let srrctl = self.get(SRRCTL);
        if srrctl & SRRCTL_DESCTYPE_MASK != SRRCTL_DESCTYPE_ADV_ONEBUF {
            self.violation("receive with a descriptor type other than advanced one-buffer".into());
        }
        let bsize = split.unwrap_or(((srrctl & SRRCTL_BSIZEPACKET_MASK) as usize) * 1024);
        let entries = self.get(RDLEN) / 16;
        if !self.rx.enable.done() || entries == 0 || bsize == 0 {
            self.count(0x3FA0, 1);
            return RxOutcome::Missed;
        }
        let needed = data.len().div_ceil(bsize) as u32;
        // The device owns head..tail-1.
        let available = (self.rx.tail + entries - self.rx.head) % entries;
        if needed > available {
            if srrctl & SRRCTL_DROP_EN == 0 {
                self.violation(
                    "ring full without SRRCTL.DROP_EN: the packet buffer would fill".into(),
                );
            }
            self.count(0x3FA0, 1);
            return RxOutcome::Missed;
        }
        let chunks: Vec<&[u8]> = data.chunks(bsize).collect();
        for (k, chunk) in chunks.iter().enumerate() {
            let head = self.rx.head;
            let Some((pkt_addr, _hdr)) = self.read_desc(RDBAL, RDBAH, head) else {
                return RxOutcome::Missed;
            };
            if self.dma_ok(pkt_addr, chunk.len()) {
                // Safety: the destination lies inside a registered DMA region (checked), which
                // the driver gave the device through this descriptor.
                unsafe {
                    std::ptr::copy_nonoverlapping(chunk.as_ptr(), pkt_addr as *mut u8, chunk.len())
                };
            }
            let eop = k + 1 == chunks.len();
            let status = RXD_STAT_DD | if eop { RXD_STAT_EOP } else { 0 };
            // 7.1.6.2 write-back: RSS/packet type in the low quadword (0 here), then
            // status/error, length, VLAN.
            let hi = u64::from(status) | (chunk.len() as u64) << 32;
            self.write_desc(RDBAL, RDBAH, head, 0, hi);
            self.rx.head = (head + 1) % entries;
        }
        self.count(GPRC, 1);
        self.count(GORCL, (frame.len() + 4) as u32);
        RxOutcome::Written(chunks.len())
    }

    fn transmit(&mut self, max: usize) -> usize {
        if !self.link_up || self.get(DMATXCTL) & DMATXCTL_TE == 0 || !self.tx.enable.done() {
            return 0;
        }
        let entries = self.get(TDLEN) / 16;
        let mut sent = 0;
        while self.tx.head != self.tx.tail && sent < max && entries != 0 {
            let head = self.tx.head;
            let Some((addr, hi)) = self.read_desc(TDBAL, TDBAH, head) else {
                return sent;
            };
            let cmd = hi as u32;
            let olinfo = (hi >> 32) as u32;
            if cmd & TXD_CMD_DEXT == 0 || cmd & (0xf << 20) != TXD_DTYP_DATA {
                self.violation(format!(
                    "TX descriptor {head} is not an advanced data descriptor"
                ));
            }
            let len = (cmd & 0xffff) as usize;
            if self.dma_ok(addr, len) {
                // Safety: the source lies inside a registered DMA region (checked).
                let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
                self.tx_partial.extend_from_slice(bytes);
            }
            if cmd & TXD_CMD_EOP != 0 {
                let mut frame = std::mem::take(&mut self.tx_partial);
                let paylen = (olinfo >> TXD_PAYLEN_SHIFT) as usize;
                if paylen != frame.len() {
                    self.violation(format!("PAYLEN {paylen} != frame length {}", frame.len()));
                }
                if cmd & TXD_CMD_IFCS == 0 || self.get(HLREG0) & HLREG0_TXCRCEN == 0 {
                    self.violation("frame sent without an FCS".into());
                }
                if frame.len() < 60 && self.get(HLREG0) & HLREG0_TXPADEN != 0 {
                    frame.resize(60, 0);
                }
                self.count(GPTC, 1);
                self.count(GOTCL, (frame.len() + 4) as u32);
                self.sent.push(frame);
                sent += 1;
            }
            if cmd & TXD_CMD_RS != 0 {
                // 7.2.3.2.4 write-back: reserved, then STA (DD) at bits 35:32.
                self.write_desc(TDBAL, TDBAH, head, addr, u64::from(TXD_STAT_DD) << 32);
            }
            self.tx.head = (head + 1) % entries;
        }
        sent
    }
}
