#!/usr/bin/env python
"""Does this machine train the published float path? Short runs compared digit for digit with a recorded machine.

    .venv/bin/python benchmarks/float_path_probe.py --json benchmarks/float_path_probe_zen3.json    # record
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python benchmarks/float_path_probe.py --compare benchmarks/float_path_probe_zen3.json

~6 min on one core of a Zen 3. Why: the study is produced in pieces over sessions, and a session gets the
machine it gets. A run trained on another CPU kind is another float path (docs/machines.md) unless that kind,
with its kernels capped, computes the same bits. On an Intel Xeon capped to AVX2 it did not (MKL's AVX2 kernels on
Intel are not those it runs on AMD; docs/arithmetic-recipe.md, search run 22); on an AVX-512 AMD CPU it is
untested. With ``ONEDNN_MAX_CPU_ISA`` below bf16 and ``ATEN_CPU_CAPABILITY=avx2`` the engine resolves
``precision: auto`` to fp32 and ``compile: auto`` to eager, as on an AVX2-only CPU, so the runs' fingerprints
and settings are the published ones; only the kernels' bits are in question, and this measures them.

Method: three runs of the ``study`` profile, each through the pipeline's own code (``lengen.train.train_run``,
``lengen.formal.train.train_one``) in a fresh process at one thread, shortened to ``--steps`` steps with an
evaluation at the last: the arithmetic group ``arith_carry`` (fp32 on every CPU, the most float-sensitive),
the string group ``caprev`` (``precision: auto``) and a formal run (parity, APE, the first grid point). Per run:
the resolved precision and compile setting, the md5 of the logged metrics (every loss and learning rate), the
first and last logged loss and the md5 of the final records. ``--compare``: each run's md5s against the
recorded file's; prints same / different per run and exits 1 on a difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import pandas as pd  # noqa: E402

from lengen.config import load_config  # noqa: E402
from lengen.paths import PROFILES_DIR  # noqa: E402

RUNS = ("arith_carry", "caprev", "formal")


def _shortened(cfg, steps: int):
    """A copy of a section with ``steps`` training steps and one evaluation, at the last step."""
    return dataclasses.replace(cfg, steps=steps, eval_every=steps)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _losses(metrics: Path) -> dict:
    m = pd.read_csv(metrics).dropna(subset=["train/loss"])
    first, last = m.iloc[0], m.iloc[-1]
    return {"first": [int(first.step), float(first["train/loss"])], "last": [int(last.step), float(last["train/loss"])]}


def train(name: str, steps: int, root: Path) -> dict:
    """One run in this process; what it logged and scored."""
    study = load_config(PROFILES_DIR / "study.yaml")
    if name == "formal":
        import lengen.formal.train as ft

        fc = study.formal
        fc = dataclasses.replace(fc, train=dataclasses.replace(_shortened(fc.train, steps), early_stop=False))
        ft.train_one(fc, "parity", "ape", fc.grid.archs()[0], 0, root)
    else:
        from lengen.train import train_run

        run = study.run(name, "rope", 0)
        run = dataclasses.replace(run, train=_shortened(run.train, steps))
        train_run(run, runs_root=root, reports_dir=root / "reports", progress=False)
    (info_file,) = root.glob("*/*/run.json")  # the run's own directory: <run id>/<fingerprint>/
    run_dir, info = info_file.parent, json.loads(info_file.read_text())
    return {
        "precision": info["precision"],
        "compiled": info["compile"]["compiled"],
        "float_path": info["provenance"]["float_path"],
        "metrics_md5": _md5(run_dir / "logs" / "metrics.csv"),
        "records_md5": _md5(run_dir / "records.csv"),
        "loss": _losses(run_dir / "logs" / "metrics.csv"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--compare", type=Path, help="a recorded file: same or different, run by run")
    ap.add_argument("--run", choices=RUNS, help=argparse.SUPPRESS)  # internal: train this run in this process
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        print(json.dumps(train(args.run, args.steps, args.root)))
        return
    from lengen.runtime import cpu_id, float_path
    from speed import machine_info

    result = {"machine": {**machine_info(1), "cpu_id": cpu_id(), "float_path": float_path()}, "steps": args.steps}
    for name in RUNS:  # a fresh process each: nothing a run does can reach the next one's numbers
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, __file__, "--run", name, "--steps", str(args.steps), "--root", tmp]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
            result[name] = json.loads(done.stdout.strip().splitlines()[-1])
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.compare:
        ref = json.loads(args.compare.read_text())
        if ref["steps"] != args.steps:
            sys.exit(f"--steps {args.steps} against a file recorded at {ref['steps']}")
        same = {n: all(result[n][k] == ref[n][k] for k in ("metrics_md5", "records_md5")) for n in RUNS}
        for n, ok in same.items():
            print(
                f"{n}: {'same' if ok else 'DIFFERENT'} (here {result[n]['loss']['last']}, {args.compare.name} "
                f"{ref[n]['loss']['last']})"
            )
        sys.exit(0 if all(same.values()) else 1)


if __name__ == "__main__":
    main()
