# Komar: `make run` starts the platform on this machine, `make test` runs the suite.
# `make run REPLICAS=2` runs two processes of every service behind the one gateway.
# Needs only Python 3.11+; everything else is installed into .venv from PyPI.

SHELL := /bin/bash
# The first Python that is 3.11 or newer.
PYTHON ?= $(shell for p in python3 python3.11 python3.12 python3.13; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# Processes of every service for `make run` (KOMAR_REPLICAS); unset keeps the environment's.
REPLICAS ?=

.PHONY: venv run user test lint bench bench-indicators soak clean

venv: $(STAMP)

# Reinstalled only when pyproject.toml changes (or the venv is gone).
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed (python3 not found or too old)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "Could not create $(VENV): on Debian/Ubuntu install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: venv
	$(if $(REPLICAS),KOMAR_REPLICAS=$(REPLICAS) )$(PY) -m deploy.local $(ARGS)

# Create a dashboard user on the running platform (deploy/local/user.py; asks the password).
user: venv
	$(PY) -m deploy.local.user $(ARGS)

test: venv
	$(PY) -m pytest -q $(ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy libs gateway services deploy dashboard

bench: venv
	$(PY) -m bench $(ARGS)

bench-indicators: venv
	$(PY) -m bench indicators $(ARGS)

# Ten minutes of mixed load on 100,000 children, then the lost-or-doubled checks
# (SOAK_SECONDS, SOAK_CHILDREN shrink it; see bench/soak.py).
soak: venv
	$(PY) -m bench.soak $(ARGS)

clean:
	rm -rf var
