"""Training and the paper's selection protocol for the formal tasks.

One *run* = (task, positional encoding, grid point, seed): a small :class:`lengen.model.Transformer`
trained on lengths in the first bin, then scored on every bin. As in the paper, an algorithmic task stops
early at the first check (every ``train.eval_every`` steps) where the in-distribution sample
(``n_eval_during`` examples of the first bin's evaluation set) is all right; a language trains its whole
budget (``train.early_stop_languages``). Under APE each training example starts at its own random
position offset (:func:`lengen.formal.data.offset_high`). The *protocol* (``run_study``), per task and
encoding:

1. grid: every grid point, seed 0;
2. selection: among grid points at 100% in-distribution, the best on the second bin, ties to the
   smallest model (``GridConfig.archs`` order); if none fits, the best in-distribution (flagged
   ``fitted = False``);
3. seeds: the selected point with seeds 0 .. N−1 (seed 0 is the grid run); mean, sd and every seed.

Every run goes through the one run engine (``lengen.engine``): it lives in
``reports/formal/runs/<run id>/<fingerprint>/`` (records, ``run.json``), the fingerprint covering the run's
parameters and the code it depends on. A finished run is read back, a killed one resumes from its
``last.ckpt``, and a changed parameter or code change re-runs exactly the runs it affects.

Scoring is teacher-forced exact match, as in the paper: an algorithmic example is right iff every
answer token and ``<eos>`` is the argmax; a language string iff at every position the thresholded
(sigmoid > 0.5) prediction equals the set of legal next symbols.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lengen import paths
from lengen.data import IGNORE
from lengen.engine import Evaluate, RunSpec, StopRule, fit, read_back
from lengen.formal.config import Arch, FormalConfig
from lengen.formal.data import (
    Task,
    TrainStream,
    collate,
    encode,
    eval_sets,
    get_task,
    max_positions,
    objective,
    seed_of,
    table_rows,
)
from lengen.model import ModelConfig, Transformer
from lengen.runtime import autocast_context, tally, trained_on
from lengen.system import LengenSystem

FORMAL_DIR = paths.REPORTS_DIR / "formal"
RUNS_SUBDIR = "runs"


# ----------------------------------------------------------------------------------------------------
# The system


def position_regularizer(model: Transformer, rows: int | None = None) -> torch.Tensor:
    """The paper's penalty on position-position attention: for every layer and head, the squared causal
    entries of (P W_Q)(P W_K)ᵀ, P the position table's first ``rows`` rows (default all; summed over query
    rows, averaged over key columns as in the official code). Zero for encodings without a table."""
    if model.pos_emb is None:
        return torch.zeros(())
    P = model.pos_emb.weight[:rows]  # (N, d)
    hs = model.cfg.head_dim
    total = P.new_zeros(())
    for block in model.blocks:
        q = (P @ block.attn.q_proj.weight.T).view(len(P), -1, hs).transpose(0, 1)  # (nh, N, hs)
        k = (P @ block.attn.k_proj.weight.T).view(len(P), -1, hs).transpose(0, 1)
        scores = torch.tril(q @ k.transpose(1, 2))  # (nh, N, N): query i, key j <= i
        total = total + (scores**2).sum(dim=1).mean(dim=1).sum()
    return total


class FormalSystem(LengenSystem):
    """The core system (optimizer, schedule) with the formal objectives and the optional regularizer.

    ``lm``: cross-entropy on the answer and <eos>; ``multilabel``: binary cross-entropy of the logits of
    the output symbols (``output_ids``: the alphabet then <eos>) against the legal-next sets."""

    def __init__(
        self,
        model_config: dict,
        objective: str,
        output_ids: list[int] | None = None,
        reg_coef: float = 0.0,
        reg_rows: int | None = None,
        **optim,
    ):
        super().__init__(model_config, **optim)
        if objective not in ("lm", "multilabel"):
            raise ValueError(f"objective={objective!r} must be 'lm' or 'multilabel'")
        self.objective, self.output_ids, self.reg_coef, self.reg_rows = objective, output_ids, reg_coef, reg_rows

    def task_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.objective == "lm":
            return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)
        z = logits.float()[..., self.output_ids]  # (B, T, n_out)
        per_pos = F.binary_cross_entropy_with_logits(z, batch["targets"], reduction="none").mean(-1)
        return per_pos[batch["mask"]].mean()

    def training_step(self, batch, batch_idx):
        logits = self.model(batch["input_ids"], pos_offset=batch.get("pos_offset"))
        loss = self.task_loss(logits, batch)
        self.log("train/loss", loss)
        if self.reg_coef:
            reg = position_regularizer(self.model, self.reg_rows)
            self.log("train/reg", reg)
            loss = loss + self.reg_coef * reg
        return loss


@torch.no_grad()
def correct(model: Transformer, objective: str, batch: dict, output_ids: list[int] | None) -> np.ndarray:
    """(B,) bool: every supervised position right (offset 0, as at test time)."""
    logits = model(batch["input_ids"])
    if objective == "lm":
        y = batch["labels"]
        return ((logits.argmax(-1) == y) | (y == IGNORE)).all(1).cpu().numpy()
    pred = logits.float()[..., output_ids] > 0  # sigmoid > 0.5
    ok = (pred == batch["targets"].bool()).all(-1) | ~batch["mask"]
    return ok.all(1).cpu().numpy()


def accuracy(model: Transformer, task: Task, tok, items: list, precision: str, batch_size: int = 128) -> float:
    """Exact-match accuracy on a list of examples."""
    obj, out_ids = objective(task), _output_ids(task, tok)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hits = []
    with autocast_context(precision, dev):
        for i in range(0, len(items), batch_size):
            batch = collate([encode(task, tok, x) for x in items[i : i + batch_size]], tok.pad_id)
            hits.append(correct(model, obj, {k: v.to(dev) for k, v in batch.items()}, out_ids))
    model.train(was_training)
    return float(np.concatenate(hits).mean())


def _output_ids(task: Task, tok) -> list[int] | None:
    return [tok.stoi[s] for s in task.outputs] if task.kind == "language" else None


# ----------------------------------------------------------------------------------------------------
# One run


def run_id(task: str, pe: str, arch: Arch, seed: int) -> str:
    slug = "".join(c if c.isalnum() or c == "-" else "_" for c in task).strip("_")
    return f"{slug}-{seed_of(task) % 1000:03d}--{pe}--{arch.id}--s{seed}"


CODE = ("lengen.formal.train",)  # the code a formal run's result depends on (its import closure)


def run_params(fc: FormalConfig, task: str, pe: str, arch: Arch, seed: int) -> dict:
    """Everything that determines the run's result (not the task list, grid, seed count or worker count)."""
    train = {k: v for k, v in dataclasses.asdict(fc.train).items() if k != "workers"}
    return {
        "task": task,
        "pe": pe,
        "arch": dataclasses.asdict(arch),
        "seed": seed,
        "train": train,
        "bins": fc.bins,
        "n_eval": fc.n_eval,
        "n_eval_during": fc.n_eval_during,
        "data_seed": fc.data_seed,
        "vocab_size": fc.vocab_size if task in ("unique_copy", "sort") else None,
    }


ALL_RIGHT = 1.0  # the early stop fires once the whole in-distribution sample is right (lengen.engine.StopAtScore)


def stops_early(fc: FormalConfig, task: str) -> bool:
    """Whether a run of this task stops once its in-distribution check is at 100%: algorithmic tasks under
    ``train.early_stop``, languages under ``train.early_stop_languages`` (the paper: algorithmic tasks stop
    at 100% of 2000 examples checked every 3000 steps; languages train their whole budget)."""
    tr = fc.train
    return tr.early_stop_languages if get_task(task, fc.vocab_size).kind == "language" else tr.early_stop


def run_spec(fc: FormalConfig, task: str, pe: str, arch: Arch, seed: int, runs_dir: Path) -> RunSpec:
    tr = fc.train
    return RunSpec(
        run_id=run_id(task, pe, arch, seed),
        root=Path(runs_dir),
        params=run_params(fc, task, pe, arch, seed),
        code=CODE,
        seed=seed,
        steps=tr.steps,
        precision=tr.precision,
        threads=tr.threads,
        grad_clip=tr.grad_clip,
        eval_every=tr.eval_every,
        stop=StopRule("val/acc", ALL_RIGHT) if stops_early(fc, task) else None,
        log_every_n_steps=min(50, tr.eval_every),
    )


class StepStream(L.LightningDataModule):
    """The training stream from the trainer's global step on, so a resumed run sees the batches an
    uninterrupted one would."""

    def __init__(self, stream: Callable[[int], TrainStream]):
        super().__init__()
        self.stream = stream

    def train_dataloader(self):
        start = self.trainer.global_step if self.trainer is not None else 0
        return torch.utils.data.DataLoader(self.stream(start), batch_size=None)


def _result(outcome, task: str, kind: str, pe: str, arch: Arch, seed: int) -> dict:
    """The run's result as the protocol reads it, from the engine's records."""
    rec = outcome.records
    during, final = rec[~rec.final.astype(bool)], rec[rec.final.astype(bool)]
    bins = [
        {"bin": r.bin, "lo": int(r.lo), "hi": int(r.hi), "n": int(r.n), "accuracy": float(r.accuracy)}
        for r in final.itertuples()
    ]
    return {
        "task": task,
        "kind": kind,
        "pos_encoding": pe,
        "arch": dataclasses.asdict(arch),
        "config": arch.id,
        "seed": seed,
        "steps": int(outcome.info["steps"]),
        "history": [(int(r.step), float(r.accuracy)) for r in during.itertuples()],
        "bins": bins,
        "wall_s": float(outcome.info["wall_s"]),
        "fingerprint": outcome.info["fingerprint"],
        "trained_on": trained_on(outcome.info),
    }


def make_system(fc: FormalConfig, task: Task, pe: str, arch: Arch) -> FormalSystem:
    """A run's freshly initialized system: the model (``train.init``; under APE the position table
    re-drawn at ``train.pos_init_std``, GPT-2's 0.02 as in the paper's model), objective and optimizer."""
    tr, tok = fc.train, task.tokenizer()
    mc = ModelConfig(
        vocab_size=len(tok),
        n_layer=arch.n_layer,
        n_head=arch.n_head,
        d_model=arch.d_model,
        d_mlp=tr.mlp_ratio * arch.d_model,
        max_seq_len=table_rows(task, fc.max_length, fc.train_bin[1]),
        pos_encoding=pe,
        init=tr.init,
    )
    system = FormalSystem(
        dataclasses.asdict(mc),
        objective(task),
        _output_ids(task, tok),
        reg_coef=tr.reg_coef if pe == "ape" else 0.0,
        reg_rows=max_positions(task, fc.max_length),
        lr=arch.lr,
        betas=(tr.beta1, tr.beta2),
        eps=1e-8,
        weight_decay=tr.weight_decay,
        warmup_steps=int(tr.warmup_frac * tr.steps),
        decay_steps=int(tr.decay_frac * tr.steps),
        total_steps=tr.steps,
        min_lr_frac=0.0,
    )
    if pe == "ape" and tr.pos_init_std is not None:
        torch.nn.init.normal_(system.model.pos_emb.weight, mean=0.0, std=tr.pos_init_std)
    return system


def train_one(
    fc: FormalConfig, task_name: str, pe: str, arch: Arch, seed: int, runs_dir: Path, progress: bool = False
) -> dict:
    """Train and score one run through the engine (or read it back); returns its result."""
    tr = fc.train
    task = get_task(task_name, fc.vocab_size)
    tok = task.tokenizer()
    n_pos = max_positions(task, fc.max_length)
    spec = run_spec(fc, task_name, pe, arch, seed, runs_dir)

    def build():
        system = make_system(fc, task, pe, arch)
        sets = eval_sets(task, fc.bins, fc.n_eval, fc.data_seed)
        lo, hi = fc.train_bin
        check = sets[f"{lo}-{hi}"][: fc.n_eval_during]

        def score(model, step: int, final: bool) -> list[dict]:
            scored = sets.items() if final else [(f"{lo}-{hi}", check)]
            return [
                {
                    "bin": name,
                    "lo": int(name.split("-")[0]),
                    "hi": int(name.split("-")[1]),
                    "n": len(items),
                    "accuracy": accuracy(model, task, tok, items, tr.precision),
                }
                for name, items in scored
            ]

        evaluator = Evaluate(
            score,
            tr.eval_every,
            tr.precision,
            spec.run_dir,
            monitor=lambda rows: rows[0]["accuracy"],
            monitor_name="val/acc",
        )
        data = StepStream(
            lambda start: TrainStream(
                task,
                tok,
                lo,
                hi,
                tr.batch_size,
                seed_of(fc.data_seed, task_name),
                max_positions=n_pos if pe == "ape" else None,
                start_step=start,
            )
        )
        return system, data, evaluator

    return _result(fit(spec, build, progress=progress), task_name, task.kind, pe, arch, seed)


# ----------------------------------------------------------------------------------------------------
# The protocol


Job = tuple[str, str, Arch, int]  # (task, pos_encoding, grid point, seed): one run


def _read_back(fc: FormalConfig, job: Job, runs_dir: Path) -> dict | None:
    """The run's result if it finished under the same fingerprint (parameters and code), else None."""
    task, pe, arch, seed = job
    done = read_back(run_spec(fc, *job, runs_dir))
    return None if done is None else _result(done, task, get_task(task, fc.vocab_size).kind, pe, arch, seed)


def _train_job(fc: FormalConfig, job: Job, runs_dir: Path) -> dict:
    """One run in a worker process (or in this one)."""
    return train_one(fc, *job, runs_dir=runs_dir)


def _run_jobs(
    fc: FormalConfig, jobs: list[Job], runs_dir: Path, log: Callable[[str], None]
) -> tuple[list[dict], float]:
    """Every job's result in job order, and the recorded wall time of those read back: finished ones are
    read back, the rest trained ``fc.train.workers`` at a time (worker processes are spawned, not forked: a
    forked OpenMP pool can hang)."""
    results = {job: _read_back(fc, job, runs_dir) for job in jobs}
    todo = [job for job in jobs if results[job] is None]

    def finished(job: Job, result: dict) -> None:
        results[job] = result
        accs = " ".join(f"{b['bin']}:{b['accuracy']:.3f}" for b in result["bins"])
        task, pe, arch, seed = job
        log(f"[formal] {task} {pe} {arch.id} s{seed}: {accs} ({result['steps']} steps, {result['wall_s']:.0f}s)")

    workers = min(fc.train.workers, len(todo))
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_train_job, fc, job, runs_dir): job for job in todo}
            for future in as_completed(futures):
                finished(futures[future], future.result())
    else:
        for job in todo:
            finished(job, _train_job(fc, job, runs_dir))
    read_back_s = sum(results[job]["wall_s"] for job in jobs if job not in todo)
    return [results[job] for job in jobs], read_back_s


def select(grid_results: list[dict]) -> tuple[dict, bool]:
    """The paper's rule. ``grid_results`` in grid order (smallest first); returns (chosen, fitted)."""

    def acc(r, k):
        return r["bins"][k]["accuracy"] if len(r["bins"]) > k else 0.0

    fitted = [r for r in grid_results if acc(r, 0) == 1.0]
    if fitted:
        best = max(acc(r, 1) for r in fitted)
        return next(r for r in fitted if acc(r, 1) == best), True  # first = smallest among ties
    best = max(acc(r, 0) for r in grid_results)
    return next(r for r in grid_results if acc(r, 0) == best), False


def records_of(result: dict, stage: str, selected: bool, fitted: bool) -> list[dict]:
    base = {k: result[k] for k in ("task", "kind", "pos_encoding", "config", "seed", "steps", "wall_s")}
    return [
        {
            **base,
            "stage": stage,
            "selected": selected,
            "fitted": fitted,
            "bin": b["bin"],
            "lo": b["lo"],
            "hi": b["hi"],
            "n": b["n"],
            "accuracy": b["accuracy"],
        }
        for b in result["bins"]
    ]


def run_study(fc: FormalConfig, out_dir: Path | None = None, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Grid -> selection -> seeds for every task and encoding; writes and returns the tidy records
    (``records.csv``: one row per run × bin; ``stage`` grid|seeds, ``selected`` marks the chosen
    config's rows)."""
    out_dir = Path(out_dir or FORMAL_DIR)
    runs_dir = out_dir / RUNS_SUBDIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    archs = fc.grid.archs()
    pairs = [(task, pe) for task in fc.tasks for pe in fc.pos_encodings]
    grid, read_back_s = _run_jobs(fc, [(task, pe, a, 0) for task, pe in pairs for a in archs], runs_dir, log)
    machines = [r["trained_on"] for r in grid]
    grid = iter(grid)
    selected = {}  # (task, pe) -> (grid results, chosen, fitted)
    for pair in pairs:
        results = [next(grid) for _ in archs]
        selected[pair] = (results, *select(results))
    seed_jobs = [
        (*pair, Arch(**chosen["arch"]), seed)
        for pair, (_, chosen, _) in selected.items()
        for seed in range(1, fc.seeds)
    ]
    seeds, read_back_seeds_s = _run_jobs(fc, seed_jobs, runs_dir, log)
    machines += [r["trained_on"] for r in seeds]
    seeds, read_back_s = iter(seeds), read_back_s + read_back_seeds_s
    rows = []
    for results, chosen, fitted in selected.values():
        for r in results:
            rows += records_of(r, "grid", r is chosen, fitted)
        for _ in range(1, fc.seeds):
            rows += records_of(next(seeds), "seeds", True, fitted)
    records = pd.DataFrame(rows)
    records.to_csv(out_dir / "records.csv", index=False)
    n_runs = records.groupby(["task", "pos_encoding", "config", "seed"]).ngroups
    (out_dir / "timing.json").write_text(
        json.dumps(
            {
                "runs": n_runs,
                "stage_wall_s_this_call": round(time.time() - t0, 1),
                "read_back_run_wall_s": round(read_back_s, 1),  # runs finished by an earlier call
                "sum_run_wall_s": round(
                    float(records.drop_duplicates(["task", "pos_encoding", "config", "seed"]).wall_s.sum()), 1
                ),
                "threads": fc.train.threads,
                "workers": fc.train.workers,
                "trained_on": tally(machines),  # the machines and arithmetic of the runs (report headers)
            },
            indent=2,
        )
        + "\n"
    )
    return records


def seed_summary(records: pd.DataFrame) -> pd.DataFrame:
    """Per task × encoding × bin, over the selected config's seeds: mean, sd, every seed, fitted."""
    sel = records[records.selected]
    g = sel.groupby(["task", "kind", "pos_encoding", "config", "bin", "lo"], sort=False)
    out = g.accuracy.agg(
        mean="mean",
        sd=lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else math.nan,
        seeds=lambda a: [round(float(x), 4) for x in a],
    ).reset_index()
    out["fitted"] = g.fitted.first().values
    order = {t: k for k, t in enumerate(dict.fromkeys(records.task))}  # the params' task order
    out["_order"] = out.task.map(order)
    return (
        out.sort_values(["_order", "pos_encoding", "lo"], kind="stable").drop(columns="_order").reset_index(drop=True)
    )


def load_timing(out_dir: Path | None = None) -> dict:
    """The stage's timing summary written by :func:`run_study`."""
    return json.loads((Path(out_dir or FORMAL_DIR) / "timing.json").read_text())


def load_trained_on(out_dir: Path | None = None) -> list[dict]:
    """Where the stage's runs trained (``lengen.runtime.tally``, kept in ``timing.json``); empty before the stage
    ran, unknown for runs counted by a ``timing.json`` written before it said."""
    path = Path(out_dir or FORMAL_DIR) / "timing.json"
    if not path.exists():
        return []
    timing = json.loads(path.read_text())
    return timing.get("trained_on") or tally([None] * timing["runs"])
