# berth: build, test, demo, benchmarks. Targets run as root on Debian 12.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# Root shells often lack rustup's bin dir in PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
# Steps of `test` and `demo` depend on each other's order (deps before lint, build before run).
.NOTPARALLEL:

CARGO ?= cargo
RUNTIME_BIN := target/release/berth-runtime
# The shim berthd runs per container: static musl, from scripts/build-shim.sh.
SHIM_BIN := $(CURDIR)/target/shim/berth-shim
CONFORMANCE := target/release/oci-conformance
# The conformance suite's in-container helper, static (runtime-spec-tests/src/probe_build.rs).
PROBE_TARGET := x86_64-unknown-linux-gnu
OCI_PROBE := target/oci-probe/$(PROBE_TARGET)/release/oci-probe
RUNC ?= /usr/sbin/runc
DEMO_ROOT := /run/berth-demo
DEMO_ID := berth-demo

.PHONY: all build deps demo demo-runtime lint test conformance oci-probe bench-runtime bench-engine clean install

all: build

build:
	$(CARGO) build --release --workspace
	scripts/build-shim.sh

deps:
	scripts/install-deps.sh

# Binaries to $(PREFIX)/bin, systemd units to /etc/systemd/system, group `berth`.
# DESTDIR=DIR stages the files there instead (for packages: no group, no daemon-reload).
PREFIX ?= /usr/local
DESTDIR ?=
install: build
	PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" scripts/install.sh

# berthd with its own roots and bridge, an image made from busybox-static, a web server
# behind a published port, `berth ps`; scripts/demo.sh removes everything it made.
demo: deps build
	scripts/demo.sh

# The runtime alone on a bundle: what `berth-runtime run` does without the daemon.
demo-runtime: deps build
	dir=$$(mktemp -d /tmp/berth-demo.XXXXXX); \
	trap '$(RUNTIME_BIN) --root $(DEMO_ROOT) delete --force $(DEMO_ID) >/dev/null 2>&1 || true; rmdir $(DEMO_ROOT) 2>/dev/null || true; rm -rf "$$dir"' EXIT; \
	RUNTIME=$(RUNTIME_BIN) BUNDLE_HOSTNAME=$(DEMO_ID) scripts/make-busybox-bundle.sh "$$dir/bundle" \
		sh -c 'echo hello from a berth container; hostname; id; ps; cat /proc/self/cgroup | head -3'; \
	$(RUNTIME_BIN) --root $(DEMO_ROOT) run --bundle "$$dir/bundle" $(DEMO_ID)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The daemon tests run berthd with the shim users get (BERTH_TEST_SHIM: the static build).
test: deps lint
	$(CARGO) build --workspace --release
	scripts/build-shim.sh
	BERTH_TEST_SHIM=$(SHIM_BIN) $(CARGO) test --workspace --release -- --test-threads=4
	$(CONFORMANCE) --runtime $(RUNTIME_BIN)

# Its own target dir, so the crt-static flags never reach the workspace's normal build.
oci-probe:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p runtime-spec-tests \
		--bin oci-probe --target $(PROBE_TARGET) --target-dir target/oci-probe

# The OCI conformance suite against berth-runtime (this gates), then against Debian's runc for
# comparison (never gates: runc 1.1's own deviations and this host's limits are annotated).
conformance: deps build oci-probe
	@dir=$$(mktemp -d /tmp/berth-conformance.XXXXXX); trap 'rm -rf "$$dir"' EXIT; status=0; \
	$(CONFORMANCE) --runtime $(RUNTIME_BIN) --probe $(OCI_PROBE) | tee "$$dir/berth.tap" || status=$$?; \
	$(CONFORMANCE) --runtime $(RUNC) --probe $(OCI_PROBE) | tee "$$dir/runc.tap" || true; \
	echo; \
	echo "berth-runtime: $$(tail -n 1 "$$dir/berth.tap")"; \
	echo "runc:          $$(tail -n 1 "$$dir/runc.tap")"; \
	exit $$status

bench-runtime: deps build
	scripts/bench-runtime.sh

# berthd + berth against dockerd + docker, each private to the run: `run --rm /bin/true`
# (bridge and --network none), daemon idle RSS, shim RSS per container
# (scripts/bench-engine.sh; BENCH_RUNS=N, default 30).
bench-engine: deps build
	scripts/bench-engine.sh

clean:
	$(CARGO) clean

# Cold pull of a generated multi-layer image from a local registry: berth vs skopeo.
.PHONY: bench-image
bench-image: deps
	$(CARGO) build --release -p berth-image --bin berth-image-pull
	scripts/bench-image.sh

# iperf3 through a published port on 127.0.0.1 vs straight to the container, and the
# cost of one container's network setup (scripts/bench-net.sh).
# Each cargo-fuzz target (fuzz/: layer unpacker, reference parser, API JSON bodies) for
# FUZZ_SECONDS (default 60); fails on a crash. Installs nightly and cargo-fuzz if missing.
.PHONY: fuzz
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

.PHONY: bench-net
bench-net: deps build
	scripts/bench-net.sh
