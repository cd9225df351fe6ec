//! A real berthd for a test: its own data root, exec root, socket, bridge and subnet; a
//! busybox image imported into its store before it starts (so container tests do not
//! depend on a registry); the docker CLI and raw HTTP pointed at it. On drop every
//! container is removed through the API, the daemon stopped, the bridge and its firewall
//! rules torn down, and the test fails if anything of a container outlived its removal
//! (process, cgroup, runtime state, veth, firewall rule) or a mount is left under its
//! directory: every test that uses an engine is a leak check.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_image::content_store::ContentStore;
use berth_image::image_store::{ImageRecord, ImageStore};
use berth_image::import::{import, ImportOptions};
use berth_image::snapshot::LayerStore;
use berth_image::Reference;
use berth_network::bridge_network::{BridgeNetwork, BridgeNetworkConfig};

static ENGINES: AtomicU32 = AtomicU32::new(0);

pub struct Engine {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub bridge: String,
    pub subnet: String,
    /// More berthd flags, passed on every (re)start.
    pub daemon_args: Vec<String>,
    /// The data root is a tmpfs of its own (a small disk that fills up), unmounted last.
    data_tmpfs: bool,
}

/// A rootfs tar of the host's static busybox with every applet linked in /bin.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let add_dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, path, std::io::empty())
            .expect("dir");
    };
    for d in ["bin", "etc", "tmp", "root", "www", "proc", "sys", "dev"] {
        add_dir(&mut tar, d);
    }
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static at /bin/busybox");
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    tar.append_data(&mut h, "bin/busybox", &busybox[..])
        .expect("busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("link");
    }
    for (path, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("www/index.html", "hello from berth\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        tar.append_data(&mut h, path, text.as_bytes())
            .expect("file");
    }
    tar.into_inner().expect("tar")
}

/// Imports the busybox rootfs as `name` into `data_root` (the daemon must not run yet).
pub fn import_busybox(data_root: &Path, name: &str) {
    let content = ContentStore::open(data_root).expect("content store");
    let layers = LayerStore::open(data_root).expect("layer store");
    let tag = Reference::parse(name).expect("reference");
    let loaded = import(
        &content,
        &layers,
        &busybox_rootfs_tar()[..],
        &data_root.join("tmp"),
        &ImportOptions {
            changes: vec!["CMD [\"sh\"]".into()],
            tag: Some(tag.clone()),
            ..ImportOptions::default()
        },
    )
    .expect("import busybox");
    let mut store = ImageStore::open(data_root).expect("image store");
    store.add(ImageRecord::from(&loaded)).expect("add image");
    store.tag(&tag, &loaded.manifest_digest).expect("tag image");
}

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Engine {
    pub fn start() -> Self {
        Self::start_with(&[], None)
    }

    /// As [`Engine::start`], berthd given `args` beside the engine's own flags.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_with(args, None)
    }

    /// As [`Engine::start`], with the data root on a tmpfs of `size` (`mount -o size=`,
    /// e.g. "64m"): a disk that can be filled. Drop unmounts it (after the daemon and
    /// every mount on it are gone), also when the test failed.
    pub fn start_with_data_tmpfs(size: &str) -> Self {
        Self::start_with(&[], Some(size))
    }

    fn start_with(args: &[&str], size: Option<&str>) -> Self {
        let n = ENGINES.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data root");
        let mut engine = Self {
            child: None,
            sock: dir.path().join("exec/berth.sock"),
            bridge: format!("bt{}x{n}", pid % 100_000),
            // 10.77-10.78.x: clear of this host's routes; one /24 per engine in this process.
            subnet: format!("10.{}.{}.0/24", 77 + (pid % 2), (pid / 2 % 25) * 10 + n),
            daemon_args: args.iter().map(|a| a.to_string()).collect(),
            dir,
            data_tmpfs: false,
        };
        if let Some(size) = size {
            let status = Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0711"),
                    "tmpfs",
                ])
                .arg(&data)
                .status()
                .expect("mount");
            assert!(status.success(), "mount tmpfs on {}", data.display());
            engine.data_tmpfs = true;
        }
        import_busybox(&data, "busybox:latest");
        engine.start_daemon();
        engine
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("exec")
    }

    pub fn start_daemon(&mut self) {
        if let Err(e) = self.try_start_daemon() {
            panic!("{e}");
        }
    }

    /// Starts berthd and waits until it listens; an error (with its log) if it does not.
    pub fn try_start_daemon(&mut self) -> Result<(), String> {
        let berthd = PathBuf::from(env!("CARGO_BIN_EXE_berthd"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berthd.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(&berthd)
            .arg("--host")
            .arg(format!("unix://{}", self.sock.display()))
            .arg("--data-root")
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("--bridge")
            .arg(&self.bridge)
            .arg("--bridge-subnet")
            .arg(&self.subnet)
            .arg("--shim-path")
            .arg(shim_path(&berthd))
            .arg("--log-level")
            .arg("berthd=debug,info")
            .args(&self.daemon_args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawn berthd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.sock).is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "berthd exited early with {status}:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "berthd did not listen within 15 s:\n{}",
            self.log()
        ))
    }

    /// SIGTERM and wait; containers keep running (live restore).
    pub fn stop_daemon(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL: a crash.
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The running berthd's pid, if one runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    pub fn docker_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        super::cli::run_with_stdin(
            Command::new("docker")
                .args(args)
                .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
                .env("DOCKER_CONFIG", self.dir.path().join("docker-config")),
            stdin,
            "docker CLI (apt install docker.io)",
        )
    }

    /// One raw HTTP/1.1 request (Connection: close), the whole reply read.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let mut stream = UnixStream::connect(&self.sock).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read");
        parse_reply(&raw)
    }

    /// Forced removal of every container, through the API.
    pub fn remove_all(&self) {
        if self.child.is_none() {
            return;
        }
        let list = self.request("GET", "/containers/json?all=1", None);
        if list.status != 200 {
            return;
        }
        for c in list.json().as_array().cloned().unwrap_or_default() {
            if let Some(id) = c["Id"].as_str() {
                let r = self.request("DELETE", &format!("/containers/{id}?force=1"), None);
                if r.status != 204 && r.status != 404 {
                    eprintln!("cleanup: removing {id}: {} {}", r.status, r.text());
                }
            }
        }
    }
}

pub fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply { status, head, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A /24 of this engine's own for user networks: the engine's default subnet with the
/// second octet moved by `shift` (10.77-78.x -> 10.79-80.x, ...), so parallel tests
/// (each with its own engine subnet) never collide.
pub fn user_subnet(engine: &Engine, shift: u8) -> String {
    let mut octets: Vec<u8> = engine
        .subnet
        .trim_end_matches("/24")
        .split('.')
        .map(|o| o.parse().expect("octet"))
        .collect();
    octets[1] += shift;
    format!("10.{}.{}.0/24", octets[1], octets[2])
}

/// Mount points under `dir`, from this process's mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

impl Engine {
    /// Removes every user-defined network through the API (after `remove_all`).
    pub fn remove_networks(&self) {
        if self.child.is_none() {
            return;
        }
        let list = self.request("GET", "/networks", None);
        if list.status != 200 {
            return;
        }
        for n in list.json().as_array().cloned().unwrap_or_default() {
            let (Some(id), Some(name)) = (n["Id"].as_str(), n["Name"].as_str()) else {
                continue;
            };
            if ["bridge", "host", "none"].contains(&name) {
                continue;
            }
            let r = self.request("DELETE", &format!("/networks/{id}"), None);
            if r.status != 204 && r.status != 404 {
                eprintln!(
                    "cleanup: removing network {name}: {} {}",
                    r.status,
                    r.text()
                );
            }
        }
    }

    /// The bridges of user networks recorded in the data root (whether or not the daemon
    /// removed them): (bridge, state dir, subnet).
    fn user_bridges(&self) -> Vec<(String, PathBuf, Option<ipnet::Ipv4Net>, String)> {
        let dir = self.data_root().join("network");
        let Ok(bytes) = std::fs::read(dir.join("networks.json")) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        v["networks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| {
                let id = n["id"].as_str()?.to_owned();
                Some((
                    n["bridge"].as_str()?.to_owned(),
                    dir.join("user").join(&id),
                    n["subnet"].as_str().and_then(|s| s.parse().ok()),
                    id[..12].to_owned(),
                ))
            })
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // A test that failed while the daemon was down (a crash test) still has its
        // containers: bring the daemon back to remove them.
        if self.child.is_none() && self.sock.parent().is_some_and(Path::exists) {
            if let Err(e) = self.try_start_daemon() {
                eprintln!("cleanup: restarting berthd: {e}");
            }
        }
        self.remove_all();
        self.remove_networks();
        // Still on record (removal failed, or the daemon was gone): tear down directly.
        let user_bridges = self.user_bridges();
        self.stop_daemon();
        // Every test is a leak check: once its containers are removed and the daemon
        // stopped, nothing of a container may be left (its processes, cgroups, runtime
        // state, veth, rules). Cleaned up below either way; the test fails at the end.
        let mut leaks = super::leaks::container_endpoints_left(self);
        let reaped = super::leaks::reap(self);
        if !reaped.is_empty() {
            eprintln!("cleanup: ended what berthd left behind: {reaped:?}");
        }
        leaks.extend(reaped);
        for (bridge, state_dir, subnet, name) in &user_bridges {
            if !state_dir.exists() {
                continue;
            }
            match BridgeNetwork::open(BridgeNetworkConfig {
                name: name.clone(),
                bridge: bridge.clone(),
                subnet: *subnet,
                state_dir: state_dir.clone(),
            }) {
                Ok(net) => {
                    if let Err(e) = net.teardown_with(false) {
                        eprintln!("cleanup: network bridge {bridge} teardown: {e}");
                    }
                }
                Err(e) => eprintln!("cleanup: network bridge {bridge}: {e}"),
            }
        }
        let subnet = self.subnet.parse().ok();
        match BridgeNetwork::open(BridgeNetworkConfig {
            name: "bridge".into(),
            bridge: self.bridge.clone(),
            subnet,
            state_dir: self.data_root().join("network"),
        }) {
            Ok(net) => {
                if let Err(e) = net.teardown() {
                    eprintln!("cleanup: bridge teardown: {e}");
                }
            }
            Err(e) => eprintln!("cleanup: bridge: {e}"),
        }
        let _ = berth_network::netns::unmount_netns_dir(&self.exec_root().join("netns"));
        let data_root = self.data_root().display().to_string();
        let left: Vec<String> = mounts_under(self.dir.path())
            .into_iter()
            .filter(|m| !(self.data_tmpfs && *m == data_root))
            .collect();
        for m in left.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let mut tmpfs_left = false;
        if self.data_tmpfs {
            let _ = Command::new("umount").arg(&data_root).status();
            if mounts_under(&self.data_root()).contains(&data_root) {
                let _ = Command::new("umount").arg("-l").arg(&data_root).status();
                tmpfs_left = true;
            }
        }
        let links = Command::new("ip")
            .args(["-o", "link"])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let bridge_left = String::from_utf8_lossy(&links).contains(&format!(" {}:", self.bridge));
        let user_left: Vec<&String> = user_bridges
            .iter()
            .map(|(b, ..)| b)
            .filter(|b| String::from_utf8_lossy(&links).contains(&format!(" {b}:")))
            .collect();
        if !std::thread::panicking() {
            assert!(
                leaks.is_empty(),
                "left behind by the engine after its containers were removed: {leaks:?}\n{}",
                self.log()
            );
            assert!(
                left.is_empty(),
                "mounts left behind: {left:?}\n{}",
                self.log()
            );
            assert!(!bridge_left, "bridge {} left behind", self.bridge);
            assert!(
                !tmpfs_left,
                "the data root's tmpfs was busy at cleanup (lazily unmounted)"
            );
            assert!(user_left.is_empty(), "bridges left behind: {user_left:?}");
        }
    }
}

/// The shim the daemons under test run: `BERTH_TEST_SHIM` when set (`make test` sets it to
/// the static build of scripts/build-shim.sh, the one users get), else the one cargo built
/// next to berthd.
pub fn shim_path(berthd: &Path) -> PathBuf {
    match std::env::var_os("BERTH_TEST_SHIM") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => berthd.with_file_name("berth-shim"),
    }
}
