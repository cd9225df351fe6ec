//! The process's libnftables (the nftables driver's default path) is unloaded after
//! `IDLE_UNLOAD` without a call, and loaded again by the next one (root only). Its own
//! test binary: no other test shares the process's instance. Own table, removed after.

mod common;

use std::time::{Duration, Instant};

use berth_network::firewall::libnftables::{shared_is_loaded, IDLE_UNLOAD};
use berth_network::firewall::nftables::NftablesDriver;
use berth_network::firewall::{FirewallDriver, NetworkFirewall};
use common::TableGuard;

fn library_mapped() -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .contains("libnftables.so")
}

#[test]
fn the_library_is_unloaded_when_idle_and_loaded_again() {
    require_root!();
    let tag = common::unique();
    let table = format!("berth_t{tag}");
    let _guard = TableGuard(table.clone());
    let fw = NftablesDriver::with_table(&table).expect("driver");
    let net = NetworkFirewall {
        bridge: format!("bt{tag}"),
        subnet: common::test_subnet(),
    };
    fw.setup_network(&net).expect("setup network");
    assert!(
        shared_is_loaded() && library_mapped(),
        "the rules went in without the library"
    );

    // The unload is the library's own step, awaited here (not a measurement).
    let deadline = Instant::now() + IDLE_UNLOAD + Duration::from_secs(5);
    while shared_is_loaded() {
        assert!(
            Instant::now() < deadline,
            "still loaded after {IDLE_UNLOAD:?} idle"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!library_mapped(), "unloaded but still mapped");

    // The next call loads it again and sees the rules the first instance made.
    assert!(!fw.list_rules().expect("list rules").is_empty());
    assert!(shared_is_loaded(), "the listing ran without the library");
    fw.teardown_network(&net).expect("teardown network");
    assert!(fw.list_rules().expect("list rules").is_empty());
}
