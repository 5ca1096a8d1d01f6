"""The sections that define the training runs: data, model, train, groups, experiment, ablation, grid.

A *run* is one training job: a task group x a position encoding x an initialization seed
(:meth:`lengen.config.Config.run`). Baselines are groups too (a main task with no auxiliaries), named by the
``baseline`` field of the group they are the baseline of.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

from lengen.config.base import MODEL_INITS, POS_ENCODINGS, PRECISIONS, _fail, _positive, _seeds, _unique
from lengen.tasks import get_task

COMPILE_SETTINGS = ("auto", "compiled", "eager")  # as lengen.engine.COMPILE_SETTINGS (torch-free here)


@dataclass(frozen=True)
class DataConfig:
    seed: int  # seed of the training stream and the evaluation sets; held fixed across init seeds
    holdout_modulus: int  # a prompt is evaluation-only (under every task) iff hash(prompt) % holdout_modulus == 0
    n_eval: int  # examples per (task, length) in the final evaluation
    n_eval_during_training: int  # examples per (task, length) at intermediate evaluations
    eval_step: int  # evaluate lengths 1, 1+step, ... up to each group's eval_max (eval_max always included)
    leak_check_batches: int = 0  # training batches per run the data stage searches for evaluation prompts; 0 = all

    def __post_init__(self):
        _positive("data.leak_check_batches", self.leak_check_batches, allow_zero=True)
        if self.holdout_modulus < 2:
            _fail("data.holdout_modulus", f"must be >= 2 (1 would hold out every prompt), got {self.holdout_modulus}")
        for k in ("n_eval", "n_eval_during_training", "eval_step"):
            _positive(f"data.{k}", getattr(self, k))
        _positive("data.seed", self.seed, allow_zero=True)


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
        if self.init not in MODEL_INITS:
            _fail("model.init", f"{self.init!r} is not one of {MODEL_INITS}")


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
    # Lightning precision: auto (bf16-mixed where bf16 is native, else 32-true) | bf16-mixed | 32-true | 16-mixed
    precision: str
    threads: int  # torch intra-op threads on CPU (never run two 2-thread trainings at once)
    eval_every: int  # steps between per-length evaluations (each keeps a checkpoint)
    ape_random_offset: bool  # APE only: random position offset per example in training
    devices: int  # accelerators per run; > 1 trains with Lightning's DDP (batch_size stays global)
    num_workers: int  # DataLoader worker processes generating the stream (0 = in the training process)
    # a step runs the batch as this many length-sorted chunks, each cut to its own length (same gradient)
    length_buckets: int
    # auto | compiled | eager: train a torch.compile'd network; auto compiles where that was measured to pay
    # (lengen.engine.resolve_compile: AVX-512 CPUs, runs of >= 1000 steps), else trains eager
    compile: str = "auto"

    def __post_init__(self):
        if self.compile not in COMPILE_SETTINGS:
            _fail("train.compile", f"{self.compile!r} is not one of {COMPILE_SETTINGS}")
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
            _fail(
                "train.length_buckets",
                f"{self.length_buckets} chunks of a per-device batch of {self.batch_size // self.devices} rows",
            )
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

    def check_aux_longer(self, key: str) -> None:
        """A group's auxiliaries must be trained on longer lengths than its main task: transfer is read
        on (L, transfer_max], the lengths only an auxiliary saw. Checked for the groups a profile defines;
        the length-ratio grid's cells (:meth:`GridConfig.cell_group`) span every ratio on purpose."""
        short = {t: n for t, n in self.aux.items() if n <= self.main_max}
        if short:
            _fail(
                f"{key}.aux",
                f"auxiliary {short} not trained longer than the main task "
                f"{self.main_task!r} ({self.main_max}); an auxiliary's max length must exceed it",
            )

    def eval_lengths(self, task: str, step: int) -> list[int]:
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
        # Messages name the key only: this class parses `experiment`, `ablation` and `cross`, and the
        # parser prefixes the section it was given ("params: ablation: groups: must not be empty").
        for k in ("groups", "pos_encodings", "seeds"):
            if not getattr(self, k):
                raise ValueError(f"{k}: must not be empty")
        for pe in self.pos_encodings:
            if pe not in POS_ENCODINGS:
                raise ValueError(f"pos_encodings: {pe!r} is not one of {POS_ENCODINGS}")
        try:
            _unique("groups", self.groups)
            _unique("pos_encodings", self.pos_encodings)
            _seeds("seeds", self.seeds)
        except ValueError as e:  # drop "params: " so the parser can prefix the section
            raise ValueError(str(e).removeprefix("params: ")) from None


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
            _unique(f"grid.{k}", getattr(self, k))
        _seeds("grid.seeds", self.seeds)
        if self.pos_encoding not in POS_ENCODINGS:
            _fail("grid.pos_encoding", f"{self.pos_encoding!r} is not one of {POS_ENCODINGS}")

    @staticmethod
    def name(main: int, aux: int) -> str:
        return f"grid_m{main}_a{aux}"

    def cells(self) -> list[tuple[int, int]]:
        return [(m, a) for m in self.main_lengths for a in self.aux_lengths]

    def cell_group(self, template: GroupConfig, main: int, aux: int) -> GroupConfig:
        if not template.aux:
            _fail("grid.group", "the template group needs auxiliaries")
        return GroupConfig(
            main={template.main_task: main},
            aux=dict.fromkeys(template.aux, aux),
            eval_max=self.eval_max,
            model=template.model,
            train=template.train,
        )


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


def run_id(group: str, pos_encoding: str, seed: int) -> str:
    return f"{group}-{pos_encoding}-s{seed}"
