//! Shared by the engine tests: each of `tests/containerd.rs`, `tests/docker.rs` and
//! `tests/podman.rs` says `mod support;`.
//!
//! - [`runtime_bin`]: the `berth-runtime` that cargo built next to these tests.
//! - [`Sandbox`]: one engine instance's temp dir and cgroup parent. [`Sandbox::finish`]
//!   (or drop, after a failure) kills what the engine left, unmounts, removes cgroups and
//!   the dir, then checks that nothing is left: no process, mount or cgroup of the test.
//! - [`Daemon`]: a daemon child with its log in the sandbox, stopped on drop.
//! - [`run`]: a command under a timeout, output captured; [`Run::ok`] and
//!   [`Run::expect_code`] fail the test with the command line and its output.
//! - [`busybox_image`]: `scripts/make-busybox-image.sh`, an image without a registry.
//!
//! Engines are started by the tests themselves, each with its own state, root and socket
//! in the sandbox; the system's /var/lib/docker, /var/lib/containerd and /run/containerd
//! state are never used. Every [`Sandbox`] holds a file lock, so engine tests run one at
//! a time, also across test processes: they share a few host-wide places (containerd's
//! shim socket dir, containers/image's blob cache) and 2 cores.

// Each test file uses a subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one engine command (a `docker run`, a `ctr task exec`) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a daemon may take to answer on its socket.
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The image every test runs; scripts/make-busybox-image.sh's default reference.
pub const IMAGE: &str = "localhost/berth-busybox:latest";

/// Print why a test does not run and return from it (it passes). Only for reasons of the
/// environment: an engine not installed, not root, a daemon that cannot start here.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        let test = std::thread::current().name().unwrap_or("?").to_string();
        eprintln!("SKIPPED {test}: {}", format!($($arg)*));
        return;
    }};
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The `berth-runtime` binary: `$BERTH_RUNTIME`, else the one in the target dir these
/// tests were built into (`target/<profile>/deps/<test>` -> `target/<profile>/berth-runtime`).
/// This crate cannot depend on the binary, so cargo does not build it for us.
pub fn runtime_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_RUNTIME") {
        let path = PathBuf::from(path);
        assert!(
            path.is_absolute() && path.is_file(),
            "BERTH_RUNTIME={} is not an absolute path to a file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps");
    let bin = profile_dir.join("berth-runtime");
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build -p berth-runtime` (add --release \
         when testing with --release), or set BERTH_RUNTIME to an absolute path",
        bin.display()
    );
    static WARN_ONCE: std::sync::Once = std::sync::Once::new();
    WARN_ONCE.call_once(|| warn_if_stale(&bin));
    bin
}

/// `cargo test -p berth-integration` alone does not rebuild the runtime: say so when the
/// binary is older than its sources (`cargo test --workspace` builds it first).
fn warn_if_stale(bin: &Path) {
    fn newest(dir: &Path) -> Option<std::time::SystemTime> {
        let mut latest = fs::metadata(dir).and_then(|m| m.modified()).ok();
        for entry in fs::read_dir(dir).ok()?.flatten() {
            let t = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                newest(&entry.path())
            } else {
                entry.metadata().and_then(|m| m.modified()).ok()
            };
            latest = latest.max(t);
        }
        latest
    }
    let built = fs::metadata(bin).and_then(|m| m.modified()).ok();
    let sources = newest(&repo_root().join("crates/runtime/src"));
    if let (Some(built), Some(sources)) = (built, sources) {
        if sources > built {
            eprintln!(
                "warning: {} is older than crates/runtime/src; run `cargo build -p \
                 berth-runtime` to test the current code",
                bin.display()
            );
        }
    }
}

/// The repository root (this crate is `<root>/integration`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ has a parent")
        .to_path_buf()
}

/// `name` on PATH or in the sbin dirs (where dockerd and containerd live), as an absolute path.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| {
            p.is_absolute()
                && fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The programs a test needs, or the first missing one with a hint.
pub fn find_programs<const N: usize>(names: [&str; N]) -> Result<[PathBuf; N], String> {
    let mut found = Vec::with_capacity(N);
    for name in names {
        match find_program(name) {
            Some(p) => found.push(p),
            None => {
                return Err(format!(
                    "`{name}` is not installed (scripts/install-deps.sh installs it)"
                ))
            }
        }
    }
    Ok(found.try_into().expect("N programs"))
}

/// Whether the effective capability set has CAP_SYS_RESOURCE. Without it nothing can raise
/// an rlimit above its hard limit, which engines do by default (podman: nofile and nproc).
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Whether an overlay mount can have its layers in `dir`: the kernel has overlayfs and
/// `dir` is not on overlayfs itself (overlay on overlay fails, as inside many containers).
pub fn overlay_usable(dir: &Path) -> bool {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    let has_overlay = fs::read_to_string("/proc/filesystems").is_ok_and(|s| {
        s.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    });
    has_overlay && statfs_type(dir).is_some_and(|t| t != OVERLAYFS_SUPER_MAGIC)
}

fn statfs_type(dir: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is plain old data; an all-zero value is valid.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is a valid C string and buf a valid statfs to write into.
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut buf) };
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between libcs
    (rc == 0).then_some(buf.f_type as i64)
}

/// Wait until `ready` returns true, up to `timeout`; false if it never did.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The socket of containerd's runc v2 shim for a task: containerd 1.6 puts it under
/// /run/containerd/s whatever containerd's own state dir (runtime/v2/shim/util_unix.go
/// `SocketAddress`: sha256 of "<containerd address>/<namespace>/<id>").
pub fn containerd_shim_socket(address: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = format!("{}/{namespace}/{id}", address.display());
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(key.as_bytes())
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    let hex = String::from_utf8_lossy(&out.stdout);
    let hex = hex.split_whitespace().next().expect("sha256sum output");
    PathBuf::from("/run/containerd/s").join(hex)
}

/// Build the busybox image tarball into `dir`. Err (a reason to skip) when the script's
/// tools are missing.
pub fn busybox_image(dir: &Path) -> Result<PathBuf, String> {
    if !Path::new("/bin/busybox").is_file() {
        return Err(
            "/bin/busybox is missing: install busybox-static (scripts/install-deps.sh)".into(),
        );
    }
    find_programs(["jq", "sha256sum", "tar"])?;
    let out = dir.join("busybox-image.tar");
    run(
        Command::new(repo_root().join("scripts/make-busybox-image.sh"))
            .arg(&out)
            .arg(IMAGE),
    )
    .ok();
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Commands

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit code, or 128 + signal like a shell.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
            .unwrap_or(-1)
    }

    /// Everything about the run, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Fails the test unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(self.status.success(), "{}", self.describe());
        self
    }

    /// Fails the test unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit code\n{}",
            self.describe()
        );
        self
    }

    /// Fails the test unless stdout contains `needle`.
    #[track_caller]
    pub fn expect_stdout(self, needle: &str) -> Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }
}

/// The command as one shell-quoted line.
pub fn cmdline(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn shell_quote(word: impl AsRef<OsStr>) -> String {
    let word = word.as_ref().to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What a command gets as stdin.
pub enum Input<'a> {
    /// /dev/null.
    Null,
    /// These bytes, then end of file.
    Bytes(&'a [u8]),
    /// A pipe that stays open, without data, until the command exits: a terminal nobody
    /// types on. (`script` passes an EOF on to the pty, and `podman run -it` then sometimes
    /// loses the container's output, with runc as well.)
    Open,
}

/// Run `cmd` with stdin from /dev/null, under [`COMMAND_TIMEOUT`].
pub fn run(cmd: &mut Command) -> Run {
    run_with(cmd, Input::Null, COMMAND_TIMEOUT)
}

/// Run `cmd` with `input` as its stdin (then closed).
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Run {
    run_with(cmd, Input::Bytes(input), COMMAND_TIMEOUT)
}

/// Run `cmd` on a pseudo-terminal (see [`on_a_terminal`]) that nobody types on.
pub fn run_on_a_terminal(cmd: &Command) -> Run {
    run_with(&mut on_a_terminal(cmd), Input::Open, COMMAND_TIMEOUT)
}

/// Run `cmd` in its own process group; on timeout the whole group is killed and the test
/// fails with what the command printed so far.
pub fn run_with(cmd: &mut Command, input: Input, timeout: Duration) -> Run {
    let line = cmdline(cmd);
    cmd.stdin(match input {
        Input::Null => Stdio::null(),
        Input::Bytes(_) | Input::Open => Stdio::piped(),
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
    // Closed once the command has exited.
    let mut _held_stdin = None;
    match input {
        Input::Null => {}
        Input::Bytes(bytes) => {
            let mut stdin = child.stdin.take().expect("piped stdin");
            let bytes = bytes.to_vec();
            // A writer thread: a command that does not read must not block us.
            thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        Input::Open => _held_stdin = child.stdin.take(),
    }
    let stdout = reader(child.stdout.take().expect("piped stdout"));
    let stderr = reader(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            // SAFETY: kill has no memory-safety preconditions; the group is the child's.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!(
                "`{line}` did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        cmdline: line,
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn reader(mut from: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// `cmd` run on a pseudo-terminal, as a person at a terminal would run it: `script` gives
/// it a pty as stdin/stdout and exits with its status (`-e`). The pty turns "\n" into "\r\n".
pub fn on_a_terminal(cmd: &Command) -> Command {
    let mut script = Command::new("script");
    script
        .args(["--quiet", "--return", "--flush", "--command"])
        .arg(cmdline(cmd))
        .arg("/dev/null");
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    script
}

// ---------------------------------------------------------------------------------------
// Daemons

/// A daemon started by a test, its stdout and stderr in a log file. Stopped (TERM, then
/// KILL) on drop.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Daemon {
        let line = cmdline(cmd);
        let file =
            fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log fd"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (`{line}`): {e}"));
        eprintln!("started {name} (pid {}): {line}", child.id());
        Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Err with the exit status and log when the daemon has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                self.log_tail()
            )),
            Some(Err(e)) => Err(format!("{}: wait: {e}", self.name)),
            None => Err(format!("{} was stopped", self.name)),
        }
    }

    /// Wait until something accepts connections on `socket`; Err (with the log) when the
    /// daemon exits or does not get there in time.
    pub fn wait_for_socket(&mut self, socket: &Path, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if UnixStream::connect(socket).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not listen on {} within {timeout:?}; its log:\n{}",
                    self.name,
                    socket.display(),
                    self.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns how it ended; Err if KILL was needed.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err(format!("{} already stopped", self.name));
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let status = child.wait();
        Err(format!(
            "{} did not exit within {grace:?} of SIGTERM (killed: {status:?}); its log:\n{}",
            self.name,
            self.log_tail()
        ))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(e) = self.stop(Duration::from_secs(10)) {
                eprintln!("{e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sandbox and its cleanup

/// Held by every [`Sandbox`]: engine tests run one at a time, across threads and across
/// test processes (another `cargo test` of the workspace), since they share host-wide
/// places (/run/containerd/s, /var/lib/containers/cache) whose removal afterwards relies on
/// knowing whether they existed before.
const LOCK_FILE: &str = "/tmp/berth-integration.lock";

fn lock_engines() -> fs::File {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("open {LOCK_FILE}: {e}"));
    // SAFETY: flock on a valid fd; blocks until no other open file description holds it.
    // The lock goes with the fd when the file is dropped, also when a test panics.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "flock {LOCK_FILE}: {}",
        std::io::Error::last_os_error()
    );
    file
}

/// A temp dir and a cgroup parent for one engine instance, named `berth-it-<pid>-<n>`.
///
/// The engine under test keeps everything it can in `dir`; its containers' cgroups go
/// under `/<name>` (the cgroup parent or containerd namespace the test passes). Host-wide
/// paths that engines create whatever their config ([`Sandbox::watch_host_path`]) are
/// removed afterwards when the test created them. [`Sandbox::finish`] checks that the
/// engine's own shutdown left nothing behind, cleans up by force, and checks again.
pub struct Sandbox {
    pub dir: PathBuf,
    pub name: String,
    /// Host paths outside `dir`, whether each existed before, in creation order.
    host_paths: Vec<(PathBuf, bool)>,
    /// Paths that must not exist once the engine is gone (e.g. shim sockets).
    must_vanish: BTreeSet<PathBuf>,
    /// Runtime `--root` dirs outside `dir`: containers in them whose bundle is in `dir`
    /// are the test's.
    runtime_roots: Vec<PathBuf>,
    /// Cgroup names directly under `/<name>` that the engine keeps by design
    /// (podman's `conmon`): not counted as leftovers of the engine's shutdown.
    expected_cgroups: Vec<String>,
    /// Mounts in the sandbox that the engine keeps by design (containers/storage's
    /// private bind mount of its driver dir): not counted as leftovers of its shutdown.
    expected_mounts: Vec<PathBuf>,
    finished: bool,
    _lock: fs::File,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let lock = lock_engines();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // /tmp, not $TMPDIR, and a short name: unix socket paths (the engine's, conmon's
        // attach socket under the container dir) must fit in 108 bytes.
        let name = format!("berth-it-{}-{n}", std::process::id());
        let dir = Path::new("/tmp").join(&name);
        if dir.exists() {
            let _ = fs::remove_dir_all(&dir);
        }
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o711)).expect("chmod sandbox");
        Sandbox {
            dir,
            name,
            host_paths: Vec::new(),
            must_vanish: BTreeSet::new(),
            runtime_roots: Vec::new(),
            expected_cgroups: Vec::new(),
            expected_mounts: Vec::new(),
            finished: false,
            _lock: lock,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// A host path the engine may create outside the sandbox (say /run/containerd/s).
    /// Register parents before children; after the test, what did not exist before is
    /// removed again (directories only when empty).
    pub fn watch_host_path(&mut self, path: impl Into<PathBuf>) {
        let path = path.into();
        let existed = fs::symlink_metadata(&path).is_ok();
        self.host_paths.push((path, existed));
    }

    /// A path that must be gone once the engine has shut down.
    pub fn must_vanish(&mut self, path: impl Into<PathBuf>) {
        self.must_vanish.insert(path.into());
    }

    /// A runtime state root outside the sandbox that the engine uses (podman calls the
    /// runtime without `--root`, so berth-runtime's default).
    pub fn watch_runtime_root(&mut self, root: impl Into<PathBuf>) {
        self.runtime_roots.push(root.into());
    }

    /// A cgroup directly under `/<name>` that the engine leaves by design.
    pub fn expect_cgroup(&mut self, name: &str) {
        self.expected_cgroups.push(name.to_string());
    }

    /// A mount in the sandbox that the engine may leave by design.
    pub fn expect_mount(&mut self, path: impl Into<PathBuf>) {
        self.expected_mounts.push(path.into());
    }

    /// Wait (up to `timeout`) for the engine's processes to exit by themselves: a daemon's
    /// shims after it stopped, podman's `container cleanup` after conmon saw an exit.
    pub fn wait_for_engine_exit(&self, timeout: Duration) {
        wait_until(timeout, || self.processes().is_empty());
    }

    /// Everything the test's engine left on the host, as readable lines.
    pub fn leftovers(&self, strict: bool) -> Vec<String> {
        let mut found = Vec::new();
        for pid in self.processes() {
            found.push(format!("process {pid}: {}", describe_pid(pid)));
        }
        for mount in mounts_under(&self.dir) {
            if strict || !self.expected_mounts.contains(&mount) {
                found.push(format!("mount {}", mount.display()));
            }
        }
        for cg in self.cgroups() {
            let top_level = cg
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|p| p == OsStr::new(&self.name));
            let by_design = top_level
                && cg
                    .file_name()
                    .is_some_and(|n| self.expected_cgroups.iter().any(|e| OsStr::new(e) == n));
            let is_parent = cg.file_name() == Some(OsStr::new(&self.name));
            if strict || !(is_parent || by_design) {
                found.push(format!("cgroup {}", cg.display()));
            }
        }
        for (root, id) in self.runtime_states() {
            found.push(format!("runtime state {}", root.join(id).display()));
        }
        for path in &self.must_vanish {
            if fs::symlink_metadata(path).is_ok() {
                found.push(format!("path {}", path.display()));
            }
        }
        if strict && self.dir.exists() {
            found.push(format!("sandbox dir {}", self.dir.display()));
        }
        found
    }

    /// After the engine was shut down the normal way: fail if it left a process, mount,
    /// container cgroup, runtime state or shim socket; then clean up by force and fail if
    /// even that leaves something.
    #[track_caller]
    pub fn finish(mut self) {
        let left = self.leftovers(false);
        let residue = self.force_cleanup();
        self.finished = true;
        let mut msg = String::new();
        if !left.is_empty() {
            let _ = writeln!(msg, "the engine left these behind after its shutdown:");
            for l in &left {
                let _ = writeln!(msg, "  {l}");
            }
        }
        if !residue.is_empty() {
            let _ = writeln!(msg, "and these survived the forced cleanup:");
            for l in &residue {
                let _ = writeln!(msg, "  {l}");
            }
        }
        assert!(msg.is_empty(), "{msg}");
    }

    /// Kill, unmount, delete, remove; returns what is still there afterwards.
    pub fn force_cleanup(&mut self) -> Vec<String> {
        // 1. The engine's own processes (daemons, shims, conmon), so nothing restarts
        //    containers or remounts while we clean.
        kill_all(self.engine_processes());
        // 2. Containers in runtime roots outside the sandbox: the runtime deletes them
        //    (kills, removes cgroups and state).
        let runtime = std::panic::catch_unwind(runtime_bin).ok();
        for (root, id) in self.runtime_states() {
            if let Some(bin) = &runtime {
                let _ = run_with(
                    Command::new(bin)
                        .arg("--root")
                        .arg(&root)
                        .args(["delete", "--force", &id]),
                    Input::Null,
                    Duration::from_secs(20),
                );
            }
            let _ = fs::remove_dir_all(root.join(&id));
        }
        // 3. Whatever still runs in the test's cgroups (a frozen task only dies once thawed).
        for _ in 0..100 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            self.thaw();
            kill_all(pids);
            thread::sleep(Duration::from_millis(50));
        }
        // 4. Mounts, deepest first; lazily, as a busy one must not stop the cleanup.
        for _ in 0..10 {
            let mut mounts = mounts_under(&self.dir);
            if mounts.is_empty() {
                break;
            }
            mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
            for m in mounts {
                umount_detach(&m);
            }
        }
        // 5. Cgroups, leaves first.
        for _ in 0..50 {
            let mut cgroups = self.cgroups();
            if cgroups.is_empty() {
                break;
            }
            cgroups.sort_by_key(|c| std::cmp::Reverse(c.components().count()));
            for cg in cgroups {
                let _ = fs::remove_dir(&cg);
            }
            thread::sleep(Duration::from_millis(20));
        }
        // 6. Files: the sandbox, then host paths the test created, children first.
        let _ = fs::remove_dir_all(&self.dir);
        for path in self.must_vanish.clone() {
            if let Ok(meta) = fs::symlink_metadata(&path) {
                let _ = if meta.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
        for (path, existed) in self.host_paths.iter().rev() {
            if !existed {
                let _ = fs::remove_dir(path).or_else(|_| {
                    if fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
                        fs::remove_file(path)
                    } else {
                        Ok(())
                    }
                });
            }
        }
        self.leftovers(true)
    }

    /// Processes of the test: the engine's (the sandbox path on their command line) and the
    /// containers' (in a cgroup under `/<name>`).
    pub fn processes(&self) -> Vec<i32> {
        let mut pids: BTreeSet<i32> = self.engine_processes().into_iter().collect();
        let me = std::process::id() as i32;
        for pid in all_pids() {
            if pid == me {
                continue;
            }
            let Ok(cgroups) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
                continue;
            };
            let prefix = format!("/{}", self.name);
            let ours = cgroups.lines().any(|line| {
                let path = line.splitn(3, ':').nth(2).unwrap_or("");
                path == prefix || path.starts_with(&format!("{prefix}/"))
            });
            if ours {
                pids.insert(pid);
            }
        }
        pids.into_iter().collect()
    }

    fn engine_processes(&self) -> Vec<i32> {
        let needle = self.dir.to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        all_pids()
            .filter(|&pid| pid != me)
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
            })
            .collect()
    }

    /// Every cgroup directory named `<name>` or below it, in every hierarchy.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for hierarchy in cgroup_mounts() {
            let top = hierarchy.join(&self.name);
            if top.is_dir() {
                collect_dirs(&top, &mut found);
            }
        }
        found
    }

    fn thaw(&self) {
        for cg in self.cgroups() {
            let v1 = cg.join("freezer.state");
            if v1.exists() {
                let _ = fs::write(v1, "THAWED");
            }
            let v2 = cg.join("cgroup.freeze");
            if v2.exists() {
                let _ = fs::write(v2, "0");
            }
        }
    }

    /// (root, id) of containers in the watched runtime roots whose bundle is in the sandbox.
    fn runtime_states(&self) -> Vec<(PathBuf, String)> {
        let mut found = Vec::new();
        for root in &self.runtime_roots {
            let Ok(entries) = fs::read_dir(root) else {
                continue;
            };
            for entry in entries.flatten() {
                let state = fs::read_to_string(entry.path().join("state.json")).unwrap_or_default();
                let bundle = serde_json::from_str::<Value>(&state)
                    .ok()
                    .and_then(|v| v["bundle"].as_str().map(PathBuf::from));
                if bundle.is_some_and(|b| b.starts_with(&self.dir)) {
                    found.push((
                        root.clone(),
                        entry.file_name().to_string_lossy().into_owned(),
                    ));
                }
            }
        }
        found
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The test failed (or forgot finish): clean up, and say what could not be.
        let left = self.leftovers(false);
        if !left.is_empty() {
            eprintln!("cleaning up after the failed test: {}", left.join("; "));
        }
        let residue = self.force_cleanup();
        if !residue.is_empty() {
            eprintln!("LEFT ON THE HOST after cleanup: {}", residue.join("; "));
        }
    }
}

fn all_pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
}

fn describe_pid(pid: i32) -> String {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: String = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    text.trim().chars().take(200).collect()
}

fn kill_all(pids: Vec<i32>) {
    for pid in pids {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Mount points of the cgroup (v1) and cgroup2 hierarchies.
fn cgroup_mounts() -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .filter(|(_, fstype)| fstype == "cgroup" || fstype == "cgroup2")
        .map(|(mount_point, _)| mount_point)
        .collect()
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .map(|(mount_point, _)| mount_point)
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// (mount point, fs type) of every mount in our mount namespace.
fn mountinfo() -> Vec<(PathBuf, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = fields.get(4)?;
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?;
            Some((
                PathBuf::from(unescape_mountinfo(mount_point)),
                fstype.to_string(),
            ))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let n = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(n as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn umount_detach(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: c is a valid C string.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

/// The runtime's own record of a container: `berth-runtime --root ROOT state ID`. Proves
/// that the engine ran *this* runtime (runc's state would not be found there).
pub fn runtime_state(root: &Path, id: &str) -> Result<Value, String> {
    let out = run(Command::new(runtime_bin())
        .arg("--root")
        .arg(root)
        .args(["state", id]));
    if !out.status.success() {
        return Err(out.describe());
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("state JSON: {e}\n{}", out.describe()))
}

/// The version line of an engine tool, for the test log.
pub fn version_of(program: &Path, args: &[&str]) -> String {
    let out = run(Command::new(program).args(args));
    out.stdout.lines().next().unwrap_or("").trim().to_string()
}

/// Read a file for a failure message (missing -> empty).
pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Limits, as the kernel shows them

/// A limit to look for in a container's cgroup, on v1 or v2.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    MemoryBytes(u64),
    CpuShares(u64),
    /// CFS quota and period in microseconds (`--cpus`).
    CpuQuota(u64, u64),
    Pids(u64),
}

/// Mismatches between `limits` and the files of the cgroup at `path` (as in cgroupsPath,
/// "/parent/name"): the v1 controller's file where that controller is on v1 (also on a
/// hybrid host), else the v2 file, with runc's conversions (shares -> weight).
pub fn check_limits(path: &str, limits: &[Limit]) -> Vec<String> {
    let rel = path.trim_start_matches('/');
    let v1 = |controller: &str| {
        let dir = Path::new("/sys/fs/cgroup").join(controller);
        (statfs_type(&dir) == Some(CGROUP_SUPER_MAGIC)).then(|| dir.join(rel))
    };
    let v2 = Path::new("/sys/fs/cgroup").join(rel);
    let mut wrong = Vec::new();
    let mut expect = |file: PathBuf, want: String| {
        let got = read_lossy(&file);
        if got.trim() != want {
            wrong.push(format!(
                "{}: {:?}, want {want:?}",
                file.display(),
                got.trim()
            ));
        }
    };
    for limit in limits {
        match *limit {
            Limit::MemoryBytes(bytes) => match v1("memory") {
                Some(dir) => expect(dir.join("memory.limit_in_bytes"), bytes.to_string()),
                None => expect(v2.join("memory.max"), bytes.to_string()),
            },
            Limit::CpuShares(shares) => match v1("cpu") {
                Some(dir) => expect(dir.join("cpu.shares"), shares.to_string()),
                // runc's ConvertCPUSharesToCgroupV2Value.
                None => expect(
                    v2.join("cpu.weight"),
                    (1 + (shares.saturating_sub(2) * 9999) / 262_142).to_string(),
                ),
            },
            Limit::CpuQuota(quota, period) => match v1("cpu") {
                Some(dir) => {
                    expect(dir.join("cpu.cfs_quota_us"), quota.to_string());
                    expect(dir.join("cpu.cfs_period_us"), period.to_string());
                }
                None => expect(v2.join("cpu.max"), format!("{quota} {period}")),
            },
            Limit::Pids(max) => match v1("pids") {
                Some(dir) => expect(dir.join("pids.max"), max.to_string()),
                None => expect(v2.join("pids.max"), max.to_string()),
            },
        }
    }
    wrong
}

const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
