//! Pushing an image from the content store to a registry (distribution-spec "Push").
//!
//! For each blob (config, then layers): `HEAD` first, since a registry that has it in the
//! target repository needs nothing; else a cross-repository mount from a repository on
//! the same registry known to hold it (`POST ?mount=&from=`), which sends no bytes;
//! else an upload: one `PUT` for small blobs, `PATCH` chunks with `Content-Range` and a
//! closing `PUT ?digest=` for big ones, so a multi-gigabyte layer is never held in
//! memory. The manifest goes last, byte for byte as stored, so its digest is kept: a
//! registry refuses a manifest whose blobs it does not have.
//!
//! Blobs are pushed as stored (compressed), so the pushed manifest is the stored one.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};

use crate::content_store::ContentStore;
use crate::digest::Digest;
use crate::manifest::{media_type, Descriptor};
use crate::reference::Reference;
use crate::registry::{
    digest_header, status_error, Image, RegistryClient, RegistryError, TransferStats,
};

type Result<T> = std::result::Result<T, RegistryError>;

/// How blobs are uploaded.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Blobs up to this size go in a single `PUT`; bigger ones in chunks.
    pub monolithic_max: u64,
    /// Bytes per `PATCH` of a chunked upload (held in memory once at a time).
    pub chunk_size: usize,
    /// Blobs uploaded at once (Docker's default: 5).
    pub max_concurrent_uploads: usize,
}

impl Default for PushConfig {
    fn default() -> PushConfig {
        PushConfig {
            monolithic_max: 16 << 20,
            chunk_size: 16 << 20,
            max_concurrent_uploads: 3,
        }
    }
}

/// What a push did with each blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest's digest, as the registry confirmed it.
    pub manifest_digest: Digest,
    /// Blobs the target repository already had (`HEAD` answered 200).
    pub existing: Vec<Digest>,
    /// Blobs mounted from another repository of the same registry.
    pub mounted: Vec<Digest>,
    /// Blobs whose bytes were sent.
    pub uploaded: Vec<Digest>,
}

/// How one blob got to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobOutcome {
    Existed,
    Mounted,
    Uploaded,
}

/// Where each blob is known to be, by (registry host, repository): the candidates for a
/// cross-repository mount (Docker keeps the same in its distribution metadata).
type KnownLocations = Arc<Mutex<HashMap<Digest, BTreeSet<(String, String)>>>>;

/// Pushes images from a content store. Cheap to clone; clones share the record of where
/// blobs were pushed, so a later push to another repository mounts instead of uploading.
#[derive(Debug, Clone)]
pub struct Pusher {
    client: RegistryClient,
    content: ContentStore,
    config: Arc<PushConfig>,
    known: KnownLocations,
}

impl Pusher {
    pub fn new(client: RegistryClient, content: ContentStore, config: PushConfig) -> Pusher {
        Pusher {
            client,
            content,
            config: Arc::new(config),
            known: Arc::default(),
        }
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Records that `repository` on `host` holds `digest` (e.g. the image was pulled from
    /// there), making it a mount source for pushes to other repositories on that host.
    pub fn record_location(&self, digest: &Digest, host: &str, repository: &str) {
        self.lock_known()
            .entry(digest.clone())
            .or_default()
            .insert((host.to_owned(), repository.to_owned()));
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, BTreeSet<(String, String)>>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mount sources for `digest` on `host`, other than `repository` itself.
    fn mount_sources(&self, digest: &Digest, host: &str, repository: &str) -> Vec<String> {
        self.lock_known()
            .get(digest)
            .map(|set| {
                set.iter()
                    .filter(|(h, r)| h == host && r != repository)
                    .map(|(_, r)| r.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pushes `image` (config, layers, manifest, all from the content store) as
    /// `reference` (a tag, or a digest that must be the manifest's). The image's own
    /// repository, if it is on the same registry, is tried as a mount source.
    pub async fn push(&self, reference: &Reference, image: &Image) -> Result<PushReport> {
        let refname = reference.to_string();
        if let Some(d) = reference.digest() {
            if d != &image.manifest_digest {
                return Err(RegistryError::BadImage {
                    reference: refname,
                    what: format!(
                        "pushing by digest {d}, but the image's manifest is {}",
                        image.manifest_digest
                    ),
                });
            }
        }
        let host = reference.registry_host().to_owned();
        let repository = reference.path().to_owned();
        let manifest_bytes = self.content.read(&image.manifest_digest)?;
        if Digest::of(&manifest_bytes) != image.manifest_digest {
            return Err(RegistryError::BadImage {
                reference: refname,
                what: format!(
                    "stored manifest {} does not hash to its name",
                    image.manifest_digest
                ),
            });
        }

        // Foreign (non-distributable) layers are referenced by URL and "must never be
        // pushed" (manifest-v2-2.md); the registry accepts the manifest without them.
        let blobs: Vec<Descriptor> = std::iter::once(image.manifest.config.clone())
            .chain(
                image
                    .manifest
                    .layers
                    .iter()
                    .filter(|l| !is_foreign(&l.media_type))
                    .cloned(),
            )
            .collect();
        if image.reference.registry_host() == host {
            for blob in &blobs {
                self.record_location(&blob.digest, &host, image.reference.path());
            }
        }

        let mut report = PushReport {
            manifest_digest: image.manifest_digest.clone(),
            existing: Vec::new(),
            mounted: Vec::new(),
            uploaded: Vec::new(),
        };
        let uploads = Arc::new(tokio::sync::Semaphore::new(
            self.config.max_concurrent_uploads.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let mut seen = BTreeSet::new();
        for blob in blobs {
            if !seen.insert(blob.digest.clone()) {
                continue; // a layer listed twice is pushed once
            }
            let this = self.clone();
            let host = host.clone();
            let repository = repository.clone();
            let uploads = uploads.clone();
            tasks.spawn(async move {
                let _permit = uploads
                    .acquire()
                    .await
                    .map_err(|e| RegistryError::Task(e.to_string()))?;
                let outcome = this
                    .push_blob(&host, &repository, &blob.digest, blob.size)
                    .await?;
                Ok::<_, RegistryError>((blob.digest, outcome))
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined
                .map_err(|e| RegistryError::Task(e.to_string()))
                .and_then(|r| r)
            {
                Ok((digest, outcome)) => match outcome {
                    BlobOutcome::Existed => report.existing.push(digest),
                    BlobOutcome::Mounted => report.mounted.push(digest),
                    BlobOutcome::Uploaded => report.uploaded.push(digest),
                },
                Err(e) => {
                    if first_error.is_none() {
                        tasks.abort_all();
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        for list in [
            &mut report.existing,
            &mut report.mounted,
            &mut report.uploaded,
        ] {
            list.sort();
        }

        let media = image
            .manifest
            .media_type
            .clone()
            .unwrap_or_else(|| media_type::OCI_MANIFEST.to_owned());
        let confirmed = self
            .put_manifest(reference, &manifest_bytes, &media)
            .await?;
        if let Some(confirmed) = confirmed {
            if confirmed != image.manifest_digest {
                return Err(RegistryError::DigestMismatch {
                    what: "pushed manifest",
                    url: refname,
                    expected: image.manifest_digest.clone(),
                    actual: confirmed,
                });
            }
        }
        Ok(report)
    }

    /// `PUT /v2/<name>/manifests/<tag|digest>` with the manifest's media type as
    /// Content-Type (the registry parses by it). Returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Option<Digest>> {
        let host = reference.registry_host();
        let url = self.client.registry_url(
            host,
            &format!(
                "{}/manifests/{}",
                reference.path(),
                reference.manifest_ref()
            ),
        )?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::BadImage {
                reference: reference.to_string(),
                what: format!("media type {media_type:?} is not a valid header value"),
            })?,
        );
        TransferStats::bump(&self.client.stats().manifest_puts, 1);
        let fetched = self
            .client
            .request(
                host,
                &push_scopes(reference.path()),
                Method::PUT,
                url,
                headers,
                Some(bytes::Bytes::copy_from_slice(bytes)),
            )
            .await?;
        if fetched.response.status() != StatusCode::CREATED {
            return Err(status_error(Method::PUT, fetched).await);
        }
        digest_header(&fetched.response, fetched.url.as_str())
    }

    /// Makes blob `digest` present in `repository`: HEAD, else mount, else upload.
    async fn push_blob(
        &self,
        host: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobOutcome> {
        let stats = self.client.stats();
        if self.blob_exists(host, repository, digest).await? {
            TransferStats::bump(&stats.blob_exists, 1);
            self.record_location(digest, host, repository);
            return Ok(BlobOutcome::Existed);
        }
        let mut session = None;
        for from in self.mount_sources(digest, host, repository) {
            match self.try_mount(host, repository, digest, &from).await? {
                MountResult::Mounted => {
                    TransferStats::bump(&stats.blob_mounts, 1);
                    self.record_location(digest, host, repository);
                    return Ok(BlobOutcome::Mounted);
                }
                // The registry could not mount (it answers 202 with an upload session
                // instead, e.g. when we may not read `from`): upload into that session.
                MountResult::Upload(location) => {
                    session = Some(location);
                    break;
                }
                MountResult::Refused => {}
            }
        }
        let location = match session {
            Some(l) => l,
            None => self.start_upload(host, repository).await?,
        };
        if size <= self.config.monolithic_max {
            self.upload_monolithic(host, repository, location, digest, size)
                .await?;
        } else {
            self.upload_chunked(host, repository, location, digest, size)
                .await?;
        }
        TransferStats::bump(&stats.blob_uploads, 1);
        self.record_location(digest, host, repository);
        Ok(BlobOutcome::Uploaded)
    }

    async fn blob_exists(&self, host: &str, repository: &str, digest: &Digest) -> Result<bool> {
        let url = self
            .client
            .registry_url(host, &format!("{repository}/blobs/{digest}"))?;
        let fetched = self
            .client
            .request(
                host,
                &push_scopes(repository),
                Method::HEAD,
                url,
                HeaderMap::new(),
                None,
            )
            .await?;
        match fetched.response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(Method::HEAD, fetched).await),
        }
    }

    async fn try_mount(
        &self,
        host: &str,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<MountResult> {
        let mut url = self
            .client
            .registry_url(host, &format!("{repository}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        // The token must allow reading the source repository too (token.md).
        let mut scopes = push_scopes(repository);
        scopes.push(format!("repository:{from}:pull"));
        let fetched = self
            .client
            .request(
                host,
                &scopes,
                Method::POST,
                url,
                empty_body_headers(),
                Some(bytes::Bytes::new()),
            )
            .await?;
        match fetched.response.status() {
            StatusCode::CREATED => Ok(MountResult::Mounted),
            StatusCode::ACCEPTED => Ok(MountResult::Upload(upload_location(&fetched)?)),
            status => {
                // A registry that will not mount (no access to `from`, mounts disabled)
                // still takes an upload.
                tracing::debug!(%digest, from, %status, "cross-repository mount refused");
                Ok(MountResult::Refused)
            }
        }
    }

    /// `POST /v2/<name>/blobs/uploads/`: opens an upload session, returns its Location.
    async fn start_upload(&self, host: &str, repository: &str) -> Result<Url> {
        let url = self
            .client
            .registry_url(host, &format!("{repository}/blobs/uploads/"))?;
        let fetched = self
            .client
            .request(
                host,
                &push_scopes(repository),
                Method::POST,
                url,
                empty_body_headers(),
                Some(bytes::Bytes::new()),
            )
            .await?;
        if fetched.response.status() != StatusCode::ACCEPTED {
            return Err(status_error(Method::POST, fetched).await);
        }
        upload_location(&fetched)
    }

    async fn upload_monolithic(
        &self,
        host: &str,
        repository: &str,
        location: Url,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let body = self.read_range(digest, 0, size).await?;
        self.finish_upload(host, repository, location, digest, body)
            .await
    }

    async fn upload_chunked(
        &self,
        host: &str,
        repository: &str,
        mut location: Url,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let chunk = self.config.chunk_size.max(1) as u64;
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let body = self.read_range(digest, offset, len).await?;
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            // Content-Range is inclusive: `<start>-<end>` (spec.md "Pushing a blob in chunks").
            headers.insert(
                "content-range",
                HeaderValue::from_str(&format!("{offset}-{}", offset + len - 1))
                    .map_err(|e| RegistryError::Task(e.to_string()))?,
            );
            TransferStats::bump(&self.client.stats().upload_chunks, 1);
            let fetched = self
                .client
                .request(
                    host,
                    &push_scopes(repository),
                    Method::PATCH,
                    location.clone(),
                    headers,
                    Some(body),
                )
                .await?;
            if fetched.response.status() != StatusCode::ACCEPTED {
                return Err(status_error(Method::PATCH, fetched).await);
            }
            TransferStats::bump(&self.client.stats().bytes_sent, len);
            // Each answer names where the next chunk goes.
            location = upload_location(&fetched)?;
            offset += len;
        }
        self.finish_upload(host, repository, location, digest, bytes::Bytes::new())
            .await
    }

    /// `PUT <location>?digest=<digest>` with the last bytes (or all, or none); the
    /// registry checks the digest and answers 201.
    async fn finish_upload(
        &self,
        host: &str,
        repository: &str,
        mut location: Url,
        digest: &Digest,
        body: bytes::Bytes,
    ) -> Result<()> {
        location
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let len = body.len() as u64;
        let fetched = self
            .client
            .request(
                host,
                &push_scopes(repository),
                Method::PUT,
                location,
                headers,
                Some(body),
            )
            .await?;
        if fetched.response.status() != StatusCode::CREATED {
            return Err(status_error(Method::PUT, fetched).await);
        }
        TransferStats::bump(&self.client.stats().bytes_sent, len);
        if let Some(confirmed) = digest_header(&fetched.response, fetched.url.as_str())? {
            if &confirmed != digest {
                return Err(RegistryError::DigestMismatch {
                    what: "uploaded blob",
                    url: fetched.url.to_string(),
                    expected: digest.clone(),
                    actual: confirmed,
                });
            }
        }
        Ok(())
    }

    /// `len` bytes of a stored blob from `offset`, read off the async workers.
    async fn read_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<bytes::Bytes> {
        let file: File = self.content.open_blob(digest)?;
        let path = self.content.blob_path(digest);
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || -> Result<bytes::Bytes> {
            let len =
                usize::try_from(len).map_err(|_| RegistryError::Task("chunk too big".into()))?;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset).map_err(|source| {
                RegistryError::Content(crate::content_store::ContentError::Io {
                    op: "read",
                    path: path.clone(),
                    source,
                })
            })?;
            tracing::trace!(%digest, offset, len, "read blob range for upload");
            Ok(bytes::Bytes::from(buf))
        })
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))?
    }
}

enum MountResult {
    Mounted,
    Upload(Url),
    Refused,
}

fn push_scopes(repository: &str) -> Vec<String> {
    vec![format!("repository:{repository}:pull,push")]
}

fn is_foreign(media: &str) -> bool {
    media == media_type::DOCKER_FOREIGN_LAYER_GZIP || media.contains(".nondistributable.")
}

/// Some registries want a `Content-Length: 0` on a bodiless POST.
fn empty_body_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    headers
}

fn location_header(fetched: &crate::registry::Fetched) -> Result<&str> {
    fetched
        .response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Protocol {
            url: fetched.url.to_string(),
            what: format!("{} without a Location", fetched.response.status()),
        })
}

/// The upload session URL from a 202, resolved against the request URL (registries may
/// answer with a path).
fn upload_location(fetched: &crate::registry::Fetched) -> Result<Url> {
    let raw = location_header(fetched)?;
    fetched.url.join(raw).map_err(|e| RegistryError::Protocol {
        url: fetched.url.to_string(),
        what: format!("bad upload Location {raw:?}: {e}"),
    })
}
