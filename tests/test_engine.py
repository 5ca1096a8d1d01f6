"""The run engine: resume after a kill, read-back of a finished run, retraining after a change of
parameters or code, runs of two profiles side by side, and damaged checkpoints named."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pandas as pd
import pytest

from lengen import train
from lengen.config import load_config
from lengen.engine import CheckpointError, load_system
from lengen.paths import PROFILES_DIR, PROJ_ROOT
from lengen.runtime import provenance, trained_on
from lengen.train import run_spec, train_run


def smoke_run(smoke_cfg, **overrides):
    run = smoke_cfg.run("arith_carry", "ape", 0)  # APE exercises the random offsets in the stream
    return dataclasses.replace(run, train=dataclasses.replace(run.train, **overrides)) if overrides else run


class CountSteps(L.Callback):
    def __init__(self):
        self.steps = 0

    def on_train_batch_end(self, *args):
        self.steps += 1


def run_twice(run, tmp_path, **kw):
    return [
        train_run(run, runs_root=tmp_path / "runs", reports_dir=tmp_path / "rep", progress=False, **kw)
        for _ in range(2)
    ]


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import lightning as L, torch
    torch.set_num_threads(1)
    from lengen.config import load_config
    from lengen.paths import PROFILES_DIR
    from lengen.train import train_run

    class Kill(L.Callback):  # a hard kill mid-run: no cleanup, no final evaluation
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    run = load_config(PROFILES_DIR / "smoke.yaml").run("arith_carry", "ape", 0)
    train_run(run, runs_root=sys.argv[1] + "/runs", reports_dir=sys.argv[1] + "/reports", progress=False,
              callbacks=[Kill()])
""")


@pytest.mark.slow
def test_killed_run_resumes_to_identical_records(tmp_path, smoke_cfg):
    run = smoke_run(smoke_cfg)
    ref = train_run(run, runs_root=tmp_path / "ref/runs", reports_dir=tmp_path / "ref/reports", progress=False)
    kill_at = run.train.eval_every + 5  # after the first kept checkpoint, before the end
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "k"), str(kill_at)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    run_dir = run_spec(run, tmp_path / "k/runs").run_dir
    assert (run_dir / "checkpoints/last.ckpt").exists()
    assert not (run_dir / "run.json").exists()  # it really died before finishing
    assert not (tmp_path / "k/reports/records").exists()

    resumed = train_run(run, runs_root=tmp_path / "k/runs", reports_dir=tmp_path / "k/reports", progress=False)
    assert not resumed.read_back
    pd.testing.assert_frame_equal(ref.records, resumed.records)
    assert without_date(ref.metrics) == without_date(resumed.metrics)
    steps = sorted(resumed.records.step.unique())
    assert steps == list(range(run.train.eval_every, run.train.steps + 1, run.train.eval_every))
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("step=*.ckpt"))
    assert kept == [f"step={s:06d}.ckpt" for s in steps]
    assert not (run_dir / "checkpoints/last.ckpt").exists()  # a finished run is read back, not resumed
    info = json.loads((run_dir / "run.json").read_text())
    assert info["finished"] and info["steps"] == run.train.steps and info["wall_s"] > 0
    # Both starts are noted (a resume on another machine would name both machines), the note file is gone.
    assert [seg["resumed"] for seg in info["segments"]] == [False, True]
    assert not (run_dir / "segments.jsonl").exists()
    assert resumed.metrics["trained_on"]["machine"] == trained_on({"provenance": provenance()})["machine"]


def test_a_start_without_a_checkpoint_forgets_where_earlier_starts_ran(tmp_path, smoke_cfg):
    """A run that died before its first checkpoint starts over: the machine it died on trained none of it."""
    run = smoke_run(smoke_cfg)
    run_dir = run_spec(run, tmp_path / "runs").run_dir
    run_dir.mkdir(parents=True)
    elsewhere = {"processor": "Other CPU", "cpu_id": "family 1 model 1", "float_path": {"cpu_capability": "AVX2"}}
    (run_dir / "segments.jsonl").write_text(json.dumps({**elsewhere, "resumed": False}) + "\n")
    result = train_run(run, runs_root=tmp_path / "runs", reports_dir=tmp_path / "reports", progress=False)
    info = json.loads((run_dir / "run.json").read_text())
    assert [seg["processor"] for seg in info["segments"]] == [provenance()["processor"]]
    assert "Other CPU" not in result.metrics["trained_on"]["machine"]


def without_date(metrics: dict) -> dict:
    """A run's metrics less the day it finished (two runs may finish on either side of midnight)."""
    return {**metrics, "trained_on": {k: v for k, v in metrics["trained_on"].items() if k != "date"}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, smoke_cfg):
    """A finished smoke run (trained once for the read-back tests): (run, its result, its runs root)."""
    root = tmp_path_factory.mktemp("finished")
    run = smoke_run(smoke_cfg)
    return run, train_run(run, runs_root=root / "runs", reports_dir=root / "rep", progress=False), root


@pytest.mark.slow
def test_a_finished_run_is_read_back_without_training(tmp_path, finished):
    run, first, root = finished
    counter = CountSteps()
    second = train_run(run, runs_root=root / "runs", reports_dir=tmp_path / "rep2", progress=False, callbacks=[counter])
    assert not first.read_back and second.read_back and counter.steps == 0
    pd.testing.assert_frame_equal(first.records, second.records, check_dtype=False)
    # The stage's outputs are written again from the stored records, identically.
    name = f"{run.run_id}.json"
    assert (root / "rep/metrics" / name).read_text() == (tmp_path / "rep2/metrics" / name).read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or not (PROJ_ROOT / ".git").exists(), reason="needs the git checkout")
def test_a_clone_reads_a_finished_run_back_from_the_files_git_keeps(tmp_path, finished):
    """The study is produced in pieces, on more than one machine: a finished run's small files are committed
    (.gitignore keeps its checkpoints out), and a clone reads the run back from them instead of training it."""
    run, first, root = finished
    committed = []
    for f in sorted(p for p in first.run_dir.rglob("*") if p.is_file()):
        in_repo = Path("runs") / f.relative_to(root / "runs")  # where the run lives in the project
        if subprocess.run(["git", "check-ignore", "--no-index", "-q", str(in_repo)], cwd=PROJ_ROOT).returncode:
            committed.append(in_repo)
            (tmp_path / "clone" / in_repo).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, tmp_path / "clone" / in_repo)
    assert {"run.json", "records.csv"} <= {p.name for p in committed}
    assert not any(p.suffix in (".ckpt", ".jsonl") for p in committed)  # checkpoints and the resume log stay out
    counter = CountSteps()
    again = train_run(
        run, runs_root=tmp_path / "clone/runs", reports_dir=tmp_path / "rep2", progress=False, callbacks=[counter]
    )
    assert again.read_back and counter.steps == 0
    pd.testing.assert_frame_equal(first.records, again.records, check_dtype=False)


@pytest.mark.slow
def test_a_code_change_retrains_and_a_comment_does_not(tmp_path, smoke_cfg, monkeypatch):
    # A module of the run's code closure, under our control: its code is part of the fingerprint.
    module = tmp_path / "extra_code.py"
    module.write_text("SCALE = 1.0\n")
    monkeypatch.setattr(train, "CODE", (*train.CODE, str(module)))
    run = smoke_run(smoke_cfg, steps=10, eval_every=10)
    first = train_run(run, runs_root=tmp_path / "runs", reports_dir=tmp_path / "rep", progress=False)

    module.write_text("# a comment and a new layout change nothing\nSCALE = (\n    1.0\n)\n")
    again = train_run(run, runs_root=tmp_path / "runs", reports_dir=tmp_path / "rep", progress=False)
    assert again.read_back and again.run_dir == first.run_dir

    module.write_text("SCALE = 2.0\n")
    changed = train_run(run, runs_root=tmp_path / "runs", reports_dir=tmp_path / "rep", progress=False)
    assert not changed.read_back and changed.run_dir != first.run_dir
    assert (first.run_dir / "run.json").exists()  # the earlier run is kept, not overwritten


def test_the_real_code_is_in_the_fingerprint(smoke_cfg):
    run = smoke_run(smoke_cfg)
    from lengen.sources import import_closure

    closure = import_closure(*train.CODE)
    for module in ("lengen/model.py", "lengen/system.py", "lengen/engine.py", "lengen/data.py", "lengen/evaluate.py"):
        assert module in closure
    assert any(f.startswith("lengen/tasks/") for f in closure)
    assert run_spec(run).fingerprint != run_spec(smoke_run(smoke_cfg, lr=0.5)).fingerprint


@pytest.mark.slow
def test_switching_profile_loses_nothing(tmp_path, smoke_cfg):
    cpu = load_config(PROFILES_DIR / "cpu.yaml")
    a = smoke_run(smoke_cfg, steps=10, eval_every=10)
    b = cpu.run("arith_carry", "ape", 0)  # the same run id in another profile
    b = dataclasses.replace(
        b,
        train=dataclasses.replace(b.train, steps=10, eval_every=10, threads=1),
        data=dataclasses.replace(b.data, n_eval=4, n_eval_during_training=4),
    )
    assert a.run_id == b.run_id
    ra = train_run(a, runs_root=tmp_path / "runs", reports_dir=tmp_path / "rep", progress=False)
    rb = train_run(b, runs_root=tmp_path / "runs", reports_dir=tmp_path / "rep", progress=False)
    assert ra.run_dir != rb.run_dir and ra.run_dir.parent == rb.run_dir.parent
    back = train_run(a, runs_root=tmp_path / "runs", reports_dir=tmp_path / "rep", progress=False)
    assert back.read_back and sorted((ra.run_dir / "checkpoints").glob("step=*.ckpt"))
    pd.testing.assert_frame_equal(ra.records, back.records, check_dtype=False)


@pytest.mark.slow
def test_damaged_checkpoints_are_named(tmp_path, smoke_cfg):
    run = smoke_run(smoke_cfg, steps=10, eval_every=10)
    res = train_run(run, runs_root=tmp_path / "runs", reports_dir=tmp_path / "rep", progress=False)
    kept = res.run_dir / "checkpoints/step=000010.ckpt"
    load_system(kept)  # whole: loads
    kept.write_bytes(kept.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"step=000010\.ckpt"):
        load_system(kept)
    # A damaged last.ckpt of an unfinished run stops the run with its path instead of an OSError.
    unfinished = smoke_run(smoke_cfg, steps=20, eval_every=10)
    last = run_spec(unfinished, tmp_path / "runs").run_dir / "checkpoints/last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"last\.ckpt"):
        train_run(unfinished, runs_root=tmp_path / "runs", reports_dir=tmp_path / "rep", progress=False)


def test_the_early_stop_fires_when_the_score_reaches_its_threshold(tmp_path, smoke_cfg):
    from lengen.data import LengenDataModule
    from lengen.engine import Evaluate, RunSpec, StopRule, fit
    from lengen.system import system_from_run

    run = smoke_run(smoke_cfg)
    spec = RunSpec(
        run_id="stop",
        root=tmp_path,
        params={"test": "stop"},
        code=(),
        seed=0,
        steps=20,
        eval_every=5,
        stop=StopRule("val/score", 1.0),
        compile="eager",
    )

    def build():
        def score(model, step, final):  # "every example right" from the second evaluation on
            return [{"accuracy": 1.0 if step >= 10 else 0.5}]

        evaluate = Evaluate(score, 5, "32-true", spec.run_dir, monitor=lambda rows: rows[0]["accuracy"])
        return system_from_run(run), LengenDataModule(run.group, 4, 0, 10), evaluate

    out = fit(spec, build, progress=False)
    assert out.info["steps"] == 10 and out.info["stopped_early"]  # float32 1.0 reaches the threshold 1.0
