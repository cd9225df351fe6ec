//! `/containers/{id}/archive`: the HTTP side of `docker cp`. `HEAD` stats a path, `GET`
//! streams it as a tar, `PUT` extracts a tar into a directory. The filesystem work, and
//! the containment that is the point of it, is in [`crate::container_fs`].
//!
//! The copy sees the container's overlay (its snapshot's `merged` dir), mounted for the
//! copy when the container is not running, with its bind mounts and volumes on top (in a
//! private mount namespace, [`crate::copy_namespace`]): a path under `-v` reads and writes
//! the host directory or the volume, as dockerd's. tmpfs mounts are not part of the view
//! (dockerd's neither): a copy there reaches the rootfs underneath.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use berth_api::container::{ContainerPathStat, PATH_STAT_HEADER};
use berth_image::snapshot::Snapshotter;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, OwnedMutexGuard};

use crate::api_server::DaemonState;
use crate::container_fs::{self, ContainerRoot, ExtractOptions, FsError, PathStat};
use crate::container_mounts;
use crate::container_record::ContainerRecord;
use crate::container_spec::BindMount;
use crate::copy_namespace;
use crate::query::Query;
use crate::response::{self, ApiError, Body};
use crate::router::Routed;

/// Bytes sent to the client per chunk of a streamed tar.
const CHUNK: usize = 64 * 1024;

pub async fn handle(
    state: &Arc<DaemonState>,
    routed: Routed,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    let name = routed.param;
    // dockerd: `path` is required for all three.
    let path = match query.get("path") {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ => return Err(ApiError::bad_request("path is required")),
    };
    match *req.method() {
        Method::HEAD => head(state, &name, path).await,
        Method::GET => get(state, &name, path).await,
        Method::PUT => put(state, &name, path, &query, req).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )),
    }
}

/// A container's root filesystem, open for one copy. Holds the container's lifecycle
/// lock throughout; unmounts on drop what it mounted.
struct MountedRoot {
    root: Option<ContainerRoot>,
    snapshotter: Snapshotter,
    id: String,
    /// The container is not running and nothing had it mounted: we mounted it.
    unmount: bool,
    /// The private namespace holding the binds and volumes, when the container has any.
    namespace: Option<OwnedFd>,
    _ops: OwnedMutexGuard<()>,
}

impl MountedRoot {
    fn root(&self) -> Result<&ContainerRoot, ApiError> {
        self.root
            .as_ref()
            .ok_or_else(|| ApiError::internal("container root already closed"))
    }
}

impl Drop for MountedRoot {
    /// Runs on a blocking thread (the value lives in `spawn_blocking` closures): unmount
    /// waits on the kernel.
    fn drop(&mut self) {
        // Close our fd on the mount first, or the unmount finds it busy; then the
        // namespace, which unmounts the binds with it.
        self.root = None;
        self.namespace = None;
        if self.unmount {
            if let Err(e) = self.snapshotter.unmount(&self.id) {
                tracing::warn!(id = %self.id, %e, "cannot unmount the rootfs after a copy");
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?
}

/// Locks the container and opens its rootfs, mounting it if the container is stopped.
async fn open_root(
    state: &Arc<DaemonState>,
    name: &str,
) -> Result<(ContainerRecord, MountedRoot), ApiError> {
    let (record, ops) = state.containers.lock_ops(name).await?;
    let snapshotter = state.images.snapshotter.clone();
    let id = record.id.clone();
    let running = record.state.status.is_running();
    let binds = container_mounts::binds(&container_mounts::of(&record));
    let mounted = blocking(move || {
        let snapshot = snapshotter.get(&id).map_err(|e| {
            ApiError::internal(format!("cannot find the container's filesystem: {e}"))
        })?;
        // A running container's mount is its own: never unmount it. A stopped one's is
        // ours only if nothing had it mounted before.
        let was_mounted = berth_image::snapshot::is_mounted(&snapshot.merged)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let merged = snapshotter
            .mount(&id)
            .map_err(|e| ApiError::internal(format!("cannot mount the container's rootfs: {e}")))?;
        let mut mounted = MountedRoot {
            root: None,
            snapshotter,
            id,
            unmount: !running && !was_mounted,
            namespace: None,
            _ops: ops,
        };
        if binds.is_empty() {
            mounted.root = Some(ContainerRoot::open(&merged).map_err(|e| {
                ApiError::internal(format!("cannot open the container's rootfs: {e}"))
            })?);
        } else {
            let view = copy_namespace::open(&merged, &binds)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            mounted.namespace = Some(view.namespace);
            mounted.root = Some(ContainerRoot::from_fd(view.root, &merged));
        }
        Ok(mounted)
    })
    .await?;
    Ok((record, mounted))
}

/// Docker's status and wording for each failure.
fn fs_error(err: FsError, name: &str, path: &str) -> ApiError {
    match err {
        FsError::NotFound(_) => ApiError::not_found(format!(
            "Could not find the file {path} in container {name}"
        )),
        FsError::NotADirectory(_)
        | FsError::Escape { .. }
        | FsError::BadEntry { .. }
        | FsError::DirWithNonDir { .. }
        | FsError::NonDirWithDir { .. }
        | FsError::Read(_) => ApiError::bad_request(err.to_string()),
        FsError::Io { .. } | FsError::Write(_) | FsError::TooDeep(_) => {
            ApiError::internal(err.to_string())
        }
    }
}

fn wire_stat(stat: &PathStat) -> ContainerPathStat {
    let mtime = DateTime::from_timestamp(stat.mtime_sec, stat.mtime_nsec)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true);
    ContainerPathStat {
        name: stat.name.clone(),
        size: stat.size,
        mode: container_fs::go_file_mode(stat.st_mode),
        mtime,
        link_target: stat.link_target.clone(),
    }
}

fn with_stat_header(mut resp: Response<Body>, stat: &PathStat) -> Response<Body> {
    let json = serde_json::to_vec(&wire_stat(stat)).unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    // Base64 is always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        resp.headers_mut().insert(PATH_STAT_HEADER, value);
    }
    resp
}

async fn head(
    state: &Arc<DaemonState>,
    name: &str,
    path: String,
) -> Result<Response<Body>, ApiError> {
    let (_, mounted) = open_root(state, name).await?;
    let name = name.to_owned();
    let stat = blocking(move || {
        let result = mounted.root()?.stat(&path);
        drop(mounted);
        result.map_err(|e| fs_error(e, &name, &path))
    })
    .await?;
    Ok(with_stat_header(response::empty(StatusCode::OK), &stat))
}

async fn get(
    state: &Arc<DaemonState>,
    name: &str,
    path: String,
) -> Result<Response<Body>, ApiError> {
    let (record, mounted) = open_root(state, name).await?;
    let name_owned = name.to_owned();
    let (stat, source, mounted) = blocking(move || {
        let prepared = mounted.root()?.archive(&path);
        match prepared {
            Ok((stat, source)) => Ok((stat, source, mounted)),
            Err(e) => {
                drop(mounted);
                Err(fs_error(e, &name_owned, &path))
            }
        }
    })
    .await?;
    publish(state, &record, "archive-path");
    let (tx, body) = response::channel();
    let id = record.id.clone();
    tokio::task::spawn_blocking(move || {
        let result = source.write_tar(ChannelWriter::new(tx));
        drop(mounted);
        if let Err(e) = result {
            // The status is sent already; the tar ends without its end marker.
            tracing::warn!(%id, %e, "copy from container failed midway");
        }
    });
    let resp = response::with_type(StatusCode::OK, body, "application/x-tar");
    Ok(with_stat_header(resp, &stat))
}

async fn put(
    state: &Arc<DaemonState>,
    name: &str,
    path: String,
    query: &Query,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (record, mounted) = open_root(state, name).await?;
    let binds = container_mounts::binds(&container_mounts::of(&record));
    let readonly_rootfs = record.host_config.readonly_rootfs;
    let opts = ExtractOptions {
        no_overwrite_dir_non_dir: query.bool("noOverwriteDirNonDir"),
        chown: if query.bool("copyUIDGID") {
            numeric_user(&record.config.user)
        } else {
            None
        },
    };
    let (reader, pump) = ChannelReader::spawn(req.into_body());
    let name_owned = name.to_owned();
    let extracted = blocking(move || {
        let root = mounted.root()?;
        let result = root
            .resolved_path(&path)
            .map_err(|e| fs_error(e, &name_owned, &path))
            .and_then(|at| writable(&at, &binds, readonly_rootfs));
        if let Err(e) = result {
            drop(mounted);
            return Err(e);
        }
        let result = mounted.root()?.extract(&path, reader, &opts);
        drop(mounted);
        result.map_err(|e| fs_error(e, &name_owned, &path))
    })
    .await;
    // The reader is gone: the pump drains the rest of the body (bounded) before we answer.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), pump).await;
    extracted?;
    publish(state, &record, "extract-to-dir");
    Ok(response::empty(StatusCode::OK))
}

/// dockerd's `checkIfPathIsInAVolume`: a copy into a read-only bind or volume, or outside
/// any mount of a container with a read-only rootfs, is refused with its wording. The
/// innermost mount holding `path` decides (dockerd takes whichever it meets first).
fn writable(path: &str, binds: &[BindMount], readonly_rootfs: bool) -> Result<(), ApiError> {
    let holder = binds
        .iter()
        .filter(|m| Path::new(path).starts_with(Path::new(&m.destination)))
        .max_by_key(|m| Path::new(&m.destination).components().count());
    match holder {
        Some(m) if m.read_only => Err(ApiError::bad_request("mounted volume is marked read-only")),
        Some(_) => Ok(()),
        None if readonly_rootfs => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "container rootfs is marked read-only",
        )),
        None => Ok(()),
    }
}

/// `copyUIDGID` (`docker cp -a`): dockerd chowns to the container's `User`. Only a
/// numeric `uid[:gid]` is understood here; a user name (which needs the container's
/// /etc/passwd) or no user keeps the archive's owners, which the client set from the
/// source files.
fn numeric_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid: u32 = uid.parse().ok()?;
    let gid = match gid {
        Some(g) => g.parse().ok()?,
        None => uid,
    };
    Some((uid, gid))
}

fn publish(state: &DaemonState, record: &ContainerRecord, action: &str) {
    let mut attrs: BTreeMap<String, String> = record.config.labels.clone();
    attrs.insert("name".into(), record.name.clone());
    attrs.insert("image".into(), record.image_name.clone());
    state.events.publish("container", action, &record.id, attrs);
}

/// The blocking tar writer's end of a streamed body: chunks of [`CHUNK`] bytes, sent with
/// back-pressure. A client that went away turns into `BrokenPipe`, which stops the walk.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A request body as a blocking [`Read`] for the tar extractor: an async task pumps the
/// frames into a small bounded channel.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

/// What the tar reader may leave unread after the archive's end (the second zero block,
/// a writer's padding) and is drained so the client can finish sending: answering before
/// the body is read makes the server close the connection, and the client's write fails
/// with EPIPE instead of reading the answer.
const MAX_TRAILING: usize = 1 << 20;

impl ChannelReader {
    fn spawn(mut body: Incoming) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(16);
        let pump = tokio::spawn(async move {
            let mut drained = 0usize;
            let mut draining = false;
            while let Some(frame) = body.frame().await {
                let item = match frame {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => Ok(data),
                        Err(_) => continue, // trailers
                    },
                    Err(e) => Err(io::Error::other(e)),
                };
                if draining {
                    match item {
                        Ok(data) if drained + data.len() <= MAX_TRAILING => drained += data.len(),
                        _ => break,
                    }
                    continue;
                }
                let failed = item.is_err();
                if failed {
                    let _ = tx.send(item).await;
                    break;
                }
                // The extractor stopped reading (done, or failed): drain what is left.
                if tx.send(item).await.is_err() {
                    draining = true;
                }
            }
        });
        (
            Self {
                rx,
                chunk: Bytes::new(),
            },
            pump,
        )
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(data)) => self.chunk = data,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_mounts_and_rootfs() {
        let bind = |d: &str, ro: bool| BindMount {
            source: "/src".into(),
            destination: d.into(),
            read_only: ro,
        };
        let binds = [
            bind("/data", true),
            bind("/data/rw", false),
            bind("/out", false),
        ];
        let status = |p: &str, ro_root: bool| match writable(p, &binds, ro_root) {
            Ok(()) => 0,
            Err(e) => e.status.as_u16(),
        };
        assert_eq!(status("/data", false), 400);
        assert_eq!(status("/data/sub", false), 400);
        assert_eq!(status("/data/rw/x", false), 0);
        // A prefix of the name is not the mount.
        assert_eq!(status("/database", false), 0);
        assert_eq!(status("/out", true), 0);
        assert_eq!(status("/tmp", true), 403);
        assert_eq!(status("/tmp", false), 0);
    }

    #[test]
    fn numeric_users_only() {
        assert_eq!(numeric_user("1000"), Some((1000, 1000)));
        assert_eq!(numeric_user("1000:50"), Some((1000, 50)));
        assert_eq!(numeric_user("nobody"), None);
        assert_eq!(numeric_user(""), None);
    }

    #[test]
    fn stat_header_is_dockers_json() {
        let stat = PathStat {
            name: "hostname".into(),
            size: 13,
            st_mode: 0o100644,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 500_000_000,
            link_target: String::new(),
        };
        let json = serde_json::to_value(wire_stat(&stat)).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "name": "hostname",
                "size": 13,
                "mode": 0o644,
                "mtime": "2023-11-14T22:13:20.500Z",
                "linkTarget": ""
            })
        );
    }
}
