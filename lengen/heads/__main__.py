"""``python -m lengen.heads STAGE_ITEM...``: the head analysis's rows of the runs these DVC stage items train,
stored per run (:mod:`lengen.heads.store`) while the run's checkpoints are on this machine.

``make queue`` runs it right after each training stage item, named as ``dvc stage list`` names them:
``train@caprev-rope-0``, ``ablation@arith_control-rope-0``, ``cross@caprev-ape-0`` (``<group>-<pe>-<seed>``)
and ``grid@4-8-0`` (``<main>-<aux>-<seed>``). A run the analysis does not read (a grid or cross run, a
group in no ``heads.groups`` category, another position encoding than the experiment's) gets one line saying
so, as does an item of another stage. An item of a training stage that is not in the profile's matrix is an
error, as is a run that has neither stored rows of the same key nor checkpoints. Threads: ``train.threads``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lengen import paths
from lengen.config import Config, RunConfig, load_config
from lengen.heads.report import analysed_runs
from lengen.heads.store import entry_dir, run_rows
from lengen.runtime import default_device

RUN_STAGES = ("train", "ablation", "cross", "grid")  # the stages that train one run per item


def stage_items(cfg: Config) -> dict[str, RunConfig]:
    """Every item of the training stages (as DVC names a matrix item: its values joined by '-') -> its run."""
    items = {}
    for stage, matrix in (("train", cfg.experiment), ("ablation", cfg.ablation), ("cross", cfg.cross)):
        for g in matrix.groups if matrix else []:
            for pe in matrix.pos_encodings:
                for seed in matrix.seeds:
                    items[f"{stage}@{g}-{pe}-{seed}"] = cfg.run(g, pe, seed)
    grid = cfg.grid
    for main, aux in grid.cells() if grid else []:
        for seed in grid.seeds:
            items[f"grid@{main}-{aux}-{seed}"] = cfg.run(grid.name(main, aux), grid.pos_encoding, seed)
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lengen.heads", description=__doc__.split("\n\n")[0])
    parser.add_argument("items", nargs="+", metavar="STAGE_ITEM", help="e.g. train@caprev-rope-0")
    parser.add_argument("--params", type=Path, default=paths.PARAMS_FILE, help="parameter set (default params.yaml)")
    parser.add_argument("--runs-dir", type=Path, help="where training keeps the runs (default runs/)")
    parser.add_argument("--records-dir", type=Path, help="the runs' tidy records (default reports/records/)")
    parser.add_argument("--store-dir", type=Path, help="the per-run store (default reports/heads/runs/)")
    args = parser.parse_args(argv)

    cfg = load_config(args.params)
    items = stage_items(cfg)
    unknown = [i for i in args.items if i.partition("@")[0] in RUN_STAGES and i not in items]
    if unknown:
        parser.error(f"not a stage item of the profile in {args.params}: {', '.join(unknown)}")
    hc = cfg.heads
    covered = {r.run_id for r in analysed_runs(cfg, hc)} if hc else set()
    torch.set_num_threads(cfg.train.threads)
    device = default_device()
    for item in args.items:
        run = items.get(item)
        if run is None:
            print(f"[heads] {item}: not a training stage item, nothing to store", flush=True)
        elif run.run_id not in covered:
            print(
                f"[heads] {item}: {run.run_id} is not in the head analysis of profile {cfg.profile!r} (it reads the "
                "experiment and ablation runs of the heads.groups groups at the experiment's position encodings)",
                flush=True,
            )
        else:
            try:
                rows, probed = run_rows(run, hc, args.runs_dir, args.records_dir, args.store_dir, device)
            except FileNotFoundError as e:
                sys.exit(str(e))
            where = entry_dir(run.run_id, args.store_dir)
            where = where.relative_to(paths.PROJ_ROOT) if where.is_relative_to(paths.PROJ_ROOT) else where
            done = f"stored in {where}" if probed else f"up to date in {where}"
            print(f"[heads] {item}: {run.run_id} {done} ({len(rows.checkpoints)} checkpoints)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
