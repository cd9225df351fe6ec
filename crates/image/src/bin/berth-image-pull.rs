//! Pulls one image into a data root and exits: the puller alone, for benchmarks
//! (scripts/bench-image.sh) and for trying a registry by hand.
//!
//! Usage: berth-image-pull [--root DIR] [--jobs N] REFERENCE
//!
//! Plain http is used for loopback registries only (see `registry::is_insecure_host`).

use std::path::PathBuf;
use std::process::ExitCode;

use berth_image::content_store::ContentStore;
use berth_image::registry::{Puller, RegistryClient, RegistryConfig};
use berth_image::snapshot::LayerStore;
use berth_image::Reference;

const USAGE: &str = "usage: berth-image-pull [--root DIR] [--jobs N] REFERENCE

Pulls REFERENCE into DIR (default ./berth-image-root): blobs under content/, unpacked
layers under layers/. --jobs is how many layers download at once (default 3).";

struct Args {
    root: PathBuf,
    jobs: usize,
    reference: String,
}

fn parse_args() -> Result<Args, String> {
    let mut root = PathBuf::from("berth-image-root");
    let mut jobs = 3;
    let mut reference = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--root" => root = args.next().ok_or("--root needs a directory")?.into(),
            "--jobs" => {
                jobs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--jobs needs a positive number")?
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other if reference.is_none() => reference = Some(other.to_owned()),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    Ok(Args {
        root,
        jobs,
        reference: reference.ok_or("no image reference given")?,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("berth-image-pull: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-image-pull: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<String, Box<dyn std::error::Error>> {
    let reference = Reference::parse(&args.reference)?;
    let client = RegistryClient::new(RegistryConfig {
        max_concurrent_downloads: args.jobs,
        ..RegistryConfig::default()
    })?;
    let puller = Puller::new(
        client,
        ContentStore::open(&args.root)?,
        LayerStore::open(&args.root)?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let image = runtime.block_on(puller.pull(&reference))?;
    let bytes = puller
        .client()
        .stats()
        .bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(format!(
        "{} {} layers, {bytes} bytes downloaded",
        image.reference,
        image.layers.len()
    ))
}
