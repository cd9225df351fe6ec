//! `container.log` in Docker's json-file format: one `{"log","stream","time"}` object per
//! line of output. Like Docker's copier (moby `daemon/logger/copier.go`), output is split at
//! newlines, each entry keeping its `\n`; a partial line is held until its newline comes, the
//! buffer reaches 16 KiB, or the stream ends.

use serde::Serialize;
use std::fs::File;
use std::io::Write;

/// moby's copier flushes a partial line at this size.
const MAX_PARTIAL: usize = 16 * 1024;

#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: &'a str,
    time: &'a str,
}

pub struct JsonLog {
    file: File,
    /// Partial lines of stdout and stderr.
    partial: [Vec<u8>; 2],
}

fn stream_name(stream: u8) -> &'static str {
    if stream == crate::protocol::STDERR {
        "stderr"
    } else {
        "stdout"
    }
}

fn slot(stream: u8) -> usize {
    usize::from(stream == crate::protocol::STDERR)
}

impl JsonLog {
    /// A log that goes on from another image's, with its partial lines (a shell's prompt).
    pub fn resume(file: File, partial: [Vec<u8>; 2]) -> JsonLog {
        JsonLog { file, partial }
    }

    /// The file and the partial lines of stdout and stderr, for a handoff.
    pub fn into_parts(self) -> (File, [Vec<u8>; 2]) {
        (self.file, self.partial)
    }

    /// Adds output of `stream` (1 stdout, 2 stderr); writes every line it completes.
    pub fn write(&mut self, stream: u8, data: &[u8]) {
        let i = slot(stream);
        self.partial[i].extend_from_slice(data);
        let mut out = Vec::new();
        let mut start = 0;
        let buf = &self.partial[i];
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            encode(stream, &buf[start..start + nl + 1], &mut out);
            start += nl + 1;
        }
        if buf.len() - start >= MAX_PARTIAL {
            encode(stream, &buf[start..], &mut out);
            start = buf.len();
        }
        self.partial[i].drain(..start);
        self.append(&out);
    }

    /// Writes what is left of a line of `stream` (at its end, or the container's).
    pub fn flush(&mut self, stream: u8) {
        let i = slot(stream);
        if self.partial[i].is_empty() {
            return;
        }
        let mut out = Vec::new();
        encode(stream, &self.partial[i], &mut out);
        self.partial[i].clear();
        self.append(&out);
    }

    fn append(&mut self, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(out) {
            eprintln!("berth-shim: writing container.log: {e}");
        }
    }
}

/// Invalid UTF-8 becomes U+FFFD, as Go's encoding/json does in Docker.
fn encode(stream: u8, line: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(line);
    let time = berth_runtime::state::now_rfc3339();
    let entry = Entry {
        log: &text,
        stream: stream_name(stream),
        time: &time,
    };
    if serde_json::to_writer(&mut *out, &entry).is_ok() {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn entries(path: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_are_split_and_partials_held() {
        let path = std::env::temp_dir().join(format!("berth-shim-log-{}", std::process::id()));
        let mut log = JsonLog::resume(File::create(&path).unwrap(), Default::default());
        log.write(1, b"one\ntw");
        log.write(2, b"err\n");
        log.write(1, b"o\nthree");
        log.flush(1);
        let e = entries(&path);
        let logs: Vec<(&str, &str)> = e
            .iter()
            .map(|v| (v["log"].as_str().unwrap(), v["stream"].as_str().unwrap()))
            .collect();
        assert_eq!(
            logs,
            [
                ("one\n", "stdout"),
                ("err\n", "stderr"),
                ("two\n", "stdout"),
                ("three", "stdout")
            ]
        );
        assert!(e[0]["time"].as_str().unwrap().ends_with('Z'));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_partial_line_survives_a_handoff() {
        let path = std::env::temp_dir().join(format!("berth-shim-loghand-{}", std::process::id()));
        let mut log = JsonLog::resume(File::create(&path).unwrap(), Default::default());
        log.write(1, b"/ # ");
        let (file, partial) = log.into_parts();
        assert_eq!(partial[0], b"/ # ");
        let mut log = JsonLog::resume(file, partial);
        log.write(1, b"ls\n");
        let e = entries(&path);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["log"], "/ # ls\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_long_partial_line_is_flushed_at_16k() {
        let path = std::env::temp_dir().join(format!("berth-shim-log16-{}", std::process::id()));
        let mut log = JsonLog::resume(File::create(&path).unwrap(), Default::default());
        log.write(1, &[b'x'; MAX_PARTIAL + 10]);
        assert_eq!(entries(&path).len(), 1);
        std::fs::remove_file(&path).unwrap();
    }
}
