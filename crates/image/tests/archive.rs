//! docker save/load archives: archives written by skopeo (an independent implementation)
//! in `oci-archive:` and `docker-archive:` form, berth's own save loaded back, a
//! hand-made classic archive (`<id>/layer.tar`), and broken archives that must leave
//! the store empty.
//!
//! Needs root (layer unpack makes whiteouts/devices), `skopeo` and `busybox-static`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use berth_image::archive::{load, save, ArchiveError, LoadedImage, SaveImage};
use berth_image::content_store::ContentStore;
use berth_image::digest::{chain_ids, Digest};
use berth_image::manifest::Platform;
use berth_image::snapshot::{LayerStore, SnapshotError};
use berth_image::Reference;

struct Built {
    layout: tempfile::TempDir,
    manifest: Digest,
    config: Digest,
    config_json: String,
    layers: Vec<Digest>,
    diff_ids: Vec<Digest>,
    tars: Vec<Vec<u8>>,
}

fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// An OCI layout with a two-layer image tagged `v1`: busybox, then /etc/passwd.
fn build_layout() -> Built {
    let busybox = fs::read("/bin/busybox").expect("/bin/busybox: install busybox-static");
    let layout = tempfile::tempdir().unwrap();
    let blobs = layout.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let write = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        fs::write(blobs.join(d.hex()), bytes).unwrap();
        d
    };
    let tars = vec![
        tar_of(&[("bin/busybox", &busybox, 0o755)]),
        tar_of(&[("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)]),
    ];
    let diff_ids: Vec<Digest> = tars.iter().map(|t| Digest::of(t)).collect();
    let gz: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
    let layers: Vec<Digest> = gz.iter().map(|g| write(g)).collect();
    let config_json = serde_json::json!({
        "architecture": Platform::host().architecture, "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()}
    })
    .to_string();
    let config = write(config_json.as_bytes());
    let manifest_json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_json.len()},
        "layers": layers.iter().zip(&gz).map(|(d, g)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": g.len()
        })).collect::<Vec<_>>()
    })
    .to_string();
    let manifest = write(manifest_json.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest.to_string(),
            "size": manifest_json.len(), "annotations": {"org.opencontainers.image.ref.name": "v1"}}]
    });
    fs::write(layout.path().join("index.json"), index.to_string()).unwrap();
    Built {
        layout,
        manifest,
        config,
        config_json,
        layers,
        diff_ids,
        tars,
    }
}

fn skopeo_copy(src: &str, dest: &str) {
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", src, dest])
        .output()
        .expect("skopeo: run scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "skopeo copy {src} {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Store {
    root: tempfile::TempDir,
    content: ContentStore,
    layers: LayerStore,
}

impl Store {
    fn new() -> Store {
        let root = tempfile::tempdir().unwrap();
        Store {
            content: ContentStore::open(root.path()).unwrap(),
            layers: LayerStore::open(root.path()).unwrap(),
            root,
        }
    }

    fn load(&self, archive: &Path) -> Result<Vec<LoadedImage>, ArchiveError> {
        load(
            &self.content,
            &self.layers,
            fs::File::open(archive).unwrap(),
            &self.root.path().join("tmp"),
        )
    }

    fn is_empty(&self) -> bool {
        let empty = |d: &str| {
            fs::read_dir(self.root.path().join(d))
                .map(|mut r| r.next().is_none())
                .unwrap_or(true)
        };
        self.content.list().unwrap().is_empty()
            && empty("layers")
            && empty("l")
            && empty("ingest")
            && empty("tmp")
    }
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// The unpacked image has the built files.
fn check_unpacked(store: &Store, image: &LoadedImage, built: &Built) {
    assert_eq!(image.config_digest, built.config);
    assert_eq!(image.layers, chain_ids(&built.diff_ids));
    assert_eq!(
        fs::read(store.layers.diff_path(&image.layers[0]).join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    assert!(store
        .layers
        .diff_path(&image.layers[1])
        .join("etc/passwd")
        .is_file());
    assert_eq!(
        store.content.read(&image.config_digest).unwrap(),
        built.config_json.as_bytes()
    );
    assert_eq!(
        Digest::of(&store.content.read(&image.manifest_digest).unwrap()),
        image.manifest_digest
    );
    for layer in &image.manifest.layers {
        assert!(store.content.contains(&layer.digest));
    }
    assert!(fs::read_dir(store.root.path().join("tmp"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn load_skopeo_archives_save_and_load_back() {
    let built = build_layout();
    let src = format!("oci:{}:v1", built.layout.path().display());
    let work = tempfile::tempdir().unwrap();

    // skopeo oci-archive: blobs as built, so the manifest digest is kept.
    let oci_archive = work.path().join("oci.tar");
    skopeo_copy(
        &src,
        &format!(
            "oci-archive:{}:localhost/test/busybox:v1",
            oci_archive.display()
        ),
    );
    let store = Store::new();
    let images = store.load(&oci_archive).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].manifest_digest, built.manifest);
    assert_eq!(images[0].tags, vec![reference("localhost/test/busybox:v1")]);
    check_unpacked(&store, &images[0], &built);
    for l in &built.layers {
        assert!(store.content.contains(l));
    }

    // skopeo docker-archive: classic manifest.json, uncompressed `<diffid>.tar` layers.
    let docker_archive = work.path().join("docker.tar");
    skopeo_copy(
        &src,
        &format!(
            "docker-archive:{}:localhost/test/busybox:v1",
            docker_archive.display()
        ),
    );
    let store2 = Store::new();
    let images2 = store2.load(&docker_archive).unwrap();
    assert_eq!(images2.len(), 1);
    assert_eq!(
        images2[0].tags,
        vec![reference("localhost/test/busybox:v1")]
    );
    check_unpacked(&store2, &images2[0], &built);

    // berth's save of the first store, loaded into a fresh one: same image, same tags.
    let saved = work.path().join("saved.tar");
    let tags = vec![
        reference("localhost/test/busybox:v1"),
        reference("busybox:latest"),
    ];
    save(
        &store.content,
        &[SaveImage {
            manifest_digest: built.manifest.clone(),
            tags: tags.clone(),
        }],
        fs::File::create(&saved).unwrap(),
    )
    .unwrap();
    let store3 = Store::new();
    let images3 = store3.load(&saved).unwrap();
    assert_eq!(images3.len(), 1);
    assert_eq!(images3[0].manifest_digest, built.manifest);
    assert_eq!(images3[0].tags, tags);
    assert_eq!(images3[0].manifest, images[0].manifest);
    check_unpacked(&store3, &images3[0], &built);
    assert_eq!(
        store3.content.list().unwrap(),
        store.content.list().unwrap()
    );
    // The saved tar reads as Docker's: manifest.json with RepoTags, repositories.
    let mut names = Vec::new();
    let mut manifest_json = None;
    let mut archive = tar::Archive::new(fs::File::open(&saved).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if name == "manifest.json" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            manifest_json = Some(s);
        }
        names.push(name);
    }
    for n in ["index.json", "oci-layout", "manifest.json", "repositories"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    let items: serde_json::Value = serde_json::from_str(&manifest_json.unwrap()).unwrap();
    assert_eq!(
        items[0]["RepoTags"],
        serde_json::json!(["localhost/test/busybox:v1", "busybox:latest"])
    );
    assert_eq!(
        items[0]["Config"],
        format!("blobs/sha256/{}", built.config.hex())
    );
    // And skopeo, independently, reads berth's save as a docker-archive.
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--config"])
        .arg(format!("docker-archive:{}", saved.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(Digest::of(&out.stdout), built.config);

    // Loading the same archive again stores nothing new and still succeeds.
    assert_eq!(store3.load(&saved).unwrap(), images3);
}

/// Copies a tar, letting `edit` drop (None) or replace an entry's data by name.
fn rewrite(src: &Path, dst: &Path, mut edit: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(fs::File::open(src).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut header = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if header.entry_type() != tar::EntryType::Regular {
            out.append(&header, &data[..]).unwrap();
            continue;
        }
        if let Some(data) = edit(&name, data) {
            header.set_size(data.len() as u64);
            header.set_cksum();
            out.append(&header, &data[..]).unwrap();
        }
    }
    fs::write(dst, out.into_inner().unwrap()).unwrap();
}

#[test]
fn broken_archives_store_nothing() {
    let built = build_layout();
    let work = tempfile::tempdir().unwrap();
    let oci_archive = work.path().join("oci.tar");
    skopeo_copy(
        &format!("oci:{}:v1", built.layout.path().display()),
        &format!("oci-archive:{}:localhost/t/b:v1", oci_archive.display()),
    );
    let top_layer = format!("blobs/sha256/{}", built.layers[1].hex());

    // A blob whose bytes do not match its name.
    let bad = work.path().join("wrong-digest.tar");
    rewrite(&oci_archive, &bad, |name, mut data| {
        if name == top_layer {
            let n = data.len() / 2;
            data[n] ^= 0x01;
        }
        Some(data)
    });
    let store = Store::new();
    let err = store.load(&bad).unwrap_err();
    assert!(matches!(err, ArchiveError::DigestMismatch { .. }), "{err}");
    assert!(store.is_empty());

    // A blob left out.
    let missing = work.path().join("missing.tar");
    rewrite(&oci_archive, &missing, |name, data| {
        (name != top_layer).then_some(data)
    });
    let err = store.load(&missing).unwrap_err();
    assert!(matches!(err, ArchiveError::MissingFile(_)), "{err}");
    assert!(store.is_empty());

    // Not an image archive at all.
    let junk = work.path().join("junk.tar");
    fs::write(&junk, tar_of(&[("hello.txt", b"hi", 0o644)])).unwrap();
    assert!(matches!(store.load(&junk), Err(ArchiveError::Invalid(_))));
    assert!(store.is_empty());

    // A classic archive (`<id>/layer.tar`, names that claim no digest) whose second
    // layer is not what the config's DiffID says: the first layer was unpacked by then,
    // and is removed again.
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add(
        "manifest.json",
        serde_json::json!([{"Config": "config.json", "RepoTags": ["classic:v1"], "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}])
            .to_string()
            .as_bytes(),
    );
    add("config.json", built.config_json.as_bytes());
    add("aaa/layer.tar", &built.tars[0]);
    add("bbb/layer.tar", &tar_of(&[("etc/passwd", b"evil", 0o644)]));
    let classic_bad = work.path().join("classic-bad.tar");
    fs::write(&classic_bad, b.into_inner().unwrap()).unwrap();
    let err = store.load(&classic_bad).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::Snapshot(SnapshotError::DiffIdMismatch { .. })
        ),
        "{err}"
    );
    assert!(store.is_empty());

    // The same archive with the right second layer (and a symlinked duplicate path, as
    // old docker save wrote) loads.
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add(
        "manifest.json",
        serde_json::json!([{"Config": "config.json", "RepoTags": ["classic:v1"], "Layers": ["aaa/layer.tar", "ccc/layer.tar"]}])
            .to_string()
            .as_bytes(),
    );
    add("config.json", built.config_json.as_bytes());
    add("aaa/layer.tar", &built.tars[0]);
    add("bbb/layer.tar", &built.tars[1]);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_cksum();
    b.append_link(&mut h, "ccc/layer.tar", "../bbb/layer.tar")
        .unwrap();
    let classic = work.path().join("classic.tar");
    fs::write(&classic, b.into_inner().unwrap()).unwrap();
    let images = store.load(&classic).unwrap();
    assert_eq!(images[0].tags, vec![reference("classic:v1")]);
    assert_eq!(images[0].layers, chain_ids(&built.diff_ids));
    assert_eq!(
        images[0].manifest.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    check_unpacked(&store, &images[0], &built);
}
