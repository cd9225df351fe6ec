//! Reclaiming space: `POST /containers/prune`, `POST /images/prune` and `GET /system/df`,
//! as moby's `api/types` names them.

use serde::{Deserialize, Serialize};

use crate::container::{ContainerSummary, EmptyObject};
use crate::image::{ImageDeleteItem, ImageSummary};
use crate::volume::Volume;

/// `POST /containers/prune`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainersPruneReport {
    /// Full ids; `null` when nothing was removed, as dockerd's nil slice.
    pub containers_deleted: Option<Vec<String>>,
    /// Bytes of the removed containers' writable layers.
    pub space_reclaimed: u64,
}

/// `POST /images/prune`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImagesPruneReport {
    /// `null` when nothing was removed.
    pub images_deleted: Option<Vec<ImageDeleteItem>>,
    /// Bytes of the layers removed.
    pub space_reclaimed: u64,
}

/// A container in `GET /system/df`: the list entry with its sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsageContainer {
    #[serde(flatten)]
    pub summary: ContainerSummary,
    /// Bytes in the container's writable layer.
    #[serde(rename = "SizeRw", default)]
    pub size_rw: i64,
    /// Bytes of the whole rootfs: the image's layers and the writable layer.
    #[serde(rename = "SizeRootFs", default)]
    pub size_root_fs: i64,
}

/// `GET /system/df` (moby `types.DiskUsage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DiskUsage {
    /// Bytes of every unpacked layer, each counted once.
    pub layers_size: i64,
    pub images: Vec<ImageSummary>,
    pub containers: Vec<DiskUsageContainer>,
    pub volumes: Vec<Volume>,
    /// berth has no builder; always empty.
    pub build_cache: Vec<EmptyObject>,
}
