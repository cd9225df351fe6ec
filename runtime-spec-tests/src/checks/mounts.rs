//! mounts, root and rootfsPropagation (config.md#mounts, config.md#root,
//! config-linux.md#rootfs-mount-propagation).

use super::{errno_name, errno_of};
use crate::ensure;
use crate::harness::{Check, Ctx, Fail, Outcome};
use serde_json::{json, Value};
use std::path::Path;

pub const CHECKS: &[Check] = &[
    Check {
        id: "mount-default-filesystems",
        title:
            "mounts: /proc is proc, /sys sysfs, /dev/pts devpts, /dev/shm tmpfs, /dev/mqueue mqueue",
        clause: "config-linux.md#default-filesystems",
        run: default_filesystems,
    },
    Check {
        id: "mount-tmpfs-options",
        title: "mounts: a tmpfs at a new destination with its flags and data options",
        clause: "config.md#mounts",
        run: tmpfs_options,
    },
    Check {
        id: "mount-order",
        title: "mounts: applied in the listed order (a mount inside an earlier one)",
        clause: "config.md#mounts",
        run: order,
    },
    Check {
        id: "mount-bind-rw",
        title: "mounts: a read-write bind mount writes through to the host",
        clause: "config.md#mounts",
        run: bind_rw,
    },
    Check {
        id: "mount-bind-ro",
        title: "mounts: a bind mount with \"ro\" refuses writes (EROFS)",
        clause: "config.md#mounts",
        run: bind_ro,
    },
    Check {
        id: "mount-bind-file",
        title: "mounts: a bind mount of a single file",
        clause: "config.md#mounts",
        run: bind_file,
    },
    Check {
        id: "mount-rbind",
        title: "mounts: \"rbind\" brings the submounts of the source",
        clause: "config.md#mounts",
        run: rbind,
    },
    Check {
        id: "mount-bind-not-recursive",
        title: "mounts: \"bind\" does not bring the submounts of the source",
        clause: "config.md#mounts",
        run: bind_not_recursive,
    },
    Check {
        id: "root-readonly",
        title: "root.readonly true: the root filesystem refuses writes (EROFS)",
        clause: "config.md#root",
        run: root_readonly,
    },
    Check {
        id: "root-writable",
        title: "root.readonly false: the root filesystem takes writes",
        clause: "config.md#root",
        run: root_writable,
    },
    Check {
        id: "rootfs-propagation-shared",
        title: "linux.rootfsPropagation shared: the root mount is in a peer group",
        clause: "config-linux.md#rootfs-mount-propagation",
        run: propagation_shared,
    },
];

fn mounts_of(r: &Value) -> Vec<Value> {
    r["mounts"].as_array().cloned().unwrap_or_default()
}

/// The topmost mount at `point`.
fn mount_at(mounts: &[Value], point: &str) -> Option<Value> {
    mounts
        .iter()
        .rev()
        .find(|m| m["mount_point"] == point)
        .cloned()
}

fn has(list: &Value, item: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(item)))
}

fn default_filesystems(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["mounts"])?;
    let r = ctx.probe(&b)?;
    let mounts = mounts_of(&r);
    for (point, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
    ] {
        let m = mount_at(&mounts, point)
            .ok_or_else(|| Fail::Fail(format!("nothing mounted at {point}")))?;
        ensure!(m["fstype"] == fstype, "{point} is {}", m["fstype"]);
    }
    let sys = mount_at(&mounts, "/sys").unwrap_or_default();
    ensure!(
        has(&sys["options"], "ro"),
        "/sys is not read-only: {}",
        sys["options"]
    );
    Ok(())
}

fn tmpfs_options(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["mounts"])?;
    b.add_mount(json!({
        "destination": "/mnt/conformance", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "noexec", "mode=700", "size=1m"]
    }));
    let r = ctx.probe(&b)?;
    let m = mount_at(&mounts_of(&r), "/mnt/conformance")
        .ok_or_else(|| Fail::Fail("nothing mounted at /mnt/conformance".into()))?;
    ensure!(m["fstype"] == "tmpfs", "fstype {}", m["fstype"]);
    for o in ["nosuid", "nodev", "noexec"] {
        ensure!(has(&m["options"], o), "no {o} in {}", m["options"]);
    }
    for o in ["mode=700", "size=1024k"] {
        ensure!(
            has(&m["super_options"], o),
            "no {o} in {}",
            m["super_options"]
        );
    }
    Ok(())
}

fn order(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["mounts"])?;
    b.add_mount(json!({ "destination": "/a", "type": "tmpfs", "source": "tmpfs" }));
    b.add_mount(json!({ "destination": "/a/b", "type": "tmpfs", "source": "tmpfs" }));
    let r = ctx.probe(&b)?;
    let mounts = mounts_of(&r);
    let a = mount_at(&mounts, "/a").ok_or_else(|| Fail::Fail("nothing at /a".into()))?;
    let ab = mount_at(&mounts, "/a/b").ok_or_else(|| Fail::Fail("nothing at /a/b".into()))?;
    ensure!(
        ab["parent"] == a["id"],
        "/a/b (parent {}) is not mounted on /a (id {})",
        ab["parent"],
        a["id"]
    );
    Ok(())
}

fn bind_rw(ctx: &mut Ctx) -> Outcome {
    let src = ctx.subdir("src")?;
    let mut b = ctx.bundle(&["write", "/data/from-container"])?;
    b.bind(&src, "/data", &[]);
    let r = ctx.probe(&b)?;
    ensure!(
        r["ok"] == true,
        "write failed: {}",
        errno_name(errno_of(&r))
    );
    ensure!(
        src.join("from-container").exists(),
        "the file is not in the host directory"
    );
    Ok(())
}

fn bind_ro(ctx: &mut Ctx) -> Outcome {
    let src = ctx.subdir("src")?;
    let mut b = ctx.bundle(&["write", "/data/from-container"])?;
    b.bind(&src, "/data", &["ro"]);
    let r = ctx.probe(&b)?;
    ensure!(
        r["ok"] == false && errno_of(&r) == libc::EROFS as i64,
        "write: {}",
        errno_name(errno_of(&r))
    );
    ensure!(
        !src.join("from-container").exists(),
        "the file reached the host"
    );
    Ok(())
}

fn bind_file(ctx: &mut Ctx) -> Outcome {
    let src = ctx.dir.join("host-file");
    std::fs::write(&src, "from the host\n").map_err(|e| Fail::Fail(e.to_string()))?;
    let mut b = ctx.bundle(&["read", "/etc/conformance.txt"])?;
    b.bind(&src, "/etc/conformance.txt", &["ro"]);
    let r = ctx.probe(&b)?;
    ensure!(
        r["content"] == "from the host\n",
        "read {}: {}",
        r["content"],
        errno_name(errno_of(&r))
    );
    Ok(())
}

/// A host directory with a tmpfs mounted at `sub` inside it (undone by the cleanup).
fn tree_with_submount(ctx: &mut Ctx) -> Result<std::path::PathBuf, Fail> {
    let tree = ctx.subdir("tree")?;
    let sub = tree.join("sub");
    std::fs::create_dir_all(&sub).map_err(|e| Fail::Fail(e.to_string()))?;
    mount_tmpfs(&sub)?;
    Ok(tree)
}

fn mount_tmpfs(at: &Path) -> Result<(), Fail> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())
        .map_err(|_| Fail::Fail("bad path".into()))?;
    // SAFETY: mount(2) with NUL-terminated strings.
    let r = unsafe {
        libc::mount(
            c("tmpfs").as_ptr(),
            target.as_ptr(),
            c("tmpfs").as_ptr(),
            0,
            c("size=64k").as_ptr().cast(),
        )
    };
    ensure!(
        r == 0,
        "mounting a tmpfs at {}: {}",
        at.display(),
        std::io::Error::last_os_error()
    );
    Ok(())
}

fn submount_seen(ctx: &mut Ctx, option: &str) -> Result<bool, Fail> {
    let tree = tree_with_submount(ctx)?;
    let mut b = ctx.bundle(&["mounts"])?;
    b.add_mount(json!({
        "destination": "/tree", "type": "bind", "source": tree, "options": [option]
    }));
    let r = ctx.probe(&b)?;
    let mounts = mounts_of(&r);
    ensure!(mount_at(&mounts, "/tree").is_some(), "nothing at /tree");
    Ok(mount_at(&mounts, "/tree/sub").is_some())
}

fn rbind(ctx: &mut Ctx) -> Outcome {
    ensure!(submount_seen(ctx, "rbind")?, "/tree/sub is not a mount");
    Ok(())
}

fn bind_not_recursive(ctx: &mut Ctx) -> Outcome {
    ensure!(!submount_seen(ctx, "bind")?, "/tree/sub is mounted");
    Ok(())
}

fn root_write(ctx: &mut Ctx, readonly: bool) -> Result<Value, Fail> {
    let mut b = ctx.bundle(&["write", "/written-by-container"])?;
    b.config["root"]["readonly"] = json!(readonly);
    ctx.probe(&b)
}

fn root_readonly(ctx: &mut Ctx) -> Outcome {
    let r = root_write(ctx, true)?;
    ensure!(
        r["ok"] == false && errno_of(&r) == libc::EROFS as i64,
        "write to /: {}",
        errno_name(errno_of(&r))
    );
    Ok(())
}

fn root_writable(ctx: &mut Ctx) -> Outcome {
    let r = root_write(ctx, false)?;
    ensure!(r["ok"] == true, "write to /: {}", errno_name(errno_of(&r)));
    Ok(())
}

fn propagation_shared(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["mounts"])?;
    b.linux()["rootfsPropagation"] = json!("shared");
    let r = ctx.probe(&b)?;
    let root = mount_at(&mounts_of(&r), "/").ok_or_else(|| Fail::Fail("no mount at /".into()))?;
    let shared = root["optional"].as_array().is_some_and(|a| {
        a.iter()
            .any(|o| o.as_str().is_some_and(|s| s.starts_with("shared:")))
    });
    ensure!(shared, "/ has propagation fields {}", root["optional"]);
    Ok(())
}
