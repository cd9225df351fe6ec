//! The container's init, from the moment clone3 returns in the child until it execs the
//! user's program. It never returns: it execs, or reports the failure to the runtime over the
//! init channel and exits.

use crate::capabilities::CapabilityPlan;
use crate::cgroups::{Layout, Placement};
use crate::config::Bundle;
use crate::console;
use crate::error::{Context, Error, Result};
use crate::hooks;
use crate::namespaces::{self, NamespacePlan};
use crate::process_setup;
use crate::rootfs::{self, RootfsContext};
use crate::seccomp;
use crate::state::{OciState, Status};
use crate::sync_channel::{FromInit, InitEnd, ToInit};
use nix::sys::socket::{accept4, SockFlag};
use oci_spec::runtime::LinuxNamespaceType;
use std::os::fd::{AsRawFd, OwnedFd};

/// Everything the init needs, prepared by the runtime before the clone (the child has a copy
/// of the parent's memory, so nothing is serialized).
pub struct InitContext<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub ns: &'a NamespacePlan,
    pub channel: InitEnd,
    pub start_listener: OwnedFd,
    pub console_socket: Option<OwnedFd>,
    pub cgroup: &'a Placement,
    pub cgroup_layout: Layout,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub caps: Option<CapabilityPlan>,
    pub seccomp: Option<seccomp::Filter>,
    pub hook_state: OciState,
}

/// The child's entry point.
pub fn main(ctx: InitContext) -> ! {
    let mut start_conn = None;
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&ctx, &mut start_conn)));
    let msg = match result {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(never)) => match never {},
        Err(_) => "the init panicked".to_string(),
    };
    // Before the park, `create` is listening on the channel; after it, `start` is.
    match start_conn {
        Some(conn) => {
            let _ = nix::unistd::write(&conn, msg.as_bytes());
        }
        None => {
            let _ = ctx.channel.send(&FromInit::Failed(msg));
        }
    }
    // SAFETY: _exit skips the parent's atexit handlers and destructors, which belong to the
    // runtime process we were copied from.
    unsafe { libc::_exit(1) }
}

fn expect(channel: &InitEnd, want: &str) -> Result<ToInit> {
    channel.recv()?.ok_or_else(|| {
        Error::Init(format!(
            "runtime went away while the init waited for {want}"
        ))
    })
}

fn run(ctx: &InitContext, start_conn: &mut Option<OwnedFd>) -> Result<std::convert::Infallible> {
    let spec = &ctx.bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Init("no process".into()))?;
    // Set up with a known umask; the user's comes with the switch to its identity.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));

    match expect(&ctx.channel, "its id maps and cgroup")? {
        ToInit::Go => {}
        other => return Err(Error::Init(format!("unexpected {other:?}"))),
    }
    if ctx.ns.new_user {
        // Become the namespace's root (if mapped) so the setup below has its privileges.
        let root = nix::unistd::Uid::from_raw(0);
        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
        let _ = nix::unistd::setresuid(root, root, root);
    }
    if let Some(p) = &ctx.ns.join_user {
        namespaces::join(LinuxNamespaceType::User, p)?;
    }
    for (t, p) in &ctx.ns.join_other {
        namespaces::join(*t, p)?;
    }
    namespaces::unshare_flags(ctx.ns.unshare)?;
    if ctx.ns.new_cgroup {
        namespaces::unshare_flags(nix::sched::CloneFlags::CLONE_NEWCGROUP)?;
    }
    if ctx.ns.new_time {
        let offsets: Vec<(String, i64, u32)> = spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().as_ref())
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.secs().unwrap_or(0), v.nanosecs().unwrap_or(0)))
            .collect();
        namespaces::enter_new_time_ns(&offsets)?;
    }
    // Every container init leads its own session (and so can own a terminal).
    nix::unistd::setsid().context("setsid")?;
    if !ctx.no_new_keyring {
        join_session_keyring(ctx.id)?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).context("hostname")?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        set_domainname(d)?;
    }

    let rctx = RootfsContext {
        spec,
        rootfs: &ctx.bundle.rootfs,
        in_userns: ctx.ns.in_userns(),
        new_cgroupns: ctx.ns.new_cgroup,
        cgroup_layout: ctx.cgroup_layout,
        cgroup_leaves: &ctx.cgroup.leaves,
    };
    rootfs::prepare(&rctx)?;

    let hooks = spec.hooks().as_ref();
    #[allow(deprecated)]
    let runtime_hooks = hooks.is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    if runtime_hooks {
        ctx.channel.send(&FromInit::RuntimeHooks)?;
        match expect(&ctx.channel, "the runtime hooks")? {
            ToInit::HooksDone => {}
            other => return Err(Error::Init(format!("unexpected {other:?}"))),
        }
    }
    if let Some(list) = hooks.and_then(|h| h.create_container().as_ref()) {
        hooks::run_all(list, &ctx.hook_state)?;
    }

    rootfs::pivot(&ctx.bundle.rootfs, ctx.no_pivot)?;
    apply_sysctls(spec)?;
    if let Some(sock) = &ctx.console_socket {
        let slave = console::take_terminal(sock.as_raw_fd(), process.console_size().as_ref())?;
        console::bind_console(&slave)?;
    }
    // runc makes a missing cwd (as root, before the root may turn read-only); images whose
    // WORKDIR does not exist in the rootfs depend on it.
    if !process.cwd().exists() {
        std::fs::create_dir_all(process.cwd())
            .with_context(|| format!("process.cwd: creating {}", process.cwd().display()))?;
    }
    rootfs::finalize(spec)?;

    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let program = process_setup::find_program(&args[0], &env)?;

    ctx.channel.send(&FromInit::Ready)?;
    // Parked: the OCI lifecycle says the user's program must not run before `start`.
    *start_conn = Some(wait_for_start(&ctx.start_listener)?);

    if let Some(list) = hooks.and_then(|h| h.start_container().as_ref()) {
        let mut state = ctx.hook_state.clone();
        state.status = Status::Created;
        // The hook runs in the container's namespaces: the pid as the container sees it.
        state.pid = nix::unistd::getpid().as_raw();
        hooks::run_all(list, &state)?;
    }
    process_setup::launch(process_setup::Launch {
        process,
        caps: ctx.caps.as_ref(),
        seccomp: ctx.seccomp.as_ref(),
        in_userns: ctx.ns.in_userns(),
        preserve_fds: ctx.preserve_fds,
        program: &program,
    })
}

/// Returns the connection from `start`: it stays open until exec closes it (close-on-exec),
/// so `start` learns whether the program really started, or reads why not.
fn wait_for_start(listener: &OwnedFd) -> Result<OwnedFd> {
    let conn = loop {
        match accept4(listener, SockFlag::SOCK_CLOEXEC) {
            Err(nix::Error::EINTR) => continue,
            other => break other.context("waiting for start")?,
        }
    };
    let mut byte = [0u8; 1];
    let _ = nix::unistd::read(&conn, &mut byte);
    Ok(conn)
}

fn apply_sysctls(spec: &oci_spec::runtime::Spec) -> Result<()> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in map {
        if key.contains("..") {
            return Err(Error::InvalidState(format!(
                "linux.sysctl: invalid key {key:?}"
            )));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).with_context(|| format!("linux.sysctl {key}={value}"))?;
    }
    Ok(())
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: setdomainname with a pointer and length of a live byte slice.
    if unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) } < 0 {
        return Err(std::io::Error::last_os_error()).context("domainname");
    }
    Ok(())
}

/// A fresh session keyring per container, so containers do not share the host's keys
/// (runc's default; --no-new-keyring turns it off).
fn join_session_keyring(id: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name =
        std::ffi::CString::new(format!("_ses.{id}")).map_err(|_| Error::InvalidId(id.into()))?;
    // SAFETY: keyctl with a valid NUL-terminated name.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels without keys, or a seccomp'd parent: not the container's problem.
        if !matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EACCES)
        ) {
            return Err(e).context("joining a new session keyring");
        }
    }
    Ok(())
}
