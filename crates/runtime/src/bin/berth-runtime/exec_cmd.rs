//! `exec`'s command line: build the process from `--process` or from the container's own
//! process plus the inline flags (as runc does), then start it and, unless detached, stay in
//! the foreground until it exits.

use crate::cli::ExecArgs;
use crate::foreground;
use anyhow::{bail, Context as _, Result};
use berth_runtime::exec::{self, ExecOptions};
use berth_runtime::state::StateRoot;
use oci_spec::runtime::{Capabilities, Capability, Process};
use std::str::FromStr;

pub fn exec_cmd(root: &StateRoot, a: ExecArgs) -> Result<i32> {
    let process = build_process(root, &a)?;
    let terminal = process.terminal().unwrap_or(false);
    let opts = ExecOptions {
        process,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
    };
    if a.detach {
        if terminal && a.console_socket.is_none() {
            bail!("cannot allocate a terminal for a detached exec without --console-socket");
        }
        exec::exec(root, &a.id, &opts, None)?;
        return Ok(0);
    }
    let sfd = foreground::block_signals()?;
    if terminal && a.console_socket.is_none() {
        let (ours, theirs) = berth_runtime::console::socket_pair()?;
        let pid = exec::exec(root, &a.id, &opts, Some(theirs))?;
        let master = berth_runtime::console::receive_pty(&ours).map_err(anyhow::Error::from)?;
        return foreground::supervise(pid, &sfd, Some(&master));
    }
    let pid = exec::exec(root, &a.id, &opts, None)?;
    foreground::supervise(pid, &sfd, None)
}

fn build_process(root: &StateRoot, a: &ExecArgs) -> Result<Process> {
    if let Some(path) = &a.process {
        let text = std::fs::read(path).with_context(|| format!("--process {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_slice(&text);
        let p: Process = serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow::anyhow!("--process {}: {}: {}", path.display(), e.path(), e.inner())
        })?;
        return Ok(p);
    }
    if a.command.is_empty() {
        bail!("exec: no command given: pass the command after the container id, or --process FILE");
    }
    let container = root.load(&a.id)?;
    let spec = container.load_spec()?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        let mut user = p.user().clone();
        user.set_uid(
            uid.parse()
                .with_context(|| format!("--user {u}: the uid must be a number"))?,
        );
        if let Some(g) = gid {
            user.set_gid(
                g.parse()
                    .with_context(|| format!("--user {u}: the gid must be a number"))?,
            );
        }
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<Capabilities>, c: Capability| -> Option<Capabilities> {
            let mut s = set.clone().unwrap_or_default();
            s.insert(c);
            Some(s)
        };
        for name in &a.cap {
            let bare = name.strip_prefix("CAP_").unwrap_or(name);
            let c = Capability::from_str(bare)
                .map_err(|_| anyhow::anyhow!("--cap {name}: unknown capability"))?;
            caps.set_bounding(add(caps.bounding(), c));
            caps.set_effective(add(caps.effective(), c));
            caps.set_permitted(add(caps.permitted(), c));
            // Ambient needs inheritable; runc only adds it when the config has inheritable.
            if caps.inheritable().is_some() {
                caps.set_inheritable(add(caps.inheritable(), c));
                caps.set_ambient(add(caps.ambient(), c));
            }
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}
