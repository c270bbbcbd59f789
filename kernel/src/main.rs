//! The Sidestep image: boots through `bootloader_api`, brings up memory, the console, the clock,
//! PCI and the data NIC, reads the config baked in as the ramdisk, and runs the poll loop.
//!
//! One poll loop runs per receive queue, each on its own CPU (`smp`) with its own forwarder, so
//! no lock is taken per packet. The boot CPU's loop also runs the control plane (local stack,
//! management, health checks, BGP, VRRP); the others follow it between bursts (`cores`).
#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod apic;
mod bfd;
mod bgp;
#[cfg(feature = "ceiling")]
mod ceiling;
mod clock;
mod controller;
mod cores;
mod dataplane;
mod entropy;
mod fetch;
mod hal;
mod health;
mod idle;
mod local;
mod memory;
mod nic;
mod phases;
mod serial;
mod server;
mod smp;
mod statslog;
mod vrrp;
mod worker;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{entry_point, BootInfo};
use control::config::Config;
use core::panic::PanicInfo;
use drivers::pci::{self, PortConfigSpace};
use log::{error, info};

/// Ask the bootloader to map all physical memory (for DMA addresses and the heap) and give the
/// kernel a roomy stack.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.kernel_stack_size = 512 * 1024;
    config
};

entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    serial::init();
    info!("sidestep {} starting", env!("CARGO_PKG_VERSION"));
    let (hz, source) = clock::init();
    info!(
        "clock: TSC {}.{:03} MHz ({}; invariant TSC: {})",
        hz / 1_000_000,
        (hz / 1000) % 1000,
        source.describe(),
        if clock::invariant_tsc() { "yes" } else { "no" }
    );
    phases::end("clock");
    let mem = match memory::init(
        boot_info.physical_memory_offset.into_option(),
        &boot_info.memory_regions,
    ) {
        Ok(m) => m,
        Err(e) => panic!("memory: {e:?}"),
    };
    idle::load_idt();
    info!(
        "memory: {} MiB usable, heap {} MiB at {:#x}",
        mem.usable >> 20,
        mem.heap >> 20,
        mem.heap_phys
    );
    phases::end("memory");

    let mut functions = alloc::vec::Vec::new();
    pci::scan(&PortConfigSpace, |f| functions.push(f));
    info!("pci: {} functions", functions.len());
    for f in &functions {
        info!("pci: {f}");
    }
    phases::end("pci");

    let config = match load_config(boot_info) {
        Ok(c) => c,
        Err(e) => panic!("config: {e}"),
    };
    info!("{}", config.summary());
    phases::end("config");

    let cpus = smp::start(
        boot_info.rsdp_addr.into_option(),
        &boot_info.memory_regions,
        config.interface.cores.map(usize::from),
    );
    info!("smp: {} cpus, {} started", cpus.found, cpus.running);
    phases::end("smp");

    nic::start(&config, &functions, mem.heap)
}

/// The config blob the image builder placed as the bootloader's ramdisk.
fn load_config(boot_info: &BootInfo) -> Result<Config, alloc::string::String> {
    let addr = boot_info.ramdisk_addr.into_option().ok_or_else(|| {
        alloc::string::String::from("no config baked in (the image has no ramdisk)")
    })?;
    let len = boot_info.ramdisk_len as usize;
    // Safety: the bootloader loaded the ramdisk at this virtual address with this length and
    // keeps it mapped; it is only read, and nothing writes it.
    let blob = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    Config::from_blob(blob).map_err(|e| alloc::format!("{e}"))
}

/// End QEMU with `(code << 1) | 1` if its isa-debug-exit device is present; on hardware, nothing.
fn debug_exit(code: u32) {
    let mut port = x86_64::instructions::port::Port::<u32>::new(0xf4);
    // Safety: port 0xf4 is QEMU's isa-debug-exit when configured; elsewhere it is unassigned and
    // a write is ignored.
    unsafe { port.write(code) };
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    serial::emergency_write(format_args!("\n"));
    match info.location() {
        Some(l) => serial::emergency_write(format_args!(
            "PANIC at {}:{}:{}: {}\n",
            l.file(),
            l.line(),
            l.column(),
            info.message()
        )),
        None => serial::emergency_write(format_args!("PANIC: {}\n", info.message())),
    }
    error!("halting");
    debug_exit(1);
    loop {
        x86_64::instructions::hlt();
    }
}
