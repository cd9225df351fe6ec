#!/bin/bash
# make bench-engine: the engine against Docker's, side by side in one run.
#
#   1. `berth run --rm IMAGE /bin/true` against `docker run --rm IMAGE /bin/true`, on the
#      default bridge and with `--network none` (hyperfine, all four commands in one run);
#   2. berthd's idle RSS against dockerd + its containerd;
#   3. the RSS of the per-container monitor: berth-shim against containerd-shim-runc-v2,
#      each holding one `sleep` container.
#
# Both engines are private to this run: a berthd and a dockerd (Debian's docker.io, which
# starts its own containerd) with data roots, exec roots, sockets and bridges under a temp
# dir, and the same image in both: scripts/make-busybox-image.sh (the host's busybox-static,
# one layer) loaded with `berth load` and `docker load`. No pulls: nothing leaves the host.
#
# dockerd runs with --iptables=false --ip-masq=false --ip-forward=false on a bridge this
# script makes (dbench0): it never touches the host's firewall or sysctls, and its
# containers still get a veth, an address and a netns each (what `run` pays for), just no
# NAT to the outside, which `/bin/true` does not need. berthd's bridge (bbench0) is the real
# thing, nftables rules included; `berthd --teardown-network` removes it at the end.
#
# No dockerd here, or it does not start: berth is measured alone (exit 0).
# On exit everything is removed (containers, daemons, bridges, firewall rules, mounts,
# cgroups, the temp dir), and the host is checked against what it was before.
#
# Environment (all optional):
#   BIN_DIR           berthd, berth (default target/release)
#   SHIM              the berth-shim berthd runs (default target/shim/berth-shim, the static
#                     build of scripts/build-shim.sh, else BIN_DIR/berth-shim)
#   BENCH_RUNS        hyperfine runs per command (default 30)
#   BENCH_IDLE_SECS   how long the daemons sit without requests before "idle" RSS (default 12)
#   DOCKERD, DOCKER   Docker's daemon and client (default dockerd, /usr/bin/docker)
#   BENCH_BERTH_SUBNET, BENCH_DOCKER_SUBNET   bridge subnets (10.99.0.0/24, 10.98.0.0/24)
# The hyperfine JSON is kept at target/bench/engine-hyperfine.json.
set -euo pipefail

cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/release}
shim=${SHIM:-target/shim/berth-shim}
[ -x "$shim" ] || shim=$bin/berth-shim
runs=${BENCH_RUNS:-30}
idle_secs=${BENCH_IDLE_SECS:-12}
[ "$idle_secs" -ge 1 ] 2>/dev/null || { echo "bench-engine: BENCH_IDLE_SECS must be a whole number >= 1" >&2; exit 1; }
dockerd_bin=${DOCKERD:-dockerd}
docker_bin=${DOCKER:-/usr/bin/docker}
[ -x "$docker_bin" ] || docker_bin=$(command -v docker || echo docker)
berth_bridge=bbench0
berth_subnet=${BENCH_BERTH_SUBNET:-10.99.0.0/24}
docker_bridge=dbench0
docker_subnet=${BENCH_DOCKER_SUBNET:-10.98.0.0/24}
image=bench/busybox:latest

die() {
	echo "bench-engine: $*" >&2
	exit 1
}
note() { echo "bench-engine: $*" >&2; }
[ "$(id -u)" -eq 0 ] || die "must run as root"
for b in "$bin/berthd" "$bin/berth" "$shim"; do
	[ -x "$b" ] || die "$b not found; run 'make build' first"
done
for tool in hyperfine jq ip nft findmnt; do
	command -v "$tool" >/dev/null || die "$tool not found; run scripts/install-deps.sh"
done
for link in "$berth_bridge" dbench0; do
	ip link show "$link" >/dev/null 2>&1 && die "link $link already exists (another bench running?)"
done

dir=$(mktemp -d /tmp/berth-bench-engine.XXXXXX)
chmod 0711 "$dir"
sock=$dir/berth.sock
dsock=$dir/docker.sock
export DOCKER_CONFIG=$dir/docker-client
daemon=(
	"$bin/berthd" --host "unix://$sock" --data-root "$dir/berth-data" --exec-root "$dir/berth-exec"
	--bridge "$berth_bridge" --bridge-subnet "$berth_subnet" --shim-path "$shim"
)
berth() { "$bin/berth" -H "unix://$sock" "$@"; }
docker() { "$docker_bin" -H "unix://$dsock" "$@"; }
docker_cgroup=berth-bench-docker-$$

# What the host looks like before: compared (and restored) at the end.
snapshot_iptables() {
	{ iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; } | grep -v -e '^#' -e '^:' | sed 's/\[[0-9:]*\]//g' || true
}
iptables_before=$(snapshot_iptables)
nft_berth_existed=
nft list table inet berth >/dev/null 2>&1 && nft_berth_existed=1
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
# Host paths dockerd 20.10 and its containerd use whatever their flags say.
host_paths=(/run/docker/plugins /run/docker /run/containerd/s /run/containerd/fifo /run/containerd /etc/docker/key.json)
declare -A existed=()
for p in "${host_paths[@]}" /sys/fs/cgroup/memory/berth; do
	[ -e "$p" ] && existed[$p]=1
done

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# SIGTERM, up to 20 s for all to exit, then SIGKILL; the first pid is our child (reaped).
stop_pids() {
	local p i left
	for p in "$@"; do alive "$p" && kill -TERM "$p"; done
	for ((i = 0; i < 200; i++)); do
		left=
		for p in "$@"; do alive "$p" && left=1; done
		[ -z "$left" ] && break
		# Our child stays a zombie (kill -0 works) until reaped.
		[ "$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" = Z ] && wait "$1" 2>/dev/null
		sleep 0.1
	done
	for p in "$@"; do
		alive "$p" && { note "pid $p did not stop on SIGTERM; killing it"; kill -KILL "$p"; }
	done
	wait "$1" 2>/dev/null
}
# Processes whose command line names this run's temp dir (shims, daemons).
pids_of_run() {
	local f c
	for f in /proc/[0-9]*/cmdline; do
		c=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
		[[ $c == *"$dir/"* ]] && { f=${f#/proc/}; echo "${f%%/*}"; }
	done
	return 0
}

berthd_pid=
dockerd_pid=
containerd_pid=
docker_ok=
cleanup() {
	local status=$? ids p
	set +e
	trap - INT TERM
	# berth: containers, daemon, then its bridge and firewall rules.
	if [ -n "$berthd_pid" ]; then
		ids=$(berth ps -aq 2>/dev/null)
		# shellcheck disable=SC2086 # a list of ids
		[ -n "$ids" ] && berth rm -f $ids >/dev/null
		stop_pids "$berthd_pid"
		"${daemon[@]}" --teardown-network --log-level warn 2>>"$dir/berthd.log" ||
			note "berthd --teardown-network failed: $(tail -n 3 "$dir/berthd.log")"
	fi
	# Docker: containers, dockerd, then the containerd it started (it stops it itself).
	if [ -n "$dockerd_pid" ]; then
		if [ -S "$dsock" ]; then
			ids=$(docker ps -aq 2>/dev/null)
			# shellcheck disable=SC2086
			[ -n "$ids" ] && docker rm -f $ids >/dev/null
		fi
		stop_pids "$dockerd_pid" "$containerd_pid"
	fi
	# Anything still running from this run's dirs (a shim whose daemon died): by pid.
	for p in $(pids_of_run); do
		note "killing leftover pid $p: $(tr '\0' ' ' 2>/dev/null </proc/"$p"/cmdline)"
		kill -KILL "$p" 2>/dev/null
	done
	ip link del "$docker_bridge" 2>/dev/null
	if ip link show "$berth_bridge" >/dev/null 2>&1; then
		note "$berth_bridge still there after --teardown-network; deleting it"
		ip link del "$berth_bridge"
	fi
	if nft list table inet berth >/dev/null 2>&1; then
		if nft -a list table inet berth | grep -q "berth:net=$berth_bridge\""; then
			note "nft rules tagged berth:net=$berth_bridge left after --teardown-network; deleting them"
			nft -a list table inet berth | awk -v tag="berth:net=$berth_bridge\"" '
				/^\t*chain / { chain = $2 }
				index($0, tag) && /# handle / { print chain, $NF }' |
				while read -r chain handle; do nft delete rule inet berth "$chain" handle "$handle"; done
		fi
		# berthd leaves its (then empty) base chains; the table goes if this run made it.
		if [ -z "$nft_berth_existed" ] && ! nft list table inet berth | grep -q 'berth:'; then
			nft delete table inet berth
		fi
	fi
	# Mounts under the temp dir, deepest first.
	findmnt -rn -o TARGET | grep -F "$dir/" | sort -r | xargs -r -n1 umount -l
	# Cgroups: docker's parent (its containers' cgroups are gone with them), berth's if new.
	find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -depth -type d -name "$docker_cgroup" -exec rmdir {} \; 2>/dev/null
	if [ -z "${existed[/sys/fs/cgroup/memory/berth]:-}" ]; then
		find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -depth -type d -name berth -empty -exec rmdir {} \; 2>/dev/null
	fi
	for p in "${host_paths[@]}"; do
		[ -n "${existed[$p]:-}" ] && continue
		if [ -d "$p" ]; then rmdir "$p" 2>/dev/null; elif [ -e "$p" ]; then rm -f "$p"; fi
	done
	rm -rf -- "$dir"
	host_check
	exit "$status"
}
# What is left on the host that this run could have made; prints one line either way.
host_check() {
	local left=() p others
	for p in "$berth_bridge" "$docker_bridge"; do
		ip link show "$p" >/dev/null 2>&1 && left+=("link $p")
	done
	nft list table inet berth 2>/dev/null | grep -q "berth:net=$berth_bridge\"" && left+=("nft rules of $berth_bridge")
	if [ -z "$nft_berth_existed" ] && nft list table inet berth >/dev/null 2>&1; then
		others=$(nft list table inet berth | grep -o 'berth:net=[^"]*' | sort -u | tr '\n' ' ')
		if [ -n "$others" ]; then
			note "nft table inet berth appeared during the run, with rules of another berthd ($others): not ours, left alone"
		else
			left+=("nft table inet berth")
		fi
	fi
	[ "$(snapshot_iptables)" = "$iptables_before" ] || left+=("iptables rules changed")
	[ "$(cat /proc/sys/net/ipv4/ip_forward)" = "$ip_forward_before" ] || left+=("net.ipv4.ip_forward changed")
	findmnt -rn -o TARGET | grep -q -F "$dir/" && left+=("mounts under $dir")
	[ -e "$dir" ] && left+=("$dir")
	find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name "$docker_cgroup" 2>/dev/null | grep -q . && left+=("cgroup $docker_cgroup")
	for p in "${host_paths[@]}"; do
		[ -z "${existed[$p]:-}" ] && [ -e "$p" ] && left+=("$p")
	done
	[ -n "$(pids_of_run)" ] && left+=("processes: $(pids_of_run | tr '\n' ' ')")
	if [ ${#left[@]} -eq 0 ]; then
		echo "bench-engine: host clean (bridges, nft/iptables, ip_forward, mounts, cgroups, processes, $dir)" >&2
	else
		echo "bench-engine: LEFT ON THE HOST: ${left[*]}" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# kB of /proc/PID/status field $2 (default VmRSS).
rss_kib() { awk -v f="${2:-VmRSS}:" '$1 == f { print $2 }' "/proc/$1/status"; }
# Proportional set size: shared pages (the binary's text, libc) divided among the processes
# that map them, which is what each of many monitors costs.
pss_kib() { awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup"; }
# Nine more `sleep` containers through $1 (berth or docker), then the first shim's PSS.
pss_of_ten() {
	local cli=$1 shim=$2 i
	for i in $(seq 2 10); do
		"$cli" run -d --name "shim-bench-$i" "$image" sleep 60 >/dev/null || die "$cli run -d (shim $i) failed"
	done
	sleep 1
	pss_kib "$shim"
}

# --- berthd
# Both daemons in sessions of their own: a Ctrl-C reaches this script (whose trap then
# removes containers through the daemons and stops them), not the daemons.
setsid "${daemon[@]}" --log-level warn 2>"$dir/berthd.log" &
berthd_pid=$!
for _ in $(seq 200); do
	[ -S "$sock" ] && berth version >/dev/null 2>&1 && break
	kill -0 "$berthd_pid" 2>/dev/null || die "berthd exited: $(tail -n 5 "$dir/berthd.log")"
	sleep 0.05
done
berth version >/dev/null || die "berthd does not answer: $(tail -n 5 "$dir/berthd.log")"
scripts/make-busybox-image.sh "$dir/busybox.tar" "$image" 2>/dev/null
berth load -i "$dir/busybox.tar" >/dev/null || die "berth load -i $dir/busybox.tar failed"

# --- dockerd, when there is one that starts
start_dockerd() {
	command -v "$dockerd_bin" >/dev/null || { note "no dockerd on this host: measuring berth alone"; return 1; }
	command -v containerd >/dev/null || { note "no containerd (dockerd needs it): measuring berth alone"; return 1; }
	[ -x "$docker_bin" ] || { note "no docker client: measuring berth alone"; return 1; }
	ip link add "$docker_bridge" type bridge || return 1
	ip addr add "${docker_subnet%.*/*}.1/${docker_subnet#*/}" dev "$docker_bridge" || return 1
	ip link set "$docker_bridge" up || return 1
	local config=$dir/daemon.json storage=vfs
	# docker < 23 writes its key to /etc/docker/key.json unless told otherwise.
	jq -n --arg key "$dir/docker-key.json" '{"deprecated-key-path": $key}' >"$config"
	mkdir -p "$dir/ovl-probe"/{l,u,w,m}
	if mount -t overlay overlay -o "lowerdir=$dir/ovl-probe/l,upperdir=$dir/ovl-probe/u,workdir=$dir/ovl-probe/w" "$dir/ovl-probe/m" 2>/dev/null; then
		umount "$dir/ovl-probe/m"
		storage=overlay2
	fi
	rm -rf "$dir/ovl-probe"
	setsid "$dockerd_bin" --config-file "$config" --data-root "$dir/docker-data" --exec-root "$dir/docker-exec" \
		--pidfile "$dir/docker.pid" --host "unix://$dsock" \
		--bridge "$docker_bridge" --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
		--userland-proxy=false --storage-driver "$storage" \
		--cgroup-parent "/$docker_cgroup" --exec-opt native.cgroupdriver=cgroupfs \
		--log-level warn >"$dir/dockerd.log" 2>&1 &
	dockerd_pid=$!
	for _ in $(seq 300); do
		[ -S "$dsock" ] && docker version >/dev/null 2>&1 && break
		kill -0 "$dockerd_pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! docker version >/dev/null 2>&1; then
		note "dockerd did not start ($(tail -n 3 "$dir/dockerd.log" | tr '\n' ' ')): measuring berth alone"
		return 1
	fi
	containerd_pid=$(pgrep -P "$dockerd_pid" -x containerd || cat "$dir/docker-exec/containerd/containerd.pid" 2>/dev/null || true)
	containerd_pid=${containerd_pid%%[!0-9]*}
	alive "$containerd_pid" || { note "cannot find dockerd's containerd: measuring berth alone"; return 1; }
	docker load -i "$dir/busybox.tar" >/dev/null || { note "docker load failed: measuring berth alone"; return 1; }
	docker_version=$(docker version -f '{{.Server.Version}}')
	containerd_version=$(containerd --version | awk '{ print $3 }')
}
if start_dockerd; then docker_ok=1; fi

# --- one plain run of each command: a failure is an error, not a benchmark.
berth_bridge_cmd="$bin/berth -H unix://$sock run --rm $image /bin/true"
berth_none_cmd="$bin/berth -H unix://$sock run --rm --network none $image /bin/true"
docker_bridge_cmd="$docker_bin -H unix://$dsock run --rm $image /bin/true"
docker_none_cmd="$docker_bin -H unix://$dsock run --rm --network none $image /bin/true"
cmds=(berth-bridge berth-none)
[ -n "$docker_ok" ] && cmds+=(docker-bridge docker-none)
declare -A cmd_of=([berth-bridge]=$berth_bridge_cmd [berth-none]=$berth_none_cmd
	[docker-bridge]=$docker_bridge_cmd [docker-none]=$docker_none_cmd)
for name in "${cmds[@]}"; do
	# shellcheck disable=SC2086 # split like hyperfine -N splits it
	if ! ${cmd_of[$name]} </dev/null >"$dir/check.out" 2>&1; then
		cat "$dir/check.out" >&2
		die "$name failed: ${cmd_of[$name]}"
	fi
	[ -s "$dir/check.out" ] && { cat "$dir/check.out" >&2; die "$name printed output: ${cmd_of[$name]}"; }
done
[ -z "$(berth ps -aq)" ] || die "berth run --rm left containers: $(berth ps -a)"

# --- idle RSS, fresh (image loaded, one run done, nothing running), after $idle_secs s
# without requests: berthd unloads libnftables after 10 s idle (its firewall.libnftables
# module says why), and an idle daemon is what this row is about.
sleep "$idle_secs"
berthd_fresh=$(rss_kib "$berthd_pid")
[ -n "$docker_ok" ] && docker_fresh=$(($(rss_kib "$dockerd_pid") + $(rss_kib "$containerd_pid")))

# --- run --rm /bin/true, all variants in one hyperfine run
mkdir -p target/bench
json=target/bench/engine-hyperfine.json
hargs=()
for name in "${cmds[@]}"; do hargs+=(--command-name "$name" "${cmd_of[$name]}"); done
hyperfine -N --warmup 3 --runs "$runs" --export-json "$json" "${hargs[@]}"

# --- RSS right after the runs, and idle again
sleep 1
berthd_busy=$(rss_kib "$berthd_pid")
[ -n "$docker_ok" ] && docker_busy=$(($(rss_kib "$dockerd_pid") + $(rss_kib "$containerd_pid")))
sleep $((idle_secs - 1))
berthd_idle=$(rss_kib "$berthd_pid")
if [ -n "$docker_ok" ]; then
	dockerd_idle=$(rss_kib "$dockerd_pid")
	containerd_idle=$(rss_kib "$containerd_pid")
	docker_idle=$((dockerd_idle + containerd_idle))
fi

# --- the per-container monitor, one `sleep` container each
berth run -d --name shim-bench "$image" sleep 60 >/dev/null || die "berth run -d $image sleep 60 failed"
init=$(berth inspect -f '{{.State.Pid}}' shim-bench)
[[ $init =~ ^[1-9][0-9]*$ ]] || die "berth inspect -f '{{.State.Pid}}' shim-bench gave '$init'"
berth_shim=$(awk '/^PPid:/ { print $2 }' "/proc/$init/status")
[ "$(cat "/proc/$berth_shim/comm")" = berth-shim ] ||
	die "the parent of container init $init is $(cat "/proc/$berth_shim/comm") ($berth_shim), not berth-shim"
sleep 1
berth_shim_kib=$(rss_kib "$berth_shim")
berth_shim_anon=$(rss_kib "$berth_shim" RssAnon)
berth_shim_pss=$(pss_of_ten berth "$berth_shim")
if [ -n "$docker_ok" ]; then
	docker run -d --name shim-bench "$image" sleep 60 >/dev/null || die "docker run -d $image sleep 60 failed"
	init=$(docker inspect -f '{{.State.Pid}}' shim-bench)
	docker_shim=$(awk '/^PPid:/ { print $2 }' "/proc/$init/status")
	docker_shim_name=$(basename "$(readlink "/proc/$docker_shim/exe")")
	sleep 1
	docker_shim_kib=$(rss_kib "$docker_shim")
	docker_shim_anon=$(rss_kib "$docker_shim" RssAnon)
	docker_shim_pss=$(pss_of_ten docker "$docker_shim")
fi

load=$(cut -d' ' -f1-3 /proc/loadavg)
# --- the table
stat_ms() { jq -r --arg n "$1" --arg f "$2" '.results[] | select(.command == $n) | .[$f] * 1000' "$json"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo
if [ -n "$docker_ok" ]; then
	echo "== berth vs docker $docker_version (containerd $containerd_version), image $image, $runs runs each"
else
	echo "== berth (no docker to compare with), image $image, $runs runs each"
fi
echo "   ($(nproc) CPUs, load average $load at the end: other work on the host shows up as noise)"
printf '%-34s %18s %18s %9s   %s\n' "" berth docker docker/berth target
row_ms() {
	local label=$1 b=$2 d=$3 target=$4 bm bs dm ds
	bm=$(stat_ms "$b" mean) bs=$(stat_ms "$b" stddev)
	if [ -n "$docker_ok" ]; then
		dm=$(stat_ms "$d" mean) ds=$(stat_ms "$d" stddev)
		awk -v l="$label" -v bm="$bm" -v bs="$bs" -v dm="$dm" -v ds="$ds" -v t="$target" 'BEGIN {
			printf "%-34s %8.1f ± %4.1f ms %8.1f ± %4.1f ms %8.1fx   %s\n", l, bm, bs, dm, ds, dm / bm, t }'
	else
		awk -v l="$label" -v bm="$bm" -v bs="$bs" -v t="$target" 'BEGIN {
			printf "%-34s %8.1f ± %4.1f ms %18s %9s   %s\n", l, bm, bs, "-", "-", t }'
	fi
}
row_kib() {
	local label=$1 b=$2 d=$3 target=$4
	if [ -n "$docker_ok" ]; then
		awk -v l="$label" -v b="$b" -v d="$d" -v t="$target" 'BEGIN {
			printf "%-34s %14.1f MiB %14.1f MiB %8.1fx   %s\n", l, b / 1024, d / 1024, d / b, t }'
	else
		awk -v l="$label" -v b="$b" -v t="$target" 'BEGIN {
			printf "%-34s %14.1f MiB %18s %9s   %s\n", l, b / 1024, "-", "-", t }'
	fi
}
row_ms "run --rm /bin/true, bridge" berth-bridge docker-bridge "docker/berth >= 8x"
row_ms "run --rm /bin/true, --network none" berth-none docker-none "docker/berth >= 8x"
row_kib "daemon idle RSS, fresh" "$berthd_fresh" "${docker_fresh:-}" "berthd < 15 MB"
row_kib "daemon RSS, 1 s after the runs" "$berthd_busy" "${docker_busy:-}" ""
row_kib "daemon idle RSS, after the runs" "$berthd_idle" "${docker_idle:-}" "berthd < 15 MB"
row_kib "shim RSS, one running container" "$berth_shim_kib" "${docker_shim_kib:-}" "berth-shim < 2 MB"
row_kib "  of which anonymous (RssAnon)" "$berth_shim_anon" "${docker_shim_anon:-}" ""
row_kib "shim PSS, ten running containers" "$berth_shim_pss" "${docker_shim_pss:-}" ""
echo "(idle: after ${idle_secs} s without requests)"
echo "(mean ± stddev of hyperfine -N; RSS = VmRSS: berthd vs dockerd + containerd$(
	[ -n "$docker_ok" ] && printf ' (%s + %s after the runs)' "$(mib "$dockerd_idle")" "$(mib "$containerd_idle")"
), berth-shim vs ${docker_shim_name:-containerd-shim-runc-v2})"
echo "(berth-shim measured: $shim, $(
	grep -q 'program interpreter' <(readelf -l "$shim" 2>/dev/null) && echo dynamically linked || echo static
))"
[ -n "$docker_ok" ] || echo "(docker: not measured, see above)"
