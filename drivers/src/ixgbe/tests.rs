//! The real driver against the 82599 model ([`super::model`]): bring-up, receive, transmit, ring
//! wrap-around, a full transmit ring, link down at start, and bring-up failures. No sleeps:
//! the delay function only adds up the microseconds it was asked to wait.

use super::model::{Access, Behaviour, Model, RxOutcome, DMA_REGIONS};
use super::regs::*;
use super::*;
use crate::nic::BURST_SIZE;
use crate::pool::tests::host_pool;
use crate::pool::{BUF_SIZE, HEADROOM};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use virtio_drivers::{BufferDirection, PhysAddr, PAGE_SIZE};

/// Host memory as DMA memory, registered with the model's region list.
pub(crate) struct TestHal;

// Safety: allocations are page-aligned, zeroed and unaliased; physical = virtual.
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
        // Safety: non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap();
        DMA_REGIONS.with(|r| {
            r.borrow_mut()
                .push((ptr.as_ptr() as u64, pages * PAGE_SIZE))
        });
        (ptr.as_ptr() as PhysAddr, ptr)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        DMA_REGIONS.with(|r| r.borrow_mut().retain(|&(base, _)| base != paddr));
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
        // Safety: allocated by `dma_alloc` with this layout.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("the ixgbe driver takes its registers ready-mapped")
    }

    unsafe fn share(_buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        panic!("the ixgbe driver must not call Hal::share")
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        panic!("the ixgbe driver must not call Hal::unshare")
    }
}

thread_local! {
    static DELAYED_US: Cell<u64> = const { Cell::new(0) };
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The delay the tests give the driver: no sleeping, just a sum.
fn fake_delay(us: u32) {
    DELAYED_US.with(|d| d.set(d.get() + u64::from(us)));
}

/// Captures log lines per test thread.
struct CaptureLogger;

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LOG.with(|l| {
            l.borrow_mut()
                .push(format!("{} {}", record.level(), record.args()))
        });
    }
    fn flush(&self) {}
}

static LOGGER: CaptureLogger = CaptureLogger;

fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another test module may have installed a logger first; then capture is best effort.
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Trace);
    });
    DELAYED_US.with(|d| d.set(0));
    LOG.with(|l| l.borrow_mut().clear());
}

fn logged() -> Vec<String> {
    LOG.with(|l| l.borrow().clone())
}

/// A pool whose region the model may DMA into.
pub(crate) fn pool(buffers: usize) -> PacketPool {
    let mut pool = host_pool(buffers);
    let b = pool.alloc().unwrap();
    let base = pool.phys_addr(&b) - (b.index() * BUF_SIZE) as u64;
    pool.free(b);
    DMA_REGIONS.with(|r| r.borrow_mut().push((base, buffers * BUF_SIZE)));
    pool
}

fn config() -> IxgbeConfig {
    IxgbeConfig {
        delay_us: fake_delay,
        link_wait_ms: 100,
    }
}

type TestNic<'a> = Ixgbe<TestHal, &'a Model>;

fn bring_up(model: &Model, buffers: usize) -> TestNic<'_> {
    setup();
    let nic = Ixgbe::<TestHal, _>::new(model, pool(buffers), config()).expect("bring-up");
    assert_eq!(model.violations(), Vec::<String>::new());
    nic
}

/// An Ethernet frame to `dst` whose payload carries `seq`, `len` bytes long.
fn frame(dst: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (i as u32 ^ seq) as u8;
    }
    f
}

fn seq_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[14..18].try_into().unwrap())
}

/// Index of the first access matching `pred` at or after `from`.
fn find(log: &[Access], from: usize, pred: impl Fn(&Access) -> bool) -> usize {
    from + log[from..]
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("expected access not found after #{from}"))
}

fn wrote(reg: u32, bits: u32) -> impl Fn(&Access) -> bool {
    move |a| matches!(*a, Access::Write(r, v) if r == reg && v & bits == bits)
}

fn read_with(reg: u32, bits: u32) -> impl Fn(&Access) -> bool {
    move |a| matches!(*a, Access::Read(r, v) if r == reg && v & bits == bits)
}

#[test]
fn init_follows_the_datasheet_sequence() {
    let model = Model::new(Behaviour::default());
    let mut nic = bring_up(&model, 1024);
    assert_eq!(nic.mac_address(), Behaviour::default().mac);
    assert!(nic.link_up());
    assert_eq!(model.resets(), 1);

    let log = model.log();
    // 4.6.3.1 / 4.6.3.2: interrupts off, master disable, reset, wait, interrupts off again.
    let eimc1 = find(&log, 0, wrote(EIMC, 0x7fff_ffff));
    let master = find(&log, eimc1, wrote(CTRL, CTRL_MASTER_DISABLE));
    let rst = find(&log, master, wrote(CTRL, CTRL_RST));
    let reset_done = find(
        &log,
        rst,
        |a| matches!(*a, Access::Read(CTRL, v) if v & CTRL_RST == 0),
    );
    let eimc2 = find(&log, reset_done, wrote(EIMC, 0x7fff_ffff));
    // 4.6.3: EEPROM auto-read, then DMA init.
    let ard = find(&log, eimc2, read_with(EEC, EEC_ARD));
    let dmaidone = find(&log, ard, read_with(RDRXCTL, RDRXCTL_DMAIDONE));
    // 4.6.4: link mode and AN restart.
    let an = find(
        &log,
        dmaidone,
        wrote(AUTOC, AUTOC_AN_RESTART | AUTOC_LMS_10G_SERIAL),
    );
    // 4.6.5: every clear-on-read counter read.
    for reg in [
        GPRC,
        GPTC,
        GORCL,
        GORCH,
        GOTCL,
        GOTCH,
        CRCERRS,
        ROC,
        mpc(0),
        mpc(7),
    ] {
        find(&log, an, |a| matches!(*a, Access::Read(r, _) if r == reg));
    }
    // 4.6.7: queue enabled and read back before the tail bump; RXEN inside RX_DIS.
    let rxdctl = find(&log, an, wrote(RXDCTL, RXDCTL_ENABLE));
    let rx_on = find(&log, rxdctl, read_with(RXDCTL, RXDCTL_ENABLE));
    let rdt = find(&log, rx_on, |a| matches!(*a, Access::Write(RDT, 511)));
    let rx_dis = find(&log, rdt, wrote(SECRXCTRL, SECRXCTRL_RX_DIS));
    let rdy = find(&log, rx_dis, read_with(SECRXSTAT, SECRXSTAT_SECRX_RDY));
    let rxen = find(&log, rdy, wrote(RXCTRL, RXCTRL_RXEN));
    let rx_dis_off = find(
        &log,
        rxen,
        |a| matches!(*a, Access::Write(SECRXCTRL, v) if v & SECRXCTRL_RX_DIS == 0),
    );
    // 4.6.8: arbiter off around MTQC, TE before the queue enable.
    let arbdis = find(&log, rx_dis_off, wrote(RTTDCS, RTTDCS_ARBDIS));
    let mtqc = find(&log, arbdis, |a| matches!(*a, Access::Write(MTQC, 0)));
    let _arb_on = find(
        &log,
        mtqc,
        |a| matches!(*a, Access::Write(RTTDCS, v) if v & RTTDCS_ARBDIS == 0),
    );
    let te = find(&log, mtqc, wrote(DMATXCTL, DMATXCTL_TE));
    let txen = find(&log, te, wrote(TXDCTL, TXDCTL_ENABLE));
    find(&log, txen, read_with(TXDCTL, TXDCTL_ENABLE));

    // Final configuration.
    assert_eq!(model.peek(EIMS), 0, "all interrupts masked");
    let srrctl = model.peek(SRRCTL);
    assert_eq!(srrctl & SRRCTL_DESCTYPE_MASK, SRRCTL_DESCTYPE_ADV_ONEBUF);
    assert_eq!(srrctl & SRRCTL_BSIZEPACKET_MASK, 2);
    assert_ne!(srrctl & SRRCTL_DROP_EN, 0);
    let fctrl = model.peek(FCTRL);
    assert_ne!(fctrl & FCTRL_BAM, 0);
    assert_eq!(fctrl & (FCTRL_UPE | FCTRL_MPE), 0, "not promiscuous");
    let hl = model.peek(HLREG0);
    assert_eq!(
        hl & (HLREG0_TXCRCEN | HLREG0_RXCRCSTRP | HLREG0_TXPADEN | HLREG0_JUMBOEN),
        HLREG0_TXCRCEN | HLREG0_RXCRCSTRP | HLREG0_TXPADEN
    );
    let rdrxctl = model.peek(RDRXCTL);
    assert_ne!(rdrxctl & RDRXCTL_CRCSTRIP, 0);
    assert_eq!(rdrxctl & RDRXCTL_RSCFRSTSIZE_MASK, 0);
    assert_eq!(model.peek(RDLEN), 512 * 16);
    assert_eq!(model.peek(TDLEN), 512 * 16);
    assert_eq!(model.rx_head_tail(), (0, 511));
    assert_eq!(model.tx_head_tail(), (0, 0));
    assert_eq!(model.peek(DCA_RXCTRL) & DCA_RXCTRL_BIT12, 0);
    assert_ne!(model.peek(CTRL_EXT) & CTRL_EXT_NS_DIS, 0);
    assert_eq!(model.peek(rxpbsize(1)), 0);
    assert_eq!(model.peek(fcrth(0)), 0x7_A000);
    // The leftover count from before the reset is gone; the driver's counters start at zero.
    assert_eq!(nic.device_counters(), DeviceCounters::default());
    assert_eq!(nic.pool().available(), 1024 - RX_RING_SIZE);
}

#[test]
fn receives_the_vrrp_group_through_the_multicast_table_only() {
    let model = Model::new(Behaviour::default());
    let mut nic = bring_up(&model, 1024);
    assert_eq!(model.peek(MCSTCTRL), MCSTCTRL_MFE, "MTA on, MO = 00b");
    // 01:00:5e:00:00:12: bits 47:36 are 0x120, so MTA[9] bit 0, and nothing else.
    assert_eq!(mta_slot(RX_MULTICAST[0]), (9, 0));
    for n in 0..MTA_LEN {
        assert_eq!(model.peek(mta(n)), u32::from(n == 9), "MTA[{n}]");
    }
    let vrrp = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
    assert_eq!(model.deliver(&frame(vrrp, 1, 60)), RxOutcome::Written(1));
    for other in [
        [0x01, 0x00, 0x5e, 0x00, 0x00, 0x13],
        [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb],
        [0x33, 0x33, 0x00, 0x00, 0x00, 0x01],
    ] {
        assert_eq!(
            model.deliver(&frame(other, 2, 60)),
            RxOutcome::Filtered,
            "{other:02x?}"
        );
    }
    let mut rx = Burst::new();
    assert_eq!(nic.rx_burst(&mut rx), 1);
    let got = rx.pop_front().unwrap();
    assert_eq!(&nic.pool().frame(&got)[..6], &vrrp);
    nic.recycle(got);
}

#[test]
fn receives_unicast_and_broadcast_not_others() {
    let model = Model::new(Behaviour::default());
    let mut nic = bring_up(&model, 1024);
    let mac = nic.mac_address();
    assert_eq!(model.deliver(&frame(mac, 1, 60)), RxOutcome::Written(1));
    assert_eq!(
        model.deliver(&frame([0xff; 6], 2, 1514)),
        RxOutcome::Written(1)
    );
    assert_eq!(
        model.deliver(&frame([0x02, 1, 2, 3, 4, 5], 3, 60)),
        RxOutcome::Filtered
    );
    assert_eq!(
        model.deliver(&frame([0x01, 0, 0x5e, 0, 0, 1], 4, 60)),
        RxOutcome::Filtered
    );
    assert_eq!(model.deliver(&frame(mac, 5, 1600)), RxOutcome::Oversize);

    let mut rx = Burst::new();
    assert_eq!(nic.rx_burst(&mut rx), 2);
    let a = rx.pop_front().unwrap();
    let b = rx.pop_front().unwrap();
    assert_eq!((a.head(), a.len()), (HEADROOM, 60));
    assert_eq!(nic.pool().frame(&a), &frame(mac, 1, 60)[..]);
    assert_eq!(nic.pool().frame(&b), &frame([0xff; 6], 2, 1514)[..]);
    nic.recycle(a);
    nic.recycle(b);
    // Tail moved once, to the descriptor before the next one to read.
    assert_eq!(model.rx_head_tail(), (2, 1));
    let s = nic.stats();
    assert_eq!((s.rx_packets, s.rx_bytes, s.rx_dropped), (2, 60 + 1514, 0));
    assert_eq!(nic.rx_burst(&mut rx), 0);
    let c = nic.device_counters();
    assert_eq!((c.rx_good_packets, c.rx_oversize), (2, 1));
    // Clear-on-read: a second read adds nothing.
    assert_eq!(nic.device_counters(), c);
    assert_eq!(model.violations(), Vec::<String>::new());
}

#[test]
fn transmits_frames_from_their_head() {
    let model = Model::new(Behaviour::default());
    let mut nic = bring_up(&model, 1024);
    let mut tx = Burst::new();
    let mut expected = Vec::new();
    for seq in 0..3u32 {
        let mut buf = nic.pool_mut().alloc().unwrap();
        let f = frame([0x02, 0, 0, 0, 0, 7], seq, 100 + seq as usize);
        // The second frame starts 20 bytes before HEADROOM (an IPIP header was prepended).
        let head = if seq == 1 { HEADROOM - 20 } else { HEADROOM };
        buf.set_frame(head, f.len()).unwrap();
        nic.pool_mut().frame_mut(&buf).copy_from_slice(&f);
        tx.push_back(buf).unwrap();
        expected.push(f);
    }
    // A short frame is padded by the device (TXPADEN); malformed ones are refused.
    let mut short = nic.pool_mut().alloc().unwrap();
    let f = frame([0x02, 0, 0, 0, 0, 7], 9, 42);
    short.set_frame(HEADROOM, 42).unwrap();
    nic.pool_mut().frame_mut(&short).copy_from_slice(&f);
    tx.push_back(short).unwrap();
    let mut padded = f.clone();
    padded.resize(60, 0);
    expected.push(padded);
    let mut bad = nic.pool_mut().alloc().unwrap();
    bad.set_frame(8, 60).unwrap(); // head below TX_MIN_HEAD
    tx.push_back(bad).unwrap();
    let mut empty = nic.pool_mut().alloc().unwrap();
    empty.set_frame(HEADROOM, 0).unwrap();
    tx.push_back(empty).unwrap();

    assert_eq!(nic.tx_burst(&mut tx), 4);
    assert!(tx.is_empty());
    assert_eq!(model.tx_head_tail(), (0, 4));
    assert_eq!(model.run_tx(usize::MAX), 4);
    assert_eq!(model.take_sent(), expected);
    let s = nic.stats();
    assert_eq!((s.tx_packets, s.tx_dropped), (4, 2));
    assert_eq!(nic.device_counters().tx_good_packets, 4);
    assert_eq!(model.violations(), Vec::<String>::new());
}

#[test]
fn reclaims_transmit_buffers_a_batch_at_a_time() {
    let model = Model::new(Behaviour::default());
    let mut nic = bring_up(&model, 1024);
    let free_at_start = nic.pool().available();
    let mut tx = Burst::new();
    for round in 0..3u32 {
        for seq in 0..BURST_SIZE as u32 {
            let mut buf = nic.pool_mut().alloc().unwrap();
            buf.set_frame(HEADROOM, 64).unwrap();
            let f = frame([2; 6], round * 100 + seq, 64);
            nic.pool_mut().frame_mut(&buf).copy_from_slice(&f);
            tx.push_back(buf).unwrap();
        }
        assert_eq!(nic.tx_burst(&mut tx), BURST_SIZE);
    }
    // Nothing sent yet: nothing reclaimed.
    assert_eq!(nic.pool().available(), free_at_start - 96);
    model.run_tx(40);
    nic.tx_burst(&mut tx);
    // Batch 0 (descriptors 0..32, RS on 31) is done; batch 1 is not (only 8 of it sent).
    assert_eq!(nic.pool().available(), free_at_start - 64);
    model.run_tx(usize::MAX);
    nic.tx_burst(&mut tx);
    assert_eq!(nic.pool().available(), free_at_start);
    assert_eq!(model.take_sent().len(), 96);
}

/// Frames go in on the wire, through rx_burst, straight back out through tx_burst, many times
/// around both rings; order and content survive, no buffer leaks.
#[test]
fn rings_wrap_around_many_times() {
    let model = Model::new(Behaviour::default());
    let mut nic = bring_up(&model, 2048);
    let mac = nic.mac_address();
    let free_at_start = nic.pool().available();
    let total: u32 = 20 * 512 + 77;
    let mut delivered = 0u32;
    let mut forwarded = Vec::new();
    let mut rx = Burst::new();
    let mut tx = Burst::new();
    while delivered < total || forwarded.len() < total as usize {
        // Irregular arrival sizes so that bursts and batches straddle the wrap at odd places.
        let n = 1 + (delivered * 7 % 45);
        for _ in 0..n {
            if delivered < total {
                let len = 60 + (delivered as usize * 13) % 1400;
                assert_eq!(
                    model.deliver(&frame(mac, delivered, len)),
                    RxOutcome::Written(1)
                );
                delivered += 1;
            }
        }
        while nic.rx_burst(&mut rx) > 0 {
            while let Some(pkt) = rx.pop_front() {
                tx.push_back(pkt).unwrap();
            }
            nic.tx_burst(&mut tx);
            assert!(tx.is_empty());
        }
        model.run_tx(usize::MAX);
        forwarded.extend(model.take_sent());
    }
    assert_eq!(forwarded.len(), total as usize);
    for (i, f) in forwarded.iter().enumerate() {
        assert_eq!(seq_of(f), i as u32);
        assert_eq!(f, &frame(mac, i as u32, f.len()));
    }
    // Flush the last partial TX batch: it is reclaimed once a later batch completes, so the
    // only buffers not free are the receive ring's and at most one TX batch.
    let in_tx = free_at_start - nic.pool().available();
    assert!(in_tx < TX_CLEAN_BATCH, "{in_tx} buffers still held by TX");
    let s = nic.stats();
    assert_eq!(
        (s.rx_packets, s.tx_packets),
        (u64::from(total), u64::from(total))
    );
    assert_eq!((s.rx_dropped, s.rx_no_buffer, s.tx_ring_full), (0, 0, 0));
    let c = nic.device_counters();
    assert_eq!((c.rx_missed, c.rx_good_packets), (0, u64::from(total)));
    assert_eq!(model.violations(), Vec::<String>::new());
}

#[test]
fn full_tx_ring_leaves_frames_in_the_burst() {
    let model = Model::new(Behaviour::default());
    let mut nic = bring_up(&model, 2048);
    let mut tx = Burst::new();
    let mut next_seq = 0u32;
    let mut queued = 0;
    // The device sends nothing; fill until the ring refuses.
    loop {
        while !tx.is_full() {
            let mut buf = nic.pool_mut().alloc().unwrap();
            buf.set_frame(HEADROOM, 60).unwrap();
            let f = frame([2; 6], next_seq, 60);
            next_seq += 1;
            nic.pool_mut().frame_mut(&buf).copy_from_slice(&f);
            tx.push_back(buf).unwrap();
        }
        let n = nic.tx_burst(&mut tx);
        queued += n;
        if n < BURST_SIZE {
            break;
        }
    }
    // One descriptor stays empty: TDT == TDH would mean "empty".
    assert_eq!(queued, TX_RING_SIZE - 1);
    assert_eq!(tx.len(), BURST_SIZE - (TX_RING_SIZE - 1) % BURST_SIZE);
    assert_eq!(seq_of(nic.pool().frame(tx.front().unwrap())), queued as u32);
    assert_eq!(nic.stats().tx_ring_full, 1);
    assert_eq!(nic.stats().tx_dropped, 0);
    assert_eq!(model.tx_head_tail(), (0, 511));
    // Still full while the device is stuck: nothing queued, nothing lost.
    assert_eq!(nic.tx_burst(&mut tx), 0);
    // The device catches up; the leftovers go out, in order.
    assert_eq!(model.run_tx(usize::MAX), 511);
    let left = tx.len();
    assert_eq!(nic.tx_burst(&mut tx), left);
    model.run_tx(usize::MAX);
    let sent = model.take_sent();
    assert_eq!(sent.len(), 511 + left);
    assert!(sent.iter().enumerate().all(|(i, f)| seq_of(f) == i as u32));
    assert_eq!(model.violations(), Vec::<String>::new());
}

#[test]
fn link_down_at_start_is_reported_and_comes_up_later() {
    let model = Model::new(Behaviour {
        cable: false,
        ..Behaviour::default()
    });
    let mut nic = bring_up(&model, 1024);
    assert!(!nic.link_up());
    assert!(
        logged()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("link down")),
        "{:?}",
        logged()
    );
    // The wait was bounded: about link_wait_ms plus the reset waits, in simulated time.
    let waited = DELAYED_US.with(Cell::get);
    assert!(waited <= 200_000, "waited {waited} us");
    // Nothing arrives without a link.
    assert_eq!(
        model.deliver(&frame(nic.mac_address(), 0, 60)),
        RxOutcome::Disabled
    );
    model.set_cable(true);
    let polls = (0..100).position(|_| nic.link_up()).expect("link came up");
    assert!(polls > 0);
    assert!(logged().iter().any(|l| l.contains("link up, 10 Gb/s")));
    assert_eq!(
        model.deliver(&frame(nic.mac_address(), 0, 60)),
        RxOutcome::Written(1)
    );
}

#[test]
fn reset_that_never_completes_is_a_timeout_error() {
    setup();
    let model = Model::new(Behaviour {
        reset_reads: None,
        ..Behaviour::default()
    });
    let err = Ixgbe::<TestHal, _>::new(&model, pool(1024), config())
        .err()
        .expect("bring-up must fail");
    assert_eq!(err, IxgbeError::ResetTimeout);
    assert!(err.to_string().contains("CTRL.RST"));
    // Bounded: a fixed number of polls, and no other register touched during the reset.
    assert_eq!(model.ctrl_reads_in_reset.get(), RESET_POLLS);
    assert_eq!(model.violations(), Vec::<String>::new());
    assert!(DELAYED_US.with(Cell::get) < 20_000);
}

#[test]
fn other_bring_up_failures_are_errors() {
    setup();
    let m = Model::new(Behaviour {
        eeprom_reads: None,
        ..Behaviour::default()
    });
    let e = Ixgbe::<TestHal, _>::new(&m, pool(1024), config()).err();
    assert_eq!(e, Some(IxgbeError::EepromTimeout));
    let m = Model::new(Behaviour {
        queue_enable_reads: None,
        ..Behaviour::default()
    });
    let e = Ixgbe::<TestHal, _>::new(&m, pool(1024), config()).err();
    assert_eq!(e, Some(IxgbeError::QueueEnableTimeout(Direction::Rx)));
    assert!(m.violations().is_empty(), "{:?}", m.violations());
    let m = Model::new(Behaviour::default());
    let e = Ixgbe::<TestHal, _>::new(&m, pool(100), config()).err();
    assert_eq!(
        e,
        Some(IxgbeError::PoolTooSmall {
            needed: RX_RING_SIZE,
            available: 100
        })
    );
}

#[test]
fn multi_descriptor_frames_are_dropped_whole() {
    let model = Model::new(Behaviour::default());
    let mut nic = bring_up(&model, 1024);
    let mac = nic.mac_address();
    assert_eq!(model.deliver(&frame(mac, 1, 60)), RxOutcome::Written(1));
    assert_eq!(
        model.deliver_split(&frame(mac, 2, 1200), 512),
        RxOutcome::Written(3)
    );
    assert_eq!(model.deliver(&frame(mac, 3, 60)), RxOutcome::Written(1));
    let mut rx = Burst::new();
    assert_eq!(nic.rx_burst(&mut rx), 2);
    let seqs: Vec<u32> = rx.iter().map(|p| seq_of(nic.pool().frame(p))).collect();
    assert_eq!(seqs, [1, 3]);
    assert_eq!(nic.stats().rx_dropped, 1);
    // The dropped frame's descriptors were re-armed: the ring is whole again.
    assert_eq!(model.rx_head_tail(), (5, 4));
    while let Some(p) = rx.pop_front() {
        nic.recycle(p);
    }
    assert_eq!(nic.pool().available(), 1024 - RX_RING_SIZE);
}

#[test]
fn empty_pool_leaves_frames_in_the_ring_and_full_ring_counts_missed() {
    let model = Model::new(Behaviour::default());
    let mut nic = bring_up(&model, RX_RING_SIZE + 4);
    let mac = nic.mac_address();
    let held: Vec<_> = (0..4).map(|_| nic.pool_mut().alloc().unwrap()).collect();
    for seq in 0..600 {
        model.deliver(&frame(mac, seq, 60));
    }
    // The device took 511 (one descriptor is always ours); the rest were missed.
    assert_eq!(nic.device_counters().rx_missed, 600 - 511);
    let mut rx = Burst::new();
    assert_eq!(nic.rx_burst(&mut rx), 0);
    assert_eq!(nic.stats().rx_no_buffer, 1);
    // The burst saw the ring full: the driver knows it was dropping.
    assert_eq!(nic.stats().rx_ring_exhausted, 1);
    for b in held {
        nic.recycle(b);
    }
    assert_eq!(nic.rx_burst(&mut rx), 4);
    assert_eq!(seq_of(nic.pool().frame(rx.front().unwrap())), 0);
    while let Some(p) = rx.pop_front() {
        nic.recycle(p);
    }
    let mut got = 4;
    while nic.rx_burst(&mut rx) > 0 {
        while let Some(p) = rx.pop_front() {
            assert_eq!(seq_of(nic.pool().frame(&p)), got);
            got += 1;
            nic.recycle(p);
        }
    }
    assert_eq!(got, 511);
    assert_eq!(model.violations(), Vec::<String>::new());
}

#[test]
fn pci_bring_up_checks_the_id_sizes_bar0_and_enables_bus_master() {
    use crate::pci::{ConfigSpace, PciAddress};
    use std::collections::HashMap;

    struct Bus(RefCell<HashMap<u8, u32>>);
    impl ConfigSpace for Bus {
        fn read(&self, _: PciAddress, off: u8) -> u32 {
            *self.0.borrow().get(&off).unwrap_or(&0xffff_ffff)
        }
        fn write(&self, _: PciAddress, off: u8, v: u32) {
            // BAR0: 512 KiB, 64-bit; sizing writes read back the size mask.
            let v = match (off, v) {
                (0x10, 0xffff_ffff) => 0xfff8_000c,
                _ => v,
            };
            self.0.borrow_mut().insert(off, v);
        }
    }
    let addr = PciAddress {
        bus: 1,
        device: 0,
        function: 0,
    };
    let bus = Bus(RefCell::new(HashMap::from([
        (0x00, 0x10fb_8086),
        (0x04, 0x0000_0000),
        (0x08, 0x0200_0001),
        (0x10, 0xf000_000c),
        (0x14, 0x0000_0000),
    ])));
    assert_eq!(
        pci_bring_up(&bus, addr),
        Ok(Bar0 {
            phys: 0xf000_0000,
            size: 512 << 10
        })
    );
    assert_eq!(bus.read(addr, 0x04) & 0b110, 0b110);
    bus.0.borrow_mut().insert(0x00, 0x1000_1af4);
    assert_eq!(
        pci_bring_up(&bus, addr),
        Err(IxgbeError::NotIxgbe(0x1af4, 0x1000))
    );
}
