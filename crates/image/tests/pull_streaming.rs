//! Layers unpacked while they download (the pull tees each blob into the content store
//! and into the unpacker), against a real registry (Debian's `docker-registry` on
//! 127.0.0.1, images put there with skopeo): the trees equal those unpacked from the
//! stored blobs, a blob whose digest does not match leaves neither content nor a layer
//! (though its unpack succeeded), a connection dropped mid-blob resumes and unpacks the
//! right layer from the stored blob, and two pulls of one image at once share the
//! downloads instead of failing.
//!
//! Needs root, `docker-registry`, `skopeo` (scripts/install-deps.sh). All traffic stays
//! on 127.0.0.1.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use berth_image::content_store::{ContentError, ContentStore};
use berth_image::digest::{chain_ids, Digest};
use berth_image::registry::RegistryError;
use berth_image::snapshot::LayerStore;
use berth_image::Reference;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::oci_layout::{new_layout, puller, write_blob, write_image};
use support::Registry;

/// Bytes that do not compress (xorshift), so a layer blob is as big as its files.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    if let Some(link) = link {
        h.set_link_name(link).unwrap();
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// Layer `i`: a few MiB of files, a hardlink, a symlink, and (above the base) a
/// whiteout and an opaque dir.
fn layer_tar(i: u64) -> Vec<u8> {
    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "shared/", D, 0o755, &[], None);
    entry(&mut b, &format!("l{i}/"), D, 0o750, &[], None);
    entry(
        &mut b,
        &format!("l{i}/big"),
        F,
        0o644,
        &noise(i, 3 << 20),
        None,
    );
    for j in 0..40 {
        let data = noise(i * 100 + j, 100 + 37 * j as usize);
        entry(&mut b, &format!("l{i}/small/{j}"), F, 0o600, &data, None);
    }
    entry(
        &mut b,
        &format!("l{i}/setuid"),
        F,
        0o4755,
        b"#!/bin/sh\n",
        None,
    );
    entry(
        &mut b,
        &format!("l{i}/hard"),
        H,
        0o644,
        &[],
        Some(&format!("l{i}/setuid")),
    );
    entry(
        &mut b,
        &format!("l{i}/sym"),
        S,
        0o777,
        &[],
        Some("../shared/x"),
    );
    entry(
        &mut b,
        &format!("shared/from{i}"),
        F,
        0o644,
        &noise(i, 999),
        None,
    );
    if i > 0 {
        entry(
            &mut b,
            &format!("shared/.wh.from{}", i - 1),
            F,
            0o644,
            &[],
            None,
        );
        entry(&mut b, &format!("l{}/", i - 1), D, 0o755, &[], None);
        entry(
            &mut b,
            &format!("l{}/.wh..wh..opq", i - 1),
            F,
            0o644,
            &[],
            None,
        );
    }
    b.into_inner().unwrap()
}

struct Built {
    layout: tempfile::TempDir,
    /// Blob digests, bottom first, and their sizes.
    layers: Vec<(Digest, usize)>,
    diff_ids: Vec<Digest>,
}

/// Three layers, gzip, zstd, gzip (skopeo copies each blob as it is).
fn build_layout() -> Built {
    let layout = new_layout();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut descriptors = Vec::new();
    for i in 0..3u64 {
        let tar = layer_tar(i);
        diff_ids.push(Digest::of(&tar));
        let (blob, media_type) = if i == 1 {
            (
                zstd::encode_all(&tar[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            )
        } else {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            (
                gz.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let d = write_blob(layout.path(), &blob);
        descriptors.push(serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": blob.len()}));
        layers.push((d, blob.len()));
    }
    write_image(layout.path(), descriptors, &diff_ids, "v1");
    Built {
        layout,
        layers,
        diff_ids,
    }
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut names).unwrap_or(0);
    let mut out = BTreeMap::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 256];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value).unwrap();
        value.truncate(len);
        out.insert(name, value);
    }
    out
}

/// Everything overlay and a container see of a layer dir: per path the type, mode,
/// owner, mtime, device number, link count, xattrs, and the content or link target.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                walk(root, &path, out);
                "dir".to_owned()
            } else if ft.is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                Digest::of(&fs::read(&path).unwrap()).to_string()
            } else if ft.is_char_device() {
                format!("chr {}", m.rdev())
            } else {
                "other".to_owned()
            };
            // Directory times change as children are made; whiteouts are made at
            // unpack time (the tar has no time for the device that stands for them).
            let mtime = if ft.is_dir() || ft.is_char_device() {
                0
            } else {
                m.mtime()
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_owned(),
                format!(
                    "{what} mode={:o} {}:{} mtime={mtime} nlink={} xattrs={:?}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    if ft.is_dir() { 0 } else { m.nlink() },
                    xattrs(&path)
                ),
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts two layer trees are the same, naming only the entries that differ.
fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    assert!(ta.len() > 40, "{}: {} entries", a.display(), ta.len());
    let differ: Vec<_> = ta
        .keys()
        .chain(tb.keys())
        .filter(|k| ta.get(*k) != tb.get(*k))
        .map(|k| (k, ta.get(k), tb.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "{} vs {}: {differ:#?}",
        a.display(),
        b.display()
    );
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The old path: each layer unpacked from its committed blob, after the download.
fn unpack_from_blobs(content: &ContentStore, built: &Built) -> (tempfile::TempDir, LayerStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LayerStore::open(dir.path()).unwrap();
    for ((blob, _), (chain, diff_id)) in built
        .layers
        .iter()
        .zip(chain_ids(&built.diff_ids).iter().zip(&built.diff_ids))
    {
        assert!(store
            .unpack(chain, diff_id, content.open_blob(blob).unwrap())
            .unwrap());
    }
    (dir, store)
}

fn counter(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpacking_while_downloading_gives_the_same_layers() {
    let registry = Registry::start();
    let built = build_layout();
    registry.push(built.layout.path(), "v1", "test/stream", false);
    let root = tempfile::tempdir().unwrap();
    let puller = puller(root.path());
    let reference = Reference::parse(&format!("{}/test/stream:v1", registry.host())).unwrap();
    let image = puller.pull(&reference).await.unwrap();
    assert_eq!(image.layers, chain_ids(&built.diff_ids));
    let stats = puller.client().stats();
    assert_eq!(
        counter(&stats.streamed_unpacks),
        3,
        "every layer unpacked from the download"
    );
    assert_eq!(counter(&stats.blob_unpacks), 0);

    let content = ContentStore::open(root.path()).unwrap();
    for (blob, _) in &built.layers {
        assert!(content.contains(blob));
    }
    let (_old_root, old) = unpack_from_blobs(&content, &built);
    let streamed = LayerStore::open(root.path()).unwrap();
    for chain in &image.layers {
        assert_same_tree(&streamed.diff_path(chain), &old.diff_path(chain));
    }
    // The whiteout and the opaque dir made it into the streamed upper layer.
    let top = streamed.diff_path(&image.layers[2]);
    assert!(fs::symlink_metadata(top.join("shared/from1"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(
        xattrs(&top.join("l1")).get("trusted.overlay.opaque"),
        Some(&b"y".to_vec())
    );
    assert_eq!(entries(&root.path().join("ingest")), Vec::<String>::new());
    let hex: Vec<String> = image.layers.iter().map(|c| c.hex().to_owned()).collect();
    let mut sorted = hex.clone();
    sorted.sort();
    assert_eq!(
        entries(&root.path().join("layers")),
        sorted,
        "no temp dirs left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_with_the_wrong_digest_leaves_no_layer_and_no_content() {
    let registry = Registry::start();
    let built = build_layout();
    registry.push(built.layout.path(), "v1", "test/stream", false);
    // Rewrite the top layer's gzip header mtime: the same size and the same tar inside
    // (so its unpack and DiffID check succeed), but other bytes: only the blob digest
    // can catch it.
    let (top, top_size) = built.layers[2].clone();
    let data = registry.blob_data(&top);
    let mut bytes = fs::read(&data).unwrap();
    assert_eq!(bytes.len(), top_size);
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
    bytes[4..8].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    fs::write(&data, &bytes).unwrap();

    let root = tempfile::tempdir().unwrap();
    let puller = puller(root.path());
    let reference = Reference::parse(&format!("{}/test/stream:v1", registry.host())).unwrap();
    let err = puller.pull(&reference).await.unwrap_err();
    match &err {
        RegistryError::Content(ContentError::DigestMismatch { expected, .. }) => {
            assert_eq!(expected, &top)
        }
        other => panic!("want a digest mismatch, got {other}"),
    }
    let content = ContentStore::open(root.path()).unwrap();
    assert!(!content.contains(&top));
    assert!(!content.blob_path(&top).exists());
    // (Other layers' downloads, stopped by the failure, may keep bytes to resume.)
    assert!(!entries(&root.path().join("ingest")).contains(&format!("sha256-{}", top.hex())));
    let chains = chain_ids(&built.diff_ids);
    let layers_dir = root.path().join("layers");
    let left = entries(&layers_dir);
    assert!(
        !left.contains(&chains[2].hex().to_owned()),
        "the bad layer is not visible"
    );
    assert!(
        left.iter().all(|e| !e.starts_with(".tmp-")),
        "no temp unpack left: {left:?}"
    );
    assert_eq!(
        counter(&puller.client().stats().streamed_unpacks),
        left.len() as u64,
        "only the good layers were committed"
    );
    // The store is still consistent: the same blob, right this time, pulls.
    let mut good = bytes.clone();
    good[4..8].copy_from_slice(
        &fs::read(built.layout.path().join("blobs/sha256").join(top.hex())).unwrap()[4..8],
    );
    fs::write(&data, &good).unwrap();
    let image = puller.pull(&reference).await.unwrap();
    assert!(LayerStore::open(root.path())
        .unwrap()
        .contains(&image.layers[2]));
}

/// A TCP proxy to the registry that cuts the connection carrying the first GET of
/// `blob` after `cut_after` bytes of its response.
struct CuttingProxy {
    port: u16,
    cuts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    async fn start(upstream: u16, blob: &Digest, cut_after: usize) -> CuttingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let needle = format!("GET /v2/test/stream/blobs/{blob} ").into_bytes();
        let armed = Arc::new(AtomicBool::new(true));
        let cuts = Arc::new(AtomicUsize::new(0));
        let counted = cuts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .unwrap();
                let (needle, armed, cuts) = (needle.clone(), armed.clone(), counted.clone());
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let cut = Arc::new(AtomicBool::new(false));
                    let cut_up = cut.clone();
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 16384];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            // Armed before the request goes on, so before its answer.
                            if buf[..n].windows(needle.len()).any(|w| w == &needle[..])
                                && armed.swap(false, Ordering::SeqCst)
                            {
                                cut_up.store(true, Ordering::SeqCst);
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 16384];
                    let mut sent = 0usize;
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if cut.load(Ordering::SeqCst) {
                            let room = cut_after - sent;
                            if n >= room {
                                let _ = cw.write_all(&buf[..room]).await;
                                cuts.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            sent += n;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        CuttingProxy { port, cuts, task }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_blob_resumes_into_the_right_layer() {
    let registry = Registry::start();
    let built = build_layout();
    registry.push(built.layout.path(), "v1", "test/stream", false);
    let (middle, middle_size) = built.layers[1].clone();
    assert!(middle_size > 1 << 20);
    let proxy = CuttingProxy::start(registry.port(), &middle, 512 << 10).await;

    let root = tempfile::tempdir().unwrap();
    let puller = puller(root.path());
    let reference = Reference::parse(&format!("127.0.0.1:{}/test/stream:v1", proxy.port)).unwrap();
    let image = puller.pull(&reference).await.unwrap();
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 1, "the proxy cut once");
    let ranged = registry
        .requests()
        .iter()
        .filter(|l| l.contains(&format!("GET /v2/test/stream/blobs/{middle}")))
        .count();
    assert_eq!(ranged, 2, "the cut blob was asked for twice");
    let stats = puller.client().stats();
    assert_eq!(
        counter(&stats.blob_unpacks),
        1,
        "the resumed layer came from the blob"
    );
    assert_eq!(counter(&stats.streamed_unpacks), 2);

    let content = ContentStore::open(root.path()).unwrap();
    assert_eq!(
        Digest::of(&content.read(&middle).unwrap()),
        middle,
        "the resumed blob is whole"
    );
    let (_old_root, old) = unpack_from_blobs(&content, &built);
    let layers = LayerStore::open(root.path()).unwrap();
    for chain in &image.layers {
        assert_same_tree(&layers.diff_path(chain), &old.diff_path(chain));
    }
    assert!(entries(&root.path().join("layers"))
        .iter()
        .all(|e| !e.starts_with(".tmp-")));
    assert_eq!(entries(&root.path().join("ingest")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pulls_of_one_image_at_once_share_the_downloads() {
    let registry = Registry::start();
    let built = build_layout();
    registry.push(built.layout.path(), "v1", "test/stream", false);
    let before = registry.blob_gets();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (puller(root.path()), puller(root.path()));
    let reference = Reference::parse(&format!("{}/test/stream:v1", registry.host())).unwrap();
    let (ra, rb) = tokio::join!(a.pull(&reference), b.pull(&reference));
    let (ia, ib) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ia.layers, ib.layers);
    // Each blob (config and three layers) went over the wire once.
    assert_eq!(
        registry.blob_gets() - before,
        4,
        "{:#?}",
        registry.requests()
    );
    let layers = LayerStore::open(root.path()).unwrap();
    for chain in &ia.layers {
        assert!(layers.contains(chain));
    }
    assert_eq!(entries(&root.path().join("ingest")), Vec::<String>::new());
}

/// A pull killed after a blob's last byte but before its commit leaves a whole ingest:
/// the next pull has nothing to download for it, so the unpacker must get the stored
/// blob, not an empty stream (it once did, and the layer failed its DiffID check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_uncommitted_ingest_is_unpacked_from_the_blob() {
    let registry = Registry::start();
    let built = build_layout();
    registry.push(built.layout.path(), "v1", "test/stream", false);
    let root = tempfile::tempdir().unwrap();
    let (middle, middle_size) = built.layers[1].clone();
    let bytes = fs::read(
        built
            .layout
            .path()
            .join("blobs/sha256")
            .join(middle.to_string().trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(bytes.len(), middle_size);
    {
        let content = ContentStore::open(root.path()).unwrap();
        let mut ingest = content.ingest(&middle, Some(middle_size as u64)).unwrap();
        ingest.write(&bytes).unwrap();
        // Dropped uncommitted, as by a SIGKILL between the last write and the rename.
    }
    let half = ContentStore::open(root.path()).unwrap();
    assert!(!half.contains(&middle), "the blob is not committed");

    let puller = puller(root.path());
    let reference = Reference::parse(&format!("{}/test/stream:v1", registry.host())).unwrap();
    let image = puller.pull(&reference).await.unwrap();
    let stats = puller.client().stats();
    assert_eq!(counter(&stats.blob_unpacks), 1, "{image:?}");
    assert_eq!(counter(&stats.streamed_unpacks), 2);
    let content = ContentStore::open(root.path()).unwrap();
    let (_old_root, old) = unpack_from_blobs(&content, &built);
    let layers = LayerStore::open(root.path()).unwrap();
    for chain in &image.layers {
        assert_same_tree(&layers.diff_path(chain), &old.diff_path(chain));
    }
    assert_eq!(entries(&root.path().join("ingest")), Vec::<String>::new());
}
