//! The shim hands itself over to a fresh image of its own binary once it has been idle for
//! a moment after the start (`Server::hand_off_when_idle`).
//!
//! Creating a container runs most of the runtime library (spec parsing, namespaces, mounts,
//! cgroups, seccomp), and the pages that code faulted in stay in the shim's resident set for
//! as long as the container lives, although the shim never runs that code again: about
//! 2 MB of text and 0.3 MB of heap. A shim lives as long as its container and there is one
//! per container, so the shim re-executes `/proc/self/exe serve` with the open descriptors
//! (listening socket, the container's stdio, the log), the log's partial lines and the few
//! facts the event loop needs. The container's init stays our child: the pid, the
//! subreaper flag, the blocked SIGCHLD and any pending SIGCHLD all survive execve(2).
//! Waiting for an idle moment keeps the exec off the start (a `run --rm` of a short
//! program never pays for it) and out of any client's or exec's way. An exec (the runtime
//! library again) or an attached session that has ended arms another handoff; finished
//! execs' exit codes go along.
//!
//! `serve` is not a user command: its argument is this module's JSON, and it refuses
//! anything else.

use crate::json_log::JsonLog;
use crate::launch::{self, Launched, OwnStdio, Stdio};
use crate::server::Server;
use anyhow::{bail, Context as _, Result};
use berth_runtime::state::StateRoot;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// The subcommand of the fresh image.
pub const SERVE: &str = "serve";

/// Everything `Server::new` takes, with descriptors as numbers.
#[derive(Serialize, Deserialize)]
struct Handoff {
    id: String,
    bundle: PathBuf,
    runtime_root: PathBuf,
    terminal: bool,
    stdin: bool,
    state_dir: PathBuf,
    init: i32,
    started: bool,
    listener: RawFd,
    /// The pty master, or the shim's ends of stdin (optional), stdout and stderr.
    pty: Option<RawFd>,
    stdin_fd: Option<RawFd>,
    stdout_fd: Option<RawFd>,
    stderr_fd: Option<RawFd>,
    log: RawFd,
    /// The log's partial lines of stdout and stderr (a prompt without its newline).
    partial: [Vec<u8>; 2],
    null: RawFd,
    own_log: RawFd,
    /// Clients waiting for the exit (`{"op":"wait"}` answered later).
    #[serde(default)]
    waiters: Vec<RawFd>,
    /// Finished execs' (id, exit code), for `exec_wait`.
    #[serde(default)]
    past_execs: Vec<(String, i32)>,
}

/// What `setup` made, before it becomes a [`Server`].
pub struct Parts {
    pub req: launch::Request,
    pub own: OwnStdio,
    pub state_dir: PathBuf,
    pub listener: UnixListener,
    pub launched: Launched,
    pub log: std::fs::File,
    pub started: bool,
    /// Connections of clients waiting for the exit.
    pub waiters: Vec<UnixStream>,
    /// Finished execs' (id, exit code), from an earlier image.
    pub past_execs: Vec<(String, i32)>,
}

impl Parts {
    pub fn into_server(self, partial: [Vec<u8>; 2]) -> Result<Server> {
        let mut server = Server::new(
            self.req,
            self.own,
            self.state_dir,
            self.listener,
            sigchld_fd()?,
            self.launched,
            JsonLog::resume(self.log, partial),
            self.started,
            self.waiters,
        )?;
        server.remember_execs(self.past_execs);
        Ok(server)
    }
}

/// The signalfd the event loop reads exits from. SIGCHLD must already be blocked.
pub fn sigchld_fd() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")
}

fn set_cloexec(fd: RawFd, on: bool) -> Result<()> {
    // SAFETY: fcntl(2) on a descriptor number; only FD_CLOEXEC changes.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error()).context(format!("descriptor {fd}"));
    }
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } < 0 {
        return Err(std::io::Error::last_os_error()).context(format!("descriptor {fd}"));
    }
    Ok(())
}

/// Re-executes the shim as `serve` with `parts`. Returns only if that failed, with the
/// parts back (every descriptor close-on-exec again) so the caller can serve in this image.
pub fn reexec(parts: Parts, partial: [Vec<u8>; 2]) -> (Parts, anyhow::Error) {
    let (pty, stdin_fd, stdout_fd, stderr_fd) = match &parts.launched.stdio {
        Stdio::Terminal { master } => (Some(master.as_raw_fd()), None, None, None),
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (
            None,
            stdin.as_ref().map(|f| f.as_raw_fd()),
            Some(stdout.as_raw_fd()),
            Some(stderr.as_raw_fd()),
        ),
    };
    let handoff = Handoff {
        id: parts.req.id.clone(),
        bundle: parts.req.bundle.clone(),
        runtime_root: parts.req.root.path.clone(),
        terminal: parts.req.terminal,
        stdin: parts.req.stdin,
        state_dir: parts.state_dir.clone(),
        init: parts.launched.pid.as_raw(),
        started: parts.started,
        listener: parts.listener.as_raw_fd(),
        pty,
        stdin_fd,
        stdout_fd,
        stderr_fd,
        log: parts.log.as_raw_fd(),
        partial,
        null: parts.own.null.as_raw_fd(),
        own_log: parts.own.log.as_raw_fd(),
        waiters: parts.waiters.iter().map(|w| w.as_raw_fd()).collect(),
        past_execs: parts.past_execs.clone(),
    };
    let fds = handoff.fds();
    let err = (|| -> Result<std::convert::Infallible> {
        let json = serde_json::to_string(&handoff).context("encoding the handoff")?;
        let argv = [
            CString::new("berth-shim")?,
            CString::new(SERVE)?,
            // The id in the command line lets the daemon find a leftover shim by it.
            CString::new(format!("--id={}", handoff.id))?,
            CString::new(json)?,
        ];
        for fd in &fds {
            set_cloexec(*fd, false)?;
        }
        let exe = CString::new("/proc/self/exe")?;
        nix::unistd::execv(&exe, &argv).context("execve /proc/self/exe")
    })()
    .err()
    .unwrap_or_else(|| anyhow::anyhow!("execve returned"));
    for fd in &fds {
        let _ = set_cloexec(*fd, true);
    }
    (parts, err)
}

impl Handoff {
    fn fds(&self) -> Vec<RawFd> {
        [self.listener, self.log, self.null, self.own_log]
            .into_iter()
            .chain(self.pty)
            .chain(self.stdin_fd)
            .chain(self.stdout_fd)
            .chain(self.stderr_fd)
            .chain(self.waiters.iter().copied())
            .collect()
    }

    /// Takes ownership of the inherited descriptors, after checking each is open and
    /// distinct: a handoff is only ever made by `reexec`, and anything else is refused
    /// before a descriptor is adopted.
    fn into_parts(self) -> Result<(Parts, [Vec<u8>; 2])> {
        let fds = self.fds();
        for (i, fd) in fds.iter().enumerate() {
            if *fd <= 2 || fds[..i].contains(fd) {
                bail!("not a handoff from `berth-shim start`: descriptor {fd}");
            }
            set_cloexec(*fd, true)?;
        }
        // SAFETY: each number is an open descriptor (checked above), distinct, and ours
        // alone: `reexec` passed them and nothing else in this image refers to them.
        let own = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
        let stdio = match self.pty {
            Some(master) => Stdio::Terminal {
                master: own(master),
            },
            None => match (self.stdout_fd, self.stderr_fd) {
                (Some(out), Some(err)) => Stdio::Pipes {
                    stdin: self.stdin_fd.map(own),
                    stdout: own(out),
                    stderr: own(err),
                },
                _ => bail!("not a handoff from `berth-shim start`: no output descriptors"),
            },
        };
        let parts = Parts {
            req: launch::Request {
                id: self.id,
                bundle: self.bundle,
                root: StateRoot::new(self.runtime_root),
                terminal: self.terminal,
                stdin: self.stdin,
            },
            own: OwnStdio {
                null: own(self.null),
                log: own(self.own_log),
            },
            state_dir: self.state_dir,
            listener: UnixListener::from(own(self.listener)),
            launched: Launched {
                pid: Pid::from_raw(self.init),
                stdio,
            },
            log: std::fs::File::from(own(self.log)),
            started: self.started,
            waiters: self
                .waiters
                .iter()
                .map(|w| UnixStream::from(own(*w)))
                .collect(),
            past_execs: self.past_execs,
        };
        Ok((parts, self.partial))
    }
}

/// `berth-shim serve --id=ID HANDOFF`: the event loop, in the fresh image.
pub fn serve(args: &[String]) -> i32 {
    // comm would read "exe" after an exec of /proc/self/exe.
    // SAFETY: prctl with a pointer to a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"berth-shim".as_ptr(), 0, 0, 0) };
    let parts = match args {
        [_, json] => serde_json::from_str::<Handoff>(json)
            .context("not a handoff from `berth-shim start`")
            .and_then(Handoff::into_parts),
        _ => Err(anyhow::anyhow!(
            "`serve` is internal to `berth-shim start` (usage: berth-shim start --help)"
        )),
    };
    let server = parts.and_then(|(p, partial)| {
        let (root, id) = (p.req.root.path.clone(), p.req.id.clone());
        p.into_server(partial).inspect_err(|_| {
            // Nobody can reach this container any more: take it down rather than orphan it.
            let _ = berth_runtime::lifecycle::delete(&StateRoot::new(root), &id, true);
        })
    });
    match server {
        Ok(server) => {
            // In shim.log: when the container's shim last shed its pages.
            eprintln!("berth-shim: serving from a fresh image");
            server.run()
        }
        Err(e) => {
            eprintln!("berth-shim: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_refuses_what_start_did_not_make() {
        assert_eq!(serve(&["--id=x".into()]), 1);
        assert_eq!(serve(&["--id=x".into(), "{}".into()]), 1);
        // Standard descriptors are never handed over.
        let h = Handoff {
            id: "x".into(),
            bundle: "/b".into(),
            runtime_root: "/r".into(),
            terminal: false,
            stdin: false,
            state_dir: "/s".into(),
            init: 1,
            started: true,
            listener: 0,
            pty: None,
            stdin_fd: None,
            stdout_fd: Some(1),
            stderr_fd: Some(2),
            log: 0,
            partial: [Vec::new(), Vec::new()],
            null: 0,
            own_log: 0,
            waiters: Vec::new(),
            past_execs: Vec::new(),
        };
        let err = h
            .into_parts()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not a handoff"), "{err}");
    }
}
