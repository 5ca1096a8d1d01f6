# Every set-up step lives here: `make test` and `make reproduce` work on a fresh Linux machine
# with Python 3.11 (no conda, no GPU).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?=
FORCE   ?=
USE     := $(BIN)/python -m lengen.config use $(PROFILE) $(if $(FORCE),--force)
DVC     := PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc

# Which torch build: TORCH_VARIANT=cpu (the default: torch 2.13.0+cpu from PyTorch's CPU index, no CUDA
# libraries), cuda (PyPI's torch 2.13.0, which on Linux x86_64 is the CUDA build and brings its CUDA 13.0
# libraries as pip packages: for a GPU box), or another tag of PyTorch's index (cuXYZ: torch 2.13.0+cuXYZ
# from https://download.pytorch.org/whl/cuXYZ). A machine whose pip already finds the CPU wheel offline can
# skip the index: TORCH_INDEX=. To switch an existing venv: `make clean-venv env TORCH_VARIANT=cuda`.
TORCH_VERSION ?= 2.13.0
TORCH_VARIANT ?= cpu
TORCH_INDEX   ?= $(if $(filter cuda,$(TORCH_VARIANT)),,https://download.pytorch.org/whl/$(TORCH_VARIANT))
TORCH_SPEC    := torch==$(TORCH_VERSION)$(if $(filter cuda,$(TORCH_VARIANT)),,+$(TORCH_VARIANT))

.PHONY: env test lint check reproduce queue lab profile strip clean-venv bench

env: $(STAMP)

# torch first and pinned (TORCH_VARIANT above; an unpinned torch pulls CUDA), then the rest under the lock
# (requirements say torch==2.13.0, which the local build 2.13.0+cpu satisfies).
$(STAMP): requirements.txt requirements-nodeps.txt requirements.lock pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -r requirements.txt -c requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt -c requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The suite on every core (pytest-xdist; each test file on one worker: a module's fixtures are built once). Files are
# handed out in collection order, the end-to-end ones first (tests/conftest.py), not reordered by their test count.
test: env
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

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

# PROFILE=smoke|cpu|study|paper switches the active params.yaml first (see README); a params.yaml with edits is
# kept unless FORCE=1. The training runs go first, JOBS at a time (`queue` below: on CPUs one 1-thread run per
# core), then `dvc repro` makes the rest (finished runs are up to date).
reproduce: env
	@if [ -n "$(PROFILE)" ]; then $(USE); fi
	$(BIN)/python -m lengen.config check
	$(MAKE) --no-print-directory -o $(STAMP) queue PROFILE=
	$(DVC) repro

# Many runs at once (docs/scaling.md): the stages that train one run each (train, ablation, grid, cross), JOBS at a
# time, each its own `dvc repro --single-item` in this workspace: DVC releases its repository lock while a
# stage's command runs and locks each stage's deps (shared) and outs (one run's own); --wait-for-lock queues
# the short locked moments. Records, metrics, runs/ and dvc.lock land here as with `make reproduce`, which then
# makes the reports (finished runs are up to date). One accelerator per worker: xargs numbers its slots, and
# with GPUS (default: those of CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists; JOBS defaults to their
# count, else the CPU's cores) slot k trains on the (k mod n)-th GPU of the list (CUDA_VISIBLE_DEVICES set per
# run). On CPUs give each run train.threads = cores / JOBS (the cpu and study profiles: 1). PROFILE as for reproduce.
# ORDER=<file> (one stage name per line; default profiles/queue-order.txt, ORDER= for DVC's order) trains the stages
# it names first, in its order, then the rest in DVC's: the cpu runs longest first, the study's in the order its
# claims need them (it is produced in pieces, over sessions).
# Right after a run trains, its slot stores the run's head-analysis rows (python -m lengen.heads; docs/heads.md) while
# its checkpoints are on this machine: committed, they let the heads stage run on a clone without checkpoints.
comma      := ,
GPUS       ?= $(or $(subst $(comma), ,$(CUDA_VISIBLE_DEVICES)),$(shell nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null))
JOBS       ?= $(if $(strip $(GPUS)),$(words $(GPUS)),$(shell nproc 2>/dev/null || echo 2))
RUN_STAGES ?= ^(train|ablation|grid|cross)@
ORDER      ?= profiles/queue-order.txt
QUEUE_SLOT := stage=$$1; if [ -n "$$GPUS" ]; then set -- $$GPUS; shift $$((SLOT % $$\#)); \
	export CUDA_VISIBLE_DEVICES=$$1; fi; echo "[queue] slot $$SLOT$${CUDA_VISIBLE_DEVICES:+ gpu $$CUDA_VISIBLE_DEVICES}: $$stage"; \
	dvc --wait-for-lock repro --single-item "$$stage" && python -m lengen.heads "$$stage"

queue: env
	@if [ -n "$(PROFILE)" ]; then $(USE); fi
	$(BIN)/python -m lengen.config check
	$(DVC) repro data
	$(DVC) stage list --name-only | grep -E '$(RUN_STAGES)' $(if $(ORDER),| awk 'NR == FNR { o[$$0] = NR; next } \
	  { print (($$0 in o) ? o[$$0] : 1e6 + FNR) "\t" $$0 }' $(ORDER) - | sort -n | cut -f2) | PATH=$(abspath $(BIN)):$$PATH GPUS="$(strip $(GPUS))" \
	  xargs -r -n 1 -P $(JOBS) --process-slot-var=SLOT sh -c '$(QUEUE_SLOT)' queue

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
