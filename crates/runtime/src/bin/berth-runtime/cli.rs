//! The command line, flag for flag as runc's, so engines can call us unchanged.

use berth_runtime::state::OciState;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "berth-runtime",
    version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.0"),
    about = "berth's OCI runtime: runs a container from a bundle directory, with runc's command line",
    long_about = "berth-runtime creates and runs containers from OCI bundles (a directory with config.json \
and a root filesystem). Its commands and flags are runc's, so containerd, dockerd (--add-runtime) and \
podman (--runtime) can use it in place of runc."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Directory for container state (one subdirectory per container).
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    pub root: PathBuf,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log line format: `text`, or `json` (one object per line with level, msg, time, as runc).
    #[arg(long, global = true, default_value = "text")]
    pub log_format: LogFormat,
    /// Log debug messages too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for compatibility; the systemd cgroup driver is not supported yet.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for compatibility with runc (rootless mode is decided by the config).
    #[arg(
        long = "rootless",
        id = "global_rootless",
        value_name = "true|false|auto"
    )]
    pub rootless: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// The bundle directory (holds config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container init's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master (SCM_RIGHTS) when process.terminal is true.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root (for roots on ramfs).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not give the container a session keyring of its own.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra descriptors (from fd 3 on) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a starting config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A config for running without root: a user namespace, no network namespace.
        #[arg(long)]
        rootless: bool,
    },
    /// Create a container: set everything up and park its init until `start`.
    Create {
        id: String,
        #[command(flatten)]
        args: CreateArgs,
    },
    /// Run the program of a created container.
    Start { id: String },
    /// Create and start a container; wait for it and exit with its status unless detached.
    Run {
        id: String,
        #[command(flatten)]
        args: CreateArgs,
        /// Return once the container is started.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits (default: delete it).
        #[arg(long)]
        keep: bool,
        /// Accepted for compatibility with runc.
        #[arg(long)]
        no_subreaper: bool,
    },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (default TERM) to the container's init, or to all its processes.
    Kill {
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
        /// Signal every process in the container's cgroup.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a stopped container (with --force, kill it first).
    Delete {
        id: String,
        #[arg(short, long)]
        force: bool,
    },
    /// Run a new process in a running container.
    Exec(ExecArgs),
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the container's processes (`ps -ef` rows, or pids as JSON).
    Ps {
        #[arg(short, long, default_value = "table")]
        format: ListFormat,
        id: String,
        /// Arguments for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print what this runtime supports, as the runtime-spec features JSON.
    Features,
    /// Change the resource limits of a running container.
    Update(UpdateArgs),
    /// Print resource usage: once with --stats, else every --interval until it stops.
    Events {
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Time between stats events (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// List containers.
    List {
        #[arg(short, long)]
        quiet: bool,
        #[arg(short, long, default_value = "table")]
        format: ListFormat,
    },
}

/// runc's table: tabwriter with minimum width 12 and padding 3.
pub fn list_table(list: &[OciState]) -> String {
    let mut rows: Vec<Vec<String>> = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        .iter()
        .map(|s| s.to_string())
        .collect()];
    for c in list {
        rows.push(vec![
            c.id.clone(),
            c.pid.to_string(),
            c.status.to_string(),
            c.bundle.display().to_string(),
            c.created.clone(),
            c.owner.clone(),
        ]);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len() + 3)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == cols {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// A process JSON file (the runtime-spec `process` object); replaces the inline flags.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a terminal (needs --console-socket unless in the foreground).
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment, KEY=VALUE (repeatable).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// uid[:gid] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids (repeatable).
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (repeatable), e.g. CAP_NET_ADMIN.
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Exec even into a paused container.
    #[arg(long)]
    pub ignore_paused: bool,
    /// Accepted for compatibility; labels need SELinux/AppArmor, which this runtime does not apply.
    #[arg(long)]
    pub process_label: Option<String>,
    #[arg(long)]
    pub apparmor: Option<String>,
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// A runtime-spec `linux.resources` JSON file, or `-` for stdin; the flags below override it.
    #[arg(short, long)]
    pub resources: Option<String>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_burst: Option<u64>,
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    pub cpu_share: Option<u64>,
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_idle: Option<i64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit, in bytes or with a unit (k, m, g, t); -1 for none.
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap; -1 for unlimited swap.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    pub id: String,
}
