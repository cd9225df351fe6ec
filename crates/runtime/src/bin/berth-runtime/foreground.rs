//! Staying in the foreground as a container process's parent (for `run` and `exec`): forward
//! the signals we get to it, copy bytes between our terminal and its pty when it has one,
//! and return its exit status (128+signal when it was killed).

use anyhow::{Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Blocks the signals we forward (and SIGCHLD) and returns a signalfd for them. Call before
/// the process exists, so neither its exit nor a signal for it can slip past; the child
/// resets its mask before exec.
pub fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(*s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("blocking signals")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).context("signalfd")
}

/// Supervises `pid` until it exits; with `pty`, our terminal is raw for the duration.
pub fn supervise(pid: Pid, sfd: &SignalFd, pty: Option<&OwnedFd>) -> Result<i32> {
    let _raw = match pty {
        Some(master) => {
            copy_winsize(master);
            RawMode::enter()
        }
        None => None,
    };
    wait_loop(pid, sfd, pty)
}

/// Waits for the container, forwarding signals and (with a pty) copying bytes.
fn wait_loop(pid: Pid, sfd: &SignalFd, pty: Option<&OwnedFd>) -> Result<i32> {
    let stdin = std::io::stdin();
    let mut stdin_open = pty.is_some();
    let mut master_open = pty.is_some();
    let mut exit: Option<i32> = None;
    let mut buf = [0u8; 8192];
    loop {
        if exit.is_none() {
            exit = reap(pid)?;
        }
        if let Some(code) = exit {
            if !master_open {
                return Ok(code);
            }
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = pty.filter(|_| master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the container is gone, drain what is left on the pty without blocking.
        let timeout = if exit.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
            Ok(0) => return Ok(exit.unwrap_or(0)),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            if let Some(info) = sfd.read_signal().context("reading signals")? {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGWINCH {
                    if let Some(m) = pty {
                        copy_winsize(m);
                    }
                } else if signo != libc::SIGCHLD && exit.is_none() {
                    // Only while the child is unreaped: after waitpid its pid may already
                    // belong to someone else.
                    // SAFETY: kill(2) to forward a signal to our own, unreaped child.
                    unsafe { libc::kill(pid.as_raw(), signo) };
                }
            }
        }
        let mut idx = 1;
        if let Some(m) = pty.filter(|_| master_open) {
            if ready[idx] {
                match nix::unistd::read(m, &mut buf) {
                    Ok(0) | Err(_) => master_open = false,
                    Ok(n) => write_all(std::io::stdout().as_fd(), &buf[..n]),
                }
            }
            idx += 1;
        }
        if stdin_open && ready.get(idx).copied().unwrap_or(false) {
            match (nix::unistd::read(stdin.as_fd(), &mut buf), pty) {
                (Ok(n), Some(m)) if n > 0 => write_all(m.as_fd(), &buf[..n]),
                _ => stdin_open = false,
            }
        }
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// Gives the container's terminal the size of ours.
fn copy_winsize(master: &OwnedFd) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a valid winsize struct.
    unsafe {
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Our terminal in raw mode for as long as this lives (keys go to the container as typed).
struct RawMode(Termios);

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
    }
}

fn reap(pid: Pid) -> Result<Option<i32>> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)).context("waiting for the container")? {
        WaitStatus::Exited(_, code) => Ok(Some(code)),
        WaitStatus::Signaled(_, sig, _) => Ok(Some(128 + sig as i32)),
        _ => Ok(None),
    }
}
