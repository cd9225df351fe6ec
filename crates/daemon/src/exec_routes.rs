//! `/containers/{id}/exec` and `/exec/...`: the HTTP side of `docker exec`. The exec runs
//! under the container's shim (its `exec` op); its stream is joined to the hijacked
//! connection the way `attach` is.

use std::sync::Arc;

use berth_api::detach_keys::DetachScanner;
use berth_api::exec::{ExecConfig, ExecStartConfig, IdResponse};
use berth_image::runtime_spec;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::api_server::DaemonState;
use crate::attach_input::{self, InputEnd};
use crate::container_record::ContainerRecord;
use crate::exec_manager::{self, ExecError, ExecRecord};
use crate::query::Query;
use crate::response::{self, ApiError, Body};
use crate::router::{Endpoint, Routed};
use crate::shim_client::{Shim, ShimError};

/// Exec bodies are a command and an environment; this bounds what a client can make the
/// daemon buffer.
const MAX_BODY: usize = 1024 * 1024;

/// The exit code recorded when the shim went away before reporting one: that happens
/// only when the container was stopped, which kills its processes (SIGKILL).
const KILLED_WITH_CONTAINER: i64 = 128 + 9;

/// How long the client's input is still read (and dropped) after our end of the stream is
/// closed, waiting for the client to close its own.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn handle(
    state: &Arc<DaemonState>,
    routed: Routed,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let param = routed.param.as_str();
    match routed.endpoint {
        Endpoint::ExecCreate => create(state, param, req).await,
        Endpoint::ExecStart => start(state, param, req).await,
        Endpoint::ExecResize => resize(state, param, &Query::parse(req.uri().query())).await,
        Endpoint::ExecInspect => {
            let record = state.execs.get(param)?;
            Ok(response::json(StatusCode::OK, &record.inspect()))
        }
        other => Err(ApiError::internal(format!("{other:?} routed to exec"))),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<bytes::Bytes, ApiError> {
    Ok(http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes())
}

/// `POST /containers/{id}/exec`: 201 `{"Id": ...}`.
async fn create(
    state: &Arc<DaemonState>,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(req).await?;
    let config: ExecConfig = crate::request_body::decode_object(&body)?;
    let container = state.containers.find(name)?;
    attach_input::keys(&config.detach_keys, "escape")?;
    let id = state.execs.create(&container, config, &state.events)?;
    Ok(response::json(StatusCode::CREATED, &IdResponse { id }))
}

/// `POST /exec/{id}/resize?h=&w=`.
async fn resize(
    state: &Arc<DaemonState>,
    id: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let h = query.int("h")?.unwrap_or(0);
    let w = query.int("w")?.unwrap_or(0);
    let (Ok(rows), Ok(cols)) = (u16::try_from(h), u16::try_from(w)) else {
        return Err(ApiError::bad_request(format!(
            "invalid terminal size {h}x{w}"
        )));
    };
    let record = state.execs.get(id)?;
    if !record.running {
        return Err(ApiError::conflict(format!("Exec {id} is not running")));
    }
    shim_of(state, &record.container_id)
        .exec_resize(id, rows, cols)
        .await
        .map_err(|e| ApiError::internal(format!("cannot resize the exec's tty: {e}")))?;
    Ok(response::empty(StatusCode::OK))
}

fn shim_of(state: &Arc<DaemonState>, container_id: &str) -> Shim {
    Shim::new(&state.containers.paths().state_dir(container_id))
}

/// Everything a start needs, checked before the answer: the container running, the
/// exec not started before, its process planned.
struct Prepared {
    record: ExecRecord,
    container: ContainerRecord,
    /// The process, or why it cannot be made (an unknown user): that is reported in the
    /// stream with exit code 126, as Docker reports it from the runtime.
    process: Result<serde_json::Value, String>,
}

fn prepare(
    state: &Arc<DaemonState>,
    id: &str,
    start: &ExecStartConfig,
) -> Result<Prepared, ApiError> {
    let record = state.execs.get(id)?;
    let container = state.containers.find(&record.container_id)?;
    if !container.state.status.is_running() {
        return Err(ExecError::NotRunning(container.id.clone()).into());
    }
    let record = state.execs.claim_start(id)?;
    let bundle = state
        .containers
        .paths()
        .data_root
        .join("containers")
        .join(&container.id)
        .join("bundle");
    let spec = exec_manager::read_bundle_spec(&bundle)?;
    let process = (|| {
        // The rootfs is mounted while the container runs; config.json names it.
        let rootfs = spec
            .pointer("/root/path")
            .and_then(serde_json::Value::as_str)
            .map(|p| bundle.join(p))
            .unwrap_or_else(|| bundle.join("rootfs"));
        let accounts = runtime_spec::read_account_files(&rootfs).map_err(|e| e.to_string())?;
        exec_manager::plan_process(
            &container,
            &spec,
            &record.config,
            &accounts,
            start.console_size,
        )
        .map_err(|e| e.to_string())
    })();
    Ok(Prepared {
        record,
        container,
        process,
    })
}

/// `POST /exec/{id}/start`: with `Detach` 200 and the exec runs in the background;
/// otherwise 101 and the exec's stream on the hijacked connection.
async fn start(
    state: &Arc<DaemonState>,
    id: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let wants_upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
    let upgrade = hyper::upgrade::on(&mut req);
    let body = read_body(req).await?;
    let start: ExecStartConfig = if body.is_empty() {
        ExecStartConfig::default()
    } else {
        crate::request_body::decode_object(&body)?
    };
    if !start.detach && !wants_upgrade {
        return Err(ApiError::bad_request(
            "exec start needs an upgraded connection (Connection: Upgrade, Upgrade: tcp) \
             or Detach",
        ));
    }
    let prepared = prepare(state, id, &start)?;
    let tty = prepared.record.config.tty;
    let state = state.clone();
    if start.detach {
        tokio::spawn(async move { run(&state, prepared, None::<tokio::net::UnixStream>).await });
        return Ok(response::empty(StatusCode::OK));
    }
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => run(&state, prepared, Some(TokioIo::new(upgraded))).await,
            Err(e) => {
                tracing::debug!(%e, "exec start upgrade failed");
                // Nobody to see it; run it anyway, as a start was asked for.
                run(&state, prepared, None::<tokio::net::UnixStream>).await;
            }
        }
    });
    let mut resp = response::empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    Ok(resp)
}

/// Starts the exec in the shim and, with a client, joins the two streams. The exit code
/// is recorded before the client's stream ends: the docker CLI inspects the exec right
/// after, once, for its own exit status.
async fn run<C>(state: &Arc<DaemonState>, p: Prepared, client: Option<C>)
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let id = p.record.id.clone();
    let config = &p.record.config;
    let shim = shim_of(state, &p.container.id);
    let started = match &p.process {
        Ok(process) => shim
            .exec(
                &id,
                process,
                config.tty,
                config.attach_stdin && client.is_some(),
            )
            .await
            .map_err(|e| match e {
                ShimError::Refused(msg) => format!("OCI runtime exec failed: {msg}"),
                other => other.to_string(),
            }),
        Err(msg) => Err(format!("OCI runtime exec failed: {msg}")),
    };
    let (pid, stream) = match started {
        Ok(s) => s,
        Err(msg) => {
            tracing::debug!(exec = %id, %msg, "exec did not start");
            let code = exec_manager::start_failure_code(&msg);
            state.execs.exited(&id, code, &p.container, &state.events);
            if let Some(client) = client {
                // dockerd writes the error into the stream (its stdout) and ends it.
                let text = format!("{msg}\r\n");
                let bytes = if config.tty {
                    text.into_bytes()
                } else {
                    frame(1, text.as_bytes())
                };
                let (client_r, mut client_w) = tokio::io::split(client);
                let _ = client_w.write_all(&bytes).await;
                let input = tokio::spawn(discard(client_r));
                close(client_w, input).await;
            }
            return;
        }
    };
    state.execs.running(&id, pid, &p.container, &state.events);
    let input = ExecInput {
        stdin: config.attach_stdin,
        tty: config.tty,
        keys: attach_input::keys(&config.detach_keys, "escape")
            .unwrap_or_else(|_| berth_api::detach_keys::DEFAULT.to_vec()),
    };
    let client = match client {
        Some(c) => match pump(c, stream, input).await {
            Pumped::Done(client_w, input) => Some((client_w, input)),
            Pumped::Left(end, client_w, input) => {
                // The client left a terminal session: it gets no exit code, and the
                // process runs on; its exit is recorded when it comes.
                if end == InputEnd::Detached {
                    exec_manager::publish_detach(&id, &p.container, &state.events);
                }
                close(client_w, input).await;
                None
            }
        },
        None => {
            drain(stream).await;
            None
        }
    };
    let code = match shim.exec_wait(&id).await {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!(exec = %id, %e, "no exit code from the shim");
            KILLED_WITH_CONTAINER
        }
    };
    state.execs.exited(&id, code, &p.container, &state.events);
    if let Some((client_w, input)) = client {
        close(client_w, input).await;
    }
}

/// Ends the client's stream: our FIN first, then its input read until it closes (or the
/// grace is over). Dropping a socket with unread input would send an RST instead, and the
/// docker CLI reports "connection reset by peer" and fails even though all output came.
async fn close<W: AsyncWrite + Unpin>(mut client_w: W, input: tokio::task::JoinHandle<()>) {
    let _ = client_w.shutdown().await;
    let abort = input.abort_handle();
    if tokio::time::timeout(CLOSE_GRACE, input).await.is_err() {
        abort.abort();
    }
}

/// Reads the client's input to its end, dropping it.
async fn discard<R: AsyncRead + Unpin>(mut client_r: R) {
    let _ = tokio::io::copy(&mut client_r, &mut tokio::io::sink()).await;
}

/// Docker's 8-byte multiplexed header and the payload.
fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![stream, 0, 0, 0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// What the client's input does to an exec session.
struct ExecInput {
    stdin: bool,
    /// A terminal session: the detach keys are watched for, and the end of the client's
    /// input ends the session (dockerd's `CloseStdin` only closes a pipe).
    tty: bool,
    keys: Vec<u8>,
}

/// How a session's streams ended.
enum Pumped<C> {
    /// The shim ended the exec's stream: the client's write half, still open, so that the
    /// exit code is recorded before the client sees the end, and the task still reading
    /// the client's input.
    Done(tokio::io::WriteHalf<C>, tokio::task::JoinHandle<()>),
    /// The client's input ended a terminal session (closed, or the detach keys).
    Left(
        InputEnd,
        tokio::io::WriteHalf<C>,
        tokio::task::JoinHandle<()>,
    ),
}

/// Copies both ways until the shim ends the exec's stream or the client leaves a terminal
/// session. Without a terminal, the client's half-close becomes the shim's (the exec's
/// stdin closes) and the output goes on.
async fn pump<C>(client: C, shim: tokio::net::UnixStream, exec: ExecInput) -> Pumped<C>
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut shim_r, mut shim_w) = shim.into_split();
    let (end_tx, end_rx) = tokio::sync::oneshot::channel();
    let input = tokio::spawn(async move {
        if exec.stdin {
            let scanner = exec.tty.then(|| DetachScanner::new(exec.keys));
            let end = attach_input::relay(&mut client_r, &mut shim_w, scanner).await;
            if exec.tty {
                let _ = end_tx.send(end);
            }
        }
        let _ = shim_w.shutdown().await;
        // Keep reading (and dropping) so a client that goes on sending is not stalled.
        discard(client_r).await;
    });
    let left = async {
        match end_rx.await {
            Ok(end) => end,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::io::copy(&mut shim_r, &mut client_w) => Pumped::Done(client_w, input),
        end = left => Pumped::Left(end, client_w, input),
    }
}

/// A detached exec: nobody reads its output, so it is read and dropped.
async fn drain(shim: tokio::net::UnixStream) {
    let (mut r, mut w) = shim.into_split();
    let _ = w.shutdown().await;
    let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
}
