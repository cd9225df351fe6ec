//! Running OCI hooks: the program with its args and env, the container state JSON on stdin,
//! killed when its `timeout` passes.

use crate::error::{Error, Result};
use crate::state::OciState;
use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs each hook in order; the first failure stops the list and is returned.
pub fn run_all(hooks: &[Hook], state: &OciState) -> Result<()> {
    let json = serde_json::to_vec(state).map_err(|e| Error::InvalidState(e.to_string()))?;
    for hook in hooks {
        run_one(hook, &json)?;
    }
    Ok(())
}

/// Runs every hook even when some fail (poststart and poststop: the spec says a failure is a
/// warning and the lifecycle goes on). Returns the failures.
pub fn run_all_warn(hooks: &[Hook], state: &OciState) -> Vec<Error> {
    let json = match serde_json::to_vec(state) {
        Ok(j) => j,
        Err(e) => return vec![Error::InvalidState(e.to_string())],
    };
    hooks
        .iter()
        .filter_map(|h| run_one(h, &json).err())
        .collect()
}

fn run_one(hook: &Hook, state_json: &[u8]) -> Result<()> {
    let path = hook.path().display().to_string();
    let fail = |cause: String| Error::Hook {
        path: path.clone(),
        cause,
    };
    let mut cmd = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin must not fail the write: EPIPE is fine.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(fail(format!("waiting: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout().unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("failed: {status}")))
    }
}
