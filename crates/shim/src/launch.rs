//! Creating (and starting) the container through the runtime library with the shim holding
//! the other end of its stdio: three pipes, or the pty master the init sends back.
//!
//! The init is cloned from this process, so without a terminal its stdio is whatever our
//! descriptors 0, 1 and 2 are during `create`: the pipes' container ends are put there for
//! the call and /dev/null (and our log) put back right after, so that we hold no copy of a
//! write end and see EOF when the container's last process closes its output.

use anyhow::{Context as _, Result};
use berth_runtime::launcher::{self, CreateOptions};
use berth_runtime::lifecycle;
use berth_runtime::state::StateRoot;
use nix::fcntl::OFlag;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// What `start` asked for.
pub struct Request {
    pub id: String,
    pub bundle: PathBuf,
    pub root: StateRoot,
    pub terminal: bool,
    pub stdin: bool,
}

/// The shim's ends of the container's stdio.
pub enum Stdio {
    Pipes {
        /// None without `--stdin`: the container's stdin is /dev/null.
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Terminal {
        master: OwnedFd,
    },
}

pub struct Launched {
    pub pid: Pid,
    pub stdio: Stdio,
}

/// Our own descriptors 0, 1 and 2 when no container is being created.
pub struct OwnStdio {
    pub null: OwnedFd,
    pub log: OwnedFd,
}

impl OwnStdio {
    pub fn restore(&self) {
        dup_onto(self.null.as_raw_fd(), 0);
        dup_onto(self.null.as_raw_fd(), 1);
        dup_onto(self.log.as_raw_fd(), 2);
    }
}

fn dup_onto(from: RawFd, to: RawFd) {
    // SAFETY: dup2 onto a standard descriptor; both are open.
    unsafe { libc::dup2(from, to) };
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe for the container's stdio")
}

/// Creates the container; it is parked until [`start`].
pub fn create(req: &Request, own: &OwnStdio) -> Result<Launched> {
    let opts = CreateOptions {
        id: req.id.clone(),
        bundle: req.bundle.clone(),
        ..Default::default()
    };
    if req.terminal {
        let (ours, theirs) = berth_runtime::console::socket_pair()?;
        let c = launcher::create_with_console(&req.root, &opts, theirs)?;
        let master = match berth_runtime::console::receive_pty(&ours) {
            Ok(m) => m,
            Err(e) => {
                let _ = lifecycle::delete(&req.root, &req.id, true);
                return Err(e.into());
            }
        };
        return Ok(Launched {
            pid: Pid::from_raw(c.record.pid),
            stdio: Stdio::Terminal { master },
        });
    }
    let (stdin_r, stdin_w) = match req.stdin {
        true => {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        }
        false => (None, None),
    };
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    dup_onto(
        stdin_r
            .as_ref()
            .map_or(own.null.as_raw_fd(), |r| r.as_raw_fd()),
        0,
    );
    dup_onto(stdout_w.as_raw_fd(), 1);
    dup_onto(stderr_w.as_raw_fd(), 2);
    let created = launcher::create(&req.root, &opts);
    own.restore();
    drop((stdin_r, stdout_w, stderr_w));
    let c = created?;
    Ok(Launched {
        pid: Pid::from_raw(c.record.pid),
        stdio: Stdio::Pipes {
            stdin: stdin_w,
            stdout: stdout_r,
            stderr: stderr_r,
        },
    })
}

/// Lets the parked init exec the program; a container that cannot start is deleted.
pub fn start(req: &Request) -> Result<()> {
    if let Err(e) = lifecycle::start(&req.root, &req.id) {
        let _ = lifecycle::delete(&req.root, &req.id, true);
        return Err(e.into());
    }
    Ok(())
}
