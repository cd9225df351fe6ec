//! Image references as the docker CLI normalizes them (distribution/reference
//! `ParseNormalizedNamed`): `alpine` -> `docker.io/library/alpine:latest`. The CLI needs
//! this for `pull`'s `fromImage`/`tag` query, for "Unable to find image 'alpine:latest'
//! locally", and to reject bad names before asking the daemon (`invalid reference format`).
//!
//! The image crate has its own parser for the daemon; the CLI may not depend on it (cli ->
//! api only), and what it needs is this small.

const DEFAULT_DOMAIN: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `ghcr.io`.
    pub domain: String,
    /// `library/alpine`.
    pub path: String,
    pub tag: Option<String>,
    /// `sha256:...`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalizes; errors carry Docker's text (`invalid reference format...`).
    pub fn parse(s: &str) -> Result<Reference, String> {
        const INVALID: &str = "invalid reference format";
        if s.is_empty() {
            return Err(INVALID.into());
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !valid_digest(d) {
                    return Err(INVALID.into());
                }
                (n, Some(d.to_owned()))
            }
            None => (s, None),
        };
        let (name, tag) = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => {
                let t = &name[i + 1..];
                if !valid_tag(t) {
                    return Err(INVALID.into());
                }
                (&name[..i], Some(t.to_owned()))
            }
            _ => (name, None),
        };
        let (domain, mut path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
        };
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_PREFIX}{path}");
        }
        if path.to_lowercase() != path {
            return Err(format!(
                "{INVALID}: repository name ({path}) must be lowercase"
            ));
        }
        if !valid_domain(&domain) || path.split('/').any(|c| !valid_component(c)) {
            return Err(INVALID.into());
        }
        if domain.len() + 1 + path.len() > 255 {
            return Err("repository name must not be more than 255 characters".into());
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `docker.io/library/alpine`: what `fromImage` carries.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `alpine`, `user/app`, `localhost:5000/app`: how the docker CLI shows names.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_PREFIX)
                .unwrap_or(&self.path)
                .to_owned()
        } else {
            self.full_name()
        }
    }

    /// The tag, `latest` when neither a tag nor a digest was given (`TagNameOnly`).
    pub fn tag_or_latest(&self) -> Option<String> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".into()),
        }
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = self.tag_or_latest() {
            s.push(':');
            s.push_str(&t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// `alpine:latest`: as in "Unable to find image 'alpine:latest' locally".
    pub fn familiar_string(&self) -> String {
        format!("{}{}", self.familiar_name(), self.suffix())
    }

    /// `docker.io/library/alpine:latest`: what `docker pull` prints last.
    pub fn full_string(&self) -> String {
        format!("{}{}", self.full_name(), self.suffix())
    }
}

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0] as char) || !is_alnum_lower(b[b.len() - 1] as char) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i] as char;
        if is_alnum_lower(ch) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or any number of `-`.
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i] as char) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if d.starts_with('[') {
        match d.find(']') {
            Some(i) => (&d[..=i], d[i + 1..].strip_prefix(':')),
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') {
        return host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `algorithm:hex` with at least 32 hex digits.
fn valid_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some((alg, hex)) => {
            !alg.is_empty()
                && alg.starts_with(|c: char| c.is_ascii_alphabetic())
                && alg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'.'))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let r = Reference::parse("alpine").expect("valid");
        assert_eq!(r.full_string(), "docker.io/library/alpine:latest");
        assert_eq!(r.familiar_string(), "alpine:latest");
        let r = Reference::parse("user/app:1.0").expect("valid");
        assert_eq!(r.full_name(), "docker.io/user/app");
        assert_eq!(r.familiar_string(), "user/app:1.0");
        let r = Reference::parse("localhost:5000/app").expect("valid");
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.familiar_name(), "localhost:5000/app");
        assert_eq!(r.tag_or_latest().as_deref(), Some("latest"));
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        let r = Reference::parse(&d).expect("valid");
        assert_eq!(r.tag_or_latest(), None);
        assert_eq!(
            r.familiar_string(),
            format!("busybox@sha256:{}", "a".repeat(64))
        );
    }

    #[test]
    fn rejects_with_dockers_words() {
        assert_eq!(
            Reference::parse("Alpine").expect_err("upper"),
            "invalid reference format: repository name (library/Alpine) must be lowercase"
        );
        for bad in [
            "",
            "a b",
            "alpine:",
            "-x",
            "a//b",
            "x@sha256:zz",
            "alpine:tag!",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
