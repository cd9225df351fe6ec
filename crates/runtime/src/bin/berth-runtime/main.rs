//! berth-runtime: runc's command line over the berth_runtime library, so that containerd's
//! runc shim, dockerd `--add-runtime` and podman `--runtime` can drive it unchanged.

mod cli;
mod exec_cmd;
mod foreground;
mod logging;
mod run;
mod update;

use anyhow::{bail, Context as _, Result};
use berth_runtime::launcher::{self, CreateOptions};
use berth_runtime::state::StateRoot;
use berth_runtime::{lifecycle, signal, spec_template};
use clap::Parser;
use cli::{Cli, Command, CreateArgs, ListFormat};
use std::io::Write;
use std::path::Path;

fn main() {
    let cli = Cli::parse();
    let to_file = logging::init(&cli.global);
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::error!("{msg}");
            // The log may be a file an engine reads; a person at a terminal reads stderr.
            if to_file {
                eprintln!("berth-runtime: {msg}");
            }
            1
        }
    };
    std::process::exit(code);
}

fn create_options(id: &str, a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: id.to_string(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let root = StateRoot::new(&cli.global.root);
    if cli.global.systemd_cgroup {
        tracing::warn!(
            "--systemd-cgroup is not supported yet: cgroupsPath is used as a cgroupfs path"
        );
    }
    match cli.command {
        Command::Spec { bundle, rootless } => {
            write_spec(&bundle, rootless)?;
        }
        Command::Create { id, args } => {
            check_systemd_path(cli.global.systemd_cgroup, &args)?;
            launcher::create(&root, &create_options(&id, &args))?;
        }
        Command::Start { id } => lifecycle::start(&root, &id)?,
        Command::Run {
            id,
            args,
            detach,
            keep,
            no_subreaper: _,
        } => {
            check_systemd_path(cli.global.systemd_cgroup, &args)?;
            return run::run(&root, &create_options(&id, &args), detach, keep);
        }
        Command::State { id } => {
            let st = lifecycle::state(&root, &id)?;
            println!("{}", serde_json::to_string_pretty(&st)?);
        }
        Command::Kill {
            id,
            signal: sig,
            all,
        } => {
            let n = signal::parse(&sig)?;
            lifecycle::kill(&root, &id, n, all)?;
        }
        Command::Delete { id, force } => lifecycle::delete(&root, &id, force)?,
        Command::Exec(a) => return exec_cmd::exec_cmd(&root, a),
        Command::Pause { id } => lifecycle::pause(&root, &id)?,
        Command::Resume { id } => lifecycle::resume(&root, &id)?,
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&root, &id, format, &ps_args)?,
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&berth_runtime::features::features())?
            );
        }
        Command::Update(a) => update::update(&root, a)?,
        Command::Events {
            stats,
            interval,
            id,
        } => update::events(&root, &id, stats, &interval)?,
        Command::List { quiet, format } => {
            let list = lifecycle::list(&root)?;
            let mut out = std::io::stdout().lock();
            if quiet {
                for c in &list {
                    writeln!(out, "{}", c.id)?;
                }
            } else if format == ListFormat::Json {
                writeln!(out, "{}", serde_json::to_string(&list)?)?;
            } else {
                write!(out, "{}", cli::list_table(&list))?;
            }
        }
    }
    Ok(0)
}

/// With --systemd-cgroup, engines pass `slice:prefix:name`; that is a systemd unit, not a
/// directory, and we do not drive systemd yet: say so instead of making a strange directory.
fn check_systemd_path(systemd: bool, args: &CreateArgs) -> Result<()> {
    if !systemd {
        return Ok(());
    }
    let config = std::fs::read(args.bundle.join("config.json")).unwrap_or_default();
    let spec: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
    if spec["linux"]["cgroupsPath"]
        .as_str()
        .is_some_and(|p| p.contains(':'))
    {
        bail!(
            "--systemd-cgroup: the systemd cgroup driver is not supported yet (cgroupsPath {:?})",
            spec["linux"]["cgroupsPath"]
        );
    }
    Ok(())
}

fn write_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let spec = spec_template::default_spec(
        rootless,
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// runc's `ps`: the host's `ps` output, keeping the header and the container's rows.
fn ps(root: &StateRoot, id: &str, format: ListFormat, args: &[String]) -> Result<()> {
    let pids = lifecycle::pids(root, id)?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow::anyhow!("ps {}: no PID column in its output", args.join(" ")))?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}
