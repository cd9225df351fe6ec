//! End to end: the built `berthd` on a temporary socket and roots, driven by a raw HTTP
//! client and by the real `docker` CLI. Needs root only for what berthd itself needs
//! (nothing, for these endpoints, beyond writing the temp dirs).

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::bare_daemon::BareDaemon as Daemon;

/// This file's raw HTTP client on the daemon.
impl Daemon {
    fn request(&self, raw: &str) -> HttpResponse {
        let mut stream = UnixStream::connect(&self.sock).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.write_all(raw.as_bytes()).expect("write request");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read response");
        HttpResponse::parse(&bytes)
    }

    fn get(&self, path: &str) -> HttpResponse {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n"
        ))
    }
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    /// Enough HTTP/1.1 for these replies: berthd sends Content-Length bodies here.
    fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n").expect("header terminator");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Self {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn assert_common_headers(&self) {
        assert_eq!(self.header("Api-Version"), Some("1.44"));
        assert_eq!(self.header("Ostype"), Some("linux"));
        assert_eq!(self.header("Docker-Experimental"), Some("false"));
        assert_eq!(
            self.header("Server"),
            Some(concat!("berth/", env!("CARGO_PKG_VERSION")))
        );
    }
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn docker_available() -> bool {
    Command::new("docker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn ping_get_and_head() {
    let d = Daemon::start();
    let r = d.get("/_ping");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "OK");
    r.assert_common_headers();
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("Swarm"), Some("inactive"));

    let r = d.request("HEAD /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");
    r.assert_common_headers();

    let r = d.get("/v1.44/_ping");
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
}

#[test]
fn version_bare_and_prefixed() {
    let d = Daemon::start();
    for path in ["/version", "/v1.44/version", "/v1.24/version"] {
        let r = d.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.assert_common_headers();
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let v = r.json();
        assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["ApiVersion"], "1.44");
        assert_eq!(v["MinAPIVersion"], "1.24");
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Components"][0]["Name"], "Engine");
        assert!(!v["KernelVersion"].as_str().unwrap_or_default().is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(v["Arch"], "amd64");
        }
    }
}

#[test]
fn version_out_of_range_and_unknown_paths() {
    let d = Daemon::start();
    let r = d.get("/v1.99/version");
    assert_eq!(r.status, 400);
    r.assert_common_headers();
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.json()["message"],
        "client version 1.99 is too new. Maximum supported API version is 1.44"
    );

    let r = d.get("/v1.12/version");
    assert_eq!(r.status, 400);
    let msg = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.starts_with("client version 1.12 is too old. Minimum supported API version is 1.24"),
        "{msg}"
    );

    let r = d.get("/no/such/thing");
    assert_eq!(r.status, 404);
    r.assert_common_headers();
    assert_eq!(r.json(), serde_json::json!({"message": "page not found"}));

    let r = d.request(
        "POST /version HTTP/1.1\r\nHost: berth\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET"));
    r.assert_common_headers();
}

#[test]
fn info_over_raw_http() {
    let d = Daemon::start();
    let r = d.get("/v1.44/info");
    assert_eq!(r.status, 200);
    let info = r.json();
    assert_eq!(info["DockerRootDir"], d.data_root().display().to_string());
    assert_eq!(info["Driver"], "overlay2");
    assert_eq!(info["DefaultRuntime"], "berth");
    assert_eq!(info["Runtimes"]["berth"]["path"], "berth-runtime");
    assert_eq!(info["Containers"], 0);
    assert_eq!(info["ServerVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["SecurityOptions"][0], "name=seccomp,profile=builtin");
    assert_eq!(info["ID"].as_str().map(str::len), Some(36));
    assert!(matches!(info["CgroupVersion"].as_str(), Some("1" | "2")));
    assert!(info["NCPU"].as_i64().unwrap_or(0) >= 1);
    assert!(info["MemTotal"].as_i64().unwrap_or(0) > 0);
}

#[test]
fn docker_cli_version_and_info() {
    if !docker_available() {
        eprintln!("SKIPPED: no docker CLI on PATH");
        return;
    }
    let d = Daemon::start();

    let out = d.docker(&["version"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker version failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = stdout
        .split_once("Server:")
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no Server section:\n{stdout}"));
    assert!(
        server.contains(concat!("Version:          ", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(
        server.contains("API version:      1.44 (minimum version 1.24)"),
        "{stdout}"
    );

    let out = d.docker(&["info"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker info failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("Docker Root Dir: {}", d.data_root().display())),
        "{stdout}"
    );
    assert!(stdout.contains("Default Runtime: berth"), "{stdout}");
    assert!(stdout.contains("Runtimes: berth"), "{stdout}");

    let out = d.docker(&["info", "--format", "{{.ServerVersion}} {{.Driver}}"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        concat!(env!("CARGO_PKG_VERSION"), " overlay2")
    );
}

#[test]
fn socket_mode_database_and_graceful_sigterm() {
    let mut d = Daemon::start();
    let pid = d.pid();
    if let Some(rss) = vm_rss_kib(pid) {
        eprintln!("berthd idle VmRSS after start: {rss} kB");
    }

    let mode = std::fs::metadata(&d.sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);

    // The database: WAL, schema version 2 (volumes). Opened while the daemon runs, as WAL
    // allows.
    let db = d.data_root().join("berthd.db");
    let conn = rusqlite::Connection::open(&db).expect("open db");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    let version: u32 = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .expect("schema version");
    assert_eq!(version, 2);
    drop(conn);

    // An idle open connection must not hold the daemon up; the socket file goes away.
    let _idle = UnixStream::connect(&d.sock).expect("idle connection");
    let start = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = loop {
        if let Some(status) = d.child_mut().try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "berthd still running 5 s after SIGTERM:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("berthd exited {status} {:?} after SIGTERM", start.elapsed());
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(!Path::new(&d.sock).exists(), "socket file left behind");
    d.child = None;
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "berthd process remains"
    );
}

#[test]
fn refuses_a_second_daemon_on_the_same_socket() {
    let d = Daemon::start();
    let out = Command::new(env!("CARGO_BIN_EXE_berthd"))
        .arg("--host")
        .arg(format!("unix://{}", d.sock.display()))
        .arg("--data-root")
        .arg(d.dir.path().join("data2"))
        .arg("--exec-root")
        .arg(d.dir.path().join("exec2"))
        .output()
        .expect("run second berthd");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
    // The first daemon's socket survives the attempt.
    assert_eq!(d.get("/_ping").status, 200);
}
