//! The driver against a simulated device: a fake transport records what the driver configures,
//! and a fake device reads and writes the rings in host memory ("physical" = virtual here).

use super::*;
use crate::nic::BURST_SIZE;
use crate::pool::tests::host_pool;
use crate::pool::PacketBuf;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;
use virtio_drivers::transport::InterruptStatus;
use virtio_drivers::{BufferDirection, PhysAddr, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Host memory as DMA memory; the driver must never call `share`/`unshare`.
struct FakeHal;

// Safety: allocations are page-aligned, zeroed and unaliased; physical = virtual.
unsafe impl Hal for FakeHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
        // Safety: non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap();
        (ptr.as_ptr() as PhysAddr, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
        // Safety: allocated by `dma_alloc` with this layout.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("the fake transport has no BARs")
    }

    unsafe fn share(_buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        panic!("the data path must not call Hal::share")
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        panic!("the data path must not call Hal::unshare")
    }
}

#[derive(Default)]
struct DeviceState {
    driver_features: u64,
    status: DeviceStatus,
    /// (size, descriptors, driver area, device area) per queue.
    queues: [Option<(u16, u64, u64, u64)>; 2],
    notifies: [u32; 2],
    /// What the device does with FEATURES_OK: clear it to refuse.
    refuse_features: bool,
    link_up: bool,
}

struct FakeTransport {
    features: u64,
    max_queue: u32,
    state: Rc<RefCell<DeviceState>>,
}

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Network
    }
    fn read_device_features(&mut self) -> u64 {
        self.features
    }
    fn write_driver_features(&mut self, f: u64) {
        self.state.borrow_mut().driver_features = f;
    }
    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        self.max_queue
    }
    fn notify(&mut self, queue: u16) {
        let mut s = self.state.borrow_mut();
        assert!(
            s.status.contains(DeviceStatus::DRIVER_OK),
            "notified before DRIVER_OK"
        );
        s.notifies[usize::from(queue)] += 1;
    }
    fn get_status(&self) -> DeviceStatus {
        self.state.borrow().status
    }
    fn set_status(&mut self, status: DeviceStatus) {
        let mut s = self.state.borrow_mut();
        s.status = status;
        if s.refuse_features {
            s.status.remove(DeviceStatus::FEATURES_OK);
        }
    }
    fn set_guest_page_size(&mut self, _size: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        false
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        desc: PhysAddr,
        driver: PhysAddr,
        device: PhysAddr,
    ) {
        self.state.borrow_mut().queues[usize::from(queue)] =
            Some((size as u16, desc, driver, device));
    }
    fn queue_unset(&mut self, _queue: u16) {}
    fn queue_used(&mut self, queue: u16) -> bool {
        self.state.borrow().queues[usize::from(queue)].is_some()
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }
    fn read_config_generation(&self) -> u32 {
        0
    }
    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        config[6] = u8::from(self.state.borrow().link_up);
        config
            .get(offset..offset + size_of::<T>())
            .and_then(|b| T::read_from_bytes(b).ok())
            .ok_or(virtio_drivers::Error::ConfigSpaceTooSmall)
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _o: usize,
        _v: T,
    ) -> virtio_drivers::Result<()> {
        Err(virtio_drivers::Error::Unsupported)
    }
}

/// The device side of the rings: reads descriptors and the available ring, writes the used ring.
struct FakeDevice {
    state: Rc<RefCell<DeviceState>>,
    /// Next available-ring index the device will consume, per queue.
    next_avail: [u16; 2],
}

impl FakeDevice {
    fn queue(&self, q: usize) -> (u16, u64, u64, u64) {
        self.state.borrow().queues[q].expect("queue set up")
    }

    fn avail_idx(&self, q: usize) -> u16 {
        let (_, _, driver, _) = self.queue(q);
        // Safety: test memory from FakeHal, identity mapped.
        unsafe { ((driver + 2) as *const u16).read_volatile() }
    }

    fn set_avail_event(&self, q: usize, value: u16) {
        let (size, _, _, device) = self.queue(q);
        // Safety: as above; avail_event follows the used entries.
        unsafe { ((device + 4 + 8 * u64::from(size)) as *mut u16).write_volatile(value) }
    }

    fn set_used_flags(&self, q: usize, value: u16) {
        let (_, _, _, device) = self.queue(q);
        // Safety: as above.
        unsafe { (device as *mut u16).write_volatile(value) }
    }

    /// Consume the next available buffer: (descriptor id, addr, len, flags).
    fn take(&mut self, q: usize) -> Option<(u16, u64, u32, u16)> {
        if self.next_avail[q] == self.avail_idx(q) {
            return None;
        }
        let (size, desc, driver, _) = self.queue(q);
        let slot = u64::from(self.next_avail[q] & (size - 1));
        self.next_avail[q] = self.next_avail[q].wrapping_add(1);
        // Safety: as above; ring entries and descriptors are inside the queue memory.
        unsafe {
            let id = ((driver + 4 + 2 * slot) as *const u16).read_volatile();
            let d = desc + 16 * u64::from(id);
            let addr = (d as *const u64).read_volatile();
            let len = ((d + 8) as *const u32).read_volatile();
            let flags = ((d + 12) as *const u16).read_volatile();
            Some((id, addr, len, flags))
        }
    }

    fn complete(&self, q: usize, id: u32, written: u32) {
        let (size, _, _, device) = self.queue(q);
        // Safety: as above.
        unsafe {
            let idx = ((device + 2) as *mut u16).read_volatile();
            let slot = u64::from(idx & (size - 1));
            ((device + 4 + 8 * slot) as *mut u32).write_volatile(id);
            ((device + 8 + 8 * slot) as *mut u32).write_volatile(written);
            ((device + 2) as *mut u16).write_volatile(idx.wrapping_add(1));
        }
    }

    /// Receive `frame` from the wire into the next receive buffer.
    fn deliver(&mut self, frame: &[u8]) -> bool {
        let Some((id, addr, len, flags)) = self.take(0) else {
            return false;
        };
        assert_eq!(flags, 2, "receive descriptors are device-writable");
        assert!(frame.len() + NET_HDR_LEN <= len as usize);
        // Safety: the descriptor describes `len` bytes of a pool buffer.
        unsafe {
            std::ptr::write_bytes(addr as *mut u8, 0, NET_HDR_LEN);
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                (addr as *mut u8).add(NET_HDR_LEN),
                frame.len(),
            );
        }
        self.complete(0, u32::from(id), (frame.len() + NET_HDR_LEN) as u32);
        true
    }

    /// Send everything on the transmit queue; returns (descriptor address, frame) per packet.
    fn transmit_all(&mut self) -> Vec<(u64, Vec<u8>)> {
        let mut sent = Vec::new();
        while let Some((id, addr, len, flags)) = self.take(1) {
            assert_eq!(
                flags, 0,
                "transmit descriptors are device-readable, unchained"
            );
            // Safety: the descriptor describes `len` bytes of a pool buffer.
            let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
            assert_eq!(
                &bytes[..NET_HDR_LEN],
                &[0; NET_HDR_LEN],
                "zeroed virtio_net_hdr"
            );
            sent.push((addr, bytes[NET_HDR_LEN..].to_vec()));
            self.complete(1, u32::from(id), 0);
        }
        sent
    }
}

const OFFERED: u64 = F_MAC | F_STATUS | F_RING_EVENT_IDX | F_VERSION_1
    | (1 << 0) /* CSUM */ | (1 << 15) /* MRG_RXBUF */ | (1 << 17) /* CTRL_VQ */ | (1 << 28) /* INDIRECT */;

fn bring_up(
    features: u64,
    max_queue: u32,
    buffers: usize,
) -> (
    VirtioNet<FakeHal, FakeTransport>,
    FakeDevice,
    Rc<RefCell<DeviceState>>,
) {
    let state = Rc::new(RefCell::new(DeviceState {
        link_up: true,
        ..Default::default()
    }));
    let transport = FakeTransport {
        features,
        max_queue,
        state: state.clone(),
    };
    let nic = VirtioNet::<FakeHal, _>::with_transport(transport, host_pool(buffers)).unwrap();
    let dev = FakeDevice {
        state: state.clone(),
        next_avail: [0; 2],
    };
    (nic, dev, state)
}

fn frame(n: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| n.wrapping_add(i as u8)).collect()
}

#[test]
fn negotiates_only_what_it_needs_and_fills_the_receive_ring() {
    let (nic, dev, state) = bring_up(OFFERED, 16, 64);
    let s = state.borrow();
    assert_eq!(
        s.driver_features,
        F_MAC | F_STATUS | F_RING_EVENT_IDX | F_VERSION_1
    );
    assert!(s
        .status
        .contains(DeviceStatus::DRIVER_OK | DeviceStatus::FEATURES_OK));
    assert_eq!(s.queues[0].unwrap().0, 16);
    assert_eq!(
        s.notifies,
        [1, 0],
        "one kick for the initial receive buffers"
    );
    drop(s);
    assert_eq!(dev.avail_idx(0), 16);
    assert_eq!(nic.pool().available(), 64 - 16);
    assert_eq!(nic.mac_address(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
}

#[test]
fn receive_rewrite_transmit_from_the_same_buffer() {
    let (mut nic, mut dev, _state) = bring_up(OFFERED, 16, 64);
    for n in 0..3 {
        assert!(dev.deliver(&frame(n, 60 + usize::from(n))));
    }
    let mut burst = Burst::new();
    assert_eq!(nic.rx_burst(&mut burst), 3);
    let mut addrs = Vec::new();
    for (n, pkt) in burst.iter_mut().enumerate() {
        assert_eq!(pkt.head(), HEADROOM);
        assert_eq!(nic.pool().frame(pkt), &frame(n as u8, 60 + n)[..]);
        // The forwarder's dsr-l3 path: prepend 20 bytes in the headroom, in place.
        let (head, len) = (pkt.head() - 20, pkt.len() + 20);
        nic.pool_mut().buffer_mut(pkt)[head..head + 20].fill(0x45);
        pkt.set_frame(head, len).unwrap();
        addrs.push(nic.pool().phys_addr(pkt) + (head - NET_HDR_LEN) as u64);
    }
    assert_eq!(nic.tx_burst(&mut burst), 3);
    assert!(burst.is_empty());
    let sent = dev.transmit_all();
    assert_eq!(sent.len(), 3);
    for (n, (addr, bytes)) in sent.iter().enumerate() {
        assert_eq!(*addr, addrs[n], "sent from the receive buffer, no copy");
        assert_eq!(&bytes[..20], &[0x45; 20]);
        assert_eq!(&bytes[20..], &frame(n as u8, 60 + n)[..]);
    }
    // The receive ring was refilled; the transmitted buffers come back on the next tx burst.
    assert_eq!(nic.pool().available(), 64 - 16 - 3);
    assert_eq!(nic.tx_burst(&mut Burst::new()), 0);
    assert_eq!(nic.pool().available(), 64 - 16);
    let stats = nic.stats();
    assert_eq!((stats.rx_packets, stats.tx_packets), (3, 3));
    assert_eq!(stats.rx_bytes, 60 + 61 + 62);
    assert_eq!(stats.tx_bytes, 80 + 81 + 82);
}

#[test]
fn event_idx_suppresses_and_requests_kicks() {
    let (mut nic, mut dev, state) = bring_up(OFFERED, 16, 64);
    let send = |nic: &mut VirtioNet<FakeHal, FakeTransport>, count: usize| {
        let mut burst = Burst::new();
        for _ in 0..count {
            let mut p = nic.pool_mut().alloc().unwrap();
            p.set_frame(HEADROOM, 60).unwrap();
            burst.push_back(p).unwrap();
        }
        nic.tx_burst(&mut burst)
    };
    // Device idle, waiting for entry 0: one kick for a burst of 4.
    dev.set_avail_event(1, 0);
    assert_eq!(send(&mut nic, 4), 4);
    assert_eq!(state.borrow().notifies[1], 1);
    // Device still busy (its avail_event 0 was passed in the last burst): no kick.
    assert_eq!(send(&mut nic, 4), 4);
    assert_eq!(state.borrow().notifies[1], 1);
    // Device caught up and sleeps until entry 8 appears.
    dev.transmit_all();
    dev.set_avail_event(1, 8);
    assert_eq!(send(&mut nic, 1), 1);
    assert_eq!(state.borrow().notifies[1], 2);
}

#[test]
fn kicks_stay_correct_across_the_16_bit_wrap() {
    // Run 70 000 frames through a ring of 16, the device always asking for the next entry:
    // every burst must kick (the naive comparison stops kicking after the wrap).
    let (mut nic, mut dev, state) = bring_up(OFFERED, 16, 64);
    let mut bursts = 0;
    let mut sent = 0u32;
    while sent < 70_000 {
        dev.set_avail_event(1, dev.next_avail[1]);
        let mut burst = Burst::new();
        for _ in 0..8 {
            let mut p = nic.pool_mut().alloc().unwrap();
            p.set_frame(HEADROOM, 64).unwrap();
            burst.push_back(p).unwrap();
        }
        assert_eq!(nic.tx_burst(&mut burst), 8);
        bursts += 1;
        assert_eq!(
            state.borrow().notifies[1],
            bursts,
            "burst {bursts} must kick"
        );
        sent += dev.transmit_all().len() as u32;
    }
}

#[test]
fn without_event_idx_the_no_notify_flag_is_honoured() {
    let (mut nic, _dev, state) = bring_up(OFFERED & !F_RING_EVENT_IDX, 16, 64);
    assert_eq!(state.borrow().driver_features & F_RING_EVENT_IDX, 0);
    let mut burst = Burst::new();
    let mut p = nic.pool_mut().alloc().unwrap();
    p.set_frame(HEADROOM, 60).unwrap();
    burst.push_back(p).unwrap();
    nic.tx_burst(&mut burst);
    assert_eq!(state.borrow().notifies[1], 1);
    _dev.set_used_flags(1, 1);
    let mut p = nic.pool_mut().alloc().unwrap();
    p.set_frame(HEADROOM, 60).unwrap();
    burst.push_back(p).unwrap();
    nic.tx_burst(&mut burst);
    assert_eq!(state.borrow().notifies[1], 1, "device said NO_NOTIFY");
}

#[test]
fn full_transmit_ring_leaves_frames_in_the_burst() {
    let (mut nic, mut dev, _state) = bring_up(OFFERED, 16, 80);
    let mut burst = Burst::new();
    for _ in 0..BURST_SIZE {
        let mut p = nic.pool_mut().alloc().unwrap();
        p.set_frame(HEADROOM, 60).unwrap();
        burst.push_back(p).unwrap();
    }
    let first = burst.front().unwrap().index();
    assert_eq!(nic.tx_burst(&mut burst), 16);
    assert_eq!(burst.len(), BURST_SIZE - 16);
    assert_eq!(nic.stats().tx_ring_full, 1);
    assert_eq!(dev.transmit_all().len(), 16);
    // The leftovers go out, in order, once the device has completed the first 16.
    let next = burst.front().unwrap().index();
    assert_eq!(next, first + 16);
    assert_eq!(nic.tx_burst(&mut burst), 16);
    assert!(burst.is_empty());
}

#[test]
fn malformed_frames_are_dropped_not_panicked_on() {
    let (mut nic, mut dev, _state) = bring_up(OFFERED, 16, 64);
    // A runt from the device, and a completion naming a descriptor it does not own.
    assert!(dev.deliver(&[1, 2, 3]));
    dev.complete(0, 200, 100);
    assert!(dev.deliver(&frame(9, 64)));
    let mut burst = Burst::new();
    assert_eq!(nic.rx_burst(&mut burst), 1);
    assert_eq!(nic.stats().rx_dropped, 1);
    assert_eq!(nic.bogus_completions(), 1);
    // Too little headroom for the header, and an empty frame.
    let mut pkt: PacketBuf = burst.pop_front().unwrap();
    pkt.set_frame(4, 60).unwrap();
    burst.push_back(pkt).unwrap();
    let mut empty = nic.pool_mut().alloc().unwrap();
    empty.set_frame(HEADROOM, 0).unwrap();
    burst.push_back(empty).unwrap();
    let before = nic.pool().available();
    assert_eq!(nic.tx_burst(&mut burst), 0);
    assert_eq!(nic.stats().tx_dropped, 2);
    assert_eq!(nic.pool().available(), before + 2);
}

#[test]
fn a_burst_that_finds_every_receive_buffer_used_counts_the_ring_exhausted() {
    let (mut nic, mut dev, _state) = bring_up(OFFERED, 16, 64);
    let mut rx = Burst::new();
    for n in 0..15 {
        dev.deliver(&frame(n, 60));
    }
    assert_eq!(nic.rx_burst(&mut rx), 15);
    assert_eq!(nic.stats().rx_ring_exhausted, 0);
    while let Some(p) = rx.pop_front() {
        nic.recycle(p);
    }
    for n in 0..16 {
        dev.deliver(&frame(n, 60));
    }
    assert_eq!(nic.rx_burst(&mut rx), 16);
    assert_eq!(nic.stats().rx_ring_exhausted, 1);
}

#[test]
fn receive_survives_an_empty_pool_and_recovers() {
    // 16 receive descriptors, 18 buffers: after two frames are held by the caller the pool is empty.
    let (mut nic, mut dev, _state) = bring_up(OFFERED, 16, 18);
    let mut held = Burst::new();
    for n in 0..4 {
        dev.deliver(&frame(n, 60));
    }
    assert_eq!(nic.rx_burst(&mut held), 4);
    assert_eq!(nic.pool().available(), 0);
    assert!(nic.stats().rx_no_buffer > 0);
    // The ring has 14 buffers; give the frames back and the ring fills up again.
    while let Some(p) = held.pop_front() {
        nic.recycle(p);
    }
    assert_eq!(nic.rx_burst(&mut held), 0);
    assert_eq!(dev.avail_idx(0).wrapping_sub(dev.next_avail[0]), 16);
}

#[test]
fn link_state_and_refusals() {
    let (mut nic, _dev, state) = bring_up(OFFERED, 16, 64);
    assert!(nic.link_up());
    state.borrow_mut().link_up = false;
    assert!(!nic.link_up());

    let state = Rc::new(RefCell::new(DeviceState::default()));
    let legacy = FakeTransport {
        features: F_MAC,
        max_queue: 16,
        state: state.clone(),
    };
    let err = VirtioNet::<FakeHal, _>::with_transport(legacy, host_pool(32)).err();
    assert_eq!(err, Some(VirtioNetError::LegacyOnly));
    assert!(state.borrow().status.contains(DeviceStatus::FAILED));

    let state = Rc::new(RefCell::new(DeviceState {
        refuse_features: true,
        ..Default::default()
    }));
    let picky = FakeTransport {
        features: OFFERED,
        max_queue: 16,
        state,
    };
    let err = VirtioNet::<FakeHal, _>::with_transport(picky, host_pool(32)).err();
    assert_eq!(err, Some(VirtioNetError::FeaturesRejected));

    let state = Rc::new(RefCell::new(DeviceState::default()));
    let no_queues = FakeTransport {
        features: OFFERED,
        max_queue: 0,
        state,
    };
    let err = VirtioNet::<FakeHal, _>::with_transport(no_queues, host_pool(32)).err();
    assert_eq!(err, Some(VirtioNetError::QueueUnavailable(0)));
}

#[test]
fn a_queue_describes_only_spans_inside_the_buffer_it_holds() {
    let state = Rc::new(RefCell::new(DeviceState::default()));
    let mut transport = FakeTransport {
        features: OFFERED,
        max_queue: 2,
        state: state.clone(),
    };
    let mut queue = ring::SplitQueue::<FakeHal>::new(&mut transport, 0, false).unwrap();
    let mut dev = FakeDevice {
        state,
        next_avail: [0; 2],
    };
    let mut pool = host_pool(4);
    for (offset, len) in [
        (0, BUF_SIZE + 1),
        (BUF_SIZE, 1),
        (usize::MAX, 2),
        (1, usize::MAX),
    ] {
        let buf = pool.alloc().unwrap();
        match queue.push(&pool, buf, offset, len, true) {
            Err(ring::Refused::OutOfBounds(buf)) => pool.free(buf),
            other => panic!("{offset}+{len} accepted or refused for the wrong reason: {other:?}"),
        }
    }
    assert_eq!(queue.free_descriptors(), 2);
    // The whole buffer is a valid span; the address is the queue's own computation.
    let buf = pool.alloc().unwrap();
    let phys = pool.phys_addr(&buf);
    queue.push(&pool, buf, 0, BUF_SIZE, true).unwrap();
    let buf = pool.alloc().unwrap();
    let phys_b = pool.phys_addr(&buf);
    queue.push(&pool, buf, 100, 20, false).unwrap();
    let buf = pool.alloc().unwrap();
    match queue.push(&pool, buf, 0, 60, true) {
        Err(ring::Refused::Full(buf)) => pool.free(buf),
        other => panic!("a full queue accepted a buffer: {other:?}"),
    }
    // Without EVENT_IDX and with no NO_NOTIFY flag from the device, a publish asks for a kick.
    assert!(queue.publish());
    let (_, addr, len, flags) = dev.take(0).unwrap();
    assert_eq!((addr, len, flags), (phys, BUF_SIZE as u32, 2));
    let (_, addr, len, flags) = dev.take(0).unwrap();
    assert_eq!((addr, len, flags), (phys_b + 100, 20, 0));
    assert!(dev.take(0).is_none());
}
