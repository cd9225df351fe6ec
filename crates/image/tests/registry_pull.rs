//! End to end: a real registry (Debian's `docker-registry`) on 127.0.0.1, an image the
//! test builds from the host's static busybox and pushes with skopeo, pulled with
//! berth's client, unpacked, and mounted as an overlay snapshot.
//!
//! Needs root, overlayfs, and `docker-registry`, `skopeo`, `busybox-static`
//! (scripts/install-deps.sh). All traffic stays on 127.0.0.1.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::content_store::{ContentError, ContentStore};
use berth_image::digest::Digest;
use berth_image::manifest::Platform;
use berth_image::registry::{Puller, RegistryClient, RegistryConfig, RegistryError};
use berth_image::snapshot::{is_mounted, mount_points, LayerStore, Snapshotter};
use berth_image::Reference;

mod support;
use support::oci_layout::{new_layout, puller, write_blob, write_image};
use support::Registry;

/// A temp data root that unmounts whatever is below it before being removed.
struct DataRoot(Option<tempfile::TempDir>);

impl DataRoot {
    fn new() -> DataRoot {
        DataRoot(Some(tempfile::tempdir().unwrap()))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().map(|d| d.path()).unwrap()
    }

    fn mounts_below(&self) -> Vec<PathBuf> {
        let root = fs::canonicalize(self.path()).unwrap();
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        mount_points(&info)
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&root))
            .collect()
    }
}

impl Drop for DataRoot {
    fn drop(&mut self) {
        for m in self.mounts_below() {
            let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH);
        }
        drop(self.0.take());
    }
}

struct Built {
    layout: tempfile::TempDir,
    manifest: Digest,
    index: Digest,
    config: Digest,
    layer: Digest,
    diff_id: Digest,
}

fn tar_entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    if let Some(link) = link {
        h.set_link_name(link).unwrap();
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// An OCI layout with a one-layer busybox image (tag `latest`) and an index (tag
/// `multi`) listing an attestation, a foreign platform, and then the host's platform.
fn build_layout() -> Built {
    let busybox = fs::read("/bin/busybox").expect("/bin/busybox: install busybox-static");
    let layout = new_layout();

    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, "bin/", tar::EntryType::Directory, 0o755, &[], None);
    tar_entry(
        &mut b,
        "bin/busybox",
        tar::EntryType::Regular,
        0o755,
        &busybox,
        None,
    );
    for applet in ["sh", "ls", "cat", "echo"] {
        tar_entry(
            &mut b,
            &format!("bin/{applet}"),
            tar::EntryType::Symlink,
            0o777,
            &[],
            Some("busybox"),
        );
    }
    tar_entry(&mut b, "etc/", tar::EntryType::Directory, 0o755, &[], None);
    tar_entry(
        &mut b,
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
        None,
    );
    let tar = b.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let layer = write_blob(layout.path(), &gz);

    let host = Platform::host();
    let config_json = serde_json::json!({
        "architecture": host.architecture, "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}
    })
    .to_string();
    let config = write_blob(layout.path(), config_json.as_bytes());
    let manifest_json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_json.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.to_string(), "size": gz.len()}]
    })
    .to_string();
    let manifest = write_blob(layout.path(), manifest_json.as_bytes());
    let other_arch = if host.architecture == "s390x" {
        "ppc64le"
    } else {
        "s390x"
    };
    let entry = |arch: &str, os: &str, annotations: serde_json::Value| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.to_string(), "size": manifest_json.len(),
            "platform": {"architecture": arch, "os": os},
            "annotations": annotations
        })
    };
    let index_json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry("unknown", "unknown", serde_json::json!({"vnd.docker.reference.type": "attestation-manifest"})),
            entry(other_arch, "linux", serde_json::json!({})),
            entry(&host.architecture, "linux", serde_json::json!({})),
        ]
    })
    .to_string();
    let index = write_blob(layout.path(), index_json.as_bytes());
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest.to_string(),
             "size": manifest_json.len(), "annotations": {"org.opencontainers.image.ref.name": "latest"}},
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index.to_string(),
             "size": index_json.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}
        ]
    });
    fs::write(layout.path().join("index.json"), top.to_string()).unwrap();
    Built {
        layout,
        manifest,
        index,
        config,
        layer,
        diff_id,
    }
}

fn flip_a_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_unpack_mount_from_a_local_registry() {
    let registry = Registry::start();
    let built = build_layout();
    registry.push(built.layout.path(), "latest", "test/busybox", false);
    registry.push(built.layout.path(), "multi", "test/busybox", true);

    let root = DataRoot::new();
    let puller = puller(root.path());
    let reference = Reference::parse(&format!("{}/test/busybox:latest", registry.host())).unwrap();
    let image = puller.pull(&reference).await.unwrap();
    assert_eq!(image.manifest_digest, built.manifest);
    assert_eq!(image.index_digest, built.manifest);
    assert_eq!(image.config_digest, built.config);
    assert_eq!(image.config.rootfs.diff_ids, vec![built.diff_id.clone()]);
    assert_eq!(
        image.layers,
        vec![built.diff_id.clone()],
        "one layer: ChainID = DiffID"
    );
    assert_eq!(
        image.config.config.as_ref().unwrap().cmd.as_deref(),
        Some(&["sh".to_owned()][..])
    );
    assert_eq!(
        image.reference.to_string(),
        format!("{}/test/busybox@{}", registry.host(), built.manifest)
    );

    // Every blob is in the store, and its bytes hash to its name.
    let content = ContentStore::open(root.path()).unwrap();
    for d in [&built.manifest, &built.config, &built.layer] {
        assert_eq!(&Digest::of(&content.read(d).unwrap()), d);
    }
    assert!(fs::read_dir(root.path().join("ingest"))
        .unwrap()
        .next()
        .is_none());

    // Mount it and run the busybox in it.
    let snapshotter = Snapshotter::new(LayerStore::open(root.path()).unwrap()).unwrap();
    snapshotter.create("ctr1", &image.layers).unwrap();
    let merged = snapshotter.mount("ctr1").unwrap();
    let bb = merged.join("bin/busybox");
    assert_eq!(fs::read(&bb).unwrap(), fs::read("/bin/busybox").unwrap());
    assert_eq!(
        fs::read_link(merged.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let out = Command::new(&bb)
        .args(["echo", "hello from the layer"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from the layer"
    );
    snapshotter.remove("ctr1").unwrap();
    assert!(!is_mounted(&merged).unwrap());

    // A second pull downloads nothing: the HEAD finds a stored manifest, the layer is
    // unpacked already.
    let stats = puller.client().stats();
    let (manifests, blobs, bytes) = (
        stats
            .manifest_gets
            .load(std::sync::atomic::Ordering::Relaxed),
        stats.blob_gets.load(std::sync::atomic::Ordering::Relaxed),
        stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
    );
    let logged = registry.blob_gets();
    let again = puller.pull(&reference).await.unwrap();
    assert_eq!(again.manifest_digest, image.manifest_digest);
    assert_eq!(again.layers, image.layers);
    assert_eq!(
        stats
            .manifest_gets
            .load(std::sync::atomic::Ordering::Relaxed),
        manifests
    );
    assert_eq!(
        stats.blob_gets.load(std::sync::atomic::Ordering::Relaxed),
        blobs
    );
    assert_eq!(
        stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
        bytes
    );
    assert_eq!(registry.blob_gets(), logged, "the registry saw no blob GET");

    // The index: the host's entry is picked, past an attestation and another platform.
    let multi = Reference::parse(&format!("{}/test/busybox:multi", registry.host())).unwrap();
    let fresh = DataRoot::new();
    let image = puller_for(&fresh).pull(&multi).await.unwrap();
    assert_eq!(image.index_digest, built.index);
    assert_eq!(image.manifest_digest, built.manifest);
    assert_eq!(image.layers, vec![built.diff_id.clone()]);
    // By digest, too.
    let by_digest = Reference::parse(&format!(
        "{}/test/busybox@{}",
        registry.host(),
        built.manifest
    ))
    .unwrap();
    let fresh = DataRoot::new();
    assert_eq!(
        puller_for(&fresh)
            .pull(&by_digest)
            .await
            .unwrap()
            .manifest_digest,
        built.manifest
    );
    // A platform nobody built: a clear error listing what there is.
    let fresh = DataRoot::new();
    let config = RegistryConfig {
        platform: Platform {
            architecture: "mips64".into(),
            os: "linux".into(),
            ..Platform::default()
        },
        ..RegistryConfig::default()
    };
    let p = Puller::new(
        RegistryClient::new(config).unwrap(),
        ContentStore::open(fresh.path()).unwrap(),
        LayerStore::open(fresh.path()).unwrap(),
    );
    let err = p.pull(&multi).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("unknown"), "{err}");

    // (A manifest with a wrong digest: the registry itself refuses to serve a tampered
    // manifest (500), so tests/registry_mock.rs checks the client's side with a fake.)

    // A corrupted layer blob is rejected before anything is unpacked.
    let layer_data = registry.blob_data(&built.layer);
    let len = fs::metadata(&layer_data).unwrap().len() as usize;
    flip_a_byte(&layer_data, len / 2);
    let fresh = DataRoot::new();
    let err = puller_for(&fresh).pull(&reference).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Content(ContentError::DigestMismatch { .. })
        ),
        "{err}"
    );
    let store = ContentStore::open(fresh.path()).unwrap();
    assert!(!store.contains(&built.layer));
    assert!(fs::read_dir(fresh.path().join("ingest"))
        .unwrap()
        .next()
        .is_none());
    assert!(fs::read_dir(fresh.path().join("layers"))
        .unwrap()
        .next()
        .is_none());
    assert!(root.mounts_below().is_empty());
}

fn puller_for(root: &DataRoot) -> Puller {
    puller(root.path())
}

/// Three layers, gzip, zstd and plain (gzipped by skopeo on push), the upper two deleting with whiteouts and
/// replacing a directory with an opaque marker; pushed with skopeo, pulled, mounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_and_opaque_dirs_across_gzip_zstd_and_plain_layers() {
    let registry = Registry::start();
    let layout = new_layout();
    use tar::EntryType::{Directory as D, Regular as F};
    let layer = |entries: &[(&str, tar::EntryType, &[u8])]| {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mode = if *kind == D { 0o755 } else { 0o644 };
            tar_entry(&mut b, path, *kind, mode, data, None);
        }
        b.into_inner().unwrap()
    };
    let base = layer(&[
        ("a/", D, b""),
        ("a/keep", F, b"keep"),
        ("a/gone", F, b"gone"),
        ("d/", D, b""),
        ("d/old1", F, b"old1"),
        ("d/sub/", D, b""),
        ("d/sub/old2", F, b"old2"),
        ("f", F, b"file f"),
    ]);
    let middle = layer(&[
        ("a/", D, b""),
        ("a/.wh.gone", F, b""),
        ("d/", D, b""),
        ("d/.wh..wh..opq", F, b""),
        ("d/new", F, b"new"),
        ("g", F, b"g"),
    ]);
    let top = layer(&[(".wh.f", F, b""), ("a/", D, b""), ("a/added", F, b"added")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&base).unwrap();
    let blobs = [
        (
            gz.finish().unwrap(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            zstd::encode_all(&middle[..], 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (top.clone(), "application/vnd.oci.image.layer.v1.tar"),
    ];
    let diff_ids: Vec<Digest> = [&base, &middle, &top]
        .iter()
        .map(|t| Digest::of(t))
        .collect();
    let mut descriptors = Vec::new();
    for (blob, media_type) in &blobs {
        let d = write_blob(layout.path(), blob);
        descriptors.push(serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": blob.len()}));
    }
    write_image(layout.path(), descriptors, &diff_ids, "v1");
    registry.push(layout.path(), "v1", "test/layers", false);

    let root = DataRoot::new();
    let reference = Reference::parse(&format!("{}/test/layers:v1", registry.host())).unwrap();
    let image = puller(root.path()).pull(&reference).await.unwrap();
    // skopeo gzips the plain layer on the way to a registry (so the manifest differs
    // from the layout's); the zstd layer goes as it is.
    let types: Vec<&str> = image
        .manifest
        .layers
        .iter()
        .map(|l| l.media_type.as_str())
        .collect();
    assert_eq!(
        types[..2],
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ]
    );
    assert_eq!(image.config.rootfs.diff_ids, diff_ids);
    assert_eq!(image.layers.len(), 3);
    let layers = LayerStore::open(root.path()).unwrap();
    // In the lower dirs: overlay whiteouts (0/0 char devices) and the opaque xattr.
    let middle_dir = layers.diff_path(&image.layers[1]);
    let wh = fs::symlink_metadata(middle_dir.join("a/gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    let mut opaque = [0u8; 4];
    let n =
        rustix::fs::getxattr(middle_dir.join("d"), "trusted.overlay.opaque", &mut opaque).unwrap();
    assert_eq!(&opaque[..n], b"y");
    assert!(!middle_dir.join("d/.wh..wh..opq").exists());

    let snapshotter = Snapshotter::new(layers).unwrap();
    snapshotter.create("ctr", &image.layers).unwrap();
    let merged = snapshotter.mount("ctr").unwrap();
    let read = |p: &str| fs::read_to_string(merged.join(p)).ok();
    let exists = |p: &str| fs::symlink_metadata(merged.join(p)).is_ok();
    assert_eq!(read("a/keep").as_deref(), Some("keep"));
    assert!(!exists("a/gone"), "whited out in the zstd layer");
    assert_eq!(read("a/added").as_deref(), Some("added"));
    assert!(
        !exists("d/old1") && !exists("d/sub"),
        "the opaque dir hides the base's d/"
    );
    assert_eq!(read("d/new").as_deref(), Some("new"));
    let mut listed: Vec<String> = fs::read_dir(merged.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, vec!["new"]);
    assert!(!exists("f"), "whited out in the plain layer");
    assert_eq!(read("g").as_deref(), Some("g"));
    snapshotter.remove("ctr").unwrap();
    assert!(root.mounts_below().is_empty());
}
