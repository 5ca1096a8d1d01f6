"""A main training run (a task group × position encoding × seed), trained by ``lengen.engine``.

    from lengen.config import load_config
    from lengen.train import train_run
    run = load_config().run("arith_carry", "rope", seed=0)
    result = train_run(run)   # runs/arith_carry-rope-s0/<fingerprint>/ + reports/{records,metrics,plots}/

This module says what a main run *is* for the engine (its parameters, code, system, training stream and
scoring: teacher-forced exact match per task and length, on the data stage's evaluation sets) and writes
the stage's outputs. Resuming after a kill, reading back a finished run and retraining after a change of
parameters or code are the engine's (``lengen.engine``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pandas as pd
from lightning.fabric.utilities.imports import _IS_INTERACTIVE

from lengen import paths
from lengen.config import RunConfig, load_config
from lengen.data import EvalExample, LengenDataModule, make_eval_sets, read_eval_sets
from lengen.engine import Evaluate, RunSpec, fit, read_back
from lengen.evaluate import score_sets
from lengen.records import RECORD_FIELDS, summarize
from lengen.runtime import trained_on
from lengen.system import system_from_run

# The code a main run's result depends on: this module's import closure (engine, system, model, data,
# tasks, tokenizer, evaluation, config). Part of every run's fingerprint.
CODE = ("lengen.train",)
INTERACTIVE = _IS_INTERACTIVE  # a notebook kernel: Lightning's DDP cannot relaunch it (see train_run)


@dataclass
class RunResult:
    run: RunConfig
    records: pd.DataFrame  # every evaluation, tidy
    metrics: dict  # final summary
    run_dir: Path
    read_back: bool  # True: finished earlier under the same fingerprint, nothing trained


def run_spec(run: RunConfig, root: Path | None = None) -> RunSpec:
    """The engine's view of a main run; ``run_spec(run).run_dir`` is where its checkpoints live."""
    tr = run.train
    return RunSpec(
        run_id=run.run_id,
        root=Path(root or paths.RUNS_DIR),
        params={**dataclasses.asdict(run), "group": run.group.fingerprint_dict()},
        code=CODE,
        seed=run.seed,
        steps=tr.steps,
        precision=tr.precision,
        threads=tr.threads,
        devices=tr.devices,
        grad_clip=tr.grad_clip,
        eval_every=tr.eval_every,
        keep_checkpoints=True,
        compile=tr.compile,
    )


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


def _announce(run: RunConfig):
    def line(rows: list[dict], step: int) -> str:
        by_range: dict[str, list[float]] = {}
        for r in rows:
            if r["role"] == "main":
                by_range.setdefault(run.group.length_range(r["length"]), []).append(r["exact_match"])
        means = ", ".join(f"{name} {sum(v) / len(v):.3f}" for name, v in by_range.items())
        return f"[eval] {run.run_id} step {step}: main {means}"

    return line


def train_run(
    run: RunConfig,
    eval_dir: Path | None = None,
    runs_root: Path | None = None,
    reports_dir: Path | None = None,
    progress: bool = True,
    callbacks: list[L.Callback] | None = None,
    params_file: Path | None = None,
) -> RunResult:
    """Train (or resume, or read back) one run and write the stage's outputs.

    ``reports/records/<id>.csv`` (tidy records), ``reports/metrics/<id>.json`` (summary, no wall times)
    and ``reports/plots/<id>/<task>.csv`` (final accuracy vs length, for ``dvc plots show``).
    ``params_file``: the run's parameter file, needed only to train with DDP from a notebook (below).
    """
    spec = run_spec(run, runs_root)
    reports_dir = Path(reports_dir) if reports_dir else paths.REPORTS_DIR
    if run.train.devices > 1 and INTERACTIVE and read_back(spec) is None:
        # Lightning's DDP starts ranks 1..N-1 by running this process's command again, which a notebook kernel
        # (a DVC stage runs one) cannot be: the run trains in a child process (`python -m lengen.train`), from
        # the same parameters, and is read back here: the fingerprint proves it is this run.
        cmd = [sys.executable, "-m", "lengen.train", run.group_name, run.pos_encoding, str(run.seed)]
        for flag, value in (("--params", params_file), ("--eval-dir", eval_dir), ("--runs-root", runs_root)):
            cmd += [flag, str(value)] if value is not None else []
        subprocess.run(cmd + ["--reports-dir", str(reports_dir)], check=True)
        if read_back(spec) is None:
            raise RuntimeError(f"{' '.join(cmd)} did not train run {run.run_id} under fingerprint {spec.fingerprint}")

    def build():
        tr, d = run.train, run.data
        sets_final = load_eval_sets(run, eval_dir)
        sets_during = {k: v[: d.n_eval_during_training] for k, v in sets_final.items()}
        meta = dict(
            run_id=run.run_id, group_name=run.group_name, group=run.group, seed=run.seed, pos_encoding=run.pos_encoding
        )

        def score(model, step: int, final: bool) -> list[dict]:
            return score_sets(model, sets_final if final else sets_during, step=step, **meta)

        evaluator = Evaluate(score, tr.eval_every, tr.precision, spec.run_dir, announce=_announce(run))
        offsets = run.model.max_seq_len if (run.pos_encoding == "ape" and tr.ape_random_offset) else None
        dm = LengenDataModule(run.group, tr.batch_size, d.seed, d.holdout_modulus, offsets, tr.num_workers)
        return system_from_run(run), dm, evaluator

    out = fit(spec, build, progress=progress, callbacks=callbacks)
    records = out.records[[*RECORD_FIELDS, "final"]]
    metrics = summarize(records, run)
    if out.info:  # rank 0 writes (under DDP the other ranks hold the same records)
        metrics["trained_on"] = trained_on(out.info)  # the reports say where their runs were trained
        write_outputs(run, records, metrics, reports_dir)
    return RunResult(run, records, metrics, out.run_dir, out.read_back)


def write_outputs(run: RunConfig, records: pd.DataFrame, metrics: dict, reports_dir: Path) -> None:
    records_dir, metrics_dir = reports_dir / "records", reports_dir / "metrics"
    plots_dir = reports_dir / "plots" / run.run_id
    for d in (records_dir, metrics_dir, plots_dir):
        d.mkdir(parents=True, exist_ok=True)
    records.to_csv(records_dir / f"{run.run_id}.csv", index=False)
    final = records[records.step == records.step.max()]
    for task, df in final.groupby("task"):  # one small file per task: what `dvc plots show` draws
        df[["length", "exact_match", "token_accuracy"]].to_csv(plots_dir / f"{task}.csv", index=False)
    # NaN (a range with no evaluated length) is not valid JSON: write null.
    metrics = {k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()}
    (metrics_dir / f"{run.run_id}.json").write_text(json.dumps(metrics, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m lengen.train GROUP POS_ENCODING SEED [--params FILE]``: one run, as its stage trains it."""
    ap = argparse.ArgumentParser(prog="python -m lengen.train", description=main.__doc__)
    ap.add_argument("group")
    ap.add_argument("pos_encoding")
    ap.add_argument("seed", type=int)
    ap.add_argument("--params", type=Path, default=None, help="parameter file (default: params.yaml)")
    ap.add_argument("--eval-dir", type=Path, default=None)
    ap.add_argument("--runs-root", type=Path, default=None)
    ap.add_argument("--reports-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    run = load_config(args.params).run(args.group, args.pos_encoding, args.seed)
    result = train_run(run, args.eval_dir, args.runs_root, args.reports_dir, progress=False, params_file=args.params)
    print(f"[lengen] {run.run_id}: {'read back' if result.read_back else 'trained'} ({result.run_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
