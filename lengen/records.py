"""The tidy records store: one row per run × task × length × evaluation step, and what is read off it.

Training (``lengen.train``) and fine-tuning (``lengen.finetune``) write one CSV per run with the columns
:data:`RECORD_FIELDS` plus ``final`` (True on the rows of the full-size final evaluation); DVC tracks
the files. Every analysis reads them back through :func:`load_records`, never from a model in memory:

* :func:`load_trained_on` — where the runs were trained (``trained_on`` of their metrics), for report headers.
* :func:`final_records` — each run's last evaluation.
* :func:`summarize` — a run's main-task exact match per length range and its generalization gap (the
  numbers of ``reports/metrics/<run>.json``).
* :func:`generalization_gap`, :func:`curve`, :func:`group_gap` — the gap between the main task's
  accuracy-vs-length curve and its auxiliaries'.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from lengen import paths
from lengen.config import RunConfig
from lengen.runtime import tally

RECORD_FIELDS = (
    "run_id",  # <group>-<pos_encoding>-s<seed> (fine-tuning: <group>-<init>-s<seed>)
    "group",  # task group name (lengen.config.GroupConfig)
    "task",  # task name (lengen.tasks registry)
    "role",  # "main" | "aux"
    "length",  # the task's length parameter
    "in_distribution",  # length <= the task's maximum training length
    "n",  # examples scored
    "exact_match",  # fraction of examples with the whole answer and <eos> right
    "token_accuracy",  # fraction of answer tokens (incl. <eos>) right
    "step",  # optimizer step of the evaluation
    "seed",  # initialization seed
    "pos_encoding",  # rope | nope | ape (fine-tuning: the initialization)
)


def load_records(run_ids: list[str], records_dir: Path | None = None) -> pd.DataFrame:
    """Concatenate the tidy records of the given runs; a missing run is an error, not a silent gap."""
    records_dir = Path(records_dir or paths.RECORDS_DIR)
    missing = [r for r in run_ids if not (records_dir / f"{r}.csv").exists()]
    if missing:
        raise FileNotFoundError(f"no records for run(s) {missing} in {records_dir}; run `dvc repro` first")
    frames = [pd.read_csv(records_dir / f"{r}.csv") for r in run_ids]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RECORD_FIELDS)


def load_trained_on(run_ids: list[str], metrics_dir: Path | None = None) -> list[dict]:
    """Where the runs trained: their machines and arithmetic (``lengen.runtime.trained_on``, kept in
    ``reports/metrics/<run>.json``) counted by ``lengen.runtime.tally``; a run whose metrics do not say is
    counted as unknown."""
    metrics_dir = Path(metrics_dir or paths.METRICS_DIR)
    files = [metrics_dir / f"{r}.json" for r in run_ids]
    return tally(json.loads(f.read_text()).get("trained_on") if f.exists() else None for f in files)


def final_records(records: pd.DataFrame) -> pd.DataFrame:
    """Rows of each run's last evaluation (the full-size final evaluation)."""
    last = records.groupby("run_id").step.transform("max")
    return records[records.step == last]


def summarize(records: pd.DataFrame, run: RunConfig) -> dict:
    """Final-step exact match of the main task over its length ranges, each auxiliary's in-distribution
    exact match, and the generalization gap.

    ``run``: a :class:`~lengen.config.RunConfig` or anything with its ``run_id``, ``group_name``,
    ``group``, ``pos_encoding`` and ``seed`` (a fine-tuning run).
    """
    last = records[records.step == records.step.max()]
    g = run.group
    main = last[last.role == "main"]
    acc = main.groupby(main.length.map(g.length_range)).exact_match.mean()
    out = {
        "run_id": run.run_id,
        "group": run.group_name,
        "pos_encoding": run.pos_encoding,
        "seed": run.seed,
        "step": int(records.step.max()),
        **{f"main/{k}": float(acc.get(k, float("nan"))) for k in ("in-distribution", "transfer", "beyond")},
    }
    for task in g.aux:
        a = last[(last.task == task) & (last.length <= g.aux[task])]
        out[f"aux/{task}/in-distribution"] = float(a.exact_match.mean())
    if g.aux:
        out["generalization_gap"] = group_gap(last.to_dict("records"), g)
    return out


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

    >>> generalization_gap({1: 1.0, 3: 1.0}, {1: 1.0, 3: 0.0})   # difference 0 -> 1 over the span: area 1 / 2
    0.5
    """
    common = sorted(set(main) & set(aux) if lengths is None else lengths)
    if not common:
        raise ValueError("the two curves share no evaluated length")
    diff = np.array([abs(main[n] - aux[n]) for n in common], dtype=float)
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
    aux = {n: float(np.mean([c[n] for c in aux_curves])) for n in common}
    return generalization_gap(main, aux)
