# Two commands do all set-up: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install demo test lint format typecheck imports unit integration e2e bench clean engines engine-test test-gpu postgres

help:
	@echo "make demo   start a three-site network on this machine and run jobs on it"
	@echo "make test   lint, type-check, import rules, and the whole test suite (real Slurm and Ray when root with apt)"
	@echo "make engines  install and start Slurm and Ray on this machine (scripts/engines/); make engine-test runs their tests"
	@echo "make test-gpu  the tests on a real NVIDIA GPU (tests/gpu); they fail without one"
	@echo "make bench  the benchmarks (they print figures; add ARGS=--json for JSON)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) sandbox
	@bash scripts/demo.sh

# The suite without the real engines, then the engine tests against the Slurm and Ray that
# `make engines` installs and starts (root with apt, and always in CI; skipped loudly otherwise).
# The real-GPU tests (tests/gpu) are left out: `make test-gpu` runs them where there is a GPU.
# `sandbox` and `containers` install bubblewrap and podman when root with apt (every local job runs sandboxed).
test: lint typecheck imports sandbox containers postgres
	$(BIN)/python -m pytest -q -m "not engine and not gpu"
	SUANLI_TEST_DB=postgres $(BIN)/python -m pytest -q -m "not engine and not gpu" tests/integration tests/e2e
	@$(MAKE) --no-print-directory engines
	@$(MAKE) --no-print-directory engine-test

# Install + start Slurm (apt) and Ray (pip, the 'ray' extra) when this machine can; ENGINES=no skips.
engines: $(STAMP)
	@bash scripts/engines/up.sh

# Contract suite and engine tests on Slurm and Ray; they skip loudly without the engines (fail under CI=true).
engine-test: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m engine tests/contract tests/engines

# The tests on a real NVIDIA GPU (they fail without one); scripts/gpu-check.sh runs them with the
# transfer benchmark on a GPU machine that lacks the venv.
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m gpu tests/gpu

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

e2e: $(STAMP)
	$(BIN)/python -m pytest -q tests/e2e

bench: $(STAMP)
	$(BIN)/python bench/submit.py $(ARGS)
	$(BIN)/python bench/start_latency.py $(ARGS)
	$(BIN)/python bench/dashboard.py $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist src/*.egg-info

# The dashboard's browser tests drive Debian's Chromium (Playwright's own download does not work
# here), with a CJK font so Chinese pages render. Installs them when root with apt; otherwise it
# says what to run (the tests then skip loudly, or fail under CI=true).
.PHONY: browser web-vendor containers sandbox
browser:
	@bash scripts/debian-packages.sh browser '[ -x /usr/bin/chromium ] && fc-list :lang=zh | grep -q .' \
	  chromium fonts-wqy-zenhei

# Jobs that name an `image:` run under podman with runc (crun fails on hybrid cgroups); the tests
# build their image from Debian's busybox-static (scripts/test-image.sh), never pulling one.
containers:
	@bash scripts/debian-packages.sh containers 'command -v podman && command -v runc && [ -x /bin/busybox ]' \
	  podman runc busybox-static

# PostgreSQL's server programs: the suite's PostgreSQL leg (tests/db_support.py) runs its own
# private cluster with them (initdb into a temporary folder), never the system service.
postgres:
	@bash scripts/debian-packages.sh postgres 'ls /usr/lib/postgresql/*/bin/initdb || command -v initdb' postgresql

# The local backend runs every job under bubblewrap (agent/backends/sandbox.py).
sandbox:
	@bash scripts/debian-packages.sh sandbox 'command -v bwrap' bubblewrap

# Re-vendor the dashboard's front-end packages (pinned in package.json) from the npm registry.
web-vendor:
	npm ci --ignore-scripts --no-audit --no-fund
	bash scripts/vendor_web.sh
