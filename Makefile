# Two commands on a fresh machine: `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint typecheck clean

$(BIN)/flywheel: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev: $(BIN)/flywheel
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/flywheel
	$(BIN)/flywheel demo $(DEMO_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy

# --dist load: the fuzz test's cases (one per API operation) share one node id, which the
# grouping modes collapse into a single case.
test: lint typecheck
	$(BIN)/pytest -n 2 --dist load $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
