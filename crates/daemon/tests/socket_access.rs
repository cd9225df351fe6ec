//! Who may use the API socket (issue 9). Access to it is root on the host, so, as with
//! dockerd: mode 0660, owned by root and by the socket's group (`--group`, default `berth`
//! when it exists), and anyone else is refused by the kernel at connect(2). The clients
//! here are the real `docker` CLI run as uid 65534 (`nobody`) with the process's
//! credentials set by `CommandExt::uid/gid` (supplementary groups cleared).

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use support::bare_daemon::berthd_in;
use support::engine::Engine;
use support::leaks::{HostSnapshot, Ignore};

const NOBODY: u32 = 65534;

/// The gid of `name` in /etc/group.
fn gid_of(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
        })
}

/// `docker version` against `engine` as `uid:gid`, with a docker config dir it can write.
fn docker_version_as(engine: &Engine, uid: u32, gid: u32) -> Output {
    let config = tempfile::tempdir().expect("config dir");
    std::fs::set_permissions(config.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod config dir");
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .env("DOCKER_HOST", format!("unix://{}", engine.sock.display()))
        .env("DOCKER_CONFIG", config.path())
        .env("HOME", config.path())
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .output()
        .expect("docker CLI (apt install docker.io)")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The engine's temp dir is 0700; opened to traversal (0711, no listing) so that what
/// stops another user is the socket's own mode, not a directory on the way.
fn open_to_traversal(engine: &Engine) {
    std::fs::set_permissions(engine.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod engine dir");
}

#[test]
fn only_root_and_the_socket_group_may_connect() {
    let users = gid_of("users").expect("group users (gid 100 on Debian)");
    let engine = Engine::start_with_args(&["--group", "users"]);
    let before = HostSnapshot::of(&engine);
    open_to_traversal(&engine);

    let meta = std::fs::symlink_metadata(&engine.sock).expect("socket");
    assert_eq!(meta.mode() & 0o7777, 0o660, "socket mode");
    assert_eq!((meta.uid(), meta.gid()), (0, users), "socket owner:group");
    let dir = std::fs::metadata(engine.exec_root()).expect("exec root");
    assert_eq!(dir.mode() & 0o777, 0o711, "socket directory mode");
    let staging: Vec<String> = std::fs::read_dir(engine.exec_root())
        .expect("exec root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".bind-"))
        .collect();
    assert!(staging.is_empty(), "staging dirs left: {staging:?}");

    // Root.
    let o = engine.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(o.status.success(), "root: {}", stderr(&o));

    // Another user, not in the group: the kernel refuses the connect.
    let o = docker_version_as(&engine, NOBODY, NOBODY);
    assert!(!o.status.success(), "nobody:nogroup was let in");
    assert!(
        stderr(&o).contains("permission denied"),
        "nobody:nogroup: {}",
        stderr(&o)
    );

    // The same user in the socket's group gets through: the path is traversable and it is
    // the group bit that decides.
    let o = docker_version_as(&engine, NOBODY, users);
    assert!(
        o.status.success(),
        "nobody:users refused: {}\n{}",
        stderr(&o),
        engine.log()
    );
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());

    // The daemon still serves root afterwards, and nothing was left behind.
    let r = engine.request("GET", "/_ping", None);
    assert_eq!(r.status, 200);
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn default_group_is_berth_or_root_alone() {
    let engine = Engine::start();
    open_to_traversal(&engine);
    let meta = std::fs::symlink_metadata(&engine.sock).expect("socket");
    assert_eq!(meta.mode() & 0o7777, 0o660, "socket mode");
    let expected = gid_of("berth").unwrap_or(0);
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, expected),
        "socket owner:group"
    );
    // Whoever is neither root nor in that group is refused.
    let outsider = if expected == NOBODY { 100 } else { NOBODY };
    let o = docker_version_as(&engine, NOBODY, outsider);
    assert!(!o.status.success(), "nobody:{outsider} was let in");
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
}

#[test]
fn a_group_that_does_not_exist_is_an_error() {
    let name = format!("berth-no-such-group-{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("exec/berth.sock");
    let o = berthd_in(dir.path())
        .args(["--bridge", "btnogroup0", "--group", &name])
        .output()
        .expect("berthd");
    assert!(!o.status.success(), "berthd started without its group");
    assert!(
        stderr(&o).contains(&format!("group \"{name}\" not found")),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&sock).exists(), "socket left behind");
    let link = Command::new("ip")
        .args(["link", "show", "btnogroup0"])
        .output()
        .expect("ip");
    assert!(
        !link.status.success(),
        "bridge made before the group was checked"
    );
}
