//! The daemon's side of `berth-shim`: starting one, and its socket protocol (one JSON
//! request line per connection, one JSON answer line; see crates/shim/src/main.rs).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The shim's files in its state dir.
pub const SOCKET: &str = "shim.sock";
pub const EXIT_FILE: &str = "exit.json";

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("cannot reach the container's shim at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the container's shim: {0}")]
    Io(#[from] std::io::Error),
    #[error("the shim answered with something that is not JSON: {0}")]
    BadAnswer(String),
    /// The shim's own `{"error": ...}`.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Start(String),
}

/// How to start a shim for one container.
#[derive(Debug, Clone)]
pub struct ShimLaunch<'a> {
    pub shim_bin: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub runtime_root: &'a Path,
    pub state_dir: &'a Path,
    pub log_path: &'a Path,
    pub terminal: bool,
    pub stdin: bool,
}

/// Runs `berth-shim start --no-start`: returns once the container is created and parked,
/// with the shim serving its socket; the error is the shim's one-line message.
pub async fn launch(l: &ShimLaunch<'_>) -> Result<(), ShimError> {
    let mut cmd = tokio::process::Command::new(l.shim_bin);
    cmd.arg("start")
        .arg("--id")
        .arg(l.id)
        .arg("--bundle")
        .arg(l.bundle)
        .arg("--runtime-root")
        .arg(l.runtime_root)
        .arg("--state-dir")
        .arg(l.state_dir)
        .arg("--log-path")
        .arg(l.log_path)
        .arg("--no-start")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if l.terminal {
        cmd.arg("--terminal");
    }
    if l.stdin {
        cmd.arg("--stdin");
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| ShimError::Start(format!("cannot run {}: {e}", l.shim_bin.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr);
    let msg = msg.trim().trim_start_matches("berth-shim: ").trim();
    Err(ShimError::Start(if msg.is_empty() {
        format!("the shim failed ({})", out.status)
    } else {
        msg.to_owned()
    }))
}

/// A connection to one shim.
pub struct Shim {
    socket: PathBuf,
}

impl Shim {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            socket: state_dir.join(SOCKET),
        }
    }

    /// Connects through an open fd of the socket's directory: sun_path holds 108 bytes and
    /// a deep exec root plus a 64-hex id does not fit (the shim binds the same way).
    async fn connect(&self) -> Result<UnixStream, ShimError> {
        let err = |source| ShimError::Connect {
            path: self.socket.clone(),
            source,
        };
        let dir_path = self.socket.parent().unwrap_or(Path::new("/"));
        let dir = std::fs::File::open(dir_path).map_err(err)?;
        let name = self
            .socket
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let short = format!("/proc/self/fd/{}/{name}", dir.as_raw_fd());
        let stream = UnixStream::connect(&short).await.map_err(err)?;
        drop(dir);
        Ok(stream)
    }

    /// Sends `request` and reads the answer line; the stream stays usable after it (for
    /// attach).
    async fn exchange(&self, request: &Value) -> Result<(UnixStream, Value), ShimError> {
        let mut stream = self.connect().await?;
        let mut line =
            serde_json::to_vec(request).map_err(|e| ShimError::BadAnswer(e.to_string()))?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        // Byte by byte up to the newline: nothing after the answer may be consumed, since
        // an attach stream follows it. The line is a few dozen bytes.
        let mut answer = Vec::with_capacity(64);
        loop {
            let mut b = [0u8; 1];
            if stream.read(&mut b).await? == 0 {
                break;
            }
            if b[0] == b'\n' {
                break;
            }
            answer.push(b[0]);
            if answer.len() > 64 * 1024 {
                return Err(ShimError::BadAnswer("answer line too long".into()));
            }
        }
        let value: Value = serde_json::from_slice(&answer)
            .map_err(|_| ShimError::BadAnswer(String::from_utf8_lossy(&answer).into_owned()))?;
        if let Some(err) = value.get("error").and_then(Value::as_str) {
            return Err(ShimError::Refused(err.to_owned()));
        }
        Ok((stream, value))
    }

    pub async fn request(&self, request: Value) -> Result<Value, ShimError> {
        Ok(self.exchange(&request).await?.1)
    }

    pub async fn state(&self) -> Result<Value, ShimError> {
        self.request(json!({"op": "state"})).await
    }

    pub async fn start(&self) -> Result<(), ShimError> {
        self.request(json!({"op": "start"})).await.map(|_| ())
    }

    pub async fn kill(&self, signal: i32, all: bool) -> Result<(), ShimError> {
        self.request(json!({"op": "kill", "signal": signal, "all": all}))
            .await
            .map(|_| ())
    }

    pub async fn resize(&self, rows: u16, cols: u16) -> Result<(), ShimError> {
        self.request(json!({"op": "resize", "rows": rows, "cols": cols}))
            .await
            .map(|_| ())
    }

    /// Blocks until the container exited: its exit code (128+signal when killed).
    pub async fn wait(&self) -> Result<i64, ShimError> {
        let v = self.request(json!({"op": "wait"})).await?;
        v.get("exit_code")
            .and_then(Value::as_i64)
            .ok_or_else(|| ShimError::BadAnswer(v.to_string()))
    }

    pub async fn delete(&self) -> Result<(), ShimError> {
        self.request(json!({"op": "delete"})).await.map(|_| ())
    }

    /// An attach stream: raw with a terminal, Docker's frames without. `close_stdin`: the
    /// end of this stream's input is the container's EOF (Docker's `StdinOnce`).
    pub async fn attach(
        &self,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        close_stdin: bool,
    ) -> Result<UnixStream, ShimError> {
        let (stream, _) = self
            .exchange(&json!({"op": "attach", "stdin": stdin, "stdout": stdout,
                "stderr": stderr, "close_stdin": close_stdin}))
            .await?;
        Ok(stream)
    }

    /// Starts `process` (an OCI process object) in the container as exec `id`: its pid
    /// and its stream (raw with a terminal, Docker's frames without). The error is the
    /// runtime's reason the process could not start.
    pub async fn exec(
        &self,
        id: &str,
        process: &Value,
        terminal: bool,
        stdin: bool,
    ) -> Result<(i64, UnixStream), ShimError> {
        let (stream, answer) = self
            .exchange(&json!({"op": "exec", "id": id, "process": process,
                              "terminal": terminal, "stdin": stdin}))
            .await?;
        let pid = answer.get("pid").and_then(Value::as_i64).unwrap_or(0);
        Ok((pid, stream))
    }

    /// Blocks until exec `id` exited and its output is drained: its exit code.
    pub async fn exec_wait(&self, id: &str) -> Result<i64, ShimError> {
        let v = self.request(json!({"op": "exec_wait", "id": id})).await?;
        v.get("exit_code")
            .and_then(Value::as_i64)
            .ok_or_else(|| ShimError::BadAnswer(v.to_string()))
    }

    pub async fn exec_resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), ShimError> {
        self.request(json!({"op": "exec_resize", "id": id, "rows": rows, "cols": cols}))
            .await
            .map(|_| ())
    }
}

/// `exit.json` left by a shim that is gone: the exit code, if it recorded one.
pub fn recorded_exit(state_dir: &Path) -> Option<(i64, String)> {
    let text = std::fs::read_to_string(state_dir.join(EXIT_FILE)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some((
        v.get("exit_code")?.as_i64()?,
        v.get("finished_at")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    ))
}
