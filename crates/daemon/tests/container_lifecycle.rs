//! Restart policies, network modes, /etc files, logs follow, events, wait conditions and a
//! terminal session, with the docker CLI against a real berthd.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cli::{ok, out};
use support::engine::Engine;
use support::terminal::TermSession;

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn restart_policies() {
    let engine = Engine::start();
    // on-failure:2 restarts twice, then stays exited with the last code.
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "flaky",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ],
    );
    wait_for("two restarts", || {
        ok(
            &engine,
            &[
                "inspect",
                "-f",
                "{{.RestartCount}} {{.State.Status}}",
                "flaky",
            ],
        )
        .trim()
            == "2 exited"
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        ok(
            &engine,
            &[
                "inspect",
                "-f",
                "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
                "flaky"
            ]
        )
        .trim(),
        "2 exited 3"
    );
    // always restarts on a clean exit too, but not after `docker stop`.
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "loop",
            "--restart",
            "always",
            "busybox",
            "sh",
            "-c",
            "sleep 0.2",
        ],
    );
    wait_for("a restart", || {
        ok(&engine, &["inspect", "-f", "{{.RestartCount}}", "loop"]).trim() != "0"
    });
    ok(&engine, &["stop", "-t", "1", "loop"]);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        ok(&engine, &["inspect", "-f", "{{.State.Status}}", "loop"]).trim(),
        "exited"
    );
    // --rm with a restart policy is refused, as by Docker.
    let o = engine.docker(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert!(!o.status.success());
}

#[test]
fn network_modes_and_etc_files() {
    let engine = Engine::start();
    let hosts = ok(
        &engine,
        &[
            "run",
            "--rm",
            "--hostname",
            "boat",
            "busybox",
            "cat",
            "/etc/hosts",
            "/etc/hostname",
        ],
    );
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    assert!(hosts.contains("\tboat"), "{hosts}");
    assert!(hosts.ends_with("boat\n"), "{hosts}");
    let resolv = ok(
        &engine,
        &["run", "--rm", "busybox", "cat", "/etc/resolv.conf"],
    );
    assert!(resolv.contains("nameserver"), "{resolv}");
    assert!(
        !resolv.contains("nameserver 127."),
        "loopback nameserver kept: {resolv}"
    );
    // bridge: eth0 with an address in the engine's subnet, and the gateway routes.
    let ip = ok(
        &engine,
        &[
            "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
        ],
    );
    let prefix = engine.subnet.trim_end_matches(".0/24");
    assert!(ip.contains(&format!("inet {prefix}.")), "{ip}");
    // none: only lo.
    let links = ok(
        &engine,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ip",
            "-o",
            "link",
        ],
    );
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:"), "{links}");
    // host: the host's namespace (its lo and eth0 are visible).
    let host_links = ok(
        &engine,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "busybox",
            "ip",
            "-o",
            "link",
        ],
    );
    // The host's own uplink (the default route's device) is visible: not a count of links,
    // which other tests change concurrently.
    let route = Command::new("ip")
        .args(["-o", "route", "show", "default"])
        .output()
        .expect("ip route");
    let route = out(&route);
    let uplink = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or("lo")
        .to_owned();
    assert!(
        host_links.contains(&format!(": {uplink}:")),
        "no {uplink} in {host_links}"
    );
    // Two containers on the bridge reach each other.
    ok(
        &engine,
        &[
            "run", "-d", "--name", "srv", "busybox", "httpd", "-f", "-p", "80", "-h", "/www",
        ],
    );
    let srv_ip = ok(
        &engine,
        &["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv"],
    );
    let page = ok(&engine, &["run", "--rm", "busybox", "sh", "-c",
        &format!("for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://{}/index.html && exit 0; sleep 0.2; done; exit 1", srv_ip.trim())]);
    assert_eq!(page, "hello from berth\n");
}

#[test]
fn logs_follow_events_and_wait_conditions() {
    let engine = Engine::start();
    // events: start a stream first, then act.
    let mut events = Command::new("docker")
        .args([
            "events",
            "--format",
            "{{.Type}} {{.Action}}",
            "--filter",
            "type=container",
        ])
        .env("DOCKER_HOST", format!("unix://{}", engine.sock.display()))
        .env("DOCKER_CONFIG", engine.dir.path().join("docker-config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker events");
    std::thread::sleep(Duration::from_millis(300));
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3; do echo tick $i; sleep 0.3; done",
        ],
    );
    let follow = engine.docker(&["logs", "-f", "-t", "ticker"]);
    let text = out(&follow);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines().all(|l| l.contains("Z tick ")),
        "timestamps: {text}"
    );
    let tail = ok(&engine, &["logs", "--tail", "1", "ticker"]);
    assert_eq!(tail, "tick 3\n");
    assert_eq!(ok(&engine, &["wait", "ticker"]).trim(), "0");
    ok(&engine, &["rm", "ticker"]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = events.kill();
    let got = events.wait_with_output().expect("events output");
    let seen = out(&got);
    for action in ["create", "start", "die", "destroy"] {
        assert!(
            seen.contains(&format!("container {action}")),
            "no {action} event in {seen}"
        );
    }
}

#[test]
fn interactive_terminal_session() {
    let engine = Engine::start();
    // `script` gives the docker CLI a terminal; the container sees one too.
    let cmd = format!(
        "DOCKER_HOST=unix://{} DOCKER_CONFIG={} docker run --rm -it busybox sh -c 'tty; stty size; exit 4'",
        engine.sock.display(),
        engine.dir.path().join("docker-config").display()
    );
    // script's stdin stays open: at EOF script sends the terminal an EOF, which a CLI that
    // has not yet put it in raw mode reads as the end of its input, and a terminal session
    // ends with its client's input (as dockerd's does), before any output.
    let mut term = TermSession::start(&cmd, &[]);
    term.wait_for("/dev/pts/0");
    assert_eq!(term.wait_exit(), Some(4), "{}", term.screen());
}

fn docker_env(engine: &Engine) -> Vec<(&'static str, String)> {
    vec![
        ("DOCKER_HOST", format!("unix://{}", engine.sock.display())),
        (
            "DOCKER_CONFIG",
            engine
                .dir
                .path()
                .join("docker-config")
                .display()
                .to_string(),
        ),
    ]
}

fn status_of(engine: &Engine, name: &str) -> String {
    ok(
        engine,
        &[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            name,
        ],
    )
    .trim()
    .to_owned()
}

/// The tutorial's loop: `run -it`, leave the shell, `ps -a` shows it Exited, `start -ai`
/// is the same shell session again, typed input reaches it, and `start -ai` exits with
/// the container's code. With a terminal, and with stdin piped and no terminal.
#[test]
fn start_ai_attaches_again() {
    let engine = Engine::start();
    let env = docker_env(&engine);

    let mut run = TermSession::start("docker run -it --name tty1 busybox sh", &env);
    run.wait_for("# ");
    // The marker is computed by the shell: the echo of what was typed does not match it.
    run.type_bytes(b"echo first-$((20+1))\n");
    run.wait_for("first-21");
    run.type_bytes(b"exit 3\n");
    assert_eq!(run.wait_exit(), Some(3), "{}", run.screen());
    let ps = ok(
        &engine,
        &[
            "ps",
            "-a",
            "--filter",
            "name=tty1",
            "--format",
            "{{.Status}}",
        ],
    );
    assert!(ps.starts_with("Exited (3)"), "{ps}");

    let mut again = TermSession::start("docker start -ai tty1", &env);
    again.wait_for("# ");
    again.type_bytes(b"echo again-$((40+2))\n");
    again.wait_for("again-42");
    again.type_bytes(b"exit 7\n");
    assert_eq!(again.wait_exit(), Some(7), "{}", again.screen());
    assert_eq!(status_of(&engine, "tty1"), "exited 7");

    // No terminal: `run -i` with stdin piped, then `start -ai` with stdin piped again.
    let o = engine.docker_stdin(
        &["run", "-i", "--name", "pipe1", "busybox", "sh"],
        Some(b"echo first-$((1+1))\nexit 5\n"),
    );
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out(&o), "first-2\n");
    let ps = ok(
        &engine,
        &[
            "ps",
            "-a",
            "--filter",
            "name=pipe1",
            "--format",
            "{{.Status}}",
        ],
    );
    assert!(ps.starts_with("Exited (5)"), "{ps}");
    let o = engine.docker_stdin(
        &["start", "-ai", "pipe1"],
        Some(b"echo again-$((2+2))\nexit 7\n"),
    );
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out(&o), "again-4\n");
    assert_eq!(status_of(&engine, "pipe1"), "exited 7");
}

/// ctrl-p ctrl-q (or `--detach-keys`) leaves `run -it`, `attach`, `start -ai` and
/// `exec -it` sessions with the process still running, and the next session finds it.
#[test]
fn detach_keys_leave_processes_running() {
    let engine = Engine::start();
    let env = docker_env(&engine);

    let mut run = TermSession::start("docker run -it --name det busybox sh", &env);
    run.wait_for("# ");
    run.type_bytes(b"echo $$ > /tmp/main; echo run-$((1+2))\n");
    run.wait_for("run-3");
    run.type_bytes(b"\x10\x11");
    run.wait_exit();
    assert_eq!(status_of(&engine, "det"), "running 0");

    // `attach` with other keys: ctrl-p ctrl-q now reaches the shell as typed bytes.
    let mut att = TermSession::start("docker attach --detach-keys ctrl-x,y det", &env);
    att.type_bytes(b"echo att-$((3+4))\n");
    att.wait_for("att-7");
    att.type_bytes(b"\x18y");
    att.wait_exit();
    assert_eq!(status_of(&engine, "det"), "running 0");

    // exec -it, default keys: the exec's shell runs on after the client left.
    let mut ex = TermSession::start("docker exec -it det sh", &env);
    ex.wait_for("# ");
    ex.type_bytes(b"echo $$ > /tmp/exec1; echo ex-$((5+5))\n");
    ex.wait_for("ex-10");
    ex.type_bytes(b"\x10\x11");
    ex.wait_exit();
    let pid = ok(&engine, &["exec", "det", "cat", "/tmp/exec1"]);
    let alive = engine.docker(&["exec", "det", "kill", "-0", pid.trim()]);
    assert!(alive.status.success(), "the detached exec's shell is gone");

    // exec -it --detach-keys ctrl-x,y.
    let mut ex2 = TermSession::start("docker exec -it --detach-keys ctrl-x,y det sh", &env);
    ex2.wait_for("# ");
    ex2.type_bytes(b"echo $$ > /tmp/exec2; echo ex2-$((6+6))\n");
    ex2.wait_for("ex2-12");
    ex2.type_bytes(b"\x18y");
    ex2.wait_exit();
    let pid = ok(&engine, &["exec", "det", "cat", "/tmp/exec2"]);
    let alive = engine.docker(&["exec", "det", "kill", "-0", pid.trim()]);
    assert!(alive.status.success(), "the detached exec's shell is gone");

    // The main shell was never told anything: attach again and end it.
    let mut last = TermSession::start("docker attach det", &env);
    last.type_bytes(b"echo last-$((7+7)); cat /tmp/main; exit 9\n");
    last.wait_for("last-14");
    assert_eq!(last.wait_exit(), Some(9), "{}", last.screen());
    assert_eq!(status_of(&engine, "det"), "exited 9");
}

/// A `logs --follow` body read after the container is gone still has its output: docker-py's
/// `containers.run(remove=True)` asks for the logs, waits, removes, and only then reads.
#[test]
fn followed_logs_outlive_the_container() {
    use std::io::{Read, Write};
    let engine = Engine::start();
    let id = ok(
        &engine,
        &[
            "run",
            "-d",
            "busybox",
            "sh",
            "-c",
            "sleep 1; echo late line",
        ],
    )
    .trim()
    .to_owned();
    let mut s = std::os::unix::net::UnixStream::connect(&engine.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET /v1.44/containers/{id}/logs?follow=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: berth\r\n\
         Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("head"), 1);
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Straight after the exit, as docker-py does: inside the follower's poll interval.
    let waited = engine.request("POST", &format!("/v1.44/containers/{id}/wait"), None);
    assert_eq!(waited.json()["StatusCode"], 0, "{}", waited.text());
    let removed = engine.request("DELETE", &format!("/v1.44/containers/{id}"), None);
    assert_eq!(removed.status, 204, "{}", removed.text());
    let mut body = Vec::new();
    s.read_to_end(&mut body).expect("body");
    assert!(
        String::from_utf8_lossy(&body).contains("late line"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}
