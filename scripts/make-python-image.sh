#!/bin/bash
# Make a one-layer image with Python from the HOST's python3, without a registry.
#
#   scripts/make-python-image.sh OUT.tar [REFERENCE]    (REFERENCE default: localhost/berth-python:latest)
#
# The layer is scripts/make-busybox-image.sh's (static busybox, applets in /bin, /etc/passwd,
# /etc/group) plus: the host's python3 binary and every shared library it and its extension
# modules (lib-dynload) need, at the paths ldd names, with the dynamic loader; the stdlib
# without __pycache__ and test directories; Debian's pip (python3-pip, its dependencies
# vendored); /etc/ssl/certs/ca-certificates.crt for HTTPS (with Debian's /usr/lib/ssl links).
# OUT.tar is an OCI layout and a `docker save` archive, as make-busybox-image.sh writes.
# Used by crates/daemon/tests/notebook_scenario.rs. Needs python3, python3-pip, ldd and
# what make-busybox-image.sh needs.
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ] || [ -z "$1" ]; then
	echo "usage: $0 OUT.tar [REFERENCE]" >&2
	exit 2
fi
out=$1
ref=${2:-localhost/berth-python:latest}
here=$(cd -- "$(dirname -- "$0")" && pwd)

python=$(readlink -f /usr/bin/python3)
[ -x "$python" ] || { echo "$0: /usr/bin/python3 not found" >&2; exit 1; }
stdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pip=/usr/lib/python3/dist-packages/pip
[ -d "$pip" ] || { echo "$0: $pip not found; install python3-pip (scripts/install-deps.sh)" >&2; exit 1; }
cacerts=/etc/ssl/certs/ca-certificates.crt
[ -f "$cacerts" ] || { echo "$0: $cacerts not found (ca-certificates)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-python-image.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"
chmod 0755 "$root"

# Copy host paths (relative to /) into the rootfs, keeping their paths and symlinks.
copy() {
	tar -C / --create --file - --exclude=__pycache__ --exclude=test --exclude=tests \
		--exclude=idle_test "$@" | tar -C "$root" --extract --file - --no-same-owner
}

# The interpreter: /usr/bin/python3 -> python3.X as on the host.
mkdir -p "$root/usr/bin"
cp -- "$python" "$root/usr/bin/$(basename -- "$python")"
ln -sf "$(basename -- "$python")" "$root/usr/bin/python3"
ln -sf python3 "$root/usr/bin/python"

# The stdlib and pip (pip's vendored packages come with it).
copy "${stdlib#/}" "${pip#/}"
rm -rf -- "$root${stdlib}/idlelib" "$root${stdlib}/tkinter" "$root${stdlib}/turtledemo" \
	"$root${stdlib}/ensurepip"
[ -d "/etc/python$pyver" ] && copy "etc/python$pyver"

# Every shared library of the interpreter and of its extension modules, resolved, at the
# path ldd prints (the loader finds them there), plus the loader itself.
{
	ldd "$python"
	find "$stdlib/lib-dynload" -name '*.so' -exec ldd {} \;
} | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | LC_ALL=C sort -u >"$work/libs"
while read -r lib; do
	mkdir -p "$root$(dirname -- "$lib")"
	cp -L -- "$lib" "$root$lib"
	chmod 0755 "$root$lib"
done <"$work/libs"

# TLS roots: Debian's layout (OpenSSL's dir /usr/lib/ssl points at /etc/ssl).
mkdir -p "$root/etc/ssl/certs" "$root/usr/lib/ssl"
cp -- "$cacerts" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"
ln -sf /etc/ssl/certs/ca-certificates.crt "$root/usr/lib/ssl/cert.pem"
ln -sf /etc/ssl/certs "$root/usr/lib/ssl/certs"

# Make every directory traversable and nothing writable by others, whatever umask copied.
find "$root" -type d -exec chmod 0755 {} +

"$here/make-busybox-image.sh" "$out" "$ref" "$root"
