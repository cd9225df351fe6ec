#!/bin/bash
# Cold pull of a multi-layer image from a local registry: berth's puller
# (target/release/berth-image-pull: download, verify, unpack every layer) against
# `skopeo copy docker://... oci:...` (download and verify, no unpack), then the peak RSS
# of each. Builds nothing: `make bench-image` builds the release binary first.
#
# The image is generated deterministically (same bytes every run): BENCH_LAYERS gzip
# layers of hex text (about 2:1 compressible) in 8 MiB files plus a few hundred small
# files each, pushed with skopeo to Debian's docker-registry on 127.0.0.1.
#
# Environment (all optional):
#   BERTH_IMAGE_PULL  puller under test (default target/release/berth-image-pull)
#   BENCH_RUNS        hyperfine runs per command (default 5)
#   BENCH_LAYER_MIB   uncompressed MiB per layer, bottom first (default "96 80 64 48 32")
# The hyperfine JSON is kept at target/bench/image-hyperfine.json.
set -euo pipefail

cd "$(dirname "$0")/.."
puller=$(realpath -m "${BERTH_IMAGE_PULL:-target/release/berth-image-pull}")
runs=${BENCH_RUNS:-5}
layer_mib=${BENCH_LAYER_MIB:-96 80 64 48 32}

die() {
	echo "bench-image: $*" >&2
	exit 1
}
[ "$(id -u)" -eq 0 ] || die "must run as root (layers are unpacked with their owners)"
[ -x "$puller" ] || die "$puller not found; run 'make bench-image' (it builds it)"
for tool in docker-registry skopeo hyperfine jq python3 /usr/bin/time; do
	command -v "$tool" >/dev/null || die "$tool not found; run scripts/install-deps.sh"
done

tmp=$(mktemp -d /tmp/berth-bench-image.XXXXXX)
registry_pid=
cleanup() {
	if [ -n "$registry_pid" ]; then
		kill "$registry_pid" 2>/dev/null || true
		wait "$registry_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-image: generating the image ($layer_mib MiB layers) in $tmp/layout"
python3 - "$tmp/layout" "$layer_mib" <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile

out, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)

def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d

def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))

layers, diff_ids = [], []
for i, mib in enumerate(sizes):
    rng = random.Random(i)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for j in range(300):
            add(tar, f"layer{i}/small/{j // 50}/f{j}", rng.randbytes(rng.randint(512, 8192)).hex().encode())
        for j in range(mib // 8):
            add(tar, f"layer{i}/big/f{j}", rng.randbytes(4 << 20).hex().encode())
    tar_bytes = raw.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
    gz = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": put(gz), "size": len(gz)})

arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
config = json.dumps({"architecture": arch, "os": "linux",
                     "config": {"Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
manifest = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": put(config), "size": len(config)},
                       "layers": layers}).encode()
index = {"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
    "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
print(f"bench-image: {len(sizes)} layers, {sum(l['size'] for l in layers) / 2**20:.0f} MiB compressed, "
      f"{sum(sizes)} MiB uncompressed")
PY

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $tmp/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
	if (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	kill -0 "$registry_pid" 2>/dev/null || die "registry exited: $(cat "$tmp/registry.log")"
	sleep 0.1
done
image=127.0.0.1:$port/bench/image:latest
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$tmp/layout:bench" "docker://$image"

berth_cmd="$puller --root $tmp/berth-root $image"
skopeo_cmd="skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://$image oci:$tmp/skopeo-dir:latest"
mkdir -p target/bench
json=target/bench/image-hyperfine.json
# Cold: each run starts from an empty destination (the registry's files stay in the
# page cache, as a nearby registry's would be warm).
hyperfine --runs "$runs" --warmup 1 --export-json "$json" \
	--prepare "rm -rf $tmp/berth-root $tmp/skopeo-dir" \
	--command-name berth "$berth_cmd" \
	--command-name skopeo "$skopeo_cmd"

median() { jq -r --arg n "$1" '.results[] | select(.command == $n) | .median' "$json"; }
berth_median=$(median berth)
skopeo_median=$(median skopeo)

rss() {
	rm -rf "$tmp/berth-root" "$tmp/skopeo-dir"
	/usr/bin/time -f %M -o "$tmp/rss" "$@" >/dev/null
	cat "$tmp/rss"
}
# shellcheck disable=SC2086 # the commands are word lists on purpose
berth_rss=$(rss $berth_cmd)
# shellcheck disable=SC2086
skopeo_rss=$(rss $skopeo_cmd)

echo
printf 'cold pull, median of %s runs:\n' "$runs"
printf '  berth-image-pull (download+verify+unpack): %8.3f s   peak RSS %6d KiB\n' "$berth_median" "$berth_rss"
printf '  skopeo copy to oci: (download+verify)    : %8.3f s   peak RSS %6d KiB\n' "$skopeo_median" "$skopeo_rss"
awk -v b="$berth_median" -v s="$skopeo_median" 'BEGIN { printf "  berth / skopeo: %.2f\n", b / s }'
