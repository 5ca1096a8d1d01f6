#!/usr/bin/env python
"""Does a compiled formal run depend on what its process compiled before? Fresh process vs a worker's history.

    .venv/bin/python benchmarks/compile_history.py [--steps 300] [--json FILE]   # ~6 min on a 2-core Zen 3

Why: the formal stage trains its runs in a few long-lived worker processes (lengen.formal.train), and
torch.compile's cache lives as long as the process. Dynamo compiles the network's forward once per task
shape and encoding; after ``recompile_limit`` (8) graphs it stops compiling that function and runs it eager,
which is another float path: a run's digits then depend on what its worker happened to train before. The
study's formal stage trained parity and addition after 12 other (task, encoding) graphs per worker, and a
clean clone (5 graphs per worker) did not reproduce their digits (docs/machines.md).

Method: the run (parity, APE, the study's first grid point, seed 0, ``--steps`` steps, every run compiled as
``auto`` does on AVX-512 CPUs) is trained three times, each in a run directory of its own: (a) ``fresh``, in a
process of its own; (b) ``history``, in a second process after 3 compiled steps of each of the 12 (task,
encoding) graphs that preceded it in the study's worker, with ``torch.compiler.reset`` disabled (the engine
before it emptied the cache); (c) ``reset``, next in that process through the engine as it is (which empties
the cache before every run). Records per mode: the md5 of the logged metrics (losses, learning rates, checks), the first
logged loss, the final accuracies, and whether dynamo reported hitting its recompile limit. Expected: (a) =
(c) byte for byte, (b) differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import lengen.engine as engine  # noqa: E402
import lengen.formal.train as ft  # noqa: E402
from lengen.config import load_config  # noqa: E402
from lengen.config.formal import Arch  # noqa: E402
from lengen.paths import PROFILES_DIR  # noqa: E402
from lengen.runtime import cpu_id  # noqa: E402
from speed import machine_info  # noqa: E402

TASK, PE, ARCH = "parity", "ape", Arch(n_layer=2, n_head=2, d_model=64, lr=0.003)


class LimitHit(logging.Handler):
    """Notes dynamo's warning that a function hit the recompile limit (and runs eager from then on)."""

    hit = False

    def emit(self, record):
        if "recompile_limit" in record.getMessage():
            LimitHit.hit = True


def formal_config(steps: int):
    fc = load_config(PROFILES_DIR / "study.yaml").formal
    return dataclasses.replace(fc, train=dataclasses.replace(fc.train, steps=steps, eval_every=100, early_stop=False))


def graphs_before(fc) -> list[tuple[str, str]]:
    """The (task, encoding) pairs a study worker trained before the run's task: the formal section's order."""
    return [(t, pe) for t in fc.tasks[: fc.tasks.index(TASK)] for pe in fc.pos_encodings]


def summary(out: Path) -> dict:
    """What the run logged and scored, from its engine directory."""
    (metrics,) = out.glob("*/*/logs/metrics.csv")
    (records,) = out.glob("*/*/records.csv")
    m, r = pd.read_csv(metrics), pd.read_csv(records)
    loss = m.dropna(subset=["train/loss"]).iloc[0]
    final = r[r.final.astype(bool)]
    return {
        "metrics_md5": hashlib.md5(metrics.read_bytes()).hexdigest(),
        "first_loss": {"step": int(loss.step), "loss": float(loss["train/loss"])},
        "final_accuracy": dict(zip(final.bin, final.accuracy.round(4))),
        "recompile_limit_hit": LimitHit.hit,
    }


def train(modes: list[str], steps: int, root: Path) -> dict:
    """This process: each mode in turn (``history`` then ``reset`` share the process)."""
    torch.set_num_threads(1)
    engine.resolve_compile = lambda setting, device, n: n > 0  # compiled, as auto on AVX-512 CPUs
    logging.getLogger("torch._dynamo").addHandler(LimitHit())
    fc, out = formal_config(steps), {}
    for mode in modes:
        LimitHit.hit = False
        if mode == "history":
            warm = dataclasses.replace(fc, train=dataclasses.replace(fc.train, steps=3, eval_every=3))
            reset, torch.compiler.reset = torch.compiler.reset, lambda: None  # the engine without its reset
            for task, pe in graphs_before(fc):
                ft.train_one(warm, task, pe, ARCH, 0, root / "warm")
        ft.train_one(fc, TASK, PE, ARCH, 0, root / mode)
        if mode == "history":
            torch.compiler.reset = reset
        out[mode] = summary(root / mode)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", type=Path, help="write the results here (default: print only)")
    ap.add_argument("--modes", help=argparse.SUPPRESS)  # internal: train these modes in this process
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.modes:
        print(json.dumps(train(args.modes.split(","), args.steps, args.root)))
        return
    result = {
        "machine": {**machine_info(1), "cpu_id": cpu_id()},
        "recompile_limit": torch._dynamo.config.recompile_limit,
        "steps": args.steps,
    }
    before = graphs_before(formal_config(args.steps))
    result["run"] = {"task": TASK, "pe": PE, "arch": dataclasses.asdict(ARCH), "seed": 0, "graphs_before": before}
    with tempfile.TemporaryDirectory() as tmp:
        for modes in ("fresh", "history,reset"):  # one process each
            cmd = [sys.executable, __file__, "--modes", modes, "--steps", str(args.steps), "--root", tmp]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
            result.update(json.loads(done.stdout.strip().splitlines()[-1]))
    md5 = {mode: result[mode]["metrics_md5"] for mode in ("fresh", "history", "reset")}
    result["fresh_equals_reset"] = md5["fresh"] == md5["reset"]
    result["fresh_equals_history"] = md5["fresh"] == md5["history"]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
