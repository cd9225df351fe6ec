//! `run`: create, start and, unless detached, stay in the foreground as the container's
//! parent (see foreground.rs). With `process.terminal` and no `--console-socket`, the pty is
//! ours to proxy.

use crate::foreground;
use anyhow::Result;
use berth_runtime::config::Bundle;
use berth_runtime::launcher::{self, CreateOptions};
use berth_runtime::lifecycle;
use berth_runtime::state::StateRoot;
use nix::unistd::Pid;

pub fn run(root: &StateRoot, opts: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    if detach {
        launcher::create(root, opts)?;
        start_or_delete(root, &opts.id)?;
        return Ok(0);
    }
    let sfd = foreground::block_signals()?;
    let wants_tty = opts.console_socket.is_none()
        && Bundle::load(&opts.bundle)
            .ok()
            .and_then(|b| b.spec.process().as_ref().and_then(|p| p.terminal()))
            .unwrap_or(false);
    let (container, pty) = if wants_tty {
        let (ours, theirs) = berth_runtime::console::socket_pair()?;
        let c = launcher::create_with_console(root, opts, theirs)?;
        match berth_runtime::console::receive_pty(&ours).map_err(anyhow::Error::from) {
            Ok(m) => (c, Some(m)),
            Err(e) => {
                let _ = lifecycle::delete(root, &opts.id, true);
                return Err(e);
            }
        }
    } else {
        (launcher::create(root, opts)?, None)
    };
    start_or_delete(root, &opts.id)?;
    let code = foreground::supervise(Pid::from_raw(container.record.pid), &sfd, pty.as_ref())?;
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
