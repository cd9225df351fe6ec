//! What a check works with, and the cleanup after it.
//!
//! A check is a function of a [`Ctx`]: its own temp dir, its own `--root` for the runtime,
//! bundles and container ids that no other check uses. Every container it makes is
//! `delete --force`d afterwards, the cgroups its bundles named are verified gone, mounts it
//! left under its dir are detached and the dir is removed, whether the check passed or not.

use crate::bundle::Bundle;
use crate::command::{run_to_files, tail, CmdOut};
use crate::host::Host;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one runtime command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a foreground container run may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    Fail(String),
    Skip(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Fail(s)
    }
}

impl From<&str> for Fail {
    fn from(s: &str) -> Fail {
        Fail::Fail(s.to_string())
    }
}

pub type Outcome = Result<(), Fail>;

/// Fails the check with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::harness::Fail::Fail(format!($($msg)+)));
        }
    };
}

pub fn skip(reason: impl Into<String>) -> Fail {
    Fail::Skip(reason.into())
}

pub struct Check {
    /// Stable short name; the known-failures table and `--filter` use it.
    pub id: &'static str,
    /// What is checked, prefixed with the config field or operation.
    pub title: &'static str,
    /// The spec clause: `runtime.md#start`, `config-linux.md#namespaces`, ...
    pub clause: &'static str,
    pub run: fn(&mut Ctx) -> Outcome,
}

impl Check {
    pub fn description(&self) -> String {
        format!("{} ({}) [{}]", self.title, self.clause, self.id)
    }
}

/// The runtime under test, as it names itself.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub path: PathBuf,
    /// "runc", "berth-runtime", or the binary's file name.
    pub name: String,
    /// The first line of `--version`.
    pub version: String,
}

impl RuntimeInfo {
    pub fn detect(path: &Path) -> Result<RuntimeInfo, String> {
        let out = Command::new(path)
            .arg("--version")
            .output()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or("").trim().to_string();
        let name = if first.starts_with("runc version") {
            "runc".to_string()
        } else if first.starts_with("berth-runtime") {
            "berth-runtime".to_string()
        } else {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Ok(RuntimeInfo {
            path: path.to_path_buf(),
            name,
            version: first,
        })
    }
}

/// Shared by all checks of a run, read-only.
pub struct Env {
    pub runtime: RuntimeInfo,
    /// The run's copy of the probe (bundles hard-link it).
    pub probe: PathBuf,
    /// The run's copy of the host's busybox, if there is one.
    pub busybox: Option<PathBuf>,
    pub host: Host,
    pub verbose: bool,
    /// The run's temp dir; one subdirectory per check.
    pub work: PathBuf,
    /// Prefix of container ids and cgroup paths: unique per run.
    pub tag: String,
}

/// One runtime command and how it went, for `--verbose`.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub line: String,
    pub result: String,
    pub stderr: String,
}

pub struct Ctx<'e> {
    pub env: &'e Env,
    /// This check's temp dir.
    pub dir: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    index: usize,
    seq: u32,
    containers: Vec<String>,
    cgroups: Vec<String>,
    pub log: Vec<LogEntry>,
    /// Diagnostics shown whatever the outcome (which of two allowed behaviours was seen).
    pub notes: Vec<String>,
}

impl<'e> Ctx<'e> {
    pub fn new(env: &'e Env, index: usize, dir: PathBuf) -> Ctx<'e> {
        Ctx {
            env,
            root: dir.join("root"),
            dir,
            index,
            seq: 0,
            containers: Vec::new(),
            cgroups: Vec::new(),
            log: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn next(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// A container id no other check (or run) uses; deleted after the check.
    pub fn new_id(&mut self) -> String {
        let n = self.next();
        let id = format!("{}-{}-{n}", self.env.tag, self.index);
        self.containers.push(id.clone());
        id
    }

    /// A new bundle running the probe with `args` (after `/oci-probe`), with its own
    /// cgroupsPath, which is verified gone after the check.
    pub fn bundle(&mut self, probe_args: &[&str]) -> Result<Bundle, Fail> {
        let n = self.next();
        let dir = self.dir.join(format!("bundle{n}"));
        let cg = format!("/{}-{}-{}", self.env.tag, self.index, n);
        self.cgroups.push(cg.clone());
        let mut args = vec![crate::bundle::PROBE.to_string()];
        args.extend(probe_args.iter().map(|s| s.to_string()));
        Bundle::create(&dir, &self.env.probe, &args, &cg).map_err(Fail::Fail)
    }

    /// A bundle with busybox at /bin/busybox, for hooks that run inside the container.
    pub fn bundle_with_busybox(&mut self, probe_args: &[&str]) -> Result<Bundle, Fail> {
        let bb = self
            .env
            .busybox
            .clone()
            .ok_or_else(|| skip("needs /bin/busybox (busybox-static) on the host"))?;
        let b = self.bundle(probe_args)?;
        b.add_busybox(&bb)?;
        Ok(b)
    }

    /// A fresh subdirectory of the check's dir.
    pub fn subdir(&mut self, name: &str) -> Result<PathBuf, Fail> {
        let d = self.dir.join(name);
        fs::create_dir_all(&d).map_err(|e| Fail::Fail(format!("{}: {e}", d.display())))?;
        Ok(d)
    }

    /// The runtime with `--root` set; add the command and its arguments.
    pub fn runtime_cmd(&self) -> Command {
        let mut c = Command::new(&self.env.runtime.path);
        c.arg("--root").arg(&self.root);
        c
    }

    /// Adds a command to the log `--verbose` shows.
    pub fn record(&mut self, out: &CmdOut) {
        self.log.push(LogEntry {
            line: out
                .shown
                .replace(
                    &format!("{:?}", self.env.runtime.path.display().to_string()),
                    "",
                )
                .trim()
                .to_string(),
            result: out.describe(),
            stderr: out.stderr.clone(),
        });
    }

    /// `RUNTIME --root ROOT ARGS...`, output captured in the check's dir.
    pub fn rt(&mut self, args: &[&str]) -> CmdOut {
        let mut c = self.runtime_cmd();
        c.args(args);
        let n = self.next();
        let out = run_to_files(
            c,
            &self.dir.join(format!("cmd{n}.out")),
            &self.dir.join(format!("cmd{n}.err")),
            COMMAND_TIMEOUT,
        );
        self.record(&out);
        out
    }

    /// Like [`Ctx::rt`] with a working directory and a timeout of its own.
    pub fn rt_in(&mut self, cwd: &Path, args: &[&str], timeout: Duration) -> CmdOut {
        let mut c = self.runtime_cmd();
        c.args(args).current_dir(cwd);
        let n = self.next();
        let out = run_to_files(
            c,
            &self.dir.join(format!("cmd{n}.out")),
            &self.dir.join(format!("cmd{n}.err")),
            timeout,
        );
        self.record(&out);
        out
    }

    /// `create --bundle B [FLAGS] ID`. The container inherits the command's stdout and
    /// stderr, which are the bundle's `stdout` and `stderr` files.
    pub fn create(&mut self, id: &str, b: &Bundle, flags: &[&str]) -> CmdOut {
        let mut c = self.runtime_cmd();
        c.arg("create")
            .arg("--bundle")
            .arg(&b.dir)
            .args(flags)
            .arg(id);
        let out = run_to_files(c, &b.stdout_path(), &b.stderr_path(), COMMAND_TIMEOUT);
        self.record(&out);
        out
    }

    pub fn create_ok(&mut self, id: &str, b: &Bundle, flags: &[&str]) -> Outcome {
        let out = self.create(id, b, flags);
        ensure!(
            out.ok(),
            "create failed ({}): {}",
            out.describe(),
            out.stderr_tail(3)
        );
        Ok(())
    }

    /// `run --bundle B ID` in the foreground, output in the bundle's files.
    pub fn run_fg(&mut self, id: &str, b: &Bundle) -> CmdOut {
        let mut c = self.runtime_cmd();
        c.arg("run").arg("--bundle").arg(&b.dir).arg(id);
        let out = run_to_files(c, &b.stdout_path(), &b.stderr_path(), RUN_TIMEOUT);
        self.record(&out);
        out
    }

    /// Runs the bundle in the foreground and returns the probe's report: the last line of
    /// stdout that is JSON.
    pub fn probe(&mut self, b: &Bundle) -> Result<Value, Fail> {
        b.write()?;
        let id = self.new_id();
        let out = self.run_fg(&id, b);
        ensure!(
            out.ok(),
            "run failed ({}): {}",
            out.describe(),
            out.stderr_tail(3)
        );
        last_json(&out.stdout)
            .ok_or_else(|| Fail::Fail(format!("no report from the probe: {:?}", out.stdout)))
    }

    pub fn start_ok(&mut self, id: &str) -> Outcome {
        let out = self.rt(&["start", id]);
        ensure!(
            out.ok(),
            "start failed ({}): {}",
            out.describe(),
            out.stderr_tail(3)
        );
        Ok(())
    }

    pub fn state(&mut self, id: &str) -> Result<Value, Fail> {
        let out = self.rt(&["state", id]);
        ensure!(
            out.ok(),
            "state failed ({}): {}",
            out.describe(),
            out.stderr_tail(3)
        );
        serde_json::from_str(&out.stdout)
            .map_err(|e| Fail::Fail(format!("state is not JSON ({e}): {:?}", out.stdout)))
    }

    pub fn status(&mut self, id: &str) -> Result<String, Fail> {
        Ok(self.state(id)?["status"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    pub fn pid(&mut self, id: &str) -> Result<i64, Fail> {
        let st = self.state(id)?;
        st["pid"]
            .as_i64()
            .filter(|p| *p > 0)
            .ok_or_else(|| Fail::Fail(format!("state has no pid > 0: {st}")))
    }

    /// Polls `state` until the status is `want`.
    pub fn wait_status(&mut self, id: &str, want: &str, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status(id)?;
            if s == want {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "status still {s:?} after {timeout:?}, wanted {want:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Creates and starts the bundle's container; returns its id.
    pub fn create_start(&mut self, b: &Bundle) -> Result<String, Fail> {
        b.write()?;
        let id = self.new_id();
        self.create_ok(&id, b, &[])?;
        self.start_ok(&id)?;
        Ok(id)
    }

    /// A diagnostic line for the report, shown even when the check passes.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// The verbose log of this check's runtime commands.
    pub fn log_text(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for e in &self.log {
            lines.push(format!("$ {} -> {}", e.line, e.result));
            let t = tail(&e.stderr, 6);
            if !t.is_empty() {
                lines.push(format!("  stderr: {t}"));
            }
        }
        lines
    }
}

/// The last line of `text` that parses as a JSON object.
pub fn last_json(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(Value::is_object)
}

/// Polls until `cond` holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A check's result after cleanup.
#[derive(Debug, Clone)]
pub struct Finished {
    pub outcome: Outcome,
    /// Problems found by the cleanup (leftover cgroups, mounts). They fail the check.
    pub leftovers: Vec<String>,
    pub log: Vec<String>,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

/// Runs one check and cleans up after it.
pub fn run_one(env: &Env, index: usize, check: &Check) -> Finished {
    let started = Instant::now();
    let dir = env.work.join(format!("{index:03}-{}", check.id));
    let _ = fs::create_dir_all(&dir);
    let mut ctx = Ctx::new(env, index, dir.clone());
    let outcome =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (check.run)(&mut ctx))) {
            Ok(o) => o,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(Fail::Fail(format!("the check panicked: {msg}")))
            }
        };
    let leftovers = cleanup(&mut ctx);
    let log = ctx.log_text();
    Finished {
        outcome,
        leftovers,
        log,
        notes: std::mem::take(&mut ctx.notes),
        elapsed: started.elapsed(),
    }
}

/// `delete --force` of every container the check made, then: no cgroup left for any of its
/// bundles' cgroupsPaths, no mounts under its dir, the dir removed.
fn cleanup(ctx: &mut Ctx) -> Vec<String> {
    let mut problems = Vec::new();
    for id in ctx.containers.clone() {
        let mut c = Command::new(&ctx.env.runtime.path);
        c.arg("--root")
            .arg(&ctx.root)
            .args(["delete", "--force", &id]);
        let _ = run_to_files(
            c,
            &ctx.dir.join("cleanup.out"),
            &ctx.dir.join("cleanup.err"),
            COMMAND_TIMEOUT,
        );
    }
    for cg in ctx.cgroups.clone() {
        let mut dirs = ctx.env.host.cgroup_dirs(&cg);
        if dirs.is_empty() {
            continue;
        }
        problems.push(format!(
            "cgroup left behind after delete: {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        remove_cgroup_dirs(&mut dirs);
    }
    problems.extend(remove_tree(&ctx.dir));
    problems
}

/// Kills whatever is in the directories, then removes them (deepest first).
fn remove_cgroup_dirs(dirs: &mut [PathBuf]) {
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs.iter() {
        for pid in fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a pid read from the cgroup we own.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for d in dirs.iter() {
        let _ = wait_until(Duration::from_secs(2), || fs::remove_dir(d).is_ok());
    }
}

/// Detaches mounts under `dir` (a runtime bug can leave one in our namespace, and removing
/// through it would delete host files), then removes the tree.
pub fn remove_tree(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let under = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = crate::host::mountinfo()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(d))
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        v.dedup();
        v
    };
    for m in under(dir) {
        if let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2 with a NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let left = under(dir);
    if !left.is_empty() {
        problems.push(format!(
            "not removing {}: still mounted {left:?}",
            dir.display()
        ));
        return problems;
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            problems.push(format!("removing {}: {e}", dir.display()));
        }
    }
    problems
}

/// Runs `checks` on `jobs` threads; `on_done(index, result)` is called on the calling thread
/// in completion order.
pub fn run_pool(
    env: &Env,
    checks: &[&Check],
    jobs: usize,
    mut on_done: impl FnMut(usize, Finished),
) {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            let tx = tx.clone();
            let next = &next;
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(check) = checks.get(i) else { break };
                let f = run_one(env, i + 1, check);
                if tx.send((i, f)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, f) in rx {
            on_done(i, f);
        }
    });
}
