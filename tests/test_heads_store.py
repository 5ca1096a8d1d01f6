"""Tests for the head analysis's per-run store (lengen.heads.store) and its CLI (python -m lengen.heads): rows
round-trip; ``analyse`` stores every run and reads it back once the checkpoints are gone, with equal tables; a
changed key (heads parameter, fingerprint, code) invalidates an entry; stage items map to the runs the analysis
covers. Fake runs (untrained checkpoints) at the smoke model, one CPU thread."""

from __future__ import annotations

import ast
import dataclasses
import gzip
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from test_heads import fake_run

from lengen import heads, paths
from lengen.config import load_config
from lengen.heads import store
from lengen.heads.__main__ import main, stage_items
from lengen.sources import ROOT, import_closure
from lengen.train import run_spec

torch.set_num_threads(1)
STEPS = [20, 40, 60]


@pytest.fixture
def study(smoke_cfg, tmp_path):
    """Two fake arith_carry runs (seeds 0 and 1) with checkpoints and records, small heads parameters."""
    cfg = dataclasses.replace(smoke_cfg, experiment=dataclasses.replace(smoke_cfg.experiment, seeds=[0, 1]))
    hc = dataclasses.replace(heads.heads_config(cfg), n_examples=4, n_bootstrap=50, n_random_sets=10, min_points=3)
    dirs = dict(runs_dir=tmp_path / "runs", records_dir=tmp_path / "records", store_dir=tmp_path / "store")
    for run in heads.analysed_runs(cfg, hc):
        fake_run(run, dirs["runs_dir"], dirs["records_dir"], STEPS)
    return cfg, hc, dirs


def analyse(cfg, hc, dirs):
    return heads.analyse(cfg, hc, threads=1, progress=False, **dirs)


def equal_records(a, b):
    for name in ("ablation", "attention", "checkpoints", "coverage"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


# -- the store ----------------------------------------------------------------------------------------


def test_store_round_trips(smoke_cfg, tmp_path):
    run = smoke_cfg.run("arith_carry", "rope", 0)
    key = heads.entry_key(run, smoke_cfg.heads)
    keys = dict(run_id=run.run_id, group="arith_carry", seed=0, pos_encoding="rope", step=20)
    rows = heads.RunRows(
        pd.DataFrame(
            [
                {**keys, "task": "reverse_add", "role": "main", "length": 3, "layer": 0, "head": h}
                | dict(exact_match=0.0, loglik=-2.0 / 3, em_drop=0.0, ll_drop=1e-9 * (h + 1))
                for h in range(2)
            ]
        ),
        pd.DataFrame(
            [{**keys, "main": "reverse_add", "aux": "no_carry", "length": 3, "layer": 0, "head": 0, "attn_diff": 0.1}]
        ),
        pd.DataFrame([{**keys, "gap": np.nan, "wall_s": 1.234567891}]),
    )
    d = heads.write_entry(rows, key, tmp_path)
    assert sorted(p.name for p in d.iterdir()) == [
        "ablation.csv.gz",
        "attention.csv.gz",
        "checkpoints.csv.gz",
        "key.json",
    ]
    assert store.read_key(run.run_id, tmp_path) == key
    back = heads.read_entry(run.run_id, tmp_path)
    for name, df in rows.frames().items():
        # floats at 6 significant digits, and floats even where a run's values are whole (exact_match 0)
        pd.testing.assert_frame_equal(getattr(back, name), df, check_exact=False, rtol=5e-6)
    assert back.ablation.exact_match.dtype == float and back.checkpoints.wall_s.iloc[0] == 1.23457
    # equal rows, equal bytes (no timestamp in the gzip header): rewriting an entry leaves git nothing to commit
    first = (d / "ablation.csv.gz").read_bytes()
    heads.write_entry(back, key, tmp_path)
    assert (d / "ablation.csv.gz").read_bytes() == first
    assert gzip.decompress(first).decode().splitlines()[0].startswith("run_id,group,seed,pos_encoding,step,task")


def test_an_entry_without_all_its_tables_is_no_entry(smoke_cfg, tmp_path):
    run = smoke_cfg.run("arith_carry", "rope", 0)
    rows = heads.RunRows(*(pd.DataFrame(columns=heads.run.columns(n, heads.RUN_KEYS)) for n in heads.run.FIELDS))
    d = heads.write_entry(rows, heads.entry_key(run, smoke_cfg.heads), tmp_path)
    (d / "attention.csv.gz").unlink()
    assert store.read_key(run.run_id, tmp_path) is None


def test_the_key_names_what_the_rows_are_computed_from(smoke_cfg):
    run, hc = smoke_cfg.run("arith_carry", "rope", 0), smoke_cfg.heads
    key = heads.entry_key(run, hc)
    assert key["fingerprint"] == run_spec(run).fingerprint
    assert key["heads"] == dict(
        n_examples=hc.n_examples, length_fractions=hc.length_fractions, max_checkpoints=hc.max_checkpoints
    )
    assert key["data"] == dict(seed=smoke_cfg.data.seed, holdout_modulus=smoke_cfg.data.holdout_modulus)
    # the aggregate statistics are not in the key: changing them needs no checkpoints
    assert heads.entry_key(run, dataclasses.replace(hc, top_k=1, n_bootstrap=7, seed=3)) == key


def test_code_outside_the_hashed_files_is_in_the_fingerprint():
    """What the hashed files import from lengen (outside lengen.heads) is in lengen.train's closure, so a
    change to it changes the run's fingerprint; what they import from lengen.heads is hashed itself."""
    train = set(import_closure("lengen.train"))
    hashed = {f.removesuffix(".py").replace("/", ".") for f in store.CODE_FILES}
    for file in store.CODE_FILES:
        for node in ast.walk(ast.parse((ROOT / file).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lengen"):
                if node.module.startswith("lengen.heads"):
                    assert node.module in hashed, f"{file} imports {node.module}, not in store.CODE_FILES"
                else:
                    assert set(import_closure(node.module)) <= train, f"{file}: {node.module} not in the fingerprint"


# -- analyse through the store --------------------------------------------------------------------------


def test_analyse_stores_each_run_and_reads_it_back_without_checkpoints(study):
    cfg, hc, dirs = study
    fresh = analyse(cfg, hc, dirs)
    runs = heads.analysed_runs(cfg, hc)
    assert sorted(p.name for p in dirs["store_dir"].iterdir()) == sorted(r.run_id for r in runs)
    for run in runs:
        key = json.loads((dirs["store_dir"] / run.run_id / "key.json").read_text())
        assert key == heads.entry_key(run, hc)

    # the stored rows are the probe's, to the stored precision
    run = runs[0]
    ckpts = heads.checkpoint_paths(run_spec(run, dirs["runs_dir"]).run_dir, hc.max_checkpoints)
    probed = heads.probe_run(run, hc, ckpts, dirs["records_dir"], progress=False)
    mine = fresh.ablation[fresh.ablation.run_id == run.run_id].drop(columns="category").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, probed.ablation, check_exact=False, rtol=1e-5, atol=1e-9)

    shutil.rmtree(dirs["runs_dir"])
    back = analyse(cfg, hc, dirs)
    equal_records(back, fresh)
    t_fresh, t_back = heads.tables(fresh, hc), heads.tables(back, hc)
    for name in t_fresh:
        pd.testing.assert_frame_equal(t_back[name], t_fresh[name])


def test_a_changed_key_invalidates_the_entry(study):
    cfg, hc, dirs = study
    analyse(cfg, hc, dirs)
    run = heads.analysed_runs(cfg, hc)[0]

    # with checkpoints: computed again under the new key
    more = dataclasses.replace(hc, n_examples=hc.n_examples + 1)
    _, probed = heads.run_rows(run, more, progress=False, **dirs)
    assert probed and store.read_key(run.run_id, dirs["store_dir"])["heads"]["n_examples"] == hc.n_examples + 1
    _, probed = heads.run_rows(run, more, progress=False, **dirs)
    assert not probed

    shutil.rmtree(dirs["runs_dir"])
    # without checkpoints: an error naming the run and what differs
    with pytest.raises(FileNotFoundError, match=rf"run {run.run_id}: .*heads\.n_examples: stored 5, now 4"):
        heads.run_rows(run, hc, progress=False, **dirs)
    other = dataclasses.replace(run, train=dataclasses.replace(run.train, lr=run.train.lr * 2))
    with pytest.raises(FileNotFoundError, match=rf"run {run.run_id}: .*fingerprint: stored \w+, now \w+"):
        heads.run_rows(other, more, progress=False, **dirs)
    key_file = dirs["store_dir"] / run.run_id / "key.json"
    key_file.write_text(json.dumps({**json.loads(key_file.read_text()), "code": "0" * 16}))
    with pytest.raises(FileNotFoundError, match=rf"run {run.run_id}: .*code: stored 0+, now"):
        heads.run_rows(run, more, progress=False, **dirs)
    key_file.unlink()
    with pytest.raises(FileNotFoundError, match=rf"run {run.run_id}: no stored rows in .*no kept checkpoints"):
        heads.run_rows(run, more, progress=False, **dirs)


def test_moving_a_group_to_another_category_needs_no_checkpoints(study):
    cfg, hc, dirs = study
    analyse(cfg, hc, dirs)
    shutil.rmtree(dirs["runs_dir"])
    moved = dataclasses.replace(hc, groups={"control": ["arith_carry"]})
    rec = analyse(cfg, moved, dirs)
    assert set(rec.ablation.category) == set(rec.checkpoints.category) == {"control"}


# -- the CLI ----------------------------------------------------------------------------------------------


def test_stage_items_are_dvcs_names_of_the_training_stages():
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        names = {
            s.addressing
            for s in repo.index.stages
            if s.addressing.partition("@")[0] in ("train", "ablation", "cross", "grid")
        }
    assert set(stage_items(load_config())) == names


def test_cli_stores_the_runs_the_analysis_covers(tmp_path, capsys):
    params = tmp_path / "params.yaml"  # the smoke profile at one thread (the CLI runs at train.threads)
    smoke = (paths.PROFILES_DIR / "smoke.yaml").read_text()
    params.write_text(re.sub(r"(?m)^  threads: 2\b", "  threads: 1", smoke, count=1))
    cfg = load_config(params)
    assert cfg.train.threads == 1
    runs_dir, records_dir, store_dir = tmp_path / "runs", tmp_path / "records", tmp_path / "store"
    run = cfg.run("arith_carry", "rope", 0)
    fake_run(run, runs_dir, records_dir, STEPS)
    where = ["--params", str(params), "--runs-dir", str(runs_dir), "--records-dir", str(records_dir)]
    where += ["--store-dir", str(store_dir)]

    assert main(["train@arith_carry-rope-0", *where]) == 0
    assert "arith_carry-rope-s0 stored in" in capsys.readouterr().out
    assert store.read_key(run.run_id, store_dir) == heads.entry_key(run, cfg.heads)
    assert main(["train@arith_carry-rope-0", *where]) == 0
    assert "arith_carry-rope-s0 up to date in" in capsys.readouterr().out

    # not covered: the NoPE ablation, the APE cross run, the grid cell, a group without auxiliaries; another stage
    others = ["ablation@arith_carry-nope-0", "cross@arith_carry-ape-0", "grid@3-6-0", "train@add_alone-rope-0"]
    assert main([*others, "data", *where]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and all("is not in the head analysis" in line for line in out[:4])
    assert out[4] == "[heads] data: not a training stage item, nothing to store"
    assert sorted(p.name for p in store_dir.iterdir()) == [run.run_id]

    with pytest.raises(SystemExit) as e:  # a typo, or a matrix item of another profile
        main(["train@arith_carry-rope-7", *where])
    assert e.value.code == 2 and "train@arith_carry-rope-7" in capsys.readouterr().err

    shutil.rmtree(runs_dir)
    (store_dir / run.run_id / "key.json").unlink()
    with pytest.raises(SystemExit, match=f"run {run.run_id}: no stored rows"):
        main(["train@arith_carry-rope-0", *where])
