#!/usr/bin/env python
"""Wall time of the last `dvc repro`, stage by stage, read from what the pipeline itself wrote.

    .venv/bin/python benchmarks/stage_times.py            # table on stdout
    .venv/bin/python benchmarks/stage_times.py --json benchmarks/stage_times_cpu.json

Sources: papermill's ``duration`` in every executed notebook under ``reports/`` (one per stage run), and
for the stages that resume from finished work — ``formal`` (``reports/formal/timing.json``: the sum of
its runs' wall times when they were trained), ``train``/``ablation``/``grid``
(``runs/<id>/<fingerprint>/run.json``: ``wall_s`` over every session that trained the run) and ``pretrained``
(``reports/pretrained/runs/<id>/<fingerprint>/run.json``) — whether this call only resumed. A resumed
stage's notebook time understates what a clean clone pays, so the table says so and the total counts the
full cost where it is recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lengen.config import load_config  # noqa: E402


def notebook_duration(path: Path) -> tuple[float, str]:
    pm = json.loads(path.read_text())["metadata"].get("papermill", {})
    return float(pm.get("duration") or 0.0), str(pm.get("start_time") or "")


def collect(root: Path = ROOT) -> list[dict]:
    rows = []
    active = _active_run_ids(root)
    for nb in sorted((root / "reports").glob("*.ipynb")) + sorted((root / "reports" / "train").glob("*.ipynb")):
        secs, start = notebook_duration(nb)
        row = {
            "notebook": str(nb.relative_to(root)),
            "start": start,
            "wall_s": round(secs, 1),
            "full_s": round(secs, 1),
            "note": "",
        }
        if nb.name == "06_formal.ipynb" and (root / "reports/formal/timing.json").exists():
            t = json.loads((root / "reports/formal/timing.json").read_text())
            if "read_back_run_wall_s" in t:  # runs finished by an earlier call: add their time / workers
                read_back = t["read_back_run_wall_s"] / t.get("workers", 1)
            else:  # older timing files: resumed when the runs' own time exceeds the stage's
                read_back = t["sum_run_wall_s"] if t.get("sum_run_wall_s", 0) > secs else 0.0
            if read_back:
                row["full_s"] = round(read_back + secs, 1)
                row["note"] = "resumed: runs read back; full cost adds their recorded wall time / workers"
        if nb.parent.name == "train" and nb.stem not in active:
            row.update(counted=False, note="not a run of the active params.yaml: not counted")
        elif nb.parent.name == "train" and (infos := sorted((root / "runs" / nb.stem).glob("*/run.json"))):
            info = json.loads(max(infos, key=lambda p: p.stat().st_mtime).read_text())
            if info["wall_s"] > secs:  # read back, or resumed: the engine records the run's time over all sessions
                row["full_s"] = round(info["wall_s"], 1)
                row["note"] = "read back or resumed: full cost is the run's recorded wall time (run.json wall_s)"
        if nb.name == "03_pretrained.ipynb" and (root / "reports/pretrained/runs").exists():
            recorded = _finetune_wall_s(root)
            if recorded > secs:  # finished runs were read back: the stage paid at least their recorded time
                row["full_s"] = round(recorded, 1)
                row["note"] = "resumed: full cost = the runs' recorded wall time (at least)"
        rows.append(row)
    return sorted(rows, key=lambda r: r["start"])


def _finetune_wall_s(root: Path) -> float:
    """The recorded wall time of the active profile's fine-tunes at their current fingerprints
    (``lengen.finetune.timings``: never stale runs of another profile or code); 0 while some are unfinished."""
    from lengen.finetune import timings  # imports torch: only where a pretrained stage ran

    try:
        return float(timings(load_config(root / "params.yaml")).wall_s.sum())
    except FileNotFoundError:
        return 0.0


def queue_wall(rows: list[dict], order_file: Path, jobs: int, root: Path = ROOT) -> float:
    """Wall time of the training runs as `make queue` schedules them: JOBS workers, each taking the next stage in
    ``order_file``'s order (then the rest in the table's) when it is free, each run at its recorded full time.
    A model over measured times (the runs of one call need not have run in this order), not a measurement."""
    from lengen.heads.__main__ import stage_items  # DVC's stage item -> its run, as `make queue` names them

    run_of = {item: run.run_id for item, run in stage_items(load_config(root / "params.yaml")).items()}
    named = [ln.strip() for ln in order_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    rank = {}
    for item in named:
        if item in run_of:
            rank.setdefault(run_of[item], len(rank))
    runs = [r for r in rows if r["notebook"].startswith("reports/train/") and r.get("counted", True)]
    runs.sort(key=lambda r: rank.get(Path(r["notebook"]).stem, len(rank)))
    free = [0.0] * jobs
    for r in runs:
        i = free.index(min(free))
        free[i] += r["full_s"]
    return max(free) if runs else 0.0


def _active_run_ids(root: Path) -> set[str]:
    """Run ids of the profile in ``params.yaml``: a leftover notebook of another profile is not its cost."""
    return {r.run_id for r in load_config(root / "params.yaml").all_runs()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the rows and totals here")
    ap.add_argument("--jobs", type=int, default=2, help="workers of `make queue` (default 2: one per core)")
    ap.add_argument("--order", type=Path, default=ROOT / "profiles/queue-order.txt", help="the queue's ORDER file")
    args = ap.parse_args(argv)
    rows = collect()
    counted = [r for r in rows if r.get("counted", True)]
    total, full = sum(r["wall_s"] for r in counted), sum(r["full_s"] for r in counted)
    train_full = sum(r["full_s"] for r in counted if r["notebook"].startswith("reports/train/"))
    queue = queue_wall(rows, args.order, args.jobs)
    wall = full - train_full + queue
    print(f"{'notebook':55s} {'start (UTC)':20s} {'wall s':>8s} {'full s':>8s}  note")
    for r in rows:
        print(f"{r['notebook']:55s} {r['start'][:19]:20s} {r['wall_s']:8.1f} {r['full_s']:8.1f}  {r['note']}")
    print(f"{'total, one stage after another':76s} {total:8.1f} {full:8.1f}  ({full / 60:.1f} min full)")
    print(
        f"training runs {train_full:.0f} s one after another; {queue:.0f} s on {args.jobs} workers in "
        f"{args.order.name}'s order -> the profile's wall time: {wall:.0f} s = {wall / 60:.1f} min (modelled)"
    )
    if args.json:
        out = {"rows": rows, "total_s": round(total, 1), "full_s": round(full, 1), "train_full_s": round(train_full, 1)}
        out |= {"queue_jobs": args.jobs, "queue_wall_s": round(queue, 1), "profile_wall_s": round(wall, 1)}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
