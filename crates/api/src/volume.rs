//! Volumes: `GET /volumes`, `POST /volumes/create`, `GET /volumes/{name}`,
//! `POST /volumes/prune`, as moby's `api/types/volume` names them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::container::null_as_default;

/// The label Docker puts on a volume it made for a container (`-v /path`, an image's
/// `VOLUME`): what `volume prune` removes by default, and `rm -v` with the container.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// One volume (moby `volume.Volume`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Volume {
    /// RFC 3339.
    pub created_at: String,
    pub driver: String,
    /// `null` when there are none, as dockerd sends a nil map.
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Where the data is on the host (`<data-root>/volumes/<name>/_data`).
    pub mountpoint: String,
    pub name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    /// `local`: the volume exists on this host only.
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_data: Option<UsageData>,
}

/// Size and reference count; computed only where dockerd computes it (`system df`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct UsageData {
    /// Bytes; `-1` when not computed.
    pub size: i64,
    /// Containers using it; `-1` when not computed.
    pub ref_count: i64,
}

/// The body of `POST /volumes/create` (moby `volume.CreateOptions`). Every field may be
/// missing or `null`; an empty name asks for a generated one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct VolumeCreateRequest {
    pub name: String,
    pub driver: String,
    #[serde(deserialize_with = "null_as_default")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// `GET /volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeListResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume>,
    /// Always `null` from berthd (dockerd's warnings are about plugins).
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

/// `POST /volumes/prune`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumePruneResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes_deleted: Vec<String>,
    /// Bytes.
    #[serde(default)]
    pub space_reclaimed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_from_the_docker_cli() {
        let req: VolumeCreateRequest = serde_json::from_str(
            r#"{"Driver":"local","DriverOpts":{},"Labels":{"a":"b"},"Name":"data"}"#,
        )
        .expect("parses");
        assert_eq!(req.name, "data");
        assert_eq!(req.labels["a"], "b");
        let empty: VolumeCreateRequest =
            serde_json::from_str(r#"{"Labels":null,"DriverOpts":null}"#).expect("parses");
        assert!(empty.name.is_empty() && empty.labels.is_empty());
    }

    #[test]
    fn list_has_null_warnings() {
        let text = serde_json::to_string(&VolumeListResponse::default()).expect("encodes");
        assert_eq!(text, r#"{"Volumes":[],"Warnings":null}"#);
    }
}
