//! A container on more than one network, with the real docker CLI against a real berthd:
//! `network connect`/`disconnect` of running and stopped containers (eth1 in the running
//! container's namespace, names resolved both ways, the address given back), Docker's
//! refusals with nothing changed, restarts and a daemon killed with a two-network container
//! running. Each test checks at the end that nothing of its containers is left on the host
//! (their veths on every network included).

mod support;

use std::time::Instant;

use support::cli::{inspect, ok};
use support::engine::{user_subnet, Engine};
use support::leaks::{warm_engine, HostSnapshot, Ignore};

/// Whether `sh -c script` succeeds inside container `name`.
fn in_container(engine: &Engine, name: &str, script: &str) -> bool {
    engine
        .docker(&["exec", name, "sh", "-c", script])
        .status
        .success()
}

/// A network of this engine's own ([`user_subnet`] moved by `shift`), as `/prefix`, so
/// parallel tests never collide.
fn own_subnet(engine: &Engine, shift: u8, prefix: u8) -> String {
    user_subnet(engine, shift).replace("/24", &format!("/{prefix}"))
}

/// A user network `name` on its own subnet ([`own_subnet`]): (subnet, id).
fn own_network(engine: &Engine, name: &str, shift: u8, prefix: u8) -> (String, String) {
    let subnet = own_subnet(engine, shift, prefix);
    let id = ok(engine, &["network", "create", "--subnet", &subnet, name])
        .trim()
        .to_owned();
    (subnet, id)
}

/// The IPv4 address on `ifname` inside container `name`, as the container sees it.
fn address_on(engine: &Engine, name: &str, ifname: &str) -> Option<String> {
    let o = engine.docker(&["exec", name, "ip", "-o", "-4", "addr", "show", ifname]);
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    line.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_owned)
}

/// The address records of the user network `net_id`.
fn ipam_file(engine: &Engine, net_id: &str) -> std::path::PathBuf {
    engine
        .data_root()
        .join("network/user")
        .join(net_id)
        .join(format!("{}.json", &net_id[..12]))
}

fn run_on(engine: &Engine, name: &str, network: &str) {
    ok(
        engine,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "busybox",
            "sleep",
            "1000",
        ],
    );
}

#[test]
fn a_running_container_joins_and_leaves_a_user_network() {
    let (engine, before) = warm_engine();
    let (subnet, net_id) = own_network(&engine, "appnet", 20, 24);
    let prefix = subnet.trim_end_matches("0/24").to_owned();
    run_on(&engine, "member", "appnet");
    run_on(&engine, "web", "bridge");
    let bridge_ip = address_on(&engine, "web", "eth0").expect("web's eth0");
    assert!(
        !in_container(&engine, "web", "ping -c 1 -W 1 member"),
        "member resolves before web is on its network"
    );

    let started = Instant::now();
    ok(
        &engine,
        &["network", "connect", "--alias", "webby", "appnet", "web"],
    );
    eprintln!(
        "docker network connect of a running container: {:?}",
        started.elapsed()
    );
    // The daemon's own timings (debug log): the network crate's per-step split, then the
    // whole connect as the container manager saw it.
    let log = engine.log();
    let lines: Vec<&str> = log.lines().collect();
    if let Some(at) = lines
        .iter()
        .position(|l| l.contains("connected a running container"))
    {
        if let Some(setup) = lines[..at]
            .iter()
            .rev()
            .find(|l| l.contains("network setup"))
        {
            eprintln!("berthd: {setup}");
        }
        eprintln!("berthd: {}", lines[at]);
    }

    // eth1 on the network's subnet; eth0 and the default route stay the bridge's.
    let appnet_ip = address_on(&engine, "web", "eth1").expect("web has eth1");
    assert!(
        appnet_ip.starts_with(&prefix),
        "{appnet_ip} not in {subnet}"
    );
    assert_eq!(
        address_on(&engine, "web", "eth0").as_deref(),
        Some(&*bridge_ip)
    );
    let routes = ok(&engine, &["exec", "web", "ip", "-4", "route"]);
    let defaults: Vec<&str> = routes
        .lines()
        .filter(|l| l.starts_with("default"))
        .collect();
    assert_eq!(defaults.len(), 1, "{routes}");
    assert!(defaults[0].contains("dev eth0"), "{routes}");

    // Names, both ways, aliases included.
    assert!(
        in_container(&engine, "web", "ping -c 1 -W 2 member"),
        "web cannot reach member by name"
    );
    for name in ["web", "webby"] {
        assert!(
            in_container(&engine, "member", &format!("ping -c 1 -W 2 {name}")),
            "member cannot reach {name}"
        );
    }
    // A rename reaches the others' /etc/hosts: the new name resolves, the old one not.
    ok(&engine, &["rename", "member", "member2"]);
    assert!(
        in_container(&engine, "web", "ping -c 1 -W 2 member2"),
        "web cannot reach member by its new name"
    );
    assert!(
        !in_container(&engine, "web", "grep -qw member /etc/hosts"),
        "member's old name is still in web's /etc/hosts"
    );
    ok(&engine, &["rename", "member2", "member"]);

    // inspect: both networks; the top level stays the default bridge's.
    assert_eq!(
        inspect(
            &engine,
            "{{.NetworkSettings.Networks.appnet.IPAddress}}",
            "web"
        ),
        appnet_ip
    );
    assert_eq!(
        inspect(
            &engine,
            "{{.NetworkSettings.Networks.appnet.NetworkID}}",
            "web"
        ),
        net_id
    );
    assert!(inspect(
        &engine,
        "{{.NetworkSettings.Networks.appnet.Aliases}}",
        "web"
    )
    .contains("webby"));
    assert_eq!(
        inspect(&engine, "{{.NetworkSettings.IPAddress}}", "web"),
        bridge_ip
    );
    let endpoints = inspect(
        &engine,
        "{{.NetworkSettings.Networks.bridge.EndpointID}} {{.NetworkSettings.Networks.appnet.EndpointID}}",
        "web",
    );
    let (a, b) = endpoints.split_once(' ').expect("two endpoint ids");
    assert!(!a.is_empty() && !b.is_empty() && a != b, "{endpoints}");
    for net in ["appnet", "bridge"] {
        let members = ok(
            &engine,
            &[
                "network",
                "inspect",
                net,
                "-f",
                "{{range .Containers}}{{.Name}} {{end}}",
            ],
        );
        assert!(members.contains("web"), "{net}: {members}");
    }

    // Already on it: Docker's 403.
    let again = engine.request(
        "POST",
        "/networks/appnet/connect",
        Some(r#"{"Container":"web"}"#),
    );
    assert_eq!(again.status, 403, "{}", again.text());
    assert!(
        again
            .text()
            .contains("endpoint with name web already exists in network appnet"),
        "{}",
        again.text()
    );

    // The network cannot go while web is on it, member gone or not.
    ok(&engine, &["rm", "-f", "member"]);
    let rm = engine.docker(&["network", "rm", "appnet"]);
    assert!(!rm.status.success(), "network rm with web on it succeeded");
    ok(&engine, &["network", "prune", "-f"]);
    assert_eq!(
        ok(&engine, &["network", "ls", "-q", "-f", "name=appnet"])
            .trim()
            .len(),
        12,
        "prune removed a network web is on"
    );

    // Off it: eth1, the name and the address go; eth0 stays.
    run_on(&engine, "member", "appnet");
    assert!(in_container(&engine, "member", "ping -c 1 -W 2 web"));
    ok(&engine, &["network", "disconnect", "appnet", "web"]);
    assert_eq!(address_on(&engine, "web", "eth1"), None, "eth1 still there");
    let links = ok(&engine, &["exec", "web", "ip", "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");
    assert_eq!(
        address_on(&engine, "web", "eth0").as_deref(),
        Some(&*bridge_ip)
    );
    assert!(
        !in_container(&engine, "member", "ping -c 1 -W 1 web"),
        "member still resolves web"
    );
    assert!(!in_container(&engine, "web", "ping -c 1 -W 1 member"));
    assert_eq!(
        inspect(&engine, "{{len .NetworkSettings.Networks}}", "web"),
        "1"
    );
    let ipam = std::fs::read_to_string(ipam_file(&engine, &net_id)).expect("appnet's IPAM file");
    assert!(
        !ipam.contains(&appnet_ip),
        "address still allocated: {ipam}"
    );
    let o = engine.request(
        "POST",
        "/networks/appnet/disconnect",
        Some(r#"{"Container":"web"}"#),
    );
    assert_eq!(o.status, 500, "{}", o.text());
    assert!(
        o.text().contains("is not connected to network appnet"),
        "{}",
        o.text()
    );

    ok(&engine, &["rm", "-f", "web", "member"]);
    ok(&engine, &["network", "rm", "appnet"]);
    before.assert_no_leaks(&engine, &Ignore::none());
}

/// A /29 has five addresses for containers: four taken by others, the fifth shows that a
/// disconnect gives it back, and makes a connect that cannot get one fail. A /30 is
/// refused with a clear 400.
#[test]
fn the_address_is_given_back_and_a_failed_connect_leaves_nothing() {
    let (engine, before) = warm_engine();
    let too_small = engine.docker(&[
        "network",
        "create",
        "--subnet",
        &own_subnet(&engine, 24, 30),
        "tiny",
    ]);
    assert!(!too_small.status.success());
    assert!(
        String::from_utf8_lossy(&too_small.stderr).contains("needs at least a /29"),
        "{}",
        String::from_utf8_lossy(&too_small.stderr)
    );
    own_network(&engine, "tiny", 24, 29);
    let fillers = ["f1", "f2", "f3", "f4"];
    for f in fillers {
        run_on(&engine, f, "tiny");
    }
    run_on(&engine, "ca", "bridge");
    run_on(&engine, "cb", "bridge");
    let before_b = HostSnapshot::of(&engine);
    ok(&engine, &["network", "connect", "tiny", "ca"]);
    let last = address_on(&engine, "ca", "eth1").expect("a on tiny");

    // No address left for b: refused, and b is as it was (no eth1, no veth, no record).
    let o = engine.docker(&["network", "connect", "tiny", "cb"]);
    assert!(!o.status.success(), "a sixth container fit in a /29");
    assert_eq!(address_on(&engine, "cb", "eth1"), None);
    assert_eq!(
        inspect(&engine, "{{len .NetworkSettings.Networks}}", "cb"),
        "1"
    );
    let after_b = HostSnapshot::of(&engine);
    let a_id = inspect(&engine, "{{.Id}}", "ca");
    let new: Vec<&String> = after_b
        .links
        .difference(&before_b.links)
        .filter(|l| !berth_network::bridge_network::is_veth_of(l, &a_id))
        .collect();
    assert!(new.is_empty(), "links left by the failed connect: {new:?}");

    // a leaves; b gets the very address.
    ok(&engine, &["network", "disconnect", "tiny", "ca"]);
    ok(&engine, &["network", "connect", "tiny", "cb"]);
    assert_eq!(address_on(&engine, "cb", "eth1").as_deref(), Some(&*last));

    ok(&engine, &["rm", "-f", "ca", "cb", "f1", "f2", "f3", "f4"]);
    ok(&engine, &["network", "rm", "tiny"]);
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn none_mode_refuses_a_second_network_and_stays_as_it_was() {
    let (engine, before) = warm_engine();
    let (subnet, _) = own_network(&engine, "appnet", 28, 24);
    run_on(&engine, "lonely", "none");
    ok(
        &engine,
        &[
            "create",
            "--name",
            "parked",
            "--network",
            "none",
            "busybox",
            "true",
        ],
    );
    for ctr in ["lonely", "parked"] {
        let r = engine.request(
            "POST",
            "/networks/appnet/connect",
            Some(&format!(r#"{{"Container":"{ctr}"}}"#)),
        );
        assert_eq!(r.status, 400, "{ctr}: {}", r.text());
        assert!(
            r.text().contains(
                "container cannot be connected to multiple networks with one of the networks in private (none) mode"
            ),
            "{ctr}: {}",
            r.text()
        );
        assert_eq!(
            inspect(
                &engine,
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                ctr
            ),
            "none"
        );
        assert_eq!(inspect(&engine, "{{.HostConfig.NetworkMode}}", ctr), "none");
    }
    let links = ok(&engine, &["exec", "lonely", "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "more than lo: {links}");
    let members = ok(
        &engine,
        &["network", "inspect", "appnet", "-f", "{{len .Containers}}"],
    );
    assert_eq!(members.trim(), "0");

    // Unlike `--network none`, a container disconnected from its last network has no
    // networks at all (Docker's empty Networks) and may be connected again, also while
    // it runs with `lo` only: the network is then its first (eth0, the default route).
    ok(
        &engine,
        &["create", "--name", "adrift", "busybox", "sleep", "1000"],
    );
    ok(&engine, &["network", "disconnect", "bridge", "adrift"]);
    assert_eq!(
        inspect(&engine, "{{len .NetworkSettings.Networks}}", "adrift"),
        "0"
    );
    ok(&engine, &["start", "adrift"]);
    assert_eq!(address_on(&engine, "adrift", "eth0"), None);
    ok(&engine, &["network", "connect", "appnet", "adrift"]);
    let prefix = subnet.trim_end_matches("0/24");
    assert!(
        address_on(&engine, "adrift", "eth0").is_some_and(|a| a.starts_with(prefix)),
        "adrift did not get eth0 on appnet"
    );
    let routes = ok(&engine, &["exec", "adrift", "ip", "-4", "route"]);
    assert!(routes.contains("default via"), "{routes}");
    assert_eq!(
        inspect(
            &engine,
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            "adrift"
        ),
        "appnet"
    );

    ok(&engine, &["rm", "-f", "lonely", "parked", "adrift"]);
    ok(&engine, &["network", "rm", "appnet"]);
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn two_networks_survive_restarts_and_a_killed_daemon() {
    let (mut engine, before) = warm_engine();
    let (subnet, _) = own_network(&engine, "appnet", 32, 24);
    let prefix = subnet.trim_end_matches("0/24").to_owned();
    run_on(&engine, "member", "appnet");
    // Stopped when connected: it joins both at start.
    ok(
        &engine,
        &["create", "--name", "two", "busybox", "sleep", "1000"],
    );
    ok(&engine, &["network", "connect", "appnet", "two"]);
    ok(&engine, &["start", "two"]);
    let check = |engine: &Engine, when: &str| {
        let eth0 = address_on(engine, "two", "eth0").unwrap_or_default();
        let eth1 = address_on(engine, "two", "eth1").unwrap_or_default();
        assert!(
            !eth0.is_empty() && !eth0.starts_with(&prefix),
            "{when}: eth0 {eth0:?}"
        );
        assert!(eth1.starts_with(&prefix), "{when}: eth1 {eth1:?}");
        assert!(
            in_container(engine, "member", "ping -c 1 -W 2 two"),
            "{when}: member cannot reach two"
        );
        assert!(
            in_container(engine, "two", "ping -c 1 -W 2 member"),
            "{when}: two cannot reach member"
        );
    };
    check(&engine, "first start");

    ok(&engine, &["restart", "-t", "0", "two"]);
    check(&engine, "after restart");
    ok(&engine, &["stop", "-t", "0", "two"]);
    ok(&engine, &["start", "two"]);
    check(&engine, "after stop and start");

    // berthd killed and started again: the container keeps both, and recovery reaps
    // neither of its veths.
    engine.kill_daemon();
    engine.start_daemon();
    assert_eq!(inspect(&engine, "{{.State.Running}}", "two"), "true");
    check(&engine, "after a daemon restart");
    let two_id = inspect(&engine, "{{.Id}}", "two");
    let veths = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .flatten()
        .filter(|e| {
            berth_network::bridge_network::is_veth_of(&e.file_name().to_string_lossy(), &two_id)
        })
        .count();
    assert_eq!(veths, 2, "two's veths after recovery");
    // And what recovery knows, disconnect finds.
    ok(&engine, &["network", "disconnect", "appnet", "two"]);
    assert_eq!(address_on(&engine, "two", "eth1"), None);
    ok(&engine, &["network", "connect", "appnet", "two"]);
    assert!(address_on(&engine, "two", "eth1").is_some_and(|a| a.starts_with(&prefix)));

    ok(&engine, &["rm", "-f", "two", "member"]);
    ok(&engine, &["network", "rm", "appnet"]);
    before.assert_no_leaks(&engine, &Ignore::none());
}

/// Connects around the container's exit, bounded (a dozen containers living 10-120 ms):
/// whichever comes first, no address stays allocated on the network once the container
/// has exited. The narrowest window (the exit's teardown done, its record not yet
/// written, while a connect records its endpoint) is hit rarely here, if at all; on_exit's
/// `late` endpoints are what closes it, by reading the record again.
#[test]
fn connects_racing_an_exit_leave_no_address() {
    let (engine, before) = warm_engine();
    let (_, net_id) = own_network(&engine, "racenet", 40, 24);
    let ipam_file = ipam_file(&engine, &net_id);
    let mut connected = 0;
    for i in 0..12 {
        let name = format!("brief{i}");
        // The sleep varies so that the connect lands before, during and after the exit.
        let nap = format!("0.{:02}", 1 + i);
        ok(
            &engine,
            &["run", "-d", "--name", &name, "busybox", "sleep", &nap],
        );
        if engine
            .docker(&["network", "connect", "racenet", &name])
            .status
            .success()
        {
            connected += 1;
        }
        ok(&engine, &["wait", &name]);
        let id = inspect(&engine, "{{.Id}}", &name);
        // The exit's bookkeeping ends after `wait` answers: give it a moment.
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let held = || {
            std::fs::read_to_string(&ipam_file)
                .unwrap_or_default()
                .contains(&id)
        };
        while held() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(
            !held(),
            "{name} exited with an address on racenet: {}",
            std::fs::read_to_string(&ipam_file).unwrap_or_default()
        );
        ok(&engine, &["rm", &name]);
    }
    eprintln!("{connected} of 12 connects won the race");
    ok(&engine, &["network", "rm", "racenet"]);
    before.assert_no_leaks(&engine, &Ignore::none());
}

/// `--ip` on `run` and on `network connect`: berth picks every address itself and says so
/// (501, one line) instead of ignoring the choice; nothing is created or connected. An
/// empty `IPAMConfig` (what the docker CLI sends without `--ip`) is no choice.
#[test]
fn chosen_addresses_are_refused_and_nothing_is_made() {
    let (engine, before) = warm_engine();
    let (subnet, _) = own_network(&engine, "ipnet", 44, 24);
    let wanted = subnet.replace("0/24", "50");
    let refusal = "berth does not give containers chosen addresses yet";

    let o = engine.docker(&[
        "run",
        "-d",
        "--name",
        "fixed",
        "--network",
        "ipnet",
        "--ip",
        &wanted,
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(!o.status.success(), "run --ip succeeded");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(refusal), "{stderr}");
    assert_eq!(
        ok(&engine, &["ps", "-aq", "-f", "name=fixed"]).trim(),
        "",
        "run --ip left a container"
    );

    run_on(&engine, "web", "bridge");
    let o = engine.docker(&["network", "connect", "--ip", &wanted, "ipnet", "web"]);
    assert!(!o.status.success(), "network connect --ip succeeded");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(refusal), "{stderr}");
    let r = engine.request(
        "POST",
        "/networks/ipnet/connect",
        Some(&format!(
            r#"{{"Container":"web","EndpointConfig":{{"IPAMConfig":{{"IPv4Address":"{wanted}"}}}}}}"#
        )),
    );
    assert_eq!(r.status, 501, "{}", r.text());
    assert_eq!(
        inspect(&engine, "{{len .NetworkSettings.Networks}}", "web"),
        "1",
        "web was connected after all"
    );
    assert_eq!(address_on(&engine, "web", "eth1"), None);

    let r = engine.request(
        "POST",
        "/networks/ipnet/connect",
        Some(r#"{"Container":"web","EndpointConfig":{"IPAMConfig":{}}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(address_on(&engine, "web", "eth1").is_some());

    ok(&engine, &["rm", "-f", "web"]);
    ok(&engine, &["network", "rm", "ipnet"]);
    before.assert_no_leaks(&engine, &Ignore::none());
}
