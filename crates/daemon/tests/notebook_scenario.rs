//! The classic Docker tutorial ("run a notebook server, install a package in it, copy files,
//! stop, start, remove") on berth with the real docker CLI. No pulls: the image with Python
//! is made from the host's python3 by scripts/make-python-image.sh (busybox, the interpreter
//! with its shared libraries, the stdlib, Debian's pip, the host's CA bundle) and cached
//! under the target dir keyed by the Python version and the scripts' contents. pip reaches
//! PyPI through the container's NAT, so the test needs the host to reach PyPI; it fails
//! saying so if it cannot. Needs python3, python3-pip and docker.io (scripts/install-deps.sh).

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::engine::Engine;

const IMAGE: &str = "localhost/berth-python:latest";
const NAME: &str = "test_notebook";
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/make-python-image.sh"
);
const SERVE: &str = "mkdir -p /srv && echo notebook > /srv/index.html \
                     && exec python3 -m http.server 8888 --directory /srv";
const WHEEL: &str = "six-1.16.0-py2.py3-none-any.whl";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last `n` lines of berthd's log (the whole log can be long after a docker load).
fn log_tail(engine: &Engine, n: usize) -> String {
    let log = engine.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The docker CLI against `engine`, killed after `secs` (coreutils timeout).
fn docker(engine: &Engine, secs: u64, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["--kill-after=5", &secs.to_string(), "docker"])
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", engine.sock.display()))
        .env("DOCKER_CONFIG", engine.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("timeout + docker CLI (coreutils, docker.io)")
}

/// Runs `docker args` and returns its stdout; on failure panics with the exact command,
/// its output and berthd's log.
#[track_caller]
fn ok(engine: &Engine, secs: u64, args: &[&str]) -> String {
    let started = Instant::now();
    let o = docker(engine, secs, args);
    let timed_out = matches!(o.status.code(), Some(124) | Some(137));
    assert!(
        o.status.success(),
        "`docker {}` failed ({}{}) after {:.1}s\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- berthd log (tail) ---\n{}",
        args.join(" "),
        o.status,
        if timed_out {
            format!(", timed out after {secs}s")
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64(),
        text(&o.stdout),
        text(&o.stderr),
        log_tail(engine, 300)
    );
    eprintln!(
        "notebook: docker {} ({:.1}s)",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    text(&o.stdout)
}

/// The host port published for the container's 8888/tcp on 127.0.0.1.
fn published_port(engine: &Engine) -> u16 {
    let out = ok(engine, 30, &["port", NAME, "8888/tcp"]);
    out.lines()
        .find_map(|l| l.trim().strip_prefix("127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no 127.0.0.1 port in `docker port {NAME} 8888/tcp`: {out:?}"))
}

/// GET /index.html from 127.0.0.1:port, retried while the server starts (bounded).
fn fetch(engine: &Engine, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s =
                TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if body.starts_with("HTTP/1.0 200") && body.contains("notebook") => {
                return body
            }
            other if Instant::now() > deadline => panic!(
                "the notebook server did not answer on 127.0.0.1:{port} within 60s: {other:?}\n--- docker logs ---\n{}\n--- berthd log (tail) ---\n{}",
                {
                    let o = docker(engine, 30, &["logs", NAME]);
                    format!("{}{}", text(&o.stdout), text(&o.stderr))
                },
                log_tail(engine, 300)
            ),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// FNV-1a: a cache key that stays the same across Rust versions.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The Python image tar: built by scripts/make-python-image.sh on first use, then cached
/// under the target dir by the host's Python version and the scripts' contents.
fn python_image() -> PathBuf {
    let version = Command::new("python3")
        .args(["-c", "import sys; print(sys.version.split()[0])"])
        .output()
        .expect("python3 on the host (apt install python3)");
    assert!(version.status.success(), "python3 --version failed");
    let version = text(&version.stdout).trim().to_owned();
    let scripts = Path::new(SCRIPT).parent().expect("scripts dir");
    let mut key = Vec::new();
    for s in ["make-python-image.sh", "make-busybox-image.sh"] {
        key.extend(std::fs::read(scripts.join(s)).expect("read image scripts"));
    }
    // CARGO_BIN_EXE_berthd is <target>/<profile>/berthd.
    let target = Path::new(env!("CARGO_BIN_EXE_berthd"))
        .parent()
        .and_then(Path::parent)
        .expect("target dir");
    let dir = target.join("notebook-image");
    let tar = dir.join(format!("python-{version}-{:016x}.tar", fnv(&key)));
    if tar.exists() {
        eprintln!("notebook: cached image {}", tar.display());
        return tar;
    }
    std::fs::create_dir_all(&dir).expect("image cache dir");
    let partial = dir.join(format!(".python-{version}.{}.tar", std::process::id()));
    let started = Instant::now();
    let o = Command::new("timeout")
        .args(["--kill-after=5", "600", SCRIPT])
        .arg(&partial)
        .arg(IMAGE)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/make-python-image.sh");
    if !o.status.success() {
        let _ = std::fs::remove_file(&partial);
        panic!(
            "scripts/make-python-image.sh {} {IMAGE} failed ({}):\n{}{}",
            partial.display(),
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
    }
    std::fs::rename(&partial, &tar).expect("cache the image");
    eprintln!(
        "notebook: built {} in {:.1}s",
        tar.display(),
        started.elapsed().as_secs_f64()
    );
    tar
}

/// Fails the test, saying so, if the host itself cannot open a TCP connection to PyPI.
fn assert_host_reaches_pypi() {
    let reached = ("pypi.org", 443)
        .to_socket_addrs()
        .map_err(|e| format!("resolving pypi.org: {e}"))
        .and_then(|addrs| {
            let mut last = String::from("pypi.org has no addresses");
            for a in addrs {
                match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("connecting to {a}: {e}"),
                }
            }
            Err(last)
        });
    if let Err(e) = reached {
        panic!(
            "this host cannot reach PyPI (https://pypi.org): {e}; the notebook scenario's \
             `pip download` needs it"
        );
    }
}

#[test]
fn notebook_tutorial_with_the_docker_cli() {
    let started = Instant::now();
    let tar = python_image();
    let engine = Engine::start();
    let host = tempfile::tempdir().expect("tempdir");

    // 1. load the image, run the server detached with a published port, reach it.
    let loaded = ok(
        &engine,
        300,
        &["load", "-i", tar.to_str().expect("utf-8 path")],
    );
    assert!(loaded.contains(IMAGE), "docker load output: {loaded}");
    let id = ok(
        &engine,
        60,
        &[
            "run",
            "-d",
            "-p",
            "127.0.0.1::8888",
            "--name",
            NAME,
            IMAGE,
            "sh",
            "-c",
            SERVE,
        ],
    );
    assert_eq!(id.trim().len(), 64, "container id: {id:?}");
    let port = published_port(&engine);
    let page = fetch(&engine, port);
    assert!(page.contains("notebook"), "{page}");
    eprintln!("notebook: server answered on 127.0.0.1:{port}");

    // 2. pip inside the container downloads a package from PyPI through the NAT.
    assert_host_reaches_pypi();
    let pip_started = Instant::now();
    let pip = docker(
        &engine,
        300,
        &[
            "exec",
            NAME,
            "python3",
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            "/tmp/pkgs",
            "six==1.16.0",
        ],
    );
    assert!(
        pip.status.success(),
        "`docker exec {NAME} python3 -m pip download --no-deps -d /tmp/pkgs six==1.16.0` \
         failed ({}) although the host reaches PyPI\n--- stdout ---\n{}\n--- stderr ---\n{}\n\
         --- berthd log (tail) ---\n{}",
        pip.status,
        text(&pip.stdout),
        text(&pip.stderr),
        log_tail(&engine, 300)
    );
    eprintln!(
        "notebook: docker exec {NAME} python3 -m pip download ... six==1.16.0 ({:.1}s)",
        pip_started.elapsed().as_secs_f64()
    );
    let listed = ok(&engine, 60, &["exec", NAME, "ls", "/tmp/pkgs"]);
    assert!(
        listed.lines().any(|l| l.trim() == WHEEL),
        "{WHEEL} not in /tmp/pkgs: {listed:?}"
    );

    // 3. cp a host file in and read it there; cp the wheel out and check it is a zip.
    let note = host.path().join("note.txt");
    std::fs::write(&note, "from the host\n").expect("write host file");
    let dest = format!("{NAME}:/tmp/note.txt");
    ok(&engine, 60, &["cp", note.to_str().expect("utf-8"), &dest]);
    let cat = ok(&engine, 60, &["exec", NAME, "cat", "/tmp/note.txt"]);
    assert_eq!(cat, "from the host\n");
    let src = format!("{NAME}:/tmp/pkgs/{WHEEL}");
    let out_dir = host.path().join("out");
    std::fs::create_dir(&out_dir).expect("out dir");
    ok(
        &engine,
        60,
        &["cp", &src, &format!("{}/", out_dir.display())],
    );
    let wheel = std::fs::read(out_dir.join(WHEEL)).expect("the wheel copied out");
    assert!(
        wheel.starts_with(b"PK\x03\x04"),
        "{WHEEL} copied out is not a zip ({} bytes, starts {:?})",
        wheel.len(),
        &wheel[..wheel.len().min(8)]
    );

    // 4. stop: Exited in ps -a; start: it answers again on its (new) port; rm -f.
    ok(&engine, 60, &["stop", NAME]);
    let ps = ok(
        &engine,
        30,
        &["ps", "-a", "--filter", &format!("name={NAME}")],
    );
    let row = ps
        .lines()
        .find(|l| l.contains(NAME))
        .unwrap_or_else(|| panic!("{NAME} not in docker ps -a:\n{ps}"));
    assert!(row.contains("Exited"), "not Exited after stop:\n{ps}");
    let running = ok(&engine, 30, &["ps", "--filter", &format!("name={NAME}")]);
    assert!(
        !running.contains(NAME),
        "still listed as running:\n{running}"
    );
    ok(&engine, 60, &["start", NAME]);
    let port = published_port(&engine);
    let page = fetch(&engine, port);
    assert!(page.contains("notebook"), "{page}");
    eprintln!("notebook: server answered again on 127.0.0.1:{port}");
    ok(&engine, 60, &["rm", "-f", NAME]);
    let ps = ok(&engine, 30, &["ps", "-a"]);
    assert!(!ps.contains(NAME), "still listed after rm -f:\n{ps}");
    eprintln!(
        "notebook: scenario done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
