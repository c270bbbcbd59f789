//! The local stack: the balancer's own TCP/IP endpoint (management API, health checks, the
//! config fetch, ICMP echo to its address), a smoltcp `Interface` over queues of copied frames.
//!
//! That path is rare, so it copies frames in and out of small bounded queues instead of lending
//! pool buffers to smoltcp. ARP belongs to the forwarder: smoltcp only resolves for its own
//! sockets, and it must not wait for an ARP round trip of its own when the forwarder already
//! knows the peer. So the owner *tells* it about neighbours through [`LocalStack::learn`], the one
//! way in for that (a synthesized ARP reply or neighbour advertisement, bounded like every other
//! frame queued here; it speaks IPv6 too, for health checks of IPv6 backends), and
//! smoltcp's own ARP replies are dropped on the way out (the forwarder answers ARP requests).

use crate::clock;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use control::config::Config;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

/// Most frames waiting in either direction; more are dropped (the local path is not a fast path).
const QUEUE: usize = 256;

/// smoltcp's view of the NIC: queues of copied frames.
struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

/// Hands one received frame to smoltcp.
struct QueueRx(Vec<u8>);
/// Lets smoltcp write one frame into the transmit queue.
struct QueueTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for QueueRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for QueueTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        if self.0.len() < QUEUE {
            self.0.push_back(frame);
        }
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = QueueRx;
    type TxToken<'a> = QueueTx<'a>;

    fn receive(
        &mut self,
        _timestamp: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((QueueRx(frame), QueueTx(&mut self.tx)))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(QueueTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps.max_burst_size = Some(drivers::BURST_SIZE);
        caps
    }
}

/// The smoltcp interface, its sockets and its frame queues.
pub struct LocalStack {
    device: QueueDevice,
    /// The interface (its address and default route follow the config).
    pub iface: Interface,
    /// Every socket of the balancer's own: management server, health checks, fetch.
    pub sockets: SocketSet<'static>,
    mac: [u8; 6],
    own: Ipv4Addr,
    /// `interface.address6`, when set.
    own6: Option<Ipv6Addr>,
    /// Received frames refused because the queue was full.
    dropped: u64,
}

impl LocalStack {
    /// An interface with the NIC's MAC and the config's address and gateway.
    pub fn new(config: &Config, mac: [u8; 6]) -> LocalStack {
        let mut device = QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu: usize::from(config.interface.mtu),
        };
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        iface_config.random_seed = clock::rdtsc();
        let iface = Interface::new(iface_config, &mut device, now());
        let mut stack = LocalStack {
            device,
            iface,
            sockets: SocketSet::new(vec![]),
            mac,
            own: config.interface.address.address,
            own6: None,
            dropped: 0,
        };
        stack.set_interface(config);
        stack
    }

    /// Follow the config's interface address, gateway and MTU.
    pub fn set_interface(&mut self, config: &Config) {
        let own = config.interface.address;
        self.own = own.address;
        self.device.mtu = usize::from(config.interface.mtu);
        let own6 = config.interface.address6;
        self.own6 = own6.map(|p| p.address);
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            let _ = addrs.push(IpCidr::new(own.address.into(), own.len));
            if let Some(p) = own6 {
                let _ = addrs.push(IpCidr::new(p.address.into(), p.len));
            }
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(gw) = config.interface.gateway {
            let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
        }
        self.iface.routes_mut().remove_default_ipv6_route();
        if let Some(gw) = config.interface.gateway6 {
            let _ = self.iface.routes_mut().add_default_ipv6_route(gw);
        }
    }

    /// Whether a received frame waits for smoltcp.
    pub fn has_input(&self) -> bool {
        !self.device.rx.is_empty()
    }

    /// Hand smoltcp a frame addressed to the balancer; false if the queue is full (dropped).
    pub fn deliver(&mut self, frame: &[u8]) -> bool {
        if self.device.rx.len() >= QUEUE {
            self.dropped += 1;
            return false;
        }
        self.device.rx.push_back(frame.to_vec());
        true
    }

    /// Received frames dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Tell smoltcp that `ip` is at `peer`, so that its next frame to it needs no ARP (or
    /// neighbour discovery) round trip. Bounded by the receive queue like any frame (a hint that
    /// finds it full is dropped).
    pub fn learn(&mut self, ip: IpAddr, peer: [u8; 6]) {
        match (ip, self.own6) {
            (IpAddr::V4(ip), _) => {
                let hint = forwarder::arp::neighbour_hint(self.mac, self.own, ip, peer);
                self.deliver(&hint);
            }
            (IpAddr::V6(ip), Some(own6)) => {
                let hint = forwarder::nd::neighbour_hint(self.mac, own6, ip, peer);
                self.deliver(&hint);
            }
            // No IPv6 address: nothing of ours talks IPv6.
            (IpAddr::V6(_), None) => {}
        }
    }

    /// Let smoltcp process what arrived and send what its sockets queued.
    pub fn poll(&mut self) {
        self.iface.poll(now(), &mut self.device, &mut self.sockets);
    }

    /// Whether smoltcp has input waiting, or a timer due now.
    pub fn due(&mut self) -> bool {
        self.has_input()
            || self
                .iface
                .poll_delay(now(), &self.sockets)
                .is_some_and(|d| d.total_millis() == 0)
    }

    /// Take every frame smoltcp wants sent, except its ARP replies (the forwarder answers ARP).
    pub fn drain_tx(&mut self, mut send: impl FnMut(&[u8])) {
        while let Some(frame) = self.device.tx.pop_front() {
            if !forwarder::arp::is_arp_reply(&frame) {
                send(&frame);
            }
        }
    }
}

/// Local ports for the balancer's own connections: 49152..=65535 in turn, skipping the
/// management port.
pub struct Ports {
    next: u16,
    /// The management port, never used as a source port.
    pub avoid: u16,
}

impl Ports {
    /// Start at a random point of the range.
    pub fn new(avoid: u16) -> Ports {
        Ports {
            next: 49152 + (clock::rdtsc() % 16384) as u16,
            avoid,
        }
    }

    /// The next port to connect from.
    pub fn next(&mut self) -> u16 {
        loop {
            let p = self.next;
            self.next = if p == u16::MAX { 49152 } else { p + 1 };
            if p != self.avoid {
                return p;
            }
        }
    }
}

/// smoltcp's clock.
pub fn now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(clock::micros_since_boot() as i64)
}
