"""Run one training job end to end: build, train (resuming if a checkpoint exists), evaluate, record.

    from lengen.config import load_config
    from lengen.train import train_run
    run = load_config().run("arith", "rope", seed=0)
    result = train_run(run)            # -> runs/arith-rope-s0/{records.csv, metrics.json, run.json, checkpoints/}

Resumption: a run killed part-way leaves ``checkpoints/last.ckpt``; calling ``train_run`` again (as
``dvc repro`` does) continues from it with the same data stream, and ends with the same records as an
uninterrupted run. A checkpoint made under different parameters (fingerprint mismatch) is discarded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger

from lengen import paths
from lengen.config import RunConfig
from lengen.data import EvalExample, LengenDataModule, make_eval_sets, read_eval_sets
from lengen.evaluate import RECORD_FIELDS, default_device, group_gap, resolve_precision
from lengen.system import LengenSystem, PerLengthEval, system_from_run


@dataclass
class RunResult:
    run: RunConfig
    records: pd.DataFrame  # every evaluation, tidy
    metrics: dict  # final summary
    run_dir: Path
    wall_s: float


def fingerprint(run: RunConfig) -> str:
    """Hash of everything that determines the run's result (resuming across a change is wrong)."""
    d = {**dataclasses.asdict(run), "group": run.group.fingerprint_dict()}
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_eval_sets(run: RunConfig, eval_dir: Path | None = None) -> dict[tuple[str, int], list[EvalExample]]:
    """The run's evaluation sets: from the data stage's files if present, else generated (identically)."""
    d = run.data
    wanted = run.group.eval_keys(d.eval_step)
    eval_dir = Path(eval_dir) if eval_dir else paths.EVAL_DIR
    if all((eval_dir / f"{t}.jsonl").exists() for t in run.group.tasks):
        sets = read_eval_sets(eval_dir, list(run.group.tasks))
        if wanted <= set(sets) and all(len(sets[k]) >= d.n_eval for k in wanted):
            return {k: sets[k][: d.n_eval] for k in sorted(wanted)}
    return make_eval_sets(wanted, d.n_eval, d.seed, d.holdout_modulus)


def summarize(records: pd.DataFrame, run: RunConfig) -> dict:
    """Final-step exact match of the main task over its ranges, and the generalization gap."""
    last = records[records.step == records.step.max()]
    g = run.group
    main = last[last.role == "main"]
    acc = main.groupby(main.length.map(g.length_range)).exact_match.mean()
    out = {
        "run_id": run.run_id, "group": run.group_name, "pos_encoding": run.pos_encoding, "seed": run.seed,
        "step": int(records.step.max()),
        **{f"main/{k}": float(acc.get(k, float("nan"))) for k in ("in-distribution", "transfer", "beyond")},
    }
    for task in run.group.aux:
        a = last[(last.task == task) & (last.length <= run.group.aux[task])]
        out[f"aux/{task}/in-distribution"] = float(a.exact_match.mean())
    if run.group.aux:
        out["generalization_gap"] = group_gap(last.to_dict("records"), run.group)
    return out


def train_run(run: RunConfig, eval_dir: Path | None = None, run_dir: Path | None = None,
              reports_dir: Path | None = None, progress: bool = True, resume: bool = True,
              callbacks: list[L.Callback] | None = None) -> RunResult:
    """Train one run (resuming from ``checkpoints/last.ckpt`` if present) and write its outputs.

    ``runs/<id>/``: checkpoints, Lightning logs, ``run.json`` (resolved config, versions, fingerprint).
    ``reports/records/<id>.csv`` (tidy records), ``reports/metrics/<id>.json`` (summary) and
    ``reports/plots/<id>/<task>.csv`` (final accuracy vs length, for ``dvc plots show``).
    """
    t0 = time.time()
    run_dir = Path(run_dir or run.run_dir)
    reports_dir = Path(reports_dir) if reports_dir else paths.REPORTS_DIR
    records_dir, metrics_dir = reports_dir / "records", reports_dir / "metrics"
    plots_dir = reports_dir / "plots" / run.run_id
    ckpt_dir = run_dir / "checkpoints"
    fp = fingerprint(run)
    fp_file = ckpt_dir / "fingerprint.txt"
    if ckpt_dir.exists() and (not resume or not fp_file.exists() or fp_file.read_text() != fp):
        shutil.rmtree(ckpt_dir)  # stale checkpoints from other parameters: never resume from them
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    fp_file.write_text(fp)

    tr, d = run.train, run.data
    torch.set_num_threads(tr.threads)
    L.seed_everything(run.seed, workers=True, verbose=False)  # initialization seed; data has its own
    system = system_from_run(run)
    sets_final = load_eval_sets(run, eval_dir)
    sets_during = {k: v[: d.n_eval_during_training] for k, v in sets_final.items()}
    meta = dict(run_id=run.run_id, group_name=run.group_name, group=run.group, seed=run.seed,
                pos_encoding=run.pos_encoding)
    evaluator = PerLengthEval(sets_during, sets_final, tr.eval_every, run_dir, meta, tr.precision)
    offsets = run.model.max_seq_len if (run.pos_encoding == "ape" and tr.ape_random_offset) else None
    dm = LengenDataModule(run.group, tr.batch_size, d.seed, d.holdout_modulus, offsets, tr.num_workers)
    precision = resolve_precision(tr.precision, default_device())
    trainer = L.Trainer(
        max_steps=tr.steps, accelerator="auto", devices=tr.devices, strategy="ddp" if tr.devices > 1 else "auto",
        precision=precision,
        gradient_clip_val=tr.grad_clip or None, logger=CSVLogger(run_dir, name="logs", version=""),
        callbacks=[evaluator, LearningRateMonitor(logging_interval="step"), *(callbacks or [])],
        enable_checkpointing=False, enable_progress_bar=progress,
        enable_model_summary=False, log_every_n_steps=50, limit_val_batches=0, num_sanity_val_steps=0,
    )
    last = ckpt_dir / "last.ckpt"
    resumed = resume and last.exists()
    trainer.fit(system, datamodule=dm, ckpt_path=last if resumed else None)

    records = pd.DataFrame(evaluator.records)[list(RECORD_FIELDS) + ["final"]]
    if not trainer.is_global_zero:  # DDP: the other ranks hold the same records; rank 0 writes
        return RunResult(run, records, summarize(records, run), run_dir, time.time() - t0)
    records_dir.mkdir(parents=True, exist_ok=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    records.to_csv(records_dir / f"{run.run_id}.csv", index=False)
    plots_dir.mkdir(parents=True, exist_ok=True)
    final = records[records.step == records.step.max()]
    for task, df in final.groupby("task"):  # one small file per task: what `dvc plots show` draws
        df[["length", "exact_match", "token_accuracy"]].to_csv(plots_dir / f"{task}.csv", index=False)
    metrics = summarize(records, run)
    # NaN (a range with no evaluated length) is not valid JSON: write null.
    metrics = {k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()}
    (metrics_dir / f"{run.run_id}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    this_session = round(time.time() - t0, 1)
    info = {
        "run": dataclasses.asdict(run), "fingerprint": fp, "wall_s_this_session": this_session,
        # A resumed run's cost is what every session spent on it, not only the last (often seconds).
        "wall_s_total": round((_previous_wall_s(run_dir / "run.json", fp) if resumed else 0.0) + this_session, 1),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__},
        "machine": platform.platform(), "processor": _cpu_model(), "cpu_id": _cpu_id(), "threads": tr.threads,
        "precision": precision,  # what "auto" became here
        "float_path": float_path(),  # with threads and precision, what decides the bits of a run on CPU
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    return RunResult(run, records, metrics, run_dir, time.time() - t0)


def _previous_wall_s(info_file: Path, fp: str) -> float:
    """Wall time earlier sessions spent on this run (same fingerprint), from the run.json of the last one
    that finished. A session killed before the end writes no run.json, so its time is not counted."""
    try:
        prev = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return 0.0
    if prev.get("fingerprint") != fp:
        return 0.0
    return float(prev.get("wall_s_total", prev.get("wall_s_this_session", 0.0)))


# Environment variables that cap which kernels ATen, MKL and oneDNN dispatch to. Capped to AVX2 on an Intel
# AVX-512 CPU they run Intel's AVX2 kernels: another float path, not the bits of an AVX2-only AMD CPU (README,
# "The arithmetic recipe", run 22).
FLOAT_PATH_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")


def float_path() -> dict[str, str]:
    """ATen's vector ISA in this process and any kernel-dispatch caps set in the environment."""
    caps = {k: os.environ[k] for k in FLOAT_PATH_ENV if k in os.environ}
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), **caps}


def _cpu_model() -> str:
    """The CPU's model name (run times and bf16 speed depend on it)."""
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _cpu_id(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """CPU family and model from /proc/cpuinfo: machines of one name ("AMD EPYC") differ in ISA and bits."""
    fields = {}
    try:
        for line in open(cpuinfo):
            key, _, value = line.partition(":")
            if key.strip() in ("cpu family", "model") and key.strip() not in fields:
                fields[key.strip()] = value.strip()
            if not line.strip():
                break
    except OSError:
        return None
    return f"family {fields['cpu family']} model {fields['model']}" if len(fields) == 2 else None


def load_records(run_ids: list[str], records_dir: Path | None = None) -> pd.DataFrame:
    """Concatenate the tidy records of the given runs; a missing run is an error, not a silent gap."""
    records_dir = Path(records_dir or paths.RECORDS_DIR)
    missing = [r for r in run_ids if not (records_dir / f"{r}.csv").exists()]
    if missing:
        raise FileNotFoundError(f"no records for run(s) {missing} in {records_dir}; run `dvc repro` first")
    frames = [pd.read_csv(records_dir / f"{r}.csv") for r in run_ids]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RECORD_FIELDS)


def load_system(checkpoint: Path) -> LengenSystem:
    return LengenSystem.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
