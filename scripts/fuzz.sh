#!/bin/bash
# Runs each cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 60) and fails if any of them
# crashes (panic, failed check, sanitizer report, timeout or out-of-memory). Crash inputs are
# left in fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/ (both ignored by git).
#
#   FUZZ_SECONDS=N         time per target (libFuzzer -max_total_time)
#   FUZZ_TARGETS="a b"     which targets (default: all three)
#   FUZZ_TARGET_DIR=DIR    cargo's target dir (default fuzz/target)
#
# cargo fuzz needs a nightly toolchain and the cargo-fuzz command: both are installed here
# when missing (rustup toolchain install nightly, cargo install cargo-fuzz), since a clean
# machine may have only stable.
set -euo pipefail

export PATH="${HOME:-/root}/.cargo/bin:$PATH"
seconds=${FUZZ_SECONDS:-60}
read -r -a targets <<<"${FUZZ_TARGETS:-layer_unpack reference_parse api_json}"
fuzz_dir="$(cd "$(dirname "$0")/../fuzz" && pwd)"
target_dir=${FUZZ_TARGET_DIR:-$fuzz_dir/target}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
	echo "fuzz: installing the nightly toolchain (cargo fuzz needs it)"
	rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz: installing cargo-fuzz"
	cargo install cargo-fuzz --locked
fi

cd "$fuzz_dir"

# Seeds: the checked-in ones, plus layer tars made here. layer_unpack's input is an
# `arbitrary` enum; four zero bytes pick its Raw variant, the rest is the layer blob.
seed_layers() {
	local out=$1 tree
	tree=$(mktemp -d)
	trap 'rm -rf "$tree"' RETURN
	mkdir -p "$tree/etc" "$tree/opaque" "$tree/bin"
	echo hello >"$tree/etc/hello"
	ln -s hello "$tree/etc/link"
	ln "$tree/etc/hello" "$tree/etc/hard"
	: >"$tree/.wh.gone"
	: >"$tree/opaque/.wh..wh..opq"
	mkfifo "$tree/bin/fifo"
	chmod 4755 "$tree/etc/hello"
	local plain
	plain=$(mktemp)
	tar --format=gnu -C "$tree" -cf "$plain" .
	{ printf '\0\0\0\0'; cat "$plain"; } >"$out/plain"
	{ printf '\0\0\0\0'; gzip -9c "$plain"; } >"$out/gzip"
	# Layers that try to leave their directory: `..`, an absolute name, and a symlink
	# followed by a write through it.
	local evil
	evil=$(mktemp -d)
	ln -s ../outside "$evil/up"
	tar --format=gnu -C "$evil" -cf "$plain" up
	printf 'x' >"$evil/x"
	tar --format=gnu -C "$evil" --transform 's,^x$,up/x,' -rf "$plain" x
	tar --format=gnu -C "$evil" --transform 's,^x$,../canary,' -rf "$plain" x 2>/dev/null
	tar --format=gnu -C "$evil" -P --transform 's,^x$,/tmp/berth-fuzz-abs,' -rf "$plain" x 2>/dev/null
	{ printf '\0\0\0\0'; cat "$plain"; } >"$out/escapes"
	rm -rf "$evil" "$plain"
}

status=0
summary=()
for t in "${targets[@]}"; do
	corpus="corpus/$t"
	mkdir -p "$corpus" "artifacts/$t"
	if [ -d "seeds/$t" ]; then
		cp -n "seeds/$t"/* "$corpus"/
	fi
	if [ "$t" = layer_unpack ]; then
		seed_layers "$corpus"
	fi
	log=$(mktemp)
	echo "fuzz: $t for ${seconds}s"
	# -timeout: one input taking 10 s is a hang; -rss_limit_mb: a blow-up is a crash.
	if cargo +nightly fuzz run -O --target-dir "$target_dir" "$t" "$corpus" -- \
		-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		2>&1 | tee "$log" | grep -E '^(#[0-9]+.*(DONE|INITED)|==[0-9]+==|SUMMARY|thread .* panicked|Done)' ; then
		:
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	corpus_n=$(find "$corpus" -type f | wc -l)
	if grep -qE '^==[0-9]+== ?ERROR|^SUMMARY: libFuzzer|panicked at|deadly signal' "$log" ||
		! grep -q '^Done [0-9]* runs' "$log"; then
		status=1
		summary+=("$t: CRASH after ${runs:-?} runs; see fuzz/artifacts/$t/ and $log")
		grep -E 'panicked at|==[0-9]+==|Test unit written' "$log" | head -n 8 >&2 || true
	else
		summary+=("$t: ${runs:-?} runs in ${seconds}s, ${speed:-?} exec/s, corpus $corpus_n, no crash")
		rm -f "$log"
	fi
done

echo
printf 'fuzz: %s\n' "${summary[@]}"
exit "$status"
