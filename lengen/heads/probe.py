"""One task probed on one model: its mean attention pattern and its mean-ablation maps.

The model is anything with the :class:`HookedModel` interface (``lengen.model.Transformer``, the
pretrained wrapper); the inputs are one task's examples at one length in the training format
(:class:`TaskBatch`). :func:`analyse_checkpoint` probes every (task, length) of a group once and returns
the tidy rows of one checkpoint: each task's ablation maps and each pair's :func:`attention_difference`.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from lengen.config import DataConfig, GroupConfig, HeadsConfig
from lengen.data import IGNORE, EvalExample, collate, format_example, make_eval_set
from lengen.evaluate import Formatter
from lengen.runtime import model_device
from lengen.tasks import Example, get_task
from lengen.tokenizer import default_tokenizer

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


def task_batch(examples: list[EvalExample], fmt: Formatter | None = None, pad_id: int | None = None) -> TaskBatch:
    """Format examples like training does (``fmt``: another model's formatter, e.g. the pretrained one's).

    >>> from lengen.data import EvalExample
    >>> b = task_batch([EvalExample("reverse_add", 2, "12+34=", "460")])
    >>> b.input_ids.shape, int(b.n_tokens[0])   # <bos> <reverse_add> 1 2 + 3 4 = 4 6 0 (eos is only a label)
    (torch.Size([1, 11]), 11)
    """
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
    return {
        (t, n): task_batch(make_eval_set(t, n, hc.n_examples, data.seed, data.holdout_modulus)) for t, n in sorted(keys)
    }


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
    pattern = torch.stack(
        [cache[f"blocks.{l}.attn.pattern"][:, :, :w, :w].float().mean(0) for l in range(n_layer)]
    ).cpu()  # (nl, nh, T*, T*)
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
# One checkpoint


def checkpoint_paths(run_dir: Path, max_checkpoints: int) -> list[tuple[int, Path]]:
    """(step, path) of the kept checkpoints ``step=XXXXXX.ckpt``, at most ``max_checkpoints`` evenly
    spaced over training, the last one always included."""
    found = sorted(
        (int(m.group(1)), p)
        for p in Path(run_dir, "checkpoints").glob("step=*.ckpt")
        if (m := re.fullmatch(r"step=(\d+)\.ckpt", p.name))
    )
    if len(found) <= max_checkpoints:
        return found
    pick = np.unique(np.round(np.linspace(len(found) - 1, 0, max_checkpoints)).astype(int))
    return [found[i] for i in pick]


def attention_difference(a: Tensor, b: Tensor) -> np.ndarray:
    """Per head, Σ over the common window's query/key positions of |a − b|, divided by the window's
    number of query rows: (n_layer, n_head) values in [0, 2].

    >>> import torch
    >>> eye, first = torch.eye(2)[None, None], torch.tensor([[1.0, 0.0], [1.0, 0.0]])[None, None]
    >>> attention_difference(eye, first)        # row 0 equal, row 1 disjoint (2): (0 + 2) / 2 rows
    array([[1.]])
    """
    w = min(a.shape[-1], b.shape[-1])
    diff = (a[..., :w, :w].float() - b[..., :w, :w].float()).abs().sum((-1, -2)) / w
    return diff.numpy().astype(float)


def analyse_checkpoint(
    model: HookedModel, group: GroupConfig, inputs: dict[tuple[str, int], TaskBatch]
) -> tuple[list[dict], list[dict]]:
    """Tidy rows for one checkpoint: ablation (task, length, layer, head) and attention difference
    (aux, length, layer, head). Each (task, length) probe is computed once and shared by the pairs."""
    probes = {key: probe_task(model, batch) for key, batch in inputs.items()}
    n_layer, n_head = model.cfg.n_layer, model.cfg.n_head
    every_head = [(l, h) for l in range(n_layer) for h in range(n_head)]
    ablation = [
        dict(
            task=t,
            role=group.role(t),
            length=n,
            layer=l,
            head=h,
            exact_match=p.exact_match,
            loglik=p.loglik,
            em_drop=p.em_drop[l, h],
            ll_drop=p.ll_drop[l, h],
        )
        for (t, n), p in probes.items()
        for l, h in every_head
    ]
    attention = []
    for (t, n), p in probes.items():
        if t == group.main_task:
            continue
        d = attention_difference(probes[(group.main_task, n)].pattern, p.pattern)
        attention += [
            dict(main=group.main_task, aux=t, length=n, layer=l, head=h, attn_diff=d[l, h]) for l, h in every_head
        ]
    return ablation, attention
