//! The five capability sets of the container process, with the `caps` crate.

use crate::error::{Error, Result};
use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use std::str::FromStr;

/// The config's sets translated to `caps` values. Capabilities the host's bounding set does
/// not have (this kernel lacks them, or we run without them: CAP_SYS_RESOURCE on some VMs)
/// cannot be granted by anyone; they are dropped with a warning, as runc does for unknown
/// ones, rather than failing every privileged container.
#[derive(Debug, Default, Clone)]
pub struct CapabilityPlan {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
    pub unavailable: Vec<String>,
}

fn convert(
    set: Option<&Capabilities>,
    available: &CapsHashSet,
    missing: &mut Vec<String>,
) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for c in set.into_iter().flatten() {
        let name = format!("CAP_{c}");
        match Cap::from_str(&name) {
            Ok(cap) if available.contains(&cap) => {
                out.insert(cap);
            }
            _ => {
                if !missing.contains(&name) {
                    missing.push(name);
                }
            }
        }
    }
    out
}

impl CapabilityPlan {
    pub fn new(caps: &LinuxCapabilities, available: &CapsHashSet) -> CapabilityPlan {
        let mut missing = Vec::new();
        let plan = CapabilityPlan {
            bounding: convert(caps.bounding().as_ref(), available, &mut missing),
            effective: convert(caps.effective().as_ref(), available, &mut missing),
            permitted: convert(caps.permitted().as_ref(), available, &mut missing),
            inheritable: convert(caps.inheritable().as_ref(), available, &mut missing),
            ambient: convert(caps.ambient().as_ref(), available, &mut missing),
            unavailable: missing,
        };
        plan
    }
}

fn err(what: &str, e: caps::errors::CapsError) -> Error {
    Error::InvalidState(format!("process.capabilities: {what}: {e}"))
}

/// Drops every capability not in the bounding set. Done while still root, before setuid.
pub fn apply_bounding(plan: &CapabilityPlan) -> Result<()> {
    let current = caps::read(None, CapSet::Bounding).map_err(|e| err("reading bounding set", e))?;
    for cap in current.difference(&plan.bounding) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(|e| err("dropping from bounding set", e))?;
    }
    Ok(())
}

/// Sets effective, permitted, inheritable and ambient. Done after the switch to the
/// container user (with PR_SET_KEEPCAPS, so permitted survives the setuid).
pub fn apply_sets(plan: &CapabilityPlan) -> Result<()> {
    // Inheritable and effective first, while permitted is still whole: each call must leave
    // effective a subset of permitted, so permitted shrinks last.
    caps::set(None, CapSet::Inheritable, &plan.inheritable).map_err(|e| err("inheritable", e))?;
    caps::set(None, CapSet::Effective, &plan.effective).map_err(|e| err("effective", e))?;
    caps::set(None, CapSet::Permitted, &plan.permitted).map_err(|e| err("permitted", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient", e))?;
    for cap in &plan.ambient {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|e| err("ambient", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_convert_and_unavailable_ones_are_reported() {
        let oci: LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_KILL", "CAP_SYS_RESOURCE", "CAP_NET_RAW"],
            "effective": ["CAP_KILL"]
        }))
        .unwrap();
        let available: CapsHashSet = [Cap::CAP_KILL, Cap::CAP_NET_RAW].into_iter().collect();
        let plan = CapabilityPlan::new(&oci, &available);
        assert_eq!(plan.bounding.len(), 2);
        assert!(plan.effective.contains(&Cap::CAP_KILL));
        assert_eq!(plan.unavailable, vec!["CAP_SYS_RESOURCE".to_string()]);
        assert!(plan.ambient.is_empty());
    }
}
