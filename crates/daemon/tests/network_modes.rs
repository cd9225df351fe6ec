//! Network modes with the real docker CLI against a real berthd, asserted from inside the
//! containers: `--network container:<x>` (one namespace shared), isolation between
//! networks (and egress through NAT still working), and `network connect`/`disconnect`.
//! Each test ends by checking that its engine left nothing on the host.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cli::{berth, err, fails_with, inspect, ok, out};
use support::engine::{user_subnet, Engine};
use support::leaks::{warm_engine, Ignore};

/// An API request must answer `status` with `want` in its message.
#[track_caller]
fn api_fails(engine: &Engine, method: &str, path: &str, body: &str, status: u16, want: &str) {
    let r = engine.request(method, path, Some(body));
    assert_eq!(r.status, status, "{method} {path}: {}", r.text());
    assert!(r.text().contains(want), "{method} {path}: {}", r.text());
}

/// Runs `sh -c script` in container `name` until it succeeds (a server starting).
#[track_caller]
fn exec_until_ok(engine: &Engine, name: &str, script: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let o = engine.docker(&["exec", name, "sh", "-c", script]);
        if o.status.success() {
            return out(&o);
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {script}: {}\n{}",
            err(&o),
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `sh -c script` succeeds in container `name` (exit status 0).
fn exec_succeeds(engine: &Engine, name: &str, script: &str) -> bool {
    engine
        .docker(&["exec", name, "sh", "-c", script])
        .status
        .success()
}

/// A busybox httpd serving `text` as /index.html on `addr` (`80`, `127.0.0.1:8080`).
fn httpd(text: &str, addr: &str) -> String {
    format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p {addr} -h /www")
}

fn ipv4_of(engine: &Engine, name: &str) -> String {
    // The one address on eth0, as the container itself sees it.
    let line = ok(
        engine,
        &["exec", name, "ip", "-o", "-4", "addr", "show", "eth0"],
    );
    line.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned()
}

#[test]
fn container_mode_shares_the_other_containers_namespace() {
    let (engine, before) = warm_engine();
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            &httpd("hello-from-web", "127.0.0.1:8080"),
        ],
    );
    let web_id = inspect(&engine, "{{.Id}}", "web");
    let web_ip = ipv4_of(&engine, "web");
    exec_until_ok(
        &engine,
        "web",
        "wget -q -O - http://127.0.0.1:8080/index.html",
    );

    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "side",
            "--network",
            "container:web",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    // web's server on loopback, from side: one namespace.
    let page = exec_until_ok(
        &engine,
        "side",
        "wget -q -O - http://127.0.0.1:8080/index.html",
    );
    assert_eq!(page.trim(), "hello-from-web");
    // The same eth0 and address, hostname and /etc files.
    assert_eq!(ipv4_of(&engine, "side"), web_ip);
    let mac = |name: &str| {
        ok(
            &engine,
            &["exec", name, "cat", "/sys/class/net/eth0/address"],
        )
    };
    assert_eq!(mac("side"), mac("web"));
    assert_eq!(
        ok(&engine, &["exec", "side", "hostname"]),
        ok(&engine, &["exec", "web", "hostname"])
    );
    for file in ["/etc/hosts", "/etc/resolv.conf"] {
        assert_eq!(
            ok(&engine, &["exec", "side", "cat", file]),
            ok(&engine, &["exec", "web", "cat", file]),
            "{file}"
        );
    }
    // Inspect: the mode by full id, no endpoint of its own.
    assert_eq!(
        inspect(&engine, "{{.HostConfig.NetworkMode}}", "side"),
        format!("container:{web_id}")
    );
    assert_eq!(
        inspect(
            &engine,
            "{{json .NetworkSettings.Networks}} [{{.NetworkSettings.IPAddress}}]",
            "side"
        ),
        "{} []"
    );

    // Bad input, each with dockerd's wording and status, nothing created.
    let count = || ok(&engine, &["ps", "-aq"]).lines().count();
    let containers = count();
    fails_with(
        &engine,
        &[
            "run",
            "--network",
            "container:web",
            "-p",
            "8081:80",
            "busybox",
            "true",
        ],
        "conflicting options: port publishing and the container type network mode",
    );
    fails_with(
        &engine,
        &[
            "run",
            "--network",
            "container:web",
            "-h",
            "other",
            "busybox",
            "true",
        ],
        "conflicting options: hostname and the network mode",
    );
    api_fails(
        &engine,
        "POST",
        "/containers/create",
        r#"{"Image":"busybox","HostConfig":{"NetworkMode":"container:web",
            "PortBindings":{"80/tcp":[{"HostPort":"8082"}]}}}"#,
        400,
        "conflicting options: port publishing and the container type network mode",
    );
    api_fails(
        &engine,
        "POST",
        "/containers/create",
        r#"{"Image":"busybox","Hostname":"h","HostConfig":{"NetworkMode":"container:web"}}"#,
        400,
        "conflicting options: hostname and the network mode",
    );
    api_fails(
        &engine,
        "POST",
        "/containers/create",
        r#"{"Image":"busybox","HostConfig":{"NetworkMode":"container:"}}"#,
        400,
        "invalid container format container:<name|id>",
    );
    assert_eq!(count(), containers, "a refused create left a container");
    // An unknown target: created as given, 404 at start (dockerd resolves it then).
    fails_with(
        &engine,
        &[
            "run",
            "--name",
            "ghost",
            "--network",
            "container:nope",
            "busybox",
            "true",
        ],
        "No such container: nope",
    );
    ok(&engine, &["rm", "ghost"]);

    // Joining a container that does not run: 409 at start.
    ok(
        &engine,
        &["create", "--name", "idle", "busybox", "sleep", "1000"],
    );
    let idle_id = inspect(&engine, "{{.Id}}", "idle");
    ok(
        &engine,
        &[
            "create",
            "--name",
            "late",
            "--network",
            "container:idle",
            "busybox",
            "true",
        ],
    );
    api_fails(
        &engine,
        "POST",
        "/containers/late/start",
        "",
        409,
        &format!("cannot join network of a non running container: {idle_id}"),
    );
    fails_with(
        &engine,
        &["start", "late"],
        "cannot join network of a non running container",
    );

    // Removing web while side runs is allowed (as with Docker); side keeps running with
    // only `lo`, and web's veth and address are gone with it.
    ok(&engine, &["rm", "-f", "web"]);
    assert_eq!(inspect(&engine, "{{.State.Running}}", "side"), "true");
    let links = ok(&engine, &["exec", "side", "ip", "-o", "link"]);
    assert!(
        !links.contains("eth0"),
        "side still has web's eth0:\n{links}"
    );
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(berth_network::bridge_network::veth_name(&web_id, "bridge"))
            .exists(),
        "web's veth outlived it"
    );
    // Its address is given back (the default bridge's IPAM file no longer holds it).
    let ipam = std::fs::read_to_string(engine.data_root().join("network/bridge.json"))
        .expect("the default bridge's IPAM file");
    let ipam: serde_json::Value = serde_json::from_str(&ipam).expect("IPAM JSON");
    let taken = ipam["allocations"].as_object().cloned().unwrap_or_default();
    assert!(
        !taken.contains_key(&web_id) && !taken.values().any(|ip| *ip == web_ip.as_str()),
        "web's address still allocated: {taken:?}"
    );

    ok(&engine, &["rm", "-f", "side", "late", "idle"]);
    before.assert_no_leaks(&engine, &Ignore::none());
}

/// A network namespace the test makes, with a veth to the host: the far end of egress
/// traffic that must leave a bridge through the host's NAT. Removed on drop.
struct EgressPeer {
    netns: String,
    host_if: String,
    /// The address inside the namespace.
    addr: String,
}

impl EgressPeer {
    /// `subnet` a /24 of the test's own; the pair takes its first /30.
    fn new(tag: &str, subnet: &str) -> Self {
        let base = subnet.trim_end_matches("0/24");
        let peer = Self {
            netns: format!("bteg{tag}"),
            host_if: format!("bteg{tag}h"),
            addr: format!("{base}2"),
        };
        peer.run(&["ip", "netns", "add", &peer.netns]);
        peer.run(&[
            "ip",
            "link",
            "add",
            &peer.host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &peer.netns,
        ]);
        peer.run(&[
            "ip",
            "addr",
            "add",
            &format!("{base}1/30"),
            "dev",
            &peer.host_if,
        ]);
        peer.run(&["ip", "link", "set", &peer.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", peer.netns.as_str()];
            all.extend_from_slice(args);
            peer.run(&all);
        };
        inside(&["ip", "addr", "add", &format!("{base}2/30"), "dev", "eth0"]);
        inside(&["ip", "link", "set", "eth0", "up"]);
        inside(&["ip", "link", "set", "lo", "up"]);
        // No route back to any container subnet: a reply arrives only if the container's
        // traffic was masqueraded to the host's address on this link.
        peer
    }

    #[track_caller]
    fn run(&self, args: &[&str]) {
        let o = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .expect("run ip");
        assert!(o.status.success(), "{args:?}: {}", err(&o));
    }
}

impl Drop for EgressPeer {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn user_networks_are_isolated_from_each_other_and_the_default_bridge() {
    let (engine, before) = warm_engine();
    let net_a = user_subnet(&engine, 4);
    let net_b = user_subnet(&engine, 6);
    let a_id = ok(&engine, &["network", "create", "--subnet", &net_a, "neta"]);
    let b_id = ok(&engine, &["network", "create", "--subnet", &net_b, "netb"]);
    let serve = |name: &str, net: &str, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--network", net];
        args.extend_from_slice(extra);
        let script = httpd(&format!("hello-from-{name}"), "80");
        args.extend_from_slice(&["busybox", "sh", "-c", &script]);
        ok(&engine, &args);
    };
    serve("a1", "neta", &[]);
    serve("a2", "neta", &[]);
    serve("b1", "netb", &[]);
    serve("d1", "bridge", &[]);
    let ip = |n: &str| ipv4_of(&engine, n);
    let (a1, a2, b1, d1) = (ip("a1"), ip("a2"), ip("b1"), ip("d1"));
    let get = |ip: &str| format!("wget -q -O - http://{ip}/index.html");

    // Within a network: by address and by name, TCP and ICMP.
    let page = exec_until_ok(&engine, "a2", &get(&a1));
    assert_eq!(page.trim(), "hello-from-a1");
    exec_until_ok(&engine, "a1", &get("a2"));
    assert!(exec_succeeds(
        &engine,
        "a2",
        &format!("ping -c 1 -W 2 {a1}")
    ));
    // Within the default bridge too (d1 to itself through its address is trivial: use
    // another container there).
    ok(
        &engine,
        &["run", "-d", "--name", "d2", "busybox", "sleep", "1000"],
    );
    exec_until_ok(&engine, "d2", &get(&d1));

    // Across networks, in every direction, nothing gets through.
    for (from, to) in [
        ("a2", b1.as_str()),
        ("b1", a1.as_str()),
        ("b1", a2.as_str()),
        ("a1", d1.as_str()),
        ("d2", a1.as_str()),
        ("d2", b1.as_str()),
        ("b1", d1.as_str()),
    ] {
        assert!(
            !exec_succeeds(&engine, from, &format!("ping -c 1 -W 1 {to}")),
            "{from} pinged {to} on another network"
        );
        assert!(
            !exec_succeeds(&engine, from, &format!("timeout 3 {}", get(to))),
            "{from} fetched from {to} on another network"
        );
    }

    // A published port stays reachable from any network (through the host's address, as
    // with Docker's proxy): the flow is DNATed. (Published just for this check: berthd
    // builds of other worktrees on this host may take a port rule in berth's shared table
    // for their own leftovers at their start, and the window is then short.)
    serve("pub", "bridge", &["-p", "80"]);
    let ports = inspect(&engine, "{{json .NetworkSettings.Ports}}", "pub");
    let ports: serde_json::Value = serde_json::from_str(&ports).expect("ports JSON");
    let port = ports["80/tcp"][0]["HostPort"]
        .as_str()
        .unwrap_or_else(|| panic!("pub's ports: {ports}"))
        .to_owned();
    let b_gateway = net_b.replace(".0/24", ".1");
    let page = exec_until_ok(
        &engine,
        "b1",
        &format!("wget -q -O - http://{b_gateway}:{port}/index.html"),
    );
    assert_eq!(page.trim(), "hello-from-pub");
    ok(&engine, &["rm", "-f", "pub"]);

    // Egress through NAT: a namespace outside every bridge answers a container of each
    // network, though it has no route back to their subnets.
    let tag = engine.bridge.trim_start_matches("bt").replace('x', "");
    let peer = EgressPeer::new(
        &tag[tag.len().saturating_sub(6)..],
        &user_subnet(&engine, 8),
    );
    for from in ["a1", "b1", "d2"] {
        assert!(
            exec_succeeds(&engine, from, &format!("ping -c 1 -W 2 {}", peer.addr)),
            "{from} cannot reach {} through NAT\n{}",
            peer.addr,
            engine.log()
        );
    }
    drop(peer);

    // The networks' rules go with them.
    let bridges: Vec<String> = [&a_id, &b_id]
        .iter()
        .map(|id| format!("br-{}", &id.trim()[..12]))
        .collect();
    ok(&engine, &["rm", "-f", "a1", "a2", "b1", "d1", "d2"]);
    ok(&engine, &["network", "rm", "neta", "netb"]);
    let ruleset = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .map(|o| out(&o))
        .unwrap_or_default();
    for br in &bridges {
        assert!(
            !ruleset.contains(br.as_str()),
            "rules of {br} left:\n{ruleset}"
        );
    }
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn connect_and_disconnect_change_the_networks_of_a_stopped_container() {
    let (engine, before) = warm_engine();
    let subnet = user_subnet(&engine, 10);
    let prefix = subnet.trim_end_matches("0/24").to_owned();
    ok(
        &engine,
        &["network", "create", "--subnet", &subnet, "appnet"],
    );
    let other = user_subnet(&engine, 12);
    ok(
        &engine,
        &["network", "create", "--subnet", &other, "othernet"],
    );
    ok(
        &engine,
        &["create", "--name", "c1", "busybox", "sleep", "1000"],
    );
    let c1_id = inspect(&engine, "{{.Id}}", "c1");

    // Connect a created container: it starts on the network too (eth1, its second), with
    // its alias; its first network stays the default bridge.
    ok(
        &engine,
        &["network", "connect", "--alias", "db", "appnet", "c1"],
    );
    let mode = inspect(&engine, "{{.HostConfig.NetworkMode}}", "c1");
    assert!(mode == "default" || mode == "bridge", "{mode}");
    ok(&engine, &["start", "c1"]);
    let eth1 = ok(
        &engine,
        &["exec", "c1", "ip", "-o", "-4", "addr", "show", "eth1"],
    );
    assert!(eth1.contains(&format!("inet {prefix}")), "{eth1}");
    assert!(inspect(
        &engine,
        "{{.NetworkSettings.Networks.appnet.IPAddress}}",
        "c1"
    )
    .starts_with(&prefix));
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "peer",
            "--network",
            "appnet",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    assert!(
        exec_succeeds(&engine, "peer", "ping -c 1 -W 2 db"),
        "alias db unknown"
    );
    let members = ok(
        &engine,
        &[
            "network",
            "inspect",
            "appnet",
            "-f",
            "{{range .Containers}}{{.Name}} {{end}}",
        ],
    );
    assert!(members.contains("c1"), "{members}");

    // Again: Docker's 403, from the CLI and the API.
    fails_with(
        &engine,
        &["network", "connect", "appnet", "c1"],
        "endpoint with name c1 already exists in network appnet",
    );
    api_fails(
        &engine,
        "POST",
        "/networks/appnet/connect",
        r#"{"Container":"c1"}"#,
        403,
        "endpoint with name c1 already exists in network appnet",
    );
    // Disconnected from both while stopped: it starts with `lo` only.
    ok(&engine, &["stop", "-t", "0", "c1"]);
    ok(&engine, &["network", "disconnect", "appnet", "c1"]);
    ok(&engine, &["network", "disconnect", "bridge", "c1"]);
    ok(&engine, &["start", "c1"]);
    let links = ok(&engine, &["exec", "c1", "ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    assert!(links.contains("lo"), "{links}");
    ok(&engine, &["stop", "-t", "0", "c1"]);
    api_fails(
        &engine,
        "POST",
        "/networks/appnet/disconnect",
        r#"{"Container":"c1"}"#,
        500,
        &format!("container {c1_id} is not connected to the network appnet"),
    );
    fails_with(
        &engine,
        &["network", "disconnect", "appnet", "c1"],
        "is not connected to the network appnet",
    );

    // Unknown names: 404 each, network first as dockerd's router.
    api_fails(
        &engine,
        "POST",
        "/networks/appnet/connect",
        r#"{"Container":"nope"}"#,
        404,
        "No such container: nope",
    );
    api_fails(
        &engine,
        "POST",
        "/networks/nonet/connect",
        r#"{"Container":"c1"}"#,
        404,
        "network nonet not found",
    );
    fails_with(
        &engine,
        &["network", "connect", "appnet", "nope"],
        "No such container: nope",
    );
    fails_with(
        &engine,
        &["network", "disconnect", "nonet", "c1"],
        "network nonet not found",
    );

    // Host networking and a shared namespace cannot be connected.
    api_fails(
        &engine,
        "POST",
        "/networks/host/connect",
        r#"{"Container":"c1"}"#,
        400,
        "container cannot be disconnected from host network or connected to host network",
    );
    ok(
        &engine,
        &[
            "create",
            "--name",
            "joiner",
            "--network",
            "container:peer",
            "busybox",
            "true",
        ],
    );
    fails_with(
        &engine,
        &["network", "connect", "appnet", "joiner"],
        "container sharing network namespace with another container or host cannot be connected to any other network",
    );

    // berth's own CLI: connect back to the default bridge, then to othernet.
    let o = berth(&engine, &["network", "connect", "bridge", "c1"]);
    assert!(o.status.success(), "berth network connect: {}", err(&o));
    assert_eq!(
        inspect(&engine, "{{.HostConfig.NetworkMode}}", "c1"),
        "bridge"
    );
    let o = berth(&engine, &["network", "connect", "othernet", "c1"]);
    assert!(o.status.success(), "berth network connect: {}", err(&o));
    let o = berth(&engine, &["network", "connect", "appnet", "c1"]);
    assert!(o.status.success(), "berth network connect: {}", err(&o));
    let o = berth(&engine, &["network", "disconnect", "othernet", "c1"]);
    assert!(o.status.success(), "berth network disconnect: {}", err(&o));
    let o = berth(&engine, &["network", "disconnect", "othernet", "c1"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("is not connected to the network othernet"),
        "{}",
        err(&o)
    );

    ok(&engine, &["rm", "-f", "c1", "peer", "joiner"]);
    ok(&engine, &["network", "rm", "appnet", "othernet"]);
    before.assert_no_leaks(&engine, &Ignore::none());
}
