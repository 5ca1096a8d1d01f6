"""The paper's seed rule on top of :func:`lengen.formal.train.run_study`: seeds that fit.

The official protocol averages a selected configuration over seeds that *fit* the training bin (100% exact
match on it), rerunning new seeds until enough do. ``run_study`` trains seeds ``0 … seeds − 1`` of the
selected grid point; :func:`run_study` here then trains seeds ``seeds, seeds + 1, …`` of every pair whose
selection fitted until ``seeds`` of them fit, or until ``max_seeds`` have been tried (default
``MAX_SEEDS_FACTOR × seeds``: a pair that keeps failing is reported with the seeds that did fit, and the
count says so). :mod:`lengen.formal.report` averages a fitted pair over its fitting seeds only.

    records = protocol.run_study(fc)          # grid -> selection -> seeds -> more seeds until enough fit
    protocol.seed_fits(records)               # per run: does it fit the training bin?

It lives beside ``lengen.formal.train``, not in it: every formal run's fingerprint carries the code hash of
that module's import closure, and a rule about *which* runs to average must not invalidate the runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from lengen.formal.config import Arch, FormalConfig
from lengen.formal.train import FORMAL_DIR, RUNS_SUBDIR, _run_jobs, records_of
from lengen.formal.train import run_study as run_grid_and_seeds
from lengen.runtime import tally

MAX_SEEDS_FACTOR = 2  # at most 2 × seeds tried per pair: the paper states no cap; ours bounds the CPU time

RUN = ["task", "pos_encoding", "config", "seed"]


def seed_fits(records: pd.DataFrame) -> pd.Series:
    """Per run (indexed by task, pos_encoding, config, seed): True if it is 100% right on the first
    (training) bin — the same test as the grid's selection rule."""
    first = records[records.lo == records.lo.min()]
    return first.groupby(RUN, sort=False).accuracy.first().eq(1.0).rename("fits")


def fitting_seeds(records: pd.DataFrame) -> pd.DataFrame:
    """The selected configuration's runs of every pair, with a fitted pair cut down to its seeds that fit
    (the paper's mean); pairs whose selection did not fit keep every seed (there is nothing to judge them
    by). Adds ``seeds_fit`` and ``seeds_run``: of the selected point, how many seeds fit of how many ran."""
    sel = records[records.selected].copy()
    fits = seed_fits(sel)
    sel["fits"] = fits.reindex(pd.MultiIndex.from_frame(sel[RUN])).to_numpy()
    per_pair = fits.reset_index().groupby(["task", "pos_encoding"]).fits.agg(seeds_fit="sum", seeds_run="size")
    sel = sel.join(per_pair, on=["task", "pos_encoding"])
    keep = ~sel.fitted.astype(bool) | sel.fits
    return sel[keep].drop(columns="fits").reset_index(drop=True)


def run_study(
    fc: FormalConfig,
    out_dir: Path | None = None,
    log: Callable[[str], None] = print,
    max_seeds: int | None = None,
) -> pd.DataFrame:
    """:func:`lengen.formal.train.run_study`, then more seeds of each fitted pair until ``fc.seeds`` fit
    (at most ``max_seeds`` per pair, default ``MAX_SEEDS_FACTOR × fc.seeds``). Extra runs are kept and read
    back like every other (``reports/formal/runs/``); their records join ``records.csv`` as stage
    ``seeds``, and ``timing.json`` counts them."""
    out_dir = Path(out_dir or FORMAL_DIR)
    max_seeds = MAX_SEEDS_FACTOR * fc.seeds if max_seeds is None else max_seeds
    records = run_grid_and_seeds(fc, out_dir, log)
    t0, read_back_s, extra = time.time(), 0.0, []
    while True:
        fits = seed_fits(records[records.selected]).reset_index()
        pairs = records[records.selected & records.fitted.astype(bool)].drop_duplicates(["task", "pos_encoding"])
        jobs = []
        for pair in pairs.itertuples():
            runs = fits[(fits.task == pair.task) & (fits.pos_encoding == pair.pos_encoding)]
            need = min(fc.seeds - int(runs.fits.sum()), max_seeds - len(runs))
            arch = _arch_of(fc, pair.config)
            jobs += [(pair.task, pair.pos_encoding, arch, int(runs.seed.max()) + 1 + k) for k in range(need)]
        if not jobs:
            break
        results, read_back = _run_jobs(fc, jobs, out_dir / RUNS_SUBDIR, log)
        read_back_s += read_back
        rows = [r for res in results for r in records_of(res, "seeds", True, fitted=True)]  # only fitted pairs get more
        extra += results
        records = pd.concat([records, pd.DataFrame(rows)], ignore_index=True)
    if extra:
        records = _in_task_order(records)
        records.to_csv(out_dir / "records.csv", index=False)
        _count_in_timing(out_dir, records, time.time() - t0, read_back_s, [r["trained_on"] for r in extra])
    return records


def _arch_of(fc: FormalConfig, config: str) -> Arch:
    """The grid point whose id is ``config``."""
    return next(a for a in fc.grid.archs() if a.id == config)


def _in_task_order(records: pd.DataFrame) -> pd.DataFrame:
    """Extra seeds next to their pair's other runs (records.csv stays grouped by task and encoding)."""
    order = {pair: k for k, pair in enumerate(dict.fromkeys(zip(records.task, records.pos_encoding)))}
    key = pd.Series([order[p] for p in zip(records.task, records.pos_encoding)], index=records.index)
    return records.loc[key.sort_values(kind="stable").index].reset_index(drop=True)


def _count_in_timing(
    out_dir: Path, records: pd.DataFrame, wall_s: float, read_back_s: float, machines: list[dict]
) -> None:
    """Add the extra seeds (``machines``: where each trained) to the stage's timing summary written by
    ``run_study``."""
    path = out_dir / "timing.json"
    timing = json.loads(path.read_text())
    runs = records.drop_duplicates(RUN)
    timing.update(
        runs=len(runs),
        stage_wall_s_this_call=round(timing["stage_wall_s_this_call"] + wall_s, 1),
        read_back_run_wall_s=round(timing["read_back_run_wall_s"] + read_back_s, 1),
        sum_run_wall_s=round(float(runs.wall_s.sum()), 1),
        trained_on=tally(timing.get("trained_on", []) + machines),
    )
    path.write_text(json.dumps(timing, indent=2) + "\n")
