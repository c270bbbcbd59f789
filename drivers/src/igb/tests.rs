//! Host tests of the igb bring-up against a small register file that behaves as the datasheet
//! says where the driver waits on the device (self-clearing reset, EEPROM auto-read, queue
//! enables read back, link after set-link-up). The rings are the 82599 driver's, tested there
//! against its model; the end-to-end tests run this driver on QEMU's 82576.

use super::regs::*;
use super::*;
use crate::adv_ring::{RXD_STAT_DD, RXD_STAT_EOP};
use crate::ixgbe::tests::{pool, TestHal};
use crate::pool::HEADROOM;
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
        max_queues: 8,
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
        fake.get(srrctl(0)),
        2 | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN
    );
    assert_eq!(fake.get(rdlen(0)), (RX_RING_SIZE * 16) as u32);
    assert_eq!(fake.get(rdt(0)), (RX_RING_SIZE - 1) as u32);
    // The tail moves only after the queue is enabled, and RCTL.EN comes last.
    let rx_enable = fake
        .index_of_write(rxdctl(0), |v| v & RXDCTL_ENABLE != 0)
        .unwrap();
    let tail = fake.index_of_write(rdt(0), |v| v != 0).unwrap();
    let rx_on = fake.index_of_write(RCTL, |v| v & RCTL_EN != 0).unwrap();
    assert!(rx_enable < tail && tail < rx_on);
    let tx_enable = fake
        .index_of_write(txdctl(0), |v| v & TXDCTL_ENABLE != 0)
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

/// The key the kernel passes (`forwarder::shard::RSS_KEY`, Microsoft's RSS example key).
const KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

fn bring_up_queues(fake: &Fake, pools: usize) -> Vec<IgbQueue<TestHal, &Fake>> {
    let pools = (0..pools).map(|_| pool(1024)).collect();
    IgbQueue::<TestHal, _>::new_queues(fake, pools, config(), &KEY).expect("bring-up")
}

/// What QEMU's `igb_write_packet_to_guest` does once RSS picked queue `q`: copy `frame` into
/// the buffer of the descriptor at RDH(q), write back DD | EOP and the length, advance RDH(q).
fn deliver(fake: &Fake, q: u32, frame: &[u8]) {
    let base = (u64::from(fake.get(rdbah(q))) << 32) | u64::from(fake.get(rdbal(q)));
    let head = fake.get(rdh(q));
    let desc = (base + 16 * u64::from(head)) as *mut u64;
    // Safety: `base` is the ring the driver gave queue `q` (test DMA memory is host memory,
    // physical = virtual) and `head` is inside it; the descriptor's buffer address is a pool
    // buffer at HEADROOM with room for the short frame.
    unsafe {
        let pkt = desc.read_volatile() as *mut u8;
        std::ptr::copy_nonoverlapping(frame.as_ptr(), pkt, frame.len());
        desc.write_volatile(0);
        desc.add(1)
            .write_volatile(u64::from(RXD_STAT_DD | RXD_STAT_EOP) | (frame.len() as u64) << 32);
    }
    fake.set(rdh(q), (head + 1) % (fake.get(rdlen(q)) / 16));
}

fn writes_in(fake: &Fake, range: core::ops::Range<u32>) -> Vec<(u32, u32)> {
    fake.writes
        .borrow()
        .iter()
        .copied()
        .filter(|(r, _)| range.contains(r))
        .collect()
}

#[test]
fn two_queues_get_their_own_rings_and_rss_over_both() {
    let fake = Fake::new();
    let queues = bring_up_queues(&fake, 2);
    assert_eq!(queues.iter().map(|q| q.queue()).collect::<Vec<_>>(), [0, 1]);
    for q in 0..2 {
        let rx_base = u64::from(fake.get(rdbah(q))) << 32 | u64::from(fake.get(rdbal(q)));
        let tx_base = u64::from(fake.get(tdbah(q))) << 32 | u64::from(fake.get(tdbal(q)));
        assert_ne!(rx_base, 0, "queue {q}");
        assert_ne!(tx_base, 0, "queue {q}");
        assert_eq!(fake.get(rdlen(q)), (RX_RING_SIZE * 16) as u32);
        assert_eq!(fake.get(tdlen(q)), (TX_RING_SIZE * 16) as u32);
        assert_eq!(
            fake.get(srrctl(q)),
            2 | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN
        );
        assert_ne!(fake.get(rxdctl(q)) & RXDCTL_ENABLE, 0);
        assert_ne!(fake.get(txdctl(q)) & TXDCTL_ENABLE, 0);
        assert_eq!(fake.get(rdt(q)), (RX_RING_SIZE - 1) as u32);
    }
    assert_ne!(fake.get(rdbal(0)), fake.get(rdbal(1)));
    assert_ne!(fake.get(tdbal(0)), fake.get(tdbal(1)));
    // RSS, no VMDq (MRQE = 010b), the six packet types (and the IPv6 TCP bit QEMU reads).
    assert_eq!(
        fake.get(MRQC),
        0x2 | 1 << 16 | 1 << 17 | 1 << 18 | 1 << 20 | 1 << 21 | 1 << 22 | 1 << 23
    );
    assert_ne!(fake.get(RXCSUM) & RXCSUM_PCSD, 0);
    // Entries alternate 0, 1, 0, 1 from the low byte up.
    for i in 0..32 {
        assert_eq!(fake.get(0x5C00 + 4 * i), 0x0100_0100, "RETA[{i}]");
    }
    // The key's bytes in order, four to a register, the first in the low byte.
    assert_eq!(fake.get(0x5C80), 0xda56_5a6d);
    assert_eq!(fake.get(0x5C80 + 36), 0xfa01_acbe);
    // Every queue enabled, and RSS set, before receive is switched on.
    let rx_on = fake.index_of_write(RCTL, |v| v & RCTL_EN != 0).unwrap();
    let mrqc = fake.index_of_write(MRQC, |_| true).unwrap();
    let q1 = fake
        .index_of_write(rxdctl(1), |v| v & RXDCTL_ENABLE != 0)
        .unwrap();
    assert!(q1 < mrqc && mrqc < rx_on);
    let tx_on = fake.index_of_write(TCTL, |v| v & TCTL_EN != 0).unwrap();
    let t1 = fake
        .index_of_write(txdctl(1), |v| v & TXDCTL_ENABLE != 0)
        .unwrap();
    assert!(t1 < tx_on);
}

/// Queue `hash` goes to as the device picks it (QEMU's `E1000_RSS_QUEUE`: byte `hash & 127` of
/// the RETA registers' memory, low four bits).
fn device_queue(fake: &Fake, hash: u32) -> usize {
    let i = hash & 127;
    (fake.get(reta(i / 4)).to_le_bytes()[(i % 4) as usize] & 0x0f) as usize
}

#[test]
fn the_redirection_table_sends_a_hash_where_shard_of_says() {
    // `forwarder::shard::shard_of`: (hash % 128) % shards.
    for n in [2usize, 3, 4, 8] {
        let fake = Fake::new();
        let queues = bring_up_queues(&fake, n);
        assert_eq!(queues.len(), n);
        for hash in (0..4096u32).map(|h| h.wrapping_mul(0x9e37_79b9)) {
            assert_eq!(
                device_queue(&fake, hash),
                (hash as usize % 128) % n,
                "{n} {hash:#x}"
            );
        }
    }
    // More pools than the part has queues: one handle per queue it has.
    let fake = Fake::new();
    let pools = (0..3).map(|_| pool(1024)).collect();
    let config = IgbConfig {
        max_queues: 2,
        ..config()
    };
    let queues = IgbQueue::<TestHal, _>::new_queues(&fake, pools, config, &KEY).unwrap();
    assert_eq!(queues.len(), 2);
    assert_eq!(device_queue(&fake, 2), 0);
    assert_eq!(device_queue(&fake, 3), 1);
}

#[test]
fn a_frame_in_queue_1_reaches_handle_1_only() {
    let fake = Fake::new();
    let mut queues = bring_up_queues(&fake, 2);
    let frame: Vec<u8> = (0..64u8).collect();
    deliver(&fake, 1, &frame);
    fake.writes.borrow_mut().clear();
    let mut rx = Burst::new();
    assert_eq!(queues[0].rx_burst(&mut rx), 0);
    assert_eq!(queues[1].rx_burst(&mut rx), 1);
    let buf = rx.pop_front().unwrap();
    assert_eq!(buf.head(), HEADROOM);
    assert_eq!(queues[1].pool().frame(&buf), &frame[..]);
    queues[1].recycle(buf);
    assert_eq!(queues[1].stats().rx_packets, 1);
    assert_eq!(queues[0].stats().rx_packets, 0);
    // Handle 1 gave the descriptor back through its own tail, and touched nothing else.
    let writes = fake.writes.borrow().clone();
    assert_eq!(writes, [(rdt(1), 0)]);
}

#[test]
fn handle_1_transmits_through_tdt_1_only() {
    let fake = Fake::new();
    let mut queues = bring_up_queues(&fake, 2);
    fake.writes.borrow_mut().clear();
    let mut tx = Burst::new();
    for len in [60, 80] {
        let mut buf = queues[1].pool_mut().alloc().unwrap();
        buf.set_frame(HEADROOM, len).unwrap();
        tx.push_back(buf).unwrap();
    }
    assert_eq!(queues[1].tx_burst(&mut tx), 2);
    assert_eq!(fake.writes.borrow().clone(), [(tdt(1), 2)]);
    assert_eq!(queues[1].stats().tx_packets, 2);
    // Device-wide counters come from queue 0 alone (the others report zeros, so sums hold).
    fake.set(GPTC, 2);
    assert_eq!(queues[1].device_counters().tx_good_packets, 0);
    assert_eq!(queues[0].device_counters().tx_good_packets, 2);
    // Dropping queue 1 stops its own pair only; queue 0 keeps the device.
    let q1 = queues.pop().unwrap();
    fake.writes.borrow_mut().clear();
    drop(q1);
    assert_eq!(fake.get(rxdctl(1)) & RXDCTL_ENABLE, 0);
    assert_eq!(fake.get(txdctl(1)) & TXDCTL_ENABLE, 0);
    assert_ne!(fake.get(rxdctl(0)) & RXDCTL_ENABLE, 0);
    assert_eq!(fake.index_of_write(CTRL, |v| v & CTRL_RST != 0), None);
}

#[test]
fn one_pool_writes_no_rss_register() {
    let fake = Fake::new();
    let queues = bring_up_queues(&fake, 1);
    assert_eq!(queues.len(), 1);
    assert_eq!(writes_in(&fake, MRQC..MRQC + 4), []);
    assert_eq!(writes_in(&fake, RXCSUM..RXCSUM + 4), []);
    assert_eq!(writes_in(&fake, reta(0)..rssrk(RSSRK_LEN)), []);
    // Nor any second queue's registers.
    assert_eq!(writes_in(&fake, rdbal(1)..rdbal(MAX_QUEUES)), []);
    assert_eq!(writes_in(&fake, tdbal(1)..tdbal(MAX_QUEUES)), []);
    // No pool at all is an error, not a device without queues.
    let e = IgbQueue::<TestHal, _>::new_queues(&Fake::new(), Vec::new(), config(), &KEY).err();
    assert_eq!(e, Some(IgbError::NoPool));
}

#[test]
fn queue_handles_are_send() {
    fn send<T: Send>() {}
    send::<IgbQueue<TestHal, MmioRegisters>>();
}

#[test]
fn queue_counts_follow_the_part() {
    assert_eq!(queues_of(0x10c9), 8); // 82576, QEMU's igb
    assert_eq!(queues_of(0x1521), 8); // i350
    assert_eq!(queues_of(0x1533), 4); // i210
    assert_eq!(queues_of(0x1539), 2); // i211
}
