import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lengen.config import GroupConfig
from lengen.data import IGNORE, TrainStream, make_eval_set
from lengen.evaluate import (answer_position_accuracy, generalization_gap, greedy, group_gap, score_sets,
                             teacher_forced)
from lengen.model import ModelConfig, Transformer
from lengen.tokenizer import default_tokenizer


@pytest.fixture(scope="module")
def toy_model():
    """A small model trained briefly on copy (lengths ≤ 4): right on some examples, wrong on others."""
    torch.manual_seed(0)
    group = GroupConfig(main={"copy": 4}, aux={}, eval_max=8)
    model = Transformer(ModelConfig(vocab_size=len(default_tokenizer()), n_layer=2, n_head=2, d_model=64,
                                    d_mlp=128, max_seq_len=32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    stream = TrainStream(group, 32, seed=0, modulus=10)
    for k in range(250):
        b = stream.batch(k)
        loss = F.cross_entropy(model(b["input_ids"]).flatten(0, 1), b["labels"].flatten(), ignore_index=IGNORE)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), group


def test_teacher_forced_equals_greedy_on_trained_model(toy_model):
    model, _ = toy_model
    exact_tf, exact_gr = [], []
    for length in range(1, 9):
        exs = make_eval_set("copy", length, 48, seed=0, modulus=10)
        tf, gr = teacher_forced(model, exs, batch_size=20), greedy(model, exs, batch_size=20)
        np.testing.assert_array_equal(tf.exact, gr.exact)
        exact_tf.append(tf.exact)
    all_exact = np.concatenate(exact_tf)
    # The comparison is informative only if the model is right on some examples and wrong on others.
    assert 0.1 < all_exact.mean() < 0.9, all_exact.mean()


def test_score_sets_records(toy_model):
    model, group = toy_model
    sets = {("copy", l): make_eval_set("copy", l, 16, 0, 10) for l in (2, 6)}
    rows = score_sets(model, sets, run_id="r", group_name="g", group=group, step=7, seed=3, pos_encoding="rope")
    assert [(r["length"], r["in_distribution"], r["role"], r["n"], r["step"]) for r in rows] == \
        [(2, True, "main", 16, 7), (6, False, "main", 16, 7)]
    assert all(0 <= r["exact_match"] <= r["token_accuracy"] <= 1 for r in rows)


class NextTokenOracle:
    """Stand-in model whose argmax is the true next token, except at one answer position (if given)."""

    def __init__(self, wrong_at: int | None = None):
        self.tok, self.wrong_at = default_tokenizer(), wrong_at

    def __call__(self, x):
        pad, eos = self.tok.pad_id, self.tok.eos_id
        nxt = torch.cat([x[:, 1:], torch.full_like(x[:, :1], pad)], 1)
        pred = torch.where(nxt == pad, torch.full_like(x, eos), nxt)  # (B, T); eos follows the last input
        if self.wrong_at is not None:  # answer position 0 is predicted at the "=" token
            rows, t_eq = (x == self.tok.stoi["="]).nonzero(as_tuple=True)
            pred[rows, t_eq + self.wrong_at] = pad
        return torch.nn.functional.one_hot(pred, len(self.tok)).float()


def test_answer_position_accuracy_locates_the_wrong_position():
    exs = make_eval_set("reverse_add", 3, 12, 0, 10) + make_eval_set("reverse_add", 2, 5, 0, 10)
    acc, n = answer_position_accuracy(NextTokenOracle(), exs, batch_size=7)
    # length 3: 4 answer digits + eos; length 2: 3 digits + eos -> position 4 only for length 3
    np.testing.assert_array_equal(n, [17, 17, 17, 17, 12])
    np.testing.assert_array_equal(acc, np.ones(5))
    acc, _ = answer_position_accuracy(NextTokenOracle(wrong_at=2), exs, batch_size=7)
    np.testing.assert_array_equal(acc, [1, 1, 0, 1, 1])
    assert teacher_forced(NextTokenOracle(wrong_at=2), exs).exact_match == 0


def test_answer_position_accuracy_sums_to_token_accuracy(toy_model):
    model, _ = toy_model
    exs = make_eval_set("copy", 6, 40, seed=0, modulus=10)
    acc, n = answer_position_accuracy(model, exs, batch_size=16)
    assert (acc * n).sum() / n.sum() == pytest.approx(teacher_forced(model, exs).token_accuracy)
    assert acc.min() < 1  # informative only where the model errs somewhere


def test_gap_bounds_and_normalization():
    ones = {l: 1.0 for l in range(1, 11)}
    zeros = {l: 0.0 for l in range(1, 11)}
    assert generalization_gap(ones, ones) == 0
    assert generalization_gap(ones, zeros) == pytest.approx(1.0)
    half = {l: (1.0 if l <= 5 else 0.0) for l in range(1, 11)}
    g = generalization_gap(half, ones)
    assert 0.4 < g < 0.6
    # Normalized by span: a coarser grid over the same curves gives about the same value.
    coarse = [1, 3, 5, 6, 8, 10]
    assert generalization_gap(half, ones, coarse) == pytest.approx(g, abs=0.1)
    assert generalization_gap({3: 0.2}, {3: 0.7}) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="share no evaluated length"):
        generalization_gap({1: 1.0}, {2: 1.0})


def test_group_gap_uses_mean_of_auxiliaries():
    group = GroupConfig(main={"reverse_add": 2}, aux={"no_carry": 4, "carry_only": 4}, eval_max=4)
    rec = lambda task, accs: [dict(task=task, length=l, exact_match=a, step=10) for l, a in zip((1, 2, 3, 4), accs)]  # noqa: E731
    records = rec("reverse_add", [1, 1, 1, 1]) + rec("no_carry", [1, 1, 1, 1]) + rec("carry_only", [1, 1, 0, 0])
    # aux mean: 1, 1, .5, .5 -> |diff| 0, 0, .5, .5 -> trapezoid area .25 + .5 = .75 over span 3
    assert group_gap(records, group) == pytest.approx(0.25)


def test_auto_precision_is_bf16_only_where_bf16_is_native(monkeypatch):
    from lengen import evaluate as ev

    assert ev.resolve_precision("32-true") == "32-true" and ev.resolve_precision("bf16-mixed") == "bf16-mixed"
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(ev, "native_bf16", lambda device="cpu", n=native: n)
        assert ev.resolve_precision("auto") == expected
        ctx = ev.autocast_context("auto")
        assert isinstance(ctx, torch.autocast) == native  # evaluation scores as training runs


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    from lengen import evaluate as ev

    real_open = builtins.open
    for flags, expected in (("fpu avx2 fma", False), ("avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True)):
        (tmp_path / "cpuinfo").write_text(f"flags\t\t: {flags}\n")
        ev._cpu_native_bf16.cache_clear()  # read once per process: make it read this file
        monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(tmp_path / "cpuinfo" if p == "/proc/cpuinfo" else p, *a, **k))
        assert ev.native_bf16("cpu") is expected
    # A oneDNN ISA cap below bf16 (the AVX2 float path on an AVX-512 CPU) makes bf16 non-native again.
    for cap, expected in (("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True), ("ALL", True)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        ev._cpu_native_bf16.cache_clear()
        assert ev.native_bf16("cpu") is expected
    ev._cpu_native_bf16.cache_clear()
