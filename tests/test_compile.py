"""Compiled training (``train.compile``): when ``auto`` compiles, and that a compiled run gives the eager
run's records within float noise; evaluation batched across sets scores as one batch per set.

Tolerance of the compiled-vs-eager comparison, fp32 on CPU: inductor fuses and reorders the same fp32
arithmetic (reductions of RMSNorm, softmax and the loss in other orders), so each step's loss differs from
eager's in the last bits (~1e-7 relative) and the difference grows through the optimizer's updates. Over a
tiny run (200 steps) the per-step losses stay within 1e-3 relative; the records (teacher-forced argmax per
position) may flip on a near-tie, so each record's exact match may differ by at most one example and its
token accuracy by at most two target tokens, and they agree on average within 1%.
"""

import dataclasses
import json

import lightning as L
import pytest
import torch

from lengen.config import load_config
from lengen.data import make_eval_sets
from lengen.engine import COMPILE_MIN_STEPS, RunSpec, resolve_compile
from lengen.evaluate import teacher_forced, teacher_forced_sets
from lengen.model import ModelConfig, Transformer
from lengen.paths import PROFILES_DIR
from lengen.train import run_spec, train_run


class Losses(L.Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def tiny_run(compile: str, precision: str = "32-true"):
    run = load_config(PROFILES_DIR / "smoke.yaml").run("arith_carry", "rope", 0)
    train = dataclasses.replace(
        run.train, steps=200, eval_every=100, precision=precision, threads=1, compile=compile, length_buckets=1
    )
    return dataclasses.replace(run, train=train)


def test_auto_compiles_only_long_runs_on_measured_cpus(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert resolve_compile("auto", "cpu", COMPILE_MIN_STEPS)
    assert not resolve_compile("auto", "cpu", COMPILE_MIN_STEPS - 1)  # too short to pay back the compile
    assert not resolve_compile("auto", "cuda", 10**6)  # unmeasured: eager
    assert resolve_compile("compiled", "cpu", 10) and not resolve_compile("eager", "cpu", 10**6)
    assert not resolve_compile("compiled", "cpu", 0)  # nothing to train: nothing to compile
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not resolve_compile("auto", "cpu", 10**6)


def test_compile_setting_is_checked_and_fingerprinted():
    with pytest.raises(ValueError, match="compile"):
        RunSpec("r", ".", {}, (), 0, 1, compile="yes")
    with pytest.raises(ValueError, match=r"train\.compile"):
        dataclasses.replace(tiny_run("auto").train, compile="yes")
    assert run_spec(tiny_run("compiled")).fingerprint != run_spec(tiny_run("eager")).fingerprint


def test_sets_batched_together_score_as_one_batch_per_set():
    group = load_config(PROFILES_DIR / "smoke.yaml").groups["arith_carry"]
    sets = make_eval_sets(group.eval_keys(1), 8, 1234, 10)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=155, n_layer=2, n_head=2, d_model=32, d_mlp=64, max_seq_len=48))
    batched = teacher_forced_sets(model.eval(), sets, batch_size=40)  # batches mix tasks and lengths
    for key, examples in sets.items():
        alone = teacher_forced(model, examples)
        assert (batched[key].exact == alone.exact).all()
        assert (batched[key].token_correct, batched[key].token_total) == (alone.token_correct, alone.token_total)


@pytest.mark.slow
def test_a_compiled_run_gives_the_eager_records(tmp_path):
    out, losses = {}, {}
    for mode in ("eager", "compiled"):
        cb = Losses()
        out[mode] = train_run(
            tiny_run(mode),
            runs_root=tmp_path / mode,
            reports_dir=tmp_path / f"rep-{mode}",
            progress=False,
            callbacks=[cb],
        )
        losses[mode] = torch.tensor(cb.losses)
        info = json.loads((out[mode].run_dir / "run.json").read_text())
        assert info["compile"] == {"setting": mode, "compiled": mode == "compiled"}
        assert info["provenance"]["float_path"]["compiled"] is (mode == "compiled")
    eager, comp = losses["eager"], losses["compiled"]
    assert len(eager) == len(comp) == 200 and eager[-1] < 0.8 * eager[0]  # it learned something
    torch.testing.assert_close(comp, eager, rtol=1e-3, atol=0)
    a, b = out["eager"].records, out["compiled"].records
    assert list(a[["task", "length", "step"]].itertuples(index=False)) == list(
        b[["task", "length", "step"]].itertuples(index=False)
    )
    d_exact = (a.exact_match - b.exact_match).abs()
    d_token = (a.token_accuracy - b.token_accuracy).abs()
    assert (d_exact <= 1 / a.n + 1e-12).all() and d_exact.mean() <= 0.01
    # two tokens of at least 2 n (every answer has a token and <eos>)
    assert (d_token <= 1 / a.n + 1e-12).all() and d_token.mean() <= 0.01
