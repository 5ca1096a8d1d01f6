"""Tests for lengen.model: config validation, attention-path equivalence, position encodings, KV-cache
decoding, hook points and weight tying. Tiny models, one CPU thread."""

from __future__ import annotations

import math

import pytest
import torch

from lengen.model import ModelConfig, Transformer, apply_rope, rope_cos_sin

torch.set_num_threads(1)

ENCODINGS = ("rope", "nope", "ape")
VOCAB = 23


def tiny(pos_encoding: str = "rope", seed: int = 0, **kw) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=VOCAB, n_layer=2, n_head=4, d_model=32, d_mlp=64, max_seq_len=48, pos_encoding=pos_encoding, **kw
    )
    return Transformer(cfg).eval()


def randn_weights(model: Transformer, std: float = 0.3, seed: int = 1) -> Transformer:
    """Larger random weights than the 0.02 init, so attention is far from uniform and positions matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def tokens(B: int, T: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


# -- config ------------------------------------------------------------------------------------------


def test_config_rejects_n_head_not_dividing_d_model():
    with pytest.raises(ValueError, match=r"n_head=5 does not divide d_model=128"):
        ModelConfig(vocab_size=10, n_head=5, d_model=128)


def test_config_rejects_bad_pos_encoding():
    with pytest.raises(ValueError, match=r"pos_encoding='alibi'"):
        ModelConfig(vocab_size=10, pos_encoding="alibi")


@pytest.mark.parametrize("field, value", [("n_layer", 0), ("vocab_size", -3), ("d_mlp", 2.5), ("max_seq_len", True)])
def test_config_rejects_non_positive_ints(field, value):
    with pytest.raises(ValueError, match=rf"{field}={value!r}"):
        ModelConfig(**{"vocab_size": 10, field: value})


@pytest.mark.parametrize("base", [0.0, -1.0, math.inf, math.nan])
def test_config_rejects_bad_rope_base(base):
    with pytest.raises(ValueError, match=r"rope_base="):
        ModelConfig(vocab_size=10, rope_base=base)
    # only rope reads the base
    ModelConfig(vocab_size=10, rope_base=base, pos_encoding="nope")


def test_head_dim():
    assert ModelConfig(vocab_size=10, n_head=4, d_model=128).head_dim == 32


# -- attention paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("enc", ENCODINGS)
def test_sdpa_and_explicit_agree(enc):
    model = randn_weights(tiny(enc), std=0.1)
    idx = tokens(3, 20)
    offset = torch.tensor([0, 5, 11]) if enc != "nope" else None
    with torch.no_grad():
        a = model(idx, pos_offset=offset, attn_impl="sdpa")
        b = model(idx, pos_offset=offset, attn_impl="explicit")
    assert a.shape == (3, 20, VOCAB)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bad_attn_impl():
    with pytest.raises(ValueError, match="attn_impl='flash'"):
        tiny()(tokens(1, 4), attn_impl="flash")


# -- position encodings ------------------------------------------------------------------------------


def test_nope_is_position_invariant_and_does_not_rotate(monkeypatch):
    model = randn_weights(tiny("nope"))
    assert not hasattr(model, "rope_cos") and model.pos_emb is None
    # the rotation must never run for nope
    monkeypatch.setattr("lengen.model.apply_rope", lambda *a: pytest.fail("nope applied rope"))
    idx = tokens(4, 16)
    with torch.no_grad():
        ref = model(idx)
        for seed in range(3):
            off = torch.randint(0, 1000, (4,), generator=torch.Generator().manual_seed(seed))
            assert torch.equal(model(idx, pos_offset=off), ref)


def test_rope_with_infinite_base_still_rotates():
    # 1/inf**(2i/hs) is 0 except at i=0, where inf**0 = 1: that channel pair rotates at 1 rad/position,
    # so "rope with base=inf" is not NoPE (and the config refuses it)
    cos, sin = rope_cos_sin(8, 8, math.inf)
    assert not torch.allclose(cos[1], torch.ones(8))
    x = torch.randn(1, 1, 8, 8)
    rotated = apply_rope(x, cos[None, None], sin[None, None])
    assert not torch.allclose(rotated, x)
    torch.testing.assert_close(rotated[..., 0, :], x[..., 0, :])  # position 0 is always the identity


def test_rope_is_invariant_to_uniform_offset():
    model = randn_weights(tiny("rope"))
    idx = tokens(4, 16)
    with torch.no_grad():
        ref = model(idx)
        shifted = model(idx, pos_offset=torch.tensor([1, 7, 20, 32]))
        assert not torch.equal(shifted, ref)  # the angles did change ...
        torch.testing.assert_close(shifted, ref, atol=1e-4, rtol=1e-4)  # ... but only relative ones matter
        torch.testing.assert_close(model(idx, pos_offset=13), ref, atol=1e-4, rtol=1e-4)


def test_padding_past_the_position_table_is_clamped_and_changes_nothing():
    cfg = ModelConfig(vocab_size=VOCAB, n_layer=1, n_head=2, d_model=16, d_mlp=32, max_seq_len=12, pos_encoding="ape")
    model = randn_weights(Transformer(cfg).eval())
    idx = tokens(2, 10)
    with torch.no_grad():
        batched = model(idx, pos_offset=torch.tensor([0, 8]))  # row 1: real tokens 0..3 at 8..11, padding past 11
        alone = model(idx[1:, :4], pos_offset=8)
    torch.testing.assert_close(batched[1, :4], alone[0])
    with pytest.raises(ValueError):
        model(idx, pos_offset=torch.tensor([0, 12]))  # an offset itself past the table
    with pytest.raises(ValueError):
        model(idx, pos_offset=4)  # an int offset is checked over the whole sequence (evaluation)


def test_ape_depends_on_offset():
    model = tiny("ape")
    idx = tokens(2, 16)
    with torch.no_grad():
        ref = model(idx)
        shifted = model(idx, pos_offset=3)
    assert (shifted - ref).abs().max() > 1e-3


@pytest.mark.parametrize("enc", ["rope", "ape"])
def test_positions_beyond_max_seq_len_raise(enc):
    model = tiny(enc)  # max_seq_len=48
    model(tokens(2, 48))  # exactly fills the range
    with pytest.raises(ValueError, match="max_seq_len=48"):
        model(tokens(2, 49))
    with pytest.raises(ValueError, match="max_seq_len=48"):
        model(tokens(2, 10), pos_offset=torch.tensor([0, 48]))  # per-example offsets: the offset itself checked
    with pytest.raises(ValueError, match="max_seq_len=48"):
        model(tokens(2, 10), pos_offset=-1)


def test_nope_caps_sequence_length_but_not_offsets():
    model = tiny("nope")
    model(tokens(1, 10), pos_offset=10_000)
    with pytest.raises(ValueError, match="max_seq_len=48"):
        model(tokens(1, 49))


# -- KV cache and generation -------------------------------------------------------------------------


def naive_greedy(model: Transformer, idx: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        nxt = model(idx)[:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


@pytest.mark.parametrize("enc", ENCODINGS)
def test_generate_matches_naive_greedy(enc):
    model = randn_weights(tiny(enc), std=0.15)
    for T0, seed in [(1, 0), (5, 1), (12, 2)]:
        prompt = tokens(3, T0, seed=seed)
        with torch.no_grad():
            expected = naive_greedy(model, prompt, 20)
        got = model.generate(prompt, 20)
        assert torch.equal(got, expected), (T0, got, expected)


@pytest.mark.parametrize("enc", ENCODINGS)
def test_chunked_prefill_matches_full_forward(enc):
    # several multi-token appends exercise the offset causal mask on both paths
    model = randn_weights(tiny(enc), std=0.15)
    idx = tokens(2, 17)
    with torch.no_grad():
        full = model(idx)
        for impl in ("sdpa", "explicit"):
            cache = model.make_kv_cache(2)
            parts = [model(idx[:, a:b], attn_impl=impl, kv_cache=cache) for a, b in [(0, 6), (6, 7), (7, 13), (13, 17)]]
            assert cache.length == 17
            torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_generate_stops_at_eos_and_pads():
    model = randn_weights(tiny("rope"), std=0.15)
    prompt = tokens(3, 4)
    free = model.generate(prompt, 12)
    # pick as eos the token row 0 emits first, so row 0 stops immediately and others may run on
    eos = int(free[0, 4])
    out = model.generate(prompt, 12, eos_id=eos)
    assert out.shape[0] == 3 and 5 <= out.shape[1] <= 16
    assert torch.equal(out[:, :4], prompt)
    for row, free_row in zip(out, free):
        gen = row[4:].tolist()
        if eos in gen:
            k = gen.index(eos)
            assert gen[:k] == free_row[4 : 4 + k].tolist()  # same tokens up to eos ...
            assert all(t == eos for t in gen[k:])  # ... then eos padding
        else:
            assert gen == free_row[4 : 4 + len(gen)].tolist()
    if out.shape[1] < 16:  # stopped early: every row has finished
        assert (out[:, 4:] == eos).any(dim=1).all()
    assert model.generate(prompt, 0).shape == (3, 4)


def test_generate_rejects_running_past_max_seq_len():
    model = tiny("rope")
    with pytest.raises(ValueError, match="max_seq_len=48"):
        model.generate(tokens(1, 40), 20)


def test_kv_cache_overflow_raises():
    model = tiny("nope")
    cache = model.make_kv_cache(1, max_len=8)
    model(tokens(1, 6), kv_cache=cache)
    with pytest.raises(ValueError, match="max_len=8"):
        model(tokens(1, 3), kv_cache=cache)


@pytest.mark.parametrize("enc", ENCODINGS)
def test_kv_cache_under_bf16_autocast(enc):
    model = randn_weights(tiny(enc), std=0.1)
    idx = tokens(2, 14)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = model(idx)[:, -1]
        cache = model.make_kv_cache(2)
        model(idx[:, :10], kv_cache=cache)
        for t in range(10, 14):
            last = model(idx[:, t : t + 1], kv_cache=cache)[:, -1]
        gen = model.generate(idx[:, :5], 6)
    assert cache.k[0].dtype == torch.bfloat16  # cache follows k's dtype
    assert gen.shape == (2, 11)
    torch.testing.assert_close(last.float(), full.float(), atol=5e-2, rtol=5e-2)


# -- hooks -------------------------------------------------------------------------------------------


def test_run_with_cache_patterns_are_causal_distributions():
    model = randn_weights(tiny("rope"), std=0.15)
    idx = tokens(3, 12)
    logits, cache = model.run_with_cache(idx)
    torch.testing.assert_close(logits, model(idx), atol=1e-5, rtol=1e-5)
    assert len(cache) == 2 * model.cfg.n_layer
    for i in range(model.cfg.n_layer):
        pattern = cache[f"blocks.{i}.attn.pattern"]
        z = cache[f"blocks.{i}.attn.head_out"]
        assert pattern.shape == (3, 4, 12, 12) and z.shape == (3, 4, 12, 8)
        assert not pattern.requires_grad and not z.requires_grad
        torch.testing.assert_close(pattern.sum(-1), torch.ones(3, 4, 12))
        assert torch.equal(pattern.triu(diagonal=1), torch.zeros_like(pattern))
    assert not any(
        block.attn.hook_pattern.has_hooks() or block.attn.hook_head_out.has_hooks() for block in model.blocks
    )


def test_replace_heads_with_own_activation_is_a_no_op():
    model = randn_weights(tiny("rope"), std=0.15)
    idx = tokens(3, 12)
    logits, cache = model.run_with_cache(idx)
    own = {(l, h): cache[f"blocks.{l}.attn.head_out"][:, h] for l in range(2) for h in (0, 2)}
    with torch.no_grad(), model.replace_heads(own):
        torch.testing.assert_close(model(idx, attn_impl="explicit"), logits, atol=1e-6, rtol=1e-6)


def test_zeroing_a_head_equals_zeroing_its_o_proj_columns():
    model = randn_weights(tiny("rope"), std=0.15)
    idx = tokens(3, 12)
    layer, head, hs = 1, 2, model.cfg.head_dim
    with torch.no_grad():
        clean = model(idx, attn_impl="explicit")
        with model.replace_heads({(layer, head): torch.zeros(12, hs)}):
            ablated = model(idx, attn_impl="explicit")
            with pytest.raises(RuntimeError, match="explicit"):  # sdpa would silently skip the hook
                model(idx, attn_impl="sdpa")
            torch.testing.assert_close(model(idx), ablated)  # "auto" is explicit on CPU: hooks fire
        assert not any(b.attn.hook_head_out.has_hooks() for b in model.blocks)  # removed on exit
        torch.testing.assert_close(model(idx, attn_impl="explicit"), clean)
        assert (ablated - clean).abs().max() > 1e-3

        w = model.blocks[layer].attn.o_proj.weight
        saved = w.clone()
        w[:, head * hs : (head + 1) * hs] = 0
        manual = model(idx)
        w.copy_(saved)
    torch.testing.assert_close(ablated, manual, atol=1e-5, rtol=1e-5)


def test_mean_ablation_broadcasts_batch_mean():
    model = randn_weights(tiny("ape"), std=0.15)
    idx = tokens(4, 10)
    _, cache = model.run_with_cache(idx)
    mean = cache["blocks.0.attn.head_out"][:, 1].mean(0)  # (T, hs)
    with torch.no_grad(), model.replace_heads({(0, 1): mean}):
        _, ablated = model.run_with_cache(idx)
    z = ablated["blocks.0.attn.head_out"]
    torch.testing.assert_close(z[:, 1], mean.expand(4, 10, -1))
    torch.testing.assert_close(z[:, 0], cache["blocks.0.attn.head_out"][:, 0])
    with pytest.raises(ValueError, match="out of range"), model.replace_heads({(2, 0): mean}):
        pass


# -- parameters --------------------------------------------------------------------------------------


def test_weight_tying_shares_the_tensor():
    tied = tiny("rope", tie_embeddings=True)
    assert tied.lm_head.weight is tied.tok_emb.weight
    untied = tiny("rope")
    assert untied.lm_head.weight is not untied.tok_emb.weight
    # the tied matrix is counted once; as the lm_head matmul it stays in the non-embedding count,
    # so tied and untied models have the same non-embedding size
    assert tied.num_params(False) == untied.num_params(False) - VOCAB * 32
    assert tied.num_params(True) == untied.num_params(True) == tied.num_params(False)


def test_num_params_and_flops():
    model = tiny("ape")
    d, L, V, ff, S = 32, 2, VOCAB, 64, 48
    per_block = 4 * d * d + 3 * d * ff + 2 * d
    total = V * d + S * d + L * per_block + d + V * d
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - V * d - S * d
    assert model.flops_per_token(40) == 6 * model.num_params() + 12 * L * d * 40


@pytest.mark.parametrize("init", ["fan_in", "gpt2"])
def test_init_scales_residual_projections(init):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=50, n_layer=8, d_model=128, d_mlp=512, init=init))
    base_q, base_w2, base_emb = (0.02, 0.02, 0.02) if init == "gpt2" else (128**-0.5, 512**-0.5, 1.0)
    assert abs(model.blocks[0].attn.o_proj.weight.std().item() - base_q / math.sqrt(16)) < 5e-4
    assert abs(model.blocks[0].attn.q_proj.weight.std().item() - base_q) < 2e-3
    assert abs(model.blocks[3].mlp.w2.weight.std().item() - base_w2 / math.sqrt(16)) < 5e-4
    assert abs(model.tok_emb.weight.std().item() - base_emb) < 0.05 * base_emb
    assert all(not hasattr(m, "bias") or m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))
