//! The JSON lines of Docker's streaming replies: pull/push/load progress (`JSONMessage`)
//! and the events stream (`events.Message`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `current`/`total` bytes of one layer's transfer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgressDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    pub message: String,
}

/// One line of a progress stream (moby `jsonmessage.JSONMessage`). A failure arrives as a
/// line with `error`/`errorDetail` inside a 200 response, because the headers went out
/// before the work started; clients must check every line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JsonMessage {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub progress: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `docker load` prints `stream` lines (`Loaded image: ...`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stream: String,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorDetail>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// A structured result next to the text: a push ends with a line whose `aux` is
    /// [`PushResult`], which the CLI's content-trust path reads. Other shapes (build's
    /// `{"ID":..}`) decode to an all-default value rather than failing the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<PushResult>,
}

/// The `aux` of the last line of a push (moby `types.PushResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PushResult {
    pub tag: String,
    pub digest: String,
    pub size: i64,
}

impl JsonMessage {
    pub fn status(id: impl Into<String>, status: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: status.into(),
            ..Self::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            error_detail: Some(ErrorDetail {
                message: message.clone(),
            }),
            error: message,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventActor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One line of `GET /events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventMessage {
    /// `container`, `image`, `network`, `volume`.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: EventActor,
    pub scope: String,
    /// Unix seconds and nanoseconds.
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// The pre-1.22 fields the CLI still prints from: the action, the id, the image.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_look_like_dockers() {
        let m = JsonMessage::status("a3ed95caeb02", "Pull complete");
        assert_eq!(
            serde_json::to_string(&m).expect("encodes"),
            r#"{"status":"Pull complete","id":"a3ed95caeb02"}"#
        );
        let e = JsonMessage::error("manifest unknown");
        assert_eq!(
            serde_json::to_string(&e).expect("encodes"),
            r#"{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}"#
        );
    }
}
