#!/bin/bash
# Make a one-layer busybox image tarball from the host's static busybox, without a registry.
#
#   scripts/make-busybox-image.sh OUT.tar [REFERENCE [EXTRA_ROOTFS_DIR]]
#                                   (REFERENCE default: localhost/berth-busybox:latest)
#
# EXTRA_ROOTFS_DIR, if given, is copied over the busybox rootfs (same layer) before packing:
# scripts/make-python-image.sh adds the host's python3 that way.
#
# OUT.tar is both an OCI image layout (oci-layout, index.json, blobs/sha256/...) and a
# `docker save` archive (manifest.json pointing at the same blobs), the way docker >= 25
# writes them, so `ctr images import`, `docker load` (also 20.10, which reads only
# manifest.json), `podman load` and `skopeo copy oci-archive:` all take it.
#
# The layer holds /bin/busybox with every applet as a symlink in /bin, /etc/passwd and
# /etc/group, and the usual empty mount points. The config: the host's architecture,
# os linux, Cmd ["sh"], diff_ids = sha256 of the uncompressed layer tar.
#
# Deterministic: the same /bin/busybox gives the same bytes (sorted tar entries, uid/gid 0,
# mtime 0, fixed "created"), so the image ID is stable across runs.
# Needs /bin/busybox (busybox-static), GNU tar, sha256sum and jq.
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 3 ] || [ -z "$1" ]; then
	echo "usage: $0 OUT.tar [REFERENCE [EXTRA_ROOTFS_DIR]]" >&2
	exit 2
fi
out=$1
ref=${2:-localhost/berth-busybox:latest}
extra=${3:-}
if [ -n "$extra" ] && [ ! -d "$extra" ]; then
	echo "$0: $extra is not a directory" >&2
	exit 1
fi
case $ref in
*:*) ;;
*) ref=$ref:latest ;;
esac
tag=${ref##*:}

busybox=/bin/busybox
if [ ! -x "$busybox" ]; then
	echo "$0: $busybox not found; install busybox-static (scripts/install-deps.sh)" >&2
	exit 1
fi
# A dynamically linked busybox (the `busybox` package) would need the host's libc in the image.
if ldd "$busybox" >/dev/null 2>&1; then
	echo "$0: $busybox is dynamically linked; install busybox-static" >&2
	exit 1
fi
for tool in jq sha256sum tar; do
	command -v "$tool" >/dev/null || { echo "$0: $tool not found (scripts/install-deps.sh)" >&2; exit 1; }
done

case $(uname -m) in
x86_64) arch=amd64 ;;
aarch64) arch=arm64 ;;
armv7l) arch=arm ;;
i?86) arch=386 ;;
ppc64le) arch=ppc64le ;;
s390x) arch=s390x ;;
riscv64) arch=riscv64 ;;
*)
	echo "$0: unknown machine $(uname -m)" >&2
	exit 1
	;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-image.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# Same bytes every time: no owner names, no times, entries in name order.
det_tar() {
	tar --create --format=gnu --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime=@0 --mode='u+w,go-w' "$@"
}

# The layer.
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,dev,etc,proc,root,sys,tmp}
chmod 0755 "$rootfs" "$rootfs"/{bin,dev,etc,proc,sys}
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
cp "$busybox" "$rootfs/bin/busybox"
chmod 0755 "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
	[ "$applet" = busybox ] && continue
	ln -s busybox "$rootfs/bin/$applet"
done
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
tty:x:5:
nogroup:x:65534:
EOF
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
if [ -n "$extra" ]; then
	cp -a -- "$extra/." "$rootfs/"
	chmod 0755 "$rootfs"
fi

blobs=$work/out/blobs/sha256
mkdir -p "$blobs"
# Entries as "bin/busybox", not "./bin/busybox": what docker save writes.
(cd "$rootfs" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort >"$work/layer.list")
det_tar --file "$work/layer.tar" --directory "$rootfs" --no-recursion --verbatim-files-from \
	--files-from "$work/layer.list"
layer_digest=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar")
mv "$work/layer.tar" "$blobs/$layer_digest"

# The image config (image-spec config.md); history keeps `docker history` readable.
jq -n -c -S --arg arch "$arch" --arg diff "sha256:$layer_digest" '{
	architecture: $arch,
	os: "linux",
	created: "1970-01-01T00:00:00Z",
	config: {
		Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
		Cmd: ["sh"],
		WorkingDir: "/"
	},
	rootfs: { type: "layers", diff_ids: [$diff] },
	history: [{ created: "1970-01-01T00:00:00Z", created_by: "scripts/make-busybox-image.sh" }]
}' | tr -d '\n' >"$work/config.json"
config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
config_size=$(stat -c %s "$work/config.json")
mv "$work/config.json" "$blobs/$config_digest"

jq -n -c -S \
	--arg cd "sha256:$config_digest" --argjson cs "$config_size" \
	--arg ld "sha256:$layer_digest" --argjson ls "$layer_size" '{
	schemaVersion: 2,
	mediaType: "application/vnd.oci.image.manifest.v1+json",
	config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs },
	layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls }]
}' | tr -d '\n' >"$work/manifest.json"
manifest_digest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$work/manifest.json")
mv "$work/manifest.json" "$blobs/$manifest_digest"

# index.json: containerd names the image after io.containerd.image.name; others read the
# ref.name annotation (the tag, per image-spec annotations.md).
jq -n -c -S --arg md "sha256:$manifest_digest" --argjson ms "$manifest_size" \
	--arg ref "$ref" --arg tag "$tag" '{
	schemaVersion: 2,
	mediaType: "application/vnd.oci.image.index.v1+json",
	manifests: [{
		mediaType: "application/vnd.oci.image.manifest.v1+json",
		digest: $md, size: $ms,
		annotations: { "io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $tag }
	}]
}' >"$work/out/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/out/oci-layout"
# docker save's manifest.json (docker's image/tarexport), over the same blob files.
jq -n -c --arg config "blobs/sha256/$config_digest" --arg layer "blobs/sha256/$layer_digest" \
	--arg ref "$ref" '[{ Config: $config, RepoTags: [$ref], Layers: [$layer] }]' >"$work/out/manifest.json"

mkdir -p -- "$(dirname -- "$out")"
(cd "$work/out" && det_tar --file "$work/image.tar" -- blobs index.json manifest.json oci-layout)
mv -- "$work/image.tar" "$out"
echo "make-busybox-image: $out ($ref, image sha256:$config_digest)" >&2
