//! A container's mounts from its create request: `-v`/`Binds` (host paths, named and
//! anonymous volumes), `--mount` (`bind`, `volume`, `tmpfs`) and the anonymous volumes for
//! `Config.Volumes` (an image's `VOLUME`, `-v /path`) that nothing else covers.
//!
//! Planning is pure ([`plan`]); the container manager applies it at create (makes missing
//! bind sources, gets the volumes) and keeps the result in the record as [`MountRecord`]s,
//! which are what start binds, what inspect and `ps` show, and which volumes the container
//! holds a reference to. Docker's precedence: `Binds`, then `Mounts`, then `Config.Volumes`
//! for destinations still free; one destination twice is an error.

use std::path::{Component, Path, PathBuf};

use berth_api::container::{HostConfig, MountPoint, StringSet};
use serde::{Deserialize, Serialize};

use crate::container_record::ContainerRecord;
use crate::container_spec::BindMount;
use crate::response::ApiError;
use crate::volume_store::{self, VolumeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Volume => "volume",
            Self::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a container as decided at create, kept in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub kind: MountKind,
    /// The volume's name; empty for other kinds.
    #[serde(default)]
    pub name: String,
    /// The host path: a bind's source, a volume's data directory; empty for tmpfs.
    #[serde(default)]
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// inspect's `Mode`: the `-v` options as given (`ro`, `z`), Docker's `z` for volumes.
    #[serde(default)]
    pub mode: String,
    /// Copy the image's content at `destination` into the volume while it is empty.
    #[serde(default)]
    pub copy_up: bool,
    /// Made for this container: removed with it on `rm -v` and `--rm`.
    #[serde(default)]
    pub anonymous: bool,
    /// tmpfs options (`size=..,mode=..`), after berth's `nosuid,nodev,noexec`.
    #[serde(default)]
    pub tmpfs_options: String,
}

impl MountRecord {
    /// inspect's and `ps`'s `Mounts` entry.
    pub fn to_api(&self) -> MountPoint {
        MountPoint {
            kind: self.kind.as_str().to_owned(),
            name: self.name.clone(),
            source: self.source.clone(),
            destination: self.destination.clone(),
            driver: if self.kind == MountKind::Volume {
                volume_store::LOCAL_DRIVER.to_owned()
            } else {
                String::new()
            },
            mode: self.mode.clone(),
            rw: !self.read_only,
            propagation: if self.kind == MountKind::Bind {
                "rprivate".to_owned()
            } else {
                String::new()
            },
        }
    }
}

/// Which volume a mount wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    Named(String),
    Anonymous,
}

/// What a mount needs before it can be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A host path. `create_missing`: `-v` makes a missing directory; `--mount` refuses it.
    Host {
        path: PathBuf,
        create_missing: bool,
    },
    Volume(VolumeSource),
    Tmpfs,
}

/// One planned mount: a [`MountRecord`] once its source is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    pub source: Source,
    pub destination: String,
    pub read_only: bool,
    pub mode: String,
    pub copy_up: bool,
    pub tmpfs_options: String,
}

impl PlannedMount {
    /// The record, given the host path of a bind or volume and the volume's name.
    pub fn record(&self, name: &str, host_path: &Path) -> MountRecord {
        let (kind, anonymous) = match &self.source {
            Source::Host { .. } => (MountKind::Bind, false),
            Source::Volume(v) => (MountKind::Volume, *v == VolumeSource::Anonymous),
            Source::Tmpfs => (MountKind::Tmpfs, false),
        };
        MountRecord {
            kind,
            name: name.to_owned(),
            source: host_path.display().to_string(),
            destination: self.destination.clone(),
            read_only: self.read_only,
            mode: self.mode.clone(),
            copy_up: self.copy_up,
            anonymous,
            tmpfs_options: self.tmpfs_options.clone(),
        }
    }
}

/// `/a/./b/` -> `/a/b`; `None` unless absolute and below `/`.
fn clean_destination(dest: &str) -> Option<String> {
    if !dest.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

fn invalid_spec(spec: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("invalid volume specification: '{spec}': {why}"))
}

fn invalid_mount(kind: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("invalid mount config for type \"{kind}\": {why}"))
}

fn volume_name(name: &str) -> Result<VolumeSource, ApiError> {
    if volume_store::valid_name(name) {
        Ok(VolumeSource::Named(name.to_owned()))
    } else {
        Err(VolumeError::InvalidName(name.to_owned()).into())
    }
}

/// One `Binds` entry: `/host:/ctr[:opts]`, `name:/ctr[:opts]` or `/ctr` (anonymous).
fn parse_bind(spec: &str) -> Result<PlannedMount, ApiError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, dest, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid volume specification: '{spec}'"
            )))
        }
    };
    let destination = clean_destination(dest).ok_or_else(|| {
        invalid_spec(
            spec,
            &format!("invalid mount config: invalid mount path: '{dest}' mount path must be absolute and not '/'"),
        )
    })?;
    let mut read_only = false;
    let mut copy_up = true;
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "nocopy" => copy_up = false,
            // Labels (z, Z) have no meaning without SELinux; propagation stays rprivate.
            "rw" | "z" | "Z" | "private" | "rprivate" | "shared" | "rshared" | "slave"
            | "rslave" | "copy" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid mode: {other} in volume specification '{spec}'"
                )))
            }
        }
    }
    let source = if source.is_empty() {
        Source::Volume(VolumeSource::Anonymous)
    } else if source.starts_with('/') {
        Source::Host {
            path: PathBuf::from(source),
            create_missing: true,
        }
    } else {
        Source::Volume(volume_name(source)?)
    };
    let mode = match (&source, opts) {
        (Source::Volume(VolumeSource::Named(_)), "") => "z".to_owned(),
        (_, o) => o.to_owned(),
    };
    Ok(PlannedMount {
        source,
        destination,
        read_only,
        mode,
        copy_up,
        tmpfs_options: String::new(),
    })
}

/// One `Mounts` entry (`--mount`).
fn parse_mount(m: &berth_api::container::Mount) -> Result<PlannedMount, ApiError> {
    let kind = m.kind.as_str();
    let destination = clean_destination(&m.target).ok_or_else(|| {
        invalid_mount(
            kind,
            &format!(
                "invalid mount path: '{}' mount path must be absolute and not '/'",
                m.target
            ),
        )
    })?;
    let mut planned = PlannedMount {
        source: Source::Tmpfs,
        destination,
        read_only: m.read_only,
        mode: String::new(),
        copy_up: false,
        tmpfs_options: String::new(),
    };
    match kind {
        "bind" => {
            if m.source.is_empty() {
                return Err(invalid_mount(kind, "field Source must not be empty"));
            }
            if !m.source.starts_with('/') {
                return Err(invalid_mount(
                    kind,
                    &format!(
                        "invalid mount path: '{}' mount path must be absolute",
                        m.source
                    ),
                ));
            }
            planned.source = Source::Host {
                path: PathBuf::from(&m.source),
                create_missing: false,
            };
        }
        "volume" => {
            let opts = m.volume_options.clone().unwrap_or_default();
            if let Some(driver) = opts.driver_config.as_ref().map(|d| d.name.as_str()) {
                if !driver.is_empty() && driver != volume_store::LOCAL_DRIVER {
                    return Err(VolumeError::UnknownDriver {
                        name: m.source.clone(),
                        driver: driver.to_owned(),
                    }
                    .into());
                }
            }
            planned.source = Source::Volume(if m.source.is_empty() {
                VolumeSource::Anonymous
            } else {
                volume_name(&m.source)?
            });
            planned.copy_up = !opts.no_copy;
            planned.mode = "z".to_owned();
        }
        "tmpfs" => {
            if !m.source.is_empty() {
                return Err(invalid_mount(kind, "field Source must not be specified"));
            }
            let opts = m.tmpfs_options.clone().unwrap_or_default();
            let mut list = Vec::new();
            if m.read_only {
                list.push("ro".to_owned());
            }
            if opts.size_bytes < 0 {
                return Err(invalid_mount(kind, "tmpfs size must not be negative"));
            }
            if opts.size_bytes > 0 {
                list.push(format!("size={}", opts.size_bytes));
            }
            if opts.mode != 0 {
                list.push(format!("mode={:o}", opts.mode & 0o7777));
            }
            planned.tmpfs_options = list.join(",");
        }
        other => return Err(invalid_mount(other, "mount type unknown")),
    }
    Ok(planned)
}

/// Every mount of a container to be created, in Docker's precedence, destinations unique.
/// `volumes` is the merged `Config.Volumes` (request and image).
pub fn plan(hc: &HostConfig, volumes: Option<&StringSet>) -> Result<Vec<PlannedMount>, ApiError> {
    let mut out: Vec<PlannedMount> = Vec::new();
    let mut taken: Vec<String> = hc
        .tmpfs
        .keys()
        .filter_map(|d| clean_destination(d))
        .collect();
    let mut add = |m: PlannedMount, out: &mut Vec<PlannedMount>| {
        if taken.contains(&m.destination) {
            return Err(ApiError::bad_request(format!(
                "Duplicate mount point: {}",
                m.destination
            )));
        }
        taken.push(m.destination.clone());
        out.push(m);
        Ok(())
    };
    for bind in &hc.binds {
        add(parse_bind(bind)?, &mut out)?;
    }
    for m in &hc.mounts {
        add(parse_mount(m)?, &mut out)?;
    }
    for dest in volumes.into_iter().flat_map(|v| v.keys()) {
        let Some(destination) = clean_destination(dest) else {
            return Err(invalid_spec(
                dest,
                "mount path must be absolute and not '/'",
            ));
        };
        // A user mount there wins over the image's VOLUME, as in Docker.
        if out.iter().any(|m| m.destination == destination)
            || hc
                .tmpfs
                .keys()
                .any(|t| clean_destination(t).as_deref() == Some(&destination))
        {
            continue;
        }
        out.push(PlannedMount {
            source: Source::Volume(VolumeSource::Anonymous),
            destination,
            read_only: false,
            mode: String::new(),
            copy_up: true,
            tmpfs_options: String::new(),
        });
    }
    Ok(out)
}

/// The container's mounts: its record's, or for a record made before berth kept them,
/// its host-path binds (the only mounts berth had then).
pub fn of(record: &ContainerRecord) -> Vec<MountRecord> {
    if !record.mounts.is_empty() {
        return record.mounts.clone();
    }
    let mut hc = record.host_config.clone();
    hc.tmpfs.clear();
    plan(&hc, None)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| match &m.source {
            Source::Host { path, .. } => Some(m.record("", path)),
            _ => None,
        })
        .collect()
}

/// Binds for `config.json`: host paths and volume directories.
pub fn binds(mounts: &[MountRecord]) -> Vec<BindMount> {
    mounts
        .iter()
        .filter(|m| m.kind != MountKind::Tmpfs)
        .map(|m| BindMount {
            source: PathBuf::from(&m.source),
            destination: m.destination.clone(),
            read_only: m.read_only,
        })
        .collect()
}

/// `--tmpfs` (HostConfig.Tmpfs) and `--mount type=tmpfs` as (destination, options).
pub fn tmpfs(record: &ContainerRecord) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = record
        .host_config
        .tmpfs
        .iter()
        .map(|(d, o)| (d.clone(), o.clone()))
        .collect();
    out.extend(
        record
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Tmpfs)
            .map(|m| (m.destination.clone(), m.tmpfs_options.clone())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::container::{EmptyObject, Mount, TmpfsOptions, VolumeOptions};

    fn hc(binds: &[&str]) -> HostConfig {
        HostConfig {
            binds: binds.iter().map(|b| (*b).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn binds_volumes_and_anonymous() {
        let p = plan(
            &hc(&["/srv:/data:ro", "cache:/cache", "/anon/", "web:/www:nocopy"]),
            None,
        )
        .expect("valid");
        assert_eq!(
            p[0].source,
            Source::Host {
                path: "/srv".into(),
                create_missing: true
            }
        );
        assert!(p[0].read_only && p[0].mode == "ro");
        assert_eq!(
            p[1].source,
            Source::Volume(VolumeSource::Named("cache".into()))
        );
        assert_eq!(p[1].mode, "z");
        assert!(p[1].copy_up);
        assert_eq!(p[2].source, Source::Volume(VolumeSource::Anonymous));
        assert_eq!(p[2].destination, "/anon");
        assert!(!p[3].copy_up);
    }

    #[test]
    fn bad_binds_are_refused() {
        for bad in ["data:rel", "/a:/b:rx", "a:b:c:d", "/:/", "x:/"] {
            assert!(plan(&hc(&[bad]), None).is_err(), "{bad}");
        }
        let err = plan(&hc(&["bad name:/x"]), None).expect_err("name");
        assert!(err.message.contains("includes invalid characters"), "{err}");
        let err = plan(&hc(&["/a:/x", "v1:/x/"]), None).expect_err("dup");
        assert_eq!(err.message, "Duplicate mount point: /x");
    }

    #[test]
    fn mounts_of_each_type() {
        let mut h = HostConfig {
            mounts: vec![
                Mount {
                    kind: "volume".into(),
                    source: "data".into(),
                    target: "/data".into(),
                    read_only: true,
                    volume_options: Some(VolumeOptions {
                        no_copy: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Mount {
                    kind: "tmpfs".into(),
                    target: "/scratch".into(),
                    tmpfs_options: Some(TmpfsOptions {
                        size_bytes: 1 << 20,
                        mode: 0o1770,
                    }),
                    ..Default::default()
                },
                Mount {
                    kind: "bind".into(),
                    source: "/etc".into(),
                    target: "/host-etc".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let p = plan(&h, None).expect("valid");
        assert_eq!(
            p[0].source,
            Source::Volume(VolumeSource::Named("data".into()))
        );
        assert!(p[0].read_only && !p[0].copy_up);
        assert_eq!(p[1].source, Source::Tmpfs);
        assert_eq!(p[1].tmpfs_options, "size=1048576,mode=1770");
        assert_eq!(
            p[2].source,
            Source::Host {
                path: "/etc".into(),
                create_missing: false
            }
        );
        h.mounts = vec![Mount {
            kind: "bogus".into(),
            target: "/x".into(),
            ..Default::default()
        }];
        assert_eq!(
            plan(&h, None).expect_err("bogus").message,
            "invalid mount config for type \"bogus\": mount type unknown"
        );
        h.mounts = vec![Mount {
            kind: "tmpfs".into(),
            source: "x".into(),
            target: "/x".into(),
            ..Default::default()
        }];
        assert!(plan(&h, None).is_err());
    }

    #[test]
    fn image_volumes_unless_covered() {
        let vols: StringSet = ["/data", "/logs", "/tmpdir"]
            .iter()
            .map(|v| ((*v).to_owned(), EmptyObject {}))
            .collect();
        let mut h = hc(&["/srv:/data"]);
        h.tmpfs.insert("/tmpdir".into(), String::new());
        let p = plan(&h, Some(&vols)).expect("valid");
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].destination, "/logs");
        assert_eq!(p[1].source, Source::Volume(VolumeSource::Anonymous));
        assert!(p[1].copy_up);
    }

    #[test]
    fn inspect_entries() {
        let m = PlannedMount {
            source: Source::Volume(VolumeSource::Named("data".into())),
            destination: "/data".into(),
            read_only: true,
            mode: "ro".into(),
            copy_up: true,
            tmpfs_options: String::new(),
        }
        .record("data", Path::new("/v/data/_data"));
        let api = m.to_api();
        assert_eq!(api.kind, "volume");
        assert_eq!(api.driver, "local");
        assert!(!api.rw);
        assert_eq!(api.source, "/v/data/_data");
        let b = binds(&[m]);
        assert_eq!(b[0].source, PathBuf::from("/v/data/_data"));
        assert!(b[0].read_only);
    }
}
