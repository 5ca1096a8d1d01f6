"""Per-length evaluation: scoring a model on fixed sets of examples.

Two ways to score a set, which agree (``tests/test_evaluate.py`` checks it on a trained toy model):

* :func:`teacher_forced` — one forward pass over prompt + target + ``<eos>``; an example is an exact
  match iff the argmax at every target position and at ``<eos>`` is right. Because ``<eos>`` is
  supervised, this equals greedy exact match: greedy decoding reproduces the target token by token as
  long as every argmax is right, and stops exactly there.
* :func:`greedy` — true autoregressive greedy decoding with the KV cache (prompts bucketed by length).

:func:`score_sets` turns the scores into tidy records (``lengen.records.RECORD_FIELDS``); the gap and
every other reading of the records live in :mod:`lengen.records`; device and precision in
:mod:`lengen.runtime`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lengen.data import IGNORE, EvalExample, collate, format_example
from lengen.runtime import model_device
from lengen.tasks import Example
from lengen.tokenizer import Tokenizer, default_tokenizer


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


def _teacher_forced_batches(
    model, examples: list[EvalExample], batch_size: int, fmt: Formatter | None, pad_id: int | None
):
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
def _teacher_forced_rows(
    model, seqs: list[tuple[list[int], int]], batch_size: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per formatted example ``(ids, n_prompt)``: exact (bool), target tokens right, target tokens.

    Examples are run sorted by length, ``batch_size`` at a time, so a batch holds examples of similar length
    (little padding) whatever set they come from. Padding sits at the right and attention is causal, so an
    example's predictions do not depend on what else is in its batch.
    """
    n = len(seqs)
    exact, tok_ok, tok_n = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64)
    order = sorted(range(n), key=lambda i: len(seqs[i][0]))
    dev = model_device(model)
    for j in range(0, n, batch_size):
        rows = order[j : j + batch_size]
        batch = collate([seqs[i] for i in rows], pad_id)
        x, y = batch["input_ids"].to(dev), batch["labels"].to(dev)
        pred, mask = model(x).argmax(-1), y != IGNORE
        exact[rows] = ((pred == y) | ~mask).all(1).cpu().numpy()
        tok_ok[rows] = ((pred == y) & mask).sum(1).cpu().numpy()
        tok_n[rows] = mask.sum(1).cpu().numpy()
    return exact, tok_ok, tok_n


def _format(examples: list[EvalExample], fmt: Formatter | None) -> list[tuple[list[int], int]]:
    fmt = fmt or (lambda task, ex: format_example(task, ex))
    return [fmt(e.task, Example(e.prompt, e.target)) for e in examples]


@torch.no_grad()
def teacher_forced(
    model, examples: list[EvalExample], batch_size: int = 256, fmt: Formatter | None = None, pad_id: int | None = None
) -> SetScore:
    """Teacher-forced exact match in one forward pass per batch. ``model(input_ids) -> logits``."""
    pad_id = default_tokenizer().pad_id if pad_id is None else pad_id
    exact, tok_ok, tok_n = _teacher_forced_rows(model, _format(examples, fmt), batch_size, pad_id)
    return SetScore(exact, int(tok_ok.sum()), int(tok_n.sum()))


def teacher_forced_sets(
    model, sets: dict[tuple[str, int], list[EvalExample]], batch_size: int = 256
) -> dict[tuple[str, int], SetScore]:
    """:func:`teacher_forced` of every set, with the examples of all sets batched together by length: fewer,
    fuller forward passes than one per set (a set of 64 examples is a small batch), the same scores."""
    keys = sorted(sets)
    examples = [e for k in keys for e in sets[k]]
    exact, tok_ok, tok_n = _teacher_forced_rows(model, _format(examples, None), batch_size, default_tokenizer().pad_id)
    out, start = {}, 0
    for k in keys:
        end = start + len(sets[k])
        out[k] = SetScore(exact[start:end], int(tok_ok[start:end].sum()), int(tok_n[start:end].sum()))
        start = end
    return out


@torch.no_grad()
def answer_position_accuracy(
    model, examples: list[EvalExample], batch_size: int = 256, fmt: Formatter | None = None, pad_id: int | None = None
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


def score_sets(
    model,
    sets: dict[tuple[str, int], list[EvalExample]],
    *,
    run_id: str,
    group_name: str,
    group,
    step: int,
    seed: int,
    pos_encoding: str,
    batch_size: int = 256,
    method: str = "teacher_forced",
) -> list[dict]:
    """Score every (task, length) set and return tidy records."""
    if method == "teacher_forced":
        scores = teacher_forced_sets(model, sets, batch_size)
    elif method == "greedy":
        scores = {k: greedy(model, examples, batch_size=batch_size) for k, examples in sets.items()}
    else:
        raise ValueError(f"method={method!r} must be 'teacher_forced' or 'greedy'")
    rows = []
    for (task, length), examples in sorted(sets.items()):
        s = scores[(task, length)]
        rows.append(
            dict(
                run_id=run_id,
                group=group_name,
                task=task,
                role=group.role(task),
                length=length,
                in_distribution=length <= group.tasks[task],
                n=len(examples),
                exact_match=s.exact_match,
                token_accuracy=s.token_accuracy,
                step=step,
                seed=seed,
                pos_encoding=pos_encoding,
            )
        )
    return rows
