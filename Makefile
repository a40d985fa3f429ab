# Everything a fresh machine needs is installed by these targets themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/supernode/v1/*.proto protos/supernode/internal/v1/*.proto)
GEN_STAMP := client_sdk/protocol/v1/.generated
LINTED := protos supernode client_sdk tests benchmarks examples

.PHONY: all run test test-workers test-interop test-quick lint typecheck gen bench bench-quick bench-scale clean

all: gen

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

# The gRPC code is generated, never committed (see .gitignore): public protos into
# client_sdk/protocol/v1, internal ones into supernode/internal/v1, by the same hook that
# builds the wheels (the editable install already ran it; this re-runs it when a proto changes).
$(GEN_STAMP): $(PROTOS) protos/build_hook.py $(STAMP)
	$(BIN)/python protos/build_hook.py >/dev/null
	touch $@

gen: $(GEN_STAMP)

## Start one supernode with an embedded RocksDB in ./data (no other setup): plaintext on
## loopback, said explicitly (a node never serves plaintext by default); with TLS instead:
## make run RUN_TLS="--tls-cert-file certs/node.pem --tls-key-file certs/node-key.pem".
## A SUPERNODE_DATA_DIR or SUPERNODE_TLS_CERT_FILE in the environment is used, not
## overridden (a flag would win over it).
RUN_TLS ?= $(if $(SUPERNODE_TLS_CERT_FILE),,--tls-plaintext)
RUN_DATA_DIR ?= $(if $(SUPERNODE_DATA_DIR),,--data-dir data)
run: gen
	$(BIN)/supernode serve $(RUN_TLS) $(RUN_DATA_DIR) $(RUN_ARGS)

## The whole test suite (what .ci/run runs), then the integration suite against --workers nodes.
test: gen
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-workers

## The integration tests again, their nodes serving with --workers 2 (tests/integration/conftest.py).
test-workers: gen
	SUPERNODE_TEST_WORKERS=2 timeout 1200 $(BIN)/pytest -q tests/integration

## The Node.js client built from the protos (interop/node) against real nodes; part of `test`.
test-interop: gen
	$(BIN)/pytest -q tests/interop

lint: gen
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: gen
	$(BIN)/mypy

## Lookup benchmarks against a gRPC echo ceiling, etcd and Redis (README "Benchmarks").
## Full run: 1M users, ~40 min. Extra options: make bench BENCH_ARGS="--users 10000".
bench: gen
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.scenarios
	$(BIN)/python -m benchmarks.p2p_throughput

bench-quick: gen
	$(BIN)/python -m benchmarks.run --quick $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.scenarios --quick
	$(BIN)/python -m benchmarks.p2p_throughput --mib 1

## Lookup latency at 10k vs 10M users, same rates: the p99 ratio against its 1.2x target.
## The 10M data set takes ~10 min to generate (once) and ~15 min to load. Seconds instead:
## make bench-scale BENCH_ARGS=--quick; other sizes: BENCH_ARGS="--large 1000000".
bench-scale: gen
	$(BIN)/python -m benchmarks.scale $(BENCH_ARGS)

clean:
	rm -rf $(VENV) client_sdk/protocol/v1/*_pb2*.py* client_sdk/protocol/v1/.generated \
		supernode/internal/v1/*_pb2*.py* .pytest_cache .mypy_cache interop/node/node_modules
