//! Building disk images: compile the config to a blob, build the kernel for
//! `x86_64-unknown-none`, and write BIOS and UEFI images with the blob as the bootloader's
//! ramdisk.
//!
//! The config travels as the ramdisk, not inside the kernel binary, so changing a config only
//! rewrites the images: the kernel is compiled once and reused.

use crate::config_file;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The repository root (where the workspace `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("boot/ has a parent")
        .to_path_buf()
}

/// Build (or reuse) the kernel ELF and return its path. `SIDESTEP_KERNEL` names a prebuilt one.
pub fn build_kernel() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("SIDESTEP_KERNEL") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("SIDESTEP_KERNEL={} is not a file", path.display()))
        };
    }
    let root = repo_root();
    let target_dir = root.join("target").join("kernel");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "kernel",
            "--target",
            "x86_64-unknown-none",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        // Flags meant for the host tool must not leak into the kernel build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run cargo to build the kernel: {e}"))?;
    if !status.success() {
        return Err(format!("building the kernel failed ({status})"));
    }
    Ok(target_dir.join("x86_64-unknown-none/release/sidestep-kernel"))
}

/// What `build` wrote.
pub struct Images {
    /// The BIOS disk image.
    pub bios: PathBuf,
    /// The UEFI disk image.
    pub uefi: PathBuf,
    /// The config blob baked into both.
    pub blob: PathBuf,
}

/// Check a config file, compile it, and write both images to `out`.
pub fn build(config_path: &Path, out: &Path) -> Result<Images, String> {
    let started = Instant::now();
    eprintln!("[1/4] checking {}", config_path.display());
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let config =
        config_file::parse(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    eprintln!("      {}", config.summary());
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let blob = out.join("sidestep.cfg");
    std::fs::write(&blob, config.to_blob())
        .map_err(|e| format!("cannot write {}: {e}", blob.display()))?;
    eprintln!("[2/4] building the kernel (cargo build -p kernel --target x86_64-unknown-none)");
    let kernel = build_kernel()?;
    let (bios, uefi) = write_images(&kernel, &blob, out)?;
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(Images { bios, uefi, blob })
}

/// Write `out/sidestep-bios.img` and `out/sidestep-uefi.img` from a kernel ELF and a blob (the
/// ramdisk). The blob is not checked here: `build` checks it, and tests use this to bake in
/// deliberately broken ones.
pub fn write_images(kernel: &Path, blob: &Path, out: &Path) -> Result<(PathBuf, PathBuf), String> {
    let kernel = &strip_kernel(kernel, out)?;
    let mut builder = bootloader::DiskImageBuilder::new(kernel.to_path_buf());
    builder.set_ramdisk(blob.to_path_buf());
    let mut boot_config = bootloader::BootConfig::default();
    // Drawing the bootloader's log on the frame buffer halves boot time under TCG.
    boot_config.frame_buffer_logging = false;
    boot_config.log_level = bootloader_boot_config::LevelFilter::Warn;
    builder.set_boot_config(&boot_config);
    let bios = out.join("sidestep-bios.img");
    let uefi = out.join("sidestep-uefi.img");
    eprintln!("[3/4] writing {}", bios.display());
    builder
        .create_bios_image(&bios)
        .map_err(|e| format!("cannot write the BIOS image: {e:#}"))?;
    eprintln!("[4/4] writing {}", uefi.display());
    builder
        .create_uefi_image(&uefi)
        .map_err(|e| format!("cannot write the UEFI image: {e:#}"))?;
    // The bootloader pads its FAT partition by one to two MiB; cut both images to their files.
    crate::compact::compact_bios(&bios)?;
    crate::compact::compact_uefi(&uefi)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "      sizes: {} {} bytes, {} {} bytes (kernel {} bytes; its debug info in {})",
        file_name(&bios),
        size(&bios),
        file_name(&uefi),
        size(&uefi),
        size(kernel),
        DEBUG_FILE
    );
    Ok((bios, uefi))
}

/// Beside the images: the kernel's debug info, for symbolising a panic's addresses
/// (`addr2line -e sidestep-kernel.debug ADDR`); the images carry the kernel without it.
pub const DEBUG_FILE: &str = "sidestep-kernel.debug";

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Write `out/sidestep-kernel` (the ELF without debug info, about a fifth of its size) and
/// `out/sidestep-kernel.debug` (only the debug info) from `kernel`, with the toolchain's
/// llvm-objcopy (the llvm-tools component rust-toolchain.toml installs). Returns the stripped
/// kernel's path.
fn strip_kernel(kernel: &Path, out: &Path) -> Result<PathBuf, String> {
    let objcopy = objcopy()?;
    let stripped = out.join("sidestep-kernel");
    let debug = out.join(DEBUG_FILE);
    for (args, what) in [
        (vec!["--only-keep-debug"], &debug),
        (vec!["--strip-debug"], &stripped),
    ] {
        let status = Command::new(&objcopy)
            .args(args)
            .arg(kernel)
            .arg(what)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", objcopy.display()))?;
        if !status.success() {
            return Err(format!(
                "{} {} failed ({status})",
                objcopy.display(),
                kernel.display()
            ));
        }
    }
    Ok(stripped)
}

/// The toolchain's llvm-objcopy: `<sysroot>/lib/rustlib/<host>/bin/llvm-objcopy`.
fn objcopy() -> Result<PathBuf, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let ask = |args: &[&str]| -> Result<String, String> {
        let o = Command::new(&rustc)
            .current_dir(repo_root())
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {rustc}: {e}"))?;
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let sysroot = ask(&["--print", "sysroot"])?;
    let host = ask(&["-vV"])?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or("rustc -vV names no host")?;
    let path = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objcopy");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: install it with `rustup component add llvm-tools-preview` \
             (qemu/setup does)",
            path.display()
        ))
    }
}
