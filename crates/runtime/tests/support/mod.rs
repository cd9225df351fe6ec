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

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod fixtures;
pub use fixtures::*;

/// The `berth-runtime` binary cargo built for these tests.
pub fn runtime_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime"))
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
