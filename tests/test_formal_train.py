"""The formal stage: config parsing, the regularizer, the objectives, the selection rule, resumption,
and the predicted-vs-observed table (tiny settings)."""

import copy
import json

import matplotlib
import pandas as pd
import pytest
import torch

from lengen import paths
from lengen.config import _build, load_config
from lengen.engine import Outcome
from lengen.formal import programs, protocol, report, train
from lengen.formal.config import Arch, FormalConfig, load_formal
from lengen.model import ModelConfig, Transformer
from lengen.plots import save
from lengen.plots.formal import plot_predicted_vs_observed

matplotlib.use("Agg")

TINY = dict(
    algorithmic=["bin_majority"],
    languages=["(aa)*"],
    pos_encodings=["ape", "nope"],
    bins=[[1, 6], [7, 10], [11, 14]],
    n_eval=16,
    n_eval_during=8,
    data_seed=1,
    seeds=2,
    vocab_size=14,
    grid=dict(n_layer=[1], n_head=[2], d_model=[16], lr=[0.003, 0.01]),
    train=dict(steps=6, batch_size=8, eval_every=3, threads=1),
)


def tiny(**changes) -> FormalConfig:
    raw = copy.deepcopy(TINY)
    raw.update(changes)
    return _build(FormalConfig, raw, "formal")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "study", "paper"])
def test_profiles_parse(profile):
    fc = load_formal(load_config(paths.PROFILES_DIR / f"{profile}.yaml"))
    assert fc.tasks and fc.grid.archs()


def test_study_runs_every_task_under_both_encodings_and_cpu_the_algorithmic_slice():
    """The study (and paper) profiles: the paper's 8 algorithmic tasks and 17 languages; the 2-hour cpu profile 2
    algorithmic tasks (one of each prediction), under APE and NoPE, the paper's bins."""
    for profile, algorithmic, languages in (("study", 8, 17), ("paper", 8, 17), ("cpu", 2, 0)):
        fc = load_formal(load_config(paths.PROFILES_DIR / f"{profile}.yaml"))
        assert (len(fc.algorithmic), len(fc.languages)) == (algorithmic, languages), profile
        assert fc.pos_encodings == ["ape", "nope"] and fc.bins == [[1, 50], [51, 100], [101, 150]]
        predictions = {programs.program(t, pe) is not None for t in fc.tasks for pe in fc.pos_encodings}
        assert predictions == {True, False}, profile


def test_every_cpu_formal_run_is_a_study_run_with_the_same_fingerprint(tmp_path):
    """The cpu slice trains the study's own formal runs (its grid runs at the first point, seed 0): a cpu
    reproduction re-checks study runs, and the study reads the cpu runs back."""
    cpu, study = (load_formal(load_config(paths.PROFILES_DIR / f"{p}.yaml")) for p in ("cpu", "study"))
    assert set(cpu.tasks) <= set(study.tasks) and set(cpu.pos_encodings) <= set(study.pos_encodings)
    assert set(cpu.grid.archs()) <= set(study.grid.archs()) and cpu.seeds <= study.seeds
    for task in cpu.tasks:
        for pe in cpu.pos_encodings:
            for arch in cpu.grid.archs():
                mine, theirs = (train.run_spec(fc, task, pe, arch, 0, tmp_path) for fc in (cpu, study))
                assert (mine.run_id, mine.fingerprint) == (theirs.run_id, theirs.fingerprint), (task, pe, arch)


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(languages=["Tomita-9"]), "unknown language"),
        (dict(bins=[[1, 10], [5, 20]]), "disjoint"),
        (dict(algorithmic=["sort"], vocab_size=10), "vocab_size"),
        (dict(train=dict(steps=6, batch_size=8, eval_every=3, threads=1, colour="red")), "unknown key"),
        (dict(grid=dict(n_layer=[1], n_head=[3], d_model=[16], lr=[0.1])), "does not divide"),
    ],
)
def test_bad_formal_sections_fail_with_the_key(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny(**bad)


def test_grid_is_ordered_smallest_first():
    fc = tiny(grid=dict(n_layer=[2, 1], n_head=[2], d_model=[32, 16], lr=[0.001, 0.01]))
    ids = [a.id for a in fc.grid.archs()]
    assert ids[0] == "1l2h16d-lr0.01" and ids[-1] == "2l2h32d-lr0.001"


def test_regularizer_matches_its_definition():
    torch.manual_seed(0)
    m = Transformer(
        ModelConfig(vocab_size=5, n_layer=2, n_head=2, d_model=8, d_mlp=16, max_seq_len=6, pos_encoding="ape")
    )
    P, hs, want = m.pos_emb.weight, 4, 0.0
    for block in m.blocks:
        for h in range(2):
            wq = block.attn.q_proj.weight[h * hs : (h + 1) * hs]
            wk = block.attn.k_proj.weight[h * hs : (h + 1) * hs]
            s = (P @ wq.T) @ (P @ wk.T).T
            want += sum(s[i, j] ** 2 for i in range(6) for j in range(i + 1)) / 6
    assert torch.allclose(train.position_regularizer(m), want)
    nope = Transformer(
        ModelConfig(vocab_size=5, n_layer=1, n_head=2, d_model=8, d_mlp=16, max_seq_len=6, pos_encoding="nope")
    )
    assert train.position_regularizer(nope).item() == 0.0


def test_a_tiny_run_trains_scores_every_bin_and_logs(tmp_path):
    fc = tiny(train=dict(steps=4, batch_size=8, eval_every=2, threads=1, reg_coef=1e-3, early_stop=False))
    r = train.train_one(fc, "(aa)*", "ape", fc.grid.archs()[0], 0, runs_dir=tmp_path)
    assert r["steps"] == 4 and [b["bin"] for b in r["bins"]] == ["1-6", "7-10", "11-14"]
    assert all(0 <= b["accuracy"] <= 1 and b["n"] == 16 for b in r["bins"])
    assert [step for step, _ in r["history"]] == [2]  # the check before the last step; then every bin
    run_dir = train.run_spec(fc, "(aa)*", "ape", fc.grid.archs()[0], 0, tmp_path).run_dir
    logged = pd.read_csv(run_dir / "logs/metrics.csv")
    assert {"train/loss", "train/reg", "val/acc"} <= set(logged.columns)


def test_every_run_starts_from_an_empty_compile_cache(tmp_path):
    """A worker trains run after run, and torch.compile's cache would carry over: after ``recompile_limit``
    graphs dynamo trains the rest eager, another float path (benchmarks/compile_history.py). Whatever the
    process compiled before, a run starts without it, as in a fresh process (the engine empties it)."""
    from torch._dynamo.utils import counters

    def compiles(fn) -> int:  # how many frames dynamo compiles for this call
        before = counters["frames"]["ok"]
        fn(torch.ones(3))
        return counters["frames"]["ok"] - before

    double = torch.compile(lambda x: 2 * x, backend="eager")  # compiled earlier in this process
    assert compiles(double) == 1 and compiles(double) == 0  # cached
    fc = tiny(train=dict(steps=2, batch_size=8, eval_every=2, threads=1))
    train.train_one(fc, "(aa)*", "nope", fc.grid.archs()[0], 0, runs_dir=tmp_path)
    assert compiles(double) == 1  # the run emptied the cache


def test_a_perfect_model_scores_one():
    """The scorer: a model that outputs the right logits gets 1.0, a constant one does not."""
    from lengen.formal.data import collate, encode, eval_sets, get_task

    task = get_task("bin_majority")
    tok = task.tokenizer()
    items = [encode(task, tok, x) for x in eval_sets(task, [[1, 9]], 20, 0)["1-9"]]
    batch = collate(items, tok.pad_id)

    class Oracle(torch.nn.Module):
        def forward(self, idx):
            out = torch.zeros(*idx.shape, len(tok))
            y = batch["labels"].clamp(min=0)
            return out.scatter(2, y[..., None], 1.0)

    assert train.correct(Oracle(), "lm", batch, None).all()
    assert not train.correct(lambda idx: torch.zeros(*idx.shape, len(tok)), "lm", batch, None).all()


def test_selection_rule():
    def run(cfg, accs):
        return {"config": cfg, "bins": [{"accuracy": a} for a in accs]}

    grid = [run("small", [1.0, 0.5]), run("mid", [1.0, 0.9]), run("big", [1.0, 0.9]), run("x", [0.9, 1.0])]
    assert train.select(grid) == (grid[1], True)  # best on bin 2 among fitted; tie -> the smaller
    unfit = [run("a", [0.4, 0.0]), run("b", [0.7, 0.0])]
    assert train.select(unfit) == (unfit[1], False)


def test_the_prediction_scored_is_the_papers_label_with_the_program_beside_it():
    # unique copy NoPE: a program exists here (BEYOND_PAPER), the paper labels ✗; a run that fails agrees.
    bins = [
        {"bin": f"{lo}-{hi}", "lo": lo, "hi": hi, "n": 10, "accuracy": a}
        for lo, hi, a in [(1, 50, 1.0), (51, 100, 0.2), (101, 150, 0.0)]
    ]
    run = dict(kind="algorithmic", pos_encoding="nope", config="c", seed=0, steps=1, wall_s=0.1, bins=bins)
    rows = [r for task in ("unique_copy", "sort") for r in train.records_of({**run, "task": task}, "grid", True, True)]
    table = report.predicted_vs_observed(pd.DataFrame(rows)).set_index("task")
    assert ("unique_copy", "nope") in programs.BEYOND_PAPER
    assert table.loc["unique_copy", "program"] and not table.loc["unique_copy", "predicted"]
    assert table.loc["unique_copy", "agree"]  # fails, as the paper's ✗ says
    assert table.loc["sort", "program"] and table.loc["sort", "predicted"] and not table.loc["sort", "agree"]


def fake_engine(monkeypatch, accuracies) -> list:
    """Replace the engine's fit with one that writes its files without training: ``accuracies(params)`` gives
    the accuracy per bin. Returns the list of runs it was asked for, as (task, pe, grid point, seed)."""
    calls = []

    def fake_fit(spec, build, progress=False):
        p = spec.params
        calls.append((p["task"], p["pe"], Arch(**p["arch"]).id, p["seed"]))
        records = pd.DataFrame(
            [
                {"bin": f"{lo}-{hi}", "lo": lo, "hi": hi, "n": 16, "accuracy": a, "step": 3, "final": True}
                for (lo, hi), a in zip(p["bins"], accuracies(p))
            ]
        )
        spec.run_dir.mkdir(parents=True)
        records.to_csv(spec.run_dir / "records.csv", index=False)
        info = {"fingerprint": spec.fingerprint, "finished": True, "steps": 3, "wall_s": 0.1}
        (spec.run_dir / "run.json").write_text(json.dumps(info))
        return Outcome(records, info, spec.run_dir, read_back=False)

    monkeypatch.setattr(train, "fit", fake_fit)
    return calls


def test_study_resumes_and_reruns_only_changed_runs(tmp_path, monkeypatch):
    calls = fake_engine(monkeypatch, lambda p: [1.0, 0.5 + 0.1 * p["arch"]["lr"], 0.2])
    fc = tiny()
    records = train.run_study(fc, out_dir=tmp_path, log=lambda s: None)
    assert len(calls) == 2 * 2 * (2 + 1)  # tasks x encodings x (grid points + one more seed)
    chosen = records[records.selected & (records.stage == "seeds")].config.unique()
    assert list(chosen) == ["1l2h16d-lr0.01"]  # the higher lr scores higher on bin 2 here
    calls.clear()
    train.run_study(fc, out_dir=tmp_path, log=lambda s: None)
    assert calls == []  # everything resumed from the run files
    train.run_study(tiny(n_eval=8), out_dir=tmp_path, log=lambda s: None)
    assert len(calls) == 12  # a changed parameter re-runs what it affects
    assert json.loads((tmp_path / "timing.json").read_text())["runs"] == 12
    # where every run trained (its run.json: here the fake engine's, which names no machine), for the headers
    assert [(c["machine"], c["runs"]) for c in train.load_trained_on(tmp_path)] == [("unknown", 12)]

    summary = train.seed_summary(records)
    row = summary[(summary.task == "(aa)*") & (summary.pos_encoding == "ape") & (summary.lo == 1)].iloc[0]
    assert row["seeds"] == [1.0, 1.0] and row["sd"] == 0.0

    table = report.predicted_vs_observed(records)
    assert set(table.columns) >= {"predicted", "program", "observed", "agree", "acc 1-6", "acc 11-14"}
    aa_nope = table[(table.task == "(aa)*") & (table.pos_encoding == "nope")].iloc[0]
    assert not aa_nope.predicted and not aa_nope.observed and aa_nope.agree  # 0.2 on the last bin
    maj = table[(table.task == "bin_majority") & (table.pos_encoding == "ape")].iloc[0]
    assert maj.predicted and not maj.agree and maj["paper 11-14"] == 99.96
    assert "agree" in report.describe(table)
    saved = report.write_summary(table, out_dir=tmp_path) + [
        save(plot_predicted_vs_observed(table), "predicted_vs_observed", tmp_path)
    ]
    assert (tmp_path / "predicted_vs_observed.png").stat().st_size > 1000 and len(saved) == 3
    assert json.loads((tmp_path / "summary.json").read_text())["pairs"] == 4


def test_seeds_that_do_not_fit_are_replaced_until_enough_fit_and_only_those_are_averaged(tmp_path, monkeypatch):
    # (aa)* fits at seed 0 but not at seeds 1 and 2; bin_majority fits at no grid point (nothing to replace).
    def accuracies(p):
        if p["task"] == "bin_majority":
            return [0.9, 0.5, 0.5]
        return [0.9, 0.1, 0.1] if p["seed"] in (1, 2) else [1.0, 0.9, 0.9]

    calls = fake_engine(monkeypatch, accuracies)
    fc = tiny(pos_encodings=["ape"])  # seeds=2: seeds 0, 1, then 2 (fails), 3 (fits)
    records = protocol.run_study(fc, out_dir=tmp_path, log=lambda s: None)
    assert sorted(s for t, *_, s in calls if t == "(aa)*") == [0, 0, 1, 2, 3]  # 2 grid points, then seeds
    assert max(s for t, *_, s in calls if t == "bin_majority") == 1
    table = report.predicted_vs_observed(records).set_index("task")
    assert (table.loc["(aa)*", "seeds_fit"], table.loc["(aa)*", "seeds_run"]) == (2, 4)
    assert table.loc["(aa)*", "acc 11-14"] == pytest.approx(0.9) and table.loc["(aa)*", "seeds 11-14"] == [0.9, 0.9]
    assert table.loc["bin_majority", "seeds 11-14"] == [0.5, 0.5]  # not fitted: every seed, as before
    runs = json.loads((tmp_path / "timing.json").read_text())["runs"]
    assert runs == 2 * (2 + 1) + 2  # tasks × (grid points + seed 1) + seeds 2, 3 of (aa)*
    assert sum(c["runs"] for c in train.load_trained_on(tmp_path)) == runs  # the extra seeds are counted too
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "records.csv"), records, check_dtype=False)
    assert "(aa)* APE (2 of 4)" in report.describe(table.reset_index())

    calls.clear()  # a second call reads every run back; a lower cap stops short and says so
    again = protocol.run_study(fc, out_dir=tmp_path / "capped", log=lambda s: None, max_seeds=3)
    table = report.predicted_vs_observed(again).set_index("task")
    assert (table.loc["(aa)*", "seeds_fit"], table.loc["(aa)*", "seeds_run"]) == (1, 3)
    calls.clear()
    protocol.run_study(fc, out_dir=tmp_path, log=lambda s: None)
    assert calls == []


def test_run_ids_are_file_safe_and_distinct():
    arch = Arch(1, 2, 16, 0.01)
    ids = {
        train.run_id(t, "ape", arch, 0)
        for t in ["(aa)*", "(aaaa)*", "aa*bb*cc*dd*ee*", "{a,b}*d{b,c}*", "{0,1,2}*02*", "D-2"]
    }
    assert len(ids) == 6 and all(
        set(i) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") for i in ids
    )


def test_worker_processes_give_the_same_records_as_one_process(tmp_path):
    fc1 = tiny(seeds=1)
    fc2 = tiny(seeds=1, train={**TINY["train"], "workers": 2})
    spec1 = train.run_spec(fc1, "(aa)*", "ape", fc1.grid.archs()[0], 0, tmp_path)
    spec2 = train.run_spec(fc2, "(aa)*", "ape", fc2.grid.archs()[0], 0, tmp_path)
    assert spec1.fingerprint == spec2.fingerprint  # how many at once changes no result
    cols = ["task", "pos_encoding", "config", "seed", "stage", "selected", "bin", "steps", "accuracy"]
    serial = train.run_study(fc1, out_dir=tmp_path / "serial", log=lambda s: None)[cols]
    lines = []
    parallel = train.run_study(fc2, out_dir=tmp_path / "parallel", log=lines.append)[cols]
    pd.testing.assert_frame_equal(serial, parallel)
    assert len(lines) == 8 and json.loads((tmp_path / "parallel" / "timing.json").read_text())["workers"] == 2


def scripted_accuracy(monkeypatch, checks: list[float]) -> list[int]:
    """Replace the scorer: the in-distribution checks return ``checks`` in turn (then their last value), the
    final evaluation 0.5 per bin; returns the sizes of the samples scored during training."""
    sizes, it = [], iter(checks)
    last = [checks[-1]]

    def fake(model, task, tok, items, precision, batch_size=128):
        if len(items) == TINY["n_eval"] and fake.final:
            return 0.5
        sizes.append(len(items))
        last[0] = next(it, last[0])
        return last[0]

    fake.final = False
    original_fit = train.fit

    def fit(spec, build, progress=False):
        def wrapped():
            system, data, evaluator = build()
            score = evaluator.score

            def score_final(model, step, final):
                fake.final = final
                return score(model, step, final)

            evaluator.score = score_final
            return system, data, evaluator

        return original_fit(spec, wrapped, progress)

    monkeypatch.setattr(train, "accuracy", fake)
    monkeypatch.setattr(train, "fit", fit)
    return sizes


def test_an_algorithmic_run_stops_at_the_first_check_where_the_sample_is_all_right(tmp_path, monkeypatch):
    sizes = scripted_accuracy(monkeypatch, [0.5, 0.99, 1.0, 0.7])
    fc = tiny(n_eval_during=12, train=dict(steps=12, batch_size=8, eval_every=2, threads=1))
    r = train.train_one(fc, "bin_majority", "ape", fc.grid.archs()[0], 0, runs_dir=tmp_path)
    assert r["history"] == [(2, 0.5), (4, 0.99), (6, 1.0)] and r["steps"] == 6  # 99% does not stop it
    assert sizes == [12, 12, 12]  # the check: the first 12 examples of the in-distribution evaluation set
    assert json.loads(
        (train.run_spec(fc, "bin_majority", "ape", fc.grid.archs()[0], 0, tmp_path).run_dir / "run.json").read_text()
    )["stopped_early"]


def test_a_language_trains_its_whole_budget_unless_told_otherwise(tmp_path, monkeypatch):
    scripted_accuracy(monkeypatch, [1.0])
    fc = tiny(train=dict(steps=8, batch_size=8, eval_every=2, threads=1))
    assert train.stops_early(fc, "bin_majority") and not train.stops_early(fc, "(aa)*")
    r = train.train_one(fc, "(aa)*", "ape", fc.grid.archs()[0], 0, runs_dir=tmp_path)
    assert r["steps"] == 8 and [s for s, _ in r["history"]] == [2, 4, 6]  # 100% at every check, no stop
    fc = tiny(train=dict(steps=8, batch_size=8, eval_every=2, threads=1, early_stop_languages=True))
    assert train.train_one(fc, "(aa)*", "ape", fc.grid.archs()[0], 0, runs_dir=tmp_path)["steps"] == 2


def test_the_check_sample_must_come_from_the_evaluation_set():
    with pytest.raises(ValueError, match="n_eval_during"):
        tiny(n_eval=16, n_eval_during=32)


def test_the_position_table_starts_at_gpt2_scale_and_nothing_else_moves():
    from lengen.formal.data import get_task

    fc = tiny(train=dict(steps=6, batch_size=8, eval_every=3, threads=1))
    task = get_task("majority", fc.vocab_size)
    torch.manual_seed(0)
    ape = train.make_system(fc, task, "ape", Arch(2, 2, 64, 0.001)).model
    assert abs(ape.pos_emb.weight.std().item() - 0.02) < 0.002
    assert abs(ape.tok_emb.weight.std().item() - 1.0) < 0.1  # fan_in init elsewhere, as before
    keep = tiny(train=dict(steps=6, batch_size=8, eval_every=3, threads=1, pos_init_std=None))
    torch.manual_seed(0)
    assert abs(train.make_system(keep, task, "ape", Arch(2, 2, 64, 0.001)).model.pos_emb.weight.std().item() - 1) < 0.1
    gpt2 = tiny(train=dict(steps=6, batch_size=8, eval_every=3, threads=1, init="gpt2"))
    m = train.make_system(gpt2, task, "nope", Arch(2, 2, 64, 0.001)).model
    assert m.pos_emb is None and abs(m.tok_emb.weight.std().item() - 0.02) < 0.003
