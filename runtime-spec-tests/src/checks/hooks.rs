//! Hooks (config.md#posix-platform-hooks, runtime.md#lifecycle): when each kind runs, in
//! which namespaces, what it gets on stdin, and what a failure does.
//!
//! Every hook is busybox's sh: it saves its stdin (the state JSON) and appends its name to
//! a log. Hooks that run in the runtime namespace (and createContainer, which runs before
//! pivot_root) write to the host path of the log directory; startContainer, which runs in
//! the container after pivot_root, writes through a bind of that directory at /hooklog.

use super::{int, no_container, text};
use crate::bundle::Bundle;
use crate::ensure;
use crate::harness::{Check, Ctx, Fail, Outcome};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const CHECKS: &[Check] = &[
    Check {
        id: "hooks-order",
        title: "hooks: prestart, createRuntime, createContainer at create; startContainer, poststart at start; poststop at delete; each list in order",
        clause: "runtime.md#lifecycle, config.md#posix-platform-hooks",
        run: order,
    },
    Check {
        id: "hooks-stdin-create-runtime",
        title: "hooks: createRuntime gets the state on stdin (id, bundle, pid, status creating)",
        clause: "config.md#posix-platform-hooks, runtime.md#state",
        run: stdin_create_runtime,
    },
    Check {
        id: "hooks-stdin-start-container",
        title: "hooks: startContainer gets the state on stdin (status created, pid as the container sees it)",
        clause: "config.md#startcontainer-hooks, runtime.md#state",
        run: stdin_start_container,
    },
    Check {
        id: "hooks-stdin-poststart",
        title: "hooks: poststart gets the state on stdin (id, pid, status running)",
        clause: "config.md#poststart, runtime.md#state",
        run: stdin_poststart,
    },
    Check {
        id: "hooks-stdin-poststop",
        title: "hooks: poststop gets the state on stdin (id, bundle, status stopped)",
        clause: "config.md#poststop, runtime.md#state",
        run: stdin_poststop,
    },
    Check {
        id: "hooks-args-env",
        title: "hooks: args (argv[0] included) and env are passed as given",
        clause: "config.md#posix-platform-hooks",
        run: args_env,
    },
    Check {
        id: "hooks-create-runtime-ns",
        title: "hooks: createRuntime runs in the runtime's namespaces",
        clause: "config.md#createruntime-hooks",
        run: create_runtime_ns,
    },
    Check {
        id: "hooks-create-container-ns",
        title: "hooks: createContainer runs in the container's mount namespace",
        clause: "config.md#createcontainer-hooks",
        run: create_container_ns,
    },
    Check {
        id: "hooks-start-container-ns",
        title: "hooks: startContainer runs in the container's namespaces",
        clause: "config.md#startcontainer-hooks",
        run: start_container_ns,
    },
    Check {
        id: "hooks-prestart-fail",
        title: "hooks: a failing prestart hook fails create; later hooks do not run; nothing is left",
        clause: "runtime.md#lifecycle step 3",
        run: prestart_fail,
    },
    Check {
        id: "hooks-create-container-fail",
        title: "hooks: a failing createContainer hook fails create; nothing is left",
        clause: "runtime.md#lifecycle step 5",
        run: create_container_fail,
    },
    Check {
        id: "hooks-poststart-fail",
        title: "hooks: a failing poststart hook warns (<= 1.2: the rest run, the container runs) or fails start and stops it (1.3)",
        clause: "runtime.md#lifecycle step 9",
        run: poststart_fail,
    },
    Check {
        id: "hooks-poststop-fail",
        title: "hooks: a failing poststop hook only warns: the rest run, delete succeeds",
        clause: "runtime.md#lifecycle step 13",
        run: poststop_fail,
    },
    Check {
        id: "hooks-timeout",
        title: "hooks: a hook running past its timeout fails create",
        clause: "config.md#posix-platform-hooks",
        run: timeout,
    },
];

/// The log directory on the host and in the container.
struct HookLog {
    host: PathBuf,
}

const IN_CONTAINER: &str = "/hooklog";

impl HookLog {
    fn new(ctx: &mut Ctx, b: &mut Bundle) -> Result<HookLog, Fail> {
        let host = ctx.subdir("hooklog")?;
        b.bind(&host, IN_CONTAINER, &[]);
        Ok(HookLog { host })
    }

    /// A hook that saves its stdin as NAME.json and appends NAME to `order`, then runs
    /// `extra` (shell). `inside`: it runs in the container after pivot_root.
    fn hook(&self, name: &str, inside: bool, extra: &str) -> Value {
        let dir = if inside {
            IN_CONTAINER.to_string()
        } else {
            self.host.display().to_string()
        };
        let script =
            format!("/bin/busybox cat > {dir}/{name}.json; echo {name} >> {dir}/order; {extra}");
        json!({ "path": "/bin/busybox", "args": ["sh", "-c", script] })
    }

    fn order(&self) -> Vec<String> {
        std::fs::read_to_string(self.host.join("order"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn state(&self, name: &str) -> Result<Value, Fail> {
        let p = self.host.join(format!("{name}.json"));
        let t = std::fs::read_to_string(&p)
            .map_err(|e| Fail::Fail(format!("hook {name} left no stdin copy: {e}")))?;
        serde_json::from_str(&t)
            .map_err(|e| Fail::Fail(format!("hook {name} stdin is not JSON ({e}): {t:?}")))
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.host.join(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

fn hooks_bundle(ctx: &mut Ctx, probe_args: &[&str]) -> Result<(Bundle, HookLog), Fail> {
    let mut b = ctx.bundle_with_busybox(probe_args)?;
    let log = HookLog::new(ctx, &mut b)?;
    Ok((b, log))
}

fn delete_when_stopped(ctx: &mut Ctx, id: &str) -> Outcome {
    ctx.wait_status(id, "stopped", Duration::from_secs(5))?;
    let d = ctx.rt(&["delete", id]);
    ensure!(d.ok(), "delete failed: {}", d.stderr_tail(3));
    Ok(())
}

fn order(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["exit", "0"])?;
    b.config["hooks"] = json!({
        "prestart": [log.hook("prestart", false, "")],
        "createRuntime": [log.hook("createRuntime1", false, ""), log.hook("createRuntime2", false, "")],
        "createContainer": [log.hook("createContainer", false, "")],
        "startContainer": [log.hook("startContainer", true, "")],
        "poststart": [log.hook("poststart", false, "")],
        "poststop": [log.hook("poststop", false, "")],
    });
    b.write()?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    let at_create = log.order();
    ensure!(
        at_create
            == [
                "prestart",
                "createRuntime1",
                "createRuntime2",
                "createContainer"
            ],
        "after create: {at_create:?}"
    );
    ctx.start_ok(&id)?;
    let at_start = log.order();
    ensure!(
        at_start.get(4..) == Some(&["startContainer".to_string(), "poststart".to_string()][..]),
        "after start: {at_start:?}"
    );
    delete_when_stopped(ctx, &id)?;
    let all = log.order();
    ensure!(
        all.get(6..) == Some(&["poststop".to_string()][..]),
        "after delete: {all:?}"
    );
    Ok(())
}

/// id, bundle and (when `pid`) a positive pid in a hook's state.
fn common_fields(st: &Value, id: &str, b: &Bundle, pid: bool) -> Outcome {
    ensure!(text(st, "id") == id, "id in {st}");
    let bundle = std::fs::canonicalize(&b.dir).unwrap_or_default();
    ensure!(
        Path::new(&text(st, "bundle")) == bundle,
        "bundle in {st}, wanted {}",
        bundle.display()
    );
    if pid {
        ensure!(int(st, "pid")? > 0, "pid in {st}");
    }
    ensure!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "ociVersion in {st}"
    );
    Ok(())
}

fn stdin_create_runtime(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    b.config["hooks"] = json!({ "createRuntime": [log.hook("cr", false, "")] });
    b.write()?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    let st = log.state("cr")?;
    common_fields(&st, &id, &b, true)?;
    ensure!(text(&st, "status") == "creating", "status in {st}");
    let pid = ctx.pid(&id)?;
    ensure!(int(&st, "pid")? == pid, "pid in {st}, state says {pid}");
    Ok(())
}

fn stdin_start_container(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    b.config["hooks"] = json!({ "startContainer": [log.hook("sc", true, "")] });
    let id = ctx.create_start(&b)?;
    let st = log.state("sc")?;
    common_fields(&st, &id, &b, false)?;
    ensure!(text(&st, "status") == "created", "status in {st}");
    // runtime.md#state: in a hook run in the container namespace, the pid as seen there
    // (the container has its own pid namespace, so its process is 1).
    ensure!(int(&st, "pid")? == 1, "pid in {st}, wanted 1");
    Ok(())
}

fn stdin_poststart(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    b.config["hooks"] = json!({ "poststart": [log.hook("ps", false, "")] });
    let id = ctx.create_start(&b)?;
    let st = log.state("ps")?;
    common_fields(&st, &id, &b, true)?;
    ensure!(text(&st, "status") == "running", "status in {st}");
    Ok(())
}

fn stdin_poststop(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["exit", "0"])?;
    b.config["hooks"] = json!({ "poststop": [log.hook("pst", false, "")] });
    let id = ctx.create_start(&b)?;
    delete_when_stopped(ctx, &id)?;
    let st = log.state("pst")?;
    common_fields(&st, &id, &b, false)?;
    ensure!(text(&st, "status") == "stopped", "status in {st}");
    Ok(())
}

fn args_env(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    let dir = log.host.display().to_string();
    let script =
        format!("/bin/busybox cat >/dev/null; echo \"$0|$1|$2|$HOOK_VAR|$OTHER\" > {dir}/args");
    b.config["hooks"] = json!({ "createRuntime": [{
        "path": "/bin/busybox",
        "args": ["sh", "-c", script, "first arg", "second"],
        "env": ["HOOK_VAR=hook value", "OTHER=x=y"]
    }]});
    b.write()?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    let got = log.file("args");
    ensure!(
        got == "first arg|second||hook value|x=y",
        "the hook saw {got:?}"
    );
    Ok(())
}

fn ns_script(dir: &str, name: &str) -> String {
    format!(
        "/bin/busybox cat >/dev/null; for t in mnt uts ipc net pid; do \
         /bin/busybox readlink /proc/self/ns/$t; done > {dir}/{name}"
    )
}

fn hook_ns(log: &HookLog, name: &str) -> Vec<String> {
    log.file(name).lines().map(str::to_owned).collect()
}

fn create_runtime_ns(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    let dir = log.host.display().to_string();
    b.config["hooks"] = json!({ "createRuntime": [
        { "path": "/bin/busybox", "args": ["sh", "-c", ns_script(&dir, "ns")] }
    ]});
    b.write()?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    let got = hook_ns(&log, "ns");
    let host = &ctx.env.host.ns;
    let want: Vec<String> = ["mnt", "uts", "ipc", "net"]
        .iter()
        .map(|t| host.get(*t).cloned().unwrap_or_default())
        .collect();
    ensure!(
        got.len() >= 4 && got[..4] == want[..],
        "hook namespaces {got:?}, runtime's {want:?}"
    );
    Ok(())
}

fn create_container_ns(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    let dir = log.host.display().to_string();
    b.config["hooks"] = json!({ "createContainer": [
        { "path": "/bin/busybox", "args": ["sh", "-c", ns_script(&dir, "ns")] }
    ]});
    b.write()?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    let pid = ctx.pid(&id)?;
    let container = crate::host::namespaces_of(&pid.to_string());
    let got = hook_ns(&log, "ns");
    let want = container.get("mnt").cloned().unwrap_or_default();
    ensure!(
        got.first() == Some(&want),
        "hook mount namespace {:?}, container's {want}",
        got.first()
    );
    Ok(())
}

fn start_container_ns(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    b.config["hooks"] = json!({ "startContainer": [
        { "path": "/bin/busybox", "args": ["sh", "-c", ns_script(IN_CONTAINER, "ns")] }
    ]});
    let id = ctx.create_start(&b)?;
    let pid = ctx.pid(&id)?;
    let container = crate::host::namespaces_of(&pid.to_string());
    let want: Vec<String> = ["mnt", "uts", "ipc", "net", "pid"]
        .iter()
        .map(|t| container.get(*t).cloned().unwrap_or_default())
        .collect();
    let got = hook_ns(&log, "ns");
    ensure!(got == want, "hook namespaces {got:?}, container's {want:?}");
    Ok(())
}

fn prestart_fail(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    b.config["hooks"] = json!({
        "prestart": [log.hook("p1", false, ""), log.hook("p2", false, "exit 1"), log.hook("p3", false, "")],
        "createRuntime": [log.hook("cr", false, "")],
        "createContainer": [log.hook("cc", false, "")],
    });
    b.write()?;
    let id = ctx.new_id();
    let c = ctx.create(&id, &b, &[]);
    ensure!(!c.ok(), "create succeeded");
    let ran = log.order();
    ensure!(ran == ["p1", "p2"], "hooks that ran: {ran:?}");
    no_container(ctx, &id, "a failing hook")
}

fn create_container_fail(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    b.config["hooks"] = json!({
        "createContainer": [log.hook("cc1", false, "exit 1"), log.hook("cc2", false, "")],
    });
    b.write()?;
    let id = ctx.new_id();
    let c = ctx.create(&id, &b, &[]);
    ensure!(!c.ok(), "create succeeded");
    let ran = log.order();
    ensure!(ran == ["cc1"], "hooks that ran: {ran:?}");
    no_container(ctx, &id, "a failing hook")
}

/// runtime-spec up to 1.2: a failing poststart hook is a warning, the other hooks run and
/// the container runs. 1.3 (#1262): start fails and the container is stopped. Either is
/// accepted; the report notes which. Failing at create is neither.
fn poststart_fail(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    b.config["hooks"] = json!({
        "poststart": [log.hook("ps1", false, "exit 1"), log.hook("ps2", false, "")],
    });
    b.write()?;
    let id = ctx.new_id();
    let c = ctx.create(&id, &b, &[]);
    ensure!(
        c.ok(),
        "create failed ({}): a poststart hook must not run before start: {}",
        c.describe(),
        c.stderr_tail(2)
    );
    let s = ctx.rt(&["start", &id]);
    let ran = log.order();
    let status = ctx
        .state(&id)
        .map(|st| text(&st, "status"))
        .unwrap_or_else(|_| "deleted".into());
    if s.ok() {
        ensure!(ran == ["ps1", "ps2"], "poststart hooks that ran: {ran:?}");
        ensure!(
            status == "running",
            "start succeeded but the status is {status:?}"
        );
        ctx.note("follows runtime-spec <= 1.2: the failure was a warning");
    } else {
        ensure!(
            status == "stopped" || status == "deleted",
            "start failed but the container is {status:?}, not stopped"
        );
        ctx.note("follows runtime-spec 1.3: start failed and the container was stopped");
    }
    Ok(())
}

fn poststop_fail(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["exit", "0"])?;
    b.config["hooks"] = json!({
        "poststop": [log.hook("pst1", false, "exit 1"), log.hook("pst2", false, "")],
    });
    let id = ctx.create_start(&b)?;
    ctx.wait_status(&id, "stopped", Duration::from_secs(5))?;
    let d = ctx.rt(&["delete", &id]);
    let ran = log.order();
    let gone = !ctx.rt(&["state", &id]).ok();
    let mut wrong = Vec::new();
    if ran != ["pst1", "pst2"] {
        wrong.push(format!("poststop hooks that ran: {ran:?}"));
    }
    if !d.ok() {
        wrong.push(format!(
            "delete failed ({}): {}",
            d.describe(),
            d.stderr_tail(2)
        ));
    }
    if !gone {
        wrong.push("the container is still there".to_string());
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    Ok(())
}

fn timeout(ctx: &mut Ctx) -> Outcome {
    let (mut b, log) = hooks_bundle(ctx, &["sleep", "30"])?;
    let started = log.host.join("started");
    let script = format!(
        "/bin/busybox cat >/dev/null; echo > {}; /bin/busybox sleep 8",
        started.display()
    );
    b.config["hooks"] = json!({ "createRuntime": [{
        "path": "/bin/busybox", "args": ["sh", "-c", script], "timeout": 1
    }]});
    b.write()?;
    let id = ctx.new_id();
    let t = Instant::now();
    let c = ctx.create(&id, &b, &[]);
    let took = t.elapsed();
    ensure!(!c.ok(), "create succeeded after {took:?}");
    ensure!(
        started.exists(),
        "the hook never started: {}",
        c.stderr_tail(2)
    );
    ensure!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "create failed after {took:?}: not at the hook's 1 s timeout"
    );
    no_container(ctx, &id, "a failing hook")
}
