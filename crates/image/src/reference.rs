//! Image references, normalized the way Docker does it.
//!
//! The grammar and the normalization follow distribution/reference (`regexp.go`,
//! `normalize.go`): `busybox` is `docker.io/library/busybox:latest`, the first path
//! component is a registry only if it has a `.` or `:`, is `localhost`, or has an uppercase
//! letter. Like `ParseDockerRef`, a reference with a digest drops its tag: the digest is
//! what gets pulled, and keeping both would make two names for one thing.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Docker Hub's name in references.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's old name, canonicalized to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The host that actually serves Docker Hub's registry API (containerd `DefaultHost`).
pub const DOCKER_HUB_REGISTRY_HOST: &str = "registry-1.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
/// distribution/reference `NameTotalLengthMax`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

/// Why a reference was refused. The messages name the offending part so a user can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference: empty")]
    Empty,
    #[error("invalid reference {0:?}: repository name must be lowercase")]
    Uppercase(String),
    #[error("invalid reference {reference:?}: {what}")]
    InvalidFormat { reference: String, what: String },
    #[error("invalid reference {reference:?}: tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]*")]
    InvalidTag { reference: String, tag: String },
    #[error("invalid reference {reference:?}: tag is {len} characters, at most 128 are allowed")]
    TagTooLong { reference: String, len: usize },
    #[error("invalid reference {reference:?}: {source}")]
    InvalidDigest {
        reference: String,
        source: DigestError,
    },
    #[error("invalid reference {0:?}: repository name is longer than 255 characters")]
    NameTooLong(String),
    #[error(
        "invalid reference {0:?}: a 64-character hex string is an image ID, not a repository name"
    )]
    LooksLikeImageId(String),
}

/// A normalized image reference: registry domain, repository path, and a tag or a digest
/// (exactly one of them; see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes `s` (`busybox`, `host:5000/a/b:tag`, `x@sha256:...`).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let bad = |what: &str| ReferenceError::InvalidFormat {
            reference: s.to_owned(),
            what: what.to_owned(),
        };
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ReferenceError::LooksLikeImageId(s.to_owned()));
        }

        let (name_and_tag, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                let digest =
                    digest
                        .parse::<Digest>()
                        .map_err(|source| ReferenceError::InvalidDigest {
                            reference: s.to_owned(),
                            source,
                        })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };

        // A ':' after the last '/' starts the tag; one before it is a registry port.
        let last_slash = name_and_tag.rfind('/').unwrap_or(0);
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(colon) if colon >= last_slash => {
                (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
            }
            _ => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            validate_tag(s, tag)?;
        }
        if name.is_empty() {
            return Err(bad("repository name is empty"));
        }

        let (mut domain, mut path) = split_docker_domain(name);
        if domain == LEGACY_DEFAULT_DOMAIN {
            domain = DEFAULT_DOMAIN;
        }
        let path_owned;
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path_owned = format!("{OFFICIAL_REPO_PREFIX}{path}");
            path = &path_owned;
        }
        if !valid_domain(domain) {
            return Err(bad(&format!(
                "registry {domain:?} is not a valid host[:port]"
            )));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(s.to_owned()));
        }
        if let Some(component) = path.split('/').find(|c| !valid_path_component(c)) {
            return Err(bad(&format!(
                "path component {component:?} must be lowercase letters and digits separated by '.', '_', '__' or '-'"
            )));
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong(s.to_owned()));
        }

        let tag = match (&digest, tag) {
            (Some(_), _) => None,
            (None, Some(tag)) => Some(tag.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag,
            digest,
        })
    }

    /// The registry as named in the reference (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The host[:port] to connect to: Docker Hub's API lives on `registry-1.docker.io`.
    pub fn registry_host(&self) -> &str {
        if self.domain == DEFAULT_DOMAIN {
            DOCKER_HUB_REGISTRY_HOST
        } else {
            &self.domain
        }
    }

    /// The repository inside the registry (`library/busybox`): the `<name>` in `/v2/<name>/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag; `None` when the reference is by digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put after `/manifests/`: the digest if there is one, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The same repository pinned to `digest`.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The short form Docker prints (`busybox:latest`, `jupyter/minimal-notebook:latest`).
    ///
    /// Unlike Docker's `FamiliarName`, a Hub repository whose first component reads as a
    /// registry (`docker.io/evil.io/x`) keeps its `docker.io/`: shortened, it would name
    /// `x` on the registry `evil.io`, and what `save` writes or `images` shows would then
    /// load, pull or push from another host (found by fuzz/reference_parse).
    pub fn familiar(&self) -> String {
        let short = (self.domain == DEFAULT_DOMAIN).then(|| {
            self.path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.path)
        });
        let mut name = match short {
            // Nothing split off as a registry: the short form names this repository.
            Some(short) if split_docker_domain(short).1 == short => short.to_owned(),
            _ => self.name(),
        };
        self.push_suffix(&mut name);
        name
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        } else if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

/// normalize.go `splitDockerDomain`, without the library/ prefixing.
fn split_docker_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

/// `domainAndPort`: dot-separated labels (letters, digits, inner '-') or a bracketed IPv6
/// address, then an optional numeric port.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("[v6]", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host == "[v6]" {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `pathComponent`: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // A run of [a-z0-9]+.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // A separator: '.', '_', '__', or '-'+.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

fn validate_tag(reference: &str, tag: &str) -> Result<(), ReferenceError> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let ok =
        !b.is_empty() && word(b[0]) && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if !ok {
        return Err(ReferenceError::InvalidTag {
            reference: reference.to_owned(),
            tag: tag.to_owned(),
        });
    }
    if tag.len() > TAG_LENGTH_MAX {
        return Err(ReferenceError::TagTooLong {
            reference: reference.to_owned(),
            len: tag.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(s: &str) -> String {
        Reference::parse(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .to_string()
    }

    #[test]
    fn docker_hub_normalization() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(
            norm("jupyter/minimal-notebook"),
            "docker.io/jupyter/minimal-notebook:latest"
        );
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("docker.io/a/b/c"), "docker.io/a/b/c:latest");
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.domain(), "docker.io");
        assert_eq!(r.registry_host(), "registry-1.docker.io");
        assert_eq!(r.path(), "library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.manifest_ref(), "latest");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(
            Reference::parse("jupyter/minimal-notebook")
                .unwrap()
                .familiar(),
            "jupyter/minimal-notebook:latest"
        );
    }

    #[test]
    fn familiar_names_the_same_image() {
        // fuzz/reference_parse's crash: the short form named the registry libradocker.io.
        for (s, familiar) in [
            (
                "docker.io/libradocker.io/libbu/rf",
                "docker.io/libradocker.io/libbu/rf:latest",
            ),
            ("docker.io/localhost/x", "docker.io/localhost/x:latest"),
            (
                "index.docker.io/docker.io/j/0",
                "docker.io/docker.io/j/0:latest",
            ),
            ("docker.io/library/a.b", "a.b:latest"),
            ("docker.io/a.b", "a.b:latest"),
            ("a/b.c", "a/b.c:latest"),
        ] {
            let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(r.familiar(), familiar, "{s}");
            assert_eq!(Reference::parse(&r.familiar()).expect("parses back"), r);
        }
    }

    #[test]
    fn other_registries() {
        let r = Reference::parse("host:5000/a/b:tag").unwrap();
        assert_eq!(r.domain(), "host:5000");
        assert_eq!(r.registry_host(), "host:5000");
        assert_eq!(r.path(), "a/b");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.familiar(), "host:5000/a/b:tag");

        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("localhost:5000/x:v1"), "localhost:5000/x:v1");
        assert_eq!(
            norm("127.0.0.1:5000/test/busybox"),
            "127.0.0.1:5000/test/busybox:latest"
        );
        assert_eq!(
            norm("quay.io/prometheus/node-exporter"),
            "quay.io/prometheus/node-exporter:latest"
        );
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
        // Without a '/', "localhost:5000" is repository "localhost" with tag "5000", as in Docker.
        assert_eq!(norm("localhost:5000"), "docker.io/library/localhost:5000");
        // A first component without '.', ':' or "localhost" is a Docker Hub namespace.
        assert_eq!(norm("myhost/x"), "docker.io/myhost/x:latest");
        // An uppercase first component is a registry name (normalize.go).
        assert_eq!(norm("MyHost/x"), "MyHost/x:latest");
    }

    #[test]
    fn separators_in_path_components() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1.b2_c3__d4-e5"] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a___b", "a..b", "-a", "a-", "a.", "_a", "a/", "a//b", "a/.b", "a b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        let s = format!("busybox@sha256:{HEX}");
        let r = Reference::parse(&s).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        assert_eq!(r.manifest_ref(), format!("sha256:{HEX}"));
        // name:tag@digest keeps only the digest, like ParseDockerRef.
        let r = Reference::parse(&format!("localhost:5000/x:v1@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.to_string(), format!("localhost:5000/x@sha256:{HEX}"));
    }

    #[test]
    fn invalid_references() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("BusyBox"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse("docker.io/Library/busybox"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse("busybox:bad/tag"),
            Err(ReferenceError::InvalidFormat { .. }) | Err(ReferenceError::InvalidTag { .. })
        ));
        for tag in ["-x", ".x", "a+b", "a!", "é"] {
            assert!(
                matches!(
                    Reference::parse(&format!("busybox:{tag}")),
                    Err(ReferenceError::InvalidTag { .. })
                ),
                "{tag}"
            );
        }
        assert!(matches!(
            Reference::parse("busybox:"),
            Err(ReferenceError::InvalidTag { .. })
        ));
        let long = "a".repeat(129);
        assert!(matches!(
            Reference::parse(&format!("busybox:{long}")),
            Err(ReferenceError::TagTooLong { len: 129, .. })
        ));
        assert!(Reference::parse(&format!("busybox:{}", "a".repeat(128))).is_ok());
        for digest in [
            "sha256:abc",
            &format!("sha256:{}", HEX.to_uppercase()),
            "sha256",
            "",
            &format!("md5:{HEX}:x"),
        ] {
            assert!(
                matches!(
                    Reference::parse(&format!("busybox@{digest}")),
                    Err(ReferenceError::InvalidDigest { .. })
                ),
                "{digest}"
            );
        }
        assert!(matches!(
            Reference::parse(HEX),
            Err(ReferenceError::LooksLikeImageId(_))
        ));
        assert!(matches!(
            Reference::parse(&format!("a/{}", "b".repeat(260))),
            Err(ReferenceError::NameTooLong(_))
        ));
        for bad in [
            ":tag",
            "/x",
            "host:port/x",
            "-host.com/x",
            "[::1/x",
            "a@b@c",
            "host:5000/",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = Reference::parse("Busybox").unwrap_err().to_string();
        assert!(e.contains("lowercase"), "{e}");
        let e = Reference::parse("busybox:a+b").unwrap_err().to_string();
        assert!(e.contains("\"a+b\""), "{e}");
    }
}
