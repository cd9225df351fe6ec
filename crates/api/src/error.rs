//! The error body every non-2xx JSON response carries.

use serde::{Deserialize, Serialize};

/// `{"message": "..."}`: the Go client and docker-py read `message` (and only when the
/// response's `Content-Type` is exactly `application/json`, moby `client/errors.go`) and
/// print it as `Error response from daemon: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub message: String,
}

impl ErrorResponse {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
