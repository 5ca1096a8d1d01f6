"""Leak-free evaluation: no evaluation prompt of any task of a group is trained under any task of it.

Tasks of a group share prompt formats (a maze is posed to shortest_path_far and dfs_trace_far, whose DFS
trace contains the shortest path), so the partition must not depend on the task. These tests show that
a per-(task, prompt) partition leaks, that the prompt-only one does not, and that ``check_disjoint``
catches a leak and passes on every group of every profile.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

import lengen.data as data
from lengen.config import GroupConfig, load_config
from lengen.data import EvalExample, LeakError, TrainStream, check_disjoint, make_eval_set

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
PROFILES = sorted(PROFILES_DIR.glob("*.yaml"))
MODULUS, SEED = 10, 1234


def per_task_rule(task: str):
    """The old partition, per (task, prompt), as a prompt-only rule for one task (to monkeypatch)."""

    def heldout(prompt: str, modulus: int) -> bool:
        h = hashlib.blake2b(f"{task}\x00{prompt}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") % modulus == 0

    return heldout


def main_eval_prompts(lengths=range(2, 9), n=256) -> set[str]:
    """sp_far_dfs's main evaluation prompts at the lengths its auxiliary trains (2..8 nodes)."""
    return {e.prompt for l in lengths for e in make_eval_set("shortest_path_far", l, n, SEED, MODULUS)}


def aux_train_prompts(n_batches: int) -> set[str]:
    """Prompts of the first batches of sp_far_dfs's auxiliary trained alone (DFS traces of <= 8 nodes)."""
    stream = TrainStream(GroupConfig(main={"dfs_trace_far": 8}, aux={}, eval_max=8), 64, SEED, MODULUS)
    return {ex.prompt for k in range(n_batches) for _, ex in stream.examples(k)[1]}


def test_a_per_task_partition_leaks_sp_far_dfs(monkeypatch):
    """The regression: with the partition keyed on the task, the auxiliary trains the main task's
    evaluation mazes (it did for 185 of 256 at 5 nodes over one cpu-profile stream)."""
    monkeypatch.setattr(data, "is_heldout", per_task_rule("shortest_path_far"))
    evaluated = main_eval_prompts()
    monkeypatch.setattr(data, "is_heldout", per_task_rule("dfs_trace_far"))
    assert len(evaluated & aux_train_prompts(60)) > 50  # 120 of 1282 in 60 batches


def test_the_prompt_partition_keeps_sp_far_dfs_eval_mazes_out_of_training():
    evaluated = main_eval_prompts()
    assert not evaluated & aux_train_prompts(60)
    # The group's own stream (main and auxiliary mixed), against the evaluation prompts of both tasks.
    group = load_config(PROFILES_DIR / "cpu.yaml").groups["sp_far_dfs"]
    evaluated |= {e.prompt for t, l in group.eval_keys(1) for e in make_eval_set(t, l, 64, SEED, MODULUS)}
    stream = TrainStream(group, 64, SEED, MODULUS)
    assert not evaluated & {ex.prompt for k in range(60) for _, ex in stream.examples(k)[1]}


def test_shared_prompts_are_evaluation_only_for_every_task():
    """copy_first_op poses reverse_add's prompts: the evaluation prompts of one are never trained as
    the other (length 1: the whole space is 100 prompts, so a per-task rule would collide at once)."""
    group = GroupConfig(main={"reverse_add": 1}, aux={"copy_first_op": 1}, eval_max=1)
    evaluated = {e.prompt for t in group.tasks for e in make_eval_set(t, 1, 64, SEED, MODULUS)}
    trained = {ex.prompt for k in range(20) for _, ex in TrainStream(group, 64, SEED, MODULUS).examples(k)[1]}
    assert not evaluated & trained and len(evaluated | trained) == 100


def test_check_raises_on_an_injected_eval_prompt():
    cfg = load_config(PROFILES_DIR / "smoke.yaml")
    sets = data.experiment_eval_sets(cfg)
    assert check_disjoint(cfg, sets, n_batches=5).collisions.sum() == 0
    run = next(r for r in cfg.all_runs() if r.group_name == "add_alone")
    stream = TrainStream(run.group, run.train.batch_size, cfg.data.seed, cfg.data.holdout_modulus)
    _, ex = stream.examples(3)[1][0]
    key = ("reverse_add", 2)
    sets[key] = sets[key] + [EvalExample(*key, ex.prompt, ex.target)]  # a trained prompt, evaluated
    with pytest.raises(LeakError, match=r"group 'add_alone'.*" + re.escape(repr(ex.prompt))) as info:
        check_disjoint(cfg, sets, n_batches=5)
    table = info.value.table.set_index("group")
    assert table.loc["add_alone", "collisions"] >= 1 and table.loc["arith_carry", "collisions"] >= 1
    check_disjoint(cfg, sets, n_batches=3)  # batch 3 is past the cap: not drawn, no leak


def test_check_raises_when_training_holds_out_nothing(monkeypatch):
    cfg = load_config(PROFILES_DIR / "smoke.yaml")
    sets = data.experiment_eval_sets(cfg)
    monkeypatch.setattr(data, "is_heldout", lambda prompt, modulus: False)  # the stream rejects nothing
    with pytest.raises(LeakError, match=r"trained as '(reverse_add|no_carry|carry_only)'"):
        check_disjoint(cfg, sets, n_batches=20)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_group_of_every_profile_is_leak_free(profile):
    """A few batches per group (the data stage checks whole streams), evaluation sets at n = 8."""
    cfg = load_config(profile)
    table = check_disjoint(cfg, n_batches=2, n_eval=8)
    assert sorted(table.group) == sorted({r.group_name for r in cfg.all_runs()})
    assert (table.collisions == 0).all() and (table.train_examples > 0).all() and (table.eval_prompts > 0).all()
