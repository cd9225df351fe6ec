//! The lifecycle operations after `create`: start, kill, delete, state, list. Each checks the
//! derived status first and changes nothing when the operation does not apply.

use crate::cgroups;
use crate::error::{Error, Result};
use crate::hooks;
use crate::launcher;
use crate::state::{Container, OciState, StateRoot, Status};
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

pub fn start(root: &StateRoot, id: &str) -> Result<()> {
    let c = root.load(id)?;
    match c.status() {
        Status::Created => {}
        Status::Stopped => {
            return Err(Error::InvalidState(
                "cannot start a container that has stopped".into(),
            ))
        }
        Status::Running | Status::Paused => {
            return Err(Error::InvalidState(
                "cannot start an already running container".into(),
            ))
        }
        Status::Creating => {
            return Err(Error::InvalidState(
                "cannot start a container that is being created".into(),
            ))
        }
    }
    launcher::signal_start(&c)?;
    // The socket's existence is what "created" means; it goes once the init has been told.
    let _ = std::fs::remove_file(c.start_socket());
    if let Some(list) = c.record.hooks.as_ref().and_then(|h| h.poststart().as_ref()) {
        for e in hooks::run_all_warn(list, &c.oci_state()) {
            tracing::warn!("poststart {e}");
        }
    }
    Ok(())
}

pub fn state(root: &StateRoot, id: &str) -> Result<OciState> {
    Ok(root.load(id)?.oci_state())
}

pub fn list(root: &StateRoot) -> Result<Vec<OciState>> {
    let mut out = Vec::new();
    for id in root.ids()? {
        // A container deleted while we list is simply not listed.
        if let Ok(c) = root.load(&id) {
            out.push(c.oci_state());
        }
    }
    Ok(out)
}

/// Sends `signal` to the init, or with `all` to every process in the container's cgroup.
pub fn kill(root: &StateRoot, id: &str, signal: i32, all: bool) -> Result<()> {
    let c = root.load(id)?;
    let status = c.status();
    if status == Status::Stopped && !all {
        return Err(Error::InvalidState("container not running".into()));
    }
    let pids = if all {
        cgroups::placement::pids(&leaves(&c))
    } else {
        vec![c.record.pid]
    };
    let sig = Signal::try_from(signal).ok();
    for pid in pids {
        let r = match sig {
            Some(s) => send_signal(Pid::from_raw(pid), s),
            // Real-time signals have no nix Signal; send the number directly.
            None => {
                // SAFETY: kill(2) with a pid and a signal number.
                if unsafe { libc::kill(pid, signal) } < 0 {
                    Err(nix::Error::last())
                } else {
                    Ok(())
                }
            }
        };
        match r {
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(e) => {
                return Err(Error::Sys {
                    context: format!("sending signal {signal} to {pid}"),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

fn leaves(c: &Container) -> Vec<std::path::PathBuf> {
    // The deepest directory of each hierarchy: the ones no other recorded dir is inside of.
    let dirs = &c.record.cgroup_dirs;
    dirs.iter()
        .filter(|d| !dirs.iter().any(|o| o != *d && o.starts_with(d)))
        .cloned()
        .collect()
}

/// Deletes a stopped (or still parked) container. `force` also kills a running one.
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    let c = match root.load(id) {
        Ok(c) => c,
        // runc: `delete --force` of a container that is already gone succeeds.
        Err(Error::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    match c.status() {
        Status::Stopped => {}
        Status::Created | Status::Creating => kill_and_wait(&c)?,
        Status::Running | Status::Paused if force => {
            if c.status() == Status::Paused {
                if let Some(f) = &c.record.freezer {
                    let thaw = if f.ends_with("cgroup.freeze") {
                        "0"
                    } else {
                        "THAWED"
                    };
                    let _ = std::fs::write(f, thaw);
                }
            }
            kill_and_wait(&c)?
        }
        s => {
            return Err(Error::InvalidState(format!(
                "cannot delete container {id} that is not stopped: {s}"
            )))
        }
    }
    destroy(&c)
}

/// SIGKILL to every process of the container, then wait until the init is gone.
fn kill_and_wait(c: &Container) -> Result<()> {
    let mut pids = cgroups::placement::pids(&leaves(c));
    if !pids.contains(&c.record.pid) {
        pids.push(c.record.pid);
    }
    for pid in pids {
        let _ = send_signal(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.status() != Status::Stopped {
        if Instant::now() > deadline {
            return Err(Error::InvalidState(format!(
                "container {} did not die after SIGKILL",
                c.record.id
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Removes what the container left on the host, runs poststop hooks, forgets it.
pub fn destroy(c: &Container) -> Result<()> {
    // Without a pid namespace the init's exit does not take its children along; whatever is
    // still in the cgroup belongs to the container and goes with it (as runc does).
    let leftover = cgroups::placement::pids(&leaves(c));
    for pid in &leftover {
        let _ = send_signal(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !leftover.is_empty()
        && !cgroups::placement::pids(&leaves(c)).is_empty()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    cgroups::placement::remove_dirs(&c.record.cgroup_dirs)?;
    if let Some(list) = c.record.hooks.as_ref().and_then(|h| h.poststop().as_ref()) {
        let mut st = c.oci_state();
        st.status = Status::Stopped;
        for e in hooks::run_all_warn(list, &st) {
            tracing::warn!("poststop {e}");
        }
    }
    std::fs::remove_dir_all(&c.dir).map_err(|e| Error::Io {
        context: format!("removing {}", c.dir.display()),
        source: e,
    })
}

/// Freezes the container (v1 freezer.state, v2 cgroup.freeze) and waits until it is frozen.
pub fn pause(root: &StateRoot, id: &str) -> Result<()> {
    let c = root.load(id)?;
    match c.status() {
        Status::Running => {}
        s => return Err(Error::InvalidState(format!("cannot pause a {s} container"))),
    }
    set_frozen(&c, true)
}

pub fn resume(root: &StateRoot, id: &str) -> Result<()> {
    let c = root.load(id)?;
    match c.status() {
        Status::Paused => {}
        s => {
            return Err(Error::InvalidState(format!(
                "cannot resume a {s} container: it is not paused"
            )))
        }
    }
    set_frozen(&c, false)
}

fn set_frozen(c: &Container, frozen: bool) -> Result<()> {
    let file = c.record.freezer.as_ref().ok_or_else(|| {
        Error::Cgroup("this host has no freezer for the container's cgroup".into())
    })?;
    let v2 = file.ends_with("cgroup.freeze");
    let value = match (v2, frozen) {
        (true, true) => "1",
        (true, false) => "0",
        (false, true) => "FROZEN",
        (false, false) => "THAWED",
    };
    std::fs::write(file, value)
        .map_err(|e| Error::Cgroup(format!("writing {value} to {}: {e}", file.display())))?;
    // v1 passes through FREEZING; v2 reports completion in cgroup.events ("frozen 1").
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = if v2 {
            let events =
                std::fs::read_to_string(file.with_file_name("cgroup.events")).unwrap_or_default();
            events
                .lines()
                .any(|l| l == if frozen { "frozen 1" } else { "frozen 0" })
        } else {
            std::fs::read_to_string(file).unwrap_or_default().trim() == value
        };
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Cgroup(format!(
                "{} did not reach {value}",
                file.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Pids of every process in the container's cgroup.
pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<i32>> {
    let c = root.load(id)?;
    Ok(cgroups::placement::pids(&leaves(&c)))
}
