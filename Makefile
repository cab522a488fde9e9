# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast fuzz lint format migrate clean bench bench-needs-wrk docs openapi

# The stamp files re-run pip whenever a requirements file changes.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

.env:
	$(PYTHON) scripts/make_env.py

migrate: $(VENV)/.installed .env
	$(BIN)/alembic upgrade head

run: migrate
	LOG_FORMAT=console $(BIN)/python -m app serve --host $(HOST) --port $(PORT)

# openapi-python-client (for the generated-client test) pins an older typer than the app does,
# so it gets a virtualenv of its own.
$(VENV)/codegen/.installed: requirements-codegen.txt | $(BIN)/python
	$(PYTHON) -m venv $(VENV)/codegen
	$(VENV)/codegen/bin/pip install -q -r requirements-codegen.txt
	touch $@

# One pytest process per core (pytest-xdist); each has its own PostgreSQL database.
# Then the tests that measure latencies, alone (exit status 5: PYTEST_ARGS selected none).
test: $(VENV)/.installed-dev $(VENV)/codegen/.installed
	$(BIN)/pytest -n auto -m "not timing" $(PYTEST_ARGS)
	$(BIN)/pytest -m timing $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The quick part alone: no server processes, no concurrency trials.
test-fast: $(VENV)/.installed-dev
	$(BIN)/pytest -n auto -m "not slow and not ops" $(PYTEST_ARGS)

# Rewrites openapi/v1.json from the live app; refuses a change that breaks it (a new version's job).
openapi: $(VENV)/.installed
	$(BIN)/python scripts/openapi_file.py

# Property-based fuzzing of every operation (schemathesis); `make test` runs it with 8 examples.
fuzz: $(VENV)/.installed-dev
	FUZZ_EXAMPLES=100 $(BIN)/pytest tests/test_fuzz.py $(PYTEST_ARGS)

# Ours against the seed baseline on the local PostgreSQL (BENCH_DSN, default postgres@127.0.0.1);
# writes bench/results/. Needs wrk (apt-get install -y wrk). More options: BENCH_ARGS=--million.
# The seed app is not in the repository: without its folder (SEED_APP) ours is measured alone.
SEED_APP ?= ../shared/anchors/seed_app
BENCH_ARGS ?=
SEED_VENV_STAMP := $(if $(wildcard $(SEED_APP)),bench/.venv-seed/.installed)

bench-needs-wrk:
	@command -v wrk >/dev/null 2>&1 || { \
		echo "make bench needs wrk (HTTP load generator): apt-get install -y wrk" >&2; exit 1; }

$(VENV)/.installed-bench: bench/requirements.txt $(VENV)/.installed
	$(BIN)/pip install -q -r bench/requirements.txt
	touch $@

bench/.venv-seed/.installed: $(SEED_APP)/requirements.txt
	$(PYTHON) -m venv bench/.venv-seed
	bench/.venv-seed/bin/pip install -q -r $(SEED_APP)/requirements.txt
	touch $@

bench: bench-needs-wrk $(VENV)/.installed-bench $(SEED_VENV_STAMP)
	BENCH_SEED_APP=$(SEED_APP) $(BIN)/python -m bench.run $(BENCH_ARGS)

# The documentation site, built with --strict (a broken link or page fails the build).
$(VENV)/docs/.installed: requirements-docs.txt | $(BIN)/python
	$(PYTHON) -m venv $(VENV)/docs
	$(VENV)/docs/bin/pip install -q -r requirements-docs.txt
	touch $@

docs: $(VENV)/docs/.installed
	$(VENV)/docs/bin/mkdocs build --strict --site-dir site

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
