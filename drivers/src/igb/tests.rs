//! Host tests of the igb bring-up against a small register file that behaves as the datasheet
//! says where the driver waits on the device (self-clearing reset, EEPROM auto-read, queue
//! enables read back, link after set-link-up). The rings are the 82599 driver's, tested there
//! against its model; the end-to-end tests run this driver on QEMU's 82576.

use super::regs::*;
use super::*;
use crate::ixgbe::tests::{pool, TestHal};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Registers as plain storage plus the few behaviours bring-up polls for.
#[derive(Default)]
struct Fake {
    regs: RefCell<BTreeMap<u32, u32>>,
    /// Every write, in order.
    writes: RefCell<Vec<(u32, u32)>>,
    /// CTRL.RST never clears (a dead device).
    stuck_in_reset: bool,
    /// Link never comes up.
    no_link: bool,
    reads_of_stats: Cell<u32>,
}

impl Fake {
    fn new() -> Self {
        let f = Fake::default();
        f.set(RAL0, u32::from_le_bytes([0x52, 0x54, 0x00, 0x12]));
        f.set(RAH0, u32::from(u16::from_le_bytes([0x34, 0x56])) | RAH_AV);
        f
    }
    fn get(&self, reg: u32) -> u32 {
        self.regs.borrow().get(&reg).copied().unwrap_or(0)
    }
    fn set(&self, reg: u32, v: u32) {
        self.regs.borrow_mut().insert(reg, v);
    }
    fn index_of_write(&self, reg: u32, pred: impl Fn(u32) -> bool) -> Option<usize> {
        self.writes
            .borrow()
            .iter()
            .position(|&(r, v)| r == reg && pred(v))
    }
}

impl Registers for Fake {
    fn read(&self, reg: u32) -> u32 {
        if (CRCERRS..=ROC).contains(&reg) {
            self.reads_of_stats.set(self.reads_of_stats.get() + 1);
            // Clear on read.
            return self.regs.borrow_mut().remove(&reg).unwrap_or(0);
        }
        self.get(reg)
    }
    fn write(&self, reg: u32, value: u32) {
        self.writes.borrow_mut().push((reg, value));
        let mut v = value;
        match reg {
            CTRL if v & CTRL_RST != 0 => {
                if !self.stuck_in_reset {
                    v &= !CTRL_RST;
                    self.set(EECD, self.get(EECD) | EECD_AUTO_RD);
                }
            }
            CTRL if v & CTRL_SLU != 0 && !self.no_link => {
                self.set(STATUS, self.get(STATUS) | STATUS_LU | (0x2 << 6));
            }
            // The PHY answers every access at once.
            MDIC => v |= MDIC_READY,
            _ => {}
        }
        self.set(reg, v);
    }
}

fn config() -> IgbConfig {
    IgbConfig {
        delay_us: |_| {},
        link_wait_ms: 5,
    }
}

#[test]
fn brings_up_with_filters_queues_and_interrupts_masked() {
    let fake = Fake::new();
    fake.set(GPRC, 7);
    let mut nic = Igb::<TestHal, _>::new(&fake, pool(1024), config()).expect("bring-up");
    assert_eq!(nic.mac_address(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    assert!(nic.link_up());
    // Interrupts masked before the reset and again after it.
    let rst = fake.index_of_write(CTRL, |v| v & CTRL_RST != 0).unwrap();
    let masks: Vec<usize> = (0..fake.writes.borrow().len())
        .filter(|&i| fake.writes.borrow()[i] == (IMC, 0xffff_ffff))
        .collect();
    assert!(masks.iter().any(|&i| i < rst) && masks.iter().any(|&i| i > rst));
    // Own MAC, broadcast, all multicast (VRRP), CRC stripped; not promiscuous, no long frames.
    let rctl = fake.get(RCTL);
    assert_eq!(
        rctl & (RCTL_EN | RCTL_BAM | RCTL_MPE | RCTL_SECRC),
        RCTL_EN | RCTL_BAM | RCTL_MPE | RCTL_SECRC
    );
    assert_eq!(rctl & (RCTL_UPE | RCTL_LPE | RCTL_SBP), 0);
    // Advanced one-buffer descriptors of 2 KiB, dropping when full.
    assert_eq!(
        fake.get(SRRCTL),
        2 | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN
    );
    assert_eq!(fake.get(RDLEN), (RX_RING_SIZE * 16) as u32);
    assert_eq!(fake.get(RDT), (RX_RING_SIZE - 1) as u32);
    // The tail moves only after the queue is enabled, and RCTL.EN comes last.
    let rx_enable = fake
        .index_of_write(RXDCTL, |v| v & RXDCTL_ENABLE != 0)
        .unwrap();
    let tail = fake.index_of_write(RDT, |v| v != 0).unwrap();
    let rx_on = fake.index_of_write(RCTL, |v| v & RCTL_EN != 0).unwrap();
    assert!(rx_enable < tail && tail < rx_on);
    let tx_enable = fake
        .index_of_write(TXDCTL, |v| v & TXDCTL_ENABLE != 0)
        .unwrap();
    let tx_on = fake.index_of_write(TCTL, |v| v & TCTL_EN != 0).unwrap();
    assert!(tx_enable < tx_on);
    assert_ne!(fake.get(TCTL) & TCTL_PSP, 0);
    assert_ne!(fake.get(CTRL_EXT) & CTRL_EXT_DRV_LOAD, 0);
    // Auto-negotiation restarted in the PHY's control register.
    let an = fake
        .index_of_write(MDIC, |v| {
            v & MDIC_OP_WRITE != 0 && (v >> MDIC_REG_SHIFT) & 0x1f == PHY_BMCR
        })
        .unwrap();
    assert_ne!(fake.writes.borrow()[an].1 & u32::from(BMCR_ANRESTART), 0);
    // The counters read at bring-up start from zero; later ones accumulate.
    assert_eq!(nic.device_counters().rx_good_packets, 0);
    fake.set(GPRC, 3);
    fake.set(GORCL, 300);
    fake.set(RNBC, 2);
    let c = nic.device_counters();
    assert_eq!(
        (c.rx_good_packets, c.rx_good_bytes, c.rx_no_descriptor),
        (3, 300, 2)
    );
    assert_eq!(nic.pool().available(), 1024 - RX_RING_SIZE);
}

#[test]
fn dead_device_and_missing_link_are_reported() {
    let fake = Fake {
        stuck_in_reset: true,
        ..Fake::new()
    };
    let e = Igb::<TestHal, _>::new(&fake, pool(1024), config()).err();
    assert_eq!(e, Some(IgbError::ResetTimeout));
    // No link: bring-up still succeeds, the link reads down.
    let fake = Fake {
        no_link: true,
        ..Fake::new()
    };
    let mut nic = Igb::<TestHal, _>::new(&fake, pool(1024), config()).expect("bring-up");
    assert!(!nic.link_up());
    let fake = Fake::new();
    fake.set(RAH0, 0);
    let e = Igb::<TestHal, _>::new(&fake, pool(1024), config()).err();
    assert_eq!(e, Some(IgbError::NoMacAddress));
    let e = Igb::<TestHal, _>::new(&Fake::new(), pool(100), config()).err();
    assert!(matches!(e, Some(IgbError::PoolTooSmall { .. })));
}

#[test]
fn takes_the_igb_family_by_pci_id() {
    for id in [0x10c9, 0x10e6, 0x1521, 0x1533, 0x157b, 0x1539] {
        assert!(supports(0x8086, id), "{id:04x}");
    }
    assert!(!supports(0x8086, 0x10fb)); // 82599
    assert!(!supports(0x8086, 0x10d3)); // 82574 (e1000e)
    assert!(!supports(0x1af4, 0x1533));
}
