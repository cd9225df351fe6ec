#!/bin/bash
# Cold pull of a multi-layer image from a local registry: berth's puller
# (target/release/berth-image-pull: download, verify, unpack every layer, unpacking
# while it downloads) against `docker pull` (download, verify, unpack; a private dockerd
# started here, when dockerd is installed) and `skopeo copy docker://... oci:...`
# (download and verify, no unpack), in one hyperfine run, then the peak RSS of each.
# Builds nothing: `make bench-image` builds the release binary first.
#
# The image is generated deterministically (same bytes every run): gzip layers of hex
# text (about 2:1 compressible) in 8 MiB files plus a few hundred small files each,
# pushed with skopeo to Debian's docker-registry on 127.0.0.1.
#
# The dockerd is private: its own --data-root, --exec-root and unix socket under the
# temp dir, no bridge, no iptables rules, no ip_forward change; it pulls from
# 127.0.0.1:PORT, which Docker treats as an insecure registry by default. Each docker
# run starts cold (the image removed and pruned first); the daemon is stopped and its
# dirs removed at the end. Its peak RSS is dockerd's VmHWM over one pull (reset through
# /proc/PID/clear_refs first), its containerd not counted (a pull does not use it).
#
# Environment (all optional):
#   BERTH_IMAGE_PULL  puller under test (default target/release/berth-image-pull)
#   BENCH_RUNS        hyperfine runs per command (default 5)
#   BENCH_LAYER_MIB   uncompressed MiB per layer, bottom first (default "96 80 64 48 32")
#   BENCH_DOCKER      0: leave docker out even when dockerd is installed
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

with_docker=0
if [ "${BENCH_DOCKER:-1}" != 0 ] && command -v dockerd >/dev/null && command -v docker >/dev/null; then
	with_docker=1
fi

tmp=$(mktemp -d /tmp/berth-bench-image.XXXXXX)
registry_pid=
dockerd_pid=
stop() { # pid: TERM, then KILL after 20 s
	kill "$1" 2>/dev/null || return 0
	for _ in $(seq 200); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	[ -z "$dockerd_pid" ] || stop "$dockerd_pid"
	[ -z "$registry_pid" ] || stop "$registry_pid"
	# Whatever dockerd left mounted under its roots, deepest first.
	local m
	for m in $(findmnt -rn -o TARGET | grep "^$tmp/" | sort -r || true); do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-image: generating the image ($layer_mib MiB layers) in $tmp/layout"
python3 - "$tmp/layout" "$layer_mib" <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile

out, sizes = sys.argv[1], [int(s) for s in " ".join(sys.argv[2:]).split()]
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

docker_sock=$tmp/docker.sock
docker_cmd="docker -H unix://$docker_sock pull -q $image"
docker_cold="docker -H unix://$docker_sock rmi -f $image >/dev/null 2>&1; docker -H unix://$docker_sock image prune -af >/dev/null"
if [ "$with_docker" = 1 ]; then
	echo "bench-image: starting a private dockerd ($(dockerd --version))"
	mkdir -p "$tmp/docker-root" "$tmp/docker-exec"
	dockerd --data-root "$tmp/docker-root" --exec-root "$tmp/docker-exec" \
		-H "unix://$docker_sock" --pidfile "$tmp/docker.pid" \
		--bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
		--containerd-namespace berth-bench --containerd-plugins-namespace berth-bench-plugins \
		--storage-driver overlay2 --log-level error >"$tmp/dockerd.log" 2>&1 &
	dockerd_pid=$!
	for _ in $(seq 300); do
		if docker -H "unix://$docker_sock" version >/dev/null 2>&1; then break; fi
		kill -0 "$dockerd_pid" 2>/dev/null || die "dockerd exited: $(tail -5 "$tmp/dockerd.log")"
		sleep 0.1
	done
	docker -H "unix://$docker_sock" version >/dev/null 2>&1 || die "dockerd did not answer: $(tail -5 "$tmp/dockerd.log")"
fi

mkdir -p target/bench
json=target/bench/image-hyperfine.json
# Cold: each run starts from an empty destination (the registry's files stay in the
# page cache, as a nearby registry's would be warm). One --prepare per command.
peers=(--prepare "rm -rf $tmp/berth-root" --command-name berth "$berth_cmd")
if [ "$with_docker" = 1 ]; then
	peers+=(--prepare "$docker_cold" --command-name docker "$docker_cmd")
fi
peers+=(--prepare "rm -rf $tmp/skopeo-dir" --command-name skopeo "$skopeo_cmd")
hyperfine --runs "$runs" --warmup 1 --export-json "$json" "${peers[@]}"

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
if [ "$with_docker" = 1 ]; then
	docker_median=$(median docker)
	bash -c "$docker_cold"
	echo 5 >"/proc/$dockerd_pid/clear_refs" # resets VmHWM to the current RSS
	# shellcheck disable=SC2086
	$docker_cmd >/dev/null
	docker_rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$dockerd_pid/status")
fi

echo
printf 'cold pull, median of %s runs:\n' "$runs"
printf '  berth-image-pull (download+verify+unpack): %8.3f s   peak RSS %7d KiB\n' "$berth_median" "$berth_rss"
if [ "$with_docker" = 1 ]; then
	printf '  docker pull      (download+verify+unpack): %8.3f s   peak RSS %7d KiB (dockerd)\n' "$docker_median" "$docker_rss"
fi
printf '  skopeo copy to oci: (download+verify)    : %8.3f s   peak RSS %7d KiB\n' "$skopeo_median" "$skopeo_rss"
if [ "$with_docker" = 1 ]; then
	awk -v b="$berth_median" -v d="$docker_median" 'BEGIN { printf "  berth / docker: %.2f (docker / berth: %.2fx)\n", b / d, d / b }'
else
	echo "  (no dockerd here: docker pull left out)"
fi
awk -v b="$berth_median" -v s="$skopeo_median" 'BEGIN { printf "  berth / skopeo: %.2f\n", b / s }'
