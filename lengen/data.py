"""Formatting, the on-the-fly training stream, the fixed evaluation sets, and the DataModule.

One formatter serves training and evaluation::

    <bos> <task marker> prompt-tokens target-tokens <eos>
    e.g. reverse add: <bos> <reverse_add> 4 3 2 1 + 7 8 9 = 1 2 2 2 0 <eos>

The loss (and exact match) covers the target tokens and ``<eos>``.

Train/evaluation disjointness is by construction, and the partition is a property of the prompt string
alone: a prompt belongs to the evaluation partition iff ``blake2b(prompt) % holdout_modulus == 0``
(:func:`is_heldout`), whatever task it is posed to. Evaluation sets draw only from that partition and
the training stream rejects it for every task, so no evaluation prompt of any task is ever trained under
any task. That matters because tasks of a group share prompt formats: a maze prompt is posed to both
``shortest_path_far`` and ``dfs_trace_far``, and the DFS trace contains the shortest path; an addition
prompt is posed to ``reverse_add``, ``copy_first_op`` and (when it has no carry) ``no_carry``. A
per-(task, prompt) partition let a main task's evaluation mazes be trained as the auxiliary's DFS traces
(185 of 256 evaluation mazes of 5 nodes in one cpu-profile stream of ``sp_far_dfs``).

Training keeps (m-1)/m of every length's prompt space (even length 1 of addition, where the whole space
is 100 prompts). Evaluation examples are drawn with replacement from the partition, seeded per (task,
length), so short lengths with tiny spaces may repeat examples. :func:`check_disjoint` verifies the
guarantee over every training example of every run of a profile (the data stage runs it and fails on a
leak): for each group it searches the whole stream for the evaluation prompts of all the group's tasks.

Training batch k is a pure function of (data seed, k): a run resumed from a checkpoint at step k sees
exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset

from lengen.config import GroupConfig
from lengen.tasks import Example, get_task
from lengen.tokenizer import Tokenizer, default_tokenizer

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


# Names the partition rule; a change of rule changes every evaluation set and training stream, so a
# fingerprint of what determines a run can include it.
HOLDOUT_RULE = "blake2b(prompt) % holdout_modulus == 0"


def is_heldout(prompt: str, modulus: int) -> bool:
    """True iff the prompt belongs to the evaluation partition, for every task (stable across processes
    and machines). The task is deliberately not hashed: tasks of a group share prompt formats."""
    h = hashlib.blake2b(prompt.encode(), digest_size=8).digest()
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
        if is_heldout(ex.prompt, modulus):
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
    then the content; prompts of the evaluation partition (that of every task) are rejected and redrawn.
    With APE and random offsets, each example also gets a position offset uniform in [0, max_seq_len - n],
    n its own length in tokens (as the formal framework's official code), so every example can reach the
    table's last row and every row up to max_seq_len is trained.
    """

    def __init__(
        self,
        group: GroupConfig,
        batch_size: int,
        seed: int,
        modulus: int,
        max_seq_len: int | None = None,
        start_step: int = 0,
        tok: Tokenizer | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
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
            if not is_heldout(ex.prompt, self.modulus):
                return name, ex

    def examples(self, k: int) -> tuple[random.Random, list[tuple[str, Example]]]:
        """The (task, example) pairs of batch k, and the batch's RNG (for the position offsets)."""
        rng = random.Random(f"train/{self.seed}/{k}")
        return rng, [self.sample(rng) for _ in range(self.batch_size)]

    def batch(self, k: int) -> dict[str, torch.Tensor]:
        rng, exs = self.examples(k)
        seqs = [format_example(task, ex, self.tok) for task, ex in exs[self.rank :: self.world_size]]
        out = collate(seqs, self.tok.pad_id)
        if self.max_seq_len is not None:  # n = len(ids) - 1 input positions (the last token is only a label)
            out["pos_offset"] = torch.tensor([rng.randint(0, self.max_seq_len - (len(ids) - 1)) for ids, _ in seqs])
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

    def __init__(
        self,
        group: GroupConfig,
        batch_size: int,
        seed: int,
        holdout_modulus: int,
        random_offset_max_seq_len: int | None = None,
        num_workers: int = 0,
    ):
        super().__init__()
        self.group, self.batch_size, self.seed = group, batch_size, seed
        self.holdout_modulus = holdout_modulus
        self.random_offset_max_seq_len = random_offset_max_seq_len
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        t = self.trainer
        start, rank, world = (t.global_step, t.global_rank, t.world_size) if t is not None else (0, 0, 1)
        stream = TrainStream(
            self.group,
            self.batch_size,
            self.seed,
            self.holdout_modulus,
            self.random_offset_max_seq_len,
            start_step=start,
            rank=rank,
            world_size=world,
        )
        return DataLoader(
            stream, batch_size=None, num_workers=self.num_workers, persistent_workers=self.num_workers > 0
        )


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
    tok = default_tokenizer()
    rows = []
    for task in tasks:
        t = get_task(task)
        for length in lengths:
            if (t.max_length is not None and length > t.max_length) or length < t.min_length:
                continue
            ex = t.generate(random.Random(f"preview/{seed}/{task}/{length}"), length)
            ids, n_prompt = format_example(task, ex, tok)
            rows.append(
                dict(
                    task=task,
                    length=length,
                    prompt=ex.prompt,
                    target=ex.target,
                    tokens=len(ids),
                    loss_tokens=len(ids) - n_prompt,
                )
            )
    return pd.DataFrame(rows)


class LeakError(RuntimeError):
    """An evaluation prompt occurs in a training stream; ``table`` is :func:`check_disjoint`'s table."""

    def __init__(self, message: str, table):
        super().__init__(message)
        self.table = table


def group_eval_prompts(
    group: GroupConfig, sets: dict[tuple[str, int], list[EvalExample]], eval_step: int
) -> dict[str, str]:
    """The evaluation prompts of every task of a group at its evaluated lengths: ``{prompt: task}`` (a
    prompt evaluated under several tasks names one of them)."""
    keys = sorted(group.eval_keys(eval_step))
    missing = [k for k in keys if k not in sets]
    if missing:
        raise ValueError(f"no evaluation set for (task, length) {missing[:5]} ({len(missing)} missing)")
    return {e.prompt: e.task for k in keys for e in sets[k]}


def check_disjoint(
    cfg,
    sets: dict[tuple[str, int], list[EvalExample]] | None = None,
    n_batches: int | None = None,
    n_eval: int | None = None,
) -> pd.DataFrame:
    """Search every training example of every run of the profile for the group's evaluation prompts.

    For each group that a run trains (``cfg.all_runs()``: experiment, ablation, grid), batches
    0..steps-1 of its stream (the run's own ``train.steps`` and ``train.batch_size``; ``n_batches``
    caps them, None = the whole stream) are drawn exactly as training draws them, and an example counts
    as a collision if its prompt -- under whichever task -- is an evaluation prompt of *any* task of the
    group. Groups with the same tasks, batch size and data seed share one stream (a shorter run's is a
    prefix of a longer one's), so it is drawn once. ``sets`` are the evaluation sets (default: generated
    at ``n_eval``, default the profile's ``data.n_eval``; a smaller n gives a prefix of each set).

    Returns one row per group: ``group, batches, train_examples, eval_prompts, collisions, seconds``
    (seconds of the stream's pass, on the group that drew it). Raises :class:`LeakError` naming the
    group, the training task, the evaluated task and an example prompt if any collision is found.

    E.g. the smoke profile (40 steps of 16; ``grid_m3_a6`` has arith_carry's tasks at other lengths, so
    its own stream; ``seconds`` left out)::

        group        batches  train_examples  eval_prompts  collisions
        arith_carry       40             640           344           0
        grid_m3_a6        40             640           344           0
        add_alone         40             640           123           0
    """
    d = cfg.data
    runs: dict[str, object] = {}
    for r in cfg.all_runs():  # a group's runs share its stream (data seed, not init seed)
        runs.setdefault(r.group_name, r)
    if sets is None:
        keys = set().union(*(r.group.eval_keys(d.eval_step) for r in runs.values()))
        sets = make_eval_sets(keys, n_eval or d.n_eval, d.seed, d.holdout_modulus)
    evals = {g: group_eval_prompts(r.group, sets, d.eval_step) for g, r in runs.items()}
    streams: dict[tuple, list[str]] = {}
    for g, r in runs.items():
        streams.setdefault((tuple(r.group.tasks.items()), r.train.batch_size), []).append(g)

    rows, leaks = [], []
    for members in streams.values():
        steps = {
            g: min(runs[g].train.steps, n_batches if n_batches is not None else runs[g].train.steps) for g in members
        }
        run = runs[members[0]]
        stream = TrainStream(run.group, run.train.batch_size, d.seed, d.holdout_modulus)
        watch = set().union(*(evals[g] for g in members))
        hits: list[tuple[int, str, str]] = []  # (batch, training task, prompt) of every collision
        t0 = time.perf_counter()
        for k in range(max(steps.values())):
            hits += [(k, task, ex.prompt) for task, ex in stream.examples(k)[1] if ex.prompt in watch]
        seconds = time.perf_counter() - t0
        for g in members:
            mine = [(task, p) for k, task, p in hits if k < steps[g] and p in evals[g]]
            rows.append(
                dict(
                    group=g,
                    batches=steps[g],
                    train_examples=steps[g] * run.train.batch_size,
                    eval_prompts=len(evals[g]),
                    collisions=len(mine),
                    seconds=round(seconds, 2) if g == members[0] else 0.0,
                )
            )
            if mine:
                task, p = mine[0]
                leaks.append(
                    f"group {g!r}: {len(mine)} training examples have an evaluation prompt, e.g. "
                    f"{p!r} trained as {task!r} and evaluated as {evals[g][p]!r}"
                )
    table = pd.DataFrame(rows)
    if leaks:
        raise LeakError("evaluation prompts occur in training:\n" + "\n".join(leaks), table)
    return table


def generation_speed(cfg, seconds: float = 2.0) -> pd.DataFrame:
    """Training examples generated per second (generation + formatting + collation), per group."""
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
