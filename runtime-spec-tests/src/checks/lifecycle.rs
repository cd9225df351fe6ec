//! The lifecycle (runtime.md): create, start, state, kill, delete and their error cases, and
//! the state JSON.

use super::{int, refused, text};
use crate::ensure;
use crate::harness::{Check, Ctx, Fail, Outcome};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

pub const CHECKS: &[Check] = &[
    Check {
        id: "create-status",
        title: "create: status is \"created\" with the pid of a live process",
        clause: "runtime.md#create",
        run: create_status,
    },
    Check {
        id: "create-no-program",
        title: "create: the user program does not run before start, and does after",
        clause: "runtime.md#lifecycle step 2",
        run: create_no_program,
    },
    Check {
        id: "create-config-snapshot",
        title: "create: changing config.json after create has no effect on the container",
        clause: "runtime.md#lifecycle step 2",
        run: create_config_snapshot,
    },
    Check {
        id: "start-no-process",
        title: "create/start: a config without process is an error",
        clause: "runtime.md#start",
        run: start_no_process,
    },
    Check {
        id: "start-running",
        title: "start: status becomes \"running\", the pid stays the same",
        clause: "runtime.md#start",
        run: start_running,
    },
    Check {
        id: "exit-stopped",
        title: "state: status becomes \"stopped\" when the process exits",
        clause: "runtime.md#state",
        run: exit_stopped,
    },
    Check {
        id: "delete-removes",
        title: "delete: a stopped container is deleted and state then fails",
        clause: "runtime.md#delete",
        run: delete_removes,
    },
    Check {
        id: "delete-cgroups",
        title: "delete: removes the cgroups create made",
        clause: "runtime.md#delete",
        run: delete_cgroups,
    },
    Check {
        id: "create-duplicate-id",
        title: "create: an id in use fails and leaves the existing container alone",
        clause: "runtime.md#create",
        run: create_duplicate_id,
    },
    Check {
        id: "start-running-again",
        title: "start: a running container cannot be started again",
        clause: "runtime.md#start",
        run: start_running_again,
    },
    Check {
        id: "start-stopped",
        title: "start: a stopped container cannot be started",
        clause: "runtime.md#start",
        run: start_stopped,
    },
    Check {
        id: "delete-running",
        title: "delete: a running container is not deleted (no --force) and keeps running",
        clause: "runtime.md#delete",
        run: delete_running,
    },
    Check {
        id: "kill-signal-name",
        title: "kill: a signal given by name (SIGUSR1) reaches the container process",
        clause: "runtime.md#kill",
        run: kill_signal_name,
    },
    Check {
        id: "kill-signal-number",
        title: "kill: a signal given by number (12) reaches the container process",
        clause: "runtime.md#kill",
        run: kill_signal_number,
    },
    Check {
        id: "kill-created",
        title: "kill: a created container can be killed (KILL, then stopped)",
        clause: "runtime.md#kill",
        run: kill_created,
    },
    Check {
        id: "kill-stopped",
        title: "kill: signalling a stopped container is an error",
        clause: "runtime.md#kill",
        run: kill_stopped,
    },
    Check {
        id: "unknown-id",
        title: "state/start/kill/delete: an id that does not exist is an error",
        clause: "runtime.md#operations",
        run: unknown_id,
    },
    Check {
        id: "create-bad-rootfs",
        title: "create: a root.path that does not exist fails and creates nothing",
        clause: "runtime.md#create",
        run: create_bad_rootfs,
    },
    Check {
        id: "missing-program",
        title: "create/start: a process.args[0] that does not exist is an error",
        clause: "runtime.md#start",
        run: missing_program,
    },
    Check {
        id: "state-fields",
        title: "state: ociVersion, id, status, pid and bundle are present and typed",
        clause: "runtime.md#state",
        run: state_fields,
    },
    Check {
        id: "state-bundle-absolute",
        title: "state: bundle is the absolute path even when --bundle was relative",
        clause: "runtime.md#state",
        run: state_bundle_absolute,
    },
    Check {
        id: "state-annotations",
        title: "state: annotations from config.json are reported",
        clause: "runtime.md#state, config.md#annotations",
        run: state_annotations,
    },
    Check {
        id: "state-pid-host",
        title: "state: pid is the container process as the host sees it",
        clause: "runtime.md#state",
        run: state_pid_host,
    },
];

const SETTLE: Duration = Duration::from_secs(5);

fn create_status(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    let st = ctx.state(&id)?;
    ensure!(text(&st, "status") == "created", "status {st}");
    let pid = int(&st, "pid")?;
    ensure!(pid > 0, "pid {pid}");
    ensure!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} is not a live process"
    );
    Ok(())
}

fn create_no_program(ctx: &mut Ctx) -> Outcome {
    let out = ctx.subdir("out")?;
    let mut b = ctx.bundle(&["marker", "/out/ran"])?;
    b.bind(&out, "/out", &[]);
    b.write()?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    std::thread::sleep(Duration::from_millis(200));
    let marker = out.join("ran");
    ensure!(!marker.exists(), "the program ran at create");
    ensure!(ctx.status(&id)? == "created", "status is not created");
    ctx.start_ok(&id)?;
    ensure!(
        crate::harness::wait_until(SETTLE, || marker.exists()),
        "the program did not run after start"
    );
    Ok(())
}

fn start_running(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    let created = ctx.pid(&id)?;
    ctx.start_ok(&id)?;
    let st = ctx.state(&id)?;
    ensure!(text(&st, "status") == "running", "state after start: {st}");
    ensure!(
        int(&st, "pid")? == created,
        "pid {} after start, {created} after create",
        st["pid"]
    );
    Ok(())
}

fn create_config_snapshot(ctx: &mut Ctx) -> Outcome {
    let out = ctx.subdir("out")?;
    let mut b = ctx.bundle(&["marker", "/out/as-created"])?;
    b.bind(&out, "/out", &[]);
    b.write()?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    b.set_args(&["/oci-probe", "marker", "/out/as-edited"]);
    b.write()?;
    ctx.start_ok(&id)?;
    ctx.wait_status(&id, "stopped", SETTLE)?;
    ensure!(
        !out.join("as-edited").exists(),
        "start ran the process from the edited config.json"
    );
    ensure!(
        out.join("as-created").exists(),
        "the process from create time did not run"
    );
    Ok(())
}

fn start_no_process(ctx: &mut Ctx) -> Outcome {
    refused(ctx, "a config without process", |b| {
        b.config.as_object_mut().map(|o| o.remove("process"));
    })
}

fn exit_stopped(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["exit", "0"])?;
    let id = ctx.create_start(&b)?;
    ctx.wait_status(&id, "stopped", SETTLE)
}

fn delete_removes(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["exit", "0"])?;
    let id = ctx.create_start(&b)?;
    ctx.wait_status(&id, "stopped", SETTLE)?;
    let d = ctx.rt(&["delete", &id]);
    ensure!(d.ok(), "delete failed: {}", d.stderr_tail(3));
    let s = ctx.rt(&["state", &id]);
    ensure!(!s.ok(), "state still works after delete: {}", s.stdout);
    Ok(())
}

fn delete_cgroups(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["exit", "0"])?;
    let id = ctx.create_start(&b)?;
    let cg = b.cgroups_path();
    let dirs = ctx.env.host.cgroup_dirs(&cg);
    ctx.wait_status(&id, "stopped", SETTLE)?;
    ensure!(
        !dirs.is_empty(),
        "no cgroup directory for {cg} after create"
    );
    let d = ctx.rt(&["delete", &id]);
    ensure!(d.ok(), "delete failed: {}", d.stderr_tail(3));
    let left = ctx.env.host.cgroup_dirs(&cg);
    ensure!(left.is_empty(), "still there after delete: {left:?}");
    Ok(())
}

fn create_duplicate_id(ctx: &mut Ctx) -> Outcome {
    let b1 = ctx.bundle(&["sleep", "30"])?;
    let b2 = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b1, &[])?;
    let pid = ctx.pid(&id)?;
    let again = ctx.create(&id, &b2, &[]);
    ensure!(!again.ok(), "second create with the same id succeeded");
    let st = ctx.state(&id)?;
    ensure!(
        text(&st, "status") == "created" && int(&st, "pid")? == pid,
        "the first container changed: {st}"
    );
    let cg2 = ctx.env.host.cgroup_dirs(&b2.cgroups_path());
    ensure!(cg2.is_empty(), "the failed create left cgroups {cg2:?}");
    Ok(())
}

fn start_running_again(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.create_start(&b)?;
    let pid = ctx.pid(&id)?;
    let again = ctx.rt(&["start", &id]);
    ensure!(!again.ok(), "second start succeeded");
    let st = ctx.state(&id)?;
    ensure!(
        text(&st, "status") == "running" && int(&st, "pid")? == pid,
        "the container changed: {st}"
    );
    Ok(())
}

fn start_stopped(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["exit", "0"])?;
    let id = ctx.create_start(&b)?;
    ctx.wait_status(&id, "stopped", SETTLE)?;
    let again = ctx.rt(&["start", &id]);
    ensure!(!again.ok(), "start of a stopped container succeeded");
    ensure!(ctx.status(&id)? == "stopped", "status changed");
    Ok(())
}

fn delete_running(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.create_start(&b)?;
    let d = ctx.rt(&["delete", &id]);
    ensure!(!d.ok(), "delete of a running container succeeded");
    ensure!(ctx.status(&id)? == "running", "no longer running");
    let f = ctx.rt(&["delete", "--force", &id]);
    ensure!(f.ok(), "delete --force failed: {}", f.stderr_tail(3));
    Ok(())
}

fn kill_with(ctx: &mut Ctx, signal: &str, want: i64) -> Outcome {
    let b = ctx.bundle(&["signals"])?;
    let id = ctx.create_start(&b)?;
    ensure!(
        crate::harness::wait_until(SETTLE, || b.stdout().contains("ready")),
        "the probe never got ready: {:?}",
        b.stdout()
    );
    let k = ctx.rt(&["kill", &id, signal]);
    ensure!(k.ok(), "kill {signal} failed: {}", k.stderr_tail(3));
    ctx.wait_status(&id, "stopped", SETTLE)?;
    let got = b
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["signal"].as_i64());
    ensure!(
        got == Some(want),
        "the process got signal {got:?}, wanted {want}"
    );
    Ok(())
}

fn kill_signal_name(ctx: &mut Ctx) -> Outcome {
    kill_with(ctx, "SIGUSR1", libc::SIGUSR1 as i64)
}

fn kill_signal_number(ctx: &mut Ctx) -> Outcome {
    kill_with(ctx, "12", libc::SIGUSR2 as i64)
}

fn kill_created(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    let k = ctx.rt(&["kill", &id, "KILL"]);
    ensure!(k.ok(), "kill failed: {}", k.stderr_tail(3));
    ctx.wait_status(&id, "stopped", SETTLE)
}

fn kill_stopped(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["exit", "0"])?;
    let id = ctx.create_start(&b)?;
    ctx.wait_status(&id, "stopped", SETTLE)?;
    let k = ctx.rt(&["kill", &id, "TERM"]);
    ensure!(!k.ok(), "kill of a stopped container succeeded");
    ensure!(ctx.status(&id)? == "stopped", "status changed");
    Ok(())
}

fn unknown_id(ctx: &mut Ctx) -> Outcome {
    // The control: the same operations work on a container that exists.
    let b = ctx.bundle(&["sleep", "30"])?;
    let known = ctx.new_id();
    ctx.create_ok(&known, &b, &[])?;
    ctx.state(&known)?;
    let id = ctx.new_id();
    let mut worked = Vec::new();
    for op in [
        vec!["state", &id],
        vec!["start", &id],
        vec!["kill", &id, "KILL"],
        vec!["delete", &id],
    ] {
        if ctx.rt(&op).ok() {
            worked.push(op[0]);
        }
    }
    ensure!(worked.is_empty(), "succeeded on an unknown id: {worked:?}");
    Ok(())
}

fn create_bad_rootfs(ctx: &mut Ctx) -> Outcome {
    refused(ctx, "a root.path that does not exist", |b| {
        b.config["root"]["path"] = json!("no-such-rootfs")
    })
}

fn missing_program(ctx: &mut Ctx) -> Outcome {
    refused(ctx, "a program that does not exist", |b| {
        b.set_args(&["/no/such/program"])
    })
}

fn state_fields(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.create_start(&b)?;
    let st = ctx.state(&id)?;
    ensure!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "ociVersion: {st}"
    );
    ensure!(text(&st, "id") == id, "id: {st}");
    ensure!(text(&st, "status") == "running", "status: {st}");
    ensure!(st["pid"].as_i64().is_some_and(|p| p > 0), "pid: {st}");
    ensure!(st["bundle"].is_string(), "bundle: {st}");
    Ok(())
}

fn state_bundle_absolute(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let rel = b
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let id = ctx.new_id();
    let dir = ctx.dir.clone();
    let c = ctx.rt_in(
        &dir,
        &["create", "--bundle", &rel, &id],
        crate::harness::COMMAND_TIMEOUT,
    );
    ensure!(c.ok(), "create failed: {}", c.stderr_tail(3));
    let st = ctx.state(&id)?;
    let want = std::fs::canonicalize(&b.dir).map_err(|e| Fail::Fail(e.to_string()))?;
    let got = text(&st, "bundle");
    ensure!(
        Path::new(&got) == want,
        "bundle {got:?}, wanted {}",
        want.display()
    );
    Ok(())
}

fn state_annotations(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["sleep", "30"])?;
    let ann = json!({ "org.example.conformance": "yes", "com.example.key": "v a l" });
    b.config["annotations"] = ann.clone();
    let id = ctx.create_start(&b)?;
    let st = ctx.state(&id)?;
    ensure!(
        st["annotations"] == ann,
        "annotations {}, wanted {ann}",
        st["annotations"]
    );
    Ok(())
}

fn state_pid_host(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.create_start(&b)?;
    let pid = ctx.pid(&id)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|c| *c == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    ensure!(
        args == ["/oci-probe", "sleep", "30"],
        "/proc/{pid}/cmdline is {args:?}"
    );
    Ok(())
}
