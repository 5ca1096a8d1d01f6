"""The ``formal:`` section of params.yaml: defined in :mod:`lengen.config.formal`, re-exported here.

:func:`lengen.config.load_config` parses it with every other section (``cfg.formal``), so
``python -m lengen.config check`` rejects a bad ``formal:`` section before any stage runs; ``load_formal(cfg)``
returns it.
"""

from __future__ import annotations

from lengen.config import Config, _fail
from lengen.config.formal import PES, Arch, FormalConfig, FormalTrain
from lengen.config.formal import FormalGrid as GridConfig

__all__ = ["PES", "Arch", "FormalConfig", "FormalTrain", "GridConfig", "load_formal"]


def load_formal(cfg: Config) -> FormalConfig:
    """The ``formal:`` section of a loaded config (parsed and checked by ``load_config``)."""
    if cfg.formal is None:
        _fail("formal", "section missing from the params file")
    return cfg.formal
