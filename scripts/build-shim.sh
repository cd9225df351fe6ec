#!/bin/bash
# Builds the berth-shim that berthd runs per container as a static musl binary and puts it
# at target/shim/berth-shim (`make build` runs this after the workspace build).
#
# Why musl: a shim lives as long as its container, so its resident size is paid once per
# container. Linked against glibc it holds ~3.8 MB resident when idle, most of it pages of
# libc.so and ld.so that the dynamic loader and glibc's start-up touch (and the kernel maps
# in 64 kB fault-around blocks); the same code linked statically with musl holds ~1.3 MB
# (issue 7's target: under 2 MB). Nothing in the shim needs glibc: no NSS (user names are
# looked up in the container's own /etc/passwd by the runtime library), no dlopen.
#
# When the musl target cannot be had (rustup missing or offline), the glibc build is used
# and a warning says so: everything works, the shim is just bigger.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
target_dir=${CARGO_TARGET_DIR:-$repo/target}
musl=x86_64-unknown-linux-musl
out=$target_dir/shim/berth-shim
mkdir -p "$(dirname "$out")"

if [ "$(uname -m)" = x86_64 ] && rustup target list --installed 2>/dev/null | grep -x "$musl" >/dev/null; then
	cargo build --release -p berth-shim --target "$musl"
	src=$target_dir/$musl/release/berth-shim
	kind="static, $musl"
else
	echo "build-shim: the $musl target is not installed (scripts/install-deps.sh adds it):" \
		"using the glibc-linked shim, which holds ~2.5 MB more memory per container" >&2
	cargo build --release -p berth-shim
	src=$target_dir/release/berth-shim
	kind="glibc-linked"
fi
# A copy, not a link: cargo rewrites its own outputs in place on the next build.
install -m 0755 "$src" "$out.tmp"
mv -f "$out.tmp" "$out"
echo "build-shim: $out ($kind)"
