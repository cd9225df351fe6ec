use super::*;
use crate::digest::chain_ids;
use crate::snapshot::LayerStore;

fn tar_with(path: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

/// Stores an image whose layers are the given uncompressed tars (blob = DiffID),
/// unpacks them, and returns its record.
fn store_image(
    content: &ContentStore,
    layers: &LayerStore,
    tars: &[Vec<u8>],
    tag: &str,
) -> ImageRecord {
    let diff_ids: Vec<Digest> = tars.iter().map(|t| Digest::of(t)).collect();
    let chains = chain_ids(&diff_ids);
    for ((t, d), c) in tars.iter().zip(&diff_ids).zip(&chains) {
        content.put(d, t).unwrap();
        layers.unpack(c, d, &t[..]).unwrap();
    }
    let config =
        serde_json::json!({"tag": tag, "rootfs": {"type": "layers", "diff_ids": diff_ids}})
            .to_string();
    let config_digest = Digest::of(config.as_bytes());
    content.put(&config_digest, config.as_bytes()).unwrap();
    let manifest = format!("manifest of {tag} {config_digest}");
    let manifest_digest = Digest::of(manifest.as_bytes());
    content.put(&manifest_digest, manifest.as_bytes()).unwrap();
    ImageRecord {
        manifest_digest,
        index_digest: None,
        config_digest,
        layer_blobs: diff_ids,
        chain_ids: chains,
    }
}

fn record(n: u8) -> ImageRecord {
    let d = |s: &str| Digest::of(format!("{s}{n}").as_bytes());
    ImageRecord {
        manifest_digest: d("manifest"),
        index_digest: None,
        config_digest: d("config"),
        layer_blobs: vec![d("blob")],
        chain_ids: vec![d("chain")],
    }
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[test]
fn tag_resolve_list_untag_and_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = ImageStore::open(tmp.path()).unwrap();
    let (a, b) = (record(1), record(2));
    store.add(a.clone()).unwrap();
    store.add(b.clone()).unwrap();
    store.tag(&r("busybox"), &a.manifest_digest).unwrap();
    store
        .tag(&r("localhost:5000/x/y:v1"), &b.manifest_digest)
        .unwrap();
    assert!(matches!(
        store.tag(&r("busybox:2"), &record(3).manifest_digest),
        Err(ImageStoreError::UnknownImage(_))
    ));
    assert!(matches!(
        store.tag(
            &r(&format!("busybox@{}", a.manifest_digest)),
            &a.manifest_digest
        ),
        Err(ImageStoreError::NotATag(_))
    ));

    // Reopened: everything is still there.
    let mut store = ImageStore::open(tmp.path()).unwrap();
    assert_eq!(store.resolve("busybox").unwrap(), &a);
    assert_eq!(
        store.resolve("docker.io/library/busybox:latest").unwrap(),
        &a
    );
    assert_eq!(store.resolve("localhost:5000/x/y:v1").unwrap(), &b);
    assert_eq!(store.resolve(&b.config_digest.to_string()).unwrap(), &b);
    assert_eq!(store.resolve(&b.config_digest.hex()[..12]).unwrap(), &b);
    assert_eq!(store.resolve(b.manifest_digest.hex()).unwrap(), &b);
    assert_eq!(
        store
            .resolve(&format!("localhost:5000/x/y@{}", b.manifest_digest))
            .unwrap(),
        &b
    );
    assert!(matches!(
        store.resolve("nope"),
        Err(ImageStoreError::NotFound(_))
    ));
    let listed = store.list();
    assert_eq!(listed.len(), 2);
    let tags_of = |rec: &ImageRecord| {
        listed
            .iter()
            .find(|s| &s.record == rec)
            .map(|s| s.tags.clone())
            .unwrap()
    };
    assert_eq!(tags_of(&a), vec!["docker.io/library/busybox:latest"]);

    // Retagging moves the tag; the old image stays, dangling.
    store.tag(&r("busybox"), &b.manifest_digest).unwrap();
    assert_eq!(store.resolve("busybox").unwrap(), &b);
    assert_eq!(store.resolve(a.config_digest.hex()).unwrap(), &a);
    assert_eq!(store.untag(&r("busybox")).unwrap(), b.manifest_digest);
    assert!(store.resolve("busybox").is_err());
    assert!(matches!(
        store.untag(&r("busybox")),
        Err(ImageStoreError::NotFound(_))
    ));
    assert!(!tmp.path().join("images.json.tmp").exists());
}

#[test]
fn ambiguous_prefix_and_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = ImageStore::open(tmp.path()).unwrap();
    // Find two records whose IDs share a first hex digit.
    let recs: Vec<ImageRecord> = (0..40).map(record).collect();
    let (x, y) = recs
        .iter()
        .enumerate()
        .find_map(|(i, x)| {
            recs[i + 1..]
                .iter()
                .find(|y| y.config_digest.hex()[..1] == x.config_digest.hex()[..1])
                .map(|y| (x.clone(), y.clone()))
        })
        .unwrap();
    store.add(x.clone()).unwrap();
    store.add(y).unwrap();
    assert!(matches!(
        store.resolve(&x.config_digest.hex()[..1]),
        Err(ImageStoreError::Ambiguous { count: 2, .. })
    ));
    fs::write(tmp.path().join("images.json"), b"{not json").unwrap();
    let err = ImageStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, ImageStoreError::Corrupt { .. }), "{err}");
}

#[test]
fn remove_follows_docker_rmi() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = ImageStore::open(tmp.path()).unwrap();
    let a = record(1);
    store.add(a.clone()).unwrap();
    store.tag(&r("a:1"), &a.manifest_digest).unwrap();
    store.tag(&r("a:2"), &a.manifest_digest).unwrap();
    let stopped = InUse {
        stopped_images: [a.config_digest.clone()].into(),
        ..InUse::default()
    };
    let running = InUse {
        running_images: [a.manifest_digest.clone()].into(),
        ..InUse::default()
    };

    // Another tag left: only untagged, even though a container uses it.
    let removed = store.remove("a:1", &running, false).unwrap();
    assert_eq!(removed.untagged, vec!["docker.io/library/a:1"]);
    assert!(removed.deleted.is_empty());
    // The last tag, used by a stopped container: must force.
    let err = store.remove("a:2", &stopped, false).unwrap_err();
    assert!(err.to_string().contains("must force"), "{err}");
    // By ID while running: cannot be forced.
    let err = store
        .remove(a.config_digest.hex(), &running, true)
        .unwrap_err();
    assert!(err.to_string().contains("cannot be forced"), "{err}");
    // Forced by tag while running: the tag goes, the image stays (dangling).
    let removed = store.remove("a:2", &running, true).unwrap();
    assert_eq!(removed.untagged.len(), 1);
    assert!(removed.deleted.is_empty());
    assert!(store.resolve(a.config_digest.hex()).is_ok());
    // By ID, stopped container: must be forced; forced, it goes.
    let err = store
        .remove(a.config_digest.hex(), &stopped, false)
        .unwrap_err();
    assert!(err.to_string().contains("stopped container"), "{err}");
    let removed = store.remove(a.config_digest.hex(), &stopped, true).unwrap();
    assert_eq!(removed.deleted, vec![a.manifest_digest.clone()]);
    assert!(store.list().is_empty());

    // Tagged in two repositories: by ID must be forced; by tag, untag then delete.
    let b = record(2);
    store.add(b.clone()).unwrap();
    store.tag(&r("b"), &b.manifest_digest).unwrap();
    store
        .tag(&r("localhost:5000/b"), &b.manifest_digest)
        .unwrap();
    let none = InUse::default();
    let err = store
        .remove(&b.config_digest.hex()[..8], &none, false)
        .unwrap_err();
    assert!(err.to_string().contains("multiple repositories"), "{err}");
    store.remove("b", &none, false).unwrap();
    let removed = store.remove("localhost:5000/b", &none, false).unwrap();
    assert_eq!(removed.deleted, vec![b.manifest_digest]);
    assert!(store.list().is_empty());
    // Persisted.
    assert!(ImageStore::open(tmp.path()).unwrap().list().is_empty());
}

#[test]
fn plan_marks_from_roots() {
    let (a, b) = (record(1), record(2));
    let stray = Digest::of(b"stray");
    let snap_chain = Digest::of(b"snapshot layer");
    let in_use = InUse {
        chains: [Digest::of(b"container chain")].into(),
        snapshots: ["c1".to_owned()].into(),
        ..InUse::default()
    };
    let kept: BTreeMap<String, Vec<Digest>> = [("c1".to_owned(), vec![snap_chain.clone()])].into();
    let blobs = vec![
        a.manifest_digest.clone(),
        a.config_digest.clone(),
        a.layer_blobs[0].clone(),
        b.manifest_digest.clone(),
        stray.clone(),
    ];
    let layers = vec![
        a.chain_ids[0].clone(),
        b.chain_ids[0].clone(),
        snap_chain,
        Digest::of(b"container chain"),
        stray.clone(),
    ];
    let plan = plan_gc(
        [&a],
        &in_use,
        &kept,
        &["c1".to_owned(), "c2".to_owned()],
        &blobs,
        &layers,
    );
    assert_eq!(
        plan,
        GcPlan {
            blobs: vec![b.manifest_digest.clone(), stray.clone()],
            layers: vec![b.chain_ids[0].clone(), stray],
            snapshots: vec!["c2".to_owned()],
        }
    );
}

#[test]
fn gc_keeps_a_shared_base_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let content = ContentStore::open(root).unwrap();
    let layers = LayerStore::open(root).unwrap();
    let snapshotter = Snapshotter::new(layers.clone()).unwrap();
    let mut store = ImageStore::open(root).unwrap();

    let base = tar_with("base", b"shared base");
    let a = store_image(&content, &layers, &[base.clone(), tar_with("a", b"A")], "a");
    let b = store_image(&content, &layers, &[base, tar_with("b", b"B")], "b");
    assert_eq!(a.chain_ids[0], b.chain_ids[0]);
    for rec in [&a, &b] {
        store.add(rec.clone()).unwrap();
    }
    store.tag(&r("a"), &a.manifest_digest).unwrap();
    store.tag(&r("b"), &b.manifest_digest).unwrap();
    // Junk nobody references: a blob and a leftover snapshot.
    let junk = Digest::of(b"junk");
    content.put(&junk, b"junk").unwrap();
    snapshotter.create("orphan", &b.chain_ids).unwrap();

    // Nothing referenced goes.
    let plan = store.gc(&content, &snapshotter, &InUse::default()).unwrap();
    assert_eq!(plan.blobs, vec![junk]);
    assert!(plan.layers.is_empty());
    assert_eq!(plan.snapshots, vec!["orphan".to_owned()]);
    assert_eq!(
        content.list().unwrap().len(),
        7,
        "two manifests, two configs, three distinct layer blobs"
    );

    // A container on image a: its snapshot and layers stay after rmi -f + gc.
    snapshotter.create("ctr", &a.chain_ids).unwrap();
    let in_use = InUse {
        stopped_images: [a.config_digest.clone()].into(),
        snapshots: ["ctr".to_owned()].into(),
        ..InUse::default()
    };
    store.remove("a", &in_use, true).unwrap();
    let plan = store.gc(&content, &snapshotter, &in_use).unwrap();
    assert!(plan.layers.is_empty(), "{plan:?}");
    assert_eq!(plan.snapshots, Vec::<String>::new());
    // a's manifest and config went; its layer blob for "a" too (no image needs it).
    assert!(!content.contains(&a.manifest_digest));
    assert!(!content.contains(&a.config_digest));
    assert!(!content.contains(&a.layer_blobs[1]));
    assert!(layers.contains(&a.chain_ids[1]));

    // The container goes: a's top layer goes, the shared base stays for b.
    let plan = store.gc(&content, &snapshotter, &InUse::default()).unwrap();
    assert_eq!(plan.layers, vec![a.chain_ids[1].clone()]);
    assert_eq!(plan.snapshots, vec!["ctr".to_owned()]);
    assert!(layers.contains(&b.chain_ids[0]));
    assert!(layers.contains(&b.chain_ids[1]));
    assert!(!layers.contains(&a.chain_ids[1]));
    for d in b.blobs() {
        assert!(content.contains(d), "{d}");
    }
    assert_eq!(layers.list().unwrap(), {
        let mut v = b.chain_ids.clone();
        v.sort();
        v
    });
    assert!(snapshotter.list().unwrap().is_empty());

    // b removed: everything goes.
    store.remove("b", &InUse::default(), false).unwrap();
    store.gc(&content, &snapshotter, &InUse::default()).unwrap();
    assert!(content.list().unwrap().is_empty());
    assert!(layers.list().unwrap().is_empty());
    assert!(fs::read_dir(root.join("l")).unwrap().next().is_none());
}
