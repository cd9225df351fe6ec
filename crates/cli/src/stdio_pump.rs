//! Moving bytes between the user's stdio and an attach stream: stdin up on its own thread
//! (half-closing at EOF, watching for the detach keys with a TTY), output down on the
//! calling thread (raw with a TTY, demultiplexed without), as docker/cli `hijack.go` does.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth_api::client::{demux, Upgraded, UpgradedWriter};
use berth_api::detach_keys::DetachScanner;

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The daemon closed the output: the container's streams ended.
    Closed,
    /// The user typed the detach keys; the container keeps running.
    Detached,
}

pub struct PumpOptions {
    /// Raw stream (container has a TTY) rather than multiplexed frames.
    pub tty: bool,
    /// Forward our stdin to the container.
    pub stdin: bool,
    /// The detach sequence (`--detach-keys`), watched for with a TTY.
    pub detach_keys: Vec<u8>,
}

/// Runs the pump until the output ends or the user detaches.
pub fn pump(stream: Upgraded, opts: &PumpOptions) -> io::Result<PumpEnd> {
    let (mut reader, writer) = stream.split()?;
    let detached = Arc::new(AtomicBool::new(false));
    if opts.stdin {
        let writer = writer.try_clone()?;
        let detached = Arc::clone(&detached);
        let tty = opts.tty;
        let scanner = DetachScanner::new(opts.detach_keys.clone());
        std::thread::spawn(move || forward_stdin(writer, tty, scanner, &detached));
    } else {
        // Nothing to send: say so at once, as the docker CLI does (`CloseWrite` with a nil
        // input stream).
        let _ = writer.close_write();
    }
    let result = if opts.tty {
        copy_flushing(&mut reader, &mut io::stdout().lock())
    } else {
        demux(
            &mut reader,
            &mut io::stdout().lock(),
            &mut io::stderr().lock(),
        )
    };
    // Keep `writer` alive until the output is done: dropping the last handle early would
    // close the socket under the reader.
    drop(writer);
    if detached.load(Ordering::SeqCst) {
        return Ok(PumpEnd::Detached);
    }
    result.map(|()| PumpEnd::Closed)
}

/// stdin -> stream. At EOF, half-close so the container sees its stdin end while its output
/// keeps coming (`echo foo | berth run -i img cat`).
fn forward_stdin(
    mut writer: UpgradedWriter,
    tty: bool,
    mut scanner: DetachScanner,
    detached: &AtomicBool,
) {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; 32 * 1024];
    let mut forward = Vec::new();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = if tty {
            forward.clear();
            if scanner.feed(&buf[..n], &mut forward) {
                let _ = writer.write_all(&forward);
                detached.store(true, Ordering::SeqCst);
                // Wakes the output side, which is blocked reading the same socket.
                let _ = writer.close();
                return;
            }
            &forward[..]
        } else {
            &buf[..n]
        };
        if writer.write_all(chunk).is_err() {
            return;
        }
    }
    let _ = writer.close_write();
}

/// `io::copy` that flushes after every read: interactive output must not wait in a buffer.
fn copy_flushing(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        w.flush()?;
    }
}

/// Copies a logs body to stdout/stderr: raw with a TTY, demultiplexed without.
pub fn copy_output(body: &mut dyn Read, tty: bool) -> io::Result<()> {
    if tty {
        copy_flushing(body, &mut io::stdout().lock())
    } else {
        demux(body, &mut io::stdout().lock(), &mut io::stderr().lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::detach_keys::DEFAULT;

    fn feed(s: &mut DetachScanner, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let d = s.feed(input, &mut out);
        (out, d)
    }

    #[test]
    fn plain_bytes_pass() {
        let mut s = DetachScanner::new(DEFAULT.to_vec());
        assert_eq!(feed(&mut s, b"ls\r"), (b"ls\r".to_vec(), false));
    }

    #[test]
    fn sequence_detaches_even_split_across_reads() {
        let mut s = DetachScanner::new(DEFAULT.to_vec());
        assert_eq!(feed(&mut s, b"a\x10"), (b"a".to_vec(), false));
        assert_eq!(feed(&mut s, b"\x11rest"), (Vec::new(), true));
    }

    #[test]
    fn lone_ctrl_p_is_released() {
        let mut s = DetachScanner::new(DEFAULT.to_vec());
        assert_eq!(feed(&mut s, b"\x10x"), (b"\x10x".to_vec(), false));
        assert_eq!(feed(&mut s, b"\x10\x10\x11"), (b"\x10".to_vec(), true));
    }
}
