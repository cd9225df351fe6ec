//! Shared by the runtime's integration tests: each test file says `mod support;`.
//!
//! - [`Bundle`]: a busybox rootfs plus runc's default spec, in a temp dir.
//! - [`Runtime`]: `berth-runtime --root <temp dir>`, every call under a timeout.
//! - [`ContainerGuard`]: `delete --force` on drop, then checks that the container left
//!   nothing on the host (state dir, cgroups, processes).
//!
//! Only std, `serde_json` and `libc`: the test binaries must not need more than the crate.

// Each test file uses a subset of these helpers.
#![allow(dead_code)]

use std::fmt::Display;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// How long any one runtime command may take before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The host's static busybox (Debian's busybox-static), copied into every test rootfs.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// The `berth-runtime` binary cargo built for these tests.
pub fn runtime_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Return early from a test (which then passes) when not running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::support::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// A name no other test, test thread or concurrent test binary is using:
/// pid + per-process counter + clock nanoseconds.
pub fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{}-{:08x}", std::process::id(), n, nanos)
}

fn must<T>(result: io::Result<T>, what: impl Display) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A directory under /tmp, removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `/tmp/berth-test-<unique>`.
    pub fn new() -> TempDir {
        loop {
            let path = std::env::temp_dir().join(format!("berth-test-{}", unique_name()));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("creating {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The unique part of the name, reusable for container ids and cgroup paths.
    pub fn unique(&self) -> &str {
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.strip_prefix("berth-test-").unwrap_or(name)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A runtime bug can leave a mount (say a bind of a host directory) inside a bundle
        // in our mount namespace; removing recursively through it would delete host files.
        let mounts = mounts_under(&self.path);
        for mount in &mounts {
            let Ok(c_path) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: c_path is a valid NUL-terminated string.
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        }
        let left = mounts_under(&self.path);
        if !left.is_empty() {
            eprintln!(
                "support: not removing {}: still mounted: {left:?}",
                self.path.display()
            );
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("support: removing {}: {e}", self.path.display());
            }
        }
    }
}

/// Mount points at or below `dir` in our mount namespace, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// One line of /proc/self/mountinfo, the fields these tests need.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// The path inside the filesystem that is mounted (for cgroups: the cgroup it shows).
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

/// Parses /proc/self/mountinfo (proc(5)); unparseable lines are skipped.
pub fn mountinfo() -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options [optional...] - type source super
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(MountInfo {
                root: unescape_mountinfo(left.get(3)?),
                mount_point: PathBuf::from(unescape_mountinfo(left.get(4)?)),
                fs_type: right.first()?.to_string(),
                super_options: right.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Directories that exist for `cgroup_path` (as written in `linux.cgroupsPath`) in every
/// cgroup hierarchy mounted here: each v1 controller mount, and the v2 mount.
pub fn host_cgroup_dirs(cgroup_path: &str) -> Vec<PathBuf> {
    let relative = cgroup_path.trim_matches('/');
    if relative.is_empty() {
        return Vec::new();
    }
    let mut dirs = Vec::new();
    for mount in mountinfo() {
        if mount.fs_type != "cgroup" && mount.fs_type != "cgroup2" {
            continue;
        }
        let mut candidates = vec![mount.mount_point.join(relative)];
        // A mount of a sub-cgroup (root "/a/b") shows "/a/b/x" at "<mount>/x".
        let mount_root = mount.root.trim_matches('/');
        if !mount_root.is_empty() {
            if let Some(rest) = relative.strip_prefix(mount_root) {
                if let Some(rest) = rest.strip_prefix('/') {
                    candidates.push(mount.mount_point.join(rest));
                }
            }
        }
        for dir in candidates {
            if dir.is_dir() && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// Live (non-zombie) processes in `cgroup_path` or below it, in any hierarchy.
pub fn pids_in_cgroup(cgroup_path: &str) -> Vec<i32> {
    let wanted = format!("/{}", cgroup_path.trim_matches('/'));
    if wanted == "/" {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cgroups) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        // hierarchy-id:controllers:path
        let inside = cgroups.lines().any(|line| {
            let path = line.splitn(3, ':').nth(2).unwrap_or("");
            path == wanted || path.starts_with(&format!("{wanted}/"))
        });
        // A zombie still reports its cgroup until reaped, but holds nothing.
        if inside && process_state(pid) != Some('Z') {
            pids.push(pid);
        }
    }
    pids
}

fn process_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may hold spaces and parentheses, so split at the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// An OCI bundle: a busybox rootfs and a config.json, in its own temp dir.
pub struct Bundle {
    pub dir: TempDir,
    pub config: Value,
}

impl Bundle {
    /// A bundle running `args` in a busybox rootfs with runc's default spec, except
    /// `terminal: false`, hostname "berth-test" and a unique `linux.cgroupsPath`.
    /// config.json is written already; after [`Bundle::config_mut`], call
    /// [`Bundle::write_config`].
    pub fn busybox(args: &[&str]) -> Bundle {
        let dir = TempDir::new();
        let rootfs = dir.path().join("rootfs");
        make_busybox_rootfs(&rootfs);
        let cgroups_path = format!("/berth-test-{}", dir.unique());
        let bundle = Bundle {
            config: default_spec(args, &cgroups_path),
            dir,
        };
        bundle.write_config();
        bundle
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    pub fn write_config(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serializing config");
        must(fs::write(self.config_path(), text), "writing config.json");
    }

    /// `linux.cgroupsPath`, if the config still has one.
    pub fn cgroups_path(&self) -> Option<String> {
        self.config
            .pointer("/linux/cgroupsPath")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// The layout `scripts/make-busybox-bundle.sh` makes, applets linked to /bin/busybox.
pub fn make_busybox_rootfs(rootfs: &Path) {
    let busybox = Path::new(HOST_BUSYBOX);
    assert!(
        busybox.is_file(),
        "{HOST_BUSYBOX} missing: install busybox-static (scripts/install-deps.sh)"
    );
    for dir in ["bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "root"] {
        must(
            fs::create_dir_all(rootfs.join(dir)),
            format!("creating rootfs/{dir}"),
        );
    }
    let set_mode = |dir: &str, mode: u32| {
        must(
            fs::set_permissions(rootfs.join(dir), fs::Permissions::from_mode(mode)),
            format!("chmod rootfs/{dir}"),
        )
    };
    set_mode("tmp", 0o1777);
    set_mode("root", 0o700);

    let copy = rootfs.join("bin/busybox");
    must(fs::copy(busybox, &copy), "copying busybox");
    must(
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)),
        "chmod busybox",
    );
    let list = must(
        Command::new(busybox).arg("--list").output(),
        "busybox --list",
    );
    assert!(list.status.success(), "busybox --list: {}", list.status);
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = rootfs.join("bin").join(applet);
        must(symlink("/bin/busybox", &link), format!("linking {applet}"));
    }

    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"),
        ("etc/hostname", "berth-test\n"),
    ];
    for (path, text) in files {
        must(
            fs::write(rootfs.join(path), text),
            format!("writing rootfs/{path}"),
        );
    }
}

/// runc's `runc spec` (libcontainer/specconv/example.go) with the test's args,
/// `terminal: false`, a cgroup namespace, hostname "berth-test" and `cgroupsPath`.
pub fn default_spec(args: &[&str], cgroups_path: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps
            },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "berth-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            {
                "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
            },
            {
                "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
            },
            {
                "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
            },
            {
                "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"]
            },
            {
                "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"]
            },
            {
                "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
            }
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
            "namespaces": [
                { "type": "pid" },
                { "type": "network" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" },
                { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
                "/sys/devices/virtual/tpm"
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr captured, killing it after
/// `timeout`. Output goes to files, not pipes: a container started by the command
/// inherits its stdio, and reading a pipe would block until the container exits.
pub fn output_with_timeout(cmd: Command, timeout: Duration) -> Output {
    try_output_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// [`output_with_timeout`] that returns the failure (spawn error, timeout) instead of
/// panicking, for use in `Drop`.
pub fn try_output_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    let io_dir = TempDir::new();
    let out_path = io_dir.path().join("stdout");
    let err_path = io_dir.path().join("stderr");
    let open = |path: &Path| {
        fs::File::create(path).map_err(|e| format!("{shown}: creating {}: {e}", path.display()))
    };
    cmd.stdin(Stdio::null())
        .stdout(open(&out_path)?)
        .stderr(open(&err_path)?);
    let mut child = cmd.spawn().map_err(|e| format!("{shown}: spawn: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = fs::read_to_string(&err_path).unwrap_or_default();
                return Err(format!(
                    "{shown}: killed after {timeout:?} without exiting; stderr so far:\n{stderr}"
                ));
            }
            Err(e) => return Err(format!("{shown}: wait: {e}")),
        }
    };
    let read = |path: &Path| fs::read(path).unwrap_or_default();
    Ok(Output {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    })
}

/// Panics with the command's output unless it succeeded.
pub fn assert_success(output: &Output, what: impl Display) {
    assert!(
        output.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        describe_status(output.status),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => format!("{status}"),
    }
}

pub fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `berth-runtime --root <temp dir>`.
pub struct Runtime {
    pub root: TempDir,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Runtime {
    pub fn new() -> Runtime {
        Runtime {
            root: TempDir::new(),
        }
    }

    /// The runtime binary with `--root` set; add the command and its arguments.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(runtime_bin());
        cmd.arg("--root").arg(self.root.path());
        cmd
    }

    /// Runs `berth-runtime --root <root> ARGS...` under [`COMMAND_TIMEOUT`].
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd();
        cmd.args(args);
        output_with_timeout(cmd, COMMAND_TIMEOUT)
    }

    /// `create --bundle <bundle> ID`. The container's init inherits the command's stdio;
    /// what it and the runtime wrote by the time `create` exits is in the output.
    pub fn create(&self, id: &str, bundle: &Bundle) -> Output {
        self.create_with(id, bundle, &[])
    }

    /// `create` with extra flags (`--pid-file F`, `--no-pivot`, ...) before the id.
    pub fn create_with(&self, id: &str, bundle: &Bundle, flags: &[&str]) -> Output {
        let mut cmd = self.cmd();
        cmd.arg("create").arg("--bundle").arg(bundle.path());
        cmd.args(flags).arg(id);
        output_with_timeout(cmd, COMMAND_TIMEOUT)
    }

    /// `run --bundle <bundle> ID` in the foreground: the output holds the container's.
    pub fn run_container(&self, id: &str, bundle: &Bundle) -> Output {
        self.run_container_with(id, bundle, &[])
    }

    /// `run` with extra flags (`--no-pivot`, ...) before the id, in the foreground.
    pub fn run_container_with(&self, id: &str, bundle: &Bundle, flags: &[&str]) -> Output {
        let mut cmd = self.cmd();
        cmd.arg("run").arg("--bundle").arg(bundle.path());
        cmd.args(flags).arg(id);
        output_with_timeout(cmd, COMMAND_TIMEOUT)
    }

    pub fn start(&self, id: &str) -> Output {
        self.run(&["start", id])
    }

    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.run(&["kill", id, signal])
    }

    pub fn delete(&self, id: &str) -> Output {
        self.run(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Output {
        self.run(&["delete", "--force", id])
    }

    /// `state ID` as JSON; panics if the command fails or prints something else.
    pub fn state(&self, id: &str) -> Value {
        let output = self.run(&["state", id]);
        assert_success(&output, format!("state {id}"));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("state {id}: not JSON ({e}):\n{}", stdout_text(&output)))
    }

    /// Polls `state ID` until its status is `status`; panics after `timeout`.
    pub fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state(id);
            if state["status"] == status {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not {status} after {timeout:?}: {state}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Where the runtime keeps this container's state: `<root>/<id>`.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }

    /// A guard that deletes `id` and checks the host is clean when it drops.
    pub fn guard(&self, id: &str, bundle: &Bundle) -> ContainerGuard<'_> {
        ContainerGuard::new(self, id, bundle.cgroups_path())
    }
}

/// Deletes the container on drop (`delete --force`), then asserts, unless the test is
/// already failing, that nothing of it is left: no `<root>/<id>`, no cgroup directory
/// in any hierarchy, no live process in its cgroup. Leftovers are removed before the
/// assertion, so one failing test does not spoil the next.
///
/// Declare it after the [`Bundle`]: locals drop in reverse order, so the container is
/// gone before its rootfs is removed.
pub struct ContainerGuard<'a> {
    pub runtime: &'a Runtime,
    pub id: String,
    pub cgroup_path: Option<String>,
}

impl<'a> ContainerGuard<'a> {
    pub fn new(runtime: &'a Runtime, id: &str, cgroup_path: Option<String>) -> Self {
        ContainerGuard {
            runtime,
            id: id.to_owned(),
            cgroup_path,
        }
    }

    /// Everything left of the container, after killing stray processes and removing
    /// stray cgroups. Empty means clean.
    fn clean_up(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut delete = self.runtime.cmd();
        delete.args(["delete", "--force", &self.id]);
        if let Err(e) = try_output_with_timeout(delete, COMMAND_TIMEOUT) {
            problems.push(e);
        }

        let state_dir = self.runtime.state_dir(&self.id);
        if state_dir.exists() {
            problems.push(format!("state dir {} still exists", state_dir.display()));
        }

        let Some(cgroup) = self.cgroup_path.as_deref() else {
            return problems;
        };
        // delete --force has returned: anything still in the cgroup escaped it. Allow a
        // moment for SIGKILLed processes to finish exiting before calling them leaks.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut pids = pids_in_cgroup(cgroup);
        while !pids.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            pids = pids_in_cgroup(cgroup);
        }
        if !pids.is_empty() {
            problems.push(format!("processes still in cgroup {cgroup}: {pids:?}"));
            for &pid in &pids {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while !pids_in_cgroup(cgroup).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        let dirs = host_cgroup_dirs(cgroup);
        if !dirs.is_empty() {
            problems.push(format!("cgroup directories left: {dirs:?}"));
            for dir in dirs {
                remove_cgroup_tree(&dir);
            }
        }
        problems
    }
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let problems = self.clean_up();
        if problems.is_empty() {
            return;
        }
        if std::thread::panicking() {
            eprintln!("container {} left behind: {}", self.id, problems.join("; "));
        } else {
            panic!("container {} left behind: {}", self.id, problems.join("; "));
        }
    }
}

/// rmdir a cgroup and its children, deepest first (cgroupfs only allows rmdir).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        eprintln!("support: removing cgroup {}: {e}", dir.display());
    }
}
