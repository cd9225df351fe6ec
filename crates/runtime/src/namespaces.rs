//! Which namespaces the container creates and which it joins, and the calls that do it.
//!
//! The pid and user namespaces are created by clone3 itself (the init must be born into them:
//! pid 1 of its pid namespace, and every other new namespace owned by the new user
//! namespace). The rest are unshared or joined by the init, in an order that matters: join
//! a user namespace first, the cgroup namespace only after the init is in its cgroup, and a
//! time namespace before anything reads a clock.

use crate::error::{Context, Error, Result};
use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct NamespacePlan {
    /// Flags for clone3: CLONE_NEWPID and/or CLONE_NEWUSER.
    pub clone_flags: u64,
    /// A pid namespace to join: the runtime enters it (for children) before cloning.
    pub join_pid: Option<PathBuf>,
    pub join_user: Option<PathBuf>,
    /// Other namespaces to join, in config order.
    pub join_other: Vec<(LinuxNamespaceType, PathBuf)>,
    /// mount/uts/ipc/net namespaces to unshare in the init.
    pub unshare: CloneFlags,
    pub new_cgroup: bool,
    pub new_time: bool,
    pub new_user: bool,
    pub new_pid: bool,
}

impl Default for NamespacePlan {
    fn default() -> Self {
        NamespacePlan {
            clone_flags: 0,
            join_pid: None,
            join_user: None,
            join_other: Vec::new(),
            unshare: CloneFlags::empty(),
            new_cgroup: false,
            new_time: false,
            new_user: false,
            new_pid: false,
        }
    }
}

fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        // CLONE_NEWTIME has the value of CSIGNAL's bit 7; nix has no constant for it.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

impl NamespacePlan {
    pub fn from_spec(spec: &Spec) -> NamespacePlan {
        let mut plan = NamespacePlan::default();
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in list {
            let t = ns.typ();
            match (t, ns.path().clone()) {
                (LinuxNamespaceType::Pid, Some(p)) => plan.join_pid = Some(p),
                (LinuxNamespaceType::User, Some(p)) => plan.join_user = Some(p),
                (_, Some(p)) => plan.join_other.push((t, p)),
                (LinuxNamespaceType::Pid, None) => {
                    plan.new_pid = true;
                    plan.clone_flags |= libc::CLONE_NEWPID as u64;
                }
                (LinuxNamespaceType::User, None) => {
                    plan.new_user = true;
                    plan.clone_flags |= libc::CLONE_NEWUSER as u64;
                }
                (LinuxNamespaceType::Cgroup, None) => plan.new_cgroup = true,
                (LinuxNamespaceType::Time, None) => plan.new_time = true,
                (t, None) => plan.unshare |= flag(t),
            }
        }
        plan
    }

    pub fn in_userns(&self) -> bool {
        self.new_user || self.join_user.is_some()
    }
}

/// Enters the namespace at `path`.
pub fn join(t: LinuxNamespaceType, path: &std::path::Path) -> Result<()> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("opening {t} namespace {}", path.display()))?;
    setns(f, flag(t)).with_context(|| format!("joining {t} namespace {}", path.display()))
}

pub fn unshare_flags(flags: CloneFlags) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).context("creating namespaces")
}

/// A time namespace takes its offsets before any process lives in it: unshare (which only
/// affects children), write the offsets, then step into it through time_for_children.
pub fn enter_new_time_ns(offsets: &[(String, i64, u32)]) -> Result<()> {
    unshare(flag(LinuxNamespaceType::Time)).context("creating time namespace")?;
    if !offsets.is_empty() {
        let text: String = offsets
            .iter()
            .map(|(clock, s, ns)| format!("{clock} {s} {ns}\n"))
            .collect();
        // One write per line: the kernel parses a single offset per write.
        for line in text.lines() {
            std::fs::write("/proc/self/timens_offsets", line)
                .with_context(|| format!("linux.timeOffsets: writing {line:?}"))?;
        }
    }
    join(
        LinuxNamespaceType::Time,
        std::path::Path::new("/proc/self/ns/time_for_children"),
    )
}

/// Writes the id maps of a new user namespace (done by the runtime, which still has its
/// privileges in the parent namespace).
pub fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let fmt = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    let uid = fmt(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid = fmt(linux.and_then(|l| l.gid_mappings().as_ref()));
    if uid.is_empty() || gid.is_empty() {
        return Err(Error::Config {
            path: "config.json".into(),
            cause: "linux.uidMappings/gidMappings: a new user namespace needs both".into(),
        });
    }
    std::fs::write(format!("/proc/{pid}/uid_map"), &uid)
        .context("linux.uidMappings: writing uid_map")?;
    std::fs::write(format!("/proc/{pid}/gid_map"), &gid)
        .context("linux.gidMappings: writing gid_map")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_clone_unshare_and_join() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "user"}, {"type": "mount"}, {"type": "network", "path": "/run/netns/x"},
                {"type": "cgroup"}, {"type": "time"}, {"type": "uts"}
            ]}
        }))
        .unwrap();
        let p = NamespacePlan::from_spec(&spec);
        assert_eq!(
            p.clone_flags,
            (libc::CLONE_NEWPID | libc::CLONE_NEWUSER) as u64
        );
        assert_eq!(
            p.unshare,
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS
        );
        assert_eq!(
            p.join_other,
            vec![(LinuxNamespaceType::Network, PathBuf::from("/run/netns/x"))]
        );
        assert!(p.new_cgroup && p.new_time && p.in_userns());
    }
}
