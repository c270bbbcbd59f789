//! End-to-end datapath tests: the image, booted with `tests/configs/e2e.toml`, balancing real
//! Linux clients and backends in network namespaces (see `tests::netns`).
//!
//! Each check is a function over a [`Fixture`] (`tests::dsr`, shared with the tests on several
//! CPUs in e2e_control) so that the same assertions run against the
//! image (the plain tests) and against `stub-lb`, a user-space stand-in (the ignored `stub_*`
//! test), which proves the network, servers and assertions themselves. Tests run one at a time:
//! each boots its own balancer under TCG, and two cores do not run several well.
//!
//! The plain tests boot the NIC of `SIDESTEP_NIC` (virtio-net unless set; `SIDESTEP_NIC=igb`
//! runs them all on QEMU's Intel 82576). `igb_*` runs the DSR-L2, DSR-L3 and big-transfer checks
//! on the 82576 whatever `SIDESTEP_NIC` says, and is skipped, saying so, on a QEMU without it.

use std::sync::OnceLock;
use tests::dsr::{
    check_all_ports, check_big_transfer, check_l2_http_spreads, check_l3_http,
    check_nothing_else_forwarded, check_ping_balancer, check_survives_malformed_frames, check_udp,
};
use tests::fixture::{self, Fixture};
use tests::netns::{Topology, VIP_WEB, VIP_WEB3};
use tests::qemu::{Image, NicModel};

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| Image::build(&fixture::e2e_config()).expect("build the e2e image"))
}

/// The network with the image booted in the balancer's place.
fn booted() -> Fixture {
    Fixture::boot(tests::helper_bins!(), image(), |_| Ok(())).expect("boot the e2e fixture")
}

/// The network with the image booted in the balancer's place on the NIC model `nic`.
fn booted_on(nic: NicModel) -> Fixture {
    Fixture::boot_nic(
        tests::helper_bins!(),
        Topology::Segment,
        nic,
        image(),
        |_| Ok(()),
    )
    .expect("boot the e2e fixture")
}

#[test]
fn l2_http_is_balanced_over_both_backends() {
    check_l2_http_spreads(&booted());
}

#[test]
fn l3_http_is_answered_by_the_ipip_backend() {
    check_l3_http(&booted());
}

#[test]
fn big_transfers_arrive_byte_exact_in_both_modes() {
    let f = booted();
    check_big_transfer(&f, VIP_WEB);
    check_big_transfer(&f, VIP_WEB3);
}

/// DSR-L2, DSR-L3 and the byte-exact big transfers through the igb driver, on one boot.
#[test]
fn igb_dsr_l2_l3_and_big_transfers() {
    if NicModel::Igb.skip("igb_dsr_l2_l3_and_big_transfers") {
        return;
    }
    let f = booted_on(NicModel::Igb);
    assert!(
        f.serial_log().contains("nic: igb at "),
        "the image did not drive the 82576 with igb:\n{}",
        f.serial_log()
    );
    check_l2_http_spreads(&f);
    check_l3_http(&f);
    check_big_transfer(&f, VIP_WEB);
    check_big_transfer(&f, VIP_WEB3);
    check_ping_balancer(&f);
}

#[test]
fn udp_vip_is_balanced() {
    check_udp(&booted());
}

#[test]
fn all_ports_vip_serves_any_port() {
    check_all_ports(&booted());
}

#[test]
fn balancer_answers_ping() {
    check_ping_balancer(&booted());
}

#[test]
fn nothing_but_vip_traffic_is_forwarded() {
    check_nothing_else_forwarded(&booted());
}

#[test]
fn malformed_frames_leave_it_forwarding() {
    let f = booted();
    check_survives_malformed_frames(&f);
    // The drops are counted: the image logs its counters every 5 s when they change.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let malformed = loop {
        let log = f.serial_log();
        let last = log
            .lines()
            .rfind(|l| l.contains("stats: "))
            .unwrap_or("")
            .to_owned();
        let count = last
            .split_whitespace()
            .find_map(|w| w.strip_prefix("malformed="))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = count.filter(|&n| n >= 1000) {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stats line counting the malformed frames; last: {last:?}\n{}",
            f.diagnostics()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    eprintln!("malformed frames counted: {malformed}");
}

/// Proves the network, servers, decapsulation and assertions with `stub-lb` in the balancer's
/// place. Not a test of Sidestep: run it by hand after changing `tests::netns`
/// (`cargo test -p tests --test e2e_datapath -- --ignored stub`).
#[test]
#[ignore = "proves the test network with a stand-in balancer; run by hand"]
fn stub_proves_the_network() {
    let f = Fixture::stub(tests::helper_bins!()).expect("set up the stub fixture");
    check_ping_balancer(&f);
    check_l2_http_spreads(&f);
    check_l3_http(&f);
    check_udp(&f);
    check_all_ports(&f);
    check_nothing_else_forwarded(&f);
    check_survives_malformed_frames(&f);
    check_big_transfer(&f, VIP_WEB);
    check_big_transfer(&f, VIP_WEB3);
}
