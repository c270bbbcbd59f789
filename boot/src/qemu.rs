//! Booting an image under QEMU, the way the README's "Booting an image by hand" does it.
//!
//! The accelerator is a choice: `--accel kvm|tcg|auto` or `SIDESTEP_ACCEL`. `auto` takes KVM only
//! where `/dev/kvm` exists and the CPU does not report running under a hypervisor: nested KVM
//! (as on our build machines) is far slower than TCG for this guest, so it is not a default.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which firmware path boots the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// Legacy BIOS (SeaBIOS): `sidestep-bios.img`.
    Bios,
    /// UEFI (OVMF as pflash): `sidestep-uefi.img`.
    Uefi,
}

/// The network the guest's virtio-net NIC is plugged into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Net {
    /// A tap device that already exists or that QEMU creates (`ifname`), no scripts.
    Tap(String),
    /// QEMU's user-mode network, restricted: the guest cannot reach anything outside.
    Isolated,
}

/// Everything `qemu_command` needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The disk image.
    pub image: PathBuf,
    /// BIOS or UEFI.
    pub firmware: Firmware,
    /// `kvm`, `tcg` or `auto`.
    pub accel: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs (`-smp`); 1 leaves QEMU's default, which is one.
    pub cpus: u32,
    /// The NIC's network.
    pub net: Net,
    /// The NIC's MAC address, if fixed.
    pub mac: Option<String>,
    /// Where the serial console goes: `None` is the terminal (stdio), else a file.
    pub serial_file: Option<PathBuf>,
    /// A writable copy of the OVMF variable store (UEFI only); made next to the image if unset.
    pub ovmf_vars: Option<PathBuf>,
}

/// Resolve `auto` to `kvm` or `tcg`.
pub fn resolve_accel(accel: &str) -> String {
    if accel != "auto" {
        return accel.to_string();
    }
    let kvm = Path::new("/dev/kvm").exists();
    let nested = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| {
            c.lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
        })
        .unwrap_or(true);
    if kvm && !nested { "kvm" } else { "tcg" }.to_string()
}

/// The OVMF code image of the installed `ovmf` package.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The OVMF variable store template.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The full QEMU command line for `opts`.
pub fn qemu_command(opts: &RunOptions) -> Result<Command, String> {
    let accel = resolve_accel(&opts.accel);
    if accel != "kvm" && accel != "tcg" {
        return Err(format!(
            "accelerator \"{accel}\" is not one of kvm, tcg, auto"
        ));
    }
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", &accel]);
    if accel == "kvm" {
        cmd.args(["-cpu", "host"]);
    }
    cmd.args(["-machine", "q35", "-m", &opts.memory_mib.to_string()]);
    if opts.cpus > 1 {
        cmd.args(["-smp", &opts.cpus.to_string()]);
    }
    cmd.args(["-vga", "std", "-display", "none", "-no-reboot"]);
    match &opts.serial_file {
        None => cmd.args(["-serial", "stdio"]),
        Some(f) => cmd.arg("-serial").arg(format!("file:{}", f.display())),
    };
    cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    if opts.firmware == Firmware::Uefi {
        let vars = match &opts.ovmf_vars {
            Some(v) => v.clone(),
            None => opts.image.with_extension("ovmf-vars.fd"),
        };
        if !vars.exists() {
            std::fs::copy(OVMF_VARS, &vars).map_err(|e| {
                format!("cannot copy {OVMF_VARS} (is the ovmf package installed?): {e}")
            })?;
        }
        cmd.arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
        cmd.arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    cmd.arg("-drive")
        .arg(format!("format=raw,file={}", opts.image.display()));
    let mac = opts
        .mac
        .as_ref()
        .map(|m| format!(",mac={m}"))
        .unwrap_or_default();
    // On a tap, one queue pair per CPU: the image runs a poll loop on each, and programs the
    // device's receive-side scaling so that every packet of a flow reaches one of them. (A
    // pre-made tap must then be a `multi_queue` one; user-mode networking has one queue.)
    let queues = match opts.net {
        Net::Tap(_) => opts.cpus.max(1),
        Net::Isolated => 1,
    };
    let multi = if queues > 1 {
        // Vectors: one per queue of each pair, the control queue and configuration changes.
        format!(",mq=on,rss=on,vectors={}", 2 * queues + 2)
    } else {
        String::new()
    };
    cmd.arg("-device")
        .arg(format!("virtio-net-pci,netdev=n0{mac}{multi}"));
    match &opts.net {
        Net::Tap(name) => {
            let q = if queues > 1 {
                format!(",queues={queues}")
            } else {
                String::new()
            };
            cmd.arg("-netdev").arg(format!(
                "tap,id=n0,ifname={name},script=no,downscript=no{q}"
            ))
        }
        Net::Isolated => cmd.args(["-netdev", "user,id=n0,restrict=on"]),
    };
    Ok(cmd)
}

/// QEMU's exit status when the kernel wrote `code` to the isa-debug-exit port.
pub fn debug_exit_status(code: u32) -> i32 {
    ((code << 1) | 1) as i32
}
