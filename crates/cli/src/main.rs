//! `berth`: docker's verbs against berthd's API. A thin client: every command is a few
//! requests over the daemon's Unix socket; nothing here touches the store or the runtime.

mod cli;
mod commands;
mod create_request;
mod exit_code;
mod human;
mod port_spec;
mod progress;
mod reference;
mod stdio_pump;
mod table;
mod template;
mod terminal;

use std::io::{self, Write};

use berth_api::client::{self, Client};
use clap::error::ErrorKind;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit_code::{StatusError, CLI_ERROR};

fn main() {
    // Before any thread exists, so that only the resize watcher ever receives SIGWINCH.
    terminal::block_sigwinch();
    let code = real_main();
    // `process::exit` runs no destructors: put the terminal back and flush by hand.
    terminal::restore();
    let _ = io::stdout().flush();
    std::process::exit(code);
}

fn real_main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                // docker exits 125 on flag errors too.
                _ => CLI_ERROR,
            };
        }
    };
    // `docker run` prefixes every error with `docker: `; other verbs print the daemon's
    // errors bare (`Error response from daemon: ...`).
    let prefix_all = matches!(cli.command, Command::Run(_) | Command::Create(_));
    let client = match Client::from_flag_or_env(cli.host.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e}");
            return if prefix_all { CLI_ERROR } else { 1 };
        }
    };
    match commands::dispatch(&client, cli.command) {
        Ok(code) => code,
        Err(err) => {
            if let Some(s) = err.downcast_ref::<StatusError>() {
                if !s.message.is_empty() {
                    eprintln!("{}", s.message);
                }
                return s.code;
            }
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                // `berth ps | head`: the reader left; nothing to report.
                return 0;
            }
            let text = error_text(&err);
            if prefix_all || !text.starts_with("Error") {
                eprintln!("berth: {text}");
            } else {
                eprintln!("{text}");
            }
            // docker exits 125 for `run`/`create` failures (their status is the
            // container's otherwise) and 1 for every other verb's errors.
            if prefix_all {
                CLI_ERROR
            } else {
                1
            }
        }
    }
}

/// One line for an error: a client error alone (its cause is already in its words, e.g.
/// "Cannot connect ... Is the berth daemon running?"), anything else with its chain.
pub(crate) fn error_text(err: &anyhow::Error) -> String {
    if let Some(c) = err.downcast_ref::<client::Error>() {
        return c.to_string();
    }
    format!("{err:#}")
}
