"""Configuration: frozen dataclasses mirroring ``params.yaml``.

``params.yaml`` is the single source of truth. ``load_config`` parses it into :class:`Config` and
fails *before any compute* on an unknown or misspelt key, a wrong type or an out-of-range value, with
a message naming the key and what is allowed. Derived values live in ``__post_init__`` or properties,
never in the YAML.

Profiles (``profiles/{smoke,cpu,paper}.yaml``) are complete parameter sets; ``params.yaml`` is the
active one (``cpu`` by default). Switch with ``python -m lengen.config use paper`` (copies the profile
over ``params.yaml``), or change single keys with ``dvc exp run -S train.steps=8000``.

A *run* is one training job: a task group × a position encoding × an initialization seed
(:meth:`Config.run`). Baselines are groups too (a main task with no auxiliaries), named by the
``baseline`` field of the group they are the baseline of.
"""
from __future__ import annotations

import dataclasses
import math
import re
import shutil
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lengen import paths
from lengen.model import POS_ENCODINGS

PRECISIONS = ("auto", "bf16-mixed", "32-true", "16-mixed")  # auto: lengen.evaluate.resolve_precision


def _fail(key: str, msg: str) -> None:
    raise ValueError(f"params: {key}: {msg}")


def _positive(key: str, value, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        _fail(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    seed: int  # seed of the training stream and the evaluation sets; held fixed across init seeds
    holdout_modulus: int  # a prompt is evaluation-only iff hash(task, prompt) % holdout_modulus == 0
    n_eval: int  # examples per (task, length) in the final evaluation
    n_eval_during_training: int  # examples per (task, length) at intermediate evaluations
    eval_step: int  # evaluate lengths 1, 1+step, ... up to each group's eval_max (eval_max always included)

    def __post_init__(self):
        if self.holdout_modulus < 2:
            _fail("data.holdout_modulus", f"must be >= 2 (1 would hold out every prompt), got {self.holdout_modulus}")
        for k in ("n_eval", "n_eval_during_training", "eval_step"):
            _positive(f"data.{k}", getattr(self, k))


@dataclass(frozen=True)
class ModelParams:
    """Model shape shared by every run; the position encoding is a run dimension (experiment)."""

    n_layer: int
    n_head: int
    d_model: int
    d_mlp: int
    max_seq_len: int  # position range; must cover the longest evaluation sequence (checked)
    rope_base: float
    tie_embeddings: bool
    init: str = "fan_in"  # weight init: fan_in | gpt2 (lengen.model.Transformer._init_weights)

    def __post_init__(self):
        for k in ("n_layer", "n_head", "d_model", "d_mlp", "max_seq_len"):
            _positive(f"model.{k}", getattr(self, k))
        if self.d_model % self.n_head:
            _fail("model.n_head", f"n_head={self.n_head} does not divide d_model={self.d_model}")
        if (self.d_model // self.n_head) % 2:
            _fail("model.n_head", f"head size d_model/n_head={self.d_model // self.n_head} must be even for RoPE")
        if not (self.rope_base > 0 and math.isfinite(self.rope_base)):
            _fail("model.rope_base", f"must be finite and > 0 (NoPE is pos_encoding 'nope'), got {self.rope_base}")
        if self.init not in ("fan_in", "gpt2"):
            _fail("model.init", f"must be 'fan_in' or 'gpt2', got {self.init!r}")


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    warmup_frac: float  # fraction of steps of linear warmup
    decay_frac: float  # fraction of steps of cosine decay at the end (constant in between)
    min_lr_frac: float  # lr at the end of the decay, as a fraction of lr
    grad_clip: float
    precision: str  # Lightning precision: auto (bf16-mixed where bf16 is native, else 32-true) | bf16-mixed | 32-true | 16-mixed
    threads: int  # torch intra-op threads on CPU (never run two 2-thread trainings at once)
    eval_every: int  # steps between per-length evaluations (each keeps a checkpoint)
    ape_random_offset: bool  # APE only: random position offset per example in training
    devices: int  # accelerators per run; > 1 trains with Lightning's DDP (batch_size stays global)
    num_workers: int  # DataLoader worker processes generating the stream (0 = in the training process)
    length_buckets: int  # a step runs the batch as this many length-sorted chunks cut to their own length (same gradient)

    def __post_init__(self):
        for k in ("steps", "batch_size", "lr", "eps", "threads", "eval_every"):
            _positive(f"train.{k}", getattr(self, k))
        for k in ("beta1", "beta2", "warmup_frac", "decay_frac", "min_lr_frac"):
            v = getattr(self, k)
            if not 0 <= v < 1 + (k == "min_lr_frac"):
                _fail(f"train.{k}", f"must be in [0, 1), got {v}")
        if self.warmup_frac + self.decay_frac > 1:
            _fail("train.decay_frac", f"warmup_frac + decay_frac = {self.warmup_frac + self.decay_frac} > 1")
        _positive("train.weight_decay", self.weight_decay, allow_zero=True)
        _positive("train.devices", self.devices)
        _positive("train.num_workers", self.num_workers, allow_zero=True)
        _positive("train.length_buckets", self.length_buckets)
        if self.length_buckets > self.batch_size // self.devices:
            _fail("train.length_buckets", f"{self.length_buckets} chunks of a per-device batch of "
                                          f"{self.batch_size // self.devices} rows")
        if self.batch_size % self.devices:
            _fail("train.devices", f"devices={self.devices} does not divide batch_size={self.batch_size}")
        _positive("train.grad_clip", self.grad_clip, allow_zero=True)
        if self.precision not in PRECISIONS:
            _fail("train.precision", f"{self.precision!r} is not one of {PRECISIONS}")

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_frac * self.steps)

    @property
    def decay_steps(self) -> int:
        return round(self.decay_frac * self.steps)


@dataclass(frozen=True)
class GroupConfig:
    """A task group: one main task and its auxiliaries, each with its maximum training length."""

    main: dict[str, int]  # {task: max training length}, exactly one entry
    aux: dict[str, int]  # {task: max training length}; empty for a baseline
    eval_max: int  # evaluate every task of the group at lengths up to this
    baseline: str | None = None  # the group (main task alone) this one is compared with
    # Overrides of the shared ``model`` section for this group's runs, e.g. ``{init: gpt2}``; keys and
    # types are those of ``model`` (checked by :meth:`Config.model_for`). Give a baseline the same ones.
    model: dict[str, typing.Any] = field(default_factory=dict)
    # Overrides of the shared ``train`` section, e.g. ``{decay_frac: 0.5}`` (checked by
    # :meth:`Config.train_for`); a baseline gets the same ones, so the comparison stays one of auxiliaries.
    train: dict[str, typing.Any] = field(default_factory=dict)

    def __post_init__(self):
        from lengen.tasks import get_task

        if len(self.main) != 1:
            _fail("groups.*.main", f"needs exactly one task, got {list(self.main) or 'none'}")
        for name, max_len in {**self.main, **self.aux}.items():
            task = get_task(name)
            task.check_length(max_len)
            task.check_length(min(self.eval_max, task.max_length or self.eval_max))
        if self.main_task in self.aux:
            _fail("groups.*.aux", f"{self.main_task!r} is the main task and cannot also be an auxiliary")

    @property
    def main_task(self) -> str:
        return next(iter(self.main))

    def fingerprint_dict(self) -> dict:
        """The group as run fingerprints hash it: ``train`` is left out while empty, so runs stored before
        groups could override ``train`` keep their fingerprints (and are read back, not redone)."""
        d = dataclasses.asdict(self)
        if not d["train"]:
            del d["train"]
        return d

    @property
    def tasks(self) -> dict[str, int]:
        """All tasks with their max training length, main first."""
        return {**self.main, **self.aux}

    @property
    def main_max(self) -> int:
        """The main task's maximum training length L."""
        return self.main[self.main_task]

    @property
    def transfer_max(self) -> int:
        """Upper end of the 'expected transfer' range (L, transfer_max]: the longest auxiliary
        training length, or 2L for a baseline (so a group and its baseline share the range)."""
        return max(max(self.aux.values(), default=0), 2 * self.main_max)

    def length_range(self, length: int) -> str:
        """'in-distribution' (≤ L), 'transfer' ((L, transfer_max]) or 'beyond' for the main task."""
        if length <= self.main_max:
            return "in-distribution"
        return "transfer" if length <= self.transfer_max else "beyond"

    def role(self, task: str) -> str:
        return "main" if task == self.main_task else "aux"

    def eval_keys(self, step: int) -> set[tuple[str, int]]:
        """Every (task, length) this group is evaluated at."""
        return {(t, l) for t in self.tasks for l in self.eval_lengths(t, step)}

    def eval_lengths(self, task: str, step: int) -> list[int]:
        from lengen.tasks import get_task

        t = get_task(task)
        hi = min(self.eval_max, t.max_length or self.eval_max)
        return sorted(set(range(t.min_length, hi + 1, step)) | {hi} | {self.tasks[task]})


@dataclass(frozen=True)
class ExperimentConfig:
    """The runs the pipeline trains: every group × position encoding × seed (a DVC matrix)."""

    groups: list[str]
    pos_encodings: list[str]
    seeds: list[int]

    def __post_init__(self):
        # Messages name the key only: this class parses both `experiment` and `ablation`, and the
        # parser prefixes the section it was given ("params: ablation: groups: must not be empty").
        for k in ("groups", "pos_encodings", "seeds"):
            if not getattr(self, k):
                raise ValueError(f"{k}: must not be empty")
        for pe in self.pos_encodings:
            if pe not in POS_ENCODINGS:
                raise ValueError(f"pos_encodings: {pe!r} is not one of {POS_ENCODINGS}")


@dataclass(frozen=True)
class GridConfig:
    """The length-ratio grid (paper Fig. 10): one run per (main length, aux length) of a template
    group, named ``grid_m{main}_a{aux}``; the figure is the generalization gap of each cell."""

    group: str  # template group: its main task and auxiliaries (their lengths are replaced)
    main_lengths: list[int]
    aux_lengths: list[int]
    eval_max: int  # every cell is evaluated at lengths 1..eval_max (the gap's span)
    pos_encoding: str
    seeds: list[int]

    def __post_init__(self):
        for k in ("main_lengths", "aux_lengths", "seeds"):
            if not getattr(self, k):
                _fail(f"grid.{k}", "must not be empty")
        for k in ("main_lengths", "aux_lengths"):
            for v in getattr(self, k):
                _positive(f"grid.{k}", v)
        if self.pos_encoding not in POS_ENCODINGS:
            _fail("grid.pos_encoding", f"{self.pos_encoding!r} is not one of {POS_ENCODINGS}")

    @staticmethod
    def name(main: int, aux: int) -> str:
        return f"grid_m{main}_a{aux}"

    def cells(self) -> list[tuple[int, int]]:
        return [(m, a) for m in self.main_lengths for a in self.aux_lengths]

    def cell_group(self, template: "GroupConfig", main: int, aux: int) -> "GroupConfig":
        if not template.aux:
            _fail("grid.group", "the template group needs auxiliaries")
        return GroupConfig(main={template.main_task: main}, aux={t: aux for t in template.aux},
                           eval_max=self.eval_max, model=template.model, train=template.train)


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, resolved from :class:`Config`."""

    run_id: str
    group_name: str
    group: GroupConfig
    pos_encoding: str
    seed: int
    model: ModelParams
    train: TrainConfig
    data: DataConfig

    def model_config(self):
        from lengen.model import ModelConfig
        from lengen.tokenizer import default_tokenizer

        m = self.model
        return ModelConfig(
            vocab_size=len(default_tokenizer()), n_layer=m.n_layer, n_head=m.n_head, d_model=m.d_model,
            d_mlp=m.d_mlp, max_seq_len=m.max_seq_len, pos_encoding=self.pos_encoding,
            rope_base=m.rope_base, tie_embeddings=m.tie_embeddings, init=m.init,
        )

    @property
    def run_dir(self) -> Path:
        return paths.RUNS_DIR / self.run_id


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
    extra: dict = field(default_factory=dict, compare=False, repr=False)  # other stages' sections, raw

    def __post_init__(self):
        from lengen.tasks import get_task

        for section, e in (("experiment", self.experiment), ("ablation", self.ablation)):
            for g in (e.groups if e else []):
                if g not in self.groups:
                    _fail(f"{section}.groups", f"unknown group {g!r}; defined groups: {sorted(self.groups)}")
        for g in self.groups:
            self.model_for(g)  # every group's model and train overrides are valid
            self.train_for(g)
        twice = sorted({r.run_id for r in self.runs()} & {r.run_id for r in self.ablation_runs()})
        if twice:
            _fail("ablation", f"run(s) {twice} are already in the experiment (each run is trained once)")
        for g, group in self.groups.items():
            base = group.baseline
            if base is not None and base not in self.groups:
                _fail(f"groups.{g}.baseline", f"unknown group {base!r}; defined groups: {sorted(self.groups)}")
            for section in ("model", "train") if base is not None else ():
                mine, theirs = getattr(group, section), getattr(self.groups[base], section)
                if mine != theirs:
                    _fail(f"groups.{g}.{section}", f"{mine} differs from its baseline {base!r}'s "
                          f"{theirs} (a baseline is the same run without auxiliaries)")
        if self.grid is not None and self.grid.group not in self.groups:
            _fail("grid.group", f"unknown group {self.grid.group!r}; defined groups: {sorted(self.groups)}")
        # Every evaluation sequence must fit the position range: <bos> <marker> prompt target <eos>.
        grid_cells = [self.grid.name(m, a) for m, a in self.grid.cells()] if self.grid else []
        ablation_groups = self.ablation.groups if self.ablation else []
        for g in [*self.experiment.groups, *ablation_groups, *grid_cells]:
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

    def group(self, name: str) -> GroupConfig:
        """A defined group, or a cell ``grid_m{main}_a{aux}`` of the length-ratio grid."""
        if name in self.groups:
            return self.groups[name]
        m = re.fullmatch(r"grid_m(\d+)_a(\d+)", name)
        if m and self.grid is not None:
            return self.grid.cell_group(self.groups[self.grid.group], int(m[1]), int(m[2]))
        _fail("run.group", f"unknown group {name!r}; defined groups: {sorted(self.groups)}"
              + (" (grid cells: grid_m<main>_a<aux>)" if self.grid else ""))

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
            run_id=run_id(group, pos_encoding, seed), group_name=group, group=group_cfg,
            pos_encoding=pos_encoding, seed=int(seed), model=self.model_for(group), train=self.train_for(group),
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

    def all_runs(self) -> list[RunConfig]:
        """Every training run of the profile: experiment, ablation and grid."""
        return self.runs() + self.ablation_runs() + self.grid_runs()


def run_id(group: str, pos_encoding: str, seed: int) -> str:
    return f"{group}-{pos_encoding}-s{seed}"


# ---------------------------------------------------------------------------------------------
# Parsing: a small strict builder from nested dicts to the dataclasses above.

_SECTIONS = {"profile": str, "data": DataConfig, "model": ModelParams, "train": TrainConfig,
             "groups": dict[str, GroupConfig], "experiment": ExperimentConfig}
_OPTIONAL_SECTIONS = {"grid": GridConfig, "ablation": ExperimentConfig}
# Sections owned by later stages (pretrained comparison, head analysis, ...): kept raw in Config.extra
# and validated by their own loaders.
OTHER_SECTIONS = ("pretrained", "heads", "figures", "formal")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(tp, value, key: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(key, f"must be a mapping with keys {[f.name for f in dataclasses.fields(tp)]}, got {value!r}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            _fail(key, f"unknown key(s) {unknown}; allowed: {sorted(fields)}")
        missing = [n for n, f in fields.items() if n not in value
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            _fail(key, f"missing key(s) {missing}")
        kwargs = {n: _build(hints[n], v, f"{key}.{n}") for n, v in value.items()}
        try:
            return tp(**kwargs)
        except ValueError as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith("params:") else f"params: {key}: {msg}") from None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value, key)
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            _fail(key, f"must be a mapping, got {value!r}")
        return {_build(kt, k, f"{key}.{k}"): _build(vt, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (it,) = typing.get_args(tp)
        if not isinstance(value, list):
            _fail(key, f"must be a list, got {value!r}")
        return [_build(it, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, f"must be a number, got {value!r}")
        return float(value)
    if tp is typing.Any:  # checked by whoever reads it (e.g. Config.model_for)
        return value
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            _fail(key, f"must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
        return value
    raise TypeError(f"unsupported type {tp} at {key}")


def parse_config(raw: dict) -> Config:
    if not isinstance(raw, dict):
        raise ValueError("params: the file must be a mapping of sections")
    unknown = sorted(set(raw) - set(_SECTIONS) - set(_OPTIONAL_SECTIONS) - set(OTHER_SECTIONS))
    if unknown:
        _fail("<top level>", f"unknown section(s) {unknown}; allowed: {sorted(_SECTIONS) + list(_OPTIONAL_SECTIONS) + list(OTHER_SECTIONS)}")
    missing = [k for k in _SECTIONS if k not in raw]
    if missing:
        _fail("<top level>", f"missing section(s) {missing}")
    kwargs = {k: _build(tp, raw[k], k) for k, tp in _SECTIONS.items()}
    kwargs |= {k: _build(tp, raw[k], k) for k, tp in _OPTIONAL_SECTIONS.items() if k in raw}
    extra = {k: raw[k] for k in OTHER_SECTIONS if k in raw}
    try:
        return Config(**kwargs, extra=extra)
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith("params:") else f"params: {msg}") from None


def load_config(params_file: str | Path | None = None) -> Config:
    """Parse and validate a params file (default: the repo's ``params.yaml``)."""
    path = Path(params_file) if params_file else paths.PARAMS_FILE
    if not path.is_absolute() and not path.exists():
        path = paths.PROJ_ROOT / path  # notebooks run from notebooks/ in Jupyter, from the root in papermill
    with open(path) as f:
        return parse_config(yaml.safe_load(f))


def use_profile(name: str, target: Path | None = None) -> Path:
    """Copy ``profiles/<name>.yaml`` over ``params.yaml`` after validating it."""
    src = paths.PROFILES_DIR / f"{name}.yaml"
    if not src.exists():
        known = sorted(p.stem for p in paths.PROFILES_DIR.glob("*.yaml"))
        raise ValueError(f"unknown profile {name!r}; known profiles: {known}")
    load_config(src)
    dst = target or paths.PARAMS_FILE
    shutil.copyfile(src, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "use":
        print(f"params.yaml <- profiles/{argv[1]}.yaml ({use_profile(argv[1])})")
        return 0
    if len(argv) in (1, 2) and argv[0] == "check":
        cfg = load_config(argv[1] if len(argv) == 2 else None)
        print(f"ok: profile {cfg.profile}, {len(cfg.all_runs())} runs ({len(cfg.runs())} experiment, "
              f"{len(cfg.ablation_runs())} ablation, {len(cfg.grid_runs())} grid)")
        return 0
    print("usage: python -m lengen.config use PROFILE | check [PARAMS_FILE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
