//! Reading a bundle: `config.json` parsed with the field path in every error, then checked
//! for what serde cannot see (version, rootfs, namespace rules) before anything is created.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A parsed bundle with its paths made absolute.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

impl Bundle {
    /// Loads and validates `<dir>/config.json`. `need_process` is false only for callers that
    /// do not start anything (none today, kept so `delete` can reuse the parser).
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::Config {
            path: dir.to_path_buf(),
            cause: format!("bundle directory: {e}"),
        })?;
        let config_path = dir.join("config.json");
        let text = std::fs::read(&config_path).map_err(|e| Error::Config {
            path: config_path.clone(),
            cause: e.to_string(),
        })?;
        let spec = parse_spec(&text).map_err(|cause| Error::Config {
            path: config_path.clone(),
            cause,
        })?;
        let rootfs = resolve_rootfs(&dir, &spec).map_err(|cause| Error::Config {
            path: config_path.clone(),
            cause,
        })?;
        validate(&spec).map_err(|cause| Error::Config {
            path: config_path,
            cause,
        })?;
        Ok(Bundle { dir, rootfs, spec })
    }
}

/// Parses config.json text. Errors name the JSON path of the offending field, e.g.
/// `process.rlimits[0].type: unknown variant ...`.
pub fn parse_spec(text: &[u8]) -> Result<Spec, String> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize::<_, Spec>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let syntax = matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        );
        if syntax || path == "." || path.is_empty() {
            format!("invalid JSON: {inner}")
        } else {
            format!("{path}: {inner}")
        }
    })
}

fn resolve_rootfs(dir: &Path, spec: &Spec) -> Result<PathBuf, String> {
    let root = spec
        .root()
        .as_ref()
        .ok_or("root: missing (the spec requires root.path on Linux)")?;
    let path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    let meta =
        std::fs::metadata(&path).map_err(|e| format!("root.path {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Err(format!("root.path {}: not a directory", path.display()));
    }
    std::fs::canonicalize(&path).map_err(|e| format!("root.path {}: {e}", path.display()))
}

/// Checks that serde's types cannot express. Each message names the field.
pub fn validate(spec: &Spec) -> Result<(), String> {
    let version = spec.version();
    let major = version.split('.').next().unwrap_or("");
    if major != "1" {
        return Err(format!(
            "ociVersion: {version:?} is not supported (this runtime implements 1.0.0 to 1.3.0)"
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or("process: missing (create needs a process to run)")?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err("process.args: must name the program to run".into());
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd: {:?} must be an absolute path",
            process.cwd()
        ));
    }
    let linux = spec.linux().as_ref();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    let mut seen = HashSet::new();
    for ns in namespaces.into_iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(format!("linux.namespaces: {} appears twice", ns.typ()));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(format!(
                    "linux.namespaces: {} path {:?} must be absolute",
                    ns.typ(),
                    p
                ));
            }
        }
    }
    let has_new = |t| namespaces.into_iter().flatten().any(|n| n.typ() == t);
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has_new(LinuxNamespaceType::Uts)
    {
        return Err(
            "hostname: needs a private UTS namespace (add {\"type\": \"uts\"} to linux.namespaces)"
                .into(),
        );
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty())
        && !has_new(LinuxNamespaceType::Uts)
    {
        return Err("domainname: needs a private UTS namespace".into());
    }
    let has_user = has_new(LinuxNamespaceType::User);
    if let Some(l) = linux {
        let maps = l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if maps && !has_user {
            return Err("linux.uidMappings: mappings need a user namespace".into());
        }
        if l.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
            && !has_new(LinuxNamespaceType::Time)
        {
            return Err("linux.timeOffsets: offsets need a time namespace".into());
        }
        for key in l.time_offsets().iter().flat_map(|t| t.keys()) {
            if key != "monotonic" && key != "boottime" {
                return Err(format!(
                    "linux.timeOffsets: unknown clock {key:?} (monotonic or boottime)"
                ));
            }
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(format!(
                "mounts[{i}].destination: {:?} must be an absolute path",
                m.destination()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_json(patch: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]},
            "hostname": "h"
        });
        patch(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    fn check(patch: impl FnOnce(&mut serde_json::Value)) -> Result<(), String> {
        validate(&parse_spec(&spec_json(patch))?)
    }

    #[test]
    fn every_1x_version_is_accepted() {
        for v in [
            "1.0.0",
            "1.0.2",
            "1.1.0",
            "1.2.0",
            "1.2.1",
            "1.3.0",
            "1.0.0-rc5",
        ] {
            check(|s| s["ociVersion"] = v.into()).unwrap();
        }
    }

    #[test]
    fn other_versions_are_refused_by_name() {
        let e = check(|s| s["ociVersion"] = "2.0.0".into()).unwrap_err();
        assert!(e.starts_with("ociVersion:"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let e = check(|s| s["linux"]["namespaces"][1]["type"] = "bogus".into()).unwrap_err();
        assert!(e.starts_with("linux.namespaces[1].type:"), "{e}");
        let e = check(|s| {
            s["process"]["rlimits"] =
                serde_json::json!([{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}])
        })
        .unwrap_err();
        assert!(e.starts_with("process.rlimits[0].type:"), "{e}");
        let e = parse_spec(b"{\"ociVersion\": ").unwrap_err();
        assert!(e.starts_with("invalid JSON"), "{e}");
    }

    #[test]
    fn semantic_rules() {
        assert!(check(|s| s["process"]["args"] = serde_json::json!([]))
            .unwrap_err()
            .starts_with("process.args"));
        assert!(check(|s| s["process"]["cwd"] = "rel".into())
            .unwrap_err()
            .starts_with("process.cwd"));
        assert!(
            check(|s| s["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]))
                .unwrap_err()
                .starts_with("hostname")
        );
        assert!(
            check(|s| s["linux"]["namespaces"][2] = serde_json::json!({"type": "pid"}))
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            check(|s| s["mounts"] = serde_json::json!([{"destination": "rel"}]))
                .unwrap_err()
                .starts_with("mounts[0].destination")
        );
    }
}
