"""The tidy records store: loading, each run's last evaluation, the per-run summary, the gap."""

import doctest
from types import SimpleNamespace

import pandas as pd
import pytest

from lengen import records
from lengen.config import GroupConfig
from lengen.records import RECORD_FIELDS, final_records, generalization_gap, group_gap, load_records, summarize


def test_doctests():
    assert doctest.testmod(records).failed == 0


def test_gap_bounds_and_normalization():
    ones = dict.fromkeys(range(1, 11), 1.0)
    zeros = dict.fromkeys(range(1, 11), 0.0)
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

    def rec(task, accs):
        return [dict(task=task, length=n, exact_match=a, step=10) for n, a in zip((1, 2, 3, 4), accs)]

    records = rec("reverse_add", [1, 1, 1, 1]) + rec("no_carry", [1, 1, 1, 1]) + rec("carry_only", [1, 1, 0, 0])
    # aux mean: 1, 1, .5, .5 -> |diff| 0, 0, .5, .5 -> trapezoid area .25 + .5 = .75 over span 3
    assert group_gap(records, group) == pytest.approx(0.25)


def _rows(run_id: str, task: str, role: str, accs: dict[int, float], step: int) -> list[dict]:
    return [
        dict(
            run_id=run_id,
            group="g",
            task=task,
            role=role,
            length=n,
            in_distribution=n <= 2,
            n=10,
            exact_match=a,
            token_accuracy=a,
            step=step,
            seed=0,
            pos_encoding="rope",
        )
        for n, a in accs.items()
    ]


def test_summarize_reads_the_last_step_per_range_and_the_gap():
    group = GroupConfig(main={"reverse_add": 2}, aux={"no_carry": 4}, eval_max=6)
    run = SimpleNamespace(run_id="g-rope-s0", group_name="g", group=group, pos_encoding="rope", seed=0)
    early = _rows(run.run_id, "reverse_add", "main", dict.fromkeys(range(1, 7), 0.0), step=10)
    main = _rows(run.run_id, "reverse_add", "main", {1: 1, 2: 1, 3: 0.5, 4: 0.5, 5: 0, 6: 0}, step=20)
    aux = _rows(run.run_id, "no_carry", "aux", {1: 1, 2: 1, 3: 1, 4: 1, 5: 0.5, 6: 0.5}, step=20)
    df = pd.DataFrame(early + main + aux)
    m = summarize(df, run)
    assert m["step"] == 20 and m["run_id"] == "g-rope-s0"
    # ranges: in-distribution <= 2, transfer (2, 4], beyond > 4
    assert (m["main/in-distribution"], m["main/transfer"], m["main/beyond"]) == (1.0, 0.5, 0.0)
    assert m["aux/no_carry/in-distribution"] == 1.0
    assert m["generalization_gap"] == pytest.approx(group_gap(df[df.step == 20].to_dict("records"), group))


def test_load_records_concatenates_runs_and_refuses_a_missing_one(tmp_path):
    for run_id, step in (("a", 5), ("b", 7)):
        pd.DataFrame(_rows(run_id, "copy", "main", {1: 1.0, 2: 0.5}, step))[list(RECORD_FIELDS)].to_csv(
            tmp_path / f"{run_id}.csv", index=False
        )
    df = load_records(["a", "b"], tmp_path)
    assert list(df.columns) == list(RECORD_FIELDS) and len(df) == 4
    assert list(load_records([], tmp_path).columns) == list(RECORD_FIELDS)
    with pytest.raises(FileNotFoundError, match=r"\['c'\]"):
        load_records(["a", "c"], tmp_path)


def test_final_records_keeps_each_runs_last_step():
    df = pd.DataFrame(
        _rows("a", "copy", "main", {1: 0.0}, 5)
        + _rows("a", "copy", "main", {1: 1.0}, 9)
        + _rows("b", "copy", "main", {1: 0.5}, 7)
    )
    assert sorted(zip(final_records(df).run_id, final_records(df).step)) == [("a", 9), ("b", 7)]
