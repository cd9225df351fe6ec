//! The bridge network object end to end (root only): two "containers" (network namespaces
//! made with `create_netns`) on a test bridge, a busybox httpd in one, reached over a port
//! published on 127.0.0.1 and from the other namespace; failed connects that leave nothing;
//! disconnect, crash recovery and teardown. Everything the test makes has a test-unique name
//! (bridge `btest<hex>`, nft table `berth_t<hex>` or iptables chains `BT<HEX>-*`, veths
//! `vb<a|b|c|d><hex>0000`, 10.213.x.0/24 subnets, namespaces in a tempdir), and guards
//! remove it also on panic.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_network::bridge_network::{
    legacy_veth_name, veth_name, BridgeNetwork, BridgeNetworkConfig, BridgeNetworkError,
    ConnectRequest, Endpoint,
};
use berth_network::firewall::iptables::IptablesDriver;
use berth_network::firewall::nftables::NftablesDriver;
use berth_network::firewall::FirewallDriver;
use berth_network::ipam::Ipam;
use berth_network::link::Netlink;
use berth_network::netns::{create_netns, remove_netns, unmount_netns_dir};
use berth_network::port_spec::{parse, PortSpec, PortSpecError};
use common::{ChainsGuard, LinkGuard, TableGuard};
use ipnet::Ipv4Net;

/// Removes the test's namespaces and the netns directory's mount on drop, and checks that
/// nothing stays mounted under the test's tempdir.
struct NetnsGuard {
    root: PathBuf,
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = remove_netns(f);
        }
        let _ = unmount_netns_dir(&self.dir);
        if mounts_under(&self.root) {
            common::cleanup_failed(format!("mounts left under {}", self.root.display()));
        }
    }
}

fn mounts_under(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let prefix = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp.starts_with(&prefix))
}

/// Tears the network down on drop if the test did not get to it.
struct NetworkGuard(Option<BridgeNetwork>);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        if let Some(net) = self.0.take() {
            if let Err(e) = net.teardown() {
                common::cleanup_failed(format!("network teardown: {e}"));
            }
        }
    }
}

/// A busybox httpd inside a namespace, killed on drop.
struct Httpd(Child);

impl Httpd {
    fn start(netns: &Path, docroot: &Path) -> Self {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["busybox", "httpd", "-f", "-p", "80", "-h"])
            .arg(docroot)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn httpd");
        Self(child)
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /` over HTTP/1.0 to `addr`, from inside `netns` if given; the body, or `None` if
/// the connection fails or says nothing within 3 s.
fn get(netns: Option<PathBuf>, addr: SocketAddr) -> Option<String> {
    std::thread::spawn(move || {
        if let Some(ns) = netns {
            let f = std::fs::File::open(&ns).ok()?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        }
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
    })
    .join()
    .ok()
    .flatten()
}

/// [`get`], retried for up to 5 s while the server starts.
fn get_eventually(netns: Option<PathBuf>, addr: SocketAddr) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = get(netns.clone(), addr);
        if got.is_some() || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn nft_table_text(table: &str) -> String {
    let out = common::run("nft", &["list", "table", "inet", table]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip_forward() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("ip_forward")
}

fn specs(list: &[&str]) -> Vec<PortSpec> {
    list.iter().map(|s| parse(s).expect("spec")).collect()
}

/// What a container leaves on the host, for "nothing is left" checks.
struct Traces {
    veth: bool,
    address: bool,
    rules: usize,
}

fn traces(state_dir: &Path, name: &str, subnet: Ipv4Net, listing: &str, id: &str) -> Traces {
    let ipam = Ipam::new(state_dir, name, subnet).expect("ipam");
    let address = ipam
        .allocations()
        .map(|a| a.contains_key(id))
        .unwrap_or(false);
    Traces {
        veth: common::link_exists(&veth_name(id, name)),
        address,
        rules: listing.matches(&format!("berth:ctr={id}")).count(),
    }
}

fn assert_no_traces(t: Traces, what: &str) {
    assert!(!t.veth, "{what}: veth left");
    assert!(!t.address, "{what}: address left allocated");
    assert_eq!(t.rules, 0, "{what}: firewall rules left");
}

/// The MAC of `eth0` inside `netns`, as `ip` shows it.
fn mac_in(netns: &Path) -> String {
    let out = common::run_ok(
        "nsenter",
        &[
            &format!("--net={}", netns.display()),
            "ip",
            "-o",
            "link",
            "show",
            "eth0",
        ],
    );
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The two tests share the host's link table: `recover` in one would take the other's
/// veths (a stray one, or one between creation and joining its bridge) for crash leftovers.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn bridge_network_end_to_end_nftables() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tag = common::unique();
    let table = format!("berth_t{tag}");
    let _table_guard = TableGuard(table.clone());
    let fw = || -> Box<dyn FirewallDriver> {
        Box::new(NftablesDriver::with_table(&table).expect("driver"))
    };
    scenario(&tag, &fw, &|| nft_table_text(&table));
    assert!(!common::run("nft", &["list", "table", "inet", &table])
        .status
        .success());
}

#[test]
fn bridge_network_end_to_end_iptables() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tag = common::unique();
    let prefix = format!("BT{}", tag.to_uppercase());
    let _serial = common::IPTABLES_TESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _guard = ChainsGuard(prefix.clone(), common::iptables_nft_tables());
    let fw = || -> Box<dyn FirewallDriver> {
        Box::new(IptablesDriver::with_prefix(&prefix).expect("driver"))
    };
    let listing = || {
        IptablesDriver::with_prefix(&prefix)
            .expect("driver")
            .list_rules()
            .expect("iptables-save")
            .join("\n")
    };
    scenario(&tag, &fw, &listing);
    // Teardown took the chains and the jumps to them too.
    let mut saved = String::new();
    for t in ["filter", "raw", "nat"] {
        saved.push_str(&common::run_ok("iptables-save", &["-t", t]));
    }
    assert!(!saved.contains(&format!("{prefix}-")), "{saved}");
}

/// The scenario, for any driver: `fw` makes the driver (once per daemon "start"), `listing`
/// shows its rules as text.
fn scenario(tag: &str, fw: &dyn Fn() -> Box<dyn FirewallDriver>, listing: &dyn Fn() -> String) {
    let bridge = format!("btest{tag}");
    let subnet = common::test_subnet();
    let id = |c: char| format!("{c}{tag}{}", "0".repeat(57));
    let (id_a, id_b, id_c, id_d) = (id('a'), id('b'), id('c'), id('d'));
    let forward_before = ip_forward();

    let tmp = tempfile::tempdir().expect("tempdir");
    let state_dir = tmp.path().join("state");
    let ns_dir = tmp.path().join("netns");
    let (ns_a, ns_b) = (ns_dir.join("a"), ns_dir.join("b"));
    let docroot = tmp.path().join("www");
    std::fs::create_dir_all(&docroot).expect("docroot");
    std::fs::write(docroot.join("index.html"), "hello from a\n").expect("index");

    // Guards drop in reverse order: network, links, then namespaces (the firewall's guard
    // is the caller's, dropped last).
    let _ns_guard = NetnsGuard {
        root: tmp.path().to_path_buf(),
        dir: ns_dir.clone(),
        files: vec![ns_a.clone(), ns_b.clone()],
    };
    let _link_guards: Vec<LinkGuard> = [
        &bridge,
        &veth_name(&id_a, "bridge"),
        &veth_name(&id_b, "bridge"),
    ]
    .into_iter()
    .chain([
        &veth_name(&id_c, "bridge"),
        &veth_name(&id_d, "bridge"),
        &veth_name(&id_d, "elsewhere"),
    ])
    .map(|n| LinkGuard::new(n))
    .collect();

    let cfg = BridgeNetworkConfig {
        name: "bridge".to_string(),
        bridge: bridge.clone(),
        subnet: Some(subnet),
        state_dir: state_dir.clone(),
    };
    let open = || BridgeNetwork::open_with_firewall(cfg.clone(), fw()).expect("open network");

    // Open twice: the second finds everything in place and changes nothing.
    drop(open());
    let mut guard = NetworkGuard(Some(open()));
    let net = guard.0.as_ref().expect("network");
    assert_eq!(net.subnet(), subnet);
    assert_eq!(net.bridge_name(), bridge);
    let gw = net.gateway();
    assert_eq!(u32::from(gw), u32::from(subnet.network()) + 1);
    assert!(common::link_exists(&bridge));
    let rules = listing();
    assert_eq!(
        rules.matches(&format!("berth:net={bridge}")).count(),
        // Forward 3, guard 1, masquerade 3, isolation 2.
        9,
        "network rules written once: {rules}"
    );

    create_netns(&ns_a).expect("netns a");
    create_netns(&ns_b).expect("netns b");

    // Two containers: a with a port on 127.0.0.1, b with none.
    let ports_a = specs(&["127.0.0.1::80"]);
    let ep_a: Endpoint = net
        .connect(&ConnectRequest {
            container_id: &id_a,
            netns: &ns_a,
            ports: &ports_a,
            ifname: "eth0",
            default_route: true,
        })
        .expect("connect a");
    let ep_b = net
        .connect(&ConnectRequest {
            container_id: &id_b,
            netns: &ns_b,
            ports: &[],
            ifname: "eth0",
            default_route: true,
        })
        .expect("connect b");
    assert!(subnet.contains(&ep_a.ip) && subnet.contains(&ep_b.ip));
    assert_ne!(ep_a.ip, ep_b.ip);
    assert_eq!((ep_a.gateway, ep_a.prefix_len), (gw, subnet.prefix_len()));
    assert_eq!(ep_a.host_ifname, veth_name(&id_a, "bridge"));
    let [a, b, c, d] = ep_a.ip.octets();
    assert_eq!(ep_a.mac, format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}"));
    assert_eq!(mac_in(&ns_a), ep_a.mac);
    assert_eq!(ep_a.ports.len(), 1);
    let host_port = ep_a.ports[0].host_port;
    assert_ne!(host_port, 0);
    assert!(ep_b.ports.is_empty());

    // The held port cannot be taken by another program.
    assert!(TcpListener::bind(("127.0.0.1", host_port)).is_err());

    let httpd = Httpd::start(&ns_a, &docroot);
    let hello = Some("hello from a\n".to_string());
    assert_eq!(
        get_eventually(Some(ns_b.clone()), SocketAddr::from((ep_a.ip, 80))),
        hello,
        "b -> a:80 over the bridge"
    );
    assert_eq!(
        get_eventually(None, SocketAddr::from((Ipv4Addr::LOCALHOST, host_port))),
        hello,
        "host -> 127.0.0.1:{host_port}"
    );

    // A second connect of a connected container fails and leaves it working.
    let again = net.connect(&ConnectRequest {
        container_id: &id_a,
        netns: &ns_a,
        ports: &[],
        ifname: "eth0",
        default_route: true,
    });
    assert!(
        matches!(again, Err(BridgeNetworkError::AlreadyConnected(_))),
        "{again:?}"
    );
    assert_eq!(
        get(None, SocketAddr::from((Ipv4Addr::LOCALHOST, host_port))),
        hello
    );

    // A busy host port fails first, and nothing is made.
    let busy = TcpListener::bind("127.0.0.1:0").expect("busy port");
    let busy_port = busy.local_addr().expect("addr").port();
    let err = net
        .connect(&ConnectRequest {
            container_id: &id_c,
            netns: &ns_b,
            ports: &specs(&[&format!("127.0.0.1:{busy_port}:80")]),
            ifname: "eth0",
            default_route: true,
        })
        .expect_err("busy port");
    assert!(
        matches!(err, BridgeNetworkError::Ports(PortSpecError::InUse { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("already in use"), "{err}");
    assert_no_traces(
        traces(&state_dir, "bridge", subnet, &listing(), &id_c),
        "busy port",
    );
    drop(busy);

    // Failures after the address and the veth exist are undone too: a namespace that is
    // not there, and a mapping the firewall refuses after the veth is made (IPv6 host
    // address; or, where lo has no ::1, the bind fails first).
    let err = net
        .connect(&ConnectRequest {
            container_id: &id_c,
            netns: &tmp.path().join("no-such-netns"),
            ports: &[],
            ifname: "eth0",
            default_route: true,
        })
        .expect_err("missing netns");
    assert!(matches!(err, BridgeNetworkError::Link(_)), "{err}");
    assert_no_traces(
        traces(&state_dir, "bridge", subnet, &listing(), &id_c),
        "missing netns",
    );
    let netns_c = ns_dir.join("c");
    create_netns(&netns_c).expect("netns c");
    let err = net.connect(&ConnectRequest {
        container_id: &id_c,
        netns: &netns_c,
        ports: &specs(&["[::1]::80"]),
        ifname: "eth0",
        default_route: true,
    });
    remove_netns(&netns_c).expect("remove netns c");
    assert!(err.is_err(), "IPv6 host port must be refused");
    assert_no_traces(
        traces(&state_dir, "bridge", subnet, &listing(), &id_c),
        "refused mapping",
    );

    // Disconnect: everything of a goes, the port is free again, and it is idempotent.
    drop(httpd);
    net.disconnect(&id_a).expect("disconnect a");
    assert_no_traces(
        traces(&state_dir, "bridge", subnet, &listing(), &id_a),
        "disconnect",
    );
    TcpListener::bind(("127.0.0.1", host_port)).expect("port free after disconnect");
    net.disconnect(&id_a).expect("disconnect twice");

    // A crash: a is connected again, the daemon dies (no disconnect), and a stray veth of
    // ours sits on the host. The restarted daemon knows only b is alive.
    let ep_a2 = net
        .connect(&ConnectRequest {
            container_id: &id_a,
            netns: &ns_a,
            ports: &ports_a,
            ifname: "eth0",
            default_route: true,
        })
        .expect("reconnect a");
    assert_eq!(ep_a2.ports.len(), 1);
    Netlink::new()
        .expect("netlink")
        .create_veth(&veth_name(&id_d, "bridge"), &format!("p{tag}"), None)
        .expect("stray veth");
    // Another network's veth, on no bridge for a moment (its bridge going away): not ours.
    Netlink::new()
        .expect("netlink")
        .create_veth(&veth_name(&id_d, "elsewhere"), &format!("q{tag}"), None)
        .expect("another network's veth");
    drop(guard.0.take());
    guard.0 = Some(open());
    let restarted = guard.0.as_ref().expect("network");
    let t = traces(&state_dir, "bridge", subnet, &listing(), &id_a);
    assert!(t.veth && t.address && t.rules == 1, "crash leftovers exist");
    // The restarted daemon holds a's port again, as for a container that survived.
    let port_a2 = ep_a2.ports[0].host_port;
    restarted
        .hold_ports(&id_a, &ep_a2.ports)
        .expect("hold ports");
    assert!(TcpListener::bind(("127.0.0.1", port_a2)).is_err());
    assert_eq!(
        restarted
            .recover(&[&id_b], &Default::default())
            .expect("recover"),
        2
    );
    assert_no_traces(
        traces(&state_dir, "bridge", subnet, &listing(), &id_a),
        "recover",
    );
    assert!(
        !common::link_exists(&veth_name(&id_d, "bridge")),
        "stray veth left"
    );
    assert!(
        common::link_exists(&veth_name(&id_d, "elsewhere")),
        "another network's veth was taken for this one's orphan"
    );
    Netlink::new()
        .expect("netlink")
        .delete_link_by_name(&veth_name(&id_d, "elsewhere"))
        .expect("delete the other network's veth");
    TcpListener::bind(("127.0.0.1", port_a2)).expect("port released by recover");
    assert!(
        common::link_exists(&veth_name(&id_b, "bridge")),
        "live b was touched"
    );
    assert_eq!(
        restarted
            .recover(&[&id_b], &Default::default())
            .expect("recover again"),
        0
    );

    // Teardown removes b, the bridge, the rules, the state, and restores ip_forward.
    guard
        .0
        .take()
        .expect("network")
        .teardown()
        .expect("teardown");
    assert!(!common::link_exists(&bridge));
    assert!(!common::link_exists(&veth_name(&id_b, "bridge")));
    assert!(!listing().contains("berth:"), "{}", listing());
    assert_eq!(ip_forward(), forward_before);
    let left: Vec<_> = std::fs::read_dir(&state_dir)
        .expect("state dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert!(left.is_empty(), "state files left: {left:?}");

    assert!(remove_netns(&ns_a).expect("remove a"));
    assert!(remove_netns(&ns_b).expect("remove b"));
    assert!(unmount_netns_dir(&ns_dir).expect("unmount netns dir"));
    assert!(!mounts_under(tmp.path()));
}

/// The IPv4 addresses on a host link, as `ip` shows them (`a.b.c.d/len`).
fn addresses(link: &str) -> String {
    common::run_ok("ip", &["-4", "-o", "addr", "show", "dev", link])
}

#[test]
fn subnet_is_kept_across_restarts_and_changes_only_when_unused() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tag = common::unique();
    let table = format!("berth_t{tag}");
    let bridge = format!("btest{tag}");
    let id = format!("e{tag}{}", "0".repeat(57));
    let (s1, s2, s3) = (
        common::test_subnet(),
        common::test_subnet(),
        common::test_subnet(),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let ns_dir = tmp.path().join("netns");
    let ns = ns_dir.join("e");
    let _table_guard = TableGuard(table.clone());
    let _ns_guard = NetnsGuard {
        root: tmp.path().to_path_buf(),
        dir: ns_dir.clone(),
        files: vec![ns.clone()],
    };
    let _bridge_guard = LinkGuard::new(&bridge);
    let _veth_guard = LinkGuard::new(&veth_name(&id, "bridge"));
    let open = |subnet: Option<Ipv4Net>| {
        BridgeNetwork::open_with_firewall(
            BridgeNetworkConfig {
                name: "bridge".to_string(),
                bridge: bridge.clone(),
                subnet,
                state_dir: tmp.path().join("state"),
            },
            Box::new(NftablesDriver::with_table(&table).expect("driver")),
        )
    };
    let gw = |s: Ipv4Net| {
        format!(
            "{}/{}",
            Ipv4Addr::from(u32::from(s.network()) + 1),
            s.prefix_len()
        )
    };

    // A bridge of that name that nothing recorded (a wiped state dir) is replaced.
    Netlink::new()
        .expect("netlink")
        .create_bridge(&bridge)
        .expect("unrecorded bridge");
    drop(open(Some(s1)).expect("open on s1"));
    assert!(addresses(&bridge).contains(&gw(s1)));
    // No subnet configured: the recorded one, although the bridge's own route overlaps it.
    let net = open(None).expect("reopen");
    assert_eq!(net.subnet(), s1);
    drop(net);
    assert!(addresses(&bridge).contains(&gw(s1)));

    // A new subnet with nobody on the network: the bridge moves.
    let mut guard = NetworkGuard(Some(open(Some(s2)).expect("open on s2")));
    let addrs = addresses(&bridge);
    assert!(
        addrs.contains(&gw(s2)) && !addrs.contains(&gw(s1)),
        "{addrs}"
    );

    // With a container on it, it must not move, and the refusal changes nothing.
    create_netns(&ns).expect("netns");
    let net = guard.0.as_ref().expect("network");
    net.connect(&ConnectRequest {
        container_id: &id,
        netns: &ns,
        ports: &[],
        ifname: "eth0",
        default_route: true,
    })
    .expect("connect");
    let err = open(Some(s3)).expect_err("subnet change while in use");
    assert!(
        matches!(err, BridgeNetworkError::NetworkInUse { ref containers, .. } if containers.as_slice() == [id.as_str()]),
        "{err}"
    );
    assert!(addresses(&bridge).contains(&gw(s2)));
    assert!(common::link_exists(&veth_name(&id, "bridge")));

    net.disconnect(&id).expect("disconnect");
    guard
        .0
        .take()
        .expect("network")
        .teardown()
        .expect("teardown");
    assert!(!common::link_exists(&bridge));
    assert!(remove_netns(&ns).expect("remove netns"));
}

#[test]
fn networks_are_isolated_nftables() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tag = common::unique();
    let table = format!("berth_t{tag}");
    let _table_guard = TableGuard(table.clone());
    isolation_scenario(&tag, &|| {
        Box::new(NftablesDriver::with_table(&table).expect("driver"))
    });
}

#[test]
fn networks_are_isolated_iptables() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tag = common::unique();
    let prefix = format!("BT{}", tag.to_uppercase());
    let _serial = common::IPTABLES_TESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _guard = ChainsGuard(prefix.clone(), common::iptables_nft_tables());
    isolation_scenario(&tag, &|| {
        Box::new(IptablesDriver::with_prefix(&prefix).expect("driver"))
    });
}

/// A network of its own subnet, with its state under `dir`.
fn open_test_network(
    dir: &Path,
    name: &str,
    bridge: &str,
    fw: Box<dyn FirewallDriver>,
) -> BridgeNetwork {
    BridgeNetwork::open_with_firewall(
        BridgeNetworkConfig {
            name: name.into(),
            bridge: bridge.into(),
            subnet: Some(common::test_subnet()),
            state_dir: dir.join("state"),
        },
        fw,
    )
    .expect("open network")
}

/// Two networks, two namespaces on the first and one on the second: traffic within a
/// network passes, traffic between them does not, in either direction; tearing one
/// network down leaves the other's rules (and isolation) working.
fn isolation_scenario(tag: &str, fw: &dyn Fn() -> Box<dyn FirewallDriver>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let id = |c: char| format!("{c}{tag}{}", "0".repeat(57));
    let (id_a1, id_a2, id_b1) = (id('a'), id('b'), id('c'));
    let (br_a, br_b) = (format!("btia{tag}"), format!("btib{tag}"));
    let _links: Vec<LinkGuard> = [&br_a, &br_b]
        .into_iter()
        .cloned()
        .chain([(&id_a1, "neta"), (&id_a2, "neta"), (&id_b1, "netb")].map(|(i, n)| veth_name(i, n)))
        .map(|n| LinkGuard::new(&n))
        .collect();
    let (ns_a1, ns_a2, ns_b1) = (
        common::TestNetns::new(),
        common::TestNetns::new(),
        common::TestNetns::new(),
    );
    let open = |name: &str, bridge: &str| open_test_network(tmp.path(), name, bridge, fw());
    let mut net_a = NetworkGuard(Some(open("neta", &br_a)));
    let net_b = NetworkGuard(Some(open("netb", &br_b)));
    let join = |net: &NetworkGuard, id: &str, ns: &common::TestNetns, ports: &[PortSpec]| {
        net.0
            .as_ref()
            .expect("network")
            .connect(&ConnectRequest::primary(id, &ns.path(), ports))
            .expect("connect")
            .ip
    };
    let a1 = join(&net_a, &id_a1, &ns_a1, &[]);
    let a2 = join(&net_a, &id_a2, &ns_a2, &[]);
    let b1 = join(&net_b, &id_b1, &ns_b1, &specs(&["127.0.0.1::80"]));

    // Crash recovery of one network leaves the other's containers alone, although their
    // rules are in the same table (as every engine's are in tests).
    let cleaned = net_a
        .0
        .as_ref()
        .expect("network")
        .recover(&[&id_a1, &id_a2], &Default::default())
        .expect("recover a");
    assert_eq!(cleaned, 0);
    assert!(fw().containers().expect("list").contains(&id_b1));
    assert!(common::link_exists(&veth_name(&id_b1, "netb")));
    let pings = |ns: &common::TestNetns, to: Ipv4Addr| {
        ns.exec(&["busybox", "ping", "-c", "1", "-W", "1", &to.to_string()])
            .status
            .success()
    };
    assert!(pings(&ns_a1, a2), "within network a");
    assert!(pings(&ns_a2, a1), "within network a, back");
    assert!(!pings(&ns_a1, b1), "a1 reached b1 on another network");
    assert!(!pings(&ns_b1, a1), "b1 reached a1 on another network");
    assert!(!pings(&ns_b1, a2), "b1 reached a2 on another network");

    // Network a goes; b's rules stay and b is still cut off from what is left.
    if let Some(net) = net_a.0.take() {
        net.teardown_with(false).expect("teardown a");
    }
    let b_gateway = net_b.0.as_ref().expect("network").gateway();
    assert!(pings(&ns_b1, b_gateway), "b1 lost its own gateway");
    drop(net_b);
}

/// One namespace on two networks: the first gives eth0 and the default route, the second
/// eth1 with an address on its subnet and no route; each side's neighbour is reachable,
/// the two veths have different names, and taking the namespace off one network (or the
/// crash recovery of one network) leaves the other endpoint as it was.
#[test]
fn a_namespace_on_two_networks() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tag = common::unique();
    let tmp = tempfile::tempdir().expect("tempdir");
    let table = format!("berth_t{tag}");
    let _table_guard = TableGuard(table.clone());
    let fw =
        || Box::new(NftablesDriver::with_table(&table).expect("driver")) as Box<dyn FirewallDriver>;
    let id = format!("e{tag}{}", "0".repeat(57));
    let peer_id = format!("f{tag}{}", "0".repeat(57));
    let (br_a, br_b) = (format!("btma{tag}"), format!("btmb{tag}"));
    let _links: Vec<LinkGuard> = [br_a.clone(), br_b.clone()]
        .into_iter()
        .chain([
            veth_name(&id, "neta"),
            veth_name(&id, "netb"),
            veth_name(&peer_id, "netb"),
        ])
        .map(|n| LinkGuard::new(&n))
        .collect();
    assert_ne!(veth_name(&id, "neta"), veth_name(&id, "netb"));
    let (ns, peer_ns) = (common::TestNetns::new(), common::TestNetns::new());
    let open = |name: &str, bridge: &str| open_test_network(tmp.path(), name, bridge, fw());
    let net_a = NetworkGuard(Some(open("neta", &br_a)));
    let net_b = NetworkGuard(Some(open("netb", &br_b)));
    let (a, b) = (
        net_a.0.as_ref().expect("network"),
        net_b.0.as_ref().expect("network"),
    );
    let ep_a = a
        .connect(&ConnectRequest::primary(&id, &ns.path(), &[]))
        .expect("connect a");
    let started = Instant::now();
    let ep_b = b
        .connect(&ConnectRequest::secondary(&id, &ns.path(), "eth1"))
        .expect("connect b");
    eprintln!("second interface connected in {:?}", started.elapsed());
    let peer = b
        .connect(&ConnectRequest::primary(&peer_id, &peer_ns.path(), &[]))
        .expect("connect peer");
    assert_eq!(ep_b.host_ifname, veth_name(&id, "netb"));
    assert!(b.subnet().contains(&ep_b.ip));

    let eth1 = common::run_ok("ip", &["-n", &ns.name, "-4", "addr", "show", "eth1"]);
    assert!(
        eth1.contains(&format!("{}/{}", ep_b.ip, ep_b.prefix_len)),
        "{eth1}"
    );
    let routes = common::run_ok("ip", &["-n", &ns.name, "-4", "route"]);
    let defaults: Vec<&str> = routes
        .lines()
        .filter(|l| l.starts_with("default"))
        .map(str::trim)
        .collect();
    assert_eq!(
        defaults,
        [format!("default via {} dev eth0", ep_a.gateway).as_str()],
        "{routes}"
    );
    let pings = |ns: &common::TestNetns, to: Ipv4Addr| {
        ns.exec(&["busybox", "ping", "-c", "1", "-W", "1", &to.to_string()])
            .status
            .success()
    };
    assert!(pings(&ns, peer.ip), "over eth1 to the peer on network b");
    assert!(pings(&peer_ns, ep_b.ip), "from the peer back");

    // Network a's recovery with the container live only on b must not take its b veth,
    // nor its a endpoint while it is live on a.
    assert_eq!(
        a.recover(&[&id], &Default::default()).expect("recover a"),
        0
    );
    assert!(common::link_exists(&veth_name(&id, "netb")));
    assert!(common::link_exists(&veth_name(&id, "neta")));

    // Off b: eth1 goes, its address is free again, eth0 stays.
    b.disconnect_with(&id, false, false).expect("disconnect b");
    assert!(!common::link_exists(&veth_name(&id, "netb")));
    let links = common::run_ok("ip", &["-n", &ns.name, "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");
    assert!(links.contains("eth0"), "{links}");
    assert!(common::link_exists(&veth_name(&id, "neta")));
    let ipam_b = Ipam::new(&tmp.path().join("state"), "netb", b.subnet()).expect("ipam");
    assert!(!ipam_b.allocations().expect("allocations").contains_key(&id));

    // A veth named as a berthd before per-network names did (a container it started,
    // still running after an upgrade): recovery keeps it, its disconnect takes it.
    let old_id = format!("d{tag}{}", "0".repeat(57));
    let old_veth = legacy_veth_name(&old_id).expect("hex id");
    let _old_guard = LinkGuard::new(&old_veth);
    let mut nl = Netlink::new().expect("netlink");
    let bridge_a = nl.link_index(&br_a).expect("lookup").expect("bridge a");
    nl.create_veth_on(&old_veth, &format!("po{tag}"), None, Some(bridge_a))
        .expect("legacy veth");
    assert_eq!(
        a.recover(&[&id, &old_id], &Default::default())
            .expect("recover with a legacy veth"),
        0
    );
    assert!(
        common::link_exists(&old_veth),
        "a live legacy veth was reaped"
    );
    a.disconnect(&old_id).expect("disconnect the legacy one");
    assert!(
        !common::link_exists(&old_veth),
        "legacy veth outlived its disconnect"
    );

    // Two ids that share their first 36 bits would share a veth name: the second connect
    // is refused, and leaves the first container's veth and address as they were.
    let twin_id = format!("e{tag}00{}", "1".repeat(55));
    assert_eq!(veth_name(&twin_id, "neta"), veth_name(&id, "neta"));
    let twin_ns = common::TestNetns::new();
    match a.connect(&ConnectRequest::primary(&twin_id, &twin_ns.path(), &[])) {
        Err(BridgeNetworkError::VethNameTaken { name, other }) => {
            assert_eq!(
                (name.as_str(), other.as_str()),
                (ep_a.host_ifname.as_str(), id.as_str())
            );
        }
        other => panic!("a twin's connect: {other:?}"),
    }
    assert!(
        common::link_exists(&ep_a.host_ifname),
        "the first's veth went"
    );
    let ipam_a = Ipam::new(&tmp.path().join("state"), "neta", a.subnet()).expect("ipam a");
    let held = ipam_a.allocations().expect("allocations");
    assert_eq!(held.get(&id), Some(&ep_a.ip), "the first's address moved");
    assert!(!held.contains_key(&twin_id), "the twin kept an address");

    a.disconnect(&id).expect("disconnect a");
    b.disconnect(&peer_id).expect("disconnect peer");
    assert!(!common::link_exists(&veth_name(&id, "neta")));
}
