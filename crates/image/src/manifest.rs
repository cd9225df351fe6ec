//! The image JSON we read: manifests, indexes, configs (OCI image-spec and Docker
//! schema2, which share a shape), and platform selection from an index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Media types this crate knows.
pub mod media_type {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

    /// The `Accept` header for manifest requests (containerd's list): without it old
    /// registries answer with schema1.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.docker.distribution.manifest.v2+json";

    /// Whether a layer descriptor's media type is a filesystem layer we can unpack
    /// (the `nondistributable` variants included).
    pub fn is_layer(mt: &str) -> bool {
        mt == DOCKER_LAYER_GZIP
            || mt == DOCKER_FOREIGN_LAYER_GZIP
            || mt.starts_with("application/vnd.oci.image.layer.v1.tar")
            || mt.starts_with("application/vnd.oci.image.layer.nondistributable.v1.tar")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for its type: {0}")]
    Json(#[from] serde_json::Error),
    #[error("registry said Content-Type {content_type:?} but the manifest says mediaType {media_type:?}")]
    MediaTypeMismatch {
        content_type: String,
        media_type: String,
    },
    #[error("Docker schema1 manifests are not supported (deprecated since 2017); push the image again with a current client")]
    Schema1,
    #[error("unsupported manifest media type {0:?}")]
    Unsupported(String),
}

/// A content descriptor (image-spec descriptor.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An image platform (image-index.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// This machine, in OCI's (GOARCH's) names.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            variant: variant.map(str::to_owned),
            ..Platform::default()
        }
    }

    /// Whether `candidate` can run where `self` is wanted. A missing variant means the
    /// architecture's baseline (containerd's normalization: arm64 = v8, arm = v7,
    /// amd64 = v1); a wanted variant must then match exactly.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let arch = |a: &str| match a {
            "x86_64" | "x86-64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            a => a.to_owned(),
        };
        let default_variant = |a: &str| match a {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            "amd64" => Some("v1"),
            _ => None,
        };
        let want_arch = arch(&self.architecture);
        let have_arch = arch(&candidate.architecture);
        if self.os != candidate.os || want_arch != have_arch {
            return false;
        }
        let Some(want_variant) = self.variant.as_deref().or(default_variant(&want_arch)) else {
            return true;
        };
        let have_variant = candidate.variant.as_deref().or(default_variant(&have_arch));
        have_variant == Some(want_variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// BuildKit marks its provenance/SBOM entries in an index with this annotation.
const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";
const ATTESTATION_MANIFEST: &str = "attestation-manifest";

impl Index {
    /// The first entry for `platform` (image-index.md: "the first matching entry SHOULD
    /// be used"), skipping attestation manifests, which carry `unknown/unknown`.
    pub fn select(&self, platform: &Platform) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            d.annotations
                .get(REFERENCE_TYPE_ANNOTATION)
                .map(String::as_str)
                != Some(ATTESTATION_MANIFEST)
                && d.platform.as_ref().is_some_and(|p| platform.matches(p))
        })
    }

    /// The platforms on offer, for the "no match" error.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter(|d| {
                d.annotations
                    .get(REFERENCE_TYPE_ANNOTATION)
                    .map(String::as_str)
                    != Some(ATTESTATION_MANIFEST)
            })
            .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
            .collect()
    }
}

/// A parsed manifest-or-index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyManifest {
    Index(Index),
    Manifest(Box<Manifest>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// Parses a manifest or index, deciding which by the registry's `Content-Type` (its
/// parameters ignored), the body's `mediaType`, or, for OCI bodies without one, its
/// shape. Per the distribution spec, a body whose `mediaType` contradicts the
/// `Content-Type` is refused.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<AnyManifest, ManifestError> {
    let probe: Probe = serde_json::from_slice(body)?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
    if let (Some(ct), Some(mt)) = (content_type, probe.media_type.as_deref()) {
        if ct != mt {
            return Err(ManifestError::MediaTypeMismatch {
                content_type: ct.to_owned(),
                media_type: mt.to_owned(),
            });
        }
    }
    if probe.schema_version == Some(1) {
        return Err(ManifestError::Schema1);
    }
    let kind = probe.media_type.as_deref().or(content_type);
    match kind {
        Some(media_type::OCI_INDEX | media_type::DOCKER_LIST) => {
            Ok(AnyManifest::Index(serde_json::from_slice(body)?))
        }
        Some(media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST) => Ok(AnyManifest::Manifest(
            Box::new(serde_json::from_slice(body)?),
        )),
        Some(media_type::DOCKER_SCHEMA1 | media_type::DOCKER_SCHEMA1_SIGNED) => {
            Err(ManifestError::Schema1)
        }
        Some(other) => Err(ManifestError::Unsupported(other.to_owned())),
        None if probe.manifests.is_some() => Ok(AnyManifest::Index(serde_json::from_slice(body)?)),
        None => Ok(AnyManifest::Manifest(Box::new(serde_json::from_slice(
            body,
        )?))),
    }
}

/// The parts of an image config (image-spec config.md) berth uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// The runtime defaults an image carries (`config` in the image config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn entry(arch: &str, variant: Option<&str>, attestation: bool) -> serde_json::Value {
        let mut v = serde_json::json!({
            "mediaType": media_type::OCI_MANIFEST, "digest": D, "size": 1,
            "platform": {"architecture": arch, "os": "linux"}
        });
        if let Some(variant) = variant {
            v["platform"]["variant"] = variant.into();
        }
        if attestation {
            v["platform"] = serde_json::json!({"architecture": "unknown", "os": "unknown"});
            v["annotations"] =
                serde_json::json!({"vnd.docker.reference.type": "attestation-manifest"});
        }
        v
    }

    fn index(entries: Vec<serde_json::Value>) -> Index {
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": entries});
        match parse(Some(media_type::OCI_INDEX), body.to_string().as_bytes()).unwrap() {
            AnyManifest::Index(i) => i,
            other => panic!("{other:?}"),
        }
    }

    fn want(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
            ..Platform::default()
        }
    }

    #[test]
    fn platform_selection() {
        let idx = index(vec![
            entry("unknown", None, true),
            entry("arm", Some("v6"), false),
            entry("arm", Some("v7"), false),
            entry("arm64", Some("v8"), false),
            entry("amd64", None, false),
        ]);
        let pick = |p: Platform| idx.select(&p).and_then(|d| d.platform.clone());
        assert_eq!(pick(want("amd64", None)).unwrap().architecture, "amd64");
        assert_eq!(pick(want("x86_64", None)).unwrap().architecture, "amd64");
        assert_eq!(
            pick(want("arm", Some("v7"))).unwrap().variant.as_deref(),
            Some("v7")
        );
        assert_eq!(
            pick(want("arm", None)).unwrap().variant.as_deref(),
            Some("v7")
        );
        assert_eq!(
            pick(want("arm", Some("v6"))).unwrap().variant.as_deref(),
            Some("v6")
        );
        assert_eq!(pick(want("arm64", None)).unwrap().architecture, "arm64");
        assert!(pick(want("s390x", None)).is_none());
        assert!(!idx.platforms().iter().any(|p| p.contains("unknown")));

        // Only attestations for our platform: nothing.
        let idx = index(vec![entry("unknown", None, true)]);
        assert!(idx.select(&want("amd64", None)).is_none());
        // arm64 without a variant means v8.
        let idx = index(vec![entry("arm64", None, false)]);
        assert!(idx.select(&want("arm64", Some("v8"))).is_some());
        assert!(idx.select(&want("amd64", None)).is_none());
    }

    #[test]
    fn parse_by_content_type_media_type_or_shape() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": D, "size": 2},
            "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": D, "size": 3}]
        });
        let body = manifest.to_string();
        assert!(matches!(
            parse(None, body.as_bytes()).unwrap(),
            AnyManifest::Manifest(_)
        ));
        assert!(matches!(
            parse(
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                body.as_bytes()
            )
            .unwrap(),
            AnyManifest::Manifest(_)
        ));
        let mut docker = manifest.clone();
        docker["mediaType"] = media_type::DOCKER_MANIFEST.into();
        let body = docker.to_string();
        assert!(matches!(
            parse(Some(media_type::OCI_INDEX), body.as_bytes()),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            parse(Some(media_type::DOCKER_MANIFEST), body.as_bytes()).unwrap(),
            AnyManifest::Manifest(_)
        ));
        let schema1 =
            serde_json::json!({"schemaVersion": 1, "name": "x", "fsLayers": []}).to_string();
        assert!(matches!(
            parse(None, schema1.as_bytes()),
            Err(ManifestError::Schema1)
        ));
        assert!(matches!(
            parse(None, b"not json"),
            Err(ManifestError::Json(_))
        ));
        let bad_digest = body.replace(&D[7..], "xyz");
        assert!(parse(None, bad_digest.as_bytes()).is_err());
    }

    #[test]
    fn config_fields() {
        let cfg: ImageConfig = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/", "ExposedPorts": {"80/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [D]}
        }))
        .unwrap();
        assert_eq!(cfg.rootfs.diff_ids.len(), 1);
        let c = cfg.config.unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["sh"]);
        assert_eq!(c.working_dir.as_deref(), Some("/"));
        assert!(media_type::is_layer(media_type::DOCKER_LAYER_GZIP));
        assert!(media_type::is_layer(media_type::OCI_LAYER_ZSTD));
        assert!(!media_type::is_layer(
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
        ));
    }
}
