"""Per-length evaluation, tidy records and the generalization gap.

Two ways to score a set, which agree (``tests/test_evaluate.py`` checks it on a trained toy model):

* :func:`teacher_forced` — one forward pass over prompt + target + ``<eos>``; an example is an exact
  match iff the argmax at every target position and at ``<eos>`` is right. Because ``<eos>`` is
  supervised, this equals greedy exact match: greedy decoding reproduces the target token by token as
  long as every argmax is right, and stops exactly there.
* :func:`greedy` — true autoregressive greedy decoding with the KV cache (prompts bucketed by length).

Records are tidy rows (one per run × task × length × step), written to CSV/JSON that DVC tracks.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

from lengen.data import IGNORE, EvalExample, collate, format_example
from lengen.tasks import Example
from lengen.tokenizer import Tokenizer, default_tokenizer

RECORD_FIELDS = ("run_id", "group", "task", "role", "length", "in_distribution", "n", "exact_match",
                 "token_accuracy", "step", "seed", "pos_encoding")


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 matrix products run natively on ``device``. On a CPU without it (AVX2 only, e.g.
    AMD Zen 2) PyTorch emulates them: a bf16 matmul was ~50x slower than fp32 there (README, Speed)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_native_bf16()


# oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) below its first bf16 ISA: with one set, bf16 is emulated even on
# a CPU whose flags list bf16 (capping kernels to AVX2 on an AVX-512 CPU: README, "The arithmetic recipe", run 22).
_ONEDNN_CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@functools.cache  # autocast_context asks on every batch: read the CPU flags once per process
def _cpu_native_bf16() -> bool:
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper() in _ONEDNN_CAPS_WITHOUT_BF16:
        return False
    try:
        flags = open("/proc/cpuinfo").read()
        return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))
    except OSError:  # not Linux: ask oneDNN
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``auto`` -> ``bf16-mixed`` where bf16 is native on ``device``, else ``32-true``; others unchanged."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if native_bf16(device) else "32-true"


def default_device() -> torch.device:
    """The device Lightning's ``accelerator="auto"`` picks for one process."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_context(precision: str, device: torch.device | str = "cpu"):
    """The autocast used in training, so evaluation scores the model as it trains."""
    precision = resolve_precision(precision, device)
    device_type = torch.device(device).type
    if precision.startswith("bf16"):
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision.startswith("16") and device_type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@dataclass
class SetScore:
    exact: np.ndarray  # (n,) bool: whole answer + eos right
    token_correct: int  # target tokens (incl. eos) predicted right
    token_total: int

    @property
    def exact_match(self) -> float:
        return float(self.exact.mean()) if len(self.exact) else float("nan")

    @property
    def token_accuracy(self) -> float:
        return self.token_correct / max(self.token_total, 1)


Formatter = Callable[[str, Example], tuple[list[int], int]]


def model_device(model) -> torch.device:
    """Where the model's weights live (CPU for a parameter-less stand-in, as in the head tests)."""
    params = getattr(model, "parameters", None)
    return next(params()).device if params is not None else torch.device("cpu")


def _teacher_forced_batches(model, examples: list[EvalExample], batch_size: int, fmt: Formatter | None,
                            pad_id: int | None):
    """Yield ``(pred, labels, mask)`` per batch of one teacher-forced forward pass, each ``(B, T)``."""
    fmt = fmt or (lambda task, ex: format_example(task, ex))
    pad_id = default_tokenizer().pad_id if pad_id is None else pad_id
    dev = model_device(model)
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        batch = collate([fmt(e.task, Example(e.prompt, e.target)) for e in chunk], pad_id)
        x, y = batch["input_ids"].to(dev), batch["labels"].to(dev)
        yield model(x).argmax(-1), y, y != IGNORE  # (B, T) each


@torch.no_grad()
def teacher_forced(model, examples: list[EvalExample], batch_size: int = 256,
                   fmt: Formatter | None = None, pad_id: int | None = None) -> SetScore:
    """Teacher-forced exact match in one forward pass per batch. ``model(input_ids) -> logits``."""
    exact, tok_ok, tok_n = [], 0, 0
    for pred, y, mask in _teacher_forced_batches(model, examples, batch_size, fmt, pad_id):
        exact.append(((pred == y) | ~mask).all(1).cpu().numpy())
        tok_ok += int(((pred == y) & mask).sum())
        tok_n += int(mask.sum())
    return SetScore(np.concatenate(exact) if exact else np.zeros(0, bool), tok_ok, tok_n)


@torch.no_grad()
def answer_position_accuracy(model, examples: list[EvalExample], batch_size: int = 256,
                             fmt: Formatter | None = None, pad_id: int | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced accuracy at each answer position: ``(accuracy, n)``, both ``(max answer + 1,)``.

    Position 0 is the first target token, the last position of an example is its ``<eos>``; an example
    contributes only to the positions its answer has. Where :func:`teacher_forced` says *whether* a
    longer input fails, this says *where in the answer* it fails: one wrong digit (a carry, say) shows as
    a dip at one position, a misaligned answer as every position from some point on.
    """
    ok_by, n_by = np.zeros(0), np.zeros(0)
    for pred, y, mask in _teacher_forced_batches(model, examples, batch_size, fmt, pad_id):
        pos = (mask.cumsum(1) - 1)[mask].cpu().numpy()  # answer position of each supervised token
        hit = (pred == y)[mask].cpu().numpy()
        width = max(len(n_by), int(pos.max()) + 1 if len(pos) else 0)
        ok_by = np.pad(ok_by, (0, width - len(ok_by))) + np.bincount(pos, weights=hit, minlength=width)
        n_by = np.pad(n_by, (0, width - len(n_by))) + np.bincount(pos, minlength=width)
    return np.divide(ok_by, n_by, out=np.full(len(n_by), np.nan), where=n_by > 0), n_by



@torch.no_grad()
def greedy(model, examples: list[EvalExample], batch_size: int = 256, tok: Tokenizer | None = None) -> SetScore:
    """Greedy decoding with the KV cache; exact match of the generated answer + eos."""
    tok = tok or default_tokenizer()
    dev = model_device(model)
    seqs = [format_example(e.task, Example(e.prompt, e.target), tok) for e in examples]
    buckets: dict[int, list[int]] = defaultdict(list)  # prompt length -> example indices
    for i, (_, n_prompt) in enumerate(seqs):
        buckets[n_prompt].append(i)
    exact = np.zeros(len(examples), bool)
    tok_ok = tok_n = 0
    for n_prompt, idxs in buckets.items():
        for j in range(0, len(idxs), batch_size):
            chunk = idxs[j : j + batch_size]
            prompts = torch.tensor([seqs[i][0][:n_prompt] for i in chunk], device=dev)
            answer_len = max(len(seqs[i][0]) - n_prompt for i in chunk)
            out = model.generate(prompts, max_new_tokens=answer_len, eos_id=tok.eos_id)[:, n_prompt:].tolist()
            for row, i in zip(out, chunk):
                want = seqs[i][0][n_prompt:]
                got = row[: len(want)] + [None] * (len(want) - len(row))
                hits = sum(a == b for a, b in zip(got, want))
                exact[i] = hits == len(want)
                tok_ok += hits
                tok_n += len(want)
    return SetScore(exact, tok_ok, tok_n)


def score_sets(model, sets: dict[tuple[str, int], list[EvalExample]], *, run_id: str, group_name: str,
               group, step: int, seed: int, pos_encoding: str, batch_size: int = 256,
               method: str = "teacher_forced") -> list[dict]:
    """Score every (task, length) set and return tidy records."""
    scorer = {"teacher_forced": teacher_forced, "greedy": greedy}[method]
    rows = []
    for (task, length), examples in sorted(sets.items()):
        s = scorer(model, examples, batch_size=batch_size)
        rows.append(dict(
            run_id=run_id, group=group_name, task=task, role=group.role(task), length=length,
            in_distribution=length <= group.tasks[task], n=len(examples), exact_match=s.exact_match,
            token_accuracy=s.token_accuracy, step=step, seed=seed, pos_encoding=pos_encoding,
        ))
    return rows


# ---------------------------------------------------------------------------------------------
# Generalization gap


def generalization_gap(main: dict[int, float], aux: dict[int, float], lengths: Iterable[int] | None = None) -> float:
    """Normalized area between two accuracy-vs-length curves, in [0, 1]; 0 = the curves coincide.

    gap = ∫ |acc_main(ℓ) − acc_aux(ℓ)| dℓ / (ℓ_max − ℓ_min), by the trapezoid rule over the lengths
    both curves were evaluated at (or ``lengths``). Dividing by the span of the length axis makes it
    the mean absolute accuracy difference per unit length, so it is comparable across grids of
    different spacing and range. A single common length gives the plain absolute difference.

    The paper's 7×7 heat map is symmetric in this sense (main ≫ aux also gives a large gap), so we use
    the absolute difference rather than a one-sided one.
    """
    common = sorted(set(main) & set(aux) if lengths is None else lengths)
    if not common:
        raise ValueError("the two curves share no evaluated length")
    diff = np.array([abs(main[l] - aux[l]) for l in common], dtype=float)
    if len(common) == 1:
        return float(diff[0])
    x = np.array(common, dtype=float)
    return float(np.trapezoid(diff, x) / (x[-1] - x[0]))


def curve(records, task: str, step: int | None = None) -> dict[int, float]:
    """Exact match by length for one task of one run (at ``step``; default the last step)."""
    rows = [r for r in records if r["task"] == task]
    if not rows:
        raise ValueError(f"no records for task {task!r}")
    step = max(r["step"] for r in rows) if step is None else step
    return {int(r["length"]): float(r["exact_match"]) for r in rows if r["step"] == step}


def group_gap(records, group, step: int | None = None) -> float:
    """Gap between the main task and the mean curve of the auxiliaries (pointwise mean)."""
    if not group.aux:
        raise ValueError("a group without auxiliaries has no generalization gap")
    main = curve(records, group.main_task, step)
    aux_curves = [curve(records, t, step) for t in group.aux]
    common = set.intersection(*(set(c) for c in aux_curves))
    aux = {l: float(np.mean([c[l] for c in aux_curves])) for l in common}
    return generalization_gap(main, aux)
