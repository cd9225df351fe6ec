//! `docker exec` end to end: the real docker CLI and the `berth` CLI against a real berthd
//! running a real busybox container (see support/engine.rs); exec output, exit codes,
//! stdin with half-close, env/workdir/user, a missing program, a stopped container,
//! detached execs, a terminal (through `script`), the raw API's answers and the events.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::cli::{berth_bin, err, out, run_with_stdin};
use support::engine::Engine;
use support::terminal::TermSession;

/// One of the two CLIs, run against the engine.
#[derive(Clone, Copy, Debug)]
enum Cli {
    Docker,
    Berth,
}

impl Cli {
    fn command(self, engine: &Engine) -> Command {
        match self {
            Cli::Docker => {
                let mut c = Command::new("docker");
                c.env("DOCKER_HOST", format!("unix://{}", engine.sock.display()))
                    .env("DOCKER_CONFIG", engine.dir.path().join("docker-config"));
                c
            }
            Cli::Berth => {
                let mut c = Command::new(berth_bin());
                c.arg("-H").arg(format!("unix://{}", engine.sock.display()));
                c
            }
        }
    }

    /// The program and its leading arguments as one shell word list, for `script -c`.
    fn shell_prefix(self, engine: &Engine) -> String {
        match self {
            Cli::Docker => format!(
                "DOCKER_HOST=unix://{} DOCKER_CONFIG={} docker",
                engine.sock.display(),
                engine.dir.path().join("docker-config").display()
            ),
            Cli::Berth => format!(
                "{} -H unix://{}",
                berth_bin().display(),
                engine.sock.display()
            ),
        }
    }

    fn run(self, engine: &Engine, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with_stdin(self.command(engine).args(args), stdin, &format!("{self:?}"))
    }
}

#[track_caller]
fn exec_ok(engine: &Engine, cli: Cli, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut full = vec!["exec"];
    full.extend_from_slice(args);
    let o = cli.run(engine, &full, stdin);
    assert!(
        o.status.success(),
        "{cli:?} exec {args:?} failed: {}\n{}{}\n--- berthd log ---\n{}",
        o.status,
        out(&o),
        err(&o),
        engine.log()
    );
    out(&o)
}

fn exec(engine: &Engine, cli: Cli, args: &[&str]) -> Output {
    let mut full = vec!["exec"];
    full.extend_from_slice(args);
    cli.run(engine, &full, None)
}

/// The events from the daemon's start until the next second, through the API (JSON
/// lines), and that second (for `--until`).
fn events_so_far(engine: &Engine) -> (u64, String) {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let events = engine
        .request("GET", &format!("/v1.44/events?since=0&until={until}"), None)
        .text();
    (until, events)
}

/// `docker run -d --name NAME busybox sleep 1000`.
fn run_sleeper(engine: &Engine, name: &str) {
    let o = engine.docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(o.status.success(), "{}\n{}", err(&o), engine.log());
}

/// Everything `docker exec` is used for, through `cli`.
fn exec_suite(engine: &Engine, cli: Cli) {
    let c = format!("{cli:?}").to_lowercase();
    run_sleeper(engine, &c);

    assert_eq!(exec_ok(engine, cli, &[&c, "echo", "hi"], None), "hi\n");

    let o = exec(engine, cli, &[&c, "sh", "-c", "echo to-err >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}{}", out(&o), err(&o));
    assert_eq!(err(&o), "to-err\n");

    // stdin, ended by the client's half-close.
    let got = exec_ok(engine, cli, &["-i", &c, "cat"], Some(b"data\nmore\n"));
    assert_eq!(got, "data\nmore\n");

    let got = exec_ok(
        engine,
        cli,
        &["-e", "A=b", "-w", "/tmp", &c, "sh", "-c", "echo $A; pwd"],
        None,
    );
    assert_eq!(got, "b\n/tmp\n");

    assert_eq!(
        exec_ok(engine, cli, &["-u", "nobody", &c, "id", "-u"], None),
        "65534\n"
    );
    assert_eq!(exec_ok(engine, cli, &[&c, "id", "-u"], None), "0\n");

    // The command cannot be found: 127, with the runtime's reason in the output.
    let o = exec(engine, cli, &[&c, "/nope"]);
    assert_eq!(o.status.code(), Some(127), "{}{}", out(&o), err(&o));
    assert!(
        format!("{}{}", out(&o), err(&o)).contains("no such file or directory"),
        "{}{}",
        out(&o),
        err(&o)
    );
    let o = exec(engine, cli, &[&c, "nope-not-anywhere"]);
    assert_eq!(o.status.code(), Some(127), "{}{}", out(&o), err(&o));

    // Detached: the command runs in the background.
    let o = exec(engine, cli, &["-d", &c, "touch", "/tmp/x"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exec(engine, cli, &[&c, "test", "-e", "/tmp/x"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the detached exec did not run");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A terminal, through script(1) so the CLI has one.
    let line = format!(
        "{} exec -it {c} sh -c 'tty; echo TERM=$TERM; exit 3'",
        cli.shell_prefix(engine)
    );
    // Through TermSession, whose stdin stays open (see container_lifecycle's
    // interactive_terminal_session for why script must not see EOF).
    let mut term = TermSession::start(&line, &[]);
    term.wait_for("/dev/pts/");
    term.wait_for("TERM=xterm");
    assert_eq!(term.wait_exit(), Some(3), "{}", term.screen());

    // Stopped: refused with Docker's message and status 1.
    let o = engine.docker(&["stop", "-t", "0", &c]);
    assert!(o.status.success(), "{}", err(&o));
    let o = exec(engine, cli, &[&c, "true"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert!(err(&o).contains("is not running"), "{}", err(&o));
    let o = engine.docker(&["rm", &c]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn docker_exec_end_to_end() {
    let engine = Engine::start();
    exec_suite(&engine, Cli::Docker);
}

#[test]
fn berth_exec_end_to_end() {
    let engine = Engine::start();
    exec_suite(&engine, Cli::Berth);
}

#[test]
fn the_api_answers_like_dockerd() {
    let engine = Engine::start();
    let r = engine.request(
        "POST",
        "/v1.44/containers/nosuch/exec",
        Some(r#"{"Cmd":["true"]}"#),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        engine
            .request("GET", "/v1.44/exec/nosuch/json", None)
            .status,
        404
    );

    run_sleeper(&engine, "api");
    let r = engine.request(
        "POST",
        "/v1.44/containers/api/exec",
        Some(r#"{"Cmd":["sleep","2"],"AttachStdout":true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().expect("Id").to_owned();
    let inspect = engine.request("GET", &format!("/v1.44/exec/{id}/json"), None);
    assert_eq!(inspect.status, 200);
    let v = inspect.json();
    assert_eq!(v["Running"], false);
    assert!(v["ExitCode"].is_null(), "{v}");
    assert_eq!(v["ProcessConfig"]["entrypoint"], "sleep");
    assert_eq!(v["ProcessConfig"]["arguments"], serde_json::json!(["2"]));
    assert!(
        v["ContainerID"].as_str().is_some_and(|c| c.len() == 64),
        "{v}"
    );

    let r = engine.request(
        "POST",
        &format!("/v1.44/exec/{id}/start"),
        Some(r#"{"Detach":true}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Running, with a pid and no exit code yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = engine
            .request("GET", &format!("/v1.44/exec/{id}/json"), None)
            .json();
        if v["Running"] == true || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(v["Running"], true, "{v}");
    assert!(v["ExitCode"].is_null(), "{v}");
    assert!(v["Pid"].as_i64().is_some_and(|p| p > 0), "{v}");
    // Started once only.
    let again = engine.request(
        "POST",
        &format!("/v1.44/exec/{id}/start"),
        Some(r#"{"Detach":true}"#),
    );
    assert_eq!(again.status, 409, "{}", again.text());
    let deadline = Instant::now() + Duration::from_secs(15);
    let v = loop {
        let v = engine
            .request("GET", &format!("/v1.44/exec/{id}/json"), None)
            .json();
        if v["Running"] == false || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["ExitCode"], 0, "{v}");

    // The events: create, start, die with the exit code.
    let (_, events) = events_so_far(&engine);
    assert!(events.contains("\"exec_create: sleep 2\""), "{events}");
    assert!(events.contains("\"exec_start: sleep 2\""), "{events}");
    assert!(events.contains("\"exec_die\""), "{events}");
    assert!(events.contains(&format!("\"execID\":\"{id}\"")), "{events}");

    // Stopped: 409 with Docker's message.
    let o = engine.docker(&["stop", "-t", "0", "api"]);
    assert!(o.status.success(), "{}", err(&o));
    let r = engine.request(
        "POST",
        "/v1.44/containers/api/exec",
        Some(r#"{"Cmd":["true"]}"#),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("is not running"), "{}", r.text());
}

/// An upgraded stream to `path` (the 101 read off it), as an API client opens one.
fn upgraded(engine: &Engine, path: &str, body: &str) -> std::os::unix::net::UnixStream {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&engine.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\n\
         Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("read head"), 1, "closed: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Reads until `text` has come (the stream's bytes so far returned), or panics at EOF.
fn read_until(s: &mut std::os::unix::net::UnixStream, text: &str) -> String {
    use std::io::Read;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(text) {
        let n = s.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "stream ended before {text:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The rest of the stream until the daemon closes it.
fn read_to_end(s: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
    use std::io::Read;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the daemon did not end the stream");
    rest
}

/// dockerd watches for the detach keys itself (`copyEscapable`), for clients that do not:
/// a raw API client typing them leaves the exec (or the container) running, the keys never
/// reach the process, and the event says so. Bad keys are a 400 with Docker's wording.
#[test]
fn the_daemon_detaches_api_clients() {
    use std::io::Write;
    let engine = Engine::start();
    let o = engine.docker(&["run", "-dit", "--name", "raw", "busybox", "sh"]);
    assert!(o.status.success(), "{}", err(&o));

    let r = engine.request(
        "POST",
        "/v1.44/containers/raw/exec",
        Some(r#"{"Cmd":["sh"],"Tty":true,"AttachStdin":true,"AttachStdout":true,"DetachKeys":"ctrl-1"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("Invalid escape keys (ctrl-1) provided"),
        "{}",
        r.text()
    );
    let r = engine.request(
        "POST",
        "/v1.44/containers/raw/attach?stream=1&stdin=1&detachKeys=ab",
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("Invalid detach keys (ab) provided"),
        "{}",
        r.text()
    );

    // An exec with the default keys.
    let r = engine.request(
        "POST",
        "/v1.44/containers/raw/exec",
        Some(r#"{"Cmd":["sh"],"Tty":true,"AttachStdin":true,"AttachStdout":true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().expect("Id").to_owned();
    let mut s = upgraded(
        &engine,
        &format!("/v1.44/exec/{id}/start"),
        r#"{"Tty":true}"#,
    );
    s.write_all(b"echo raw-$((6+6))\n").expect("type");
    read_until(&mut s, "raw-12");
    // `/exec/{id}/resize` sets the exec's terminal size.
    let r = engine.request("POST", &format!("/v1.44/exec/{id}/resize?h=33&w=101"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    s.write_all(b"stty size\n").expect("type");
    read_until(&mut s, "33 101");
    // A lone ctrl-p is the shell's; ctrl-p ctrl-q is not.
    s.write_all(b"\x10\x10\x11").expect("detach");
    read_to_end(&mut s);
    let v = engine
        .request("GET", &format!("/v1.44/exec/{id}/json"), None)
        .json();
    assert_eq!(v["Running"], true, "the exec ended with the session: {v}");

    // The container's own stream, with other keys.
    let mut s = upgraded(
        &engine,
        "/v1.44/containers/raw/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-x,y",
        "",
    );
    s.write_all(b"echo main-$((8+8))\n").expect("type");
    read_until(&mut s, "main-16");
    s.write_all(b"\x18y").expect("detach");
    read_to_end(&mut s);
    let v = engine
        .request("GET", "/v1.44/containers/raw/json", None)
        .json();
    assert_eq!(v["State"]["Running"], true, "{v}");

    let (now, events) = events_so_far(&engine);
    assert!(events.contains("\"exec_detach\""), "{events}");
    assert!(events.contains("\"Action\":\"detach\""), "{events}");
    // The same through `docker events --since --until --filter`.
    let o = engine.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        &now.to_string(),
        "--filter",
        "event=detach",
        "--filter",
        "event=exec_detach",
        "--filter",
        "container=raw",
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        "container exec_detach\ncontainer detach\n",
        "{}",
        err(&o)
    );

    // The main shell still takes input: it was never sent EOF.
    let mut s = upgraded(
        &engine,
        "/v1.44/containers/raw/attach?stream=1&stdin=1&stdout=1&stderr=1",
        "",
    );
    s.write_all(b"exit 4\n").expect("type");
    read_to_end(&mut s);
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let v = engine
            .request("GET", "/v1.44/containers/raw/json", None)
            .json();
        if v["State"]["Running"] == false || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["State"]["ExitCode"], 4, "{v}");
}

/// `exec --privileged` gets every capability; a plain exec the container's set.
#[test]
fn exec_privileged_gets_all_capabilities() {
    let engine = Engine::start();
    run_sleeper(&engine, "priv");
    let caps = |cli: Cli, extra: &[&str]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["priv", "grep", "CapEff", "/proc/self/status"]);
        let line = exec_ok(&engine, cli, &args, None);
        let hex = line
            .split_whitespace()
            .nth(1)
            .expect("CapEff value")
            .to_owned();
        u64::from_str_radix(&hex, 16).expect("hex")
    };
    // Every capability there is to have: the host's bounding set (a host may lack some).
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd");
    let all = u64::from_str_radix(bnd.trim(), 16).expect("hex");
    for cli in [Cli::Docker, Cli::Berth] {
        let plain = caps(cli, &[]);
        assert_ne!(plain, all, "{cli:?}: a plain exec has every capability");
        assert_eq!(
            plain & (1 << 21),
            0,
            "{cli:?}: CAP_SYS_ADMIN without --privileged"
        );
        assert_eq!(caps(cli, &["--privileged"]), all, "{cli:?}");
    }
}
