#!/usr/bin/env python
"""One 2-thread training run, or two 1-thread runs side by side: which trains more steps per second?

    .venv/bin/python benchmarks/parallel_runs.py [--steps 30] [--json FILE]   # ~2 min on 2 cores
    .venv/bin/python benchmarks/parallel_runs.py --finetune [--steps 15] [--json FILE]   # ~8 min on a Zen 3

Why: the training stages run one run at a time at ``train.threads: 2``; the ``formal`` stage instead runs
two 1-thread worker processes (its models are too small for a second thread to pay). Whether the training
runs should do the same depends on how well the `cpu` model's step scales from 1 to 2 threads on the
machine at hand, which this script measures: whole fp32 training steps of the `cpu` profile's model on
real ``arith_carry`` batches (``precision.step_times``), (a) in one process at 2 threads, (b) in one
process at 1 thread, (c) in two 1-thread processes started together. Throughput of (c) over (a) above 1
would favour running two seeds side by side.

``--finetune`` asks the same of the pretrained comparison (``pretrained.threads``; SmolLM2-135M, ~135x the
`cpu` model): the measured unit is a whole fine-tune through ``lengen.finetune.finetune`` (the `cpu` profile's
``add_carry`` from the pretrained checkpoint: loading, ``--steps`` full fine-tuning steps at batch 16, then the
greedy evaluation of its three tasks at lengths 1-10 on 16 examples each, in a temporary directory), reported as
seconds per fine-tune; needs ``dvc repro convert`` first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def measure(threads: int, steps: int) -> float:
    """Median seconds per fp32 training step in this process."""
    import torch

    from lengen.config import load_config
    from lengen.data import TrainStream
    from lengen.paths import PROFILES_DIR
    from precision import step_times

    torch.set_num_threads(threads)
    run = load_config(PROFILES_DIR / "cpu.yaml").run("arith_carry", "rope", 0)
    stream = iter(TrainStream(run.group, run.train.batch_size, run.data.seed, run.data.holdout_modulus))
    warm = 2
    batches = [next(stream) for _ in range(warm + steps)]
    return statistics.median(step_times(run, batches, "32-true", warm))


def measure_finetune(threads: int, steps: int) -> float:
    """Seconds for one shortened fine-tune (see the module docstring) in this process."""
    import dataclasses
    import tempfile
    import time

    from lengen import finetune as ft
    from lengen.config import load_config
    from lengen.paths import PROFILES_DIR

    cfg = load_config(PROFILES_DIR / "cpu.yaml")
    run = next(r for r in ft.stage_runs(cfg) if r.group_name == "add_carry" and r.init == "pretrained")
    run = dataclasses.replace(run, params=dataclasses.replace(run.params, steps=steps, n_eval=16, threads=threads))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        ft.finetune(run, out_dir=Path(out), progress=False)
        return time.perf_counter() - start


def child(threads: int, steps: int, finetune: bool = False) -> subprocess.Popen:
    args = [sys.executable, __file__, "--child", str(threads), "--steps", str(steps)] + ["--finetune"] * finetune
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def result(p: subprocess.Popen) -> float:
    out, _ = p.communicate()
    if p.returncode:
        raise SystemExit(f"child failed with exit code {p.returncode}")
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, help="timed steps per measurement (default 30; --finetune: 15)")
    ap.add_argument("--finetune", action="store_true", help="whole shortened fine-tunes of the pretrained model")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.steps = args.steps or (15 if args.finetune else 30)
    if args.child:  # one measurement in a fresh process, printed for the parent
        print((measure_finetune if args.finetune else measure)(args.child, args.steps))
        return 0

    from speed import machine_info

    info = machine_info(2)
    # Each measurement in its own process, one after the other, so (a) and (b) have the machine to themselves.
    two_threads = result(child(2, args.steps, args.finetune))
    one_thread = result(child(1, args.steps, args.finetune))
    pair = [child(1, args.steps, args.finetune), child(1, args.steps, args.finetune)]
    side_by_side = [result(p) for p in pair]
    # per step, or (--finetune) per fine-tune: the same ratio
    steps_per_s = {"one 2-thread process": 1 / two_threads, "two 1-thread processes": sum(1 / t for t in side_by_side)}
    ratio = steps_per_s["two 1-thread processes"] / steps_per_s["one 2-thread process"]
    what = (
        f"a shortened add_carry fine-tune of SmolLM2-135M ({args.steps} steps, 480 evaluated examples)"
        if args.finetune
        else f"fp32, batch 64, arith_carry, {args.steps} timed steps each"
    )
    unit = "s/fine-tune" if args.finetune else "s/step"
    print(f"machine: {info.get('cpu')} | torch CPU capability {info.get('cpu_capability')} | {what}")
    print(f"(a) one process, 2 threads     : {two_threads:.3f} {unit}")
    print(
        f"(b) one process, 1 thread      : {one_thread:.3f} {unit}  (2-thread speed-up {one_thread / two_threads:.2f}x)"
    )
    print(f"(c) two 1-thread side by side  : {side_by_side[0]:.3f} / {side_by_side[1]:.3f} {unit}")
    print(
        f"throughput (c) / (a): {ratio:.2f}x  ->  "
        f"{'two runs side by side pay' if ratio > 1.1 else 'one 2-thread run at a time is as fast'}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "measured": what,
                    "steps": args.steps,
                    ("s_per_fine_tune" if args.finetune else "s_per_step"): {
                        "one_process_2_threads": two_threads,
                        "one_process_1_thread": one_thread,
                        "two_processes_1_thread": side_by_side,
                    },
                    "steps_per_s": steps_per_s,
                    "side_by_side_over_2_threads": ratio,
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
