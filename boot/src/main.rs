//! `sidestep`: the host tool that checks configs, builds images and boots them.

use boot::qemu::{Firmware, Net, RunOptions};
use boot::signing::{self, SigningKey};
use boot::status::{self, Status};
use boot::{client, config_file, image, qemu};
use control::config::Config;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
sidestep: build and run Sidestep DSR load-balancer images

usage:
  sidestep check FILE                      validate a config file
  sidestep build --config FILE --out DIR   write DIR/sidestep-bios.img and DIR/sidestep-uefi.img
  sidestep run (--config FILE | --image FILE) [options]
        --out DIR          where `run --config` builds (default: out)
        --uefi             boot the UEFI image with OVMF (default: BIOS)
        --accel A          kvm | tcg | auto (default: $SIDESTEP_ACCEL or auto:
                           kvm on a bare-metal host with /dev/kvm, else tcg)
        --tap NAME         plug the NIC into tap NAME (default: an isolated user network)
        --mac MAC          the NIC's MAC address
        --memory MIB       guest memory (default 256)
        --cpus N           virtual CPUs (default 1)
  sidestep backend-setup --vip ADDR (--mode dsr-l2 | --mode dsr-l3 --local ADDR)
                                           print what a Linux backend needs (IPv4 or IPv6
                                           VIP; --local is of the VIP's family)
  sidestep keygen --out FILE [--force]     new signing key: private key to FILE (mode 0600),
                                           public key (for [management] pubkey) printed last
  sidestep sign --key FILE [--out OUT] CONFIG
                                           check CONFIG and write its signed blob to OUT
                                           (default: CONFIG with the extension .signed)
  sidestep push --key FILE --to HOST:PORT CONFIG
                                           sign CONFIG and PUT it to a running image
                                           (CONFIG may be a .signed file; then --key is optional)
  sidestep stats --from HOST:PORT [--json] [--watch SECS]
                                           a running image's VIPs, backends and counters
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("check") => check(&args[1..]),
        Some("build") => build(&args[1..]),
        Some("run") => run(&args[1..]),
        Some("backend-setup") => backend_setup(&args[1..]),
        Some("keygen") => keygen(&args[1..]),
        Some("sign") => sign(&args[1..]),
        Some("push") => push(&args[1..]),
        Some("stats") => stats(&args[1..]),
        Some("help") | Some("--help") | Some("-h") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command \"{other}\"\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidestep: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Flags of one command: `--name value` pairs, bare `--flag`s and positional words.
struct Flags {
    pairs: Vec<(String, String)>,
    switches: Vec<String>,
    words: Vec<String>,
}

fn parse_flags(args: &[String], switches: &[&str]) -> Result<Flags, String> {
    let mut flags = Flags {
        pairs: vec![],
        switches: vec![],
        words: vec![],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            if switches.contains(&name) {
                flags.switches.push(name.to_string());
            } else {
                let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                flags.pairs.push((name.to_string(), value.clone()));
            }
        } else {
            flags.words.push(a.clone());
        }
    }
    Ok(flags)
}

impl Flags {
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        for (n, _) in &self.pairs {
            if !allowed.contains(&n.as_str()) {
                return Err(format!("unknown option --{n}\n\n{USAGE}"));
            }
        }
        Ok(())
    }
}

/// Read and validate a config file, naming the file in errors.
fn read_config(file: &str) -> Result<Config, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    config_file::parse(&text).map_err(|e| format!("{file}: {e}"))
}

fn check(args: &[String]) -> Result<(), String> {
    let [file] = args else {
        return Err(format!("check takes one FILE\n\n{USAGE}"));
    };
    let config = read_config(file)?;
    println!("{file}: ok");
    println!("{}", config.summary());
    Ok(())
}

fn build(args: &[String]) -> Result<(), String> {
    let flags = parse_flags(args, &[])?;
    flags.only(&["config", "out"])?;
    let config = flags.get("config").ok_or("build needs --config FILE")?;
    let out = flags.get("out").ok_or("build needs --out DIR")?;
    let images = image::build(config.as_ref(), out.as_ref())?;
    println!("{}", images.bios.display());
    println!("{}", images.uefi.display());
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    let flags = parse_flags(args, &["uefi"])?;
    flags.only(&[
        "config", "image", "out", "accel", "tap", "mac", "memory", "cpus",
    ])?;
    let firmware = if flags.has("uefi") {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    let image = match (flags.get("config"), flags.get("image")) {
        (Some(config), None) => {
            let out = flags.get("out").unwrap_or("out");
            let images = image::build(config.as_ref(), out.as_ref())?;
            if firmware == Firmware::Uefi {
                images.uefi
            } else {
                images.bios
            }
        }
        (None, Some(image)) => PathBuf::from(image),
        _ => return Err("run needs exactly one of --config FILE or --image FILE".into()),
    };
    let accel = flags
        .get("accel")
        .map(str::to_string)
        .or_else(|| std::env::var("SIDESTEP_ACCEL").ok())
        .unwrap_or_else(|| "auto".into());
    let memory_mib = match flags.get("memory") {
        Some(m) => m
            .parse()
            .map_err(|_| format!("--memory {m} is not a number of MiB"))?,
        None => 256,
    };
    let cpus = match flags.get("cpus") {
        Some(c) => c
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| format!("--cpus {c} is not a number of CPUs (1 or more)"))?,
        None => 1,
    };
    let opts = RunOptions {
        image,
        firmware,
        accel,
        memory_mib,
        cpus,
        net: flags
            .get("tap")
            .map_or(Net::Isolated, |t| Net::Tap(t.to_string())),
        mac: flags.get("mac").map(str::to_string),
        serial_file: None,
        ovmf_vars: None,
    };
    let mut cmd = qemu::qemu_command(&opts)?;
    eprintln!(
        "sidestep: booting {} under QEMU ({}); Ctrl-C ends it",
        opts.image.display(),
        qemu::resolve_accel(&opts.accel)
    );
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start qemu-system-x86_64 (install qemu-system-x86): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("QEMU ended with {status}"))
    }
}

fn backend_setup(args: &[String]) -> Result<(), String> {
    let flags = parse_flags(args, &[])?;
    flags.only(&["vip", "mode", "local"])?;
    let vip: IpAddr = flags
        .get("vip")
        .ok_or("backend-setup needs --vip ADDR")?
        .parse()
        .map_err(|_| "--vip is not an IPv4 or IPv6 address".to_string())?;
    let mode = flags
        .get("mode")
        .ok_or("backend-setup needs --mode dsr-l2|dsr-l3")?;
    let script = match (mode, vip) {
        ("dsr-l2", IpAddr::V4(vip)) => backend_l2(vip),
        ("dsr-l2", IpAddr::V6(vip)) => backend_l2_v6(vip),
        ("dsr-l3", IpAddr::V6(vip)) => {
            let local = flags.get("local").ok_or(
                "backend-setup --mode dsr-l3 needs --local ADDR, this backend's address in the \
                 config: the tunnel is bound to it, because the ip6_tunnel module's own ip6tnl0 \
                 already takes local any / remote any and Linux refuses a second such tunnel",
            )?;
            let local = local.parse().map_err(|_| {
                format!("--local \"{local}\" is not an IPv6 address (the VIP {vip} is IPv6)")
            })?;
            backend_l3_v6(vip, local)
        }
        ("dsr-l3", IpAddr::V4(vip)) => {
            let local = flags.get("local").ok_or(
                "backend-setup --mode dsr-l3 needs --local ADDR, this backend's address in the \
                 config: the tunnel is bound to it, because the ipip module's own tunl0 already \
                 takes local any / remote any and Linux refuses a second such tunnel",
            )?;
            let local = local
                .parse()
                .map_err(|_| format!("--local \"{local}\" is not an IPv4 address"))?;
            backend_l3(vip, local)
        }
        (other, _) => return Err(format!("mode \"{other}\" is not one of dsr-l2, dsr-l3")),
    };
    print!("{script}");
    Ok(())
}

fn keygen(args: &[String]) -> Result<(), String> {
    let flags = parse_flags(args, &["force"])?;
    flags.only(&["out"])?;
    if !flags.words.is_empty() {
        return Err(format!(
            "keygen takes no FILE argument; use --out FILE\n\n{USAGE}"
        ));
    }
    let out = flags
        .get("out")
        .ok_or("keygen needs --out FILE (where the private key goes)")?;
    let key = SigningKey::generate();
    key.save(out.as_ref(), flags.has("force"))?;
    println!("private key written to {out} (mode 0600): keep it secret, keep a backup");
    println!("public key, for the config's [management] pubkey:");
    println!("{}", key.public_base64());
    Ok(())
}

/// The one positional CONFIG argument of `sign` and `push`.
fn one_config<'a>(flags: &'a Flags, command: &str) -> Result<&'a str, String> {
    match flags.words.as_slice() {
        [config] => Ok(config),
        [] => Err(format!("{command} needs a CONFIG file\n\n{USAGE}")),
        _ => Err(format!(
            "{command} takes one CONFIG file, not {}\n\n{USAGE}",
            flags.words.join(" ")
        )),
    }
}

/// Check `file`, sign it with `key`, and warn (on stderr) if the result would lock the
/// operator out. The config and its signed envelope.
fn sign_file(file: &str, key: &SigningKey) -> Result<(Config, Vec<u8>), String> {
    let config = read_config(file)?;
    if let Some(warning) = signing::lockout_warning(&config, key) {
        eprintln!("sidestep: warning: {warning}");
    }
    let signed = key.sign(&config);
    Ok((config, signed))
}

fn sign(args: &[String]) -> Result<(), String> {
    let flags = parse_flags(args, &[])?;
    flags.only(&["key", "out"])?;
    let file = one_config(&flags, "sign")?;
    let key = SigningKey::load(flags.get("key").ok_or("sign needs --key FILE")?.as_ref())?;
    let (config, signed) = sign_file(file, &key)?;
    let out = flags
        .get("out")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(file).with_extension("signed"));
    std::fs::write(&out, &signed).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!(
        "{}: config v{} signed ({} bytes)",
        out.display(),
        config.version,
        signed.len()
    );
    Ok(())
}

fn push(args: &[String]) -> Result<(), String> {
    let flags = parse_flags(args, &[])?;
    flags.only(&["key", "to"])?;
    let file = one_config(&flags, "push")?;
    let to = flags
        .get("to")
        .ok_or("push needs --to HOST:PORT (the image's address and [management] port)")?;
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let (version, signed) = if signing::is_signed(&bytes) {
        // Already signed: sent as it is; the key, if given, only checks it.
        let config = signing::peek_signed(&bytes).map_err(|e| format!("{file}: {e}"))?;
        if let Some(path) = flags.get("key") {
            let key = SigningKey::load(path.as_ref())?;
            control::envelope::verify_signed(&bytes, &key.public())
                .map_err(|e| format!("{file}: {e} (it was not signed with {path})"))?;
        }
        (config.version, bytes)
    } else {
        let key = SigningKey::load(
            flags
                .get("key")
                .ok_or("push needs --key FILE to sign CONFIG")?
                .as_ref(),
        )?;
        let (config, signed) = sign_file(file, &key)?;
        (config.version, signed)
    };
    let response = client::push(to, &signed).map_err(|e| e.to_string())?;
    println!("{} {}", response.status, response.reason);
    if !response.body.trim().is_empty() {
        println!("{}", response.body.trim_end());
    }
    match client::push_refusal(&response, Some(version)) {
        None => Ok(()),
        Some(why) => Err(why),
    }
}

fn stats(args: &[String]) -> Result<(), String> {
    let flags = parse_flags(args, &["json"])?;
    flags.only(&["from", "watch"])?;
    if !flags.words.is_empty() {
        return Err(format!(
            "stats takes no argument {}\n\n{USAGE}",
            flags.words.join(" ")
        ));
    }
    let from = flags
        .get("from")
        .ok_or("stats needs --from HOST:PORT (the image's address and [management] port)")?;
    let watch = flags
        .get("watch")
        .map(|s| match s.parse::<f64>() {
            Ok(secs) if secs > 0.0 && secs.is_finite() => {
                Ok(std::time::Duration::from_secs_f64(secs))
            }
            _ => Err(format!("--watch {s} is not a positive number of seconds")),
        })
        .transpose()?;
    let show = || -> Result<String, String> {
        let json = client::status(from)?;
        if flags.has("json") {
            return Ok(format!("{}\n", json.trim_end()));
        }
        Ok(status::render(&Status::parse(&json)?))
    };
    let Some(every) = watch else {
        print!("{}", show()?);
        return Ok(());
    };
    // Until Ctrl-C: the default SIGINT action ends the process, which is all that is needed.
    loop {
        let page = show().unwrap_or_else(|e| format!("sidestep: {e}\n"));
        use std::io::Write as _;
        print!(
            "\x1b[2J\x1b[H{from}, every {}s\n\n{page}",
            every.as_secs_f64()
        );
        let _ = std::io::stdout().flush();
        std::thread::sleep(every);
    }
}

fn backend_l2(vip: std::net::Ipv4Addr) -> String {
    format!(
        "# Sidestep dsr-l2 backend for VIP {vip}: run as root on the backend.
# The balancer rewrites only the Ethernet destination, so the backend must accept packets
# addressed to the VIP, answer from it, and never answer ARP for it (the balancer does).
# Every command may run again; any failure stops the script.
set -e
ip addr replace {vip}/32 dev lo
sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
# Persistent across reboots:
cat > /etc/sysctl.d/90-sidestep-dsr.conf <<'EOF'
net.ipv4.conf.all.arp_ignore = 1
net.ipv4.conf.all.arp_announce = 2
EOF
cat > /etc/systemd/system/sidestep-vip-{vip}.service <<'EOF'
[Unit]
Description=Sidestep DSR VIP {vip} on lo
After=network.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip addr replace {vip}/32 dev lo
ExecStop=/sbin/ip addr del {vip}/32 dev lo
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl enable --now sidestep-vip-{vip}.service
"
    )
}

/// The dsr-l3 recipe for the backend at `local`. The tunnel is bound to that address: once the
/// `ipip` module is loaded its fallback device `tunl0` holds local any / remote any, and Linux
/// refuses a second tunnel with the same endpoints (`ip_tunnel_newlink` finds `tunl0` with
/// `ip_tunnel_find`: "File exists"). A tunnel with `local` is distinct from `tunl0`, takes
/// exactly the balancer's packets (their outer destination is the backend's address), and can
/// be deleted, which `tunl0` cannot; an `external` (collect-metadata) device is allowed only
/// once per namespace and also takes every other tunnel's unmatched packets.
fn backend_l3(vip: std::net::Ipv4Addr, local: std::net::Ipv4Addr) -> String {
    // Creates the tunnel unless it exists: rerunnable without hiding a failed `add`.
    let add = format!(
        "ip link show dev sidestep0 >/dev/null 2>&1 || ip link add sidestep0 type ipip local {local}"
    );
    format!(
        "# Sidestep dsr-l3 backend {local} for VIP {vip}: run as root on the backend.
# The balancer wraps each packet in an outer IPv4 header (IP-in-IP, protocol 4) addressed to
# {local}. The ipip tunnel bound to that address takes the outer header off (one without
# `local` would clash with the ipip module's own tunl0); the VIP sits on the tunnel so the
# inner packet is accepted, and replies leave by the normal route straight to the client, so
# reverse-path filtering must not drop the tunnel's packets.
# Every command may run again; any failure stops the script.
set -e
modprobe ipip
{add}
ip link set sidestep0 up
ip addr replace {vip}/32 dev sidestep0
sysctl -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.sidestep0.rp_filter=0
sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
# Persistent across reboots:
echo ipip > /etc/modules-load.d/sidestep.conf
cat > /etc/sysctl.d/90-sidestep-dsr.conf <<'EOF'
net.ipv4.conf.all.rp_filter = 0
net.ipv4.conf.default.rp_filter = 0
net.ipv4.conf.all.arp_ignore = 1
net.ipv4.conf.all.arp_announce = 2
EOF
cat > /etc/systemd/system/sidestep-tunnel-{vip}.service <<'EOF'
[Unit]
Description=Sidestep DSR IP-in-IP tunnel {local} with VIP {vip}
After=network.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -ec '{add}'
ExecStart=/sbin/ip link set sidestep0 up
ExecStart=/sbin/ip addr replace {vip}/32 dev sidestep0
ExecStart=/sbin/sysctl -w net.ipv4.conf.sidestep0.rp_filter=0
ExecStop=/sbin/ip link del sidestep0
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl enable --now sidestep-tunnel-{vip}.service
"
    )
}

/// The dsr-l2 recipe for an IPv6 VIP. Unlike IPv4 it needs no ARP-like sysctl: Linux answers a
/// neighbour solicitation only for an address of the interface it arrived on (`ndisc_recv_ns`
/// looks the target up strictly on that device), so the VIP on `lo` is never advertised on the
/// wire, and the backend's own solicitations take their source from the outgoing interface.
fn backend_l2_v6(vip: Ipv6Addr) -> String {
    format!(
        "# Sidestep dsr-l2 backend for IPv6 VIP {vip}: run as root on the backend.
# The balancer rewrites only the Ethernet destination, so the backend must accept packets
# addressed to the VIP, answer from it, and never answer neighbour solicitations for it (the
# balancer does). A /128 on lo does all three: Linux answers a solicitation only for an address
# of the interface it came in on, so the VIP on lo is never advertised on other interfaces (no
# counterpart of arp_ignore / arp_announce is needed). IPv6 must be enabled on lo.
# Every command may run again; any failure stops the script.
set -e
sysctl -w net.ipv6.conf.lo.disable_ipv6=0
ip -6 addr replace {vip}/128 dev lo
# Persistent across reboots:
cat > /etc/systemd/system/sidestep-vip-{vip}.service <<'EOF'
[Unit]
Description=Sidestep DSR IPv6 VIP {vip} on lo
After=network.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/sysctl -w net.ipv6.conf.lo.disable_ipv6=0
ExecStart=/sbin/ip -6 addr replace {vip}/128 dev lo
ExecStop=/sbin/ip -6 addr del {vip}/128 dev lo
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl enable --now sidestep-vip-{vip}.service
"
    )
}

/// The dsr-l3 recipe for an IPv6 VIP on the backend at `local`: an ip6ip6 tunnel bound to that
/// address, for the same reason as IPv4's (`ip6_tunnel`'s fallback `ip6tnl0` holds local any /
/// remote any). A tunnel with a local address and any remote takes every ip6ip6 packet to that
/// address. IPv6 has no `rp_filter` sysctl, but a firewall's reverse-path rule drops the
/// tunnel's packets the same way, so the recipe says so.
fn backend_l3_v6(vip: Ipv6Addr, local: Ipv6Addr) -> String {
    // Creates the tunnel unless it exists: rerunnable without hiding a failed `add`.
    let add = format!(
        "ip link show dev sidestep6 >/dev/null 2>&1 || \
         ip -6 tunnel add sidestep6 mode ip6ip6 local {local} remote any"
    );
    format!(
        "# Sidestep dsr-l3 backend {local} for IPv6 VIP {vip}: run as root on the backend.
# The balancer wraps each packet in an outer IPv6 header (ip6ip6, next header 41) addressed to
# {local}. The ip6ip6 tunnel bound to that address takes the outer header off (one without
# `local` would clash with the ip6_tunnel module's own ip6tnl0); the VIP sits on the tunnel so
# the inner packet is accepted, and replies leave by the normal route straight to the client.
# IPv6 has no rp_filter sysctl, but a reverse-path firewall rule (firewalld's IPv6_rpfilter,
# ip6tables -m rpfilter, nftables fib saddr) would drop the tunnel's packets: exempt sidestep6.
# Neighbour discovery never advertises the VIP (it is on no Ethernet interface).
# Every command may run again; any failure stops the script.
set -e
modprobe ip6_tunnel
{add}
sysctl -w net.ipv6.conf.sidestep6.disable_ipv6=0
ip link set sidestep6 up
ip -6 addr replace {vip}/128 dev sidestep6 nodad
# Persistent across reboots:
echo ip6_tunnel > /etc/modules-load.d/sidestep-ip6ip6.conf
cat > /etc/systemd/system/sidestep-tunnel-{vip}.service <<'EOF'
[Unit]
Description=Sidestep DSR ip6ip6 tunnel {local} with IPv6 VIP {vip}
After=network.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -ec '{add}'
ExecStart=/sbin/sysctl -w net.ipv6.conf.sidestep6.disable_ipv6=0
ExecStart=/sbin/ip link set sidestep6 up
ExecStart=/sbin/ip -6 addr replace {vip}/128 dev sidestep6 nodad
ExecStop=/sbin/ip link del sidestep6
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl enable --now sidestep-tunnel-{vip}.service
"
    )
}
