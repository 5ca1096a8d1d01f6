"""Figures of the head analysis (stage ``heads``), from its tidy records and tables (:mod:`lengen.heads`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lengen.heads import METRICS, HeadRecords, format_rho, head_grid

DROP_LABELS = {"ll_drop": "log-likelihood drop (nats/token)", "em_drop": "exact-match drop"}


def plot_ablation_maps(rec: HeadRecords, run_id: str, value: str = "ll_drop", n_steps: int = 3):
    """Mean-ablation maps (layers x heads, averaged over the analysed lengths) of every task of one run
    at up to ``n_steps`` checkpoints (first, middle, last): rows = tasks, columns = checkpoints."""
    df = rec.ablation[rec.ablation.run_id == run_id]
    steps = sorted(df.step.unique())
    steps = [steps[i] for i in sorted(set(np.round(np.linspace(0, len(steps) - 1, n_steps)).astype(int)))]
    tasks = list(df.sort_values("role", key=lambda r: r != "main").task.unique())  # main first
    vmax = max(float(df[value].abs().max()), 1e-9)
    fig, axes = plt.subplots(len(tasks), len(steps), figsize=(2.6 * len(steps) + 1, 2.3 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        for j, step in enumerate(steps):
            grid = head_grid(df[(df.task == task) & (df.step == step)], value)
            sns.heatmap(
                grid,
                ax=axes[i, j],
                vmin=-vmax,
                vmax=vmax,
                cmap="RdBu_r",
                annot=grid.size <= 36,
                fmt=".2f",
                cbar=j == len(steps) - 1,
                annot_kws={"fontsize": 7},
            )
            axes[i, j].set(title=f"{task} · step {step}", xlabel="head", ylabel="layer" if j == 0 else "")
    fig.suptitle(f"{run_id}: mean-ablation maps, {DROP_LABELS.get(value, value)}", y=1.0)
    fig.tight_layout()
    return fig


def plot_metric_vs_gap(
    points: pd.DataFrame, table: pd.DataFrame, metrics: tuple[str, ...] = ("attn_diff", "em_mad", "ll_mad")
):
    """Scatter of each metric against the gap, one row per (category, position encoding), with a fitted
    least-squares line and ρ [95% CI] in the title."""
    cells = list(points.groupby(["category", "pos_encoding"]))
    fig, axes = plt.subplots(
        max(len(cells), 1), len(metrics), figsize=(4 * len(metrics), 3.3 * max(len(cells), 1)), squeeze=False
    )
    for i, ((cat, pe), df) in enumerate(cells):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            for seed, s in df.groupby("seed"):
                ax.scatter(s[metric], s.gap, s=22, label=f"seed {seed}")
            ok = df[[metric, "gap"]].dropna()
            if len(ok) >= 2 and np.ptp(ok[metric]) > 0:
                slope, icpt = np.polyfit(ok[metric], ok.gap, 1)
                xs = np.linspace(ok[metric].min(), ok[metric].max(), 20)
                ax.plot(xs, slope * xs + icpt, c="k", lw=1)
            r = table[(table.category == cat) & (table.pos_encoding == pe) & (table.metric == metric)]
            if len(r):
                r = r.iloc[0]
                ax.set_title(f"{cat} ({pe}): {format_rho(r.rho, r.ci_low, r.ci_high, r.n_points)}", fontsize=9)
            ax.set_xlabel(METRICS[metric][2] if metric in METRICS else metric, fontsize=8)
            ax.set_ylabel("generalization gap" if j == 0 else "")
        axes[i, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def ablation_map_figures(rec: HeadRecords) -> dict:
    """Ablation-map figures of one run per analysed group, for both drops, keyed by file name."""
    return {
        f"maps_{run_id}_{value}": plot_ablation_maps(rec, run_id, value)
        for run_id in rec.checkpoints.drop_duplicates("group").run_id
        for value in DROP_LABELS
    }
