"""Formatting, the on-the-fly training stream, the fixed evaluation sets, and the DataModule.

One formatter serves training and evaluation::

    <bos> <task marker> prompt-tokens target-tokens <eos>
    e.g. reverse add: <bos> <reverse_add> 4 3 2 1 + 7 8 9 = 1 2 2 2 0 <eos>

The loss (and exact match) covers the target tokens and ``<eos>``.

Train/evaluation disjointness is by construction: a prompt belongs to the evaluation partition iff
``blake2b(task, prompt) % holdout_modulus == 0``. Evaluation sets draw only from that partition and
the training stream rejects it, so no evaluation prompt can ever be trained on, at any length, while
training keeps (m-1)/m of every length's prompt space (even length 1 of addition, where the whole
space is 100 prompts). Evaluation examples are drawn with replacement from the partition, seeded per
(task, length), so short lengths with tiny spaces may repeat examples.

Training batch k is a pure function of (data seed, k): a run resumed from a checkpoint at step k sees
exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from lengen.config import GroupConfig
from lengen.tasks import Example, get_task
from lengen.tokenizer import BOS, EOS, Tokenizer, default_tokenizer

IGNORE = -100  # label of positions without loss (prompt, padding)


# ---------------------------------------------------------------------------------------------
# Formatting


def format_example(task: str, ex: Example, tok: Tokenizer | None = None) -> tuple[list[int], int]:
    """Token ids of the whole sequence and the number of prompt tokens (bos + marker + prompt)."""
    tok = tok or default_tokenizer()
    prompt = [tok.bos_id, tok.stoi[get_task(task).marker]] + tok.encode(ex.prompt)
    return prompt + tok.encode(ex.target) + [tok.eos_id], len(prompt)


def collate(seqs: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad and shift: ``input_ids`` predicts ``labels``; labels are IGNORE outside target+eos."""
    T = max(len(ids) for ids, _ in seqs) - 1
    B = len(seqs)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    for b, (ids, n_prompt) in enumerate(seqs):
        x = torch.tensor(ids, dtype=torch.long)
        input_ids[b, : len(ids) - 1] = x[:-1]
        labels[b, n_prompt - 1 : len(ids) - 1] = x[n_prompt:]  # position j predicts token j+1
    return {"input_ids": input_ids, "labels": labels}


def length_buckets(labels: torch.Tensor, k: int) -> list[tuple[torch.Tensor, int]]:
    """Split a collated batch into ``k`` chunks of rows of similar length, each with its own length.

    A row's length is one past its last supervised position (its ``<eos>`` label); rows are sorted by
    it (stably) and cut into ``k`` contiguous chunks (``torch.chunk``: fewer if B < k). A chunk's length
    is its longest row's, so ``input_ids[rows, :T]`` drops only padding. E.g. rows of lengths
    (5, 9, 3, 8) with k = 2 -> ([2, 0], 5), ([3, 1], 9).
    """
    pos = torch.arange(1, labels.shape[1] + 1, device=labels.device)
    lengths = ((labels != IGNORE) * pos).amax(1)  # (B,) last supervised position + 1
    order = lengths.argsort(stable=True)
    return [(rows, int(lengths[rows].max())) for rows in order.chunk(k)]


# ---------------------------------------------------------------------------------------------
# Train / evaluation partition


def is_heldout(task: str, prompt: str, modulus: int) -> bool:
    """True iff the prompt belongs to the evaluation partition (stable across processes and machines)."""
    h = hashlib.blake2b(f"{task}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") % modulus == 0


@dataclass(frozen=True)
class EvalExample:
    task: str
    length: int
    prompt: str
    target: str


def make_eval_set(task: str, length: int, n: int, seed: int, modulus: int) -> list[EvalExample]:
    """n examples of (task, length) from the evaluation partition; fixed by (seed, task, length)."""
    t = get_task(task)
    t.check_length(length)
    rng = random.Random(f"eval/{seed}/{task}/{length}")
    out, tries = [], 0
    while len(out) < n:
        ex = t.generate(rng, length)
        tries += 1
        if is_heldout(task, ex.prompt, modulus):
            out.append(EvalExample(task, length, ex.prompt, ex.target))
        elif tries > 1000 * modulus * n:
            raise RuntimeError(f"could not fill the evaluation set of {task} at length {length}")
    return out


def make_eval_sets(keys, n: int, seed: int, modulus: int) -> dict[tuple[str, int], list[EvalExample]]:
    """The evaluation set of every (task, length) key, in sorted order."""
    return {(task, length): make_eval_set(task, length, n, seed, modulus) for task, length in sorted(keys)}


def write_eval_sets(sets: dict[tuple[str, int], list[EvalExample]], out_dir: Path) -> list[Path]:
    """One JSONL file per task: ``{"task", "length", "prompt", "target"}`` per line."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[EvalExample]] = {}
    for (task, _), exs in sorted(sets.items()):
        by_task.setdefault(task, []).extend(exs)
    files = []
    for task, exs in by_task.items():
        p = out_dir / f"{task}.jsonl"
        with open(p, "w") as f:
            for e in exs:
                f.write(json.dumps(e.__dict__) + "\n")
        files.append(p)
    return files


def read_eval_sets(path_or_dir: Path, tasks: list[str] | None = None) -> dict[tuple[str, int], list[EvalExample]]:
    path_or_dir = Path(path_or_dir)
    files = [path_or_dir] if path_or_dir.is_file() else [path_or_dir / f"{t}.jsonl" for t in tasks or []]
    sets: dict[tuple[str, int], list[EvalExample]] = {}
    for p in files:
        with open(p) as f:
            for line in f:
                e = EvalExample(**json.loads(line))
                sets.setdefault((e.task, e.length), []).append(e)
    return sets


# ---------------------------------------------------------------------------------------------
# Training stream


class TrainStream(IterableDataset):
    """Yields ready batches; batch k depends only on (seed, k).

    Per example: a task uniformly from the group, a length uniformly in 1..its max training length,
    then the content; prompts of the evaluation partition are rejected and redrawn. With APE and
    random offsets, each example also gets a position offset uniform in [0, max_seq_len - T] so every
    row of the position table up to max_seq_len is trained.
    """

    def __init__(self, group: GroupConfig, batch_size: int, seed: int, modulus: int,
                 max_seq_len: int | None = None, start_step: int = 0, tok: Tokenizer | None = None,
                 rank: int = 0, world_size: int = 1):
        self.tasks = [(name, get_task(name), max_len) for name, max_len in group.tasks.items()]
        self.batch_size, self.seed, self.modulus = batch_size, seed, modulus
        self.max_seq_len = max_seq_len  # None: no random offsets
        self.start_step = start_step
        self.tok = tok or default_tokenizer()
        # Under DDP every rank draws the same global batch k and keeps its share, so the global
        # batch (and so the experiment) does not depend on the number of devices.
        self.rank, self.world_size = rank, world_size

    def sample(self, rng: random.Random) -> tuple[str, Example]:
        while True:
            name, task, max_len = rng.choice(self.tasks)
            ex = task.generate(rng, rng.randint(task.min_length, max_len))
            if not is_heldout(name, ex.prompt, self.modulus):
                return name, ex

    def examples(self, k: int) -> tuple[random.Random, list[tuple[str, Example]]]:
        """The (task, example) pairs of batch k, and the batch's RNG (for the position offsets)."""
        rng = random.Random(f"train/{self.seed}/{k}")
        return rng, [self.sample(rng) for _ in range(self.batch_size)]

    def batch(self, k: int) -> dict[str, torch.Tensor]:
        rng, exs = self.examples(k)
        seqs = [format_example(task, ex, self.tok) for task, ex in exs[self.rank :: self.world_size]]
        out = collate(seqs, self.tok.pad_id)
        if self.max_seq_len is not None:
            T = out["input_ids"].shape[1]
            out["pos_offset"] = torch.tensor([rng.randint(0, self.max_seq_len - T) for _ in seqs])
        return out

    def __iter__(self):
        # With DataLoader workers, worker w of n makes batches start+w, start+w+n, ...; the loader
        # takes one from each worker in turn, so batches still arrive in order k, k+1, ...
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        k = self.start_step + w
        while True:
            yield self.batch(k)
            k += n


class LengenDataModule(L.LightningDataModule):
    """Training stream for one run; resumes at the trainer's global step so data never repeats."""

    def __init__(self, group: GroupConfig, batch_size: int, seed: int, holdout_modulus: int,
                 random_offset_max_seq_len: int | None = None, num_workers: int = 0):
        super().__init__()
        self.group, self.batch_size, self.seed = group, batch_size, seed
        self.holdout_modulus = holdout_modulus
        self.random_offset_max_seq_len = random_offset_max_seq_len
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        t = self.trainer
        start, rank, world = (t.global_step, t.global_rank, t.world_size) if t is not None else (0, 0, 1)
        stream = TrainStream(self.group, self.batch_size, self.seed, self.holdout_modulus,
                             self.random_offset_max_seq_len, start_step=start, rank=rank, world_size=world)
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)


# ---------------------------------------------------------------------------------------------
# Data-stage helpers (used by notebooks/01_data.ipynb)


def experiment_eval_sets(cfg, n: int | None = None) -> dict[tuple[str, int], list[EvalExample]]:
    """The evaluation sets of every run's group (experiment, ablation, grid) (union over groups; a (task,
    length) pair is the same set whichever group asks, because sets are seeded per (task, length))."""
    d = cfg.data
    keys = set().union(*(r.group.eval_keys(d.eval_step) for r in cfg.all_runs()))
    return make_eval_sets(keys, n or d.n_eval, d.seed, d.holdout_modulus)


def preview(tasks: list[str], lengths: list[int], seed: int = 0):
    """One example per (task, length), as a DataFrame with the formatted token sequence."""
    import pandas as pd

    tok = default_tokenizer()
    rows = []
    for task in tasks:
        t = get_task(task)
        for length in lengths:
            if t.max_length is not None and length > t.max_length or length < t.min_length:
                continue
            ex = t.generate(random.Random(f"preview/{seed}/{task}/{length}"), length)
            ids, n_prompt = format_example(task, ex, tok)
            rows.append(dict(task=task, length=length, prompt=ex.prompt, target=ex.target, tokens=len(ids),
                             loss_tokens=len(ids) - n_prompt))
    return pd.DataFrame(rows)


def check_disjoint(cfg, sets: dict[tuple[str, int], list[EvalExample]], n_batches: int = 20) -> "pd.DataFrame":
    """Draw training batches of every group and count prompts that occur in the evaluation sets."""
    import pandas as pd

    eval_prompts = {(e.task, e.prompt) for exs in sets.values() for e in exs}
    rows = []
    runs = {r.group_name: r for r in cfg.all_runs()}  # experiment, ablation and grid groups
    for g, run in runs.items():
        stream = TrainStream(run.group, run.train.batch_size, cfg.data.seed, cfg.data.holdout_modulus)
        drawn = [pair for k in range(n_batches) for pair in stream.examples(k)[1]]
        collisions = sum((task, ex.prompt) in eval_prompts for task, ex in drawn)
        rows.append(dict(group=g, train_examples=len(drawn), eval_examples=len(eval_prompts), collisions=collisions))
    return pd.DataFrame(rows)


def generation_speed(cfg, seconds: float = 2.0) -> "pd.DataFrame":
    """Training examples generated per second (generation + formatting + collation), per group."""
    import time

    import pandas as pd

    rows = []
    for g in cfg.experiment.groups:
        batch_size = cfg.train_for(g).batch_size
        stream = TrainStream(cfg.groups[g], batch_size, cfg.data.seed, cfg.data.holdout_modulus)
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            stream.batch(k)
            k += 1
        rows.append(dict(group=g, examples_per_s=k * batch_size / (time.perf_counter() - t0)))
    return pd.DataFrame(rows)
