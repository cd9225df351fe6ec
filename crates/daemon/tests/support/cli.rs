//! The clients a test drives an [`Engine`] with: the docker and berth CLIs, their results
//! checked (a command that should have worked and did not fails the test with the
//! command, its exit status, its stderr and berthd's log, so the reason is in the test's
//! output), and plain HTTP from the host to a published port.

#![allow(dead_code)] // each test binary uses a part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::engine::Engine;

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Panics unless `o`, the output of `cli args`, is a success; `o` back.
#[track_caller]
pub fn succeeded(engine: &Engine, cli: &str, args: &[&str], o: Output) -> Output {
    assert!(
        o.status.success(),
        "{cli} {args:?} failed: {}\n{}\n--- berthd log ---\n{}",
        o.status,
        err(&o),
        engine.log()
    );
    o
}

/// `docker args`, which must succeed; its stdout.
#[track_caller]
pub fn ok(engine: &Engine, args: &[&str]) -> String {
    out(&succeeded(engine, "docker", args, engine.docker(args)))
}

/// `docker args` with `stdin`, which must succeed; its stdout.
#[track_caller]
pub fn ok_stdin(engine: &Engine, args: &[&str], stdin: &[u8]) -> String {
    out(&succeeded(
        engine,
        "docker",
        args,
        engine.docker_stdin(args, Some(stdin)),
    ))
}

/// `docker args`, which must fail; its stderr.
#[track_caller]
pub fn fails(engine: &Engine, args: &[&str]) -> String {
    let o = engine.docker(args);
    assert!(
        !o.status.success(),
        "docker {args:?} should fail: {}",
        out(&o)
    );
    err(&o)
}

/// `docker args`, which must fail with `want` in its stderr.
#[track_caller]
pub fn fails_with(engine: &Engine, args: &[&str], want: &str) {
    let stderr = fails(engine, args);
    assert!(
        stderr.contains(want),
        "docker {args:?}: {want:?} not in {stderr:?}"
    );
}

/// The `berth` CLI, built next to berthd.
pub fn berth_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo build --workspace) first",
        bin.display()
    );
    bin
}

/// `berth -H <engine> args`, stdin empty.
pub fn berth(engine: &Engine, args: &[&str]) -> Output {
    berth_stdin(engine, args, None)
}

/// `berth -H <engine> args`, `stdin` written to it when given (empty otherwise).
pub fn berth_stdin(engine: &Engine, args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_with_stdin(
        Command::new(berth_bin())
            .arg("-H")
            .arg(format!("unix://{}", engine.sock.display()))
            .args(args),
        stdin,
        "run berth",
    )
}

/// Runs `cmd` to its end with `stdin` written to it and closed (empty when `None`),
/// stdout and stderr captured; `what` names it if it cannot run.
pub fn run_with_stdin(cmd: &mut Command, stdin: Option<&[u8]>, what: &str) -> Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Some(bytes) = stdin {
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(bytes).expect("write stdin");
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `berth args`, which must succeed; its stdout.
#[track_caller]
pub fn berth_ok(engine: &Engine, args: &[&str]) -> String {
    out(&succeeded(engine, "berth", args, berth(engine, args)))
}

/// `GET /index.html` on 127.0.0.1:`port` until it answers 200 (10 s at most); the reply.
pub fn fetch(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if body.contains("200") => return body,
            other if Instant::now() > deadline => {
                panic!("no answer on 127.0.0.1:{port}: {other:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `docker inspect -f format what`, which must succeed; its output trimmed.
#[track_caller]
pub fn inspect(engine: &Engine, format: &str, what: &str) -> String {
    ok(engine, &["inspect", "-f", format, what])
        .trim()
        .to_owned()
}
