//! The OCI runtime conformance suite behind `oci-conformance`.
//!
//! Each check writes a bundle (a rootfs holding the static `oci-probe`, a config.json made
//! from a minimal base plus the field under test), drives the runtime under test through its
//! runc-compatible command line, and compares what the probe reports from inside the
//! container (or what the host shows: cgroup files, hook logs, state JSON) with the config.
//!
//! - [`checks`]: the checks, one module per area of the spec.
//! - [`harness`]: what a check gets to work with ([`harness::Ctx`]), and the cleanup that
//!   runs after each one whatever happened.
//! - [`known`]: the one list of expected failures (TODO for berth-runtime, notes for runc).
//! - [`report`]: TAP lines and the summary.

pub mod bundle;
pub mod caps;
pub mod checks;
pub mod cli;
pub mod command;
pub mod console;
pub mod harness;
pub mod host;
pub mod known;
pub mod probe_build;
pub mod report;
