"""The whole params file: :class:`Config`, its top-level sections, ``parse_config`` and ``load_config``."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from lengen import paths
from lengen.config.base import POS_ENCODINGS, _build, _fail, read_params
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
from lengen.config.sections import HeadsConfig, PretrainedParams
from lengen.tasks import get_task


@dataclass(frozen=True)
class Config:
    profile: str
    data: DataConfig
    model: ModelParams
    train: TrainConfig
    groups: dict[str, GroupConfig]
    experiment: ExperimentConfig
    grid: GridConfig | None = None
    ablation: ExperimentConfig | None = None  # more runs (e.g. NoPE, one auxiliary), a matrix of its own
    cross: ExperimentConfig | None = None  # the cross-paper study's runs (APE; notebook 07), a matrix of its own
    heads: HeadsConfig | None = None  # stage `heads` (lengen.heads)
    pretrained: PretrainedParams | None = None  # stage `pretrained` (lengen.finetune)
    formal: FormalConfig | None = None  # stage `formal` (lengen.formal)
    # The analysis sections as raw dicts, for readers that parse them themselves; parsed and checked above.
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        for section, e in (("experiment", self.experiment), ("ablation", self.ablation), ("cross", self.cross)):
            for g in e.groups if e else []:
                if g not in self.groups:
                    _fail(f"{section}.groups", f"unknown group {g!r}; defined groups: {sorted(self.groups)}")
        for g, group in self.groups.items():
            group.check_aux_longer(f"groups.{g}")
            self.model_for(g)  # every group's model and train overrides are valid
            self.train_for(g)
        twice = sorted({r.run_id for r in self.runs()} & {r.run_id for r in self.ablation_runs()})
        if twice:
            _fail("ablation", f"run(s) {twice} are already in the experiment (each run is trained once)")
        twice = sorted({r.run_id for r in self.runs() + self.ablation_runs()} & {r.run_id for r in self.cross_runs()})
        if twice:
            _fail("cross", f"run(s) {twice} are already in the experiment or ablation (each run is trained once)")
        for g, group in self.groups.items():
            base = group.baseline
            if base is not None and base not in self.groups:
                _fail(f"groups.{g}.baseline", f"unknown group {base!r}; defined groups: {sorted(self.groups)}")
            for section in ("model", "train") if base is not None else ():
                mine, theirs = getattr(group, section), getattr(self.groups[base], section)
                if mine != theirs:
                    _fail(
                        f"groups.{g}.{section}",
                        f"{mine} differs from its baseline {base!r}'s "
                        f"{theirs} (a baseline is the same run without auxiliaries)",
                    )
        if self.grid is not None and self.grid.group not in self.groups:
            _fail("grid.group", f"unknown group {self.grid.group!r}; defined groups: {sorted(self.groups)}")
        # Every evaluation sequence must fit the position range: <bos> <marker> prompt target <eos>.
        grid_cells = [self.grid.name(m, a) for m, a in self.grid.cells()] if self.grid else []
        more_groups = [g for e in (self.ablation, self.cross) if e for g in e.groups]
        for g in [*self.experiment.groups, *more_groups, *grid_cells]:
            group, max_seq_len = self.group(g), self.model_for(g).max_seq_len
            for task in group.tasks:
                longest = max(group.eval_lengths(task, self.data.eval_step))
                need = get_task(task).max_tokens(longest) + 3
                if need > max_seq_len:
                    _fail(
                        "model.max_seq_len",
                        f"{max_seq_len} is too short for group {g!r}: task {task!r} at length "
                        f"{longest} needs up to {need} positions (raise max_seq_len or lower eval_max)",
                    )
        # The head analysis compares a main task with its auxiliaries: a defined group without any has no
        # gap to explain. A group named there but not defined is allowed (reported "not run").
        for names in self.heads.groups.values() if self.heads else []:
            for g in names:
                if g in self.groups and not self.groups[g].aux:
                    _fail("heads.groups", f"{g!r} has no auxiliary task, so nothing to compare")

    def group(self, name: str) -> GroupConfig:
        """A defined group, or a cell ``grid_m{main}_a{aux}`` of the length-ratio grid."""
        if name in self.groups:
            return self.groups[name]
        m = re.fullmatch(r"grid_m(\d+)_a(\d+)", name)
        if m and self.grid is not None:
            return self.grid.cell_group(self.groups[self.grid.group], int(m[1]), int(m[2]))
        _fail(
            "run.group",
            f"unknown group {name!r}; defined groups: {sorted(self.groups)}"
            + (" (grid cells: grid_m<main>_a<aux>)" if self.grid else ""),
        )

    def model_for(self, group: str) -> ModelParams:
        """The model of a group's runs: the shared ``model`` section with the group's overrides."""
        return self._with_overrides("model", group)

    def train_for(self, group: str) -> TrainConfig:
        """The training recipe of a group's runs: the shared ``train`` section with the group's overrides."""
        return self._with_overrides("train", group)

    def _with_overrides(self, section: str, group: str):
        shared, overrides = getattr(self, section), getattr(self.group(group), section)
        if not overrides:
            return shared
        return _build(type(shared), {**dataclasses.asdict(shared), **overrides}, f"groups.{group}.{section}")

    def grid_runs(self) -> list[RunConfig]:
        """The length-ratio grid's runs (none without a ``grid`` section)."""
        if self.grid is None:
            return []
        g = self.grid
        return [self.run(g.name(m, a), g.pos_encoding, s) for m, a in g.cells() for s in g.seeds]

    def run(self, group: str, pos_encoding: str, seed: int) -> RunConfig:
        group_cfg = self.group(group)
        if pos_encoding not in POS_ENCODINGS:
            _fail("run.pos_encoding", f"{pos_encoding!r} is not one of {POS_ENCODINGS}")
        return RunConfig(
            run_id=run_id(group, pos_encoding, seed),
            group_name=group,
            group=group_cfg,
            pos_encoding=pos_encoding,
            seed=int(seed),
            model=self.model_for(group),
            train=self.train_for(group),
            data=self.data,
        )

    def runs(self) -> list[RunConfig]:
        """The main experiment: every group x position encoding x seed (DVC stage ``train``)."""
        e = self.experiment
        return [self.run(g, pe, s) for g in e.groups for pe in e.pos_encodings for s in e.seeds]

    def ablation_runs(self) -> list[RunConfig]:
        """The ablation matrix (DVC stage ``ablation``); none without an ``ablation`` section."""
        e = self.ablation
        return [self.run(g, pe, s) for g in e.groups for pe in e.pos_encodings for s in e.seeds] if e else []

    def cross_runs(self) -> list[RunConfig]:
        """The cross-paper study's runs (DVC stage ``cross``); none without a ``cross`` section."""
        e = self.cross
        return [self.run(g, pe, s) for g in e.groups for pe in e.pos_encodings for s in e.seeds] if e else []

    def all_runs(self) -> list[RunConfig]:
        """Every training run of the profile: experiment, ablation, grid and cross."""
        return self.runs() + self.ablation_runs() + self.grid_runs() + self.cross_runs()


# ---------------------------------------------------------------------------------------------
# Parsing

SECTIONS = ("profile", "data", "model", "train", "groups", "experiment")  # required
OPTIONAL_SECTIONS = ("grid", "ablation", "cross", "heads", "pretrained", "formal")
# The analysis stages' sections, also kept raw in Config.extra for readers that parse them themselves.
OTHER_SECTIONS = ("heads", "pretrained", "formal")
_TYPES = {
    "profile": str,
    "data": DataConfig,
    "model": ModelParams,
    "train": TrainConfig,
    "groups": dict[str, GroupConfig],
    "experiment": ExperimentConfig,
    "grid": GridConfig,
    "ablation": ExperimentConfig,
    "cross": ExperimentConfig,
    "heads": HeadsConfig,
    "pretrained": PretrainedParams,
    "formal": FormalConfig,
}


def parse_config(raw: dict) -> Config:
    """Build and check a :class:`Config` from a parsed params file; every section is typed."""
    if not isinstance(raw, dict):
        raise ValueError("params: the file must be a mapping of sections")
    allowed = [*SECTIONS, *OPTIONAL_SECTIONS]
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        _fail("<top level>", f"unknown section(s) {unknown}; allowed: {allowed}")
    missing = [k for k in SECTIONS if k not in raw]
    if missing:
        _fail("<top level>", f"missing section(s) {missing}")
    kwargs = {k: _build(_TYPES[k], raw[k], k) for k in allowed if k in raw}
    extra = {k: raw[k] for k in OTHER_SECTIONS if k in raw}
    try:
        return Config(**kwargs, extra=extra)
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith("params:") else f"params: {msg}") from None


def resolve_params_file(params_file: str | Path | None = None) -> Path:
    path = Path(params_file) if params_file else paths.PARAMS_FILE
    if not path.is_absolute() and not path.exists():
        path = paths.PROJ_ROOT / path  # notebooks run from notebooks/ in Jupyter, from the root in papermill
    return path


def load_config(params_file: str | Path | None = None) -> Config:
    """Parse and validate a params file (default: the repo's ``params.yaml``), read as DVC reads it."""
    return parse_config(read_params(resolve_params_file(params_file)))
