//! `berth-shim` end to end, as root: start, the json-file log, wait, kill, attach with and
//! without a terminal, resize, surviving its parent, exit.json, delete, a failed start, and
//! the shim's memory.

mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn log_entries(shim: &Shim) -> Vec<Value> {
    std::fs::read_to_string(shim.state_dir().join("container.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .collect()
}

/// Deletes through the shim and checks that the shim and the runtime state are gone.
fn delete_and_check(shim: &Shim) {
    let pid = shim.pid();
    assert_eq!(shim.request(json!({"op": "delete"})), json!({"ok": true}));
    assert!(
        eventually(Duration::from_secs(5), || !process_alive(pid, &shim.id)),
        "the shim exits after delete"
    );
    assert!(!shim.runtime_state_dir().exists(), "runtime state removed");
    assert!(!shim.socket().exists(), "shim.sock removed");
    let cg = shim.bundle.cgroups_path().unwrap();
    assert!(host_cgroup_dirs(&cg).is_empty(), "cgroup of {cg} removed");
}

#[test]
fn output_goes_to_the_json_log_and_wait_returns_the_exit_code() {
    require_root!();
    let shim = Shim::new(Bundle::busybox(&[
        "sh",
        "-c",
        "echo out; echo err >&2; printf partial; exit 3",
    ]));
    let out = shim.start(&[]);
    assert_success(&out, "berth-shim start");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(shim.request(json!({"op": "wait"}))["exit_code"], 3);

    let exit: Value =
        serde_json::from_slice(&std::fs::read(shim.state_dir().join("exit.json")).unwrap())
            .unwrap();
    assert_eq!(exit["exit_code"], 3);
    assert!(
        exit["finished_at"].as_str().unwrap().ends_with('Z'),
        "{exit}"
    );

    let entries = log_entries(&shim);
    let lines: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["stream"].as_str().unwrap(), e["log"].as_str().unwrap()))
        .collect();
    assert!(lines.contains(&("stdout", "out\n")), "{lines:?}");
    assert!(lines.contains(&("stderr", "err\n")), "{lines:?}");
    assert!(lines.contains(&("stdout", "partial")), "{lines:?}");
    for e in &entries {
        let t = e["time"].as_str().unwrap();
        assert!(t.len() > 20 && t.contains('T') && t.ends_with('Z'), "{t}");
    }

    let state = shim.request(json!({"op": "state"}));
    assert_eq!(state["status"], "stopped", "{state}");
    assert_eq!(state["exit_code"], 3, "{state}");
    // A second wait after the exit answers at once.
    assert_eq!(shim.request(json!({"op": "wait"}))["exit_code"], 3);
    delete_and_check(&shim);
}

#[test]
fn start_returns_with_the_container_running_and_the_shim_outlives_its_parent() {
    require_root!();
    let shim = Shim::new(Bundle::busybox(&["sleep", "1000"]));
    // A short-lived intermediate: `sh` runs `berth-shim start` and exits.
    let start = format!("{:?}", shim.start_command(&[]));
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(format!("{start}; echo parent=$$"));
    // A pipe the caller leaks to the shim as fd 50: the shim must not keep it open.
    let mut ends = [0; 2];
    // SAFETY: pipe2 into a two-element array.
    assert_eq!(
        unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    let (leak_r, leak_w) = (ends[0], ends[1]);
    // SAFETY: dup2 in the forked child before exec; async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut sh, move || {
            libc::dup2(leak_w, 50);
            Ok(())
        });
    }
    let out = output_with_timeout(sh, COMMAND_TIMEOUT);
    // SAFETY: closing our own write end.
    unsafe { libc::close(leak_w) };
    assert_success(&out, "sh -c berth-shim start");
    let mut pfd = libc::pollfd {
        fd: leak_r,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one live pollfd, then read(2) into a live buffer.
    let (ready, n) = unsafe {
        let ready = libc::poll(&mut pfd, 1, 10_000);
        let mut byte = 0u8;
        let n = if ready == 1 {
            libc::read(leak_r, (&mut byte as *mut u8).cast(), 1)
        } else {
            -1
        };
        libc::close(leak_r);
        (ready, n)
    };
    assert_eq!((ready, n), (1, 0), "EOF: no process kept the caller's pipe");

    let pid = shim.pid();
    assert!(shim.alive(), "the shim outlives the command and its parent");
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .to_string();
    let ppid: i32 = ppid.parse().unwrap();
    assert!(
        !process_alive(ppid, &shim.id),
        "the shim was re-parented: `berth-shim start` ({ppid}) is gone"
    );
    assert!(!stdout_text(&out).contains(&format!("parent={ppid}\n")));
    let state = shim.request(json!({"op": "state"}));
    assert_eq!(state["status"], "running", "{state}");
    let init = state["pid"].as_i64().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{init}")).exists());
    // The init is the shim's child: launcher::create cloned it from the shim.
    let init_status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert!(
        init_status.contains(&format!("PPid:\t{pid}\n")),
        "{init_status}"
    );

    // A client waiting for the exit (as berthd keeps one per container) does not hold the
    // handoff back, and gets its answer from the fresh image.
    let mut waiter = shim.connect();
    std::io::Write::write_all(&mut waiter, b"{\"op\":\"wait\"}\n").unwrap();

    // Once idle, the shim serves from a fresh image of itself (handoff.rs), named as
    // before, with the container's id in its command line for the daemon's leftover-shim
    // scan. It is a step of the shim's own, awaited here (not a measurement).
    let argv = || -> Vec<String> {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap()
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    };
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    while argv().get(1).map(String::as_str) != Some("serve") {
        assert!(
            std::time::Instant::now() < deadline,
            "no handoff: {:?}",
            argv()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        argv()[..3],
        ["berth-shim", "serve", &format!("--id={}", shim.id)]
    );
    assert_eq!(shim.pid(), pid, "the same process, a new image");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "berth-shim");
    // Nothing but the handed-over descriptors survived the exec: stdio, the listener, the
    // container's stdout and stderr, the log, our /dev/null and shim.log, the signalfd,
    // the waiter's connection.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(fds <= 11, "{fds} descriptors open in the shim");

    // VmRSS counts the binary's and libc's pages, shared by every shim; RssAnon is what
    // one more shim really costs.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in {status}"))
    };
    let (rss, anon) = (kb("VmRSS:"), kb("RssAnon:"));
    eprintln!("berth-shim while a container runs: VmRSS {rss} kB, RssAnon {anon} kB");
    // Generous: a debug build maps ~8 MB of its own text; a release build is ~3.5 MB.
    assert!(rss < 16 * 1024, "VmRSS {rss} kB");
    assert!(anon < 4 * 1024, "RssAnon {anon} kB");

    assert_eq!(
        shim.request(json!({"op": "kill", "signal": 9})),
        json!({"ok": true})
    );
    assert_eq!(shim.request(json!({"op": "wait"}))["exit_code"], 137);
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut waiter), &mut answer).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["exit_code"], 137,
        "the waiter from before the handoff"
    );
    assert!(shim.state_dir().join("exit.json").exists());
    // Killing an exited container is an error, not a crash.
    assert!(shim.request(json!({"op": "kill", "signal": 9}))["error"].is_string());
    delete_and_check(&shim);
}

#[test]
fn delete_is_refused_while_the_container_runs() {
    require_root!();
    let shim = Shim::new(Bundle::busybox(&["sleep", "1000"]));
    assert_success(&shim.start(&[]), "start");
    let answer = shim.request(json!({"op": "delete"}));
    assert!(
        answer["error"].as_str().unwrap().contains("running"),
        "{answer}"
    );
    assert!(shim.request(json!({"op": "nonsense"}))["error"].is_string());
    assert!(shim.request(json!({"op": "resize", "rows": 1, "cols": 1}))["error"].is_string());
    // SIGKILL: a pid namespace's init ignores SIGTERM it has no handler for.
    shim.request(json!({"op": "kill", "signal": 9}));
    assert_eq!(shim.request(json!({"op": "wait"}))["exit_code"], 128 + 9);
    delete_and_check(&shim);
}

/// Reads the attach stream until `done` holds for what came, or EOF, or the deadline.
fn read_until(
    s: &mut std::os::unix::net::UnixStream,
    got: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while !done(got) {
        if Instant::now() > deadline {
            return false;
        }
        match s.read(&mut buf) {
            Ok(0) => return done(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading the attach stream: {e}"),
        }
    }
    true
}

/// Reads the attach stream to its end; false if it did not end in time.
fn read_to_eof(s: &mut std::os::unix::net::UnixStream, got: &mut Vec<u8>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading the attach stream: {e}"),
        }
    }
    false
}

/// Sends the attach request and strips the `{"ok":true}` line.
fn attach(shim: &Shim, req: Value) -> (std::os::unix::net::UnixStream, Vec<u8>) {
    let mut s = shim.connect();
    s.write_all(format!("{req}\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    assert!(read_until(&mut s, &mut got, |g| g.contains(&b'\n')));
    let nl = got.iter().position(|&b| b == b'\n').unwrap();
    let answer: Value = serde_json::from_slice(&got[..nl]).unwrap();
    assert_eq!(answer, json!({"ok": true}));
    got.drain(..=nl);
    (s, got)
}

#[test]
fn attached_clients_hold_the_handoff_back_and_bring_another_one_when_they_leave() {
    require_root!();
    let shim = Shim::new(Bundle::busybox(&["sleep", "1000"]));
    assert_success(&shim.start(&["--no-start"]), "start");
    let (s, _) = attach(
        &shim,
        json!({"op": "attach", "stdin": false, "stdout": true, "stderr": true}),
    );
    assert_eq!(shim.request(json!({"op": "start"})), json!({"ok": true}));
    // Three times the idle time the handoff waits for: an attached stream is not idle.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(shim.handoffs(), 0, "handed off under an attached client");
    drop(s);
    assert!(
        eventually(Duration::from_secs(10), || shim.handoffs() == 1),
        "no handoff after the client left"
    );
    // A session after the handoff (`docker attach`, then ctrl-p ctrl-q) brings buffers and
    // code in again: the shim hands off once more when the client is gone.
    let (s, _) = attach(
        &shim,
        json!({"op": "attach", "stdin": false, "stdout": true, "stderr": true}),
    );
    drop(s);
    assert!(
        eventually(Duration::from_secs(10), || shim.handoffs() == 2),
        "no handoff after the second client left"
    );
    assert_eq!(shim.request(json!({"op": "state"}))["status"], "running");
    shim.request(json!({"op": "kill", "signal": 9}));
    assert_eq!(shim.request(json!({"op": "wait"}))["exit_code"], 137);
    delete_and_check(&shim);
}

#[test]
fn attach_to_cat_echoes_stdin_in_frames_and_eof_closes_stdin() {
    require_root!();
    let shim = Shim::new(Bundle::busybox(&[
        "sh",
        "-c",
        "echo ready >&2; cat; echo bye",
    ]));
    assert_success(&shim.start(&["--stdin", "--no-start"]), "start");
    assert_eq!(shim.request(json!({"op": "state"}))["status"], "created");
    let (mut s, mut got) = attach(
        &shim,
        json!({"op": "attach", "stdin": true, "stdout": true, "stderr": true}),
    );
    assert_eq!(shim.request(json!({"op": "start"})), json!({"ok": true}));
    s.write_all(b"hello\n").unwrap();
    s.write_all(b"world\n").unwrap();
    let mut frames = Vec::new();
    let seen = |frames: &[(u8, Vec<u8>)]| {
        frames
            .iter()
            .filter(|(st, _)| *st == 1)
            .flat_map(|(_, p)| p.clone())
            .collect::<Vec<u8>>()
    };
    let ok = read_until(&mut s, &mut got, |g| {
        let mut copy = g.to_vec();
        let f = take_frames(&mut copy);
        seen(&f).ends_with(b"hello\nworld\n")
    });
    frames.extend(take_frames(&mut got));
    assert!(ok, "echo of stdin: {frames:?} {got:?}");
    assert!(
        frames.contains(&(2, b"ready\n".to_vec())),
        "stderr frame: {frames:?}"
    );
    // Half-close: the container's stdin reaches EOF, cat ends, the stream ends.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut s, &mut got), "the stream ends");
    frames.extend(take_frames(&mut got));
    assert!(got.is_empty(), "a partial frame at the end: {got:?}");
    assert!(seen(&frames).ends_with(b"bye\n"), "{frames:?}");
    assert_eq!(shim.request(json!({"op": "wait"}))["exit_code"], 0);

    let logged: Vec<String> = log_entries(&shim)
        .iter()
        .map(|e| e["log"].as_str().unwrap().to_string())
        .collect();
    assert!(logged.contains(&"hello\n".to_string()), "{logged:?}");
    assert!(logged.contains(&"bye\n".to_string()), "{logged:?}");
    delete_and_check(&shim);
}

#[test]
fn a_terminal_is_raw_both_ways_and_resize_reaches_stty() {
    require_root!();
    let mut b = Bundle::busybox(&["sh"]);
    b.config_mut()["process"]["terminal"] = true.into();
    b.write_config();
    let shim = Shim::new(b);
    assert_success(&shim.start(&["--terminal", "--stdin"]), "start");
    let (mut s, mut got) = attach(
        &shim,
        json!({"op": "attach", "stdin": true, "stdout": true, "stderr": true}),
    );
    assert_eq!(
        shim.request(json!({"op": "resize", "rows": 33, "cols": 77})),
        json!({"ok": true})
    );
    s.write_all(b"stty size; echo mark$((6*7))\n").unwrap();
    let ok = read_until(&mut s, &mut got, |g| {
        String::from_utf8_lossy(g).contains("mark42")
    });
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(ok, "{text:?}");
    assert!(
        text.contains("33 77\r\n"),
        "stty size after resize: {text:?}"
    );
    assert!(!got.starts_with(&[1, 0, 0, 0]), "raw, not framed: {got:?}");
    s.write_all(b"exit 7\n").unwrap();
    assert_eq!(shim.request(json!({"op": "wait"}))["exit_code"], 7);
    assert!(
        read_to_eof(&mut s, &mut got),
        "the stream ends with the container"
    );
    let logged = std::fs::read_to_string(shim.state_dir().join("container.log")).unwrap();
    assert!(logged.contains("mark42"), "{logged}");
    assert!(logged.contains("\"stream\":\"stdout\""), "{logged}");
    delete_and_check(&shim);
}

#[test]
fn a_bad_bundle_fails_start_with_one_line_and_leaves_nothing() {
    require_root!();
    // Passes the bundle checks, makes the cgroup, and fails in the init: the worst case
    // for cleanup.
    let shim = Shim::new(Bundle::busybox(&["/no/such/program"]));
    let out = shim.start(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr_text(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("/no/such/program"), "{err}");
    assert!(
        !shim.state_dir().exists(),
        "the state dir start made is gone"
    );
    assert!(!shim.runtime_state_dir().exists());
    assert!(processes_mentioning(&shim.id).is_empty());
    let cg = shim.bundle.cgroups_path().unwrap();
    assert!(host_cgroup_dirs(&cg).is_empty());

    // A bundle without config.json at all.
    std::fs::remove_file(shim.bundle.config_path()).unwrap();
    let out = shim.start(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stderr_text(&out).trim_end().lines().count(), 1, "{out:?}");
    assert!(!shim.state_dir().exists());
}
