//! The one trait every NIC driver implements, in the shape of ixy's: receive a burst, transmit a
//! burst, MAC address, link state, counters.
//!
//! Bursts exist so that the per-packet cost stays small: a driver writes its doorbell (the
//! 82599's tail register, virtio's notify) once per burst, not once per frame, and it reclaims
//! transmitted buffers in groups. The driver owns its [`PacketPool`]; the kernel reaches frame
//! bytes through [`Nic::pool_mut`].

use crate::pool::{PacketBuf, PacketPool};

/// How many frames one burst holds.
pub const BURST_SIZE: usize = 32;

/// A burst of frames: filled by [`Nic::rx_burst`], drained by [`Nic::tx_burst`].
pub type Burst = heapless::Deque<PacketBuf, BURST_SIZE>;

/// Counters a driver keeps. They only grow (wrapping at 2^64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames handed to the caller by `rx_burst`.
    pub rx_packets: u64,
    /// Bytes of those frames (Ethernet header to end of payload, no FCS).
    pub rx_bytes: u64,
    /// Frames the driver received but discarded (runt, oversize, malformed completion).
    pub rx_dropped: u64,
    /// Times the receive ring could not be refilled because the pool was empty.
    pub rx_no_buffer: u64,
    /// Bursts that found every buffer of the receive ring filled: the device had nowhere to
    /// put a frame, so frames that arrived meanwhile may have been lost before the driver saw
    /// them (the balancer's own receive path was dropping, whatever the senders did).
    pub rx_ring_exhausted: u64,
    /// Frames queued for transmission by `tx_burst`.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames `tx_burst` refused as malformed (empty, too long, too little headroom) and freed.
    pub tx_dropped: u64,
    /// Times `tx_burst` returned with frames left over because the transmit ring was full.
    pub tx_ring_full: u64,
}

/// A network interface driven by polling.
pub trait Nic {
    /// Move up to `rx`'s free room of received frames into `rx` (each starting at
    /// [`crate::pool::HEADROOM`]) and refill the receive ring from the pool. Returns how many
    /// frames were added. Never blocks; never panics on what the device wrote.
    fn rx_burst(&mut self, rx: &mut Burst) -> usize;

    /// Queue the frames in `tx` for transmission, front first, each sent as
    /// `buffer[head..head + len]` of its own buffer; notify the device once. First reclaims the
    /// buffers of frames the device has finished sending (back into the pool).
    ///
    /// Frames that do not fit in the ring stay in `tx`, in order (retry later or free them);
    /// malformed frames (empty, `head < TX_MIN_HEAD`, longer than the device takes) are freed
    /// and counted in `tx_dropped`. Returns how many frames were queued.
    fn tx_burst(&mut self, tx: &mut Burst) -> usize;

    /// The interface's MAC address.
    fn mac_address(&self) -> [u8; 6];

    /// Whether the link is up (reads the device; call it rarely, not per burst).
    fn link_up(&mut self) -> bool;

    /// The driver's counters.
    fn stats(&self) -> NicStats;

    /// The pool the driver receives into, to read and rewrite frames and to allocate buffers for
    /// locally generated frames.
    fn pool(&self) -> &PacketPool;

    /// The pool, writable.
    fn pool_mut(&mut self) -> &mut PacketPool;

    /// Give back a buffer the caller is done with (a dropped or locally consumed frame).
    fn recycle(&mut self, buf: PacketBuf) {
        self.pool_mut().free(buf);
    }
}
