//! Building responses: JSON bodies, `{"message"}` errors with their status, and streamed
//! bodies fed from a channel (progress, logs, events, wait).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use berth_api::ErrorResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

/// Every response body: whole or streamed.
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A failed request: the status and the message the client prints after
/// `Error response from daemon: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for Response<Body> {
    fn from(err: ApiError) -> Self {
        error(err.status, &err.message)
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            // dockerd ends JSON bodies with a newline (json.Encoder); some scripts expect it.
            bytes.push(b'\n');
            with_type(status, full(bytes), "application/json")
        }
        Err(err) => {
            tracing::error!(%err, "cannot encode a response");
            with_type(
                StatusCode::INTERNAL_SERVER_ERROR,
                full(Bytes::from_static(
                    b"{\"message\":\"cannot encode the response\"}\n",
                )),
                "application/json",
            )
        }
    }
}

/// `{"message": ...}` with `Content-Type: application/json` exactly: the Go client reads
/// the message only then.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &ErrorResponse::new(message))
}

pub fn with_type(status: StatusCode, body: Body, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A body whose chunks come from a channel; it ends when every sender is dropped. The
/// bounded channel is the back-pressure: a slow client slows the producer instead of
/// growing the daemon's memory.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed body and the sender that feeds it.
pub fn channel() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(32);
    (tx, ChannelBody { rx }.boxed())
}

/// One JSON value as a line of a stream (progress, events).
pub fn json_line<T: Serialize>(value: &T) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}
