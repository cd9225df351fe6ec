//! `create`: from a bundle to an init parked in its namespaces, waiting for `start`.
//!
//! The runtime process checks everything it can before touching the host, claims the id,
//! makes the cgroup, clones the init with clone3 straight into new pid/user namespaces, writes
//! id maps, places it, and then serves the init's requests (runtime hooks) until it reports
//! ready. Any failure undoes all of it: the init is killed, the cgroup and state are removed.

use crate::capabilities::CapabilityPlan;
use crate::cgroups::{self, Hierarchy, Placement, PlacementPlan};
use crate::config::Bundle;
use crate::error::{Context, Error, Result};
use crate::hooks;
use crate::init::{self, InitContext};
use crate::namespaces::{self, NamespacePlan};
use crate::seccomp;
use crate::state::{self, Container, OciState, Record, StateRoot, Status};
use crate::sync_channel::{self, FromInit, ToInit};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// What the process is allowed, prepared before anything is created.
struct Security {
    caps: Option<CapabilityPlan>,
    seccomp: Option<seccomp::Filter>,
}

/// clone3's argument block (linux/sched.h, version 2 with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// fork-like clone3: the child continues here with a copy of our memory. Raw syscall because
/// neither libc nor nix wraps clone3, and only clone3 takes namespace flags without a
/// separate stack.
pub(crate) fn clone3(flags: u64) -> Result<Option<Pid>> {
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: no CLONE_VM, so the child gets its own copy of the address space and returns
    // here like fork(); the args block is valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        r if r < 0 => Err(std::io::Error::last_os_error()).context("clone3 of the container init"),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// The undo list of a create in progress.
struct Rollback {
    state_dir: Option<PathBuf>,
    placement: Option<Placement>,
    child: Option<Pid>,
}

impl Rollback {
    fn run(&mut self) {
        if let Some(pid) = self.child.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(p) = self.placement.take() {
            if let Err(e) = p.remove() {
                tracing::warn!("cleanup after failed create: {e}");
            }
        }
        if let Some(d) = self.state_dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Creates the container. On success the init is parked and the state is saved; the caller
/// (`run`) may wait for the returned pid, which is our child.
pub fn create(root: &StateRoot, opts: &CreateOptions) -> Result<Container> {
    create_inner(root, opts, None)
}

/// `create` with the terminal's receiving socket already connected (foreground `run` proxies
/// the pty itself instead of handing it to a `--console-socket` listener).
pub fn create_with_console(
    root: &StateRoot,
    opts: &CreateOptions,
    console: OwnedFd,
) -> Result<Container> {
    create_inner(root, opts, Some(console))
}

fn create_inner(
    root: &StateRoot,
    opts: &CreateOptions,
    console: Option<OwnedFd>,
) -> Result<Container> {
    crate::id::validate(&opts.id)?;
    let bundle = Bundle::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidState("process missing".into()))?;
    let console = match (console, &opts.console_socket) {
        (Some(fd), _) => Some(fd),
        (None, Some(p)) => {
            Some(connect_unix(p).with_context(|| format!("--console-socket {}", p.display()))?)
        }
        (None, None) => None,
    };
    let terminal = process.terminal().unwrap_or(false);
    if terminal && console.is_none() {
        return Err(Error::InvalidState(
            "process.terminal is true: --console-socket is required to receive the terminal".into(),
        ));
    }
    if !terminal && console.is_some() {
        return Err(Error::InvalidState(
            "--console-socket given but process.terminal is false".into(),
        ));
    }
    warn_missing_lsm(process);
    let ns = NamespacePlan::from_spec(spec);
    let hierarchy = Hierarchy::detect()?;
    let cg_path = cgroups::container_path(
        spec.linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_deref()),
        &opts.id,
    );
    let cg_plan = PlacementPlan::new(&hierarchy, &cg_path)?;
    let caps = match process.capabilities() {
        Some(c) => {
            let available = caps::read(None, caps::CapSet::Bounding)
                .map_err(|e| Error::InvalidState(format!("reading our bounding set: {e}")))?;
            let plan = CapabilityPlan::new(c, &available);
            if !plan.unavailable.is_empty() {
                tracing::warn!(
                    "process.capabilities: {} not available on this host, not granted",
                    plan.unavailable.join(", ")
                );
            }
            Some(plan)
        }
        None => None,
    };

    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Some(seccomp::compile(profile)?),
        None => None,
    };
    let security = Security { caps, seccomp };

    let state_dir = root.claim(&opts.id)?;
    let mut rollback = Rollback {
        state_dir: Some(state_dir.clone()),
        placement: None,
        child: None,
    };
    match create_claimed(
        opts,
        &bundle,
        &ns,
        &cg_plan,
        hierarchy.layout,
        security,
        console,
        &state_dir,
        &mut rollback,
    ) {
        Ok(c) => Ok(c),
        Err(e) => {
            rollback.run();
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn create_claimed(
    opts: &CreateOptions,
    bundle: &Bundle,
    ns: &NamespacePlan,
    cg_plan: &PlacementPlan,
    layout: cgroups::Layout,
    security: Security,
    console: Option<OwnedFd>,
    state_dir: &Path,
    rollback: &mut Rollback,
) -> Result<Container> {
    let spec = &bundle.spec;
    let placement = cg_plan.apply()?;
    rollback.placement = Some(placement.clone());
    // Always applied, even with no `linux.resources`: the device allowlist holds for every
    // container (as in runc), and a device the config defines is allowed by that definition.
    let linux = spec.linux().as_ref();
    let no_limits = oci_spec::runtime::LinuxResources::default();
    cgroups::resources::apply_with_devices(
        &placement,
        linux
            .and_then(|l| l.resources().as_ref())
            .unwrap_or(&no_limits),
        linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]),
    )?;
    let listener = start_listener(state_dir)?;
    let (runtime_end, init_end) = sync_channel::pair()?;

    let mut record = Record {
        oci_version: spec.version().clone(),
        id: opts.id.clone(),
        pid: 0,
        pid_start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: state::owner_name(nix::unistd::geteuid().as_raw()),
        annotations: spec.annotations().clone().unwrap_or_default(),
        hooks: spec.hooks().clone(),
        cgroup_dirs: placement.created.clone(),
        freezer: placement.freezer.clone(),
    };
    // The leaves matter too (kill --all reads them) even when they pre-existed.
    for (_, leaf) in &placement.leaves {
        if !record.cgroup_dirs.contains(leaf) {
            record.cgroup_dirs.push(leaf.clone());
        }
    }
    let hook_state = |pid: i32, status: Status| OciState {
        oci_version: record.oci_version.clone(),
        id: record.id.clone(),
        pid,
        status,
        bundle: record.bundle.clone(),
        rootfs: record.rootfs.clone(),
        created: record.created.clone(),
        owner: record.owner.clone(),
        annotations: record.annotations.clone(),
    };

    // Joining a pid namespace only changes where our children go; switch back right after.
    let saved_pidns = match &ns.join_pid {
        Some(p) => {
            let own =
                std::fs::File::open("/proc/self/ns/pid").context("opening our pid namespace")?;
            namespaces::join(oci_spec::runtime::LinuxNamespaceType::Pid, p)?;
            Some(own)
        }
        None => None,
    };
    let cloned = clone3(ns.clone_flags);
    // Only the parent goes back; the child lives in the namespace it was born into.
    if let (Ok(Some(_)), Some(own)) = (&cloned, saved_pidns) {
        nix::sched::setns(own, nix::sched::CloneFlags::CLONE_NEWPID)
            .context("returning to our pid namespace")?;
    }
    let child = match cloned? {
        None => init::main(InitContext {
            id: &opts.id,
            bundle,
            ns,
            channel: init_end,
            start_listener: listener,
            console_socket: console,
            cgroup: &placement,
            cgroup_layout: layout,
            no_pivot: opts.no_pivot,
            no_new_keyring: opts.no_new_keyring,
            preserve_fds: opts.preserve_fds,
            caps: security.caps,
            seccomp: security.seccomp,
            hook_state: hook_state(0, Status::Creating),
        }),
        Some(pid) => pid,
    };
    rollback.child = Some(child);
    drop(init_end);
    drop(listener);
    drop(console);

    if ns.new_user {
        namespaces::write_id_maps(child.as_raw(), spec)?;
    }
    placement.add_pid(child.as_raw())?;
    if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        std::fs::write(format!("/proc/{child}/oom_score_adj"), adj.to_string())
            .with_context(|| format!("process.oomScoreAdj {adj}"))?;
    }
    runtime_end.send(&ToInit::Go)?;
    loop {
        match runtime_end.recv()? {
            Some(FromInit::Ready) => break,
            Some(FromInit::RuntimeHooks) => {
                let state = hook_state(child.as_raw(), Status::Creating);
                if let Some(h) = spec.hooks() {
                    #[allow(deprecated)]
                    let prestart = h.prestart().clone().unwrap_or_default();
                    hooks::run_all(&prestart, &state)?;
                    hooks::run_all(h.create_runtime().as_deref().unwrap_or(&[]), &state)?;
                }
                runtime_end.send(&ToInit::HooksDone)?;
            }
            Some(FromInit::Failed(msg)) => return Err(Error::Init(msg)),
            None => return Err(Error::Init("the init exited during setup".into())),
        }
    }

    record.pid = child.as_raw();
    record.pid_start_time = state::proc_stat(child.as_raw())
        .map(|(_, start)| start)
        .ok_or_else(|| Error::Init("the init exited during setup".into()))?;
    let container = Container {
        dir: state_dir.to_path_buf(),
        record,
    };
    container.save_spec(spec)?;
    container.save()?;
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, child.as_raw())?;
    }
    rollback.child = None;
    rollback.placement = None;
    rollback.state_dir = None;
    Ok(container)
}

/// A path for a socket in `dir` that fits in sun_path however deep the state root is.
fn socket_path(dir_fd: &std::fs::File, name: &str) -> String {
    format!("/proc/self/fd/{}/{name}", dir_fd.as_raw_fd())
}

/// The socket the parked init waits on. Made here, as the host's root, so it works whatever
/// user the init is in its own user namespace.
fn start_listener(state_dir: &Path) -> Result<OwnedFd> {
    let dir = std::fs::File::open(state_dir)
        .with_context(|| format!("opening {}", state_dir.display()))?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket")?;
    let addr = UnixAddr::new(socket_path(&dir, state::START_SOCKET).as_str())
        .context("start socket address")?;
    bind(fd.as_raw_fd(), &addr).context("binding the start socket")?;
    listen(&fd, Backlog::new(1).context("listen backlog")?)
        .context("listen on the start socket")?;
    Ok(fd)
}

/// Tells a parked init to go on: one byte on its start socket. The init holds the connection
/// until its exec closes it, or writes why it could not get there.
pub fn signal_start(container: &Container) -> Result<()> {
    let dir = std::fs::File::open(&container.dir)
        .with_context(|| format!("opening {}", container.dir.display()))?;
    let path = socket_path(&dir, state::START_SOCKET);
    let fd = connect_unix(Path::new(&path)).context("connecting to the parked init")?;
    nix::unistd::write(&fd, &[1u8]).context("waking the parked init")?;
    let mut report = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => report.extend_from_slice(&buf[..n]),
            Err(nix::Error::EINTR) => continue,
            // The init is gone; the status will say so.
            Err(_) => break,
        }
    }
    if !report.is_empty() {
        return Err(Error::Init(String::from_utf8_lossy(&report).into_owned()));
    }
    Ok(())
}

pub(crate) fn connect_unix(path: &Path) -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket")?;
    let addr = UnixAddr::new(path).context("socket address")?;
    connect(fd.as_raw_fd(), &addr).context("connect")?;
    Ok(fd)
}

/// Written via a temp file and rename, as runc does, so a reader never sees an empty file.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().context("cwd")?.join(path)
    };
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string())
        .with_context(|| format!("--pid-file {}", path.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("--pid-file {}", path.display()))
}

/// AppArmor and SELinux labels need those LSMs; on a host without them the label cannot be
/// applied, which is a warning, not a failure.
fn warn_missing_lsm(process: &oci_spec::runtime::Process) {
    if let Some(p) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if !Path::new("/sys/kernel/security/apparmor").exists() {
            tracing::warn!(
                "process.apparmorProfile {p:?} ignored: AppArmor is not enabled on this host"
            );
        }
    }
    if let Some(l) = process.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        if !Path::new("/sys/fs/selinux/enforce").exists() {
            tracing::warn!(
                "process.selinuxLabel {l:?} ignored: SELinux is not enabled on this host"
            );
        }
    }
}
