//! NIC bring-up: choose the data NIC among the PCI functions, give it the packet pool, start its
//! driver, and hand it to the data plane.

use crate::clock;
use crate::dataplane::Dataplane;
use crate::hal::KernelHal;
use crate::memory;
use crate::smp;
use crate::worker::Worker;
use alloc::boxed::Box;
use alloc::vec::Vec;
use control::config::Config;
use drivers::pci::{PciFunction, PortConfigSpace};
use drivers::{
    igb, ixgbe, Igb, IgbConfig, Ixgbe, IxgbeConfig, MmioRegisters, Nic, PacketPool, VirtioNet,
};
use log::info;

/// Bytes of packet buffers (2 KiB each) given to the NIC.
const POOL_BYTES: usize = 8 << 20;

/// Which driver a PCI function needs, if it is a NIC Sidestep drives.
fn driver_of(f: &PciFunction) -> Option<&'static str> {
    match f.kind() {
        "virtio-net" => Some("virtio"),
        "82599 (ixgbe)" => Some("ixgbe"),
        _ if igb::supports(f.vendor, f.device) => Some("igb"),
        _ => None,
    }
}

/// Choose the data NIC: the one the config names (driver or PCI address), else the first NIC
/// Sidestep has a driver for.
fn choose_nic<'a>(
    config: &Config,
    functions: &'a [PciFunction],
) -> Option<(&'a PciFunction, &'static str)> {
    let wanted = config.interface.nic.as_deref();
    functions.iter().find_map(|f| {
        let driver = driver_of(f)?;
        let chosen = match wanted {
            None => true,
            Some(name @ ("virtio" | "ixgbe" | "igb")) => name == driver,
            Some(addr) => {
                control::config::parse_pci_address(addr)
                    == Some((f.address.bus, f.address.device, f.address.function))
            }
        };
        chosen.then_some((f, driver))
    })
}

/// Bring up the data NIC the config asks for (or the first usable one) and forward forever, with
/// one poll loop per receive queue: as many queues as CPUs run, up to what the NIC offers.
pub fn start(config: &Config, functions: &[PciFunction], heap_bytes: u64) -> ! {
    let Some((function, driver)) = choose_nic(config, functions) else {
        panic!(
            "no data NIC: no PCI device is {} (Sidestep drives virtio-net, the Intel 82599 and the Intel 82576/i350/i210/i211)",
            config
                .interface
                .nic
                .as_deref()
                .unwrap_or("a NIC it has a driver for")
        );
    };
    // ixgbe has one queue here; the others get a pool per CPU.
    let queues = if driver == "ixgbe" { 1 } else { smp::running() };
    let mut pools: Vec<PacketPool> = (0..queues).map(|_| packet_pool()).collect();
    crate::phases::end("packet pool");
    info!(
        "nic: {driver} at {} ({:04x}:{:04x}, {})",
        function.address,
        function.vendor,
        function.device,
        function.kind()
    );
    if driver == "ixgbe" {
        let bar = match ixgbe::pci_bring_up(&PortConfigSpace, function.address) {
            Ok(b) => b,
            Err(e) => panic!("82599 at {}: {e}", function.address),
        };
        let Some(regs) = memory::map_mmio(bar.phys, bar.size as usize) else {
            panic!(
                "82599 at {}: cannot map BAR0 at {:#x}",
                function.address, bar.phys
            );
        };
        // Safety: `regs` maps exactly BAR0 of this 82599, uncached, for the image's lifetime,
        // and nothing else accesses it.
        let regs = unsafe { MmioRegisters::new(regs, bar.size as usize) };
        match Ixgbe::<KernelHal>::new(regs, pools.remove(0), IxgbeConfig::new(clock::delay_us)) {
            Ok(nic) => run(nic, Vec::new(), config, heap_bytes),
            Err(e) => panic!("82599 at {}: {e}", function.address),
        }
    }
    if driver == "igb" {
        let bar = match igb::pci_bring_up(&PortConfigSpace, function.address) {
            Ok(b) => b,
            Err(e) => panic!("igb at {}: {e}", function.address),
        };
        let Some(regs) = memory::map_mmio(bar.phys, bar.size as usize) else {
            panic!(
                "igb at {}: cannot map BAR0 at {:#x}",
                function.address, bar.phys
            );
        };
        // Safety: `regs` maps exactly BAR0 of this igb NIC, uncached, for the image's lifetime,
        // and nothing else accesses it.
        let regs = unsafe { MmioRegisters::new(regs, bar.size as usize) };
        let igb_config = IgbConfig {
            max_queues: igb::queues_of(function.device),
            ..IgbConfig::new(clock::delay_us)
        };
        match Igb::<KernelHal>::new_queues(regs, pools, igb_config, &forwarder::shard::RSS_KEY) {
            Ok(mut nics) => {
                let first = nics.remove(0);
                run(first, workers(nics), config, heap_bytes)
            }
            Err(e) => panic!("igb at {}: {e}", function.address),
        }
    }
    match VirtioNet::<KernelHal>::new_queues(
        &PortConfigSpace,
        function.address,
        pools,
        &forwarder::shard::RSS_KEY,
    ) {
        Ok(mut nics) => {
            let first = nics.remove(0);
            run(first, workers(nics), config, heap_bytes)
        }
        Err(e) => panic!("virtio-net at {}: {e}", function.address),
    }
}

/// A packet pool of [`POOL_BYTES`].
fn packet_pool() -> PacketPool {
    let Some((phys, virt)) = memory::alloc_dma_unzeroed(POOL_BYTES) else {
        panic!("cannot allocate {} MiB of packet buffers", POOL_BYTES >> 20);
    };
    // Safety: the region comes from `alloc_dma_unzeroed`: physically contiguous, page-aligned, mapped
    // read-write, used for nothing else, and never freed (the NIC lives as long as the image).
    match unsafe { PacketPool::new(virt, phys, POOL_BYTES) } {
        Ok(p) => p,
        Err(e) => panic!("packet pool: {e:?}"),
    }
}

/// Builds the poll loop of one more queue, given the config and its share of the flows.
type MakeWorker = Box<dyn FnOnce(&Config, usize) -> smp::Job>;

/// The loops of `nics`, cores 1 and up.
fn workers<R: Nic + Send + 'static>(nics: Vec<R>) -> Vec<MakeWorker> {
    nics.into_iter()
        .enumerate()
        .map(|(i, nic)| {
            Box::new(move |config: &Config, flows: usize| {
                let worker = Worker::new(i + 1, nic, config, flows);
                Box::new(move || worker.start()) as smp::Job
            }) as MakeWorker
        })
        .collect()
}

/// Forward over `first` on this CPU (core 0, with the control plane) and run each of `rest` on
/// a CPU of its own; the flow-table capacity is split evenly between the loops.
fn run<F: Nic>(first: F, rest: Vec<MakeWorker>, config: &Config, heap_bytes: u64) -> ! {
    let loops = 1 + rest.len();
    crate::cores::init(loops, config);
    let flows = (crate::dataplane::flow_capacity(config, heap_bytes) / loops).max(1);
    let jobs: Vec<smp::Job> = rest.into_iter().map(|make| make(config, flows)).collect();
    info!(
        "cores: {loops} poll loops ({} cpus running)",
        smp::running()
    );
    let mut dataplane = Dataplane::new(first, config, flows);
    dataplane.publish();
    smp::dispatch(jobs);
    dataplane.run()
}
