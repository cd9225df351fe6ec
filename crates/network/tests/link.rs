//! Bridge + veth over netlink against the real kernel (root only).

mod common;

use berth_network::ipam::gateway;
use berth_network::link::{
    attach_container, delete_bridge, detach_container, ensure_bridge, BridgeConfig, ContainerLink,
    Netlink, NetnsRef,
};
use common::{link_exists, ping, LinkGuard, TestNetns};

fn setup(ns_ref: impl FnOnce(&TestNetns) -> NetnsRef) {
    let tag = common::unique();
    let subnet = common::test_subnet();
    let bridge = format!("bt{tag}");
    let host_veth = format!("vt{tag}");
    let ns = TestNetns::new();
    // Guards drop in reverse order: veth, then bridge, then the netns.
    let _bridge_guard = LinkGuard::new(&bridge);
    let _veth_guard = LinkGuard::new(&host_veth);

    let mut nl = Netlink::new().expect("netlink");
    let cfg = BridgeConfig {
        name: bridge.clone(),
        gateway: gateway(subnet),
        prefix_len: subnet.prefix_len(),
    };
    assert!(ensure_bridge(&mut nl, &cfg).expect("create bridge"));
    assert!(!ensure_bridge(&mut nl, &cfg).expect("bridge is reused"));
    let addr = std::net::Ipv4Addr::from(u32::from(subnet.network()) + 2);
    let link = ContainerLink {
        host_ifname: host_veth.clone(),
        container_ifname: "eth0".to_string(),
        address: addr,
        prefix_len: subnet.prefix_len(),
        gateway: cfg.gateway,
        default_route: true,
        mac: None,
    };
    attach_container(&mut nl, &ns_ref(&ns), &bridge, &link).expect("attach");

    let shown = common::run_ok("ip", &["-n", &ns.name, "-4", "addr", "show", "eth0"]);
    assert!(shown.contains(&format!("{addr}/24")), "{shown}");
    let routes = common::run_ok("ip", &["-n", &ns.name, "route"]);
    assert!(
        routes.contains(&format!("default via {}", cfg.gateway)),
        "{routes}"
    );
    let lo = common::run_ok("ip", &["-n", &ns.name, "link", "show", "lo"]);
    assert!(lo.contains("UP"), "{lo}");
    assert!(ping(addr), "host cannot ping the namespace at {addr}");
    // And back: the namespace reaches its gateway, the bridge.
    let back = ns.exec(&[
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &cfg.gateway.to_string(),
    ]);
    assert!(back.status.success(), "netns cannot ping its gateway");

    assert!(detach_container(&mut nl, &host_veth).expect("detach"));
    assert!(!detach_container(&mut nl, &host_veth).expect("detach twice"));
    assert!(!link_exists(&host_veth));
    let inside = common::run_ok("ip", &["-n", &ns.name, "-o", "link"]);
    assert!(!inside.contains("eth0"), "peer left in netns: {inside}");
    assert!(delete_bridge(&mut nl, &bridge).expect("delete bridge"));
    assert!(!link_exists(&bridge));
}

#[test]
fn bridge_and_veth_into_named_netns() {
    require_root!();
    setup(|ns| NetnsRef::Path(ns.path()));
}

#[test]
fn bridge_and_veth_into_netns_of_a_pid() {
    require_root!();
    // A process sitting in the namespace stands in for a container's init.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut pid = 0;
    let mut holder = None;
    setup(|ns| {
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "sleep", "60"])
            .spawn()
            .expect("spawn sleeper");
        pid = child.id() as i32;
        // `ip netns exec` enters the namespace before exec'ing sleep; wait until it did.
        let ns_ino = std::fs::metadata(ns.path()).map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        });
        for _ in 0..100 {
            let cur = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino()
            });
            if cur.is_ok() && cur.as_ref().ok() == ns_ino.as_ref().ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        holder = Some(Child(child));
        NetnsRef::Pid(pid)
    });
    drop(holder);
}

#[test]
fn attach_failure_leaves_no_veth() {
    require_root!();
    let tag = common::unique();
    let host_veth = format!("vt{tag}");
    let _guard = LinkGuard::new(&host_veth);
    let ns = TestNetns::new();
    let mut nl = Netlink::new().expect("netlink");
    let link = ContainerLink {
        host_ifname: host_veth.clone(),
        container_ifname: "eth0".to_string(),
        address: "10.213.255.2".parse().expect("ip"),
        prefix_len: 24,
        gateway: "10.213.255.1".parse().expect("ip"),
        default_route: true,
        mac: None,
    };
    // No such bridge: must fail before creating anything.
    let err = attach_container(&mut nl, &NetnsRef::Path(ns.path()), "btnosuch", &link);
    assert!(err.is_err());
    assert!(!link_exists(&host_veth));
}
