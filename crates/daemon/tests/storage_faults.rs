//! Faults under image pulls and storage (issue 9): berthd SIGKILLed in the middle of a
//! pull, a registry that drops the connection in the middle of a blob, and the data root
//! on a small tmpfs that fills up. Pulls come from a local docker-registry
//! (support/registry.rs), through a proxy in this file when a fault needs one; every test
//! ends with the leak checker (support/leaks.rs).
//!
//! Needs `docker-registry`, `skopeo` and `busybox-static` (scripts/install-deps.sh).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::Digest;
use support::cli::{err, out};
use support::engine::Engine;
use support::leaks::{HostSnapshot, Ignore};
use support::oci_layout::{host_arch, write_layout};
use support::registry::Registry;

#[track_caller]
fn ok(engine: &Engine, args: &[&str]) -> String {
    let o = engine.docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}\n{}\n--- berthd log (tail) ---\n{}",
        o.status,
        err(&o),
        tail(&engine.log(), 60)
    );
    out(&o)
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[track_caller]
fn run(cmd: &mut Command) -> String {
    let o = cmd.output().expect("spawn");
    assert!(o.status.success(), "{cmd:?}: {}", err(&o));
    out(&o)
}

#[track_caller]
fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bytes that do not compress (so a layer's blob is as large as its content).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A multi-layer image in an OCI layout: busybox, then layers each adding
/// /data/layerN.bin of incompressible bytes. Pushed to a registry with skopeo.
struct TestImage {
    dir: tempfile::TempDir,
    /// `sha256sum` lines of the data files, as the container prints them.
    sums: String,
}

impl TestImage {
    fn build(layers: usize, layer_bytes: usize) -> TestImage {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tars = vec![support::engine::busybox_rootfs_tar()];
        let mut sums = String::new();
        for n in 1..=layers {
            let data = noise(n as u64 + u64::from(std::process::id()) * 7, layer_bytes);
            let path = format!("data/layer{n}.bin");
            sums.push_str(&format!("{}  /{path}\n", Digest::of(&data).hex()));
            let mut tar = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, "data", std::io::empty())
                .expect("dir");
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, &path, &data[..]).expect("file");
            tars.push(tar.into_inner().expect("tar"));
        }
        let diff_ids: Vec<Digest> = tars.iter().map(|t| Digest::of(t)).collect();
        let config = serde_json::json!({
            "architecture": host_arch(), "os": "linux", "created": "2024-01-02T03:04:05Z",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers",
                       "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()}
        })
        .to_string();
        write_layout(&dir.path().join("layout"), &config, &tars);
        TestImage { dir, sums }
    }

    /// Pushes the image as `repo:v1`; the digests of its layer blobs in the registry
    /// (skopeo compresses them on the way), bottom to top.
    fn push(&self, registry: &Registry, repo: &str) -> Vec<String> {
        let remote = format!("docker://{}/{repo}:v1", registry.host());
        run(Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", self.dir.path().join("layout").display()),
            &remote,
        ]));
        let raw =
            run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &remote]));
        let manifest: serde_json::Value = serde_json::from_str(&raw).expect("manifest");
        manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_owned())
            .collect()
    }

    /// Asserts that `image` runs and holds every layer's file, byte for byte.
    #[track_caller]
    fn verify(&self, engine: &Engine, image: &str) {
        let mut args = vec!["run", "--rm", image, "sha256sum"];
        let files: Vec<String> = self
            .sums
            .lines()
            .filter_map(|l| l.split("  ").nth(1).map(str::to_owned))
            .collect();
        args.extend(files.iter().map(String::as_str));
        assert_eq!(ok(engine, &args), self.sums, "content of {image}");
    }
}

/// What the proxy does to the next download of its target blob.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Pass,
    /// Forward this many bytes of the response, then close both connections.
    Cut(usize),
    /// Forward this many bytes, then hold the connection without sending more.
    Stall(usize),
}

#[derive(Default)]
struct ProxyState {
    /// Armed for the next request of the target blob (then back to Pass).
    next: Mutex<Option<Fault>>,
    target: Mutex<String>,
    faults: AtomicUsize,
    ranged: AtomicUsize,
    stop: AtomicBool,
}

/// A TCP proxy on 127.0.0.1 in front of the registry that can break one blob download.
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(ProxyState::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let st = st.clone();
                std::thread::spawn(move || relay(client, server, st));
            }
        });
        Proxy { port, state }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The next download of `blob` (a digest) meets `fault`.
    fn arm(&self, blob: &str, fault: Fault) {
        *self.state.target.lock().unwrap() = blob.to_owned();
        *self.state.next.lock().unwrap() = Some(fault);
    }

    fn faults(&self) -> usize {
        self.state.faults.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One client connection: requests go up as they are; a request for the target blob
/// takes the armed fault, applied to the response bytes that follow it.
fn relay(client: TcpStream, server: TcpStream, st: Arc<ProxyState>) {
    let fault: Arc<Mutex<Fault>> = Arc::new(Mutex::new(Fault::Pass));
    let client_gone = Arc::new(AtomicBool::new(false));
    let (Ok(mut c_in), Ok(mut s_out), Ok(s_shut)) =
        (client.try_clone(), server.try_clone(), server.try_clone())
    else {
        return;
    };
    let (f, st2, gone) = (fault.clone(), st.clone(), client_gone.clone());
    let up = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match c_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            let target = st2.target.lock().unwrap().to_ascii_lowercase();
            if !target.is_empty() && text.contains(&format!("/blobs/{target}")) {
                if text.contains("\r\nrange:") {
                    st2.ranged.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(armed) = st2.next.lock().unwrap().take() {
                    *f.lock().unwrap() = armed;
                }
            }
            if s_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        gone.store(true, Ordering::SeqCst);
        let _ = s_shut.shutdown(Shutdown::Write);
    });
    let (mut s_in, mut c_out) = (server, client);
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent_under_fault = 0usize;
    loop {
        let n = match s_in.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let current = *fault.lock().unwrap();
        let limit = match current {
            Fault::Pass => usize::MAX,
            Fault::Cut(l) | Fault::Stall(l) => l,
        };
        let room = limit.saturating_sub(sent_under_fault).min(n);
        if c_out.write_all(&buf[..room]).is_err() {
            break;
        }
        if current != Fault::Pass {
            sent_under_fault += room;
        }
        if room < n {
            st.faults.fetch_add(1, Ordering::SeqCst);
            if let Fault::Stall(_) = current {
                // Until the client goes away (berthd killed) or the test ends.
                while !st.stop.load(Ordering::SeqCst) && !client_gone.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            break;
        }
    }
    let _ = c_out.shutdown(Shutdown::Both);
    let _ = s_in.shutdown(Shutdown::Both);
    let _ = up.join();
}

/// Names of the files in `dir` (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Repository:tag names `GET /images/json` lists.
fn listed(engine: &Engine) -> Vec<String> {
    let r = engine.request("GET", "/images/json", None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|i| {
            i["RepoTags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
        })
        .collect()
}

/// `docker pull image` in a thread; SIGKILL of berthd once `ready()` says so.
fn kill_during_pull(engine: &mut Engine, image: &str, mut ready: impl FnMut(&Engine) -> bool) {
    let sock = engine.sock.clone();
    let config = engine.dir.path().join("docker-config");
    let image = image.to_owned();
    let client = std::thread::spawn(move || {
        Command::new("docker")
            .args(["pull", &image])
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .env("DOCKER_CONFIG", config)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("docker")
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(engine) {
        assert!(
            Instant::now() < deadline,
            "the pull never got to the point of the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    engine.kill_daemon();
    let _ = client.join();
}

/// The image is listed only if it is whole: then it runs with every layer's content.
#[track_caller]
fn whole_or_absent(engine: &Engine, image: &TestImage, name: &str) -> bool {
    let present = listed(engine).iter().any(|t| t == name);
    let inspect = engine.docker(&["image", "inspect", name]);
    assert_eq!(
        inspect.status.success(),
        present,
        "image ls and inspect disagree on {name}: {}",
        err(&inspect)
    );
    if present {
        image.verify(engine, name);
    }
    present
}

#[test]
fn sigkill_of_the_daemon_during_a_pull() {
    let registry = Registry::start();
    let image = TestImage::build(3, 2 << 20);
    let blobs = image.push(&registry, "faults/pull");
    let proxy = Proxy::start(registry.host());
    let name = format!("{}/faults/pull:v1", proxy.host());

    let mut engine = Engine::start();
    ok(&engine, &["run", "--rm", "busybox", "true"]);
    let before = HostSnapshot::of(&engine);
    let content_before = entries(&engine.data_root().join("content/sha256"));
    let ingest = engine.data_root().join("ingest");

    // In the middle of a blob (the proxy holds its download there): nothing of the image
    // is visible while it pulls, nor after the crash; partial downloads go at gc.
    let target = blobs.last().expect("layers").clone();
    // What berthd has written of the target blob.
    let partial = |engine: &Engine| {
        let file = format!("sha256-{}", target.trim_start_matches("sha256:"));
        std::fs::metadata(engine.data_root().join("ingest").join(file)).map_or(0, |m| m.len())
    };
    proxy.arm(&target, Fault::Stall(512 << 10));
    kill_during_pull(&mut engine, &name, |e| {
        let stalled = proxy.faults() == 1 && partial(e) > 0;
        if stalled {
            assert!(
                !listed(e).iter().any(|t| t == &name),
                "{name} listed in the middle of its pull"
            );
        }
        stalled
    });
    engine.start_daemon();
    assert!(
        !whole_or_absent(&engine, &image, &name),
        "{name} listed after a crash in the middle of its pull"
    );
    assert!(
        !entries(&ingest).is_empty(),
        "no partial download was kept to resume"
    );
    ok(&engine, &["image", "prune", "-f"]);
    assert_eq!(
        entries(&ingest),
        Vec::<String>::new(),
        "partial downloads after gc"
    );

    // Again, then the pull is run again and succeeds (resuming what was downloaded).
    proxy.arm(&target, Fault::Stall(1 << 20));
    kill_during_pull(&mut engine, &name, |e| {
        proxy.faults() == 2 && partial(e) > 0
    });
    let held = partial(&engine);
    engine.start_daemon();
    assert!(!whole_or_absent(&engine, &image, &name));
    let ranged = proxy.state.ranged.load(Ordering::SeqCst);
    ok(&engine, &["pull", &name]);
    let resumed = proxy.state.ranged.load(Ordering::SeqCst) - ranged;
    eprintln!(
        "pull after the crash: {resumed} Range request(s) for the interrupted blob ({held} bytes kept)"
    );
    assert_eq!(
        resumed, 1,
        "the pull did not resume the {held} bytes it had"
    );
    assert!(whole_or_absent(&engine, &image, &name));
    assert_eq!(
        entries(&ingest),
        Vec::<String>::new(),
        "partial downloads after a successful pull"
    );
    ok(&engine, &["rmi", &name]);

    // At whatever point the kill comes (manifest, blobs, unpack, record), the image is
    // whole or absent, and a pull afterwards succeeds.
    // The points are fractions of how long a whole pull takes here.
    let start = Instant::now();
    ok(&engine, &["pull", &name]);
    let whole = start.elapsed();
    ok(&engine, &["rmi", &name]);
    let mut seen = Vec::new();
    for percent in [10u32, 30, 50, 70, 85, 95, 105] {
        let at = whole * percent / 100;
        let ms = at.as_millis();
        let start = Instant::now();
        kill_during_pull(&mut engine, &name, |_| start.elapsed() >= at);
        engine.start_daemon();
        let present = whole_or_absent(&engine, &image, &name);
        seen.push(format!(
            "{ms} ms: {}",
            if present { "whole" } else { "absent" }
        ));
        ok(&engine, &["pull", &name]);
        assert!(whole_or_absent(&engine, &image, &name));
        assert_eq!(
            entries(&ingest),
            Vec::<String>::new(),
            "after the pull of round {ms} ms"
        );
        ok(&engine, &["rmi", &name]);
    }
    eprintln!(
        "image after a SIGKILL during its pull (a whole pull takes {whole:?}): {}",
        seen.join(", ")
    );
    assert_eq!(entries(&ingest), Vec::<String>::new());
    let mut content_after = entries(&engine.data_root().join("content/sha256"));
    let mut content_before = content_before;
    content_after.sort();
    content_before.sort();
    assert_eq!(content_after, content_before, "blobs left after rmi");
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn registry_dropping_the_connection_mid_blob() {
    let registry = Registry::start();
    let image = TestImage::build(2, 3 << 20);
    let blobs = image.push(&registry, "faults/cut");
    let proxy = Proxy::start(registry.host());
    let name = format!("{}/faults/cut:v1", proxy.host());

    let engine = Engine::start();
    ok(&engine, &["run", "--rm", "busybox", "true"]);
    let before = HostSnapshot::of(&engine);

    proxy.arm(blobs.last().expect("layers"), Fault::Cut(256 << 10));
    let first = engine.docker(&["pull", &name]);
    assert_eq!(proxy.faults(), 1, "the proxy never cut the download");
    let outcome = if first.status.success() {
        let ranged = proxy.state.ranged.load(Ordering::SeqCst);
        format!("the pull went on and succeeded ({ranged} Range request(s) for the blob)")
    } else {
        // A clear one-line error, and nothing half-pulled.
        let msg = err(&first);
        assert!(
            msg.trim().lines().count() == 1 && msg.contains("Error"),
            "unclear error: {msg:?}"
        );
        assert!(!listed(&engine).iter().any(|t| t == &name));
        ok(&engine, &["pull", &name]);
        format!("the pull failed ({}), a second pull succeeded", msg.trim())
    };
    eprintln!("registry cut the blob after 256 KiB: {outcome}");
    image.verify(&engine, &name);
    assert_eq!(
        entries(&engine.data_root().join("ingest")),
        Vec::<String>::new()
    );
    ok(&engine, &["rmi", &name]);
    before.assert_no_leaks(&engine, &Ignore::none());
}

/// Free bytes of the file system at `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(3) into a zeroed struct with a NUL-terminated path.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

/// A write refused for want of space: Docker's 500 (or 507) with the cause in the message.
fn says_disk_full(status: u16, message: &str) -> bool {
    (status == 500 || status == 507) && names_disk_full(message)
}

fn names_disk_full(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no space left on device") || m.contains("disk is full")
}

/// Empties the file the filler container wrote (in its snapshot's upper dir) when the
/// test ends, so that the engine's cleanup runs on a disk with room whatever happened.
struct Unfill(std::path::PathBuf);

impl Drop for Unfill {
    fn drop(&mut self) {
        let mut stack = vec![(self.0.join("snapshots"), 0)];
        while let Some((dir, depth)) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                    continue;
                };
                if meta.is_dir() && depth < 4 {
                    stack.push((e.path(), depth + 1));
                } else if meta.is_file() && e.file_name() == "fill" {
                    let _ = std::fs::OpenOptions::new()
                        .write(true)
                        .open(e.path())
                        .and_then(|f| f.set_len(0));
                }
            }
        }
    }
}

/// Containers the engine's recovery cleaned up that its API never named: those of another
/// berthd on the host (a parallel test), whose port rules every recovery sees. The leak
/// checker traces every id in the log, and their cgroups are that daemon's business.
fn foreign_ids(engine: &Engine) -> Vec<String> {
    let log = engine.log();
    log.lines()
        .filter_map(|l| {
            l.split("cleaning up after a gone container container=")
                .nth(1)
        })
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|id| {
            !log.lines()
                .any(|l| l.contains("request method=") && l.contains(id))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn data_root_filling_up() {
    let mut engine = Engine::start_with_data_tmpfs("64m");
    ok(&engine, &["run", "--rm", "busybox", "true"]);
    let before = HostSnapshot::of(&engine);
    let data = engine.data_root();
    let _unfill = Unfill(data.clone());
    let keeper = ok(
        &engine,
        &["create", "--name", "keeper", "busybox", "sleep", "300"],
    );
    let keeper = keeper.trim().to_owned();
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "filler",
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/fill bs=64k; sleep 600",
        ],
    );
    wait_for("the data root to fill up", 120, || {
        free_bytes(&data) < 64 << 10
    });

    // Writes fail with the cause; none of them may take the daemon or its data down.
    let mut refused = Vec::new();
    let mut report = Vec::new();
    for (method, path, body) in [
        (
            "POST",
            "/containers/create?name=late",
            r#"{"Image":"busybox","Cmd":["true"]}"#,
        ),
        ("POST", "/volumes/create", r#"{"Name":"latevol"}"#),
        ("POST", "/images/busybox/tag?repo=copied&tag=v1", ""),
    ] {
        let r = engine.request(method, path, Some(body));
        let message = if r.body.is_empty() {
            String::new()
        } else {
            serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| r.text())
        };
        report.push(format!("{method} {path}: {} {message}", r.status));
        if r.status >= 300 {
            assert!(
                says_disk_full(r.status, &message),
                "{method} {path} on a full disk: {} {message:?}\n{}",
                r.status,
                tail(&engine.log(), 30)
            );
            refused.push(path);
        }
    }
    eprintln!("on a full data root:\n  {}", report.join("\n  "));
    assert!(
        refused.contains(&"/containers/create?name=late"),
        "a create on a full disk succeeded: {report:?}"
    );
    let run = engine.docker(&["run", "--rm", "busybox", "true"]);
    assert!(!run.status.success(), "run on a full disk succeeded");
    assert!(
        names_disk_full(&err(&run)),
        "docker run on a full disk: {}",
        err(&run)
    );

    // Reads go on.
    let names = |engine: &Engine| {
        let mut n: Vec<String> = ok(engine, &["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .map(str::to_owned)
            .collect();
        n.sort();
        n
    };
    let had = names(&engine);
    assert!(
        had.contains(&"filler".to_owned()) && had.contains(&"keeper".to_owned()),
        "{had:?}"
    );
    ok(&engine, &["inspect", &keeper]);
    ok(&engine, &["inspect", "filler"]);
    assert!(ok(&engine, &["images"]).contains("busybox"));
    ok(&engine, &["info"]);
    ok(&engine, &["logs", "filler"]);

    // A crash while full: the daemon comes back with what it had.
    engine.kill_daemon();
    engine.start_daemon();
    assert_eq!(names(&engine), had, "after a restart on a full disk");

    // Removing a container while full frees space (berthd keeps room to record it).
    ok(&engine, &["rm", "-f", "filler"]);
    // Space freed: new containers work, nothing refused was half made.
    assert!(
        free_bytes(&data) > 32 << 20,
        "removing filler freed no space"
    );
    assert_eq!(
        ok(&engine, &["run", "--rm", "busybox", "echo", "room"]),
        "room\n"
    );
    let late = engine.docker(&["inspect", "late"]);
    assert!(
        !late.status.success(),
        "the refused create left a container"
    );
    // Refused writes are not visible either.
    for (what, args) in [
        ("volume", ["volume", "inspect", "latevol"]),
        ("tag", ["image", "inspect", "copied:v1"]),
    ] {
        if refused.iter().any(|p| p.contains(what)) {
            let o = engine.docker(&args);
            assert!(
                !o.status.success(),
                "the refused {what} is there: {}",
                out(&o)
            );
        }
    }
    ok(&engine, &["volume", "rm", "-f", "latevol"]);
    let _ = engine.docker(&["rmi", "copied:v1"]);

    // The database is whole.
    engine.stop_daemon();
    let db = rusqlite::Connection::open(data.join("berthd.db")).expect("open berthd.db");
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    drop(db);
    engine.start_daemon();
    assert!(ok(&engine, &["ps", "-a", "--format", "{{.ID}}"]).contains(&keeper[..12]));
    ok(&engine, &["rm", "-f", &keeper]);
    let foreign = foreign_ids(&engine);
    if !foreign.is_empty() {
        eprintln!("recovery met containers of another berthd on this host: {foreign:?}");
    }
    let foreign: Vec<&str> = foreign.iter().map(String::as_str).collect();
    before.assert_no_leaks(&engine, &Ignore::with(&foreign));
}
