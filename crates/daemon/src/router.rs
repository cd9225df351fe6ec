//! Request routing: the optional `/vX.Y` prefix, then method and path to an endpoint.
//! Pure, so the version and 404/405 rules are unit tested without a socket.

use berth_api::{ApiVersion, UnsupportedVersion, MAX_API_VERSION};
use hyper::{Method, StatusCode};

/// What the daemon serves. Endpoints on one object take its id or name from the path
/// ([`Routed::param`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Ping,
    Version,
    Info,
    Events,
    ContainerCreate,
    ContainerList,
    ContainerInspect,
    ContainerStart,
    ContainerStop,
    ContainerKill,
    ContainerRestart,
    ContainerWait,
    ContainerAttach,
    ContainerResize,
    ContainerLogs,
    ContainerDelete,
    /// `docker cp`: `HEAD` stat, `GET` tar out, `PUT` tar in.
    ContainerArchive,
    ExecCreate,
    ExecStart,
    ExecResize,
    ExecInspect,
    ImageCreate,
    ImageList,
    ImageInspect,
    ImageTag,
    ImageDelete,
    ImagePush,
    ImageLoad,
    ImageSaveOne,
    ImageSaveMany,
    VolumeList,
    VolumeCreate,
    VolumeInspect,
    VolumeDelete,
    VolumePrune,
    ContainerTop,
    ContainerStats,
    /// `docker diff`.
    ContainerChanges,
    ContainerPause,
    ContainerUnpause,
    ContainerRename,
    ContainerPrune,
    ImagePrune,
    SystemDf,
    NetworkList,
    NetworkCreate,
    NetworkInspect,
    NetworkDelete,
    NetworkConnect,
    NetworkDisconnect,
    /// Asked by `docker system prune`; berth does not prune networks.
    NetworkPrune,
    /// Asked by `docker system prune`; berth has no build cache.
    BuildPrune,
}

/// (pattern, methods, endpoint). `{id}` matches one path segment; `{name*}` one or more,
/// because image names have slashes (`localhost:5000/team/app`), as dockerd's `{name:.*}`.
/// Literal routes come before patterns that could also match them (`/images/json` before
/// `/images/{name*}/json`'s neighbours).
const ROUTES: &[(&str, &[Method], Endpoint)] = &[
    ("/_ping", &[Method::GET, Method::HEAD], Endpoint::Ping),
    ("/version", &[Method::GET], Endpoint::Version),
    ("/info", &[Method::GET], Endpoint::Info),
    ("/events", &[Method::GET], Endpoint::Events),
    (
        "/containers/create",
        &[Method::POST],
        Endpoint::ContainerCreate,
    ),
    ("/containers/json", &[Method::GET], Endpoint::ContainerList),
    (
        "/containers/{id}/json",
        &[Method::GET],
        Endpoint::ContainerInspect,
    ),
    (
        "/containers/{id}/start",
        &[Method::POST],
        Endpoint::ContainerStart,
    ),
    (
        "/containers/{id}/stop",
        &[Method::POST],
        Endpoint::ContainerStop,
    ),
    (
        "/containers/{id}/kill",
        &[Method::POST],
        Endpoint::ContainerKill,
    ),
    (
        "/containers/{id}/restart",
        &[Method::POST],
        Endpoint::ContainerRestart,
    ),
    (
        "/containers/{id}/wait",
        &[Method::POST],
        Endpoint::ContainerWait,
    ),
    (
        "/containers/{id}/attach",
        &[Method::POST],
        Endpoint::ContainerAttach,
    ),
    (
        "/containers/{id}/resize",
        &[Method::POST],
        Endpoint::ContainerResize,
    ),
    (
        "/containers/{id}/logs",
        &[Method::GET],
        Endpoint::ContainerLogs,
    ),
    (
        "/containers/{id}",
        &[Method::DELETE],
        Endpoint::ContainerDelete,
    ),
    (
        "/containers/{id}/archive",
        &[Method::GET, Method::HEAD, Method::PUT],
        Endpoint::ContainerArchive,
    ),
    (
        "/containers/{id}/exec",
        &[Method::POST],
        Endpoint::ExecCreate,
    ),
    ("/exec/{id}/start", &[Method::POST], Endpoint::ExecStart),
    ("/exec/{id}/resize", &[Method::POST], Endpoint::ExecResize),
    ("/exec/{id}/json", &[Method::GET], Endpoint::ExecInspect),
    ("/images/create", &[Method::POST], Endpoint::ImageCreate),
    ("/images/json", &[Method::GET], Endpoint::ImageList),
    ("/images/load", &[Method::POST], Endpoint::ImageLoad),
    ("/images/get", &[Method::GET], Endpoint::ImageSaveMany),
    (
        "/images/{name*}/json",
        &[Method::GET],
        Endpoint::ImageInspect,
    ),
    ("/images/{name*}/tag", &[Method::POST], Endpoint::ImageTag),
    ("/images/{name*}/push", &[Method::POST], Endpoint::ImagePush),
    (
        "/images/{name*}/get",
        &[Method::GET],
        Endpoint::ImageSaveOne,
    ),
    ("/images/{name*}", &[Method::DELETE], Endpoint::ImageDelete),
    ("/volumes", &[Method::GET], Endpoint::VolumeList),
    ("/volumes/create", &[Method::POST], Endpoint::VolumeCreate),
    ("/volumes/prune", &[Method::POST], Endpoint::VolumePrune),
    ("/volumes/{id}", &[Method::GET], Endpoint::VolumeInspect),
    ("/volumes/{id}", &[Method::DELETE], Endpoint::VolumeDelete),
    (
        "/containers/prune",
        &[Method::POST],
        Endpoint::ContainerPrune,
    ),
    (
        "/containers/{id}/top",
        &[Method::GET],
        Endpoint::ContainerTop,
    ),
    (
        "/containers/{id}/stats",
        &[Method::GET],
        Endpoint::ContainerStats,
    ),
    (
        "/containers/{id}/changes",
        &[Method::GET],
        Endpoint::ContainerChanges,
    ),
    (
        "/containers/{id}/pause",
        &[Method::POST],
        Endpoint::ContainerPause,
    ),
    (
        "/containers/{id}/unpause",
        &[Method::POST],
        Endpoint::ContainerUnpause,
    ),
    (
        "/containers/{id}/rename",
        &[Method::POST],
        Endpoint::ContainerRename,
    ),
    ("/images/prune", &[Method::POST], Endpoint::ImagePrune),
    ("/system/df", &[Method::GET], Endpoint::SystemDf),
    ("/networks", &[Method::GET], Endpoint::NetworkList),
    ("/networks/create", &[Method::POST], Endpoint::NetworkCreate),
    ("/networks/prune", &[Method::POST], Endpoint::NetworkPrune),
    ("/networks/{id}", &[Method::GET], Endpoint::NetworkInspect),
    ("/networks/{id}", &[Method::DELETE], Endpoint::NetworkDelete),
    (
        "/networks/{id}/connect",
        &[Method::POST],
        Endpoint::NetworkConnect,
    ),
    (
        "/networks/{id}/disconnect",
        &[Method::POST],
        Endpoint::NetworkDisconnect,
    ),
    ("/build/prune", &[Method::POST], Endpoint::BuildPrune),
];

/// Matches `path` against `pattern`; the captured segment(s) when it matches (`Some("")`
/// for a pattern without a parameter).
fn match_pattern(pattern: &str, path: &str) -> Option<String> {
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    let greedy = pat.iter().position(|p| p.ends_with("*}"));
    let literal_or_param = |p: &str, s: &str, captured: &mut Option<String>| {
        if p.starts_with('{') {
            if s.is_empty() {
                return false;
            }
            *captured = Some(s.to_owned());
            true
        } else {
            p == s
        }
    };
    let mut captured = None;
    match greedy {
        None => {
            if pat.len() != segs.len() {
                return None;
            }
            for (p, s) in pat.iter().zip(&segs) {
                if !literal_or_param(p, s, &mut captured) {
                    return None;
                }
            }
        }
        Some(g) => {
            let after = pat.len() - g - 1;
            if segs.len() < pat.len() {
                return None;
            }
            for (p, s) in pat[..g].iter().zip(&segs[..g]) {
                if !literal_or_param(p, s, &mut captured) {
                    return None;
                }
            }
            for (p, s) in pat[g + 1..].iter().zip(&segs[segs.len() - after..]) {
                if !literal_or_param(p, s, &mut captured) {
                    return None;
                }
            }
            let middle = &segs[g..segs.len() - after];
            if middle.iter().any(|s| s.is_empty()) {
                return None;
            }
            captured = Some(middle.join("/"));
        }
    }
    Some(captured.unwrap_or_default())
}

/// A request that matched nothing servable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// A `/vX.Y` prefix outside the supported range.
    Version(UnsupportedVersion),
    NotFound,
    /// The path exists, with these methods (for the `Allow` header).
    MethodNotAllowed(&'static [Method]),
}

impl RouteError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Version(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The `message` of the error body; dockerd's wording where it has one.
    pub fn message(&self) -> String {
        match self {
            Self::Version(err) => err.to_string(),
            Self::NotFound => "page not found".to_owned(),
            Self::MethodNotAllowed(_) => "method not allowed".to_owned(),
        }
    }
}

/// A matched request: the endpoint and the API version it asked for (the maximum when
/// the path had no prefix, as dockerd does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub endpoint: Endpoint,
    pub version: ApiVersion,
    /// The container id or name, or the image name, from the path; empty when the
    /// endpoint takes none. Percent-decoded.
    pub param: String,
}

pub fn route(method: &Method, path: &str) -> Result<Routed, RouteError> {
    let (version, rest) = split_version(path);
    let version = match version {
        Some(v) => v.check_supported().map_err(RouteError::Version)?,
        None => MAX_API_VERSION,
    };
    let mut allowed: Option<&'static [Method]> = None;
    for (pattern, methods, endpoint) in ROUTES {
        let Some(param) = match_pattern(pattern, rest) else {
            continue;
        };
        if !methods.contains(method) {
            // `/images/{name*}` (DELETE) also matches `/images/x/json`: keep looking for a
            // route with this method before answering 405.
            allowed.get_or_insert(methods);
            continue;
        }
        return Ok(Routed {
            endpoint: *endpoint,
            version,
            param: percent_decode(&param),
        });
    }
    Err(match allowed {
        Some(methods) => RouteError::MethodNotAllowed(methods),
        None => RouteError::NotFound,
    })
}

/// `%2F` and friends in a path segment (clients escape `/` and `:` in image names).
/// Invalid escapes are kept as they are, as Go's `url.PathUnescape` would refuse them
/// and leave the name unmatched anyway.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/v1.44/info` -> (Some(1.44), `/info`). A first segment that is not a version
/// (`/vfoo/info`) is left in the path, which then matches no route: dockerd's router
/// only treats `/v[0-9.]+/` as a prefix.
fn split_version(path: &str) -> (Option<ApiVersion>, &str) {
    let Some(after_v) = path.strip_prefix("/v") else {
        return (None, path);
    };
    let (segment, rest) = match after_v.find('/') {
        Some(i) => after_v.split_at(i),
        None => (after_v, ""),
    };
    match segment.parse::<ApiVersion>() {
        Ok(v) => (Some(v), rest),
        Err(_) => (None, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_versioned_and_bare_paths() {
        let r = route(&Method::GET, "/version").expect("bare");
        assert_eq!(
            (r.endpoint, r.version),
            (Endpoint::Version, MAX_API_VERSION)
        );
        let r = route(&Method::GET, "/v1.30/info").expect("versioned");
        assert_eq!(
            (r.endpoint, r.version),
            (Endpoint::Info, ApiVersion::new(1, 30))
        );
        assert_eq!(
            route(&Method::HEAD, "/v1.44/_ping").expect("head").endpoint,
            Endpoint::Ping
        );
    }

    #[test]
    fn refuses_versions_out_of_range() {
        let err = route(&Method::GET, "/v1.99/version").expect_err("too new");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message(),
            "client version 1.99 is too new. Maximum supported API version is 1.44"
        );
        let err = route(&Method::GET, "/v1.12/version").expect_err("too old");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        // The version is checked before the path, as dockerd's middleware does.
        assert_eq!(
            route(&Method::GET, "/v1.99/nope").expect_err("x").status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn unknown_paths_and_methods() {
        for path in [
            "/nope",
            "/v1.44",
            "/v1.44/",
            "/vfoo/version",
            "/version/",
            "/v1.44/v1.44/version",
            "",
        ] {
            assert_eq!(
                route(&Method::GET, path),
                Err(RouteError::NotFound),
                "{path:?}"
            );
        }
        let err = route(&Method::POST, "/version").expect_err("post");
        assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(err, RouteError::MethodNotAllowed(&[Method::GET]));
    }

    #[test]
    fn captures_ids_and_image_names_with_slashes() {
        let r = route(&Method::POST, "/v1.44/containers/abc123/start").expect("start");
        assert_eq!(
            (r.endpoint, r.param.as_str()),
            (Endpoint::ContainerStart, "abc123")
        );
        let r = route(&Method::DELETE, "/containers/web").expect("delete");
        assert_eq!(
            (r.endpoint, r.param.as_str()),
            (Endpoint::ContainerDelete, "web")
        );
        let r = route(&Method::GET, "/images/localhost:5000/team/app:1.0/json").expect("inspect");
        assert_eq!(
            (r.endpoint, r.param.as_str()),
            (Endpoint::ImageInspect, "localhost:5000/team/app:1.0")
        );
        let r = route(&Method::DELETE, "/images/team/app").expect("rmi");
        assert_eq!(
            (r.endpoint, r.param.as_str()),
            (Endpoint::ImageDelete, "team/app")
        );
        let r = route(&Method::GET, "/images/json").expect("list");
        assert_eq!(r.endpoint, Endpoint::ImageList);
        let r = route(&Method::POST, "/images/a%2Fb/tag").expect("tag");
        assert_eq!(r.param, "a/b");
        assert_eq!(
            route(&Method::GET, "/containers//json"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route(&Method::GET, "/containers/x/nope"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route(&Method::GET, "/containers/x/start"),
            Err(RouteError::MethodNotAllowed(&[Method::POST]))
        );
    }

    #[test]
    fn prune_paths_are_not_container_or_image_names() {
        let r = route(&Method::POST, "/v1.44/containers/prune").expect("container prune");
        assert_eq!(r.endpoint, Endpoint::ContainerPrune);
        let r = route(&Method::POST, "/images/prune").expect("image prune");
        assert_eq!(r.endpoint, Endpoint::ImagePrune);
        // An image or container really named "prune" is still deleted by name.
        let r = route(&Method::DELETE, "/images/prune").expect("rmi prune");
        assert_eq!(
            (r.endpoint, r.param.as_str()),
            (Endpoint::ImageDelete, "prune")
        );
        let r = route(&Method::GET, "/containers/web/stats").expect("stats");
        assert_eq!(
            (r.endpoint, r.param.as_str()),
            (Endpoint::ContainerStats, "web")
        );
        let r = route(&Method::POST, "/containers/web/rename").expect("rename");
        assert_eq!(r.endpoint, Endpoint::ContainerRename);
    }
}
