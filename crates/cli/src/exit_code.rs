//! Docker's exit codes (docs: "docker run" Exit status): 125 when the CLI or the daemon fails,
//! 126 when the container command cannot be invoked, 127 when it cannot be found, and
//! otherwise the container's own exit code.

/// berth itself or the daemon failed.
pub const CLI_ERROR: i32 = 125;
/// The container's command exists but cannot be run (permission denied, a directory).
pub const CANNOT_INVOKE: i32 = 126;
/// The container's command was not found.
pub const NOT_FOUND: i32 = 127;

/// An error that ends berth with a given status; `message` is printed (when non-empty) in
/// place of the usual `berth: ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StatusError {}

/// The status for a failed `start`, from the daemon's message, exactly as docker/cli
/// `runStartContainerErr` decides: "not found" words first, then EACCES/EISDIR.
pub fn start_error_code(message: &str) -> i32 {
    let m = message
        .strip_prefix("Error response from daemon: ")
        .unwrap_or(message);
    if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("system cannot find the file specified")
    {
        NOT_FOUND
    } else if m.contains("permission denied") || m.contains("is a directory") {
        CANNOT_INVOKE
    } else {
        CLI_ERROR
    }
}

/// A container's exit code as a process status (`wait` answers an i64; statuses are 0..=255).
pub fn container_exit_code(status: i64) -> i32 {
    i32::try_from(status.rem_euclid(256)).unwrap_or(CLI_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_map_like_docker() {
        assert_eq!(
            start_error_code(
                "Error response from daemon: failed to create task: exec: \"nope\": executable file not found in $PATH"
            ),
            127
        );
        assert_eq!(start_error_code("exec /x: no such file or directory"), 127);
        assert_eq!(start_error_code("exec /etc/passwd: permission denied"), 126);
        assert_eq!(start_error_code("exec /etc: is a directory"), 126);
        assert_eq!(start_error_code("cannot allocate a network"), 125);
    }

    #[test]
    fn exit_codes_fit_a_byte() {
        assert_eq!(container_exit_code(3), 3);
        assert_eq!(container_exit_code(137), 137);
        assert_eq!(container_exit_code(256 + 1), 1);
        assert_eq!(container_exit_code(-1), 255);
    }
}
