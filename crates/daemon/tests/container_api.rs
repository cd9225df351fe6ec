//! Containers end to end: the real docker CLI and raw HTTP against a real berthd running
//! real containers (the host's static busybox as the image), with published ports reached
//! on 127.0.0.1 only. Every engine cleans up after itself (see support/engine.rs).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use support::cli::{err, fetch, ok, out};
use support::engine::Engine;

#[test]
fn run_rm_output_and_exit_codes() {
    let engine = Engine::start();
    let o = engine.docker(&["run", "--rm", "busybox", "echo", "hello", "from", "berth"]);
    assert_eq!(
        out(&o),
        "hello from berth\n",
        "{}\n{}",
        err(&o),
        engine.log()
    );
    assert!(o.status.success());
    let o = engine.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo oops >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(err(&o).contains("oops"), "{}", err(&o));
    // A command that does not exist: Docker's 127.
    let o = engine.docker(&["run", "--rm", "busybox", "/no/such/command"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    // Stdin through attach, closed by the client's half-close.
    let o = engine.docker_stdin(
        &["run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z"],
        Some(b"shout\n"),
    );
    assert_eq!(out(&o), "SHOUT\n", "{}", err(&o));
    // --rm removed them all.
    assert_eq!(ok(&engine, &["ps", "-aq"]), "");
}

#[test]
fn detached_web_server_with_a_published_port() {
    let engine = Engine::start();
    let id = ok(
        &engine,
        &[
            "run",
            "-d",
            "-p",
            "127.0.0.1::80",
            "--name",
            "web",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    assert_eq!(id.trim().len(), 64, "{id}");
    let port_line = ok(&engine, &["port", "web", "80"]);
    let port: u16 = port_line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("docker port said {port_line:?}"));
    assert!(port_line.starts_with("127.0.0.1:"), "{port_line}");
    assert!(fetch(port).contains("hello from berth"));

    let ps = ok(&engine, &["ps"]);
    assert!(ps.contains("web") && ps.contains("Up "), "{ps}");
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    assert_eq!(
        ok(&engine, &["inspect", "-f", "{{.State.Running}}", "web"]).trim(),
        "true"
    );
    let ip = ok(
        &engine,
        &["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"],
    );
    assert!(ip.trim().starts_with("10.7"), "{ip}");

    ok(&engine, &["stop", "-t", "2", "web"]);
    let ps = ok(&engine, &["ps", "-a"]);
    assert!(ps.contains("Exited ("), "{ps}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port still open after stop"
    );
    // The same name cannot be taken twice: 409 with Docker's wording.
    let o = engine.docker(&["create", "--name", "web", "busybox"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("is already in use"), "{}", err(&o));

    ok(&engine, &["start", "web"]);
    let port: u16 = ok(&engine, &["port", "web", "80"])
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port after restart");
    assert!(fetch(port).contains("hello from berth"));
    let logs = engine.docker(&["logs", "web"]);
    assert!(logs.status.success(), "{}", err(&logs));
    let o = engine.docker(&["rm", "web"]);
    assert!(!o.status.success(), "removed a running container");
    assert!(err(&o).contains("Stop the container"), "{}", err(&o));
    ok(&engine, &["rm", "-f", "web"]);
    assert_eq!(ok(&engine, &["ps", "-aq"]), "");
}

#[test]
fn bad_input_gets_clear_errors_and_leaves_nothing() {
    let engine = Engine::start();
    let r = engine.request("POST", "/containers/create", Some(r#"{"Image":"nope:1"}"#));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["message"], "No such image: nope:1");
    let r = engine.request("POST", "/containers/create", Some("{not json"));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = engine.request(
        "POST",
        "/containers/create?name=a/b",
        Some(r#"{"Image":"busybox"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("Invalid container name"));
    let r = engine.request(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"99999"}]}}}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = engine.request(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","HostConfig":{"NetworkMode":"nonet"}}"#),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    for (method, path) in [
        ("POST", "/containers/nope/start"),
        ("GET", "/containers/nope/json"),
        ("DELETE", "/containers/nope"),
        ("POST", "/containers/nope/wait"),
    ] {
        let r = engine.request(method, path, None);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["message"], "No such container: nope");
    }
    // None of it made a container or a snapshot.
    assert_eq!(ok(&engine, &["ps", "-aq"]), "");
    let snaps = std::fs::read_dir(engine.data_root().join("snapshots"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(snaps, 0, "snapshots left by failed creates");

    // A host port that is taken: the start fails with the port named, nothing is left
    // on the host, and the container stays created.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr").port();
    let spec = format!("127.0.0.1:{taken}:80");
    let o = engine.docker(&[
        "run", "-d", "--name", "clash", "-p", &spec, "busybox", "sleep", "30",
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("already in use"), "{}", err(&o));
    let id = ok(&engine, &["inspect", "-f", "{{.Id}}", "clash"]);
    let veth = berth_network::bridge_network::veth_name(id.trim(), "bridge");
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(
        !links.contains(&format!(" {veth}@")),
        "veth {veth} left: {links}"
    );
    assert!(
        !engine.exec_root().join("netns").join(id.trim()).exists(),
        "network namespace left"
    );
    assert_eq!(
        ok(&engine, &["inspect", "-f", "{{.State.Status}}", "clash"]).trim(),
        "created"
    );
}

#[test]
fn containers_outlive_a_daemon_restart() {
    let mut engine = Engine::start();
    ok(
        &engine,
        &["run", "-d", "--name", "sleeper", "busybox", "sleep", "300"],
    );
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "brief",
            "busybox",
            "sh",
            "-c",
            "sleep 1; exit 7",
        ],
    );
    let pid = ok(&engine, &["inspect", "-f", "{{.State.Pid}}", "sleeper"]);
    engine.stop_daemon();
    // While berthd is away, one container keeps running and the other exits.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "container died with the daemon"
    );
    engine.start_daemon();
    assert_eq!(
        ok(&engine, &["inspect", "-f", "{{.State.Status}}", "sleeper"]).trim(),
        "running"
    );
    let brief = ok(
        &engine,
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "brief",
        ],
    );
    assert_eq!(brief.trim(), "exited 7");
    // The reconnected monitor still sees the exit.
    ok(&engine, &["kill", "sleeper"]);
    let code = ok(&engine, &["wait", "sleeper"]);
    assert_eq!(code.trim(), "137");
}

/// Opens `POST /containers/{name}/attach?{query}` upgraded; returns the stream after the
/// 101 answer's headers (read byte by byte, so no body byte is consumed).
fn attach_raw(engine: &Engine, name: &str, query: &str) -> UnixStream {
    let mut s = UnixStream::connect(&engine.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = format!(
        "POST /containers/{name}/attach?{query} HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("read head"), 1, "EOF in {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Docker's 8-byte frames: (stream, payload) pairs.
fn frames(mut data: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let end = (8 + len).min(data.len());
        out.push((data[0], String::from_utf8_lossy(&data[8..end]).into_owned()));
        data = &data[end..];
    }
    out
}

#[test]
fn attach_with_logs_replays_past_output() {
    let engine = Engine::start();
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "talker",
            "busybox",
            "sh",
            "-c",
            "echo one; echo two >&2; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo three",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !out(&engine.docker(&["logs", "talker"])).contains("one") {
        assert!(Instant::now() < deadline, "no output from talker");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));

    // logs without stream: the past output in frames, then the server closes.
    let mut s = attach_raw(&engine, "talker", "logs=1&stdout=1&stderr=1");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read");
    assert_eq!(
        frames(&got),
        [(1, "one\n".to_string()), (2, "two\n".to_string())]
    );
    // Only the streams asked for.
    let mut s = attach_raw(&engine, "talker", "logs=1&stderr=1");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read");
    assert_eq!(frames(&got), [(2, "two\n".to_string())]);
    // Neither logs nor stream: nothing, as dockerd.
    let mut s = attach_raw(&engine, "talker", "stdout=1&stderr=1");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read");
    assert!(got.is_empty(), "{got:?}");

    // logs and stream: the replay, then what comes next, until the container exits.
    let mut s = attach_raw(&engine, "talker", "logs=1&stream=1&stdout=1&stderr=1");
    let mut got = vec![0u8; 2 * (8 + 4)];
    s.read_exact(&mut got).expect("replay");
    assert_eq!(
        frames(&got),
        [(1, "one\n".to_string()), (2, "two\n".to_string())]
    );
    ok(&engine, &["exec", "talker", "touch", "/tmp/go"]);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("live");
    assert_eq!(frames(&rest), [(1, "three\n".to_string())]);
    assert_eq!(ok(&engine, &["wait", "talker"]).trim(), "0");

    // A stopped container's log replays too.
    let mut s = attach_raw(&engine, "talker", "logs=1&stdout=1");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read");
    assert_eq!(
        frames(&got),
        [(1, "one\n".to_string()), (1, "three\n".to_string())]
    );
}
