//! Compatibility with docker-py (the `docker` package from PyPI): tests/docker_py/scenario.py
//! drives a real berthd through `docker.DockerClient` — run, ports, exec, logs, archives,
//! volumes, images, lifecycle, errors, and push/pull through Debian's `docker-registry`
//! on 127.0.0.1.
//!
//! The venv is made once under the target dir (`CARGO_TARGET_TMPDIR/docker-py-venv`) and
//! reused; a lock file serializes its creation across test processes. Needs `python3-venv`
//! and `docker-registry` (scripts/install-deps.sh) and PyPI reachable for the first run:
//! without them the test fails and says so.

mod support;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::engine::Engine;
use support::registry::Registry;

const DOCKER_PY: &str = "docker==7.1.0";

/// An exclusive `flock` on a file, released when dropped (the file closes).
struct FileLock {
    _file: File,
}

impl FileLock {
    fn acquire(path: &Path) -> FileLock {
        let file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // SAFETY: flock on a descriptor we own; blocks until no other holder.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        FileLock { _file: file }
    }
}

/// The venv's python with docker-py installed: made on first use, reused after.
fn docker_py_python() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(root).expect("target tmp dir");
    let _lock = FileLock::acquire(&root.join("docker-py-venv.lock"));
    let venv = root.join("docker-py-venv");
    let python = venv.join("bin/python");
    let marker = venv.join(format!(".installed-{DOCKER_PY}"));
    if marker.exists() && python.exists() {
        return python;
    }
    // A venv without the marker is a half-made one: start again.
    let _ = std::fs::remove_dir_all(&venv);
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 (apt install python3 python3-venv)");
    assert!(
        out.status.success(),
        "python3 -m venv {} failed (scripts/install-deps.sh installs python3-venv):\n{}",
        venv.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--timeout",
            "30",
            "--retries",
            "2",
            DOCKER_PY,
        ])
        .output()
        .expect("venv pip");
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&venv);
        panic!(
            "pip could not install {DOCKER_PY} from PyPI (is PyPI reachable?); this test \
             needs it:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&marker, b"").expect("venv marker");
    python
}

#[test]
fn docker_py_scenario() {
    let python = docker_py_python();
    let registry = Registry::start();
    let engine = Engine::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker_py/scenario.py");
    let stdout_path = engine.dir.path().join("scenario.out");
    let stderr_path = engine.dir.path().join("scenario.err");
    let mut child = Command::new(&python)
        .arg(&script)
        .env("BERTH_SOCK", &engine.sock)
        .env("BERTH_REGISTRY", registry.host())
        .env("DOCKER_CONFIG", engine.dir.path().join("docker-config"))
        .env_remove("DOCKER_HOST")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("stdout file"))
        .stderr(File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("venv python");
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait scenario") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    println!("{stdout}");
    assert!(
        status.is_some_and(|s| s.success()),
        "docker-py scenario {}:\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- berthd log (tail) ---\n{}",
        status.map_or("timed out after 300 s".to_owned(), |s| s.to_string()),
        tail(&engine.log(), 200)
    );
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
