#!/bin/bash
# Time `run` of a busybox /bin/true bundle with berth-runtime against runc, and compare
# their peak RSS; then time `exec` of /bin/true into a running container, and `ctr run --rm`
# through containerd's runc shim with each runtime as its binary, side by side. Builds nothing: `make bench-runtime` builds the release binary first.
#
# Environment (all optional):
#   BERTH_RUNTIME   runtime under test (default target/release/berth-runtime)
#   RUNC            reference runtime (default runc)
#   BENCH_RUNS      hyperfine runs per command (default 100)
#   BENCH_RSS_RUNS  runs under /usr/bin/time for peak RSS (default 20)
# The hyperfine JSON is kept at target/bench/runtime-hyperfine.json.
set -euo pipefail

cd "$(dirname "$0")/.."
berth=${BERTH_RUNTIME:-target/release/berth-runtime}
runc=${RUNC:-runc}
runs=${BENCH_RUNS:-100}
rss_runs=${BENCH_RSS_RUNS:-20}

die() {
	echo "bench-runtime: $*" >&2
	exit 1
}
[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -x "$berth" ] || die "$berth not found; run 'make build' first"
for tool in "$runc" hyperfine jq /usr/bin/time; do
	command -v "$tool" >/dev/null || die "$tool not found; run scripts/install-deps.sh"
done

tmp=$(mktemp -d /tmp/berth-bench.XXXXXX)
bundle=$tmp/bundle
berth_id=bench-berth-$$
runc_id=bench-runc-$$
berth_long=bench-berth-exec-$$
runc_long=bench-runc-exec-$$

ctr_pid=
# containerd's shim keeps sockets and fifos under /run/containerd whatever its config says;
# remove those directories at the end if this run made them.
run_containerd_existed=
if [ -e /run/containerd ]; then run_containerd_existed=1; fi
cleanup() {
	if [ -n "$ctr_pid" ]; then
		kill "$ctr_pid" 2>/dev/null || true
		wait "$ctr_pid" 2>/dev/null || true
	fi
	# Snapshot mounts a killed containerd may leave, deepest first.
	awk -v d="$tmp/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	if [ -z "$run_containerd_existed" ] && [ -d /run/containerd ]; then
		rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null || true
	fi
	for cg in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/berth-bench; do
		if [ -d "$cg" ]; then rmdir "$cg" 2>/dev/null || true; fi
	done
	"$berth" --root "$tmp/berth-root" delete --force "$berth_id" >/dev/null 2>&1 || true
	"$runc" --root "$tmp/runc-root" delete --force "$runc_id" >/dev/null 2>&1 || true
	"$berth" --root "$tmp/berth-root" delete --force "$berth_long" >/dev/null 2>&1 || true
	"$runc" --root "$tmp/runc-root" delete --force "$runc_long" >/dev/null 2>&1 || true
	# Without linux.cgroupsPath both runtimes name the cgroup after the container id;
	# remove any that a failed run left behind (children first).
	find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -depth -type d \
		\( -name "$berth_id" -o -name "$runc_id" -o -name "$berth_long" -o -name "$runc_long" \) -exec rmdir {} \; 2>/dev/null || true
	rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/make-busybox-bundle.sh "$bundle" /bin/true

berth_cmd="$berth --root $tmp/berth-root run --bundle $bundle $berth_id"
runc_cmd="$runc --root $tmp/runc-root run --bundle $bundle $runc_id"

# One plain run each: a runtime that cannot run the bundle (or leaves it behind, which
# would make every timed run after the first fail) is an error, not a benchmark.
check_once() {
	local name=$1 root=$2 id=$3 cmd=$4 rt=$5 status=0
	# shellcheck disable=SC2086 # split like hyperfine -N splits it
	$cmd </dev/null >"$tmp/$name.out" 2>&1 || status=$?
	if [ "$status" -ne 0 ]; then
		cat "$tmp/$name.out" >&2
		die "$name failed to run the bundle (exit $status): $cmd"
	fi
	if "$rt" --root "$root" state "$id" >/dev/null 2>&1; then
		die "$name left container $id behind after run"
	fi
}
check_once berth-runtime "$tmp/berth-root" "$berth_id" "$berth_cmd" "$berth"
check_once runc "$tmp/runc-root" "$runc_id" "$runc_cmd" "$runc"

mkdir -p target/bench
json=target/bench/runtime-hyperfine.json
hyperfine -N --warmup 5 --runs "$runs" --export-json "$json" \
	--command-name berth-runtime "$berth_cmd" \
	--command-name runc "$runc_cmd"

median_ms() {
	jq -r --arg name "$1" '.results[] | select(.command == $name) | .median * 1000' "$json"
}
berth_ms=$(median_ms berth-runtime)
runc_ms=$(median_ms runc)

# Peak RSS in KiB: GNU time reports the child's ru_maxrss (the largest of it and the
# children it waited for); take the max over several runs.
peak_rss_kib() {
	local cmd=$1 max=0 kib i
	for ((i = 0; i < rss_runs; i++)); do
		# shellcheck disable=SC2086 # split like hyperfine -N splits it
		/usr/bin/time -f %M -o "$tmp/rss" $cmd </dev/null >/dev/null 2>&1 ||
			die "run failed while measuring RSS: $cmd"
		kib=$(tail -n1 "$tmp/rss")
		[ "$kib" -gt "$max" ] && max=$kib
	done
	echo "$max"
}
berth_kib=$(peak_rss_kib "$berth_cmd")
runc_kib=$(peak_rss_kib "$runc_cmd")

echo
awk -v bm="$berth_ms" -v rm="$runc_ms" -v bk="$berth_kib" -v rk="$runc_kib" -v n="$runs" -v rn="$rss_runs" 'BEGIN {
	printf "%-16s %14s %16s\n", "runtime", "median run ms", "peak RSS KiB"
	printf "%-16s %14.2f %16d\n", "berth-runtime", bm, bk
	printf "%-16s %14.2f %16d\n", "runc", rm, rk
	printf "%-16s %14.2f %16.2f\n", "berth/runc", bm / rm, bk / rk
	printf "(median of %d runs of /bin/true; RSS max over %d runs)\n", n, rn
}'

# exec: one long-running container per runtime, then /bin/true exec'd into it.
scripts/make-busybox-bundle.sh "$tmp/long" sleep 100000
"$berth" --root "$tmp/berth-root" run -d --bundle "$tmp/long" "$berth_long" </dev/null >/dev/null 2>&1 ||
	die "berth-runtime could not start the exec target"
"$runc" --root "$tmp/runc-root" run -d --bundle "$tmp/long" "$runc_long" </dev/null >/dev/null 2>&1 ||
	die "runc could not start the exec target"
berth_exec="$berth --root $tmp/berth-root exec $berth_long /bin/true"
runc_exec="$runc --root $tmp/runc-root exec $runc_long /bin/true"
# shellcheck disable=SC2086 # split like hyperfine -N splits it
$berth_exec </dev/null || die "berth-runtime exec failed: $berth_exec"
# shellcheck disable=SC2086
$runc_exec </dev/null || die "runc exec failed: $runc_exec"
exec_json=target/bench/runtime-exec-hyperfine.json
hyperfine -N --warmup 5 --runs "$runs" --export-json "$exec_json" \
	--command-name berth-runtime "$berth_exec" \
	--command-name runc "$runc_exec"
berth_exec_ms=$(jq -r '.results[] | select(.command == "berth-runtime") | .median * 1000' "$exec_json")
runc_exec_ms=$(jq -r '.results[] | select(.command == "runc") | .median * 1000' "$exec_json")
berth_exec_kib=$(peak_rss_kib "$berth_exec")
runc_exec_kib=$(peak_rss_kib "$runc_exec")
echo
awk -v bm="$berth_exec_ms" -v rm="$runc_exec_ms" -v bk="$berth_exec_kib" -v rk="$runc_exec_kib" -v n="$runs" 'BEGIN {
	printf "%-16s %14s %16s\n", "runtime", "median exec ms", "peak RSS KiB"
	printf "%-16s %14.2f %16d\n", "berth-runtime", bm, bk
	printf "%-16s %14.2f %16d\n", "runc", rm, rk
	printf "%-16s %14.2f %16.2f\n", "berth/runc", bm / rm, bk / rk
	printf "(median of %d execs of /bin/true into a running container)\n", n
}'

# ctr run --rm: containerd's runc shim (io.containerd.runc.v2) with each runtime as its
# binary. This containerd is ours: config, root, state and socket live in $tmp.
for tool in containerd ctr; do
	command -v "$tool" >/dev/null || die "$tool not found; run scripts/install-deps.sh"
done
cdir=$tmp/containerd
mkdir -p "$cdir"
cat >"$cdir/config.toml" <<EOF
version = 2
root = "$cdir/root"
state = "$cdir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$cdir/containerd.sock"
[ttrpc]
  address = "$cdir/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$cdir/opt"
EOF
containerd --config "$cdir/config.toml" --log-level warn >"$cdir/log" 2>&1 &
ctr_pid=$!
for _ in $(seq 100); do
	[ -S "$cdir/containerd.sock" ] && break
	sleep 0.1
done
[ -S "$cdir/containerd.sock" ] || die "containerd did not start: $(tail -n 5 "$cdir/log")"
ctr_cmd="ctr --address $cdir/containerd.sock --namespace berth-bench"
scripts/make-busybox-image.sh "$tmp/busybox.tar" localhost/berth-bench:latest >/dev/null
# shellcheck disable=SC2086 # a command line, split on purpose
$ctr_cmd images import "$tmp/busybox.tar" >/dev/null
berth_abs=$(realpath "$berth")
runc_abs=$(command -v "$runc")
berth_ctr="$ctr_cmd run --rm --runc-binary $berth_abs --runc-root $tmp/ctr-berth localhost/berth-bench:latest bench-ctr-berth /bin/true"
runc_ctr="$ctr_cmd run --rm --runc-binary $runc_abs --runc-root $tmp/ctr-runc localhost/berth-bench:latest bench-ctr-runc /bin/true"
# shellcheck disable=SC2086
$berth_ctr </dev/null || die "ctr run with berth-runtime failed: $berth_ctr"
# shellcheck disable=SC2086
$runc_ctr </dev/null || die "ctr run with runc failed: $runc_ctr"
ctr_json=target/bench/runtime-ctr-hyperfine.json
ctr_runs=${BENCH_CTR_RUNS:-30}
hyperfine -N --warmup 3 --runs "$ctr_runs" --export-json "$ctr_json" \
	--command-name berth-runtime "$berth_ctr" \
	--command-name runc "$runc_ctr"
berth_ctr_ms=$(jq -r '.results[] | select(.command == "berth-runtime") | .median * 1000' "$ctr_json")
runc_ctr_ms=$(jq -r '.results[] | select(.command == "runc") | .median * 1000' "$ctr_json")
echo
awk -v bm="$berth_ctr_ms" -v rm="$runc_ctr_ms" -v n="$ctr_runs" 'BEGIN {
	printf "%-16s %18s\n", "shim binary", "median ctr run ms"
	printf "%-16s %18.2f\n", "berth-runtime", bm
	printf "%-16s %18.2f\n", "runc", rm
	printf "%-16s %18.2f\n", "berth/runc", bm / rm
	printf "(median of %d ctr run --rm of /bin/true through containerd-shim-runc-v2)\n", n
}'
