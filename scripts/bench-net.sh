#!/bin/bash
# make bench-net: TCP throughput through a published port on 127.0.0.1 against straight to
# the container's address, with iperf3, in one run; and the cost of one container's
# network setup: inside berthd (its "network setup" debug line: address, bridge, veth,
# firewall rules), without and with a published port, and end to end (`berth run --rm` on
# the bridge minus `--network none`).
#
# A berthd of its own (temp data/exec roots, bridge bnbench0), an image made from
# busybox-static, and the host's iperf3 bound into the container read-only (/usr, /lib,
# /lib64). Traffic goes only to 127.0.0.1 and to the container this script made.
# Everything is removed on exit.
#
# Environment: BENCH_SECONDS (iperf3 -t, default 5), BENCH_RUNS (hyperfine runs, default 30).
set -euo pipefail

cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/release}
shim=${SHIM:-target/shim/berth-shim}
[ -x "$shim" ] || shim=$bin/berth-shim
secs=${BENCH_SECONDS:-5}
runs=${BENCH_RUNS:-30}
for tool in iperf3 hyperfine jq; do
	command -v "$tool" >/dev/null || { echo "bench-net: $tool not found; run scripts/install-deps.sh" >&2; exit 1; }
done
dir=$(mktemp -d /tmp/berth-bench-net.XXXXXX)
sock=$dir/berth.sock
daemon=(
	"$bin/berthd" --host "unix://$sock" --data-root "$dir/data" --exec-root "$dir/exec"
	--bridge bnbench0 --bridge-subnet "${BENCH_SUBNET:-10.213.78.0/24}" --shim-path "$shim"
)
berth() { "$bin/berth" -H "unix://$sock" "$@"; }
cleanup() {
	set +e
	if [ -S "$sock" ]; then
		ids=$(berth ps -aq 2>/dev/null)
		[ -n "$ids" ] && berth rm -f $ids >/dev/null
	fi
	[ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	"${daemon[@]}" --teardown-network --log-level warn 2>/dev/null
	findmnt -rn -o TARGET | grep "^$dir" | sort -r | xargs -r -n1 umount -l
	rm -rf "$dir"
}
trap cleanup EXIT

# berth_network's debug lines carry the per-container setup timings read at the end.
"${daemon[@]}" --log-level warn,berth_network::bridge_network=debug 2>"$dir/berthd.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$dir/berthd.log" >&2; exit 1; }
scripts/make-busybox-image.sh "$dir/busybox.tar" bench/busybox:latest >/dev/null
berth load -i "$dir/busybox.tar" >/dev/null

port=${BENCH_PORT:-15201}
berth run -d --name iperf -p "127.0.0.1:$port:5201" \
	-v /usr:/usr:ro -v /lib:/lib:ro -v /lib64:/lib64:ro \
	bench/busybox /usr/bin/iperf3 -s >/dev/null
ip=$(berth inspect -f '{{.NetworkSettings.IPAddress}}' iperf)
for _ in $(seq 50); do
	iperf3 -c "$ip" -t 1 >/dev/null 2>&1 && break
	sleep 0.1
done

gbps() { jq -r '.end.sum_received.bits_per_second / 1e9' "$1"; }
iperf3 -c "$ip" -t "$secs" -J >"$dir/direct.json"
iperf3 -c 127.0.0.1 -p "$port" -t "$secs" -J >"$dir/published.json"
direct=$(gbps "$dir/direct.json")
published=$(gbps "$dir/published.json")

echo "== TCP throughput, iperf3 -t $secs (one stream)"
printf '%-42s %8.2f Gbit/s\n' "straight to the container ($ip:5201)" "$direct"
printf '%-42s %8.2f Gbit/s\n' "published port (127.0.0.1:$port)" "$published"
printf '%-42s %8.3f   (target >= 0.9; docker-proxy gets ~0.75)\n' "ratio published/direct" \
	"$(jq -n "$published / $direct")"

echo
echo "== network setup for one container: run --rm true, bridge vs --network none"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$dir/setup.json" \
	"$bin/berth -H unix://$sock run --rm bench/busybox /bin/true" \
	"$bin/berth -H unix://$sock run --rm --network none bench/busybox /bin/true" >/dev/null
bridge_ms=$(jq '.results[0].mean * 1000' "$dir/setup.json")
none_ms=$(jq '.results[1].mean * 1000' "$dir/setup.json")
printf '%-42s %8.2f ms\n' "run --rm, bridge" "$bridge_ms"
printf '%-42s %8.2f ms\n' "run --rm, --network none" "$none_ms"
printf '%-42s %8.2f ms   (target < 5 ms)\n' "network setup + teardown (difference)" \
	"$(jq -n "$bridge_ms - $none_ms")"

# The daemon's own account of each setup: total_us of its "network setup" lines.
setup_median_ms() {
	grep 'network setup' "$dir/berthd.log" | grep -o 'total_us=[0-9]*' | cut -d= -f2 |
		tail -n "$runs" | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", v[int((NR + 1) / 2)] / 1000; else print "n/a" }'
}
for _ in $(seq "$runs"); do berth run --rm bench/busybox /bin/true >/dev/null; done
plain_ms=$(setup_median_ms)
for _ in $(seq "$runs"); do berth run --rm -p 127.0.0.1::80 bench/busybox /bin/true >/dev/null; done
port_ms=$(setup_median_ms)
echo
echo "== network setup inside berthd (median of $runs; address, bridge, veth, firewall rules)"
printf '%-42s %8s ms   (target < 5 ms)\n' "no published port" "$plain_ms"
printf '%-42s %8s ms   (target < 5 ms)\n' "one published port (127.0.0.1::80)" "$port_ms"
