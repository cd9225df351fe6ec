use std::io::Write;

use super::*;
use crate::image_store::{ImageRecord, ImageStore};
use crate::manifest::{self, AnyManifest};

fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("./", tar::EntryType::Directory, 0o755, b"", None);
    add("./bin/", tar::EntryType::Directory, 0o755, b"", None);
    add(
        "./bin/app",
        tar::EntryType::Regular,
        0o755,
        b"#!/bin/sh\necho hi\n",
        None,
    );
    add("./bin/sh", tar::EntryType::Symlink, 0o777, b"", Some("app"));
    add("./etc/", tar::EntryType::Directory, 0o755, b"", None);
    add(
        "./etc/hostname",
        tar::EntryType::Regular,
        0o644,
        b"imported\n",
        None,
    );
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn options(changes: &[&str]) -> ImportOptions {
    ImportOptions {
        changes: changes.iter().map(|s| s.to_string()).collect(),
        created: Some("2024-01-02T03:04:05Z".into()),
        tag: Some(Reference::parse("imported:v1").unwrap()),
        ..ImportOptions::default()
    }
}

fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn plain_gzip_and_zstd_give_the_same_image() {
    let tar = rootfs_tar();
    let changes = [
        r#"CMD ["/bin/app", "--serve"]"#,
        "ENV PATH=/bin",
        "WORKDIR /srv",
        "USER 1000",
        "EXPOSE 8080",
        "LABEL a=b",
        "VOLUME /data",
    ];
    let mut digests = Vec::new();
    for input in [
        tar.clone(),
        gzip(&tar),
        zstd::encode_all(&tar[..], 3).unwrap(),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let content = ContentStore::open(root).unwrap();
        let layers = LayerStore::open(root).unwrap();
        let image = import(
            &content,
            &layers,
            &input[..],
            &root.join("tmp"),
            &options(&changes),
        )
        .unwrap();
        let diff_id = Digest::of(&tar);
        assert_eq!(image.layers, vec![diff_id.clone()]);
        assert_eq!(image.config.rootfs.diff_ids, vec![diff_id.clone()]);
        assert_eq!(image.tags, vec![Reference::parse("imported:v1").unwrap()]);
        let cfg = image.config.config.clone().unwrap();
        assert_eq!(cfg.cmd.unwrap(), vec!["/bin/app", "--serve"]);
        assert_eq!(cfg.env.unwrap(), vec!["PATH=/bin"]);
        assert_eq!(cfg.working_dir.as_deref(), Some("/srv"));
        assert_eq!(cfg.user.as_deref(), Some("1000"));
        assert!(cfg.exposed_ports.unwrap().contains_key("8080/tcp"));
        assert_eq!(cfg.labels.unwrap()["a"], "b");
        assert!(cfg.volumes.unwrap().contains_key("/data"));
        assert_eq!(image.config.os, "linux");
        assert_eq!(
            image.config.created.as_deref(),
            Some("2024-01-02T03:04:05Z")
        );

        // Everything is stored and hashes to its name; the manifest parses back.
        let manifest_bytes = content.read(&image.manifest_digest).unwrap();
        let AnyManifest::Manifest(m) = manifest::parse(None, &manifest_bytes).unwrap() else {
            panic!("not a manifest")
        };
        assert_eq!(*m, image.manifest);
        let blob = &m.layers[0];
        assert_eq!(blob.media_type, media_type::OCI_LAYER_GZIP);
        let blob_bytes = content.read(&blob.digest).unwrap();
        assert_eq!(blob_bytes.len() as u64, blob.size);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&blob_bytes[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, tar, "the tar is passed through as the layer");
        let stored_config: ImageConfig =
            serde_json::from_slice(&content.read(&image.config_digest).unwrap()).unwrap();
        assert_eq!(stored_config, image.config);

        // The layer is unpacked.
        let diff = layers.diff_path(&diff_id);
        assert_eq!(fs::read(diff.join("etc/hostname")).unwrap(), b"imported\n");
        assert_eq!(
            fs::read_link(diff.join("bin/sh")).unwrap(),
            Path::new("app")
        );
        assert!(is_empty(&root.join("tmp")), "scratch file left");
        assert!(is_empty(&root.join("ingest")));

        // It can be recorded and found by its tag.
        let mut store = ImageStore::open(root).unwrap();
        store.add(ImageRecord::from(&image)).unwrap();
        store.tag(&image.tags[0], &image.manifest_digest).unwrap();
        assert_eq!(
            store.resolve("imported:v1").unwrap().chain_ids,
            image.layers
        );
        digests.push(image.manifest_digest);
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[test]
fn bad_input_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let content = ContentStore::open(root).unwrap();
    let layers = LayerStore::open(root).unwrap();
    let scratch = root.join("tmp");

    let err = import(
        &content,
        &layers,
        &rootfs_tar()[..],
        &scratch,
        &options(&["RUN make"]),
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::Change(_)), "{err}");

    let garbage = vec![b'x'; 4096];
    let err = import(&content, &layers, &garbage[..], &scratch, &options(&[])).unwrap_err();
    assert!(matches!(err, ImportError::Layer(_)), "{err}");

    let bzip2 = b"BZh91AY&SY and so on".repeat(50);
    let err = import(&content, &layers, &bzip2[..], &scratch, &options(&[])).unwrap_err();
    assert!(matches!(err, ImportError::Decompress(_)), "{err}");

    // A truncated gzip stream: a read error, not a half image.
    let gz = gzip(&rootfs_tar());
    let err = import(
        &content,
        &layers,
        &gz[..gz.len() / 2],
        &scratch,
        &options(&[]),
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::Read(_)), "{err}");

    assert!(content.list().unwrap().is_empty());
    assert!(layers.list().unwrap().is_empty());
    assert!(is_empty(&scratch));
    assert!(is_empty(&root.join("ingest")));
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert!(now_rfc3339().starts_with("20"));
}
