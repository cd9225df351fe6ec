//! Creating a container's cgroup directories, putting its init in them, and removing them.

use super::hierarchy::{Hierarchy, Layout, Mount};
use crate::error::{Context, Error, Result};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a container's cgroup goes in each hierarchy. Pure: computed from the hierarchy.
#[derive(Debug, Clone)]
pub struct PlacementPlan {
    pub layout: Layout,
    /// (hierarchy, host directory of the container's cgroup in it)
    pub leaves: Vec<(Mount, PathBuf)>,
}

/// The applied plan: what exists now and what we created (and so must remove).
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub leaves: Vec<(Mount, PathBuf)>,
    /// Directories this container created, outermost first.
    pub created: Vec<PathBuf>,
    pub freezer: Option<PathBuf>,
}

impl PlacementPlan {
    /// A relative `path` is resolved in each hierarchy under our own cgroup there, as runc
    /// does: the runtime may sit at different places in different hierarchies.
    pub fn new(h: &Hierarchy, path: &Path) -> Result<PlacementPlan> {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(Error::Cgroup(format!(
                "linux.cgroupsPath {}: must not contain '..'",
                path.display()
            )));
        }
        let mut leaves = Vec::new();
        for m in &h.mounts {
            let full = if path.is_absolute() {
                path.to_path_buf()
            } else {
                m.own.join(path)
            };
            let rel: PathBuf = full
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            if rel.as_os_str().is_empty() {
                return Err(Error::Cgroup(
                    "linux.cgroupsPath: resolves to the root cgroup".into(),
                ));
            }
            leaves.push((m.clone(), m.mountpoint.join(rel)));
        }
        Ok(PlacementPlan {
            layout: h.layout,
            leaves,
        })
    }

    /// Makes the directories. On failure, what was made so far is removed again.
    pub fn apply(&self) -> Result<Placement> {
        let mut placement = Placement {
            leaves: self.leaves.clone(),
            created: Vec::new(),
            freezer: None,
        };
        for (mount, leaf) in &self.leaves {
            if let Err(e) = make_dirs(mount, leaf, self.layout, &mut placement.created) {
                placement.remove().ok();
                return Err(e);
            }
            if mount.v2 && self.layout == Layout::Unified {
                placement.freezer = Some(leaf.join("cgroup.freeze"));
            } else if mount.controllers.iter().any(|c| c == "freezer") {
                placement.freezer = Some(leaf.join("freezer.state"));
            }
        }
        Ok(placement)
    }
}

fn make_dirs(mount: &Mount, leaf: &Path, layout: Layout, created: &mut Vec<PathBuf>) -> Result<()> {
    let rel = leaf.strip_prefix(&mount.mountpoint).unwrap_or(leaf);
    let mut dir = mount.mountpoint.clone();
    for comp in rel.components() {
        let parent = dir.clone();
        dir.push(comp);
        if layout == Layout::Unified && mount.v2 {
            enable_controllers(&parent);
        }
        match fs::create_dir(&dir) {
            Ok(()) => {
                created.push(dir.clone());
                if mount.controllers.iter().any(|c| c == "cpuset") {
                    inherit_cpuset(&parent, &dir)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::Cgroup(format!("creating {}: {e}", dir.display())));
            }
        }
    }
    Ok(())
}

/// A new v1 cpuset cgroup starts with no cpus and mems, and no task can join it until they
/// are set: copy the parent's.
fn inherit_cpuset(parent: &Path, dir: &Path) -> Result<()> {
    for name in ["cpus", "mems"] {
        let prefixed = format!("cpuset.{name}");
        let file = if parent.join(&prefixed).exists() {
            prefixed
        } else {
            name.to_string()
        };
        let value = fs::read_to_string(parent.join(&file))
            .with_context(|| format!("reading {}", parent.join(&file).display()))?;
        fs::write(dir.join(&file), value.trim())
            .with_context(|| format!("writing {}", dir.join(&file).display()))?;
    }
    Ok(())
}

/// On v2, a controller is usable in a child only when the parent delegates it. Enabling is
/// best-effort here (placement does not need it); the limits step reports what it lacks.
fn enable_controllers(dir: &Path) {
    let Ok(available) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let Ok(enabled) = fs::read_to_string(dir.join("cgroup.subtree_control")) else {
        return;
    };
    for c in available.split_whitespace() {
        if !enabled.split_whitespace().any(|e| e == c) {
            let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

impl Placement {
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for (_, leaf) in &self.leaves {
            let procs = leaf.join("cgroup.procs");
            fs::write(&procs, pid.to_string()).map_err(|e| {
                Error::Cgroup(format!("adding pid {pid} to {}: {e}", procs.display()))
            })?;
        }
        Ok(())
    }

    /// Removes what `apply` created.
    pub fn remove(&self) -> Result<()> {
        remove_dirs(&self.created)
    }
}

/// Every pid in the container's cgroup (from the first hierarchy that has the directory).
pub fn pids(leaves: &[PathBuf]) -> Vec<i32> {
    for leaf in leaves {
        if let Ok(text) = fs::read_to_string(leaf.join("cgroup.procs")) {
            return text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        }
    }
    Vec::new()
}

/// Removes cgroup directories, innermost first. The leaf may be busy for a moment while its
/// last process is being reaped, so EBUSY is retried for a short while. A shared ancestor that
/// another container still uses (ENOTEMPTY/EBUSY) is left in place.
pub fn remove_dirs(created: &[PathBuf]) -> Result<()> {
    for (i, dir) in created.iter().enumerate().rev() {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => {
                    let busy =
                        matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::ENOTEMPTY));
                    let is_leaf_of_its_tree =
                        created.get(i + 1).is_none_or(|next| !next.starts_with(dir));
                    if busy && !is_leaf_of_its_tree {
                        break;
                    }
                    if busy && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    return Err(Error::Cgroup(format!("removing {}: {e}", dir.display())));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> Hierarchy {
        Hierarchy::parse(
            "31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
             33 30 0:29 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n",
            "3:cpu:/\n2:freezer:/\n0::/\n",
        )
    }

    #[test]
    fn one_leaf_per_hierarchy() {
        let plan = PlacementPlan::new(&hybrid(), Path::new("/berth/c1")).unwrap();
        let leaves: Vec<_> = plan.leaves.iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(
            leaves,
            vec![
                PathBuf::from("/sys/fs/cgroup/unified/berth/c1"),
                PathBuf::from("/sys/fs/cgroup/cpu/berth/c1"),
                PathBuf::from("/sys/fs/cgroup/freezer/berth/c1"),
            ]
        );
    }

    #[test]
    fn relative_paths_go_under_our_own_cgroup_per_hierarchy() {
        let h = Hierarchy::parse(
            "32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
             34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
            "5:memory:/session/7\n3:cpu:/\n",
        );
        let plan = PlacementPlan::new(&h, Path::new("rel/c")).unwrap();
        let leaves: Vec<_> = plan.leaves.iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(
            leaves,
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu/rel/c"),
                PathBuf::from("/sys/fs/cgroup/memory/session/7/rel/c"),
            ]
        );
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert!(PlacementPlan::new(&hybrid(), Path::new("/a/../../etc")).is_err());
        assert!(PlacementPlan::new(&hybrid(), Path::new("/")).is_err());
    }

    #[test]
    fn unified_leaf() {
        let h = Hierarchy::parse(
            "1 1 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/\n",
        );
        let plan = PlacementPlan::new(&h, Path::new("/machine/c2")).unwrap();
        assert_eq!(plan.leaves.len(), 1);
        assert_eq!(plan.leaves[0].1, PathBuf::from("/sys/fs/cgroup/machine/c2"));
        assert_eq!(plan.layout, Layout::Unified);
    }
}
