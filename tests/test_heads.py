"""Tests for lengen.heads and its figures (lengen.plots.heads): hand-built models where two tasks provably
share a head (or use different heads), exactness of mean-ablation, the statistics on synthetic data, the
config, and the driver end to end on a fake run. Tiny models, one CPU thread."""

from __future__ import annotations

import doctest
import json

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lengen import heads, paths
from lengen.config import HEAD_CATEGORIES, HeadsConfig, _build, load_config
from lengen.data import IGNORE
from lengen.model import ModelConfig, Transformer
from lengen.plots import heads as heads_plots
from lengen.plots import save

torch.set_num_threads(1)


@pytest.mark.parametrize("module", [heads.probe, heads.statistics, heads.report])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


# -- a hand-built model ------------------------------------------------------------------------------
#
# Vocabulary: 0 pad, 1 bos, 2 marker A, 3 marker B, 4 "=", 5..8 content c0..c3.
# Sequence <bos> <M> c = c c (teacher-forced input), labels c at "=" and after: the answer is the content
# token, so it must be copied by attention. Residual dims: 0 constant, 1 isA, 2 isB, 3 isBos, 4 isEq,
# 5..8 content one-hot, 9..12 output (written by o_proj, read by lm_head). MLP off.
# Both heads have a constant query; keys score content +5, and each marker by `marker_keys[h]`: a head
# whose marker key is high attends to the marker (value 0: it contributes nothing), one whose marker key
# is low attends to the content and copies it. So which head a task uses is set by the marker's keys.

VOCAB, BOS, A, B, EQ, C0 = 9, 1, 2, 3, 4, 5
HIGH, LOW = 10.0, -5.0


def hand_built(marker_keys: dict[int, tuple[float, float]]) -> Transformer:
    """marker_keys[h] = (key weight of marker A, key weight of marker B) for head h."""
    cfg = ModelConfig(vocab_size=VOCAB, n_layer=1, n_head=2, d_model=16, d_mlp=4, max_seq_len=16, pos_encoding="nope")
    model = Transformer(cfg).eval()
    hs = cfg.head_dim
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.zero_()
        emb = model.tok_emb.weight
        emb[:, 0] = 1.0  # constant: every token has norm sqrt(2), so RMSNorm is the same scale everywhere
        for tok, dim in ((A, 1), (B, 2), (BOS, 3), (EQ, 4)):
            emb[tok, dim] = 1.0
        for j in range(4):
            emb[C0 + j, 5 + j] = 1.0
        attn = model.blocks[0].attn
        for h, (key_a, key_b) in marker_keys.items():
            attn.q_proj.weight[h * hs, 0] = 1.0
            attn.k_proj.weight[h * hs, 1], attn.k_proj.weight[h * hs, 2] = key_a, key_b
            for j in range(4):
                attn.k_proj.weight[h * hs, 5 + j] = 5.0
                attn.v_proj.weight[h * hs + j, 5 + j] = 1.0  # value: the content one-hot
                attn.o_proj.weight[9 + j, h * hs + j] = 1.0  # written to the output dims
                model.lm_head.weight[C0 + j, 9 + j] = 4.0
    return model


def hand_batch(marker: int, n: int = 8) -> heads.TaskBatch:
    """n examples; every other one has content c0, the rest cycle through c1..c3. A head's batch mean
    then favours c0 for every example: with the copying head mean-ablated exactly half are right."""
    ids, labels = [], []
    for i in range(n):
        c = C0 if i % 2 == 0 else C0 + 1 + (i // 2) % 3
        ids.append([BOS, marker, c, EQ, c, c])
        labels.append([IGNORE, IGNORE, IGNORE, c, c, c])
    return heads.TaskBatch(torch.tensor(ids), torch.tensor(labels), torch.full((n,), 6))


SHARED = {0: (LOW, LOW), 1: (HIGH, HIGH)}  # both tasks copy through head 0
SEPARATE = {0: (LOW, HIGH), 1: (HIGH, LOW)}  # task A copies through head 0, task B through head 1


def test_hand_built_model_solves_both_tasks():
    for keys in (SHARED, SEPARATE):
        model = hand_built(keys)
        for marker in (A, B):
            p = heads.probe_task(model, hand_batch(marker))
            assert p.exact_match == 1.0 and p.loglik > -0.2


def test_shared_head_metrics_say_shared():
    model = hand_built(SHARED)
    pa, pb = heads.probe_task(model, hand_batch(A)), heads.probe_task(model, hand_batch(B))
    # ablating head 0 leaves only the batch-mean content (c0 for all): half right; head 1 does nothing
    np.testing.assert_allclose(pa.em_drop, [[0.5, 0.0]], atol=1e-6)
    np.testing.assert_allclose(pb.em_drop, [[0.5, 0.0]], atol=1e-6)
    assert pa.ll_drop[0, 0] > 0.5 and abs(pa.ll_drop[0, 1]) < 1e-4
    np.testing.assert_allclose(heads.attention_difference(pa.pattern, pb.pattern), [[0.0, 0.0]], atol=1e-5)
    for da, db in ((pa.em_drop, pb.em_drop), (pa.ll_drop, pb.ll_drop)):
        m = heads.compare_maps(da, db, k=1)
        assert m["mad"] < 1e-4 and m["topk"] == 1.0


def test_separate_heads_metrics_say_separate():
    model = hand_built(SEPARATE)
    pa, pb = heads.probe_task(model, hand_batch(A)), heads.probe_task(model, hand_batch(B))
    np.testing.assert_allclose(pa.em_drop, [[0.5, 0.0]], atol=1e-6)
    np.testing.assert_allclose(pb.em_drop, [[0.0, 0.5]], atol=1e-6)
    assert pa.ll_drop[0, 0] > 0.5 and pb.ll_drop[0, 1] > 0.5
    assert abs(pa.ll_drop[0, 1]) < 1e-4 and abs(pb.ll_drop[0, 0]) < 1e-4
    # each head attends to the content in one task and to the marker in the other: every query row from
    # position 1 on moves all its mass (|diff| = 2), row 0 (bos only) cannot: (0 + 5 * 2) / 6 rows
    np.testing.assert_allclose(heads.attention_difference(pa.pattern, pb.pattern), [[10 / 6, 10 / 6]], atol=1e-4)
    m = heads.compare_maps(pa.em_drop, pb.em_drop, k=1)
    assert m["mad"] == pytest.approx(0.5) and m["topk"] == 0.0


class OnlyTheInterface:
    """A model seen only through HookedModel (like the pretrained wrapper): no parameters(), no forward."""

    def __init__(self, model: Transformer):
        self._model, self.cfg = model, model.cfg

    def run_with_cache(self, idx):
        return self._model.run_with_cache(idx)

    def replace_heads(self, replacements):
        return self._model.replace_heads(replacements)


def test_metrics_need_only_the_interface():
    model = hand_built(SEPARATE)
    direct, wrapped = heads.probe_task(model, hand_batch(B)), heads.probe_task(OnlyTheInterface(model), hand_batch(B))
    np.testing.assert_array_equal(direct.ll_drop, wrapped.ll_drop)
    torch.testing.assert_close(direct.pattern, wrapped.pattern)


def test_attention_difference_uses_the_common_window():
    a = torch.rand(1, 2, 7, 7).softmax(-1).tril()
    b = a[..., :5, :5].clone()  # the shorter task: same pattern over its 5 positions
    np.testing.assert_allclose(heads.attention_difference(a, b), np.zeros((1, 2)), atol=1e-7)
    c = b.clone()
    c[0, 1, 4] = 0.0
    c[0, 1, 4, 0] = 1.0  # head 1's last row moves to bos
    d = heads.attention_difference(a, c)
    assert d[0, 0] == pytest.approx(0.0, abs=1e-7)
    assert d[0, 1] == pytest.approx(float((a[0, 1, 4, :5] - c[0, 1, 4]).abs().sum()) / 5, rel=1e-5)


# -- mean ablation is exact --------------------------------------------------------------------------


def random_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=23, n_layer=2, n_head=4, d_model=32, d_mlp=64, max_seq_len=32)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return model


def test_head_means_average_only_unpadded_positions():
    z = torch.arange(3 * 2 * 4 * 1, dtype=torch.float).reshape(3, 2, 4, 1)  # (B, nh, T, hs)
    n_tokens = torch.tensor([4, 2, 3])
    (means,) = heads.head_means({"blocks.0.attn.head_out": z}, n_tokens, n_layer=1)
    for t, rows in enumerate([[0, 1, 2], [0, 1, 2], [0, 2], [0]]):
        torch.testing.assert_close(means[:, t], z[rows][:, :, t].mean(0))


def test_ablating_a_head_changes_only_that_heads_contribution():
    model = random_model()
    idx = torch.randint(0, 23, (5, 9), generator=torch.Generator().manual_seed(0))
    n_tokens = torch.tensor([9, 7, 9, 5, 8])
    layer, head, hs = 0, 1, model.cfg.head_dim
    attn_out = {}
    hook = model.blocks[layer].attn.register_forward_hook(lambda m, i, o: attn_out.__setitem__("x", o.detach()))
    try:
        _, clean = model.run_with_cache(idx)
        clean_out = attn_out["x"]
        means = heads.head_means(clean, n_tokens, model.cfg.n_layer)
        with torch.no_grad(), model.replace_heads({(layer, head): means[layer][head]}):
            _, ablated = model.run_with_cache(idx)
        ablated_out = attn_out["x"]
    finally:
        hook.remove()
    z, z_abl = clean[f"blocks.{layer}.attn.head_out"], ablated[f"blocks.{layer}.attn.head_out"]
    others = [h for h in range(model.cfg.n_head) if h != head]
    torch.testing.assert_close(z_abl[:, others], z[:, others])  # the layer's other heads are untouched
    torch.testing.assert_close(z_abl[:, head], means[layer][head].expand(5, -1, -1))
    # the residual-stream delta of the attention layer is o_proj's slice for that head applied to the change
    w_h = model.blocks[layer].attn.o_proj.weight[:, head * hs : (head + 1) * hs]
    expected = (z_abl[:, head] - z[:, head]) @ w_h.T
    torch.testing.assert_close(ablated_out - clean_out, expected, atol=1e-5, rtol=1e-4)


def test_probe_matches_manual_ablation_of_one_head():
    model = random_model(seed=3)
    batch = heads.TaskBatch(
        torch.randint(0, 23, (6, 8), generator=torch.Generator().manual_seed(1)),
        torch.full((6, 8), IGNORE),
        torch.full((6,), 8),
    )
    batch.labels[:, 5:] = batch.input_ids[:, 5:] % 7
    p = heads.probe_task(model, batch)
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch.input_ids)
        mean = cache["blocks.1.attn.head_out"][:, 2].mean(0)
        with model.replace_heads({(1, 2): mean}):
            ablated = model(batch.input_ids, attn_impl="explicit")
    _, ll = heads.answer_scores(logits, batch.labels)
    _, ll_abl = heads.answer_scores(ablated, batch.labels)
    assert p.ll_drop[1, 2] == pytest.approx(float(ll.mean() - ll_abl.mean()), abs=1e-5)
    assert p.pattern.shape == (2, 4, 8, 8)
    torch.testing.assert_close(p.pattern.sum(-1), torch.ones(2, 4, 8))


# -- statistics --------------------------------------------------------------------------------------


def test_rankdata_averages_ties():
    np.testing.assert_array_equal(heads.rankdata(np.array([10, 30, 20, 20])), [1, 4, 2.5, 2.5])
    np.testing.assert_array_equal(heads.rankdata(np.array([[3, 1, 2], [1, 1, 2]])), [[3, 1, 2], [1.5, 1.5, 3]])


def test_bootstrap_spearman_finds_a_known_monotone_relation():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 40)
    y = np.exp(3 * x) + rng.normal(0, 0.3, 40)  # monotone, nonlinear, noisy
    rho, lo, hi = heads.bootstrap_spearman(x, y, 1000, np.random.default_rng(1))
    assert rho > 0.9 and 0.8 < lo <= rho <= hi <= 1.0
    assert heads.verdict(rho, lo, hi, +1, 40, 8) == "tracks"
    assert heads.verdict(-rho, -hi, -lo, -1, 40, 8) == "tracks"  # a similarity that falls with the gap
    rho, lo, hi = heads.bootstrap_spearman(x, rng.uniform(0, 1, 40), 1000, np.random.default_rng(1))
    assert lo < 0 < hi and heads.verdict(rho, lo, hi, +1, 40, 8) == "no relation"
    assert heads.verdict(rho, lo, hi, +1, 4, 8) == "too few points (4 < 8)"
    assert np.isnan(heads.bootstrap_spearman(x, np.ones(40), 100, rng)[0])


def test_agreement_with_the_claim():
    assert heads.agrees("tracks", "tracks") == "yes"
    assert heads.agrees("tracks", "no relation") == "no"
    assert heads.agrees("does not track", "no relation") == "yes"
    assert heads.agrees("does not track", "opposite") == "no"
    assert heads.agrees("not stated", "tracks") == "—"
    assert heads.agrees("tracks", "too few points (3 < 8)") == "—"


# -- config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_profiles_have_a_valid_heads_section(profile):
    cfg = load_config(paths.PROFILES_DIR / f"{profile}.yaml")
    hc = heads.heads_config(cfg)
    assert set(hc.groups) <= set(heads.CLAIMS)


def test_claims_cover_the_configs_categories():
    assert set(heads.CLAIMS) == set(HEAD_CATEGORIES)


def test_heads_config_is_strict(smoke_cfg):
    import dataclasses

    raw = dict(smoke_cfg.extra["heads"])
    with pytest.raises(ValueError, match=r"heads: unknown key\(s\) \['n_exampels'\]"):
        _build(HeadsConfig, {**raw, "n_exampels": 3}, "heads")
    with pytest.raises(ValueError, match="unknown category"):
        _build(HeadsConfig, {**raw, "groups": {"music": ["x"]}}, "heads")
    with pytest.raises(ValueError, match="length_fractions"):
        _build(HeadsConfig, {**raw, "length_fractions": [0.0]}, "heads")
    with pytest.raises(ValueError, match="in both"):
        _build(HeadsConfig, {**raw, "groups": {"arithmetic": ["g"], "control": ["g"]}}, "heads")
    no_aux = _build(HeadsConfig, {**raw, "groups": {"arithmetic": ["add_alone"]}}, "heads")
    with pytest.raises(ValueError, match="no auxiliary"):
        dataclasses.replace(smoke_cfg, heads=no_aux)
    with pytest.raises(ValueError, match="heads: section missing"):
        heads.heads_config(dataclasses.replace(smoke_cfg, heads=None))


def test_pair_lengths_are_in_distribution_for_both(smoke_cfg):
    g = smoke_cfg.groups["arith_carry"]  # main 3, aux 6
    assert heads.pair_lengths(g, "no_carry", [0.5, 1.0]) == [2, 3]
    assert heads.pair_lengths(g, "no_carry", [0.1]) == [1]  # never below the tasks' minimum length


def test_checkpoint_selection_keeps_the_last(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for s in (100, 200, 300, 400, 500):
        (tmp_path / "checkpoints" / f"step={s:06d}.ckpt").touch()
    (tmp_path / "checkpoints" / "last.ckpt").touch()
    assert [s for s, _ in heads.checkpoint_paths(tmp_path, 3)] == [100, 300, 500]
    assert [s for s, _ in heads.checkpoint_paths(tmp_path, 1)] == [500]
    assert len(heads.checkpoint_paths(tmp_path, 9)) == 5


# -- the driver end to end on fake runs -----------------------------------------------------------


def fake_run(run, runs_dir, records_dir, steps):
    """Untrained checkpoints (saved like the training callback's weights-only ones) and records whose
    main-task accuracy falls with the step, so the gap changes across checkpoints."""
    from lengen.system import system_from_run
    from lengen.train import run_spec

    ckpt_dir = run_spec(run, runs_dir).run_dir / "checkpoints"  # where training keeps them
    ckpt_dir.mkdir(parents=True)
    rows = []
    for i, step in enumerate(steps):
        torch.manual_seed(run.seed * 100 + i)
        system = system_from_run(run)
        torch.save(
            {
                "state_dict": system.state_dict(),
                "hyper_parameters": dict(system.hparams),
                "pytorch-lightning_version": L.__version__,
            },
            ckpt_dir / f"step={step:06d}.ckpt",
        )
        for task in run.group.tasks:
            for length in run.group.eval_lengths(task, 1):
                acc = 1.0 if run.group.role(task) == "aux" else max(0.0, 1.0 - 0.2 * i * length / 8)
                rows.append(
                    dict(
                        run_id=run.run_id,
                        group=run.group_name,
                        task=task,
                        role=run.group.role(task),
                        length=length,
                        in_distribution=True,
                        n=8,
                        exact_match=acc,
                        token_accuracy=acc,
                        step=step,
                        seed=run.seed,
                        pos_encoding=run.pos_encoding,
                        final=False,
                    )
                )
    records_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(records_dir / f"{run.run_id}.csv", index=False)


def test_analysis_end_to_end_on_fake_runs(smoke_cfg, tmp_path):
    import dataclasses

    exp = dataclasses.replace(smoke_cfg.experiment, seeds=[0, 1])
    cfg = dataclasses.replace(smoke_cfg, experiment=exp)
    hc = dataclasses.replace(heads.heads_config(cfg), n_examples=4, n_bootstrap=50, n_random_sets=10, min_points=3)
    runs_dir, records_dir = tmp_path / "runs", tmp_path / "records"
    steps = [20, 40, 60]
    for run in cfg.runs():
        if run.group_name == "arith_carry":
            fake_run(run, runs_dir, records_dir, steps)
    rec = heads.analyse(
        cfg, hc, runs_dir=runs_dir, records_dir=records_dir, threads=1, progress=False, store_dir=tmp_path / "store"
    )

    n_heads = cfg.model.n_layer * cfg.model.n_head
    n_points = 2 * min(len(steps), hc.max_checkpoints)
    assert len(rec.checkpoints) == n_points and rec.checkpoints.gap.nunique() > 1
    lengths = heads.pair_lengths(cfg.groups["arith_carry"], "no_carry", hc.length_fractions)
    assert len(rec.ablation) == n_points * 3 * len(lengths) * n_heads  # 3 tasks
    assert len(rec.attention) == n_points * 2 * len(lengths) * n_heads  # 2 auxiliaries
    assert rec.ablation.loglik.lt(0).all() and rec.attention.attn_diff.between(0, 2).all()
    status = dict(zip(rec.coverage.group, rec.coverage.status))
    assert status["arith_carry"] == "analysed" and status["caprev"].startswith("not run")

    t = heads.tables(rec, hc)
    assert len(t["pairs"]) == 2 * n_points and len(t["points"]) == n_points
    corr = t["correlations"]
    arith = corr[corr.category == "arithmetic"].set_index("metric")
    assert (arith.n_points <= n_points).all() and arith.loc["ll_mad", "n_points"] == n_points
    assert (corr[corr.category == "strings"].found == "not run").all()
    # the random-head control: the top-k restriction recomputed by hand for one measure
    ctrl = t["random_heads"].set_index("measure")
    assert ctrl.loc["ll_diff", "k"] == min(hc.top_k, n_heads)
    manual = []
    for p in t["points"].itertuples():
        abl = rec.ablation[(rec.ablation.run_id == p.run_id) & (rec.ablation.step == p.step)]
        grid = {task: heads.head_grid(df, "ll_drop").ravel() for task, df in abl.groupby("task")}
        top = sorted(heads.top_heads(grid["reverse_add"], hc.top_k))
        diff = np.mean([np.abs(grid["reverse_add"] - grid[a]) for a in ("no_carry", "carry_only")], 0)
        manual.append(diff[top].mean())
    gaps = rec.checkpoints.set_index(["run_id", "step"]).gap
    expected = heads.spearman(manual, [gaps.loc[(p.run_id, p.step)] for p in t["points"].itertuples()])
    assert ctrl.loc["ll_diff", "rho_topk"] == pytest.approx(expected, nan_ok=True)

    out = tmp_path / "heads"
    heads.write_records(rec, t, out_dir=out)
    back = heads.read_records(out)
    pd.testing.assert_frame_equal(back.ablation, rec.ablation, check_dtype=False)
    summary = json.loads(heads.write_summary(rec, corr, t["random_heads"], cfg.profile, out_dir=out).read_text())
    assert summary["checkpoints_analysed"] == n_points and len(summary["correlations"]) == len(corr)
    save(heads_plots.plot_ablation_maps(back, "arith_carry-rope-s0"), "maps", out / "figures")
    save(heads_plots.plot_metric_vs_gap(t["points"], corr), "scatter", out / "figures")
    assert len(list((out / "figures").glob("*.png"))) == 2
    text = heads.describe(corr, t["random_heads"], rec, t["points"])
    assert "arithmetic" in text and "not run" in text


def test_a_group_trained_in_the_ablation_stage_is_analysed(tmp_path):
    raw = yaml.safe_load((paths.PROFILES_DIR / "cpu.yaml").read_text())
    raw["ablation"]["groups"].append("arith_control")  # the control, trained by the `ablation` stage at one seed
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "params.yaml")
    cov = heads.coverage(cfg, heads.heads_config(cfg)).set_index("group")
    assert cov.loc["arith_control", "status"] == "analysed"
    assert cov.loc["arith_control", "runs"] == len(cfg.ablation.seeds)
    assert cov.loc["caprev", "runs"] == len(cfg.experiment.seeds)
    assert cov.loc["arith_carry", "status"].startswith("not run")  # named in heads.groups, trained by neither
    # an ablation's other position encodings are never pooled with the experiment's
    paper = load_config(paths.PROFILES_DIR / "paper.yaml")
    assert {r.pos_encoding for r in heads.heads_runs(paper, "arith_carry")} == set(paper.experiment.pos_encodings)
