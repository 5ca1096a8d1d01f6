"""What the `paper` profile costs: its runs, their training and evaluation FLOPs, and a measured step.

    .venv/bin/python benchmarks/paper_cost.py                    # ~3 min on 2 cores; writes paper_cost_cpu.json
    .venv/bin/python benchmarks/paper_cost.py --device cuda      # on a GPU: the same, measured there

1. Counted, not measured: every run of profiles/paper.yaml (experiment, ablation, grid), and for each its
   training tokens per step at the profile's batch (1024), sampled from the run's own stream
   (lengen.data.TrainStream, batches 0..k-1): the padded tokens the model computes on (the batch is padded to
   its longest row, `length_buckets: 1`) and the target tokens, and the seconds one DataLoader worker takes to
   generate a batch (a bound on steps/s: num_workers / that). Evaluation: every (task, length) set, 19
   intermediate evaluations of 256 examples and a final one of 1024, one teacher-forced forward each.
2. FLOPs from the model's shape: per token, forward 2 N (N: the matrices of the blocks and the output head)
   + 4 n_layer T d (attention scores and values over T positions, the full square: what the CPU computes);
   training 3x forward.
3. Measured: a few training steps of one paper-scale run (6 layers x 6 heads x d_model 384, group
   arith_carry) at a small batch on this machine, the profile's bf16-mixed and fp32, with the real system and
   optimizer; achieved FLOP/s = counted FLOPs / measured time. This shows the method: the profile's hours on
   a device = its FLOPs / that device's achieved FLOP/s, which only a measured step on that device gives.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from pathlib import Path

import torch

from lengen.config import load_config
from lengen.data import TrainStream, format_example
from lengen.paths import PROFILES_DIR
from lengen.runtime import autocast_context, provenance
from lengen.system import system_from_run
from lengen.tasks import get_task
from lengen.tokenizer import default_tokenizer

OUT = Path(__file__).with_name("paper_cost_cpu.json")


def n_params(m) -> dict[str, int]:
    """Parameters of the blocks' matrices, the output head, and the embeddings (the last cost no FLOPs)."""
    vocab = len(default_tokenizer())
    blocks = m.n_layer * (4 * m.d_model**2 + 3 * m.d_model * m.d_mlp)  # q, k, v, o; SwiGLU gate, up, down
    return {"blocks": blocks, "head": m.d_model * vocab, "embedding": m.d_model * vocab}


def forward_flops_per_token(m, T: int) -> float:
    p = n_params(m)
    return 2 * (p["blocks"] + p["head"]) + 4 * m.n_layer * T * m.d_model


def stream_tokens(run, k: int) -> dict:
    """Padded and target tokens per training step at the run's batch size, over batches 0..k-1."""
    tr, d = run.train, run.data
    stream = TrainStream(run.group, tr.batch_size, d.seed, d.holdout_modulus)
    padded, target, T, gen_s = [], [], [], []
    for step in range(k):
        t0 = time.perf_counter()
        _, exs = stream.examples(step)
        seqs = [format_example(task, ex, stream.tok) for task, ex in exs]
        gen_s.append(time.perf_counter() - t0)  # a DataLoader worker's time per batch (before collate)
        t = max(len(ids) for ids, _ in seqs) - 1
        padded.append(t * len(seqs))
        target.append(sum(len(ids) - n for ids, n in seqs))
        T.append(t)
    return {
        "T": statistics.mean(T),
        "padded": statistics.mean(padded),
        "target": statistics.mean(target),
        "generate_s_per_batch": statistics.mean(gen_s),
    }


def eval_tokens(run) -> tuple[float, float]:
    """(tokens, forward FLOPs) of all of one run's evaluations: one example's length per (task, length)."""
    d, tr = run.data, run.train
    n_examples = (tr.steps // tr.eval_every - 1) * d.n_eval_during_training + d.n_eval
    tokens = flops = 0.0
    for task, length in sorted(run.group.eval_keys(d.eval_step)):
        ex = get_task(task).generate(random.Random(f"cost/{task}/{length}"), length)
        T = len(format_example(task, ex)[0]) - 1
        tokens += n_examples * T
        flops += n_examples * T * forward_flops_per_token(run.model, T)
    return tokens, flops


def profile_cost(cfg, k: int) -> dict:
    """Every run's training and evaluation FLOPs (runs of one group share their stream's numbers)."""
    by_group: dict[str, dict] = {}
    runs = []
    stage_of = {r.run_id: "experiment" for r in cfg.runs()}
    stage_of.update({r.run_id: "ablation" for r in cfg.ablation_runs()})
    stage_of.update({r.run_id: "grid" for r in cfg.grid_runs()})
    for run in cfg.all_runs():
        if run.group_name not in by_group:
            s = stream_tokens(run, k)
            e_tokens, e_flops = eval_tokens(run)
            train_flops = run.train.steps * 3 * s["padded"] * forward_flops_per_token(run.model, round(s["T"]))
            by_group[run.group_name] = {**s, "train_flops": train_flops, "eval_tokens": e_tokens, "eval_flops": e_flops}
        runs.append({"run_id": run.run_id, "stage": stage_of[run.run_id], "group": run.group_name})
    totals = {}
    for stage in ("experiment", "ablation", "grid"):
        rs = [r for r in runs if r["stage"] == stage]
        totals[stage] = {
            "runs": len(rs),
            "train_flops": sum(by_group[r["group"]]["train_flops"] for r in rs),
            "eval_flops": sum(by_group[r["group"]]["eval_flops"] for r in rs),
            "train_tokens_padded": sum(by_group[r["group"]]["padded"] for r in rs) * cfg.train.steps,
            "train_tokens_target": sum(by_group[r["group"]]["target"] for r in rs) * cfg.train.steps,
        }
    totals["all"] = {key: sum(t[key] for t in totals.values()) for key in totals["experiment"]}
    return {"groups": by_group, "totals": totals}


def measure(cfg, group: str, batch_size: int, steps: int, warmup: int, precision: str, device: str) -> dict:
    """Seconds per training step of one paper-scale run at ``batch_size`` (the real system and optimizer)."""
    run = cfg.run(group, "rope", 0)
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, batch_size=batch_size))
    torch.manual_seed(0)
    system = system_from_run(run).to(device)
    opt = system.configure_optimizers()["optimizer"]
    stream = TrainStream(run.group, batch_size, run.data.seed, run.data.holdout_modulus)
    batches = [{k: v.to(device) for k, v in stream.batch(i).items()} for i in range(warmup + steps)]
    times = []
    for i, batch in enumerate(batches):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast_context(precision, device):
            loss = system.training_step(batch, i)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(system.parameters(), run.train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    T = [b["input_ids"].shape[1] for b in batches[warmup:]]
    padded = sum(batch_size * t for t in T) / len(T)
    flops = statistics.mean(3 * batch_size * t * forward_flops_per_token(run.model, t) for t in T)
    s = statistics.median(times)
    out = {
        "group": group,
        "precision": precision,
        "batch_size": batch_size,
        "steps_timed": steps,
        "s_per_step": s,
        "tokens_per_s_padded": padded / s,
        "achieved_flops_per_s": flops / s,
    }
    if device == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16, help="measured batch (the profile's: 1024)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stream-batches", type=int, default=2, help="batches sampled per group for token counts")
    ap.add_argument("--json", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(PROFILES_DIR / "paper.yaml")
    t0 = time.time()
    cost = profile_cost(cfg, args.stream_batches)
    measured = [
        measure(cfg, "arith_carry", args.batch_size, args.steps, args.warmup, p, args.device)
        for p in (cfg.train.precision, "32-true")
    ]
    all_flops = cost["totals"]["all"]["train_flops"] + cost["totals"]["all"]["eval_flops"]
    result = {
        "what": "paper profile: runs, counted FLOPs, a measured short run; hours = FLOPs / achieved FLOP/s",
        "device": args.device,
        "threads": args.threads,
        "model": dataclasses.asdict(cfg.model),
        "params": n_params(cfg.model),
        "train": {"steps": cfg.train.steps, "batch_size": cfg.train.batch_size},
        "totals": cost["totals"],
        "groups": cost["groups"],
        "measured": measured,
        "hours_at_measured_rate": {m["precision"]: all_flops / m["achieved_flops_per_s"] / 3600 for m in measured},
        "provenance": provenance(),
        "wall_s": round(time.time() - t0, 1),
    }
    args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("totals", "measured", "hours_at_measured_rate")}, indent=1))


if __name__ == "__main__":
    main()
