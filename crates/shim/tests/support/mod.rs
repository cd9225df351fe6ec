//! Shared by the shim's integration tests: the runtime's test fixtures (busybox bundles,
//! temp dirs, cgroup inspection; included by path) and [`Shim`], a started `berth-shim`
//! with a guard that kills and deletes whatever is left and checks that nothing stayed
//! behind.

// Each test file uses a subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../../../runtime/tests/support/fixtures.rs"]
mod fixtures;
pub use fixtures::*;

/// The `berth-shim` binary cargo built for these tests, or `$BERTH_SHIM_BIN` (to measure a
/// release build, say).
pub fn shim_bin() -> PathBuf {
    std::env::var_os("BERTH_SHIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth-shim")))
}

/// True while `pid` is a live (non-zombie) process whose command line mentions `marker`
/// (so a recycled pid is not mistaken for the shim).
pub fn process_alive(pid: i32, marker: &str) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    cmdline.contains(marker) && !matches!(process_state(pid), None | Some('Z'))
}

/// Pids of live processes whose command line mentions `marker`.
pub fn processes_mentioning(marker: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != std::process::id() as i32 && process_alive(pid, marker))
        .collect()
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One container under a `berth-shim`: its bundle, a runtime root and a state dir. Drop
/// kills and deletes what is left, then fails the test if a shim process, the runtime's
/// state or a cgroup directory stayed behind.
pub struct Shim {
    pub bundle: Bundle,
    pub dirs: TempDir,
    pub id: String,
}

impl Shim {
    /// How many times the shim has started serving from a fresh image (handoff.rs logs
    /// it in shim.log).
    pub fn handoffs(&self) -> usize {
        fs::read_to_string(self.state_dir().join("shim.log"))
            .unwrap_or_default()
            .matches("serving from a fresh image")
            .count()
    }
    pub fn new(bundle: Bundle) -> Shim {
        let dirs = TempDir::new();
        let id = format!("shim-{}", dirs.unique());
        Shim { bundle, dirs, id }
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.dirs.path().join("root")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dirs.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("shim.sock")
    }

    /// `berth-shim start ...` with the extra `flags`, not yet run.
    pub fn start_command(&self, flags: &[&str]) -> Command {
        let mut cmd = Command::new(shim_bin());
        cmd.arg("start")
            .arg("--id")
            .arg(&self.id)
            .arg("--bundle")
            .arg(self.bundle.path())
            .arg("--runtime-root")
            .arg(self.runtime_root())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(flags);
        cmd
    }

    /// Runs `berth-shim start` to its return (the shim itself stays behind).
    pub fn start(&self, flags: &[&str]) -> Output {
        output_with_timeout(self.start_command(flags), COMMAND_TIMEOUT)
    }

    pub fn pid(&self) -> i32 {
        let text = fs::read_to_string(self.state_dir().join("shim.pid")).expect("shim.pid");
        text.trim().parse().expect("shim.pid holds a pid")
    }

    pub fn alive(&self) -> bool {
        let Ok(text) = fs::read_to_string(self.state_dir().join("shim.pid")) else {
            return false;
        };
        let pid = text.trim().parse().unwrap_or(0);
        process_alive(pid, &self.id)
    }

    pub fn connect(&self) -> std::os::unix::net::UnixStream {
        let s = must(
            std::os::unix::net::UnixStream::connect(self.socket()),
            format!("connecting to {}", self.socket().display()),
        );
        s.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(COMMAND_TIMEOUT)).unwrap();
        s
    }

    /// Sends one request and returns the answer line as JSON.
    pub fn request(&self, req: Value) -> Value {
        use std::io::{BufRead, Write};
        let mut s = self.connect();
        let mut line = serde_json::to_vec(&req).unwrap();
        line.push(b'\n');
        must(s.write_all(&line), "sending a request");
        let mut answer = String::new();
        must(
            io::BufReader::new(s).read_line(&mut answer),
            format!("reading the answer to {req}"),
        );
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("answer {answer:?}: {e}"))
    }

    pub fn runtime_state_dir(&self) -> PathBuf {
        self.runtime_root().join(&self.id)
    }

    /// What is left on the host after cleaning up as far as possible.
    fn clean_up(&self) -> Vec<String> {
        let mut left = Vec::new();
        if self.alive() {
            let pid = self.pid();
            let _ = std::panic::catch_unwind(|| {
                self.request(json!({"op": "kill", "signal": 9}));
                self.request(json!({"op": "wait"}));
                self.request(json!({"op": "delete"}));
            });
            if !eventually(Duration::from_secs(5), || !process_alive(pid, &self.id)) {
                left.push(format!("shim {pid} still running"));
                // SAFETY: kill(2) of the shim we started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let stray = processes_mentioning(&self.id);
        if !stray.is_empty() {
            left.push(format!("processes of {}: {stray:?}", self.id));
        }
        if self.runtime_state_dir().exists() {
            left.push(format!("{} exists", self.runtime_state_dir().display()));
            let root = berth_runtime::state::StateRoot::new(self.runtime_root());
            let _ = berth_runtime::lifecycle::delete(&root, &self.id, true);
        }
        if let Some(cg) = self.bundle.cgroups_path() {
            let dirs = host_cgroup_dirs(&cg);
            if !dirs.is_empty() {
                left.push(format!("cgroup dirs left: {dirs:?}"));
                for d in dirs.iter().rev() {
                    let _ = fs::remove_dir(d);
                }
            }
        }
        left
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let left = self.clean_up();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("the shim left things behind: {left:?}");
        }
    }
}

/// Splits Docker's multiplexed stream into (stream, payload) frames; the tail that is not
/// a whole frame yet is left in `buf`.
pub fn take_frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while buf.len() >= 8 {
        assert_eq!(&buf[1..4], &[0, 0, 0], "frame header {:?}", &buf[..8]);
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + len {
            break;
        }
        frames.push((buf[0], buf[8..8 + len].to_vec()));
        buf.drain(..8 + len);
    }
    frames
}
