//! The I/O ceiling `qemu/bench` compares the forwarder with: a kernel built with the `ceiling`
//! feature sends every received frame to [`SINK_MAC`] without looking at it, so the difference
//! between its rate and the normal image's is what classification costs. Never part of a normal
//! build.

use drivers::{Burst, Nic};

/// Where every frame goes: the MAC `qemu/bench` gives its first sink.
pub const SINK_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xbe, 0x00, 0x01];

/// Rewrite the Ethernet addresses of every frame in `rx` and queue it for transmission.
pub fn bounce<N: Nic>(nic: &mut N, rx: &mut Burst, tx: &mut Burst, mac: [u8; 6]) {
    while let Some(pkt) = rx.pop_front() {
        if pkt.len() < 14 {
            nic.recycle(pkt);
            continue;
        }
        let frame = nic.pool_mut().frame_mut(&pkt);
        frame[..6].copy_from_slice(&SINK_MAC);
        frame[6..12].copy_from_slice(&mac);
        crate::dataplane::queue_tx(nic, tx, pkt);
    }
}
