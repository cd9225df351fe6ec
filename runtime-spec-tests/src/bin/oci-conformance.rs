//! oci-conformance: runs the runtime-spec checks against a runc-compatible binary and prints
//! TAP. See `oci-conformance --help`.

use runtime_spec_tests::cli::{self, Parsed};
use runtime_spec_tests::harness::{self, Env, Finished, RuntimeInfo};
use runtime_spec_tests::host::Host;
use runtime_spec_tests::report::Report;
use runtime_spec_tests::{bundle, checks, probe_build};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() {
    // Die quietly when the reader of our output goes away (`| head`), as a filter should.
    // SAFETY: restoring the default disposition of SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse(&args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{}", cli::HELP);
            return;
        }
        Err(e) => {
            eprintln!("oci-conformance: {e}");
            std::process::exit(2);
        }
    };
    match run(opts) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("oci-conformance: {e}");
            std::process::exit(2);
        }
    }
}

/// `name` as given if it has a slash, else looked up on PATH.
fn resolve(name: &Path) -> Result<PathBuf, String> {
    if name.components().count() > 1 {
        return std::fs::canonicalize(name).map_err(|e| format!("{}: {e}", name.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{} not found on PATH", name.display()))
}

fn run(opts: cli::Options) -> Result<bool, String> {
    let all = checks::all();
    let selected: Vec<_> = all
        .into_iter()
        .filter(|c| {
            opts.filters.is_empty()
                || opts
                    .filters
                    .iter()
                    .any(|f| c.id.contains(f.as_str()) || c.title.contains(f.as_str()))
        })
        .collect();
    if opts.list {
        for c in &selected {
            println!("{:28} {} ({})", c.id, c.title, c.clause);
        }
        return Ok(true);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("must run as root (it creates containers)".into());
    }
    let runtime = opts
        .runtime
        .clone()
        .or_else(|| std::env::var_os("RUNTIME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("runc"));
    let runtime = RuntimeInfo::detect(&resolve(&runtime)?)?;
    let probe_src = probe_build::locate(
        opts.probe
            .clone()
            .or_else(|| std::env::var_os("OCI_PROBE").map(PathBuf::from)),
    )?;

    let started = Instant::now();
    let tag = run_tag();
    let work = std::env::temp_dir().join(format!("oci-conformance-{tag}"));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let probe = work.join("oci-probe");
    std::fs::copy(&probe_src, &probe).map_err(|e| format!("copying the probe: {e}"))?;
    let busybox = Path::new(bundle::HOST_BUSYBOX);
    let busybox = match std::fs::read(busybox) {
        Ok(bytes) if probe_build::check_static(&bytes).is_ok() => {
            let copy = work.join("busybox");
            std::fs::write(&copy, bytes).map_err(|e| format!("copying busybox: {e}"))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755));
            Some(copy)
        }
        _ => None,
    };
    let env = Env {
        runtime,
        probe,
        busybox,
        host: Host::detect(),
        verbose: opts.verbose,
        work: work.clone(),
        tag,
    };

    println!("TAP version 13");
    println!(
        "# runtime: {} ({})",
        env.runtime.path.display(),
        env.runtime.version
    );
    println!("# probe: {} (static)", probe_src.display());
    println!("# host: {}", env.host.describe());
    if env.busybox.is_none() {
        println!("# no static /bin/busybox: the hook checks are skipped (install busybox-static)");
    }
    println!("1..{}", selected.len());

    let mut report = Report::new(&env.runtime.name, &env.runtime.version, env.verbose);
    let mut pending: BTreeMap<usize, Finished> = BTreeMap::new();
    let mut next = 0;
    harness::run_pool(&env, &selected, opts.jobs, |i, f| {
        pending.insert(i, f);
        while let Some(f) = pending.remove(&next) {
            for line in report.lines(next + 1, selected[next], &f) {
                println!("{line}");
            }
            next += 1;
        }
    });
    for p in harness::remove_tree(&work) {
        println!("# cleanup: {p}");
    }
    if !report.todo_passing.is_empty() {
        println!(
            "# TODO checks that pass now (remove them from src/known.rs): {}",
            report.todo_passing.join(", ")
        );
    }
    if !report.todo_bugs.is_empty() {
        println!(
            "# known bugs of this runtime, marked TODO (src/known.rs): {}",
            report.todo_bugs.join(", ")
        );
    }
    if !report.unexplained.is_empty() {
        println!(
            "# failures with no entry in src/known.rs: {}",
            report.unexplained.join(", ")
        );
    }
    println!(
        "# {} on {} in {:.1} s",
        env.runtime.name,
        env.runtime.path.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", report.summary());
    Ok(report.success())
}

/// Short and unique per run: container ids and cgroup paths start with it.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("oc{}{:03x}", std::process::id(), nanos & 0xfff)
}
