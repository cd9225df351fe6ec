//! Volumes of the `local` driver: a directory per volume under
//! `<data-root>/volumes/<name>/_data` (Docker's layout, so tools that know it find the data),
//! the metadata (driver, labels, options, creation time) in the metadata database.
//!
//! Why SQLite and not a JSON file per volume: DESIGN.md puts all metadata in the one
//! database, with transactions, so a crash leaves either the volume's row or not; and the
//! container records that reference volumes live there too. A directory without a row (a
//! crash between `mkdir` and the insert, or data copied in by hand) is adopted at open,
//! never deleted: the data is the user's.
//!
//! References: every container that mounts a volume holds a reference by its id, from
//! its create to its removal (Docker counts stopped containers too). They live in memory,
//! rebuilt from the container records at start ([`VolumeStore::restore_refs`]); getting a
//! volume for a container and adding the reference happen under one lock, so a concurrent
//! `volume rm` cannot remove a volume between the two.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_api::volume::{Volume, ANONYMOUS_LABEL};
use chrono::{SecondsFormat, Utc};
use hyper::StatusCode;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

use crate::container_fs::{ContainerRoot, ExtractOptions, FsError};
use crate::events::EventBus;
use crate::metadata_store::{MetadataStore, StoreError, VolumeStoreError};
use crate::response::ApiError;

/// The only driver berth has.
pub const LOCAL_DRIVER: &str = "local";

/// What the database keeps about a volume (the `config` column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// RFC 3339, seconds, as dockerd's `CreatedAt`.
    pub created_at: String,
}

impl VolumeRecord {
    /// Made for a container rather than by name: `prune` and `rm -v` remove these.
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// Why a volume operation failed; [`From<VolumeError> for ApiError`] gives Docker's status
/// and wording.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", .users.join(", "))]
    InUse { name: String, users: Vec<String> },
    #[error(
        "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )]
    UnknownDriver { name: String, driver: String },
    #[error("create {name}: driver options ({keys}) are not supported by berth's local driver yet: it keeps volumes as plain directories")]
    DriverOptions { name: String, keys: String },
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("copying the image's {path} into volume {name}: {source}")]
    CopyUp {
        name: String,
        path: String,
        #[source]
        source: FsError,
    },
    #[error("volume metadata: {0}")]
    Store(#[from] StoreError),
    #[error("volume metadata of {name} cannot be encoded: {source}")]
    Encode {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> Self {
        let status = match &e {
            VolumeError::InvalidName(_) => StatusCode::BAD_REQUEST,
            VolumeError::NotFound(_) | VolumeError::UnknownDriver { .. } => StatusCode::NOT_FOUND,
            VolumeError::InUse { .. } => StatusCode::CONFLICT,
            VolumeError::DriverOptions { .. } => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_owned();
    move |source| VolumeError::Io { op, path, source }
}

/// Docker's `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$` for local volume names: also what keeps a
/// name from being a path (`..`, `a/b`) under the volumes directory.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A create as the API and `-v` ask for it.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `None`: an anonymous volume (64 hex characters, labelled as such).
    pub name: Option<String>,
    /// Empty means `local`.
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub driver_opts: BTreeMap<String, String>,
}

/// Which volumes `prune` considers.
#[derive(Debug, Clone, Default)]
pub struct PruneFilter {
    /// Named volumes too, not only anonymous ones (`all=true`, Docker 23+).
    pub all: bool,
    /// `label=k` / `label=k=v`: all must match.
    pub labels: Vec<String>,
    /// `label!=k` / `label!=k=v`: none may match.
    pub not_labels: Vec<String>,
}

/// Does `labels` have `filter` (`key` or `key=value`)?
pub fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

#[derive(Default)]
struct State {
    volumes: BTreeMap<String, VolumeRecord>,
    /// Volume name -> ids of the containers that use it.
    refs: HashMap<String, BTreeSet<String>>,
}

pub struct VolumeStore {
    /// `<data-root>/volumes`.
    root: PathBuf,
    store: Arc<Mutex<MetadataStore>>,
    events: Arc<EventBus>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl VolumeStore {
    /// Opens `<data_root>/volumes` (0701, as dockerd: others may reach a volume's data by
    /// its path but not list the volumes), loads the records, and adopts directories that
    /// have no record.
    pub fn open(
        data_root: &Path,
        store: Arc<Mutex<MetadataStore>>,
        events: Arc<EventBus>,
    ) -> Result<Self, VolumeError> {
        let root = data_root.join("volumes");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o701)
            .create(&root)
            .map_err(io_err("create", &root))?;
        let rows = lock(&store).volumes()?;
        let mut volumes = BTreeMap::new();
        for (name, json) in rows {
            match serde_json::from_str::<VolumeRecord>(&json) {
                Ok(record) => {
                    volumes.insert(name, record);
                }
                Err(err) => tracing::warn!(%name, %err, "skipping an unreadable volume record"),
            }
        }
        let this = Self {
            root,
            store,
            events,
            state: Mutex::new(State {
                volumes,
                refs: HashMap::new(),
            }),
        };
        this.adopt_orphans()?;
        Ok(this)
    }

    /// Directories with a valid name and a `_data` but no record become volumes again,
    /// created at their directory's mtime; rows whose directory went missing get an empty one.
    fn adopt_orphans(&self) -> Result<(), VolumeError> {
        let entries = std::fs::read_dir(&self.root).map_err(io_err("list", &self.root))?;
        let mut state = lock(&self.state);
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.root))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if state.volumes.contains_key(&name) || !valid_name(&name) {
                continue;
            }
            let data = self.data_dir(&name);
            let Ok(meta) = std::fs::symlink_metadata(&data) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            let created_at = chrono::DateTime::from_timestamp(meta.mtime(), 0)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_else(now);
            let record = VolumeRecord {
                name: name.clone(),
                driver: LOCAL_DRIVER.to_owned(),
                labels: BTreeMap::new(),
                options: BTreeMap::new(),
                created_at,
            };
            self.insert_row(&record)?;
            tracing::info!(%name, "adopted a volume directory that had no record");
            state.volumes.insert(name, record);
        }
        for name in state.volumes.keys() {
            let data = self.data_dir(name);
            if !data.exists() {
                tracing::warn!(%name, "the volume's directory was missing; made an empty one");
                self.make_dirs(name)?;
            }
        }
        Ok(())
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where the volume's data is: what containers bind-mount.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    fn make_dirs(&self, name: &str) -> Result<(), VolumeError> {
        let data = self.data_dir(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&data)
            .map_err(io_err("create", &data))
    }

    fn insert_row(&self, record: &VolumeRecord) -> Result<(), VolumeError> {
        let json = serde_json::to_string(record).map_err(|source| VolumeError::Encode {
            name: record.name.clone(),
            source,
        })?;
        let created = Utc::now().timestamp();
        match lock(&self.store).insert_volume(&record.name, created, &json) {
            Ok(()) => Ok(()),
            Err(VolumeStoreError::Exists { .. }) => Ok(()),
            Err(VolumeStoreError::Store(e)) => Err(e.into()),
        }
    }

    /// The API's view of a record.
    pub fn to_api(&self, record: &VolumeRecord) -> Volume {
        Volume {
            created_at: record.created_at.clone(),
            driver: record.driver.clone(),
            labels: record.labels.clone(),
            mountpoint: self.data_dir(&record.name).display().to_string(),
            name: record.name.clone(),
            options: record.options.clone(),
            scope: "local".to_owned(),
            usage_data: None,
        }
    }

    pub fn get(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        lock(&self.state)
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_owned()))
    }

    pub fn list(&self) -> Vec<VolumeRecord> {
        lock(&self.state).volumes.values().cloned().collect()
    }

    /// Ids of the containers using `name`.
    pub fn users(&self, name: &str) -> Vec<String> {
        lock(&self.state)
            .refs
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `POST /volumes/create`: an existing name answers with the existing volume, as
    /// dockerd does (labels and options are not changed).
    pub fn create(&self, opts: CreateOptions) -> Result<VolumeRecord, VolumeError> {
        let mut state = lock(&self.state);
        self.create_locked(&mut state, opts)
    }

    fn create_locked(
        &self,
        state: &mut State,
        opts: CreateOptions,
    ) -> Result<VolumeRecord, VolumeError> {
        let mut labels = opts.labels;
        let name = match opts.name.filter(|n| !n.is_empty()) {
            Some(name) => {
                if !valid_name(&name) {
                    return Err(VolumeError::InvalidName(name));
                }
                name
            }
            None => {
                labels.insert(ANONYMOUS_LABEL.to_owned(), String::new());
                loop {
                    let id = crate::container_names::new_id().map_err(|e| VolumeError::Io {
                        op: "generate a name for",
                        path: self.root.clone(),
                        source: io::Error::other(e.message),
                    })?;
                    if !state.volumes.contains_key(&id) {
                        break id;
                    }
                }
            }
        };
        let driver = if opts.driver.is_empty() {
            LOCAL_DRIVER.to_owned()
        } else {
            opts.driver
        };
        if driver != LOCAL_DRIVER {
            return Err(VolumeError::UnknownDriver { name, driver });
        }
        if let Some(existing) = state.volumes.get(&name) {
            return Ok(existing.clone());
        }
        if !opts.driver_opts.is_empty() {
            let keys = opts
                .driver_opts
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            return Err(VolumeError::DriverOptions { name, keys });
        }
        let record = VolumeRecord {
            name: name.clone(),
            driver,
            labels,
            options: BTreeMap::new(),
            created_at: now(),
        };
        // Directory first, then the row: a crash in between leaves a directory that the
        // next open adopts, never a row without its data.
        self.make_dirs(&name)?;
        if let Err(e) = self.insert_row(&record) {
            let _ = std::fs::remove_dir_all(self.volume_dir(&name));
            return Err(e);
        }
        state.volumes.insert(name.clone(), record.clone());
        self.events.publish(
            "volume",
            "create",
            &name,
            BTreeMap::from([("driver".to_owned(), LOCAL_DRIVER.to_owned())]),
        );
        Ok(record)
    }

    /// The volume `name` for container `container_id` (created if missing, anonymous when
    /// `name` is `None`), with the container's reference added under the same lock.
    pub fn acquire(
        &self,
        name: Option<&str>,
        container_id: &str,
    ) -> Result<VolumeRecord, VolumeError> {
        let mut state = lock(&self.state);
        let record = self.create_locked(
            &mut state,
            CreateOptions {
                name: name.map(str::to_owned),
                ..CreateOptions::default()
            },
        )?;
        state
            .refs
            .entry(record.name.clone())
            .or_default()
            .insert(container_id.to_owned());
        Ok(record)
    }

    /// At daemon start: the references of a recorded container.
    pub fn restore_refs<'a>(&self, container_id: &str, names: impl IntoIterator<Item = &'a str>) {
        let mut state = lock(&self.state);
        for name in names {
            state
                .refs
                .entry(name.to_owned())
                .or_default()
                .insert(container_id.to_owned());
        }
    }

    /// The container is gone (or its create failed): drop its references, and remove
    /// `remove` (its anonymous volumes, for `rm -v` and `--rm`) when nothing else uses them.
    /// Errors are logged: the container is gone either way, and `volume prune` can finish.
    pub fn release(&self, container_id: &str, remove: &[String]) {
        {
            let mut state = lock(&self.state);
            state.refs.retain(|_, users| {
                users.remove(container_id);
                !users.is_empty()
            });
        }
        for name in remove {
            match self.remove(name, true) {
                Ok(()) => {}
                Err(VolumeError::InUse { .. }) => {
                    tracing::debug!(%name, "anonymous volume still in use; kept")
                }
                Err(e) => tracing::warn!(%name, %e, "cannot remove the container's volume"),
            }
        }
    }

    /// `DELETE /volumes/{name}`. `force` only makes a missing volume not an error, as in
    /// dockerd; a volume in use is never removed.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), VolumeError> {
        let trash = {
            let mut state = lock(&self.state);
            if !state.volumes.contains_key(name) {
                return if force {
                    Ok(())
                } else {
                    Err(VolumeError::NotFound(name.to_owned()))
                };
            }
            if let Some(users) = state.refs.get(name).filter(|u| !u.is_empty()) {
                return Err(VolumeError::InUse {
                    name: name.to_owned(),
                    users: users.iter().cloned().collect(),
                });
            }
            self.unlink_locked(&mut state, name)?
        };
        self.delete_trash(&trash);
        Ok(())
    }

    /// Deletes the row and moves the directory aside (a rename, quick under the lock), so a
    /// volume of the same name can be made at once; returns where the data went.
    fn unlink_locked(&self, state: &mut State, name: &str) -> Result<PathBuf, VolumeError> {
        lock(&self.store).delete_volume(name)?;
        state.volumes.remove(name);
        state.refs.remove(name);
        let dir = self.volume_dir(name);
        // A leading `.` is not a valid volume name, so adoption never picks it up.
        let trash = self
            .root
            .join(format!(".removing-{name}-{}", std::process::id()));
        let trash = match std::fs::rename(&dir, &trash) {
            Ok(()) => trash,
            Err(e) if e.kind() == io::ErrorKind::NotFound => PathBuf::new(),
            Err(e) => {
                // Left in place rather than deleted by path: a new volume of this name
                // could be made there meanwhile. The next daemon start adopts it.
                tracing::warn!(%name, %e, "cannot move the volume's directory aside; its data stays");
                PathBuf::new()
            }
        };
        self.events.publish(
            "volume",
            "destroy",
            name,
            BTreeMap::from([("driver".to_owned(), LOCAL_DRIVER.to_owned())]),
        );
        Ok(trash)
    }

    fn delete_trash(&self, trash: &Path) {
        if trash.as_os_str().is_empty() {
            return;
        }
        // std's remove_dir_all does not follow symlinks (it walks by fds, CVE-2022-21658).
        if let Err(e) = std::fs::remove_dir_all(trash) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %trash.display(), %e, "cannot delete a removed volume's data");
            }
        }
    }

    /// `POST /volumes/prune`: every unused volume that the filter selects. Returns the
    /// names removed and the bytes their data took.
    pub fn prune(&self, filter: &PruneFilter) -> Result<(Vec<String>, u64), VolumeError> {
        let mut removed = Vec::new();
        let mut trash = Vec::new();
        {
            let mut state = lock(&self.state);
            let candidates: Vec<String> = state
                .volumes
                .values()
                .filter(|v| filter.all || v.is_anonymous())
                .filter(|v| filter.labels.iter().all(|l| label_matches(&v.labels, l)))
                .filter(|v| {
                    !filter
                        .not_labels
                        .iter()
                        .any(|l| label_matches(&v.labels, l))
                })
                .filter(|v| state.refs.get(&v.name).is_none_or(BTreeSet::is_empty))
                .map(|v| v.name.clone())
                .collect();
            for name in candidates {
                trash.push(self.unlink_locked(&mut state, &name)?);
                removed.push(name);
            }
        }
        let mut reclaimed = 0;
        for t in &trash {
            reclaimed += dir_size(t);
            self.delete_trash(t);
        }
        Ok((removed, reclaimed))
    }

    /// Docker's copy-up: the first time a volume is mounted and it is empty, the image's
    /// content at `path` (in the container's mounted rootfs) is copied into it, with owners,
    /// modes, times and symlinks as they are. The source is resolved inside the rootfs
    /// (openat2 `RESOLVE_IN_ROOT`) and walked by directory fds without following symlinks
    /// (container_fs), so an image whose `/data` is a link to `/etc` copies its own `/etc`,
    /// never the host's. Returns whether anything was copied.
    pub fn copy_up(&self, name: &str, rootfs: &Path, path: &str) -> Result<bool, VolumeError> {
        let data = self.data_dir(name);
        let mut listing = std::fs::read_dir(&data).map_err(io_err("list", &data))?;
        if listing.next().is_some() {
            return Ok(false);
        }
        let copy_err = |source| VolumeError::CopyUp {
            name: name.to_owned(),
            path: path.to_owned(),
            source,
        };
        let root = ContainerRoot::open(rootfs).map_err(copy_err)?;
        let source_dir = format!("{}/.", path.trim_end_matches('/'));
        let Some(owner) = source_owner(rootfs, path) else {
            // Nothing at that path in the image (or not a directory): nothing to copy.
            return Ok(false);
        };
        let (_, archive) = match root.archive(&source_dir) {
            Ok(found) => found,
            Err(FsError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(copy_err(e)),
        };
        let dest = ContainerRoot::open(&data).map_err(copy_err)?;
        let (reader, writer) = io::pipe().map_err(io_err("pipe for", &data))?;
        let (written, extracted) = std::thread::scope(|s| {
            // The writer ends when the reader goes away (EPIPE) and the other way round
            // (EOF), so neither side can wait forever on the other.
            let producer = s.spawn(move || archive.write_tar(writer));
            let extracted = dest.extract("/", reader, &ExtractOptions::default());
            let written = producer.join();
            (written, extracted)
        });
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(copy_err(e)),
            Err(_) => {
                return Err(VolumeError::Io {
                    op: "copy into",
                    path: data,
                    source: io::Error::other("the archiving thread panicked"),
                })
            }
        }
        extracted.map_err(copy_err)?;
        // The tar's `.` entry is not applied to the destination: give the volume's root the
        // image directory's owner and mode here, as dockerd's `copyOwnership`.
        let (uid, gid, mode) = owner;
        let dir = rustix::fs::open(
            &data,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open", &data)(e.into()))?;
        rustix::fs::fchown(
            dir.as_fd(),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| io_err("chown", &data)(e.into()))?;
        rustix::fs::fchmod(dir.as_fd(), Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| io_err("chmod", &data)(e.into()))?;
        Ok(true)
    }
}

/// Owner and mode of the directory at `path` inside `rootfs`, resolved with the rootfs as
/// `/`; `None` when it is missing or not a directory.
fn source_owner(rootfs: &Path, path: &str) -> Option<(u32, u32, u32)> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let relative = format!(".{}", path);
    let fd = rustix::fs::openat2(
        &root,
        relative.as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    Some((st.st_uid, st.st_gid, st.st_mode))
}

/// Bytes of regular files under `dir`, symlinks not followed. Only measured on volumes no
/// container uses (being pruned), so nothing changes the tree while it is walked.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> VolumeStore {
        let meta = Arc::new(Mutex::new(MetadataStore::open(dir).expect("db")));
        VolumeStore::open(dir, meta, Arc::new(EventBus::new())).expect("volumes")
    }

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["data", "a1", "my_vol.2-x", "0abc"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "-x", ".hidden", "a/b", "..", "a b", "é1"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn create_is_idempotent_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vs = store(dir.path());
        let labels = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let v = vs
            .create(CreateOptions {
                name: Some("data".into()),
                labels: labels.clone(),
                ..Default::default()
            })
            .expect("create");
        assert_eq!(v.driver, "local");
        assert!(vs.data_dir("data").is_dir());
        let again = vs
            .create(CreateOptions {
                name: Some("data".into()),
                ..Default::default()
            })
            .expect("again");
        assert_eq!(again.labels, labels, "an existing volume is returned as is");
        std::fs::write(vs.data_dir("data").join("f"), "x").expect("write");
        drop(vs);
        let vs = store(dir.path());
        assert_eq!(vs.get("data").expect("kept").labels, labels);
        assert!(vs.data_dir("data").join("f").exists());
        assert!(matches!(
            vs.create(CreateOptions {
                name: Some("/etc".into()),
                ..Default::default()
            }),
            Err(VolumeError::InvalidName(_))
        ));
        assert!(matches!(
            vs.create(CreateOptions {
                name: Some("x1".into()),
                driver: "nfs".into(),
                ..Default::default()
            }),
            Err(VolumeError::UnknownDriver { .. })
        ));
    }

    #[test]
    fn references_block_removal_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vs = store(dir.path());
        vs.acquire(Some("data"), "c1").expect("acquire");
        let anon = vs.acquire(None, "c1").expect("anonymous");
        assert!(anon.is_anonymous() && anon.name.len() == 64);
        let err = vs.remove("data", true).expect_err("in use");
        assert_eq!(err.to_string(), "remove data: volume is in use - [c1]");
        assert_eq!(ApiError::from(err).status, StatusCode::CONFLICT);
        vs.release("c1", std::slice::from_ref(&anon.name));
        assert!(matches!(vs.get(&anon.name), Err(VolumeError::NotFound(_))));
        assert!(!dir.path().join("volumes").join(&anon.name).exists());
        vs.remove("data", false).expect("unused now");
        let err = vs.remove("data", false).expect_err("gone");
        assert_eq!(err.to_string(), "get data: no such volume");
        vs.remove("data", true)
            .expect("force ignores a missing volume");
    }

    #[test]
    fn prune_takes_anonymous_unless_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vs = store(dir.path());
        vs.create(CreateOptions {
            name: Some("named".into()),
            ..Default::default()
        })
        .expect("named");
        let anon = vs.create(CreateOptions::default()).expect("anon");
        std::fs::write(vs.data_dir(&anon.name).join("f"), "12345").expect("write");
        let used = vs.acquire(None, "c1").expect("used");
        let (removed, bytes) = vs.prune(&PruneFilter::default()).expect("prune");
        assert_eq!(removed, vec![anon.name.clone()]);
        assert_eq!(bytes, 5);
        assert!(vs.get(&used.name).is_ok(), "in use: kept");
        let (removed, _) = vs
            .prune(&PruneFilter {
                all: true,
                ..Default::default()
            })
            .expect("prune all");
        assert_eq!(removed, vec!["named".to_owned()]);
    }

    #[test]
    fn orphan_directories_are_adopted() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(store(dir.path()));
        std::fs::create_dir_all(dir.path().join("volumes/kept/_data")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("volumes/.removing-x/_data")).expect("mkdir");
        let vs = store(dir.path());
        assert!(vs.get("kept").is_ok());
        assert_eq!(vs.list().len(), 1);
    }

    #[test]
    fn copy_up_stays_inside_the_rootfs() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let vs = store(dir.path());
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("www/sub")).expect("mkdir");
        std::fs::write(rootfs.join("www/index.html"), "hi").expect("write");
        std::fs::set_permissions(rootfs.join("www"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        symlink("/etc", rootfs.join("www/etc-link")).expect("symlink");
        // A link out of the root resolves inside it: /escape -> / is the rootfs itself.
        symlink("/", rootfs.join("escape")).expect("symlink");
        std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
        std::fs::write(rootfs.join("etc/only-in-image"), "img").expect("write");

        vs.create(CreateOptions {
            name: Some("web".into()),
            ..Default::default()
        })
        .expect("create");
        assert!(vs.copy_up("web", &rootfs, "/www").expect("copy"));
        let data = vs.data_dir("web");
        assert_eq!(
            std::fs::read_to_string(data.join("index.html")).expect("copied"),
            "hi"
        );
        assert!(data.join("sub").is_dir());
        assert_eq!(
            std::fs::read_link(data.join("etc-link")).expect("link kept"),
            Path::new("/etc")
        );
        let mode = std::fs::metadata(&data).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o750, "the root takes the image dir's mode");
        assert!(
            !vs.copy_up("web", &rootfs, "/www").expect("again"),
            "only into an empty volume"
        );

        vs.create(CreateOptions {
            name: Some("esc".into()),
            ..Default::default()
        })
        .expect("create");
        assert!(vs.copy_up("esc", &rootfs, "/escape/etc").expect("copy"));
        let esc = vs.data_dir("esc");
        assert!(esc.join("only-in-image").exists(), "the image's /etc");
        assert!(!esc.join("passwd").exists(), "never the host's /etc");

        vs.create(CreateOptions {
            name: Some("none".into()),
            ..Default::default()
        })
        .expect("create");
        assert!(!vs.copy_up("none", &rootfs, "/missing").expect("nothing"));
    }
}
