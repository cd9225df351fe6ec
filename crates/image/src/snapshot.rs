//! Unpacked layers by ChainID, and per-container overlay snapshots over them.
//!
//! Layout under the data root (moby overlay2's, with ChainIDs as keys):
//!
//! ```text
//! layers/<chain hex>/diff/   the layer, in overlay format (see layer_unpack)
//! layers/<chain hex>/link    its short id
//! l/<short id>               -> ../layers/<chain hex>/diff
//! snapshots/<id>/upper, work, merged, lower (the ChainIDs, bottom to top)
//! ```
//!
//! A layer dir is unpacked in `layers/.tmp-*` and renamed into place whole, so a
//! `layers/<chain>` that exists is complete. Because overlay layer dirs do not depend on
//! each other, a pull unpacks them in parallel.
//!
//! Mounting many layers: the legacy `mount(2)` data is one page, which 120 absolute
//! `.../layers/<64 hex>/diff` paths overflow. The snapshotter uses the new mount API with
//! one `lowerdir+` per layer (Linux 6.8+, no total limit), and otherwise `mount(2)` from a
//! thread whose cwd is the data root (after `unshare(CLONE_FS)`, so no other thread's cwd
//! moves) with relative `l/<short id>` lowers, as Docker's overlay2 does.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags,
    MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::digest::Digest;
use crate::layer_unpack::{self, UnpackError};

/// overlayfs's `OVL_MAX_STACK`.
pub const MAX_LAYERS: usize = 500;
const SHORT_ID_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("unpacking layer {chain}: {source}")]
    Unpack { chain: Digest, source: UnpackError },
    #[error(
        "layer {chain}: unpacked content has DiffID {actual}, the image config says {expected}"
    )]
    DiffIdMismatch {
        chain: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {0} is not unpacked")]
    LayerNotFound(Digest),
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    #[error("snapshot {0:?} already exists")]
    Exists(String),
    #[error("invalid snapshot id {0:?}: use 1-128 of [A-Za-z0-9_.-], not starting with '.'")]
    InvalidId(String),
    #[error("{0} layers: overlayfs stacks at most 500")]
    TooManyLayers(usize),
    #[error("overlay mount options are {len} bytes, over the {limit}-byte limit of mount(2), and this kernel has no fsconfig lowerdir+ (Linux 6.8)")]
    OptionsTooLong { len: usize, limit: usize },
    #[error("mounting overlay on {target}: {source}")]
    Mount { target: PathBuf, source: io::Error },
    #[error("{0} is still mounted after unmount; not removing it")]
    StillMounted(PathBuf),
}

type Result<T> = std::result::Result<T, SnapshotError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            // getrandom(2) fails only on old kernels or bad pointers; neither applies.
            Err(e) => panic!("getrandom: {e}"),
        }
    }
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Layer dirs by ChainID.
#[derive(Debug, Clone)]
pub struct LayerStore {
    data_root: PathBuf,
    layers: PathBuf,
    links: PathBuf,
}

impl LayerStore {
    /// Opens the store, removing what an interrupted unpack left (`.tmp-*` dirs and their
    /// `l/` links). Assumes one daemon per data root.
    pub fn open(data_root: &Path) -> Result<LayerStore> {
        let layers = data_root.join("layers");
        let links = data_root.join("l");
        for dir in [&layers, &links] {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        for entry in fs::read_dir(&layers).map_err(io_err("list", &layers))? {
            let entry = entry.map_err(io_err("list", &layers))?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
            }
        }
        for entry in fs::read_dir(&links).map_err(io_err("list", &links))? {
            let entry = entry.map_err(io_err("list", &links))?;
            let path = entry.path();
            if !path.exists() {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
            }
        }
        Ok(LayerStore {
            data_root: data_root.to_owned(),
            layers,
            links,
        })
    }

    fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.layers.join(chain.hex())
    }

    /// The unpacked layer (an overlay lowerdir).
    pub fn diff_path(&self, chain: &Digest) -> PathBuf {
        self.layer_dir(chain).join("diff")
    }

    pub fn contains(&self, chain: &Digest) -> bool {
        self.diff_path(chain).is_dir()
    }

    /// The layer's short id: `l/<id>` links to its diff dir.
    pub fn short_id(&self, chain: &Digest) -> Result<String> {
        let path = self.layer_dir(chain).join("link");
        match fs::read_to_string(&path) {
            Ok(id) => Ok(id.trim().to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(SnapshotError::LayerNotFound(chain.clone()))
            }
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Unpacks `blob` as layer `chain`, checking its DiffID. Returns false, reading
    /// nothing, if the layer is already there: each ChainID is unpacked once.
    pub fn unpack<R: io::Read>(&self, chain: &Digest, diff_id: &Digest, blob: R) -> Result<bool> {
        match self.prepare(chain, diff_id, blob)? {
            Some(prepared) => prepared.commit(),
            None => Ok(false),
        }
    }

    /// The first half of [`LayerStore::unpack`]: unpacks `blob` into a hidden temp dir
    /// and checks its DiffID, but leaves the layer invisible until
    /// [`PreparedLayer::commit`]. A pull unpacks while it downloads and commits only
    /// once the blob's digest has matched; dropping the prepared layer removes it.
    /// `None`, reading nothing, if the layer is already there.
    pub fn prepare<R: io::Read>(
        &self,
        chain: &Digest,
        diff_id: &Digest,
        blob: R,
    ) -> Result<Option<PreparedLayer>> {
        if self.contains(chain) {
            return Ok(None);
        }
        let tmp = self.layers.join(format!(".tmp-{}", random_id(16)));
        let diff = tmp.join("diff");
        fs::create_dir_all(&diff).map_err(io_err("create", &diff))?;
        let prepared = PreparedLayer {
            store: self.clone(),
            chain: chain.clone(),
            tmp: Some(tmp),
        };
        let actual =
            layer_unpack::unpack_layer(blob, &diff).map_err(|source| SnapshotError::Unpack {
                chain: chain.clone(),
                source,
            })?;
        if &actual != diff_id {
            return Err(SnapshotError::DiffIdMismatch {
                chain: chain.clone(),
                expected: diff_id.clone(),
                actual,
            });
        }
        Ok(Some(prepared))
    }

    fn commit_prepared(&self, chain: &Digest, tmp: &Path) -> Result<bool> {
        let short = random_id(SHORT_ID_LEN);
        let link_file = tmp.join("link");
        fs::write(&link_file, &short).map_err(io_err("write", &link_file))?;
        let link = self.links.join(&short);
        std::os::unix::fs::symlink(format!("../layers/{}/diff", chain.hex()), &link)
            .map_err(io_err("symlink", &link))?;
        let dest = self.layer_dir(chain);
        match fs::rename(tmp, &dest) {
            Ok(()) => {}
            // Another unpacker of the same chain won the race; theirs is as good.
            Err(e) if dest.is_dir() => {
                tracing::debug!(chain = %chain, error = %e, "layer appeared while unpacking");
                let _ = fs::remove_file(&link);
                return Ok(false);
            }
            Err(e) => {
                let _ = fs::remove_file(&link);
                return Err(io_err("rename", &dest)(e));
            }
        }
        fs::File::open(&self.layers)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync", &self.layers))?;
        Ok(true)
    }

    /// Every unpacked layer's ChainID (`.tmp-*` dirs of unpacks in progress excluded).
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.layers).map_err(io_err("list", &self.layers))? {
            let entry = entry.map_err(io_err("list", &self.layers))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|h| Digest::from_hex(h).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a layer dir. Garbage collection decides that no snapshot uses it.
    pub fn remove(&self, chain: &Digest) -> Result<()> {
        if let Ok(short) = self.short_id(chain) {
            let link = self.links.join(short);
            match fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &link)(e)),
            }
        }
        let dir = self.layer_dir(chain);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &dir)(e)),
        }
    }
}

/// A layer unpacked and DiffID-checked in a hidden temp dir, not yet visible by its
/// ChainID. Dropped without [`PreparedLayer::commit`], it is removed.
#[derive(Debug)]
pub struct PreparedLayer {
    store: LayerStore,
    chain: Digest,
    tmp: Option<PathBuf>,
}

impl PreparedLayer {
    /// Renames the layer into place (false: another unpacker of the same ChainID was
    /// first, and this copy is dropped).
    pub fn commit(mut self) -> Result<bool> {
        let Some(tmp) = self.tmp.clone() else {
            return Ok(false);
        };
        let result = self.store.commit_prepared(&self.chain, &tmp);
        if matches!(result, Ok(true)) {
            self.tmp = None;
        }
        result
    }
}

impl Drop for PreparedLayer {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = fs::remove_dir_all(&tmp) {
                tracing::warn!(path = %tmp.display(), error = %e, "removing an uncommitted layer");
            }
        }
    }
}

/// How to mount overlays with many layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountMethod {
    /// The new mount API with `lowerdir+` when the kernel has it, else `Legacy`.
    #[default]
    Auto,
    /// `fsopen`/`fsconfig("lowerdir+")`/`fsmount`/`move_mount` (Linux 6.8+).
    Fsconfig,
    /// `mount(2)` with relative `l/<short id>` lowers from the data root.
    Legacy,
}

/// A container's writable snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    /// ChainIDs of the image's layers, bottom to top.
    pub layers: Vec<Digest>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where [`Snapshotter::mount`] mounts the overlay.
    pub merged: PathBuf,
}

/// What one overlay mount is made of; computed without side effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayPlan {
    /// Lower dirs relative to the data root, **top to bottom** (overlayfs's order).
    pub lowers: Vec<PathBuf>,
    /// The same lowers as short `l/<id>` links, for the one-page `mount(2)` data.
    pub short_lowers: Vec<String>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl OverlayPlan {
    /// The `mount(2)` data for the legacy method, with paths relative to the data root.
    pub fn legacy_options(&self) -> String {
        format!(
            "index=off,lowerdir={},upperdir={},workdir={}",
            self.short_lowers.join(":"),
            self.upper.display(),
            self.work.display()
        )
    }
}

/// Overlay snapshots over a [`LayerStore`].
#[derive(Debug, Clone)]
pub struct Snapshotter {
    layers: LayerStore,
    snapshots: PathBuf,
    method: MountMethod,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl Snapshotter {
    pub fn new(layers: LayerStore) -> Result<Snapshotter> {
        let snapshots = layers.data_root.join("snapshots");
        fs::create_dir_all(&snapshots).map_err(io_err("create", &snapshots))?;
        Ok(Snapshotter {
            layers,
            snapshots,
            method: MountMethod::Auto,
        })
    }

    pub fn with_method(mut self, method: MountMethod) -> Snapshotter {
        self.method = method;
        self
    }

    pub fn layer_store(&self) -> &LayerStore {
        &self.layers
    }

    fn dir(&self, id: &str) -> Result<PathBuf> {
        if !valid_id(id) {
            return Err(SnapshotError::InvalidId(id.to_owned()));
        }
        Ok(self.snapshots.join(id))
    }

    fn snapshot_at(&self, id: &str, dir: &Path, layers: Vec<Digest>) -> Snapshot {
        Snapshot {
            id: id.to_owned(),
            layers,
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
        }
    }

    /// Creates snapshot `id` over `layers` (ChainIDs, bottom to top; all unpacked).
    pub fn create(&self, id: &str, layers: &[Digest]) -> Result<Snapshot> {
        let dir = self.dir(id)?;
        if layers.len() > MAX_LAYERS {
            return Err(SnapshotError::TooManyLayers(layers.len()));
        }
        if let Some(missing) = layers.iter().find(|c| !self.layers.contains(c)) {
            return Err(SnapshotError::LayerNotFound(missing.clone()));
        }
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(SnapshotError::Exists(id.to_owned()))
            }
            Err(e) => return Err(io_err("create", &dir)(e)),
        }
        let snapshot = self.snapshot_at(id, &dir, layers.to_vec());
        let made = (|| {
            for d in [&snapshot.upper, &snapshot.work, &snapshot.merged] {
                fs::create_dir(d).map_err(io_err("create", d))?;
            }
            // The recorded layer list is what mount() and crash recovery work from.
            let lower = dir.join("lower");
            let tmp = dir.join("lower.tmp");
            let mut f = fs::File::create(&tmp).map_err(io_err("write", &tmp))?;
            for chain in layers {
                writeln!(f, "{chain}").map_err(io_err("write", &tmp))?;
            }
            f.sync_all().map_err(io_err("fsync", &tmp))?;
            fs::rename(&tmp, &lower).map_err(io_err("rename", &lower))
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(snapshot)
    }

    /// Reads back a snapshot's record.
    pub fn get(&self, id: &str) -> Result<Snapshot> {
        let dir = self.dir(id)?;
        let lower = dir.join("lower");
        let text = match fs::read_to_string(&lower) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SnapshotError::NotFound(id.to_owned()))
            }
            Err(e) => return Err(io_err("read", &lower)(e)),
        };
        let layers = text
            .lines()
            .map(|l| {
                l.parse::<Digest>().map_err(|e| SnapshotError::Io {
                    op: "parse",
                    path: lower.clone(),
                    source: io::Error::other(e),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.snapshot_at(id, &dir, layers))
    }

    /// The mount, as paths relative to the data root. Pure but for reading the short ids.
    pub fn plan(&self, snapshot: &Snapshot) -> Result<OverlayPlan> {
        let rel = |p: &Path| {
            p.strip_prefix(&self.layers.data_root)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| p.to_path_buf())
        };
        let mut lowers = Vec::new();
        let mut short_lowers = Vec::new();
        for chain in snapshot.layers.iter().rev() {
            lowers.push(rel(&self.layers.diff_path(chain)));
            short_lowers.push(format!("l/{}", self.layers.short_id(chain)?));
        }
        if lowers.is_empty() {
            // overlayfs needs a lower; an image with no layers gets an empty one.
            let empty = snapshot.merged.with_file_name("empty");
            fs::create_dir_all(&empty).map_err(io_err("create", &empty))?;
            lowers.push(rel(&empty));
            short_lowers.push(rel(&empty).display().to_string());
        }
        Ok(OverlayPlan {
            lowers,
            short_lowers,
            upper: rel(&snapshot.upper),
            work: rel(&snapshot.work),
        })
    }

    /// Mounts snapshot `id` on its `merged` dir (a no-op if it is mounted) and returns it.
    pub fn mount(&self, id: &str) -> Result<PathBuf> {
        let snapshot = self.get(id)?;
        if is_mounted(&snapshot.merged)? {
            return Ok(snapshot.merged);
        }
        let plan = self.plan(&snapshot)?;
        let root = &self.layers.data_root;
        match self.method {
            MountMethod::Fsconfig => mount_fsconfig(root, &plan, &snapshot.merged)?,
            MountMethod::Legacy => mount_legacy(root, &plan, &snapshot.merged)?,
            MountMethod::Auto => match mount_fsconfig(root, &plan, &snapshot.merged) {
                Ok(()) => {}
                Err(SnapshotError::Mount { source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL)
                        || source.raw_os_error() == Some(libc::ENOSYS) =>
                {
                    tracing::debug!(error = %source, "fsconfig lowerdir+ unavailable; using mount(2)");
                    mount_legacy(root, &plan, &snapshot.merged)?
                }
                Err(e) => return Err(e),
            },
        }
        Ok(snapshot.merged)
    }

    /// Unmounts snapshot `id` if it is mounted.
    pub fn unmount(&self, id: &str) -> Result<()> {
        let merged = self.dir(id)?.join("merged");
        unmount_all(&merged)
    }

    /// Unmounts and deletes snapshot `id`. Refuses to delete while anything is still
    /// mounted there: `rm -r` through a mount would delete image layers.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id)?;
        if !dir.exists() {
            return Ok(());
        }
        unmount_all(&dir.join("merged"))?;
        fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))
    }

    /// Every snapshot id on disk.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.snapshots).map_err(io_err("list", &self.snapshots))? {
            let entry = entry.map_err(io_err("list", &self.snapshots))?;
            if let Some(name) = entry.file_name().to_str() {
                if valid_id(name) {
                    out.push(name.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

fn mount_err(target: &Path) -> impl FnOnce(rustix::io::Errno) -> SnapshotError + '_ {
    move |e| SnapshotError::Mount {
        target: target.to_owned(),
        source: e.into(),
    }
}

/// The new mount API: one `lowerdir+` per layer, so the page limit does not apply.
fn mount_fsconfig(root: &Path, plan: &OverlayPlan, target: &Path) -> Result<()> {
    let fs_fd = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(mount_err(target))?;
    let abs = |p: &Path| root.join(p);
    for lower in &plan.lowers {
        fsconfig_set_string(&fs_fd, "lowerdir+", abs(lower)).map_err(mount_err(target))?;
    }
    fsconfig_set_string(&fs_fd, "upperdir", abs(&plan.upper)).map_err(mount_err(target))?;
    fsconfig_set_string(&fs_fd, "workdir", abs(&plan.work)).map_err(mount_err(target))?;
    // index=off: the same lower layers are shared by many overlays with different
    // uppers, which the inode index would refuse (moby overlay2 does the same).
    fsconfig_set_string(&fs_fd, "index", "off").map_err(mount_err(target))?;
    fsconfig_create(&fs_fd).map_err(mount_err(target))?;
    let mnt = fsmount(
        &fs_fd,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )
    .map_err(mount_err(target))?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(mount_err(target))
}

/// `mount(2)` with paths relative to the data root, from a thread of its own whose cwd
/// is the data root: `unshare(CLONE_FS)` gives that thread a private cwd, so the rest of
/// the process (an async runtime's workers) never sees it change.
fn mount_legacy(root: &Path, plan: &OverlayPlan, target: &Path) -> Result<()> {
    let data = plan.legacy_options();
    let limit = rustix::param::page_size() - 1;
    if data.len() > limit {
        return Err(SnapshotError::OptionsTooLong {
            len: data.len(),
            limit,
        });
    }
    let target_abs = if target.is_absolute() {
        target.to_owned()
    } else {
        std::env::current_dir()
            .map_err(io_err("getcwd", target))?
            .join(target)
    };
    let root = root.to_owned();
    let joined = std::thread::spawn(move || -> Result<()> {
        // SAFETY: CLONE_FS only gives this thread its own cwd/root/umask; it does not
        // touch file descriptor tables, which is what makes unshare unsafe in general.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }
            .map_err(|e| io_err("unshare(CLONE_FS)", &root)(e.into()))?;
        rustix::process::chdir(&root).map_err(|e| io_err("chdir", &root)(e.into()))?;
        let data = std::ffi::CString::new(data)
            .map_err(|e| io_err("options", &root)(io::Error::other(e)))?;
        rustix::mount::mount(
            "overlay",
            &target_abs,
            "overlay",
            MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(mount_err(&target_abs))
    })
    .join();
    match joined {
        Ok(result) => result,
        Err(_) => Err(SnapshotError::Mount {
            target: target.to_owned(),
            source: io::Error::other("mount thread panicked"),
        }),
    }
}

/// Unmounts everything stacked on `target`, then checks /proc/self/mountinfo.
fn unmount_all(target: &Path) -> Result<()> {
    for _ in 0..16 {
        if !is_mounted(target)? {
            return Ok(());
        }
        match rustix::mount::unmount(target, UnmountFlags::empty()) {
            Ok(()) => {}
            // Busy (a process still has its cwd there): detach, as Docker does; the
            // kernel frees it when the last user goes.
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::unmount(target, UnmountFlags::DETACH).map_err(mount_err(target))?
            }
            Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(mount_err(target)(e)),
        }
    }
    if is_mounted(target)? {
        return Err(SnapshotError::StillMounted(target.to_owned()));
    }
    Ok(())
}

/// Whether something is mounted exactly at `path` (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> Result<bool> {
    let canonical = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("resolve", path)(e)),
    };
    let info_path = Path::new("/proc/self/mountinfo");
    let info = fs::read_to_string(info_path).map_err(io_err("read", info_path))?;
    let mounted = mount_points(&info).any(|p| Path::new(&p) == canonical);
    Ok(mounted)
}

/// The mount points in mountinfo text (field 5, with `\040`-style octal escapes undone).
pub fn mount_points(info: &str) -> impl Iterator<Item = String> + '_ {
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
