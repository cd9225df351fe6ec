//! Pulling from an OCI distribution registry.
//!
//! [`RegistryClient`] speaks the protocol (distribution-spec, Docker token auth);
//! [`Puller`] drives a pull into a [`ContentStore`] and a [`LayerStore`]. Every byte is
//! checked against a digest before it is used: manifests against the digest asked for
//! or the `Docker-Content-Digest` header, blobs against their descriptor, unpacked
//! layers against the config's DiffIDs.
//!
//! Redirects are followed by hand (at most 10) so that `Authorization` is sent only to
//! the registry host itself, never to the CDN a blob redirect points at (spec: "MUST NOT
//! forward Authorization headers across host boundaries"), and so that an https
//! registry cannot redirect to plain http.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};

use crate::blob_tee::{self, BlobTee};
use crate::content_store::{ContentError, ContentStore, Ingest};
use crate::digest::{chain_ids, Digest};
use crate::manifest::{
    self, media_type, AnyManifest, ImageConfig, Manifest, ManifestError, Platform,
};
use crate::reference::Reference;
use crate::snapshot::{LayerStore, SnapshotError};

const MAX_REDIRECTS: usize = 10;
/// A blob download that breaks off is resumed with `Range` this many times.
const BLOB_ATTEMPTS: usize = 4;
/// Manifests and configs are small; refuse to buffer anything bigger (containerd: 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}: {source}")]
    Http {
        method: Method,
        url: String,
        source: reqwest::Error,
    },
    #[error("{method} {url}: registry answered {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url}: {what}")]
    Protocol { url: String, what: String },
    #[error("authenticating to {host}: {what}")]
    Auth { host: String, what: String },
    #[error("{what} {url}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: &'static str,
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("manifest {reference}: {source}")]
    Manifest {
        reference: String,
        source: ManifestError,
    },
    #[error("{reference}: no image for {wanted} (the index has: {available})")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("{reference}: {what}")]
    BadImage { reference: String, what: String },
    #[error("reading registry credentials {path}: {what}")]
    Credentials { path: String, what: String },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("a pull task failed: {0}")]
    Task(String),
}

type Result<T> = std::result::Result<T, RegistryError>;

/// Username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <redacted>)", self.username)
    }
}

/// Credentials read from a Docker `config.json` (`auths`), by registry host.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: HashMap<String, Credential>,
}

/// The keys Docker writes for Docker Hub.
const DOCKER_HUB_KEYS: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.docker.io",
];

impl Credentials {
    /// Reads `auths` from a Docker config.json. `credsStore`/`credHelpers` (external
    /// programs) are not run.
    pub fn load(path: &Path) -> Result<Credentials> {
        let bad = |what: String| RegistryError::Credentials {
            path: path.display().to_string(),
            what,
        };
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            auth: Option<String>,
            #[serde(default)]
            username: Option<String>,
            #[serde(default)]
            password: Option<String>,
        }
        let file: File = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        let mut by_host = HashMap::new();
        for (key, entry) in file.auths {
            let cred = match (
                entry.auth.as_deref().filter(|a| !a.is_empty()),
                entry.username,
                entry.password,
            ) {
                (Some(auth), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|e| bad(format!("{key}: auth is not base64: {e}")))?;
                    let decoded = String::from_utf8(decoded)
                        .map_err(|_| bad(format!("{key}: auth is not UTF-8")))?;
                    let Some((u, p)) = decoded.split_once(':') else {
                        return Err(bad(format!("{key}: auth is not user:password")));
                    };
                    Credential {
                        username: u.to_owned(),
                        password: p.to_owned(),
                    }
                }
                (None, Some(username), Some(password)) => Credential { username, password },
                _ => continue,
            };
            by_host.insert(normalize_auth_key(&key), cred);
        }
        Ok(Credentials { by_host })
    }

    pub fn insert(&mut self, host: &str, cred: Credential) {
        self.by_host.insert(normalize_auth_key(host), cred);
    }

    /// The credential for a registry host (as in [`Reference::registry_host`]).
    pub fn get(&self, host: &str) -> Option<&Credential> {
        let key = normalize_auth_key(host);
        self.by_host.get(&key)
    }
}

/// `https://index.docker.io/v1/` and `docker.io` name the same thing: strip scheme and
/// path, and fold Docker Hub's names into one.
fn normalize_auth_key(key: &str) -> String {
    let no_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = no_scheme
        .split('/')
        .next()
        .unwrap_or(no_scheme)
        .to_ascii_lowercase();
    if DOCKER_HUB_KEYS.contains(&host.as_str()) {
        "docker.io".to_owned()
    } else {
        host
    }
}

/// A parsed `WWW-Authenticate` challenge (RFC 7235 / RFC 6750).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased: `bearer` or `basic`.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="...",service="...",scope="repository:a:pull,push"`. Values may
/// be quoted (with commas and `\"` inside) or bare tokens.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            return None;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.to_ascii_lowercase(), value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// Whether plain http is allowed for `host[:port]`: loopback only, unless configured.
pub fn is_insecure_host(host: &str, insecure: &[String]) -> bool {
    if insecure.iter().any(|h| h == host) {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    if name == "localhost" || name == "::1" {
        return true;
    }
    name.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Extra `host[:port]`s to reach over plain http (loopback always may).
    pub insecure_registries: Vec<String>,
    pub credentials: Credentials,
    /// Which image to take from a multi-platform index.
    pub platform: Platform,
    /// Blobs downloaded at once (containerd's CRI default: 3).
    pub max_concurrent_downloads: usize,
    pub user_agent: String,
    /// Limit on establishing a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Limit on each wait for bytes, response headers included, reset by every read: a
    /// registry that stops sending fails the request instead of hanging the pull (a
    /// whole-request limit would fail big layers on slow links).
    pub read_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            insecure_registries: Vec::new(),
            credentials: Credentials::default(),
            platform: Platform::host(),
            max_concurrent_downloads: 3,
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Request counters, for tests and for the daemon's pull progress.
#[derive(Debug, Default)]
pub struct TransferStats {
    pub requests: AtomicU64,
    pub manifest_gets: AtomicU64,
    pub blob_gets: AtomicU64,
    pub token_fetches: AtomicU64,
    pub bytes: AtomicU64,
    /// Push: `HEAD`s that found the blob already in the target repository.
    pub blob_exists: AtomicU64,
    /// Push: blobs made available by a cross-repository mount (no bytes sent).
    pub blob_mounts: AtomicU64,
    /// Push: blobs uploaded (monolithic or chunked).
    pub blob_uploads: AtomicU64,
    /// Push: `PATCH` requests of chunked uploads.
    pub upload_chunks: AtomicU64,
    /// Pull: layers unpacked while their blob downloaded (the tee saw every byte).
    pub streamed_unpacks: AtomicU64,
    /// Pull: layers unpacked from a stored blob (it was there, or its download resumed).
    pub blob_unpacks: AtomicU64,
    /// Push: blob bytes sent.
    pub bytes_sent: AtomicU64,
    pub manifest_puts: AtomicU64,
}

impl TransferStats {
    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
enum HostAuth {
    None,
    Basic,
    Bearer(Challenge),
}

/// A registry client. Cheap to clone; clones share the token cache and counters.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    config: Arc<RegistryConfig>,
    /// By registry host: the auth scheme `/v2/` asked for.
    host_auth: Arc<Mutex<HashMap<String, HostAuth>>>,
    /// By (host, scope): a bearer token.
    tokens: Arc<Mutex<HashMap<(String, String), String>>>,
    stats: Arc<TransferStats>,
}

/// One resolved response with its final URL (after redirects).
pub(crate) struct Fetched {
    pub(crate) response: reqwest::Response,
    pub(crate) url: Url,
}

impl RegistryClient {
    pub fn new(config: RegistryConfig) -> Result<RegistryClient> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .use_rustls_tls()
            .build()
            .map_err(|source| RegistryError::Http {
                method: Method::GET,
                url: String::new(),
                source,
            })?;
        Ok(RegistryClient {
            http,
            config: Arc::new(config),
            host_auth: Arc::default(),
            tokens: Arc::default(),
            stats: Arc::default(),
        })
    }

    pub fn stats(&self) -> &TransferStats {
        &self.stats
    }

    fn base(&self, host: &str) -> Result<Url> {
        let scheme = if is_insecure_host(host, &self.config.insecure_registries) {
            "http"
        } else {
            "https"
        };
        let s = format!("{scheme}://{host}/v2/");
        Url::parse(&s).map_err(|e| RegistryError::Protocol {
            url: s,
            what: e.to_string(),
        })
    }

    /// `GET /v2/`: checks that the host is a registry and learns its auth scheme.
    pub async fn ping(&self, host: &str) -> Result<()> {
        self.host_auth_for(host).await.map(|_| ())
    }

    async fn host_auth_for(&self, host: &str) -> Result<HostAuth> {
        if let Some(a) = self.lock_host_auth().get(host) {
            return Ok(a.clone());
        }
        let url = self.base(host)?;
        let fetched = self
            .send(Method::GET, url.clone(), HeaderMap::new(), None, None)
            .await?;
        let status = fetched.response.status();
        let auth = if status.is_success() {
            HostAuth::None
        } else if status == StatusCode::UNAUTHORIZED {
            let challenge = fetched
                .response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(parse_challenge)
                .find(|c| c.scheme == "bearer" || c.scheme == "basic");
            match challenge {
                Some(c) if c.scheme == "bearer" => HostAuth::Bearer(c),
                Some(_) => HostAuth::Basic,
                None => {
                    return Err(RegistryError::Auth {
                        host: host.to_owned(),
                        what: "401 without a Bearer or Basic WWW-Authenticate challenge".into(),
                    })
                }
            }
        } else {
            return Err(status_error(Method::GET, fetched).await);
        };
        self.lock_host_auth().insert(host.to_owned(), auth.clone());
        Ok(auth)
    }

    fn lock_host_auth(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostAuth>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        self.host_auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Authorization` value for `host` and `scopes` (`repository:<name>:pull`, ...).
    async fn authorization(
        &self,
        host: &str,
        scopes: &[String],
        refresh: bool,
    ) -> Result<Option<HeaderValue>> {
        let cred = self.config.credentials.get(host).cloned();
        match self.host_auth_for(host).await? {
            HostAuth::None => Ok(None),
            HostAuth::Basic => match cred {
                Some(c) => Ok(Some(basic_header(&c)?)),
                None => Err(RegistryError::Auth {
                    host: host.to_owned(),
                    what: "the registry wants a username and password; none are configured".into(),
                }),
            },
            HostAuth::Bearer(challenge) => {
                let key = (host.to_owned(), scopes.join(" "));
                if !refresh {
                    if let Some(token) = self.lock_tokens().get(&key) {
                        return bearer_header(host, token).map(Some);
                    }
                }
                let token = self
                    .fetch_token(host, &challenge, scopes, cred.as_ref())
                    .await?;
                let header = bearer_header(host, &token)?;
                self.lock_tokens().insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// The token flow (distribution `docs/spec/auth/token.md`): GET the realm with the
    /// service and each scope (one `scope=` per scope, as the spec wants for a
    /// cross-repository mount), with Basic credentials if there are any.
    async fn fetch_token(
        &self,
        host: &str,
        challenge: &Challenge,
        scopes: &[String],
        cred: Option<&Credential>,
    ) -> Result<String> {
        let auth_err = |what: String| RegistryError::Auth {
            host: host.to_owned(),
            what,
        };
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| auth_err("Bearer challenge without a realm".into()))?;
        let mut url = Url::parse(realm).map_err(|e| auth_err(format!("realm {realm:?}: {e}")))?;
        if url.scheme() != "https" {
            let realm_host = url.host_str().unwrap_or("");
            if !(url.scheme() == "http"
                && is_insecure_host(realm_host, &self.config.insecure_registries))
            {
                return Err(auth_err(format!(
                    "refusing token realm {realm} over plain http"
                )));
            }
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = challenge.params.get("service") {
                q.append_pair("service", service);
            }
            for scope in scopes {
                q.append_pair("scope", scope);
            }
        }
        let mut headers = HeaderMap::new();
        if let Some(c) = cred {
            headers.insert(AUTHORIZATION, basic_header(c)?);
        }
        TransferStats::bump(&self.stats.token_fetches, 1);
        let fetched = self
            .send(Method::GET, url.clone(), headers, None, None)
            .await?;
        if !fetched.response.status().is_success() {
            return Err(status_error(Method::GET, fetched).await);
        }
        let body = read_limited(fetched, MAX_MANIFEST_BYTES).await?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| auth_err(format!("token response is not JSON: {e}")))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_err("token response has neither token nor access_token".into()))
    }

    /// Sends a request, following redirects by hand. `auth` goes only to `auth_origin`.
    /// `body` is `Bytes` so a redirect or a retry re-sends it without copying.
    async fn send(
        &self,
        method: Method,
        mut url: Url,
        headers: HeaderMap,
        auth: Option<(HeaderValue, Url)>,
        body: Option<bytes::Bytes>,
    ) -> Result<Fetched> {
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body {
                req = req.body(body.clone());
            }
            if let Some((value, origin)) = &auth {
                if same_origin(origin, &url) {
                    req = req.header(AUTHORIZATION, value.clone());
                }
            }
            TransferStats::bump(&self.stats.requests, 1);
            let response = req.send().await.map_err(|source| RegistryError::Http {
                method: method.clone(),
                url: url.to_string(),
                source,
            })?;
            if !response.status().is_redirection() {
                return Ok(Fetched { response, url });
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| RegistryError::Protocol {
                    url: url.to_string(),
                    what: format!("{} without a Location", response.status()),
                })?;
            let next = url.join(location).map_err(|e| RegistryError::Protocol {
                url: url.to_string(),
                what: format!("bad redirect {location:?}: {e}"),
            })?;
            let next_host = host_port(&next);
            if url.scheme() == "https"
                && next.scheme() != "https"
                && !is_insecure_host(&next_host, &self.config.insecure_registries)
            {
                return Err(RegistryError::Protocol {
                    url: url.to_string(),
                    what: format!("refusing redirect from https to {next}"),
                });
            }
            if next.scheme() != "https" && next.scheme() != "http" {
                return Err(RegistryError::Protocol {
                    url: url.to_string(),
                    what: format!("refusing redirect to {next}"),
                });
            }
            url = next;
        }
        Err(RegistryError::Protocol {
            url: url.to_string(),
            what: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// A pull request to the registry for `reference`'s repository, authorized, retried
    /// once with a fresh token on 401.
    async fn registry_request(
        &self,
        reference: &Reference,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> Result<Fetched> {
        let url = self.registry_url(reference.registry_host(), path)?;
        let scopes = [format!("repository:{}:pull", reference.path())];
        self.request(
            reference.registry_host(),
            &scopes,
            method,
            url,
            headers,
            None,
        )
        .await
    }

    /// `path` (relative to `/v2/`, or an absolute upload `Location`) on `host`.
    pub(crate) fn registry_url(&self, host: &str, path: &str) -> Result<Url> {
        self.base(host)?
            .join(path)
            .map_err(|e| RegistryError::Protocol {
                url: path.to_owned(),
                what: e.to_string(),
            })
    }

    /// A request to `url` on registry `host` with a token for `scopes`, retried once
    /// with a fresh token on 401.
    pub(crate) async fn request(
        &self,
        host: &str,
        scopes: &[String],
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<bytes::Bytes>,
    ) -> Result<Fetched> {
        // Credentials go to the registry's own origin only, not to an upload Location
        // or a redirect on another host.
        let origin = self.base(host)?;
        let mut refresh = false;
        loop {
            let auth = self
                .authorization(host, scopes, refresh)
                .await?
                .map(|v| (v, origin.clone()));
            let fetched = self
                .send(
                    method.clone(),
                    url.clone(),
                    headers.clone(),
                    auth,
                    body.clone(),
                )
                .await?;
            if fetched.response.status() == StatusCode::UNAUTHORIZED && !refresh {
                // An expired token, or the registry changed its mind: ask again once.
                self.lock_host_auth().remove(host);
                refresh = true;
                continue;
            }
            return Ok(fetched);
        }
    }

    /// Fetches a manifest by tag or digest and checks its digest: against the digest in
    /// the reference if there is one, else against `Docker-Content-Digest`. Returns the
    /// digest, the bytes and the Content-Type.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<(Digest, Vec<u8>, Option<String>)> {
        let path = format!(
            "{}/manifests/{}",
            reference.path(),
            reference.manifest_ref()
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(media_type::MANIFEST_ACCEPT),
        );
        TransferStats::bump(&self.stats.manifest_gets, 1);
        let fetched = self
            .registry_request(reference, Method::GET, &path, headers)
            .await?;
        if !fetched.response.status().is_success() {
            return Err(status_error(Method::GET, fetched).await);
        }
        let url = fetched.url.to_string();
        let header_digest = digest_header(&fetched.response, &url)?;
        let content_type = fetched
            .response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(fetched, MAX_MANIFEST_BYTES).await?;
        let actual = Digest::of(&body);
        let expected = reference.digest().cloned().or(header_digest);
        if let Some(expected) = expected {
            if expected != actual {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest",
                    url,
                    expected,
                    actual,
                });
            }
        }
        Ok((actual, body, content_type))
    }

    /// `HEAD` on a manifest: its digest without downloading it (and without spending
    /// Docker Hub's pull quota, which counts GETs). `None` if the registry did not say.
    pub async fn head_manifest(&self, reference: &Reference) -> Result<Option<Digest>> {
        let path = format!(
            "{}/manifests/{}",
            reference.path(),
            reference.manifest_ref()
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(media_type::MANIFEST_ACCEPT),
        );
        let fetched = self
            .registry_request(reference, Method::HEAD, &path, headers)
            .await?;
        if !fetched.response.status().is_success() {
            return Err(status_error(Method::HEAD, fetched).await);
        }
        digest_header(&fetched.response, fetched.url.as_str())
    }

    /// Downloads blob `digest` of `size` bytes into `store`, unless it is there already.
    /// Resumes a partial ingest and a broken-off transfer with `Range`; the store checks
    /// the digest before the blob becomes visible.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        store: &ContentStore,
    ) -> Result<bool> {
        self.fetch_blob_observed(reference, digest, size, store, &|_| {})
            .await
    }

    /// [`RegistryClient::fetch_blob`], calling `on_bytes` with the bytes held so far
    /// (a resumed ingest starts above zero) after each chunk: a progress bar's feed.
    pub async fn fetch_blob_observed(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        store: &ContentStore,
        on_bytes: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<bool> {
        let fetched = self
            .fetch_blob_teed(
                reference,
                digest,
                size,
                store,
                on_bytes,
                BlobTee::none(),
                None,
            )
            .await?;
        Ok(matches!(fetched, BlobFetch::Downloaded { .. }))
    }

    /// [`RegistryClient::fetch_blob_observed`] that also hands the bytes to `tee` as they
    /// arrive. Another writer of the same blob (a concurrent pull) is waited for, not an
    /// error: its blob, once committed, serves this pull too. `slot` (a download slot)
    /// is given back when the last byte is in, before the fsync: the next download need
    /// not wait for the disk.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_blob_teed(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        store: &ContentStore,
        on_bytes: &(dyn Fn(u64) + Send + Sync),
        mut tee: BlobTee,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<BlobFetch> {
        if store.contains(digest) {
            return Ok(BlobFetch::Present);
        }
        let ingest = {
            let (store, digest) = (store.clone(), digest.clone());
            tokio::task::spawn_blocking(move || store.ingest_wait(&digest, Some(size)))
                .await
                .map_err(|e| RegistryError::Task(e.to_string()))??
        };
        let Some(mut ingest) = ingest else {
            return Ok(BlobFetch::Present);
        };
        if let Err(e) = self
            .download(reference, digest, size, &mut ingest, on_bytes, &mut tee)
            .await
        {
            // Keep bytes worth resuming; an empty ingest file is only clutter.
            if ingest.offset() == 0 {
                if let Err(abort) = ingest.abort() {
                    tracing::warn!(blob = %digest, error = %abort, "removing an empty ingest");
                }
            }
            return Err(e);
        }
        drop(slot);
        let streamed = ingest.offset() == size && tee.finish().await;
        drop(tee);
        // commit() fsyncs: keep it off the async workers.
        tokio::task::spawn_blocking(move || ingest.commit())
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))??;
        Ok(BlobFetch::Downloaded { streamed })
    }

    /// The transfer part of [`RegistryClient::fetch_blob`]: fills `ingest` up to `size`
    /// bytes, resuming with `Range` after a break.
    async fn download(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        ingest: &mut Ingest,
        on_bytes: &(dyn Fn(u64) + Send + Sync),
        tee: &mut BlobTee,
    ) -> Result<()> {
        let path = format!("{}/blobs/{}", reference.path(), digest);
        let mut last_error = None;
        if ingest.offset() > 0 {
            // An earlier pull's bytes (all of them, when it was killed before the commit):
            // the unpacker will not see them, so the stored blob feeds it.
            tee.abandon();
        }
        for attempt in 0..BLOB_ATTEMPTS {
            let offset = ingest.offset();
            if offset == size {
                break;
            }
            if attempt > 0 {
                // Resuming: the unpacker missed bytes; the stored blob will feed it.
                tee.abandon();
            }
            let mut headers = HeaderMap::new();
            if offset > 0 {
                let range = HeaderValue::from_str(&format!("bytes={offset}-"))
                    .map_err(|e| RegistryError::Task(e.to_string()))?;
                headers.insert(RANGE, range);
            }
            TransferStats::bump(&self.stats.blob_gets, 1);
            let mut fetched = self
                .registry_request(reference, Method::GET, &path, headers)
                .await?;
            match fetched.response.status() {
                StatusCode::PARTIAL_CONTENT if offset > 0 => {}
                StatusCode::OK => {
                    if offset > 0 {
                        // The server ignored the Range: start over.
                        ingest.reset()?;
                    }
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    ingest.reset()?;
                    continue;
                }
                _ => return Err(status_error(Method::GET, fetched).await),
            }
            loop {
                match fetched.response.chunk().await {
                    Ok(Some(chunk)) => {
                        TransferStats::bump(&self.stats.bytes, chunk.len() as u64);
                        ingest.write(&chunk)?;
                        on_bytes(ingest.offset());
                        tee.send(&chunk).await;
                    }
                    Ok(None) => break,
                    Err(source) => {
                        tracing::debug!(blob = %digest, error = %source, "blob download broke off; resuming");
                        last_error = Some(RegistryError::Http {
                            method: Method::GET,
                            url: fetched.url.to_string(),
                            source,
                        });
                        break;
                    }
                }
            }
        }
        match last_error {
            Some(e) if ingest.offset() != size => Err(e),
            // Short or long without a transport error: commit() reports the mismatch.
            _ => Ok(()),
        }
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

fn basic_header(c: &Credential) -> Result<HeaderValue> {
    let raw = format!("{}:{}", c.username, c.password);
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
    .map_err(|e| RegistryError::Task(e.to_string()))?;
    v.set_sensitive(true);
    Ok(v)
}

fn bearer_header(host: &str, token: &str) -> Result<HeaderValue> {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| RegistryError::Auth {
            host: host.to_owned(),
            what: "token is not a valid header value".into(),
        })?;
    v.set_sensitive(true);
    Ok(v)
}

pub(crate) fn digest_header(response: &reqwest::Response, url: &str) -> Result<Option<Digest>> {
    match response.headers().get("docker-content-digest") {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().map_err(|_| RegistryError::Protocol {
                url: url.to_owned(),
                what: "Docker-Content-Digest is not text".into(),
            })?;
            s.trim()
                .parse()
                .map(Some)
                .map_err(|e| RegistryError::Protocol {
                    url: url.to_owned(),
                    what: format!("Docker-Content-Digest: {e}"),
                })
        }
    }
}

async fn read_limited(mut fetched: Fetched, limit: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        match fetched.response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(RegistryError::Protocol {
                        url: fetched.url.to_string(),
                        what: format!("response is larger than {limit} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(source) => {
                return Err(RegistryError::Http {
                    method: Method::GET,
                    url: fetched.url.to_string(),
                    source,
                })
            }
        }
    }
}

pub(crate) async fn status_error(method: Method, fetched: Fetched) -> RegistryError {
    let status = fetched.response.status();
    let url = fetched.url.to_string();
    let body = read_limited(fetched, 4096)
        .await
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim()
                .chars()
                .take(512)
                .collect()
        })
        .unwrap_or_default();
    RegistryError::Status {
        method,
        url,
        status,
        body,
    }
}

/// What [`RegistryClient::fetch_blob_teed`] did.
enum BlobFetch {
    /// The blob was in the store already (or another writer committed it meanwhile).
    Present,
    /// Downloaded and committed; `streamed`: the tee was fed the whole blob in one pass.
    Downloaded { streamed: bool },
}

/// One layer blob to download, and the (ChainID, DiffID) pairs unpacked from it.
struct BlobJob {
    digest: Digest,
    size: u64,
    uses: Vec<(Digest, Digest)>,
}

/// A pulled image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The reference pinned to the manifest's digest.
    pub reference: Reference,
    /// Digest of the platform manifest (for an index: of the entry picked from it).
    pub manifest_digest: Digest,
    /// Digest of what the tag pointed at (an index, or the manifest itself).
    pub index_digest: Digest,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// ChainIDs, bottom to top: what [`crate::snapshot::Snapshotter::create`] takes.
    pub layers: Vec<Digest>,
}

/// What a pull is doing, layer by layer, for a progress display (the daemon turns these
/// into Docker's `Pulling fs layer` / `Downloading` / `Pull complete` lines). Layers are
/// named by their blob digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullProgress {
    /// The manifest is known: these layer blobs, bottom to top, make the image.
    Resolved {
        manifest_digest: Digest,
        layers: Vec<Digest>,
    },
    /// Already unpacked here (by ChainID): nothing to fetch.
    LayerExists(Digest),
    /// Waiting for a download slot.
    LayerWaiting(Digest),
    /// `current` of `total` bytes are stored.
    Downloading {
        blob: Digest,
        current: u64,
        total: u64,
    },
    /// The blob is stored and verified (or was stored already).
    Downloaded(Digest),
    Extracting(Digest),
    /// Unpacked and verified against its DiffID.
    LayerDone(Digest),
}

/// The callback a [`Puller`] reports [`PullProgress`] to. Called from the pull's tasks,
/// so it must be quick (send on a channel, not write to a socket).
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<dyn Fn(PullProgress) + Send + Sync>>);

impl ProgressSink {
    pub fn new(f: impl Fn(PullProgress) + Send + Sync + 'static) -> ProgressSink {
        ProgressSink(Some(Arc::new(f)))
    }

    fn report(&self, p: PullProgress) {
        if let Some(f) = &self.0 {
            f(p)
        }
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressSink(set)"
        } else {
            "ProgressSink(none)"
        })
    }
}

/// Pulls images into a content store and a layer store.
#[derive(Debug, Clone)]
pub struct Puller {
    client: RegistryClient,
    content: ContentStore,
    layers: LayerStore,
    progress: ProgressSink,
}

impl Puller {
    pub fn new(client: RegistryClient, content: ContentStore, layers: LayerStore) -> Puller {
        Puller {
            client,
            content,
            layers,
            progress: ProgressSink::default(),
        }
    }

    /// Reports the pull's progress to `sink`.
    pub fn with_progress(mut self, sink: ProgressSink) -> Puller {
        self.progress = sink;
        self
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Pulls `reference`: resolves it (a HEAD first, so a manifest already stored costs
    /// no GET), picks the platform from an index, then downloads the layers at most
    /// `max_concurrent_downloads` at a time, each unpacked while it downloads (into a
    /// hidden dir that becomes the layer only once the blob's digest has matched).
    /// Layers already unpacked (by ChainID) are neither downloaded nor unpacked again.
    pub async fn pull(&self, reference: &Reference) -> Result<Image> {
        let refname = reference.to_string();
        let (top_digest, top_bytes) = self.resolve_manifest(reference).await?;
        let parsed =
            manifest::parse(None, &top_bytes).map_err(|source| RegistryError::Manifest {
                reference: refname.clone(),
                source,
            })?;
        let (manifest_digest, manifest) = match parsed {
            AnyManifest::Manifest(m) => (top_digest.clone(), *m),
            AnyManifest::Index(index) => {
                let platform = &self.client.config.platform;
                let entry =
                    index
                        .select(platform)
                        .ok_or_else(|| RegistryError::NoMatchingPlatform {
                            reference: refname.clone(),
                            wanted: platform.to_string(),
                            available: index.platforms().join(", "),
                        })?;
                let pinned = reference.with_digest(entry.digest.clone());
                let (digest, bytes) = self.resolve_manifest(&pinned).await?;
                if bytes.len() as u64 != entry.size {
                    return Err(RegistryError::BadImage {
                        reference: refname,
                        what: format!(
                            "manifest {digest} is {} bytes, the index says {}",
                            bytes.len(),
                            entry.size
                        ),
                    });
                }
                match manifest::parse(None, &bytes) {
                    Ok(AnyManifest::Manifest(m)) => (digest, *m),
                    Ok(AnyManifest::Index(_)) => {
                        return Err(RegistryError::BadImage {
                            reference: refname,
                            what: "an index entry for the platform is itself an index".into(),
                        })
                    }
                    Err(source) => {
                        return Err(RegistryError::Manifest {
                            reference: refname,
                            source,
                        })
                    }
                }
            }
        };

        // Refuse what is not a container image before fetching anything more: an OCI
        // artifact (Helm chart, signature, SBOM) has a manifest of the same shape.
        let config_desc = &manifest.config;
        if config_desc.media_type != media_type::OCI_CONFIG
            && config_desc.media_type != media_type::DOCKER_CONFIG
        {
            return Err(RegistryError::BadImage {
                reference: refname,
                what: format!(
                    "config media type {:?} is not a container image config; this is not a container image",
                    config_desc.media_type
                ),
            });
        }
        if let Some(bad) = manifest
            .layers
            .iter()
            .find(|l| !media_type::is_layer(&l.media_type))
        {
            return Err(RegistryError::BadImage {
                reference: refname,
                what: format!(
                    "layer {} has media type {:?}, which is not a container image layer",
                    bad.digest, bad.media_type
                ),
            });
        }
        // The config: small, needed first (it has the DiffIDs).
        self.client
            .fetch_blob(
                reference,
                &config_desc.digest,
                config_desc.size,
                &self.content,
            )
            .await?;
        let config_bytes = self.content.read(&config_desc.digest)?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| RegistryError::BadImage {
                reference: refname.clone(),
                what: format!("image config {}: {e}", config_desc.digest),
            })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(RegistryError::BadImage {
                reference: refname,
                what: format!(
                    "manifest has {} layers but the config has {} diff_ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let chains = chain_ids(&config.rootfs.diff_ids);
        self.progress.report(PullProgress::Resolved {
            manifest_digest: manifest_digest.clone(),
            layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        });
        self.fetch_and_unpack(reference, &manifest, &config.rootfs.diff_ids, &chains)
            .await?;

        Ok(Image {
            reference: reference.with_digest(manifest_digest.clone()),
            manifest_digest,
            index_digest: top_digest,
            config_digest: config_desc.digest.clone(),
            manifest,
            config,
            layers: chains,
        })
    }

    /// The manifest bytes for `reference`, from the store when its digest is known and
    /// stored, else from the registry (verified), then stored.
    async fn resolve_manifest(&self, reference: &Reference) -> Result<(Digest, Vec<u8>)> {
        let known = match reference.digest() {
            Some(d) => Some(d.clone()),
            // Some registries and proxies answer HEAD badly; a GET still works.
            None => match self.client.head_manifest(reference).await {
                Ok(d) => d,
                Err(RegistryError::Status { status, .. })
                    if status != StatusCode::UNAUTHORIZED && status != StatusCode::NOT_FOUND =>
                {
                    None
                }
                Err(e) => return Err(e),
            },
        };
        if let Some(d) = &known {
            if self.content.contains(d) {
                return Ok((d.clone(), self.content.read(d)?));
            }
        }
        let (digest, bytes, content_type) = self.client.fetch_manifest(reference).await?;
        if let Some(d) = known {
            if d != digest {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest (changed between HEAD and GET)",
                    url: reference.to_string(),
                    expected: d,
                    actual: digest,
                });
            }
        }
        // Check the Content-Type against the body's mediaType before keeping it.
        manifest::parse(content_type.as_deref(), &bytes).map_err(|source| {
            RegistryError::Manifest {
                reference: reference.to_string(),
                source,
            }
        })?;
        self.content.put(&digest, &bytes)?;
        Ok((digest, bytes))
    }

    async fn fetch_and_unpack(
        &self,
        reference: &Reference,
        manifest: &Manifest,
        diff_ids: &[Digest],
        chains: &[Digest],
    ) -> Result<()> {
        // One task per distinct blob (an image may repeat a layer), each unpacking every
        // chain that uses it, in parallel with the others.
        let mut by_blob: Vec<BlobJob> = Vec::new();
        for ((layer, diff_id), chain) in manifest.layers.iter().zip(diff_ids).zip(chains) {
            if self.layers.contains(chain) {
                self.progress
                    .report(PullProgress::LayerExists(layer.digest.clone()));
                continue;
            }
            match by_blob.iter_mut().find(|job| job.digest == layer.digest) {
                Some(job) => job.uses.push((chain.clone(), diff_id.clone())),
                None => by_blob.push(BlobJob {
                    digest: layer.digest.clone(),
                    size: layer.size,
                    uses: vec![(chain.clone(), diff_id.clone())],
                }),
            }
        }
        let downloads = Arc::new(tokio::sync::Semaphore::new(
            self.client.config.max_concurrent_downloads.max(1),
        ));
        // Held by every blocking unpack: after a failed pull aborts the tasks, their
        // blocking halves (not abortable) still clean up their temp dirs, and the pull
        // returns only once they have, so a caller never sees a half-unpacked layer.
        let (busy, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
        let mut tasks = tokio::task::JoinSet::new();
        for BlobJob { digest, size, uses } in by_blob {
            let busy = busy.clone();
            let client = self.client.clone();
            let content = self.content.clone();
            let layers = self.layers.clone();
            let reference = reference.clone();
            let downloads = downloads.clone();
            let progress = self.progress.clone();
            progress.report(PullProgress::LayerWaiting(digest.clone()));
            tasks.spawn(async move {
                let slot = downloads
                    .acquire_owned()
                    .await
                    .map_err(|e| RegistryError::Task(e.to_string()))?;
                let on_bytes = |current| {
                    progress.report(PullProgress::Downloading {
                        blob: digest.clone(),
                        current,
                        total: size,
                    })
                };
                // The first chain using the blob is unpacked from the download itself.
                let (chain, diff_id) = uses[0].clone();
                let (tee, reader) = blob_tee::channel();
                let unpacker = {
                    let (layers, busy) = (layers.clone(), busy.clone());
                    // `busy` goes back with the result and is dropped after it: when
                    // this task was aborted, the result (a temp dir) is dropped
                    // on the blocking thread, and the pull must wait for that.
                    tokio::task::spawn_blocking(move || {
                        (layers.prepare(&chain, &diff_id, reader), busy)
                    })
                };
                let fetched = client
                    .fetch_blob_teed(
                        &reference,
                        &digest,
                        size,
                        &content,
                        &on_bytes,
                        tee,
                        Some(slot),
                    )
                    .await;
                let (prepared, _busy) = unpacker
                    .await
                    .map_err(|e| RegistryError::Task(e.to_string()))?;
                let streamed = match fetched {
                    Ok(BlobFetch::Downloaded { streamed: true }) => Some(prepared),
                    Ok(_) | Err(_) => {
                        // Removing an uncommitted layer dir is disk work.
                        let busy = busy.clone();
                        let discard = tokio::task::spawn_blocking(move || drop((prepared, busy)));
                        discard
                            .await
                            .map_err(|e| RegistryError::Task(e.to_string()))?;
                        fetched?;
                        None
                    }
                };
                progress.report(PullProgress::Downloaded(digest.clone()));
                let stats = client.stats.clone();
                tokio::task::spawn_blocking(move || -> Result<()> {
                    let _busy = busy;
                    progress.report(PullProgress::Extracting(digest.clone()));
                    let from_blob = match streamed {
                        // The blob's digest has matched: the layer may become visible.
                        Some(prepared) => {
                            if let Some(layer) = prepared? {
                                layer.commit()?;
                                TransferStats::bump(&stats.streamed_unpacks, 1);
                            }
                            &uses[1..]
                        }
                        None => &uses[..],
                    };
                    for (chain, diff_id) in from_blob {
                        // unpack_layer buffers the file itself.
                        let blob = content.open_blob(&digest)?;
                        if layers.unpack(chain, diff_id, blob)? {
                            TransferStats::bump(&stats.blob_unpacks, 1);
                        }
                    }
                    progress.report(PullProgress::LayerDone(digest));
                    Ok(())
                })
                .await
                .map_err(|e| RegistryError::Task(e.to_string()))?
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined
                .map_err(|e| RegistryError::Task(e.to_string()))
                .and_then(|r| r);
            if let Err(e) = result {
                if first_error.is_none() {
                    // Stop the rest: the pull has failed either way.
                    tasks.abort_all();
                    first_error = Some(e);
                }
            }
        }
        drop(busy);
        let _ = all_done.recv().await;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:samalba/my-app:pull,push");
        // host:port inside a scope, escapes, bare tokens, spaces.
        let c = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:5001/token", scope="repository:127.0.0.1:5000/a/b:pull",error=insufficient_scope, x="a\"b""#,
        )
        .unwrap();
        assert_eq!(c.params["scope"], "repository:127.0.0.1:5000/a/b:pull");
        assert_eq!(c.params["error"], "insufficient_scope");
        assert_eq!(c.params["x"], "a\"b");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn insecure_only_for_loopback_and_listed() {
        let none: Vec<String> = vec![];
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "[::1]:5000",
        ] {
            assert!(is_insecure_host(h, &none), "{h}");
        }
        for h in [
            "registry-1.docker.io",
            "10.0.0.1:5000",
            "localhost.evil.com",
            "128.0.0.1",
        ] {
            assert!(!is_insecure_host(h, &none), "{h}");
        }
        assert!(is_insecure_host(
            "10.0.0.1:5000",
            &["10.0.0.1:5000".to_owned()]
        ));
    }

    #[test]
    fn docker_config_credentials() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        std::fs::write(
            &path,
            serde_json::json!({"auths": {
                "https://index.docker.io/v1/": {"auth": auth},
                "localhost:5000": {"username": "bob", "password": "pw"},
                "https://quay.io": {"auth": ""}
            }, "credsStore": "desktop"})
            .to_string(),
        )
        .unwrap();
        let creds = Credentials::load(&path).unwrap();
        let hub = creds.get("registry-1.docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("alice", "s3cr:et")
        );
        assert_eq!(creds.get("docker.io"), Some(hub));
        assert_eq!(creds.get("localhost:5000").unwrap().username, "bob");
        assert!(creds.get("quay.io").is_none());
        assert!(!format!("{hub:?}").contains("s3cr"));
        std::fs::write(&path, r#"{"auths": {"x": {"auth": "!!!"}}}"#).unwrap();
        assert!(matches!(
            Credentials::load(&path),
            Err(RegistryError::Credentials { .. })
        ));
    }
}
