pub mod bare_daemon;
pub mod cli;
pub mod engine;
pub mod leaks;
pub mod oci_layout;
pub mod registry;
pub mod terminal;
