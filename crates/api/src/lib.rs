//! Wire types of the Docker Engine API, as berthd serves them and as the `docker` CLI,
//! docker-py and `berth` read them.
//!
//! Only shapes live here, with Docker's field names spelled exactly (the clients decode by
//! name). The daemon converts these to its own types at the edge; nothing in this crate
//! knows how a value is computed.

#[cfg(feature = "client")]
pub mod client;
pub mod container;
pub mod detach_keys;
pub mod error;
pub mod exec;
pub mod image;
pub mod network;
pub mod prune;
pub mod stats;
pub mod stream;
pub mod system;
pub mod version;
pub mod volume;

pub use error::ErrorResponse;
pub use system::{
    Commit, ComponentVersion, Info, Platform, PluginsInfo, Runtime, SwarmInfo, SystemVersion,
};
pub use version::{
    ApiVersion, ParseVersionError, UnsupportedVersion, MAX_API_VERSION, MIN_API_VERSION,
};
