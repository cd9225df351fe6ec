//! The client against a scripted fake registry on 127.0.0.1: bearer tokens with Basic
//! credentials, a blob redirect to another origin (which must not see the token), a
//! download that breaks off and is resumed with Range, and manifests whose bytes do not
//! match their digest. The real registry (tests/registry_pull.rs) cannot be made to
//! misbehave like this.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use berth_image::content_store::ContentStore;
use berth_image::digest::Digest;
use berth_image::registry::{
    Credential, Credentials, Puller, RegistryClient, RegistryConfig, RegistryError,
};
use berth_image::snapshot::LayerStore;
use berth_image::Reference;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then close (Content-Length still says all).
    cut_after: Option<usize>,
    /// Go silent (keeping the connection open) at this point.
    stall: Option<Stall>,
}

#[derive(Clone, Copy)]
enum Stall {
    /// Read the request, never answer.
    BeforeHeaders,
    /// Send the headers and this many body bytes, then nothing.
    AfterBody(usize),
}

fn resp(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    Resp {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
        cut_after: None,
        stall: None,
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// A one-request-per-connection HTTP/1.1 server that records what it was asked.
struct Mock {
    port: u16,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Mock {
    async fn start(handler: Handler) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let log2 = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = log2.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let mut lines = text.split("\r\n");
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let method = first.next().unwrap_or("").to_owned();
                    let path = first.next().unwrap_or("").to_owned();
                    let headers = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let req = Req {
                        method,
                        path,
                        headers,
                    };
                    log.lock().unwrap().push(req.clone());
                    let r = handler(&req);
                    let silence = || tokio::time::sleep(std::time::Duration::from_secs(60));
                    if let Some(Stall::BeforeHeaders) = r.stall {
                        silence().await;
                        return;
                    }
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        r.status,
                        r.body.len()
                    );
                    for (k, v) in &r.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = sock.write_all(head.as_bytes()).await;
                    if req.method != "HEAD" {
                        let n = r.cut_after.unwrap_or(r.body.len());
                        if let Some(Stall::AfterBody(m)) = r.stall {
                            let _ = sock.write_all(&r.body[..m]).await;
                            silence().await;
                            return;
                        }
                        let _ = sock.write_all(&r.body[..n]).await;
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        Mock { port, log }
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

struct TestImage {
    manifest: Vec<u8>,
    manifest_digest: Digest,
    config: Vec<u8>,
    config_digest: Digest,
    layer: Vec<u8>,
    layer_digest: Digest,
}

fn test_image() -> TestImage {
    let mut b = tar::Builder::new(Vec::new());
    let data = vec![b'z'; 200_000];
    let mut h = tar::Header::new_ustar();
    h.set_path("data").unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
    let tar = b.into_inner().unwrap();
    // Stored (level 0) so the blob is big enough to break off in the middle.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let layer_digest = Digest::of(&layer);
    let config = serde_json::json!({
        "architecture": berth_image::manifest::Platform::host().architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&tar).to_string()]}
    })
    .to_string()
    .into_bytes();
    let config_digest = Digest::of(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer_digest.to_string(), "size": layer.len()}]
    })
    .to_string()
    .into_bytes();
    TestImage {
        manifest_digest: Digest::of(&manifest),
        manifest,
        config,
        config_digest,
        layer,
        layer_digest,
    }
}

const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_auth_redirects_and_range_resume() {
    let img = Arc::new(test_image());
    let half = img.layer.len() / 2;

    // The "CDN": serves blobs; cuts the first layer download in half.
    let cdn_img = img.clone();
    let layer_gets = Arc::new(Mutex::new(0usize));
    let cdn = Mock::start(Arc::new(move |req: &Req| match req.path.as_str() {
        "/cdn/config" => resp(200, &[], &cdn_img.config),
        "/cdn/layer" => {
            let mut n = layer_gets.lock().unwrap();
            *n += 1;
            match req.headers.get("range") {
                None if *n == 1 => Resp {
                    cut_after: Some(half),
                    ..resp(200, &[], &cdn_img.layer)
                },
                None => resp(200, &[], &cdn_img.layer),
                Some(range) => {
                    let from: usize = range
                        .strip_prefix("bytes=")
                        .and_then(|r| r.strip_suffix('-'))
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    let total = cdn_img.layer.len();
                    let cr = format!("bytes {from}-{}/{total}", total - 1);
                    resp(206, &[("Content-Range", &cr)], &cdn_img.layer[from..])
                }
            }
        }
        _ => resp(404, &[], b""),
    }))
    .await;
    let cdn_port = cdn.port;

    let reg_img = img.clone();
    let reg_port = Arc::new(Mutex::new(0u16));
    let reg_port2 = reg_port.clone();
    let registry = Mock::start(Arc::new(move |req: &Req| {
        let port = *reg_port2.lock().unwrap();
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{port}/token",service="mock",scope="repository:x/y:pull""#
        );
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:pw"));
        if req.path.starts_with("/token?") {
            return if req.headers.get("authorization") == Some(&basic) {
                resp(200, &[], br#"{"access_token":"T1","expires_in":300}"#)
            } else {
                resp(401, &[], b"bad credentials")
            };
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer T1") {
            return resp(401, &[("WWW-Authenticate", &challenge)], b"");
        }
        let digest = reg_img.manifest_digest.to_string();
        let wrong = Digest::of(b"not the manifest").to_string();
        let config_path = format!("/v2/x/y/blobs/{}", reg_img.config_digest);
        let layer_path = format!("/v2/x/y/blobs/{}", reg_img.layer_digest);
        let cdn = |p: &str| format!("http://127.0.0.1:{cdn_port}/cdn/{p}");
        match req.path.as_str() {
            "/v2/" => resp(200, &[], b"{}"),
            "/v2/x/y/manifests/latest" => resp(
                200,
                &[("Content-Type", MANIFEST_TYPE), ("Docker-Content-Digest", &digest)],
                &reg_img.manifest,
            ),
            // A registry that lies: the header names other bytes than it sends.
            "/v2/x/bad/manifests/latest" => resp(
                200,
                &[("Content-Type", MANIFEST_TYPE), ("Docker-Content-Digest", &wrong)],
                &reg_img.manifest,
            ),
            p if p == format!("/v2/x/bad/manifests/{wrong}") => {
                resp(200, &[("Content-Type", MANIFEST_TYPE)], &reg_img.manifest)
            }
            p if p == config_path => resp(307, &[("Location", &cdn("config"))], b""),
            p if p == layer_path => resp(307, &[("Location", &cdn("layer"))], b""),
            _ => resp(404, &[], b""),
        }
    }))
    .await;
    *reg_port.lock().unwrap() = registry.port;
    let host = format!("127.0.0.1:{}", registry.port);

    let mut credentials = Credentials::default();
    credentials.insert(
        &host,
        Credential {
            username: "alice".into(),
            password: "pw".into(),
        },
    );
    let root = tempfile::tempdir().unwrap();
    let client = RegistryClient::new(RegistryConfig {
        credentials,
        ..RegistryConfig::default()
    })
    .unwrap();
    let puller = Puller::new(
        client,
        ContentStore::open(root.path()).unwrap(),
        LayerStore::open(root.path()).unwrap(),
    );
    let reference = Reference::parse(&format!("{host}/x/y:latest")).unwrap();
    let image = puller.pull(&reference).await.unwrap();
    assert_eq!(image.manifest_digest, img.manifest_digest);
    let layers = LayerStore::open(root.path()).unwrap();
    assert_eq!(
        std::fs::read(layers.diff_path(&image.layers[0]).join("data")).unwrap(),
        vec![b'z'; 200_000]
    );

    let reg_reqs = registry.requests();
    let token_reqs: Vec<_> = reg_reqs
        .iter()
        .filter(|r| r.path.starts_with("/token?"))
        .collect();
    assert_eq!(token_reqs.len(), 1, "one token, cached: {reg_reqs:#?}");
    assert!(token_reqs[0].path.contains("service=mock"));
    assert!(
        token_reqs[0]
            .path
            .contains("scope=repository%3Ax%2Fy%3Apull"),
        "{}",
        token_reqs[0].path
    );
    assert!(reg_reqs
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .all(
            |r| r.headers.get("authorization").map(String::as_str) == Some("Bearer T1")
                && r.headers
                    .get("accept")
                    .is_some_and(|a| a.contains("application/vnd.oci.image.index.v1+json"))
        ));
    let cdn_reqs = cdn.requests();
    assert!(!cdn_reqs.is_empty());
    assert!(
        cdn_reqs
            .iter()
            .all(|r| !r.headers.contains_key("authorization")),
        "the token leaked to another host: {cdn_reqs:#?}"
    );
    let ranged: Vec<_> = cdn_reqs
        .iter()
        .filter_map(|r| r.headers.get("range"))
        .collect();
    assert_eq!(ranged.len(), 1, "{cdn_reqs:#?}");
    assert!(
        ranged[0].starts_with("bytes=") && ranged[0] != "bytes=0-",
        "{}",
        ranged[0]
    );

    // Lying manifests are rejected, by tag (header) and by digest (body), and not stored.
    for r in [
        format!("{host}/x/bad:latest"),
        format!("{host}/x/bad@{}", Digest::of(b"not the manifest")),
    ] {
        let fresh = tempfile::tempdir().unwrap();
        let p = Puller::new(
            puller.client().clone(),
            ContentStore::open(fresh.path()).unwrap(),
            LayerStore::open(fresh.path()).unwrap(),
        );
        let err = p.pull(&Reference::parse(&r).unwrap()).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::DigestMismatch { .. }),
            "{r}: {err}"
        );
        assert!(ContentStore::open(fresh.path())
            .unwrap()
            .list()
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error() {
    let registry = Mock::start(Arc::new(|req: &Req| {
        if req.path.starts_with("/token") {
            resp(401, &[], b"denied")
        } else {
            resp(
                401,
                &[(
                    "WWW-Authenticate",
                    r#"Bearer realm="http://127.0.0.1:1/token",service="s""#,
                )],
                b"",
            )
        }
    }))
    .await;
    let client = RegistryClient::new(RegistryConfig::default()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let puller = Puller::new(
        client,
        ContentStore::open(root.path()).unwrap(),
        LayerStore::open(root.path()).unwrap(),
    );
    let reference = Reference::parse(&format!("127.0.0.1:{}/x/y", registry.port)).unwrap();
    // The realm points at a closed port: a clear HTTP error naming the URL, no hang.
    let err = puller.pull(&reference).await.unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:1/token"), "{err}");
}

// ---- Bad input: each a clear error, nothing stored that did not verify, no debris. ----

impl TestImage {
    /// The same image with its manifest JSON edited (and its digest recomputed).
    fn with_manifest(&self, edit: impl FnOnce(&mut serde_json::Value)) -> TestImage {
        let mut m: serde_json::Value = serde_json::from_slice(&self.manifest).unwrap();
        edit(&mut m);
        let manifest = m.to_string().into_bytes();
        TestImage {
            manifest_digest: Digest::of(&manifest),
            manifest,
            config: self.config.clone(),
            config_digest: self.config_digest.clone(),
            layer: self.layer.clone(),
            layer_digest: self.layer_digest.clone(),
        }
    }
}

/// A registry without auth serving `img` as `x/y:latest`; `fault` answers first.
async fn serve(
    img: Arc<TestImage>,
    fault: impl Fn(&Req, &TestImage) -> Option<Resp> + Send + Sync + 'static,
) -> Mock {
    Mock::start(Arc::new(move |req: &Req| {
        if let Some(r) = fault(req, &img) {
            return r;
        }
        let digest = img.manifest_digest.to_string();
        let media_type = serde_json::from_slice::<serde_json::Value>(&img.manifest)
            .ok()
            .and_then(|m| m["mediaType"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let manifest = || {
            resp(
                200,
                &[
                    ("Content-Type", &media_type),
                    ("Docker-Content-Digest", &digest),
                ],
                &img.manifest,
            )
        };
        match req.path.as_str() {
            "/v2/" => resp(200, &[], b"{}"),
            "/v2/x/y/manifests/latest" => manifest(),
            p if p == format!("/v2/x/y/manifests/{digest}") => manifest(),
            p if p == format!("/v2/x/y/blobs/{}", img.config_digest) => resp(200, &[], &img.config),
            p if p == format!("/v2/x/y/blobs/{}", img.layer_digest) => match req
                .headers
                .get("range")
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|r| r.parse::<usize>().ok())
            {
                Some(from) if from < img.layer.len() => {
                    let total = img.layer.len();
                    let cr = format!("bytes {from}-{}/{total}", total - 1);
                    resp(206, &[("Content-Range", &cr)], &img.layer[from..])
                }
                _ => resp(200, &[], &img.layer),
            },
            _ => resp(404, &[], br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#),
        }
    }))
    .await
}

struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn puller(&self, read_timeout: std::time::Duration) -> Puller {
        let client = RegistryClient::new(RegistryConfig {
            read_timeout,
            ..RegistryConfig::default()
        })
        .unwrap();
        Puller::new(
            client,
            ContentStore::open(self.dir.path()).unwrap(),
            LayerStore::open(self.dir.path()).unwrap(),
        )
    }

    fn content(&self) -> ContentStore {
        ContentStore::open(self.dir.path()).unwrap()
    }

    fn ingests(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("ingest"))
            .unwrap()
            .count()
    }

    /// The store is consistent: only `allowed` blobs, each matching its name; no layer
    /// dir (complete or half-unpacked); ingest leftovers, if any, removable.
    fn assert_consistent(&self, allowed: &[&Digest]) {
        let content = self.content();
        for d in content.list().unwrap() {
            assert!(allowed.contains(&&d), "unexpected blob {d}");
            assert_eq!(Digest::of(&content.read(&d).unwrap()), d);
        }
        let layers = std::fs::read_dir(self.dir.path().join("layers"))
            .unwrap()
            .count();
        assert_eq!(layers, 0, "a layer dir was left");
        content.clean_ingests(std::time::Duration::ZERO).unwrap();
        assert_eq!(self.ingests(), 0);
    }
}

fn reference(mock: &Mock) -> Reference {
    Reference::parse(&format!("127.0.0.1:{}/x/y:latest", mock.port)).unwrap()
}

const SLOW: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_cut_short_every_time_fails_cleanly_then_resumes() {
    let img = Arc::new(test_image());
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let healthy2 = healthy.clone();
    let cut = img.layer.len() / 3;
    let mock = serve(img.clone(), move |req, img| {
        let layer = format!("/v2/x/y/blobs/{}", img.layer_digest);
        if req.path == layer && !healthy2.load(std::sync::atomic::Ordering::SeqCst) {
            // Ignores Range and breaks off at the same place every time.
            return Some(Resp {
                cut_after: Some(cut),
                ..resp(200, &[], &img.layer)
            });
        }
        None
    })
    .await;
    let root = Root::new();
    let puller = root.puller(SLOW);
    let err = puller.pull(&reference(&mock)).await.unwrap_err();
    assert!(matches!(err, RegistryError::Http { .. }), "{err}");
    assert!(
        err.to_string().contains(&img.layer_digest.to_string()),
        "{err}"
    );
    let content = root.content();
    assert!(!content.contains(&img.layer_digest));
    assert_eq!(
        root.ingests(),
        1,
        "the partial download is kept for resuming"
    );

    // The registry recovers: the next pull resumes from what was kept.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let before = mock.requests().len();
    let image = puller.pull(&reference(&mock)).await.unwrap();
    assert_eq!(image.manifest_digest, img.manifest_digest);
    let ranged: Vec<String> = mock.requests()[before..]
        .iter()
        .filter_map(|r| r.headers.get("range").cloned())
        .collect();
    assert_eq!(ranged, vec![format!("bytes={cut}-")]);
    assert_eq!(root.ingests(), 0);

    // Without the recovery, clean_ingests removes the leftover.
    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let root = Root::new();
    root.puller(SLOW).pull(&reference(&mock)).await.unwrap_err();
    assert_eq!(root.ingests(), 1);
    root.assert_consistent(&[&img.manifest_digest, &img.config_digest]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_naming_a_missing_blob_is_a_404() {
    let img = Arc::new(test_image());
    let missing = Digest::of(b"a layer nobody pushed");
    let broken = Arc::new(img.with_manifest(|m| {
        m["layers"][0]["digest"] = missing.to_string().into();
    }));
    let mock = serve(broken.clone(), |_, _| None).await;
    let root = Root::new();
    let err = root.puller(SLOW).pull(&reference(&mock)).await.unwrap_err();
    match &err {
        RegistryError::Status {
            status, url, body, ..
        } => {
            assert_eq!(status.as_u16(), 404);
            assert!(url.contains(&missing.to_string()), "{url}");
            assert!(body.contains("BLOB_UNKNOWN"), "{body}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(root.ingests(), 0, "no empty ingest file left");
    root.assert_consistent(&[&broken.manifest_digest, &img.config_digest]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_reported_with_their_body() {
    let img = Arc::new(test_image());
    // Everything fails.
    let mock = serve(img.clone(), |_, _| {
        Some(resp(500, &[], b"storage backend down"))
    })
    .await;
    let root = Root::new();
    let err = root.puller(SLOW).pull(&reference(&mock)).await.unwrap_err();
    match &err {
        RegistryError::Status { status, body, .. } => {
            assert_eq!(status.as_u16(), 500);
            assert_eq!(body, "storage backend down");
        }
        other => panic!("{other}"),
    }
    root.assert_consistent(&[]);

    // Only the layer fails.
    let mock = serve(img.clone(), |req, img| {
        (req.path == format!("/v2/x/y/blobs/{}", img.layer_digest))
            .then(|| resp(500, &[], b"layer storage down"))
    })
    .await;
    let root = Root::new();
    let err = root.puller(SLOW).pull(&reference(&mock)).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Status { status, .. } if status.as_u16() == 500),
        "{err}"
    );
    assert!(err.to_string().contains("layer storage down"), "{err}");
    assert_eq!(root.ingests(), 0);
    root.assert_consistent(&[&img.manifest_digest, &img.config_digest]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_hangs_times_out() {
    let img = Arc::new(test_image());
    let timeout = std::time::Duration::from_millis(300);
    // Never answers the manifest request.
    let mock = serve(img.clone(), |req, _| {
        req.path.contains("/manifests/").then(|| Resp {
            stall: Some(Stall::BeforeHeaders),
            ..resp(200, &[], b"")
        })
    })
    .await;
    let root = Root::new();
    let started = std::time::Instant::now();
    let err = root
        .puller(timeout)
        .pull(&reference(&mock))
        .await
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    match &err {
        RegistryError::Http { source, .. } => assert!(source.is_timeout(), "{err}: {source:?}"),
        other => panic!("{other}"),
    }
    root.assert_consistent(&[]);

    // Stops sending in the middle of the layer, every time.
    let mock = serve(img.clone(), |req, img| {
        (req.path == format!("/v2/x/y/blobs/{}", img.layer_digest)).then(|| Resp {
            stall: Some(Stall::AfterBody(1000)),
            ..resp(200, &[], &img.layer)
        })
    })
    .await;
    let root = Root::new();
    let started = std::time::Instant::now();
    let err = root
        .puller(timeout)
        .pull(&reference(&mock))
        .await
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(matches!(err, RegistryError::Http { .. }), "{err}");
    assert!(!root.content().contains(&img.layer_digest));
    root.assert_consistent(&[&img.manifest_digest, &img.config_digest]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_media_types_are_refused_before_fetching_blobs() {
    let img = Arc::new(test_image());
    let cases: Vec<(TestImage, &str)> = vec![
        (
            img.with_manifest(|m| m["mediaType"] = "application/vnd.example.thing.v1+json".into()),
            "unsupported manifest media type",
        ),
        (
            img.with_manifest(|m| {
                m["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json".into()
            }),
            "not a container image config",
        ),
        (
            img.with_manifest(|m| {
                m["layers"][0]["mediaType"] =
                    "application/vnd.cncf.helm.chart.content.v1.tar+gzip".into()
            }),
            "not a container image layer",
        ),
    ];
    for (i, (odd, message)) in cases.into_iter().enumerate() {
        let odd = Arc::new(odd);
        let mock = serve(odd.clone(), |_, _| None).await;
        let root = Root::new();
        let err = root.puller(SLOW).pull(&reference(&mock)).await.unwrap_err();
        assert!(err.to_string().contains(message), "case {i}: {err}");
        assert!(
            !mock.requests().iter().any(|r| r.path.contains("/blobs/")),
            "case {i}: fetched a blob"
        );
        // An unsupported manifest is not even stored; a refused image's manifest is
        // verified and may stay (gc removes it).
        let allowed: &[&Digest] = if i == 0 { &[] } else { &[&odd.manifest_digest] };
        root.assert_consistent(allowed);
    }
}

/// Untrusted manifests: one whose bytes are not the digest it was asked by, and one whose
/// layer descriptor gives the wrong size. Each is refused with the mismatch named, and
/// nothing it described is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_with_a_wrong_digest_or_size_are_refused() {
    let img = Arc::new(test_image());
    // Asked for by digest, answered with other bytes (a tampering registry or a proxy).
    let wanted = img.manifest_digest.clone();
    let other = Arc::new(img.with_manifest(|m| {
        m["annotations"] = serde_json::json!({"tampered": "yes"});
    }));
    let tampered = other.clone();
    let mock = serve(img.clone(), move |req, _| {
        (req.path == format!("/v2/x/y/manifests/{wanted}"))
            .then(|| resp(200, &[("Content-Type", MANIFEST_TYPE)], &tampered.manifest))
    })
    .await;
    let root = Root::new();
    let by_digest = Reference::parse(&format!(
        "127.0.0.1:{}/x/y@{}",
        mock.port, img.manifest_digest
    ))
    .unwrap();
    let err = root.puller(SLOW).pull(&by_digest).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::DigestMismatch {
                what: "manifest",
                ..
            }
        ),
        "{err}"
    );
    assert!(root.content().list().unwrap().is_empty(), "nothing stored");

    // A layer descriptor one byte short of the blob the registry serves.
    let short = Arc::new(img.with_manifest(|m| {
        let size = m["layers"][0]["size"].as_u64().unwrap();
        m["layers"][0]["size"] = (size - 1).into();
    }));
    let mock = serve(short.clone(), |_, _| None).await;
    let root = Root::new();
    let err = root.puller(SLOW).pull(&reference(&mock)).await.unwrap_err();
    let expected = format!(
        "expected {} bytes, got {}",
        img.layer.len() - 1,
        img.layer.len()
    );
    assert!(err.to_string().contains(&expected), "{err}");
    assert!(
        !root.content().contains(&img.layer_digest),
        "the oversized blob is not stored"
    );
    root.assert_consistent(&[&short.manifest_digest, &img.config_digest]);
}
