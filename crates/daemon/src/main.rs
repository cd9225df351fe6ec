//! berthd: the berth daemon. Serves the Docker Engine API on a Unix socket.

mod api_server;
mod archive_routes;
mod attach_input;
mod clock;
mod config;
mod container_fs;
mod container_logs;
mod container_manager;
mod container_mounts;
mod container_names;
mod container_record;
mod container_routes;
mod container_spec;
mod container_stats;
mod copy_namespace;
mod disk_usage;
mod events;
mod exec_manager;
mod exec_routes;
mod host_facts;
mod image_routes;
mod image_service;
mod maintenance_routes;
mod metadata_store;
mod network_routes;
mod networks;
mod query;
mod request_body;
mod response;
mod router;
mod seccomp_profile;
mod shim_client;
mod system_routes;
mod systemd;
mod volume_routes;
mod volume_store;

use std::io::IsTerminal;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use crate::api_server::{ApiSocket, DaemonState};
use crate::config::Args;
use crate::container_manager::{ContainerManager, Paths};
use crate::events::EventBus;
use crate::exec_manager::ExecManager;
use crate::host_facts::HostFacts;
use crate::image_service::ImageService;
use crate::metadata_store::MetadataStore;
use crate::system_routes::SystemFacts;
use crate::volume_store::VolumeStore;
use berth_network::bridge_network::BridgeNetworkConfig;

fn main() -> std::process::ExitCode {
    one_malloc_arena();
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&args.log_level));
    let filter = match filter {
        Ok(filter) => filter,
        Err(err) => {
            eprintln!("berthd: invalid --log-level {:?}: {err}", args.log_level);
            return std::process::ExitCode::from(2);
        }
    };
    // Colour only on a terminal: journald and log files get plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("berthd: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let socket_path = args.socket_path()?;
    // Before anything is set up: a wrong --group must not leave a bridge behind.
    let socket_gid = api_server::socket_group(args.group.as_deref())?;
    create_root(&args.data_root, "--data-root")?;
    create_root(&args.exec_root, "--exec-root")?;
    let store = MetadataStore::open(&args.data_root)?;
    let engine_id = store.engine_id()?;
    tracing::info!(
        version = system_routes::DAEMON_VERSION,
        data_root = %args.data_root.display(),
        exec_root = %args.exec_root.display(),
        schema = store.schema_version()?,
        "starting berthd"
    );
    let images =
        Arc::new(ImageService::open(&args.data_root).context("cannot open the image store")?);
    let store = Arc::new(Mutex::new(store));
    let events = Arc::new(EventBus::new());
    let shim_bin = match &args.shim_path {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot find berthd's own path")?
            .with_file_name("berth-shim"),
    };
    if !shim_bin.exists() {
        // Not fatal: the API still serves images and system calls; starts fail clearly.
        tracing::warn!(
            "the shim {} does not exist (build it, or give --shim-path): containers cannot start",
            shim_bin.display()
        );
    }
    let subnet = args
        .bridge_subnet
        .as_deref()
        .map(|s| {
            s.parse()
                .with_context(|| format!("--bridge-subnet {s:?} is not an IPv4 CIDR"))
        })
        .transpose()?;
    let network_config = BridgeNetworkConfig {
        name: "bridge".to_owned(),
        bridge: args.bridge.clone(),
        subnet,
        state_dir: args.data_root.join("network"),
    };
    if args.teardown_network {
        let user = networks::Networks::load(&args.data_root.join("network"))
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        user.teardown_bridges()
            .map_err(|e| anyhow::anyhow!("cannot tear down a user network: {e}"))?;
        let net = berth_network::bridge_network::BridgeNetwork::open(network_config)
            .context("cannot open the bridge network")?;
        net.teardown()
            .context("cannot tear down the bridge network")?;
        tracing::info!(bridge = %args.bridge, "bridge network removed");
        return Ok(());
    }
    let volumes = Arc::new(
        VolumeStore::open(&args.data_root, store.clone(), events.clone())
            .context("cannot open the volume store")?,
    );
    let containers = ContainerManager::new(
        Paths {
            data_root: args.data_root.clone(),
            exec_root: args.exec_root.clone(),
            shim_bin,
        },
        store.clone(),
        images.clone(),
        events.clone(),
        volumes.clone(),
        network_config,
    )
    .map_err(|e| anyhow::anyhow!("cannot load the containers: {}", e.message))?;
    let state = Arc::new(DaemonState {
        facts: SystemFacts {
            host: HostFacts::gather(),
            engine_id,
            data_root: args.data_root.clone(),
        },
        store,
        events,
        images,
        containers: containers.clone(),
        volumes,
        execs: Arc::new(ExecManager::new()),
    });

    // Two worker threads: the daemon's work is I/O and SQLite; more threads only cost RSS.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        // Live restore: containers kept running while berthd was away; find their shims
        // (and the exits that happened meanwhile) before serving.
        containers.recover().await;
        let socket = match systemd::listener_from_env().context("socket activation")? {
            Some(listener) => ApiSocket::from_systemd(listener, &socket_path)?,
            None => ApiSocket::bind(&socket_path, socket_gid).await?,
        };
        if let Err(err) = systemd::notify("READY=1") {
            tracing::warn!(%err, "cannot notify systemd");
        }
        let shutdown = async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutting down");
            let _ = systemd::notify("STOPPING=1");
        };
        socket.serve(state, shutdown).await;
        anyhow::Ok(())
    })?;
    tracing::info!("berthd stopped");
    Ok(())
}

/// Creates a root directory (0711, like dockerd's) if missing, with an error that names
/// the flag to change.
fn create_root(path: &Path, flag: &str) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(path)
        .with_context(|| format!("cannot create {flag} {}", path.display()))
}

/// glibc gives each thread that allocates its own malloc arena (up to eight per core), and
/// memory freed into an arena stays resident: after a burst of `run`s, with tokio's blocking
/// threads coming and going, berthd held ~1 MB more than one arena needs. Its allocations
/// are small and few (it waits on sockets and processes), so contention on one arena costs
/// nothing measurable, and the idle footprint is what users pay (issue 7: under 15 MB).
/// Before any thread exists, which is when `mallopt` must run.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tunable; no other thread is running yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
