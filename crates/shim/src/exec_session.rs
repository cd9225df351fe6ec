//! Processes started in the running container by `exec` requests (`docker exec`): each
//! has its own pipes or pty, held here, and its exit code is kept for `exec_wait` after it
//! is reaped.
//!
//! The process is cloned from the shim by the runtime library (no `berth-runtime exec`
//! child), so the shim is its parent and reaps it. Without a terminal its stdio is whatever
//! our descriptors 0, 1 and 2 are during the call, as for the container's init (see
//! `launch`): the pipes' far ends go there for the call and ours come back right after.

use crate::launch::{self, OwnStdio};
use crate::process_io::{set_nonblocking, Output, StdinWriter};
use crate::protocol::{STDERR, STDOUT};
use anyhow::{Context as _, Result};
use berth_runtime::exec::{self, ExecOptions};
use nix::fcntl::OFlag;
use nix::unistd::Pid;
use oci_spec::runtime::Process;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

pub struct ExecSession {
    pub id: String,
    pub pid: Pid,
    pub stdin: StdinWriter,
    /// The pty master for `exec_resize`; output is then raw, not framed.
    pub pty: Option<OwnedFd>,
    pub outputs: Vec<Output>,
    pub exit_code: Option<i32>,
    /// When it exited, or last sent output after that: the drain grace counts from here.
    pub exited_at: Option<Instant>,
    /// Reaped and drained: the stream has ended and `exec_wait` answers at once.
    pub finished: bool,
}

/// What an `exec` request asked for.
pub struct ExecRequest {
    pub id: String,
    pub process: Process,
    pub terminal: bool,
    pub stdin: bool,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe for the exec's stdio")
}

fn dup_onto(from: RawFd, to: RawFd) {
    // SAFETY: dup2 onto a standard descriptor; both are open.
    unsafe { libc::dup2(from, to) };
}

/// Starts the process in the container `container` and returns its session. The error is
/// the runtime's (the program not found, a bad user, ...), the process then is gone.
pub fn spawn(
    container: &launch::Request,
    own: &OwnStdio,
    req: ExecRequest,
) -> Result<ExecSession, berth_runtime::Error> {
    let mut process = req.process;
    // The request's flag decides: a terminal without the pty handshake would fail late.
    process.set_terminal(Some(req.terminal));
    let opts = ExecOptions {
        process,
        ..Default::default()
    };
    if req.terminal {
        let (ours, theirs) = berth_runtime::console::socket_pair()?;
        let pid = exec::exec(&container.root, &container.id, &opts, Some(theirs))?;
        let master = match berth_runtime::console::receive_pty(&ours) {
            Ok(m) => m,
            Err(e) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(e);
            }
        };
        let dup = |m: &OwnedFd| {
            m.try_clone().map_err(|source| berth_runtime::Error::Io {
                context: "dup of the exec's pty master".into(),
                source,
            })
        };
        let reader = dup(&master)?;
        set_nonblocking(reader.as_raw_fd());
        let writer = if req.stdin { Some(dup(&master)?) } else { None };
        return Ok(ExecSession {
            id: req.id,
            pid,
            stdin: StdinWriter::new(writer, true),
            pty: Some(master),
            outputs: vec![Output {
                fd: Some(reader),
                stream: STDOUT,
            }],
            exit_code: None,
            exited_at: None,
            finished: false,
        });
    }
    let io = |e: anyhow::Error| berth_runtime::Error::InvalidState(format!("{e:#}"));
    let (stdin_r, stdin_w) = match req.stdin {
        true => {
            let (r, w) = pipe().map_err(io)?;
            (Some(r), Some(w))
        }
        false => (None, None),
    };
    let (stdout_r, stdout_w) = pipe().map_err(io)?;
    let (stderr_r, stderr_w) = pipe().map_err(io)?;
    dup_onto(
        stdin_r
            .as_ref()
            .map_or(own.null.as_raw_fd(), |r| r.as_raw_fd()),
        0,
    );
    dup_onto(stdout_w.as_raw_fd(), 1);
    dup_onto(stderr_w.as_raw_fd(), 2);
    let started = exec::exec(&container.root, &container.id, &opts, None);
    own.restore();
    // Only the process holds the far ends now: its exit (and its children's) is our EOF.
    drop((stdin_r, stdout_w, stderr_w));
    let pid = started?;
    set_nonblocking(stdout_r.as_raw_fd());
    set_nonblocking(stderr_r.as_raw_fd());
    Ok(ExecSession {
        id: req.id,
        pid,
        stdin: StdinWriter::new(stdin_w, false),
        pty: None,
        outputs: vec![
            Output {
                fd: Some(stdout_r),
                stream: STDOUT,
            },
            Output {
                fd: Some(stderr_r),
                stream: STDERR,
            },
        ],
        exit_code: None,
        exited_at: None,
        finished: false,
    })
}

impl ExecSession {
    /// The process has exited and its output is drained: close everything we hold for it.
    pub fn finish(&mut self) {
        self.finished = true;
        self.stdin.discard();
        self.outputs.clear();
        self.pty = None;
    }

    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), String> {
        let Some(master) = &self.pty else {
            return Err(format!("exec {} has no terminal", self.id));
        };
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on the pty master.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(format!("resize: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}
