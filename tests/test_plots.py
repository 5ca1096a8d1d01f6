"""Every figure of lengen.plots is drawn from synthetic records and tables (no training), and saved once
through the one ``save``. The head-analysis figures are drawn in tests/test_heads.py on the driver's records."""

import dataclasses

import matplotlib
import numpy as np
import pandas as pd
import pytest

from lengen import analysis, finetune
from lengen.config import load_config
from lengen.paths import PROFILES_DIR
from lengen.plots import formal as formal_plots
from lengen.plots import pretrained as pretrained_plots
from lengen.plots import runs as run_plots
from lengen.plots import save
from lengen.records import RECORD_FIELDS

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def cfg():
    return load_config(PROFILES_DIR / "smoke.yaml")


def records_of(run_id, group_name, group, pos_encoding, seed, steps=(10, 20)):
    """Tidy records of one run: exact match falls with the length and rises with the step."""
    rows = []
    for k, step in enumerate(steps):
        for task in group.tasks:
            for length in range(1, group.eval_max + 1):
                acc = float(np.clip(1.2 - length / (group.tasks[task] + 1) + 0.1 * k, 0, 1))
                rows.append(
                    dict(
                        run_id=run_id,
                        group=group_name,
                        task=task,
                        role=group.role(task),
                        length=length,
                        in_distribution=length <= group.tasks[task],
                        n=8,
                        exact_match=acc,
                        token_accuracy=acc,
                        step=step,
                        seed=seed,
                        pos_encoding=pos_encoding,
                    )
                )
    return rows


@pytest.fixture(scope="module")
def run_records(cfg):
    rows = [
        r
        for run in cfg.all_runs()
        for r in records_of(run.run_id, run.group_name, run.group, run.pos_encoding, run.seed)
    ]
    return pd.DataFrame(rows)[list(RECORD_FIELDS)]


def test_save_writes_one_png_and_returns_its_path(tmp_path):
    fig = matplotlib.figure.Figure()
    fig.add_subplot().plot([0, 1])
    p = save(fig, "a", tmp_path / "figures")
    assert p == str(tmp_path / "figures" / "a.png") and (tmp_path / "figures" / "a.png").stat().st_size > 0


def test_run_figures(cfg, run_records, tmp_path):
    summary = analysis.run_summary(run_records, cfg)
    figs = {
        f"transfer_{g}_{pe}": run_plots.plot_transfer(run_records, cfg, g, pe)
        for g, pe in analysis.transfer_panels(cfg)
    }
    run_id = run_records.run_id.iloc[0]
    figs["run"] = run_plots.plot_run(run_records, cfg, run_id)
    figs["ranges"] = run_plots.plot_ranges(analysis.length_ranges(run_records, cfg))
    figs["gaps"] = run_plots.plot_gaps(summary, list(dict.fromkeys(g for g, _ in analysis.transfer_panels(cfg))))
    ours, paper, text = analysis.grid_report(summary, cfg)
    assert ours.notna().all().all() and text.count("main ≤") == ours.size  # the smoke profile runs every cell
    figs["grid"] = run_plots.plot_grid(ours, paper)
    for name, fig in figs.items():
        save(fig, name, tmp_path)
        assert all(ax.get_xlabel() or ax.get_ylabel() or not ax.has_data() for ax in fig.axes), name
    assert len(list(tmp_path.glob("*.png"))) == len(figs)


def test_formal_figure_frames_disagreements():
    table = pd.DataFrame(
        [
            dict(
                task="parity", pos_encoding="ape", predicted=False, agree=True, **{"acc ≤50": 1.0, "acc 101–150": 0.1}
            ),
            dict(task="sort", pos_encoding="ape", predicted=True, agree=False, **{"acc ≤50": 1.0, "acc 101–150": 0.3}),
            dict(
                task="parity", pos_encoding="nope", predicted=False, agree=True, **{"acc ≤50": 0.9, "acc 101–150": 0.0}
            ),
            dict(task="sort", pos_encoding="nope", predicted=True, agree=True, **{"acc ≤50": 1.0, "acc 101–150": 0.95}),
        ]
    )
    fig = formal_plots.plot_predicted_vs_observed(table)
    ape, nope = fig.axes[:2]
    assert len(ape.patches) == 1 and len(nope.patches) == 0  # one red frame: sort under APE
    assert [t.get_text() for t in ape.get_yticklabels()] == ["parity ✗", "sort ✓"]


def test_pretrained_figures(cfg, tmp_path):
    cfg = dataclasses.replace(cfg, pretrained=dataclasses.replace(cfg.pretrained, seeds=[0, 1]))  # every seed drawn
    runs = finetune.stage_runs(cfg)
    rows = [
        r
        for run in runs
        for r in records_of(
            run.run_id, run.group_name, run.group, run.pos_encoding, run.seed, steps=(0,) if run.zero_shot else (5, 10)
        )
    ]
    records = pd.DataFrame(rows)[list(RECORD_FIELDS)]
    losses = pd.DataFrame(
        [
            dict(
                run_id=run.run_id,
                fine_tune=f"{run.group_name}-{run.init}",
                seed=run.seed,
                step=k + 1,
                loss=2.0 / (k + 1),
            )
            for run in runs
            if not run.zero_shot
            for k in range(3)
        ],
        columns=list(finetune.LOSS_COLUMNS),
    )
    figs = [
        pretrained_plots.plot_init_comparison(records, cfg),
        pretrained_plots.plot_aux_comparison(records, cfg),
        pretrained_plots.plot_losses(losses),
    ]
    for k, fig in enumerate(figs):
        assert fig.axes and all(ax.has_data() for ax in fig.axes)
        save(fig, f"pretrained_{k}", tmp_path / "figures")
    assert len(list((tmp_path / "figures").glob("*.png"))) == 3
