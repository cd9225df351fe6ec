//! What the runc command line adds around the spec's operations, which engines depend on:
//! `--pid-file`, `--console-socket` (with process.terminal and /dev/console), and `exec`.

use super::{int, text};
use crate::command::spawn_to_files;
use crate::console::{read_master, ConsoleSocket};
use crate::ensure;
use crate::harness::{last_json, Check, Ctx, Fail, Outcome, COMMAND_TIMEOUT};
use serde_json::{json, Value};
use std::time::Duration;

pub const CHECKS: &[Check] = &[
    Check {
        id: "pid-file",
        title: "create --pid-file: the file holds the container's pid",
        clause: "runc create --pid-file, runtime.md#state",
        run: pid_file,
    },
    Check {
        id: "console-socket",
        title: "process.terminal: the pty master comes over --console-socket; stdio is the pty and the controlling terminal",
        clause: "config.md#process, runc create --console-socket",
        run: console_socket,
    },
    Check {
        id: "console-size",
        title: "process.consoleSize: the terminal has the configured rows and columns",
        clause: "config.md#process",
        run: console_size,
    },
    Check {
        id: "console-dev",
        title: "/dev/console is the container's pty when process.terminal is true",
        clause: "config-linux.md#default-devices",
        run: console_dev,
    },
    Check {
        id: "exec-namespaces",
        title: "exec: the new process is in the container's namespaces",
        clause: "runc exec",
        run: exec_namespaces,
    },
    Check {
        id: "exec-env-cwd",
        title: "exec --env/--cwd: applied on top of the container's process",
        clause: "runc exec",
        run: exec_env_cwd,
    },
    Check {
        id: "exec-process-json",
        title: "exec --process: user, args and cwd from a process.json",
        clause: "runc exec --process, config.md#process",
        run: exec_process_json,
    },
    Check {
        id: "exec-exit-code",
        title: "exec: the exit status of the process is exec's",
        clause: "runc exec",
        run: exec_exit_code,
    },
    Check {
        id: "exec-stopped",
        title: "exec: into a stopped container is an error",
        clause: "runc exec",
        run: exec_stopped,
    },
];

fn pid_file(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.new_id();
    let pf = ctx.dir.join("container.pid");
    let pfs = pf.display().to_string();
    ctx.create_ok(&id, &b, &["--pid-file", &pfs])?;
    let pid = ctx.pid(&id)?;
    let got =
        std::fs::read_to_string(&pf).map_err(|e| Fail::Fail(format!("{}: {e}", pf.display())))?;
    ensure!(
        got.trim() == pid.to_string(),
        "pid file says {got:?}, state says {pid}"
    );
    Ok(())
}

/// Creates a terminal container running the probe's `tty` report, receives the pty master,
/// starts it and returns the report read from the master.
fn tty_report(ctx: &mut Ctx, console_size: Option<(u32, u32)>) -> Result<Value, Fail> {
    let mut b = ctx.bundle(&["tty"])?;
    b.process()["terminal"] = json!(true);
    if let Some((h, w)) = console_size {
        b.process()["consoleSize"] = json!({ "height": h, "width": w });
    }
    b.write()?;
    let sock_path = ctx.dir.join("console.sock");
    let sock = ConsoleSocket::bind(&sock_path)?;
    let id = ctx.new_id();
    let mut cmd = ctx.runtime_cmd();
    cmd.arg("create")
        .arg("--bundle")
        .arg(&b.dir)
        .arg("--console-socket")
        .arg(&sock_path)
        .arg(&id);
    let running = spawn_to_files(cmd, &b.stdout_path(), &b.stderr_path())
        .map_err(|o| Fail::Fail(format!("create: {}", o.describe())))?;
    let master = sock.receive(COMMAND_TIMEOUT);
    let out = running.finish(COMMAND_TIMEOUT);
    ctx.record(&out);
    ensure!(
        out.ok(),
        "create failed ({}): {}; console socket: {}",
        out.describe(),
        out.stderr_tail(3),
        match &master {
            Ok(_) => "received the master".to_string(),
            Err(e) => e.clone(),
        }
    );
    let master = master?;
    let reader = std::thread::spawn(move || read_master(master, Duration::from_secs(10)));
    ctx.start_ok(&id)?;
    let text = reader
        .join()
        .map_err(|_| Fail::Fail("reading the pty panicked".into()))?;
    last_json(&text).ok_or_else(|| Fail::Fail(format!("no report on the terminal: {text:?}")))
}

fn console_socket(ctx: &mut Ctx) -> Outcome {
    let r = tty_report(ctx, None)?;
    ensure!(
        r["isatty"] == json!([true, true, true]),
        "isatty(0,1,2): {}",
        r["isatty"]
    );
    ensure!(
        r["ctty"] == true,
        "no controlling terminal (open /dev/tty: errno {})",
        r["ctty_errno"]
    );
    Ok(())
}

fn console_size(ctx: &mut Ctx) -> Outcome {
    let r = tty_report(ctx, Some((42, 137)))?;
    ensure!(
        r["winsize"] == json!({ "rows": 42, "cols": 137 }),
        "window size {}",
        r["winsize"]
    );
    Ok(())
}

fn console_dev(ctx: &mut Ctx) -> Outcome {
    let r = tty_report(ctx, None)?;
    let c = &r["console"];
    ensure!(c["kind"] == "char", "/dev/console: {c}");
    ensure!(
        json!([c["major"], c["minor"]]) == r["stdin_rdev"],
        "/dev/console is {}:{}, the terminal is {}",
        c["major"],
        c["minor"],
        r["stdin_rdev"]
    );
    Ok(())
}

/// `exec [FLAGS] ID ARGS...` in the foreground; the probe's report.
fn exec_probe(ctx: &mut Ctx, id: &str, flags: &[&str], args: &[&str]) -> Result<Value, Fail> {
    let mut cmd = vec!["exec"];
    cmd.extend_from_slice(flags);
    cmd.push(id);
    cmd.extend_from_slice(args);
    let out = ctx.rt(&cmd);
    ensure!(
        out.ok(),
        "exec failed ({}): {}",
        out.describe(),
        out.stderr_tail(3)
    );
    last_json(&out.stdout)
        .ok_or_else(|| Fail::Fail(format!("no report from exec: {:?}", out.stdout)))
}

fn running_container(ctx: &mut Ctx) -> Result<(String, i64), Fail> {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.create_start(&b)?;
    let pid = ctx.pid(&id)?;
    Ok((id, pid))
}

fn exec_namespaces(ctx: &mut Ctx) -> Outcome {
    let (id, pid) = running_container(ctx)?;
    let want = crate::host::namespaces_of(&pid.to_string());
    let r = exec_probe(ctx, &id, &[], &["/oci-probe", "ns"])?;
    for t in ["mnt", "uts", "ipc", "net", "pid"] {
        let got = text(&r["ns"], t);
        let w = want.get(t).cloned().unwrap_or_default();
        ensure!(got == w, "{t}: {got}, the container's is {w}");
    }
    ensure!(int(&r, "pid")? > 1, "exec'd process is pid {}", r["pid"]);
    Ok(())
}

fn exec_env_cwd(ctx: &mut Ctx) -> Outcome {
    let (id, _) = running_container(ctx)?;
    let r = exec_probe(
        ctx,
        &id,
        &["--env", "EXEC_VAR=from exec"],
        &["/oci-probe", "env"],
    )?;
    let env: Vec<&str> = r["env"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ensure!(env.contains(&"EXEC_VAR=from exec"), "environment {env:?}");
    ensure!(
        env.iter().any(|e| e.starts_with("PATH=")),
        "the container's PATH is missing: {env:?}"
    );
    let r = exec_probe(ctx, &id, &["--cwd", "/dev/shm"], &["/oci-probe", "cwd"])?;
    ensure!(r["cwd"] == "/dev/shm", "cwd {}", r["cwd"]);
    Ok(())
}

fn exec_process_json(ctx: &mut Ctx) -> Outcome {
    let (id, _) = running_container(ctx)?;
    let p = ctx.dir.join("process.json");
    let process = json!({
        "terminal": false,
        "user": { "uid": 1000, "gid": 1001, "additionalGids": [1002] },
        "args": ["/oci-probe", "ids"],
        "env": ["PATH=/bin"],
        "cwd": "/"
    });
    std::fs::write(&p, process.to_string()).map_err(|e| Fail::Fail(e.to_string()))?;
    let ps = p.display().to_string();
    let r = exec_probe(ctx, &id, &["--process", &ps], &[])?;
    ensure!(
        r["uid"] == 1000 && r["gid"] == 1001 && r["groups"] == json!([1002]),
        "ids {r}"
    );
    Ok(())
}

fn exec_exit_code(ctx: &mut Ctx) -> Outcome {
    let (id, _) = running_container(ctx)?;
    let out = ctx.rt(&["exec", &id, "/oci-probe", "exit", "7"]);
    ensure!(out.code() == Some(7), "exec ended with {}", out.describe());
    Ok(())
}

fn exec_stopped(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["exit", "0"])?;
    let id = ctx.create_start(&b)?;
    ctx.wait_status(&id, "stopped", Duration::from_secs(5))?;
    let out = ctx.rt(&["exec", &id, "/oci-probe", "ids"]);
    ensure!(!out.ok(), "exec into a stopped container succeeded");
    Ok(())
}
