//! One module per group of verbs; each function takes the parsed flags, talks to the daemon
//! and returns the process's exit status (errors go up to `main`, which prints them).

use anyhow::Result;
use berth_api::client::Client;

use crate::cli::{
    Command, ContainerCommand, ImageCommand, NetworkCommand, SystemCommand, VolumeCommand,
};

pub mod container;
pub mod cp;
pub mod exec;
pub mod image;
pub mod inspect;
pub mod network;
pub mod prune;
pub mod ps;
pub mod run;
pub mod stats;
pub mod system;
pub mod volume;

pub fn dispatch(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Run(a) => run::run(client, a),
        Command::Create(a) => run::create(client, a),
        Command::Start(a) => run::start(client, a),
        Command::Attach(a) => run::attach(client, a),
        Command::Exec(a) => exec::exec(client, a),
        Command::Stop(a) => container::stop(client, a, "stop"),
        Command::Restart(a) => container::stop(client, a, "restart"),
        Command::Kill(a) => container::kill(client, a),
        Command::Rm(a) => container::rm(client, a),
        Command::Wait(a) => container::wait(client, a),
        Command::Logs(a) => container::logs(client, a),
        Command::Port(a) => container::port(client, a),
        Command::Ps(a) => ps::ps(client, a),
        Command::Cp(a) => cp::cp(client, a),
        Command::Inspect(a) => inspect::inspect(client, a),
        Command::Pull(a) => image::pull(client, a),
        Command::Push(a) => image::push(client, a),
        Command::Images(a) => image::images(client, a),
        Command::Rmi(a) => image::rmi(client, a),
        Command::Tag(a) => image::tag(client, a),
        Command::Load(a) => image::load(client, a),
        Command::Save(a) => image::save(client, a),
        Command::Import(a) => image::import(client, a),
        Command::Top(a) => stats::top(client, a),
        Command::Stats(a) => stats::stats(client, a),
        Command::Diff(a) => stats::diff(client, a),
        Command::Pause(a) => container::pause(client, a, "pause"),
        Command::Unpause(a) => container::pause(client, a, "unpause"),
        Command::Rename(a) => container::rename(client, a),
        Command::Container(ContainerCommand::Prune(a)) => prune::container_prune(client, a),
        Command::Image(ImageCommand::Prune(a)) => prune::image_prune(client, a),
        Command::System(SystemCommand::Df) => prune::system_df(client),
        Command::System(SystemCommand::Prune(a)) => prune::system_prune(client, a),
        Command::Network(NetworkCommand::Create(a)) => network::create(client, a),
        Command::Network(NetworkCommand::Ls(a)) => network::ls(client, a),
        Command::Network(NetworkCommand::Inspect(a)) => network::inspect(client, a),
        Command::Network(NetworkCommand::Rm(a)) => network::rm(client, a),
        Command::Network(NetworkCommand::Connect(a)) => network::connect(client, a),
        Command::Network(NetworkCommand::Disconnect(a)) => network::disconnect(client, a),
        Command::Volume(VolumeCommand::Create(a)) => volume::create(client, a),
        Command::Volume(VolumeCommand::Ls(a)) => volume::ls(client, a),
        Command::Volume(VolumeCommand::Inspect(a)) => volume::inspect(client, a),
        Command::Volume(VolumeCommand::Rm(a)) => volume::rm(client, a),
        Command::Volume(VolumeCommand::Prune(a)) => volume::prune(client, a),
        Command::Version => system::version(client),
        Command::Info => system::info(client),
    }
}

/// Docker's `stringid.TruncateID`: drop an `algo:` prefix, keep 12 characters.
pub fn short_id(id: &str) -> &str {
    let id = id.split_once(':').map_or(id, |(_, hex)| hex);
    id.get(..12).unwrap_or(id)
}

/// `/containers/{name}`-style path segment: names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*` and image
/// references may carry `/`, `:` and `@`, all of which Go's client sends unescaped; anything
/// else is percent-encoded so that a stray space cannot break the request line.
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/:@+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs `f` for each name, printing each failure to stderr and going on, as docker's
/// multi-target verbs do (`stop`, `rm`, `kill`); the status is 1 if any failed, as docker's.
pub fn for_each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    let mut failed = false;
    for name in names {
        if let Err(e) = f(name) {
            eprintln!("{}", crate::error_text(&e));
            failed = true;
        }
    }
    Ok(if failed { 1 } else { 0 })
}
