#!/bin/bash
# Install berth's binaries and systemd units. Run as root after `make build`
# (`make install` does both). Idempotent: running it again replaces the files.
#
#   PREFIX   where bin/ goes (default /usr/local, which the units' ExecStart= names)
#   DESTDIR  stage into this directory instead of /, for packaging: then no group is
#            created and systemd is not reloaded, and root is not needed
#   BIN_DIR  the built binaries (default ${CARGO_TARGET_DIR:-target}/release)
#   SHIM     the berth-shim to install (default: the static one scripts/build-shim.sh puts
#            in ${CARGO_TARGET_DIR:-target}/shim, else BIN_DIR's)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
BIN_DIR=${BIN_DIR:-$target_dir/release}
SHIM=${SHIM:-$target_dir/shim/berth-shim}
[ -x "$SHIM" ] || SHIM=$BIN_DIR/berth-shim
unit_dir=/etc/systemd/system

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
	echo "install: must run as root (or stage with DESTDIR=DIR)" >&2
	exit 1
fi
if [ ! -x "$BIN_DIR/berthd" ]; then
	echo "install: $BIN_DIR/berthd not found; build first: make build" >&2
	exit 1
fi

# berthd is required; the others are installed when they have been built (the CLI may not
# exist yet in this tree).
for bin in berthd berth berth-shim berth-runtime; do
	src=$BIN_DIR/$bin
	[ "$bin" = berth-shim ] && src=$SHIM
	if [ -x "$src" ]; then
		install -D -m 0755 "$src" "$DESTDIR$PREFIX/bin/$bin"
		echo "install: $DESTDIR$PREFIX/bin/$bin"
	else
		echo "install: $bin not built, skipping" >&2
	fi
done

# The service's ExecStart= names /usr/local/bin/berthd; follow PREFIX.
install -D -m 0644 "$repo/contrib/systemd/berthd.socket" "$DESTDIR$unit_dir/berthd.socket"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
sed "s|^ExecStart=/usr/local/bin/berthd|ExecStart=$PREFIX/bin/berthd|" \
	"$repo/contrib/systemd/berthd.service" >"$tmp"
install -D -m 0644 "$tmp" "$DESTDIR$unit_dir/berthd.service"
echo "install: $DESTDIR$unit_dir/berthd.service, berthd.socket"

if [ -n "$DESTDIR" ]; then
	# Staged for a package: its postinst creates the group and reloads systemd.
	exit 0
fi

# berthd.socket gives the API socket to this group (SocketGroup=berth); systemd refuses to
# start a socket unit whose group does not exist.
if ! getent group berth >/dev/null; then
	groupadd --system berth
	echo "install: created group berth; add users who may use the API: usermod -aG berth USER"
fi

# The same test as sd_booted(3): only a systemd that is PID 1 has units to reload.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	echo "install: enable with: systemctl enable --now berthd.socket berthd.service"
else
	echo "install: systemd is not running (not PID 1); units installed but not loaded"
fi
