"""The sections of the analysis stages: ``heads`` (lengen.heads) and ``pretrained`` (lengen.finetune).

They are parsed by :func:`lengen.config.load_config` with every other section (``cfg.heads``,
``cfg.pretrained``), so a misspelt key fails ``python -m lengen.config check`` before any stage runs.
Checks against other sections (a head-analysis group must have auxiliaries) live in
:class:`lengen.config.Config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lengen.config.base import (
    HEAD_CATEGORIES,
    PRECISIONS,
    PRETRAINED_INITS,
    PRETRAINED_MODELS,
    _fail,
    _positive,
    _seeds,
    _unique,
)
from lengen.config.core import GroupConfig


@dataclass(frozen=True)
class HeadsConfig:
    """The ``heads:`` section: attention-head reuse, correlated with the generalization gap."""

    n_examples: int  # examples per (task, length): mean patterns, batch means, exact match
    length_fractions: list[float]  # analysed lengths round(f * L), L = min(main, aux) max training length
    max_checkpoints: int  # kept checkpoints per run, evenly spaced over training, the last included
    top_k: int  # heads in the top-k overlap and in the random-head control
    n_random_sets: int  # random head sets of size top_k in the control
    n_bootstrap: int  # bootstrap resamples of the points for rho's 95% CI
    min_points: int  # fewer (run, checkpoint) points than this: no verdict ("too few points")
    seed: int  # random head sets and bootstrap
    groups: dict[str, list[str]]  # category (a key of lengen.heads.CLAIMS) -> groups analysed in it

    def __post_init__(self):
        for k in ("max_checkpoints", "top_k", "n_random_sets", "n_bootstrap"):
            if getattr(self, k) < 1:
                _fail(f"heads.{k}", f"must be >= 1, got {getattr(self, k)}")
        if self.n_examples < 2:  # a batch mean over one example is the example: ablation would be a no-op
            _fail("heads.n_examples", f"must be >= 2, got {self.n_examples}")
        if self.min_points < 3:
            _fail("heads.min_points", f"must be >= 3 (a rank correlation of 2 points is ±1), got {self.min_points}")
        if not self.length_fractions or not all(0 < f <= 1 for f in self.length_fractions):
            _fail("heads.length_fractions", f"need values in (0, 1], got {self.length_fractions}")
        _unique("heads.length_fractions", self.length_fractions)
        _positive("heads.seed", self.seed, allow_zero=True)
        unknown = sorted(set(self.groups) - set(HEAD_CATEGORIES))
        if unknown:
            _fail("heads.groups", f"unknown category {unknown}; allowed: {sorted(HEAD_CATEGORIES)}")
        seen: dict[str, str] = {}
        for cat, names in self.groups.items():
            _unique(f"heads.groups.{cat}", names)
            for g in names:
                if g in seen:
                    _fail("heads.groups", f"group {g!r} is in both {seen[g]!r} and {cat!r}")
                seen[g] = cat

    def category(self, group: str) -> str | None:
        return next((c for c, names in self.groups.items() if group in names), None)


@dataclass(frozen=True)
class Claims:
    """Which configured groups test which of the paper's claims (group names from ``pretrained.groups``)."""

    scratch: str  # fine-tuned from both inits: pretraining vs none
    related: str  # main task with related auxiliaries (transfer expected)
    control: str  # main task with the control auxiliary (no transfer expected)
    alone: str  # a main task alone that should generalize on its own (string copy)


@dataclass(frozen=True)
class PretrainedParams:
    """The ``pretrained:`` section: a pretrained checkpoint fine-tuned vs the same architecture from scratch."""

    model: str  # smollm2 (the converted checkpoint) | tiny (2-layer random Llama, smoke/tests)
    seeds: list[int]  # each run once per seed; it draws the scratch init and the new tokens' embedding rows
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_frac: float  # linear warmup, then constant ...
    decay_frac: float  # ... then cosine decay to 0 over this fraction of the steps
    grad_clip: float  # 0 = off
    precision: str  # bf16-mixed | 32-true | 16-mixed (as train.precision)
    threads: int  # torch threads on CPU
    eval_every: int  # steps between intermediate evaluations; 0 = only at the end
    n_eval: int  # examples per (task, length)
    eval_batch_size: int
    groups: dict[str, GroupConfig]  # this stage's task groups (lengths fit its budget)
    runs: dict[str, list[str]]  # group -> initializations to fine-tune it from
    claims: Claims

    def __post_init__(self):
        if self.model not in PRETRAINED_MODELS:
            _fail("pretrained.model", f"{self.model!r} is not one of {PRETRAINED_MODELS}")
        if not self.seeds:
            _fail("pretrained.seeds", "must not be empty")
        _seeds("pretrained.seeds", self.seeds)
        for k in ("steps", "batch_size", "lr", "threads", "n_eval", "eval_batch_size"):
            _positive(f"pretrained.{k}", getattr(self, k))
        for k in ("weight_decay", "grad_clip", "eval_every"):
            _positive(f"pretrained.{k}", getattr(self, k), allow_zero=True)
        for k in ("warmup_frac", "decay_frac"):
            if not 0 <= getattr(self, k) < 1:
                _fail(f"pretrained.{k}", f"must be in [0, 1), got {getattr(self, k)}")
        if self.warmup_frac + self.decay_frac > 1:
            _fail("pretrained.decay_frac", "warmup_frac + decay_frac > 1")
        if self.precision not in PRECISIONS:
            _fail("pretrained.precision", f"{self.precision!r} is not one of {PRECISIONS}")
        for g, group in self.groups.items():
            group.check_aux_longer(f"pretrained.groups.{g}")
        for g, inits in self.runs.items():
            if g not in self.groups:
                _fail("pretrained.runs", f"unknown group {g!r}; groups: {sorted(self.groups)}")
            bad = [i for i in inits if i not in PRETRAINED_INITS]
            if bad or not inits:
                _fail(f"pretrained.runs.{g}", f"needs one or more of {PRETRAINED_INITS}, got {inits}")
            _unique(f"pretrained.runs.{g}", inits)
        for claim, g in dataclasses.asdict(self.claims).items():
            need = ("pretrained", "scratch") if claim == "scratch" else ("pretrained",)
            if any(i not in self.runs.get(g, []) for i in need):
                _fail(f"pretrained.claims.{claim}", f"group {g!r} must be in pretrained.runs with {list(need)}")
