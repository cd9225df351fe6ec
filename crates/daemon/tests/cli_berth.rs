//! The `berth` CLI against a real berthd: the same daily scenarios the docker CLI runs in
//! container_api.rs, through berth's own client and output formats.

mod support;

use std::process::{Command, Stdio};

use support::cli::{berth, berth_bin, berth_ok};
use support::engine::{user_subnet, Engine};

#[test]
fn berth_runs_lists_stops_starts_and_removes() {
    let engine = Engine::start();
    let o = berth(
        &engine,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 4",
        ],
    );
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let o = berth(&engine, &["run", "--rm", "busybox", "/nope"]);
    assert_eq!(
        o.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let id = berth_ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "127.0.0.1::80",
            "-e",
            "GREETING=hi",
            "busybox",
            "sh",
            "-c",
            "echo $GREETING; exec httpd -f -p 80 -h /www",
        ],
    );
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let ps = berth_ok(&engine, &["ps"]);
    let mut lines = ps.lines();
    assert!(
        lines
            .next()
            .unwrap_or("")
            .starts_with("CONTAINER ID   IMAGE"),
        "{ps}"
    );
    let row = lines.next().unwrap_or("");
    assert!(
        row.starts_with(&id[..12]) && row.ends_with("web") && row.contains("Up "),
        "{ps}"
    );
    assert_eq!(berth_ok(&engine, &["ps", "-q"]).trim(), &id[..12]);
    assert_eq!(
        berth_ok(
            &engine,
            &["inspect", "-f", "{{.Name}} {{.State.Status}}", "web"]
        )
        .trim(),
        "/web running"
    );
    let port = berth_ok(&engine, &["port", "web"]);
    assert!(port.starts_with("80/tcp -> 127.0.0.1:"), "{port}");
    // logs arrive once the shell printed them.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = berth_ok(&engine, &["logs", "web"]);
        if !logs.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(logs, "hi\n");

    berth_ok(&engine, &["stop", "-t", "1", "web"]);
    assert_eq!(berth_ok(&engine, &["ps", "-q"]), "");
    let all = berth_ok(&engine, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(all.starts_with("web Exited (137)"), "{all}");
    berth_ok(&engine, &["start", "web"]);
    assert_eq!(
        berth_ok(&engine, &["inspect", "-f", "{{.State.Running}}", "web"]).trim(),
        "true"
    );
    let o = berth(&engine, &["rm", "web"]);
    assert_eq!(o.status.code(), Some(1), "rm of a running container");
    berth_ok(&engine, &["rm", "-f", "web"]);
    assert_eq!(berth_ok(&engine, &["ps", "-aq"]), "");

    // start -a: the output of a created container, and its exit code.
    let id = berth_ok(
        &engine,
        &[
            "create",
            "--name",
            "once",
            "busybox",
            "sh",
            "-c",
            "echo attached; exit 2",
        ],
    );
    assert_eq!(id.trim().len(), 64);
    let o = berth(&engine, &["start", "-a", "once"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "attached\n");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(berth_ok(&engine, &["wait", "once"]).trim(), "2");
    berth_ok(&engine, &["rm", "once"]);
}

#[test]
fn berth_images_and_errors() {
    let engine = Engine::start();
    let images = berth_ok(&engine, &["images"]);
    assert!(
        images.contains("busybox") && images.contains("latest"),
        "{images}"
    );
    berth_ok(&engine, &["tag", "busybox", "mine/box:1"]);
    assert!(berth_ok(&engine, &["images"]).contains("mine/box"));
    let out = berth_ok(&engine, &["rmi", "mine/box:1"]);
    assert!(out.contains("Untagged: mine/box:1"), "{out}");

    // Errors: Docker's wording, exit 125 for berth's own, 1 for a daemon refusal.
    let o = berth(&engine, &["inspect", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such object: nope"));
    let o = berth(&engine, &["run", "-p", "notaport", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let o = berth(&engine, &["stop", "nope"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such container: nope"));
    berth_ok(&engine, &["create", "--name", "dup", "busybox"]);
    let o = berth(&engine, &["create", "--name", "dup", "busybox"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is already in use"));
}

#[test]
fn berth_run_forwards_signals_to_the_container() {
    let engine = Engine::start();
    let child = Command::new(berth_bin())
        .arg("-H")
        .arg(format!("unix://{}", engine.sock.display()))
        .args([
            "run",
            "--rm",
            "--name",
            "trapper",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got INT; exit 9' INT; echo ready; while true; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth run");
    // Wait until the trap is installed (the container printed "ready").
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let logs = berth(&engine, &["logs", "trapper"]);
        if String::from_utf8_lossy(&logs.stdout).contains("ready") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "container never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("berth exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("got INT"),
        "{stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(9));
}

#[test]
fn berth_network_verbs() {
    let engine = Engine::start();
    let subnet = user_subnet(&engine, 6);
    let id = berth_ok(
        &engine,
        &["network", "create", "--subnet", &subnet, "clinet"],
    );
    assert_eq!(id.trim().len(), 64, "{id}");
    let ls = berth_ok(&engine, &["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.contains("clinet") && l.contains("bridge")),
        "{ls}"
    );
    let ipam = berth_ok(
        &engine,
        &[
            "network",
            "inspect",
            "-f",
            "{{json .IPAM.Config}}",
            "clinet",
        ],
    );
    assert!(ipam.contains(&format!("\"Subnet\":\"{subnet}\"")), "{ipam}");
    let addr = berth_ok(
        &engine,
        &[
            "run",
            "--rm",
            "--network",
            "clinet",
            "busybox",
            "sh",
            "-c",
            "ip -4 -o addr show eth0",
        ],
    );
    assert!(addr.contains(&subnet.replace(".0/24", ".")), "{addr}");
    assert!(!berth(&engine, &["network", "rm", "bridge"])
        .status
        .success());
    assert_eq!(
        berth_ok(&engine, &["network", "rm", "clinet"]).trim(),
        "clinet"
    );
    assert!(!berth(&engine, &["network", "inspect", "clinet"])
        .status
        .success());
}

/// `berth start -ai` is the same session loop as docker's: `run -it`, leave, Exited in
/// `ps -a`, `start -ai` attaches again, typed input reaches the shell, and the exit code
/// is the container's; with a terminal and with stdin piped.
#[test]
fn berth_start_ai_attaches_again() {
    use support::terminal::TermSession;
    let engine = Engine::start();
    let berth_cmd = format!(
        "{} -H unix://{}",
        berth_bin().display(),
        engine.sock.display()
    );
    let mut run = TermSession::start(&format!("{berth_cmd} run -it --name bt1 busybox sh"), &[]);
    run.wait_for("# ");
    run.type_bytes(b"echo first-$((20+1))\n");
    run.wait_for("first-21");
    run.type_bytes(b"exit 3\n");
    assert_eq!(run.wait_exit(), Some(3), "{}", run.screen());
    let ps = berth_ok(
        &engine,
        &[
            "ps",
            "-a",
            "--filter",
            "name=bt1",
            "--format",
            "{{.Status}}",
        ],
    );
    assert!(ps.starts_with("Exited (3)"), "{ps}");

    let mut again = TermSession::start(&format!("{berth_cmd} start -ai bt1"), &[]);
    again.wait_for("# ");
    again.type_bytes(b"echo again-$((40+2))\n");
    again.wait_for("again-42");
    again.type_bytes(b"exit 7\n");
    assert_eq!(again.wait_exit(), Some(7), "{}", again.screen());

    // Detach (ctrl-p ctrl-q) from `start -ai`: the shell runs on.
    let mut third = TermSession::start(&format!("{berth_cmd} start -ai bt1"), &[]);
    third.wait_for("# ");
    third.type_bytes(b"\x10\x11");
    assert_eq!(third.wait_exit(), Some(0), "{}", third.screen());
    assert_eq!(
        berth_ok(
            &engine,
            &["inspect", "--format", "{{.State.Status}}", "bt1"]
        )
        .trim(),
        "running"
    );
    // A terminal session needs a terminal: docker's error, and the container stays as it is.
    let o = berth(&engine, &["start", "-ai", "bt1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the input device is not a TTY"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    berth_ok(&engine, &["rm", "-f", "bt1"]);

    let piped = |args: &[&str], input: &[u8]| {
        use std::io::Write;
        let mut child = Command::new(berth_bin())
            .arg("-H")
            .arg(format!("unix://{}", engine.sock.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write");
        child.wait_with_output().expect("berth")
    };
    let o = piped(
        &["run", "-i", "--name", "bp1", "busybox", "sh"],
        b"echo first-$((1+1))\nexit 5\n",
    );
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "first-2\n");
    let o = piped(&["start", "-ai", "bp1"], b"echo again-$((2+2))\nexit 7\n");
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "again-4\n");
}
