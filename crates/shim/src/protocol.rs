//! The socket's wire format: one JSON request line per connection, one JSON response line
//! (see the crate documentation for the table of operations).

use oci_spec::runtime::Process;
use serde::Deserialize;
use serde_json::{json, Value};

/// The longest request line we accept; requests are a few dozen bytes (an `exec` with its
/// process and environment a few kB).
pub const MAX_REQUEST: usize = 64 * 1024;

/// Docker's stream numbers in the multiplexed attach format.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    State,
    Wait,
    Start,
    Kill {
        signal: i32,
        #[serde(default)]
        all: bool,
    },
    Resize {
        rows: u16,
        cols: u16,
    },
    Attach {
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdout: bool,
        #[serde(default)]
        stderr: bool,
        /// The end of this client's input closes the container's stdin pipe (Docker's
        /// `StdinOnce`); false leaves it open for the next client.
        #[serde(default = "yes")]
        close_stdin: bool,
    },
    Delete,
    Exec {
        id: String,
        /// The OCI process (runc's `exec --process` file), boxed: it is large.
        process: Box<Process>,
        #[serde(default)]
        terminal: bool,
        #[serde(default)]
        stdin: bool,
    },
    ExecWait {
        id: String,
    },
    ExecResize {
        id: String,
        rows: u16,
        cols: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request line longer than {MAX_REQUEST} bytes")]
    TooLong,
    #[error("bad request: {0}")]
    Malformed(#[from] serde_json::Error),
}

fn yes() -> bool {
    true
}

pub fn parse(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    Ok(serde_json::from_slice(line)?)
}

/// A response as the line sent back, newline included.
pub fn line(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

pub fn ok() -> Vec<u8> {
    line(&json!({"ok": true}))
}

pub fn error(msg: impl std::fmt::Display) -> Vec<u8> {
    line(&json!({"error": msg.to_string()}))
}

/// Docker's 8-byte multiplexed header: stream, three zero bytes, big-endian length.
pub fn frame(stream: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_defaults() {
        assert_eq!(parse(br#"{"op":"state"}"#).unwrap(), Request::State);
        assert_eq!(
            parse(br#"{"op":"kill","signal":9}"#).unwrap(),
            Request::Kill {
                signal: 9,
                all: false
            }
        );
        assert_eq!(
            parse(br#"{"op":"attach","stdout":true}"#).unwrap(),
            Request::Attach {
                stdin: false,
                stdout: true,
                stderr: false,
                close_stdin: true
            }
        );
        let exec = parse(
            br#"{"op":"exec","id":"e1","process":{"args":["ls"],"cwd":"/","user":{"uid":0,"gid":0}},"terminal":true}"#,
        )
        .unwrap();
        match exec {
            Request::Exec {
                id,
                process,
                terminal,
                stdin,
            } => {
                assert_eq!(id, "e1");
                assert_eq!(process.args().as_deref(), Some(&["ls".to_string()][..]));
                assert!(terminal && !stdin);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(br#"{"op":"exec_wait","id":"e1"}"#).unwrap(),
            Request::ExecWait { id: "e1".into() }
        );
        assert_eq!(
            parse(br#"{"op":"exec_resize","id":"e1","rows":2,"cols":3}"#).unwrap(),
            Request::ExecResize {
                id: "e1".into(),
                rows: 2,
                cols: 3
            }
        );
        assert!(parse(br#"{"op":"exec","id":"e1"}"#).is_err());
        assert!(parse(br#"{"op":"nope"}"#).is_err());
        assert!(parse(br#"{"op":"resize","rows":1}"#).is_err());
        assert!(parse(&vec![b' '; MAX_REQUEST + 1]).is_err());
    }

    #[test]
    fn frames_have_docker_headers() {
        let mut out = Vec::new();
        frame(STDERR, b"abc", &mut out);
        assert_eq!(out, [2, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c']);
    }
}
