//! Seccomp filters from the OCI profile (`linux.seccomp`): planned from the profile
//! (`profile`), assembled into classic BPF here (`program`, `bpf`; no libseccomp), and loaded
//! with seccomp(2) by the init right before exec.
//!
//! How rules combine. The filter checks the ABI (`architectures`; a foreign ABI's syscall
//! kills the process), finds the syscall's number, and tries that syscall's rules in order of
//! their action's precedence, highest first:
//! KILL_PROCESS > KILL_THREAD (= KILL) > TRAP > ERRNO > TRACE > LOG > ALLOW.
//! The first rule whose argument comparisons all hold returns its action, so when several
//! rules match a call the highest-precedence one wins (between two of equal precedence, such
//! as ERRNOs with different errnos, the one listed first), and when none does the default
//! action applies. This is the kernel's own rule for combining stacked filters (seccomp(2)),
//! it does not depend on rule order, and a broad ALLOW can never undo a narrower refusal.
//! libseccomp instead merges rules into a decision tree and refuses some conflicting pairs
//! (EEXIST); runc then fails the container, where we accept and resolve them as above.
//! Beyond that, runc's rewrites are followed: see `profile::plan`.

mod bpf;
mod profile;
mod program;
mod syscall_table;

use crate::error::{Error, Result};
use bpf::Insn;
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, Seccomp};
use profile::Abi;

/// A compiled filter, ready to load in the init right before exec.
#[derive(Debug, Clone)]
pub struct Filter {
    program: Vec<Insn>,
    /// seccomp(2) SECCOMP_SET_MODE_FILTER flags.
    flags: u32,
}

/// `struct seccomp_data`: what the kernel hands the filter for each syscall.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeccompData {
    pub nr: i32,
    /// AUDIT_ARCH_* of the calling ABI; see [`audit_arch`].
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

impl SeccompData {
    fn to_bytes(self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[0..4].copy_from_slice(&self.nr.to_ne_bytes());
        out[4..8].copy_from_slice(&self.arch.to_ne_bytes());
        out[8..16].copy_from_slice(&self.instruction_pointer.to_ne_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            out[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
        }
        out
    }
}

impl Filter {
    /// The seccomp(2) flags the filter is loaded with.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// BPF instructions in the program.
    pub fn instruction_count(&self) -> usize {
        self.program.len()
    }

    /// The action value (SECCOMP_RET_*) the kernel would get from this filter for `data`,
    /// computed by running the program in an interpreter. For tests and for explaining a
    /// profile without loading it.
    pub fn evaluate(&self, data: &SeccompData) -> Result<u32> {
        bpf::run(&self.program, &data.to_bytes())
            .map_err(|e| Error::InvalidState(format!("linux.seccomp: evaluating the filter: {e}")))
    }
}

/// The AUDIT_ARCH_* value the kernel reports for an ABI this runtime filters (x32 reports
/// x86_64's), or None for one it does not.
pub fn audit_arch(arch: Arch) -> Option<u32> {
    Abi::from_arch(arch).map(Abi::audit_arch)
}

/// A syscall's number as the filter sees it (x32's with `__X32_SYSCALL_BIT`), or None if
/// the ABI has no such syscall or this runtime has no table for the ABI.
pub fn syscall_number(arch: Arch, name: &str) -> Option<u32> {
    Abi::from_arch(arch)?.nr(name)
}

/// Compiles the profile. Runs in the runtime before anything is created, so a bad profile
/// fails `create` cleanly; every error names the field.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
    let plan = profile::plan(profile).map_err(Error::InvalidState)?;
    let program = program::emit(&plan).map_err(|e| {
        Error::InvalidState(format!("linux.seccomp: building the filter failed: {e}"))
    })?;
    if program.len() > bpf::MAX_INSNS {
        return Err(Error::InvalidState(format!(
            "linux.seccomp: the filter needs {} BPF instructions, more than the kernel's {}",
            program.len(),
            bpf::MAX_INSNS
        )));
    }
    Ok(Filter {
        program,
        flags: plan.flags,
    })
}

/// Loads the filter into the calling thread (and, with SECCOMP_FILTER_FLAG_TSYNC, its
/// siblings). Without no_new_privs the kernel requires CAP_SYS_ADMIN for this, so the init
/// must load before dropping capabilities in that case. No allocation: the init may be a
/// fork of a threaded process.
pub fn load(filter: &Filter) -> Result<()> {
    let prog = libc::sock_fprog {
        // compile() keeps programs within BPF_MAXINSNS (4096).
        len: filter.program.len() as libc::c_ushort,
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: Insn has sock_filter's layout (asserted in bpf.rs); `prog` and the program it
    // points to outlive the call, and the kernel only reads (copies) them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(filter.flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EACCES) {
            " (without process.noNewPrivileges this needs CAP_SYS_ADMIN)"
        } else {
            ""
        };
        return Err(Error::InvalidState(format!(
            "linux.seccomp: loading the filter: {e}{hint}"
        )));
    }
    if ret > 0 {
        // With TSYNC, a positive return is a thread that could not be synchronized.
        return Err(Error::InvalidState(format!(
            "linux.seccomp: SECCOMP_FILTER_FLAG_TSYNC: thread {ret} could not take the filter"
        )));
    }
    Ok(())
}

/// The `linux.seccomp` part of the `features` document: what `compile` accepts, and which
/// filter flags this kernel takes.
pub fn features() -> Seccomp {
    use oci_spec::runtime::LinuxSeccompFilterFlag as F;
    let actions = vec![
        LinuxSeccompAction::ScmpActAllow,
        LinuxSeccompAction::ScmpActErrno,
        LinuxSeccompAction::ScmpActKill,
        LinuxSeccompAction::ScmpActKillProcess,
        LinuxSeccompAction::ScmpActKillThread,
        LinuxSeccompAction::ScmpActLog,
        LinuxSeccompAction::ScmpActTrace,
        LinuxSeccompAction::ScmpActTrap,
    ];
    let operators = [
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_LE",
        "SCMP_CMP_LT",
        "SCMP_CMP_MASKED_EQ",
        "SCMP_CMP_NE",
    ];
    let archs = if profile::native().is_some() {
        vec![Arch::ScmpArchX86, Arch::ScmpArchX86_64, Arch::ScmpArchX32]
    } else {
        Vec::new()
    };
    // (flag, bits to probe with): WAIT_KILLABLE_RECV is only valid with NEW_LISTENER.
    let known = [
        (
            F::SeccompFilterFlagTsync,
            profile::FLAG_TSYNC as libc::c_ulong,
        ),
        (F::SeccompFilterFlagLog, profile::FLAG_LOG as libc::c_ulong),
        (
            F::SeccompFilterFlagSpecAllow,
            profile::FLAG_SPEC_ALLOW as libc::c_ulong,
        ),
        (
            F::SeccompFilterFlagWaitKillableRecv,
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
        ),
    ];
    let supported = known
        .iter()
        .filter(|(_, bits)| kernel_takes_flags(*bits))
        .map(|(f, _)| f.to_string())
        .collect::<Vec<_>>();
    let mut out = Seccomp::default();
    out.set_enabled(Some(true))
        .set_actions(Some(actions))
        .set_operators(Some(operators.iter().map(|s| s.to_string()).collect()))
        .set_archs(Some(archs))
        .set_known_flags(Some(known.iter().map(|(f, _)| f.to_string()).collect()))
        .set_supported_flags(Some(supported));
    out
}

/// libseccomp's probe: the kernel checks the flags before reading the program, so a NULL
/// program fails with EFAULT exactly when the flags are known.
fn kernel_takes_flags(flags: libc::c_ulong) -> bool {
    // SAFETY: a NULL program is never dereferenced; the call fails either way.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    ret < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

#[cfg(test)]
mod tests;
