//! OCI image layouts the registry tests build and push with skopeo: the layout's frame,
//! its blobs, and the config, manifest and index of a one-platform image.

use std::fs;
use std::path::Path;

use berth_image::content_store::ContentStore;
use berth_image::digest::Digest;
use berth_image::manifest::Platform;
use berth_image::registry::{Puller, RegistryClient, RegistryConfig};
use berth_image::snapshot::LayerStore;

/// An empty layout (`oci-layout`, `blobs/sha256/`) in a temp dir.
pub fn new_layout() -> tempfile::TempDir {
    let layout = tempfile::tempdir().unwrap();
    fs::create_dir_all(layout.path().join("blobs/sha256")).unwrap();
    fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

/// Stores `bytes` as a blob of the layout; its digest.
pub fn write_blob(layout: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    d
}

/// Writes the config and manifest of an image for this host's platform over `layers`
/// (descriptors of blobs already in the layout, bottom first, unpacking to `diff_ids`),
/// and an index.json that names it `tag`.
pub fn write_image(layout: &Path, layers: Vec<serde_json::Value>, diff_ids: &[Digest], tag: &str) {
    let config_json = serde_json::json!({
        "architecture": Platform::host().architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    })
    .to_string();
    let config = write_blob(layout, config_json.as_bytes());
    let manifest_json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_json.len()},
        "layers": layers
    })
    .to_string();
    let manifest = write_blob(layout, manifest_json.as_bytes());
    fs::write(
        layout.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest.to_string(),
             "size": manifest_json.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}
        ]})
        .to_string(),
    )
    .unwrap();
}

/// A puller with default registry settings into the data root `root`.
pub fn puller(root: &Path) -> Puller {
    Puller::new(
        RegistryClient::new(RegistryConfig::default()).unwrap(),
        ContentStore::open(root).unwrap(),
        LayerStore::open(root).unwrap(),
    )
}
