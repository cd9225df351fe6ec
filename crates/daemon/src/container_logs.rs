//! `GET /containers/{id}/logs`: the container's json-file log (written by its shim) read
//! back with Docker's options: `stdout`/`stderr`, `tail`, `since`/`until`, `timestamps`,
//! `follow`. Output is raw with a TTY, Docker's 8-byte frames without.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde::Deserialize;

use crate::api_server::DaemonState;
use crate::clock;
use crate::query::Query;
use crate::response::{self, ApiError, Body};

/// How often `follow` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Deserialize)]
struct LogLine {
    log: String,
    stream: String,
    time: String,
}

/// What the client asked for.
#[derive(Debug, Clone)]
struct Options {
    stdout: bool,
    stderr: bool,
    tail: Option<usize>,
    since_nanos: Option<i64>,
    until_nanos: Option<i64>,
    timestamps: bool,
    tty: bool,
}

pub fn serve(
    state: &Arc<DaemonState>,
    name: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let record = state.containers.find(name)?;
    let stdout = query.bool("stdout");
    let stderr = query.bool("stderr");
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match query.get("tail").unwrap_or("all") {
        "all" | "" => None,
        n => Some(
            n.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for tail: {n:?}")))?
                .max(0) as usize,
        ),
    };
    let opts = Options {
        stdout,
        stderr,
        tail,
        since_nanos: unix_nanos(query.get("since"))?,
        until_nanos: unix_nanos(query.get("until"))?,
        timestamps: query.bool("timestamps"),
        tty: record.config.tty,
    };
    let follow = query.bool("follow");
    let path = state.containers.paths().log(&record.id);
    // Opened before the answer and read through this handle: a client may remove the
    // container before it reads the body (docker-py's `containers.run(remove=True)` does),
    // and removal deletes the file, not what an open handle reads (dockerd's follower
    // holds its file open too).
    let file = std::fs::File::open(&path).ok().map(Arc::new);
    let manager = state.containers.clone();
    let id = record.id.clone();
    let (tx, body) = response::channel();
    tokio::spawn(async move {
        let opts2 = opts.clone();
        let path2 = path.clone();
        let file2 = file.clone();
        let first = tokio::task::spawn_blocking(move || {
            read_from(&path2, file2.as_deref(), 0, &opts2, true)
        })
        .await;
        let Ok(Ok((chunks, mut offset))) = first else {
            return;
        };
        for c in chunks {
            if tx.send(c).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            let running = manager
                .find(&id)
                .map(|r| r.state.status.is_running())
                .unwrap_or(false);
            let opts2 = opts.clone();
            let path2 = path.clone();
            let file2 = file.clone();
            let next = tokio::task::spawn_blocking(move || {
                read_from(&path2, file2.as_deref(), offset, &opts2, false)
            })
            .await;
            let Ok(Ok((chunks, new_offset))) = next else {
                return;
            };
            offset = new_offset;
            for c in chunks {
                if tx.send(c).await.is_err() {
                    return;
                }
            }
            if !running {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_POLL) => {}
                () = tx.closed() => return,
            }
        }
    });
    let content_type = if opts_tty(&record) {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(response::with_type(StatusCode::OK, body, content_type))
}

fn opts_tty(record: &crate::container_record::ContainerRecord) -> bool {
    record.config.tty
}

/// The container's past output, encoded as the attach stream carries it (raw with a TTY,
/// frames without), for `attach?logs=1`: Docker replays the log before the live stream.
pub async fn replay(
    path: PathBuf,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> std::io::Result<Vec<Bytes>> {
    let opts = Options {
        stdout,
        stderr,
        tail: None,
        since_nanos: None,
        until_nanos: None,
        timestamps: false,
        tty,
    };
    tokio::task::spawn_blocking(move || read_from(&path, None, 0, &opts, true).map(|(c, _)| c))
        .await
        .map_err(std::io::Error::other)?
}

/// `since`/`until` as Unix seconds with an optional fraction.
fn unix_nanos(v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_empty() && *v != "0") else {
        return Ok(None);
    };
    let secs: f64 = v
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid timestamp {v:?}")))?;
    Ok(Some((secs * 1e9) as i64))
}

/// Reads complete lines from `offset`; returns the encoded chunks and the offset after
/// the last complete line (a line being written stays for the next read). `tail` applies
/// only to the first read. Through `open` when the log was there at the request, else by
/// `path` (a container that has not written one yet).
fn read_from(
    path: &PathBuf,
    open: Option<&std::fs::File>,
    offset: u64,
    opts: &Options,
    first: bool,
) -> std::io::Result<(Vec<Bytes>, u64)> {
    let owned;
    let file = match open {
        Some(f) => f,
        None => match std::fs::File::open(path) {
            Ok(f) => {
                owned = f;
                &owned
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
            Err(e) => return Err(e),
        },
    };
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(offset))?;
    let mut pos = offset;
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        pos += n as u64;
        let Ok(entry) = serde_json::from_slice::<LogLine>(&line) else {
            continue;
        };
        if let Some(chunk) = encode(&entry, opts) {
            out.push(chunk);
        }
    }
    if first {
        if let Some(n) = opts.tail {
            let skip = out.len().saturating_sub(n);
            out.drain(..skip);
        }
    }
    Ok((out, pos))
}

fn encode(entry: &LogLine, opts: &Options) -> Option<Bytes> {
    let stream = match entry.stream.as_str() {
        "stdout" if opts.stdout => 1u8,
        "stderr" if opts.stderr => 2u8,
        _ => return None,
    };
    if opts.since_nanos.is_some() || opts.until_nanos.is_some() {
        let t = clock::parse(&entry.time)?.timestamp_nanos_opt()?;
        if opts.since_nanos.is_some_and(|s| t < s) || opts.until_nanos.is_some_and(|u| t > u) {
            return None;
        }
    }
    let mut payload = Vec::with_capacity(entry.log.len() + 40);
    if opts.timestamps {
        payload.extend_from_slice(entry.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(entry.log.as_bytes());
    if opts.tty {
        return Some(Bytes::from(payload));
    }
    let mut framed = Vec::with_capacity(payload.len() + 8);
    framed.push(stream);
    framed.extend_from_slice(&[0, 0, 0]);
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    Some(Bytes::from(framed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            stdout: true,
            stderr: true,
            tail: None,
            since_nanos: None,
            until_nanos: None,
            timestamps: false,
            tty: false,
        }
    }

    #[test]
    fn reads_frames_tail_and_partial_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let lines = [
            r#"{"log":"one\n","stream":"stdout","time":"2026-11-25T10:00:00.000000001Z"}"#,
            r#"{"log":"two\n","stream":"stderr","time":"2026-11-25T10:00:01Z"}"#,
            r#"{"log":"three\n","stream":"stdout","time":"2026-11-25T10:00:02Z"}"#,
        ];
        std::fs::write(&path, format!("{}\n{{\"log\":\"par", lines.join("\n"))).expect("write");
        let (chunks, off) = read_from(&path, None, 0, &opts(), true).expect("read");
        assert_eq!(chunks.len(), 3);
        assert_eq!(&chunks[1][..], b"\x02\x00\x00\x00\x00\x00\x00\x04two\n");
        assert!(
            off < std::fs::metadata(&path).expect("meta").len(),
            "partial line kept"
        );
        let mut o = opts();
        o.tail = Some(1);
        o.stderr = false;
        let (chunks, _) = read_from(&path, None, 0, &o, true).expect("read");
        assert_eq!(&chunks[0][8..], b"three\n");
        let mut o = opts();
        o.tty = true;
        o.timestamps = true;
        o.since_nanos = unix_nanos(Some("1795600801")).expect("since");
        let (chunks, _) = read_from(&path, None, 0, &o, true).expect("read");
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert_eq!(&chunks[1][..], b"2026-11-25T10:00:02Z three\n");
    }
}
