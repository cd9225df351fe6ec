//! A berthd on temp roots and nothing else (no image imported, no bridge of its own, no
//! leak check), for tests of the daemon process and its endpoints that need no container.
//! Killed and reaped on drop, so a failing test leaves no daemon behind (the temp dir goes
//! after it).

#![allow(dead_code)] // each test binary uses a part

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct BareDaemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
}

impl BareDaemon {
    /// Starts berthd and waits until it listens.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = berthd_in(dir.path())
            .arg("--log-level")
            .arg("debug")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("berthd.log")).expect("log file"),
            ))
            .spawn()
            .expect("spawn berthd");
        let mut daemon = Self {
            child: Some(child),
            sock: dir.path().join("exec/berth.sock"),
            dir,
        };
        daemon.wait_ready();
        daemon
    }

    /// Waits until berthd listens on its socket; fails the test with its log if it exits
    /// first or does not listen within 15 s.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                panic!("berthd exited early with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("berthd did not listen within 15 s:\n{}", self.log());
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("daemon running")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            // A private, empty config: no contexts or credentials of the machine's user.
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .output()
            .expect("run docker")
    }
}

/// berthd with its socket (`exec/berth.sock`), data root and exec root under `dir`.
pub fn berthd_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berthd"));
    cmd.arg("--host")
        .arg(format!("unix://{}", dir.join("exec/berth.sock").display()))
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"));
    cmd
}

impl Drop for BareDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
