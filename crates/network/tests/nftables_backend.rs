//! How the nftables driver reaches the kernel (root only): libnftables in-process when it
//! loads, `nft` spawned otherwise, with the same rules either way. Each test uses its own
//! tables (`berth_t<hex>`), bridge names and 10.213.x.0/24 subnets, and removes them.

mod common;

use std::os::fd::AsFd;

use berth_network::firewall::libnftables::DEFAULT_LIBRARY;
use berth_network::firewall::nftables::NftablesDriver;
use berth_network::firewall::{ContainerPorts, FirewallDriver, NetworkFirewall};
use berth_network::port_spec::{parse, reserve, PortReservation};
use common::{TableGuard, TestNetns};

/// Where Debian puts `nft`; the fallback test spawns it by this path.
fn nft_binary() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nft installed")
}

/// The table as `nft list table` prints it (no handles), from the host's namespace.
fn table_text(table: &str) -> String {
    common::run_ok("nft", &["list", "table", "inet", table])
}

fn table_exists(table: &str) -> bool {
    common::run("nft", &["list", "table", "inet", table])
        .status
        .success()
}

/// Two containers' ports, on all addresses (tcp) and on 127.0.0.1 (udp), free right now.
fn ports() -> PortReservation {
    reserve(&[
        parse("0.0.0.0::80").expect("spec"),
        parse("127.0.0.1::53/udp").expect("spec"),
    ])
    .expect("reserve")
}

/// A network with two containers' ports, one container removed again; returns what the
/// table said with both and with one, with the table's name replaced by `T` so that two
/// tables can be compared.
fn scenario(fw: &NftablesDriver, net: &NetworkFirewall, res: &PortReservation) -> [String; 2] {
    let ip_of = |n: u32| std::net::Ipv4Addr::from(u32::from(net.subnet.network()) + n);
    fw.setup_network(net).expect("setup network");
    for (id, n) in [("ctr-a", 2), ("ctr-b", 3)] {
        fw.add_port_mappings(
            net,
            &ContainerPorts {
                container_id: id,
                container_ip: ip_of(n),
                mappings: res.mappings(),
            },
        )
        .expect("add port mappings");
    }
    let anon = |s: String| s.replace(fw.table(), "T");
    let both = anon(table_text(fw.table()));
    assert_eq!(fw.containers().expect("containers"), ["ctr-a", "ctr-b"]);
    assert_eq!(
        fw.containers_in(net.subnet).expect("containers in"),
        ["ctr-a", "ctr-b"]
    );
    fw.remove_port_mappings("ctr-a").expect("remove");
    let one = anon(table_text(fw.table()));
    assert_eq!(fw.containers().expect("containers"), ["ctr-b"]);
    fw.remove_port_mappings("ctr-a")
        .expect("remove again is a no-op");
    [both, one]
}

/// Removes everything and checks the table went with it.
fn clean_up(fw: &NftablesDriver, net: &NetworkFirewall) {
    fw.remove_port_mappings("ctr-b").expect("remove");
    fw.teardown_network(net).expect("teardown");
    assert_eq!(fw.list_rules().expect("list"), vec![]);
    assert!(
        !table_exists(fw.table()),
        "table {} left behind",
        fw.table()
    );
}

fn test_net(tag: &str) -> NetworkFirewall {
    NetworkFirewall {
        bridge: format!("bt{tag}"),
        subnet: common::test_subnet(),
    }
}

/// A driver on a fresh table that can only work in-process: its `nft` does not exist, so
/// any spawn would fail. The guard removes the table.
fn in_process_driver(tag: &str) -> (TableGuard, NftablesDriver) {
    let table = format!("berth_t{tag}");
    let guard = TableGuard(table.clone());
    let fw = NftablesDriver::with_table_and_paths(&table, DEFAULT_LIBRARY, "/nonexistent/nft")
        .expect("driver");
    assert!(fw.in_process(), "{DEFAULT_LIBRARY} did not load");
    (guard, fw)
}

/// With the library there, every operation runs in-process: the driver is given an `nft`
/// that does not exist, so a spawn would fail. The kernel's ruleset has the rules.
#[test]
fn in_process_adds_and_removes_a_containers_rules() {
    require_root!();
    let tag = common::unique();
    let (_guard, fw) = in_process_driver(&tag);
    let table = fw.table().to_string();
    let net = test_net(&tag);
    let res = ports();
    let [tcp, udp] = [res.mappings()[0].host_port, res.mappings()[1].host_port];
    let [both, one] = scenario(&fw, &net, &res);

    let a = net.subnet.network().octets();
    let ip = |n: u8| format!("{}.{}.{}.{n}", a[0], a[1], a[2]);
    for (text, has_a) in [(&both, true), (&one, false)] {
        for (id, n) in [("ctr-a", 2), ("ctr-b", 3)] {
            let expect = [
                format!(
                    "tcp dport {tcp} dnat ip to {}:80 comment \"berth:ctr={id}\"",
                    ip(n)
                ),
                format!(
                    "ip daddr 127.0.0.1 udp dport {udp} dnat ip to {}:53 comment \"berth:ctr={id}\"",
                    ip(n)
                ),
            ];
            for rule in expect {
                assert_eq!(
                    text.contains(&rule),
                    has_a || id == "ctr-b",
                    "{rule}\n{text}"
                );
            }
        }
    }
    // The kernel's own view, in JSON: the loopback port sits in the output-only chain.
    let json = common::run_ok(
        "nft",
        &["-j", "list", "chain", "inet", &table, "hostports_local"],
    );
    assert!(
        json.contains("berth:ctr=ctr-b") && !json.contains("berth:ctr=ctr-a"),
        "{json}"
    );
    clean_up(&fw, &net);
}

/// Without the library (forced missing), the driver spawns `nft` and the rules come out
/// exactly as the in-process path writes them.
#[test]
fn fallback_spawns_nft_and_writes_the_same_rules() {
    require_root!();
    let tag = common::unique();
    let spawned_table = format!("berth_t{tag}");
    let in_process_table = format!("berth_u{tag}");
    let _guards = [
        TableGuard(spawned_table.clone()),
        TableGuard(in_process_table.clone()),
    ];
    let spawned = NftablesDriver::with_table_and_paths(
        &spawned_table,
        "/nonexistent/libnftables.so.1",
        nft_binary(),
    )
    .expect("driver");
    assert!(!spawned.in_process());
    let in_process =
        NftablesDriver::with_table_and_paths(&in_process_table, DEFAULT_LIBRARY, nft_binary())
            .expect("driver");
    assert!(in_process.in_process());

    let net = test_net(&tag);
    let res = ports();
    let by_spawn = scenario(&spawned, &net, &res);
    let by_library = scenario(&in_process, &net, &res);
    assert_eq!(by_spawn, by_library);
    assert!(by_spawn[0].contains("berth:ctr=ctr-a"), "{}", by_spawn[0]);
    clean_up(&spawned, &net);
    clean_up(&in_process, &net);
}

/// The library's context talks to the namespace it was made in; a call from a thread in
/// another namespace changes that namespace's ruleset, as a spawned `nft` would, and the
/// host's context is untouched by it.
#[test]
fn in_process_follows_the_callers_network_namespace() {
    require_root!();
    let tag = common::unique();
    let (_guard, fw) = in_process_driver(&tag);
    let table = fw.table().to_string();
    let ns = TestNetns::new();
    let net = test_net(&tag);
    fw.setup_network(&net).expect("setup on the host");

    let other = NetworkFirewall {
        bridge: format!("bu{tag}"),
        subnet: net.subnet,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(ns.path()).expect("open netns");
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            fw.setup_network(&other).expect("setup in the netns");
        })
        .join()
        .expect("thread");
    });
    let inside = ns.exec(&["nft", "list", "table", "inet", &table]);
    let inside = String::from_utf8_lossy(&inside.stdout);
    assert!(
        inside.contains(&format!("berth:net={}", other.bridge)),
        "{inside}"
    );
    assert!(
        !inside.contains(&format!("berth:net={}\"", net.bridge)),
        "{inside}"
    );
    let host = table_text(&table);
    assert!(
        host.contains(&format!("berth:net={}\"", net.bridge)),
        "{host}"
    );
    assert!(!host.contains(&other.bridge), "{host}");

    // And the host's context still works after.
    fw.teardown_network(&net).expect("teardown on the host");
    assert!(!table_exists(&table));
    // The netns (and its table) goes with `ns`.
}

/// The inodes of the NETLINK_NETFILTER sockets of this network namespace.
fn netfilter_socket_inodes() -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/netlink").expect("read /proc/net/netlink");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Eth 12 is NETLINK_NETFILTER; the inode is the last column.
            (f.get(1) == Some(&"12")).then(|| f.last()?.parse().ok())?
        })
        .collect()
}

/// This process's NETLINK_NETFILTER sockets: descriptor, and whether it is close-on-exec.
fn netfilter_sockets() -> Vec<(String, bool)> {
    let netfilter = netfilter_socket_inodes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("read fds")
        .flatten()
    {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        if !netfilter.contains(&inode) {
            continue;
        }
        let fd = entry.file_name().to_string_lossy().into_owned();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .unwrap_or(0);
        found.push((fd, flags & libc::O_CLOEXEC as u32 != 0));
    }
    found
}

/// The library opens its netlink socket without close-on-exec; the driver sets it, so that
/// the shims and containers the daemon starts do not inherit a handle on the host's
/// firewall.
#[test]
fn in_process_socket_is_closed_on_exec() {
    require_root!();
    let tag = common::unique();
    let (_guard, fw) = in_process_driver(&tag);
    let net = test_net(&tag);
    fw.setup_network(&net).expect("setup");

    // Another test's driver may be between making its context and marking the socket:
    // only a socket that stays inheritable is a failure.
    let mut ours = Vec::new();
    for _ in 0..3 {
        ours = netfilter_sockets();
        if ours.iter().all(|(_, cloexec)| *cloexec) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !ours.is_empty(),
        "no netfilter socket open: is the context in use?"
    );
    assert!(ours.iter().all(|(_, cloexec)| *cloexec), "{ours:?}");
    fw.teardown_network(&net).expect("teardown");
}
