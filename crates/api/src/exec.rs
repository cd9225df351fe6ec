//! Exec: `POST /containers/{id}/exec` (create), `POST /exec/{id}/start`,
//! `GET /exec/{id}/json`, as moby's `api/types/container` (`ExecOptions`, `ExecStartOptions`,
//! `ExecInspect`) names them.

use serde::{Deserialize, Serialize};

use crate::container::{null_as_default, str_slice};

/// The create body (moby `ExecOptions`). The docker CLI sends `null` for unset lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ExecConfig {
    pub user: String,
    pub privileged: bool,
    pub tty: bool,
    /// `[height, width]` of the terminal at start, so the first prompt is laid out right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u16; 2]>,
    pub attach_stdin: bool,
    pub attach_stderr: bool,
    pub attach_stdout: bool,
    pub detach: bool,
    pub detach_keys: String,
    #[serde(deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    pub working_dir: String,
    #[serde(deserialize_with = "str_slice")]
    pub cmd: Option<Vec<String>>,
}

/// The start body (moby `ExecStartOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ExecStartConfig {
    /// Run in the background: the answer is 200 with no stream.
    pub detach: bool,
    pub tty: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u16; 2]>,
}

/// `ProcessConfig` of an exec's inspect output; lower-case names, as moby's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecProcessConfig {
    pub tty: bool,
    pub entrypoint: String,
    #[serde(deserialize_with = "null_as_default")]
    pub arguments: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `GET /exec/{id}/json` (moby `ExecInspect`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ExecInspect {
    #[serde(rename = "ID")]
    pub id: String,
    pub running: bool,
    /// `null` until the process has exited (and while it never started).
    pub exit_code: Option<i64>,
    pub process_config: ExecProcessConfig,
    pub open_stdin: bool,
    pub open_stderr: bool,
    pub open_stdout: bool,
    pub can_remove: bool,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub detach_keys: String,
    pub pid: i64,
}

/// `{"Id": "..."}`: the answer to an exec create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdResponse {
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docker_cli_create_body_parses() {
        let body = r#"{"User":"","Privileged":false,"Tty":true,"ConsoleSize":[24,80],
            "AttachStdin":true,"AttachStderr":true,"AttachStdout":true,"Detach":false,
            "DetachKeys":"","Env":null,"WorkingDir":"","Cmd":["sh","-c","echo hi"]}"#;
        let c: ExecConfig = serde_json::from_str(body).unwrap();
        assert!(c.tty && c.attach_stdin && c.env.is_empty());
        assert_eq!(c.console_size, Some([24, 80]));
        assert_eq!(c.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        let s: ExecStartConfig = serde_json::from_str(r#"{"Detach":true,"Tty":false}"#).unwrap();
        assert!(s.detach && s.console_size.is_none());
    }

    #[test]
    fn inspect_has_docker_names_and_a_null_exit_code_while_running() {
        let v = serde_json::to_value(ExecInspect {
            id: "e".into(),
            running: true,
            container_id: "c".into(),
            ..ExecInspect::default()
        })
        .unwrap();
        assert_eq!(v["ID"], "e");
        assert_eq!(v["ContainerID"], "c");
        assert!(v["ExitCode"].is_null());
        assert_eq!(v["ProcessConfig"]["entrypoint"], "");
        assert_eq!(
            serde_json::to_value(IdResponse { id: "x".into() }).unwrap(),
            serde_json::json!({"Id": "x"})
        );
    }
}
