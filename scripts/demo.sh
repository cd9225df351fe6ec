#!/bin/bash
# make demo: a berthd of its own (data root, exec root, socket and bridge in a temp dir),
# an image the project makes from busybox-static loaded into it, a web server run with a
# published port, the page fetched through that port, and `berth ps`. Everything it made
# (containers, mounts, bridge, firewall rules, files) is removed on exit, also on failure.
set -euo pipefail

bin=${BIN_DIR:-target/release}
# The static shim of scripts/build-shim.sh (what `make install` installs), else the plain one.
shim=${SHIM:-target/shim/berth-shim}
[ -x "$shim" ] || shim=$bin/berth-shim
dir=$(mktemp -d /tmp/berth-demo.XXXXXX)
sock=$dir/berth.sock
bridge=bdemo0
subnet=${DEMO_SUBNET:-10.213.77.0/24}
daemon=(
	"$bin/berthd" --host "unix://$sock" --data-root "$dir/data" --exec-root "$dir/exec"
	--bridge "$bridge" --bridge-subnet "$subnet" --shim-path "$shim"
)
berth() { "$bin/berth" -H "unix://$sock" "$@"; }

cleanup() {
	set +e
	if [ -S "$sock" ]; then
		ids=$(berth ps -aq 2>/dev/null)
		[ -n "$ids" ] && berth rm -f $ids >/dev/null
	fi
	if [ -n "${pid:-}" ]; then
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	"${daemon[@]}" --teardown-network --log-level warn 2>/dev/null
	findmnt -rn -o TARGET | grep "^$dir" | sort -r | xargs -r -n1 umount -l
	rm -rf "$dir"
}
[ -n "${DEMO_KEEP:-}" ] || trap cleanup EXIT

echo "== berthd on $sock (bridge $bridge, $subnet)"
"${daemon[@]}" --log-level warn 2>"$dir/berthd.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$dir/berthd.log"; exit 1; }

echo "== an image made from the host's busybox-static"
scripts/make-busybox-image.sh "$dir/busybox.tar" berth-demo/busybox:latest >/dev/null
berth load -i "$dir/busybox.tar"
berth images

echo "== a web server with a published port"
berth run -d -p 127.0.0.1:8088:80 --name web berth-demo/busybox \
	sh -c 'mkdir -p /www && echo "hello from a berth container" >/www/index.html && exec httpd -f -p 80 -h /www'
berth ps
echo "== GET http://127.0.0.1:8088/"
# bash's /dev/tcp: no HTTP client needed on the host.
get() {
	exec 3<>/dev/tcp/127.0.0.1/8088 || return 1
	printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
	sed '1,/^\r$/d' <&3
	exec 3<&-
}
page=
for _ in $(seq 50); do
	page=$(get 2>/dev/null) && [ -n "$page" ] && break
	sleep 0.1
done
echo "$page"
[ "$page" = "hello from a berth container" ]

echo "== one-off container, its output and exit code"
berth run --rm berth-demo/busybox sh -c 'echo "hostname: $(hostname)"; exit 3' || echo "exit code: $?"

echo "== stop, ps -a, rm"
berth stop -t 1 web
berth ps -a
berth rm web
echo "demo done"
