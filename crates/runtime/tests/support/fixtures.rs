//! Test fixtures shared by the runtime's and the shim's integration tests (the shim's
//! support module includes this file by path): busybox bundles with runc's default spec,
//! temp dirs, cgroup and mount inspection, and commands run under a timeout.
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

pub fn must<T>(result: io::Result<T>, what: impl Display) -> T {
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

pub fn process_state(pid: i32) -> Option<char> {
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
