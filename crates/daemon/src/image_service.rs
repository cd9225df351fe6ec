//! The daemon's image side: the content store, unpacked layers, container snapshots and
//! the image index, behind one object the routes and the container manager share.
//!
//! Every method blocks (file system, SQLite-free JSON index); call them from
//! `spawn_blocking`.
//!
//! Writers and the collector: a pull, load or import writes blobs and layers before the
//! image is recorded, so garbage collection must not run meanwhile (it would sweep them
//! as unreferenced). They hold [`ImageService::writers`] shared; [`ImageService::gc`]
//! needs it exclusive.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use berth_image::archive::{self, LoadedImage, SaveImage};
use berth_image::content_store::ContentStore;
use berth_image::image_store::{GcPlan, ImageRecord, ImageStore, ImageStoreError, InUse};
use berth_image::import::{self, ImportOptions};
use berth_image::manifest::{self, AnyManifest, ImageConfig};
use berth_image::registry::Image;
use berth_image::snapshot::{LayerStore, Snapshotter};
use berth_image::{Digest, Reference};
use hyper::StatusCode;

use crate::response::ApiError;

/// An image as a container needs it.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The image ID, `sha256:<hex>` (the config digest).
    pub id: Digest,
    /// ChainIDs, bottom to top: what the container's snapshot stands on.
    pub chain_ids: Vec<Digest>,
    pub config: ImageConfig,
}

/// An image with everything inspect and list print.
#[derive(Debug, Clone)]
pub struct ImageDetails {
    pub record: ImageRecord,
    /// Normalized tags (`docker.io/library/busybox:latest`) naming this image ID.
    pub tags: Vec<String>,
    pub config: ImageConfig,
    /// The config as stored, for the fields [`ImageConfig`] does not model (`author`,
    /// `comment`, `docker_version`).
    pub raw_config: serde_json::Value,
    /// Bytes of the unpacked layers (Docker's `Size`).
    pub size: u64,
}

/// What one loaded image did to the index, in the words `docker load` prints.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    pub id: Digest,
    /// Tags given to it (normalized).
    pub tags: Vec<String>,
    /// (tag, old image ID) for tags that pointed at another image before.
    pub renamed: Vec<(String, Digest)>,
}

pub struct ImageService {
    pub content: ContentStore,
    pub snapshotter: Snapshotter,
    /// The index of names; a std mutex because every user is on a blocking thread.
    pub store: Mutex<ImageStore>,
    /// Shared by pulls, loads and imports, exclusive for gc (see the module doc).
    pub writers: tokio::sync::RwLock<()>,
    data_root: PathBuf,
    /// Unpacked sizes by ChainID: layers never change once unpacked, and walking them
    /// for every `docker images` would be slow.
    layer_sizes: Mutex<HashMap<Digest, u64>>,
}

impl ImageService {
    pub fn open(data_root: &Path) -> anyhow::Result<Self> {
        let content = ContentStore::open(data_root)?;
        let layers = LayerStore::open(data_root)?;
        let snapshotter = Snapshotter::new(layers)?;
        let store = ImageStore::open(data_root)?;
        Ok(Self {
            content,
            snapshotter,
            store: Mutex::new(store),
            writers: tokio::sync::RwLock::new(()),
            data_root: data_root.to_owned(),
            layer_sizes: Mutex::default(),
        })
    }

    pub fn lock_store(&self) -> Result<MutexGuard<'_, ImageStore>, ApiError> {
        self.store
            .lock()
            .map_err(|_| ApiError::internal("image store lock poisoned"))
    }

    /// The image `name` (a reference, an ID or a unique ID prefix) with its config.
    /// Unknown names are 404 `No such image: NAME`, dockerd's wording.
    pub fn resolve(&self, name: &str) -> Result<ResolvedImage, ApiError> {
        let record = self.record(name)?;
        let config = self.read_config(name, &record)?.0;
        Ok(ResolvedImage {
            id: record.config_digest.clone(),
            chain_ids: record.chain_ids.clone(),
            config,
        })
    }

    /// The index record `name` resolves to.
    pub fn record(&self, name: &str) -> Result<ImageRecord, ApiError> {
        let store = self.lock_store()?;
        store
            .resolve(name)
            .cloned()
            .map_err(|err| image_error(name, err))
    }

    fn read_config(
        &self,
        name: &str,
        record: &ImageRecord,
    ) -> Result<(ImageConfig, serde_json::Value), ApiError> {
        let bytes = self
            .content
            .read(&record.config_digest)
            .map_err(|err| ApiError::internal(format!("image {name}: {err}")))?;
        let invalid = |err: serde_json::Error| {
            ApiError::internal(format!("image {name}: config is not valid JSON: {err}"))
        };
        let config: ImageConfig = serde_json::from_slice(&bytes).map_err(invalid)?;
        let raw: serde_json::Value = serde_json::from_slice(&bytes).map_err(invalid)?;
        Ok((config, raw))
    }

    /// Everything about one record, for inspect and list.
    pub fn details(
        &self,
        record: ImageRecord,
        tags: Vec<String>,
    ) -> Result<ImageDetails, ApiError> {
        let name = record.config_digest.to_string();
        let (config, raw_config) = self.read_config(&name, &record)?;
        let size = record.chain_ids.iter().map(|c| self.layer_size(c)).sum();
        Ok(ImageDetails {
            record,
            tags,
            config,
            raw_config,
            size,
        })
    }

    /// Every image, with details; one whose config cannot be read is logged and left
    /// out rather than failing the whole listing.
    pub fn list(&self) -> Result<Vec<ImageDetails>, ApiError> {
        let summaries = self.lock_store()?.list();
        // One entry per image ID: several manifests (pulled from different registries)
        // may share a config, and Docker lists the image once.
        let mut by_id: BTreeMap<Digest, ImageDetails> = BTreeMap::new();
        for s in summaries {
            if by_id.contains_key(&s.record.config_digest) {
                continue;
            }
            match self.details(s.record.clone(), s.tags) {
                Ok(d) => {
                    by_id.insert(s.record.config_digest.clone(), d);
                }
                Err(err) => {
                    tracing::warn!(image = %s.record.config_digest, %err, "skipping image in list")
                }
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// The summed size of the files of one unpacked layer (only its own diff: the
    /// ChainID names the stack, the dir holds this layer's changes).
    pub fn layer_size(&self, chain: &Digest) -> u64 {
        if let Some(size) = self
            .layer_sizes
            .lock()
            .ok()
            .and_then(|m| m.get(chain).copied())
        {
            return size;
        }
        let size = dir_size(&self.snapshotter.layer_store().diff_path(chain));
        if let Ok(mut m) = self.layer_sizes.lock() {
            m.insert(chain.clone(), size);
        }
        size
    }

    /// The layer dirs of an image, bottom to top, for inspect's `GraphDriver`.
    pub fn layer_dirs(&self, record: &ImageRecord) -> Vec<PathBuf> {
        let layers = self.snapshotter.layer_store();
        record
            .chain_ids
            .iter()
            .map(|c| layers.diff_path(c))
            .collect()
    }

    /// Where loads and imports spool: on the data root's file system, so blobs are
    /// renamed into the store rather than copied.
    fn scratch(&self) -> Result<PathBuf, ApiError> {
        let dir = self.data_root.join("tmp");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("create {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Records a pulled, loaded or imported image and points `tags` at it. Returns the
    /// tags that pointed at another image before, with that image's ID.
    pub fn record_image(
        &self,
        record: ImageRecord,
        tags: &[Reference],
    ) -> Result<Vec<(String, Digest)>, ApiError> {
        let mut store = self.lock_store()?;
        let manifest = record.manifest_digest.clone();
        let id = record.config_digest.clone();
        store
            .add(record)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut renamed = Vec::new();
        for tag in tags {
            let key = tag.to_string();
            if let Ok(old) = store.resolve(&key) {
                if old.config_digest != id {
                    renamed.push((key.clone(), old.config_digest.clone()));
                }
            }
            store
                .tag(tag, &manifest)
                .map_err(|e| image_error(&key, e))?;
        }
        Ok(renamed)
    }

    /// `docker load`: every image of the archive stored, unpacked and tagged.
    pub fn load(&self, archive: impl Read) -> Result<Vec<LoadOutcome>, ApiError> {
        let scratch = self.scratch()?;
        let loaded = archive::load(
            &self.content,
            self.snapshotter.layer_store(),
            archive,
            &scratch,
        )
        .map_err(|e| match e {
            archive::ArchiveError::Content(_)
            | archive::ArchiveError::Snapshot(_)
            | archive::ArchiveError::Io { .. } => ApiError::internal(e.to_string()),
            _ => ApiError::bad_request(e.to_string()),
        })?;
        let mut out = Vec::new();
        for image in loaded {
            out.push(self.record_loaded(&image)?);
        }
        Ok(out)
    }

    fn record_loaded(&self, image: &LoadedImage) -> Result<LoadOutcome, ApiError> {
        let renamed = self.record_image(ImageRecord::from(image), &image.tags)?;
        Ok(LoadOutcome {
            id: image.config_digest.clone(),
            tags: image.tags.iter().map(Reference::to_string).collect(),
            renamed,
        })
    }

    /// `docker import`: a rootfs tar becomes a one-layer image, tagged `options.tag`.
    pub fn import(
        &self,
        rootfs: impl Read,
        options: &ImportOptions,
    ) -> Result<LoadOutcome, ApiError> {
        let scratch = self.scratch()?;
        let image = import::import(
            &self.content,
            self.snapshotter.layer_store(),
            rootfs,
            &scratch,
            options,
        )
        .map_err(|e| match e {
            import::ImportError::Content(_) | import::ImportError::Io { .. } => {
                ApiError::internal(e.to_string())
            }
            _ => ApiError::bad_request(e.to_string()),
        })?;
        self.record_loaded(&image)
    }

    /// `docker save`: writes the named images as one archive.
    pub fn save(&self, images: &[SaveImage], out: impl std::io::Write) -> Result<(), ApiError> {
        archive::save(&self.content, images, out).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// The pieces a push needs, read back from the content store.
    pub fn push_image(
        &self,
        record: &ImageRecord,
        reference: &Reference,
    ) -> Result<Image, ApiError> {
        let name = reference.to_string();
        let bytes = self
            .content
            .read(&record.manifest_digest)
            .map_err(|e| ApiError::internal(format!("image {name}: {e}")))?;
        let manifest = match manifest::parse(None, &bytes) {
            Ok(AnyManifest::Manifest(m)) => *m,
            Ok(AnyManifest::Index(_)) => {
                return Err(ApiError::internal(format!(
                    "image {name}: {} is an index, not a manifest",
                    record.manifest_digest
                )))
            }
            Err(e) => return Err(ApiError::internal(format!("image {name}: {e}"))),
        };
        let (config, _) = self.read_config(&name, record)?;
        Ok(Image {
            reference: reference.with_digest(record.manifest_digest.clone()),
            manifest_digest: record.manifest_digest.clone(),
            index_digest: record.manifest_digest.clone(),
            manifest,
            config_digest: record.config_digest.clone(),
            config,
            layers: record.chain_ids.clone(),
        })
    }

    /// Sweeps what no image and nothing in `in_use` references. The caller holds
    /// [`ImageService::writers`] exclusively.
    pub fn gc(&self, in_use: &InUse) -> Result<GcPlan, ApiError> {
        let store = self.lock_store()?;
        let plan = store
            .gc(&self.content, &self.snapshotter, in_use)
            .map_err(|e| ApiError::internal(format!("image gc: {e}")))?;
        // Partial downloads of a pull that was interrupted (berthd killed, the registry
        // gone) are kept for the next pull of the image to resume; once images are being
        // collected nothing writes (the caller holds the writers), so they are garbage.
        match self.content.clean_ingests(std::time::Duration::ZERO) {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed partial downloads"),
            Err(e) => tracing::warn!(%e, "cannot remove partial downloads"),
        }
        if let Ok(mut sizes) = self.layer_sizes.lock() {
            for layer in &plan.layers {
                sizes.remove(layer);
            }
        }
        Ok(plan)
    }
}

/// Apparent size of the regular files and symlinks under `dir` (not following links),
/// what `du --apparent-size` would say; 0 for what cannot be read.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// The image store's errors with dockerd's statuses.
pub fn image_error(name: &str, err: ImageStoreError) -> ApiError {
    match err {
        ImageStoreError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, format!("No such image: {name}"))
        }
        ImageStoreError::Ambiguous { .. } | ImageStoreError::Conflict { .. } => {
            ApiError::new(StatusCode::CONFLICT, err.to_string())
        }
        ImageStoreError::NotATag(_) => ApiError::bad_request(err.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}
