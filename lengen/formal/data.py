"""Token ids, targets and batches for the formal tasks; fixed evaluation sets per length bin.

Two objectives share one batch layout (``input_ids`` right-padded with ``<pad>``):

- algorithmic tasks (``lm``): ``labels`` (B, T) = the next token at the positions that predict the
  answer and ``<eos>`` (from ``<sep>`` on), ``IGNORE`` elsewhere — the core's cross-entropy convention;
- languages (``multilabel``): ``targets`` (B, T, |alphabet| + 1) = the legal next symbols and ``<eos>``
  after each prefix, ``mask`` (B, T) = the real positions ``<bos> w`` (all of them are predicted).

Worked example, binary majority ``<bos> 0 1 1 <sep> 1 <eos>`` (ids from the task's own tokenizer)::

    labels = [-100, -100, -100, -100, id(1), id(<eos>), -100]   # <sep> predicts 1, 1 predicts <eos>

Training examples come from a deterministic stream seeded by (data seed, task); languages draw from
a pool sampled once per run (uniform members, ``pool_per_length`` per training length), because the
automaton sampler is vectorized over strings of one length. Evaluation sets are seeded by
(data seed, task, bin), identical for every config and seed.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from lengen.data import IGNORE
from lengen.formal.algorithmic import ALGORITHMIC, AlgorithmicTask, make_tasks
from lengen.formal.languages import LANGUAGES, Dfa
from lengen.tokenizer import BOS, Tokenizer

Task = AlgorithmicTask | Dfa


def get_task(name: str, vocab_size: int = 150) -> Task:
    if name in LANGUAGES:
        return LANGUAGES[name]
    if name in ALGORITHMIC:
        return make_tasks(vocab_size)[name]
    raise KeyError(f"unknown formal task {name!r}")


def objective(task: Task) -> str:
    return "multilabel" if task.kind == "language" else "lm"


def seed_of(*parts) -> int:
    """A stable 32-bit seed from strings and ints (Python's hash() is salted per process)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    labels: list[int] | None = None  # lm
    targets: np.ndarray | None = None  # multilabel: (len(ids), n_outputs) bool


def encode(task: Task, tok: Tokenizer, item) -> Encoded:
    """One example (an algorithmic ``Example`` or a member string) as ids and targets."""
    if task.kind == "language":
        return Encoded([tok.bos_id] + [tok.stoi[c] for c in item], targets=task.targets(item))
    seq = task.sequence(item)
    ids = [tok.stoi[t] for t in seq]
    start = task.answer_start(item)
    labels = [IGNORE] * len(ids)
    labels[start:-1] = ids[start + 1 :]  # position i predicts token i + 1
    return Encoded(ids, labels=labels)


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    B, T = len(items), max(len(e.ids) for e in items)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    for b, e in enumerate(items):
        input_ids[b, : len(e.ids)] = torch.tensor(e.ids)
    out = {"input_ids": input_ids}
    if items[0].targets is None:
        labels = torch.full((B, T), IGNORE, dtype=torch.long)
        for b, e in enumerate(items):
            labels[b, : len(e.labels)] = torch.tensor(e.labels)
        out["labels"] = labels
    else:
        n_out = items[0].targets.shape[1]
        targets = torch.zeros((B, T, n_out))
        mask = torch.zeros((B, T), dtype=torch.bool)
        for b, e in enumerate(items):
            targets[b, : len(e.ids)] = torch.from_numpy(e.targets.astype(np.float32))
            mask[b, : len(e.ids)] = True
        out["targets"], out["mask"] = targets, mask
    return out


def sample_items(task: Task, lo: int, hi: int, n: int, seed: int) -> list:
    """n examples with lengths uniform over the task's feasible lengths in [lo, hi]."""
    lengths = task.lengths(lo, hi)
    if not lengths:
        raise ValueError(f"{task.name}: no examples with length in [{lo}, {hi}]")
    rng = random.Random(seed)
    chosen = [rng.choice(lengths) for _ in range(n)]
    if task.kind != "language":
        return [task.sample(rng, L) for L in chosen]
    nrng = np.random.default_rng(seed)
    by_length = {L: iter(task.sample(nrng, L, k)) for L, k in Counter(chosen).items()}
    return [next(by_length[L]) for L in chosen]


def eval_sets(task: Task, bins: list[list[int]], n: int, data_seed: int) -> dict[str, list]:
    """{"lo-hi": n examples} per bin, seeded by (data seed, task, bin)."""
    return {f"{lo}-{hi}": sample_items(task, lo, hi, n, seed_of(data_seed, task.name, lo, hi)) for lo, hi in bins}


class TrainStream(torch.utils.data.IterableDataset):
    """Endless training batches from ``start_step`` on; batch k is a pure function of (seed, k), so a run
    resumed at step k sees the batches an uninterrupted run would. With ``max_positions`` (APE), each
    example gets its own random position offset (:func:`offset_high`), so that every row of the position
    table up to the longest test sequence is trained."""

    def __init__(
        self,
        task: Task,
        tok: Tokenizer,
        lo: int,
        hi: int,
        batch_size: int,
        seed: int,
        max_positions: int | None = None,
        pool_per_length: int = 256,
        start_step: int = 0,
    ):
        self.task, self.tok, self.lo, self.hi = task, tok, lo, hi
        self.batch_size, self.seed, self.max_positions = batch_size, seed, max_positions
        self.start_step = start_step
        self.pool = None
        if task.kind == "language":  # one vectorized draw per length, then batches from the pool
            n = pool_per_length * len(task.lengths(lo, hi))
            self.pool = [encode(task, tok, w) for w in sample_items(task, lo, hi, n, seed)]

    def batch(self, k: int) -> dict[str, torch.Tensor]:
        rng = random.Random(seed_of(self.seed, "stream", k))
        if self.pool is not None:
            items = rng.choices(self.pool, k=self.batch_size)
        else:
            lengths = self.task.lengths(self.lo, self.hi)
            items = [
                encode(self.task, self.tok, self.task.sample(rng, rng.choice(lengths))) for _ in range(self.batch_size)
            ]
        batch = collate(items, self.tok.pad_id)
        if self.max_positions is not None:
            batch["pos_offset"] = torch.tensor(
                [rng.randint(0, offset_high(self.task, len(e.ids), self.max_positions)) for e in items]
            )
        return batch

    def __iter__(self):
        k = self.start_step
        while True:
            yield self.batch(k)
            k += 1


def max_positions(task: Task, max_length: int) -> int:
    """Rows of the APE table (the model's ``max_seq_len``), as in the official code: algorithmic tasks, the
    positions the longest evaluation sequence occupies (<bos> included); languages, twice that
    (``n_positions = 2 * max_seq_length``), so that training offsets reach past the longest test string."""
    return task.max_tokens(max_length) if task.kind != "language" else 2 * (max_length + 1)


def table_rows(task: Task, max_length: int, train_max_length: int) -> int:
    """Rows the APE table needs in training: ``max_positions`` plus, for algorithmic tasks, the padding of a
    batch (a short example near the last row is padded to the batch's longest, and the padded positions run
    past ``max_positions``; the official collator repeats the last position id instead). The extra rows are
    read only at padded positions, which no real token attends to and no loss reads: they never train and
    change no prediction."""
    n_pos = max_positions(task, max_length)
    return n_pos if task.kind == "language" else n_pos + task.max_tokens(train_max_length)


def offset_high(task: Task, n_ids: int, n_pos: int) -> int:
    """The largest training position offset (inclusive) of an example of ``n_ids`` tokens under APE; the
    offset is drawn uniformly from [0, offset_high]. As in the official code, per example:

    - algorithmic tasks: bounded by the example's own length, U[0, n_pos - n_ids], so the example's last
      token may sit on the table's last row (``randint(0, 150 - len)`` for the tasks with one answer token,
      ``(150 - len) * 2`` for copy and sort, ``2 * 150 - len(instance)`` for addition: each is
      n_positions - the sequence's length);
    - languages: U[0, n_pos / 2) whatever the length (``torch.randint(n_positions / 2)``), the table having
      twice the rows of the longest test sequence.

    Test sequences always start at position 0."""
    if task.kind == "language":
        return n_pos // 2 - 1
    if n_ids > n_pos:
        raise ValueError(f"{task.name}: a {n_ids}-token example does not fit {n_pos} positions")
    return n_pos - n_ids


def preview(task: Task, length: int, seed: int = 0) -> str:
    """One example in the exact token format, with its targets (for the notebook)."""
    item = sample_items(task, length, length, 1, seed)[0]
    if task.kind != "language":
        return " ".join(task.sequence(item))
    sets = task.legal_next(item)
    return f"{BOS} {' '.join(item)}   legal next: " + " ".join("{" + ",".join(sorted(s)) + "}" for s in sets)


def preview_table(tasks: list[str], vocab_size: int) -> list[dict]:
    """One example per task at its shortest feasible length in 6..12 (the notebook's format table)."""
    rows = []
    for name in tasks:
        task = get_task(name, vocab_size)
        rows.append({"task": name, "example": preview(task, task.lengths(6, 12)[0])})
    return rows
