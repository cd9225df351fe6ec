//! The last steps of the init before exec: rlimits, user and groups, capabilities,
//! no_new_privs, umask, cwd, a clean signal state, and finding the program.

use crate::capabilities::{self, CapabilityPlan};
use crate::error::{Context, Error, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// glibc types `setrlimit`'s resource argument as its own alias, musl as a plain int.
#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = libc::c_int;

fn rlimit_resource(t: PosixRlimitType) -> RlimitResource {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub fn apply_rlimits(process: &Process) -> Result<()> {
    for r in process.rlimits().iter().flatten() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) } < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| {
                format!(
                    "process.rlimits {}: soft {} hard {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                )
            });
        }
    }
    Ok(())
}

/// Switches to the configured user, keeping exactly the configured capabilities.
pub fn switch_user(
    process: &Process,
    caps: Option<&CapabilityPlan>,
    in_userns: bool,
) -> Result<()> {
    let user = process.user();
    if let Some(plan) = caps {
        capabilities::apply_bounding(plan)?;
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    }
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // In a user namespace setgroups may be denied; only call it when there is something to set.
    if !in_userns || !groups.is_empty() {
        nix::unistd::setgroups(&groups).context("process.user.additionalGids: setgroups")?;
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid)
        .with_context(|| format!("process.user.gid {}", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid)
        .with_context(|| format!("process.user.uid {}", user.uid()))?;
    if let Some(plan) = caps {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
        capabilities::apply_sets(plan)?;
    }
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    } else {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("process.noNewPrivileges");
    }
    Ok(())
}

/// Default dispositions and an empty mask: an ignored SIGPIPE (Rust's default for us) or a
/// blocked signal would otherwise be inherited by the container's program across exec.
pub fn reset_signals() {
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing SIG_DFL is always sound.
        let _ = unsafe { sigaction(sig, &dfl) };
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
}

/// Finds the program the way execvp would, but with the container's PATH, not ours.
pub fn find_program(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return if p.exists() {
            Ok(p)
        } else {
            Err(Error::InvalidState(format!(
                "exec: {arg0:?}: no such file or directory"
            )))
        };
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(Error::InvalidState(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    )))
}

/// Marks every descriptor from `first` up close-on-exec, so only stdio and the preserved
/// fds reach the program.
pub fn cloexec_from(first: u32) {
    // SAFETY: close_range only changes descriptor flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret < 0 {
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            for fd in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
                if fd >= first as i32 {
                    // SAFETY: setting FD_CLOEXEC on a descriptor number.
                    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                }
            }
        }
    }
}

/// What the last steps need: the process as configured and what was prepared for it.
pub struct Launch<'a> {
    pub process: &'a oci_spec::runtime::Process,
    pub caps: Option<&'a CapabilityPlan>,
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    pub in_userns: bool,
    pub preserve_fds: u32,
    pub program: &'a Path,
}

/// The shared tail of the container init and of an exec'd process: rlimits, identity and
/// capabilities, cwd, no_new_privs and seccomp, a clean signal state, then execve.
pub fn launch(l: Launch) -> Result<std::convert::Infallible> {
    let process = l.process;
    apply_rlimits(process)?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    // Without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN, which switch_user may drop: load
    // the filter first, as runc does (it must then allow the switch's own syscalls).
    if !no_new_privs {
        if let Some(filter) = l.seccomp {
            crate::seccomp::load(filter)?;
        }
    }
    switch_user(process, l.caps, l.in_userns)?;
    if let Err(e) = nix::unistd::chdir(process.cwd()) {
        return Err(Error::InvalidState(format!(
            "process.cwd {}: {e}",
            process.cwd().display()
        )));
    }
    if no_new_privs {
        set_no_new_privs()?;
        // Last, so the filter does not have to allow the setup's own syscalls.
        if let Some(filter) = l.seccomp {
            crate::seccomp::load(filter)?;
        }
    }
    reset_signals();
    cloexec_from(3 + l.preserve_fds);
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    exec(l.program, &args, &env)
}

pub fn exec(program: &Path, args: &[String], env: &[String]) -> Result<std::convert::Infallible> {
    let c = |s: &str| {
        CString::new(s).map_err(|_| {
            Error::InvalidState(format!("process.args/env: {s:?} contains a NUL byte"))
        })
    };
    let prog = c(&program.to_string_lossy())?;
    let argv: Vec<CString> = args.iter().map(|a| c(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|a| c(a)).collect::<Result<_>>()?;
    nix::unistd::execve(&prog, &argv, &envp).with_context(|| format!("exec {}", program.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_lookup_uses_the_given_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_program("sh", &env).unwrap().ends_with("sh"));
        let e = find_program("no-such-program-xyz", &env).unwrap_err();
        assert!(e.to_string().contains("executable file not found"), "{e}");
        assert!(find_program("/no/such", &env).is_err());
    }
}
