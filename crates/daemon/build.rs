//! Records the rustc version for `/version`'s `GoVersion` (dockerd reports its toolchain
//! there; so does berthd).
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    println!("cargo:rustc-env=BERTHD_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
