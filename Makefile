# Errands build / test entry points.  GNU make.
#
#   make test         system deps (PostgreSQL server + pgTAP), venv, lint, mypy, pytest
#   make lint         ruff + mypy --strict
#   make install-sql  regenerate sql/install.sql from sql/migrations/ and sql/schema/
#   make schema-snapshot  regenerate sql/schema.snapshot.sql (catalogue of a fresh install)
#   make bench        benchmark (bench/run.py, own durable cluster); bench-quick < 2 min;
#                     then bench/flow_control.py (W1 before/after, limits, queue count)
#                     and bench/queue_scale.py (W1 over serial queues, enqueue before/after)
#                     and bench/dashboard.py (page server times at 1M + 1M jobs)
#                     PEERS=1: Graphile Worker, PgQueuer, Procrastinate side by side
#   make chaos        chaos test (chaos/run.py): kills, PG restarts, cut links; CHAOS_ARGS=--help
#   make clean        remove the virtualenv and caches
#   make docs         documentation site (mkdocs.yml, docs/) into site/, mkdocs build --strict

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Highest PostgreSQL major version installed (Debian layout); 15 when none is.
ifndef PG_VERSION
PG_VERSION := $(or $(shell ls -1 /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | cut -d/ -f5 | sort -n | tail -1),15)
endif
PG_BINDIR := /usr/lib/postgresql/$(PG_VERSION)/bin
PGTAP_CONTROL := /usr/share/postgresql/$(PG_VERSION)/extension/pgtap.control
# Optional (the pg_cron test skips without it): installed only when root.
PGCRON_CONTROL := /usr/share/postgresql/$(PG_VERSION)/extension/pg_cron.control
# Optional (tests_py/test_pgbouncer.py skips without it): installed only when root.
# The tests start their own pgbouncer on a free port; a system pgbouncer service the
# package may start (port 6432) is not used.
PGBOUNCER_BIN := /usr/sbin/pgbouncer
# Optional (tests_py/test_postgraphile.py skips without it): npm, installed only when
# root (Debian's nodejs npm); the test gets PostGraphile and a newer Node from npm.
# Optional (tests_py/test_dashboard_browser.py skips without them): Debian's chromium
# and chromium-driver, installed only when root; selenium drives them headless.
CHROMIUM_BIN := /usr/bin/chromium
CHROMEDRIVER_BIN := /usr/bin/chromedriver

LINT_PATHS := python_client tests_py pgtap conftest.py bench examples chaos

.PHONY: test lint pytest install-sql schema-snapshot system-deps venv demo clean bench bench-quick chaos docs

test: system-deps lint pytest

# --- system packages ---------------------------------------------------------
system-deps:
	@missing=""; \
	[ -x "$(PG_BINDIR)/pg_ctl" ] || missing="$$missing postgresql-$(PG_VERSION)"; \
	[ -f "$(PGTAP_CONTROL)" ] || missing="$$missing postgresql-$(PG_VERSION)-pgtap"; \
	command -v pg_prove >/dev/null || missing="$$missing pgtap"; \
	if [ "$$(id -u)" -eq 0 ] && [ ! -f "$(PGCRON_CONTROL)" ]; then \
	  missing="$$missing postgresql-$(PG_VERSION)-cron"; \
	fi; \
	if [ "$$(id -u)" -eq 0 ] && [ ! -x "$(PGBOUNCER_BIN)" ]; then \
	  missing="$$missing pgbouncer"; \
	fi; \
	if [ "$$(id -u)" -eq 0 ] && ! command -v npm >/dev/null; then \
	  missing="$$missing nodejs npm"; \
	fi; \
	if [ "$$(id -u)" -eq 0 ] && [ ! -x "$(CHROMIUM_BIN)" ]; then \
	  missing="$$missing chromium"; \
	fi; \
	if [ "$$(id -u)" -eq 0 ] && [ ! -x "$(CHROMEDRIVER_BIN)" ]; then \
	  missing="$$missing chromium-driver"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "error: missing system packages:$$missing" >&2; \
	    echo "       install them with: sudo apt-get install$$missing" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# --- virtualenv -----------------------------------------------------------------
$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
	  | sed '/^WARNING: Location .* is ignored/d'
	@# Bytecode, as a pip install of the package writes it (an editable install
	@# under PYTHONDONTWRITEBYTECODE=1 would compile every module at every start).
	$(VPY) -m compileall -q python_client/errands >/dev/null
	@touch $@

venv: $(STAMP)

# --- checks -------------------------------------------------------------------
lint: $(STAMP)
	$(VENV)/bin/ruff check -q $(LINT_PATHS)
	$(VENV)/bin/mypy --strict --no-error-summary python_client/errands

pytest: $(STAMP)
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

# --- generated files ------------------------------------------------------------
install-sql: $(STAMP)
	$(VPY) -m errands._install > sql/install.sql.tmp
	@mv sql/install.sql.tmp sql/install.sql
	@echo "wrote sql/install.sql"

schema-snapshot: $(STAMP)
	$(VPY) -m pgtap.snapshot > sql/schema.snapshot.sql.tmp
	@mv sql/schema.snapshot.sql.tmp sql/schema.snapshot.sql
	@echo "wrote sql/schema.snapshot.sql"

demo:
	@$(MAKE) -s --no-print-directory venv
	@command -v pg_ctl >/dev/null || [ -x "$(PG_BINDIR)/pg_ctl" ] \
	  || $(MAKE) --no-print-directory system-deps
	@env -u DATABASE_URL -u PGHOST -u PGDATABASE PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	  examples/demo.sh

# --- benchmark (bench/README.md) ---------------------------------------------------
# PEERS=1 adds --peers: bench/run.py installs Graphile Worker (npm ci in bench/peers/graphile)
# and PgQueuer + Procrastinate (bench/peers/.venv) on first use.
BENCH_PEERS := $(if $(filter 1 yes true,$(PEERS)),--peers)

bench: system-deps $(STAMP)
	$(VPY) bench/run.py $(BENCH_PEERS) $(BENCH_ARGS)
	$(VPY) bench/flow_control.py
	$(VPY) bench/queue_scale.py
	$(VPY) bench/dashboard.py

bench-quick: system-deps $(STAMP)
	$(VPY) bench/run.py --quick $(BENCH_PEERS) $(BENCH_ARGS)
	$(VPY) bench/flow_control.py --quick
	$(VPY) bench/queue_scale.py --quick
	$(VPY) bench/dashboard.py --quick

# --- chaos test (chaos/run.py) ------------------------------------------------------
# iproute2 (`ip netns`) for the network-partition part, installed when root.
chaos: system-deps $(STAMP)
	@if [ "$$(id -u)" -eq 0 ] && ! command -v ip >/dev/null; then \
	  echo "installing system packages: iproute2"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null; \
	fi
	$(VPY) chaos/run.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# --- documentation site (mkdocs.yml) --------------------------------------------------
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): pyproject.toml | $(STAMP)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[docs]' 2>&1 \
	  | sed '/^WARNING: Location .* is ignored/d'
	@touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
