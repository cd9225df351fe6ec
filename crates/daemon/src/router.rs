//! Request routing: the optional `/vX.Y` prefix, then method and path to an endpoint.
//! Pure, so the version and 404/405 rules are unit tested without a socket.

use berth_api::{ApiVersion, UnsupportedVersion, MAX_API_VERSION};
use hyper::{Method, StatusCode};

/// What the daemon serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Ping,
    Version,
    Info,
}

/// (path, methods, endpoint). `HEAD /_ping` is what the Go client sends first.
const ROUTES: &[(&str, &[Method], Endpoint)] = &[
    ("/_ping", &[Method::GET, Method::HEAD], Endpoint::Ping),
    ("/version", &[Method::GET], Endpoint::Version),
    ("/info", &[Method::GET], Endpoint::Info),
];

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    pub endpoint: Endpoint,
    pub version: ApiVersion,
}

pub fn route(method: &Method, path: &str) -> Result<Routed, RouteError> {
    let (version, rest) = split_version(path);
    let version = match version {
        Some(v) => v.check_supported().map_err(RouteError::Version)?,
        None => MAX_API_VERSION,
    };
    let (_, methods, endpoint) = ROUTES
        .iter()
        .find(|(p, _, _)| *p == rest)
        .ok_or(RouteError::NotFound)?;
    if !methods.contains(method) {
        return Err(RouteError::MethodNotAllowed(methods));
    }
    Ok(Routed {
        endpoint: *endpoint,
        version,
    })
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
}
