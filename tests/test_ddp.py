"""DDP on CPU: a run trained by 2 processes (Lightning's DDP over gloo) against the same run in one process.

Lightning's "ddp" strategy launches the other ranks by re-running the script, so the DDP runs are a script
run in a subprocess (as in test_engine.py), rank 0 the subprocess itself; the one-process reference trains
in pytest. All runs are the smoke profile's arith_carry/rope/seed 0 in fp32 with one thread per process.

The global batch is kept: every rank draws the same global batch k (lengen.data.TrainStream) and keeps rows
rank::world_size, and DDP averages the ranks' gradients. Tolerance, and why: with the loss normalized by the
global batch's target count, the DDP gradient is the one-process gradient summed in another order (two
half-batch forwards, gloo's all-reduce), so only float rounding differs: 2.4e-7 on the weights after 40 steps,
measured here; the test allows 1e-5 (40x that, 300x below the 3e-3 a wrong loss weighting gives) and asks
for identical records (a prediction flips only on a logit tie within ~1e-6). bf16-mixed runs do the same
computation with bf16 rounding and are not compared. Run it alone: `pytest tests/test_ddp.py` (or `-k ddp`).
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from lengen.train import train_run

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5  # max |weight difference| after training, DDP vs one process (see the module docstring)

# argv: out dir, devices, steps, "global" to normalize the loss by the global target count (see below)
DDP_SCRIPT = textwrap.dedent("""
    import dataclasses, sys
    import torch
    torch.set_num_threads(1)
    from lengen.config import load_config
    from lengen.paths import PROFILES_DIR
    from lengen.train import train_run

    out, devices, steps, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if mode == "global":
        import torch.nn.functional as F
        from lengen.data import IGNORE, length_buckets
        from lengen.system import LengenSystem

        def training_step(self, batch, batch_idx):  # LengenSystem's, divided by the global target count
            x, y, offset = batch["input_ids"], batch["labels"], batch.get("pos_offset")
            loss = x.new_zeros((), dtype=torch.float32)
            for rows, T in length_buckets(y, self.hparams.length_buckets):
                logits = self.model(x[rows, :T], pos_offset=None if offset is None else offset[rows])
                loss = loss + F.cross_entropy(
                    logits.float().flatten(0, 1), y[rows, :T].flatten(), ignore_index=IGNORE, reduction="sum"
                )
            n = self.all_gather((y != IGNORE).sum()).sum() / self.trainer.world_size  # mean count per rank
            return loss / n

        LengenSystem.training_step = training_step

    run = load_config(PROFILES_DIR / "smoke.yaml").run("arith_carry", "rope", 0)
    train = dataclasses.replace(run.train, devices=devices, steps=steps, threads=1, precision="32-true")
    train_run(dataclasses.replace(run, train=train), runs_root=out + "/runs", reports_dir=out + "/reports",
              progress=False)
""")


def smoke_run(smoke_cfg, **overrides):
    run = smoke_cfg.run("arith_carry", "rope", 0)
    train = dataclasses.replace(run.train, threads=1, precision="32-true", **overrides)
    return dataclasses.replace(run, train=train)


def ddp(tmp_path, name, devices=2, steps=40, mode="as-is"):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / name
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(devices), str(steps), mode],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return out, proc


def run_dir_of(out, run_id):
    """The run's directory under ``out``, found rather than recomputed: its fingerprint hashes the code,
    which the subprocess read (the same files, unless edited in between)."""
    (d,) = (out / "runs" / run_id).iterdir()
    return d


def weights(run_dir, step):
    return torch.load(run_dir / f"checkpoints/step={step:06d}.ckpt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]


def max_weight_difference(dir_a, dir_b, step):
    a, b = weights(dir_a, step), weights(dir_b, step)
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, smoke_cfg):
    """The run in one process (the test's own)."""
    root = tmp_path_factory.mktemp("one")
    run = smoke_run(smoke_cfg, devices=1)
    result = train_run(run, runs_root=root / "runs", reports_dir=root / "reports", progress=False)
    return run, result


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, smoke_cfg):
    """The same run by 2 DDP processes, the engine and system as they are."""
    out, proc = ddp(tmp_path_factory.mktemp("ddp"), "as-is")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return smoke_run(smoke_cfg, devices=2), out, proc


def test_ddp_trains_on_two_cpu_processes_and_rank_zero_writes_once(reference, two_ranks):
    _, ref = reference
    run, out, proc = two_ranks
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr  # a second process joined over gloo
    run_dir = run_dir_of(out, run.run_id)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["finished"] and info["devices"] == 2 and info["steps"] == run.train.steps
    # rank 0 writes the outputs and reports each evaluation once; rank 1 only trains and scores
    for step in (20, 40):
        assert proc.stdout.count(f"[eval] {run.run_id} step {step}:") == 1
    records = pd.read_csv(out / "reports/records" / f"{run.run_id}.csv")
    assert (out / "reports/metrics" / f"{run.run_id}.json").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt")) == [
        "step=000020.ckpt",
        "step=000040.ckpt",
    ]
    keys = ["task", "length", "step", "final"]
    pd.testing.assert_frame_equal(records[keys], ref.records[keys].reset_index(drop=True), check_dtype=False)
    # the global batch is kept: the DDP run's weights are the one-process run's, up to the loss weighting
    assert max_weight_difference(run_dir, ref.run_dir, 40) < 0.05


def test_ddp_with_the_global_batch_mean_loss_matches_one_process(reference, smoke_cfg, tmp_path):
    """The engine and the stream are exact: with the loss divided by the global batch's target count (what
    one process does), 2 ranks train the same weights and records as one process, up to float rounding."""
    ref_run, ref = reference
    out, proc = ddp(tmp_path, "global", mode="global")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = run_dir_of(out, ref_run.run_id)
    for step in (20, 40):
        assert max_weight_difference(run_dir, ref.run_dir, step) < TOLERANCE, step
    records = pd.read_csv(out / "reports/records" / f"{ref_run.run_id}.csv")
    pd.testing.assert_frame_equal(records, ref.records.reset_index(drop=True), check_dtype=False)


def test_ddp_matches_one_process(reference, two_ranks):
    _, ref = reference
    run, out, _ = two_ranks
    run_dir = run_dir_of(out, run.run_id)
    assert max_weight_difference(run_dir, ref.run_dir, 40) < TOLERANCE
    records = pd.read_csv(out / "reports/records" / f"{run.run_id}.csv")
    pd.testing.assert_frame_equal(records, ref.records.reset_index(drop=True), check_dtype=False)


def test_a_ddp_run_whose_last_step_is_no_evaluation_step_finishes(tmp_path, smoke_cfg):
    out, proc = ddp(tmp_path, "steps30", steps=30)  # evaluations at 20 and after the last step, 30
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = run_dir_of(out, "arith_carry-rope-s0")
    assert json.loads((run_dir / "run.json").read_text())["finished"]
    assert (run_dir / "checkpoints/step=000030.ckpt").exists()


def test_a_ddp_run_started_in_a_notebook_trains_in_a_child_process(tmp_path, monkeypatch, reference):
    import yaml

    from lengen import train
    from lengen.config import load_config
    from lengen.paths import PROFILES_DIR

    raw = yaml.safe_load((PROFILES_DIR / "smoke.yaml").read_text())
    raw["train"].update(devices=2, threads=1, precision="32-true")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))  # key order is the groups' task order
    run = load_config(params).run("arith_carry", "rope", 0)
    monkeypatch.setattr(train, "INTERACTIVE", True)  # as in a DVC stage's notebook kernel
    result = train_run(
        run, runs_root=tmp_path / "runs", reports_dir=tmp_path / "reports", progress=False, params_file=params
    )
    assert result.read_back  # trained by `python -m lengen.train` on 2 ranks, then read back here
    assert json.loads((result.run_dir / "run.json").read_text())["devices"] == 2
    assert (tmp_path / "reports/records" / f"{run.run_id}.csv").exists()
    _, ref = reference
    pd.testing.assert_frame_equal(result.records, ref.records, check_dtype=False)
