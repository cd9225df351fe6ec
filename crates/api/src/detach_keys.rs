//! The `DetachKeys` field and `detachKeys` query parameter (`--detach-keys`): what the
//! text means, and finding the sequence in a stream of typed bytes. Both ends of an attach
//! watch for it (docker/cli `hijack.go` and dockerd's `copyEscapable`), so a client that
//! does not, such as a plain API client, can still detach.

/// Docker's default, `ctrl-p,ctrl-q`.
pub const DEFAULT: [u8; 2] = [0x10, 0x11];

/// `ctrl-@` .. `ctrl-_`: the names of the control codes 0 to 31, as moby's `term.ToBytes`.
const CONTROL_NAMES: [&str; 32] = [
    "ctrl-@", "ctrl-a", "ctrl-b", "ctrl-c", "ctrl-d", "ctrl-e", "ctrl-f", "ctrl-g", "ctrl-h",
    "ctrl-i", "ctrl-j", "ctrl-k", "ctrl-l", "ctrl-m", "ctrl-n", "ctrl-o", "ctrl-p", "ctrl-q",
    "ctrl-r", "ctrl-s", "ctrl-t", "ctrl-u", "ctrl-v", "ctrl-w", "ctrl-x", "ctrl-y", "ctrl-z",
    "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_",
];

/// `ctrl-x,y` as bytes: comma-separated keys, each one character or `ctrl-<c>`. Empty
/// text is Docker's default. The error is the key that is not understood.
pub fn parse(text: &str) -> Result<Vec<u8>, String> {
    if text.is_empty() {
        return Ok(DEFAULT.to_vec());
    }
    let mut out = Vec::new();
    for key in text.split(',') {
        if key.len() == 1 {
            out.push(key.as_bytes()[0]);
            continue;
        }
        let lower = key.to_ascii_lowercase();
        match CONTROL_NAMES.iter().position(|n| *n == lower) {
            Some(code) => out.push(code as u8),
            None => return Err(key.to_owned()),
        }
    }
    Ok(out)
}

/// Finds the sequence in typed input, across reads (moby's `term.EscapeProxy`): a byte
/// that may start it is held back until the next bytes show whether it does.
#[derive(Debug, Clone)]
pub struct DetachScanner {
    keys: Vec<u8>,
    /// How many bytes of the sequence have been seen (and held back).
    matched: usize,
}

impl DetachScanner {
    /// An empty `keys` would match nothing ever typed; Docker's default is used instead.
    pub fn new(keys: Vec<u8>) -> Self {
        let keys = if keys.is_empty() {
            DEFAULT.to_vec()
        } else {
            keys
        };
        Self { keys, matched: 0 }
    }

    /// Appends what should be forwarded to `out`; true when the sequence was completed
    /// (the sequence is not forwarded, nor anything after it: the session ends there).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            // Not the sequence after all: release what was held, then look at `b` afresh.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
            } else {
                out.push(b);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dockers_forms() {
        assert_eq!(parse(""), Ok(vec![0x10, 0x11]));
        assert_eq!(parse("ctrl-p,ctrl-q"), Ok(vec![0x10, 0x11]));
        assert_eq!(parse("ctrl-x,y"), Ok(vec![0x18, b'y']));
        assert_eq!(parse("a"), Ok(vec![b'a']));
        assert_eq!(parse("ctrl-@,ctrl-_,CTRL-A"), Ok(vec![0, 31, 1]));
        assert_eq!(parse("ctrl-1"), Err("ctrl-1".to_owned()));
        assert_eq!(parse("ab"), Err("ab".to_owned()));
        assert_eq!(parse("a,,b"), Err(String::new()));
    }

    #[test]
    fn finds_the_sequence_across_reads() {
        let mut s = DetachScanner::new(vec![0x18, b'y']);
        let mut out = Vec::new();
        assert!(!s.feed(b"ls\x18", &mut out));
        assert_eq!(out, b"ls");
        assert!(s.feed(b"yrest", &mut out));
        assert_eq!(out, b"ls");
    }

    #[test]
    fn releases_a_false_start() {
        let mut s = DetachScanner::new(DEFAULT.to_vec());
        let mut out = Vec::new();
        assert!(!s.feed(b"\x10a\x10", &mut out));
        assert_eq!(out, b"\x10a");
        assert!(!s.feed(b"\x10", &mut out));
        assert_eq!(out, b"\x10a\x10");
        assert!(s.feed(b"\x11", &mut out));
    }
}
