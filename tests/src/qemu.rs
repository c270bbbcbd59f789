//! Building images and running them under QEMU, for tests.
//!
//! Images are built in-process with the same library the `sidestep` tool uses (so a test boots
//! exactly what an operator would), and QEMU is started with the same command line as
//! `sidestep run`, only with the serial console in a file the test reads. A [`Vm`] owns its QEMU
//! process and kills it by PID when dropped, also when the test fails.
//!
//! Three choices come from the environment, so the whole suite can run on another QEMU, NIC or
//! CPU count unchanged: `SIDESTEP_QEMU` (the QEMU binary, default `qemu-system-x86_64`),
//! `SIDESTEP_NIC` (`virtio`, the default, or `igb`: QEMU's Intel 82576, QEMU 8 and later) and
//! `SIDESTEP_CPUS` (the balancers' virtual CPUs, default 1; with more, a poll loop and a NIC
//! queue on each). Tests that are about one NIC pass it with [`Vm::start_with`].

use boot::qemu::{qemu_command, Firmware, Net, RunOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The NIC model the balancer's VM gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicModel {
    /// `-device virtio-net-pci`.
    VirtioNet,
    /// `-device igb`: QEMU's Intel 82576 (QEMU 8 and later).
    Igb,
}

impl NicModel {
    /// `SIDESTEP_NIC` (`virtio` or `igb`), else virtio-net. Panics on anything else, so a typo
    /// does not silently test the default.
    pub fn from_env() -> NicModel {
        match std::env::var("SIDESTEP_NIC").as_deref() {
            Err(_) | Ok("" | "virtio" | "virtio-net") => NicModel::VirtioNet,
            Ok("igb") => NicModel::Igb,
            Ok(other) => panic!("SIDESTEP_NIC={other:?}: use virtio or igb"),
        }
    }

    /// QEMU's `-device` name for it.
    pub fn device(self) -> &'static str {
        match self {
            NicModel::VirtioNet => "virtio-net-pci",
            NicModel::Igb => "igb",
        }
    }

    /// The driver the image reports on serial (`nic: DRIVER at ...`).
    pub fn driver(self) -> &'static str {
        match self {
            NicModel::VirtioNet => "virtio",
            NicModel::Igb => "igb",
        }
    }

    /// Whether the QEMU tests use emulates this NIC.
    pub fn available(self) -> bool {
        match self {
            NicModel::VirtioNet => true,
            NicModel::Igb => qemu_has_igb(),
        }
    }

    /// For a test about this NIC: `true` (after printing `skipped: ...`) when the QEMU cannot
    /// emulate it, so the test returns early instead of failing on an old QEMU.
    pub fn skip(self, test: &str) -> bool {
        if self.available() {
            return false;
        }
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: QEMU has no {} ({} is too old; QEMU >= 8 emulates it, \
             ./qemu/setup installs one, or set SIDESTEP_QEMU)",
            self.device(),
            qemu_binary()
        );
        true
    }
}

/// The QEMU binary: `SIDESTEP_QEMU`, else `qemu-system-x86_64` from `PATH`.
pub fn qemu_binary() -> String {
    std::env::var("SIDESTEP_QEMU")
        .ok()
        .filter(|q| !q.is_empty())
        .unwrap_or_else(|| "qemu-system-x86_64".into())
}

/// Whether [`qemu_binary`] lists the `igb` device (asked once per test binary).
pub fn qemu_has_igb() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        Command::new(qemu_binary())
            .args(["-device", "help"])
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .chain(String::from_utf8_lossy(&o.stderr).lines())
                    .any(|l| l.starts_with("name \"igb\""))
            })
            .unwrap_or(false)
    })
}

/// `cmd` (the `sidestep run` command line) with [`qemu_binary`] as the program and `nic` as
/// the NIC model.
fn with_qemu_and_nic(cmd: &Command, nic: NicModel) -> Command {
    let mut out = Command::new(qemu_binary());
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        match (nic, arg.strip_prefix("virtio-net-pci,")) {
            (NicModel::VirtioNet, _) => out.arg(&*arg),
            // igb has its queues inside the device model: it takes one tap queue, and none of
            // virtio's multiqueue options.
            (NicModel::Igb, Some(rest)) => out.arg(format!(
                "{},{}",
                nic.device(),
                without(rest, &["mq=", "rss=", "vectors="])
            )),
            (NicModel::Igb, None) if arg.starts_with("tap,") => {
                out.arg(without(&arg, &["queues="]))
            }
            (NicModel::Igb, None) => out.arg(&*arg),
        };
    }
    out
}

/// A QEMU option list (`a=1,b=2`) without the options that start with one of `drop`.
fn without(options: &str, drop: &[&str]) -> String {
    options
        .split(',')
        .filter(|o| !drop.iter().any(|d| o.starts_with(d)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether QEMU gives the balancer several queues on its tap for `nic` on `cpus` CPUs: then a
/// tap made beforehand must be a `multi_queue` one (see `boot::qemu::qemu_command`).
pub fn tap_queues(nic: NicModel, cpus: u32) -> bool {
    nic == NicModel::VirtioNet && cpus > 1
}

/// Images built from one config file.
pub struct Image {
    /// The BIOS image.
    pub bios: PathBuf,
    /// The UEFI image.
    pub uefi: PathBuf,
    /// Where they were written.
    pub dir: PathBuf,
}

impl Image {
    /// Build both images for `config` into a directory of the test's own (named after the
    /// config file) under `target/test-images/`.
    pub fn build(config: &Path) -> Result<Image, String> {
        let stem = config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/test-images")
            .join(stem);
        let images = boot::image::build(config, &dir)?;
        Ok(Image {
            bios: images.bios,
            uefi: images.uefi,
            dir,
        })
    }

    /// The same images copied to `target/test-images/<name>/`, for a VM that runs beside one
    /// booted from these: QEMU locks the disk image (and the UEFI variables beside it) it
    /// writes, so two VMs cannot share one file.
    pub fn copy_as(&self, name: &str) -> Result<Image, String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/test-images")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let copy = |from: &Path| -> Result<PathBuf, String> {
            let to = dir.join(from.file_name().unwrap_or_default());
            std::fs::copy(from, &to)
                .map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
            Ok(to)
        };
        Ok(Image {
            bios: copy(&self.bios)?,
            uefi: copy(&self.uefi)?,
            dir,
        })
    }
}

/// The balancers' virtual CPUs in the end-to-end fixtures: `SIDESTEP_CPUS`, else 1. Panics on
/// anything but a positive number, so a typo does not silently test the default.
pub fn test_cpus() -> u32 {
    match std::env::var("SIDESTEP_CPUS") {
        Err(_) => 1,
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .unwrap_or_else(|| panic!("SIDESTEP_CPUS={v:?}: use a number of CPUs, 1 or more")),
    }
}

/// The accelerator tests use: `SIDESTEP_ACCEL`, else TCG (the nested KVM of CI machines runs
/// this guest slower than TCG does).
pub fn test_accel() -> String {
    std::env::var("SIDESTEP_ACCEL").unwrap_or_else(|_| "tcg".into())
}

/// A running QEMU, killed by PID on drop.
pub struct Vm {
    child: Child,
    serial: PathBuf,
    started: Instant,
    /// Time from QEMU start to the `ready` line.
    pub boot_time: Duration,
}

/// How long a boot under TCG may take before a test gives up.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

impl Vm {
    /// Boot `image` with `firmware` on `net`; if `netns` is given, QEMU runs inside that network
    /// namespace (so its tap is created there). Waits for `ready` on the serial console.
    pub fn start(
        image: &Image,
        firmware: Firmware,
        net: Net,
        mac: Option<&str>,
        netns: Option<&str>,
    ) -> Result<Vm, String> {
        Vm::start_with(image, firmware, NicModel::from_env(), net, mac, netns)
    }

    /// [`Vm::start`] with the NIC model `nic`.
    pub fn start_with(
        image: &Image,
        firmware: Firmware,
        nic: NicModel,
        net: Net,
        mac: Option<&str>,
        netns: Option<&str>,
    ) -> Result<Vm, String> {
        Vm::spawn_with(image, firmware, nic, net, mac, netns)?.until_ready()
    }

    /// Wait for `ready` on the console and note how long the boot took.
    pub fn until_ready(mut self) -> Result<Vm, String> {
        self.wait_for("ready", BOOT_TIMEOUT)?;
        self.boot_time = self.started.elapsed();
        Ok(self)
    }

    /// Start QEMU without waiting for anything.
    pub fn spawn(
        image: &Image,
        firmware: Firmware,
        net: Net,
        mac: Option<&str>,
        netns: Option<&str>,
    ) -> Result<Vm, String> {
        Vm::spawn_with(image, firmware, NicModel::from_env(), net, mac, netns)
    }

    /// [`Vm::spawn`] with the NIC model `nic`.
    pub fn spawn_with(
        image: &Image,
        firmware: Firmware,
        nic: NicModel,
        net: Net,
        mac: Option<&str>,
        netns: Option<&str>,
    ) -> Result<Vm, String> {
        Vm::spawn_with_cpus(image, firmware, nic, net, mac, netns, 1)
    }

    /// [`Vm::start_with`] on `cpus` virtual CPUs (`-smp`).
    pub fn start_with_cpus(
        image: &Image,
        firmware: Firmware,
        nic: NicModel,
        net: Net,
        cpus: u32,
    ) -> Result<Vm, String> {
        Vm::spawn_with_cpus(image, firmware, nic, net, None, None, cpus)?.until_ready()
    }

    /// [`Vm::spawn_with`] on `cpus` virtual CPUs (`-smp`).
    pub fn spawn_with_cpus(
        image: &Image,
        firmware: Firmware,
        nic: NicModel,
        net: Net,
        mac: Option<&str>,
        netns: Option<&str>,
        cpus: u32,
    ) -> Result<Vm, String> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let serial = image
            .dir
            .join(format!("serial-{}-{n}.log", std::process::id()));
        let _ = std::fs::remove_file(&serial);
        let opts = RunOptions {
            image: match firmware {
                Firmware::Bios => image.bios.clone(),
                Firmware::Uefi => image.uefi.clone(),
            },
            firmware,
            accel: test_accel(),
            memory_mib: 256,
            cpus,
            net,
            mac: mac.map(str::to_string),
            serial_file: Some(serial.clone()),
            ovmf_vars: Some(
                image
                    .dir
                    .join(format!("ovmf-vars-{}-{n}.fd", std::process::id())),
            ),
        };
        let qemu = with_qemu_and_nic(&qemu_command(&opts)?, nic);
        let mut cmd = match netns {
            Some(ns) => {
                // `ip netns exec` execs QEMU in place, so the child's PID is QEMU's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns])
                    .arg(qemu.get_program())
                    .args(qemu.get_args());
                c
            }
            None => qemu,
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", qemu_binary()))?;
        Ok(Vm {
            child,
            serial,
            started: Instant::now(),
            boot_time: Duration::ZERO,
        })
    }

    /// Wait until the serial console shows `needle`; fail if QEMU ends or time runs out.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.serial_log().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "QEMU ended ({status}) before \"{needle}\"\n--- stderr ---\n{err}\n--- serial ---\n{}",
                    self.serial_log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no \"{needle}\" within {timeout:?}\n--- serial ---\n{}",
                    self.serial_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for QEMU to end by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "QEMU still running after {timeout:?}\n{}",
                    self.serial_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// QEMU's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The serial console so far.
    pub fn serial_log(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Our own child, by PID (Child::kill sends SIGKILL to exactly this process).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
