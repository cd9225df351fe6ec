//! Network namespaces made in-process (root only): a distinct namespace on a file, usable
//! by other programs, and nothing mounted once it is removed.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_network::netns::{create_netns, remove_netns, unmount_netns_dir, NetnsError};

/// Removes the namespace and the directory's self bind mount on drop, then checks that no
/// mount is left under the test's directory.
struct NetnsDirGuard {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Drop for NetnsDirGuard {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = remove_netns(f);
        }
        let _ = unmount_netns_dir(&self.dir);
        if mounts_under(&self.dir) {
            common::cleanup_failed(format!("mounts left under {}", self.dir.display()));
        }
    }
}

fn mounts_under(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let prefix = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp.starts_with(&prefix))
}

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").ino()
}

#[test]
fn create_and_remove_a_netns() {
    require_root!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("netns");
    let path = dir.join("c1");
    let _guard = NetnsDirGuard {
        dir: dir.clone(),
        files: vec![path.clone()],
    };

    let started = Instant::now();
    create_netns(&path).expect("create netns");
    eprintln!("create_netns took {:?}", started.elapsed());
    assert_ne!(ino(&path), ino(Path::new("/proc/self/ns/net")));
    assert!(mounts_under(&path));
    // A second create on a live namespace must not shadow it.
    assert!(matches!(create_netns(&path), Err(NetnsError::Exists(_))));

    // Other programs can enter it, and it has only its own loopback, down.
    let p = path.to_string_lossy().into_owned();
    let links = common::run_ok("nsenter", &[&format!("--net={p}"), "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:"), "{links}");

    assert!(remove_netns(&path).expect("remove"));
    assert!(!path.exists());
    assert!(!mounts_under(&path));
    assert!(!remove_netns(&path).expect("remove twice"));
    assert!(unmount_netns_dir(&dir).expect("unmount dir"));
    assert!(!unmount_netns_dir(&dir).expect("unmount dir twice"));
    assert!(!mounts_under(tmp.path()));
}

#[test]
fn two_namespaces_are_distinct() {
    require_root!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("netns");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let _guard = NetnsDirGuard {
        dir: dir.clone(),
        files: vec![a.clone(), b.clone()],
    };
    create_netns(&a).expect("a");
    create_netns(&b).expect("b");
    assert_ne!(ino(&a), ino(&b));
    assert!(remove_netns(&a).expect("remove a"));
    assert!(remove_netns(&b).expect("remove b"));
}
