//! Which images berth has and the names they go by, and garbage collection of what no
//! image or container needs any more.
//!
//! Two maps, persisted together in `<data root>/images.json`: tags (a normalized
//! reference, `docker.io/library/busybox:latest`) to manifest digests, and images (by
//! manifest digest) to what they are made of: config, layer blobs, ChainIDs. An image's
//! ID is its config digest, as in Docker. The file is rewritten whole (tmp, fsync,
//! rename, fsync dir) on every change, so a crash leaves the old or the new state, never
//! half of one. The daemon will move this to SQLite; the API is kept small for that.
//!
//! Removal follows `docker rmi` (moby `daemon/images/image_delete.go`): removing a tag
//! of an image that has other tags only untags; a running container's image cannot be
//! removed even with `force`; a stopped container's image, or one tagged in several
//! repositories, only with `force`.
//!
//! [`ImageStore::gc`] marks from the roots (every recorded image, and what the caller
//! says containers use) and sweeps the rest: blobs, unpacked layers, snapshots. It must
//! not run while a pull, load or import is writing (those write blobs and layers before
//! the image is recorded); the daemon serializes them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::archive::LoadedImage;
use crate::content_store::{ContentError, ContentStore};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::Image;
use crate::snapshot::{SnapshotError, Snapshotter};

const FILE_NAME: &str = "images.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    #[error("image store: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("image store {path} is damaged: {what}; move it away to start with no images")]
    Corrupt { path: PathBuf, what: String },
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("{name:?} matches {count} images; give more of the ID")]
    Ambiguous { name: String, count: usize },
    #[error("cannot tag {0}: a tag name cannot carry a digest")]
    NotATag(String),
    #[error("image {0} is not in the store")]
    UnknownImage(Digest),
    /// Docker's wording, so scripts that match on it keep working.
    #[error("conflict: unable to {action} {name} ({force}) - {why}")]
    Conflict {
        action: &'static str,
        name: String,
        force: &'static str,
        why: String,
    },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

type Result<T> = std::result::Result<T, ImageStoreError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImageStoreError + 'a {
    move |source| ImageStoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// One image: what it is made of. Everything here is kept by garbage collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest_digest: Digest,
    /// The index a tag pointed at, when the manifest was picked from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<Digest>,
    pub config_digest: Digest,
    /// Layer blob digests, bottom to top.
    pub layer_blobs: Vec<Digest>,
    /// ChainIDs, bottom to top: the unpacked layers.
    pub chain_ids: Vec<Digest>,
}

impl ImageRecord {
    /// The image ID (Docker's: the config digest).
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    fn blobs(&self) -> impl Iterator<Item = &Digest> {
        [&self.manifest_digest, &self.config_digest]
            .into_iter()
            .chain(self.index_digest.as_ref())
            .chain(&self.layer_blobs)
    }
}

impl From<&Image> for ImageRecord {
    fn from(image: &Image) -> ImageRecord {
        ImageRecord {
            manifest_digest: image.manifest_digest.clone(),
            index_digest: Some(image.index_digest.clone()).filter(|d| *d != image.manifest_digest),
            config_digest: image.config_digest.clone(),
            layer_blobs: image
                .manifest
                .layers
                .iter()
                .map(|l| l.digest.clone())
                .collect(),
            chain_ids: image.layers.clone(),
        }
    }
}

impl From<&LoadedImage> for ImageRecord {
    fn from(image: &LoadedImage) -> ImageRecord {
        ImageRecord {
            manifest_digest: image.manifest_digest.clone(),
            index_digest: None,
            config_digest: image.config_digest.clone(),
            layer_blobs: image
                .manifest
                .layers
                .iter()
                .map(|l| l.digest.clone())
                .collect(),
            chain_ids: image.layers.clone(),
        }
    }
}

/// What containers use, as the caller (the daemon) knows it.
#[derive(Debug, Clone, Default)]
pub struct InUse {
    /// Images (IDs or manifest digests) of running containers: cannot be removed.
    pub running_images: BTreeSet<Digest>,
    /// Images of created or stopped containers: removed only with `force`.
    pub stopped_images: BTreeSet<Digest>,
    /// ChainIDs containers' snapshots stand on (kept by gc even if their image is gone).
    pub chains: BTreeSet<Digest>,
    /// Containers' snapshot ids: kept by gc, with the layers they list. Every other
    /// snapshot is removed.
    pub snapshots: BTreeSet<String>,
}

impl InUse {
    fn matches(set: &BTreeSet<Digest>, r: &ImageRecord) -> bool {
        set.contains(&r.config_digest) || set.contains(&r.manifest_digest)
    }
}

/// An image with its tags, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub record: ImageRecord,
    pub tags: Vec<String>,
}

/// What [`ImageStore::remove`] did, in `docker rmi`'s terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub untagged: Vec<String>,
    /// Manifest digests of the image records deleted (their content goes at the next gc).
    pub deleted: Vec<Digest>,
}

/// What garbage collection removes (the plan) or removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    pub blobs: Vec<Digest>,
    pub layers: Vec<Digest>,
    pub snapshots: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    #[serde(default)]
    tags: BTreeMap<String, Digest>,
    #[serde(default)]
    images: BTreeMap<Digest, ImageRecord>,
}

/// How a name given by a user resolved.
enum Lookup {
    /// A tag (its key in `tags`) and the manifest it points at.
    Tag(String, Digest),
    /// An image ID (config digest), maybe shared by several manifests.
    Id(Digest),
}

/// The image index. Not `Sync`-shared: the daemon holds it behind its own lock.
#[derive(Debug)]
pub struct ImageStore {
    path: PathBuf,
    state: State,
}

impl ImageStore {
    /// Opens the index under `data_root` (empty if there is none yet).
    pub fn open(data_root: &Path) -> Result<ImageStore> {
        fs::create_dir_all(data_root).map_err(io_err("create", data_root))?;
        let path = data_root.join(FILE_NAME);
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let state: State =
                    serde_json::from_slice(&bytes).map_err(|e| ImageStoreError::Corrupt {
                        path: path.clone(),
                        what: e.to_string(),
                    })?;
                if state.version != FORMAT_VERSION {
                    return Err(ImageStoreError::Corrupt {
                        path,
                        what: format!("format version {} is not {FORMAT_VERSION}", state.version),
                    });
                }
                state
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => State {
                version: FORMAT_VERSION,
                ..State::default()
            },
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok(ImageStore { path, state })
    }

    /// Writes the whole index atomically: readers see the old file or the new one. When
    /// the write fails (a full disk) the change is undone in memory too, by reading the
    /// file back, so that what is listed is what is on disk, and the temporary file goes.
    fn persist(&mut self) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let written = self.write_index(&tmp);
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
            if let Some(Ok(on_disk)) = self.path.parent().map(ImageStore::open) {
                self.state = on_disk.state;
            }
        }
        written
    }

    fn write_index(&self, tmp: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| ImageStoreError::Io {
            op: "encode",
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        let mut f = File::create(tmp).map_err(io_err("create", tmp))?;
        f.write_all(&bytes).map_err(io_err("write", tmp))?;
        f.sync_all().map_err(io_err("fsync", tmp))?;
        fs::rename(tmp, &self.path).map_err(io_err("rename", &self.path))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("fsync", dir))?;
        }
        Ok(())
    }

    /// Records an image (a pull, load or import finished), replacing an older record of
    /// the same manifest.
    pub fn add(&mut self, record: ImageRecord) -> Result<()> {
        self.state
            .images
            .insert(record.manifest_digest.clone(), record);
        self.persist()
    }

    /// Points tag `reference` at image `manifest`. The image it pointed at before keeps
    /// its record (dangling if this was its last tag), as `docker tag` does.
    pub fn tag(&mut self, reference: &Reference, manifest: &Digest) -> Result<()> {
        if reference.digest().is_some() {
            return Err(ImageStoreError::NotATag(reference.to_string()));
        }
        if !self.state.images.contains_key(manifest) {
            return Err(ImageStoreError::UnknownImage(manifest.clone()));
        }
        self.state
            .tags
            .insert(reference.to_string(), manifest.clone());
        self.persist()
    }

    /// Removes a tag; the image stays. Returns the manifest it pointed at.
    pub fn untag(&mut self, reference: &Reference) -> Result<Digest> {
        let key = reference.to_string();
        let digest = self
            .state
            .tags
            .remove(&key)
            .ok_or(ImageStoreError::NotFound(key))?;
        self.persist()?;
        Ok(digest)
    }

    /// The image `name` names: a tag (`busybox`, `host:5000/a/b:v1`), a digest
    /// reference (`busybox@sha256:...`, matched on manifest or index), or an image ID
    /// or a unique prefix of one (`sha256:4a4…`, `4a4…`), tried in that order as Docker
    /// does.
    pub fn resolve(&self, name: &str) -> Result<&ImageRecord> {
        match self.lookup(name)? {
            Lookup::Tag(_, manifest) => self.record(&manifest),
            Lookup::Id(id) => self
                .state
                .images
                .values()
                .find(|r| r.config_digest == id)
                .ok_or_else(|| ImageStoreError::NotFound(name.to_owned())),
        }
    }

    fn record(&self, manifest: &Digest) -> Result<&ImageRecord> {
        self.state
            .images
            .get(manifest)
            .ok_or_else(|| ImageStoreError::UnknownImage(manifest.clone()))
    }

    fn lookup(&self, name: &str) -> Result<Lookup> {
        if let Ok(reference) = Reference::parse(name) {
            if let Some(digest) = reference.digest() {
                let found = self.state.images.values().find(|r| {
                    &r.manifest_digest == digest || r.index_digest.as_ref() == Some(digest)
                });
                return match found {
                    Some(r) => Ok(Lookup::Id(r.config_digest.clone())),
                    None => Err(ImageStoreError::NotFound(name.to_owned())),
                };
            }
            let key = reference.to_string();
            if let Some(manifest) = self.state.tags.get(&key) {
                return Ok(Lookup::Tag(key, manifest.clone()));
            }
        }
        // An image ID or a prefix of one; a full manifest digest is accepted too.
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.is_empty()
            || hex.len() > 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ImageStoreError::NotFound(name.to_owned()));
        }
        if let Some(r) = self
            .state
            .images
            .values()
            .find(|r| r.manifest_digest.hex() == hex)
        {
            return Ok(Lookup::Id(r.config_digest.clone()));
        }
        let ids: BTreeSet<&Digest> = self
            .state
            .images
            .values()
            .map(|r| &r.config_digest)
            .filter(|id| id.hex().starts_with(hex))
            .collect();
        let count = ids.len();
        let mut ids = ids.into_iter();
        match (ids.next(), ids.next()) {
            (Some(id), None) => Ok(Lookup::Id(id.clone())),
            (None, _) => Err(ImageStoreError::NotFound(name.to_owned())),
            (Some(_), Some(_)) => Err(ImageStoreError::Ambiguous {
                name: name.to_owned(),
                count,
            }),
        }
    }

    /// Every image with its tags, ordered by manifest digest.
    pub fn list(&self) -> Vec<ImageSummary> {
        self.state
            .images
            .values()
            .map(|r| ImageSummary {
                record: r.clone(),
                tags: self.tags_of(&r.config_digest),
            })
            .collect()
    }

    /// Tags pointing at any manifest with image ID `id`.
    fn tags_of(&self, id: &Digest) -> Vec<String> {
        self.state
            .tags
            .iter()
            .filter(|(_, m)| {
                self.state
                    .images
                    .get(*m)
                    .is_some_and(|r| &r.config_digest == id)
            })
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// `docker rmi name` (see the module doc for the rules). Deleting a record frees
    /// nothing on disk; [`ImageStore::gc`] does.
    pub fn remove(&mut self, name: &str, in_use: &InUse, force: bool) -> Result<Removed> {
        let mut removed = Removed::default();
        match self.lookup(name)? {
            Lookup::Tag(key, manifest) => {
                let record = self.record(&manifest)?.clone();
                let id = record.config_digest.clone();
                let others = self.tags_of(&id).into_iter().filter(|t| *t != key).count();
                let running = self.used_by(&in_use.running_images, &id);
                let used = running || self.used_by(&in_use.stopped_images, &id);
                if others == 0 && used && !force {
                    return Err(ImageStoreError::Conflict {
                        action: "remove repository reference",
                        name: name.to_owned(),
                        force: "must force",
                        why: format!("a container is using its referenced image {id}"),
                    });
                }
                self.state.tags.remove(&key);
                removed.untagged.push(key);
                // Then the image itself, quietly: a running container keeps it (dangling).
                if others == 0 && !running {
                    removed.deleted = self.delete_id(&id);
                }
            }
            Lookup::Id(id) => {
                if self.used_by(&in_use.running_images, &id) {
                    return Err(ImageStoreError::Conflict {
                        action: "delete",
                        name: short(&id),
                        force: "cannot be forced",
                        why: "image is being used by a running container".into(),
                    });
                }
                let tags = self.tags_of(&id);
                let repositories: BTreeSet<&str> = tags
                    .iter()
                    .map(|t| t.rsplit_once(':').map_or(t.as_str(), |(repo, _)| repo))
                    .collect();
                if !force && repositories.len() > 1 {
                    return Err(ImageStoreError::Conflict {
                        action: "delete",
                        name: short(&id),
                        force: "must be forced",
                        why: "image is referenced in multiple repositories".into(),
                    });
                }
                if !force && self.used_by(&in_use.stopped_images, &id) {
                    return Err(ImageStoreError::Conflict {
                        action: "delete",
                        name: short(&id),
                        force: "must be forced",
                        why: "image is being used by a stopped container".into(),
                    });
                }
                for t in &tags {
                    self.state.tags.remove(t);
                }
                removed.untagged = tags;
                removed.deleted = self.delete_id(&id);
            }
        }
        self.persist()?;
        Ok(removed)
    }

    fn used_by(&self, set: &BTreeSet<Digest>, id: &Digest) -> bool {
        set.contains(id)
            || self
                .state
                .images
                .values()
                .any(|r| &r.config_digest == id && InUse::matches(set, r))
    }

    fn delete_id(&mut self, id: &Digest) -> Vec<Digest> {
        let gone: Vec<Digest> = self
            .state
            .images
            .values()
            .filter(|r| &r.config_digest == id)
            .map(|r| r.manifest_digest.clone())
            .collect();
        for m in &gone {
            self.state.images.remove(m);
        }
        gone
    }

    /// Removes every blob, layer and snapshot that no recorded image and nothing in
    /// `in_use` references. Snapshots go first (unmounting), then layers, then blobs,
    /// so an interruption never leaves a snapshot over a missing layer.
    pub fn gc(
        &self,
        content: &ContentStore,
        snapshotter: &Snapshotter,
        in_use: &InUse,
    ) -> Result<GcPlan> {
        // The layers of snapshots in use are roots; one that cannot be read stops the
        // collection rather than risk sweeping its layers.
        let mut kept_snapshots = BTreeMap::new();
        let on_disk = snapshotter.list()?;
        for id in &in_use.snapshots {
            if on_disk.contains(id) {
                kept_snapshots.insert(id.clone(), snapshotter.get(id)?.layers);
            }
        }
        let plan = plan_gc(
            self.state.images.values(),
            in_use,
            &kept_snapshots,
            &on_disk,
            &content.list()?,
            &snapshotter.layer_store().list()?,
        );
        for id in &plan.snapshots {
            snapshotter.remove(id)?;
        }
        for chain in &plan.layers {
            snapshotter.layer_store().remove(chain)?;
        }
        for blob in &plan.blobs {
            content.remove(blob)?;
        }
        tracing::info!(
            blobs = plan.blobs.len(),
            layers = plan.layers.len(),
            snapshots = plan.snapshots.len(),
            "image gc"
        );
        Ok(plan)
    }
}

fn short(id: &Digest) -> String {
    id.hex()[..12].to_owned()
}

/// Mark and sweep, without side effects: what is on disk (`snapshots`, `blobs`,
/// `layers`) minus what the roots reach. `kept_snapshots` are the in-use snapshots with
/// the ChainIDs they stand on.
pub fn plan_gc<'a>(
    images: impl IntoIterator<Item = &'a ImageRecord>,
    in_use: &InUse,
    kept_snapshots: &BTreeMap<String, Vec<Digest>>,
    snapshots: &[String],
    blobs: &[Digest],
    layers: &[Digest],
) -> GcPlan {
    let mut marked_blobs: BTreeSet<&Digest> = BTreeSet::new();
    let mut marked_chains: BTreeSet<&Digest> = in_use.chains.iter().collect();
    for image in images {
        marked_blobs.extend(image.blobs());
        marked_chains.extend(&image.chain_ids);
    }
    for chains in kept_snapshots.values() {
        marked_chains.extend(chains);
    }
    GcPlan {
        blobs: blobs
            .iter()
            .filter(|d| !marked_blobs.contains(d))
            .cloned()
            .collect(),
        layers: layers
            .iter()
            .filter(|c| !marked_chains.contains(c))
            .cloned()
            .collect(),
        snapshots: snapshots
            .iter()
            .filter(|s| !in_use.snapshots.contains(*s))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests;
