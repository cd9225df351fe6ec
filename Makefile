# berth: build, test, demo, benchmarks. Targets run as root on Debian 12.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# Root shells often lack rustup's bin dir in PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
# Steps of `test` and `demo` depend on each other's order (deps before lint, build before run).
.NOTPARALLEL:

CARGO ?= cargo
RUNTIME_BIN := target/release/berth-runtime
DEMO_ROOT := /run/berth-demo
DEMO_ID := berth-demo

.PHONY: all build deps demo lint test bench-runtime clean

all: build

build:
	$(CARGO) build --release --workspace

deps:
	scripts/install-deps.sh

# The bundle lives in a temp dir; the trap removes it and the container whatever happens.
demo: deps build
	dir=$$(mktemp -d /tmp/berth-demo.XXXXXX); \
	trap '$(RUNTIME_BIN) --root $(DEMO_ROOT) delete --force $(DEMO_ID) >/dev/null 2>&1 || true; rmdir $(DEMO_ROOT) 2>/dev/null || true; rm -rf "$$dir"' EXIT; \
	RUNTIME=$(RUNTIME_BIN) BUNDLE_HOSTNAME=$(DEMO_ID) scripts/make-busybox-bundle.sh "$$dir/bundle" \
		sh -c 'echo hello from a berth container; hostname; id; ps; cat /proc/self/cgroup | head -3'; \
	$(RUNTIME_BIN) --root $(DEMO_ROOT) run --bundle "$$dir/bundle" $(DEMO_ID)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps lint
	$(CARGO) build --workspace --release
	$(CARGO) test --workspace --release -- --test-threads=4

bench-runtime: deps build
	scripts/bench-runtime.sh

clean:
	$(CARGO) clean
