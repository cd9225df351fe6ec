//! `/images/...`: pull, import, list, inspect, tag, remove, push, load, save.
//!
//! Replies follow dockerd (moby `api/server/router/image`): pull, push, import and load
//! answer 200 with a stream of `JSONMessage` lines, so a failure after the headers went
//! out arrives as an `error` line; what can be refused up front (a bad reference, an
//! unknown image) is refused with a status before streaming. Image-crate work blocks and
//! runs on `spawn_blocking`; only registry transfers are async.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_api::container::{ContainerConfig, GraphDriver, StringSet};
use berth_api::image::{ImageDeleteItem, ImageInspect, ImageSummary, RootFs};
use berth_api::stream::{JsonMessage, ProgressDetail, PushResult};
use berth_image::archive::SaveImage;
use berth_image::image_store::{ImageRecord, InUse};
use berth_image::import::ImportOptions;
use berth_image::manifest::{self, Platform};
use berth_image::push::{PushConfig, Pusher};
use berth_image::registry::{
    Credential, Credentials, ProgressSink, PullProgress, Puller, RegistryClient, RegistryConfig,
    RegistryError,
};
use berth_image::{Digest, Reference, ReferenceError};
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use crate::api_server::DaemonState;
use crate::image_service::{image_error, ImageDetails, ImageService, LoadOutcome};
use crate::query::Query;
use crate::response::{self, ApiError, Body};
use crate::router::{Endpoint, Routed};

pub async fn handle(
    state: &Arc<DaemonState>,
    routed: Routed,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    match routed.endpoint {
        Endpoint::ImageCreate => {
            if query.get("fromSrc").is_some() {
                import(state, &query, req).await
            } else {
                pull(state, &query, &req).await
            }
        }
        Endpoint::ImageList => list(state, &query).await,
        Endpoint::ImageInspect => inspect(state, routed.param).await,
        Endpoint::ImageTag => tag(state, routed.param, &query).await,
        Endpoint::ImageDelete => delete(state, routed.param, &query).await,
        Endpoint::ImagePush => push(state, &routed.param, &query, &req).await,
        Endpoint::ImageLoad => load(state, req).await,
        Endpoint::ImageSaveOne => save(state, vec![routed.param]).await,
        Endpoint::ImageSaveMany => {
            // `names` repeats (`?names=a&names=b`); `Query` keeps only the last value.
            let names = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .filter(|(k, _)| k == "names")
                .map(|(_, v)| v.into_owned())
                .collect();
            save(state, names).await
        }
        other => Err(ApiError::internal(format!(
            "{other:?} is not an image endpoint"
        ))),
    }
}

/// Runs blocking image work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("image task failed: {e}")))?
}

/// A reference from a request, refused with dockerd's 400 wording.
fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| match e {
        ReferenceError::Uppercase(_) => {
            ApiError::bad_request("invalid reference format: repository name must be lowercase")
        }
        _ => ApiError::bad_request("invalid reference format"),
    })
}

/// `docker.io/library/busybox:latest` -> `busybox:latest`, as dockerd prints names.
fn familiar(key: &str) -> String {
    Reference::parse(key).map_or_else(|_| key.to_owned(), |r| r.familiar())
}

/// The repository part of a familiar name (`host:5000/a:v1` -> `host:5000/a`).
fn repository(name: &str) -> &str {
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

fn image_event(state: &DaemonState, action: &str, id: &str, name: &str) {
    let mut attributes = BTreeMap::new();
    attributes.insert("name".to_owned(), name.to_owned());
    state.events.publish("image", action, id, attributes);
}

fn stream_response(body: Body) -> Response<Body> {
    response::with_type(StatusCode::OK, body, "application/json")
}

/// Sends one progress line; `false` once the client has gone (the work goes on: an
/// image half-pulled because a terminal closed would only be pulled again).
async fn send(tx: &mpsc::Sender<Bytes>, msg: &JsonMessage) -> bool {
    tx.send(response::json_line(msg)).await.is_ok()
}

// ---------------------------------------------------------------------------------------
// Pull

/// `X-Registry-Auth`: base64url of `{"username","password","serveraddress"}` (moby
/// `registry.DecodeAuthConfig`); missing or empty means anonymous.
fn registry_auth(req: &Request<Incoming>) -> Result<Option<Credential>, ApiError> {
    let Some(value) = req.headers().get("x-registry-auth") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("X-Registry-Auth is not text"))?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bytes = decode_base64(text)
        .ok_or_else(|| ApiError::bad_request("X-Registry-Auth is not valid base64"))?;
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct AuthConfig {
        username: String,
        password: String,
    }
    // The Go client sends `{}` for anonymous and dockerd ignores what it cannot parse.
    let auth: AuthConfig = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok((!auth.username.is_empty()).then_some(Credential {
        username: auth.username,
        password: auth.password,
    }))
}

/// Base64, either alphabet, padding optional: the Go client uses URL-safe with padding,
/// other SDKs standard.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn registry_client(
    reference: &Reference,
    auth: Option<Credential>,
) -> Result<RegistryClient, ApiError> {
    registry_client_for(reference, auth, Platform::host())
}

fn registry_client_for(
    reference: &Reference,
    auth: Option<Credential>,
    platform: Platform,
) -> Result<RegistryClient, ApiError> {
    let mut credentials = Credentials::default();
    if let Some(cred) = auth {
        credentials.insert(reference.registry_host(), cred);
    }
    RegistryClient::new(RegistryConfig {
        credentials,
        platform,
        ..RegistryConfig::default()
    })
    .map_err(|e| ApiError::internal(e.to_string()))
}

/// `platform=linux/arm64/v8`; empty means the host's.
fn parse_platform(s: &str) -> Result<Platform, ApiError> {
    if s.is_empty() {
        return Ok(Platform::host());
    }
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: (*os).to_owned(),
            architecture: (*arch).to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
            ..Platform::default()
        }),
        _ => Err(ApiError::bad_request(format!(
            "invalid platform {s:?}: expected os/arch[/variant]"
        ))),
    }
}

/// `fromImage` and `tag` as one reference: `tag` may be a tag or a digest, and replaces
/// a tag already in `fromImage` (moby `postImagesCreate`).
fn pull_reference(from: &str, tag: &str) -> Result<Reference, ApiError> {
    let image = parse_reference(from)?;
    if tag.is_empty() {
        return Ok(image);
    }
    if tag.contains(':') {
        let digest: Digest = tag
            .parse()
            .map_err(|_| ApiError::bad_request("invalid reference format"))?;
        Ok(image.with_digest(digest))
    } else {
        parse_reference(&format!("{}:{tag}", image.name()))
    }
}

async fn pull(
    state: &Arc<DaemonState>,
    query: &Query,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let from = query.get("fromImage").unwrap_or("");
    if from.is_empty() {
        return Err(ApiError::bad_request("fromImage or fromSrc is required"));
    }
    let reference = pull_reference(from, query.get("tag").unwrap_or(""))?;
    let platform = parse_platform(query.get("platform").unwrap_or(""))?;
    let client = registry_client_for(&reference, registry_auth(req)?, platform)?;
    let images = state.images.clone();
    let (prog_tx, prog_rx) = mpsc::unbounded_channel();
    let puller = Puller::new(
        client,
        images.content.clone(),
        images.snapshotter.layer_store().clone(),
    )
    .with_progress(ProgressSink::new(move |p| {
        // The receiver lives as long as the pull; a send error cannot happen.
        let _ = prog_tx.send(p);
    }));
    let (tx, body) = response::channel();
    let state = state.clone();
    tokio::spawn(async move {
        run_pull(&state, &puller, &reference, prog_rx, &tx).await;
    });
    Ok(stream_response(body))
}

/// The pull itself, streaming progress to `tx`; every outcome ends as a line.
async fn run_pull(
    state: &Arc<DaemonState>,
    puller: &Puller,
    reference: &Reference,
    mut prog_rx: mpsc::UnboundedReceiver<PullProgress>,
    tx: &mpsc::Sender<Bytes>,
) {
    let images = &state.images;
    let shown = reference.familiar();
    let id = match (reference.tag(), reference.digest()) {
        (Some(tag), _) => tag.to_owned(),
        (None, Some(d)) => d.to_string(),
        (None, None) => String::new(),
    };
    send(
        tx,
        &JsonMessage::status(id, format!("Pulling from {}", reference.path())),
    )
    .await;

    let key = reference.to_string();
    let before = {
        let images = images.clone();
        let key = key.clone();
        blocking(move || Ok(images.record(&key).ok()))
            .await
            .ok()
            .flatten()
    };

    // Held until the image is recorded, so a concurrent rmi's gc cannot sweep what this
    // pull stored but has not recorded yet.
    let writing = images.writers.read().await;
    let mut formatter = PullFormatter::default();
    let pulled = {
        let pull = puller.pull(reference);
        tokio::pin!(pull);
        loop {
            tokio::select! {
                biased;
                Some(p) = prog_rx.recv() => {
                    for msg in formatter.lines(p) {
                        send(tx, &msg).await;
                    }
                }
                result = &mut pull => break result,
            }
        }
    };
    while let Ok(p) = prog_rx.try_recv() {
        for msg in formatter.lines(p) {
            send(tx, &msg).await;
        }
    }
    let image = match pulled {
        Ok(image) => image,
        Err(err) => {
            tracing::info!(reference = %reference, %err, "pull failed");
            send(tx, &JsonMessage::error(pull_error_message(reference, &err))).await;
            return;
        }
    };
    let record = ImageRecord::from(&image);
    let tags: Vec<Reference> = reference
        .tag()
        .map(|_| reference.clone())
        .into_iter()
        .collect();
    let recorded = {
        let images = images.clone();
        blocking(move || images.record_image(record, &tags)).await
    };
    drop(writing);
    if let Err(err) = recorded {
        send(tx, &JsonMessage::error(err.message)).await;
        return;
    }
    let up_to_date = before.is_some_and(|r| r.manifest_digest == image.manifest_digest);
    send(
        tx,
        &JsonMessage::status("", format!("Digest: {}", image.index_digest)),
    )
    .await;
    let status = if up_to_date {
        format!("Status: Image is up to date for {shown}")
    } else {
        format!("Status: Downloaded newer image for {shown}")
    };
    send(tx, &JsonMessage::status("", status)).await;
    image_event(state, "pull", &shown, &shown);
}

/// Pull failures in the words the docker CLI user knows from dockerd.
fn pull_error_message(reference: &Reference, err: &RegistryError) -> String {
    let shown = reference.familiar();
    match err {
        RegistryError::Status { status, url, .. }
            if *status == StatusCode::NOT_FOUND && url.contains("/manifests/") =>
        {
            format!("manifest for {shown} not found: manifest unknown: manifest unknown")
        }
        RegistryError::Status { status, .. }
            if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN =>
        {
            denied(&shown, err)
        }
        RegistryError::Auth { .. } => denied(&shown, err),
        other => other.to_string(),
    }
}

fn denied(shown: &str, err: &RegistryError) -> String {
    format!(
        "pull access denied for {}, repository does not exist or may require 'docker login': {err}",
        repository(shown)
    )
}

/// Turns [`PullProgress`] into Docker's per-layer lines, throttling `Downloading` so a
/// fast local transfer does not become thousands of lines.
#[derive(Default)]
struct PullFormatter {
    last_progress: HashMap<Digest, Instant>,
}

/// At most this often per layer (dockerd: 100 ms too, `progress.NewProgressReader`).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

fn short(d: &Digest) -> String {
    d.hex()[..12].to_owned()
}

impl PullFormatter {
    fn lines(&mut self, p: PullProgress) -> Vec<JsonMessage> {
        let with_detail = |d: &Digest, status: &str| JsonMessage {
            progress_detail: Some(ProgressDetail::default()),
            ..JsonMessage::status(short(d), status)
        };
        match p {
            PullProgress::Resolved { .. } => Vec::new(),
            PullProgress::LayerExists(d) => vec![with_detail(&d, "Already exists")],
            PullProgress::LayerWaiting(d) => vec![with_detail(&d, "Pulling fs layer")],
            PullProgress::Downloading {
                blob,
                current,
                total,
            } => {
                let now = Instant::now();
                let due = self
                    .last_progress
                    .get(&blob)
                    .is_none_or(|t| now.duration_since(*t) >= PROGRESS_INTERVAL);
                if !due && current < total {
                    return Vec::new();
                }
                self.last_progress.insert(blob.clone(), now);
                vec![JsonMessage {
                    progress_detail: Some(ProgressDetail {
                        current: Some(i64::try_from(current).unwrap_or(i64::MAX)),
                        total: Some(i64::try_from(total).unwrap_or(i64::MAX)),
                    }),
                    progress: progress_bar(current, total),
                    ..JsonMessage::status(short(&blob), "Downloading")
                }]
            }
            PullProgress::Downloaded(d) => {
                self.last_progress.remove(&d);
                vec![
                    with_detail(&d, "Verifying Checksum"),
                    with_detail(&d, "Download complete"),
                ]
            }
            PullProgress::Extracting(d) => vec![with_detail(&d, "Extracting")],
            PullProgress::LayerDone(d) => vec![with_detail(&d, "Pull complete")],
        }
    }
}

/// The text bar old clients print (`[=====>     ]  1.2MB/3.4MB`); current ones draw their
/// own from `progressDetail`.
fn progress_bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    if total == 0 {
        return human_size(current);
    }
    let filled = (WIDTH * current.min(total) / total) as usize;
    let mut bar = "=".repeat(filled);
    if filled < WIDTH as usize {
        bar.push('>');
        bar.push_str(&" ".repeat(WIDTH as usize - filled - 1));
    }
    format!("[{bar}] {:>8}/{}", human_size(current), human_size(total))
}

/// go-units `HumanSize`: decimal units, four significant digits.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let decimals = if value >= 100.0 {
        1
    } else if value >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.decimals$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{}", UNITS[unit])
}

// ---------------------------------------------------------------------------------------
// Import, load: request bodies read by blocking code

/// The request body as a blocking [`Read`], fed by a task that reads the frames. A body
/// that breaks off is an error, never a short read that looks like the end of the tar.
struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl BodyReader {
    fn spawn(req: Request<Incoming>) -> BodyReader {
        let (tx, rx) = mpsc::channel(16);
        let mut body = req.into_body();
        tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                let item = match frame {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => Ok(data),
                        Err(_trailers) => continue,
                    },
                    Err(e) => Err(io::Error::other(format!("reading the request body: {e}"))),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        BodyReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// `POST /images/create?fromSrc=-&repo=&tag=&changes=`: `docker import`. Only `-` (the
/// request body) is supported: fetching a URL on the daemon's behalf is a network
/// fetch with root's reach that dockerd itself discourages.
async fn import(
    state: &Arc<DaemonState>,
    query: &Query,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if query.get("fromSrc") != Some("-") {
        return Err(ApiError::bad_request(
            "importing from a URL is not supported: send the tar as the body (docker import - or a file)",
        ));
    }
    let repo = query.get("repo").unwrap_or("");
    let tag = query.get("tag").unwrap_or("");
    let tag = match (repo, tag) {
        ("", _) => None,
        (repo, "") => Some(parse_reference(repo)?),
        (repo, tag) => Some(parse_reference(&format!("{repo}:{tag}"))?),
    };
    if tag.as_ref().is_some_and(|t| t.digest().is_some()) {
        return Err(ApiError::bad_request(
            "refusing to create a tag with a digest reference",
        ));
    }
    // `changes` repeats, one Dockerfile instruction each.
    let changes = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "changes")
        .map(|(_, v)| v.into_owned())
        .collect();
    let options = ImportOptions {
        changes,
        platform: parse_platform(query.get("platform").unwrap_or(""))?,
        tag,
        ..ImportOptions::default()
    };
    let reader = BodyReader::spawn(req);
    let images = state.images.clone();
    let writing = images.writers.read().await;
    let outcome = {
        let images = images.clone();
        blocking(move || images.import(reader, &options)).await?
    };
    drop(writing);
    let id = outcome.id.to_string();
    let name = outcome
        .tags
        .first()
        .map_or_else(|| id.clone(), |t| familiar(t));
    image_event(state, "import", &id, &name);
    let line = response::json_line(&JsonMessage::status("", id));
    Ok(stream_response(response::full(line)))
}

/// `POST /images/load`: a docker-save or OCI archive. The archive is read whole (it is
/// checked before anything is stored), so errors are plain statuses, as dockerd answers
/// when nothing was written yet.
async fn load(
    state: &Arc<DaemonState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let reader = BodyReader::spawn(req);
    let images = state.images.clone();
    let writing = images.writers.read().await;
    let outcomes: Vec<LoadOutcome> = {
        let images = images.clone();
        blocking(move || images.load(reader)).await?
    };
    drop(writing);
    let mut out = Vec::new();
    for o in &outcomes {
        let id = o.id.to_string();
        for (tag, old) in &o.renamed {
            out.extend_from_slice(&response::json_line(&stream_text(format!(
                "The image {} already exists, renaming the old one with ID {old} to empty string\n",
                familiar(tag)
            ))));
        }
        if o.tags.is_empty() {
            out.extend_from_slice(&response::json_line(&stream_text(format!(
                "Loaded image ID: {id}\n"
            ))));
            image_event(state, "load", &id, &id);
        }
        for t in &o.tags {
            let name = familiar(t);
            out.extend_from_slice(&response::json_line(&stream_text(format!(
                "Loaded image: {name}\n"
            ))));
            image_event(state, "load", &id, &name);
        }
    }
    Ok(stream_response(response::full(out)))
}

fn stream_text(text: String) -> JsonMessage {
    JsonMessage {
        stream: text,
        ..JsonMessage::default()
    }
}

// ---------------------------------------------------------------------------------------
// List, inspect

/// `GET /images/json?filters=`: `dangling`, `reference` (globs on `repo` and
/// `repo:tag`), `label` (`key` or `key=value`), `before`/`since` (an image).
async fn list(state: &Arc<DaemonState>, query: &Query) -> Result<Response<Body>, ApiError> {
    let filters = query.filters()?;
    for name in filters.keys() {
        if !["dangling", "reference", "label", "before", "since"].contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{name}'")));
        }
    }
    let dangling = match filters.get("dangling").and_then(|v| v.first()) {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Some(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Some(false),
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "invalid filter 'dangling={v}'"
            )))
        }
    };
    let images = state.images.clone();
    let (all, bounds) = {
        let before = filters.get("before").and_then(|v| v.first()).cloned();
        let since = filters.get("since").and_then(|v| v.first()).cloned();
        blocking(move || {
            let created = |name: &str| -> Result<i64, ApiError> {
                let record = images.record(name)?;
                let details = images.details(record, Vec::new())?;
                Ok(created_unix(&details))
            };
            let bounds = (
                before.as_deref().map(created).transpose()?,
                since.as_deref().map(created).transpose()?,
            );
            Ok((images.list()?, bounds))
        })
        .await?
    };
    let references = filters.get("reference").cloned().unwrap_or_default();
    let labels = filters.get("label").cloned().unwrap_or_default();
    let mut out: Vec<ImageSummary> = Vec::new();
    for d in &all {
        let created = created_unix(d);
        if dangling.is_some_and(|want| want != d.tags.is_empty())
            || bounds.0.is_some_and(|b| created >= b)
            || bounds.1.is_some_and(|s| created <= s)
            || !labels.iter().all(|l| has_label(d, l))
        {
            continue;
        }
        let mut summary = summary(d, created);
        if !references.is_empty() {
            summary.repo_tags.retain(|t| {
                references
                    .iter()
                    .any(|pattern| glob_match(pattern, t) || glob_match(pattern, repository(t)))
            });
            if summary.repo_tags.is_empty() {
                continue;
            }
        }
        out.push(summary);
    }
    // Newest first, as dockerd sorts.
    out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
    Ok(response::json(StatusCode::OK, &out))
}

fn created_unix(d: &ImageDetails) -> i64 {
    d.config
        .created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map_or(0, |t| t.timestamp())
}

fn labels(d: &ImageDetails) -> BTreeMap<String, String> {
    d.config
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

fn has_label(d: &ImageDetails, filter: &str) -> bool {
    let labels = labels(d);
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

/// Go's `path.Match` for the patterns `reference` filters use: `*` (not across `/`), `?`,
/// literal characters otherwise.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => n.first().is_some_and(|&c| c != '/') && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(&p, &n)
}

/// `repo@digest` for each repository the image is tagged in: the digest of the manifest
/// as stored (for a pull, of what the tag pointed at), as Docker 25+'s containerd store
/// reports it.
fn repo_digests(d: &ImageDetails) -> Vec<String> {
    let digest = d
        .record
        .index_digest
        .as_ref()
        .unwrap_or(&d.record.manifest_digest);
    let repos: BTreeSet<String> = d
        .tags
        .iter()
        .map(|t| repository(&familiar(t)).to_owned())
        .collect();
    repos.into_iter().map(|r| format!("{r}@{digest}")).collect()
}

fn summary(d: &ImageDetails, created: i64) -> ImageSummary {
    let size = i64::try_from(d.size).unwrap_or(i64::MAX);
    ImageSummary {
        id: d.record.config_digest.to_string(),
        parent_id: String::new(),
        repo_tags: d.tags.iter().map(|t| familiar(t)).collect(),
        repo_digests: repo_digests(d),
        created,
        size,
        shared_size: -1,
        virtual_size: size,
        labels: labels(d),
        containers: -1,
    }
}

async fn inspect(state: &Arc<DaemonState>, name: String) -> Result<Response<Body>, ApiError> {
    let images = state.images.clone();
    let (details, dirs) = blocking(move || {
        let record = images.record(&name)?;
        let tags = images
            .lock_store()?
            .list()
            .into_iter()
            .find(|s| s.record.config_digest == record.config_digest)
            .map(|s| s.tags)
            .unwrap_or_default();
        let dirs = images.layer_dirs(&record);
        Ok((images.details(record, tags)?, dirs))
    })
    .await?;
    Ok(response::json(
        StatusCode::OK,
        &inspect_body(&details, &dirs),
    ))
}

fn inspect_body(d: &ImageDetails, dirs: &[std::path::PathBuf]) -> ImageInspect {
    let raw = |key: &str| {
        d.raw_config
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let size = i64::try_from(d.size).unwrap_or(i64::MAX);
    // overlay's lowerdir order: top first.
    let mut data = BTreeMap::new();
    if let Some((top, lower)) = dirs.split_last() {
        data.insert("UpperDir".to_owned(), top.display().to_string());
        if !lower.is_empty() {
            let lowers: Vec<String> = lower
                .iter()
                .rev()
                .map(|p| p.display().to_string())
                .collect();
            data.insert("LowerDir".to_owned(), lowers.join(":"));
        }
    }
    ImageInspect {
        id: d.record.config_digest.to_string(),
        repo_tags: d.tags.iter().map(|t| familiar(t)).collect(),
        repo_digests: repo_digests(d),
        parent: String::new(),
        comment: raw("comment"),
        // Go's zero time when the image does not say, as dockerd prints it.
        created: d
            .config
            .created
            .clone()
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned()),
        docker_version: raw("docker_version"),
        author: raw("author"),
        config: container_config(d.config.config.as_ref()),
        architecture: d.config.architecture.clone(),
        variant: d.config.variant.clone().unwrap_or_default(),
        os: d.config.os.clone(),
        size,
        virtual_size: size,
        graph_driver: GraphDriver {
            name: "overlay2".to_owned(),
            data,
        },
        root_fs: RootFs {
            kind: "layers".to_owned(),
            layers: d
                .config
                .rootfs
                .diff_ids
                .iter()
                .map(Digest::to_string)
                .collect(),
        },
    }
}

/// The image config's runtime defaults in the API's container-config shape.
fn container_config(c: Option<&manifest::ContainerConfig>) -> ContainerConfig {
    let Some(c) = c else {
        return ContainerConfig::default();
    };
    let set = |m: &Option<BTreeMap<String, serde_json::Value>>| -> Option<StringSet> {
        m.as_ref()
            .map(|m| m.keys().map(|k| (k.clone(), Default::default())).collect())
    };
    ContainerConfig {
        user: c.user.clone().unwrap_or_default(),
        env: c.env.clone().unwrap_or_default(),
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        exposed_ports: set(&c.exposed_ports),
        volumes: set(&c.volumes),
        labels: c.labels.clone().unwrap_or_default(),
        stop_signal: c.stop_signal.clone().unwrap_or_default(),
        ..ContainerConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Tag, delete

/// `POST /images/{name}/tag?repo=&tag=`: 201 with no body, as dockerd.
async fn tag(
    state: &Arc<DaemonState>,
    name: String,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let repo = query.get("repo").unwrap_or("");
    if repo.is_empty() {
        return Err(ApiError::bad_request(
            "repository name must have at least one component",
        ));
    }
    let target = match query.get("tag").unwrap_or("") {
        "" => parse_reference(repo)?,
        tag => parse_reference(&format!("{repo}:{tag}"))?,
    };
    if target.digest().is_some() {
        return Err(ApiError::bad_request(
            "refusing to create a tag with a digest reference",
        ));
    }
    let images = state.images.clone();
    let id = {
        let target = target.clone();
        blocking(move || {
            let record = images.record(&name)?;
            images
                .lock_store()?
                .tag(&target, &record.manifest_digest)
                .map_err(|e| image_error(&name, e))?;
            Ok(record.config_digest)
        })
        .await?
    };
    image_event(state, "tag", &id.to_string(), &target.familiar());
    Ok(response::empty(StatusCode::CREATED))
}

/// `DELETE /images/{name}?force=`: untag and delete by `docker rmi`'s rules (the image
/// store has them), then collect what nothing references any more.
async fn delete(
    state: &Arc<DaemonState>,
    name: String,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let force = query.bool("force");
    let images = state.images.clone();
    let containers = state.containers.clone();
    let (id, removed) = blocking(move || {
        let id = images.record(&name)?.config_digest;
        let in_use = containers.images_in_use();
        let removed = images
            .lock_store()?
            .remove(&name, &in_use, force)
            .map_err(|e| image_error(&name, e))?;
        Ok((id, removed))
    })
    .await?;
    let id_text = id.to_string();
    let mut items = Vec::new();
    for t in &removed.untagged {
        let name = familiar(t);
        image_event(state, "untag", &id_text, &name);
        items.push(ImageDeleteItem {
            untagged: Some(name),
            deleted: None,
        });
    }
    if !removed.deleted.is_empty() {
        image_event(state, "delete", &id_text, &id_text);
        items.push(ImageDeleteItem {
            untagged: None,
            deleted: Some(id_text),
        });
        for layer in collect_garbage(state).await {
            items.push(ImageDeleteItem {
                untagged: None,
                deleted: Some(layer.to_string()),
            });
        }
    }
    Ok(response::json(StatusCode::OK, &items))
}

/// Runs gc now if no pull, load or import is writing (returning the layers removed), else
/// leaves it to a task that waits for them: `docker rmi` should not wait for an unrelated
/// pull.
async fn collect_garbage(state: &Arc<DaemonState>) -> Vec<Digest> {
    async fn run(state: Arc<DaemonState>) -> Vec<Digest> {
        let images: Arc<ImageService> = state.images.clone();
        let containers = state.containers.clone();
        let result = blocking(move || {
            // What containers use is read right before the sweep, not at rmi time.
            let in_use: InUse = containers.images_in_use();
            images.gc(&in_use)
        })
        .await;
        match result {
            Ok(plan) => plan.layers,
            Err(err) => {
                tracing::warn!(%err, "image gc failed; it runs again after the next rmi");
                Vec::new()
            }
        }
    }
    match state.images.writers.try_write() {
        Ok(guard) => {
            let layers = run(state.clone()).await;
            drop(guard);
            layers
        }
        Err(_) => {
            let state = state.clone();
            tokio::spawn(async move {
                let _guard = state.images.writers.write().await;
                run(state.clone()).await;
            });
            Vec::new()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Push

/// `POST /images/{name}/push?tag=`: the tag given, or with none every tag of the
/// repository (`docker push --all-tags`).
async fn push(
    state: &Arc<DaemonState>,
    name: &str,
    query: &Query,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let repo = parse_reference(name)?;
    let explicit_tag = name
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    let wanted: Option<String> = match query.get("tag").unwrap_or("") {
        "" if explicit_tag || repo.digest().is_some() => Some(repo.to_string()),
        "" => None,
        tag => Some(parse_reference(&format!("{}:{tag}", repo.name()))?.to_string()),
    };
    let images = state.images.clone();
    let repo_name = repo.name();
    let targets: Vec<(Reference, ImageRecord)> = {
        let wanted = wanted.clone();
        blocking(move || {
            let store = images.lock_store()?;
            let keys: Vec<String> = match wanted {
                Some(key) => vec![key],
                None => store
                    .list()
                    .into_iter()
                    .flat_map(|s| s.tags)
                    .filter(|t| repository(t) == repo_name)
                    .collect(),
            };
            let mut out = Vec::new();
            for key in keys {
                let record = store.resolve(&key).cloned().map_err(|_| {
                    ApiError::not_found(format!(
                        "An image does not exist locally with the tag: {}",
                        familiar(&key)
                    ))
                })?;
                out.push((parse_reference(&key)?, record));
            }
            Ok(out)
        })
        .await?
    };
    if targets.is_empty() {
        return Err(ApiError::not_found(format!(
            "An image does not exist locally with the tag: {}",
            repo.familiar()
        )));
    }
    let client = registry_client(&repo, registry_auth(req)?)?;
    let pusher = Pusher::new(client, state.images.content.clone(), PushConfig::default());
    let (tx, body) = response::channel();
    let state = state.clone();
    tokio::spawn(async move {
        let shown_repo = repository(&repo.familiar()).to_owned();
        send(
            &tx,
            &JsonMessage::status("", format!("The push refers to repository [{shown_repo}]")),
        )
        .await;
        for (reference, record) in targets {
            if let Err(message) = push_one(&state, &pusher, &reference, &record, &tx).await {
                send(&tx, &JsonMessage::error(message)).await;
                return;
            }
        }
    });
    Ok(stream_response(body))
}

async fn push_one(
    state: &Arc<DaemonState>,
    pusher: &Pusher,
    reference: &Reference,
    record: &ImageRecord,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), String> {
    let images = state.images.clone();
    // Shared with pulls: gc must not sweep blobs out from under the upload.
    let _reading = images.writers.read().await;
    let image = {
        let images = images.clone();
        let (record, reference) = (record.clone(), reference.clone());
        blocking(move || images.push_image(&record, &reference))
            .await
            .map_err(|e| e.message)?
    };
    let with_detail = |d: &Digest, status: String| JsonMessage {
        progress_detail: Some(ProgressDetail::default()),
        ..JsonMessage::status(short(d), status)
    };
    // Top layer first, as dockerd lists them.
    for layer in image.manifest.layers.iter().rev() {
        send(tx, &with_detail(&layer.digest, "Preparing".to_owned())).await;
    }
    let report = pusher
        .push(reference, &image)
        .await
        .map_err(|e| e.to_string())?;
    for layer in image.manifest.layers.iter().rev() {
        let d = &layer.digest;
        let status = if report.existing.contains(d) {
            "Layer already exists".to_owned()
        } else if report.mounted.contains(d) {
            format!("Mounted from {}", reference.path())
        } else {
            "Pushed".to_owned()
        };
        send(tx, &with_detail(d, status)).await;
    }
    let size = images
        .content
        .size(&report.manifest_digest)
        .ok()
        .and_then(|s| i64::try_from(s).ok())
        .unwrap_or_default();
    let tag = reference
        .tag()
        .map_or_else(|| report.manifest_digest.to_string(), str::to_owned);
    send(
        tx,
        &JsonMessage::status(
            "",
            format!("{tag}: digest: {} size: {size}", report.manifest_digest),
        ),
    )
    .await;
    send(
        tx,
        &JsonMessage {
            progress_detail: Some(ProgressDetail::default()),
            aux: Some(PushResult {
                tag,
                digest: report.manifest_digest.to_string(),
                size,
            }),
            ..JsonMessage::default()
        },
    )
    .await;
    let shown = reference.familiar();
    image_event(state, "push", &shown, &shown);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Save

/// A blocking [`Write`] into a streamed body; fails once the client has gone, which
/// stops the archive writer.
struct BodyWriter {
    tx: mpsc::Sender<Bytes>,
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `GET /images/{name}/get`, `GET /images/get?names=`: one archive with every image
/// named. Names resolve before the first byte, so an unknown one is a 404; a tag keeps
/// its name in the archive, an ID is saved without names, as dockerd does.
async fn save(state: &Arc<DaemonState>, names: Vec<String>) -> Result<Response<Body>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    let images = state.images.clone();
    let (plan, ids): (Vec<SaveImage>, BTreeSet<String>) = {
        let images = images.clone();
        blocking(move || {
            let store = images.lock_store()?;
            let mut plan: Vec<SaveImage> = Vec::new();
            let mut ids = BTreeSet::new();
            for name in &names {
                let record = store.resolve(name).map_err(|e| image_error(name, e))?;
                ids.insert(record.config_digest.to_string());
                let tag = Reference::parse(name)
                    .ok()
                    .filter(|r| r.digest().is_none() && store.resolve(&r.to_string()).is_ok());
                match plan
                    .iter_mut()
                    .find(|p| p.manifest_digest == record.manifest_digest)
                {
                    Some(p) => p.tags.extend(tag.filter(|t| !p.tags.contains(t))),
                    None => plan.push(SaveImage {
                        manifest_digest: record.manifest_digest.clone(),
                        tags: tag.into_iter().collect(),
                    }),
                }
            }
            Ok((plan, ids))
        })
        .await?
    };
    for id in &ids {
        // dockerd's `save` event: per image, by ID.
        image_event(state, "save", id, id);
    }
    let (tx, body) = response::channel();
    tokio::spawn(async move {
        // Held while writing: gc must not remove a blob the archive is about to read.
        let _reading = images.writers.read().await;
        let images2 = images.clone();
        let result = blocking(move || {
            let mut out = io::BufWriter::with_capacity(256 << 10, BodyWriter { tx });
            images2.save(&plan, &mut out)?;
            out.flush()
                .map_err(|e| ApiError::internal(format!("sending the archive: {e}")))
        })
        .await;
        if let Err(err) = result {
            // The status went out already; a cut-off body is all the client can see.
            tracing::warn!(%err, "image save stopped");
        }
    });
    Ok(response::with_type(
        StatusCode::OK,
        body,
        "application/x-tar",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(
            decode_base64("eyJhIjoxfQ==").as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        assert_eq!(
            decode_base64("eyJhIjoxfQ").as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        assert_eq!(decode_base64("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode_base64("+/8=").as_deref(), Some(&[0xfb, 0xff][..]));
        assert!(decode_base64("a b").is_none());
    }

    #[test]
    fn reference_from_pull_parameters() {
        let r = pull_reference("busybox", "latest").expect("ok");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        let r = pull_reference("127.0.0.1:5000/a/b", "v1").expect("ok");
        assert_eq!(r.to_string(), "127.0.0.1:5000/a/b:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = pull_reference("busybox", &d).expect("ok");
        assert_eq!(r.digest().map(Digest::to_string), Some(d));
        assert_eq!(
            pull_reference("busybox:1", "").expect("ok").tag(),
            Some("1")
        );
        let e = pull_reference("BusyBox", "").expect_err("uppercase");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("invalid reference format"));
        assert!(pull_reference("a", "sha256:zz").is_err());
        assert!(pull_reference("a", "bad tag").is_err());
    }

    #[test]
    fn globs_as_go_path_match() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("*", "127.0.0.1:5000/a"));
        assert!(glob_match("*/a", "127.0.0.1:5000/a"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(!glob_match("busybox", "busybox:latest"));
    }

    #[test]
    fn repository_of_a_name() {
        assert_eq!(repository("busybox:latest"), "busybox");
        assert_eq!(repository("127.0.0.1:5000/a:v1"), "127.0.0.1:5000/a");
        assert_eq!(repository("127.0.0.1:5000/a"), "127.0.0.1:5000/a");
    }

    #[test]
    fn sizes_and_bars_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(12_000), "12kB");
        let bar = progress_bar(50, 100);
        assert!(bar.starts_with("[=========================>"), "{bar}");
        assert!(bar.ends_with("50B/100B"), "{bar}");
    }

    #[test]
    fn pull_lines_are_throttled_per_layer() {
        let d = Digest::of(b"layer");
        let mut f = PullFormatter::default();
        let down = |current| PullProgress::Downloading {
            blob: d.clone(),
            current,
            total: 100,
        };
        assert_eq!(f.lines(down(10)).len(), 1);
        assert!(f.lines(down(20)).is_empty(), "within 100 ms");
        assert_eq!(f.lines(down(100)).len(), 1, "the last one always goes");
        let done = f.lines(PullProgress::LayerDone(d.clone()));
        assert_eq!(done[0].status, "Pull complete");
        assert_eq!(done[0].id, d.hex()[..12]);
        assert_eq!(
            serde_json::to_string(&done[0]).expect("json"),
            format!(
                r#"{{"status":"Pull complete","progressDetail":{{}},"id":"{}"}}"#,
                &d.hex()[..12]
            )
        );
    }

    #[test]
    fn platforms() {
        let p = parse_platform("linux/arm64/v8").expect("ok");
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "arm64", Some("v8"))
        );
        assert!(parse_platform("linux").is_err());
        assert_eq!(parse_platform("").expect("ok"), Platform::host());
    }
}
