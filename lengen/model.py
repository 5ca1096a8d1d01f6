"""A small Llama-style decoder-only transformer for length-generalization experiments.

Read top to bottom: config -> RMSNorm -> RoPE helpers -> HookPoint -> attention -> MLP -> block ->
KV cache -> model. Pre-norm residual blocks (x + attn(norm(x)); x + mlp(norm(x))), SwiGLU MLP, no
biases, final RMSNorm, optional weight tying. The position encoding is a config switch:

- ``rope``: rotary embeddings on q and k (rotate-half convention); attention scores depend only on
  relative position, so logits are invariant to a uniform shift of the position ids.
- ``nope``: no positional signal at all (causal masking is the only source of order information).
- ``ape``: a learned absolute position table added to the token embeddings.

Attention has two numerically equivalent paths: ``sdpa`` (F.scaled_dot_product_attention, fast) and
``explicit`` (manual softmax, with TransformerLens-style hook points ``hook_pattern`` and
``hook_head_out`` that PyTorch forward hooks can read and replace). ``run_with_cache`` and
``replace_heads`` wrap those hooks for head analysis and mean-ablation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

POS_ENCODINGS = ("rope", "nope", "ape")
ATTN_IMPLS = ("sdpa", "explicit")
INITS = ("fan_in", "gpt2")


# ----------------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    d_mlp: int = 512  # SwiGLU hidden width
    max_seq_len: int = 256  # position range: APE table rows / RoPE cache / longest sequence accepted
    pos_encoding: str = "rope"  # "rope" | "nope" | "ape"
    rope_base: float = 10000.0
    tie_embeddings: bool = False
    norm_eps: float = 1e-5
    init: str = "fan_in"  # "fan_in" | "gpt2": weight initialization, see Transformer._init_weights

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "d_mlp", "max_seq_len"):
            value = getattr(self, name)
            # bool is an int subclass; True as a layer count is a bug, not a 1
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive int (>= 1)")
        if self.d_model % self.n_head != 0:
            raise ValueError(f"n_head={self.n_head} does not divide d_model={self.d_model}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"pos_encoding={self.pos_encoding!r} must be one of {POS_ENCODINGS}")
        if self.pos_encoding == "rope":
            if not (self.rope_base > 0 and math.isfinite(self.rope_base)):
                # base=inf does NOT give NoPE: frequency i=0 is base**0 = 1 and still rotates
                raise ValueError(
                    f"rope_base={self.rope_base!r} must be finite and > 0 "
                    "(use pos_encoding='nope' for no positional signal)"
                )
            if self.head_dim % 2 != 0:
                raise ValueError(
                    f"head_dim={self.head_dim} (d_model/n_head) must be even for rope "
                    "(rotation acts on pairs of channels)"
                )
        if not (self.norm_eps > 0 and math.isfinite(self.norm_eps)):
            raise ValueError(f"norm_eps={self.norm_eps!r} must be finite and > 0")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} must be one of {INITS}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


# ----------------------------------------------------------------------------------------------------
# Normalisation


class RMSNorm(nn.Module):
    """x / rms(x) * weight; no mean subtraction and no bias (Llama)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # normalise in fp32: under bf16 autocast the mean of squares loses too many bits
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


# ----------------------------------------------------------------------------------------------------
# RoPE helpers


def rope_cos_sin(max_len: int, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos/sin tables (max_len, head_dim) for the rotate-half convention.

    Channel i and i + head_dim/2 form a pair rotated by angle pos * base**(-2i/head_dim).
    Computed in float64 and stored in float32 so large positions keep their precision.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)  # (L, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, hs)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, nh, T, hs) by per-position angles; cos/sin are (B, 1, T, hs) float32."""
    xf = x.float()  # rotate in fp32, hand back the input dtype (bf16 under autocast)
    return (xf * cos + rotate_half(xf) * sin).type_as(x)


# ----------------------------------------------------------------------------------------------------
# Hook points


class HookPoint(nn.Module):
    """Identity module marking an activation (TransformerLens-style).

    A forward hook registered on it sees the activation as its output; returning a tensor from the
    hook replaces the activation for the rest of the forward pass. Only the ``explicit`` attention
    path calls hook points.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x

    def has_hooks(self) -> bool:
        return bool(self._forward_hooks or self._forward_pre_hooks)


# ----------------------------------------------------------------------------------------------------
# Attention


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx  # which KV-cache slot this layer reads and writes
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        d = cfg.d_model
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)  # columns h*hs:(h+1)*hs read head h
        self.hook_pattern = HookPoint()  # (B, nh, T_q, T_k) attention probabilities
        self.hook_head_out = HookPoint()  # (B, nh, T_q, hs) per-head z = pattern @ v

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor] | None, attn_impl: str, kv_cache: KVCache | None
    ) -> Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, self.head_dim
        q = self.q_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = self.v_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)

        past = 0
        if kv_cache is not None:
            past = kv_cache.length
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, nh, past + T, hs)
            q = q.to(k.dtype)  # cache dtype is fixed at first write; keep the matmul dtypes equal
        T_k = k.shape[2]

        # Query i sits at absolute slot past + i and may see keys 0..past + i. With an empty cache this
        # is the usual lower triangle; with a cache the triangle is shifted right by `past`, which
        # sdpa's is_causal (top-left aligned when T_q != T_k) would get wrong.
        mask = None
        if (past > 0 and T > 1) or attn_impl == "explicit":
            mask = (
                torch.arange(T_k, device=x.device)[None, :] <= past + torch.arange(T, device=x.device)[:, None]
            )  # (T, T_k) bool, True = attend

        if attn_impl == "sdpa":
            if self.hook_pattern.has_hooks() or self.hook_head_out.has_hooks():
                # silently skipping an ablation hook would corrupt an experiment
                raise RuntimeError(
                    "hooks are registered on hook_pattern/hook_head_out but they only fire with attn_impl='explicit'"
                )
            # past > 0 and T == 1: the single new query sees every key, no mask needed
            z = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=(past == 0 and T > 1)
            )  # (B, nh, T, hs)
        elif attn_impl == "explicit":
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T_k)
            att = att.float().masked_fill(~mask, float("-inf"))
            pattern = self.hook_pattern(att.softmax(dim=-1).to(v.dtype))  # (B, nh, T, T_k)
            z = self.hook_head_out(pattern @ v)  # (B, nh, T, hs)
        else:
            raise ValueError(f"attn_impl={attn_impl!r} must be one of {ATTN_IMPLS}")

        y = z.transpose(1, 2).reshape(B, T, C)  # (B, T, nh*hs): head h occupies slice h*hs:(h+1)*hs
        return self.o_proj(y)


# ----------------------------------------------------------------------------------------------------
# MLP and block


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x) (Shazeer 2020, Llama)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)  # gate
        self.w3 = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)  # value
        self.w2 = nn.Linear(cfg.d_mlp, cfg.d_model, bias=False)  # output projection

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor] | None, attn_impl: str, kv_cache: KVCache | None
    ) -> Tensor:
        x = x + self.attn(self.attn_norm(x), rope, attn_impl, kv_cache)
        x = x + self.mlp(self.mlp_norm(x))
        return x


# ----------------------------------------------------------------------------------------------------
# KV cache


class KVCache:
    """Per-layer preallocated keys/values (B, nh, max_len, hs) plus the number of filled slots.

    Buffers are allocated on the first write of each layer, so their dtype/device follow k (bf16 under
    autocast). The model advances ``length`` once per forward, after every layer has written.
    """

    def __init__(self, n_layer: int, batch_size: int, max_len: int):
        if batch_size < 1 or max_len < 1:
            raise ValueError(f"batch_size={batch_size} and max_len={max_len} must be >= 1")
        self.batch_size = batch_size
        self.max_len = max_len
        self.length = 0
        self.k: list[Tensor | None] = [None] * n_layer
        self.v: list[Tensor | None] = [None] * n_layer

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, nh, T, hs) at slots length..length+T; return views of all filled slots."""
        B, nh, T, hs = k.shape
        if self.batch_size != B:
            raise ValueError(f"batch size {B} does not match the cache's batch_size={self.batch_size}")
        if self.k[layer] is None:
            self.k[layer] = k.new_empty(B, nh, self.max_len, hs)
            self.v[layer] = v.new_empty(B, nh, self.max_len, hs)
        ck, cv = self.k[layer], self.v[layer]
        end = self.length + T
        ck[:, :, self.length : end] = k
        cv[:, :, self.length : end] = v
        return ck[:, :, :end], cv[:, :, :end]

    def reset(self) -> None:
        self.length = 0


# ----------------------------------------------------------------------------------------------------
# Model


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.pos_encoding == "ape" else None
        if cfg.pos_encoding == "rope":
            cos, sin = rope_cos_sin(cfg.max_seq_len, cfg.head_dim, cfg.rope_base)
            # non-persistent: derived from the config, so checkpoints stay free of it
            self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, hs)
            self.register_buffer("rope_sin", sin, persistent=False)  # (max_seq_len, hs)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

        self._init_weights()

    def _init_weights(self) -> None:
        """Normal weights; residual writes (o_proj, w2) scaled by 1/sqrt(2 n_layer) as in GPT-2.

        ``fan_in`` (default): Linear weights N(0, 1/fan_in), embeddings N(0, 1), so every layer keeps
        unit-scale activations at any width. ``gpt2``: the constant std 0.02 of GPT-2, tuned for
        d_model >= 768. At d_model 128, 0.02 shrinks every projection ~4x (0.02 * sqrt(128) = 0.23):
        attention starts uniform, and digit-wise addition sat on a loss plateau for thousands of steps
        here while string tasks still learned (docs/arithmetic-recipe.md).
        """
        cfg = self.cfg
        resid = 1.0 / math.sqrt(2 * cfg.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                if cfg.init == "gpt2":
                    std = 0.02
                elif isinstance(module, nn.Embedding):
                    std = 1.0
                else:
                    std = module.in_features**-0.5
                if name.endswith(("attn.o_proj", "mlp.w2")):
                    std *= resid  # each block adds two residual writes: keep the stream's variance flat
                nn.init.normal_(module.weight, mean=0.0, std=std)
        if cfg.tie_embeddings:  # the shared matrix is read as an output head: fan-in scale, not N(0, 1)
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=0.02 if cfg.init == "gpt2" else cfg.d_model**-0.5)

    # -- positions -------------------------------------------------------------------------------------

    def _position_ids(self, B: int, T: int, past: int, pos_offset: Tensor | int | None, device: torch.device) -> Tensor:
        """(B, T) absolute positions pos_offset[b] + past + t, range-checked against max_seq_len."""
        if pos_offset is None:
            pos_offset = 0
        if isinstance(pos_offset, int):
            lo, hi = pos_offset, pos_offset  # checked in Python: no device sync
            offset = torch.full((B,), pos_offset, dtype=torch.long, device=device)
            lo, hi = lo + past, hi + past + T - 1
        else:
            # Per-example offsets (training under APE) are bounded by each example's own length, so a
            # short example's right padding may run past the table: those positions are clamped to the
            # last row (as the official formal-framework collator repeats the last position id). No real
            # token attends to padding (causal mask, padding on the right) and no loss reads it.
            offset = torch.as_tensor(pos_offset, device=device).long().reshape(-1).expand(B)
            lo, hi = int(offset.min()) + past, int(offset.max()) + past
        if lo < 0 or hi >= self.cfg.max_seq_len:
            raise ValueError(
                f"position ids span [{lo}, {hi}] but must lie in [0, max_seq_len="
                f"{self.cfg.max_seq_len}) for pos_encoding={self.cfg.pos_encoding!r}"
            )
        pos = offset[:, None] + past + torch.arange(T, device=device)  # (B, T)
        return pos if isinstance(pos_offset, int) else pos.clamp_(max=self.cfg.max_seq_len - 1)

    # -- forward ---------------------------------------------------------------------------------------

    def forward(
        self,
        idx: Tensor,
        pos_offset: Tensor | int | None = None,
        attn_impl: str = "auto",
        kv_cache: KVCache | None = None,
    ) -> Tensor:
        """idx (B, T) -> logits (B, T, vocab).

        pos_offset: per-example start position (B,) or an int, default 0; position ids are
        pos_offset + cache length + arange(T). Ignored by nope (which has no positions).
        attn_impl: "sdpa", "explicit", or "auto": SDPA on CUDA, explicit on CPU. Measured here
        (benchmarks/README.md), the explicit path trains about 1.35x faster than SDPA on CPU, whose
        attention backward is slow at small head sizes; on GPU the fused SDPA kernels win.
        """
        if attn_impl == "auto":
            attn_impl = "sdpa" if idx.is_cuda else "explicit"
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl={attn_impl!r} must be one of {ATTN_IMPLS}")
        B, T = idx.shape
        past = 0
        if kv_cache is not None:
            past = kv_cache.length
            if past + T > kv_cache.max_len:
                raise ValueError(
                    f"kv_cache holds {past} of max_len={kv_cache.max_len} positions; cannot append {T} more"
                )

        x = self.tok_emb(idx)  # (B, T, d)
        rope = None
        if self.cfg.pos_encoding == "nope":
            # no positions at all; still cap the length so max_seq_len means the same for every encoding
            if past + T > self.cfg.max_seq_len:
                raise ValueError(f"sequence length {past + T} exceeds max_seq_len={self.cfg.max_seq_len}")
        else:
            pos = self._position_ids(B, T, past, pos_offset, idx.device)  # (B, T)
            if self.cfg.pos_encoding == "ape":
                x = x + self.pos_emb(pos)
            else:  # rope: gather per-example angles once, shared by every layer
                rope = (self.rope_cos[pos].unsqueeze(1), self.rope_sin[pos].unsqueeze(1))  # (B, 1, T, hs)

        for block in self.blocks:
            x = block(x, rope, attn_impl, kv_cache)
        if kv_cache is not None:
            kv_cache.length = past + T
        return self.lm_head(self.norm_f(x))

    # -- head analysis ---------------------------------------------------------------------------------

    def run_with_cache(self, idx: Tensor, pos_offset: Tensor | int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Explicit-path forward; returns logits and detached activations keyed
        ``blocks.{i}.attn.pattern`` (B, nh, T, T) and ``blocks.{i}.attn.head_out`` (B, nh, T, hs)."""
        cache: dict[str, Tensor] = {}

        def recorder(key: str):
            def hook(module, inputs, output):
                cache[key] = output.detach()

            return hook

        handles = []
        try:
            for i, block in enumerate(self.blocks):
                handles.append(block.attn.hook_pattern.register_forward_hook(recorder(f"blocks.{i}.attn.pattern")))
                handles.append(block.attn.hook_head_out.register_forward_hook(recorder(f"blocks.{i}.attn.head_out")))
            logits = self(idx, pos_offset=pos_offset, attn_impl="explicit")
        finally:
            for h in handles:
                h.remove()
        return logits, cache

    @contextmanager
    def replace_heads(self, replacements: dict[tuple[int, int], Tensor]) -> Iterator[None]:
        """Within the context, forward(attn_impl="explicit") replaces head_out of head h in layer l with
        ``replacements[(l, h)]``, broadcastable to (B, T, hs) (e.g. a batch mean of shape (T, hs)).

        Because the head's residual contribution is o_proj.weight[:, h*hs:(h+1)*hs] @ z_h, replacing
        z_h with its mean is mean-ablation of that head. Hooks are removed on exit.
        """
        by_layer: dict[int, dict[int, Tensor]] = {}
        for (layer, head), value in replacements.items():
            if not (0 <= layer < self.cfg.n_layer and 0 <= head < self.cfg.n_head):
                raise ValueError(
                    f"(layer, head)=({layer}, {head}) out of range for "
                    f"n_layer={self.cfg.n_layer}, n_head={self.cfg.n_head}"
                )
            by_layer.setdefault(layer, {})[head] = value

        def replacer(heads: dict[int, Tensor]):
            def hook(module, inputs, z):  # z: (B, nh, T, hs)
                z = z.clone()  # never edit the activation in place: autograd or other hooks may hold it
                B, _, T, hs = z.shape
                for head, value in heads.items():
                    z[:, head] = value.to(device=z.device, dtype=z.dtype).expand(B, T, hs)
                return z

            return hook

        handles = [
            self.blocks[layer].attn.hook_head_out.register_forward_hook(replacer(heads))
            for layer, heads in by_layer.items()
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    # -- decoding --------------------------------------------------------------------------------------

    def make_kv_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty cache for up to max_len positions (default max_seq_len); buffers allocate lazily."""
        return KVCache(self.cfg.n_layer, batch_size, max_len or self.cfg.max_seq_len)

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, eos_id: int | None = None) -> Tensor:
        """Greedy decoding with a KV cache from equal-length prompts idx (B, T0), positions from 0.

        Stops once every row has produced eos_id; rows that finished earlier are padded with eos_id.
        Returns (B, T0 + n_generated).
        """
        B, T0 = idx.shape
        if max_new_tokens <= 0:
            return idx
        # the last generated token is never fed back, so the cache needs one slot less
        cache = self.make_kv_cache(B, T0 + max_new_tokens - 1)
        finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
        out = [idx]
        logits = self(idx, kv_cache=cache)  # prefill, (B, T0, vocab)
        for step in range(max_new_tokens):
            nxt = logits[:, -1].argmax(dim=-1)  # (B,)
            if eos_id is not None:
                nxt = nxt.masked_fill(finished, eos_id)
                finished |= nxt == eos_id
            out.append(nxt[:, None])
            if step == max_new_tokens - 1 or (eos_id is not None and bool(finished.all())):
                break
            logits = self(nxt[:, None], kv_cache=cache)  # (B, 1, vocab)
        return torch.cat(out, dim=1)

    # -- accounting ------------------------------------------------------------------------------------

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (a tied lm_head is counted once). non_embedding drops the token and position
        embedding tables (lookups, no FLOPs); an untied lm_head is a matmul and stays counted."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if not self.cfg.tie_embeddings:
                n -= self.tok_emb.weight.numel()
            # tied: the shared matrix is the lm_head matmul, so it stays counted
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training (forward + backward) FLOPs per token, PaLM appendix B / nanoGPT estimate_mfu:
        6N for the weight matmuls (2 forward, 4 backward per parameter; N = num_params(non_embedding=True))
        plus 12 * n_layer * d_model * seq_len for the attention score and value matmuls (the causal
        mask's halving is ignored, as in the original estimate)."""
        N = self.num_params(non_embedding=True)
        return 6.0 * N + 12.0 * self.cfg.n_layer * self.cfg.d_model * seq_len
