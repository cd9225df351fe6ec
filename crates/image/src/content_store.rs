//! Blobs by digest under `<data root>/content/sha256/<hex>`.
//!
//! A blob becomes visible only by `rename(2)` from `ingest/`, after the bytes were fsynced
//! and their digest (and size, when known) checked, so a crash or a lying server can
//! leave at most an ingest file, never a wrong or half-written blob (containerd's
//! content store: ingest, verify, commit).
//!
//! The ingest file for a digest has a fixed name (`ingest/sha256-<hex>`) rather than a
//! random one so an interrupted download resumes where it stopped (the registry client
//! asks for a `Range`). Writers hold an exclusive `flock` on it, so two pulls of the same
//! blob, in one process or two, never write the same file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{flock, FlockOperation};

use crate::digest::{Digest, Hasher};

/// What went wrong in the content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("content store: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("content {expected}: got bytes with digest {actual}; discarded them")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content {digest}: expected {expected} bytes, got {actual}; discarded them")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("content {0} is not in the store")]
    NotFound(Digest),
    #[error("content {0} is being written by another pull")]
    Busy(Digest),
}

type Result<T> = std::result::Result<T, ContentError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ContentError + 'a {
    move |source| ContentError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The content store rooted at a data root.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the store under `data_root`.
    pub fn open(data_root: &Path) -> Result<ContentStore> {
        let blobs = data_root.join("content").join("sha256");
        let ingest = data_root.join("ingest");
        for dir in [&blobs, &ingest] {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// Where the blob lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    fn ingest_path(&self, digest: &Digest) -> PathBuf {
        self.ingest.join(format!("sha256-{}", digest.hex()))
    }

    /// Whether the blob is committed. Callers check this before fetching: a blob that is
    /// already here costs nothing.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The committed blob's size.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err("stat", &path)(e)),
        }
    }

    /// Opens a committed blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound(digest.clone())
            } else {
                io_err("open", &path)(e)
            }
        })
    }

    /// Reads a whole committed blob (manifests and configs: small).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut buf)
            .map_err(io_err("read", &self.blob_path(digest)))?;
        Ok(buf)
    }

    /// Stores `bytes` as `expected`. Returns false (and writes nothing) if the blob is
    /// already there.
    pub fn put(&self, expected: &Digest, bytes: &[u8]) -> Result<bool> {
        if self.contains(expected) {
            return Ok(false);
        }
        // A concurrent writer of the same bytes (two pulls of one image) is waited for.
        let Some(mut ingest) = self.ingest_wait(expected, Some(bytes.len() as u64))? else {
            return Ok(false);
        };
        ingest.reset()?;
        ingest.write(bytes)?;
        ingest.commit()?;
        Ok(true)
    }

    /// Stores what `reader` yields as `expected` (checked, like every ingest). Returns
    /// false, reading nothing, if the blob is already there.
    pub fn put_reader<R: Read>(
        &self,
        expected: &Digest,
        expected_size: Option<u64>,
        mut reader: R,
    ) -> Result<bool> {
        if self.contains(expected) {
            return Ok(false);
        }
        let mut ingest = self.ingest(expected, expected_size)?;
        ingest.reset()?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read", &ingest.path)(e)),
            };
            ingest.write(&buf[..n])?;
        }
        ingest.commit()?;
        Ok(true)
    }

    /// Starts or resumes writing `expected`. [`Ingest::offset`] says how many bytes an
    /// earlier, interrupted writer left; they have been re-hashed and are kept.
    pub fn ingest(&self, expected: &Digest, expected_size: Option<u64>) -> Result<Ingest> {
        self.open_ingest(expected, expected_size, false)?
            .ok_or_else(|| ContentError::Busy(expected.clone()))
    }

    /// [`ContentStore::ingest`] that waits (blocking the thread) while another writer
    /// holds the ingest, as a second pull of the same image waits for the first one's
    /// layers in Docker. `None`: that writer committed the blob meanwhile.
    pub fn ingest_wait(
        &self,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Option<Ingest>> {
        self.open_ingest(expected, expected_size, true)
    }

    fn open_ingest(
        &self,
        expected: &Digest,
        expected_size: Option<u64>,
        wait: bool,
    ) -> Result<Option<Ingest>> {
        let path = self.ingest_path(expected);
        let lock = if wait {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        // Open, lock, then check that the path still names the file we locked: a writer
        // that committed in between renamed that inode into content/, and writing to it
        // would corrupt a committed blob.
        for _ in 0..8 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_err("open", &path))?;
            match flock(&file, lock) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_err("lock", &path)(e.into())),
            }
            let held = file.metadata().map_err(io_err("stat", &path))?;
            match fs::symlink_metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat", &path)(e)),
            }
            if wait && self.contains(expected) {
                // Committed while we waited; the file we locked is one we just created
                // (or another waiter did): empty, worth nothing.
                if held.len() == 0 {
                    let _ = fs::remove_file(&path);
                }
                return Ok(None);
            }
            let mut hasher = Hasher::new();
            let mut len = held.len();
            if expected_size.is_some_and(|size| len > size) {
                file.set_len(0).map_err(io_err("truncate", &path))?;
                len = 0;
            }
            if len > 0 {
                // Re-hash what an earlier writer left so the final digest covers it.
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = file.read(&mut buf).map_err(io_err("read", &path))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
            }
            file.seek(SeekFrom::End(0)).map_err(io_err("seek", &path))?;
            return Ok(Some(Ingest {
                file,
                path,
                hasher,
                expected: expected.clone(),
                expected_size,
                blob_dir: self.blobs.clone(),
            }));
        }
        Err(ContentError::Busy(expected.clone()))
    }

    /// Removes ingest files that no writer holds and that were last written more than
    /// `older_than` ago: left by a crash, and no longer worth resuming.
    pub fn clean_ingests(&self, older_than: Duration) -> Result<usize> {
        let mut removed = 0;
        let entries = fs::read_dir(&self.ingest).map_err(io_err("list", &self.ingest))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.ingest))?;
            let path = entry.path();
            let Ok(file) = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            else {
                continue;
            };
            if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
                continue; // a live writer
            }
            let old = file
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() >= older_than)
                .unwrap_or(true);
            if old {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes a committed blob (garbage collection decides when).
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Every committed blob.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).map_err(io_err("list", &self.blobs))? {
            let entry = entry.map_err(io_err("list", &self.blobs))?;
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
}

/// An open, locked ingest file for one digest. Dropping it without [`Ingest::commit`]
/// leaves the bytes for a later resume (or [`ContentStore::clean_ingests`]).
#[derive(Debug)]
pub struct Ingest {
    file: File,
    path: PathBuf,
    hasher: Hasher,
    expected: Digest,
    expected_size: Option<u64>,
    blob_dir: PathBuf,
}

impl Ingest {
    /// Bytes already written: where a resumed download starts (`Range: bytes=<offset>-`).
    pub fn offset(&self) -> u64 {
        self.hasher.len()
    }

    pub fn digest(&self) -> &Digest {
        &self.expected
    }

    /// Throws away what is written so far (the server ignored a Range request).
    pub fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(io_err("truncate", &self.path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(io_err("seek", &self.path))?;
        self.hasher = Hasher::new();
        Ok(())
    }

    /// Appends `bytes`. Fails early, discarding the ingest, if they pass the expected size.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(size) = self.expected_size {
            let total = self.hasher.len() + bytes.len() as u64;
            if total > size {
                let err = ContentError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: size,
                    actual: total,
                };
                self.discard();
                return Err(err);
            }
        }
        self.file
            .write_all(bytes)
            .map_err(io_err("write", &self.path))?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// fsyncs, verifies size and digest, and renames the file into the store. On a
    /// mismatch the ingest file is deleted: those bytes are wrong, resuming them is useless.
    pub fn commit(self) -> Result<()> {
        let actual_len = self.hasher.len();
        if let Some(size) = self.expected_size {
            if actual_len != size {
                self.discard();
                return Err(ContentError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: size,
                    actual: actual_len,
                });
            }
        }
        let actual = self.hasher.clone().finish();
        if actual != self.expected {
            self.discard();
            return Err(ContentError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        self.file.sync_all().map_err(io_err("fsync", &self.path))?;
        let target = self.blob_dir.join(self.expected.hex());
        fs::rename(&self.path, &target).map_err(io_err("rename", &target))?;
        // The rename is durable only once the directory is synced.
        File::open(&self.blob_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync", &self.blob_dir))?;
        Ok(())
    }

    /// Deletes the ingest file.
    pub fn abort(self) -> Result<()> {
        fs::remove_file(&self.path).map_err(io_err("remove", &self.path))
    }

    fn discard(&self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "removing a bad ingest file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn put_read_and_dedupe() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::open(tmp.path()).unwrap();
        let data = b"layer bytes";
        let d = Digest::of(data);
        assert!(!store.contains(&d));
        assert!(store.put(&d, data).unwrap());
        assert!(store.contains(&d));
        assert_eq!(store.read(&d).unwrap(), data);
        assert_eq!(store.size(&d).unwrap(), data.len() as u64);
        let before = fs::metadata(store.blob_path(&d))
            .unwrap()
            .modified()
            .unwrap();
        // The second write is a no-op: nothing rewritten.
        assert!(!store.put(&d, data).unwrap());
        assert_eq!(
            fs::metadata(store.blob_path(&d))
                .unwrap()
                .modified()
                .unwrap(),
            before
        );
        assert_eq!(store.list().unwrap(), vec![d]);
        assert!(entries(&tmp.path().join("ingest")).is_empty());
    }

    #[test]
    fn wrong_digest_is_rejected_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::open(tmp.path()).unwrap();
        let claimed = Digest::of(b"what the manifest said");
        let err = store.put(&claimed, b"what the server sent").unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        assert!(!store.contains(&claimed));
        assert!(entries(&tmp.path().join("content/sha256")).is_empty());
        assert!(entries(&tmp.path().join("ingest")).is_empty());
    }

    #[test]
    fn wrong_size_is_rejected_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::open(tmp.path()).unwrap();
        let data = b"0123456789";
        let d = Digest::of(data);
        // Too many bytes: refused at write time.
        let mut ingest = store.ingest(&d, Some(4)).unwrap();
        assert!(matches!(
            ingest.write(data),
            Err(ContentError::SizeMismatch { .. })
        ));
        drop(ingest);
        // Too few: refused at commit.
        let mut ingest = store.ingest(&d, Some(20)).unwrap();
        ingest.write(data).unwrap();
        assert!(matches!(
            ingest.commit(),
            Err(ContentError::SizeMismatch { .. })
        ));
        assert!(!store.contains(&d));
        assert!(entries(&tmp.path().join("ingest")).is_empty());
    }

    #[test]
    fn interrupted_write_is_invisible_then_resumed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::open(tmp.path()).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(&data);
        {
            let mut ingest = store.ingest(&d, Some(data.len() as u64)).unwrap();
            ingest.write(&data[..40_000]).unwrap();
            // "crash": dropped without commit.
        }
        assert!(!store.contains(&d));
        assert!(entries(&tmp.path().join("content/sha256")).is_empty());
        assert_eq!(entries(&tmp.path().join("ingest")).len(), 1);

        let mut ingest = store.ingest(&d, Some(data.len() as u64)).unwrap();
        assert_eq!(ingest.offset(), 40_000);
        ingest.write(&data[40_000..]).unwrap();
        ingest.commit().unwrap();
        assert_eq!(store.read(&d).unwrap(), data);
        assert!(entries(&tmp.path().join("ingest")).is_empty());
    }

    #[test]
    fn a_held_ingest_is_busy_and_not_cleaned() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::open(tmp.path()).unwrap();
        let d = Digest::of(b"x");
        let mut held = store.ingest(&d, None).unwrap();
        held.write(b"partial").unwrap();
        assert!(matches!(store.ingest(&d, None), Err(ContentError::Busy(_))));
        assert_eq!(store.clean_ingests(Duration::ZERO).unwrap(), 0);
        drop(held);
        assert_eq!(store.clean_ingests(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(store.clean_ingests(Duration::ZERO).unwrap(), 1);
        assert!(entries(&tmp.path().join("ingest")).is_empty());
    }

    #[test]
    fn missing_blob_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::open(tmp.path()).unwrap();
        let d = Digest::of(b"nope");
        assert!(matches!(store.read(&d), Err(ContentError::NotFound(_))));
        assert!(matches!(store.size(&d), Err(ContentError::NotFound(_))));
        store.remove(&d).unwrap();
    }
}
