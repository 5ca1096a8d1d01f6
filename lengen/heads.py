"""Attention-head reuse: do a main task and its auxiliaries use the same heads, and does it track transfer?

The paper (Extrapolation by Association, appendix on circuit sharing) claims that length-generalization
transfer goes with the main and auxiliary tasks re-using the same attention heads, measured two ways,
across training checkpoints. This module measures both on every kept checkpoint of the analysed runs
and correlates them with the run's generalization gap at that checkpoint.

Read top to bottom: config -> model interface -> inputs -> one task's probe (attention + mean-ablation
map) -> comparing two tasks -> statistics -> the driver over runs and checkpoints -> tables -> figures.

**Inputs and alignment.** For a pair (main task, auxiliary task) the analysed lengths are
``round(f * L)`` for each ``f`` in ``heads.length_fractions``, where ``L = min(main's, aux's maximum
training length)``: lengths at which *both* tasks are in-distribution (cpu profile: L = 8, f = 0.5, 1
-> lengths 4 and 8). At each length each task gets ``heads.n_examples`` examples of its evaluation
partition (``lengen.data.make_eval_set``: the first examples of the evaluation set the training runs
score). Sequences are the training format ``<bos> <marker> prompt target <eos>``, fed teacher-forced
(the input is the sequence without its last token). Related tasks of a group share the format and,
at equal length, the token count (``4321+789=12220`` vs ``4321+789=11110``); where they do not (the
control copy-first-op answers one digit shorter; maze prompts vary), positions are aligned from the
start and compared over the common window of ``T*`` positions, ``T*`` = the shortest input of the two
batches. Because attention is causal, a query row inside the window never sees a key outside it.

**Metric 1, attention difference.** Per task, average the attention pattern over its examples
(``Ā`` of shape layers x heads x T* x T*). Per head,
``D(l, h) = Σ_{q<T*} Σ_{k<T*} |Ā_main[l,h,q,k] − Ā_aux[l,h,q,k]| / T*``: the paper's summed absolute
difference over all query/key positions of prompt and answer, divided by the number of query rows so
it is comparable across lengths (each row is a distribution, so D is in [0, 2]; the division is a
constant per group and changes no rank correlation). Aggregate: the mean over heads, then over lengths.

**Metric 2, mean-ablation maps.** For every head (l, h) replace its output (the per-head attention
output before ``o_proj``) by its *per-position batch mean* over the task's examples (mean over the
examples whose input reaches that position), run the batch, and record the drop in teacher-forced exact
match and in answer log-likelihood (mean log-probability per answer token, incl. ``<eos>``) against the
clean run: one layers x heads map per task and measure. Two tasks' maps are compared by the mean
absolute difference (the paper's metric), their Spearman rank correlation, and the overlap of their
top-k heads. Maps are averaged over the pair's lengths before comparing.

**Across checkpoints.** One point per (run, kept checkpoint): the metrics averaged over the group's
auxiliaries, and the run's generalization gap at that step (``lengen.evaluate.group_gap`` on the
records of that evaluation). Per category (arithmetic, strings, mazes, control) and position encoding,
Spearman's ρ between each metric and the gap with a percentile bootstrap CI (resampling points). A
difference metric "tracks" the gap when ρ's CI lies above 0 (a similarity metric: below 0).

**Random-head control.** Restrict the per-head differences (attention D, |exact-match drop
difference|, |log-likelihood drop difference|) to the k heads most important for the main task
(largest log-likelihood drop at that checkpoint) and to ``n_random_sets`` random sets of k heads (drawn
once per category, the same set for every point), and compare ρ of the top-k restriction with the
distribution of the random sets' ρ.

The metrics take any model with the :class:`HookedModel` interface (``lengen.model.Transformer`` and
the pretrained wrapper) and token batches from any formatter, so they run on both.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lengen import paths
from lengen.config import Config, DataConfig, GroupConfig, _build
from lengen.data import IGNORE, EvalExample, collate, format_example, make_eval_set
from lengen.evaluate import model_device
from lengen.tasks import Example, get_task

HEADS_DIR = paths.REPORTS_DIR / "heads"
RECORDS_SUBDIR, FIGURES_SUBDIR = "records", "figures"

# The paper's qualitative claims (appendix): does each kind of metric track the generalization gap?
CLAIMS: dict[str, dict[str, str]] = {
    "arithmetic": {"attention": "tracks", "ablation": "tracks"},
    "strings": {"attention": "does not track", "ablation": "tracks"},
    "control": {"attention": "does not track", "ablation": "does not track"},
    "mazes": {"attention": "not stated", "ablation": "not stated"},
}

# Per-point metrics correlated with the gap: name -> (kind, expected sign of ρ if it tracks, meaning).
# Differences should rise with the gap (+1); similarities should fall (-1).
METRICS: dict[str, tuple[str, int, str]] = {
    "attn_diff": ("attention", +1, "attention-matrix difference, mean over heads"),
    "em_mad": ("ablation", +1, "mean |exact-match drop difference| over heads"),
    "ll_mad": ("ablation", +1, "mean |log-likelihood drop difference| over heads"),
    "em_rank": ("ablation", -1, "Spearman correlation of the exact-match maps"),
    "ll_rank": ("ablation", -1, "Spearman correlation of the log-likelihood maps"),
    "em_topk": ("ablation", -1, "top-k head overlap of the exact-match maps"),
    "ll_topk": ("ablation", -1, "top-k head overlap of the log-likelihood maps"),
}
# Per-head differences the random-head control restricts to a head set.
HEAD_MEASURES = {"attn_diff": "attention", "em_diff": "ablation", "ll_diff": "ablation"}


# ----------------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class HeadsConfig:
    """The ``heads:`` section of params.yaml."""

    n_examples: int  # examples per (task, length): mean patterns, batch means, exact match
    length_fractions: list[float]  # analysed lengths round(f * L), L = min(main, aux) max training length
    max_checkpoints: int  # kept checkpoints per run, evenly spaced over training, the last included
    top_k: int  # heads in the top-k overlap and in the random-head control
    n_random_sets: int  # random head sets of size top_k in the control
    n_bootstrap: int  # bootstrap resamples of the points for ρ's 95% CI
    min_points: int  # fewer (run, checkpoint) points than this: no verdict ("too few points")
    seed: int  # random head sets and bootstrap
    groups: dict[str, list[str]]  # category (a key of CLAIMS) -> groups analysed in it

    def __post_init__(self):
        for k in ("max_checkpoints", "top_k", "n_random_sets", "n_bootstrap"):
            if getattr(self, k) < 1:
                raise ValueError(f"params: heads.{k}: must be >= 1, got {getattr(self, k)}")
        if self.n_examples < 2:  # a batch mean over one example is the example: ablation would be a no-op
            raise ValueError(f"params: heads.n_examples: must be >= 2, got {self.n_examples}")
        if self.min_points < 3:
            raise ValueError(f"params: heads.min_points: must be >= 3 (a rank correlation of 2 points is ±1), "
                             f"got {self.min_points}")
        if not self.length_fractions or not all(0 < f <= 1 for f in self.length_fractions):
            raise ValueError(f"params: heads.length_fractions: need values in (0, 1], got {self.length_fractions}")
        unknown = sorted(set(self.groups) - set(CLAIMS))
        if unknown:
            raise ValueError(f"params: heads.groups: unknown category {unknown}; allowed: {sorted(CLAIMS)}")
        seen: dict[str, str] = {}
        for cat, names in self.groups.items():
            for g in names:
                if g in seen:
                    raise ValueError(f"params: heads.groups: group {g!r} is in both {seen[g]!r} and {cat!r}")
                seen[g] = cat

    def category(self, group: str) -> str | None:
        return next((c for c, names in self.groups.items() if group in names), None)


def heads_config(cfg: Config) -> HeadsConfig:
    """Parse and check ``cfg.extra['heads']`` against the config's groups.

    A group named here but not defined in ``groups`` or not trained in ``experiment.groups`` is allowed
    (it is reported as "not run"); a defined group without auxiliaries is an error (it has no gap).
    """
    if "heads" not in cfg.extra:
        raise ValueError("params: heads: missing section (see profiles/cpu.yaml)")
    hc = _build(HeadsConfig, cfg.extra["heads"], "heads")
    for names in hc.groups.values():
        for g in names:
            if g in cfg.groups and not cfg.groups[g].aux:
                raise ValueError(f"params: heads.groups: {g!r} has no auxiliary task, so nothing to compare")
    return hc


# ----------------------------------------------------------------------------------------------------
# The model interface


class ModelShape(Protocol):
    n_layer: int
    n_head: int


class HookedModel(Protocol):
    """What the metrics need from a model (``lengen.model.Transformer``, the pretrained wrapper).

    ``run_with_cache(idx)`` returns logits (B, T, vocab) and a cache with ``blocks.{l}.attn.pattern``
    (B, n_head, T, T) and ``blocks.{l}.attn.head_out`` (B, n_head, T, head_dim) for every layer;
    ``replace_heads({(l, h): value})`` is a context manager within which ``run_with_cache`` replaces head
    (l, h)'s output (before the output projection) by ``value``, broadcast to (B, T, head_dim).
    """

    cfg: ModelShape

    def run_with_cache(self, idx: Tensor) -> tuple[Tensor, dict[str, Tensor]]: ...

    def replace_heads(self, replacements: dict[tuple[int, int], Tensor]) -> AbstractContextManager[None]: ...


# ----------------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class TaskBatch:
    """One task's examples at one length, teacher-forced and right-padded."""

    input_ids: Tensor  # (B, T)
    labels: Tensor  # (B, T): the next token on answer positions (target + eos), IGNORE elsewhere
    n_tokens: Tensor  # (B,) unpadded input length of each example

    @property
    def window(self) -> int:
        """T*: positions every example reaches (the alignment window)."""
        return int(self.n_tokens.min())


Formatter = Callable[[str, Example], tuple[list[int], int]]


def task_batch(examples: list[EvalExample], fmt: Formatter | None = None, pad_id: int | None = None) -> TaskBatch:
    """Format examples like training does (``fmt``: another model's formatter, e.g. the pretrained one's).

    >>> from lengen.data import EvalExample
    >>> b = task_batch([EvalExample("reverse_add", 2, "12+34=", "460")])
    >>> b.input_ids.shape, int(b.n_tokens[0])   # <bos> <reverse_add> 1 2 + 3 4 = 4 6 0 (eos is only a label)
    (torch.Size([1, 11]), 11)
    """
    from lengen.tokenizer import default_tokenizer

    fmt = fmt or (lambda task, ex: format_example(task, ex))
    pad_id = default_tokenizer().pad_id if pad_id is None else pad_id
    seqs = [fmt(e.task, Example(e.prompt, e.target)) for e in examples]
    b = collate(seqs, pad_id)
    return TaskBatch(b["input_ids"], b["labels"], torch.tensor([len(ids) - 1 for ids, _ in seqs]))


def pair_lengths(group: GroupConfig, aux: str, fractions: list[float]) -> list[int]:
    """Lengths at which (main, aux) are compared: round(f * L), L = the shorter maximum training length.

    >>> from lengen.config import GroupConfig
    >>> g = GroupConfig(main={"reverse_add": 8}, aux={"no_carry": 16}, eval_max=24)
    >>> pair_lengths(g, "no_carry", [0.5, 1.0])
    [4, 8]
    """
    L = min(group.main_max, group.aux[aux])
    lo = max(get_task(group.main_task).min_length, get_task(aux).min_length)
    return sorted({max(lo, round(f * L)) for f in fractions})


def probe_inputs(group: GroupConfig, hc: HeadsConfig, data: DataConfig) -> dict[tuple[str, int], TaskBatch]:
    """Every (task, length) batch the group's pairs need, from the evaluation partition."""
    keys = set()
    for aux in group.aux:
        for length in pair_lengths(group, aux, hc.length_fractions):
            keys |= {(group.main_task, length), (aux, length)}
    return {(t, n): task_batch(make_eval_set(t, n, hc.n_examples, data.seed, data.holdout_modulus))
            for t, n in sorted(keys)}


# ----------------------------------------------------------------------------------------------------
# One task: mean attention pattern and mean-ablation maps


@dataclass(frozen=True)
class TaskProbe:
    pattern: Tensor  # (n_layer, n_head, T*, T*) attention averaged over the examples
    exact_match: float  # clean teacher-forced exact match
    loglik: float  # clean mean log-probability per answer token (nats)
    em_drop: np.ndarray  # (n_layer, n_head): exact match lost when the head is mean-ablated
    ll_drop: np.ndarray  # (n_layer, n_head): log-likelihood lost (nats per answer token)


def answer_scores(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per example: exact match of every answer position (argmax) and mean answer log-probability.

    >>> logits = torch.tensor([[[0.0, 9.0], [9.0, 0.0]]])             # predicts 1, then 0
    >>> em, ll = answer_scores(logits, torch.tensor([[1, 1]]))
    >>> bool(em[0]), round(float(ll[0]), 2)                            # second token wrong
    (False, -4.5)
    """
    mask = labels != IGNORE
    logp = logits.float().log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]  # (B, T)
    loglik = (logp * mask).sum(1) / mask.sum(1).clamp(min=1)
    exact = ((logits.argmax(-1) == labels) | ~mask).all(1)
    return exact, loglik


def head_means(cache: dict[str, Tensor], n_tokens: Tensor, n_layer: int) -> list[Tensor]:
    """Per layer, the per-position batch mean of every head's output: (n_head, T, head_dim).

    Position t averages only the examples whose input reaches t (padding never enters a mean); the mean
    at positions no example reaches is 0 and never scored.
    """
    out = []
    for layer in range(n_layer):
        z = cache[f"blocks.{layer}.attn.head_out"].float()  # (B, nh, T, hs)
        valid = (torch.arange(z.shape[2], device=z.device)[None, :] < n_tokens.to(z.device)[:, None]).float()
        total = (z * valid[:, None, :, None]).sum(0)  # (nh, T, hs)
        out.append(total / valid.sum(0).clamp(min=1)[None, :, None])
    return out


@torch.no_grad()
def probe_task(model: HookedModel, batch: TaskBatch) -> TaskProbe:
    """The clean run's mean attention, then one forward per head with that head mean-ablated.

    Runs in the model's own precision (fp32 here; training evaluates under bf16 autocast, so the clean
    exact match can differ from the records by a few examples).
    """
    dev = model_device(model)
    x, y = batch.input_ids.to(dev), batch.labels.to(dev)
    n_layer, n_head = model.cfg.n_layer, model.cfg.n_head
    logits, cache = model.run_with_cache(x)
    exact, loglik = answer_scores(logits, y)
    w = batch.window
    pattern = torch.stack([cache[f"blocks.{l}.attn.pattern"][:, :, :w, :w].float().mean(0)
                           for l in range(n_layer)]).cpu()  # (nl, nh, T*, T*)
    means = head_means(cache, batch.n_tokens, n_layer)
    em_drop, ll_drop = np.zeros((n_layer, n_head)), np.zeros((n_layer, n_head))
    for layer in range(n_layer):
        for head in range(n_head):
            with model.replace_heads({(layer, head): means[layer][head]}):
                ablated, _ = model.run_with_cache(x)
            a_exact, a_loglik = answer_scores(ablated, y)
            em_drop[layer, head] = float(exact.float().mean() - a_exact.float().mean())
            ll_drop[layer, head] = float(loglik.mean() - a_loglik.mean())
    return TaskProbe(pattern, float(exact.float().mean()), float(loglik.mean()), em_drop, ll_drop)


# ----------------------------------------------------------------------------------------------------
# Comparing two tasks


def attention_difference(a: Tensor, b: Tensor) -> np.ndarray:
    """Per head, Σ over the common window's query/key positions of |a − b|, divided by the window's
    number of query rows: (n_layer, n_head) values in [0, 2].

    >>> eye, first = torch.eye(2)[None, None], torch.tensor([[1.0, 0.0], [1.0, 0.0]])[None, None]
    >>> attention_difference(eye, first)        # row 0 equal, row 1 disjoint (2): (0 + 2) / 2 rows
    array([[1.]])
    """
    w = min(a.shape[-1], b.shape[-1])
    diff = (a[..., :w, :w].float() - b[..., :w, :w].float()).abs().sum((-1, -2)) / w
    return diff.numpy().astype(float)


def top_heads(importance: np.ndarray, k: int) -> set[int]:
    """Flat indices (layer * n_head + head) of the k largest entries; ties go to the lower index."""
    flat = np.asarray(importance, float).ravel()
    return set(np.argsort(-flat, kind="stable")[:k].tolist())


def compare_maps(a: np.ndarray, b: np.ndarray, k: int) -> dict[str, float]:
    """Mean absolute difference, Spearman rank correlation and top-k overlap of two head maps.

    >>> m = np.array([[0.9, 0.0], [0.1, 0.0]])
    >>> {name: round(v, 3) for name, v in compare_maps(m, m[:, ::-1], k=1).items()}   # heads swapped
    {'mad': 0.5, 'rank': -0.889, 'topk': 0.0}
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    return {"mad": float(np.abs(a - b).mean()), "rank": spearman(a.ravel(), b.ravel()),
            "topk": len(top_heads(a, k) & top_heads(b, k)) / k}


# ----------------------------------------------------------------------------------------------------
# Statistics


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis (rows of a 2-D array), ties get their average rank (as scipy's
    ``rankdata``): ``rankdata([10, 30, 20, 20]) -> [1, 4, 2.5, 2.5]``."""
    x = np.asarray(x, float)
    return pd.DataFrame(np.atleast_2d(x)).rank(axis=1).to_numpy().reshape(x.shape)


def _rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair of two (m, n) arrays; NaN where a row is constant."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    den = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


def spearman(x, y) -> float:
    """Spearman's ρ (Pearson of the ranks); NaN for fewer than 3 points or a constant variable.

    >>> spearman([1, 2, 3, 4], [1, 8, 27, 64]), spearman([1, 2, 3], [5, 5, 5])
    (1.0, nan)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return float("nan")
    return float(_rowwise_spearman(x[None], y[None])[0])


def bootstrap_spearman(x, y, n_bootstrap: int, rng: np.random.Generator, level: float = 0.95
                       ) -> tuple[float, float, float]:
    """ρ and its percentile bootstrap CI, resampling the points with replacement.

    Resamples where ρ is undefined (e.g. all copies of one point) are dropped; if more than half are,
    the CI is NaN. Checkpoints of one run are not independent, so the CI is optimistic when a few runs
    give many points (see the README).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = spearman(x, y)
    if np.isnan(rho):
        return rho, float("nan"), float("nan")
    idx = rng.integers(0, len(x), size=(n_bootstrap, len(x)))
    boots = _rowwise_spearman(x[idx], y[idx])
    boots = boots[~np.isnan(boots)]
    if len(boots) < n_bootstrap / 2:
        return rho, float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return rho, float(lo), float(hi)


def verdict(rho: float, lo: float, hi: float, sign: int, n_points: int, min_points: int) -> str:
    """'tracks' (the CI excludes 0 on the expected side), 'no relation' (the CI holds 0), 'opposite',
    or why no verdict: too few points, or ρ undefined.

    >>> verdict(0.8, 0.5, 0.95, sign=+1, n_points=20, min_points=8)
    'tracks'
    >>> verdict(0.8, 0.5, 0.95, sign=-1, n_points=20, min_points=8)   # a similarity should fall
    'opposite'
    """
    if n_points < min_points:
        return f"too few points ({n_points} < {min_points})"
    if np.isnan(rho) or np.isnan(lo):
        return "undefined (metric or gap constant)"
    lo, hi = sorted((sign * lo, sign * hi))
    if lo > 0:
        return "tracks"
    return "opposite" if hi < 0 else "no relation"


def agrees(claim: str, found: str) -> str:
    """Does a verdict agree with the paper's claim ('tracks' / 'does not track')? '—' if either is open."""
    if claim == "not stated" or found not in ("tracks", "no relation", "opposite"):
        return "—"
    return "yes" if {"tracks": "tracks", "does not track": "no relation"}[claim] == found else "no"


# ----------------------------------------------------------------------------------------------------
# The driver: every kept checkpoint of every analysed run

KEYS = ("run_id", "group", "category", "seed", "pos_encoding", "step")  # one (run, checkpoint)


def checkpoint_paths(run_dir: Path, max_checkpoints: int) -> list[tuple[int, Path]]:
    """(step, path) of the kept checkpoints ``step=XXXXXX.ckpt``, at most ``max_checkpoints`` evenly
    spaced over training, the last one always included."""
    found = sorted((int(m.group(1)), p) for p in Path(run_dir, "checkpoints").glob("step=*.ckpt")
                   if (m := re.fullmatch(r"step=(\d+)\.ckpt", p.name)))
    if len(found) <= max_checkpoints:
        return found
    pick = np.unique(np.round(np.linspace(len(found) - 1, 0, max_checkpoints)).astype(int))
    return [found[i] for i in pick]


def analyse_checkpoint(model: HookedModel, group: GroupConfig, inputs: dict[tuple[str, int], TaskBatch]
                       ) -> tuple[list[dict], list[dict]]:
    """Tidy rows for one checkpoint: ablation (task, length, layer, head) and attention difference
    (aux, length, layer, head). Each (task, length) probe is computed once and shared by the pairs."""
    probes = {key: probe_task(model, batch) for key, batch in inputs.items()}
    n_layer, n_head = model.cfg.n_layer, model.cfg.n_head
    every_head = [(l, h) for l in range(n_layer) for h in range(n_head)]
    ablation = [dict(task=t, role=group.role(t), length=n, layer=l, head=h, exact_match=p.exact_match,
                     loglik=p.loglik, em_drop=p.em_drop[l, h], ll_drop=p.ll_drop[l, h])
                for (t, n), p in probes.items() for l, h in every_head]
    attention = []
    for (t, n), p in probes.items():
        if t == group.main_task:
            continue
        d = attention_difference(probes[(group.main_task, n)].pattern, p.pattern)
        attention += [dict(main=group.main_task, aux=t, length=n, layer=l, head=h, attn_diff=d[l, h])
                      for l, h in every_head]
    return ablation, attention


@dataclass
class HeadRecords:
    """Tidy records of the analysis (what ``write_records`` saves)."""

    ablation: pd.DataFrame  # KEYS + task, role, length, layer, head, exact_match, loglik, em_drop, ll_drop
    attention: pd.DataFrame  # KEYS + main, aux, length, layer, head, attn_diff
    checkpoints: pd.DataFrame  # KEYS + gap, wall_s
    coverage: pd.DataFrame  # category, group, status, runs


def heads_runs(cfg: Config, group: str) -> list:
    """The trained runs of a group that the head analysis reads: the experiment's and the ablation stage's
    (a profile may train a control or a group at fewer seeds there), with the experiment's position
    encodings only, so that an ablation's NoPE runs are not pooled with RoPE runs."""
    pes = set(cfg.experiment.pos_encodings)
    return [r for r in cfg.runs() + cfg.ablation_runs() if r.group_name == group and r.pos_encoding in pes]


def coverage(cfg: Config, hc: HeadsConfig) -> pd.DataFrame:
    """Which configured groups are analysed, and why the others are not."""
    rows = []
    for cat, names in hc.groups.items():
        for g in names:
            if g not in cfg.groups:
                status = "not run (group not defined in this profile)"
            elif not heads_runs(cfg, g):
                status = "not run (in neither experiment.groups nor ablation.groups)"
            else:
                status = "analysed"
            rows.append(dict(category=cat, group=g, status=status, runs=len(heads_runs(cfg, g))))
    for g in dict.fromkeys(r.group_name for r in cfg.runs() + cfg.ablation_runs()):
        if cfg.groups[g].aux and hc.category(g) is None:
            rows.append(dict(category="—", group=g, status="not analysed (in no heads.groups category)", runs=0))
    return pd.DataFrame(rows, columns=["category", "group", "status", "runs"])


def analyse(cfg: Config, hc: HeadsConfig, runs_dir: Path | None = None, records_dir: Path | None = None,
            threads: int | None = None, progress: bool = True) -> HeadRecords:
    """Probe every kept checkpoint (up to ``max_checkpoints`` per run) of every analysed run."""
    from lengen.evaluate import group_gap
    from lengen.train import load_records, load_system

    torch.set_num_threads(threads or cfg.train.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    runs_dir = Path(runs_dir or paths.RUNS_DIR)
    cov = coverage(cfg, hc)
    ablation, attention, checkpoints = [], [], []
    for g in cov[cov.status == "analysed"].group:
        group, category = cfg.groups[g], hc.category(g)
        inputs = probe_inputs(group, hc, cfg.data)
        for run in heads_runs(cfg, g):
            records = load_records([run.run_id], records_dir)
            ckpts = checkpoint_paths(runs_dir / run.run_id, hc.max_checkpoints)
            if not ckpts:
                raise FileNotFoundError(f"no kept checkpoints in {runs_dir / run.run_id}/checkpoints; "
                                        "train the run first (dvc repro)")
            for step, path in ckpts:
                t0 = time.perf_counter()
                model = load_system(path).model.eval().to(device)
                abl, att = analyse_checkpoint(model, group, inputs)
                key = dict(run_id=run.run_id, group=g, category=category, seed=run.seed,
                           pos_encoding=run.pos_encoding, step=step)
                ablation += [{**key, **r} for r in abl]
                attention += [{**key, **r} for r in att]
                at_step = records[records.step == step]
                if at_step.empty:
                    raise ValueError(f"{run.run_id}: checkpoint {path.name} has no records at step {step}")
                gap = group_gap(at_step.to_dict("records"), group)
                checkpoints.append({**key, "gap": gap, "wall_s": time.perf_counter() - t0})
                if progress:
                    print(f"[heads] {run.run_id} step {step}: gap {gap:.3f} "
                          f"({checkpoints[-1]['wall_s']:.1f}s)", flush=True)
    return HeadRecords(pd.DataFrame(ablation, columns=[*KEYS, "task", "role", "length", "layer", "head",
                                                       "exact_match", "loglik", "em_drop", "ll_drop"]),
                       pd.DataFrame(attention, columns=[*KEYS, "main", "aux", "length", "layer", "head",
                                                        "attn_diff"]),
                       pd.DataFrame(checkpoints, columns=[*KEYS, "gap", "wall_s"]), cov)


# ----------------------------------------------------------------------------------------------------
# Tables from the tidy records


def _head_grid(df: pd.DataFrame, value: str) -> np.ndarray:
    """(n_layer, n_head) array of ``value`` averaged over the other rows (lengths)."""
    m = df.groupby(["layer", "head"])[value].mean().unstack("head")
    return m.to_numpy(float)


def pair_heads(rec: HeadRecords) -> dict[tuple, dict[str, np.ndarray]]:
    """Per (run, checkpoint, aux): the per-head arrays the pair metrics are made of, each averaged over
    the pair's lengths: the main and aux maps ('main_em', 'aux_em', 'main_ll', 'aux_ll') and the
    attention difference ('attn_diff'), all (n_layer, n_head)."""
    out = {}
    abl = rec.ablation.groupby([*KEYS, "task"])
    for key, att in rec.attention.groupby([*KEYS, "aux"]):
        *point, aux = key
        lengths = set(att.length)
        main = abl.get_group((*point, att.main.iloc[0]))
        other = abl.get_group((*point, aux))
        main, other = main[main.length.isin(lengths)], other[other.length.isin(lengths)]
        out[key] = {"attn_diff": _head_grid(att, "attn_diff"),
                    "main_em": _head_grid(main, "em_drop"), "aux_em": _head_grid(other, "em_drop"),
                    "main_ll": _head_grid(main, "ll_drop"), "aux_ll": _head_grid(other, "ll_drop"),
                    "main_exact_match": main.groupby("length").exact_match.first().mean(),
                    "aux_exact_match": other.groupby("length").exact_match.first().mean()}
    return out


def pairs_table(rec: HeadRecords, top_k: int) -> pd.DataFrame:
    """One row per (run, checkpoint, auxiliary): the run's gap at that step and the pair's metrics."""
    gaps = rec.checkpoints.set_index(list(KEYS)).gap
    rows = []
    for key, a in pair_heads(rec).items():
        *point, aux = key
        em, ll = compare_maps(a["main_em"], a["aux_em"], top_k), compare_maps(a["main_ll"], a["aux_ll"], top_k)
        rows.append(dict(zip(KEYS, point), aux=aux, gap=gaps.loc[tuple(point)],
                         main_exact_match=a["main_exact_match"], aux_exact_match=a["aux_exact_match"],
                         attn_diff=a["attn_diff"].mean(), em_mad=em["mad"], ll_mad=ll["mad"],
                         em_rank=em["rank"], ll_rank=ll["rank"], em_topk=em["topk"], ll_topk=ll["topk"]))
    return pd.DataFrame(rows, columns=[*KEYS, "aux", "gap", "main_exact_match", "aux_exact_match", *METRICS])


def points_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """One point per (run, checkpoint): metrics averaged over the group's auxiliaries."""
    cols = ["gap", "main_exact_match", "aux_exact_match", *METRICS]
    return pairs.groupby(list(KEYS), as_index=False)[cols].mean()


def correlation_table(points: pd.DataFrame, hc: HeadsConfig, cov: pd.DataFrame) -> pd.DataFrame:
    """Spearman ρ (bootstrap 95% CI) of each metric with the gap, per category and position encoding,
    with the paper's claim beside it; configured categories without runs get 'not run' rows.

    ``n_points`` counts the points where the metric is defined (a rank correlation of two maps is not
    when one map is constant, e.g. all-zero exact-match drops of a task the model has not learned).
    Below ``min_points`` ρ is reported without a CI (resampling 4 points gives degenerate intervals
    such as [1, 1]) and without a verdict.
    """
    rng = np.random.default_rng(hc.seed)
    rows = []
    for cat in hc.groups:
        sub = points[points.category == cat]
        groups = ", ".join(cov[cov.category == cat].group)
        for pe, df in list(sub.groupby("pos_encoding")) or [("—", sub)]:
            for metric, (kind, sign, _) in METRICS.items():
                ok = df[["gap", metric]].dropna()
                rho = lo = hi = float("nan")
                if not len(df):
                    found = "not run"
                elif len(df) >= hc.min_points > len(ok):
                    found = f"undefined at {len(df) - len(ok)} of {len(df)} points"
                elif len(ok) < hc.min_points:  # ρ for the record; a bootstrap CI of a few points is ±1 noise
                    rho = spearman(ok[metric], ok.gap)
                    found = verdict(rho, lo, hi, sign, len(ok), hc.min_points)
                else:
                    rho, lo, hi = bootstrap_spearman(ok[metric], ok.gap, hc.n_bootstrap, rng)
                    found = verdict(rho, lo, hi, sign, len(ok), hc.min_points)
                claim = CLAIMS[cat][kind]
                rows.append(dict(category=cat, pos_encoding=pe, metric=metric, kind=kind, groups=groups,
                                 runs=df.run_id.nunique(), n_points=len(ok), rho=rho, ci_low=lo, ci_high=hi,
                                 expected_sign="+" if sign > 0 else "−", found=found, paper=claim,
                                 agrees=agrees(claim, found)))
    return pd.DataFrame(rows)


def _point_head_diffs(rec: HeadRecords, k: int) -> dict[tuple, dict[str, np.ndarray]]:
    """Per (run, checkpoint): the flat per-head differences of HEAD_MEASURES, each averaged over the
    auxiliaries, and 'top' — the k heads most important to the main task (largest log-likelihood drop)."""
    by_point: dict[tuple, list[dict]] = {}
    for key, v in pair_heads(rec).items():
        by_point.setdefault(key[:-1], []).append(v)
    out = {}
    for point, pairs in by_point.items():
        out[point] = {
            "attn_diff": np.mean([v["attn_diff"].ravel() for v in pairs], 0),
            "em_diff": np.mean([np.abs(v["main_em"] - v["aux_em"]).ravel() for v in pairs], 0),
            "ll_diff": np.mean([np.abs(v["main_ll"] - v["aux_ll"]).ravel() for v in pairs], 0),
            "top": np.array(sorted(top_heads(pairs[0]["main_ll"], k))),  # the main map is shared by the pairs
        }
    return out


def random_head_control(rec: HeadRecords, hc: HeadsConfig) -> pd.DataFrame:
    """ρ with the gap of per-head differences restricted to the main task's top-k heads, vs restricted
    to random head sets of the same size (drawn once per category, the same sets for every point).
    ``p_random``: the fraction of random sets whose ρ is at least the top-k set's (small: the important
    heads carry more of the relation than arbitrary heads)."""
    rng = np.random.default_rng(hc.seed + 1)  # not the bootstrap's stream
    rows = []
    if not len(rec.checkpoints):
        return pd.DataFrame(rows, columns=_CONTROL_COLUMNS)
    n_heads = int(rec.ablation.layer.max() + 1) * int(rec.ablation["head"].max() + 1)
    k = min(hc.top_k, n_heads)
    diffs = _point_head_diffs(rec, k)
    for (cat, pe), ckpts in rec.checkpoints.groupby(["category", "pos_encoding"]):
        points = [tuple(r) for r in ckpts[list(KEYS)].itertuples(index=False)]
        gap = ckpts.gap.to_numpy(float)
        random_sets = np.array([rng.choice(n_heads, size=k, replace=False) for _ in range(hc.n_random_sets)])
        top = np.array([diffs[p]["top"] for p in points])  # (points, k)
        for measure, kind in HEAD_MEASURES.items():
            d = np.array([diffs[p][measure] for p in points])  # (points, heads)
            rho_top = spearman(np.take_along_axis(d, top, 1).mean(1), gap)
            rho_rand = np.array([spearman(d[:, s].mean(1), gap) for s in random_sets])
            rho_rand = rho_rand[~np.isnan(rho_rand)]
            some = len(rho_rand) > 0
            rows.append(dict(category=cat, pos_encoding=pe, measure=measure, kind=kind, k=k, n_points=len(points),
                             rho_topk=rho_top, rho_random_mean=rho_rand.mean() if some else np.nan,
                             rho_random_q025=np.quantile(rho_rand, 0.025) if some else np.nan,
                             rho_random_q975=np.quantile(rho_rand, 0.975) if some else np.nan,
                             p_random=(rho_rand >= rho_top).mean() if some and not np.isnan(rho_top) else np.nan))
    return pd.DataFrame(rows, columns=_CONTROL_COLUMNS)


_CONTROL_COLUMNS = ["category", "pos_encoding", "measure", "kind", "k", "n_points", "rho_topk", "rho_random_mean",
                    "rho_random_q025", "rho_random_q975", "p_random"]


def tables(rec: HeadRecords, hc: HeadsConfig) -> dict[str, pd.DataFrame]:
    """Every derived table: pairs, points, correlations (ρ per category and metric), random_heads."""
    pairs = pairs_table(rec, hc.top_k)
    points = points_table(pairs)
    return {"pairs": pairs, "points": points, "correlations": correlation_table(points, hc, rec.coverage),
            "random_heads": random_head_control(rec, hc)}


# ----------------------------------------------------------------------------------------------------
# Writing and reading the records


def write_records(rec: HeadRecords, tables: dict[str, pd.DataFrame], out_dir: Path | None = None) -> list[str]:
    """CSV per table under ``reports/heads/records/`` (DVC outs); returns the written paths."""
    d = Path(out_dir or HEADS_DIR) / RECORDS_SUBDIR
    d.mkdir(parents=True, exist_ok=True)
    frames = {"ablation": rec.ablation, "attention": rec.attention, "checkpoints": rec.checkpoints,
              "coverage": rec.coverage, **tables}
    written = []
    for name, df in frames.items():
        df.to_csv(d / f"{name}.csv", index=False)
        written.append(str((d / f"{name}.csv").relative_to(paths.PROJ_ROOT) if d.is_relative_to(paths.PROJ_ROOT)
                           else d / f"{name}.csv"))
    return written


def read_records(out_dir: Path | None = None) -> HeadRecords:
    """The tidy records back from CSV (figures and tables can be redrawn without the models)."""
    d = Path(out_dir or HEADS_DIR) / RECORDS_SUBDIR
    return HeadRecords(*(pd.read_csv(d / f"{n}.csv") for n in ("ablation", "attention", "checkpoints", "coverage")))


def _json_ready(df: pd.DataFrame) -> list[dict]:
    """Records with NaN as null (NaN is not valid JSON)."""
    return json.loads(df.to_json(orient="records"))


def write_summary(rec: HeadRecords, table: pd.DataFrame, control: pd.DataFrame, profile: str,
                  out_dir: Path | None = None) -> Path:
    """``reports/heads/summary.json`` (DVC metrics): ρ per category and metric, the control, timing."""
    p = Path(out_dir or HEADS_DIR) / "summary.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    summary = {"profile": profile, "checkpoints_analysed": len(rec.checkpoints),
               "wall_s": round(float(rec.checkpoints.wall_s.sum()), 1),
               "correlations": _json_ready(table), "random_heads": _json_ready(control),
               "coverage": _json_ready(rec.coverage)}
    p.write_text(json.dumps(summary, indent=2) + "\n")
    return p


# ----------------------------------------------------------------------------------------------------
# Figures and findings


def format_rho(rho: float, lo: float, hi: float, n: int) -> str:
    """'ρ = 0.62 [0.31, 0.83] (n = 20)', or without the CI where there is none.

    >>> format_rho(1.0, float("nan"), float("nan"), 4)
    'ρ = 1.00, no CI (n = 4)'
    """
    ci = f" [{lo:.2f}, {hi:.2f}]" if not np.isnan(lo) else ", no CI"
    return f"ρ = {rho:.2f}{ci} (n = {n})"


def plot_ablation_maps(rec: HeadRecords, run_id: str, value: str = "ll_drop", n_steps: int = 3):
    """Mean-ablation maps (layers x heads, averaged over the analysed lengths) of every task of one run
    at up to ``n_steps`` checkpoints (first, middle, last): rows = tasks, columns = checkpoints."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = rec.ablation[rec.ablation.run_id == run_id]
    steps = sorted(df.step.unique())
    steps = [steps[i] for i in sorted(set(np.round(np.linspace(0, len(steps) - 1, n_steps)).astype(int)))]
    tasks = list(df.sort_values("role", key=lambda r: r != "main").task.unique())  # main first
    vmax = max(float(df[value].abs().max()), 1e-9)
    fig, axes = plt.subplots(len(tasks), len(steps), figsize=(2.6 * len(steps) + 1, 2.3 * len(tasks)),
                             squeeze=False)
    for i, task in enumerate(tasks):
        for j, step in enumerate(steps):
            grid = _head_grid(df[(df.task == task) & (df.step == step)], value)
            sns.heatmap(grid, ax=axes[i, j], vmin=-vmax, vmax=vmax, cmap="RdBu_r", annot=grid.size <= 36,
                        fmt=".2f", cbar=j == len(steps) - 1, annot_kws={"fontsize": 7})
            axes[i, j].set(title=f"{task} · step {step}", xlabel="head", ylabel="layer" if j == 0 else "")
    label = {"ll_drop": "log-likelihood drop (nats/token)", "em_drop": "exact-match drop"}.get(value, value)
    fig.suptitle(f"{run_id}: mean-ablation maps, {label}", y=1.0)
    fig.tight_layout()
    return fig


def plot_metric_vs_gap(points: pd.DataFrame, table: pd.DataFrame,
                       metrics: tuple[str, ...] = ("attn_diff", "em_mad", "ll_mad")):
    """Scatter of each metric against the gap, one row per (category, position encoding), with a fitted
    least-squares line and ρ [95% CI] in the title."""
    import matplotlib.pyplot as plt

    cells = list(points.groupby(["category", "pos_encoding"]))
    fig, axes = plt.subplots(max(len(cells), 1), len(metrics), figsize=(4 * len(metrics), 3.3 * max(len(cells), 1)),
                             squeeze=False)
    for i, ((cat, pe), df) in enumerate(cells):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            for seed, s in df.groupby("seed"):
                ax.scatter(s[metric], s.gap, s=22, label=f"seed {seed}")
            ok = df[[metric, "gap"]].dropna()
            if len(ok) >= 2 and np.ptp(ok[metric]) > 0:
                slope, icpt = np.polyfit(ok[metric], ok.gap, 1)
                xs = np.linspace(ok[metric].min(), ok[metric].max(), 20)
                ax.plot(xs, slope * xs + icpt, c="k", lw=1)
            r = table[(table.category == cat) & (table.pos_encoding == pe) & (table.metric == metric)]
            if len(r):
                r = r.iloc[0]
                ax.set_title(f"{cat} ({pe}): {format_rho(r.rho, r.ci_low, r.ci_high, r.n_points)}", fontsize=9)
            ax.set(xlabel=metric, ylabel="generalization gap" if j == 0 else "")
        axes[i, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def ablation_map_figures(rec: HeadRecords) -> dict:
    """Ablation-map figures of one run per analysed group, for both drops, keyed by file name."""
    return {f"maps_{run_id}_{value}": plot_ablation_maps(rec, run_id, value)
            for run_id in rec.checkpoints.drop_duplicates("group").run_id for value in ("ll_drop", "em_drop")}


def save_figure(fig, name: str, out_dir: Path | None = None) -> str:
    d = Path(out_dir or HEADS_DIR) / FIGURES_SUBDIR
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.png"
    fig.savefig(p, dpi=110, bbox_inches="tight")
    return str(p.relative_to(paths.PROJ_ROOT) if p.is_relative_to(paths.PROJ_ROOT) else p)


def describe(table: pd.DataFrame, control: pd.DataFrame, rec: HeadRecords, points: pd.DataFrame) -> str:
    """Markdown findings with the measured numbers: per category, the paper's two metrics (and the
    log-likelihood variant) against its claim, whether the main task is learned where it is probed, then
    the random-head control and the cost."""
    lines = []
    for (cat, pe), df in table.groupby(["category", "pos_encoding"], sort=False):
        if (df.found == "not run").all():
            lines.append(f"- **{cat}**: not run ({df.groups.iloc[0] or 'no group configured'}).")
            continue
        parts = [f"{r.metric} {format_rho(r.rho, r.ci_low, r.ci_high, r.n_points)} → {r.found} (paper: {r.paper}; "
                 f"agrees: {r.agrees})" for r in df[df.metric.isin(("attn_diff", "em_mad", "ll_mad"))].itertuples()]
        pts = points[(points.category == cat) & (points.pos_encoding == pe)]
        last = pts[pts.step == pts.groupby("run_id").step.transform("max")]
        main_em = float(last.main_exact_match.mean())
        note = (f" The main task's exact match at the probed lengths is only {main_em:.2f} at the last checkpoint: "
                "it is not learned there, so the gap follows the auxiliaries' progress, not transfer."
                if main_em < 0.5 else "")
        lines.append(f"- **{cat}** ({pe}; {df.runs.iloc[0]} run(s), {len(pts)} points; groups "
                     f"{df.groups.iloc[0]}; gap {pts.gap.min():.2f}–{pts.gap.max():.2f}): " + "; ".join(parts) + "."
                     + note)
    for r in control.itertuples():
        lines.append(f"- Random-head control, {r.category} ({r.pos_encoding}), {r.measure} on the main task's "
                     f"top-{r.k} heads: ρ = {r.rho_topk:.2f} vs {r.rho_random_mean:.2f} "
                     f"[{r.rho_random_q025:.2f}, {r.rho_random_q975:.2f}] for random {r.k}-head sets "
                     f"(fraction of random sets with ρ ≥ top-k: {r.p_random:.2f}).")
    n, wall = len(rec.checkpoints), rec.checkpoints.wall_s.sum()
    lines.append(f"- Cost: {n} checkpoints in {wall:.0f} s ({wall / max(n, 1):.1f} s each).")
    return "\n".join(lines)
