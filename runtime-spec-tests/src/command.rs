//! Running a command with a deadline, its output in files.
//!
//! Output goes to files, never pipes: a container started by the command inherits its stdout
//! and stderr, and reading a pipe would block until the container exits.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished (or killed) command left behind.
#[derive(Debug, Clone)]
pub struct CmdOut {
    /// The command line, for logs.
    pub shown: String,
    /// None when it had to be killed at the deadline or could not be started.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// Set when the command did not run to completion (spawn error, timeout).
    pub error: Option<String>,
}

impl CmdOut {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// "exit 1", "signal 9", "timed out ...".
    pub fn describe(&self) -> String {
        if let Some(e) = &self.error {
            return e.clone();
        }
        match self.status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => format!("{s}"),
            },
            None => "did not run".into(),
        }
    }

    /// The last lines of stderr, for a failure message.
    pub fn stderr_tail(&self, lines: usize) -> String {
        tail(&self.stderr, lines)
    }
}

/// The command line as a person would type it (arguments with spaces quoted).
pub fn render(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let mut parts = vec![program];
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            parts.push(format!("{a:?}"));
        } else {
            parts.push(a.into_owned());
        }
    }
    parts.join(" ")
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join(" | ")
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr to `out`/`err` (truncated), killing
/// it at `timeout`. The files are read back afterwards.
pub fn run_to_files(cmd: Command, out: &Path, err: &Path, timeout: Duration) -> CmdOut {
    match spawn_to_files(cmd, out, err) {
        Ok(r) => r.finish(timeout),
        Err(failed) => failed,
    }
}

/// A command started by [`spawn_to_files`].
pub struct Running {
    child: Child,
    shown: String,
    out: PathBuf,
    err: PathBuf,
}

/// Starts `cmd` like [`run_to_files`] but returns at once, for callers that must talk to it
/// (a console socket) before it can finish.
pub fn spawn_to_files(mut cmd: Command, out: &Path, err: &Path) -> Result<Running, CmdOut> {
    let shown = render(&cmd);
    let failed = |e: String| CmdOut {
        shown: shown.clone(),
        status: None,
        stdout: String::new(),
        stderr: String::new(),
        error: Some(e),
    };
    let files = fs::File::create(out).and_then(|o| Ok((o, fs::File::create(err)?)));
    let (o, e) = files.map_err(|e| failed(format!("creating output files: {e}")))?;
    cmd.stdin(Stdio::null()).stdout(o).stderr(e);
    let child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot run {shown}: {e}")))?;
    Ok(Running {
        child,
        shown,
        out: out.to_path_buf(),
        err: err.to_path_buf(),
    })
}

impl Running {
    /// Waits (killing it at `timeout`) and reads the output files.
    pub fn finish(self, timeout: Duration) -> CmdOut {
        let (status, error) = wait_deadline(self.child, timeout);
        let read =
            |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
        CmdOut {
            shown: self.shown,
            status,
            stdout: read(&self.out),
            stderr: read(&self.err),
            error,
        }
    }
}

/// Waits for `child` until `timeout`, then kills it. Returns the status, or why there is none.
pub fn wait_deadline(mut child: Child, timeout: Duration) -> (Option<ExitStatus>, Option<String>) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return (Some(s), None),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return (None, Some(format!("timed out after {timeout:?}")));
            }
            Err(e) => return (None, Some(format!("wait: {e}"))),
        }
    }
}
