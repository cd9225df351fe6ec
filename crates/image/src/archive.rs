//! `docker save` / `docker load` archives.
//!
//! [`save`] writes what Docker 25+ writes: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/*`) that is also a classic docker-save archive
//! (`manifest.json` with Config/RepoTags/Layers pointing into `blobs/`, and the legacy
//! `repositories`). Blobs go out as stored, so manifest digests survive a round trip.
//!
//! [`load`] reads an OCI layout tar (skopeo `oci-archive:`, Docker 25+) or a classic
//! docker-save tar (`<id>/layer.tar`, `<config>.json`, skopeo `docker-archive:`),
//! following `manifest.json`'s paths rather than assuming a layout (moby `load.go`).
//!
//! Loading is all or nothing: the tar is spooled to a scratch dir (tar order is
//! arbitrary and `manifest.json` may come last), every blob is checked against its
//! digest and size and every layer against its DiffID while it is unpacked, and only
//! then do blobs enter the content store. A failure removes the layers this load
//! unpacked, so a bad archive leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::content_store::{ContentError, ContentStore};
use crate::digest::{chain_ids, Digest, Hasher};
use crate::layer_unpack::{decompress, Compression};
use crate::manifest::{self, media_type, AnyManifest, Descriptor, ImageConfig, Manifest, Platform};
use crate::reference::{Reference, ReferenceError};
use crate::snapshot::{LayerStore, SnapshotError};

/// containerd's (and Docker 25+'s) annotation for the full image name in index.json.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// image-spec's tag annotation, valid only in index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Symlink hops followed inside an archive before giving up (loops).
const MAX_LINK_HOPS: usize = 16;
/// JSON files in an archive (manifest.json, index.json, configs) bigger than this are refused.
const MAX_JSON_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("reading the archive: {0}")]
    Tar(#[source] io::Error),
    #[error("invalid archive: {0}")]
    Invalid(String),
    #[error("invalid archive: {0} is missing")]
    MissingFile(String),
    #[error("invalid archive: {path} has digest {actual}, expected {expected}")]
    DigestMismatch {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("invalid archive: {path} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid archive: tag {tag:?}: {source}")]
    BadTag { tag: String, source: ReferenceError },
    #[error("invalid archive: {path}: {what}")]
    BadJson { path: String, what: String },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

type Result<T> = std::result::Result<T, ArchiveError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// One image to save: a manifest in the content store and the names to give it.
#[derive(Debug, Clone)]
pub struct SaveImage {
    pub manifest_digest: Digest,
    pub tags: Vec<Reference>,
}

/// An image as loaded: stored, unpacked, and what it was tagged in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// Tags from the archive (`RepoTags`, or index.json annotations). May be empty.
    pub tags: Vec<Reference>,
    /// For a classic archive (which has no manifest), a manifest berth wrote for it.
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// ChainIDs, bottom to top.
    pub layers: Vec<Digest>,
}

/// docker-save `manifest.json` entry (moby `tarexport.manifestItem`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn blob_entry(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Writes `images` as a docker-save archive (see the module doc) to `out`. Entries have
/// epoch-0 times and root ownership, as Docker writes them, so the same images give the
/// same bytes.
pub fn save<W: Write>(content: &ContentStore, images: &[SaveImage], out: W) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let mut index_entries = Vec::new();
    let mut items = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in images {
        let manifest_bytes = content.read(&image.manifest_digest)?;
        let manifest = match manifest::parse(None, &manifest_bytes) {
            Ok(AnyManifest::Manifest(m)) => *m,
            Ok(AnyManifest::Index(_)) => {
                return Err(ArchiveError::Invalid(format!(
                    "{} is an index; save a platform manifest",
                    image.manifest_digest
                )))
            }
            Err(e) => {
                return Err(ArchiveError::BadJson {
                    path: image.manifest_digest.to_string(),
                    what: e.to_string(),
                })
            }
        };
        for d in std::iter::once(&image.manifest_digest)
            .chain(std::iter::once(&manifest.config.digest))
            .chain(manifest.layers.iter().map(|l| &l.digest))
        {
            if written.insert(d.clone()) {
                let size = content.size(d)?;
                let blob = content.open_blob(d)?;
                append(&mut tar, &blob_entry(d), size, blob)?;
            }
        }
        let descriptor = |annotations: BTreeMap<String, String>| Descriptor {
            media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| media_type::OCI_MANIFEST.to_owned()),
            digest: image.manifest_digest.clone(),
            size: manifest_bytes.len() as u64,
            urls: Vec::new(),
            annotations,
            platform: None,
        };
        let mut repo_tags = Vec::new();
        for tag in &image.tags {
            let mut annotations = BTreeMap::new();
            annotations.insert(ANNOTATION_IMAGE_NAME.to_owned(), tag.to_string());
            if let Some(t) = tag.tag() {
                annotations.insert(ANNOTATION_REF_NAME.to_owned(), t.to_owned());
                if let Some(top) = manifest.layers.last() {
                    let familiar = tag.familiar();
                    let repo = familiar
                        .rsplit_once(':')
                        .map_or(familiar.as_str(), |(r, _)| r);
                    repositories
                        .entry(repo.to_owned())
                        .or_default()
                        .insert(t.to_owned(), top.digest.hex().to_owned());
                }
            }
            index_entries.push(descriptor(annotations));
            repo_tags.push(tag.familiar());
        }
        if image.tags.is_empty() {
            index_entries.push(descriptor(BTreeMap::new()));
        }
        items.push(ManifestItem {
            config: blob_entry(&manifest.config.digest),
            repo_tags: Some(repo_tags),
            layers: manifest
                .layers
                .iter()
                .map(|l| blob_entry(&l.digest))
                .collect(),
        });
    }
    let index = manifest::Index {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_owned()),
        manifests: index_entries,
        annotations: BTreeMap::new(),
    };
    for (name, bytes) in [
        ("index.json", to_json(&index)?),
        ("manifest.json", to_json(&items)?),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("repositories", to_json(&repositories)?),
    ] {
        append(&mut tar, name, bytes.len() as u64, &bytes[..])?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ArchiveError::Tar)
}

/// Serializing our own types cannot fail short of a bug; keep the error typed anyway.
fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| ArchiveError::Invalid(e.to_string()))
}

fn append<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: R,
) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    tar.append_data(&mut header, name, data)
        .map_err(ArchiveError::Tar)
}

/// A regular file spooled out of the archive.
#[derive(Debug, Clone)]
struct Spooled {
    file: PathBuf,
    digest: Digest,
    size: u64,
}

/// The archive's files by cleaned path, spooled to a scratch dir that is removed on drop.
struct Spool {
    dir: PathBuf,
    files: HashMap<String, Spooled>,
    links: HashMap<String, String>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(path = %self.dir.display(), error = %e, "removing a load scratch dir");
        }
    }
}

/// A tar path as a `/`-joined relative path with `.` and `..` folded (never above the
/// root). Names are only map keys: nothing is ever created at an archive's path.
fn clean(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

impl Spool {
    fn read<R: Read>(archive: R, scratch: &Path) -> Result<Spool> {
        fs::create_dir_all(scratch).map_err(io_err("create", scratch))?;
        // Unique per load in this process; create_dir fails rather than share one.
        static LOADS: AtomicU64 = AtomicU64::new(0);
        let dir = scratch.join(format!(
            "load-{}-{}",
            std::process::id(),
            LOADS.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        let mut spool = Spool {
            dir,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut tar = tar::Archive::new(archive);
        for (n, entry) in tar.entries().map_err(ArchiveError::Tar)?.enumerate() {
            let mut entry = entry.map_err(ArchiveError::Tar)?;
            let path = entry.path().map_err(ArchiveError::Tar)?.into_owned();
            let name = clean(&path);
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let file = spool.dir.join(n.to_string());
                    let mut out = File::create(&file).map_err(io_err("create", &file))?;
                    let mut hasher = Hasher::new();
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let got = entry.read(&mut buf).map_err(ArchiveError::Tar)?;
                        if got == 0 {
                            break;
                        }
                        hasher.update(&buf[..got]);
                        out.write_all(&buf[..got]).map_err(io_err("write", &file))?;
                    }
                    let size = hasher.len();
                    spool.files.insert(
                        name,
                        Spooled {
                            file,
                            digest: hasher.finish(),
                            size,
                        },
                    );
                }
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let Some(target) = entry.link_name().map_err(ArchiveError::Tar)? else {
                        continue;
                    };
                    // Symlinks are relative to their directory; hardlinks (and absolute
                    // symlinks) to the archive root.
                    let resolved = if kind == tar::EntryType::Symlink && !target.is_absolute() {
                        clean(&path.parent().unwrap_or(Path::new("")).join(&target))
                    } else {
                        clean(&target)
                    };
                    spool.links.insert(name, resolved);
                }
                _ => {}
            }
        }
        Ok(spool)
    }

    fn get(&self, path: &str) -> Result<&Spooled> {
        let mut name = clean(Path::new(path));
        for _ in 0..MAX_LINK_HOPS {
            if let Some(f) = self.files.get(&name) {
                return Ok(f);
            }
            match self.links.get(&name) {
                Some(next) => name = next.clone(),
                None => break,
            }
        }
        Err(ArchiveError::MissingFile(path.to_owned()))
    }

    fn has(&self, path: &str) -> bool {
        self.get(path).is_ok()
    }

    fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<(T, Vec<u8>)> {
        let f = self.get(path)?;
        if f.size > MAX_JSON_BYTES {
            return Err(ArchiveError::Invalid(format!("{path} is too big for JSON")));
        }
        let bytes = fs::read(&f.file).map_err(io_err("read", &f.file))?;
        let value = serde_json::from_slice(&bytes).map_err(|e| ArchiveError::BadJson {
            path: path.to_owned(),
            what: e.to_string(),
        })?;
        Ok((value, bytes))
    }

    /// The blob `blobs/sha256/<hex>` of an OCI layout, checked against `desc`.
    fn blob(&self, digest: &Digest, size: Option<u64>) -> Result<&Spooled> {
        let path = blob_entry(digest);
        let f = self.get(&path)?;
        check(&path, f, digest, size)?;
        Ok(f)
    }
}

fn check(path: &str, f: &Spooled, digest: &Digest, size: Option<u64>) -> Result<()> {
    if &f.digest != digest {
        return Err(ArchiveError::DigestMismatch {
            path: path.to_owned(),
            expected: digest.clone(),
            actual: f.digest.clone(),
        });
    }
    if let Some(size) = size.filter(|s| *s != f.size) {
        return Err(ArchiveError::SizeMismatch {
            path: path.to_owned(),
            expected: size,
            actual: f.size,
        });
    }
    Ok(())
}

/// The digest a docker-save path claims by its name (`blobs/sha256/<hex>`,
/// `<hex>.json`, `<hex>.tar`, `<hex>`), if any: such a name must not lie.
fn claimed_digest(path: &str) -> Option<Digest> {
    let name = path.rsplit('/').next()?;
    let stem = name
        .strip_suffix(".json")
        .or_else(|| name.strip_suffix(".tar"))
        .unwrap_or(name);
    Digest::from_hex(stem).ok()
}

/// An image planned for loading: every blob located and checked, nothing stored yet.
struct Planned {
    tags: Vec<Reference>,
    /// Blobs to store besides the manifest: (digest, spooled file).
    blobs: Vec<(Digest, Spooled)>,
    manifest_digest: Digest,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    config_digest: Digest,
    config: ImageConfig,
    /// (ChainID, DiffID, layer file) bottom to top.
    layers: Vec<(Digest, Digest, Spooled)>,
}

fn parse_tag(tag: &str) -> Result<Reference> {
    Reference::parse(tag).map_err(|source| ArchiveError::BadTag {
        tag: tag.to_owned(),
        source,
    })
}

/// Loads a docker-save or OCI-layout tar from `archive` into `content` and `layers`,
/// spooling it under `scratch` (put it on the data root's filesystem). Returns the
/// images with their tags; on error nothing is stored (see the module doc).
pub fn load<R: Read>(
    content: &ContentStore,
    layers: &LayerStore,
    archive: R,
    scratch: &Path,
) -> Result<Vec<LoadedImage>> {
    let spool = Spool::read(archive, scratch)?;
    let planned = if spool.has("index.json") && spool.has("oci-layout") {
        plan_oci(&spool)?
    } else if spool.has("manifest.json") {
        plan_docker(&spool)?
    } else {
        // moby load.go's words.
        return Err(ArchiveError::Invalid(
            "does not contain manifest.json or an OCI index.json".into(),
        ));
    };
    commit(content, layers, &planned)?;
    Ok(planned
        .into_iter()
        .map(|p| LoadedImage {
            tags: p.tags,
            manifest_digest: p.manifest_digest,
            manifest: p.manifest,
            config_digest: p.config_digest,
            config: p.config,
            layers: p.layers.into_iter().map(|(chain, _, _)| chain).collect(),
        })
        .collect())
}

/// Reads and checks the config of `manifest` and pairs its layers with DiffIDs.
fn plan_image(
    tags: Vec<Reference>,
    manifest_digest: Digest,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    layer_files: Vec<Spooled>,
    config_file: Spooled,
    mut blobs: Vec<(Digest, Spooled)>,
) -> Result<Planned> {
    if config_file.size > MAX_JSON_BYTES {
        return Err(ArchiveError::Invalid("image config is too big".into()));
    }
    let config_bytes = fs::read(&config_file.file).map_err(io_err("read", &config_file.file))?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| ArchiveError::BadJson {
            path: format!("config {}", manifest.config.digest),
            what: e.to_string(),
        })?;
    if config.rootfs.diff_ids.len() != layer_files.len() {
        return Err(ArchiveError::Invalid(format!(
            "image {manifest_digest} has {} layers but its config lists {} diff_ids",
            layer_files.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let chains = chain_ids(&config.rootfs.diff_ids);
    blobs.push((manifest.config.digest.clone(), config_file));
    let mut layers = Vec::new();
    for ((file, diff_id), chain) in layer_files
        .into_iter()
        .zip(&config.rootfs.diff_ids)
        .zip(chains)
    {
        blobs.push((file.digest.clone(), file.clone()));
        layers.push((chain, diff_id.clone(), file));
    }
    Ok(Planned {
        tags,
        blobs,
        manifest_digest,
        manifest_bytes,
        config_digest: manifest.config.digest.clone(),
        manifest,
        config,
        layers,
    })
}

/// An OCI image layout: index.json's manifests (an index in it picks the host's
/// platform), every blob checked against its descriptor.
fn plan_oci(spool: &Spool) -> Result<Vec<Planned>> {
    let (index, _) = spool.json::<manifest::Index>("index.json")?;
    // Docker 25+ archives also say the tags in manifest.json, keyed by config.
    let mut repo_tags: HashMap<String, Vec<String>> = HashMap::new();
    if spool.has("manifest.json") {
        let (items, _) = spool.json::<Vec<ManifestItem>>("manifest.json")?;
        for item in items {
            repo_tags
                .entry(clean(Path::new(&item.config)))
                .or_default()
                .extend(item.repo_tags.unwrap_or_default());
        }
    }
    let mut out: Vec<Planned> = Vec::new();
    for desc in &index.manifests {
        let mut tags: Vec<Reference> = Vec::new();
        if let Some(name) = desc.annotations.get(ANNOTATION_IMAGE_NAME) {
            tags.push(parse_tag(name)?);
        } else if let Some(name) = desc.annotations.get(ANNOTATION_REF_NAME) {
            // A bare tag ("latest") names no repository; a full name ("repo:tag") does.
            if name.contains([':', '/']) {
                tags.push(parse_tag(name)?);
            }
        }
        let mut blobs = Vec::new();
        let mut digest = desc.digest.clone();
        let mut size = desc.size;
        let manifest = loop {
            let f = spool.blob(&digest, Some(size))?;
            let bytes = fs::read(&f.file).map_err(io_err("read", &f.file))?;
            blobs.push((digest.clone(), f.clone()));
            match manifest::parse(None, &bytes) {
                Ok(AnyManifest::Manifest(m)) => break (*m, bytes),
                Ok(AnyManifest::Index(idx)) => {
                    let platform = Platform::host();
                    let entry = idx.select(&platform).ok_or_else(|| {
                        ArchiveError::Invalid(format!(
                            "index {digest} has no image for {platform} (it has: {})",
                            idx.platforms().join(", ")
                        ))
                    })?;
                    if blobs.len() > 4 {
                        return Err(ArchiveError::Invalid("indexes nested too deep".into()));
                    }
                    digest = entry.digest.clone();
                    size = entry.size;
                }
                Err(e) => {
                    return Err(ArchiveError::BadJson {
                        path: blob_entry(&digest),
                        what: e.to_string(),
                    })
                }
            }
        };
        let (manifest, manifest_bytes) = manifest;
        // The manifest is stored from its bytes; what is left are indexes above it.
        blobs.pop();
        let config_file = spool
            .blob(&manifest.config.digest, Some(manifest.config.size))?
            .clone();
        for name in repo_tags
            .get(&blob_entry(&manifest.config.digest))
            .into_iter()
            .flatten()
        {
            let r = parse_tag(name)?;
            if !tags.contains(&r) {
                tags.push(r);
            }
        }
        let mut layer_files = Vec::new();
        for layer in &manifest.layers {
            if !media_type::is_layer(&layer.media_type) {
                return Err(ArchiveError::Invalid(format!(
                    "{:?} is not a container image layer",
                    layer.media_type
                )));
            }
            layer_files.push(spool.blob(&layer.digest, Some(layer.size))?.clone());
        }
        // The same manifest under two tags: one image with both tags.
        if let Some(existing) = out.iter_mut().find(|p| p.manifest_digest == digest) {
            for t in tags {
                if !existing.tags.contains(&t) {
                    existing.tags.push(t);
                }
            }
            continue;
        }
        out.push(plan_image(
            tags,
            digest.clone(),
            manifest_bytes,
            manifest,
            layer_files,
            config_file,
            blobs,
        )?);
    }
    Ok(out)
}

/// A classic docker-save archive: manifest.json's paths, checked by the digests their
/// names claim and by the config's DiffIDs; berth writes an OCI manifest for each.
fn plan_docker(spool: &Spool) -> Result<Vec<Planned>> {
    let (items, _) = spool.json::<Vec<ManifestItem>>("manifest.json")?;
    let mut out = Vec::new();
    for item in items {
        let config_file = spool.get(&item.config)?.clone();
        let config_digest = config_file.digest.clone();
        if let Some(claimed) = claimed_digest(&item.config) {
            check(&item.config, &config_file, &claimed, None)?;
        }
        let mut layers = Vec::new();
        let mut layer_files = Vec::new();
        for path in &item.layers {
            let f = spool.get(path)?.clone();
            if let Some(claimed) = claimed_digest(path) {
                check(path, &f, &claimed, None)?;
            }
            let head = File::open(&f.file).map_err(io_err("open", &f.file))?;
            let (compression, _) = decompress(head)
                .map_err(|e| ArchiveError::Invalid(format!("layer {path}: {e}")))?;
            let media = match compression {
                Compression::None => media_type::OCI_LAYER,
                Compression::Gzip => media_type::OCI_LAYER_GZIP,
                Compression::Zstd => media_type::OCI_LAYER_ZSTD,
            };
            layers.push(Descriptor {
                media_type: media.to_owned(),
                digest: f.digest.clone(),
                size: f.size,
                urls: Vec::new(),
                annotations: BTreeMap::new(),
                platform: None,
            });
            layer_files.push(f);
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_owned()),
            config: Descriptor {
                media_type: media_type::OCI_CONFIG.to_owned(),
                digest: config_digest,
                size: config_file.size,
                urls: Vec::new(),
                annotations: BTreeMap::new(),
                platform: None,
            },
            layers,
            annotations: BTreeMap::new(),
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        let manifest_digest = Digest::of(&manifest_bytes);
        let tags = item
            .repo_tags
            .iter()
            .flatten()
            .map(|t| parse_tag(t))
            .collect::<Result<Vec<_>>>()?;
        out.push(plan_image(
            tags,
            manifest_digest,
            manifest_bytes,
            manifest,
            layer_files,
            config_file,
            Vec::new(),
        )?);
    }
    Ok(out)
}

/// Unpacks the layers (each checked against its DiffID), then stores the blobs. On any
/// error, what this call added is removed again.
fn commit(content: &ContentStore, layers: &LayerStore, planned: &[Planned]) -> Result<()> {
    let mut new_layers: Vec<Digest> = Vec::new();
    let mut new_blobs: Vec<Digest> = Vec::new();
    let result = (|| -> Result<()> {
        for image in planned {
            for (chain, diff_id, file) in &image.layers {
                if layers.contains(chain) {
                    continue;
                }
                let reader =
                    BufReader::new(File::open(&file.file).map_err(io_err("open", &file.file))?);
                if layers.unpack(chain, diff_id, reader)? {
                    new_layers.push(chain.clone());
                }
            }
        }
        for image in planned {
            for (digest, file) in &image.blobs {
                if content.contains(digest) {
                    continue;
                }
                store_file(content, digest, file)?;
                new_blobs.push(digest.clone());
            }
            if content.put(&image.manifest_digest, &image.manifest_bytes)? {
                new_blobs.push(image.manifest_digest.clone());
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for chain in &new_layers {
            if let Err(e) = layers.remove(chain) {
                tracing::warn!(%chain, error = %e, "removing a layer of a failed load");
            }
        }
        for digest in &new_blobs {
            if let Err(e) = content.remove(digest) {
                tracing::warn!(%digest, error = %e, "removing a blob of a failed load");
            }
        }
    }
    result
}

/// Streams a spooled file into the content store (which checks digest and size again).
fn store_file(content: &ContentStore, digest: &Digest, file: &Spooled) -> Result<()> {
    let mut ingest = content.ingest(digest, Some(file.size))?;
    ingest.reset()?;
    let mut src = File::open(&file.file).map_err(io_err("open", &file.file))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf).map_err(io_err("read", &file.file))?;
        if n == 0 {
            break;
        }
        ingest.write(&buf[..n])?;
    }
    ingest.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_digests_and_clean_paths() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for p in [
            format!("blobs/sha256/{hex}"),
            format!("{hex}.json"),
            format!("{hex}.tar"),
            format!("./{hex}.tar"),
        ] {
            assert_eq!(claimed_digest(&p).unwrap().hex(), hex, "{p}");
        }
        assert!(claimed_digest("abc/layer.tar").is_none());
        assert!(claimed_digest("config.json").is_none());
        assert_eq!(clean(Path::new("./a/../b//c")), "b/c");
        assert_eq!(clean(Path::new("/../../etc/passwd")), "etc/passwd");
    }
}
