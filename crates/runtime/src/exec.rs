//! `exec`: a new process in a running container. It joins every namespace of the container's
//! init and its cgroup, then gets its own capabilities, rlimits, user and the container's
//! seccomp filter, like the init did. What `docker exec` and `kubectl exec` end up calling.

use crate::capabilities::CapabilityPlan;
use crate::console;
use crate::error::{Context, Error, Result};
use crate::process_setup;
use crate::seccomp;
use crate::state::{Container, StateRoot, Status};
use crate::sync_channel::{self, FromInit, InitEnd, ToInit};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::Process;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub process: Process,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
}

/// The namespaces an exec joins, in the order it joins them: user first (so the rest are
/// joined with the container's privileges), mount last (after it, host paths are gone).
const ORDER: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The container's namespaces: its pid namespace (joined by the runtime for the clone) and
/// the others (joined by the new process, in `ORDER`).
struct Namespaces {
    pid: Option<std::fs::File>,
    rest: Vec<(std::fs::File, CloneFlags)>,
}

/// The init's namespaces that differ from ours, opened now (while /proc is the host's).
fn open_namespaces(pid: i32) -> Result<Namespaces> {
    let differs = |name: &str| -> Result<Option<std::fs::File>> {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(t), Ok(o)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            return Ok(None);
        };
        if t.ino() == o.ino() && t.dev() == o.dev() {
            return Ok(None);
        }
        std::fs::File::open(&theirs)
            .map(Some)
            .with_context(|| format!("opening {theirs}"))
    };
    let pidns = differs("pid")?;
    let mut rest = Vec::new();
    for (name, flag) in ORDER {
        if let Some(f) = differs(name)? {
            rest.push((f, *flag));
        }
    }
    Ok(Namespaces { pid: pidns, rest })
}

/// Starts the process and returns its pid (our child). It has exec'd the program, or this
/// returns the reason it could not.
pub fn exec(
    root: &StateRoot,
    id: &str,
    opts: &ExecOptions,
    console: Option<OwnedFd>,
) -> Result<Pid> {
    let c = root.load(id)?;
    match c.status() {
        Status::Running => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => {
            return Err(Error::InvalidState(
                "cannot exec in a paused container (pause it again after, or pass --ignore-paused)"
                    .into(),
            ))
        }
        s => {
            return Err(Error::InvalidState(format!(
                "cannot exec in a {s} container"
            )))
        }
    }
    let process = &opts.process;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(Error::InvalidState(
            "exec: no command given (args is empty)".into(),
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::InvalidState(format!(
            "process.cwd: {:?} must be absolute",
            process.cwd()
        )));
    }
    let terminal = process.terminal().unwrap_or(false);
    let console = match (console, &opts.console_socket) {
        (Some(fd), _) => Some(fd),
        (None, Some(p)) => Some(
            crate::launcher::connect_unix(p)
                .with_context(|| format!("--console-socket {}", p.display()))?,
        ),
        (None, None) => None,
    };
    if terminal && console.is_none() {
        return Err(Error::InvalidState(
            "--tty needs --console-socket to receive the terminal".into(),
        ));
    }
    let spec = c.load_spec()?;
    let caps = match process.capabilities() {
        Some(cs) => {
            let available = caps::read(None, caps::CapSet::Bounding)
                .map_err(|e| Error::InvalidState(format!("reading our bounding set: {e}")))?;
            Some(CapabilityPlan::new(cs, &available))
        }
        None => None,
    };
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Some(seccomp::compile(profile)?),
        None => None,
    };
    let in_userns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| {
            n.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User)
        });
    let Namespaces {
        pid: pidns,
        rest: namespaces,
    } = open_namespaces(c.record.pid)?;
    let (runtime_end, child_end) = sync_channel::pair()?;

    let saved = match &pidns {
        Some(ns) => {
            let own =
                std::fs::File::open("/proc/self/ns/pid").context("opening our pid namespace")?;
            nix::sched::setns(ns, CloneFlags::CLONE_NEWPID)
                .context("joining the container's pid namespace")?;
            Some(own)
        }
        None => None,
    };
    let cloned = crate::launcher::clone3(0);
    // Only the parent goes back; the child lives in the namespace it was born into.
    if let (Ok(Some(_)), Some(own)) = (&cloned, saved) {
        nix::sched::setns(own, CloneFlags::CLONE_NEWPID)
            .context("returning to our pid namespace")?;
    }
    let child = match cloned? {
        None => child_main(ExecChild {
            channel: child_end,
            namespaces,
            process,
            caps,
            seccomp: filter,
            console,
            in_userns,
            preserve_fds: opts.preserve_fds,
        }),
        Some(pid) => pid,
    };
    drop(child_end);
    let fail = |e: Error| {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        e
    };
    join_cgroup(&c, child).map_err(fail)?;
    runtime_end.send(&ToInit::Go).map_err(fail)?;
    // The channel closes (close-on-exec) when the program starts; a message means failure.
    match runtime_end.recv().map_err(fail)? {
        None => {}
        Some(FromInit::Failed(msg)) => {
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(Error::Init(msg));
        }
        Some(other) => return Err(fail(Error::Init(format!("unexpected {other:?}")))),
    }
    if let Some(pf) = &opts.pid_file {
        crate::launcher::write_pid_file(pf, child.as_raw())?;
    }
    Ok(child)
}

/// The exec'd process goes into the init's cgroup in every hierarchy.
fn join_cgroup(c: &Container, pid: Pid) -> Result<()> {
    let dirs = &c.record.cgroup_dirs;
    for leaf in dirs
        .iter()
        .filter(|d| !dirs.iter().any(|o| o != *d && o.starts_with(d)))
    {
        std::fs::write(leaf.join("cgroup.procs"), pid.to_string()).map_err(|e| {
            Error::Cgroup(format!("adding exec pid {pid} to {}: {e}", leaf.display()))
        })?;
    }
    Ok(())
}

struct ExecChild<'a> {
    channel: InitEnd,
    namespaces: Vec<(std::fs::File, CloneFlags)>,
    process: &'a Process,
    caps: Option<CapabilityPlan>,
    seccomp: Option<seccomp::Filter>,
    console: Option<OwnedFd>,
    in_userns: bool,
    preserve_fds: u32,
}

fn child_main(ctx: ExecChild) -> ! {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child_run(&ctx)));
    let msg = match result {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(never)) => match never {},
        Err(_) => "the exec'd process panicked during setup".to_string(),
    };
    let _ = ctx.channel.send(&FromInit::Failed(msg));
    // SAFETY: leave without running the runtime's destructors in this copy.
    unsafe { libc::_exit(1) }
}

fn child_run(ctx: &ExecChild) -> Result<std::convert::Infallible> {
    match ctx.channel.recv()? {
        Some(ToInit::Go) => {}
        other => return Err(Error::Init(format!("expected go, got {other:?}"))),
    }
    for (f, flag) in &ctx.namespaces {
        nix::sched::setns(f, *flag)
            .with_context(|| format!("joining the container's namespace {flag:?}"))?;
    }
    if ctx.in_userns {
        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
        let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
    }
    let process = ctx.process;
    if let Some(sock) = &ctx.console {
        nix::unistd::setsid().context("setsid")?;
        console::take_terminal(sock.as_raw_fd(), process.console_size().as_ref())?;
    }
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let program = process_setup::find_program(&args[0], &env)?;
    process_setup::launch(process_setup::Launch {
        process,
        caps: ctx.caps.as_ref(),
        seccomp: ctx.seccomp.as_ref(),
        in_userns: ctx.in_userns,
        preserve_fds: ctx.preserve_fds,
        program: &program,
    })
}
