"""The CPU recipe search: train one group under a profile with overrides and log what it gave.

    python benchmarks/recipe_search.py NAME --group arith_carry --set train.lr=3e-3 model.d_model=192

Each call trains one run (1 thread by default, so two searches can share the 2 cores) into
``/tmp/lengen-search/NAME`` and appends one JSON line to ``benchmarks/recipe_search.jsonl``: the
overrides, wall time, and the run's summary (main task in-distribution / transfer / beyond, each
auxiliary in-distribution, generalization gap) plus the final per-length exact match of the main task.
The README's Results section is the reading of that file.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import yaml

from lengen import paths
from lengen.config import parse_config
from lengen.train import train_run

LOG = Path(__file__).with_name("recipe_search.jsonl")


def override(raw: dict, assignments: list[str]) -> dict:
    """``section.key=value`` (value parsed as YAML) applied to a copy of the raw params."""
    raw = copy.deepcopy(raw)
    for a in assignments:
        key, value = a.split("=", 1)
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--group", default="arith_carry")
    ap.add_argument("--pe", default="rope")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], help="section.key=value overrides")
    args = ap.parse_args()

    raw = yaml.safe_load((paths.PROFILES_DIR / f"{args.profile}.yaml").read_text())
    sets = ["train.threads=1", *args.set]
    cfg = parse_config(override(raw, sets))
    run = cfg.run(args.group, args.pe, args.seed)
    out = Path("/tmp/lengen-search") / args.name
    t0 = time.time()
    res = train_run(
        run, eval_dir=out / "eval", runs_root=out / "runs", reports_dir=out / "reports", progress=False, resume=True
    )
    final = res.records[res.records.step == res.records.step.max()]
    main_curve = final[final.task == run.group.main_task].sort_values("length")
    info = json.loads((out / "run" / "run.json").read_text())
    line = dict(
        name=args.name,
        profile=args.profile,
        group=args.group,
        pe=args.pe,
        seed=args.seed,
        overrides=sets,
        wall_s=round(time.time() - t0, 1),
        summary=res.metrics,
        processor=info["processor"],
        float_path=info.get("float_path"),
        main_exact_match={int(r.length): round(float(r.exact_match), 3) for r in main_curve.itertuples()},
    )
    with open(LOG, "a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps(line, indent=1))


if __name__ == "__main__":
    main()
