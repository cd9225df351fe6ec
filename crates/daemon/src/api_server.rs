//! The HTTP/1.1 server on the Unix socket: binding the socket, dispatching requests,
//! the headers every response carries, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_api::MAX_API_VERSION;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nix::unistd::{chown, Gid, Group};
use tokio::net::UnixListener;

use crate::container_manager::ContainerManager;
use crate::events::EventBus;
use crate::exec_manager::ExecManager;
use crate::image_service::ImageService;
use crate::metadata_store::{Counts, MetadataStore};
use crate::response::{self, ApiError, Body};
use crate::router::{route, Endpoint, RouteError};
use crate::system_routes::{self, SystemFacts, DAEMON_VERSION};
use crate::{archive_routes, container_routes, exec_routes, image_routes};

/// How long in-flight requests get to finish after SIGTERM before the daemon exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The group that may use the socket without being root, as `docker` is for dockerd.
const SOCKET_GROUP: &str = "berth";

/// Everything a request handler may read.
pub struct DaemonState {
    pub facts: SystemFacts,
    /// A std mutex, used only inside `spawn_blocking`: SQLite calls block.
    pub store: Arc<Mutex<MetadataStore>>,
    pub events: Arc<EventBus>,
    pub images: Arc<ImageService>,
    pub containers: Arc<ContainerManager>,
    /// Volumes of the local driver; the container manager holds the same store.
    pub volumes: Arc<crate::volume_store::VolumeStore>,
    /// `docker exec` records, in memory: an exec does not outlive its container's run.
    pub execs: Arc<ExecManager>,
}

/// The listening socket; removes the socket file when dropped, so that every way out of
/// the daemon (shutdown, error) cleans up what it created.
pub struct ApiSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Whether we bound (and so remove) the socket file. A socket systemd passed us belongs
    /// to `berthd.socket`: removing it would leave the unit listening on nothing.
    owned: bool,
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => tracing::debug!(path = %self.path.display(), "removed API socket"),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(path = %self.path.display(), %err, "cannot remove API socket")
            }
        }
    }
}

impl ApiSocket {
    /// A listening socket inherited from systemd socket activation.
    pub fn from_systemd(listener: std::os::unix::net::UnixListener, path: &Path) -> Result<Self> {
        listener
            .set_nonblocking(true)
            .context("cannot make the systemd socket non-blocking")?;
        Ok(Self {
            listener: UnixListener::from_std(listener).context("cannot use the systemd socket")?,
            path: path.to_owned(),
            owned: false,
        })
    }

    /// Binds `path`: mode 0660, owned by root and by the group `gid` ([`socket_group`];
    /// `None`: root's alone). A leftover socket from a crashed daemon is replaced; a live
    /// one is an error, so a second daemon cannot steal the first one's clients.
    pub async fn bind(path: &Path, gid: Option<Gid>) -> Result<Self> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // 0711: group members must be able to traverse to a 0660 socket inside.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(parent)
            .with_context(|| format!("cannot create the socket directory {}", parent.display()))?;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if tokio::net::UnixStream::connect(path).await.is_ok() {
                    bail!("another daemon is already listening on {}", path.display());
                }
                tracing::info!(path = %path.display(), "removing stale socket");
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
            }
            Ok(_) => bail!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("cannot stat {}", path.display())),
        }
        // Bound straight at `path`, the socket would exist for a moment with the mode the
        // umask leaves (0777 under umask 0) before the chmod: anyone could connect then.
        // So it is bound in a private 0700 directory beside `path`, given its mode and
        // group there, and linked into place with them.
        let staging = parent.join(format!(".bind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        let bound = bind_staged(&staging.join("s"), path, gid);
        if let Err(err) = std::fs::remove_dir_all(&staging) {
            tracing::warn!(path = %staging.display(), %err, "cannot remove the staging directory");
        }
        Ok(Self {
            listener: bound?,
            path: path.to_owned(),
            owned: true,
        })
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests
    /// finish (up to `SHUTDOWN_GRACE`) and removes the socket.
    pub async fn serve(self, state: Arc<DaemonState>, shutdown: impl Future<Output = ()>) {
        // hyper-util's GracefulShutdown does not take upgradeable connections, so each
        // connection task watches `stop` itself and holds a clone of `alive`; when every
        // clone is dropped, `all_done` yields None.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (alive, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        tracing::info!(path = %self.path.display(), "API listening");
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let state = state.clone();
                        let service = service_fn(move |req| handle(state.clone(), req));
                        let mut stop = stop_rx.clone();
                        let alive = alive.clone();
                        tokio::spawn(async move {
                            // Upgrades: attach and exec hijack the connection after a 101.
                            let conn = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades();
                            tokio::pin!(conn);
                            let result = tokio::select! {
                                r = conn.as_mut() => r,
                                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                                    conn.as_mut().graceful_shutdown();
                                    conn.await
                                }
                            };
                            if let Err(err) = result {
                                tracing::debug!(%err, "connection ended with an error");
                            }
                            drop(alive);
                        });
                    }
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning on the error.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        // Dropping the socket closes the listener and unlinks the path: new clients get
        // ECONNREFUSED/ENOENT at once while the old ones finish.
        drop(self);
        let _ = stop_tx.send(true);
        drop(alive);
        tokio::select! {
            _ = all_done.recv() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(SHUTDOWN_GRACE) => {
                tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
            }
        }
    }
}

async fn handle(
    state: Arc<DaemonState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let mut resp = dispatch(&state, req).await;
    add_common_headers(&mut resp);
    tracing::debug!(
        %method,
        %path,
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    Ok(resp)
}

async fn dispatch(state: &Arc<DaemonState>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let routed = match route(&method, req.uri().path()) {
        Ok(routed) => routed,
        Err(err) => {
            let mut resp = response::error(err.status(), &err.message());
            if let RouteError::MethodNotAllowed(methods) = err {
                let allow = methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(ALLOW, value);
                }
            }
            return resp;
        }
    };
    let result = match routed.endpoint {
        Endpoint::Ping => Ok(ping(&method)),
        Endpoint::Version => Ok(response::json(
            StatusCode::OK,
            &system_routes::version(&state.facts),
        )),
        Endpoint::Info => match counts(state).await {
            Ok(counts) => Ok(response::json(
                StatusCode::OK,
                &system_routes::info(&state.facts, counts),
            )),
            Err(message) => Err(ApiError::internal(message)),
        },
        Endpoint::Events => system_routes::events(state, &req),
        Endpoint::ImageCreate
        | Endpoint::ImageList
        | Endpoint::ImageInspect
        | Endpoint::ImageTag
        | Endpoint::ImageDelete
        | Endpoint::ImagePush
        | Endpoint::ImageLoad
        | Endpoint::ImageSaveOne
        | Endpoint::ImageSaveMany => image_routes::handle(state, routed, req).await,
        Endpoint::ContainerCreate
        | Endpoint::ContainerList
        | Endpoint::ContainerInspect
        | Endpoint::ContainerStart
        | Endpoint::ContainerStop
        | Endpoint::ContainerKill
        | Endpoint::ContainerRestart
        | Endpoint::ContainerWait
        | Endpoint::ContainerAttach
        | Endpoint::ContainerResize
        | Endpoint::ContainerLogs
        | Endpoint::ContainerDelete => container_routes::handle(state, routed, req).await,
        Endpoint::ContainerArchive => archive_routes::handle(state, routed, req).await,
        Endpoint::ExecCreate
        | Endpoint::ExecStart
        | Endpoint::ExecResize
        | Endpoint::ExecInspect => exec_routes::handle(state, routed, req).await,
        Endpoint::VolumeList
        | Endpoint::VolumeCreate
        | Endpoint::VolumeInspect
        | Endpoint::VolumeDelete
        | Endpoint::VolumePrune => crate::volume_routes::handle(state, routed, req).await,
        Endpoint::NetworkList
        | Endpoint::NetworkCreate
        | Endpoint::NetworkInspect
        | Endpoint::NetworkDelete
        | Endpoint::NetworkConnect
        | Endpoint::NetworkDisconnect => crate::network_routes::handle(state, routed, req).await,
        Endpoint::ContainerTop
        | Endpoint::ContainerStats
        | Endpoint::ContainerChanges
        | Endpoint::ContainerPause
        | Endpoint::ContainerUnpause
        | Endpoint::ContainerRename
        | Endpoint::ContainerPrune
        | Endpoint::ImagePrune
        | Endpoint::SystemDf
        | Endpoint::NetworkPrune
        | Endpoint::BuildPrune => crate::maintenance_routes::handle(state, routed, req).await,
    };
    result.unwrap_or_else(Response::from)
}

/// `GET`/`HEAD /_ping`. The extra headers are the ones the Go client reads from the ping
/// (moby `client/ping.go`): `Builder-Version: 1` because there is no BuildKit, and
/// `Swarm: inactive` to keep swarm commands hidden.
fn ping(method: &Method) -> Response<Body> {
    // dockerd answers HEAD with an empty body and Content-Length 0.
    let body = if method == Method::HEAD { "" } else { "OK" };
    let mut resp = Response::new(response::full(Bytes::from_static(body.as_bytes())));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    resp
}

async fn counts(state: &Arc<DaemonState>) -> Result<Counts, String> {
    let store = state.store.clone();
    let images = state.images.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut counts = store
            .lock()
            .map_err(|_| "metadata store lock poisoned".to_owned())?
            .counts()
            .map_err(|err| err.to_string())?;
        // Images are indexed by the image store, not the metadata database.
        let index = images.lock_store().map_err(|e| e.message)?;
        let ids: std::collections::BTreeSet<_> = index
            .list()
            .into_iter()
            .map(|s| s.record.config_digest)
            .collect();
        counts.images = ids.len() as i64;
        Ok(counts)
    })
    .await;
    joined.map_err(|err| format!("metadata query task failed: {err}"))?
}

/// The headers of every response (moby's version middleware): clients negotiate on
/// `Api-Version` and pick option parsing by `Ostype`.
fn add_common_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&MAX_API_VERSION.to_string()) {
        h.insert("Api-Version", v);
    }
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    if let Ok(v) = HeaderValue::from_str(&format!("berth/{DAEMON_VERSION}")) {
        h.insert(SERVER, v);
    }
}

/// Binds at `staged`, sets mode 0660 and group `gid` there, then links it at `path`.
fn bind_staged(staged: &Path, path: &Path, gid: Option<Gid>) -> Result<UnixListener> {
    let listener = UnixListener::bind(staged)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    if let Some(gid) = gid {
        chown(staged, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {gid}", path.display()))?;
    }
    // A link, not a rename: it fails if `path` appeared since the stale-socket check (a
    // second daemon starting at the same time), as binding at `path` would.
    std::fs::hard_link(staged, path)
        .with_context(|| format!("cannot put the socket at {}", path.display()))?;
    Ok(listener)
}

/// The socket's group, as dockerd's `--group`: a name or a gid. A group asked for that
/// does not exist is an error; the default `berth` may be missing (root only then).
pub fn socket_group(asked: Option<&str>) -> Result<Option<Gid>> {
    let name = asked.unwrap_or(SOCKET_GROUP);
    match Group::from_name(name) {
        Ok(Some(group)) => return Ok(Some(group.gid)),
        Ok(None) => {}
        Err(err) => tracing::warn!(%err, "cannot look up group {name:?}"),
    }
    match (asked, name.parse::<u32>()) {
        (Some(_), Ok(gid)) => Ok(Some(Gid::from_raw(gid))),
        (Some(_), Err(_)) => bail!("group {name:?} not found (--group)"),
        (None, _) => {
            tracing::info!("no group {SOCKET_GROUP:?}: the API socket is for root only");
            Ok(None)
        }
    }
}
