"""Analysis of the training runs (stage ``figures``): tables and findings from the tidy per-length records,
never from models in memory.

Every function takes the records DataFrame (``lengen.records.load_records``) or a table made from it, and
the config, so every number can be recomputed from the files DVC tracks. The figures drawn from these
tables are in :mod:`lengen.plots.runs`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from lengen import paths
from lengen.config import Config
from lengen.records import final_records, summarize

# ---------------------------------------------------------------------------------------------
# Names in words: group labels, the paper's figure per group, captions

# The paper's figure of each group (its Fig. 3a-8; "far queries" is our maze variant of Fig. 6 / 7).
PAPER_FIGURES = {
    "arith_carry": "3a",
    "arith_sub": "3b",
    "arith_mul": "3c",
    "add_alone": "3d",
    "copy_mqar": "4a",
    "copy_alone": "4b",
    "caprev": "4c",
    "caprev_alone": "4d",
    "dfs_sp": "6",
    "sp_dfs": "7",
    "dfs_far_sp": "6, far queries",
    "sp_far_dfs": "7, far queries",
    "arith_control": "8",
    "copy_control": "8",
}
TASK_NAMES = {
    "capitalize_reverse": "capitalize-reverse",
    "copy_first_op": "copy-first-op",
    "dfs_trace": "DFS trace",
    "cot_multiply": "n×3 CoT multiply",
    "mqar": "MQAR",
    "bin_majority": "binary majority",
}
POS_ENCODING_NAMES = {"rope": "RoPE", "nope": "NoPE", "ape": "APE"}
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def task_name(task: str) -> str:
    """A task in words: 'reverse add', 'shortest path (far)', 'DFS trace'."""
    far = task.endswith("_far")
    base = task.removesuffix("_far")
    return TASK_NAMES.get(base, base.replace("_", " ")) + (" (far)" if far else "")


def group_label(group) -> str:
    """A group in words, as the paper's captions: 'reverse add ≤ 8 ← no carry + carry only ≤ 16'."""
    main = f"{task_name(group.main_task)} ≤ {group.main_max}"
    if not group.aux:
        return f"{main} alone"
    by_length: dict[int, list[str]] = {}
    for t, n in group.aux.items():
        by_length.setdefault(n, []).append(task_name(t))
    return f"{main} ← " + " + ".join(f"{' + '.join(ts)} ≤ {n}" for n, ts in by_length.items())


def seeds_in_words(n: int) -> str:
    """'five seeds', 'one seed'."""
    word = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    return f"{word} seed{'s' if n != 1 else ''}"


def transfer_captions(summary: pd.DataFrame, cfg: Config, number: int = 1) -> dict[tuple[str, str], str]:
    """Caption of each transfer panel (:func:`transfer_panels`), numbered Fig. {number}a, b, ... like the paper's:
    'Fig. 1a — reverse add ≤ 8 ← no carry + carry only ≤ 16, five seeds, RoPE (paper Fig. 3a)'."""
    out = {}
    for k, (g, pe) in enumerate(transfer_panels(cfg)):
        n = len(summary[(summary.group == g) & (summary.pos_encoding == pe)]) if len(summary) else 0
        letter = chr(ord("a") + k) if k < 26 else str(k + 1)
        paper = f" (paper Fig. {PAPER_FIGURES[g]})" if g in PAPER_FIGURES else ""
        out[(g, pe)] = (
            f"Fig. {number}{letter} — {group_label(cfg.group(g))}, {seeds_in_words(n)}, "
            f"{POS_ENCODING_NAMES.get(pe, pe)}{paper}"
        )
    return out


def transfer_curves(records: pd.DataFrame, cfg: Config, group: str, pos_encoding: str) -> pd.DataFrame:
    """Final exact match vs length for the group's tasks and its baseline's main task, labelled."""
    g = cfg.group(group)
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


def transfer_panels(cfg: Config) -> list[tuple[str, str]]:
    """(group, position encoding) of every experiment and ablation run with auxiliaries, once each."""
    return list(dict.fromkeys((r.group_name, r.pos_encoding) for r in cfg.runs() + cfg.ablation_runs() if r.group.aux))


SUMMARY_COLUMNS = ("run_id", "group", "pos_encoding", "seed", "with_aux", "main_in_dist", "main_transfer")
SUMMARY_COLUMNS += ("main_beyond", "gap")  # one row per run (run_summary)


def run_summary(records: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """One row per run: main-task exact match in-distribution, in the transfer range, beyond; gap
    (the same numbers as each run's metrics file, from :func:`lengen.records.summarize`)."""
    rows = []
    for run_id, df in records.groupby("run_id"):
        first = df.iloc[0]
        m = summarize(df, cfg.run(first.group, first.pos_encoding, int(first.seed)))
        rows.append(
            dict(
                run_id=run_id,
                group=first.group,
                pos_encoding=first.pos_encoding,
                seed=int(first.seed),
                with_aux=bool(cfg.group(first.group).aux),
                main_in_dist=m["main/in-distribution"],
                main_transfer=m["main/transfer"],
                main_beyond=m["main/beyond"],
                gap=m.get("generalization_gap", np.nan),
            )
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def transfer_table(summary: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Per group with auxiliaries: mean ± sd over seeds of the main task's transfer-range accuracy,
    beside its baseline's, and the generalization gap."""
    out = []
    defined = summary.group.isin(list(cfg.groups))  # grid cells have their own figure
    for (gname, pe), df in summary[summary.with_aux & defined].groupby(["group", "pos_encoding"]):
        base = summary[(summary.group == cfg.group(gname).baseline) & (summary.pos_encoding == pe)]
        out.append(
            dict(
                group=gname,
                pos_encoding=pe,
                seeds=len(df),
                transfer_mean=df.main_transfer.mean(),
                transfer_sd=df.main_transfer.std(ddof=0),
                transfer_best=df.main_transfer.max(),
                baseline_mean=base.main_transfer.mean() if len(base) else np.nan,
                gap_mean=df.gap.mean(),
                gap_sd=df.gap.std(ddof=0),
            )
        )
    return pd.DataFrame(out)


def write_summary(table: pd.DataFrame, cfg: Config) -> str:
    """The per-group transfer table as ``reports/summary.json`` (the figures stage's DVC metric)."""
    p = paths.REPORTS_DIR / "summary.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    summary = {"profile": cfg.profile, "groups": table.to_dict("records")}
    p.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return str(p.relative_to(paths.PROJ_ROOT))


def length_ranges(records: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Main-task exact match per run and step, averaged within in-distribution (≤L), transfer
    (L, max(aux L, 2L)] and beyond ranges (the paper's Fig. 11 view of checkpoint instability)."""
    out = []
    for (run_id, step), df in records.groupby(["run_id", "step"]):
        g = cfg.group(df.group.iloc[0])
        m = df[df.task == g.main_task]
        for name, acc in m.groupby(m.length.map(g.length_range)).exact_match.mean().items():
            out.append(
                dict(
                    run_id=run_id,
                    group=df.group.iloc[0],
                    seed=int(df.seed.iloc[0]),
                    step=int(step),
                    range=name,
                    exact_match=float(acc),
                )
            )
    return pd.DataFrame(out)


def describe_transfer(table: pd.DataFrame) -> str:
    """Markdown sentences with the measured numbers, one per group (for the notebooks' findings)."""
    lines = []
    for r in table.itertuples():
        alone = "no run alone" if pd.isna(r.baseline_mean) else f"{r.baseline_mean:.2f} alone"
        lines.append(
            f"- **{r.group}** ({r.pos_encoding}, {r.seeds} seed(s)): main task in the transfer range "
            f"{r.transfer_mean:.2f} ± {r.transfer_sd:.2f} (best seed {r.transfer_best:.2f}) with auxiliaries vs "
            f"{alone}; generalization gap {r.gap_mean:.2f} ± {r.gap_sd:.2f}."
        )
    return "\n".join(lines) if lines else "_No group with auxiliaries was run._"


def describe_ranges(ranges: pd.DataFrame) -> str:
    """Markdown, one line per run with a transfer range: the main task's transfer-range accuracy at
    its worst and best checkpoint and at the last one (how unstable it is across checkpoints)."""
    lines = []
    tr = ranges[ranges.range == "transfer"].sort_values("step")
    for (group, seed), df in tr.groupby(["group", "seed"]):
        best = df.loc[df.exact_match.idxmax()]
        lines.append(
            f"- **{group}** seed {seed}: transfer range {df.exact_match.min():.2f}–{best.exact_match:.2f} "
            f"over {len(df)} checkpoints (best at step {int(best.step)}), {df.exact_match.iloc[-1]:.2f} "
            f"at the last (step {int(df.step.iloc[-1])})."
        )
    return "\n".join(lines) if lines else "_No run evaluated a transfer range._"


def checkpoint_selection(ranges: pd.DataFrame) -> pd.DataFrame:
    """Per run with a transfer range: the main task's transfer-range accuracy at the last checkpoint,
    at the checkpoint a practitioner could pick without seeing longer inputs (best in-distribution
    accuracy, ties to the latest), and at the best checkpoint in hindsight (an upper bound that peeks
    at the transfer range, so it is no result, only the headroom selection could have)."""
    rows = []
    for (run_id, group, seed), df in ranges.groupby(["run_id", "group", "seed"]):
        wide = df.pivot(index="step", columns="range", values="exact_match").sort_index()
        if "transfer" not in wide or "in-distribution" not in wide:
            continue
        ind, tr = wide["in-distribution"], wide["transfer"]
        picked = ind[ind == ind.max()].index[-1]
        rows.append(
            dict(
                run_id=run_id,
                group=group,
                seed=int(seed),
                last_step=int(tr.index[-1]),
                transfer_last=float(tr.iloc[-1]),
                selected_step=int(picked),
                selected_in_dist=float(ind[picked]),
                transfer_selected=float(tr[picked]),
                hindsight_step=int(tr.idxmax()),
                transfer_hindsight=float(tr.max()),
            )
        )
    return pd.DataFrame(rows)


def describe_selection(selection: pd.DataFrame) -> str:
    """Markdown, one line per group: mean transfer over seeds at the last checkpoint vs the one picked
    on in-distribution accuracy (and the hindsight bound), so a reader sees whether selection helps."""
    lines = []
    for group, df in selection.groupby("group") if len(selection) else []:
        lines.append(
            f"- **{group}** ({len(df)} seed(s)): transfer {df.transfer_last.mean():.2f} at the last "
            f"checkpoint, {df.transfer_selected.mean():.2f} at the one with the best in-distribution "
            f"accuracy (steps {', '.join(str(s) for s in df.selected_step)}); best in hindsight "
            f"{df.transfer_hindsight.mean():.2f}."
        )
    return "\n".join(lines) if lines else "_No run evaluated both an in-distribution and a transfer range._"


# ---------------------------------------------------------------------------------------------
# Ablations: generalization gaps per group (RoPE vs NoPE, one vs two auxiliaries, controls)


def describe_gaps(summary: pd.DataFrame, groups: list[str]) -> str:
    """Markdown: the mean ± sd gap of each (group, position encoding), for the ablation figure."""
    df = summary[summary.group.isin(groups) & summary.gap.notna()]
    lines = [
        f"- **{g}** ({pe}, {len(d)} seed(s)): gap {d.gap.mean():.2f} ± {d.gap.std(ddof=0):.2f}"
        for (g, pe), d in df.groupby(["group", "pos_encoding"])
    ]
    return "\n".join(lines) if lines else "_No ablation runs in this profile._"


# ---------------------------------------------------------------------------------------------
# The length-ratio grid (paper Fig. 10)

# The paper's heat map (reverse add <- no carry + carry only, mean of 3 seeds): gap[main][aux].
PAPER_GRID_GAP = {
    256: {4: 0.91, 8: 0.94, 16: 0.93, 32: 0.87, 64: 0.63, 128: 0.20, 256: 0.00},
    128: {4: 0.94, 8: 0.95, 16: 0.91, 32: 0.36, 64: 0.04, 128: 0.00, 256: 0.34},
    64: {4: 0.95, 8: 0.87, 16: 0.72, 32: 0.09, 64: 0.00, 128: 0.04, 256: 0.66},
    32: {4: 0.90, 8: 0.72, 16: 0.15, 32: 0.00, 64: 0.16, 128: 0.34, 256: 0.87},
    16: {4: 0.60, 8: 0.03, 16: 0.00, 32: 0.23, 64: 0.67, 128: 0.90, 256: 0.95},
    8: {4: 0.28, 8: 0.00, 16: 0.27, 32: 0.74, 64: 0.91, 128: 0.91, 256: 0.89},
    4: {4: 0.00, 8: 0.41, 16: 0.65, 32: 0.78, 64: 0.78, 128: 0.78, 256: 0.75},
}


def grid_gaps(summary: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Mean generalization gap over seeds per grid cell: rows = main length (descending, as in the
    paper), columns = aux length; NaN for a cell not (yet) run."""
    g = cfg.grid
    rows = {}
    for m in g.main_lengths:
        rows[m] = {}
        for a in g.aux_lengths:
            cell = summary[(summary.group == g.name(m, a)) & (summary.pos_encoding == g.pos_encoding)]
            rows[m][a] = cell.gap.mean() if len(cell) else np.nan
    return pd.DataFrame(rows).T.sort_index(ascending=False).rename_axis(index="main length", columns="aux length")


def paper_grid(cfg: Config) -> pd.DataFrame:
    """The paper's gaps for the cells of this profile's grid (NaN where the paper has none)."""
    g = cfg.grid
    return (
        pd.DataFrame({m: {a: PAPER_GRID_GAP.get(m, {}).get(a, np.nan) for a in g.aux_lengths} for m in g.main_lengths})
        .T.sort_index(ascending=False)
        .rename_axis(index="main length", columns="aux length")
    )


def grid_report(summary: pd.DataFrame, cfg: Config) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str]:
    """The grid's gaps, measured and the paper's (``lengen.plots.runs.plot_grid`` draws them side by side),
    and their markdown; (None, None, a note) without a grid."""
    if cfg.grid is None:
        return None, None, "_No grid in this profile._"
    ours, paper = grid_gaps(summary, cfg), paper_grid(cfg)
    return ours, paper, describe_grid(ours, paper)


def describe_grid(ours: pd.DataFrame, paper: pd.DataFrame) -> str:
    """Markdown: measured vs paper gap for every grid cell that was run."""
    lines = []
    for m in ours.index:
        for a in ours.columns:
            if not np.isnan(ours.loc[m, a]):
                p = paper.loc[m, a]
                lines.append(
                    f"- main ≤{m}, aux ≤{a} (ratio {a / m:g}): gap {ours.loc[m, a]:.2f} "
                    f"(paper {'—' if np.isnan(p) else f'{p:.2f}'})"
                )
    return "\n".join(lines) if lines else "_No grid cell has been run._"
