//! A command run on a terminal, driven like a person at a keyboard: `script` gives it a
//! pty, the test types into script's stdin and reads what the terminal shows. Waits are
//! for text to appear (never timed assertions); the child is killed on drop.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct TermSession {
    child: Child,
    stdin: Option<ChildStdin>,
    screen: Arc<Mutex<Vec<u8>>>,
    what: String,
}

/// How long a step may take before the test gives up (a hang, not a measurement).
const PATIENCE: Duration = Duration::from_secs(30);

impl TermSession {
    /// Runs `shell_command` (through `sh -c`) on a fresh pty with `env` set.
    pub fn start(shell_command: &str, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new("script");
        cmd.args(["-qefc", shell_command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("script (bsdutils)");
        let mut out = child.stdout.take().expect("stdout");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            screen,
            what: shell_command.to_owned(),
        }
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen")).into_owned()
    }

    /// Waits until the terminal has shown `text` `times` times in all.
    #[track_caller]
    pub fn wait_for_count(&self, text: &str, times: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.screen().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "{}: no {text:?} (x{times}) on the terminal:\n{}",
                self.what,
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[track_caller]
    pub fn wait_for(&self, text: &str) {
        self.wait_for_count(text, 1);
    }

    pub fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("type into script");
        stdin.flush().expect("flush");
    }

    /// Waits for the command to end; its exit status (script -e passes it on).
    #[track_caller]
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "{}: still running; terminal:\n{}",
                self.what,
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TermSession {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
