//! berth's OCI runtime as a library: a bundle directory in, a container out.
//!
//! The binary `berth-runtime` is a thin runc-compatible command line over this crate; the
//! shim calls the same functions in-process. The launch path clones the container's init
//! straight into its namespaces and never re-executes our own binary.

pub mod capabilities;
pub mod cgroups;
pub mod config;
pub mod console;
pub mod devices;
pub mod error;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod id;
pub mod init;
pub mod launcher;
pub mod lifecycle;
pub mod mount_options;
pub mod namespaces;
pub mod process_setup;
pub mod rootfs;
pub mod seccomp;
pub mod secure_path;
pub mod signal;
pub mod spec_template;
pub mod state;
pub mod sync_channel;

pub use error::{Error, Result};
