"""Figures of the training runs (stages ``train`` and ``figures``), from their tidy records and the tables of
:mod:`lengen.analysis`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lengen.analysis import length_ranges, transfer_curves, transfer_panels
from lengen.config import Config
from lengen.plots import EXACT_MATCH_LIM, shade_training
from lengen.records import final_records


def plot_transfer(records: pd.DataFrame, cfg: Config, group: str, pos_encoding: str, ax=None):
    """Accuracy vs length: every seed thin, the mean bold; training ranges shaded."""
    g = cfg.group(group)
    data = transfer_curves(records, cfg, group, pos_encoding)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    shade_training(ax, g.main_max, max(g.aux.values(), default=None))
    if len(data):
        sns.lineplot(
            data=data,
            x="length",
            y="exact_match",
            hue="curve",
            units="seed",
            estimator=None,
            lw=0.8,
            alpha=0.35,
            legend=False,
            ax=ax,
        )
        sns.lineplot(data=data, x="length", y="exact_match", hue="curve", errorbar=None, lw=2.4, ax=ax)
    ax.set(title=f"{group} ({pos_encoding})", xlabel="length", ylabel="exact match", ylim=EXACT_MATCH_LIM)
    ax.legend(fontsize=8, loc="best")
    return ax.figure


def transfer_figures(records: pd.DataFrame, cfg: Config) -> dict[tuple[str, str], object]:
    """:func:`plot_transfer` of every transfer panel (:func:`lengen.analysis.transfer_panels`) that has records,
    keyed by (group, position encoding); the file name is ``transfer_<group>_<pe>``."""
    have = set(zip(records.group, records.pos_encoding))
    return {(g, pe): plot_transfer(records, cfg, g, pe) for g, pe in transfer_panels(cfg) if (g, pe) in have}


def plot_run(records: pd.DataFrame, cfg: Config, run_id: str):
    """One run: final exact match vs length per task (left) and main-task accuracy over checkpoints
    in its in-distribution / transfer / beyond ranges (right)."""
    df = records[records.run_id == run_id]
    g = cfg.group(df.group.iloc[0])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    sns.lineplot(data=final_records(df), x="length", y="exact_match", hue="task", marker="o", ax=a1)
    for length in g.tasks.values():
        a1.axvline(length + 0.5, ls=":", c="gray")
    a1.set(title=f"{run_id}: final", xlabel="length", ylabel="exact match", ylim=EXACT_MATCH_LIM)
    sns.lineplot(data=length_ranges(df, cfg), x="step", y="exact_match", hue="range", marker="o", ax=a2)
    a2.set(
        title=f"{g.main_task}: accuracy across checkpoints",
        xlabel="training step",
        ylabel="exact match",
        ylim=EXACT_MATCH_LIM,
    )
    fig.tight_layout()
    return fig


def plot_ranges(ranges: pd.DataFrame):
    """Main-task accuracy per length range across checkpoints, one panel per group, seeds as lines."""
    grid = sns.relplot(
        data=ranges,
        x="step",
        y="exact_match",
        hue="range",
        style="seed",
        col="group",
        kind="line",
        marker="o",
        height=3.2,
        aspect=1.2,
        col_wrap=min(3, ranges.group.nunique()),
    )
    grid.set(ylim=EXACT_MATCH_LIM, xlabel="training step", ylabel="exact match")
    return grid.figure


def plot_gaps(summary: pd.DataFrame, groups: list[str]):
    """Generalization gap per group and position encoding: bars = mean over seeds, dots = each seed."""
    df = summary[summary.group.isin(groups) & summary.gap.notna()]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * max(1, len(groups)), 3.6))
    if len(df):
        order = [g for g in groups if g in set(df.group)]
        sns.barplot(data=df, x="group", y="gap", hue="pos_encoding", order=order, errorbar=None, alpha=0.6, ax=ax)
        sns.stripplot(
            data=df,
            x="group",
            y="gap",
            hue="pos_encoding",
            order=order,
            dodge=True,
            legend=False,
            palette="dark:black",
            size=4,
            ax=ax,
        )
    ax.set(ylim=(0, 1), ylabel="generalization gap (0 = perfect transfer)", xlabel="task group")
    ax.tick_params(axis="x", rotation=30)
    return fig


def plot_grid(ours: pd.DataFrame, paper: pd.DataFrame):
    """Side-by-side heat maps of the generalization gap: this run's grid and the paper's (Fig. 10)."""
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.4 * ours.shape[1], 0.9 + 0.8 * ours.shape[0]))
    for ax, df, title in [(axes[0], ours, "measured"), (axes[1], paper, "paper (Fig. 10)")]:
        sns.heatmap(df.astype(float), annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis_r", cbar=False, ax=ax)
        ax.set(title=f"generalization gap, {title}", xlabel="auxiliary training length", ylabel="main training length")
    fig.tight_layout()
    return fig
