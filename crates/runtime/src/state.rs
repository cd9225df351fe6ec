//! What the runtime remembers about a container between invocations: one directory per
//! container under the state root, holding `state.json` and, while the container is parked
//! between `create` and `start`, the socket its init waits on.
//!
//! The status is never stored: it is derived from the init's pid (and its start time, so a
//! recycled pid is not mistaken for our init) and from whether the start socket exists.

use crate::error::{Context, Error, Result};
use crate::id;
use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
/// The init blocks on this socket until `start` connects.
pub const START_SOCKET: &str = "start.sock";
/// The config the container was created from: `exec` and `update` need it after the
/// bundle may be gone.
pub const SPEC_FILE: &str = "config.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// The persisted record. Everything `delete` needs to undo `create` is here, so cleanup
/// works even when the bundle is gone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat at create time: tells our init from a recycled pid.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// Cgroup directories this container owns, deepest last; removed in reverse.
    #[serde(default)]
    pub cgroup_dirs: Vec<PathBuf>,
    /// The freezer state file (v1 `freezer.state` or v2 `cgroup.freeze`), if any.
    #[serde(default)]
    pub freezer: Option<PathBuf>,
}

/// The OCI state as `runc state` prints it (spec fields plus `rootfs`, `created`, `owner`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

/// The state root (`--root`).
#[derive(Debug, Clone)]
pub struct StateRoot {
    pub path: PathBuf,
}

impl StateRoot {
    pub fn new(path: impl Into<PathBuf>) -> StateRoot {
        StateRoot { path: path.into() }
    }

    pub fn container_dir(&self, id: &str) -> Result<PathBuf> {
        id::validate(id)?;
        Ok(self.path.join(id))
    }

    /// Makes the container's directory; fails with `Exists` if the id is taken. mkdir is the
    /// atomic claim on the id, so two racing `create`s cannot both win.
    pub fn claim(&self, id: &str) -> Result<PathBuf> {
        let dir = self.container_dir(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.path)
            .with_context(|| format!("creating state root {}", self.path.display()))?;
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::Exists(id.to_string()))
            }
            Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        let dir = self.container_dir(id)?;
        let text = match fs::read(dir.join(STATE_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(e).with_context(|| format!("reading state of {id}")),
        };
        let record: Record = serde_json::from_slice(&text)
            .map_err(|e| Error::InvalidState(format!("state of {id} is corrupt: {e}")))?;
        Ok(Container { dir, record })
    }

    /// Ids of every container with a state file, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// A container as loaded from its state directory.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
}

impl Container {
    /// Writes state.json atomically (temp file + rename), so a reader never sees half.
    pub fn save(&self) -> Result<()> {
        save_record(&self.dir, &self.record)
    }

    pub fn save_spec(&self, spec: &oci_spec::runtime::Spec) -> Result<()> {
        let data = serde_json::to_vec(spec).map_err(|e| Error::InvalidState(e.to_string()))?;
        fs::write(self.dir.join(SPEC_FILE), data)
            .with_context(|| format!("saving the config of {}", self.record.id))
    }

    pub fn load_spec(&self) -> Result<oci_spec::runtime::Spec> {
        let data = fs::read(self.dir.join(SPEC_FILE))
            .with_context(|| format!("reading the config of {}", self.record.id))?;
        serde_json::from_slice(&data).map_err(|e| {
            Error::InvalidState(format!(
                "saved config of {} is corrupt: {e}",
                self.record.id
            ))
        })
    }

    pub fn start_socket(&self) -> PathBuf {
        self.dir.join(START_SOCKET)
    }

    pub fn status(&self) -> Status {
        if !init_alive(self.record.pid, self.record.pid_start_time) {
            return Status::Stopped;
        }
        if self.start_socket().exists() {
            return Status::Created;
        }
        if let Some(f) = &self.record.freezer {
            if let Ok(s) = fs::read_to_string(f) {
                let s = s.trim();
                if s == "FROZEN" || s == "1" {
                    return Status::Paused;
                }
            }
        }
        Status::Running
    }

    pub fn oci_state(&self) -> OciState {
        let status = self.status();
        OciState {
            oci_version: self.record.oci_version.clone(),
            id: self.record.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.record.pid
            },
            status,
            bundle: self.record.bundle.clone(),
            rootfs: self.record.rootfs.clone(),
            created: self.record.created.clone(),
            owner: self.record.owner.clone(),
            annotations: self.record.annotations.clone(),
        }
    }
}

pub fn save_record(dir: &Path, record: &Record) -> Result<()> {
    let tmp = dir.join(".state.json.tmp");
    let data = serde_json::to_vec(record).map_err(|e| Error::InvalidState(e.to_string()))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&data)
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(STATE_FILE))
        .with_context(|| format!("saving state in {}", dir.display()))
}

/// The process's state letter and start time from /proc/<pid>/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// True when `pid` is still the process we started and has not exited.
pub fn init_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_stat(pid) {
        Some((state, start)) => start == start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

/// RFC 3339 with nanoseconds in UTC, as runc writes `created`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// The user name for `owner` as runc's `list` shows it; falls back to the numeric uid.
pub fn owner_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stat_parses_and_is_alive() {
        let me = std::process::id() as i32;
        let (state, start) = proc_stat(me).unwrap();
        assert!(state == 'R' || state == 'S', "{state}");
        assert!(init_alive(me, start));
        assert!(
            !init_alive(me, start + 1),
            "a different start time is a recycled pid"
        );
        assert!(!init_alive(0, 0));
    }

    #[test]
    fn claim_is_exclusive_and_checks_ids() {
        let root = std::env::temp_dir().join(format!("berth-state-test-{}", std::process::id()));
        let sr = StateRoot::new(&root);
        sr.claim("one").unwrap();
        assert!(matches!(sr.claim("one"), Err(Error::Exists(_))));
        assert!(matches!(sr.claim("../x"), Err(Error::InvalidId(_))));
        assert!(matches!(sr.load("missing"), Err(Error::NotFound(_))));
        fs::remove_dir_all(&root).unwrap();
    }
}
