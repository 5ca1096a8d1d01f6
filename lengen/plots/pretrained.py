"""Figures of the pretrained comparison (stages ``pretrained`` and ``figures``), from the fine-tuning runs'
records and logs (:mod:`lengen.finetune`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lengen.config import Config
from lengen.finetune import load_params, zero_shot_id
from lengen.plots import EXACT_MATCH_LIM, shade_training
from lengen.records import final_records


def main_curves(records: pd.DataFrame, runs: dict[str, str], task: str) -> pd.DataFrame:
    """Final exact match vs length of ``task`` in each run, labelled: ``runs`` maps a label to a run id."""
    f = final_records(records)
    parts = [f[(f.run_id == rid) & (f.task == task)].assign(curve=label) for label, rid in runs.items()]
    return pd.concat(parts, ignore_index=True)


def plot_init_comparison(records: pd.DataFrame, cfg: Config, ax=None):
    """Main-task exact match vs length: fine-tuned from the pretrained checkpoint vs from scratch
    (same steps, data, lr), with the pretrained model's zero-shot curve."""
    p = load_params(cfg)
    g = p.groups[p.claims.scratch]
    data = main_curves(
        records,
        {
            "pretrained, fine-tuned": f"{p.claims.scratch}-pretrained",
            "scratch, fine-tuned": f"{p.claims.scratch}-scratch",
            "pretrained, zero-shot": zero_shot_id(cfg, g.main_task),
        },
        g.main_task,
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    shade_training(ax, g.main_max)
    sns.lineplot(data=data, x="length", y="exact_match", hue="curve", marker="o", ax=ax)
    ax.set(
        title=f"{g.main_task} ≤{g.main_max}: pretrained vs scratch ({p.model}, {p.steps} steps)",
        xlabel="length",
        ylabel="exact match",
        ylim=EXACT_MATCH_LIM,
    )
    ax.legend(fontsize=8)
    return ax.figure


def plot_aux_comparison(records: pd.DataFrame, cfg: Config):
    """Left: the pretrained model's main task alone, + related auxiliaries, + the control (auxiliary
    tasks dashed). Right: the task that should generalize on its own."""
    p = load_params(cfg)
    c = p.claims
    rel, ctl, alone = p.groups[c.related], p.groups[c.control], p.groups[c.alone]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.2))
    main = rel.main_task
    data = main_curves(
        records,
        {
            "alone": f"{c.scratch}-pretrained",
            f"+ {', '.join(rel.aux)}": f"{c.related}-pretrained",
            f"+ {', '.join(ctl.aux)} (control)": f"{c.control}-pretrained",
        },
        main,
    )
    shade_training(a1, rel.main_max, rel.transfer_max)
    sns.lineplot(data=data, x="length", y="exact_match", hue="curve", marker="o", lw=2.2, ax=a1)
    f = final_records(records)
    aux = f[((f.run_id == f"{c.related}-pretrained") | (f.run_id == f"{c.control}-pretrained")) & (f.role == "aux")]
    if len(aux):
        sns.lineplot(data=aux, x="length", y="exact_match", hue="task", ls="--", lw=1, alpha=0.6, palette="gray", ax=a1)
    a1.set(
        title=f"pretrained: {main} ≤{rel.main_max} ± auxiliaries",
        xlabel="length",
        ylabel="exact match",
        ylim=EXACT_MATCH_LIM,
    )
    a1.legend(fontsize=7)
    data = main_curves(
        records,
        {"fine-tuned": f"{c.alone}-pretrained", "zero-shot": zero_shot_id(cfg, alone.main_task)},
        alone.main_task,
    )
    shade_training(a2, alone.main_max)
    sns.lineplot(data=data, x="length", y="exact_match", hue="curve", marker="o", ax=a2)
    a2.set(
        title=f"pretrained: {alone.main_task} ≤{alone.main_max} alone",
        xlabel="length",
        ylabel="exact match",
        ylim=EXACT_MATCH_LIM,
    )
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_losses(losses: pd.DataFrame, ax=None):
    """Training loss per step of every run (log scale); ``losses``: run_id, step, loss
    (``lengen.finetune.load_losses``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=losses, x="step", y="loss", hue="run_id", lw=1, ax=ax)
    ax.set(
        yscale="log",
        title="training loss (restricted-vocabulary cross-entropy)",
        xlabel="training step",
        ylabel="loss (log scale)",
    )
    return ax.figure
