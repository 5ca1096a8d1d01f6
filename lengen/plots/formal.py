"""Figures of the formal framework (stage ``formal``), from the predicted-vs-observed table of
:mod:`lengen.formal.report`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lengen.formal.programs import FRAGMENTS

# The figure's caption, one string for the report that draws it (06) and the one that shows it again (05).
CAPTION = (
    "accuracy % per length bin (the first is the training range) of every task under APE and NoPE, mean over the "
    "selected configuration's seeds that fit the training bin; each row labelled with the paper's prediction "
    "(✓ expressible, ✗ not), a red frame where the observation disagrees"
)


def plot_predicted_vs_observed(table: pd.DataFrame):
    """Heat maps of our accuracy per length bin (one panel per positional encoding), tasks as rows labelled
    with the prediction (✓ program found, ✗ none); a red frame marks a disagreement between prediction
    and observation."""
    bins = [c[4:] for c in table.columns if c.startswith("acc ")]
    pes = list(dict.fromkeys(table.pos_encoding))
    tasks = list(dict.fromkeys(table.task))
    fig, axes = plt.subplots(1, len(pes), figsize=(3.2 * len(pes) + 2.5, 0.32 * len(tasks) + 1.6), squeeze=False)
    for ax, pe in zip(axes[0], pes):
        t = table[table.pos_encoding == pe].set_index("task").reindex(tasks)
        acc = t[[f"acc {b}" for b in bins]].astype(float)
        labels = [f"{x} {'✓' if p else '✗'}" for x, p in zip(tasks, t.predicted.fillna(False))]
        sns.heatmap(
            acc.to_numpy(),
            vmin=0,
            vmax=1,
            cmap="viridis",
            cbar=False,
            annot=100 * acc.to_numpy(),
            fmt=".0f",
            annot_kws={"fontsize": 7},
            xticklabels=bins,
            yticklabels=labels,
            ax=ax,
        )
        for i in range(len(tasks)):
            if t.agree.iloc[i] is False or t.agree.iloc[i] == 0:
                ax.add_patch(plt.Rectangle((0, i), len(bins), 1, fill=False, ec="red", lw=1.5))
        ax.tick_params(labelsize=8)
        ax.tick_params(axis="y", rotation=0)
        ax.grid(False)  # a missing bin stays blank, not crossed by the style's grid
        ax.set_title(f"{pe.upper()} — {FRAGMENTS[pe]}", fontsize=9)
        ax.set_xlabel("length bin (accuracy %)", fontsize=8)
        ax.set_ylabel("task (✓ = C-RASP program found)" if ax is axes[0, 0] else "", fontsize=8)
    fig.suptitle("Predicted (✓ = C-RASP program found) vs observed; red = disagreement", fontsize=10)
    fig.tight_layout()
    return fig
