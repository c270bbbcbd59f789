//! The hardware side of the poll loop's idle policy: halting the core for a nap. Whether to nap
//! at all (`interface.poll`, and under a hypervisor or not), when, and for how long is decided by
//! `control::nap`; this file detects the hypervisor, arms the timer and halts.
//!
//! A nap arms the local APIC timer in one-shot mode and halts. Interrupts are enabled only inside
//! `sti; hlt` (atomic: an interrupt that is already pending ends the `hlt`), so no handler ever
//! runs in the middle of the loop. Every vector from 32 up has a handler that acknowledges the
//! local APIC and returns; the legacy PICs are remapped above the exceptions and masked, and
//! LINT0/LINT1 are masked, so only our timer can fire.

use x86_64::instructions::interrupts;
use x86_64::instructions::port::Port;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame};

use crate::{apic, clock};
use control::config::Polling;
pub use control::nap::Mode;
use control::nap::{Choice, Naps, NAP_MAX_US, NAP_MIN_US, SPIN_US};

/// The vector of our timer.
const TIMER_VECTOR: u8 = 0xf0;
/// Spurious-interrupt vector (its handler must not send EOI; ours only returns).
const SPURIOUS_VECTOR: u8 = 0xff;

static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

/// The idle policy and its bookkeeping.
pub struct Idle {
    mode: Mode,
    /// Local APIC timer ticks per microsecond (divide by 1).
    ticks_per_us: u64,
    /// When to nap and for how long, in TSC cycles.
    naps: Naps,
    /// TSC cycles spent halted: for the stats line.
    pub napped_cycles: u64,
}

impl Idle {
    /// Choose the mode from the config's `interface.poll` (`auto`: `Nap` under a hypervisor,
    /// `Busy` on bare metal) and, for `Nap`, set up the interrupt table and the local APIC
    /// timer. Falls back to `Busy` if the APIC cannot be used.
    pub fn init(policy: Polling) -> Idle {
        Self::init_on(policy, true)
    }

    /// [`init`](Self::init) on an application processor: its interrupt table is its own
    /// (`smp`) and the PICs were masked by the boot CPU.
    pub fn init_ap(policy: Polling) -> Idle {
        Self::init_on(policy, false)
    }

    fn init_on(policy: Polling, boot_cpu: bool) -> Idle {
        let mut idle = Idle {
            mode: Mode::Busy,
            ticks_per_us: 0,
            naps: Naps::new(SPIN_US * clock::tsc_hz() / 1_000_000, clock::rdtsc()),
            napped_cycles: 0,
        };
        let choice = Choice::of(policy, under_hypervisor());
        if choice.mode() == Mode::Busy {
            log::info!("idle: busy polling ({})", choice.why());
            return idle;
        }
        match setup_apic(boot_cpu) {
            Ok(ticks_per_us) => {
                idle.ticks_per_us = ticks_per_us;
                idle.mode = Mode::Nap;
                log::info!(
                    "idle: {}: nap {}..{} us after {} us without work (APIC timer {} MHz)",
                    choice.why(),
                    NAP_MIN_US,
                    NAP_MAX_US,
                    SPIN_US,
                    ticks_per_us
                );
            }
            Err(why) => log::warn!("idle: busy polling ({why})"),
        }
        idle
    }

    /// The loop did something this round: received `frames`, or transmitted.
    #[inline]
    pub fn worked(&mut self, tsc: u64, frames: usize) {
        self.naps.worked(tsc, frames);
    }

    /// The loop found nothing to do this round: nap if that has lasted long enough.
    #[inline]
    pub fn nothing(&mut self, tsc: u64) {
        if self.mode == Mode::Nap && self.naps.should_nap(tsc) {
            self.nap();
        }
    }

    fn nap(&mut self) {
        let nap_us = self.naps.nap_us();
        let start = clock::rdtsc();
        let count = (nap_us * self.ticks_per_us).clamp(1, u64::from(u32::MAX)) as u32;
        // One-shot, unmasked; the count starts it. Interrupts stay disabled until `sti; hlt`, so
        // an expiry before the `hlt` stays pending and ends it at once.
        apic::write(apic::REG_LVT_TIMER, u32::from(TIMER_VECTOR));
        apic::write(apic::REG_TIMER_INITIAL, count);
        interrupts::enable_and_hlt();
        interrupts::disable();
        // Woken early by something else: stop the timer so it cannot fire outside a nap.
        apic::write(apic::REG_TIMER_INITIAL, 0);
        let end = clock::rdtsc();
        self.napped_cycles += end.wrapping_sub(start);
        self.naps.napped(end);
    }

    /// The mode in effect.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// How long the local APIC timer is counted against the TSC when no CPUID leaf states its
/// rate: at a bus clock of 100 MHz or more, 2 ms give 200 000 ticks, a part in 10^5.
const CALIBRATE_US: u64 = 2_000;

/// CPUID leaf 1, ECX bit 31: set by hypervisors (KVM, QEMU TCG, Hyper-V, VMware, Xen HVM).
pub fn under_hypervisor() -> bool {
    let ecx = core::arch::x86_64::__cpuid(1).ecx;
    ecx & (1 << 31) != 0
}

/// Whether the CPU is emulated by QEMU's TCG (no hardware acceleration): its hypervisor leaf,
/// CPUID 0x4000_0000, carries the vendor signature "TCGTCGTCGTCG" (QEMU's `tcg-cpuid`, on by
/// default). There a prefetch instruction does nothing and every instruction costs host time.
pub fn emulated_cpu() -> bool {
    if !under_hypervisor() {
        return false;
    }
    let r = core::arch::x86_64::__cpuid(0x4000_0000);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&r.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&r.ecx.to_le_bytes());
    vendor[8..].copy_from_slice(&r.edx.to_le_bytes());
    &vendor == b"TCGTCGTCGTCG"
}

/// Load the interrupt table: page faults (zero-on-touch memory, see `memory`) and, for naps,
/// every vector from 32 up. Called at boot before the flow tables are allocated.
pub fn load_idt() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        install_vectors(&mut idt);
        idt
    });
    idt.load();
}

/// The entries every CPU's interrupt table needs: page faults (zero-on-touch memory is touched
/// first by whichever core owns it) and the naps' timer and spurious vectors.
pub fn install_vectors(idt: &mut InterruptDescriptorTable) {
    idt.page_fault.set_handler_fn(crate::memory::page_fault);
    for entry in idt.slice_mut(32..=255) {
        entry.set_handler_fn(acknowledge);
    }
    idt[SPURIOUS_VECTOR].set_handler_fn(spurious);
}

/// Interrupt table, PICs, local APIC and its timer; returns timer ticks per microsecond.
fn setup_apic(boot_cpu: bool) -> Result<u64, &'static str> {
    interrupts::disable();
    if boot_cpu {
        load_idt();
        mask_pics();
    }
    apic::init()?;
    apic::write(apic::REG_LVT_LINT0, apic::LVT_MASKED);
    apic::write(apic::REG_LVT_LINT1, apic::LVT_MASKED);
    apic::write(apic::REG_LVT_ERROR, apic::LVT_MASKED);
    apic::write(
        apic::REG_LVT_TIMER,
        apic::LVT_MASKED | u32::from(TIMER_VECTOR),
    );
    apic::write(apic::REG_SVR, (1 << 8) | u32::from(SPURIOUS_VECTOR));
    // Divide by 1: the timer counts at the APIC's bus clock.
    apic::write(apic::REG_TIMER_DIVIDE, 0b1011);
    // Send any EOI a firmware interrupt might still be waiting for.
    apic::write(apic::REG_EOI, 0);
    if let Some(hz) = clock::hypervisor_apic_hz() {
        return Ok((hz / 1_000_000).max(1));
    }
    // Calibrate against the TSC over CALIBRATE_US (the timer runs while masked).
    apic::write(apic::REG_TIMER_INITIAL, u32::MAX);
    clock::delay_us(CALIBRATE_US as u32);
    let left = apic::read(apic::REG_TIMER_CURRENT);
    apic::write(apic::REG_TIMER_INITIAL, 0);
    let ticks = u64::from(u32::MAX - left);
    if ticks < CALIBRATE_US {
        return Err("the local APIC timer does not count");
    }
    Ok((ticks / CALIBRATE_US).max(1))
}

/// Remap the two 8259s to vectors 0x20..0x2f (away from the exceptions) and mask every line.
fn mask_pics() {
    let mut cmd1 = Port::<u8>::new(0x20);
    let mut data1 = Port::<u8>::new(0x21);
    let mut cmd2 = Port::<u8>::new(0xa0);
    let mut data2 = Port::<u8>::new(0xa1);
    // Safety: the PC's legacy interrupt controllers; the standard ICW1..ICW4 sequence, then
    // OCW1 masking all lines. Nothing else in the image uses them.
    unsafe {
        cmd1.write(0x11);
        cmd2.write(0x11);
        data1.write(0x20);
        data2.write(0x28);
        data1.write(0x04);
        data2.write(0x02);
        data1.write(0x01);
        data2.write(0x01);
        data1.write(0xff);
        data2.write(0xff);
    }
}

extern "x86-interrupt" fn acknowledge(_frame: InterruptStackFrame) {
    apic::write(apic::REG_EOI, 0);
}

extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {}
