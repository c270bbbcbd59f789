//! The `sidestep` command line as an operator meets it.

use std::process::Command;

fn sidestep(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sidestep"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example() -> String {
    format!("{}/../qemu/demo.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_accepts_the_example() {
    let (ok, out, err) = sidestep(&["check", &example()]);
    assert!(ok, "{err}");
    assert!(out.contains("ok") && out.contains("config v1:"), "{out}");
}

#[test]
fn check_refuses_a_bad_mode_and_names_the_field() {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replacen("\"dsr-l2\"", "\"dsr-l9\"", 1);
    let dir = std::env::temp_dir().join(format!("sidestep-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let (ok, _, err) = sidestep(&["check", bad.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!ok, "a bad config was accepted");
    assert!(
        err.contains("vip \"web\": mode \"dsr-l9\" is not one of dsr-l2, dsr-l3"),
        "{err}"
    );
}

/// `sidestep check` on the example with `from` replaced by `to` once: exit status and stderr.
fn check_edited(name: &str, from: &str, to: &str) -> (bool, String) {
    let text = std::fs::read_to_string(example()).unwrap();
    assert!(text.contains(from), "the example has no {from:?}");
    let dir = TempDir::new(name);
    let bad = dir.0.join("edited.toml");
    std::fs::write(&bad, text.replacen(from, to, 1)).unwrap();
    let (ok, _, err) = sidestep(&["check", bad.to_str().unwrap()]);
    (ok, err)
}

#[test]
fn check_refuses_an_mtu_the_receive_buffers_cannot_hold() {
    let (ok, err) = check_edited("mtu-max", "mtu = 1500", "mtu = 1500");
    assert!(ok, "{err}");
    let (ok, err) = check_edited("mtu-jumbo", "mtu = 1500", "mtu = 9000");
    assert!(!ok, "mtu 9000 was accepted");
    assert!(
        err.contains("interface.mtu: 9000 is above 1500, the largest packet every NIC driver"),
        "{err}"
    );
}

#[test]
fn check_refuses_a_vip_on_someone_elses_address() {
    for (addr, why) in [
        ("10.77.0.1", "is interface.gateway"),
        ("10.77.0.255", "is the network or broadcast address"),
        ("10.77.0.21", "is the address of backend \"be1\""),
    ] {
        let (ok, err) = check_edited(
            "vip-address",
            "address = \"10.77.0.100\"",
            &format!("address = \"{addr}\""),
        );
        assert!(!ok, "a VIP at {addr} was accepted");
        assert!(
            err.contains(&format!("vip \"web\": address: {addr} {why}")),
            "{err}"
        );
    }
}

#[test]
fn check_reports_a_missing_file() {
    let (ok, _, err) = sidestep(&["check", "/nonexistent/sidestep.toml"]);
    assert!(!ok);
    assert!(
        err.contains("cannot read /nonexistent/sidestep.toml"),
        "{err}"
    );
}

#[test]
fn unknown_commands_and_options_are_refused() {
    let (ok, _, err) = sidestep(&["frobnicate"]);
    assert!(
        !ok && err.contains("unknown command \"frobnicate\""),
        "{err}"
    );
    let (ok, _, err) = sidestep(&["build", "--config", "x", "--outt", "y"]);
    assert!(!ok && err.contains("unknown option --outt"), "{err}");
}

#[test]
fn backend_setup_prints_persistent_l2_and_l3_recipes() {
    let (ok, l2, _) = sidestep(&["backend-setup", "--vip", "10.77.0.100", "--mode", "dsr-l2"]);
    assert!(ok);
    for want in [
        "set -e\nip addr replace 10.77.0.100/32 dev lo\n",
        "arp_ignore = 1",
        "arp_announce = 2",
        "/etc/sysctl.d/",
        "systemctl daemon-reload && systemctl enable --now",
    ] {
        assert!(l2.contains(want), "missing {want}:\n{l2}");
    }
    // The ipip module's tunl0 holds local any / remote any, so the tunnel must name the
    // backend's address: dsr-l3 needs --local.
    let (ok, _, err) = sidestep(&["backend-setup", "--vip", "10.77.0.101", "--mode", "dsr-l3"]);
    assert!(!ok && err.contains("needs --local ADDR"), "{err}");
    let (ok, _, err) = sidestep(&[
        "backend-setup",
        "--vip",
        "10.77.0.101",
        "--mode",
        "dsr-l3",
        "--local",
        "be3",
    ]);
    assert!(
        !ok && err.contains("--local \"be3\" is not an IPv4 address"),
        "{err}"
    );
    let (ok, out, _) = sidestep(&[
        "backend-setup",
        "--vip",
        "10.77.0.101",
        "--mode",
        "dsr-l3",
        "--local",
        "10.88.0.31",
    ]);
    assert!(ok);
    let add = "ip link show dev sidestep0 >/dev/null 2>&1 || \
               ip link add sidestep0 type ipip local 10.88.0.31";
    for want in [
        "set -e\nmodprobe ipip\n",
        format!("\n{add}\nip link set sidestep0 up\n").as_str(),
        "ip addr replace 10.77.0.101/32 dev sidestep0",
        "rp_filter=0",
        "/etc/modules-load.d/sidestep.conf",
        format!("ExecStart=/bin/sh -ec '{add}'").as_str(),
        "ExecStop=/sbin/ip link del sidestep0",
    ] {
        assert!(out.contains(want), "missing {want}:\n{out}");
    }
    assert!(
        !out.contains("type ipip\n"),
        "a tunnel without local:\n{out}"
    );
    for script in [l2, out] {
        assert!(
            !script.contains("|| true") && !script.contains("; ip "),
            "a recipe hides a failure:\n{script}"
        );
    }
    let (ok, _, err) = sidestep(&["backend-setup", "--vip", "10.77.0.101", "--mode", "nat"]);
    assert!(
        !ok && err.contains("mode \"nat\" is not one of dsr-l2, dsr-l3"),
        "{err}"
    );
}

#[test]
fn backend_setup_prints_persistent_ipv6_recipes() {
    let (ok, l2, err) = sidestep(&["backend-setup", "--vip", "fd00:77::100", "--mode", "dsr-l2"]);
    assert!(ok, "{err}");
    for want in [
        "set -e\nsysctl -w net.ipv6.conf.lo.disable_ipv6=0\nip -6 addr replace fd00:77::100/128 dev lo\n",
        "never advertised on other interfaces",
        "ExecStart=/sbin/ip -6 addr replace fd00:77::100/128 dev lo",
        "ExecStop=/sbin/ip -6 addr del fd00:77::100/128 dev lo",
        "systemctl daemon-reload && systemctl enable --now sidestep-vip-fd00:77::100.service",
    ] {
        assert!(l2.contains(want), "missing {want}:\n{l2}");
    }
    // ARP sysctls mean nothing to IPv6; setting them would suggest they do something.
    assert!(
        !l2.contains("arp_ignore=") && !l2.contains("arp_ignore ="),
        "IPv4 sysctls in an IPv6 recipe:\n{l2}"
    );

    // ip6_tunnel's ip6tnl0 holds local any / remote any, as ipip's tunl0 does.
    let (ok, _, err) = sidestep(&["backend-setup", "--vip", "fd00:77::101", "--mode", "dsr-l3"]);
    assert!(!ok && err.contains("needs --local ADDR"), "{err}");
    assert!(err.contains("ip6tnl0"), "{err}");
    let (ok, _, err) = sidestep(&[
        "backend-setup",
        "--vip",
        "fd00:77::101",
        "--mode",
        "dsr-l3",
        "--local",
        "10.88.0.31",
    ]);
    assert!(
        !ok && err.contains("--local \"10.88.0.31\" is not an IPv6 address"),
        "{err}"
    );
    let (ok, l3, err) = sidestep(&[
        "backend-setup",
        "--vip",
        "fd00:77::101",
        "--mode",
        "dsr-l3",
        "--local",
        "fd00:88::31",
    ]);
    assert!(ok, "{err}");
    let add = "ip link show dev sidestep6 >/dev/null 2>&1 || \
               ip -6 tunnel add sidestep6 mode ip6ip6 local fd00:88::31 remote any";
    for want in [
        "set -e\nmodprobe ip6_tunnel\n",
        format!("\n{add}\n").as_str(),
        "ip link set sidestep6 up\n",
        "ip -6 addr replace fd00:77::101/128 dev sidestep6",
        "net.ipv6.conf.sidestep6.disable_ipv6=0",
        "IPv6 has no rp_filter sysctl",
        "/etc/modules-load.d/sidestep-ip6ip6.conf",
        format!("ExecStart=/bin/sh -ec '{add}'").as_str(),
        "ExecStop=/sbin/ip link del sidestep6",
    ] {
        assert!(l3.contains(want), "missing {want}:\n{l3}");
    }
    // The IPv4 recipe's files stay untouched, so a backend can hold VIPs of both families.
    assert!(
        !l3.contains("/etc/modules-load.d/sidestep.conf") && !l3.contains("sidestep0"),
        "{l3}"
    );
    for script in [l2, l3] {
        assert!(
            !script.contains("|| true") && !script.contains("; ip "),
            "a recipe hides a failure:\n{script}"
        );
    }
    let (ok, _, err) = sidestep(&["backend-setup", "--vip", "fd00:77::zz", "--mode", "dsr-l2"]);
    assert!(
        !ok && err.contains("--vip is not an IPv4 or IPv6 address"),
        "{err}"
    );
}

/// A directory of this test's own, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sidestep-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sidestep keygen --out DIR/name`: the key file and the public key it printed last.
fn keygen(dir: &TempDir, name: &str) -> (String, String) {
    let key = dir.path(name);
    let (ok, out, err) = sidestep(&["keygen", "--out", &key]);
    assert!(ok, "{err}");
    let pubkey = out.lines().last().unwrap_or_default().trim().to_owned();
    (key, pubkey)
}

/// The example config with a `[management]` section trusting `pubkey`, written to DIR/name.
fn managed_config(dir: &TempDir, name: &str, pubkey: &str, version: u64) -> String {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replacen("version = 1", &format!("version = {version}"), 1)
        .replacen(
            "[[vip]]",
            &format!("[management]\nport = 9100\nallow = [\"10.77.0.0/24\"]\npubkey = \"{pubkey}\"\n\n[[vip]]"),
            1,
        );
    let path = dir.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn keygen_writes_a_private_key_file_and_prints_the_public_key_last() {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("keygen");
    let (key, pubkey) = keygen(&dir, "op.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&pubkey)
        .expect("the last line is base64");
    assert_eq!(
        raw.len(),
        32,
        "the last line is not a 32-byte key: {pubkey}"
    );
    let seed = std::fs::read_to_string(&key).unwrap();
    assert_eq!(seed.lines().count(), 1);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(seed.trim())
            .unwrap()
            .len(),
        32
    );

    // Never overwritten by accident; --force does it, with a new key.
    let (ok, _, err) = sidestep(&["keygen", "--out", &key]);
    assert!(
        !ok && err.contains("exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), seed);
    let (ok, out, err) = sidestep(&["keygen", "--out", &key, "--force"]);
    assert!(ok, "{err}");
    assert_ne!(out.lines().last().unwrap(), pubkey);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn sign_writes_an_envelope_that_verifies_with_the_public_key() {
    let dir = TempDir::new("sign");
    let (key, pubkey) = keygen(&dir, "op.key");
    let config = managed_config(&dir, "site.toml", &pubkey, 4);
    let (ok, out, err) = sidestep(&["sign", "--key", &key, &config]);
    assert!(ok, "{err}");
    assert!(err.is_empty(), "a matching key gave a warning: {err}");
    let signed_path = dir.path("site.signed");
    assert!(out.contains(&signed_path) && out.contains("v4"), "{out}");
    let signed = std::fs::read(&signed_path).unwrap();
    let pk: [u8; 32] = boot::config_file::parse_pubkey(&pubkey).unwrap();
    let verified = control::envelope::verify_signed(&signed, &pk).expect("the envelope verifies");
    assert_eq!(verified.version, 4);
    let expected = boot::config_file::parse(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(verified, expected);

    // --out; a key that is not the config's own is signed with, but warned about.
    let (other, _) = keygen(&dir, "other.key");
    let out_path = dir.path("elsewhere.bin");
    let (ok, _, err) = sidestep(&["sign", "--key", &other, "--out", &out_path, &config]);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning") && err.contains("is not this key's"),
        "{err}"
    );
    assert!(control::envelope::verify_signed(&std::fs::read(&out_path).unwrap(), &pk).is_err());

    // An invalid config is not signed.
    let bad = dir.path("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&config)
            .unwrap()
            .replacen("\"rr\"", "\"fastest\"", 1),
    )
    .unwrap();
    let (ok, _, err) = sidestep(&["sign", "--key", &key, &bad]);
    assert!(!ok && err.contains("scheduler \"fastest\""), "{err}");
    assert!(!std::path::Path::new(&dir.path("bad.signed")).exists());
}

/// A one-connection-at-a-time HTTP server on 127.0.0.1 answering `answers` in turn; each
/// request it got (head and body) is sent back through the channel.
fn stub_server(answers: Vec<String>) -> (String, std::sync::mpsc::Receiver<Vec<u8>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for answer in answers {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as many body bytes as it announces.
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = stream.write_all(answer.as_bytes());
            let _ = tx.send(got);
        }
    });
    (addr, rx)
}

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn push_to_a_closed_port_fails_clearly() {
    let dir = TempDir::new("push-closed");
    let (key, pubkey) = keygen(&dir, "op.key");
    let config = managed_config(&dir, "site.toml", &pubkey, 2);
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = format!("127.0.0.1:{port}");
    let (ok, out, err) = sidestep(&["push", "--key", &key, "--to", &to, &config]);
    assert!(!ok, "{out}");
    assert!(
        err.contains(&to) && err.contains("refused the connection"),
        "{err}"
    );
    let (ok, _, err) = sidestep(&["push", "--key", &key, "--to", "127.0.0.1", &config]);
    assert!(!ok && err.contains("the port is missing"), "{err}");
}

#[test]
fn push_sends_the_signed_config_and_explains_refusals() {
    let dir = TempDir::new("push");
    let (key, pubkey) = keygen(&dir, "op.key");
    let config = managed_config(&dir, "site.toml", &pubkey, 7);
    let (to, requests) = stub_server(vec![
        http("200 OK", "applied config v7\n"),
        http("409 Conflict", "version 7 is not newer than 7\n"),
        http("403 Forbidden", "bad signature\n"),
        http("400 Bad Request", "vip \"web\": port: 0 is not a port\n"),
        http("200 OK", "applied\n"),
    ]);
    let (ok, out, err) = sidestep(&["push", "--key", &key, "--to", &to, &config]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("200 OK") && out.contains("applied config v7"),
        "{out}"
    );
    let request = requests.recv().unwrap();
    let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&request[..end]);
    assert!(head.starts_with("PUT /config HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("Connection: close"), "{head}");
    let pk = boot::config_file::parse_pubkey(&pubkey).unwrap();
    let pushed = control::envelope::verify_signed(&request[end + 4..], &pk)
        .expect("a signed config was pushed");
    assert_eq!(pushed.version, 7);

    for want in [
        "version 7 is not newer than the running one",
        "signature refused: does the image's management.pubkey match this key?",
        "the image refused the config: vip \"web\": port: 0 is not a port",
    ] {
        let (ok, _, err) = sidestep(&["push", "--key", &key, "--to", &to, &config]);
        assert!(!ok, "a refused push exited 0");
        assert!(err.contains(want), "want {want:?} in {err}");
        requests.recv().unwrap();
    }

    // An envelope made by `sign` is pushed as it is.
    let (ok, _, err) = sidestep(&["sign", "--key", &key, &config]);
    assert!(ok, "{err}");
    let signed = dir.path("site.signed");
    let (ok, out, err) = sidestep(&["push", "--to", &to, &signed]);
    assert!(ok && out.starts_with("200"), "{out}{err}");
    let request = requests.recv().unwrap();
    assert!(request.ends_with(&std::fs::read(&signed).unwrap()));
}

const STATUS: &str = r#"{"version":2,"uptime_ms":61000,"flows_capacity":65536,"drops":{"malformed":5},"vips":[{"name":"web","address":"10.77.0.100","port":"80","protocol":"tcp","mode":"dsr-l2","scheduler":"rr","packets":30,"bytes":2400,"flows":2,"backends":[{"name":"be1","address":"10.77.0.21","weight":1,"up":true,"packets":20,"bytes":1600,"flows":1},{"name":"be2","address":"10.77.0.22","weight":1,"up":false,"packets":10,"bytes":800,"flows":1}]}]}"#;

#[test]
fn stats_prints_the_status_as_a_table_or_json() {
    let (from, requests) = stub_server(vec![http("200 OK", STATUS), http("200 OK", STATUS)]);
    let (ok, out, err) = sidestep(&["stats", "--from", &from]);
    assert!(ok, "{err}");
    let head = String::from_utf8_lossy(&requests.recv().unwrap()).into_owned();
    assert!(head.starts_with("GET /status HTTP/1.1\r\n"), "{head}");
    assert!(
        out.starts_with("config version 2, up 00:01:01, flows 2 of 65536"),
        "{out}"
    );
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("no {name} row:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("web"),
        [
            "web",
            "-",
            "10.77.0.100:80/tcp",
            "dsr-l2",
            "rr",
            "1/2",
            "up",
            "-",
            "30",
            "2400",
            "2"
        ]
    );
    assert_eq!(
        row("be1"),
        ["be1", "10.77.0.21", "up", "1", "20", "1600", "1"]
    );
    assert_eq!(
        row("be2"),
        ["be2", "10.77.0.22", "down", "1", "10", "800", "1"]
    );
    assert!(out.contains("drops: malformed 5"), "{out}");

    let (ok, out, err) = sidestep(&["stats", "--from", &from, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), STATUS);
}

#[test]
fn stats_from_nowhere_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, _, err) = sidestep(&["stats", "--from", &format!("127.0.0.1:{port}")]);
    assert!(!ok && err.contains("refused the connection"), "{err}");
    let (ok, _, err) = sidestep(&["stats", "--from", "127.0.0.1:1", "--watch", "soon"]);
    assert!(
        !ok && err.contains("--watch soon is not a positive number"),
        "{err}"
    );
}
