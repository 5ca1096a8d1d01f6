#!/usr/bin/env python
"""Speed benchmark of lengen on CPU: one run, side by side, same model configuration and batches.

    .venv/bin/python benchmarks/speed.py                  # full run (~15 min on 2 cores), writes results.json
    .venv/bin/python benchmarks/speed.py --quick --threads 1   # smoke test (a few minutes: it compiles)

Sections (see benchmarks/README.md for the method and the recorded run):

1. Training throughput on real ``arith_carry`` batches (pre-generated, so data generation is not
   timed), under bf16 autocast and in fp32: lengen through Lightning as the engine trains it (compiled,
   fused AdamW), eager with fused AdamW, and eager with foreach AdamW (the step before compile: the
   reference of the speed-up targets); lengen in a plain PyTorch loop, eager and compiled; HuggingFace
   ``LlamaForCausalLM`` of the same shape in the same plain loop, eager and compiled. Grad clip 1.0.
   Per step: forward+loss, backward, clip+optimizer, the rest, and the data generation a step needs.
   Compile time (the first forward+backward) and the graphs compiled over every sequence length.
2. Achieved model FLOP/s against the measured bf16 and fp32 matmul peaks.
3. Evaluation examples/s: lengen teacher-forced, lengen KV-cache greedy, HF ``generate`` greedy; and
   evaluation's share of a cpu-profile run's wall time (arith_carry, as the engine evaluates and as before).
4. Data generation examples/s against what training consumes.

Every training measurement times whole steps: the clock is read at the *start* of step ``warmup`` and
at the start of step ``warmup + steps`` (for Lightning: ``on_train_batch_start`` of an extra, untimed
step), so each timed step includes everything its stack does per step (forward, loss, backward,
clipping, optimizer, scheduler, hooks, logging, fetching the next batch). Each contestant is built (and
compiled) once; contestants run in interleaved rounds and the best round is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lengen.config import GroupConfig, load_config  # noqa: E402
from lengen.data import (  # noqa: E402
    IGNORE,
    TrainStream,
    format_example,  # noqa: E402
    make_eval_set,
    make_eval_sets,
)
from lengen.evaluate import greedy, teacher_forced, teacher_forced_sets  # noqa: E402
from lengen.model import ModelConfig, Transformer  # noqa: E402
from lengen.runtime import autocast_context  # noqa: E402
from lengen.system import LengenSystem, adamw, lr_lambda  # noqa: E402
from lengen.tasks import Example  # noqa: E402
from lengen.tokenizer import default_tokenizer  # noqa: E402

PROFILE = ROOT / "profiles" / "cpu.yaml"
PRECISIONS = {"bf16": "bf16-mixed", "fp32": "32-true"}
TARGETS = {  # name -> (threshold, direction, description)
    "speedup_bf16": (1.5, ">=", "engine step (compiled, fused AdamW) / eager step before, bf16"),
    "speedup_fp32": (1.3, ">=", "engine step (compiled, fused AdamW) / eager step before, fp32"),
    "eval_share": (10.0, "<=", "evaluation, % of a cpu-profile run's wall time (arith_carry)"),
    "lightning_vs_hf": (1.3, ">=", "train tokens/s, lengen engine / HF Llama eager, bf16"),
    "lightning_overhead": (5.0, "<=", "Lightning overhead vs plain loop, eager, bf16 (%)"),
    "mfu_wide": (50.0, ">=", "engine model FLOP/s, % of bf16 matmul peak (d_model 256, bf16)"),
    "tf_vs_hf_generate": (20.0, ">=", "eval examples/s, teacher-forced / HF generate"),
    "datagen_vs_train": (50.0, ">=", "data gen ex/s / arith_carry training ex/s (plain, d128)"),
    "datagen_vs_train_same_group": (50.0, ">=", "data gen ex/s / same-group training ex/s (token-adjusted)"),
}


# ----------------------------------------------------------------------------------------------------
# Helpers


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import transformers

    transformers.logging.set_verbosity_error()


def machine_info(threads: int) -> dict:
    cpu, flags = "unknown", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    import lightning
    import transformers

    try:
        bf16_ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - private op; absent on some builds
        bf16_ok = None
    mem_gib = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_gib": mem_gib,
        "isa_bf16": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
        "avx512": "avx512f" in flags,
        "onednn_bf16_supported": bf16_ok,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "requested_threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def matmul_gflops(n: int, dtype: torch.dtype, reps: int, m: int | None = None, k: int | None = None) -> float:
    """Best-of-``reps`` GFLOP/s of an (m, k) @ (k, n) matmul (square n when m, k are None)."""
    m, k = m or n, k or n
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    out = torch.empty(m, n, dtype=dtype)
    inner = max(1, int(2e9 // (2 * m * n * k)))  # >= ~2 GFLOP per timed call so timer noise is nil
    torch.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b, out=out)
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2.0 * m * n * k / best / 1e9


def cpu_busy() -> tuple[float, float]:
    """(CPU-seconds busy on the whole machine, CPU-seconds used by this process) since boot/start;
    their difference over an interval is what *other* processes took (interference)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    busy = sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0)  # all but idle and iowait
    t = os.times()
    return busy / tick, t.user + t.system


class Interference:
    """CPU-seconds that other processes used while a block ran."""

    def __enter__(self):
        self.start = cpu_busy()
        return self

    def __exit__(self, *exc):
        end = cpu_busy()
        self.other_cpu_s = max(0.0, (end[0] - self.start[0]) - (end[1] - self.start[1]))
        return False


def batch_stats(batches: list[dict]) -> dict:
    n_in = sum(b["input_ids"].numel() for b in batches)
    n_tgt = sum(int((b["labels"] != IGNORE).sum()) for b in batches)
    n_ex = sum(b["input_ids"].shape[0] for b in batches)
    return {"input_tokens": n_in, "target_tokens": n_tgt, "examples": n_ex, "mean_T": n_in / n_ex}


def model_flops(model: Transformer, batches: list[dict]) -> float:
    """Training FLOPs of the batches: flops_per_token(T) x B x T summed (padding included)."""
    return sum(model.flops_per_token(b["input_ids"].shape[1]) * b["input_ids"].numel() for b in batches)


def lengen_loss(model, batch):  # the computation of LengenSystem.training_step (without self.log)
    logits = model(batch["input_ids"], pos_offset=batch.get("pos_offset"))
    return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)


def hf_loss(model, batch):
    # labels are already shifted (position j predicts token j+1): hand them over as shift_labels so
    # HF's own ForCausalLMLoss scores exactly the same targets as lengen, with no extra position
    y = batch["labels"]
    return model(input_ids=batch["input_ids"], labels=y, shift_labels=y, use_cache=False).loss


def lengen_loss_sdpa(model, batch):  # info variant: force F.scaled_dot_product_attention (the GPU path)
    logits = model(batch["input_ids"], pos_offset=batch.get("pos_offset"), attn_impl="sdpa")
    return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)


def optimizer_like_system(model: torch.nn.Module, system: LengenSystem):
    """AdamW + LambdaLR exactly as LengenSystem.configure_optimizers (decay on >= 2-D params; fused as the
    system's)."""
    hp = system.hparams
    opt = adamw(model, hp.lr, hp.betas, hp.eps, hp.weight_decay, hp.fused)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_lambda(s, hp.warmup_steps, hp.decay_steps, hp.total_steps, hp.min_lr_frac)
    )
    return opt, sched


# ----------------------------------------------------------------------------------------------------
# 1. Training


def make_system(mcfg: ModelConfig, train_cfg, total_steps: int, fused: bool = True) -> LengenSystem:
    torch.manual_seed(0)
    return LengenSystem(
        model_config=dataclasses.asdict(mcfg),
        lr=train_cfg.lr,
        betas=(train_cfg.beta1, train_cfg.beta2),
        eps=train_cfg.eps,
        weight_decay=train_cfg.weight_decay,
        warmup_steps=round(0.1 * total_steps),
        decay_steps=round(0.2 * total_steps),
        total_steps=total_steps,
        min_lr_frac=train_cfg.min_lr_frac,
        fused=fused,
    )


def make_hf(mcfg: ModelConfig, attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=mcfg.vocab_size,
        hidden_size=mcfg.d_model,
        intermediate_size=mcfg.d_mlp,
        num_hidden_layers=mcfg.n_layer,
        num_attention_heads=mcfg.n_head,
        num_key_value_heads=mcfg.n_head,
        max_position_embeddings=mcfg.max_seq_len,
        tie_word_embeddings=False,
        attn_implementation=attn,
        rms_norm_eps=mcfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": mcfg.rope_base},
        pad_token_id=default_tokenizer().pad_id,
        bos_token_id=default_tokenizer().bos_id,
        eos_token_id=default_tokenizer().eos_id,
    )
    return LlamaForCausalLM(cfg).float()


def time_lightning(system: LengenSystem, batches, warmup: int, steps: int, clip: float, precision: str) -> dict:
    """``steps`` timed steps of ``trainer.fit`` on the (possibly compiled) system, as lengen.engine trains."""
    import lightning as L
    from torch.utils.data import DataLoader

    class StepClock(L.Callback):
        """Step starts, plus the hooks around backward and the optimizer for a phase breakdown."""

        def __init__(self):
            self.t: list[float] = []
            self.ev: list[tuple[str, float]] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            now = time.perf_counter()
            self.t.append(now)
            self.ev.append(("start", now))
            self.threads = torch.get_num_threads()

        def on_before_backward(self, trainer, pl_module, loss):
            self.ev.append(("before_backward", time.perf_counter()))

        def on_after_backward(self, trainer, pl_module):
            self.ev.append(("after_backward", time.perf_counter()))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.ev.append(("end", time.perf_counter()))

    n = warmup + steps + 1  # one extra, untimed step: its start closes the timed window
    clock = StepClock()
    trainer = L.Trainer(
        max_steps=n,
        precision=precision,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=clip,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    loader = DataLoader(batches[:n], batch_size=None, shuffle=False, num_workers=0)
    t0 = time.perf_counter()
    trainer.fit(system, train_dataloaders=loader)
    total = time.perf_counter() - t0
    assert len(clock.t) == n, (len(clock.t), n)
    if clock.threads != torch.get_num_threads():
        raise RuntimeError(f"Lightning ran with {clock.threads} threads, not {torch.get_num_threads()}")
    # phases of the timed steps: training_step (+ autocast, self.log) | backward | clip + optimizer +
    # scheduler + Lightning bookkeeping up to on_train_batch_end | loop overhead to the next step
    phases = {"forward": 0.0, "backward": 0.0, "clip+optimizer": 0.0, "loop": 0.0}
    starts = [i for i, (k, _) in enumerate(clock.ev) if k == "start"]
    for j in range(warmup, warmup + steps):
        seg = dict(clock.ev[starts[j] : starts[j + 1]])
        phases["forward"] += seg["before_backward"] - seg["start"]
        phases["backward"] += seg["after_backward"] - seg["before_backward"]
        phases["clip+optimizer"] += seg["end"] - seg["after_backward"]
        phases["loop"] += clock.ev[starts[j + 1]][1] - seg["end"]
    return {
        "seconds": clock.t[warmup + steps] - clock.t[warmup],
        "fit_wall_s": total,
        "phases_ms_per_step": {k: 1e3 * v / steps for k, v in phases.items()},
        "steps_ms": [1e3 * (b - a) for a, b in zip(clock.t[warmup:], clock.t[warmup + 1 :])],
    }


def time_plain(model, opt, sched, loss_fn, batches, warmup: int, steps: int, clip: float, precision: str) -> dict:
    """The plain loop; also splits each timed step into forward+loss / backward / clip / optimizer."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    t_step, phases = [], {"forward": 0.0, "backward": 0.0, "clip": 0.0, "optimizer": 0.0}
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        t_step.append(t0)
        batch = batches[k]
        with autocast_context(precision):
            loss = loss_fn(model, batch)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, clip)
        t3 = time.perf_counter()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if k >= warmup:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name] += dt
    t_step.append(time.perf_counter())
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss}")
    return {
        "seconds": t_step[warmup + steps] - t_step[warmup],
        "phases_ms_per_step": {k: 1e3 * v / steps for k, v in phases.items()},
        "steps_ms": [1e3 * (b - a) for a, b in zip(t_step[warmup:], t_step[warmup + 1 :])],
    }


def prime(model, loss_fn, batches, precision: str) -> dict:
    """One untimed forward+backward per distinct sequence length, so oneDNN's per-shape primitive creation
    (and, for a compiled model, the compile and any recompile) is paid before any clock runs. Returns the
    first call's seconds (the compile, for a compiled model), the rest's, and the graphs dynamo compiled."""
    from torch._dynamo.utils import counters

    graphs0 = counters["stats"]["unique_graphs"]
    seen, times = set(), []
    for b in batches:
        T = b["input_ids"].shape[1]
        if T in seen:
            continue
        seen.add(T)
        t0 = time.perf_counter()
        with autocast_context(precision):
            loss = loss_fn(model, b)
        loss.backward()
        times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return {
        "first_call_s": times[0],
        "other_lengths_s": sum(times[1:]),
        "lengths": len(seen),
        "graphs_compiled": counters["stats"]["unique_graphs"] - graphs0,
    }


CONTESTANTS = {  # key -> label; see TARGETS for the ones that carry targets
    "before": "lengen Lightning, eager, foreach AdamW (the engine before compile)",
    "lightning": "lengen Lightning, eager, fused AdamW",
    "lightning_compiled": "lengen Lightning, compiled, fused AdamW (the engine, compile on)",
    "plain": "lengen plain loop, eager",
    "plain_compiled": "lengen plain loop, compiled",
    "hf": "HF Llama plain loop, eager",
    "hf_compiled": "HF Llama plain loop, compiled",
    "plain_sdpa": "(info) lengen plain, attn sdpa",
    "hf_eager": "(info) HF Llama plain, attn eager",
}
COMPILED = ("lightning_compiled", "plain_compiled", "hf_compiled")
INFO = ("plain_sdpa", "hf_eager")


def bench_training(name: str, mcfg: ModelConfig, train_cfg, batches, args, precision: str) -> dict:
    W, S, clip = args.warmup, args.steps, train_cfg.grad_clip
    timed = batches[W : W + S]
    st = batch_stats(timed)
    probe = Transformer(mcfg)
    flops = model_flops(probe, timed)
    keys = [k for k in CONTESTANTS if (args.compile or k not in COMPILED) and (args.variants or k not in INFO)]
    # every contestant is built (and compiled) once and trained on in every round: the compile is paid once,
    # in prime(), and reported; the rounds time steady-state steps
    built, primes = {}, {}
    for k in keys:
        if k in ("before", "lightning", "lightning_compiled"):
            system = make_system(mcfg, train_cfg, W + S + 1, fused=k != "before")
            model, loss_fn = system.model, lengen_loss
        else:
            system = make_system(mcfg, train_cfg, W + S)  # the optimizer's hyperparameters
            if k.startswith("plain"):
                model, loss_fn = system.model, (lengen_loss_sdpa if k == "plain_sdpa" else lengen_loss)
            else:
                model, loss_fn = make_hf(mcfg, attn="eager" if k == "hf_eager" else "sdpa"), hf_loss
        if k in COMPILED:
            model.compile(dynamic=True)  # as lengen.engine.compile_network
        primes[k] = prime(model, loss_fn, batches, precision)
        built[k] = (system, model, loss_fn)
        if k in COMPILED:
            print(f"  [{name} {precision}] {k}: compile + first step {primes[k]['first_call_s']:.1f} s", flush=True)
    rounds: dict[str, list[dict]] = {k: [] for k in keys}
    for r in range(args.repeats):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]  # rotated: no one is always first
        print(f"  [{name} {precision}] round {r + 1}/{args.repeats}:", end="", flush=True)
        for k in order:
            system, model, loss_fn = built[k]
            gc.collect()
            bg = Interference().__enter__()
            if k in ("before", "lightning", "lightning_compiled"):
                res = time_lightning(system, batches, W, S, clip, precision)
            else:
                opt, sched = optimizer_like_system(model, system)
                res = time_plain(model, opt, sched, loss_fn, batches, W, S, clip, precision)
            bg.__exit__(None, None, None)
            res["other_cpu_s"] = bg.other_cpu_s
            rounds[k].append(res)
            print(f" {k} {res['seconds'] / S * 1e3:.1f}", end="", flush=True)
        print(" (ms/step)", flush=True)
    out = {
        "model": dataclasses.asdict(mcfg),
        "precision": precision,
        "params_lengen": probe.num_params(non_embedding=False),
        "params_hf": sum(p.numel() for p in make_hf(mcfg).parameters()),
        "timed_steps": S,
        "warmup_steps": W,
        "batch": st,
        "flops_timed": flops,
        "flops_per_token_at_mean_T": probe.flops_per_token(round(st["mean_T"])),
        "prime": primes,
    }
    for k, rs in rounds.items():
        best = min(rs, key=lambda d: d["seconds"])
        sec = best["seconds"]
        out[k] = {
            "seconds": sec,
            "all_rounds_s": [d["seconds"] for d in rs],
            "other_cpu_s_best_round": best["other_cpu_s"],
            "ms_per_step": 1e3 * sec / S,
            "median_step_ms": statistics.median(best["steps_ms"]),
            "input_tokens_per_s": st["input_tokens"] / sec,
            "target_tokens_per_s": st["target_tokens"] / sec,
            "examples_per_s": st["examples"] / sec,
            "model_gflops": flops / sec / 1e9,
            "phases_ms_per_step": best["phases_ms_per_step"],
        }
    ref = {k: out[k]["input_tokens_per_s"] for k in ("hf", "hf_compiled", "before") if k in out}
    for k in rounds:
        out[k]["vs"] = {f"vs_{r}": out[k]["input_tokens_per_s"] / v for r, v in ref.items()}
    best_engine = "lightning_compiled" if "lightning_compiled" in out else "lightning"
    out["engine"] = best_engine
    out["lightning_vs_hf"] = out[best_engine]["input_tokens_per_s"] / out["hf"]["input_tokens_per_s"]
    out["speedup_vs_before"] = out["before"]["seconds"] / out[best_engine]["seconds"]
    out["lightning_overhead_pct"] = 100.0 * (out["lightning"]["seconds"] / out["plain"]["seconds"] - 1.0)
    return out


def shape_matched_peak(mcfg: ModelConfig, M: int, reps: int) -> dict:
    """bf16 GFLOP/s of the model's own forward matmul shapes (M = B x mean T rows)."""
    d, h, V = mcfg.d_model, mcfg.d_mlp, mcfg.vocab_size
    shapes = {
        "qkvo (M,d)x(d,d)": (M, d, d),
        "mlp up (M,d)x(d,h)": (M, d, h),
        "mlp down (M,h)x(h,d)": (M, h, d),
        "lm_head (M,d)x(d,V)": (M, d, V),
    }
    return {k: matmul_gflops(n, torch.bfloat16, reps, m=m, k=kk) for k, (m, kk, n) in shapes.items()}


# ----------------------------------------------------------------------------------------------------
# 3. Evaluation


def hf_generate_all(hf, examples, batch_size: int) -> tuple[int, int]:
    """HF greedy generate, prompts bucketed by length like lengen.evaluate.greedy; returns
    (new tokens generated, new tokens allowed)."""
    tok = default_tokenizer()
    seqs = [format_example(e.task, Example(e.prompt, e.target), tok) for e in examples]
    buckets: dict[int, list[int]] = {}
    for i, (_, n_prompt) in enumerate(seqs):
        buckets.setdefault(n_prompt, []).append(i)
    made = allowed = 0
    for n_prompt, idxs in buckets.items():
        for j in range(0, len(idxs), batch_size):
            chunk = idxs[j : j + batch_size]
            prompts = torch.tensor([seqs[i][0][:n_prompt] for i in chunk])
            answer_len = max(len(seqs[i][0]) - n_prompt for i in chunk) - 1  # target tokens, no eos
            out = hf.generate(
                input_ids=prompts,
                attention_mask=torch.ones_like(prompts),
                do_sample=False,
                max_new_tokens=answer_len + 1,
                pad_token_id=tok.pad_id,
                eos_token_id=tok.eos_id,
            )
            made += (out.shape[1] - n_prompt) * len(chunk)
            allowed += (answer_len + 1) * len(chunk)
    return made, allowed


def best_time(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_eval(name: str, mcfg: ModelConfig, data_cfg, args) -> dict:
    examples = make_eval_set(args.eval_task, args.eval_length, args.eval_n, data_cfg.seed, data_cfg.holdout_modulus)
    torch.manual_seed(0)
    model = Transformer(mcfg).eval()
    hf = make_hf(mcfg).eval()
    n = len(examples)
    res = {"task": args.eval_task, "length": args.eval_length, "n": n}
    with autocast_context("bf16-mixed"):
        teacher_forced(model, examples[:64], batch_size=256)  # warm up
        t = best_time(lambda: teacher_forced(model, examples, batch_size=256), args.eval_repeats + 1)
        res["teacher_forced_examples_per_s"] = n / t
        greedy(model, examples[:32], batch_size=256)
        t = best_time(lambda: greedy(model, examples, batch_size=256), args.eval_repeats)
        res["lengen_greedy_examples_per_s"] = n / t
        hf_generate_all(hf, examples[:32], 256)
        made = {}

        def run_hf():
            made["tokens"] = hf_generate_all(hf, examples, 256)

        t = best_time(run_hf, args.eval_repeats)
        res["hf_generate_examples_per_s"] = n / t
        res["hf_new_tokens_made_allowed"] = made["tokens"]
    res["tf_vs_hf_generate"] = res["teacher_forced_examples_per_s"] / res["hf_generate_examples_per_s"]
    res["lengen_greedy_vs_hf_generate"] = res["lengen_greedy_examples_per_s"] / res["hf_generate_examples_per_s"]
    print(
        f"  [{name}] teacher-forced {res['teacher_forced_examples_per_s']:.0f}/s, lengen greedy "
        f"{res['lengen_greedy_examples_per_s']:.0f}/s, HF generate {res['hf_generate_examples_per_s']:.0f}/s",
        flush=True,
    )
    return res


def bench_run_share(cfg, mcfg: ModelConfig, train_by_prec: dict, args) -> dict:
    """Evaluation's share of one cpu-profile run's wall time (arith_carry: its 72 sets, the largest group).

    A run = ``steps`` training steps + the compile (first step) + ``steps / eval_every - 1`` evaluations on
    ``n_eval_during_training`` examples per set + the final one on ``n_eval``. Evaluation is timed here, on
    the profile's sets, as the engine runs it (all sets batched by length, eager) and as before (one batch per
    set, eager), and, for information, batched on the compiled network (its inference compile included);
    training from the measured steps of d128."""
    run = cfg.run("arith_carry", "rope", 0)
    t, d = cfg.train, cfg.data
    n_during = t.steps // t.eval_every - 1
    sets = make_eval_sets(run.group.eval_keys(d.eval_step), d.n_eval, d.seed, d.holdout_modulus)
    during = {k: v[: d.n_eval_during_training] for k, v in sets.items()}
    out = {"group": "arith_carry", "sets": len(sets), "steps": t.steps, "evaluations_during": n_during}

    def per_set(model, s):
        return {k: teacher_forced(model, v, batch_size=256) for k, v in s.items()}

    for prec, tr in train_by_prec.items():
        precision = PRECISIONS[prec]
        res = {}
        for how in ("before", "engine_eager", "engine_compiled"):
            if how == "engine_compiled" and not args.compile:
                continue
            torch.manual_seed(0)
            model = Transformer(mcfg).eval()
            if how == "engine_compiled":
                model.compile(dynamic=True)
            score = per_set if how == "before" else teacher_forced_sets
            with torch.no_grad(), autocast_context(precision):
                t0 = time.perf_counter()
                score(model, during)  # first evaluation: per-shape setup (and the compile)
                first = time.perf_counter() - t0
                t_during = best_time(lambda: score(model, during), 1)  # noqa: B023
                if how == "engine_compiled":  # information only: the final scaled from the intermediate one
                    t_final = t_during * d.n_eval / d.n_eval_during_training
                else:
                    t_final = best_time(lambda: score(model, sets), 1)  # noqa: B023
            res[how] = {"first_s": first, "during_s": t_during, "final_s": t_final}
        compile_s = tr["prime"].get("lightning_compiled", {}).get("first_call_s", 0.0)
        runs = {
            "before": (tr["before"]["ms_per_step"], 0.0, res["before"]),
            "engine": (tr[tr["engine"]]["ms_per_step"], compile_s if tr["engine"] != "lightning" else 0.0, None),
        }
        best_eval = "engine_eager"  # the engine evaluates eager (Evaluate: no inference compile)
        runs["engine"] = (*runs["engine"][:2], res[best_eval])
        share = {}
        for name, (ms, comp, ev) in runs.items():
            eval_s = ev["first_s"] + (n_during - 1) * ev["during_s"] + ev["final_s"]
            train_s = t.steps * ms / 1e3 + comp
            share[name] = {
                "train_s": train_s,
                "eval_s": eval_s,
                "run_s": train_s + eval_s,
                "eval_share_pct": 100 * eval_s / (train_s + eval_s),
            }
        out[prec] = {"eval": res, "engine_eval": best_eval, "run": share}
        print(
            f"  [{prec}] evaluation share of a run: before {share['before']['eval_share_pct']:.1f}%, "
            f"engine {share['engine']['eval_share_pct']:.1f}% (eval {best_eval})",
            flush=True,
        )
    return out


# ----------------------------------------------------------------------------------------------------
# 4. Data generation


def bench_datagen(groups: dict[str, GroupConfig], data_cfg, batch_size: int, seconds: float) -> dict:
    out = {}
    for name, group in groups.items():
        stream = TrainStream(group, batch_size, data_cfg.seed, data_cfg.holdout_modulus)
        stream.batch(10**6)  # warm up (imports, caches)
        t0, k, toks = time.perf_counter(), 0, 0
        while time.perf_counter() - t0 < seconds:
            toks += stream.batch(k)["input_ids"].numel()
            k += 1
        dt = time.perf_counter() - t0
        out[name] = {
            "tasks": group.tasks,
            "examples_per_s": k * batch_size / dt,
            "mean_padded_T": toks / (k * batch_size),
        }
    return out


# ----------------------------------------------------------------------------------------------------
# Reporting


def fmt_table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def met(value: float, key: str) -> str:
    thr, op, _ = TARGETS[key]
    ok = value >= thr if op == ">=" else value <= thr
    return "yes" if ok else "NO"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="timed training steps per measurement")
    p.add_argument("--warmup", type=int, default=None, help="untimed training steps before the clock")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved rounds of the three target contestants (best kept); variants run once",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sizes", default="128,256", help="d_model values (n_head 4, d_mlp 4 d_model, 4 layers)")
    p.add_argument("--eval-task", default="reverse_add")
    p.add_argument("--eval-length", type=int, default=16)
    p.add_argument("--eval-n", type=int, default=None)
    p.add_argument("--eval-repeats", type=int, default=None)
    p.add_argument("--datagen-seconds", type=float, default=None)
    p.add_argument("--peak-reps", type=int, default=None)
    p.add_argument(
        "--variants",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time the informational contestants (lengen sdpa / HF eager attention); default on, off with --quick",
    )
    p.add_argument("--precisions", default="bf16,fp32", help="training precisions (bf16 autocast, fp32)")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the compiled contestants (torch.compile, dynamic shapes)",
    )
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (< 1 min)")
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results file (default benchmarks/results.json; --quick: /tmp/lengen_bench_quick.json)",
    )
    args = p.parse_args(argv)
    q = args.quick
    defaults = dict(
        variants=(False, False),
        steps=(4, 20),
        warmup=(2, 4),
        repeats=(1, 2),
        eval_n=(128, 512),
        eval_repeats=(1, 2),
        datagen_seconds=(0.3, 2.0),
        peak_reps=(2, 5),
    )
    for k, (quick_v, full_v) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick_v if q else full_v)
    if args.json is None:
        args.json = Path("/tmp/lengen_bench_quick.json") if q else ROOT / "benchmarks" / "results.json"

    quiet()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    whole = Interference().__enter__()
    cfg = load_config(PROFILE)
    m = cfg.model
    vocab = len(default_tokenizer())
    sizes = [int(s) for s in args.sizes.split(",")]
    models = {}
    for d in sizes:
        mult = m.d_mlp // m.d_model  # 4 in the cpu profile
        models[f"d{d}"] = ModelConfig(
            vocab_size=vocab,
            n_layer=m.n_layer,
            n_head=m.n_head,
            d_model=d,
            d_mlp=mult * d,
            max_seq_len=m.max_seq_len,
            pos_encoding="rope",
            rope_base=m.rope_base,
            tie_embeddings=m.tie_embeddings,
        )

    info = machine_info(args.threads)
    print("=" * 100)
    print("lengen speed benchmark" + ("  (QUICK MODE: numbers are not representative)" if q else ""))
    print(
        f"machine: {info['cpu']}, {info['logical_cores']} logical cores ({info['usable_cores']} usable), "
        f"{info['mem_gib']} GiB; bf16 ISA: {', '.join(info['isa_bf16']) or 'none'}; "
        f"oneDNN bf16 supported: {info['onednn_bf16_supported']}; torch CPU capability {info['cpu_capability']}"
    )
    print(
        f"software: python {info['python']}, torch {info['torch']}, lightning {info['lightning']}, "
        f"transformers {info['transformers']}; torch threads {info['threads']}"
    )
    print(
        f"settings: batch {args.batch_size}, warmup {args.warmup} + timed {args.steps} steps, "
        f"{args.repeats} interleaved round(s) (best kept), precisions {args.precisions}, data group arith_carry "
        f"of {PROFILE.relative_to(ROOT)}"
    )
    print("=" * 100, flush=True)

    # -- peak ----------------------------------------------------------------------------------------
    print("\n[peak] square matmul, best of", args.peak_reps, flush=True)
    peak = {"bf16": {}, "fp32": {}}
    for n in (1024, 2048):
        peak["bf16"][n] = matmul_gflops(n, torch.bfloat16, args.peak_reps)
        peak["fp32"][n] = matmul_gflops(n, torch.float32, args.peak_reps)
    peak_bf16, peak_fp32 = max(peak["bf16"].values()), max(peak["fp32"].values())
    print(
        fmt_table(
            [[f"{n}x{n}", f"{peak['bf16'][n]:.1f}", f"{peak['fp32'][n]:.1f}"] for n in (1024, 2048)],
            ["matmul", "bf16 GFLOP/s", "fp32 GFLOP/s"],
        )
    )

    # -- training ------------------------------------------------------------------------------------
    group = cfg.groups["arith_carry"]
    stream = TrainStream(group, args.batch_size, cfg.data.seed, cfg.data.holdout_modulus)
    n_batches = args.warmup + args.steps + 1
    batches = [stream.batch(k) for k in range(n_batches)]
    precs = args.precisions.split(",")
    print(f"\n[train] {n_batches} pre-generated arith_carry batches of {args.batch_size}", flush=True)
    train = {
        prec: {
            name: bench_training(name, mc, cfg.train, batches, args, PRECISIONS[prec]) for name, mc in models.items()
        }
        for prec in precs
    }
    first = next(iter(models))
    shape_peak = {
        name: shape_matched_peak(mc, round(args.batch_size * r["batch"]["mean_T"]), args.peak_reps)
        for name, (mc, r) in zip(models, zip(models.values(), train[precs[0]].values()))
    }

    # -- evaluation ----------------------------------------------------------------------------------
    print(f"\n[eval] {args.eval_task} at length {args.eval_length}, {args.eval_n} examples", flush=True)
    evals = {name: bench_eval(name, mc, cfg.data, args) for name, mc in models.items()}
    print(f"\n[run] evaluation's share of a cpu-profile run ({first})", flush=True)
    share_cfg = cfg  # --quick: a fraction of the evaluation sets (a smoke test of the code path)
    if q:
        share_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, n_eval=16, n_eval_during_training=4))
    share = bench_run_share(share_cfg, models[first], {p_: train[p_][first] for p_ in precs}, args)

    # -- data generation -----------------------------------------------------------------------------
    print("\n[data] generating batches", flush=True)
    maze = GroupConfig(main={"shortest_path": 16}, aux={"dfs_trace": 16}, eval_max=16)
    gen = bench_datagen(
        {"arith_carry": group, "caprev": cfg.groups["caprev"], "maze (sp16+dfs16)": maze},
        cfg.data,
        args.batch_size,
        args.datagen_seconds,
    )
    small = train[precs[0]][first]
    consume = small[small["engine"]]["examples_per_s"]
    consume_tok = small[small["engine"]]["input_tokens_per_s"]
    for g in gen.values():
        g["vs_train"] = g["examples_per_s"] / consume
        # what training on *this* group would consume, at the same padded-token throughput
        g["train_examples_per_s_same_tokens"] = consume_tok / g["mean_padded_T"]
        g["vs_train_token_adjusted"] = g["examples_per_s"] / g["train_examples_per_s_same_tokens"]
        g["ms_per_step_in_process"] = 1e3 * args.batch_size / g["examples_per_s"]

    # -- report --------------------------------------------------------------------------------------
    print("\n" + "=" * 100)
    print(f"1. TRAINING throughput (batch {args.batch_size}, timed steps {args.steps}, best of {args.repeats} rounds)")
    rows = []
    for prec in precs:
        for name, r in train[prec].items():
            for k in CONTESTANTS:
                if k not in r:
                    continue
                x = r[k]
                rows.append(
                    [
                        f"{name} {prec}",
                        k,
                        f"{x['ms_per_step']:.1f}",
                        f"{x['input_tokens_per_s']:,.0f}",
                        f"{x['vs']['vs_before']:.2f}x",
                        f"{x['vs']['vs_hf']:.2f}x",
                        f"{x['vs']['vs_hf_compiled']:.2f}x" if "vs_hf_compiled" in x["vs"] else "-",
                        f"{x['model_gflops']:.1f}",
                        f"{100 * x['model_gflops'] / peak_bf16:.1f}%",
                        f"{100 * x['model_gflops'] / peak_fp32:.1f}%",
                    ]
                )
    print(
        fmt_table(
            rows,
            [
                "model",
                "stack",
                "ms/step",
                "input tok/s",
                "vs before",
                "vs HF",
                "vs HF compiled",
                "GFLOP/s",
                "of bf16 peak",
                "of fp32 peak",
            ],
        )
    )
    print("stacks: " + "; ".join(f"{k} = {v}" for k, v in CONTESTANTS.items() if k in small))
    print("\ncompile (first forward+backward of a compiled contestant, s; graphs dynamo compiled over all lengths):")
    for prec in precs:
        for name, r in train[prec].items():
            print(
                f"  {name} {prec}: "
                + ", ".join(
                    f"{k} {v['first_call_s']:.1f} s ({v['graphs_compiled']} graphs, {v['lengths']} lengths)"
                    for k, v in r["prime"].items()
                    if k in COMPILED
                )
            )
    print(
        "\nper-step breakdown (ms/step, best round; Lightning phases from its hooks: forward = training_step "
        "incl. self.log, clip+optimizer incl. scheduler and bookkeeping up to on_train_batch_end; data = "
        "generating one batch in the training process, as with num_workers 0):"
    )
    rows = []
    data_ms = gen["arith_carry"]["ms_per_step_in_process"]
    for prec in precs:
        for name, r in train[prec].items():
            for k in CONTESTANTS:
                if k not in r:
                    continue
                ph = r[k]["phases_ms_per_step"]
                f_, b_ = ph["forward"], ph["backward"]
                o_ = ph["clip+optimizer"] if "clip+optimizer" in ph else ph["clip"] + ph["optimizer"]
                rest = r[k]["ms_per_step"] - f_ - b_ - o_
                rows.append(
                    [f"{name} {prec}", k, f"{f_:.1f}", f"{b_:.1f}", f"{o_:.1f}", f"{rest:.1f}", f"{data_ms:.1f}"]
                    + [f"{r[k]['ms_per_step']:.1f}"]
                )
    print(fmt_table(rows, ["model", "stack", "fwd+loss", "backward", "clip+optim", "loop/other", "data", "total"]))

    print(f"\n2. MATMUL PEAK: bf16 {peak_bf16:.1f} GFLOP/s, fp32 {peak_fp32:.1f} GFLOP/s (square, best)")
    for name, sp in shape_peak.items():
        print(
            f"  {name} bf16 at the model's shapes (M = B x mean T): " + ", ".join(f"{k} {v:.0f}" for k, v in sp.items())
        )

    print(
        f"\n3. EVALUATION examples/s ({args.eval_task} length {args.eval_length}, {args.eval_n} examples, "
        f"batch 256, bf16 autocast, untrained models)"
    )
    rows = []
    for name, e in evals.items():
        made, allowed = e["hf_new_tokens_made_allowed"]
        rows.append(
            [
                name,
                f"{e['teacher_forced_examples_per_s']:,.0f}",
                f"{e['lengen_greedy_examples_per_s']:,.0f}",
                f"{e['hf_generate_examples_per_s']:,.0f}",
                f"{e['tf_vs_hf_generate']:.1f}x",
                f"{e['lengen_greedy_vs_hf_generate']:.1f}x",
                f"{made}/{allowed}",
            ]
        )
    print(
        fmt_table(
            rows,
            ["model", "lengen teacher-forced", "lengen greedy (KV)", "HF generate", "TF / HF", "greedy / HF"]
            + ["HF tokens made/allowed"],
        )
    )
    print(
        f"\n   evaluation's share of a cpu-profile arith_carry run ({first}, {share['steps']} steps, "
        f"{share['evaluations_during']} evaluations of {share_cfg.data.n_eval_during_training} + the final of "
        f"{share_cfg.data.n_eval} examples x {share['sets']} sets):"
    )
    rows = []
    for prec in precs:
        for name, x in share[prec]["run"].items():
            rows.append(
                [
                    prec,
                    name,
                    f"{x['train_s']:.0f}",
                    f"{x['eval_s']:.1f}",
                    f"{x['run_s']:.0f}",
                    f"{x['eval_share_pct']:.1f}%",
                ]
            )
    print(fmt_table(rows, ["precision", "engine", "train s", "eval s", "run s", "eval share"]))

    print(
        f"\n4. DATA GENERATION examples/s (TrainStream.batch, batch {args.batch_size}, 1 Python thread) vs "
        f"training consumption ({first} {precs[0]} engine: {consume:,.0f} ex/s on arith_carry)"
    )
    rows = [
        [
            name,
            f"{g['examples_per_s']:,.0f}",
            f"{g['mean_padded_T']:.1f}",
            f"{g['vs_train']:.0f}x",
            f"{g['train_examples_per_s_same_tokens']:,.0f}",
            f"{g['vs_train_token_adjusted']:.0f}x",
        ]
        for name, g in gen.items()
    ]
    print(
        fmt_table(
            rows, ["group", "gen ex/s", "mean padded T", "gen / train", "train ex/s at same tok/s", "token-adjusted"]
        )
    )

    bf = train.get("bf16", train[precs[0]])
    per = {  # target -> {model size or group: value}
        "speedup_bf16": {n: r["speedup_vs_before"] for n, r in train.get("bf16", {}).items()},
        "speedup_fp32": {n: r["speedup_vs_before"] for n, r in train.get("fp32", {}).items()},
        "eval_share": {f"{first} {p_}": share[p_]["run"]["engine"]["eval_share_pct"] for p_ in precs},
        "lightning_vs_hf": {n: r["lightning_vs_hf"] for n, r in bf.items()},
        "lightning_overhead": {n: r["lightning_overhead_pct"] for n, r in bf.items()},
        "mfu_wide": {
            n: 100 * r[r["engine"]]["model_gflops"] / peak_bf16 for n, r in bf.items() if r["model"]["d_model"] >= 256
        },
        "tf_vs_hf_generate": {n: e["tf_vs_hf_generate"] for n, e in evals.items()},
        "datagen_vs_train": {n: g["vs_train"] for n, g in gen.items()},
        "datagen_vs_train_same_group": {n: g["vs_train_token_adjusted"] for n, g in gen.items()},
    }
    worst = {
        k: (max(v.values()) if TARGETS[k][1] == "<=" else min(v.values())) if v else float("nan")
        for k, v in per.items()
    }
    print("\nTARGETS (met = the worst case over model sizes / groups meets it)")
    rows = []
    for key, (thr, op, desc) in TARGETS.items():
        unit = "%" if key in ("lightning_overhead", "mfu_wide", "eval_share") else "x"
        spec = "+.1f" if key == "lightning_overhead" else (".1f" if unit == "%" else ".3g")
        shown = ", ".join(f"{n} {v:{spec}}{unit}" for n, v in per[key].items())
        rows.append([desc, shown, f"{op} {thr:g}{unit}", met(worst[key], key) if worst[key] == worst[key] else "n/a"])
    print(fmt_table(rows, ["target", "measured", "target", "met"]))
    total = time.perf_counter() - t_start
    whole.__exit__(None, None, None)
    print(
        f"\ntotal benchmark wall time {total:.0f} s; other processes used {whole.other_cpu_s:.0f} CPU-s "
        f"meanwhile ({100 * whole.other_cpu_s / total:.0f}% of one core)"
    )
    print("=" * 100)

    results = {
        "machine": info,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "peak_gflops": {
            "bf16": peak["bf16"],
            "fp32": peak["fp32"],
            "bf16_best": peak_bf16,
            "fp32_best": peak_fp32,
            "bf16_at_model_shapes": shape_peak,
        },
        "train": train,
        "eval": evals,
        "eval_share": share,
        "datagen": gen,
        "targets": {
            k: {
                "measured": per[k],
                "worst": worst[k],
                "threshold": TARGETS[k][0],
                "op": TARGETS[k][1],
                "description": TARGETS[k][2],
                "met": met(worst[k], k) == "yes",
            }
            for k in TARGETS
        },
        "wall_s": total,
        "other_processes_cpu_s": whole.other_cpu_s,
    }
    for by_size in train.values():  # per-step lists are bulky; keep their summary only
        for r in by_size.values():
            for k in CONTESTANTS:
                if k in r:
                    r[k].pop("steps_ms", None)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
