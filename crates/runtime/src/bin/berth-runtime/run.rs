//! `run`: create, start and, unless detached, stay as the container's parent: forward the
//! signals we receive to it and exit with its status (128+signal when it was killed).

use anyhow::{Context as _, Result};
use berth_runtime::launcher::{self, CreateOptions};
use berth_runtime::lifecycle;
use berth_runtime::state::StateRoot;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

pub fn run(root: &StateRoot, opts: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    if detach {
        launcher::create(root, opts)?;
        start_or_delete(root, &opts.id)?;
        return Ok(0);
    }
    // Block before the container exists, so that neither its exit (SIGCHLD) nor a signal for
    // it can slip past the signalfd. The init resets its own mask before exec.
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(*s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("blocking signals")?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).context("signalfd")?;

    let container = launcher::create(root, opts)?;
    let pid = Pid::from_raw(container.record.pid);
    start_or_delete(root, &opts.id)?;
    let code = loop {
        if let Some(code) = reap(pid)? {
            break code;
        }
        let Some(info) = sfd.read_signal().context("reading signals")? else {
            continue;
        };
        let signo = info.ssi_signo as i32;
        if signo != libc::SIGCHLD {
            // SAFETY: kill(2) to forward a signal to our own child.
            unsafe { libc::kill(pid.as_raw(), signo) };
        }
    };
    if !keep {
        lifecycle::delete(root, &opts.id, true)?;
    }
    Ok(code)
}

/// A failed start leaves a parked container nobody asked to keep: remove it.
fn start_or_delete(root: &StateRoot, id: &str) -> Result<()> {
    if let Err(e) = lifecycle::start(root, id) {
        let _ = lifecycle::delete(root, id, true);
        return Err(e.into());
    }
    Ok(())
}

fn reap(pid: Pid) -> Result<Option<i32>> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)).context("waiting for the container")? {
        WaitStatus::Exited(_, code) => Ok(Some(code)),
        WaitStatus::Signaled(_, sig, _) => Ok(Some(128 + sig as i32)),
        _ => Ok(None),
    }
}
