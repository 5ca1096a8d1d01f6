#!/usr/bin/env python
"""Does bf16 autocast pay on this CPU? fp32 vs bf16 matmul peak and training-step time of the `cpu` model.

    .venv/bin/python benchmarks/precision.py [--threads 2] [--steps 10]   # ~2 min; --json FILE to keep it

Why: `train.precision: auto` (lengen.runtime.resolve_precision) picks bf16-mixed only where bf16 is
native (AVX512-BF16 / AMX, or a GPU). bf16 autocast was 1.5x fp32 on the machine of the first
benchmarks; on an AVX2-only CPU (AMD EPYC Zen 2) PyTorch emulates bf16 and it is far slower. This
script measures both on the machine it runs on and prints what `auto` chooses there.

Method: best-of-5 GFLOP/s of matmuls of the model's shapes; whole training steps (forward, loss,
backward, clip, AdamW) of the `cpu` profile's model on real `arith_carry` batches, the same batches
for both precisions, after an untimed warm-up step per sequence length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402

from lengen.config import load_config  # noqa: E402
from lengen.data import TrainStream  # noqa: E402
from lengen.paths import PROFILES_DIR  # noqa: E402
from lengen.runtime import autocast_context, native_bf16, resolve_precision  # noqa: E402
from lengen.system import system_from_run  # noqa: E402
from speed import lengen_loss, machine_info, matmul_gflops, optimizer_like_system  # noqa: E402

PRECISIONS = ("32-true", "bf16-mixed")


def step_times(run, batches, precision: str, warmup: int) -> list[float]:
    """Seconds per training step (forward+loss+backward+clip+AdamW) under ``precision``."""
    torch.manual_seed(0)
    system = system_from_run(run)
    model = system.model.train()
    opt, sched = optimizer_like_system(model, system)
    times = []
    for k, batch in enumerate(batches):
        t0 = time.perf_counter()
        with autocast_context(precision):
            loss = lengen_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.train.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per precision")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(PROFILES_DIR / "cpu.yaml")
    run = cfg.run("arith_carry", "rope", 0)
    m, B = run.model, run.train.batch_size
    info = machine_info(args.threads)
    print(
        f"machine: {info.get('cpu')} | bf16 ISA: {info.get('isa_bf16')} | torch {torch.__version__} | "
        f"{args.threads} thread(s)"
    )
    print(f"native bf16: {native_bf16()}; train.precision 'auto' -> {resolve_precision('auto')}")

    shapes = {
        "qkv/o (B*T x d x d)": (B * 48, m.d_model, m.d_model),
        "mlp (B*T x d x d_mlp)": (B * 48, m.d_mlp, m.d_model),
    }
    peak = {}
    for name, (M, N, K) in shapes.items():
        peak[name] = {
            p: matmul_gflops(N, torch.float32 if p == "32-true" else torch.bfloat16, 5, m=M, k=K) for p in PRECISIONS
        }
        fp32, bf16 = peak[name]["32-true"], peak[name]["bf16-mixed"]
        print(f"matmul {name:24s} fp32 {fp32:7.1f} GFLOP/s   bf16 {bf16:7.1f} GFLOP/s")

    stream = iter(TrainStream(run.group, B, run.data.seed, run.data.holdout_modulus))
    warm = 2
    batches = [next(stream) for _ in range(warm + args.steps)]
    steps = {}
    for p in PRECISIONS:
        t = step_times(run, batches, p, warm)
        steps[p] = {"median_s": statistics.median(t), "min_s": min(t), "n": len(t)}
        print(
            f"training step, {p:10s}: median {steps[p]['median_s']:.3f} s (min {steps[p]['min_s']:.3f}, {len(t)} steps)"
        )
    ratio = steps["bf16-mixed"]["median_s"] / steps["32-true"]["median_s"]
    print(f"bf16 / fp32 step time: {ratio:.2f}x  ->  {'bf16 pays' if ratio < 1 else 'fp32 is faster here'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "auto": resolve_precision("auto"),
                    "matmul_gflops": peak,
                    "step": steps,
                    "bf16_over_fp32": ratio,
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
