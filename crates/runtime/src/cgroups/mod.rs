//! Placing a container in its cgroup on either host layout.
//!
//! cgroup v1 (including the hybrid layout: controllers on v1, an empty v2 tree at
//! /sys/fs/cgroup/unified) has one directory per hierarchy; v2 has one. Planning (which
//! directories, from mountinfo and our own /proc/self/cgroup) is pure and unit-tested for
//! both layouts; applying it is mkdir, a pid written to `cgroup.procs`, and rmdir on delete.
//! Limits (`resources`: planned, checked, then written, with an undo for `update`) and usage
//! (`stats`) work on the same leaves. cgroups-rs is not used: its hierarchy detection does
//! not model the hybrid layout's unified mount, and it cannot validate a whole update before
//! writing any of it.

pub mod device_rules;
pub mod devices_bpf;
mod devices_v1;
mod hierarchy;
pub mod placement;
pub mod resources;
pub mod stats;
#[cfg(test)]
mod test_fixture;
mod v1_limits;
mod v2_limits;

pub use hierarchy::{Hierarchy, Layout, Mount};
pub use placement::{Placement, PlacementPlan};

use std::path::{Path, PathBuf};

/// The container's cgroup path as configured: absolute paths are taken as they are (relative
/// to each hierarchy's root), relative ones are resolved per hierarchy under the runtime's own
/// cgroup there (see `PlacementPlan::new`), and no path at all means `/berth/<id>` (runc's
/// default is similar: a runtime-chosen place).
pub fn container_path(cgroups_path: Option<&Path>, id: &str) -> PathBuf {
    match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("/berth").join(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_or_default_paths() {
        assert_eq!(
            container_path(Some(Path::new("/a/b")), "x"),
            PathBuf::from("/a/b")
        );
        assert_eq!(
            container_path(Some(Path::new("a/b")), "x"),
            PathBuf::from("a/b")
        );
        assert_eq!(
            container_path(Some(Path::new("")), "x"),
            PathBuf::from("/berth/x")
        );
        assert_eq!(container_path(None, "x"), PathBuf::from("/berth/x"));
    }
}
