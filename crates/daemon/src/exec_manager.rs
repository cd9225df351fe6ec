//! `docker exec`: the exec records (in memory, as dockerd keeps them: an exec does not
//! outlive its container's run) and the process spec an exec runs with, planned from the
//! container's own `config.json` so it gets the container's capabilities, AppArmor profile,
//! `noNewPrivileges` and rlimits, as moby's `daemon/exec_linux.go` does.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_api::exec::{ExecConfig, ExecInspect, ExecProcessConfig};
use berth_image::runtime_spec;
use serde_json::{json, Value};

use crate::container_record::ContainerRecord;
use crate::container_spec::ALL_CAPS;
use crate::events::EventBus;
use crate::response::ApiError;

/// Past this many records, finished execs of containers that are gone are dropped first
/// (dockerd drops them with the container; we have no hook there).
const KEEP_RECORDS: usize = 1024;

/// Docker's PATH when the container's environment has none (moby `oci.DefaultPathEnv`).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("No such exec instance: {0}")]
    NotFound(String),
    #[error("Container {0} is not running")]
    NotRunning(String),
    #[error("Error: Exec command {0} is already running")]
    AlreadyStarted(String),
    #[error("No exec command specified")]
    NoCommand,
    #[error("cannot read the container's spec {path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    /// A user the container's passwd/group cannot resolve; the message is runc's.
    #[error("{0}")]
    User(String),
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        let msg = e.to_string();
        match e {
            ExecError::NotFound(_) => ApiError::not_found(msg),
            ExecError::NotRunning(_) | ExecError::AlreadyStarted(_) => ApiError::conflict(msg),
            ExecError::NoCommand | ExecError::User(_) => ApiError::bad_request(msg),
            ExecError::Spec { .. } => ApiError::internal(msg),
        }
    }
}

/// One exec: what was asked at create, and how its run went.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub started: bool,
    pub running: bool,
    pub pid: i64,
    pub exit_code: Option<i64>,
}

impl ExecRecord {
    pub fn inspect(&self) -> ExecInspect {
        let cmd = self.config.cmd.clone().unwrap_or_default();
        ExecInspect {
            id: self.id.clone(),
            running: self.running,
            exit_code: self.exit_code,
            process_config: ExecProcessConfig {
                tty: self.config.tty,
                entrypoint: cmd.first().cloned().unwrap_or_default(),
                arguments: cmd.iter().skip(1).cloned().collect(),
                privileged: Some(self.config.privileged),
                user: (!self.config.user.is_empty()).then(|| self.config.user.clone()),
            },
            open_stdin: self.config.attach_stdin,
            open_stderr: self.config.attach_stderr,
            open_stdout: self.config.attach_stdout,
            can_remove: self.exit_code.is_some(),
            container_id: self.container_id.clone(),
            detach_keys: self.config.detach_keys.clone(),
            pid: self.pid,
        }
    }

    /// `exec_create: sh -c ...`: Docker puts the command in the event's action.
    fn command_line(&self) -> String {
        self.config.cmd.clone().unwrap_or_default().join(" ")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a panic while holding the map leaves it usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
pub struct ExecManager {
    execs: Mutex<HashMap<String, ExecRecord>>,
}

impl ExecManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a new exec for a running container; its id.
    pub fn create(
        &self,
        container: &ContainerRecord,
        config: ExecConfig,
        events: &EventBus,
    ) -> Result<String, ExecError> {
        if !container.state.status.is_running() {
            return Err(ExecError::NotRunning(container.id.clone()));
        }
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(ExecError::NoCommand);
        }
        let id = new_exec_id();
        let record = ExecRecord {
            id: id.clone(),
            container_id: container.id.clone(),
            config,
            started: false,
            running: false,
            pid: 0,
            exit_code: None,
        };
        let action = format!("exec_create: {}", record.command_line());
        {
            let mut execs = lock(&self.execs);
            if execs.len() >= KEEP_RECORDS {
                execs.retain(|_, r| r.running || !r.started);
            }
            execs.insert(id.clone(), record);
        }
        publish(events, &action, container, &id, None);
        Ok(id)
    }

    pub fn get(&self, id: &str) -> Result<ExecRecord, ExecError> {
        lock(&self.execs)
            .get(id)
            .cloned()
            .ok_or_else(|| ExecError::NotFound(id.to_owned()))
    }

    /// Marks the exec started (once only, as dockerd): the record as it was.
    pub fn claim_start(&self, id: &str) -> Result<ExecRecord, ExecError> {
        let mut execs = lock(&self.execs);
        let r = execs
            .get_mut(id)
            .ok_or_else(|| ExecError::NotFound(id.to_owned()))?;
        if r.started {
            return Err(ExecError::AlreadyStarted(id.to_owned()));
        }
        r.started = true;
        Ok(r.clone())
    }

    /// The process runs, as `pid` on the host.
    pub fn running(&self, id: &str, pid: i64, container: &ContainerRecord, events: &EventBus) {
        let action = {
            let mut execs = lock(&self.execs);
            let Some(r) = execs.get_mut(id) else { return };
            r.running = true;
            r.pid = pid;
            format!("exec_start: {}", r.command_line())
        };
        publish(events, &action, container, id, None);
    }

    /// The process exited with `code` (or could not start: 126/127, as Docker's).
    pub fn exited(&self, id: &str, code: i64, container: &ContainerRecord, events: &EventBus) {
        {
            let mut execs = lock(&self.execs);
            let Some(r) = execs.get_mut(id) else { return };
            r.running = false;
            r.exit_code = Some(code);
        }
        publish(events, "exec_die", container, id, Some(code));
    }
}

/// dockerd's `exec_detach`: a client left the exec's terminal with the detach keys.
pub fn publish_detach(exec_id: &str, container: &ContainerRecord, events: &EventBus) {
    publish(events, "exec_detach", container, exec_id, None);
}

fn publish(
    events: &EventBus,
    action: &str,
    container: &ContainerRecord,
    exec_id: &str,
    exit_code: Option<i64>,
) {
    let mut attrs: BTreeMap<String, String> = container.config.labels.clone();
    attrs.insert("name".into(), container.name.clone());
    attrs.insert("image".into(), container.image_name.clone());
    attrs.insert("execID".into(), exec_id.to_owned());
    if let Some(code) = exit_code {
        attrs.insert("exitCode".into(), code.to_string());
    }
    events.publish("container", action, &container.id, attrs);
}

/// 64 hex digits, like container ids.
fn new_exec_id() -> String {
    let mut bytes = [0u8; 32];
    // getrandom(2) cannot fail for 32 bytes once the pool is initialised; fall back to
    // the clock and pid rather than fail an exec over it.
    // SAFETY: getrandom(2) into a live buffer of the given length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, b) in t
            .to_le_bytes()
            .iter()
            .chain(std::process::id().to_le_bytes().iter())
            .enumerate()
        {
            bytes[i] = *b;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The container's `config.json` as the shim started it.
pub fn read_bundle_spec(bundle: &Path) -> Result<Value, ExecError> {
    let path = bundle.join("config.json");
    let err = |reason: String| ExecError::Spec {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| err(e.to_string()))
}

/// The OCI process of exec `config` in `container`, from the container's running spec.
/// `accounts` are the rootfs's passwd and group, read only when a user is named.
/// `console_size` is the start request's `[height, width]`, if any.
pub fn plan_process(
    container: &ContainerRecord,
    spec: &Value,
    config: &ExecConfig,
    accounts: &runtime_spec::AccountFiles,
    console_size: Option<[u16; 2]>,
) -> Result<Value, ExecError> {
    let base = spec.get("process").cloned().unwrap_or_else(|| json!({}));
    let mut process = base.clone();
    let args = config.cmd.clone().unwrap_or_default();
    if args.is_empty() {
        return Err(ExecError::NoCommand);
    }
    process["args"] = json!(args);
    process["terminal"] = json!(config.tty);
    match console_size.or(config.console_size) {
        Some([h, w]) if config.tty && h > 0 && w > 0 => {
            process["consoleSize"] = json!({"height": h, "width": w});
        }
        _ => {
            if let Some(p) = process.as_object_mut() {
                p.remove("consoleSize");
            }
        }
    }
    if !config.working_dir.is_empty() {
        process["cwd"] = json!(config.working_dir);
    }

    // The user: the exec's, else the container's; resolved in the container's files.
    let user_spec = if config.user.is_empty() {
        container.config.user.as_str()
    } else {
        config.user.as_str()
    };
    let user = runtime_spec::resolve_user(
        user_spec,
        accounts.passwd.as_deref(),
        accounts.group.as_deref(),
    )
    .map_err(|e| ExecError::User(e.to_string()))?;
    let mut u = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        u["additionalGids"] = json!(user.additional_gids);
    }
    if let Some(umask) = base.pointer("/user/umask") {
        u["umask"] = umask.clone();
    }
    process["user"] = u;

    // The environment as dockerd builds it (moby `CreateDaemonEnvironment`): PATH,
    // HOSTNAME, TERM with a terminal, the container's Env, then the exec's Env; HOME last
    // from the exec user's passwd entry, as runc does when it is unset.
    let mut env = vec![format!("PATH={DEFAULT_PATH}")];
    let hostname = spec
        .get("hostname")
        .and_then(Value::as_str)
        .unwrap_or(&container.config.hostname);
    if !hostname.is_empty() {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if config.tty {
        env.push("TERM=xterm".to_owned());
    }
    let mut env = runtime_spec::merge_env(&env, &container.config.env);
    env = runtime_spec::merge_env(&env, &config.env);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    process["env"] = json!(env);

    if config.privileged {
        process["capabilities"] = json!({
            "bounding": ALL_CAPS, "effective": ALL_CAPS, "permitted": ALL_CAPS
        });
    }
    Ok(process)
}

/// Docker's exit code for an exec that could not start (moby `translateContainerdStartErr`):
/// 126 when the command cannot be invoked, 127 when it is not there.
pub fn start_failure_code(message: &str) -> i64 {
    let m = message.to_ascii_lowercase();
    if m.contains("permission denied") || m.contains("is a directory") {
        126
    } else if m.contains("executable file not found") || m.contains("no such file or directory") {
        127
    } else {
        126
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container_record::{RunState, Status};

    fn container() -> ContainerRecord {
        let mut r: ContainerRecord = serde_json::from_value(json!({
            "id": "c0ffee", "name": "web", "created": "", "image_name": "busybox",
            "image_id": "sha256:1", "requested": {}, "config": {}, "host_config": {},
            "path": "sleep", "args": ["1000"], "state": serde_json::to_value(RunState::default()).unwrap(),
        }))
        .expect("a record");
        r.state.status = Status::Running;
        r.config.env = vec!["A=container".into(), "PATH=/bin".into()];
        r
    }

    fn spec() -> Value {
        json!({
            "hostname": "c0ffee",
            "process": {
                "args": ["sleep", "1000"], "cwd": "/srv", "env": ["X=1"],
                "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"],
                                 "permitted": ["CAP_CHOWN"]},
                "apparmorProfile": "berth-default", "noNewPrivileges": true,
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            }
        })
    }

    fn accounts() -> runtime_spec::AccountFiles {
        runtime_spec::AccountFiles {
            passwd: Some(
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
                    .into(),
            ),
            group: Some("root:x:0:\nnogroup:x:65534:\n".into()),
        }
    }

    fn exec(cmd: &[&str]) -> ExecConfig {
        ExecConfig {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..ExecConfig::default()
        }
    }

    #[test]
    fn the_process_keeps_the_containers_confinement() {
        let p = plan_process(&container(), &spec(), &exec(&["id"]), &accounts(), None).unwrap();
        assert_eq!(p["args"], json!(["id"]));
        assert_eq!(p["cwd"], "/srv");
        assert_eq!(p["terminal"], false);
        assert_eq!(p["capabilities"]["bounding"], json!(["CAP_CHOWN"]));
        assert_eq!(p["apparmorProfile"], "berth-default");
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(p["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(p["user"], json!({"uid": 0, "gid": 0}));
        let env: Vec<String> = serde_json::from_value(p["env"].clone()).unwrap();
        assert_eq!(
            env,
            ["PATH=/bin", "HOSTNAME=c0ffee", "A=container", "HOME=/root"]
        );
    }

    #[test]
    fn flags_override_env_cwd_user_tty_and_caps() {
        let mut c = exec(&["sh"]);
        c.env = vec!["A=exec".into()];
        c.working_dir = "/tmp".into();
        c.user = "nobody".into();
        c.tty = true;
        c.privileged = true;
        let p = plan_process(&container(), &spec(), &c, &accounts(), Some([30, 100])).unwrap();
        assert_eq!(p["cwd"], "/tmp");
        assert_eq!(p["user"], json!({"uid": 65534, "gid": 65534}));
        assert_eq!(p["terminal"], true);
        assert_eq!(p["consoleSize"], json!({"height": 30, "width": 100}));
        assert_eq!(
            p["capabilities"]["bounding"].as_array().unwrap().len(),
            ALL_CAPS.len()
        );
        let env: Vec<String> = serde_json::from_value(p["env"].clone()).unwrap();
        assert!(env.contains(&"A=exec".to_owned()), "{env:?}");
        assert!(env.contains(&"TERM=xterm".to_owned()), "{env:?}");
        assert!(env.contains(&"HOME=/home".to_owned()), "{env:?}");

        c.user = "nosuch".into();
        let e = plan_process(&container(), &spec(), &c, &accounts(), None).unwrap_err();
        assert!(e.to_string().contains("unable to find user nosuch"), "{e}");
        c.user = "1234:5".into();
        let p = plan_process(&container(), &spec(), &c, &accounts(), None).unwrap();
        assert_eq!(p["user"], json!({"uid": 1234, "gid": 5}));
    }

    #[test]
    fn start_failures_get_dockers_exit_codes() {
        assert_eq!(
            start_failure_code(r#"exec: "/nope": no such file or directory"#),
            127
        );
        assert_eq!(
            start_failure_code(r#"exec: "x": executable file not found in $PATH"#),
            127
        );
        assert_eq!(
            start_failure_code("exec /etc/passwd: EACCES: Permission denied"),
            126
        );
        assert_eq!(start_failure_code("unable to find user x"), 126);
    }

    #[test]
    fn records_start_once_and_keep_the_exit_code() {
        let m = ExecManager::new();
        let events = EventBus::new();
        let c = container();
        let id = m.create(&c, exec(&["true"]), &events).unwrap();
        assert_eq!(id.len(), 64);
        assert!(m.get(&id).unwrap().inspect().exit_code.is_none());
        m.claim_start(&id).unwrap();
        assert!(matches!(
            m.claim_start(&id),
            Err(ExecError::AlreadyStarted(_))
        ));
        m.running(&id, 42, &c, &events);
        assert!(m.get(&id).unwrap().inspect().running);
        m.exited(&id, 3, &c, &events);
        let i = m.get(&id).unwrap().inspect();
        assert_eq!((i.running, i.exit_code, i.pid), (false, Some(3), 42));
        assert!(matches!(
            m.create(&c, exec(&[]), &events),
            Err(ExecError::NoCommand)
        ));
        let mut stopped = container();
        stopped.state.status = Status::Exited;
        assert!(matches!(
            m.create(&stopped, exec(&["true"]), &events),
            Err(ExecError::NotRunning(_))
        ));
    }
}
