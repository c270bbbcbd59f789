//! The other CPUs: counted from the ACPI MADT and started, each on its own stack with its own
//! GDT, the application processors' IDT and its local APIC enabled. Each then waits for the
//! boot CPU to hand it a job ([`dispatch`]): the poll loop of one receive queue (`cores`), or
//! nothing, when the NIC has fewer queues than there are CPUs. A CPU without a job halts with
//! interrupts off, so only an NMI or INIT reaches it, and it touches no shared state again.
//!
//! Start-up follows the universal sequence (Intel SDM vol. 3A, 10.4.4.1 / the MP spec, B.4):
//! INIT, 10 ms, SIPI, 200 us, a second SIPI if the CPU has not answered. A CPU leaves SIPI in
//! real mode at the 4 KiB page the SIPI's vector names, so a trampoline is copied to a free page
//! below 1 MiB (the bootloader never allocates there) and identity-mapped, because paging is
//! switched on while it still runs from that page. CPUs are started one at a time: they share the
//! trampoline and its parameter block.
//!
//! With one CPU (every `-smp 1` guest) nothing is touched but the ACPI tables, which are read.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use core::sync::atomic::{fence, AtomicU32, Ordering};
use drivers::acpi;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::registers::control::{Cr0, Cr3, Cr4};
use x86_64::registers::model_specific::{Efer, EferFlags, Msr};
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame};

use crate::{apic, clock, memory};

/// Stack of each application processor: a poll loop's, as the boot CPU's (the kernel's 512 KiB).
const AP_STACK: usize = 512 * 1024;

const SPURIOUS_VECTOR: u32 = 0xff;
/// ICR: delivery mode INIT (101b) / start-up (110b), level assert.
const ICR_INIT: u32 = 0x0000_4500;
const ICR_STARTUP: u32 = 0x0000_4600;
/// ICR delivery status (xAPIC only): the previous IPI is still being sent.
const ICR_PENDING: u32 = 1 << 12;

/// The index of the last application processor that reached `ap_main` (the BSP waits for it).
static ARRIVED: AtomicU32 = AtomicU32::new(0);

// The trampoline: real mode -> 32-bit protected mode -> long mode -> `ap_main`. It is assembled
// here but runs only as a copy at the start of a page below 1 MiB, so it addresses its own data
// relative to that page: in real mode through CS (= page >> 4), afterwards through EBX/RBX
// (= the page's address). Addresses that depend on the page (the GDT base, the two far-jump
// targets) are written into its parameter block by the BSP, with everything else the AP needs.
core::arch::global_asm!(
    r#"
    .pushsection .rodata.sidestep_ap_trampoline, "a"
    .balign 16
    .global sidestep_ap_trampoline
    .global sidestep_ap_32
    .global sidestep_ap_64
    .global sidestep_ap_params
    .global sidestep_ap_gdt
    .global sidestep_ap_trampoline_end
    .set AP_GDTR, sidestep_ap_params - sidestep_ap_trampoline
    .set AP_FAR32, sidestep_ap_params - sidestep_ap_trampoline + 8
    .set AP_FAR64, sidestep_ap_params - sidestep_ap_trampoline + 16
    .set AP_CR3, sidestep_ap_params - sidestep_ap_trampoline + 24
    .set AP_CR4, sidestep_ap_params - sidestep_ap_trampoline + 32
    .set AP_EFER, sidestep_ap_params - sidestep_ap_trampoline + 40
    .set AP_CR0, sidestep_ap_params - sidestep_ap_trampoline + 48
    .set AP_STACK, sidestep_ap_params - sidestep_ap_trampoline + 56
    .set AP_ENTRY, sidestep_ap_params - sidestep_ap_trampoline + 64
    .set AP_ARG, sidestep_ap_params - sidestep_ap_trampoline + 72
    .code16
sidestep_ap_trampoline:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    xor %ebx, %ebx
    mov %ax, %bx
    shl $4, %ebx
    lgdtl AP_GDTR
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl *AP_FAR32
    .code32
sidestep_ap_32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov AP_CR3(%ebx), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    mov AP_EFER(%ebx), %eax
    xor %edx, %edx
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0
    ljmpl *AP_FAR64(%ebx)
    .code64
sidestep_ap_64:
    xor %eax, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov AP_CR4(%rbx), %rax
    mov %rax, %cr4
    mov AP_CR0(%rbx), %rax
    mov %rax, %cr0
    mov AP_STACK(%rbx), %rsp
    mov AP_ARG(%rbx), %rdi
    mov AP_ENTRY(%rbx), %rax
    call *%rax
2:
    cli
    hlt
    jmp 2b
    .balign 16
sidestep_ap_params:
    .word sidestep_ap_gdt_end - sidestep_ap_gdt - 1
    .long 0
    .word 0
    .long 0
    .word 0x08
    .word 0
    .long 0
    .word 0x18
    .word 0
    .quad 0, 0, 0, 0, 0, 0, 0
    .balign 16
sidestep_ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00209a0000000000
sidestep_ap_gdt_end:
sidestep_ap_trampoline_end:
    .popsection
"#,
    options(att_syntax)
);

extern "C" {
    static sidestep_ap_trampoline: u8;
    static sidestep_ap_32: u8;
    static sidestep_ap_64: u8;
    static sidestep_ap_params: u8;
    static sidestep_ap_gdt: u8;
    static sidestep_ap_trampoline_end: u8;
}

/// Byte offsets in the trampoline's parameter block (see the `.word`/`.quad`s above).
mod param {
    pub const GDT_BASE: usize = 2;
    pub const FAR32: usize = 8;
    pub const FAR64: usize = 16;
    pub const CR3: usize = 24;
    pub const CR4: usize = 32;
    pub const EFER: usize = 40;
    pub const CR0: usize = 48;
    pub const STACK: usize = 56;
    pub const ENTRY: usize = 64;
    pub const ARG: usize = 72;
}

/// What `start` found and did, for the boot log.
pub struct Cpus {
    /// Enabled CPUs in the MADT (1 if the tables could not be read).
    pub found: usize,
    /// CPUs running, the boot CPU included.
    pub running: usize,
}

/// Count the CPUs and start up to `limit` of them (the boot CPU included; `None`: all).
pub fn start(rsdp: Option<u64>, regions: &MemoryRegions, limit: Option<usize>) -> Cpus {
    let single = Cpus {
        found: 1,
        running: 1,
    };
    let Some(rsdp) = rsdp else {
        log::warn!("smp: the bootloader found no ACPI tables; using the boot CPU only");
        return single;
    };
    let offset = memory::physical_offset();
    // The bootloader maps physical memory from 0 to the end of the highest region of its map
    // (ACPI tables are in that map), so a table pointer beyond it is refused, not followed.
    let mapped_end = regions.iter().map(|r| r.end).max().unwrap_or(0);
    let read = move |phys: u64, len: usize| -> Option<&'static [u8]> {
        if phys.checked_add(len as u64)? > mapped_end {
            return None;
        }
        // Safety: [phys, phys + len) lies below `mapped_end`, all of which the bootloader maps
        // at `offset`; firmware does not change the ACPI tables while the kernel runs, and they
        // are only read.
        Some(unsafe { core::slice::from_raw_parts((offset + phys) as *const u8, len) })
    };
    let madt = match acpi::madt(rsdp, read) {
        Ok(m) => m,
        Err(e) => {
            log::warn!("smp: {e}; using the boot CPU only");
            return single;
        }
    };
    let found = madt.enabled();
    if limit.unwrap_or(found).min(found) <= 1 {
        return Cpus { found, running: 1 };
    }
    match start_aps(&madt, regions, limit) {
        Ok(started) => {
            RUNNING.store(1 + started as u32, Ordering::Relaxed);
            Cpus {
                found,
                running: 1 + started,
            }
        }
        Err(why) => {
            log::warn!("smp: {why}; using the boot CPU only");
            Cpus { found, running: 1 }
        }
    }
}

/// Start the application processors `cores` allows; how many answered.
fn start_aps(
    madt: &acpi::Madt,
    regions: &MemoryRegions,
    cores: Option<usize>,
) -> Result<usize, &'static str> {
    init_apic_access(madt.local_apic)?;
    let own_id = apic_id();
    let page = trampoline_page(regions).ok_or("no free page below 1 MiB for the trampoline")?;
    // The page stays mapped afterwards: a CPU that answers too late still runs from it.
    memory::identity_map(page)?;
    install_trampoline(page);
    log::info!("smp: boot CPU has APIC id {own_id}; start-up code at {page:#x}");
    let mut started = 0;
    for (index, cpu) in (1u32..).zip(madt.to_start(own_id, cores)) {
        if !start_one(page, index, cpu.apic_id) {
            // It may still arrive late and read the parameter block, so it is left as it is and
            // no other CPU is started with it.
            log::warn!("smp: cpu {index} (APIC id {}) did not answer", cpu.apic_id);
            break;
        }
        started += 1;
    }
    Ok(started)
}

/// The lowest free 4 KiB page in [4 KiB, 1 MiB) (a SIPI vector names a page number below 256;
/// page 0 holds the real-mode interrupt table that firmware may still read).
fn trampoline_page(regions: &MemoryRegions) -> Option<u64> {
    regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .filter_map(|r| {
            let start = r.start.max(0x1000).next_multiple_of(0x1000);
            (start + 0x1000 <= r.end.min(0x10_0000)).then_some(start)
        })
        .min()
}

/// Copy the trampoline to `page` (identity-mapped) and fill in what depends on where it lies.
fn install_trampoline(page: u64) {
    let base = &raw const sidestep_ap_trampoline as u64;
    let len = &raw const sidestep_ap_trampoline_end as u64 - base;
    let at = |sym: u64| sym - base;
    let params = at(&raw const sidestep_ap_params as u64) as usize;
    let gdt = page + at(&raw const sidestep_ap_gdt as u64);
    let ap32 = page + at(&raw const sidestep_ap_32 as u64);
    let ap64 = page + at(&raw const sidestep_ap_64 as u64);
    let dst = page as *mut u8;
    assert!(len <= 4096, "the trampoline fits in its page");
    // Safety: `page` is a free, identity-mapped RAM page below 1 MiB that nothing else uses
    // (the bootloader allocates nothing there and the heap is elsewhere); the trampoline is
    // no longer than a page (checked above), and the source lies in the kernel's rodata.
    unsafe {
        core::ptr::copy_nonoverlapping(base as *const u8, dst, len as usize);
        (dst.add(params + param::GDT_BASE) as *mut u32).write_unaligned(gdt as u32);
        (dst.add(params + param::FAR32) as *mut u32).write_unaligned(ap32 as u32);
        (dst.add(params + param::FAR64) as *mut u32).write_unaligned(ap64 as u32);
    }
}

/// Start application processor `index` (APIC id `apic_id`); whether it reached `ap_main`.
fn start_one(page: u64, index: u32, apic_id: u32) -> bool {
    let base = &raw const sidestep_ap_trampoline as u64;
    let params = (&raw const sidestep_ap_params as u64 - base) as usize;
    let stack = Box::leak(vec![0u8; AP_STACK].into_boxed_slice());
    let top = (stack.as_ptr() as u64 + AP_STACK as u64) & !0xf;
    // Long mode wants LME; NXE because the kernel's page tables use the no-execute bit; SCE is
    // harmless. LMA is set by the CPU itself.
    let efer = Efer::read()
        & (EferFlags::LONG_MODE_ENABLE
            | EferFlags::NO_EXECUTE_ENABLE
            | EferFlags::SYSTEM_CALL_EXTENSIONS);
    let (frame, cr3_flags) = Cr3::read();
    let cr3 = frame.start_address().as_u64() | cr3_flags.bits();
    let values = [
        (param::CR3, cr3),
        (param::CR4, Cr4::read_raw()),
        (param::EFER, efer.bits()),
        (param::CR0, Cr0::read_raw()),
        (param::STACK, top),
        (param::ENTRY, ap_main as *const () as u64),
        (param::ARG, u64::from(index)),
    ];
    for (off, value) in values {
        // Safety: the parameter block lies inside the trampoline copied to `page` (identity-
        // mapped); no AP runs it now (the previous one arrived, or none was started).
        unsafe { ((page as usize + params + off) as *mut u64).write_volatile(value) };
    }
    // The AP reads these after the IPIs; stores are not reordered with the later ICR write on
    // x86, and the fence keeps the compiler from doing it.
    fence(Ordering::SeqCst);
    let vector = (page >> 12) as u32;
    send_ipi(apic_id, ICR_INIT);
    clock::delay_us(10_000);
    for _ in 0..2 {
        send_ipi(apic_id, ICR_STARTUP | vector);
        clock::delay_us(200);
        if ARRIVED.load(Ordering::Acquire) == index {
            return true;
        }
    }
    // Under an emulator on a busy host a vCPU can take a while to be scheduled: wait up to 1 s.
    for _ in 0..10_000 {
        if ARRIVED.load(Ordering::Acquire) == index {
            return true;
        }
        clock::delay_us(100);
    }
    false
}

/// Where an application processor arrives from the trampoline, on its own stack, with paging
/// on the kernel's page tables, interrupts off, and the trampoline's GDT still loaded.
extern "C" fn ap_main(index: u64) -> ! {
    // Its own GDT (the trampoline's page is not meant to stay in use) and the shared IDT.
    let mut table = GlobalDescriptorTable::new();
    let code = table.append(Descriptor::kernel_code_segment());
    let data = table.append(Descriptor::kernel_data_segment());
    let gdt: &'static GlobalDescriptorTable = Box::leak(Box::new(table));
    gdt.load();
    // Safety: the selectors name descriptors of the GDT just loaded, which lives forever.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
    }
    AP_IDT.call_once(ap_idt).load();
    enable_local_apic();
    log::info!("smp: cpu {index} (APIC id {}) up", apic_id());
    ARRIVED.store(index as u32, Ordering::Release);
    // Wait for the boot CPU to say what this CPU does: a poll loop, or nothing. It says so for
    // every CPU it started, once the NIC is up (well under a second).
    let job = loop {
        if let Some(job) = take_job(index as u32) {
            break job;
        }
        core::hint::spin_loop();
    };
    if let Some(job) = job {
        job();
    }
    loop {
        // Interrupts stay off: only an NMI (which returns) or INIT ends the halt.
        x86_64::instructions::hlt();
    }
}

/// What an application processor runs (a poll loop, which never returns).
pub type Job = Box<dyn FnOnce() + Send>;

/// Per started CPU (by index), what the boot CPU decided: `Some(None)` is parked.
static JOBS: spin::Mutex<Vec<(u32, Option<Job>)>> = spin::Mutex::new(Vec::new());
/// Whether the boot CPU has decided for every CPU (so the waiting ones stop asking).
static DISPATCHED: AtomicU32 = AtomicU32::new(0);
/// CPUs running, the boot CPU included (set by `start`).
static RUNNING: AtomicU32 = AtomicU32::new(1);

fn take_job(index: u32) -> Option<Option<Job>> {
    if DISPATCHED.load(Ordering::Acquire) == 0 {
        return None;
    }
    let mut jobs = JOBS.lock();
    let at = jobs.iter().position(|(i, _)| *i == index)?;
    Some(jobs.swap_remove(at).1)
}

/// CPUs running, the boot CPU included.
pub fn running() -> usize {
    RUNNING.load(Ordering::Relaxed) as usize
}

/// Give `jobs[i]` to the (i+1)th CPU started, and park the CPUs left over. Call it once.
pub fn dispatch(jobs: Vec<Job>) {
    let running = RUNNING.load(Ordering::Relaxed);
    let mut jobs = jobs.into_iter();
    {
        let mut table = JOBS.lock();
        for index in 1..running {
            table.push((index, jobs.next()));
        }
    }
    DISPATCHED.store(1, Ordering::Release);
    let parked = jobs.len();
    if parked > 0 {
        log::warn!("smp: {parked} poll loops found no CPU to run on");
    }
}

static AP_IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

/// The application processors' interrupt table: a fault is reported and halts that CPU (rather
/// than a triple fault resetting the machine); an NMI returns to the halt.
fn ap_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    crate::idle::install_vectors(&mut idt);
    idt.non_maskable_interrupt.set_handler_fn(nmi);
    idt.general_protection_fault
        .set_handler_fn(general_protection);
    idt.double_fault.set_handler_fn(double_fault);
    idt
}

extern "x86-interrupt" fn nmi(_frame: InterruptStackFrame) {}

extern "x86-interrupt" fn general_protection(frame: InterruptStackFrame, code: u64) {
    halt_on_fault(format_args!(
        "general protection fault {code:#x} at {:?}",
        frame.instruction_pointer
    ));
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, _code: u64) -> ! {
    halt_on_fault(format_args!(
        "double fault at {:?}",
        frame.instruction_pointer
    ))
}

fn halt_on_fault(what: core::fmt::Arguments) -> ! {
    log::error!(
        "smp: application processor (APIC id {}): {what}; halting it",
        apic_id()
    );
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Map the xAPIC registers (or note x2APIC mode, where they are MSRs). The boot CPU's mode is
/// what every AP will use.
fn init_apic_access(madt_address: u64) -> Result<(), &'static str> {
    // The MSR is what this CPU uses; the MADT's address is only a cross-check.
    if let Some(phys) = apic::init()? {
        if phys != madt_address {
            log::warn!("smp: local APIC at {phys:#x}, the MADT says {madt_address:#x}");
        }
    }
    Ok(())
}

/// An AP comes out of INIT with its APIC in xAPIC mode: switch it to the BSP's mode, then
/// software-enable it with every local interrupt masked.
fn enable_local_apic() {
    if !apic::xapic() {
        let mut msr = Msr::new(apic::IA32_APIC_BASE);
        // Safety: setting the enable and x2APIC bits is the architectural switch to x2APIC
        // mode (from xAPIC mode, as after INIT); the BSP runs in x2APIC mode, so it exists.
        unsafe {
            let base = msr.read();
            msr.write(base | apic::APIC_BASE_ENABLE | apic::APIC_BASE_X2APIC);
        }
    }
    apic::write(apic::REG_LVT_TIMER, apic::LVT_MASKED);
    apic::write(apic::REG_LVT_LINT0, apic::LVT_MASKED);
    apic::write(apic::REG_LVT_LINT1, apic::LVT_MASKED);
    apic::write(apic::REG_LVT_ERROR, apic::LVT_MASKED);
    apic::write(apic::REG_SVR, (1 << 8) | SPURIOUS_VECTOR);
}

/// This CPU's local APIC id.
fn apic_id() -> u32 {
    if apic::xapic() {
        apic::read(apic::REG_ID) >> 24
    } else {
        apic::read(apic::REG_ID)
    }
}

/// Send an IPI to the CPU with APIC id `dest`, and wait until the xAPIC has sent it.
fn send_ipi(dest: u32, icr_low: u32) {
    if apic::xapic() {
        apic::write(apic::REG_ICR_HIGH, dest << 24);
        apic::write(apic::REG_ICR_LOW, icr_low);
        for _ in 0..1_000 {
            if apic::read(apic::REG_ICR_LOW) & ICR_PENDING == 0 {
                break;
            }
            clock::delay_us(10);
        }
    } else {
        let mut icr = Msr::new(0x830);
        // Safety: in x2APIC mode the ICR is this one 64-bit MSR, destination in the high half.
        unsafe { icr.write((u64::from(dest) << 32) | u64::from(icr_low)) };
    }
}
