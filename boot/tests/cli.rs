//! The `sidestep` command line as an operator meets it.

use std::process::Command;

fn sidestep(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sidestep")).args(args).output().unwrap();
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
    let text = std::fs::read_to_string(example()).unwrap().replacen("\"dsr-l2\"", "\"dsr-l9\"", 1);
    let dir = std::env::temp_dir().join(format!("sidestep-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let (ok, _, err) = sidestep(&["check", bad.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!ok, "a bad config was accepted");
    assert!(err.contains("vip \"web\": mode \"dsr-l9\" is not one of dsr-l2, dsr-l3"), "{err}");
}

#[test]
fn check_reports_a_missing_file() {
    let (ok, _, err) = sidestep(&["check", "/nonexistent/sidestep.toml"]);
    assert!(!ok);
    assert!(err.contains("cannot read /nonexistent/sidestep.toml"), "{err}");
}

#[test]
fn unknown_commands_and_options_are_refused() {
    let (ok, _, err) = sidestep(&["frobnicate"]);
    assert!(!ok && err.contains("unknown command \"frobnicate\""), "{err}");
    let (ok, _, err) = sidestep(&["build", "--config", "x", "--outt", "y"]);
    assert!(!ok && err.contains("unknown option --outt"), "{err}");
}

#[test]
fn backend_setup_prints_persistent_l2_and_l3_recipes() {
    let (ok, out, _) = sidestep(&["backend-setup", "--vip", "10.77.0.100", "--mode", "dsr-l2"]);
    assert!(ok);
    for want in ["ip addr add 10.77.0.100/32 dev lo", "arp_ignore = 1", "arp_announce = 2", "/etc/sysctl.d/", "systemctl daemon-reload && systemctl enable --now"] {
        assert!(out.contains(want), "missing {want}:\n{out}");
    }
    let (ok, out, _) = sidestep(&["backend-setup", "--vip", "10.77.0.101", "--mode", "dsr-l3"]);
    assert!(ok);
    for want in ["type ipip", "ip addr add 10.77.0.101/32 dev sidestep0", "rp_filter=0", "/etc/modules-load.d/sidestep.conf"] {
        assert!(out.contains(want), "missing {want}:\n{out}");
    }
    let (ok, _, err) = sidestep(&["backend-setup", "--vip", "10.77.0.101", "--mode", "nat"]);
    assert!(!ok && err.contains("mode \"nat\" is not one of dsr-l2, dsr-l3"), "{err}");
}
