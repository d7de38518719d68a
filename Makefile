# The two commands of the README. Each builds .venv first when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.genpipe-installed
COMPILED := $(VENV)/.genpipe-compiled
# Without a GPU, torch is pinned to the CPU build (a plain `torch` would pull a multi-GB CUDA
# build). With a GPU, the range in pyproject.toml takes the CUDA build.
CPU_TORCH ?= torch==2.13.0

# pytest-xdist runs the tests side by side, each worker with its own Ray and cores/workers torch
# threads (tests/conftest.py). On 2 cores the suite is CPU-bound once two run at a time
# (benchmarks/RESULTS.md, "The test suite"); a bigger machine can ask for more (TEST_WORKERS=4).
TEST_WORKERS ?= 2
# A worker that crashes fails its test and ends the run: pytest-xdist 3.8 replacing a crashed
# worker under --dist loadgroup can wait forever (pytest-xdist#1323, #1327; a CI run hung so for
# an hour). tests/crash_report.py adds what the dead worker left to that test's report.
XDIST := --dist loadgroup --max-worker-restart=0

.PHONY: quickstart test test-fast lint lint-style lint-layers lint-types bench clean

# pip compiles every module it installs on one core; $(COMPILED) does the same on every core
# afterwards (~25 s less on 2 cores), beside the type check. The bytecode matters: processes that
# may not write it (PYTHONDONTWRITEBYTECODE, as CI sets) would otherwise compile torch, Ray and
# MLflow each time.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: torch comes from the range in pyproject.toml"; \
	else \
		$(BIN)/python -m pip install --quiet --no-compile "$(CPU_TORCH)"; \
	fi
	$(BIN)/python -m pip install --quiet --no-compile -e '.[test]'
	touch $(STAMP)

# (A file some package ships that does not compile is skipped, as pip skips it.)
$(COMPILED): $(STAMP)
	$(BIN)/python -m compileall -qq -j0 $(VENV)/lib || true
	touch $(COMPILED)

quickstart: $(COMPILED)
	$(BIN)/genpipe run quickstart

# The checks first, then the tests: style, the layers of docs/architecture.md and the types, side by side
# with the bytecode (the type check is one core: ~30 s less than one after the other).
test: $(STAMP)
	$(MAKE) --no-print-directory -j2 lint $(COMPILED)
	$(BIN)/pytest -n $(TEST_WORKERS) $(XDIST)

# The inner loop: style, layers, types and the unit tests (no Ray, no servers), in under 3 minutes.
test-fast: $(STAMP)
	$(MAKE) --no-print-directory -j2 lint $(COMPILED)
	$(BIN)/pytest -n 2 $(XDIST) -m "not slow"

lint: lint-style lint-layers lint-types

lint-style: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint-layers: $(STAMP)
	$(BIN)/lint-imports

lint-types: $(STAMP)
	$(BIN)/mypy

bench: $(COMPILED)
	$(BIN)/python benchmarks/quickstart_bench.py --record

clean:
	rm -rf $(VENV) .genpipe .pytest_cache .ruff_cache
