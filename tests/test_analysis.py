"""The analysis of the training runs (lengen.analysis) computes its tables from the tidy records (the plots run in
the smoke pipeline and tests/test_plots.py)."""

import dataclasses
import math

import pandas as pd

from lengen import analysis
from lengen.config import load_config
from lengen.paths import PROFILES_DIR


def test_grid_gaps_average_seeds_per_cell_and_leave_missing_cells_empty():
    cfg = load_config(PROFILES_DIR / "cpu.yaml")
    # a 2x2 grid of its own, so the test does not depend on how many cells a profile runs
    g = dataclasses.replace(cfg.grid, main_lengths=[4, 8], aux_lengths=[4, 8])
    cfg = dataclasses.replace(cfg, grid=g)
    summary = pd.DataFrame(
        [
            dict(group=g.name(4, 8), pos_encoding=g.pos_encoding, seed=0, gap=0.2),
            dict(group=g.name(4, 8), pos_encoding=g.pos_encoding, seed=1, gap=0.4),
            dict(group=g.name(8, 4), pos_encoding=g.pos_encoding, seed=0, gap=0.9),
            dict(group=g.name(8, 4), pos_encoding="nope", seed=0, gap=0.0),  # other encoding: ignored
        ]
    )
    ours = analysis.grid_gaps(summary, cfg)
    assert list(ours.index) == sorted(g.main_lengths, reverse=True) and list(ours.columns) == g.aux_lengths
    assert math.isclose(ours.loc[4, 8], 0.3) and math.isclose(ours.loc[8, 4], 0.9)
    assert math.isnan(ours.loc[4, 4]) and math.isnan(ours.loc[8, 8])
    paper = analysis.paper_grid(cfg)
    assert paper.loc[8, 4] == 0.28 and paper.loc[4, 8] == 0.41  # the paper's Fig. 10 cells
    text = analysis.describe_grid(ours, paper)
    assert "main ≤4, aux ≤8 (ratio 2): gap 0.30 (paper 0.41)" in text and "aux ≤4 (ratio 1)" not in text


def test_describe_gaps_reports_mean_and_sd_per_group_and_encoding():
    summary = pd.DataFrame(
        [dict(group="a", pos_encoding="rope", seed=s, gap=v) for s, v in [(0, 0.1), (1, 0.3)]]
        + [dict(group="b", pos_encoding="rope", seed=0, gap=float("nan"))]
    )
    text = analysis.describe_gaps(summary, ["a", "b"])
    assert "**a** (rope, 2 seed(s)): gap 0.20 ± 0.10" in text and "**b**" not in text


def test_describe_ranges_names_worst_best_and_last_checkpoint():
    ranges = pd.DataFrame(
        [
            dict(group="g", seed=0, step=st, range="transfer", exact_match=v)
            for st, v in [(500, 0.1), (1000, 0.7), (1500, 0.3)]
        ]
        + [dict(group="g", seed=0, step=1000, range="in-distribution", exact_match=1.0)]
    )
    text = analysis.describe_ranges(ranges)
    assert text == (
        "- **g** seed 0: transfer range 0.10–0.70 over 3 checkpoints (best at step 1000), 0.30 at the last (step 1500)."
    )
    assert "No run" in analysis.describe_ranges(ranges[ranges.range != "transfer"])


def test_checkpoint_selection_picks_the_latest_best_in_distribution_checkpoint():
    rows = []
    for step, ind, tr in [(500, 0.5, 0.1), (1000, 1.0, 0.6), (1500, 0.9, 0.8), (2000, 1.0, 0.3)]:
        rows += [
            dict(run_id="r", group="g", seed=0, step=step, range="in-distribution", exact_match=ind),
            dict(run_id="r", group="g", seed=0, step=step, range="transfer", exact_match=tr),
        ]
    rows.append(dict(run_id="b", group="base", seed=0, step=500, range="in-distribution", exact_match=1.0))
    sel = analysis.checkpoint_selection(pd.DataFrame(rows))
    assert list(sel.run_id) == ["r"]  # a run without a transfer range is left out
    r = sel.iloc[0]
    # the tie at 1.0 (steps 1000 and 2000) goes to the later step; hindsight is the transfer peak
    assert (r.selected_step, r.transfer_selected) == (2000, 0.3)
    assert (r.last_step, r.transfer_last) == (2000, 0.3)
    assert (r.hindsight_step, r.transfer_hindsight) == (1500, 0.8)
    text = analysis.describe_selection(sel)
    assert text == (
        "- **g** (1 seed(s)): transfer 0.30 at the last checkpoint, 0.30 at the one with the best "
        "in-distribution accuracy (steps 2000); best in hindsight 0.80."
    )
    assert "No run" in analysis.describe_selection(sel.iloc[:0])
    assert "No run" in analysis.describe_selection(analysis.checkpoint_selection(pd.DataFrame(rows[-1:])))


def test_a_group_without_a_run_alone_says_so_instead_of_nan():
    row = dict(
        group="arith_carry", seeds=1, transfer_mean=0.5, transfer_sd=0.0, transfer_best=0.5, gap_mean=0.1, gap_sd=0.0
    )
    table = pd.DataFrame(
        [
            {**row, "pos_encoding": "ape", "baseline_mean": float("nan")},
            {**row, "pos_encoding": "rope", "baseline_mean": 0.0},
        ]
    )
    text = analysis.describe_transfer(table)
    assert "with auxiliaries vs no run alone;" in text and "with auxiliaries vs 0.00 alone;" in text
    assert "nan" not in text
