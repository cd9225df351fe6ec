//! Container ids. They become directory names under the state root, so anything that could
//! walk out of it (`/`, `..`) is refused before any file is touched.

use crate::error::{Error, Result};

/// runc accepts `^[\w+\-.]+$` minus `.` and `..`; so do we, so that ids engines generate
/// for runc work unchanged.
pub fn validate(id: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    if id.is_empty() || id == "." || id == ".." || id.len() > 1024 || !id.chars().all(ok_char) {
        return Err(Error::InvalidId(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_engine_generated_ids() {
        for id in [
            "a",
            "abc-123",
            "k8s_pod.1+x",
            "0123456789abcdef0123456789abcdef",
        ] {
            assert!(validate(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_ids_that_could_leave_the_state_root() {
        for id in ["", ".", "..", "a/b", "../x", "/abs", "a b", "a\0b", "é"] {
            assert!(validate(id).is_err(), "{id:?}");
        }
    }
}
