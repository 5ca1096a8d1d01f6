# Every set-up step lives here: `make test` and `make reproduce` work on a fresh Linux machine
# with Python 3.11 (no conda, no GPU).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?=
FORCE   ?=
USE     := $(BIN)/python -m lengen.config use $(PROFILE) $(if $(FORCE),--force)

.PHONY: env test lint check reproduce lab profile strip clean-venv bench

env: $(STAMP)

# torch first and pinned (a CPU wheel; an unpinned torch pulls CUDA), then the rest under the lock.
$(STAMP): requirements.txt requirements-nodeps.txt requirements.lock pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt -c requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt -c requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

test: env
	$(BIN)/python -m pytest -q

# Lint (ruff, settings in pyproject.toml) and notebooks stored without outputs (also the pre-commit hooks:
# `$(BIN)/pre-commit install`).
lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/nbstripout --keep-id --verify notebooks/*.ipynb

# Every section of params.yaml, checked in a second without torch. Runs before `dvc repro` reads dvc.yaml:
# a malformed matrix (`seeds: 0`) makes DVC fail with "'Value' object is not iterable" instead.
check: env
	$(BIN)/python -m lengen.config check

# PROFILE=smoke|cpu|paper switches the active params.yaml first (see README); a params.yaml with edits is
# kept unless FORCE=1.
reproduce: env
	@if [ -n "$(PROFILE)" ]; then $(USE); fi
	$(BIN)/python -m lengen.config check
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

profile: env
	$(USE)

lab: env
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/jupyter lab $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

bench: env
	$(BIN)/python benchmarks/speed.py

strip:
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

# The claims table the figures stage generates (reports/claims.md) into README.md, between its claims markers.
.PHONY: claims
claims: env
	$(BIN)/python -m lengen.claims readme

clean-venv:
	rm -rf $(VENV)
