//! Helpers for the root-only tests: unique names, and guards that undo what a test made on
//! the host also when it fails, and check that the undo worked.
//!
//! Names: bridges `bt<hex>`, veths `vt<hex>`/`vc<hex>`, netns `berth-test-<hex>`; subnets are
//! /24s in 10.213.0.0/16 that no host route overlaps. Nothing here touches anything else.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use berth_network::firewall::iptables::IptablesDriver;
use berth_network::firewall::FirewallDriver;
use berth_network::ipam;
use berth_network::link::Netlink;
use ipnet::Ipv4Net;

/// Whether the test can touch the host's network (it needs root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Skips a root-only test when not root, loudly.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// A short hex tag unique to this process and call.
pub fn unique() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = (std::process::id().wrapping_mul(2_654_435_761)) ^ nanos.rotate_left(7) ^ (n << 20);
    format!("{:06x}", mixed & 0xff_ffff)
}

/// A /24 in 10.213.0.0/16 overlapping no host route and no other subnet this process took.
pub fn test_subnet() -> Ipv4Net {
    static TAKEN: Mutex<Option<HashSet<u8>>> = Mutex::new(None);
    let routes = ipam::host_routes().expect("read host routes");
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    let start = (std::process::id() % 200) as u8;
    for i in 0..=255u8 {
        let x = start.wrapping_add(i.wrapping_mul(37));
        if taken.contains(&x) {
            continue;
        }
        let net = Ipv4Net::new(Ipv4Addr::new(10, 213, x, 0), 24).expect("valid /24");
        if ipam::pick_subnet(&routes, [net]).is_some() {
            taken.insert(x);
            return net;
        }
    }
    panic!("no free /24 in 10.213.0.0/16");
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd}: {e}"))
}

pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn link_exists(name: &str) -> bool {
    Netlink::new()
        .expect("netlink")
        .link_index(name)
        .expect("link lookup")
        .is_some()
}

/// Reports a failed cleanup: a panic normally, only a message while already unwinding
/// (a second panic would abort and hide the first failure).
pub fn cleanup_failed(what: String) {
    if std::thread::panicking() {
        eprintln!("CLEANUP FAILED: {what}");
    } else {
        panic!("cleanup failed: {what}");
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new() -> Self {
        let name = format!("berth-test-{}", unique());
        run_ok("ip", &["netns", "add", &name]);
        Self { name }
    }

    pub fn path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
        if self.path().exists() {
            cleanup_failed(format!("netns {} still exists", self.name));
        }
    }
}

/// A host link deleted on drop (for links the test made or expects the code to make).
pub struct LinkGuard {
    pub name: String,
}

impl LinkGuard {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        if let Ok(mut nl) = Netlink::new() {
            let _ = nl.delete_link_by_name(&self.name);
        }
        if link_exists(&self.name) {
            cleanup_failed(format!("link {} still exists", self.name));
        }
    }
}

/// Pings `addr` once (busybox ping; only addresses the test made itself).
pub fn ping(addr: Ipv4Addr) -> bool {
    run(
        "busybox",
        &["ping", "-c", "1", "-W", "2", &addr.to_string()],
    )
    .status
    .success()
}

/// Deletes the test's nft table on drop and checks it is gone.
pub struct TableGuard(pub String);

impl Drop for TableGuard {
    fn drop(&mut self) {
        let _ = run("nft", &["delete", "table", "inet", &self.0]);
        let out = run("nft", &["list", "table", "inet", &self.0]);
        if out.status.success() {
            cleanup_failed(format!("nft table inet {} still exists", self.0));
        }
    }
}

/// The `ip filter|raw|nat` nftables tables that exist now (iptables-nft makes them on first use).
pub fn iptables_nft_tables() -> Vec<String> {
    let out = run("nft", &["list", "tables"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("table ip "))
        .filter(|t| ["filter", "raw", "nat"].contains(t))
        .map(str::to_string)
        .collect()
}

/// Held by every iptables test of a binary for its whole run: the tables iptables-nft
/// makes are shared, and a guard can only tell "made for this test" (removed after it)
/// from "was there before" when no other iptables test runs meanwhile.
pub static IPTABLES_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Removes the test's iptables chains (and jumps) on drop and checks none is left; the
/// `ip filter/raw/nat` tables iptables-nft made for this test go too, if they hold no rule
/// (tables that existed before, or that someone filled meanwhile, are left alone).
pub struct ChainsGuard(pub String, pub Vec<String>);

impl Drop for ChainsGuard {
    fn drop(&mut self) {
        if let Ok(fw) = IptablesDriver::with_prefix(&self.0) {
            let _ = fw.cleanup_all(&[], &[]);
        }
        for t in iptables_nft_tables() {
            if self.1.contains(&t) {
                continue;
            }
            let listing = run("nft", &["list", "table", "ip", &t]);
            let text = String::from_utf8_lossy(&listing.stdout);
            let has_rules = text.lines().map(str::trim).any(|l| {
                !l.is_empty()
                    && !l.starts_with("table ")
                    && !l.starts_with("chain ")
                    && !l.starts_with("type ")
                    && l != "}"
            });
            if !has_rules {
                run("nft", &["delete", "table", "ip", &t]);
            }
        }
        let mut left = String::new();
        for t in ["filter", "raw", "nat"] {
            let saved = run("iptables-save", &["-t", t]);
            left.push_str(&String::from_utf8_lossy(&saved.stdout));
        }
        if left.contains(&format!("{}-", self.0)) {
            cleanup_failed(format!("iptables chains {}-* left behind", self.0));
        }
    }
}
