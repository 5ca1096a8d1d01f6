"""Figures and tables drawn from the tidy per-length records (never from in-memory models).

Every function takes the records DataFrame (``lengen.train.load_records``) and the config, so a figure
can be redrawn from the files DVC tracks.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless under papermill; Jupyter still shows figures returned to a cell

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from lengen import paths  # noqa: E402
from lengen.config import Config  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def final_records(records: pd.DataFrame) -> pd.DataFrame:
    """Rows of each run's last evaluation (the full-size final evaluation)."""
    last = records.groupby("run_id").step.transform("max")
    return records[records.step == last]


def transfer_curves(records: pd.DataFrame, cfg: Config, group: str, pos_encoding: str) -> pd.DataFrame:
    """Final exact match vs length for the group's tasks and its baseline's main task, labelled."""
    g = cfg.groups[group]
    fin = final_records(records)
    parts = []
    mine = fin[(fin.group == group) & (fin.pos_encoding == pos_encoding)]
    for task in g.tasks:
        label = f"{task} (main, with aux)" if task == g.main_task else f"{task} (aux)"
        parts.append(mine[mine.task == task].assign(curve=label))
    if g.baseline:
        base = fin[(fin.group == g.baseline) & (fin.pos_encoding == pos_encoding) & (fin.task == g.main_task)]
        parts.append(base.assign(curve=f"{g.main_task} (main, alone)"))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def plot_transfer(records: pd.DataFrame, cfg: Config, group: str, pos_encoding: str, ax=None):
    """Accuracy vs length: every seed thin, the mean bold; training ranges shaded."""
    g = cfg.groups[group]
    data = transfer_curves(records, cfg, group, pos_encoding)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    L_main = g.tasks[g.main_task]
    L_aux = max(g.aux.values(), default=L_main)
    ax.axvspan(0.5, L_main + 0.5, color="tab:green", alpha=0.10, label=f"main trained (≤{L_main})")
    if g.aux:
        ax.axvspan(L_main + 0.5, L_aux + 0.5, color="tab:orange", alpha=0.07, label=f"aux trained (≤{L_aux})")
    if len(data):
        sns.lineplot(data=data, x="length", y="exact_match", hue="curve", units="seed", estimator=None,
                     lw=0.8, alpha=0.35, legend=False, ax=ax)
        sns.lineplot(data=data, x="length", y="exact_match", hue="curve", errorbar=None, lw=2.4, ax=ax)
    ax.set(title=f"{group} ({pos_encoding})", xlabel="length", ylabel="exact match", ylim=(-0.03, 1.03))
    ax.legend(fontsize=8, loc="best")
    return ax.figure


def run_summary(records: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """One row per run: main-task exact match in-distribution, in the transfer range, beyond; gap
    (the same numbers as each run's metrics file, from :func:`lengen.train.summarize`)."""
    from lengen.train import summarize

    rows = []
    for run_id, df in records.groupby("run_id"):
        first = df.iloc[0]
        m = summarize(df, cfg.run(first.group, first.pos_encoding, int(first.seed)))
        rows.append(dict(
            run_id=run_id, group=first.group, pos_encoding=first.pos_encoding, seed=int(first.seed),
            with_aux=bool(cfg.groups[first.group].aux), main_in_dist=m["main/in-distribution"],
            main_transfer=m["main/transfer"], main_beyond=m["main/beyond"],
            gap=m.get("generalization_gap", np.nan),
        ))
    return pd.DataFrame(rows)


def transfer_table(summary: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Per group with auxiliaries: mean ± sd over seeds of the main task's transfer-range accuracy,
    beside its baseline's, and the generalization gap."""
    out = []
    for (gname, pe), df in summary[summary.with_aux].groupby(["group", "pos_encoding"]):
        base = summary[(summary.group == cfg.groups[gname].baseline) & (summary.pos_encoding == pe)]
        out.append(dict(
            group=gname, pos_encoding=pe, seeds=len(df),
            transfer_mean=df.main_transfer.mean(), transfer_sd=df.main_transfer.std(ddof=0),
            transfer_best=df.main_transfer.max(),
            baseline_mean=base.main_transfer.mean() if len(base) else np.nan,
            gap_mean=df.gap.mean(), gap_sd=df.gap.std(ddof=0),
        ))
    return pd.DataFrame(out)


def save(fig, name: str) -> str:
    paths.FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    p = paths.FIGURES_DIR / f"{name}.png"
    fig.savefig(p, dpi=120, bbox_inches="tight")
    return str(p.relative_to(paths.PROJ_ROOT))


def plot_run(records: pd.DataFrame, cfg: Config, run_id: str):
    """One run: final exact match vs length per task (left) and main-task accuracy over checkpoints
    in its in-distribution / transfer / beyond ranges (right)."""
    df = records[records.run_id == run_id]
    g = cfg.groups[df.group.iloc[0]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    sns.lineplot(data=final_records(df), x="length", y="exact_match", hue="task", marker="o", ax=a1)
    for task, L in g.tasks.items():
        a1.axvline(L + 0.5, ls=":", c="gray")
    a1.set(title=f"{run_id}: final", ylim=(-0.03, 1.03), ylabel="exact match")
    sns.lineplot(data=length_ranges(df, cfg), x="step", y="exact_match", hue="range", marker="o", ax=a2)
    a2.set(title=f"{g.main_task}: accuracy across checkpoints", ylim=(-0.03, 1.03), ylabel="exact match")
    fig.tight_layout()
    return fig


def length_ranges(records: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Main-task exact match per run and step, averaged within in-distribution (≤L), transfer
    (L, max(aux L, 2L)] and beyond ranges (the paper's Fig. 11 view of checkpoint instability)."""
    out = []
    for (run_id, step), df in records.groupby(["run_id", "step"]):
        g = cfg.groups[df.group.iloc[0]]
        m = df[df.task == g.main_task]
        for name, acc in m.groupby(m.length.map(g.length_range)).exact_match.mean().items():
            out.append(dict(run_id=run_id, group=df.group.iloc[0], seed=int(df.seed.iloc[0]), step=int(step),
                            range=name, exact_match=float(acc)))
    return pd.DataFrame(out)


def describe_transfer(table: pd.DataFrame) -> str:
    """Markdown sentences with the measured numbers, one per group (for the notebooks' findings)."""
    lines = []
    for r in table.itertuples():
        lines.append(
            f"- **{r.group}** ({r.pos_encoding}, {r.seeds} seed(s)): main task in the transfer range "
            f"{r.transfer_mean:.2f} ± {r.transfer_sd:.2f} (best seed {r.transfer_best:.2f}) with auxiliaries vs "
            f"{r.baseline_mean:.2f} alone; generalization gap {r.gap_mean:.2f} ± {r.gap_sd:.2f}."
        )
    return "\n".join(lines) if lines else "_No group with auxiliaries was run._"


def plot_ranges(ranges: pd.DataFrame):
    """Main-task accuracy per length range across checkpoints, one panel per group, seeds as lines."""
    grid = sns.relplot(data=ranges, x="step", y="exact_match", hue="range", style="seed", col="group",
                       kind="line", marker="o", height=3.2, aspect=1.2, col_wrap=min(3, ranges.group.nunique()))
    grid.set(ylim=(-0.03, 1.03))
    return grid.figure
