//! Boot tests: build both images from a config and boot each under QEMU (TCG) to `ready`,
//! checking that the image logged what was baked into it; and check that a broken config blob
//! ends the image with a panic that QEMU reports as a failure. Both images boot with
//! virtio-net and with QEMU's Intel 82576 (`-device igb`; skipped on a QEMU without it). The
//! virtio-net boots run on two virtual CPUs, so they also check that the second CPU is started
//! (with either firmware); the igb boots keep one, as every other test does.

use boot::qemu::{debug_exit_status, Firmware, Net};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use tests::qemu::{Image, NicModel, Vm};

fn config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/boot.toml")
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| Image::build(&config_path()).expect("sidestep build"))
}

/// The summary the image must log: computed on the host from the same file.
fn expected_summary() -> String {
    let text = std::fs::read_to_string(config_path()).unwrap();
    boot::config_file::parse(&text).unwrap().summary()
}

/// The images for the igb runs: a copy, as the virtio runs boot the same firmware beside them.
fn igb_image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| image().copy_as("boot-igb").expect("copy the boot images"))
}

fn boots_to_ready(firmware: Firmware, nic: NicModel, cpus: u32) {
    let image = match nic {
        NicModel::Igb => igb_image(),
        NicModel::VirtioNet => image(),
    };
    let vm = Vm::start_with_cpus(image, firmware, nic, Net::Isolated, cpus)
        .unwrap_or_else(|e| panic!("{firmware:?} image on {nic:?} did not boot: {e}"));
    // The phase line follows the ready line; on a loaded host the serial console may still be
    // writing it when ready is seen, so wait until it is whole.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let log = loop {
        let log = vm.serial_log();
        let whole = log
            .split_inclusive('\n')
            .any(|l| l.contains("boot: kernel entry to ready ") && l.ends_with('\n'));
        if whole || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    eprintln!(
        "{firmware:?} on {nic:?}: ready {:.1} s after QEMU started",
        vm.boot_time.as_secs_f64()
    );
    // The summary line, exactly as the host computes it from the file...
    let summary = expected_summary();
    assert!(
        log.contains(&summary),
        "summary missing; want\n{summary}\nlog:\n{log}"
    );
    // ...and, independently of that code, the facts of the literal file.
    for fact in [
        "config v7: interface 10.66.0.2/24, 3 vips, 5 backends",
        "web 10.66.0.100:80/tcp dsr-l2 wlc [be1 10.66.0.21 w3, be2 10.66.0.22 w0]",
        "dns 10.66.0.101:53/udp dsr-l2 sh [ns1 10.66.0.31 w1]",
        "remote 10.66.0.102:*/tcp dsr-l3 maglev [far1 10.99.0.41 w1, far2 10.99.0.42 w2]",
    ] {
        assert!(log.contains(fact), "missing \"{fact}\" in:\n{log}");
    }
    assert!(log.contains("clock: TSC "), "no clock line:\n{log}");
    let chosen = format!("nic: {} at ", nic.driver());
    assert!(
        log.contains(&chosen),
        "no {chosen:?}: the kernel did not pick the {nic:?} NIC:\n{log}"
    );
    if nic == NicModel::Igb {
        assert!(log.contains("igb: mac "), "no igb bring-up line:\n{log}");
        assert!(log.contains("igb: link up"), "igb link not up:\n{log}");
    }
    assert!(
        log.contains("forwarder: 65536 flows capacity"),
        "limits.flows not applied:\n{log}"
    );
    // Every CPU QEMU was given is found in the ACPI tables and started (then parked).
    let smp = format!("smp: {cpus} cpus, {cpus} started");
    assert!(log.contains(&smp), "no {smp:?}:\n{log}");
    for index in 1..cpus {
        let up = format!("smp: cpu {index} (APIC id {index}) up");
        assert!(log.contains(&up), "no {up:?}:\n{log}");
    }
    // Each boot phase with its duration, in one line after ready.
    let phases = log
        .lines()
        .find(|l| l.contains("boot: kernel entry to ready "))
        .unwrap_or_else(|| panic!("no boot phase line:\n{log}"));
    for phase in [
        "clock ",
        "memory ",
        "pci ",
        "smp ",
        "nic ",
        "forwarder tables ",
        "control ",
    ] {
        assert!(phases.contains(phase), "no {phase:?} in {phases}");
    }
    let ready = log.lines().find(|l| l.contains("ready")).unwrap();
    assert!(ready.contains("10.66.0.2/24"), "{ready}");
    assert!(!log.contains("PANIC"), "{log}");
}

/// The images carry the kernel without its debug info, which lies beside them, and are at most
/// 2 MiB each.
#[test]
fn images_carry_a_stripped_kernel_and_the_debug_info_lies_beside_them() {
    let image = image();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let kernel = image.dir.join("sidestep-kernel");
    let debug = image.dir.join(boot::image::DEBUG_FILE);
    assert!(
        size(&debug) > 2 * size(&kernel),
        "debug info {} bytes, stripped kernel {} bytes",
        size(&debug),
        size(&kernel)
    );
    for img in [&image.bios, &image.uefi] {
        assert!(
            size(img) < size(&kernel) + size(&debug),
            "{} is {} bytes: the debug info went in",
            img.display(),
            size(img)
        );
        // Issue 22: the bootloader's padded FAT partition is cut to its files.
        assert!(
            size(img) <= 2 << 20,
            "{} is {} bytes, more than 2 MiB",
            img.display(),
            size(img)
        );
    }
}

#[test]
fn bios_image_boots_to_ready() {
    boots_to_ready(Firmware::Bios, NicModel::VirtioNet, 2);
}

#[test]
fn bios_image_boots_to_ready_on_igb() {
    if !NicModel::Igb.skip("bios_image_boots_to_ready_on_igb") {
        boots_to_ready(Firmware::Bios, NicModel::Igb, 1);
    }
}

#[test]
fn uefi_image_boots_to_ready_on_igb() {
    if !NicModel::Igb.skip("uefi_image_boots_to_ready_on_igb") {
        boots_to_ready(Firmware::Uefi, NicModel::Igb, 1);
    }
}

#[test]
fn uefi_image_boots_to_ready() {
    boots_to_ready(Firmware::Uefi, NicModel::VirtioNet, 2);
}

#[test]
fn a_broken_config_blob_panics_with_a_failure_status() {
    // Bake a blob whose body is damaged (the host tool would refuse to, so write the images
    // directly with the builder's lower half).
    let image = image();
    let dir = image.dir.join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    let mut blob = std::fs::read(image.dir.join("sidestep.cfg")).unwrap();
    let n = blob.len();
    blob[n - 3] ^= 0xff;
    blob.truncate(n - 1);
    let blob_path = dir.join("broken.cfg");
    std::fs::write(&blob_path, &blob).unwrap();
    let kernel = boot::image::build_kernel().unwrap();
    let (bios, uefi) = boot::image::write_images(&kernel, &blob_path, &dir).unwrap();
    let broken = Image { bios, uefi, dir };
    let mut vm = Vm::spawn(&broken, Firmware::Bios, Net::Isolated, None, None).unwrap();
    let code = vm.wait_exit(Duration::from_secs(120)).unwrap();
    let log = vm.serial_log();
    assert_eq!(code, Some(debug_exit_status(1)), "{log}");
    assert!(log.contains("PANIC at kernel/src/main.rs"), "{log}");
    assert!(log.contains("config: blob:"), "{log}");
    assert!(!log.contains("ready"), "{log}");
}
