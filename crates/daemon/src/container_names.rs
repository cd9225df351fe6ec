//! Container ids and names: 64 random hex characters, Docker's name rule, and a generated
//! `adjective_noun` name when the client gives none.

use std::io::Read;

use crate::response::ApiError;

/// 32 random bytes as hex, like dockerd's `stringid.GenerateRandomID`. Never all digits,
/// so a short id is never mistaken for a number (Docker's rule).
pub fn new_id() -> Result<String, ApiError> {
    loop {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| ApiError::internal(format!("cannot read /dev/urandom: {e}")))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if !id[..12].bytes().all(|b| b.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

/// Docker's `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`; returns the name without the `/`.
pub fn validate(name: &str) -> Result<String, ApiError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let ok = bare.len() >= 2
        && bare.len() <= 253
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(bare.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brisk", "calm", "clever", "crisp", "daring", "eager", "fair", "gentle",
    "hardy", "keen", "lively", "lucid", "mellow", "nimble", "patient", "quiet", "rapid", "sharp",
    "steady", "sturdy", "swift", "tidy", "vivid", "warm", "wise", "zesty",
];

const NOUNS: &[&str] = &[
    "anchor", "barge", "beacon", "bollard", "buoy", "cabin", "capstan", "cargo", "compass",
    "dinghy", "dock", "ferry", "galley", "harbor", "hull", "jetty", "keel", "lantern", "mast",
    "mooring", "pier", "quay", "rudder", "sail", "schooner", "skiff", "tug", "wharf",
];

/// A random `adjective_noun`; `attempt` > 0 appends a number, as Docker does after a clash.
pub fn generate(attempt: u32) -> String {
    let mut bytes = [0u8; 2];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    let a = ADJECTIVES[bytes[0] as usize % ADJECTIVES.len()];
    let n = NOUNS[bytes[1] as usize % NOUNS.len()];
    if attempt == 0 {
        format!("{a}_{n}")
    } else {
        format!("{a}_{n}{attempt}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(validate("/web-1").expect("ok"), "web-1");
        assert_eq!(validate("a.b_c").expect("ok"), "a.b_c");
        for bad in ["", "a", "-x", "a/b", "../x", "a b", "/"] {
            let err = validate(bad).expect_err(bad);
            assert!(err.message.starts_with("Invalid container name"), "{bad}");
        }
        let id = new_id().expect("id");
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(validate(&generate(0)).is_ok());
        assert!(generate(3).ends_with('3'));
    }
}
