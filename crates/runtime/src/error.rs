//! The runtime's error type. Every variant carries enough context to be printed as the
//! one line a user (or containerd, reading our JSON log) sees.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {0:?}: an id is letters, digits and '_', '+', '-', '.', and not '.' or '..'")]
    InvalidId(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("container does not exist: {0}")]
    NotFound(String),
    #[error("{path}: {cause}")]
    Config { path: PathBuf, cause: String },
    #[error("{0}")]
    InvalidState(String),
    #[error("invalid signal {0:?}")]
    InvalidSignal(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    #[error("unable to start container process: {0}")]
    Init(String),
    #[error("hook {path}: {cause}")]
    Hook { path: String, cause: String },
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("{context}: {source}")]
    Wrapped {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a human context to low-level errors, the way anyhow's `context` does, but keeping
/// the typed error so callers can still match on the kind.
pub trait Context<T> {
    fn context<C: Into<String>>(self, context: C) -> Result<T>;
    fn with_context<C: Into<String>, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context<C: Into<String>>(self, context: C) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context.into(),
            source,
        })
    }
    fn with_context<C: Into<String>, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f().into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn context<C: Into<String>>(self, context: C) -> Result<T> {
        self.map_err(|source| Error::Sys {
            context: context.into(),
            source,
        })
    }
    fn with_context<C: Into<String>, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Sys {
            context: f().into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, Error> {
    fn context<C: Into<String>>(self, context: C) -> Result<T> {
        self.map_err(|source| Error::Wrapped {
            context: context.into(),
            source: Box::new(source),
        })
    }
    fn with_context<C: Into<String>, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Wrapped {
            context: f().into(),
            source: Box::new(source),
        })
    }
}
