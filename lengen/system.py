"""The training system (LightningModule) and the per-length evaluation callback.

The model (``lengen.model``) is a plain ``nn.Module``; everything about *training* it — optimizer,
schedule, random APE offsets, logging — lives here. The callback evaluates every ``eval_every`` steps
on the fixed evaluation sets, appends tidy records (kept in the checkpoint, so a resumed run has the
complete history), and keeps a checkpoint at each evaluation step for the head analysis.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from lengen.data import IGNORE, EvalExample, length_buckets
from lengen.evaluate import RECORD_FIELDS, autocast_context, score_sets
from lengen.model import ModelConfig, Transformer


def lr_lambda(step: int, warmup_steps: int, decay_steps: int, total_steps: int, min_lr_frac: float) -> float:
    """Warmup (linear) → constant → cosine decay over the last ``decay_steps`` to ``min_lr_frac``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_start = total_steps - decay_steps
    if step < decay_start or decay_steps == 0:
        return 1.0
    t = min((step - decay_start) / decay_steps, 1.0)
    return min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t))


class LengenSystem(L.LightningModule):
    def __init__(self, model_config: dict, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.98),
                 eps: float = 1e-12, weight_decay: float = 0.01, warmup_steps: int = 0, decay_steps: int = 0,
                 total_steps: int = 1000, min_lr_frac: float = 0.0, length_buckets: int = 1):
        super().__init__()
        self.save_hyperparameters()
        self.model = Transformer(ModelConfig(**model_config))

    def forward(self, idx, pos_offset=None):
        return self.model(idx, pos_offset=pos_offset)

    def training_step(self, batch, batch_idx):
        x, y, offset = batch["input_ids"], batch["labels"], batch.get("pos_offset")
        if self.hparams.length_buckets == 1:  # the plain mean: bit-identical to the runs reported so far
            logits = self.model(x, pos_offset=offset)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE)
        else:
            # A batch mixes lengths 1..max and is right-padded to its longest row, so much of it is
            # padding. Rows sorted by length in `length_buckets` chunks, each cut to its longest row,
            # skip most of it (benchmarks/length_buckets.py). The gradient is the full batch's: attention
            # is causal and padding sits at the right, so no kept position ever attends to a cut one,
            # and the chunks' summed losses over the batch's target count are its mean loss.
            loss = x.new_zeros((), dtype=torch.float32)
            for rows, T in length_buckets(y, self.hparams.length_buckets):
                logits = self.model(x[rows, :T], pos_offset=None if offset is None else offset[rows])
                loss = loss + F.cross_entropy(logits.float().flatten(0, 1), y[rows, :T].flatten(),
                                              ignore_index=IGNORE, reduction="sum")
            loss = loss / (y != IGNORE).sum()
        self.log("train/loss", loss, prog_bar=True)  # the learning rate is logged by LearningRateMonitor
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        # No weight decay on norms and embeddings' 1-D params (standard practice; biases do not exist).
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, hp.warmup_steps, hp.decay_steps, hp.total_steps, hp.min_lr_frac)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class PerLengthEval(L.Callback):
    """Evaluate per (task, length) every ``every`` steps and at the end; keep a checkpoint each time.

    Records are kept in the callback's state (saved in every checkpoint), so a run killed and resumed
    still ends with the full history; they are also flushed to ``records.jsonl`` after each evaluation
    so progress can be watched.
    """

    def __init__(self, sets_during: dict[tuple[str, int], list[EvalExample]],
                 sets_final: dict[tuple[str, int], list[EvalExample]], every: int, run_dir: Path,
                 meta: dict, precision: str, batch_size: int = 256):
        self.sets_during, self.sets_final = sets_during, sets_final
        self.every, self.run_dir, self.meta = every, Path(run_dir), meta
        self.precision, self.batch_size = precision, batch_size
        self.records: list[dict] = []
        self.evaluated_steps: list[int] = []

    def _evaluate(self, trainer: L.Trainer, pl_module: LengenSystem, final: bool) -> None:
        step = trainer.global_step
        if step in self.evaluated_steps:
            return
        model = pl_module.model
        was_training = model.training
        model.eval()
        with autocast_context(self.precision, pl_module.device):
            rows = score_sets(model, self.sets_final if final else self.sets_during, step=step,
                              batch_size=self.batch_size, **self.meta)
        model.train(was_training)
        for r in rows:
            r["final"] = final
        self.records.extend(rows)
        self.evaluated_steps.append(step)
        ckpt_dir = self.run_dir / "checkpoints"  # save_checkpoint is collective; only rank 0 writes
        # Kept checkpoints hold weights + hyperparameters (for the head analysis); last.ckpt holds the
        # full training state (optimizer, schedule, these records) that a killed run resumes from.
        trainer.save_checkpoint(ckpt_dir / f"step={step:06d}.ckpt", weights_only=True)
        trainer.save_checkpoint(ckpt_dir / "last.ckpt", weights_only=False)
        if not trainer.is_global_zero:  # under DDP every rank evaluates the same sets; one reports
            return
        self.flush()
        group = self.meta["group"]
        by_range: dict[str, list[float]] = {}
        for r in rows:
            if r["role"] == "main":
                by_range.setdefault(group.length_range(r["length"]), []).append(r["exact_match"])
        means = ", ".join(f"{name} {sum(v) / len(v):.3f}" for name, v in by_range.items())
        print(f"[eval] {self.meta['run_id']} step {step}: main {means}", flush=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.every == 0 and step < trainer.max_steps:
            self._evaluate(trainer, pl_module, final=False)

    def on_train_end(self, trainer, pl_module):
        self._evaluate(trainer, pl_module, final=True)

    def flush(self) -> None:
        with open(self.run_dir / "records.jsonl", "w") as f:
            for r in self.records:
                f.write(json.dumps({k: r[k] for k in (*RECORD_FIELDS, "final")}) + "\n")

    def state_dict(self) -> dict:
        return {"records": self.records, "evaluated_steps": self.evaluated_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        self.records = list(state_dict["records"])
        self.evaluated_steps = list(state_dict["evaluated_steps"])


def system_from_run(run) -> LengenSystem:
    """Build the system for a :class:`lengen.config.RunConfig`."""
    t = run.train
    return LengenSystem(
        model_config=dataclasses.asdict(run.model_config()), lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps,
        weight_decay=t.weight_decay, warmup_steps=t.warmup_steps, decay_steps=t.decay_steps,
        total_steps=t.steps, min_lr_frac=t.min_lr_frac, length_buckets=t.length_buckets,
    )
