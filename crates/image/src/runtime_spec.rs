//! Image config + user overrides -> the process part of a runtime spec (image-spec
//! `conversion.md`, with Docker's override rules where the spec leaves room).
//!
//! Everything here is a pure function of its inputs except [`read_account_files`], which
//! reads the image's `/etc/passwd` and `/etc/group` from a rootfs without following a
//! symlink out of it. The daemon turns a [`ProcessPlan`] into config.json.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::manifest::{ContainerConfig, ImageConfig};

/// Docker's PATH when neither the image nor the user sets one (`system.DefaultPathEnv`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// conversion.md's annotation for `ExposedPorts`.
pub const ANNOTATION_EXPOSED_PORTS: &str = "org.opencontainers.image.exposedPorts";
/// conversion.md's annotation for `StopSignal`.
pub const ANNOTATION_STOP_SIGNAL: &str = "org.opencontainers.image.stopSignal";
/// runc's `minID`/`maxID`: ids must fit a signed 32-bit int.
const MAX_ID: u32 = i32::MAX as u32;
/// /etc/passwd or /etc/group bigger than this is not a real account file.
const MAX_ACCOUNT_FILE: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeSpecError {
    /// Docker: "No command specified".
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    #[error("the working directory {0:?} is invalid, it needs to be an absolute path")]
    RelativeWorkdir(String),
    /// Worded as Docker (runc's `GetExecUser`) words it, so users find the same answers.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UserNotFound(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    GroupNotFound(String),
    #[error("user {0:?}: uids and gids must be in range 0-{MAX_ID}")]
    IdOutOfRange(String),
    #[error("invalid exposed port {0:?}: expected <port>[/tcp|/udp|/sctp]")]
    BadExposedPort(String),
    #[error("reading {path} from the image: {source}")]
    ReadAccountFile { path: PathBuf, source: io::Error },
}

type Result<T> = std::result::Result<T, RuntimeSpecError>;

/// What the user asked for on `run`/`create`, overriding the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `docker run IMAGE <cmd...>`.
    pub cmd: Option<Vec<String>>,
    /// `--entrypoint`: `Some(vec![])` (or `Some(vec!["".into()])`, what `--entrypoint ""`
    /// sends) resets it. Any `Some` also drops the image's Cmd, as Docker documents.
    pub entrypoint: Option<Vec<String>>,
    /// `-e K=V` (sets) or `-e K` (removes K), applied over the image's Env.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`: `user`, `uid`, `user:group`, `uid:gid`, `uid:group`, `user:gid`.
    pub user: Option<String>,
}

/// A resolved process identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the /etc/group entries listing the user, only when no group
    /// was given explicitly (runc `GetExecUser`).
    pub additional_gids: Vec<u32>,
    /// The passwd name, when the user matched an entry.
    pub name: Option<String>,
    /// The passwd home dir ("/" when there is no entry), for `HOME`.
    pub home: String,
}

/// A port from `ExposedPorts`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExposedPort {
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

/// Everything from the image config that shapes the container, after overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ResolvedUser,
    pub exposed_ports: Vec<ExposedPort>,
    /// `Volumes`: paths that get an anonymous volume unless the user mounts something.
    pub volumes: Vec<String>,
    /// `StopSignal` as written (`SIGTERM`, `15`, `SIGRTMIN+3`); the daemon parses it.
    pub stop_signal: Option<String>,
    /// conversion.md annotations: exposed ports, stop signal, then Labels (which win).
    pub annotations: BTreeMap<String, String>,
}

impl ProcessPlan {
    /// The OCI `process` (defaults from oci-spec for what the image does not decide:
    /// capabilities, rlimits, no_new_privileges; the daemon overrides those).
    pub fn to_oci_process(&self) -> oci_spec::runtime::Process {
        let mut user = oci_spec::runtime::User::default();
        user.set_uid(self.user.uid);
        user.set_gid(self.user.gid);
        if !self.user.additional_gids.is_empty() {
            user.set_additional_gids(Some(self.user.additional_gids.clone()));
        }
        let mut process = oci_spec::runtime::Process::default();
        process.set_user(user);
        process.set_args(Some(self.args.clone()));
        process.set_env(Some(self.env.clone()));
        process.set_cwd(PathBuf::from(&self.cwd));
        process
    }
}

/// Plans the process, reading users and groups from the mounted `rootfs`.
pub fn plan(image: &ImageConfig, overrides: &Overrides, rootfs: &Path) -> Result<ProcessPlan> {
    let accounts = read_account_files(rootfs)?;
    plan_with_accounts(
        image,
        overrides,
        accounts.passwd.as_deref(),
        accounts.group.as_deref(),
    )
}

/// [`plan`] with the account files' contents given (`None`: the file does not exist).
pub fn plan_with_accounts(
    image: &ImageConfig,
    overrides: &Overrides,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ProcessPlan> {
    let empty = ContainerConfig::default();
    let config = image.config.as_ref().unwrap_or(&empty);
    let args = args(config, overrides)?;
    let user_spec = overrides
        .user
        .as_deref()
        .or(config.user.as_deref())
        .unwrap_or("");
    let user = resolve_user(user_spec, passwd, group)?;
    let mut env = merge_env(config.env.as_deref().unwrap_or_default(), &overrides.env);
    if !has_var(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    // runc sets HOME from passwd when the environment has none; do it here so the
    // config.json says what the process gets.
    if !has_var(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = working_dir(config.working_dir.as_deref(), overrides.workdir.as_deref())?;
    let mut exposed_ports = config
        .exposed_ports
        .iter()
        .flat_map(|m| m.keys())
        .map(|k| parse_exposed_port(k))
        .collect::<Result<Vec<_>>>()?;
    exposed_ports.sort();
    exposed_ports.dedup();
    let volumes: Vec<String> = config
        .volumes
        .iter()
        .flat_map(|m| m.keys().cloned())
        .collect();
    let stop_signal = config.stop_signal.clone().filter(|s| !s.is_empty());

    let mut annotations = BTreeMap::new();
    if !exposed_ports.is_empty() {
        let list: Vec<String> = exposed_ports
            .iter()
            .map(|p| format!("{}/{}", p.port, p.protocol))
            .collect();
        annotations.insert(ANNOTATION_EXPOSED_PORTS.to_owned(), list.join(","));
    }
    if let Some(s) = &stop_signal {
        annotations.insert(ANNOTATION_STOP_SIGNAL.to_owned(), s.clone());
    }
    for (k, v) in config.labels.iter().flatten() {
        annotations.insert(k.clone(), v.clone());
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        user,
        exposed_ports,
        volumes,
        stop_signal,
        annotations,
    })
}

/// `process.args` (moby `daemon.merge` + `getEntrypointAndArgs`): with no user
/// entrypoint, the image's Entrypoint, and the user's Cmd or else the image's; a user
/// entrypoint replaces the image's and discards the image's Cmd. Entrypoint + Cmd.
pub fn args(image: &ContainerConfig, overrides: &Overrides) -> Result<Vec<String>> {
    let (entrypoint, cmd): (Vec<String>, Vec<String>) = match &overrides.entrypoint {
        Some(ep) => {
            // `--entrypoint ""` arrives as [""]: a reset, not a program named "".
            let ep = if ep.len() == 1 && ep[0].is_empty() {
                Vec::new()
            } else {
                ep.clone()
            };
            (ep, overrides.cmd.clone().unwrap_or_default())
        }
        None => {
            let cmd = match &overrides.cmd {
                Some(c) if !c.is_empty() => c.clone(),
                _ => image.cmd.clone().unwrap_or_default(),
            };
            (image.entrypoint.clone().unwrap_or_default(), cmd)
        }
    };
    let mut args = entrypoint;
    args.extend(cmd);
    if args.is_empty() {
        return Err(RuntimeSpecError::NoCommand);
    }
    Ok(args)
}

/// moby `ReplaceOrAppendEnvValues`: the image's variables in order, a user `K=V`
/// replacing the value in place or appending; a user `K` without `=` removes K.
pub fn merge_env(image: &[String], user: &[String]) -> Vec<String> {
    let key = |s: &str| s.split_once('=').map_or(s, |(k, _)| k).to_owned();
    let mut env: Vec<String> = image.to_vec();
    for var in user {
        let k = key(var);
        let existing = env.iter().position(|e| key(e) == k);
        match (var.contains('='), existing) {
            (true, Some(i)) => env[i] = var.clone(),
            (true, None) => env.push(var.clone()),
            (false, Some(i)) => {
                env.remove(i);
            }
            (false, None) => {}
        }
    }
    env
}

fn has_var(env: &[String], name: &str) -> bool {
    env.iter()
        .any(|e| e.split_once('=').is_some_and(|(k, _)| k == name))
}

/// The user's `-w`, else the image's WorkingDir, else `/`, cleaned lexically.
pub fn working_dir(image: Option<&str>, user: Option<&str>) -> Result<String> {
    let raw = user
        .filter(|w| !w.is_empty())
        .or(image.filter(|w| !w.is_empty()))
        .unwrap_or("/");
    if !raw.starts_with('/') {
        return Err(RuntimeSpecError::RelativeWorkdir(raw.to_owned()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

fn parse_exposed_port(key: &str) -> Result<ExposedPort> {
    let bad = || RuntimeSpecError::BadExposedPort(key.to_owned());
    let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(ExposedPort { port, protocol })
}

/// One /etc/passwd line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One /etc/group line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses /etc/passwd, skipping blank, comment and malformed lines (as libc does).
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    account_lines(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Parses /etc/group, skipping blank, comment and malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    account_lines(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .unwrap_or(&"")
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

fn account_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn parse_id(s: &str, whole: &str) -> Option<Result<u32>> {
    // runc uses Atoi: "-1" is numeric, and out of range.
    let n: i64 = s.parse().ok()?;
    Some(
        u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_ID)
            .ok_or_else(|| RuntimeSpecError::IdOutOfRange(whole.to_owned())),
    )
}

/// Resolves a `User` string the way runc's `GetExecUser` does for Docker: the user part
/// by passwd name or uid (a uid without an entry is fine, a name is not); the group part
/// by group name or gid; with no group given, the primary gid from passwd and the
/// supplementary gids of every group listing the user. An empty spec is uid 0.
pub fn resolve_user(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ResolvedUser> {
    let (user_arg, group_arg) = spec.split_once(':').unwrap_or((spec, ""));
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();

    let uid_arg = if user_arg.is_empty() {
        Some(Ok(0))
    } else {
        parse_id(user_arg, spec)
    };
    let uid_arg = uid_arg.transpose()?;
    let matched = users.iter().find(|u| {
        (!user_arg.is_empty() && u.name == user_arg) || uid_arg.is_some_and(|id| u.uid == id)
    });
    let mut out = ResolvedUser {
        home: "/".to_owned(),
        ..ResolvedUser::default()
    };
    match (matched, uid_arg) {
        (Some(u), _) => {
            out.uid = u.uid;
            out.gid = u.gid;
            out.home = if u.home.is_empty() {
                "/".to_owned()
            } else {
                u.home.clone()
            };
            out.name = Some(u.name.clone());
        }
        (None, Some(uid)) => out.uid = uid,
        (None, None) => return Err(RuntimeSpecError::UserNotFound(user_arg.to_owned())),
    }

    if !group_arg.is_empty() {
        let gid_arg = parse_id(group_arg, spec).transpose()?;
        let found = groups.iter().find(|g| match gid_arg {
            Some(gid) => g.gid == gid,
            None => g.name == group_arg,
        });
        out.gid = match (found, gid_arg) {
            (Some(g), _) => g.gid,
            (None, Some(gid)) => gid,
            (None, None) => return Err(RuntimeSpecError::GroupNotFound(group_arg.to_owned())),
        };
    } else if let Some(name) = &out.name {
        for g in groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
        {
            if !out.additional_gids.contains(&g.gid) {
                out.additional_gids.push(g.gid);
            }
        }
    }
    Ok(out)
}

/// /etc/passwd and /etc/group of an image, `None` when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFiles {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

/// Reads `etc/passwd` and `etc/group` below `rootfs`, resolving symlinks as if `rootfs`
/// were `/` (`RESOLVE_IN_ROOT`): an image's `/etc/passwd -> /etc/shadow` must name the
/// image's file, never the host's (Docker's `FollowSymlinkInScope`).
pub fn read_account_files(rootfs: &Path) -> Result<AccountFiles> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeSpecError::ReadAccountFile {
        path: rootfs.to_owned(),
        source: e.into(),
    })?;
    let read = |name: &str| -> Result<Option<String>> {
        let err = |source: io::Error| RuntimeSpecError::ReadAccountFile {
            path: rootfs.join(name),
            source,
        };
        let fd = match rustix::fs::openat2(
            &root,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(err(e.into())),
        };
        let file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(err)?;
        if !meta.is_file() {
            return Err(err(io::Error::other("not a regular file")));
        }
        let mut text = String::new();
        file.take(MAX_ACCOUNT_FILE)
            .read_to_string(&mut text)
            .map_err(err)?;
        Ok(Some(text))
    };
    Ok(AccountFiles {
        passwd: read("etc/passwd")?,
        group: read("etc/group")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ContainerConfig {
        ContainerConfig {
            entrypoint: entrypoint.map(v),
            cmd: cmd.map(v),
            ..ContainerConfig::default()
        }
    }

    fn ov(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> Overrides {
        Overrides {
            entrypoint: entrypoint.map(v),
            cmd: cmd.map(v),
            ..Overrides::default()
        }
    }

    #[test]
    fn args_follow_dockers_override_rules() {
        let img = image(Some(&["/entry", "-x"]), Some(&["serve", "--port=1"]));
        // Nothing given: Entrypoint + Cmd.
        assert_eq!(
            args(&img, &ov(None, None)).unwrap(),
            v(&["/entry", "-x", "serve", "--port=1"])
        );
        // A user cmd replaces the image's Cmd, keeps the Entrypoint.
        assert_eq!(
            args(&img, &ov(None, Some(&["version"]))).unwrap(),
            v(&["/entry", "-x", "version"])
        );
        // A user entrypoint drops the image's Cmd.
        assert_eq!(
            args(&img, &ov(Some(&["/bin/sh"]), None)).unwrap(),
            v(&["/bin/sh"])
        );
        assert_eq!(
            args(&img, &ov(Some(&["/bin/sh"]), Some(&["-c", "true"]))).unwrap(),
            v(&["/bin/sh", "-c", "true"])
        );
        // `--entrypoint ""` resets it; the command is then the user's cmd alone.
        assert_eq!(
            args(&img, &ov(Some(&[""]), Some(&["ls", "/"]))).unwrap(),
            v(&["ls", "/"])
        );
        assert!(matches!(
            args(&img, &ov(Some(&[""]), None)),
            Err(RuntimeSpecError::NoCommand)
        ));
        // No Entrypoint: Cmd[0] is the program.
        let img = image(None, Some(&["sh"]));
        assert_eq!(args(&img, &ov(None, None)).unwrap(), v(&["sh"]));
        assert_eq!(
            args(&img, &ov(None, Some(&["echo", "hi"]))).unwrap(),
            v(&["echo", "hi"])
        );
        // An empty user cmd means "not given" (as an empty slice does in Docker's merge).
        assert_eq!(args(&img, &ov(None, Some(&[]))).unwrap(), v(&["sh"]));
        assert!(matches!(
            args(&image(None, None), &ov(None, None)),
            Err(RuntimeSpecError::NoCommand)
        ));
    }

    #[test]
    fn env_merges_like_docker() {
        let merged = merge_env(
            &v(&["PATH=/img/bin", "A=1", "B=2"]),
            &v(&["B=3", "C=4", "A", "NOPE", "EMPTY="]),
        );
        assert_eq!(merged, v(&["PATH=/img/bin", "B=3", "C=4", "EMPTY="]));
    }

    #[test]
    fn working_dir_defaults_and_checks() {
        assert_eq!(working_dir(None, None).unwrap(), "/");
        assert_eq!(working_dir(Some(""), None).unwrap(), "/");
        assert_eq!(working_dir(Some("/app/"), None).unwrap(), "/app");
        assert_eq!(
            working_dir(Some("/app"), Some("/srv/./x/..")).unwrap(),
            "/srv"
        );
        assert_eq!(working_dir(Some("/a"), Some("/../..")).unwrap(), "/");
        assert!(matches!(
            working_dir(None, Some("rel")),
            Err(RuntimeSpecError::RelativeWorkdir(_))
        ));
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        \n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken line\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        nohome:x:1001:1001::\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,app\n\
        app:x:1000:\n\
        audio:x:29:app\n\
        video:x:44: app , daemon\n\
        staff:x:50:\n";

    fn resolve(spec: &str) -> Result<ResolvedUser> {
        resolve_user(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn users_by_name_and_number() {
        let root = resolve("").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.additional_gids, vec![10]);
        assert_eq!(root.home, "/root");

        let app = resolve("app").unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.additional_gids, vec![10, 29, 44]);
        assert_eq!(app.home, "/home/app");
        assert_eq!(app.name.as_deref(), Some("app"));
        // A uid with an entry gets the entry's gid and groups too.
        assert_eq!(resolve("1000").unwrap(), app);
        // A uid without an entry: gid 0, no groups, home /.
        let anon = resolve("4242").unwrap();
        assert_eq!(
            (
                anon.uid,
                anon.gid,
                anon.additional_gids.len(),
                anon.home.as_str()
            ),
            (4242, 0, 0, "/")
        );
        assert_eq!(resolve("nohome").unwrap().home, "/");
        // An explicit group: by name or gid; no supplementary groups then.
        let ug = resolve("app:staff").unwrap();
        assert_eq!((ug.uid, ug.gid), (1000, 50));
        assert!(ug.additional_gids.is_empty());
        assert_eq!(resolve("app:44").unwrap().gid, 44);
        assert_eq!(resolve("1000:5555").unwrap().gid, 5555);
        assert_eq!(resolve("4242:video").unwrap().gid, 44);
    }

    #[test]
    fn unknown_users_and_groups_are_docker_errors() {
        let err = resolve("nobody").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        let err = resolve("app:nogroup").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        assert!(matches!(
            resolve("-1"),
            Err(RuntimeSpecError::IdOutOfRange(_))
        ));
        assert!(matches!(
            resolve("4294967296"),
            Err(RuntimeSpecError::IdOutOfRange(_))
        ));
        assert!(matches!(
            resolve("1:2147483648"),
            Err(RuntimeSpecError::IdOutOfRange(_))
        ));
        // No passwd file at all: numbers still work, names do not.
        assert_eq!(resolve_user("5:6", None, None).unwrap().gid, 6);
        assert!(matches!(
            resolve_user("app", None, None),
            Err(RuntimeSpecError::UserNotFound(_))
        ));
    }

    #[test]
    fn full_plan_from_an_image_config() {
        let image: ImageConfig = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {
                "User": "app",
                "Env": ["LANG=C.UTF-8", "DEBUG=0"],
                "Entrypoint": ["/docker-entrypoint.sh"],
                "Cmd": ["nginx", "-g", "daemon off;"],
                "WorkingDir": "/srv",
                "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080": {}},
                "Volumes": {"/data": {}, "/cache": {}},
                "StopSignal": "SIGQUIT",
                "Labels": {"maintainer": "x", "org.opencontainers.image.stopSignal": "SIGTERM"}
            },
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let overrides = Overrides {
            env: v(&["DEBUG=1", "LANG"]),
            ..Overrides::default()
        };
        let plan = plan_with_accounts(&image, &overrides, Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(
            plan.args,
            v(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
        assert_eq!(
            plan.env,
            v(&["DEBUG=1", &format!("PATH={DEFAULT_PATH}"), "HOME=/home/app"])
        );
        assert_eq!(plan.cwd, "/srv");
        assert_eq!((plan.user.uid, plan.user.gid), (1000, 1000));
        assert_eq!(
            plan.exposed_ports,
            vec![
                ExposedPort {
                    port: 53,
                    protocol: "udp".into()
                },
                ExposedPort {
                    port: 80,
                    protocol: "tcp".into()
                },
                ExposedPort {
                    port: 8080,
                    protocol: "tcp".into()
                },
            ]
        );
        assert_eq!(plan.volumes, v(&["/cache", "/data"]));
        assert_eq!(plan.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(
            plan.annotations[ANNOTATION_EXPOSED_PORTS],
            "53/udp,80/tcp,8080/tcp"
        );
        // Labels take precedence over the derived annotations.
        assert_eq!(plan.annotations[ANNOTATION_STOP_SIGNAL], "SIGTERM");
        assert_eq!(plan.annotations["maintainer"], "x");

        let process = plan.to_oci_process();
        assert_eq!(process.args().as_deref(), Some(&plan.args[..]));
        assert_eq!(process.cwd(), Path::new("/srv"));
        assert_eq!(process.user().uid(), 1000);
        assert_eq!(
            process.user().additional_gids().as_deref(),
            Some(&[10, 29, 44][..])
        );

        // A user override of everything; PATH and HOME given are kept.
        let overrides = Overrides {
            cmd: Some(v(&["id"])),
            entrypoint: Some(v(&[])),
            env: v(&["PATH=/x", "HOME=/h"]),
            workdir: Some("/tmp".into()),
            user: Some("0:0".into()),
        };
        let plan = plan_with_accounts(&image, &overrides, Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(plan.args, v(&["id"]));
        assert_eq!(
            plan.env,
            v(&["LANG=C.UTF-8", "DEBUG=0", "PATH=/x", "HOME=/h"])
        );
        assert_eq!(plan.cwd, "/tmp");
        assert_eq!((plan.user.uid, plan.user.gid), (0, 0));
        assert!(plan.user.additional_gids.is_empty());

        let mut bad = image.clone();
        if let Some(c) = bad.config.as_mut() {
            c.exposed_ports = Some([("http/tcp".to_owned(), serde_json::json!({}))].into());
        }
        assert!(matches!(
            plan_with_accounts(&bad, &Overrides::default(), Some(PASSWD), Some(GROUP)),
            Err(RuntimeSpecError::BadExposedPort(_))
        ));
    }

    #[test]
    fn account_files_stay_inside_the_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        // Outside the rootfs, where an absolute symlink would land on the host.
        std::fs::write(tmp.path().join("secret"), "host:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::create_dir_all(rootfs.join("real")).unwrap();
        std::fs::write(rootfs.join("real/passwd"), PASSWD).unwrap();
        std::os::unix::fs::symlink("/real/passwd", rootfs.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../secret", rootfs.join("etc/group")).unwrap();
        let files = read_account_files(&rootfs).unwrap();
        assert_eq!(files.passwd.as_deref(), Some(PASSWD));
        // `../../secret` is clamped at the rootfs's `/`: `/secret` there does not exist.
        assert_eq!(files.group, None);

        let image = ImageConfig {
            config: Some(ContainerConfig {
                cmd: Some(v(&["sh"])),
                user: Some("app".into()),
                ..ContainerConfig::default()
            }),
            ..ImageConfig::default()
        };
        let planned = plan(&image, &Overrides::default(), &rootfs).unwrap();
        assert_eq!(planned.user.uid, 1000);
        assert!(planned.user.additional_gids.is_empty());
        std::fs::remove_file(rootfs.join("etc/passwd")).unwrap();
        assert!(matches!(
            plan(&image, &Overrides::default(), &rootfs),
            Err(RuntimeSpecError::UserNotFound(_))
        ));
    }
}
