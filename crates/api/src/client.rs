//! A small synchronous client for berthd's (or dockerd's) API on a Unix socket.
//!
//! Hand-written HTTP/1.1 over `std::os::unix::net::UnixStream` rather than hyper: `berth` makes
//! a handful of requests per invocation, so an async runtime would cost more start-up time and
//! binary size than it saves. The protocol subset is small and fixed:
//!
//! - one request per connection (`Connection: close`), so a response body without framing
//!   simply ends at EOF and no connection pool is needed;
//! - request bodies are either a byte buffer (`Content-Length`) or a reader sent with
//!   `Transfer-Encoding: chunked` (`load`, `import`: the size of a tar from stdin is unknown);
//! - response bodies are decoded from `Content-Length`, `chunked`, or read to EOF, and handed
//!   out as a [`Read`] so that progress lines, log frames and tar archives stream;
//! - a `101` answer to `Connection: Upgrade` / `Upgrade: tcp` leaves the socket as a raw
//!   bidirectional stream ([`Upgraded`]), which is how `attach` works (moby `client/hijack.go`).
//!
//! Blocking calls are a feature here: `run` pumps stdin and the attach stream on two threads
//! and waits for the exit status on a third, the way the docker CLI uses goroutines.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ErrorResponse;

/// The API version `berth` speaks; every path but `/_ping` is prefixed with it.
pub const API_PREFIX: &str = "/v1.44";
/// Where berthd listens unless told otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
/// The environment variable that overrides [`DEFAULT_HOST`] (`-H` overrides both).
pub const HOST_ENV: &str = "BERTH_HOST";

/// Status line and headers larger than this are not an API server talking.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Everything that can go wrong between `berth` and the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid host {0:?}: berth only speaks to unix:// sockets")]
    InvalidHost(String),
    /// Docker's wording, so that scripts and people recognise it.
    #[error("Cannot connect to the berth daemon at unix://{}. Is the berth daemon running?", .path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("error during connect: {0}")]
    Io(#[from] io::Error),
    #[error("malformed response from daemon: {0}")]
    Protocol(String),
    /// A 4xx/5xx answer; `message` is the body's `message`, or the body itself when it is
    /// not Docker's JSON error shape.
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
    /// An `error` line inside a 200 progress stream (pull, push, load, import).
    #[error("{0}")]
    Stream(String),
    #[error("unable to upgrade to tcp, received {0}")]
    Upgrade(u16),
    #[error("invalid JSON from daemon: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The HTTP status of a daemon error, for callers that branch on 404/409.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Daemon { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The daemon's message without Docker's `Error response from daemon: ` prefix.
    pub fn daemon_message(&self) -> Option<&str> {
        match self {
            Error::Daemon { message, .. } => Some(message),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Percent-encodes one query component (RFC 3986 unreserved characters pass through), as
/// Go's `url.Values.Encode` does for the docker CLI's queries.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `?k=v&k2=v2` from pairs, encoding both sides; empty when there are no pairs.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&encode_component(k));
        out.push('=');
        out.push_str(&encode_component(v));
    }
    out
}

/// A handle on the daemon's socket. Cheap: it only holds the path; every request dials anew.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// `unix:///path/to.sock` or a bare absolute path. TCP hosts are refused: the API has no
    /// authentication and berthd does not listen on TCP.
    pub fn new(host: &str) -> Result<Client> {
        let path = host.strip_prefix("unix://").unwrap_or(host);
        if path.is_empty() || !path.starts_with('/') {
            return Err(Error::InvalidHost(host.to_owned()));
        }
        Ok(Client {
            socket: PathBuf::from(path),
        })
    }

    /// The host from `-H`, else `$BERTH_HOST`, else [`DEFAULT_HOST`].
    pub fn from_flag_or_env(flag: Option<&str>) -> Result<Client> {
        match flag {
            Some(h) => Client::new(h),
            None => match std::env::var(HOST_ENV) {
                Ok(h) if !h.is_empty() => Client::new(&h),
                _ => Client::new(DEFAULT_HOST),
            },
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A request to `path` (with its query, without the version prefix).
    pub fn request(&self, method: &'static str, path: impl Into<String>) -> Request<'_> {
        Request {
            client: self,
            method,
            path: path.into(),
            versioned: true,
            headers: Vec::new(),
            body: RequestBody::Empty,
        }
    }

    pub fn get(&self, path: impl Into<String>) -> Request<'_> {
        self.request("GET", path)
    }

    pub fn post(&self, path: impl Into<String>) -> Request<'_> {
        self.request("POST", path)
    }

    pub fn delete(&self, path: impl Into<String>) -> Request<'_> {
        self.request("DELETE", path)
    }

    /// `GET path` decoded as JSON.
    pub fn get_json<T: DeserializeOwned>(&self, path: impl Into<String>) -> Result<T> {
        self.get(path).send()?.json()
    }

    /// `POST path` with an empty body, the answer discarded (start, stop, kill, tag, ...).
    pub fn post_empty(&self, path: impl Into<String>) -> Result<()> {
        self.post(path).send()?.discard()
    }

    fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket).map_err(|source| Error::Connect {
            path: self.socket.clone(),
            source,
        })
    }
}

enum RequestBody<'a> {
    Empty,
    Bytes(Vec<u8>),
    Reader(Box<dyn Read + 'a>),
}

/// One request being built; consumed by [`Request::send`] or [`Request::upgrade`].
pub struct Request<'a> {
    client: &'a Client,
    method: &'static str,
    path: String,
    versioned: bool,
    headers: Vec<(String, String)>,
    body: RequestBody<'a>,
}

impl<'a> Request<'a> {
    /// Sends the path without `/v1.44` (`/_ping` and `/version` are unversioned in Docker too).
    pub fn unversioned(mut self) -> Self {
        self.versioned = false;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A JSON body.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self> {
        self.body = RequestBody::Bytes(serde_json::to_vec(body)?);
        Ok(self.header("Content-Type", "application/json"))
    }

    /// A body streamed from `reader` with chunked encoding (its length is unknown up front).
    pub fn body_reader(mut self, reader: impl Read + 'a, content_type: &str) -> Self {
        self.body = RequestBody::Reader(Box::new(reader));
        self.header("Content-Type", content_type)
    }

    /// Sends the request and reads the status and headers. A 4xx/5xx becomes
    /// [`Error::Daemon`]; the body of any other answer is left to the caller to read.
    pub fn send(self) -> Result<Response> {
        let is_head = self.method == "HEAD";
        let stream = self.write(&[("Connection", "close")])?;
        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader)?;
        let framing = if is_head || head.status == 204 || head.status == 304 {
            Framing::Length(0)
        } else {
            framing_of(&head)?
        };
        let response = Response {
            status: head.status,
            headers: head.headers,
            body: BodyReader::new(reader, framing),
        };
        if response.status >= 400 {
            return Err(response.into_error());
        }
        Ok(response)
    }

    /// Sends the request asking for `Upgrade: tcp` and expects `101`; the socket is then a
    /// raw stream in both directions. A 4xx/5xx answer is mapped like [`Request::send`].
    pub fn upgrade(self) -> Result<Upgraded> {
        let stream = self.write(&[("Connection", "Upgrade"), ("Upgrade", "tcp")])?;
        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader)?;
        if head.status >= 400 {
            let framing = framing_of(&head)?;
            let response = Response {
                status: head.status,
                headers: head.headers,
                body: BodyReader::new(reader, framing),
            };
            return Err(response.into_error());
        }
        if head.status != 101 {
            return Err(Error::Upgrade(head.status));
        }
        let content_type = head
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Ok(Upgraded {
            reader,
            content_type,
        })
    }

    /// Dials, writes the head and the body; returns the socket to read the answer from.
    fn write(self, connection_headers: &[(&str, &str)]) -> Result<UnixStream> {
        let mut stream = self.client.connect()?;
        let prefix = if self.versioned { API_PREFIX } else { "" };
        let mut head = format!(
            "{} {}{} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth/{}\r\n",
            self.method,
            prefix,
            self.path,
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in connection_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match &self.body {
            RequestBody::Empty => {
                // Docker's server accepts a POST without a body, but proxies want a length.
                if self.method == "POST" {
                    head.push_str("Content-Length: 0\r\n");
                }
            }
            RequestBody::Bytes(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
            RequestBody::Reader(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        let sent = match self.body {
            RequestBody::Empty => Ok(()),
            RequestBody::Bytes(b) => stream.write_all(&b),
            RequestBody::Reader(mut r) => write_chunked(&mut r, &mut stream),
        }
        .and_then(|()| stream.flush());
        match sent {
            Ok(()) => Ok(stream),
            // The daemon may answer (a 404 for a bad destination, say) and close before it
            // read the body; its answer is still there to read, and says more than EPIPE.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(stream),
            Err(e) => Err(e.into()),
        }
    }
}

fn write_chunked(reader: &mut dyn Read, out: &mut UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(format!("{n:x}\r\n").as_bytes())?;
        out.write_all(&buf[..n])?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"0\r\n\r\n")
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

fn read_head(reader: &mut impl BufRead) -> Result<Head> {
    let mut total = 0;
    let mut line = String::new();
    let mut next_line = |reader: &mut dyn BufRead, line: &mut String| -> Result<()> {
        line.clear();
        let n = reader.read_line(line)?;
        total += n;
        if n == 0 {
            return Err(Error::Protocol(
                "connection closed before the response headers".into(),
            ));
        }
        if total > MAX_HEAD_BYTES {
            return Err(Error::Protocol("response headers too large".into()));
        }
        Ok(())
    };
    next_line(reader, &mut line)?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(Error::Protocol(format!(
            "bad status line {:?}",
            line.trim_end()
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Error::Protocol(format!("bad status line {:?}", line.trim_end())))?;
    let mut headers = Vec::new();
    loop {
        next_line(reader, &mut line)?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| Error::Protocol(format!("bad header line {l:?}")))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(Head { status, headers })
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    UntilEof,
}

fn framing_of(head: &Head) -> Result<Framing> {
    let get = |name: &str| {
        head.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return Ok(Framing::Chunked);
    }
    match get("content-length") {
        Some(v) => v
            .parse()
            .map(Framing::Length)
            .map_err(|_| Error::Protocol(format!("bad Content-Length {v:?}"))),
        None => Ok(Framing::UntilEof),
    }
}

/// A response body, decoded from its framing.
struct BodyReader {
    inner: BufReader<UnixStream>,
    framing: Framing,
    /// Bytes left in the current chunk (chunked) or in the body (length).
    remaining: u64,
    done: bool,
}

impl BodyReader {
    fn new(inner: BufReader<UnixStream>, framing: Framing) -> Self {
        let remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        BodyReader {
            inner,
            framing,
            remaining,
            done: matches!(framing, Framing::Length(0)),
        }
    }

    fn read_chunk_size(&mut self) -> io::Result<u64> {
        let mut line = String::new();
        if self.inner.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "response body ended inside a chunk",
            ));
        }
        let hex = line.trim().split(';').next().unwrap_or_default();
        u64::from_str_radix(hex, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {:?}", line.trim()),
            )
        })
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        match self.framing {
            Framing::UntilEof => self.inner.read(buf),
            Framing::Length(_) => {
                let want = buf
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "response body shorter than its Content-Length",
                    ));
                }
                self.remaining -= n as u64;
                self.done = self.remaining == 0;
                Ok(n)
            }
            Framing::Chunked => {
                if self.remaining == 0 {
                    let size = self.read_chunk_size()?;
                    if size == 0 {
                        // Trailers until the empty line; berthd sends none, but be exact.
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if self.inner.read_line(&mut line)? == 0 || line.trim().is_empty() {
                                break;
                            }
                        }
                        self.done = true;
                        return Ok(0);
                    }
                    self.remaining = size;
                }
                let want = buf
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "response body ended inside a chunk",
                    ));
                }
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    let mut crlf = [0u8; 2];
                    self.inner.read_exact(&mut crlf)?;
                }
                Ok(n)
            }
        }
    }
}

/// A response whose status was not an error. It is itself the body's [`Read`].
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: BodyReader,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Response {
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the body is Docker's JSON (progress streams, objects), not a raw payload.
    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.starts_with("application/json"))
    }

    pub fn bytes(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.body.read_to_end(&mut out)?;
        Ok(out)
    }

    pub fn json<T: DeserializeOwned>(self) -> Result<T> {
        let bytes = self.bytes()?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Reads and drops the body (keeps the daemon from seeing a reset mid-write).
    pub fn discard(mut self) -> Result<()> {
        io::copy(&mut self.body, &mut io::sink())?;
        Ok(())
    }

    /// The body as a sequence of JSON values (Docker's progress and event streams: one
    /// object per line, but any whitespace between values is accepted, as the Go decoder
    /// does). Each value is yielded as soon as its closing brace arrives.
    pub fn json_stream<T: DeserializeOwned>(self) -> impl Iterator<Item = Result<T>> {
        serde_json::Deserializer::from_reader(BufReader::new(self))
            .into_iter::<T>()
            .map(|r| r.map_err(Error::from))
    }

    fn into_error(self) -> Error {
        let status = self.status;
        let is_json = self.is_json();
        let body = self.bytes().unwrap_or_default();
        let message = if is_json {
            serde_json::from_slice::<ErrorResponse>(&body)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned())
        } else {
            String::from_utf8_lossy(&body).trim().to_owned()
        };
        let message = if message.is_empty() {
            format!("HTTP {status}")
        } else {
            message
        };
        Error::Daemon { status, message }
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

/// The socket after a `101`: raw bytes both ways (with a TTY), or Docker's multiplexed
/// frames from the daemon (without). Bytes the daemon sent right behind its headers are kept
/// in the buffered reader, so nothing is lost.
pub struct Upgraded {
    reader: BufReader<UnixStream>,
    content_type: String,
}

impl Upgraded {
    /// `application/vnd.docker.multiplexed-stream` or `...raw-stream`; informational, since
    /// the docker CLI decides framing from the container's `Config.Tty`.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// Separates the halves so that stdin and stdout can be pumped on different threads.
    pub fn split(self) -> io::Result<(UpgradedReader, UpgradedWriter)> {
        let writer = self.reader.get_ref().try_clone()?;
        Ok((
            UpgradedReader { inner: self.reader },
            UpgradedWriter { inner: writer },
        ))
    }
}

/// The daemon-to-client half of an attach stream.
pub struct UpgradedReader {
    inner: BufReader<UnixStream>,
}

impl Read for UpgradedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// The client-to-daemon half of an attach stream.
pub struct UpgradedWriter {
    inner: UnixStream,
}

impl UpgradedWriter {
    /// Half-close: tells the daemon stdin ended (it closes the container's stdin) while the
    /// output keeps flowing, as `echo foo | docker run -i img cat` needs.
    pub fn close_write(&self) -> io::Result<()> {
        self.inner.shutdown(Shutdown::Write)
    }

    /// Closes both directions; a thread blocked reading the other half wakes with EOF
    /// (used when the user detaches).
    pub fn close(&self) -> io::Result<()> {
        self.inner.shutdown(Shutdown::Both)
    }

    pub fn try_clone(&self) -> io::Result<UpgradedWriter> {
        Ok(UpgradedWriter {
            inner: self.inner.try_clone()?,
        })
    }
}

impl Write for UpgradedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Which stream a multiplexed frame belongs to (the first byte of its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdStream {
    /// 0: written to stdout, as the Go `stdcopy` does.
    Stdin,
    Stdout,
    Stderr,
    /// 3: an error from the daemon inside the stream.
    System,
}

/// Reads one frame of Docker's multiplexed stream (`[STREAM, 0, 0, 0, SIZE u32 BE]` then
/// SIZE bytes) into `payload`; `None` at a clean EOF between frames.
pub fn read_frame<R: Read + ?Sized>(
    reader: &mut R,
    payload: &mut Vec<u8>,
) -> io::Result<Option<StdStream>> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < header.len() {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame header",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let stream = match header[0] {
        0 => StdStream::Stdin,
        1 => StdStream::Stdout,
        2 => StdStream::Stderr,
        3 => StdStream::System,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unrecognized stream type {other} in multiplexed stream"),
            ))
        }
    };
    let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    payload.clear();
    payload.resize(size, 0);
    reader.read_exact(payload)?;
    Ok(Some(stream))
}

/// Copies a multiplexed stream to `stdout`/`stderr` until EOF, flushing after every frame so
/// that interactive output shows at once (moby `stdcopy.StdCopy`). A system frame ends the
/// copy with its text as the error.
pub fn demux<R: Read + ?Sized>(
    reader: &mut R,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> io::Result<()> {
    let mut payload = Vec::new();
    while let Some(stream) = read_frame(reader, &mut payload)? {
        match stream {
            StdStream::Stdin | StdStream::Stdout => {
                stdout.write_all(&payload)?;
                stdout.flush()?;
            }
            StdStream::Stderr => {
                stderr.write_all(&payload)?;
                stderr.flush()?;
            }
            StdStream::System => {
                return Err(io::Error::other(
                    String::from_utf8_lossy(&payload).trim().to_owned(),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// Serves one connection with `reply` and returns the request bytes it read up to the
    /// end of the head (plus whatever body arrived in the same reads).
    fn serve_once(reply: &'static [u8]) -> (Client, thread::JoinHandle<String>, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "berth-client-test-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tempdir");
        let sock = dir.join("s.sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            conn.write_all(reply).expect("write");
            String::from_utf8_lossy(&req).into_owned()
        });
        let client = Client::new(&format!("unix://{}", sock.display())).expect("client");
        (client, handle, dir)
    }

    #[test]
    fn queries_are_encoded_like_go() {
        assert_eq!(
            query(&[("fromImage", "docker.io/library/alpine"), ("tag", "latest")]),
            "?fromImage=docker.io%2Flibrary%2Falpine&tag=latest"
        );
        assert_eq!(query(&[]), "");
        assert_eq!(encode_component("a b{}"), "a%20b%7B%7D");
    }

    #[test]
    fn hosts() {
        assert_eq!(
            Client::new("unix:///run/x.sock").expect("ok").socket(),
            Path::new("/run/x.sock")
        );
        assert!(Client::new("tcp://1.2.3.4:2375").is_err());
        assert!(Client::new("unix://").is_err());
    }

    #[test]
    fn chunked_json_body() {
        let (client, h, dir) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\n{\"Id\"\r\n8\r\n:\"abc\"}\n\r\n0\r\n\r\n",
        );
        #[derive(serde::Deserialize)]
        struct R {
            #[serde(rename = "Id")]
            id: String,
        }
        let r: R = client.get_json("/containers/x/json").expect("json");
        assert_eq!(r.id, "abc");
        let req = h.join().expect("server");
        assert!(
            req.starts_with("GET /v1.44/containers/x/json HTTP/1.1\r\n"),
            "{req}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn errors_carry_the_daemon_message() {
        let (client, h, dir) = serve_once(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n\
              {\"message\":\"No such container: x\"}\n",
        );
        let err = client.post_empty("/containers/x/start").expect_err("404");
        assert_eq!(err.status(), Some(404));
        assert_eq!(
            err.to_string(),
            "Error response from daemon: No such container: x"
        );
        h.join().expect("server");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn progress_stream_yields_each_line() {
        let (client, h, dir) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n\
              {\"status\":\"Pulling fs layer\",\"id\":\"a\"}\n{\"error\":\"boom\"}\n",
        );
        let msgs: Vec<crate::stream::JsonMessage> = client
            .post("/images/create?fromImage=x")
            .send()
            .expect("send")
            .json_stream()
            .collect::<Result<_>>()
            .expect("lines");
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].id, "a");
        assert_eq!(msgs[1].error, "boom");
        h.join().expect("server");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn upgrade_keeps_bytes_after_the_head() {
        let (client, h, dir) = serve_once(
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n\
              Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x03hi\n\x02\x00\x00\x00\x00\x00\x00\x02e\n",
        );
        let up = client
            .post("/containers/x/attach?stream=1&stdout=1")
            .upgrade()
            .expect("101");
        assert!(up.content_type().contains("multiplexed"));
        let (mut r, _w) = up.split().expect("split");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        h.join().expect("server"); // the server's end closes: EOF after the frames
        demux(&mut r, &mut out, &mut err).expect("demux");
        assert_eq!(out, b"hi\n");
        assert_eq!(err, b"e\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn frames_reject_garbage() {
        let mut bad: &[u8] = b"\x09\x00\x00\x00\x00\x00\x00\x00";
        let mut p = Vec::new();
        assert!(read_frame(&mut bad, &mut p).is_err());
        let mut empty: &[u8] = b"";
        assert!(read_frame(&mut empty, &mut p).expect("eof").is_none());
    }
}
