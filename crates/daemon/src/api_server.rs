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
use berth_api::{ErrorResponse, MAX_API_VERSION};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use nix::unistd::{chown, Group};
use serde::Serialize;
use tokio::net::UnixListener;

use crate::metadata_store::{Counts, MetadataStore};
use crate::router::{route, Endpoint, RouteError};
use crate::system_routes::{self, SystemFacts, DAEMON_VERSION};

/// How long in-flight requests get to finish after SIGTERM before the daemon exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The group that may use the socket without being root, as `docker` is for dockerd.
const SOCKET_GROUP: &str = "berth";

/// Everything a request handler may read.
pub struct DaemonState {
    pub facts: SystemFacts,
    /// A std mutex, used only inside `spawn_blocking`: SQLite calls block.
    pub store: Arc<Mutex<MetadataStore>>,
}

type Body = Full<Bytes>;

/// The listening socket; removes the socket file when dropped, so that every way out of
/// the daemon (shutdown, error) cleans up what it created.
pub struct ApiSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
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
    /// Binds `path`: mode 0660, group `berth` when that group exists (else root only).
    /// A leftover socket from a crashed daemon is replaced; a live one is an error, so a
    /// second daemon cannot steal the first one's clients.
    pub async fn bind(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            // 0711: group members must be able to traverse to a 0660 socket inside.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)
                .with_context(|| {
                    format!("cannot create the socket directory {}", parent.display())
                })?;
        }
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
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        let socket = Self {
            listener,
            path: path.to_owned(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
        match Group::from_name(SOCKET_GROUP) {
            Ok(Some(group)) => chown(path, None, Some(group.gid)).with_context(|| {
                format!("cannot give {} to group {SOCKET_GROUP}", path.display())
            })?,
            Ok(None) => {
                tracing::info!("no group {SOCKET_GROUP:?}: the API socket is for root only")
            }
            Err(err) => tracing::warn!(%err, "cannot look up group {SOCKET_GROUP:?}"),
        }
        Ok(socket)
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests
    /// finish (up to `SHUTDOWN_GRACE`) and removes the socket.
    pub async fn serve(self, state: Arc<DaemonState>, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        tracing::info!(path = %self.path.display(), "API listening");
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let state = state.clone();
                        let service = service_fn(move |req| handle(state.clone(), req));
                        let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(err) = conn.await {
                                tracing::debug!(%err, "connection ended with an error");
                            }
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
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections closed"),
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
    let mut resp = dispatch(&state, &method, &path).await;
    add_common_headers(&mut resp);
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    Ok(resp)
}

async fn dispatch(state: &Arc<DaemonState>, method: &Method, path: &str) -> Response<Body> {
    let routed = match route(method, path) {
        Ok(routed) => routed,
        Err(err) => {
            let mut resp = error_response(err.status(), &err.message());
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
    match routed.endpoint {
        Endpoint::Ping => ping(method),
        Endpoint::Version => json_response(StatusCode::OK, &system_routes::version(&state.facts)),
        Endpoint::Info => match counts(state).await {
            Ok(counts) => json_response(StatusCode::OK, &system_routes::info(&state.facts, counts)),
            Err(message) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &message),
        },
    }
}

/// `GET`/`HEAD /_ping`. The extra headers are the ones the Go client reads from the ping
/// (moby `client/ping.go`): `Builder-Version: 1` because there is no BuildKit, and
/// `Swarm: inactive` to keep swarm commands hidden.
fn ping(method: &Method) -> Response<Body> {
    // dockerd answers HEAD with an empty body and Content-Length 0.
    let body = if method == Method::HEAD { "" } else { "OK" };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
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
    let joined = tokio::task::spawn_blocking(move || {
        let store = store
            .lock()
            .map_err(|_| "metadata store lock poisoned".to_owned())?;
        store.counts().map_err(|err| err.to_string())
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

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            // dockerd ends JSON bodies with a newline (json.Encoder); some scripts expect it.
            bytes.push(b'\n');
            let mut resp = Response::new(Full::new(Bytes::from(bytes)));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(err) => {
            tracing::error!(%err, "cannot encode a response");
            let mut resp = Response::new(Full::new(Bytes::from_static(
                b"{\"message\":\"cannot encode the response\"}\n",
            )));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    }
}

/// `{"message": ...}` with `Content-Type: application/json` exactly: the Go client reads
/// the message only then.
fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &ErrorResponse::new(message))
}
