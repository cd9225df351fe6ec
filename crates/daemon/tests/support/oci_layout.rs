//! Test images as OCI image layouts, for skopeo to push to a registry or turn into a
//! `docker save` archive: one image, tagged `v1`, of uncompressed tar layers.

#![allow(dead_code)] // each test binary uses a part

use std::path::Path;

use berth_image::Digest;

/// This host's architecture as an image config names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes a layout at `layout` (created): `layers` (tars, bottom first) and `config` (the
/// image config JSON, its rootfs naming the layers' digests) as blobs, their manifest, and
/// an index.json that tags it `v1`. The config's digest.
pub fn write_layout(layout: &Path, config: &str, layers: &[impl AsRef<[u8]>]) -> Digest {
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("layout");
    let blob = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        std::fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).expect("blob");
        d
    };
    let layer_descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|t| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": blob(t.as_ref()).to_string(), "size": t.as_ref().len()})
        })
        .collect();
    let config_digest = blob(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config.len()},
        "layers": layer_descriptors
    })
    .to_string();
    let manifest_digest = blob(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest.to_string(), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "v1"}}]
    })
    .to_string();
    std::fs::write(layout.join("index.json"), index).expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    config_digest
}
