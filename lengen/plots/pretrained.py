"""Figures of the pretrained comparison (stages ``pretrained`` and ``figures``), from the fine-tuning runs'
records and logs (:mod:`lengen.finetune`): every seed thin, the mean over seeds bold, as the main runs' figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lengen.analysis import seeds_in_words
from lengen.config import Config
from lengen.finetune import FinetuneRun, load_params, runs_of
from lengen.plots import EXACT_MATCH_LIM, shade_training
from lengen.records import final_records

# Each figure's caption, one string for the report that draws it (03) and the one that shows it again (05).
INIT_CAPTION = (
    "the main task's exact match per length after fine-tuning: the pretrained model vs the same architecture from "
    "scratch, with the pretrained model's zero-shot curve; every seed thin, the mean over seeds bold"
)
AUX_CAPTION = (
    "the pretrained model with the main task alone, with related auxiliaries and with the control (auxiliaries "
    "dashed); right: a task that should generalize on its own; every seed thin, the mean over seeds bold"
)


def main_curves(records: pd.DataFrame, runs: dict[str, list[FinetuneRun]], task: str) -> pd.DataFrame:
    """Final exact match vs length of ``task`` in each run, labelled: ``runs`` maps a label to its runs (one per
    seed)."""
    f = final_records(records)
    f = f[f.task == task]
    parts = [f[f.run_id.isin([r.run_id for r in rs])].assign(curve=label) for label, rs in runs.items()]
    return pd.concat(parts, ignore_index=True)


def seed_lines(data: pd.DataFrame, ax) -> None:
    """Exact match vs length per ``curve``: every seed thin, the mean over seeds bold (one colour per curve)."""
    kw = dict(data=data, x="length", y="exact_match", hue="curve", ax=ax)
    sns.lineplot(units="seed", estimator=None, lw=0.8, alpha=0.35, legend=False, **kw)
    sns.lineplot(errorbar=None, marker="o", lw=2.2, **kw)


def plot_init_comparison(records: pd.DataFrame, cfg: Config, ax=None):
    """Main-task exact match vs length: fine-tuned from the pretrained checkpoint vs from scratch
    (same steps, data, lr), with the pretrained model's zero-shot curve."""
    p = load_params(cfg)
    s = p.claims.scratch
    g = p.groups[s]
    data = main_curves(
        records,
        {
            "pretrained, fine-tuned": runs_of(cfg, s, "pretrained"),
            "scratch, fine-tuned": runs_of(cfg, s, "scratch"),
            "pretrained, zero-shot": runs_of(cfg, s, "zero_shot"),
        },
        g.main_task,
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    shade_training(ax, g.main_max)
    seed_lines(data, ax)
    ax.set(
        title=(
            f"{g.main_task} ≤{g.main_max}: pretrained vs scratch "
            f"({p.model}, {p.steps} steps, {seeds_in_words(len(p.seeds))})"
        ),
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
    with_aux = runs_of(cfg, c.related, "pretrained") + runs_of(cfg, c.control, "pretrained")
    data = main_curves(
        records,
        {
            "alone": runs_of(cfg, c.scratch, "pretrained"),
            f"+ {', '.join(rel.aux)}": runs_of(cfg, c.related, "pretrained"),
            f"+ {', '.join(ctl.aux)} (control)": runs_of(cfg, c.control, "pretrained"),
        },
        main,
    )
    shade_training(a1, rel.main_max, rel.transfer_max)
    seed_lines(data, a1)
    f = final_records(records)
    aux = f[f.run_id.isin([r.run_id for r in with_aux]) & (f.role == "aux")]
    if len(aux):  # the auxiliaries' mean over seeds, for reference
        sns.lineplot(
            data=aux,
            x="length",
            y="exact_match",
            hue="task",
            errorbar=None,
            ls="--",
            lw=1,
            alpha=0.6,
            palette="gray",
            ax=a1,
        )
    a1.set(
        title=f"pretrained: {main} ≤{rel.main_max} ± auxiliaries ({seeds_in_words(len(p.seeds))})",
        xlabel="length",
        ylabel="exact match",
        ylim=EXACT_MATCH_LIM,
    )
    a1.legend(fontsize=7)
    data = main_curves(
        records,
        {"fine-tuned": runs_of(cfg, c.alone, "pretrained"), "zero-shot": runs_of(cfg, c.alone, "zero_shot")},
        alone.main_task,
    )
    shade_training(a2, alone.main_max)
    seed_lines(data, a2)
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
    """Training loss per step of every run (log scale), one colour per fine-tune, one line per seed; ``losses``:
    ``lengen.finetune.load_losses``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=losses, x="step", y="loss", hue="fine_tune", units="seed", estimator=None, lw=1, ax=ax)
    ax.set(
        yscale="log",
        title="training loss (restricted-vocabulary cross-entropy)",
        xlabel="training step",
        ylabel="loss (log scale)",
    )
    return ax.figure
