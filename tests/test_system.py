"""Training system: schedule, a short real run, kill/resume equality, determinism."""
import json
import math
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from lengen.system import lr_lambda
from lengen.train import train_run


def test_schedule_warmup_constant_cosine():
    f = lambda s: lr_lambda(s, warmup_steps=10, decay_steps=20, total_steps=100, min_lr_frac=0.1)  # noqa: E731
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == f(50) == f(79) == 1.0
    assert f(90) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(80, 100))


def smoke_run(smoke_cfg, **overrides):
    import dataclasses

    run = smoke_cfg.run("arith_carry", "ape", 0)  # APE exercises the random offsets in the stream
    return dataclasses.replace(run, train=dataclasses.replace(run.train, **overrides)) if overrides else run


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, dataclasses
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
    train_run(run, run_dir=sys.argv[1] + "/run", reports_dir=sys.argv[1] + "/reports", progress=False,
              callbacks=[Kill()])
""")


@pytest.mark.slow
def test_killed_run_resumes_to_identical_records(tmp_path, smoke_cfg):
    run = smoke_run(smoke_cfg)
    ref = train_run(run, run_dir=tmp_path / "ref/run", reports_dir=tmp_path / "ref/reports", progress=False)
    # Same params -> identical records and metrics (CPU).
    again = train_run(run, run_dir=tmp_path / "again/run", reports_dir=tmp_path / "again/reports", progress=False)
    pd.testing.assert_frame_equal(ref.records, again.records)

    kill_at = run.train.eval_every + 5  # after the first kept checkpoint, before the end
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "k"), str(kill_at)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (tmp_path / "k/run/checkpoints/last.ckpt").exists()
    assert not (tmp_path / "k/reports/records").exists()  # it really died before finishing

    resumed = train_run(run, run_dir=tmp_path / "k/run", reports_dir=tmp_path / "k/reports", progress=False)
    pd.testing.assert_frame_equal(ref.records, resumed.records)
    m_ref = json.loads((tmp_path / "ref/reports/metrics" / f"{run.run_id}.json").read_text())
    m_res = json.loads((tmp_path / "k/reports/metrics" / f"{run.run_id}.json").read_text())
    assert m_ref == m_res
    steps = sorted(resumed.records.step.unique())
    assert steps == list(range(run.train.eval_every, run.train.steps + 1, run.train.eval_every))
    kept = sorted(p.name for p in (tmp_path / "k/run/checkpoints").glob("step=*.ckpt"))
    assert kept == [f"step={s:06d}.ckpt" for s in steps]

    # Calling it again on the finished run only reads it back; run.json keeps the cost of both calls.
    first = json.loads((tmp_path / "k/run/run.json").read_text())
    assert first["float_path"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert first["wall_s_total"] == first["wall_s_this_session"]  # the killed session wrote no run.json
    train_run(run, run_dir=tmp_path / "k/run", reports_dir=tmp_path / "k/reports", progress=False)
    second = json.loads((tmp_path / "k/run/run.json").read_text())
    assert second["wall_s_total"] == pytest.approx(first["wall_s_total"] + second["wall_s_this_session"], abs=0.11)
    # A run trained afresh (no resume) counts only its own time.
    train_run(run, run_dir=tmp_path / "k/run", reports_dir=tmp_path / "k/reports", progress=False, resume=False)
    third = json.loads((tmp_path / "k/run/run.json").read_text())
    assert third["wall_s_total"] == third["wall_s_this_session"]


@pytest.mark.slow
def test_changed_params_do_not_resume_stale_checkpoints(tmp_path, smoke_cfg):
    a = train_run(smoke_run(smoke_cfg), run_dir=tmp_path / "run", reports_dir=tmp_path / "rep", progress=False)
    b = train_run(smoke_run(smoke_cfg, lr=0.01), run_dir=tmp_path / "run", reports_dir=tmp_path / "rep",
                  progress=False)
    assert b.records.step.min() == smoke_cfg.train.eval_every  # trained from scratch, full history
    assert not a.records.equals(b.records)


@pytest.mark.slow
def test_training_learns(tmp_path, smoke_cfg):
    import dataclasses

    run = smoke_cfg.run("add_alone", "rope", 0)
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, steps=150, eval_every=150, lr=3e-3))
    res = train_run(run, run_dir=tmp_path / "run", reports_dir=tmp_path / "rep", progress=False)
    log = pd.read_csv(tmp_path / "run/logs/metrics.csv").dropna(subset=["train/loss"])
    # The first logged loss is already at step 50, past the fast early drop, so compare with chance too:
    # guessing uniformly among the 10 digits and <eos> costs ln 11 = 2.40 nats per target token.
    assert log["train/loss"].iloc[-1] < log["train/loss"].iloc[0]
    assert log["train/loss"].iloc[-1] < 0.6 * math.log(11)
    ind = res.records[res.records.in_distribution]
    assert ind.token_accuracy.mean() > 0.3  # well above chance over 10 digits + eos


@pytest.mark.parametrize("pos_encoding", ["rope", "ape"])
def test_length_buckets_give_the_full_batch_loss_and_gradient(smoke_cfg, pos_encoding):
    import dataclasses

    import torch

    from lengen.data import IGNORE, TrainStream
    from lengen.system import system_from_run

    run = smoke_cfg.run("arith_carry", pos_encoding, 0)
    offsets = run.model.max_seq_len if pos_encoding == "ape" else None
    batch = TrainStream(run.group, 32, 0, smoke_cfg.data.holdout_modulus, offsets).batch(3)
    assert (batch["labels"][:, -1] == IGNORE).any()  # rows of different lengths: there is padding to cut

    def loss_and_grads(k):
        torch.manual_seed(0)
        system = system_from_run(dataclasses.replace(run, train=dataclasses.replace(run.train, length_buckets=k)))
        loss = system.training_step(batch, 0)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in system.model.parameters()]

    loss1, grads1 = loss_and_grads(1)
    for k in (2, 5):
        loss_k, grads_k = loss_and_grads(k)
        torch.testing.assert_close(loss_k, loss1, rtol=1e-5, atol=1e-6)
        for g_k, g1 in zip(grads_k, grads1):
            torch.testing.assert_close(g_k, g1, rtol=1e-4, atol=1e-6)


def test_cpu_id_reads_the_first_processor(tmp_path):
    from lengen.train import _cpu_id

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                    "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\n")
    assert _cpu_id(str(info)) == "family 26 model 2"
    info.write_text("processor\t: 0\nmodel name\t: Some ARM core\n")
    assert _cpu_id(str(info)) is None
    assert _cpu_id(str(tmp_path / "missing")) is None


def test_float_path_names_the_kernel_caps_set(monkeypatch):
    from lengen.train import FLOAT_PATH_ENV, float_path

    for k in FLOAT_PATH_ENV:
        monkeypatch.delenv(k, raising=False)
    assert float_path() == {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert float_path() == {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
