#!/bin/bash
# Install what berth's build, demo, tests and benchmarks need on Debian 12.
# Idempotent: touches apt only when a package is missing. Run as root.
set -euo pipefail

packages=(
	busybox-static runc hyperfine iptables nftables jq
	iproute2 procps util-linux time
	# A linker for rustc; present wherever Rust already builds.
	gcc libc6-dev
	# Engines the integration tests run berth-runtime under (integration/tests/); each
	# test starts its own daemon with state in a temp dir. bsdutils has `script` (a pty).
	containerd docker.io podman skopeo bsdutils
	# crates/image's pull test runs Debian's registry on 127.0.0.1 (pushes with skopeo).
	docker-registry
	# crates/daemon/tests/docker_py.rs: `python3 -m venv` for docker-py from PyPI.
	python3-venv
	python3-pip # crates/daemon/tests/notebook_scenario.rs: Debian's pip in the test's Python image.
	# make bench-net: TCP throughput through a published port and straight to the container.
	iperf3
	# systemd-analyze verifies contrib/systemd's units (crates/daemon/tests/systemd_units.rs).
	# Installing it starts nothing where systemd is not PID 1 (containers, CI).
	systemd
)

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: must run as root (apt-get install)" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	# dpkg -s also succeeds for removed-but-not-purged packages, so check the status line.
	# No grep -q: an early exit would SIGPIPE dpkg and fail the pipeline under pipefail.
	if ! dpkg -s "$p" 2>/dev/null | grep '^Status: install ok installed$' >/dev/null; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Packages with daemons (containerd, docker.io) would start them from their postinst
	# (invoke-rc.d, deb-systemd-invoke): a policy-rc.d that says 101 ("action forbidden")
	# keeps them stopped. Ours is temporary; an existing one is left as it is.
	policy=/usr/sbin/policy-rc.d
	made_policy=
	if [ ! -e "$policy" ]; then
		made_policy=1
		trap 'rm -f "$policy"' EXIT
		printf '#!/bin/sh\n# install-deps.sh: start no services while installing\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
	fi
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
	if [ -n "$made_policy" ]; then
		rm -f "$policy"
		trap - EXIT
	fi
else
	echo "install-deps: apt packages present"
fi

# Cargo lives in ~/.cargo/bin under rustup; root shells often lack it in PATH.
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
	echo "install-deps: cargo not found; install Rust >= 1.80 with rustup (https://rustup.rs)" >&2
	exit 1
fi

components=()
cargo fmt --version >/dev/null 2>&1 || components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || components+=(clippy)
if [ "${#components[@]}" -gt 0 ]; then
	echo "install-deps: adding rust components ${components[*]}"
	rustup component add "${components[@]}"
fi

# berth-shim is built static against musl (scripts/build-shim.sh says why). Not fatal when
# rustup cannot fetch it: build-shim.sh then falls back to the glibc build.
musl=x86_64-unknown-linux-musl
if [ "$(uname -m)" = x86_64 ] && command -v rustup >/dev/null 2>&1 &&
	! rustup target list --installed 2>/dev/null | grep -x "$musl" >/dev/null; then
	echo "install-deps: adding rust target $musl (for berth-shim)"
	rustup target add "$musl" ||
		echo "install-deps: cannot add $musl; berth-shim will be glibc-linked (bigger)" >&2
fi
