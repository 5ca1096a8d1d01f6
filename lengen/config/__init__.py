"""Configuration: frozen dataclasses mirroring ``params.yaml``, checked before anything runs.

``params.yaml`` is the single source of truth. ``load_config`` reads it as DVC does (YAML 1.2), parses
*every* section into :class:`Config` and fails *before any compute* on an unknown or misspelt key, a wrong
type or an out-of-range value, with a message naming the key (``params: train.lr: must be > 0, got -1.0``).
Derived values live in ``__post_init__`` or properties, never in the YAML. Importing this package never
imports torch: ``python -m lengen.config check`` runs in a second, before DVC and before any stage.

Sections and where they are parsed:

- ``data``, ``model``, ``train``, ``groups``, ``experiment``, ``ablation``, ``grid``, ``cross``: the training
  runs (:mod:`lengen.config.core`); ``cfg.runs()``, ``cfg.ablation_runs()``, ``cfg.grid_runs()``,
  ``cfg.cross_runs()`` resolve them (``cfg.all_runs()``: all four).
- ``heads`` -> ``cfg.heads: HeadsConfig | None``, ``pretrained`` -> ``cfg.pretrained: PretrainedParams | None``
  (:mod:`lengen.config.sections`), ``formal`` -> ``cfg.formal: FormalConfig | None``
  (:mod:`lengen.config.formal`, re-exported by lengen.formal.config). ``cfg.extra`` keeps these three raw,
  for readers that parse them themselves.

Profiles (``profiles/{smoke,cpu,paper}.yaml``) are complete parameter sets; ``params.yaml`` is the
active one (``cpu`` by default). Switch with ``python -m lengen.config use paper`` (copies the profile
over ``params.yaml``; refuses to overwrite edits without ``--force``), or change single keys with
``dvc exp run -S train.steps=8000``.

A *run* is one training job: a task group × a position encoding × an initialization seed
(:meth:`Config.run`). Baselines are groups too (a main task with no auxiliaries), named by the
``baseline`` field of the group they are the baseline of.
"""

from lengen.config.base import (
    HEAD_CATEGORIES,
    MODEL_INITS,
    POS_ENCODINGS,
    PRECISIONS,
    PRETRAINED_INITS,
    PRETRAINED_MODELS,
    _build,
    _fail,
    _positive,
    _seeds,
    _unique,
    read_params,
)
from lengen.config.core import (
    DataConfig,
    ExperimentConfig,
    GridConfig,
    GroupConfig,
    ModelParams,
    RunConfig,
    TrainConfig,
    run_id,
)
from lengen.config.formal import FormalConfig
from lengen.config.params import (
    OPTIONAL_SECTIONS,
    OTHER_SECTIONS,
    SECTIONS,
    Config,
    load_config,
    parse_config,
    resolve_params_file,
)
from lengen.config.profiles import use_profile
from lengen.config.sections import Claims, HeadsConfig, PretrainedParams

__all__ = [
    "HEAD_CATEGORIES",
    "MODEL_INITS",
    "OPTIONAL_SECTIONS",
    "OTHER_SECTIONS",
    "POS_ENCODINGS",
    "PRECISIONS",
    "PRETRAINED_INITS",
    "PRETRAINED_MODELS",
    "SECTIONS",
    "Claims",
    "Config",
    "DataConfig",
    "ExperimentConfig",
    "FormalConfig",
    "GridConfig",
    "GroupConfig",
    "HeadsConfig",
    "ModelParams",
    "PretrainedParams",
    "RunConfig",
    "TrainConfig",
    "_build",
    "_fail",
    "_positive",
    "_seeds",
    "_unique",
    "load_config",
    "parse_config",
    "read_params",
    "resolve_params_file",
    "run_id",
    "use_profile",
]
