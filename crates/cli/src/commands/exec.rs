//! `exec`: a new process in a running container, as docker/cli `container/exec.go` does it:
//! create the exec -> start it (upgraded, or detached) -> resize -> pump -> inspect the exec
//! for its exit code. The code is the process's; 126/127 when it could not start (the
//! daemon puts the runtime's reason in the stream), as Docker's.

use std::io::{self, IsTerminal, Write};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Result};
use berth_api::client::{query, Client};
use berth_api::detach_keys;
use berth_api::exec::{ExecConfig, ExecInspect, ExecStartConfig, IdResponse};

use super::path_segment;
use crate::cli::ExecArgs;
use crate::create_request::parse_env;
use crate::exit_code::{container_exit_code, StatusError, CLI_ERROR};
use crate::stdio_pump::{pump, PumpEnd, PumpOptions};
use crate::terminal::{self, RawMode};

pub fn exec(client: &Client, args: ExecArgs) -> Result<i32> {
    if args.tty && args.interactive && !args.detach && !io::stdin().is_terminal() {
        // docker's wording; raw mode on a pipe would make no sense.
        return Err(anyhow!("the input device is not a TTY"));
    }
    let config = exec_config(&args, terminal::stdout_size())?;
    let created: IdResponse = client
        .post(format!(
            "/containers/{}/exec",
            path_segment(&args.container)
        ))
        .json(&config)?
        .send()?
        .json()?;
    let id = created.id;
    let start = ExecStartConfig {
        detach: args.detach,
        tty: args.tty,
        console_size: config.console_size,
    };
    if args.detach {
        client
            .post(format!("/exec/{}/start", path_segment(&id)))
            .json(&start)?
            .send()?
            .discard()?;
        return Ok(0);
    }
    // From here on a failure is berth's own (the exec exists): 125, as docker's CLI errors.
    let own = |e: anyhow::Error| -> anyhow::Error {
        StatusError {
            code: CLI_ERROR,
            message: format!("berth: {}", crate::error_text(&e)),
        }
        .into()
    };
    let raw = if args.tty && args.interactive {
        RawMode::enable().map_err(|e| anyhow!("cannot put the terminal in raw mode: {e}"))?
    } else {
        None
    };
    let stream = match client
        .post(format!("/exec/{}/start", path_segment(&id)))
        .json(&start)
        .and_then(|r| r.upgrade())
    {
        Ok(s) => s,
        Err(e) => {
            drop(raw);
            return Err(e.into());
        }
    };
    if args.tty {
        watch_size(client, &id);
    }
    let end = pump(
        stream,
        &PumpOptions {
            tty: args.tty,
            stdin: args.interactive,
            // The daemon refused bad keys at create; docker's CLI falls back the same way.
            detach_keys: detach_keys::parse(args.detach_keys.as_deref().unwrap_or_default())
                .unwrap_or_else(|_| detach_keys::DEFAULT.to_vec()),
        },
    );
    drop(raw);
    let _ = io::stdout().flush();
    if end.map_err(|e| own(e.into()))? == PumpEnd::Detached {
        return Ok(0);
    }
    let inspect: ExecInspect = client
        .get_json(format!("/exec/{}/json", path_segment(&id)))
        .map_err(|e| own(e.into()))?;
    Ok(inspect.exit_code.map_or(0, container_exit_code))
}

/// The create body from the flags (docker/cli `parseExec`).
fn exec_config(args: &ExecArgs, size: Option<(u16, u16)>) -> Result<ExecConfig> {
    let files = args
        .env_file
        .iter()
        .map(|p| std::fs::read_to_string(p).map_err(|e| anyhow!("open {}: {e}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let lookup = |k: &str| std::env::var(k).ok();
    let env = parse_env(&files, &args.env, &lookup).map_err(|e| anyhow!(e))?;
    Ok(ExecConfig {
        user: args.user.clone().unwrap_or_default(),
        privileged: args.privileged,
        tty: args.tty,
        console_size: size.filter(|_| args.tty).map(|(rows, cols)| [rows, cols]),
        attach_stdin: args.interactive && !args.detach,
        attach_stdout: !args.detach,
        attach_stderr: !args.detach,
        detach: args.detach,
        detach_keys: args.detach_keys.clone().unwrap_or_default(),
        env,
        working_dir: args.workdir.clone().unwrap_or_default(),
        cmd: Some(args.command.clone()),
    })
}

/// Sends the terminal's size now (retrying briefly: the process may still be starting, as
/// docker's `initTtySize` does) and on every SIGWINCH.
fn watch_size(client: &Client, id: &str) {
    let Some((rows, cols)) = terminal::stdout_size() else {
        return;
    };
    let resize = {
        let client = client.clone();
        let id = path_segment(id);
        move |rows: u16, cols: u16| {
            client.post_empty(format!(
                "/exec/{id}/resize{}",
                query(&[("h", &rows.to_string()), ("w", &cols.to_string())])
            ))
        }
    };
    for _ in 0..10 {
        if resize(rows, cols).is_ok() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    terminal::on_resize(move |r, c| {
        let _ = resize(r, c);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(argv: &[&str]) -> ExecArgs {
        let mut full = vec!["berth", "exec"];
        full.extend_from_slice(argv);
        match crate::cli::Cli::try_parse_from(full)
            .expect("parses")
            .command
        {
            crate::cli::Command::Exec(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_the_create_body() {
        let a = parse(&[
            "-i",
            "-t",
            "-e",
            "A=b",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "--privileged",
            "c1",
            "sh",
            "-c",
            "echo $A",
        ]);
        assert_eq!(a.container, "c1");
        assert_eq!(a.command, ["sh", "-c", "echo $A"]);
        let c = exec_config(&a, Some((24, 80))).unwrap();
        assert!(c.tty && c.attach_stdin && c.attach_stdout && c.privileged && !c.detach);
        assert_eq!(c.env, ["A=b"]);
        assert_eq!(
            (c.working_dir.as_str(), c.user.as_str()),
            ("/tmp", "nobody")
        );
        assert_eq!(c.console_size, Some([24, 80]));

        let c = exec_config(&parse(&["-d", "c1", "touch", "/x"]), Some((24, 80))).unwrap();
        assert!(c.detach && !c.attach_stdout && !c.attach_stdin);
        assert_eq!(c.console_size, None);
        // Flags after the command belong to it.
        assert_eq!(parse(&["c1", "ls", "-la"]).command, ["ls", "-la"]);
    }
}
