"""The ``formal:`` section of params.yaml (stage ``formal``, lengen.formal), parsed strictly.

    formal:
      algorithmic: [bin_majority, parity]   # any of the 8 tasks
      languages: [D-2, "(aa)*"]            # any of the 17 languages
      pos_encodings: [ape, nope]
      bins: [[1, 50], [51, 100], [101, 150]] # first bin = training lengths; all bins are evaluated
      n_eval: 200                            # examples per bin, final evaluation
      n_eval_during: 200                     # in-distribution examples of the early-stopping check (<= n_eval)
      data_seed: 1234
      seeds: 1                               # seeds of the selected config (seed 0 is the grid run)
      vocab_size: 150                        # unique copy / sort vocabulary (>= the longest input)
      grid: {n_layer: [2], n_head: [2], d_model: [64], lr: [0.001]}
      train: {steps: 3000, batch_size: 64, eval_every: 500, early_stop: true, early_stop_languages: false,
              init: fan_in, pos_init_std: 0.02, ...}

Parsed by :func:`lengen.config.load_config` with every other section (``cfg.formal``). The task and
language names are copies of the registries' keys (lengen.formal.algorithmic.ALGORITHMIC,
lengen.formal.languages.LANGUAGES; tests/test_config_sections.py checks them), so that loading the config,
which every stage does, does not depend on the formal tasks' code.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from lengen.config.base import MODEL_INITS, PRECISIONS, _fail, _positive, _unique

FORMAL_ALGORITHMIC = (
    "bin_majority",
    "majority",
    "bin_majority_interleave",
    "unique_copy",
    "repeat_copy",
    "sort",
    "parity",
    "addition",
)
FORMAL_LANGUAGES = (
    "D-2",
    "D-3",
    "D-4",
    "D-12",
    "Tomita-1",
    "Tomita-2",
    "Tomita-3",
    "Tomita-4",
    "Tomita-5",
    "Tomita-6",
    "Tomita-7",
    "aa*bb*cc*dd*ee*",
    "{a,b}*d{b,c}*",
    "(aa)*",
    "(aaaa)*",
    "(abab)*",
    "{0,1,2}*02*",
)
FORMAL_MAX_LENGTH = 600  # lengen.formal.languages.MAX_LENGTH: the longest string its count tables cover
PES = ("ape", "nope")


@dataclass(frozen=True)
class Arch:
    """One grid point."""

    n_layer: int
    n_head: int
    d_model: int
    lr: float

    @property
    def id(self) -> str:
        return f"{self.n_layer}l{self.n_head}h{self.d_model}d-lr{self.lr:g}"


@dataclass(frozen=True)
class FormalGrid:
    """The architecture grid searched per task (the paper: 3 x 3 x 3 x 2)."""

    n_layer: list[int]
    n_head: list[int]
    d_model: list[int]
    lr: list[float]

    def __post_init__(self):
        for k in ("n_layer", "n_head", "d_model", "lr"):
            values = getattr(self, k)
            if not values or any(v <= 0 for v in values):
                _fail(f"formal.grid.{k}", f"must be a non-empty list of positive numbers, got {values}")
            _unique(f"formal.grid.{k}", values)
        for h, d in itertools.product(self.n_head, self.d_model):
            if d % h:
                _fail("formal.grid", f"n_head={h} does not divide d_model={d}")

    def archs(self) -> list[Arch]:
        """Every grid point, smallest model first (the selection's tie-break), then larger lr first."""
        archs = [Arch(*p) for p in itertools.product(self.n_layer, self.n_head, self.d_model, self.lr)]
        return sorted(archs, key=lambda a: (a.n_layer * a.d_model**2, a.n_layer, a.n_head, -a.lr))


@dataclass(frozen=True)
class FormalTrain:
    steps: int
    batch_size: int
    eval_every: int  # early-stopping check on the in-distribution bin every this many steps
    early_stop: bool = True  # algorithmic tasks: stop once the in-distribution check is at 100% (the paper's rule)
    early_stop_languages: bool = False  # languages too (the paper: no early stop, a fixed budget)
    warmup_frac: float = 0.0
    decay_frac: float = 1.0  # the paper: linear decay over all steps; ours: cosine over this fraction
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    mlp_ratio: int = 4  # d_mlp = mlp_ratio * d_model (GPT-2's 4)
    init: str = "fan_in"  # weight init of lengen.model (fan_in | gpt2: std 0.02 everywhere)
    pos_init_std: float | None = 0.02  # APE table init std (GPT-2's 0.02); None: the init scheme's own
    reg_coef: float = 0.0  # positional-attention regularizer (APE only); the paper tries 1e-4, 1e-3
    precision: str = "32-true"
    threads: int = 2  # torch threads per run
    workers: int = 1  # runs trained side by side, each in its own process (threads each)

    def __post_init__(self):
        for k in ("steps", "batch_size", "eval_every", "mlp_ratio", "threads", "workers"):
            if getattr(self, k) < 1:
                _fail(f"formal.train.{k}", f"must be >= 1, got {getattr(self, k)}")
        for k in ("warmup_frac", "decay_frac"):
            if not 0 <= getattr(self, k) <= 1:
                _fail(f"formal.train.{k}", f"must lie in [0, 1], got {getattr(self, k)}")
        if self.reg_coef < 0:
            _fail("formal.train.reg_coef", f"must be >= 0, got {self.reg_coef}")
        if self.precision not in PRECISIONS:
            _fail("formal.train.precision", f"{self.precision!r} is not one of {PRECISIONS}")
        if self.init not in MODEL_INITS:
            _fail("formal.train.init", f"{self.init!r} is not one of {MODEL_INITS}")
        if self.pos_init_std is not None and not self.pos_init_std > 0:
            _fail("formal.train.pos_init_std", f"must be > 0 or null, got {self.pos_init_std}")


@dataclass(frozen=True)
class FormalConfig:
    algorithmic: list[str]
    languages: list[str]
    pos_encodings: list[str]
    bins: list[list[int]]
    n_eval: int
    n_eval_during: int
    data_seed: int
    seeds: int
    vocab_size: int
    grid: FormalGrid
    train: FormalTrain

    def __post_init__(self):
        for t in self.algorithmic:
            if t not in FORMAL_ALGORITHMIC:
                _fail("formal.algorithmic", f"unknown task {t!r}; known: {sorted(FORMAL_ALGORITHMIC)}")
        for t in self.languages:
            if t not in FORMAL_LANGUAGES:
                _fail("formal.languages", f"unknown language {t!r}; known: {list(FORMAL_LANGUAGES)}")
        if not self.algorithmic and not self.languages:
            _fail("formal", "no tasks: list some algorithmic tasks or languages")
        for pe in self.pos_encodings:
            if pe not in PES:
                _fail("formal.pos_encodings", f"{pe!r} is not one of {PES}")
        if not self.bins or any(len(b) != 2 or not 1 <= b[0] <= b[1] for b in self.bins):
            _fail("formal.bins", f"must be a list of [lo, hi] with 1 <= lo <= hi, got {self.bins}")
        if any(a[1] >= b[0] for a, b in zip(self.bins, self.bins[1:])):
            _fail("formal.bins", f"must be increasing and disjoint, got {self.bins}")
        if self.bins[-1][1] > FORMAL_MAX_LENGTH:
            _fail("formal.bins", f"the last bin ends at {self.bins[-1][1]} > {FORMAL_MAX_LENGTH} (language tables)")
        if {"unique_copy", "sort"} & set(self.algorithmic) and self.vocab_size < self.bins[-1][1]:
            _fail(
                "formal.vocab_size",
                f"{self.vocab_size} < longest input {self.bins[-1][1]}: unique copy and "
                "sort need that many distinct tokens",
            )
        for k in ("n_eval", "n_eval_during", "seeds"):
            if getattr(self, k) < 1:
                _fail(f"formal.{k}", f"must be >= 1, got {getattr(self, k)}")
        for k in ("algorithmic", "languages", "pos_encodings"):
            _unique(f"formal.{k}", getattr(self, k))
        if self.n_eval_during > self.n_eval:
            _fail(
                "formal.n_eval_during",
                f"{self.n_eval_during} > n_eval {self.n_eval}: the check is a prefix of the in-distribution set",
            )
        _positive("formal.data_seed", self.data_seed, allow_zero=True)

    @property
    def tasks(self) -> list[str]:
        return [*self.algorithmic, *self.languages]

    @property
    def train_bin(self) -> tuple[int, int]:
        return tuple(self.bins[0])

    @property
    def max_length(self) -> int:
        return self.bins[-1][1]
