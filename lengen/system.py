"""The training systems (LightningModules): one model, its loss, its optimizer and schedule.

The model (``lengen.model.Transformer``, or the pretrained wrapper of ``lengen.finetune``) is a plain
``nn.Module``; what it takes to *train* it lives here: the loss over the target tokens, AdamW without
weight decay on 1-D parameters (:func:`adamw`), and warmup -> constant -> cosine decay (:func:`lr_lambda`).
Every kind of run uses this one optimizer factory and this one schedule; how runs are trained, checkpointed,
evaluated and resumed is ``lengen.engine``'s job.
"""

from __future__ import annotations

import dataclasses
import math

import lightning as L
import torch
import torch.nn.functional as F

from lengen.data import IGNORE, length_buckets
from lengen.model import ModelConfig, Transformer
from lengen.tokenizer import default_tokenizer


def lr_lambda(step: int, warmup_steps: int, decay_steps: int, total_steps: int, min_lr_frac: float) -> float:
    """Warmup (linear) → constant → cosine decay over the last ``decay_steps`` to ``min_lr_frac``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_start = total_steps - decay_steps
    if step < decay_start or decay_steps == 0:
        return 1.0
    t = min((step - decay_start) / decay_steps, 1.0)
    return min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t))


def adamw(
    model: torch.nn.Module, lr: float, betas: tuple[float, float], eps: float, weight_decay: float, fused: bool = False
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: norms' 1-D gains are not decayed (standard practice)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=tuple(betas),
        eps=eps,
        fused=fused or None,
    )


class LengenSystem(L.LightningModule):
    """Next-token cross-entropy on the target tokens and ``<eos>`` (labels are IGNORE elsewhere)."""

    def __init__(
        self,
        model_config: dict,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-12,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        decay_steps: int = 0,
        total_steps: int = 1000,
        min_lr_frac: float = 0.0,
        length_buckets: int = 1,
        fused: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = self.build_model()

    def build_model(self) -> torch.nn.Module:
        """The network (a subclass may return another, e.g. the pretrained LM)."""
        return Transformer(ModelConfig(**self.hparams.model_config))

    def forward(self, idx, pos_offset=None):
        return self.model(idx, pos_offset=pos_offset)

    def training_step(self, batch, batch_idx):
        x, y, offset = batch["input_ids"], batch["labels"], batch.get("pos_offset")
        world = self._trainer.world_size if self._trainer is not None else 1
        if self.hparams.length_buckets == 1 and world == 1:
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
                loss = loss + F.cross_entropy(
                    logits.float().flatten(0, 1), y[rows, :T].flatten(), ignore_index=IGNORE, reduction="sum"
                )
            n_targets = (y != IGNORE).sum()
            if world > 1:
                # DDP averages the ranks' gradients. Each rank holds a share of the global batch, with its own
                # number of targets: dividing its summed loss by the global count per rank makes that average
                # the global batch's mean loss (a mean of per-rank means would weight the ranks' rows unequally).
                n_targets = self.all_gather(n_targets).sum() / world
            loss = loss / n_targets
        self.log("train/loss", loss, prog_bar=True)  # the learning rate is logged by LearningRateMonitor
        return loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Lightning refuses to clip for a fused optimizer under mixed precision, because it could not unscale
        # fp16 gradients first; bf16 and fp32 have no loss scaling, so the gradients are clipped as they are.
        if self.hparams.fused and gradient_clip_val and self.trainer.precision != "16-mixed":
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        hp = self.hparams
        opt = adamw(self.model, hp.lr, hp.betas, hp.eps, hp.weight_decay, hp.fused)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, hp.warmup_steps, hp.decay_steps, hp.total_steps, hp.min_lr_frac)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def model_config(run) -> ModelConfig:
    """The network of a :class:`lengen.config.RunConfig`: its ``model`` section, position encoding, vocabulary."""
    m = run.model
    return ModelConfig(
        vocab_size=len(default_tokenizer()),
        n_layer=m.n_layer,
        n_head=m.n_head,
        d_model=m.d_model,
        d_mlp=m.d_mlp,
        max_seq_len=m.max_seq_len,
        pos_encoding=run.pos_encoding,
        rope_base=m.rope_base,
        tie_embeddings=m.tie_embeddings,
        init=m.init,
    )


def system_from_run(run) -> LengenSystem:
    """Build the system for a :class:`lengen.config.RunConfig`."""
    t = run.train
    return LengenSystem(
        model_config=dataclasses.asdict(model_config(run)),
        lr=t.lr,
        betas=(t.beta1, t.beta2),
        eps=t.eps,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps,
        decay_steps=t.decay_steps,
        total_steps=t.steps,
        min_lr_frac=t.min_lr_frac,
        length_buckets=t.length_buckets,
        fused=True,  # the same AdamW update in one kernel: 2-3x faster optimizer steps on CPU (benchmarks/README.md)
    )
