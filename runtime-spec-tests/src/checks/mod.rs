//! The checks, one module per part of the spec. Each module exports `CHECKS`; ids are
//! stable (known.rs and `--filter` use them) and titles start with the field or operation.

use crate::bundle::Bundle;
use crate::ensure;
use crate::harness::{Check, Ctx, Fail, Outcome};
use serde_json::Value;

mod cgroups;
mod cli_ops;
mod devices;
mod hooks;
mod lifecycle;
mod mounts;
mod namespaces;
mod paths;
mod process;
mod seccomp;

/// Every check, in the order they are numbered.
pub fn all() -> Vec<&'static Check> {
    [
        lifecycle::CHECKS,
        hooks::CHECKS,
        process::CHECKS,
        namespaces::CHECKS,
        mounts::CHECKS,
        devices::CHECKS,
        paths::CHECKS,
        cgroups::CHECKS,
        seccomp::CHECKS,
        cli_ops::CHECKS,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `v[key]` as an i64, or a failure naming what was missing.
pub(crate) fn int(v: &Value, key: &str) -> Result<i64, Fail> {
    v[key]
        .as_i64()
        .ok_or_else(|| Fail::Fail(format!("no integer {key:?} in {v}")))
}

pub(crate) fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

/// The errno a probe reported, with its name for messages.
pub(crate) fn errno_of(v: &Value) -> i64 {
    v["errno"].as_i64().unwrap_or(-1)
}

pub(crate) fn errno_name(n: i64) -> String {
    let name = match n as i32 {
        0 => "success",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        _ => return format!("errno {n}"),
    };
    format!("{name} ({n})")
}

/// An error case with its control: the base config (the probe exiting 0) must run, and the
/// same config changed by `spoil` must be refused, by create or by start. Without the
/// control a runtime that fails everything would pass every error check.
pub(crate) fn refused(ctx: &mut Ctx, what: &str, spoil: impl FnOnce(&mut Bundle)) -> Outcome {
    let good = ctx.bundle(&["exit", "0"])?;
    good.write()?;
    let id = ctx.new_id();
    let out = ctx.run_fg(&id, &good);
    ensure!(
        out.ok(),
        "the control run without {what} failed ({}): {}",
        out.describe(),
        out.stderr_tail(2)
    );
    let mut bad = ctx.bundle(&["exit", "0"])?;
    spoil(&mut bad);
    bad.write()?;
    let id = ctx.new_id();
    if !ctx.create(&id, &bad, &[]).ok() {
        return no_container(ctx, &id, what);
    }
    let s = ctx.rt(&["start", &id]);
    ensure!(!s.ok(), "{what} was accepted by create and start");
    Ok(())
}

/// After a refused create: `state` must not find the container.
pub(crate) fn no_container(ctx: &mut Ctx, id: &str, what: &str) -> Outcome {
    let s = ctx.rt(&["state", id]);
    ensure!(
        !s.ok(),
        "create refused {what} but left a container: {}",
        s.stdout.trim()
    );
    Ok(())
}
