//! Resource limits (`linux.resources`) written into the container's cgroup.
//!
//! Not built yet beyond checking: a limit is refused with an error naming it, rather than
//! silently not applied. Device rules are accepted (runc's default spec always carries a
//! deny-all rule) and not yet enforced.

use super::placement::Placement;
use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;

/// Applies `res` to the container's cgroup directories.
pub fn apply(_placement: &Placement, res: &LinuxResources) -> Result<()> {
    let mut asked = Vec::new();
    if res.memory().is_some() {
        asked.push("memory");
    }
    if res.cpu().is_some() {
        asked.push("cpu");
    }
    if res.pids().is_some() {
        asked.push("pids");
    }
    if res.block_io().is_some() {
        asked.push("blockIO");
    }
    if res
        .hugepage_limits()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        asked.push("hugepageLimits");
    }
    if res.network().is_some() {
        asked.push("network");
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        asked.push("unified");
    }
    if asked.is_empty() {
        return Ok(());
    }
    Err(Error::Cgroup(format!(
        "linux.resources: {} limits are not supported by this build yet",
        asked.join(", ")
    )))
}
