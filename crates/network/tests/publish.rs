//! End to end (root only): a "container" netns on a bridge with a TCP server, its port
//! published through the nftables driver, reached from the host over loopback, from a
//! "client" netns through the host, and from itself (hairpin). Every test uses its own nft
//! table, bridge, netns names and 10.213.x.0/24 subnets, and removes all of it.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_network::firewall::iptables::IptablesDriver;
use berth_network::firewall::nftables::NftablesDriver;
use berth_network::firewall::{ContainerPorts, FirewallDriver, NetworkFirewall};
use berth_network::ipam::{gateway, Ipam};
use berth_network::link::{
    attach_container, delete_bridge, detach_container, ensure_bridge, BridgeConfig, ContainerLink,
    Netlink, NetnsRef,
};
use berth_network::port_spec::{parse, reserve};
use common::{iptables_nft_tables, run_ok, ChainsGuard, LinkGuard, TableGuard, TestNetns};

/// Enters `netns` on the current thread (only for threads this test owns).
fn enter(netns: &Path) {
    let f = std::fs::File::open(netns).expect("open netns");
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A TCP server on 0.0.0.0:8080 inside a netns that answers "hi\n"; stops on drop.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(netns: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            enter(&netns);
            let listener = TcpListener::bind("0.0.0.0:8080").expect("bind in netns");
            listener.set_nonblocking(true).expect("nonblocking");
            let _ = tx.send(());
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(b"hi\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("server started");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to `addr` (from inside `netns` if given) and returns what it says, or `None`
/// if the connection fails or says nothing within 3 s.
fn fetch(netns: Option<PathBuf>, addr: SocketAddr) -> Option<String> {
    std::thread::spawn(move || {
        if let Some(ns) = netns {
            enter(&ns);
        }
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .join()
    .ok()
    .flatten()
}

fn nft_table_text(table: &str) -> String {
    let out = common::run("nft", &["list", "table", "inet", table]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn published_ports_end_to_end_nftables() {
    require_root!();
    let table = format!("berth_t{}", common::unique());
    let _table_guard = TableGuard(table.clone());
    let fw = NftablesDriver::with_table(&table).expect("driver");
    end_to_end(&fw, &|| nft_table_text(&table));
    assert_eq!(fw.list_rules().expect("list"), vec![], "table left behind");
}

#[test]
fn published_ports_end_to_end_iptables() {
    require_root!();
    let prefix = format!("BT{}", common::unique().to_uppercase());
    let _serial = common::IPTABLES_TESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _guard = ChainsGuard(prefix.clone(), iptables_nft_tables());
    let fw = IptablesDriver::with_prefix(&prefix).expect("driver");
    end_to_end(&fw, &|| fw.list_rules().expect("iptables-save").join("\n"));
    assert_eq!(fw.list_rules().expect("list"), Vec::<String>::new());
}

/// The scenario, for any driver; `listing` shows the driver's current rules as text.
fn end_to_end(fw: &dyn FirewallDriver, listing: &dyn Fn() -> String) {
    let tag = common::unique();
    let bridge = format!("bt{tag}");
    let ctr_veth = format!("vt{tag}");
    let client_veth = format!("vc{tag}");
    let container_id = format!("ctr{tag}");
    let subnet = common::test_subnet();
    let client_subnet = common::test_subnet();

    let ctr_ns = TestNetns::new();
    let client_ns = TestNetns::new();
    let _bridge_guard = LinkGuard::new(&bridge);
    let _ctr_guard = LinkGuard::new(&ctr_veth);
    let _client_guard = LinkGuard::new(&client_veth);
    let state = tempfile::tempdir().expect("state dir");

    // Network and container.
    let ipam = Ipam::new(state.path(), &bridge, subnet).expect("ipam");
    let ctr_ip = ipam.allocate(&container_id).expect("allocate");
    let mut nl = Netlink::new().expect("netlink");
    let bridge_cfg = BridgeConfig {
        name: bridge.clone(),
        gateway: ipam.gateway(),
        prefix_len: subnet.prefix_len(),
    };
    ensure_bridge(&mut nl, &bridge_cfg).expect("bridge");
    attach_container(
        &mut nl,
        &NetnsRef::Path(ctr_ns.path()),
        &bridge,
        &ContainerLink {
            host_ifname: ctr_veth.clone(),
            container_ifname: "eth0".into(),
            address: ctr_ip,
            prefix_len: subnet.prefix_len(),
            gateway: ipam.gateway(),
            default_route: true,
            mac: None,
        },
    )
    .expect("attach container");
    let _server = Server::start(ctr_ns.path());

    // The client: its own veth to the host, not on the bridge.
    let host_side = gateway(client_subnet);
    let client_ip = Ipv4Addr::from(u32::from(client_subnet.network()) + 2);
    run_ok(
        "ip",
        &[
            "link",
            "add",
            &client_veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &client_ns.name,
        ],
    );
    run_ok(
        "ip",
        &[
            "addr",
            "add",
            &format!("{host_side}/24"),
            "dev",
            &client_veth,
        ],
    );
    run_ok("ip", &["link", "set", &client_veth, "up"]);
    let n = client_ns.name.as_str();
    run_ok(
        "ip",
        &[
            "-n",
            n,
            "addr",
            "add",
            &format!("{client_ip}/24"),
            "dev",
            "eth0",
        ],
    );
    run_ok("ip", &["-n", n, "link", "set", "eth0", "up"]);
    run_ok("ip", &["-n", n, "link", "set", "lo", "up"]);
    run_ok(
        "ip",
        &[
            "-n",
            n,
            "route",
            "add",
            "default",
            "via",
            &host_side.to_string(),
        ],
    );

    // Firewall.
    let net = NetworkFirewall {
        bridge: bridge.clone(),
        subnet,
    };
    fw.setup_network(&net).expect("setup network");
    fw.setup_network(&net).expect("setup network is idempotent");
    let specs = [
        parse(":8080").expect("spec"),
        parse("127.0.0.1::8080").expect("spec"),
    ];
    let reservation = reserve(&specs).expect("reserve host ports");
    let p = reservation.mappings()[0].host_port;
    let p2 = reservation.mappings()[1].host_port;
    fw.add_port_mappings(
        &net,
        &ContainerPorts {
            container_id: &container_id,
            container_ip: ctr_ip,
            mappings: reservation.mappings(),
        },
    )
    .expect("add port mappings");
    let listing_now = listing();
    assert_eq!(
        listing_now
            .matches(&format!("berth:ctr={container_id}"))
            .count(),
        2,
        "{listing_now}"
    );

    let hi = Some("hi\n".to_string());
    let at = |ip: Ipv4Addr, port: u16| SocketAddr::from((ip, port));
    // Host over loopback, for both mappings.
    assert_eq!(
        fetch(None, at(Ipv4Addr::LOCALHOST, p)),
        hi,
        "host -> 127.0.0.1:{p}"
    );
    assert_eq!(
        fetch(None, at(Ipv4Addr::LOCALHOST, p2)),
        hi,
        "host -> 127.0.0.1:{p2}"
    );
    // Another namespace, through the host's address on its link.
    assert_eq!(
        fetch(Some(client_ns.path()), at(host_side, p)),
        hi,
        "client -> {host_side}:{p}"
    );
    // The loopback-only mapping is not reachable from another interface.
    assert_eq!(
        fetch(Some(client_ns.path()), at(host_side, p2)),
        None,
        "client must not reach the 127.0.0.1-only port {p2}"
    );
    // Hairpin: the container reaches its own published port through the bridge address.
    assert_eq!(
        fetch(Some(ctr_ns.path()), at(ipam.gateway(), p)),
        hi,
        "hairpin -> {}:{p}",
        ipam.gateway()
    );

    // Teardown, from recorded state only (the container id and the bridge name).
    fw.remove_port_mappings(&container_id)
        .expect("remove mappings");
    let listing_now = listing();
    assert!(
        !listing_now.contains(&format!("berth:ctr={container_id}")),
        "{listing_now}"
    );
    assert!(
        listing_now.contains(&format!("berth:net={bridge}")),
        "{listing_now}"
    );
    drop(reservation);
    fw.teardown_network(&net).expect("teardown network");
    assert!(!listing().contains("berth:"), "{}", listing());
    assert!(detach_container(&mut nl, &ctr_veth).expect("detach"));
    assert!(delete_bridge(&mut nl, &bridge).expect("delete bridge"));
    ipam.release(&container_id).expect("release");
    assert!(!common::link_exists(&bridge));
    assert!(!common::link_exists(&ctr_veth));
}

#[test]
fn cleanup_all_removes_only_orphans() {
    require_root!();
    let tag = common::unique();
    let table = format!("berth_t{tag}");
    let _table_guard = TableGuard(table.clone());
    let fw = NftablesDriver::with_table(&table).expect("driver");
    let net = NetworkFirewall {
        bridge: format!("bt{tag}"),
        subnet: common::test_subnet(),
    };
    fw.setup_network(&net).expect("setup");
    let mapping = reserve(&[parse("127.0.0.1::80").expect("spec")]).expect("reserve");
    for id in ["alive", "dead"] {
        fw.add_port_mappings(
            &net,
            &ContainerPorts {
                container_id: id,
                container_ip: "10.213.0.2".parse().expect("ip"),
                mappings: mapping.mappings(),
            },
        )
        .expect("add");
    }
    fw.cleanup_all(&["alive"], &[&net.bridge]).expect("cleanup");
    let listing = nft_table_text(&table);
    assert!(listing.contains("berth:ctr=alive"), "{listing}");
    assert!(!listing.contains("berth:ctr=dead"), "{listing}");
    fw.cleanup_all(&[], &[]).expect("cleanup everything");
    assert_eq!(fw.list_rules().expect("list"), vec![]);
    assert!(!common::run("nft", &["list", "table", "inet", &table])
        .status
        .success());
}

/// Port rules go in alone on the fast path; with berth's table gone (an admin's `flush
/// ruleset`, a firewall reload) they bring the base chains back with them.
#[test]
fn port_rules_bring_the_base_chains_back_when_the_table_is_gone() {
    require_root!();
    let tag = common::unique();
    let table = format!("berth_t{tag}");
    let _table_guard = TableGuard(table.clone());
    let fw = NftablesDriver::with_table(&table).expect("driver");
    let net = NetworkFirewall {
        bridge: format!("bt{tag}"),
        subnet: common::test_subnet(),
    };
    let mapping = reserve(&[parse("127.0.0.1::80").expect("spec")]).expect("reserve");
    let ports = |id| ContainerPorts {
        container_id: id,
        container_ip: "10.213.0.2".parse().expect("ip"),
        mappings: mapping.mappings(),
    };
    fw.setup_network(&net).expect("setup");
    fw.add_port_mappings(&net, &ports("first")).expect("add");
    common::run_ok("nft", &["delete", "table", "inet", &table]);
    fw.add_port_mappings(&net, &ports("second"))
        .expect("add after the table went");
    let listing = nft_table_text(&table);
    assert!(listing.contains("berth:ctr=second"), "{listing}");
    assert!(listing.contains("jump hostports_local"), "{listing}");
    fw.cleanup_all(&[], &[]).expect("cleanup everything");
}
