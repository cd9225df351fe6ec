//! User-defined bridge networks with the real docker CLI against a real berthd:
//! create/ls/inspect/rm, containers reaching each other by name, isolation of the names
//! from the default bridge, and removal of the bridge link. The engine's Drop removes
//! containers and networks even when an assertion fails.

mod support;

use std::time::{Duration, Instant};

use support::cli::{err, fetch, ok, out};
use support::engine::{user_subnet, Engine};

fn link_exists(name: &str) -> bool {
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&links).contains(&format!(" {name}:"))
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name() {
    let engine = Engine::start();
    let subnet = user_subnet(&engine, 2);
    let id = ok(
        &engine,
        &["network", "create", "--subnet", &subnet, "appnet"],
    );
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64, "network id: {id:?}");

    // Listed next to the predefined ones.
    let ls = ok(
        &engine,
        &["network", "ls", "--format", "{{.Name}} {{.Driver}}"],
    );
    for want in ["appnet bridge", "bridge bridge", "host host", "none null"] {
        assert!(ls.lines().any(|l| l == want), "{want:?} not in:\n{ls}");
    }
    // Same name again: a conflict; an overlapping subnet: refused.
    let again = engine.docker(&["network", "create", "appnet"]);
    assert!(!again.status.success());
    assert!(
        err(&again).contains("network with name appnet already exists"),
        "{}",
        err(&again)
    );
    let overlap = engine.docker(&["network", "create", "--subnet", &subnet, "other"]);
    assert!(!overlap.status.success());
    assert!(err(&overlap).contains("overlaps"), "{}", err(&overlap));
    let default_overlap =
        engine.docker(&["network", "create", "--subnet", &engine.subnet, "other"]);
    assert!(!default_overlap.status.success());

    // Its own bridge link.
    let bridge = format!("br-{}", &id[..12]);
    assert!(link_exists(&bridge), "bridge {bridge} missing");
    let inspect = ok(
        &engine,
        &[
            "network",
            "inspect",
            "appnet",
            "--format",
            "{{.Id}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
        ],
    );
    let gateway = subnet.replace(".0/24", ".1");
    assert_eq!(inspect.trim(), format!("{id} {subnet} {gateway}"));

    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "appnet",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    // By name from a second container on the network, retried while httpd starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let o = engine.docker(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            "busybox",
            "sh",
            "-c",
            // (busybox's `wget -T` crashes: no timeout flag.)
            "wget -q -O - http://srv/index.html",
        ]);
        if o.status.success() {
            break out(&o);
        }
        assert!(
            Instant::now() < deadline,
            "wget http://srv failed: {}\n{}",
            err(&o),
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!body.is_empty(), "empty page");

    // A container started before `late` learns its name (its /etc/hosts is refreshed), and
    // its `--network-alias`.
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "early",
            "--network",
            "appnet",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "late",
            "--network",
            "appnet",
            "--network-alias",
            "db",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let ping = ok(
        &engine,
        &["exec", "early", "ping", "-c", "1", "-W", "2", "db"],
    );
    assert!(ping.contains("1 packets received"), "{ping}");
    let aliases = ok(
        &engine,
        &[
            "inspect",
            "late",
            "--format",
            "{{json .NetworkSettings.Networks.appnet.Aliases}}",
        ],
    );
    assert_eq!(aliases.trim(), r#"["db"]"#);
    // Aliases are for user networks only (the docker CLI checks too: ask the API).
    let r = engine.request(
        "POST",
        "/containers/create",
        Some(
            r#"{"Image":"busybox","HostConfig":{"NetworkMode":"bridge"},
               "NetworkingConfig":{"EndpointsConfig":{"bridge":{"Aliases":["x"]}}}}"#,
        ),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("user defined networks"), "{}", r.text());
    let hosts = ok(&engine, &["exec", "early", "cat", "/etc/hosts"]);
    assert!(hosts.contains("\tlate\n"), "early's /etc/hosts:\n{hosts}");
    assert!(hosts.contains("\tsrv\n"), "early's /etc/hosts:\n{hosts}");
    // ... and forgets a stopped one.
    ok(&engine, &["rm", "-f", "late"]);
    let hosts = ok(&engine, &["exec", "early", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("\tlate\n"), "early's /etc/hosts:\n{hosts}");

    // Inspect lists the running containers with their addresses.
    let members = ok(
        &engine,
        &[
            "network",
            "inspect",
            "appnet",
            "--format",
            "{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}",
        ],
    );
    let prefix = subnet.trim_end_matches("0/24");
    assert!(
        members.contains("srv=") && members.contains(&format!("={prefix}")),
        "{members}"
    );
    let srv_net = ok(
        &engine,
        &[
            "inspect",
            "srv",
            "--format",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}{{end}}",
        ],
    );
    assert!(
        srv_net.starts_with(&format!("appnet {prefix}")),
        "{srv_net}"
    );

    // The default bridge knows no `srv`.
    let o = engine.docker(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://srv/index.html",
    ]);
    assert!(!o.status.success(), "srv resolved from the default bridge");

    // In use: refused, nothing removed.
    let rm = engine.docker(&["network", "rm", "appnet"]);
    assert!(!rm.status.success());
    assert!(err(&rm).contains("has active endpoints"), "{}", err(&rm));
    assert!(link_exists(&bridge));

    // The predefined networks cannot go.
    let rm_bridge = engine.docker(&["network", "rm", "bridge"]);
    assert!(!rm_bridge.status.success());

    ok(&engine, &["rm", "-f", "srv", "early"]);
    ok(&engine, &["network", "rm", "appnet"]);
    assert!(
        !link_exists(&bridge),
        "bridge {bridge} left after network rm"
    );
    let ls = ok(&engine, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(!ls.lines().any(|l| l == "appnet"), "{ls}");
}

#[test]
fn unknown_network_and_subnet_picked_when_none_given() {
    let engine = Engine::start();
    // (Through the API: the docker CLI takes any 404 of create for a missing image.)
    let r = engine.request(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"nope"}}"#),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("network nope not found"), "{}", r.text());

    // No --subnet: one is picked, and a container gets an address on it.
    let id = ok(&engine, &["network", "create", "auto"])
        .trim()
        .to_owned();
    let subnet = ok(
        &engine,
        &[
            "network",
            "inspect",
            "auto",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        ],
    );
    let subnet: ipnet::Ipv4Net = subnet.trim().parse().expect("a subnet");
    let ip = ok(
        &engine,
        &[
            "run",
            "--rm",
            "--network",
            "auto",
            "busybox",
            "sh",
            "-c",
            "ip -4 -o addr show eth0",
        ],
    );
    let addr: std::net::Ipv4Addr = ip
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {ip:?}"));
    assert!(subnet.contains(&addr), "{addr} not in {subnet}");
    // By id prefix.
    ok(&engine, &["network", "rm", &id[..12]]);
    assert!(!link_exists(&format!("br-{}", &id[..12])));

    // Prune: only networks no container names.
    let unused = ok(&engine, &["network", "create", "unused"])
        .trim()
        .to_owned();
    ok(&engine, &["network", "create", "kept"]);
    ok(
        &engine,
        &[
            "create",
            "--name",
            "holder",
            "--network",
            "kept",
            "busybox",
            "true",
        ],
    );
    let pruned = ok(&engine, &["network", "prune", "-f"]);
    assert!(pruned.contains("unused"), "{pruned}");
    assert!(!pruned.contains("kept"), "{pruned}");
    assert!(!link_exists(&format!("br-{}", &unused[..12])));
    let ls = ok(&engine, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(ls.lines().any(|l| l == "kept"), "{ls}");
    // The predefined ones inspect as Docker's.
    let bridge = ok(
        &engine,
        &[
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{.Driver}} {{index .Options \"com.docker.network.bridge.name\"}}",
        ],
    );
    assert_eq!(bridge.trim(), format!("bridge {}", engine.bridge));
}

/// `wget` from a throwaway container on `network`, retried while the server starts.
fn wget_on(engine: &Engine, network: &str, url: &str) -> String {
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - {url} && exit 0; sleep 0.3; done; exit 1"
    );
    ok(
        engine,
        &[
            "run",
            "--rm",
            "--network",
            network,
            "busybox",
            "sh",
            "-c",
            &script,
        ],
    )
}

#[test]
fn a_user_network_publishes_ports_and_survives_a_daemon_restart() {
    let mut engine = Engine::start();
    let subnet = user_subnet(&engine, 4);
    let id = ok(&engine, &["network", "create", "--subnet", &subnet, "net2"])
        .trim()
        .to_owned();
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "net2",
            "-p",
            "127.0.0.1::80",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    let port = ok(&engine, &["port", "web", "80"]);
    let port: u16 = port
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("port {port:?}"));
    assert!(fetch(port).contains("200"));

    engine.stop_daemon();
    engine.start_daemon();

    let ls = ok(&engine, &["network", "ls", "--format", "{{.ID}} {{.Name}}"]);
    assert!(
        ls.lines().any(|l| l == format!("{} net2", &id[..12])),
        "{ls}"
    );
    // The running container kept its place; a new one finds it by name.
    assert!(!wget_on(&engine, "net2", "http://web/index.html").is_empty());
    assert!(fetch(port).contains("200"));

    ok(&engine, &["rm", "-f", "web"]);

    // `berthd --teardown-network` takes the user networks' bridges too; the network stays
    // defined, and its bridge comes back for the next container.
    engine.stop_daemon();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_berthd"))
        .arg("--data-root")
        .arg(engine.data_root())
        .arg("--exec-root")
        .arg(engine.exec_root())
        .args([
            "--bridge",
            &engine.bridge,
            "--bridge-subnet",
            &engine.subnet,
        ])
        .arg("--teardown-network")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("berthd --teardown-network");
    assert!(status.success());
    let bridge = format!("br-{}", &id[..12]);
    assert!(!link_exists(&bridge), "{bridge} left by --teardown-network");
    engine.start_daemon();
    let addr = ok(
        &engine,
        &[
            "run",
            "--rm",
            "--network",
            "net2",
            "busybox",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert!(addr.contains(&subnet.replace(".0/24", ".")), "{addr}");
    ok(&engine, &["network", "rm", "net2"]);
    assert!(!link_exists(&format!("br-{}", &id[..12])));
}
