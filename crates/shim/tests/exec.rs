//! `berth-shim`'s `exec`, `exec_wait` and `exec_resize`, as root, in a running busybox
//! container: output in frames, stdin with half-close, exit codes kept for later waits, a
//! terminal with resize, a program that does not exist, and reaping (no zombies left).

mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use support::*;

/// A sleeping busybox container under a started shim.
fn running() -> Shim {
    let shim = Shim::new(Bundle::busybox(&["sleep", "1000"]));
    assert_success(&shim.start(&[]), "berth-shim start");
    shim
}

/// The container's own process, with other args: what the daemon sends for `docker exec`.
fn process(shim: &Shim, args: &[&str]) -> Value {
    let config: Value =
        serde_json::from_slice(&std::fs::read(shim.bundle.config_path()).unwrap()).unwrap();
    let mut p = config["process"].clone();
    p["args"] = json!(args);
    p
}

/// Reads until `done` holds for what came, or EOF, or 20 s; whether `done` held.
fn read_until(s: &mut UnixStream, got: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) -> bool {
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
            Err(e) => panic!("reading the exec stream: {e}"),
        }
    }
    true
}

/// Reads to the stream's end; false if it did not end in 20 s.
fn read_to_eof(s: &mut UnixStream, got: &mut Vec<u8>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading the exec stream: {e}"),
        }
    }
    false
}

/// Sends an exec request; the answer line and the stream after it (with what came already).
fn exec(shim: &Shim, req: Value) -> (Value, UnixStream, Vec<u8>) {
    let mut s = shim.connect();
    s.write_all(format!("{req}\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    assert!(read_until(&mut s, &mut got, |g| g.contains(&b'\n')));
    let nl = got.iter().position(|&b| b == b'\n').unwrap();
    let answer: Value = serde_json::from_slice(&got[..nl]).unwrap();
    got.drain(..=nl);
    (answer, s, got)
}

fn stream_text(frames: &[(u8, Vec<u8>)], stream: u8) -> String {
    let bytes: Vec<u8> = frames
        .iter()
        .filter(|(st, _)| *st == stream)
        .flat_map(|(_, p)| p.clone())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Kills the container, deletes it through the shim and waits for the shim to be gone.
fn stop(shim: &Shim) {
    shim.request(json!({"op": "kill", "signal": 9}));
    assert_eq!(shim.request(json!({"op": "wait"}))["exit_code"], 128 + 9);
    delete(shim);
}

fn delete(shim: &Shim) {
    let pid = shim.pid();
    assert_eq!(shim.request(json!({"op": "delete"})), json!({"ok": true}));
    assert!(
        eventually(Duration::from_secs(5), || !process_alive(pid, &shim.id)),
        "the shim exits after delete"
    );
}

#[test]
fn exec_output_comes_in_frames_and_the_exit_code_is_kept() {
    require_root!();
    let shim = running();
    let p = process(&shim, &["sh", "-c", "echo out; echo err >&2; exit 5"]);
    let (answer, mut s, mut got) = exec(&shim, json!({"op": "exec", "id": "e1", "process": p}));
    assert_eq!(answer["ok"], true, "{answer}");
    assert!(answer["pid"].as_i64().unwrap() > 0, "{answer}");
    assert!(
        read_to_eof(&mut s, &mut got),
        "the stream ends with the exec"
    );
    let frames = take_frames(&mut got);
    assert!(got.is_empty(), "a partial frame: {got:?}");
    assert_eq!(stream_text(&frames, 1), "out\n");
    assert_eq!(stream_text(&frames, 2), "err\n");
    assert_eq!(
        shim.request(json!({"op": "exec_wait", "id": "e1"})),
        json!({"exit_code": 5})
    );
    // Again, later: the code is kept.
    assert_eq!(
        shim.request(json!({"op": "exec_wait", "id": "e1"})),
        json!({"exit_code": 5})
    );
    // Exec output is not the container's log.
    let log = std::fs::read_to_string(shim.state_dir().join("container.log")).unwrap_or_default();
    assert!(!log.contains("out\\n"), "{log}");
    // The same id again is refused; an unknown one too.
    let p = process(&shim, &["true"]);
    let (answer, _, _) = exec(&shim, json!({"op": "exec", "id": "e1", "process": p}));
    assert!(
        answer["error"].as_str().unwrap().contains("already exists"),
        "{answer}"
    );
    let answer = shim.request(json!({"op": "exec_wait", "id": "nope"}));
    assert!(answer["error"].is_string(), "{answer}");
    // Reaped: the shim has no zombie children.
    let pid = shim.pid();
    let zombies = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| process_state(p) == Some('Z'))
        .count();
    assert_eq!(zombies, 0, "exec'd processes are reaped");
    stop(&shim);
}

#[test]
fn exec_stdin_is_fed_and_the_half_close_is_its_eof() {
    require_root!();
    let shim = running();
    let p = process(&shim, &["sh", "-c", "cat; echo done"]);
    let (answer, mut s, mut got) = exec(
        &shim,
        json!({"op": "exec", "id": "cat", "process": p, "stdin": true}),
    );
    assert_eq!(answer["ok"], true, "{answer}");
    // A waiter before the exit is answered when it comes.
    let mut waiter = shim.connect();
    waiter
        .write_all(b"{\"op\":\"exec_wait\",\"id\":\"cat\"}\n")
        .unwrap();
    s.write_all(b"hello\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut s, &mut got), "the stream ends after EOF");
    let frames = take_frames(&mut got);
    assert_eq!(stream_text(&frames, 1), "hello\ndone\n");
    let mut answer = String::new();
    waiter.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.trim(), r#"{"exit_code":0}"#);
    stop(&shim);
}

#[test]
fn exec_with_a_terminal_is_raw_and_resizes() {
    require_root!();
    let shim = running();
    let p = process(&shim, &["sh"]);
    let (answer, mut s, mut got) = exec(
        &shim,
        json!({"op": "exec", "id": "tty", "process": p, "terminal": true, "stdin": true}),
    );
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(
        shim.request(json!({"op": "exec_resize", "id": "tty", "rows": 21, "cols": 66})),
        json!({"ok": true})
    );
    s.write_all(b"stty size; tty; echo mark$((6*7))\n").unwrap();
    let ok = read_until(&mut s, &mut got, |g| {
        String::from_utf8_lossy(g).contains("mark42")
    });
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(ok, "{text:?}");
    assert!(text.contains("21 66\r\n"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    s.write_all(b"exit 3\n").unwrap();
    assert!(
        read_to_eof(&mut s, &mut got),
        "the stream ends with the shell"
    );
    assert_eq!(
        shim.request(json!({"op": "exec_wait", "id": "tty"})),
        json!({"exit_code": 3})
    );
    let answer = shim.request(json!({"op": "exec_resize", "id": "tty", "rows": 1, "cols": 1}));
    assert!(answer["error"].is_string(), "{answer}");
    stop(&shim);
}

#[test]
fn a_missing_program_is_an_error_answer_and_a_stopped_container_refuses() {
    require_root!();
    let shim = running();
    let p = process(&shim, &["/nope"]);
    let (answer, _, _) = exec(&shim, json!({"op": "exec", "id": "x", "process": p}));
    let msg = answer["error"].as_str().unwrap_or_default();
    assert!(msg.contains("no such file or directory"), "{answer}");
    let p = process(&shim, &["nope-not-in-path"]);
    let (answer, _, _) = exec(&shim, json!({"op": "exec", "id": "y", "process": p}));
    let msg = answer["error"].as_str().unwrap_or_default();
    assert!(msg.contains("executable file not found"), "{answer}");

    shim.request(json!({"op": "kill", "signal": 9}));
    shim.request(json!({"op": "wait"}));
    let p = process(&shim, &["true"]);
    let (answer, _, _) = exec(&shim, json!({"op": "exec", "id": "z", "process": p}));
    assert_eq!(answer, json!({"error": "container is not running"}));
    delete(&shim);
}

#[test]
fn the_shim_hands_off_again_after_an_exec_and_keeps_its_exit_code() {
    require_root!();
    let shim = running();
    // The handoff after the start: awaited, it is the shim's own step.
    assert!(
        eventually(Duration::from_secs(10), || shim.handoffs() == 1),
        "no handoff after the start"
    );
    let p = process(&shim, &["sh", "-c", "exit 3"]);
    let (answer, mut s, mut got) = exec(&shim, json!({"op": "exec", "id": "e1", "process": p}));
    assert_eq!(answer["ok"], true, "{answer}");
    assert!(read_to_eof(&mut s, &mut got), "the exec's stream ends");
    // The exec brought the runtime library's code back in; once idle the shim sheds it.
    assert!(
        eventually(Duration::from_secs(10), || shim.handoffs() == 2),
        "no handoff after the exec: {} so far",
        shim.handoffs()
    );
    // What the exec left crossed the handoff: its exit code, and its id stays taken.
    assert_eq!(
        shim.request(json!({"op": "exec_wait", "id": "e1"})),
        json!({"exit_code": 3})
    );
    let p = process(&shim, &["true"]);
    let (answer, _, _) = exec(&shim, json!({"op": "exec", "id": "e1", "process": p}));
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("already exists"),
        "{answer}"
    );
    assert!(
        shim.request(json!({"op": "exec_wait", "id": "nope"}))["error"].is_string(),
        "an unknown exec is still unknown"
    );
    // Nothing new ran since: no third handoff.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(shim.handoffs(), 2, "a handoff with nothing to shed");
    stop(&shim);
}
