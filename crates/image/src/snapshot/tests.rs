//! Snapshot tests mount for real (root, overlayfs) and unmount even when they fail.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// A temp data root that unmounts everything below it before it is deleted, so a failed
/// assertion never leaves a mount behind (or lets the temp dir removal walk into one).
pub(crate) struct MountedTempDir {
    dir: Option<tempfile::TempDir>,
}

impl MountedTempDir {
    pub(crate) fn new() -> MountedTempDir {
        MountedTempDir {
            dir: Some(tempfile::tempdir().unwrap()),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap()
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

impl Drop for MountedTempDir {
    fn drop(&mut self) {
        let mut mounts = self.mounts_below();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for m in mounts {
            let _ = rustix::mount::unmount(&m, UnmountFlags::DETACH);
        }
        assert!(
            self.mounts_below().is_empty(),
            "mounts left below the temp dir"
        );
        drop(self.dir.take());
    }
}

fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Unpacks tars as a stack and returns their ChainIDs, bottom to top.
fn unpack_stack(store: &LayerStore, tars: &[Vec<u8>]) -> Vec<Digest> {
    let diff_ids: Vec<Digest> = tars.iter().map(|t| Digest::of(t)).collect();
    let chains = crate::digest::chain_ids(&diff_ids);
    for ((tar, diff_id), chain) in tars.iter().zip(&diff_ids).zip(&chains) {
        store.unpack(chain, diff_id, &tar[..]).unwrap();
    }
    chains
}

#[test]
fn unpacks_once_per_chain_and_checks_the_diff_id() {
    let tmp = MountedTempDir::new();
    let store = LayerStore::open(tmp.path()).unwrap();
    let tar = tar_with(&[("a", b"a")]);
    let diff_id = Digest::of(&tar);
    assert!(store.unpack(&diff_id, &diff_id, &tar[..]).unwrap());
    assert!(!store
        .unpack(&diff_id, &diff_id, &b"never read"[..])
        .unwrap());
    assert_eq!(fs::read(store.diff_path(&diff_id).join("a")).unwrap(), b"a");
    let short = store.short_id(&diff_id).unwrap();
    assert_eq!(short.len(), SHORT_ID_LEN);
    assert_eq!(
        fs::canonicalize(tmp.path().join("l").join(&short)).unwrap(),
        fs::canonicalize(store.diff_path(&diff_id)).unwrap()
    );

    // A wrong DiffID: refused, and nothing left behind.
    let other = tar_with(&[("b", b"b")]);
    let claimed = Digest::of(b"something else");
    let err = store.unpack(&claimed, &claimed, &other[..]).unwrap_err();
    assert!(matches!(err, SnapshotError::DiffIdMismatch { .. }), "{err}");
    assert!(!store.contains(&claimed));
    let layers: Vec<_> = fs::read_dir(tmp.path().join("layers")).unwrap().collect();
    assert_eq!(layers.len(), 1);
    assert_eq!(fs::read_dir(tmp.path().join("l")).unwrap().count(), 1);

    // What a crash mid-unpack leaves is cleaned on open.
    fs::create_dir_all(tmp.path().join("layers/.tmp-crashed/diff")).unwrap();
    std::os::unix::fs::symlink("../layers/.tmp-crashed/diff", tmp.path().join("l/dangling"))
        .unwrap();
    let store = LayerStore::open(tmp.path()).unwrap();
    assert!(!tmp.path().join("layers/.tmp-crashed").exists());
    assert!(fs::symlink_metadata(tmp.path().join("l/dangling")).is_err());
    assert!(store.contains(&diff_id));

    store.remove(&diff_id).unwrap();
    assert!(!store.contains(&diff_id));
    assert_eq!(fs::read_dir(tmp.path().join("l")).unwrap().count(), 0);
}

#[test]
fn mount_write_unmount_remove() {
    let tmp = MountedTempDir::new();
    let store = LayerStore::open(tmp.path()).unwrap();
    let base = tar_with(&[
        ("etc/hostname", b"base"),
        ("etc/gone", b"x"),
        ("opq/old", b"old"),
    ]);
    // The top layer whites out etc/gone and makes opq/ opaque.
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind) in [
        ("etc/.wh.gone", tar::EntryType::Regular),
        ("opq/", tar::EntryType::Directory),
        ("opq/.wh..wh..opq", tar::EntryType::Regular),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_entry_type(kind);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    let top = b.into_inner().unwrap();
    let chains = unpack_stack(&store, &[base, top]);

    let snapshotter = Snapshotter::new(store.clone()).unwrap();
    let snap = snapshotter.create("c1", &chains).unwrap();
    assert!(matches!(
        snapshotter.create("c1", &chains),
        Err(SnapshotError::Exists(_))
    ));
    assert!(matches!(
        snapshotter.create("../x", &chains),
        Err(SnapshotError::InvalidId(_))
    ));
    let merged = snapshotter.mount("c1").unwrap();
    assert_eq!(merged, snap.merged);
    assert!(is_mounted(&merged).unwrap());
    // Mounting again is a no-op, not a second mount.
    snapshotter.mount("c1").unwrap();
    assert_eq!(fs::read(merged.join("etc/hostname")).unwrap(), b"base");
    assert!(
        !merged.join("etc/gone").exists(),
        "whiteout hides the lower file"
    );
    assert!(merged.join("opq").is_dir());
    assert!(
        !merged.join("opq/old").exists(),
        "opaque dir hides the lower dir's content"
    );

    fs::write(merged.join("etc/hostname"), b"changed").unwrap();
    fs::write(merged.join("new"), b"new").unwrap();
    assert_eq!(
        fs::read(snap.upper.join("etc/hostname")).unwrap(),
        b"changed"
    );
    assert_eq!(fs::read(snap.upper.join("new")).unwrap(), b"new");
    assert_eq!(
        fs::read(store.diff_path(&chains[0]).join("etc/hostname")).unwrap(),
        b"base",
        "layers stay untouched"
    );

    // The recorded state is enough to remount after an unmount (a daemon restart).
    snapshotter.unmount("c1").unwrap();
    assert!(!is_mounted(&merged).unwrap());
    snapshotter.mount("c1").unwrap();
    assert_eq!(fs::read(merged.join("etc/hostname")).unwrap(), b"changed");

    assert_eq!(snapshotter.list().unwrap(), vec!["c1".to_owned()]);
    snapshotter.remove("c1").unwrap();
    assert!(!is_mounted(&merged).unwrap());
    assert!(!tmp.path().join("snapshots/c1").exists());
    assert!(store.contains(&chains[0]) && store.contains(&chains[1]));
    snapshotter.remove("c1").unwrap();
}

fn many_layers(method: MountMethod) {
    const N: usize = 120;
    let tmp = MountedTempDir::new();
    let store = LayerStore::open(tmp.path()).unwrap();
    let tars: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let name = format!("f{i}");
            let top = i.to_string();
            tar_with(&[(name.as_str(), top.as_bytes()), ("top", top.as_bytes())])
        })
        .collect();
    let chains = unpack_stack(&store, &tars);
    let snapshotter = Snapshotter::new(store).unwrap().with_method(method);
    let snap = snapshotter.create("many", &chains).unwrap();
    let plan = snapshotter.plan(&snap).unwrap();
    assert_eq!(plan.lowers.len(), N);
    // Absolute lowerdirs would not fit in one page; the short ones do.
    let absolute: usize = plan
        .lowers
        .iter()
        .map(|l| tmp.path().join(l).as_os_str().len() + 1)
        .sum();
    assert!(absolute > 4096, "{absolute}");
    assert!(plan.legacy_options().len() < 4096);

    let merged = snapshotter.mount("many").unwrap();
    for i in 0..N {
        assert_eq!(
            fs::read(merged.join(format!("f{i}"))).unwrap(),
            i.to_string().as_bytes()
        );
    }
    // The top layer wins: lowerdir order is top to bottom.
    assert_eq!(
        fs::read(merged.join("top")).unwrap(),
        (N - 1).to_string().as_bytes()
    );
    snapshotter.remove("many").unwrap();
    assert!(!is_mounted(&merged).unwrap());
}

#[test]
fn mounts_120_layers_with_fsconfig() {
    many_layers(MountMethod::Fsconfig);
}

#[test]
fn mounts_120_layers_with_mount2_and_short_links() {
    many_layers(MountMethod::Legacy);
}

#[test]
fn too_many_layers_is_a_clear_error() {
    let tmp = MountedTempDir::new();
    let store = LayerStore::open(tmp.path()).unwrap();
    let snapshotter = Snapshotter::new(store).unwrap();
    let chains: Vec<Digest> = (0..MAX_LAYERS + 1)
        .map(|i| Digest::of(&i.to_le_bytes()))
        .collect();
    assert!(matches!(
        snapshotter.create("x", &chains),
        Err(SnapshotError::TooManyLayers(501))
    ));
    assert!(matches!(
        snapshotter.create("x", &chains[..1]),
        Err(SnapshotError::LayerNotFound(_))
    ));
}

#[test]
fn legacy_options_that_overflow_a_page_are_refused() {
    let plan = OverlayPlan {
        lowers: vec![],
        short_lowers: (0..400).map(|i| format!("l/{i:012}")).collect(),
        upper: "snapshots/x/upper".into(),
        work: "snapshots/x/work".into(),
    };
    let err =
        mount_legacy(Path::new("/nonexistent"), &plan, Path::new("/nonexistent")).unwrap_err();
    assert!(matches!(err, SnapshotError::OptionsTooLong { .. }), "{err}");
}

#[test]
fn mountinfo_unescapes() {
    let info = "36 35 98:0 /mnt1 /mnt\\040with\\040space rw - ext3 /dev/root rw\n";
    assert_eq!(
        mount_points(info).collect::<Vec<_>>(),
        vec!["/mnt with space"]
    );
}
