#!/usr/bin/env python
"""What `train.length_buckets` buys: training-step time with the batch run as k length-sorted chunks.

    .venv/bin/python benchmarks/length_buckets.py [--threads 2] [--steps 30] [--json FILE]   # ~4 min

Why: a batch mixes every training length 1..max of every task of its group and is right-padded to its
longest row, so a large share of each step computes on padding. `LengenSystem.training_step` with
`length_buckets: k` sorts the rows by length and runs k chunks, each cut to its own longest row; the
loss and gradient are the full batch's (tests/test_system.py checks it; this script prints the
largest gradient difference too).

Method: the `cpu` profile's model and batch size (profiles/cpu.yaml, fp32), real training batches of
each group (pre-generated: data generation is not timed), whole steps through the system's own
`training_step` (forward, loss, backward, clip, AdamW), k = 1 (the whole batch), 2, 4, 8 in interleaved
rounds, best round kept. "Tokens computed" counts the positions each variant runs (padding included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lengen.config import load_config  # noqa: E402
from lengen.data import IGNORE, TrainStream, length_buckets  # noqa: E402
from lengen.system import system_from_run  # noqa: E402

GROUPS = ("arith_carry", "arith_control", "caprev", "add_alone")
KS = (1, 2, 4, 8)


def make_system(run, k: int):
    torch.manual_seed(0)
    system = system_from_run(dataclasses.replace(run, train=dataclasses.replace(run.train, length_buckets=k)))
    opt = torch.optim.AdamW(system.model.parameters(), lr=run.train.lr)
    return system, opt


def step(system, opt, batch) -> None:
    opt.zero_grad(set_to_none=True)
    system.training_step(batch, 0).backward()
    torch.nn.utils.clip_grad_norm_(system.model.parameters(), 1.0)
    opt.step()


def grad_diff(run, batch, k: int) -> float:
    """Largest |grad_k - grad_1| / max|grad_1| over the parameters, from the same initialization."""
    grads = []
    for kk in (1, k):
        system, _ = make_system(run, kk)
        system.training_step(batch, 0).backward()
        grads.append([p.grad for p in system.model.parameters()])
    return max(float((a - b).abs().max() / b.abs().max()) for b, a in zip(*grads))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / "profiles" / "cpu.yaml")
    rows = []
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"threads {args.threads}, fp32, batch {cfg.train.batch_size}, {args.steps} timed steps x "
        f"{args.rounds} rounds (best kept)"
    )
    for g in GROUPS:
        run = cfg.run(g, "rope", seed=0)
        stream = TrainStream(run.group, run.train.batch_size, cfg.data.seed, cfg.data.holdout_modulus)
        batches = [stream.batch(k) for k in range(args.steps + 2)]
        systems = {k: make_system(run, k) for k in KS}
        best = {k: float("inf") for k in KS}
        for _ in range(args.rounds):
            for k in KS:
                system, opt = systems[k]
                for b in batches[:2]:  # warm-up
                    step(system, opt, b)
                t0 = time.perf_counter()
                for b in batches[2:]:
                    step(system, opt, b)
                best[k] = min(best[k], (time.perf_counter() - t0) / args.steps)
        supervised = sum(int((b["labels"] != IGNORE).sum()) for b in batches[2:])
        for k in KS:
            computed = sum(len(rows_) * T for b in batches[2:] for rows_, T in length_buckets(b["labels"], k))
            rows.append(
                dict(
                    group=g,
                    k=k,
                    s_per_step=round(best[k], 4),
                    speedup=round(best[1] / best[k], 2),
                    tokens_computed=computed,
                    supervised_tokens=supervised,
                    max_rel_grad_diff=0.0 if k == 1 else grad_diff(run, batches[2], k),
                )
            )
    print(f"\n{'group':<14}{'k':>3}{'s/step':>9}{'speed-up':>10}{'tokens computed':>17}{'max rel grad diff':>19}")
    for r in rows:
        print(
            f"{r['group']:<14}{r['k']:>3}{r['s_per_step']:>9.4f}{r['speedup']:>9.2f}x"
            f"{r['tokens_computed']:>17,}{r['max_rel_grad_diff']:>19.1e}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "steps": args.steps,
                    "rounds": args.rounds,
                    "processor": platform.processor(),
                    "torch": torch.__version__,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
