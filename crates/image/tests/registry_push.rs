//! Push against a real registry (Debian's `docker-registry`) on 127.0.0.1: an image the
//! test builds straight into the content store is pushed monolithically, again (HEAD
//! hits, nothing uploaded), to a second repository (cross-repo mount), in chunks, and
//! with a mount the registry cannot do (202 fallback). skopeo, an independent client,
//! then reads each push back.
//!
//! Needs `docker-registry`, `skopeo`, `busybox-static` (scripts/install-deps.sh).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use berth_image::content_store::ContentStore;
use berth_image::digest::Digest;
use berth_image::manifest::{self, AnyManifest, ImageConfig, Platform};
use berth_image::push::{PushConfig, Pusher};
use berth_image::registry::{Image, RegistryClient, RegistryConfig};
use berth_image::Reference;

mod support;
use support::Registry;

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo: run scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds a one-layer busybox image into `content`, as if it had been pulled from a
/// registry that is not the one under test (so it is no mount source there).
fn build_image(content: &ContentStore) -> Image {
    let busybox = fs::read("/bin/busybox").expect("/bin/busybox: install busybox-static");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("bin/busybox").unwrap();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, &busybox[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let layer = Digest::of(&gz);
    content.put(&layer, &gz).unwrap();

    let config_json = serde_json::json!({
        "architecture": Platform::host().architecture, "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}
    })
    .to_string();
    let config_digest = Digest::of(config_json.as_bytes());
    content.put(&config_digest, config_json.as_bytes()).unwrap();
    let manifest_json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::media_type::OCI_MANIFEST,
        "config": {"mediaType": manifest::media_type::OCI_CONFIG, "digest": config_digest.to_string(), "size": config_json.len()},
        "layers": [{"mediaType": manifest::media_type::OCI_LAYER_GZIP, "digest": layer.to_string(), "size": gz.len()}]
    })
    .to_string();
    let manifest_digest = Digest::of(manifest_json.as_bytes());
    content
        .put(&manifest_digest, manifest_json.as_bytes())
        .unwrap();
    let AnyManifest::Manifest(m) = manifest::parse(None, manifest_json.as_bytes()).unwrap() else {
        panic!("not a manifest");
    };
    let config: ImageConfig = serde_json::from_str(&config_json).unwrap();
    Image {
        reference: Reference::parse(&format!(
            "elsewhere.example/build/busybox@{manifest_digest}"
        ))
        .unwrap(),
        manifest_digest: manifest_digest.clone(),
        index_digest: manifest_digest,
        manifest: *m,
        config_digest,
        config,
        layers: vec![diff_id],
    }
}

/// Copies `reference` back out of the registry with skopeo into an OCI layout and checks
/// that the manifest and every blob are the ones pushed, byte for byte.
fn check_round_trip(registry: &Registry, repo_tag: &str, image: &Image, content: &ContentStore) {
    let src = format!("docker://{}/{repo_tag}", registry.host());
    let inspect: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &src])).unwrap();
    assert_eq!(inspect["Digest"], image.manifest_digest.to_string());
    assert_eq!(
        inspect["Layers"][0],
        image.manifest.layers[0].digest.to_string()
    );

    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:copied", out.path().display());
    skopeo(&[
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        &src,
        &dest,
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.to_string()
    );
    for d in [
        &image.manifest_digest,
        &image.config_digest,
        &image.manifest.layers[0].digest,
    ] {
        let copied = fs::read(blob(out.path(), d)).unwrap();
        assert_eq!(&Digest::of(&copied), d);
        assert_eq!(copied, content.read(d).unwrap());
    }
}

fn blob(layout: &Path, d: &Digest) -> std::path::PathBuf {
    layout.join("blobs/sha256").join(d.hex())
}

fn client() -> RegistryClient {
    RegistryClient::new(RegistryConfig::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_a_local_registry() {
    let registry = Registry::start();
    let root = tempfile::tempdir().unwrap();
    let content = ContentStore::open(root.path()).unwrap();
    let image = build_image(&content);
    let mut blobs = vec![
        image.config_digest.clone(),
        image.manifest.layers[0].digest.clone(),
    ];
    blobs.sort();
    let reference =
        |repo_tag: &str| Reference::parse(&format!("{}/{repo_tag}", registry.host())).unwrap();

    // 1. Monolithic upload: POST then one PUT per blob, then the manifest.
    let pusher = Pusher::new(client(), content.clone(), PushConfig::default());
    let report = pusher
        .push(&reference("test/pushed:v1"), &image)
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, image.manifest_digest);
    assert_eq!(report.uploaded, blobs);
    assert!(report.existing.is_empty() && report.mounted.is_empty());
    let stats = pusher.client().stats();
    assert_eq!(stats.blob_uploads.load(Ordering::Relaxed), 2);
    assert_eq!(stats.upload_chunks.load(Ordering::Relaxed), 0);
    assert_eq!(stats.manifest_puts.load(Ordering::Relaxed), 1);
    check_round_trip(&registry, "test/pushed:v1", &image, &content);

    // 2. Again: every HEAD hits, nothing is uploaded.
    let posts_before = registry
        .requests()
        .iter()
        .filter(|l| l.contains("\"POST "))
        .count();
    let sent_before = stats.bytes_sent.load(Ordering::Relaxed);
    let report = pusher
        .push(&reference("test/pushed:v1"), &image)
        .await
        .unwrap();
    assert_eq!(report.existing, blobs);
    assert!(report.uploaded.is_empty() && report.mounted.is_empty());
    assert_eq!(stats.blob_uploads.load(Ordering::Relaxed), 2);
    assert_eq!(stats.bytes_sent.load(Ordering::Relaxed), sent_before);
    let posts_after = registry
        .requests()
        .iter()
        .filter(|l| l.contains("\"POST "))
        .count();
    assert_eq!(posts_after, posts_before, "no upload started");

    // 3. Another repository on the same registry: mounted from the first, no bytes sent.
    let report = pusher
        .push(&reference("test/other:v1"), &image)
        .await
        .unwrap();
    assert_eq!(report.mounted, blobs);
    assert!(report.uploaded.is_empty());
    assert_eq!(stats.blob_mounts.load(Ordering::Relaxed), 2);
    assert_eq!(stats.bytes_sent.load(Ordering::Relaxed), sent_before);
    let mounts: Vec<String> = registry
        .requests()
        .into_iter()
        .filter(|l| {
            l.contains("\"POST /v2/test/other/blobs/uploads/?")
                && l.contains("mount=")
                && l.contains("from=test%2Fpushed")
                && l.contains("HTTP/1.1\" 201")
        })
        .collect();
    assert_eq!(mounts.len(), 2, "{:#?}", registry.requests());
    check_round_trip(&registry, "test/other:v1", &image, &content);

    // 4. Chunked: a fresh pusher (no mount sources) with small chunks.
    let chunked = Pusher::new(
        client(),
        content.clone(),
        PushConfig {
            monolithic_max: 0,
            chunk_size: 256 << 10,
            ..PushConfig::default()
        },
    );
    let report = chunked
        .push(&reference("test/chunked:v1"), &image)
        .await
        .unwrap();
    assert_eq!(report.uploaded, blobs);
    let layer_size = image.manifest.layers[0].size;
    let config_size = image.manifest.config.size;
    let chunk = 256u64 << 10;
    assert_eq!(
        chunked
            .client()
            .stats()
            .upload_chunks
            .load(Ordering::Relaxed),
        layer_size.div_ceil(chunk) + config_size.div_ceil(chunk)
    );
    assert!(registry
        .requests()
        .iter()
        .any(|l| l.contains("\"PATCH /v2/test/chunked/blobs/uploads/")));
    check_round_trip(&registry, "test/chunked:v1", &image, &content);

    // 5. A mount the registry cannot do (the source does not have the blob): it answers
    //    202 with an upload session, and the pusher uploads into it.
    let fallback = Pusher::new(client(), content.clone(), PushConfig::default());
    for d in &blobs {
        fallback.record_location(d, &registry.host(), "test/empty");
    }
    let report = fallback
        .push(&reference("test/fallback:v1"), &image)
        .await
        .unwrap();
    assert_eq!(report.uploaded, blobs);
    assert!(report.mounted.is_empty());
    assert!(registry
        .requests()
        .iter()
        .any(|l| l.contains("\"POST /v2/test/fallback/blobs/uploads/?")
            && l.contains("from=test%2Fempty")
            && l.contains("HTTP/1.1\" 202")));
    check_round_trip(&registry, "test/fallback:v1", &image, &content);

    // 6. By digest: the manifest is stored under its digest; a wrong digest is refused.
    let by_digest = reference(&format!("test/pinned@{}", image.manifest_digest));
    fallback.push(&by_digest, &image).await.unwrap();
    let wrong = reference(&format!("test/pinned@{}", image.config_digest));
    assert!(fallback.push(&wrong, &image).await.is_err());
}
