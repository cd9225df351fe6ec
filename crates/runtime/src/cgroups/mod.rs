//! Placing a container in its cgroup on either host layout.
//!
//! cgroup v1 (including the hybrid layout: controllers on v1, an empty v2 tree at
//! /sys/fs/cgroup/unified) has one directory per hierarchy; v2 has one. Planning (which
//! directories, from mountinfo and our own /proc/self/cgroup) is pure and unit-tested for
//! both layouts; applying it is mkdir, a pid written to `cgroup.procs`, and rmdir on delete.
//! Resource limits come on top of this in a later step. cgroups-rs is not used here: placing
//! a pid and removing a directory is a few lines, and its hierarchy detection does not model
//! the hybrid layout's unified mount.

mod hierarchy;
pub mod placement;
pub mod resources;

pub use hierarchy::{Hierarchy, Layout, Mount};
pub use placement::{Placement, PlacementPlan};

use std::path::{Path, PathBuf};

/// The in-hierarchy path for a container: absolute paths are taken as they are (relative to
/// each hierarchy's root), relative ones are under the runtime's own cgroup, and no path at
/// all means `/berth/<id>` (runc's default is similar: a runtime-chosen place).
pub fn container_path(cgroups_path: Option<&Path>, id: &str, own: &Path) -> PathBuf {
    match cgroups_path {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) if !p.as_os_str().is_empty() => own.join(p),
        _ => PathBuf::from("/berth").join(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_relative_and_default_paths() {
        let own = Path::new("/user.slice/session-1");
        assert_eq!(
            container_path(Some(Path::new("/a/b")), "x", own),
            PathBuf::from("/a/b")
        );
        assert_eq!(
            container_path(Some(Path::new("a/b")), "x", own),
            PathBuf::from("/user.slice/session-1/a/b")
        );
        assert_eq!(container_path(None, "x", own), PathBuf::from("/berth/x"));
    }
}
