//! Resource limits (`linux.resources`) written into a container's cgroup, at create and on
//! `update`.
//!
//! Everything is planned before anything is written: each limit is located in a hierarchy
//! (a v1 controller mount, or the v2 tree — on a hybrid host also the v2 tree for a
//! controller only it has), checked against what the host offers and against the cgroup's
//! current values, and turned into an ordered list of writes, each with the write that puts
//! the old value back. A limit the host cannot apply is an error that names it, never a
//! silent skip. If a write still fails, the ones already made are undone in reverse order,
//! so `update` leaves the old limits in place where the kernel lets it.
//!
//! cgroups-rs is not used: it models neither the hybrid layout's v2 tree nor the
//! validate-then-write-with-undo flow, and the files themselves are plain text.

use super::device_rules::{self, DeviceState, Rule};
use super::devices_bpf::{self, Insn};
use super::hierarchy::{Hierarchy, Mount};
use super::placement::Placement;
use super::{devices_v1, v1_limits, v2_limits};
use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxDevice, LinuxResources};
use std::fs;
use std::path::{Path, PathBuf};

/// Applies `res` to a newly made cgroup, before the init joins it. Device rules are always
/// enforced (runc does the same): the config's, after a deny-all, then runc's built-in
/// allowances for the standard devices.
pub fn apply(placement: &Placement, res: &LinuxResources) -> Result<()> {
    apply_with_devices(placement, res, &[])
}

/// [`apply`], also given `linux.devices`: a built-in device allowance whose node the config
/// redefines is left out, as runc does, so the config's rules alone decide about it.
pub fn apply_with_devices(
    placement: &Placement,
    res: &LinuxResources,
    nodes: &[LinuxDevice],
) -> Result<()> {
    let steps = plan(&placement.leaves, res, DeviceMode::Create(nodes))?;
    execute(steps)
}

/// `berth-runtime update`: applies the limits `res` sets (and only those) to a running
/// container, given its recorded cgroup directories (`Record::cgroup_dirs`). Fields left
/// out keep their current values. Nothing is written unless every limit checks out, and a
/// failed write undoes the ones before it.
pub fn update(cgroup_dirs: &[PathBuf], res: &LinuxResources) -> Result<()> {
    let hierarchy = Hierarchy::detect()?;
    let leaves = leaves_from_dirs(&hierarchy, cgroup_dirs);
    if leaves.is_empty() {
        return Err(Error::Cgroup(
            "update: the container has no cgroup directories on this host".into(),
        ));
    }
    update_leaves(&leaves, res)
}

/// [`update`] for a caller that has the leaves already (one per hierarchy).
pub fn update_leaves(leaves: &[(Mount, PathBuf)], res: &LinuxResources) -> Result<()> {
    let steps = plan(leaves, res, DeviceMode::Update)?;
    execute(steps)
}

/// The container's leaf directory in each hierarchy, from its recorded directories: those
/// that hold none of the others, matched to the mount they are under.
pub fn leaves_from_dirs(h: &Hierarchy, dirs: &[PathBuf]) -> Vec<(Mount, PathBuf)> {
    let mut leaves: Vec<(Mount, PathBuf)> = Vec::new();
    for dir in dirs {
        if dirs.iter().any(|d| d != dir && d.starts_with(dir)) {
            continue;
        }
        let mount = h
            .mounts
            .iter()
            .filter(|m| dir.starts_with(&m.mountpoint))
            .max_by_key(|m| m.mountpoint.components().count());
        if let Some(m) = mount {
            if dir.is_dir() && !leaves.iter().any(|(_, l)| l == dir) {
                leaves.push((m.clone(), dir.clone()));
            }
        }
    }
    leaves
}

/// One write into a cgroup file, and the config field it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub file: PathBuf,
    pub value: String,
    pub field: String,
}

#[derive(Debug, Clone)]
pub enum Step {
    /// A file write. `undo` restores what was there, run if a later step fails.
    Write { write: Write, undo: Vec<Write> },
    /// Attaches a BPF_CGROUP_DEVICE program; programs attached before stay until every step
    /// has worked, then are detached.
    DeviceFilter {
        dir: PathBuf,
        program: Vec<Insn>,
        field: String,
    },
}

impl Step {
    /// A write whose undo is the file's current content (files holding one value).
    pub fn write(
        dir: &Path,
        file: &str,
        value: impl Into<String>,
        field: impl Into<String>,
    ) -> Step {
        let path = dir.join(file);
        let field = field.into();
        let undo = read(&path)
            .map(|old| {
                vec![Write {
                    file: path.clone(),
                    value: old,
                    field: field.clone(),
                }]
            })
            .unwrap_or_default();
        Step::Write {
            write: Write {
                file: path,
                value: value.into(),
                field,
            },
            undo,
        }
    }

    /// A write to a keyed file (one line per device or interface); `old` is what to write
    /// back for this key.
    pub fn keyed(dir: &Path, file: &str, value: String, old: String, field: &str) -> Step {
        let path = dir.join(file);
        Step::Write {
            write: Write {
                file: path.clone(),
                value,
                field: field.to_string(),
            },
            undo: vec![Write {
                file: path,
                value: old,
                field: field.to_string(),
            }],
        }
    }
}

/// Reads a cgroup file, trimmed; `None` if it cannot be read.
pub fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Reads a number the way the v1 and v2 interfaces print them; "max" is `u64::MAX`.
pub fn read_u64(path: &Path) -> Option<u64> {
    let text = read(path)?;
    if text == "max" {
        return Some(u64::MAX);
    }
    text.parse().ok()
}

/// How device rules are treated: at create they are always enforced; on update only when
/// the new resources carry them.
#[derive(Debug, Clone, Copy)]
pub enum DeviceMode<'a> {
    Create(&'a [LinuxDevice]),
    Update,
}

/// Where each controller lives for this container.
pub struct Controllers<'a> {
    v1: Vec<(&'a Mount, &'a Path)>,
    /// The v2 leaf and the controllers enabled in it (its `cgroup.controllers`).
    v2: Option<(&'a Path, Vec<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl<'a> Controllers<'a> {
    pub fn new(leaves: &'a [(Mount, PathBuf)]) -> Controllers<'a> {
        let v1 = leaves
            .iter()
            .filter(|(m, _)| !m.v2)
            .map(|(m, p)| (m, p.as_path()))
            .collect();
        let v2 = leaves.iter().find(|(m, _)| m.v2).map(|(_, p)| {
            let enabled = read(&p.join("cgroup.controllers")).unwrap_or_default();
            (
                p.as_path(),
                enabled.split_whitespace().map(str::to_string).collect(),
            )
        });
        Controllers { v1, v2 }
    }

    /// A v1 mount of the controller first; else the v2 tree if it has the controller.
    pub fn locate(&self, controller: &str) -> Option<Located<'a>> {
        if let Some((_, dir)) = self
            .v1
            .iter()
            .find(|(m, _)| m.controllers.iter().any(|c| c == controller))
        {
            return Some(Located::V1(dir));
        }
        match &self.v2 {
            Some((dir, enabled)) if enabled.iter().any(|c| c == controller) => {
                Some(Located::V2(dir))
            }
            _ => None,
        }
    }

    pub fn v2_leaf(&self) -> Option<&'a Path> {
        self.v2.as_ref().map(|(d, _)| *d)
    }

    pub fn is_legacy(&self) -> bool {
        !self.v1.is_empty()
    }

    /// The error for a limit whose controller this container does not have.
    pub fn missing(&self, controller: &str, field: &str) -> Error {
        let why = match (&self.v2, self.is_legacy()) {
            (Some((dir, _)), true) => format!(
                "this host has no {controller} controller: it is not mounted as cgroup v1, and \
                 the cgroup v2 tree does not enable it for {} (cgroup.subtree_control)",
                dir.display()
            ),
            (Some((dir, _)), false) => format!(
                "the {controller} controller is not enabled for {} (the parent's \
                 cgroup.subtree_control does not delegate it)",
                dir.display()
            ),
            (None, _) => format!("this host has no {controller} controller mounted"),
        };
        Error::Cgroup(format!("{field}: {why}"))
    }
}

/// Plans every write for `res` without writing anything.
pub fn plan(
    leaves: &[(Mount, PathBuf)],
    res: &LinuxResources,
    devices: DeviceMode<'_>,
) -> Result<Vec<Step>> {
    let ctl = Controllers::new(leaves);
    let mut steps = Vec::new();

    if let Some(cpu) = res.cpu() {
        if cpu.cpus().is_some() || cpu.mems().is_some() {
            match ctl.locate("cpuset") {
                Some(Located::V1(d)) => steps.extend(v1_limits::cpuset(d, cpu)?),
                Some(Located::V2(d)) => steps.extend(v2_limits::cpuset(d, cpu)?),
                None => return Err(ctl.missing("cpuset", "linux.resources.cpu.cpus/mems")),
            }
        }
    }
    if let Some(mem) = res.memory() {
        match ctl.locate("memory") {
            Some(Located::V1(d)) => steps.extend(v1_limits::memory(d, mem)?),
            Some(Located::V2(d)) => steps.extend(v2_limits::memory(d, mem)?),
            None if v1_limits::memory_asks(mem) => {
                return Err(ctl.missing("memory", "linux.resources.memory"))
            }
            None => {}
        }
    }
    if let Some(cpu) = res.cpu() {
        match ctl.locate("cpu") {
            Some(Located::V1(d)) => steps.extend(v1_limits::cpu(d, cpu)?),
            Some(Located::V2(d)) => steps.extend(v2_limits::cpu(d, cpu)?),
            None if v1_limits::cpu_asks(cpu) => {
                return Err(ctl.missing("cpu", "linux.resources.cpu"))
            }
            None => {}
        }
    }
    if let Some(pids) = res.pids() {
        match ctl.locate("pids") {
            // pids.max reads the same on v1 and v2.
            Some(Located::V1(d)) | Some(Located::V2(d)) => {
                steps.push(v1_limits::pids(d, pids.limit())?)
            }
            None if pids.limit() > 0 => {
                return Err(ctl.missing("pids", "linux.resources.pids.limit"))
            }
            None => {}
        }
    }
    if let Some(bio) = res.block_io() {
        match (ctl.locate("blkio"), ctl.locate("io")) {
            (Some(Located::V1(d)), _) => steps.extend(v1_limits::blkio(d, bio)?),
            (_, Some(Located::V2(d))) => steps.extend(v2_limits::io(d, bio)?),
            _ if v1_limits::blkio_asks(bio) => {
                return Err(ctl.missing("blkio/io", "linux.resources.blockIO"))
            }
            _ => {}
        }
    }
    if let Some(limits) = res.hugepage_limits().as_deref().filter(|l| !l.is_empty()) {
        match ctl.locate("hugetlb") {
            Some(Located::V1(d)) => steps.extend(v1_limits::hugetlb(d, limits)?),
            Some(Located::V2(d)) => steps.extend(v2_limits::hugetlb(d, limits)?),
            None => return Err(ctl.missing("hugetlb", "linux.resources.hugepageLimits")),
        }
    }
    if let Some(net) = res.network() {
        if let Some(id) = net.class_id() {
            match ctl.locate("net_cls") {
                Some(Located::V1(d)) => steps.push(v1_limits::net_cls(d, id)),
                _ if !ctl.is_legacy() => {
                    return Err(Error::Cgroup(
                        "linux.resources.network.classID: cgroup v2 has no net_cls controller"
                            .into(),
                    ))
                }
                _ => return Err(ctl.missing("net_cls", "linux.resources.network.classID")),
            }
        }
        if let Some(prios) = net.priorities().as_deref().filter(|p| !p.is_empty()) {
            match ctl.locate("net_prio") {
                Some(Located::V1(d)) => steps.extend(v1_limits::net_prio(d, prios)),
                _ if !ctl.is_legacy() => {
                    return Err(Error::Cgroup(
                        "linux.resources.network.priorities: cgroup v2 has no net_prio controller"
                            .into(),
                    ))
                }
                _ => return Err(ctl.missing("net_prio", "linux.resources.network.priorities")),
            }
        }
    }
    if let Some(rdma) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
        match ctl.locate("rdma") {
            Some(Located::V1(d)) | Some(Located::V2(d)) => steps.extend(v1_limits::rdma(d, rdma)),
            None => return Err(ctl.missing("rdma", "linux.resources.rdma")),
        }
    }
    if let Some(unified) = res.unified().as_ref().filter(|u| !u.is_empty()) {
        steps.extend(v2_limits::unified(&ctl, unified)?);
    }

    let rules = match (devices, res.devices()) {
        (DeviceMode::Create(nodes), given) => Some(device_rules::with_defaults(
            &device_rules::parse(given.as_deref().unwrap_or(&[]))?,
            nodes,
        )),
        (DeviceMode::Update, Some(given)) => Some(device_rules::with_defaults(
            &device_rules::parse(given)?,
            &[],
        )),
        (DeviceMode::Update, None) => None,
    };
    if let Some(rules) = rules {
        steps.extend(device_steps(&ctl, &rules, res)?);
    }
    Ok(steps)
}

fn device_steps(ctl: &Controllers<'_>, rules: &[Rule], res: &LinuxResources) -> Result<Vec<Step>> {
    const FIELD: &str = "linux.resources.devices";
    match (ctl.locate("devices"), ctl.v2_leaf()) {
        (Some(Located::V1(dir)), _) => devices_v1::plan(dir, rules),
        (_, Some(dir)) => {
            // v2 has no devices files: the rules become a program (the kernel consults it
            // before the v1 rules, so this also works for a v2 leaf on a hybrid host).
            let target = DeviceState::from_rules(DeviceState::allow_all(), rules);
            Ok(vec![Step::DeviceFilter {
                dir: dir.to_path_buf(),
                program: devices_bpf::program(&target),
                field: FIELD.to_string(),
            }])
        }
        _ if res.devices().as_ref().is_some_and(|d| !d.is_empty()) => {
            Err(ctl.missing("devices", FIELD))
        }
        _ => Ok(Vec::new()),
    }
}

/// Runs the steps; on a failure undoes the ones made, newest first, and reports the failure.
pub fn execute(steps: Vec<Step>) -> Result<()> {
    let mut done: Vec<usize> = Vec::new();
    let mut attached: Vec<devices_bpf::Attached> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let result = match step {
            Step::Write { write, .. } => write_file(write),
            Step::DeviceFilter {
                dir,
                program,
                field,
            } => devices_bpf::attach(dir, program)
                .map(|a| attached.push(a))
                .map_err(|e| Error::Cgroup(format!("{field}: {e}"))),
        };
        if let Err(e) = result {
            for a in attached.drain(..).rev() {
                if let Err(e) = a.undo() {
                    tracing::warn!("undoing the device filter: {e}");
                }
            }
            for &j in done.iter().rev() {
                if let Step::Write { undo, .. } = &steps[j] {
                    for w in undo {
                        if let Err(e) = write_file(w) {
                            tracing::warn!("restoring the previous value: {e}");
                        }
                    }
                }
            }
            return Err(e);
        }
        done.push(i);
    }
    for a in attached {
        // The new program is in force; old ones left attached only add restrictions that
        // the previous rules had, so this is worth a warning, not a failed update.
        if let Err(e) = a.commit() {
            tracing::warn!("linux.resources.devices: detaching the previous device filter: {e}");
        }
    }
    Ok(())
}

fn write_file(w: &Write) -> Result<()> {
    let name = w
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // cgroupfs files take one value per write(2); std's write_all on a fresh handle is that.
    fs::write(&w.file, w.value.as_bytes()).map_err(|e| {
        let mut msg = format!("{}: writing {name} ({:?}): {e}", w.field, w.value);
        if e.raw_os_error() == Some(libc::EBUSY)
            && (name == "memory.limit_in_bytes" || name == "memory.max")
        {
            // The kernel could not reclaim down to the new limit.
            let dir = w.file.parent().unwrap_or(Path::new("/"));
            let (usage, peak) = if name == "memory.max" {
                ("memory.current", "memory.peak")
            } else {
                ("memory.usage_in_bytes", "memory.max_usage_in_bytes")
            };
            let n = |f: &str| read(&dir.join(f)).unwrap_or_else(|| "?".into());
            msg.push_str(&format!(
                " (the limit is below what the container uses now: usage {}, peak {})",
                n(usage),
                n(peak)
            ));
        }
        Error::Cgroup(msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(dir: &str, controllers: &[&str], v2: bool) -> Mount {
        Mount {
            mountpoint: PathBuf::from(dir),
            controllers: controllers.iter().map(|s| s.to_string()).collect(),
            v2,
            own: PathBuf::from("/"),
        }
    }

    #[test]
    fn leaves_are_the_innermost_recorded_dirs() {
        let h = Hierarchy {
            layout: super::super::Layout::Legacy,
            mounts: vec![mount("/", &["x"], false)],
        };
        // "/" is a directory on every host; "/tmp" too.
        let dirs = vec![PathBuf::from("/"), PathBuf::from("/tmp")];
        let leaves = leaves_from_dirs(&h, &dirs);
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].1, PathBuf::from("/tmp"));
    }

    #[test]
    fn controllers_prefer_v1_and_fall_back_to_the_hybrid_v2_tree() {
        let tmp = std::env::temp_dir().join(format!("berth-ctl-{}", std::process::id()));
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("cgroup.controllers"), "hugetlb\n").unwrap();
        let leaves = vec![
            (
                mount("/sys/fs/cgroup/memory", &["memory"], false),
                PathBuf::from("/m/c"),
            ),
            (mount("/sys/fs/cgroup/unified", &[], true), tmp.clone()),
        ];
        let ctl = Controllers::new(&leaves);
        assert_eq!(ctl.locate("memory"), Some(Located::V1(Path::new("/m/c"))));
        assert_eq!(ctl.locate("hugetlb"), Some(Located::V2(tmp.as_path())));
        assert_eq!(ctl.locate("pids"), None);
        let e = ctl
            .missing("pids", "linux.resources.pids.limit")
            .to_string();
        assert!(
            e.contains("linux.resources.pids.limit: this host has no pids controller"),
            "{e}"
        );
        fs::remove_dir_all(&tmp).unwrap();
    }
}
