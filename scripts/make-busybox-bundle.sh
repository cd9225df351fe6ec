#!/bin/bash
# Make an OCI bundle at DIR whose rootfs is the host's static busybox.
#
#   scripts/make-busybox-bundle.sh DIR [ARGS...]     (ARGS default: sh)
#
# Environment:
#   RUNTIME          if set and `$RUNTIME spec --bundle DIR` works, its spec is the base;
#                    otherwise runc's default spec (written out below) is.
#   BUNDLE_HOSTNAME  if set, becomes the spec's hostname and rootfs/etc/hostname.
#
# DIR is replaced if it exists. Needs /bin/busybox (busybox-static) and jq.
set -euo pipefail

if [ "$#" -lt 1 ] || [ -z "$1" ]; then
	echo "usage: $0 DIR [ARGS...]" >&2
	exit 2
fi
dir=$1
shift
if [ "$#" -eq 0 ]; then
	set -- sh
fi

busybox=/bin/busybox
if [ ! -x "$busybox" ]; then
	echo "$0: $busybox not found; install busybox-static (scripts/install-deps.sh)" >&2
	exit 1
fi
# A dynamically linked busybox (the `busybox` package) would need the host's libc in the rootfs.
if ldd "$busybox" >/dev/null 2>&1; then
	echo "$0: $busybox is dynamically linked; install busybox-static" >&2
	exit 1
fi
command -v jq >/dev/null || { echo "$0: jq not found (scripts/install-deps.sh)" >&2; exit 1; }

case $(realpath -m -- "$dir") in
/ | /bin | /etc | /usr | /var | /tmp | /root | /home)
	echo "$0: refusing to replace $dir" >&2
	exit 1
	;;
esac

rm -rf -- "$dir"
mkdir -p -- "$dir"
rootfs=$dir/rootfs
hostname=${BUNDLE_HOSTNAME:-berth}

mkdir -p "$rootfs"/{bin,sbin,etc,dev,proc,sys,tmp,root}
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
cp "$busybox" "$rootfs/bin/busybox"
chmod 0755 "$rootfs/bin/busybox"
# What `busybox --install -s` would do, but everything in /bin (on PATH either way).
for applet in $("$busybox" --list); do
	[ "$applet" = busybox ] && continue
	ln -sf busybox "$rootfs/bin/$applet"
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
echo "$hostname" >"$rootfs/etc/hostname"

config=$dir/config.json
if [ -n "${RUNTIME:-}" ] && "$RUNTIME" spec --bundle "$dir" >/dev/null 2>&1 && [ -s "$config" ] &&
	jq -e '.process and .root' "$config" >/dev/null 2>&1; then
	echo "make-busybox-bundle: spec from $RUNTIME" >&2
else
	rm -f -- "$config"
	# runc's default spec (libcontainer/specconv/example.go), terminal already off.
	cat >"$config" <<'EOF'
{
	"ociVersion": "1.0.2-dev",
	"process": {
		"terminal": false,
		"user": { "uid": 0, "gid": 0 },
		"args": [ "sh" ],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
			"effective": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
			"permitted": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ]
		},
		"rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
		"noNewPrivileges": true
	},
	"root": { "path": "rootfs", "readonly": true },
	"hostname": "runc",
	"mounts": [
		{ "destination": "/proc", "type": "proc", "source": "proc" },
		{ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
		  "options": [ "nosuid", "strictatime", "mode=755", "size=65536k" ] },
		{ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
		  "options": [ "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5" ] },
		{ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
		  "options": [ "nosuid", "noexec", "nodev", "mode=1777", "size=65536k" ] },
		{ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
		  "options": [ "nosuid", "noexec", "nodev" ] },
		{ "destination": "/sys", "type": "sysfs", "source": "sysfs",
		  "options": [ "nosuid", "noexec", "nodev", "ro" ] },
		{ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
		  "options": [ "nosuid", "noexec", "nodev", "relatime", "ro" ] }
	],
	"linux": {
		"resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
		"namespaces": [
			{ "type": "pid" },
			{ "type": "network" },
			{ "type": "ipc" },
			{ "type": "uts" },
			{ "type": "mount" }
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi",
			"/sys/devices/virtual/tpm"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
}
EOF
	# runc adds a cgroup namespace only on a unified (v2) hierarchy.
	if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
		jq '.linux.namespaces += [{"type": "cgroup"}]' "$config" >"$config.tmp"
		mv "$config.tmp" "$config"
	fi
fi

# Each arg goes in as a named --arg: positional `--args` would let jq parse a "-c" as its own.
jq_args=(--arg hostname "$hostname" --argjson argc "$#")
i=0
for arg in "$@"; do
	jq_args+=(--arg "a$i" "$arg")
	i=$((i + 1))
done
# shellcheck disable=SC2016 # jq variables, not shell ones
filter='.process.terminal = false | .process.args = [range(0; $argc) as $i | $ARGS.named["a\($i)"]]'
if [ -n "${BUNDLE_HOSTNAME:-}" ]; then
	# shellcheck disable=SC2016
	filter+=' | .hostname = $hostname'
fi
jq "${jq_args[@]}" "$filter" "$config" >"$config.tmp"
mv "$config.tmp" "$config"
echo "make-busybox-bundle: $dir ($(jq -c .process.args "$config"))" >&2
