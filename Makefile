# Everything a fresh machine needs is installed by these targets themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/supernode/v1/*.proto)
GENERATED := $(patsubst protos/%.proto,%_pb2.py,$(PROTOS))

.PHONY: all run test test-quick lint typecheck gen bench bench-quick bench-scale clean

all: gen

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

# The gRPC code is generated, never committed (see .gitignore).
supernode/v1/%_pb2.py: protos/supernode/v1/%.proto $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. \
		--grpc_python_out=. $<

gen: $(GENERATED)

## Start one supernode with an embedded RocksDB in ./data (no other setup).
run: gen
	$(BIN)/supernode serve --data-dir data $(RUN_ARGS)

## The whole test suite (what .ci/run runs).
test: gen
	$(BIN)/ruff check supernode client_sdk tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: gen
	$(BIN)/ruff check supernode client_sdk tests benchmarks examples
	$(BIN)/ruff format --check supernode client_sdk tests benchmarks examples

typecheck: gen
	$(BIN)/mypy

## Lookup benchmarks against a gRPC echo ceiling, etcd and Redis (README "Benchmarks").
## Full run: 1M users, ~40 min. Extra options: make bench BENCH_ARGS="--users 10000".
bench: gen
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.scenarios

bench-quick: gen
	$(BIN)/python -m benchmarks.run --quick $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.scenarios --quick

## Lookup latency at 10k vs 10M users, same rates: the p99 ratio against its 1.2x target.
## The 10M data set takes ~10 min to generate (once) and ~15 min to load. Seconds instead:
## make bench-scale BENCH_ARGS=--quick; other sizes: BENCH_ARGS="--large 1000000".
bench-scale: gen
	$(BIN)/python -m benchmarks.scale $(BENCH_ARGS)

clean:
	rm -rf $(VENV) supernode/v1/*_pb2*.py supernode/v1/*_pb2*.pyi .pytest_cache .mypy_cache
