"""Figures of the cross-paper study (notebook 07), from the runs' tidy records and :mod:`lengen.crosspaper`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lengen.analysis import POS_ENCODING_NAMES
from lengen.config import Config
from lengen.crosspaper import PES
from lengen.plots import EXACT_MATCH_LIM
from lengen.plots.runs import plot_transfer


def plot_encodings(summary: pd.DataFrame, cfg: Config, groups: list[str]):
    """Q1: the main task's transfer-range exact match per group and position encoding; left with its
    auxiliaries, right alone (the group's baseline). Bars: mean over seeds; dots: each seed."""
    base = {g: cfg.group(g).baseline for g in groups}
    df = summary[summary.group.isin(groups) | summary.group.isin(list(base.values()))].copy()
    df["panel"] = df.group.map(lambda g: "with auxiliaries" if g in base else "alone")
    df["group"] = df.group.map(lambda g: next((k for k, b in base.items() if b == g), g))  # baseline -> its group
    df["encoding"] = df.pos_encoding.map(POS_ENCODING_NAMES)
    order = [POS_ENCODING_NAMES[pe] for pe in PES if pe in set(df.pos_encoding)]
    fig, axes = plt.subplots(1, 2, figsize=(2.5 + 2.2 * max(1, len(groups)), 3.8), sharey=True)
    for ax, panel in zip(axes, ("with auxiliaries", "alone")):
        d = df[df.panel == panel]
        if len(d):
            kw = dict(data=d, x="group", y="main_transfer", hue="encoding", order=groups, hue_order=order, ax=ax)
            sns.barplot(**kw, errorbar=None, alpha=0.6)
            sns.stripplot(**kw, dodge=True, legend=False, palette="dark:black", size=4)
        ax.set(title=f"main task {panel}", xlabel="task group", ylabel="main task's exact match, transfer range")
        ax.set(ylim=EXACT_MATCH_LIM)
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def plot_rescue(records: pd.DataFrame, cfg: Config, groups: list[str], pos_encoding: str = "ape"):
    """Q2: accuracy vs length under APE of each group's main task with its auxiliaries, the auxiliaries, and
    the main task alone; one panel per group."""
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(5.5 * max(1, len(groups)), 3.8), squeeze=False)
    for ax, g in zip(axes[0], groups):
        plot_transfer(records, cfg, g, pos_encoding, ax=ax)
    fig.tight_layout()
    return fig
