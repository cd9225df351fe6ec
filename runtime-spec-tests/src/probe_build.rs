//! Finding (and on first use building) the static `oci-probe`.
//!
//! The probe runs in a rootfs that has nothing but itself, so it must not need a dynamic
//! loader. It is built with `-C target-feature=+crt-static` for an explicit `--target` (so
//! RUSTFLAGS do not reach build scripts) into its own target dir, `target/oci-probe`, so the
//! workspace's normal build is not disturbed:
//!
//! ```sh
//! RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p runtime-spec-tests \
//!     --bin oci-probe --target x86_64-unknown-linux-gnu --target-dir target/oci-probe
//! ```
//!
//! `make conformance` and `make test` run exactly that first; the runner runs it too (a no-op
//! when up to date) when it is started from a checkout. Either way the result is checked:
//! an ELF with no PT_INTERP program header, i.e. no dynamic loader.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace this runner was built from, if it is still there.
fn workspace() -> Option<PathBuf> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    ws.join("Cargo.toml").is_file().then_some(ws)
}

fn target_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Where the build above leaves the probe.
pub fn default_path() -> Option<PathBuf> {
    let ws = workspace()?;
    Some(
        ws.join("target/oci-probe")
            .join(target_triple())
            .join("release/oci-probe"),
    )
}

/// Builds the probe with cargo. Returns cargo's output on failure.
pub fn build() -> Result<PathBuf, String> {
    let ws = workspace().ok_or_else(|| {
        format!(
            "no oci-probe given and the source tree {} is gone: pass --probe PATH",
            env!("CARGO_MANIFEST_DIR")
        )
    })?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(&ws)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--release", "--quiet", "-p", "runtime-spec-tests"])
        .args(["--bin", "oci-probe", "--target", &target_triple()])
        .arg("--target-dir")
        .arg(ws.join("target/oci-probe"))
        .output()
        .map_err(|e| format!("running {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building oci-probe failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    default_path().ok_or_else(|| "oci-probe built but not found".into())
}

/// `--probe`/`OCI_PROBE` if given, else a fresh build from the checkout, else a previous
/// build; then the static check.
pub fn locate(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    let path = match explicit {
        Some(p) => p,
        None => match build() {
            Ok(p) => p,
            Err(e) => match default_path().filter(|p| p.is_file()) {
                Some(p) => {
                    eprintln!("oci-conformance: {e}\nusing the existing {}", p.display());
                    p
                }
                None => return Err(e),
            },
        },
    };
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    match check_static(&bytes) {
        Ok(()) => Ok(path),
        Err(e) => Err(format!(
            "{}: {e}; the probe must be static (see `make conformance`)",
            path.display()
        )),
    }
}

/// Ok when `elf` is a 64-bit little-endian ELF executable without a PT_INTERP header
/// (static, or static-pie: both run with no loader in the rootfs).
pub fn check_static(elf: &[u8]) -> Result<(), String> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().expect("8 bytes"));
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36);
    let phnum = u16_at(0x38);
    if phentsize < 4 || phoff.saturating_add(phentsize * phnum) > elf.len() {
        return Err("truncated program headers".into());
    }
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize) == PT_INTERP {
            return Err("dynamically linked (has a PT_INTERP program header)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with the given program header types.
    fn elf_with(types: &[u32]) -> Vec<u8> {
        let mut v = vec![0u8; 64 + 56 * types.len()];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4] = 2;
        v[5] = 1;
        v[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        v[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        v[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            v[64 + i * 56..64 + i * 56 + 4].copy_from_slice(&t.to_le_bytes());
        }
        v
    }

    #[test]
    fn static_means_no_interpreter() {
        assert!(check_static(&elf_with(&[1, 1, 2])).is_ok());
        assert!(check_static(&elf_with(&[6, 3, 1])).is_err());
        assert!(check_static(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn this_test_binary_is_judged_consistently() {
        // The test binary itself is dynamically linked unless built with crt-static; the
        // check must say so from its PT_INTERP, whichever it is.
        let me = std::fs::read("/proc/self/exe").unwrap();
        let has_interp = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .contains("/ld-linux");
        assert_eq!(check_static(&me).is_ok(), !has_interp);
    }
}
