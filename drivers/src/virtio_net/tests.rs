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

/// Virtqueues the fake device has (4 pairs and the control queue fit).
const QUEUES: usize = 16;

#[derive(Default)]
struct DeviceState {
    driver_features: u64,
    status: DeviceStatus,
    /// (size, descriptors, driver area, device area) per queue.
    queues: [Option<(u16, u64, u64, u64)>; QUEUES],
    notifies: [u32; QUEUES],
    /// `max_virtqueue_pairs` in the configuration.
    max_pairs: u16,
    /// Control commands received (header and data, as the driver laid them out).
    commands: Vec<Vec<u8>>,
    /// Control commands (MQ class) the device answers with VIRTIO_NET_ERR.
    refuse_commands: Vec<u8>,
    /// Next available-ring entry of the control queue.
    ctrl_next: u16,
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
        if s.driver_features & mq::F_CTRL_VQ != 0 && queue == 2 * s.max_pairs {
            s.serve_control(queue);
        }
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
        // QEMU's layout: mac, status, max_virtqueue_pairs, mtu, speed... then the RSS limits
        // (40-byte key, 128 entries, every hash type including the IPv6 extension ones).
        let mut config = [0u8; 20];
        config[..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        config[6] = u8::from(self.state.borrow().link_up);
        config[8..10].copy_from_slice(&self.state.borrow().max_pairs.to_le_bytes());
        config[12] = 40;
        config[14..16].copy_from_slice(&128u16.to_le_bytes());
        config[16..20].copy_from_slice(&0x1ffu32.to_le_bytes());
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

impl DeviceState {
    /// Handle the control queue's new commands at once, within the notify, as QEMU does: read
    /// each chain's device-readable bytes, write the ack into its writable byte.
    fn serve_control(&mut self, q: u16) {
        let (size, desc, driver, device) = self.queues[usize::from(q)].expect("control queue");
        // Safety: test memory from FakeHal, identity mapped; the driver laid out the ring.
        unsafe {
            while self.ctrl_next != ((driver + 2) as *const u16).read_volatile() {
                let slot = u64::from(self.ctrl_next & (size - 1));
                self.ctrl_next = self.ctrl_next.wrapping_add(1);
                let head = ((driver + 4 + 2 * slot) as *const u16).read_volatile();
                let (mut id, mut command, mut ack) = (head, Vec::new(), None);
                loop {
                    let d = desc + 16 * u64::from(id);
                    let addr = (d as *const u64).read_volatile();
                    let len = ((d + 8) as *const u32).read_volatile() as usize;
                    let flags = ((d + 12) as *const u16).read_volatile();
                    if flags & 2 == 0 {
                        assert!(ack.is_none(), "readable after writable descriptor");
                        command
                            .extend_from_slice(std::slice::from_raw_parts(addr as *const u8, len));
                    } else {
                        assert_eq!(len, 1, "the ack is one byte");
                        ack = Some(addr as *mut u8);
                    }
                    if flags & 1 == 0 {
                        break;
                    }
                    id = ((d + 14) as *const u16).read_volatile();
                }
                let refused = command.len() >= 2
                    && command[0] == mq::CTRL_MQ
                    && self.refuse_commands.contains(&command[1]);
                ack.expect("an ack descriptor").write(u8::from(refused));
                self.commands.push(command);
                let idx = ((device + 2) as *mut u16).read_volatile();
                let used = u64::from(idx & (size - 1));
                ((device + 4 + 8 * used) as *mut u32).write_volatile(u32::from(head));
                ((device + 8 + 8 * used) as *mut u32).write_volatile(1);
                ((device + 2) as *mut u16).write_volatile(idx.wrapping_add(1));
            }
        }
    }
}

/// The device side of the rings: reads descriptors and the available ring, writes the used ring.
struct FakeDevice {
    state: Rc<RefCell<DeviceState>>,
    /// Next available-ring index the device will consume, per queue.
    next_avail: [u16; QUEUES],
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
        self.deliver_to(0, frame)
    }

    /// Receive `frame` into the next buffer of receive queue `q`.
    fn deliver_to(&mut self, q: usize, frame: &[u8]) -> bool {
        let Some((id, addr, len, flags)) = self.take(q) else {
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
        self.complete(q, u32::from(id), (frame.len() + NET_HDR_LEN) as u32);
        true
    }

    /// Send everything on the transmit queue; returns (descriptor address, frame) per packet.
    fn transmit_all(&mut self) -> Vec<(u64, Vec<u8>)> {
        self.transmit_all_from(1)
    }

    /// Send everything on transmit queue `q`.
    fn transmit_all_from(&mut self, q: usize) -> Vec<(u64, Vec<u8>)> {
        let mut sent = Vec::new();
        while let Some((id, addr, len, flags)) = self.take(q) {
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
            self.complete(q, u32::from(id), 0);
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
        next_avail: [0; QUEUES],
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
        s.notifies[..2],
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
        next_avail: [0; QUEUES],
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

/// Records which virtqueues were rung, in order.
#[derive(Clone, Default)]
struct FakeDoorbells(std::sync::Arc<std::sync::Mutex<Vec<u16>>>);

struct FakeDoorbell {
    /// The virtqueue this doorbell belongs to.
    queue: u16,
    rung: FakeDoorbells,
}

impl Doorbell for FakeDoorbell {
    fn ring(&mut self, queue: u16) {
        assert_eq!(queue, self.queue, "a queue rang another queue's doorbell");
        self.rung.0.lock().unwrap().push(queue);
    }
}

type Queues = Vec<VirtioQueue<FakeHal, FakeTransport, FakeDoorbell>>;

const KEY: [u8; RSS_KEY_LEN] = {
    let mut key = [0; RSS_KEY_LEN];
    let mut i = 0;
    while i < RSS_KEY_LEN {
        key[i] = 0xa0 + i as u8;
        i += 1;
    }
    key
};

/// A device with `max_pairs` queue pairs offering `features`, brought up with `pools` pools of
/// 64 buffers; the device refuses the MQ commands in `refuse`.
fn bring_up_queues(
    features: u64,
    max_pairs: u16,
    pools: usize,
    refuse: &[u8],
) -> (
    Result<Queues, VirtioNetError>,
    FakeDevice,
    Rc<RefCell<DeviceState>>,
    FakeDoorbells,
) {
    let state = Rc::new(RefCell::new(DeviceState {
        link_up: true,
        max_pairs,
        refuse_commands: refuse.to_vec(),
        ..Default::default()
    }));
    let transport = FakeTransport {
        features,
        max_queue: 16,
        state: state.clone(),
    };
    let rung = FakeDoorbells::default();
    let bells = rung.clone();
    let queues = VirtioNet::<FakeHal, _>::with_transport_queues(
        transport,
        (0..pools).map(|_| host_pool(64)).collect(),
        &KEY,
        |queue| {
            Ok(FakeDoorbell {
                queue,
                rung: bells.clone(),
            })
        },
    );
    let dev = FakeDevice {
        state: state.clone(),
        next_avail: [0; QUEUES],
    };
    (queues, dev, state, rung)
}

const MQ_OFFERED: u64 = OFFERED | mq::F_MQ | mq::F_RSS;
const SINGLE_QUEUE_FEATURES: u64 = F_MAC | F_STATUS | F_RING_EVENT_IDX | F_VERSION_1;

/// `virtio_net_rss_config` for 2 pairs as 5.1.6.5.7.1 lays it out, written out by hand.
fn expected_rss_command() -> Vec<u8> {
    let mut c = vec![4, 1]; // class VIRTIO_NET_CTRL_MQ, command RSS_CONFIG
    c.extend_from_slice(&[0x3f, 0, 0, 0]); // hash_types: IPv4, TCPv4, UDPv4, IPv6, TCPv6, UDPv6
    c.extend_from_slice(&[127, 0]); // indirection_table_mask: 128 entries
    c.extend_from_slice(&[0, 0]); // unclassified_queue
    for i in 0..128 {
        c.extend_from_slice(&[i % 2, 0]);
    }
    c.extend_from_slice(&[2, 0]); // max_tx_vq
    c.push(40); // hash_key_length
    c.extend_from_slice(&KEY);
    c
}

#[test]
fn two_queue_pairs_come_up_with_rss_programmed_byte_exact() {
    // Four pools, a device with two pairs: two handles, the extra pools dropped.
    let (queues, dev, state, _) = bring_up_queues(MQ_OFFERED, 2, 4, &[]);
    let queues = queues.unwrap();
    assert_eq!(queues.len(), 2);
    assert_eq!(
        queues.iter().map(|q| q.rx_queue()).collect::<Vec<_>>(),
        [0, 2]
    );
    let s = state.borrow();
    assert_eq!(
        s.driver_features,
        SINGLE_QUEUE_FEATURES | mq::F_CTRL_VQ | mq::F_MQ | mq::F_RSS
    );
    assert!(s.status.contains(DeviceStatus::DRIVER_OK));
    // receiveq1, transmitq1, receiveq2, transmitq2, controlq at 2 * max_virtqueue_pairs.
    assert!(s.queues[..5].iter().all(Option::is_some));
    assert!(s.queues[5..].iter().all(Option::is_none));
    assert_eq!(s.commands, [expected_rss_command()]);
    drop(s);
    assert_eq!((dev.avail_idx(0), dev.avail_idx(2)), (16, 16));
    // The command buffer went back to the first pool: 64 less the 16 receive buffers.
    assert_eq!(queues[0].pool().available(), 64 - 16);
}

#[test]
fn rss_hash_types_and_key_are_cut_to_what_the_device_supports() {
    let limits = mq::RssLimits {
        max_key: 20,
        max_table: 6,
        hash_types: 0x7, // IPv4 only
    };
    let mut data = [0u8; 400];
    let len = mq::rss_config(3, &KEY, limits, &mut data);
    let mut expected = vec![0x07, 0, 0, 0, 3, 0, 0, 0];
    for i in 0..4 {
        expected.extend_from_slice(&[i % 3, 0]); // 6 rounds down to 4 entries
    }
    expected.extend_from_slice(&[3, 0, 20]);
    expected.extend_from_slice(&KEY[..20]);
    assert_eq!(&data[..len], &expected[..]);
}

#[test]
fn without_rss_the_pairs_are_enabled_with_vq_pairs_set() {
    let (queues, _dev, state, _) = bring_up_queues(OFFERED | mq::F_MQ, 4, 3, &[]);
    assert_eq!(queues.unwrap().len(), 3);
    let s = state.borrow();
    assert_eq!(
        s.driver_features,
        SINGLE_QUEUE_FEATURES | mq::F_CTRL_VQ | mq::F_MQ
    );
    assert_eq!(s.commands, [vec![4, 0, 3, 0]]);
    // Three pairs used, but the control queue follows all four the device has.
    assert!(s.queues[6].is_none() && s.queues[8].is_some());
}

#[test]
fn frames_on_queue_1_are_received_by_handle_1_only() {
    let (queues, mut dev, state, rung) = bring_up_queues(MQ_OFFERED, 2, 2, &[]);
    let mut queues = queues.unwrap();
    assert!(dev.deliver_to(2, &frame(7, 60)));
    let mut burst = Burst::new();
    assert_eq!(queues[0].rx_burst(&mut burst), 0);
    assert_eq!(queues[1].rx_burst(&mut burst), 1);
    assert_eq!(
        queues[1].pool().frame(burst.front().unwrap()),
        &frame(7, 60)[..]
    );
    assert_eq!(queues[1].stats().rx_packets, 1);
    assert_eq!(queues[0].stats().rx_packets, 0);
    // Sent back through handle 1: on transmitq2, with handle 1's own doorbell, not the transport.
    let notifies_before = state.borrow().notifies;
    rung.0.lock().unwrap().clear();
    dev.set_avail_event(3, 0);
    assert_eq!(queues[1].tx_burst(&mut burst), 1);
    assert_eq!(*rung.0.lock().unwrap(), [3]);
    assert_eq!(state.borrow().notifies, notifies_before);
    assert_eq!(dev.transmit_all_from(3).len(), 1);
    assert!(dev.transmit_all_from(1).is_empty());
    // Either handle reads the link state.
    state.borrow_mut().link_up = false;
    assert!(!queues[1].link_up());
    assert!(!queues[0].link_up());
}

#[test]
fn a_refused_rss_configuration_falls_back_to_vq_pairs_set() {
    let (queues, _dev, state, _) = bring_up_queues(MQ_OFFERED, 2, 2, &[mq::MQ_RSS_CONFIG]);
    assert_eq!(queues.unwrap().len(), 2);
    let s = state.borrow();
    assert_eq!(s.commands, [expected_rss_command(), vec![4, 0, 2, 0]]);
    assert!(s.status.contains(DeviceStatus::DRIVER_OK));
}

#[test]
fn a_refused_vq_pairs_set_is_an_error_and_resets_the_device() {
    let refuse = [mq::MQ_RSS_CONFIG, mq::MQ_VQ_PAIRS_SET];
    let (queues, _dev, state, _) = bring_up_queues(MQ_OFFERED, 2, 2, &refuse);
    assert_eq!(
        queues.err(),
        Some(VirtioNetError::CommandRefused(4, mq::MQ_VQ_PAIRS_SET))
    );
    assert_eq!(state.borrow().status, DeviceStatus::empty());
    assert_eq!(state.borrow().commands.len(), 2);
}

#[test]
fn one_pool_negotiates_no_control_queue() {
    let (queues, dev, state, rung) = bring_up_queues(MQ_OFFERED, 4, 1, &[]);
    let mut queues = queues.unwrap();
    assert_eq!(queues.len(), 1);
    let s = state.borrow();
    assert_eq!(s.driver_features, SINGLE_QUEUE_FEATURES);
    assert!(s.commands.is_empty());
    assert!(s.queues[2..].iter().all(Option::is_none));
    drop(s);
    assert_eq!(dev.avail_idx(0), 16);
    assert_eq!(queues[0].pool().available(), 64 - 16);
    // Transmit rings transmitq1's doorbell.
    let mut burst = Burst::new();
    let mut p = queues[0].pool_mut().alloc().unwrap();
    p.set_frame(HEADROOM, 60).unwrap();
    burst.push_back(p).unwrap();
    dev.set_avail_event(1, 0);
    assert_eq!(queues[0].tx_burst(&mut burst), 1);
    assert_eq!(*rung.0.lock().unwrap(), [1]);
}

#[test]
fn a_device_without_mq_gets_one_pair_whatever_the_pools() {
    let (queues, _dev, state, _) = bring_up_queues(OFFERED | mq::F_RSS, 4, 2, &[]);
    assert_eq!(queues.unwrap().len(), 1);
    assert_eq!(state.borrow().driver_features, SINGLE_QUEUE_FEATURES);
}
