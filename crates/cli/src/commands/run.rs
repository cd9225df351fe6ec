//! `run`, `create`, `start` and `attach`: the verbs that may end up with the user's terminal
//! wired to a container. The order of requests is docker's (reference notes, "docker run"):
//! create -> attach (upgrade) -> wait (acknowledged) -> start -> resize -> pump -> exit with
//! the wait's status. Attaching and waiting before the start is what makes a short-lived
//! container's output and exit status impossible to miss.

use std::io::{self, IsTerminal, Write};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Result};
use berth_api::client::{query, Client, Error as ClientError, Response};
use berth_api::container::{ContainerCreateResponse, ContainerInspect, WaitResponse};

use super::{image, path_segment};
use crate::cli::{AttachArgs, ContainerOpts, CreateArgs, RunArgs, StartArgs};
use crate::create_request::{self, CreatePlan, HostContext};
use crate::exit_code::{container_exit_code, start_error_code, StatusError, CLI_ERROR};
use crate::stdio_pump::{pump, PumpEnd, PumpOptions};
use crate::terminal::{self, RawMode};

pub fn run(client: &Client, args: RunArgs) -> Result<i32> {
    let opts = &args.opts;
    if opts.tty && opts.interactive && !args.detach && !io::stdin().is_terminal() {
        // docker's wording; raw mode on a pipe would make no sense.
        return Err(anyhow!("the input device is not a TTY"));
    }
    let plan = plan(opts, true, args.detach)?;
    let id = create_container(client, &plan)?;
    if args.detach {
        start_container(client, &id)?;
        println!("{id}");
        return Ok(0);
    }
    let session = Session {
        tty: opts.tty,
        stdin: opts.interactive,
        auto_remove: opts.rm,
    };
    attach_start_wait(client, &id, &session, true)
}

pub fn create(client: &Client, args: CreateArgs) -> Result<i32> {
    let plan = plan(&args.opts, false, false)?;
    let id = create_container(client, &plan)?;
    println!("{id}");
    Ok(0)
}

pub fn start(client: &Client, args: StartArgs) -> Result<i32> {
    if args.attach || args.interactive {
        let [name] = args.containers.as_slice() else {
            return Err(anyhow!(
                "you cannot start and attach multiple containers at once"
            ));
        };
        let c = inspect(client, name)?;
        let session = Session {
            tty: c.config.tty,
            stdin: args.interactive && c.config.open_stdin,
            auto_remove: c.host_config.auto_remove,
        };
        check_tty(&session)?;
        return attach_start_wait(client, &c.id, &session, true);
    }
    super::for_each(&args.containers, |name| {
        client.post_empty(format!("/containers/{}/start", path_segment(name)))?;
        println!("{name}");
        Ok(())
    })
}

pub fn attach(client: &Client, args: AttachArgs) -> Result<i32> {
    let c = inspect(client, &args.container)?;
    if !c.state.running {
        return Err(anyhow!(
            "You cannot attach to a stopped container, start it first"
        ));
    }
    let session = Session {
        tty: c.config.tty,
        stdin: !args.no_stdin && c.config.open_stdin,
        auto_remove: c.host_config.auto_remove,
    };
    check_tty(&session)?;
    attach_start_wait(client, &c.id, &session, false)
}

/// docker's `CheckTty`: a terminal session's input must be a terminal (raw mode on a
/// pipe would make no sense, and the detach keys could not be typed).
fn check_tty(s: &Session) -> Result<()> {
    if s.tty && s.stdin && !io::stdin().is_terminal() {
        return Err(anyhow!("the input device is not a TTY"));
    }
    Ok(())
}

/// How a terminal session with a container is set up.
struct Session {
    tty: bool,
    stdin: bool,
    auto_remove: bool,
}

fn plan(opts: &ContainerOpts, run: bool, detach: bool) -> Result<CreatePlan> {
    let env_files = opts
        .env_file
        .iter()
        .map(|p| std::fs::read_to_string(p).map_err(|e| anyhow!("open {}: {e}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let lookup = |k: &str| std::env::var(k).ok();
    let host = HostContext {
        lookup_env: &lookup,
        env_files,
        cwd: std::env::current_dir().unwrap_or_default(),
        console_size: terminal::stdout_size().map(|(r, c)| [u32::from(r), u32::from(c)]),
    };
    create_request::build(opts, run, detach, &host).map_err(|e| anyhow!(e))
}

/// `POST /containers/create`; on "No such image", pull it (progress on stderr, as
/// `docker run` does) and try once more.
fn create_container(client: &Client, plan: &CreatePlan) -> Result<String> {
    let path = match &plan.name {
        Some(n) => format!("/containers/create{}", query(&[("name", n)])),
        None => "/containers/create".to_owned(),
    };
    let send = || -> Result<ContainerCreateResponse, ClientError> {
        client
            .post(path.clone())
            .json(&plan.request)?
            .send()?
            .json()
    };
    let created = match send() {
        Ok(c) => c,
        Err(e)
            if e.status() == Some(404)
                && e.daemon_message()
                    .is_some_and(|m| m.starts_with("No such image")) =>
        {
            eprintln!(
                "Unable to find image '{}' locally",
                plan.image.familiar_string()
            );
            let mut err = io::stderr();
            let width = err
                .is_terminal()
                .then(|| terminal::size_of(std::os::fd::AsFd::as_fd(&err)).map_or(80, |s| s.1));
            image::pull_image(client, &plan.image, &mut err, width)?;
            send()?
        }
        Err(e) => return Err(e.into()),
    };
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(created.id)
}

/// `POST start`, with docker's 126/127 when the command cannot be run.
fn start_container(client: &Client, id: &str) -> Result<()> {
    client
        .post_empty(format!("/containers/{}/start", path_segment(id)))
        .map_err(|e| {
            let message = e.to_string();
            StatusError {
                code: start_error_code(&message),
                message: format!("berth: {message}"),
            }
            .into()
        })
}

fn inspect(client: &Client, name: &str) -> Result<ContainerInspect> {
    Ok(client.get_json(format!("/containers/{}/json", path_segment(name)))?)
}

/// Attach, ask for the exit, start (when `start`), pump, and return the exit status.
fn attach_start_wait(client: &Client, id: &str, s: &Session, start: bool) -> Result<i32> {
    if !s.tty {
        proxy_signals(client, id);
    }
    let on = |b: bool| if b { "1" } else { "0" };
    let stream = client
        .post(format!(
            "/containers/{}/attach{}",
            path_segment(id),
            query(&[
                ("stream", "1"),
                ("stdin", on(s.stdin)),
                ("stdout", "1"),
                ("stderr", "1"),
            ])
        ))
        .upgrade()?;
    // `next-exit` for a container we are about to start; `removed` when the daemon deletes
    // it on exit (else the wait could race the removal); plain `attach` waits for a
    // container that is already running.
    let condition = if s.auto_remove {
        "removed"
    } else if start {
        "next-exit"
    } else {
        "not-running"
    };
    let waiting: Response = client
        .post(format!(
            "/containers/{}/wait{}",
            path_segment(id),
            query(&[("condition", condition)])
        ))
        .send()?;
    let waiter = thread::spawn(move || waiting.json::<WaitResponse>());

    let raw = if s.tty && s.stdin {
        RawMode::enable().map_err(|e| anyhow!("cannot put the terminal in raw mode: {e}"))?
    } else {
        None
    };
    if start {
        if let Err(e) = start_container(client, id) {
            drop(raw);
            return Err(e);
        }
    }
    if s.tty {
        watch_size(client, id);
    }
    let end = pump(
        stream,
        &PumpOptions {
            tty: s.tty,
            stdin: s.stdin,
            detach_keys: berth_api::detach_keys::DEFAULT.to_vec(),
        },
    );
    drop(raw);
    match end? {
        PumpEnd::Detached => {
            let _ = io::stdout().flush();
            return Ok(0);
        }
        PumpEnd::Closed => {}
    }
    let waited = waiter
        .join()
        .map_err(|_| anyhow!("the wait for the container's exit failed"))??;
    if let Some(err) = waited.error.filter(|e| !e.message.is_empty()) {
        return Err(StatusError {
            code: CLI_ERROR,
            message: format!("berth: {}", err.message),
        }
        .into());
    }
    Ok(container_exit_code(waited.status_code))
}

/// Docker's `--sig-proxy` (on by default without a terminal): signals berth receives go to
/// the container through the API instead of ending berth, so ctrl-c stops the container's
/// process the way it would stop a local one. Blocked here, before any other thread of the
/// session exists, and taken by one thread with sigwait. With a terminal, ctrl-c is a byte
/// on the pty and the container's terminal makes it a signal.
fn proxy_signals(client: &Client, id: &str) {
    use nix::sys::signal::{SigSet, Signal};
    let set: SigSet = [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ]
    .into_iter()
    .collect();
    if set.thread_block().is_err() {
        return;
    }
    let client = client.clone();
    let id = path_segment(id);
    thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            let name = sig.as_str().trim_start_matches("SIG").to_owned();
            if let Err(e) = client.post_empty(format!(
                "/containers/{id}/kill{}",
                query(&[("signal", &name)])
            )) {
                eprintln!("berth: cannot forward {name} to the container: {e}");
            }
        }
    });
}

/// Sends the terminal's size now (retrying briefly, as docker does, since the container may
/// still be starting) and on every SIGWINCH.
fn watch_size(client: &Client, id: &str) {
    let Some((rows, cols)) = terminal::stdout_size() else {
        return;
    };
    let resize = {
        let client = client.clone();
        let id = path_segment(id);
        move |rows: u16, cols: u16| {
            client.post_empty(format!(
                "/containers/{id}/resize{}",
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
