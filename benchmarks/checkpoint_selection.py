"""Would picking the checkpoint on in-distribution accuracy rescue transfer? Read from kept records.

    python benchmarks/checkpoint_selection.py xeon_amx_lr1e-3=/tmp/rc/reports/records \\
        'xeon_amx_lr1e-3=/tmp/lengen-search/amx_seed*_arith/reports/records' --groups arith_carry caprev

Every run evaluates each task at every length every ``train.eval_every`` steps, so the choice of
checkpoint can be studied after the fact without training anything. For each ``LABEL=RECORDS_DIR``
(a glob allowed; the same label may repeat to pool directories) this reads the runs' tidy records,
and per run reports the main task's transfer-range accuracy at the last checkpoint, at the one with
the best in-distribution accuracy (ties to the latest: a choice made without seeing longer inputs),
and the best in hindsight (an upper bound only). ``lengen.analysis.checkpoint_selection`` does the
work; the figures notebook shows the same table for the pipeline's runs. Prints a table and appends
one JSON line per run to ``benchmarks/checkpoint_selection.jsonl``.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import pandas as pd

from lengen import analysis, paths
from lengen.config import load_config

LOG = Path(__file__).with_name("checkpoint_selection.jsonl")


def trained_on(records_dir: Path, run_id: str) -> str | None:
    """The processor the run trained on, from the engine's run.json (the latest of the run's fingerprints)."""
    infos = sorted((records_dir.parent.parent / "runs" / run_id).glob("*/run.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(infos[-1].read_text())["provenance"].get("processor") if infos else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", help="LABEL=RECORDS_DIR (glob allowed)")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--groups", nargs="*", default=None, help="only these groups (default: all)")
    args = ap.parse_args()

    cfg = load_config(paths.PROFILES_DIR / f"{args.profile}.yaml")
    rows = []
    for source in args.sources:
        label, pattern = source.split("=", 1)
        dirs = sorted(glob.glob(pattern))
        if not dirs:
            raise SystemExit(f"{source}: no directory matches {pattern}")
        for d in dirs:
            for csv in sorted(Path(d).glob("*.csv")):
                records = pd.read_csv(csv)
                if args.groups and records.group.iloc[0] not in args.groups:
                    continue
                sel = analysis.checkpoint_selection(analysis.length_ranges(records, cfg))
                rows += [
                    dict(label=label, source=str(csv), processor=trained_on(Path(d), r["run_id"]), **r)
                    for r in sel.to_dict("records")
                ]
    table = pd.DataFrame(rows)
    if table.empty:
        raise SystemExit("no run with both an in-distribution and a transfer range")
    cols = [
        "label",
        "run_id",
        "last_step",
        "transfer_last",
        "selected_step",
        "selected_in_dist",
        "transfer_selected",
        "hindsight_step",
        "transfer_hindsight",
    ]
    print(table[cols].to_string(index=False, float_format="%.3f"))
    print()
    print(
        table.groupby(["label", "group"])[["transfer_last", "transfer_selected", "transfer_hindsight"]]
        .agg(["mean", "max"])
        .to_string(float_format="%.3f")
    )
    with open(LOG, "a") as f:
        for r in rows:
            f.write(json.dumps(r, default=float) + "\n")


if __name__ == "__main__":
    main()
