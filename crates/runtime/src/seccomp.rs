//! Seccomp filters from the OCI profile (`linux.seccomp`).
//!
//! Not built yet: a config with a seccomp profile is refused with an error that says so,
//! rather than running the container unfiltered.

use crate::error::{Error, Result};
use oci_spec::runtime::LinuxSeccomp;

/// A compiled filter, ready to load in the init right before exec.
#[derive(Debug, Clone)]
pub struct Filter {
    _private: (),
}

/// Compiles the profile. Runs in the runtime before anything is created, so a bad profile
/// fails `create` cleanly.
pub fn compile(_profile: &LinuxSeccomp) -> Result<Filter> {
    Err(Error::InvalidState(
        "linux.seccomp: seccomp filters are not supported by this build yet".into(),
    ))
}

/// Loads the filter into the calling thread. The last step before exec.
pub fn load(_filter: &Filter) -> Result<()> {
    Err(Error::InvalidState(
        "linux.seccomp: not supported yet".into(),
    ))
}

/// The seccomp part of `features`.
pub fn features() -> serde_json::Value {
    serde_json::json!({"enabled": false})
}
