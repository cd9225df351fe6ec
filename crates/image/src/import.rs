//! `docker import`: a plain rootfs tar (plain, gzip or zstd) becomes a one-layer image
//! whose config is built from `--change` options ([`crate::config_change`]).
//!
//! The tar is passed through as the layer, as Docker does: it is streamed once into a
//! gzip blob spooled under `scratch` while its DiffID (the uncompressed digest) is
//! computed, unpacked from that blob (which checks it is a tar and contains itself),
//! and only then stored. A failure removes the layer this import unpacked and leaves no
//! blob, so a bad tar leaves nothing behind.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::archive::LoadedImage;
use crate::config_change::{apply_changes, ChangeError};
use crate::content_store::{ContentError, ContentStore};
use crate::digest::{Digest, Hasher};
use crate::layer_unpack::{decompress, UnpackError};
use crate::manifest::{
    media_type, ContainerConfig, Descriptor, ImageConfig, Manifest, Platform, RootFs,
};
use crate::reference::Reference;
use crate::snapshot::{LayerStore, SnapshotError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("import: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("import: reading the input: {0}")]
    Read(#[source] io::Error),
    #[error("import: {0}")]
    Decompress(#[source] UnpackError),
    #[error("import: the input is not a usable rootfs tar: {0}")]
    Layer(#[source] SnapshotError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("import: encoding {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, ImportError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImportError + 'a {
    move |source| ImportError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What `docker import` takes besides the tar.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Dockerfile instructions (`CMD ["sh"]`, `ENV A=b`, ...), applied in order.
    pub changes: Vec<String>,
    /// The platform the config claims (`--platform`); the host's by default.
    pub platform: Platform,
    /// RFC 3339 creation time; now if `None`. Fixed, it makes imports reproducible.
    pub created: Option<String>,
    /// The name to give the image, returned in [`LoadedImage::tags`] for the caller to
    /// record.
    pub tag: Option<Reference>,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            changes: Vec::new(),
            platform: Platform::host(),
            created: None,
            tag: None,
        }
    }
}

/// A file under the scratch dir, removed on drop.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "removing an import scratch file");
            }
        }
    }
}

/// Hashes what is written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Imports `rootfs` (see the module doc) into `content` and `layers`, spooling under
/// `scratch` (put it on the data root's filesystem).
pub fn import<R: Read>(
    content: &ContentStore,
    layers: &LayerStore,
    rootfs: R,
    scratch: &Path,
    options: &ImportOptions,
) -> Result<LoadedImage> {
    // The changes first: a typo should fail before a big tar is read.
    let mut container_config = ContainerConfig::default();
    apply_changes(&mut container_config, &options.changes)?;

    fs::create_dir_all(scratch).map_err(io_err("create", scratch))?;
    static IMPORTS: AtomicU64 = AtomicU64::new(0);
    let spool = ScratchFile(scratch.join(format!(
        "import-{}-{}.tar.gz",
        std::process::id(),
        IMPORTS.fetch_add(1, Ordering::Relaxed)
    )));
    let (_, mut tar) = decompress(rootfs).map_err(ImportError::Decompress)?;
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&spool.0)
        .map_err(io_err("create", &spool.0))?;
    let mut gz = flate2::write::GzEncoder::new(
        HashingWriter {
            inner: io::BufWriter::with_capacity(1 << 16, file),
            hasher: Hasher::new(),
        },
        flate2::Compression::fast(),
    );
    let mut diff = Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match tar.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImportError::Read(e)),
        };
        diff.update(&buf[..n]);
        gz.write_all(&buf[..n]).map_err(io_err("write", &spool.0))?;
    }
    let HashingWriter { inner, hasher } = gz.finish().map_err(io_err("write", &spool.0))?;
    let mut file = inner
        .into_inner()
        .map_err(|e| io_err("write", &spool.0)(e.into_error()))?;
    let blob_size = hasher.len();
    let blob_digest = hasher.finish();
    let diff_id = diff.finish();

    // A one-layer image: the ChainID is the DiffID.
    let chain = diff_id.clone();
    file.seek(SeekFrom::Start(0))
        .map_err(io_err("seek", &spool.0))?;
    let unpacked = layers
        .unpack(&chain, &diff_id, BufReader::new(&file))
        .map_err(ImportError::Layer)?;
    let stored = (|| -> Result<LoadedImage> {
        file.seek(SeekFrom::Start(0))
            .map_err(io_err("seek", &spool.0))?;
        content.put_reader(&blob_digest, Some(blob_size), &file)?;
        let config = ImageConfig {
            architecture: options.platform.architecture.clone(),
            os: options.platform.os.clone(),
            variant: options.platform.variant.clone(),
            created: Some(options.created.clone().unwrap_or_else(now_rfc3339)),
            config: Some(container_config),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
        };
        let config_bytes = serde_json::to_vec(&config).map_err(|source| ImportError::Encode {
            what: "the image config",
            source,
        })?;
        let config_digest = Digest::of(&config_bytes);
        content.put(&config_digest, &config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_owned()),
            config: descriptor(media_type::OCI_CONFIG, &config_digest, config_bytes.len()),
            layers: vec![descriptor(
                media_type::OCI_LAYER_GZIP,
                &blob_digest,
                blob_size as usize,
            )],
            annotations: BTreeMap::new(),
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|source| ImportError::Encode {
                what: "the manifest",
                source,
            })?;
        let manifest_digest = Digest::of(&manifest_bytes);
        content.put(&manifest_digest, &manifest_bytes)?;
        Ok(LoadedImage {
            tags: options.tag.iter().cloned().collect(),
            manifest_digest,
            manifest,
            config_digest,
            config,
            layers: vec![chain.clone()],
        })
    })();
    if stored.is_err() && unpacked {
        if let Err(e) = layers.remove(&chain) {
            tracing::warn!(%chain, error = %e, "removing the layer of a failed import");
        }
    }
    stored
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: digest.clone(),
        size: size as u64,
        urls: Vec::new(),
        annotations: BTreeMap::new(),
        platform: None,
    }
}

/// The current UTC time as RFC 3339 (`2024-05-01T12:00:00Z`), as image configs want it.
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
