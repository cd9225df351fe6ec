//! berth's image store: references, the content store, layer unpacking, overlay
//! snapshots and the registry client.
//!
//! The pieces are separable (containerd's seams): [`content_store::ContentStore`] holds
//! blobs by digest, [`layer_unpack`] turns a layer blob into an overlay layer dir,
//! [`snapshot::LayerStore`] and [`snapshot::Snapshotter`] keep layer dirs by ChainID and
//! mount them, [`registry::RegistryClient`] fetches into the store and
//! [`push::Pusher`] pushes from it. [`image_store::ImageStore`] names images (tags to
//! manifests) and garbage-collects what no image or container references;
//! [`import::import`] makes a one-layer image from a rootfs tar, its config edited by
//! Dockerfile-style changes ([`config_change`]).

pub mod archive;
mod blob_tee;
pub mod config_change;
pub mod content_store;
pub mod digest;
pub mod image_store;
pub mod import;
pub mod layer_unpack;
pub mod manifest;
pub mod push;
pub mod reference;
pub mod registry;
pub mod runtime_spec;
pub mod snapshot;

pub use digest::Digest;
pub use reference::{Reference, ReferenceError};
