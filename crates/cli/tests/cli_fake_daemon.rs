//! The real `berth` binary against a fake daemon: a `UnixListener` on a thread answering
//! canned Docker-shaped responses. Proves the wire (paths, queries, upgrade, framing), the
//! output formats and the exit codes end to end without berthd.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

const CONTAINER_ID: &str = "4f1c0ffee0ddba11deadbeef00112233445566778899aabbccddeeff00112233";

/// What the fake daemon saw: `METHOD path?query` per request, in order.
type Log = Arc<Mutex<Vec<String>>>;

struct FakeDaemon {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    log: Log,
}

impl FakeDaemon {
    fn start() -> FakeDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        let log: Log = Arc::default();
        let state = Arc::new(Mutex::new(State::default()));
        let thread_log = Arc::clone(&log);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let log = Arc::clone(&thread_log);
                let state = Arc::clone(&state);
                thread::spawn(move || serve(conn, &log, &state));
            }
        });
        FakeDaemon {
            _dir: dir,
            sock,
            log,
        }
    }

    fn berth(&self, args: &[&str]) -> Output {
        berth_at(&self.sock, args)
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

fn berth_at(sock: &Path, args: &[&str]) -> Output {
    let host = format!("unix://{}", sock.display());
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("-H")
        .arg(&host)
        .args(args)
        .env_remove("BERTH_HOST")
        .output()
        .expect("runs berth")
}

#[derive(Default)]
struct State {
    /// `busybox` becomes known once pulled, so `run` sees 404 then 201.
    pulled: bool,
}

fn serve(conn: UnixStream, log: &Log, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut content_length = 0usize;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = vec![0u8; content_length];
    let _ = reader.read_exact(&mut body);
    if chunked {
        let mut rest = Vec::new();
        while !rest.ends_with(b"0\r\n\r\n") {
            let mut b = [0u8; 1];
            if reader.read(&mut b).unwrap_or(0) == 0 {
                break;
            }
            rest.push(b[0]);
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    log.lock().expect("log").push(format!("{method} {target}"));
    let path = target.strip_prefix("/v1.44").unwrap_or(&target);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut out = conn;

    let json = |out: &mut UnixStream, status: &str, body: &str| {
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    };
    let not_found = |out: &mut UnixStream, what: &str| {
        json(
            out,
            "404 Not Found",
            &format!("{{\"message\":\"{what}\"}}\n"),
        );
    };

    match (method.as_str(), path) {
        ("GET", "/_ping") => {
            let _ = write!(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        }
        ("GET", "/version") => json(
            &mut out,
            "200 OK",
            r#"{"Platform":{"Name":"berth"},"Components":[{"Name":"Engine","Version":"0.1.0",
               "Details":{"ApiVersion":"1.44","MinAPIVersion":"1.24","GoVersion":"rustc 1.80",
               "Os":"linux","Arch":"amd64"}}],"Version":"0.1.0","ApiVersion":"1.44",
               "MinAPIVersion":"1.24","Os":"linux","Arch":"amd64"}"#,
        ),
        ("GET", "/containers/json") => {
            let created = now() - 120;
            json(
                &mut out,
                "200 OK",
                &format!(
                    r#"[{{"Id":"{CONTAINER_ID}","Names":["/web"],"Image":"busybox",
                    "ImageID":"sha256:aa","Command":"httpd -f -p 80","Created":{created},
                    "Ports":[{{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"}}],
                    "Labels":{{}},"State":"running","Status":"Up 2 minutes",
                    "HostConfig":{{"NetworkMode":"default"}},
                    "NetworkSettings":{{"Networks":{{}}}},"Mounts":[]}}]"#
                ),
            );
        }
        ("GET", "/images/json") => {
            let created = now() - 3 * 86400;
            json(
                &mut out,
                "200 OK",
                &format!(
                    r#"[{{"Id":"sha256:{}","ParentId":"","RepoTags":["busybox:latest"],
                    "RepoDigests":[],"Created":{created},"Size":4260000,"SharedSize":-1,
                    "Labels":{{}},"Containers":-1}}]"#,
                    "ab".repeat(32)
                ),
            );
        }
        ("POST", "/containers/create") => {
            let body = String::from_utf8_lossy(&body).into_owned();
            if body.contains("\"Cmd\":[\"nope\"]") {
                json(&mut out, "201 Created", r#"{"Id":"nocmd","Warnings":[]}"#);
            } else if body.contains("\"Image\":\"busybox\"") && !state.lock().expect("state").pulled
            {
                not_found(&mut out, "No such image: busybox:latest");
            } else {
                json(
                    &mut out,
                    "201 Created",
                    &format!(r#"{{"Id":"{CONTAINER_ID}","Warnings":[]}}"#),
                );
            }
        }
        ("POST", "/images/create") => {
            assert!(
                query.contains("fromImage=docker.io%2Flibrary%2Fbusybox"),
                "{query}"
            );
            state.lock().expect("state").pulled = true;
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n\
                 {{\"status\":\"Pulling from library/busybox\",\"id\":\"latest\"}}\n\
                 {{\"status\":\"Pull complete\",\"progressDetail\":{{}},\"id\":\"aaa\"}}\n\
                 {{\"status\":\"Status: Downloaded newer image for busybox:latest\"}}\n"
            );
        }
        ("POST", p) if p.ends_with("/attach") => {
            // Two frames, then EOF: the container "exits".
            let _ = out.write_all(
                b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n\
                  Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n\
                  \x01\x00\x00\x00\x00\x00\x00\x03hi\n\x02\x00\x00\x00\x00\x00\x00\x04err\n",
            );
        }
        ("POST", p) if p.ends_with("/wait") => {
            json(&mut out, "200 OK", r#"{"StatusCode":3,"Error":null}"#);
        }
        ("POST", p) if p.starts_with("/containers/nocmd") && p.ends_with("/start") => json(
            &mut out,
            "400 Bad Request",
            r#"{"message":"failed to create task: exec: \"nope\": executable file not found in $PATH"}"#,
        ),
        ("POST", p) if p.starts_with(&format!("/containers/{CONTAINER_ID}/")) => {
            let _ = write!(out, "HTTP/1.1 204 No Content\r\n\r\n");
        }
        ("POST", p) if p.starts_with("/containers/nope/") => {
            not_found(&mut out, "No such container: nope");
        }
        (_, p) if p.contains("/nope/") || p.ends_with("/nope") => {
            not_found(&mut out, "No such container: nope");
        }
        _ => not_found(&mut out, &format!("page not found: {method} {path}")),
    }
    let _ = out.flush();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ps_all_prints_dockers_table() {
    let d = FakeDaemon::start();
    let out = d.berth(&["ps", "-a"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("CONTAINER ID   IMAGE     COMMAND            CREATED         STATUS         PORTS                  NAMES")
    );
    assert_eq!(
        lines.next(),
        Some("4f1c0ffee0dd   busybox   \"httpd -f -p 80\"   2 minutes ago   Up 2 minutes   0.0.0.0:8080->80/tcp   web")
    );
    assert_eq!(d.requests(), vec!["GET /v1.44/containers/json?all=1"]);

    let out = d.berth(&["ps", "-q", "--format", "ignored"]);
    assert_eq!(text(&out.stdout), "4f1c0ffee0dd\n");
    let out = d.berth(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(text(&out.stdout), "web Up 2 minutes\n");
}

#[test]
fn images_prints_dockers_table() {
    let d = FakeDaemon::start();
    let out = d.berth(&["images"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "REPOSITORY   TAG       IMAGE ID       CREATED      SIZE\n\
         busybox      latest    abababababab   3 days ago   4.26MB\n"
    );
    let out = d.berth(&["images", "-q"]);
    assert_eq!(text(&out.stdout), "abababababab\n");
}

#[test]
fn version_prints_client_and_server() {
    let d = FakeDaemon::start();
    let out = d.berth(&["version"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("Client:\n Version:"), "{s}");
    assert!(
        s.contains("Server: berth\n Engine:\n  Version:          0.1.0\n"),
        "{s}"
    );
    assert!(
        s.contains("  API version:      1.44 (minimum version 1.24)\n"),
        "{s}"
    );
    assert_eq!(d.requests(), vec!["GET /v1.44/version"]);
}

#[test]
fn daemon_errors_exit_1_with_dockers_words() {
    let d = FakeDaemon::start();
    let out = d.berth(&["stop", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error response from daemon: No such container: nope\n"
    );
    assert_eq!(d.requests(), vec!["POST /v1.44/containers/nope/stop"]);

    let out = d.berth(&["inspect", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "[]\n");
    assert_eq!(text(&out.stderr), "Error: No such object: nope\n");
}

#[test]
fn unreachable_daemon_exits_1_and_bad_run_input_125() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = berth_at(&dir.path().join("absent.sock"), &["ps"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Cannot connect to the berth daemon at unix://"),
        "{}",
        text(&out.stderr)
    );

    let d = FakeDaemon::start();
    let out = d.berth(&["run", "-p", "x:80", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(text(&out.stderr), "berth: invalid hostPort: x\n");
    let out = d.berth(&["run", "BusyBox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).starts_with("berth: invalid reference format"));
    let out = d.berth(&["run", "--bogus-flag", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        d.requests().is_empty(),
        "bad input must not reach the daemon"
    );
}

#[test]
fn run_pulls_attaches_waits_starts_and_exits_with_the_status() {
    let d = FakeDaemon::start();
    let out = d.berth(&["run", "--name", "web", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(text(&out.stdout), "hi\n");
    assert!(
        text(&out.stderr).starts_with("Unable to find image 'busybox:latest' locally\n"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).ends_with("err\n"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3));
    let reqs = d.requests();
    let expected = [
        "POST /v1.44/containers/create?name=web".to_owned(),
        "POST /v1.44/images/create?fromImage=docker.io%2Flibrary%2Fbusybox&tag=latest".to_owned(),
        "POST /v1.44/containers/create?name=web".to_owned(),
        format!("POST /v1.44/containers/{CONTAINER_ID}/attach?stream=1&stdin=0&stdout=1&stderr=1"),
        format!("POST /v1.44/containers/{CONTAINER_ID}/wait?condition=next-exit"),
        format!("POST /v1.44/containers/{CONTAINER_ID}/start"),
    ];
    assert_eq!(reqs, expected);
}

#[test]
fn run_detached_prints_the_id_and_rm_waits_for_removal() {
    let d = FakeDaemon::start();
    let out = d.berth(&["run", "-d", "alpine"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{CONTAINER_ID}\n"));

    let out = d.berth(&["run", "--rm", "alpine"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(d
        .requests()
        .iter()
        .any(|r| r.ends_with("/wait?condition=removed")));
}

#[test]
fn a_command_that_cannot_be_found_exits_127() {
    let d = FakeDaemon::start();
    let out = d.berth(&["run", "-d", "alpine", "nope"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        text(&out.stderr),
        "berth: Error response from daemon: failed to create task: exec: \"nope\": executable file not found in $PATH\n"
    );
    assert_eq!(text(&out.stdout), "");
}
