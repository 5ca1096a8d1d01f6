"""The cross-paper study (notebook 07): where transfer by association meets C-RASP expressibility.

Neither paper asks how its result meets the other's. Two questions, answered from the tidy records of the
profile's runs (the ``cross`` matrix under APE, beside the experiment's RoPE and the ablation's NoPE runs):

- **Q1** — does transfer by association survive the position encoding the formal theory is about? Per group
  of the ``cross`` section with auxiliaries, the main task's transfer-range exact match under RoPE, NoPE and
  APE (per-example random offsets), each against the group's baseline under the same encoding.
- **Q2** — can an auxiliary rescue a main task that C-RASP says cannot length-generalize under APE? Main tasks
  whose formal-framework analogue has no C-RASP[periodic, local] program (addition, copy with repeated
  tokens, parity), each beside an auxiliary; and the reverse direction, an expressible main task (MQAR, as
  unique copy; binary majority) beside an inexpressible auxiliary. The analogue's status comes from
  :mod:`lengen.formal.programs`.

Each question ends in one row of the claims table (:func:`claims`), with the rule that decides its verdict.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lengen import paths
from lengen.analysis import POS_ENCODING_NAMES, group_label, task_name
from lengen.config import Config
from lengen.formal import programs
from lengen.tasks import get_task
from lengen.verdicts import BAR, MARGIN, per_seed, row

PES = ("rope", "nope", "ape")

# Our association task -> the formal framework's task it stands for. Parity and binary majority are the same
# functions on the same inputs (lengen.tasks.bits: one seed, one example). The rest by analogy, not identity: our
# reverse add is least-significant digit first (theirs most-significant bit first), our copy draws from 52
# letters (repeats are likely from a few letters on); what carries over is the argument of the formal paper:
# both need to align position i of the input with position i of the output across a distance that grows with
# the length.
ANALOGUES = {
    "reverse_add": "addition",
    "copy": "repeat_copy",
    "mqar": "unique_copy",
    "parity": "parity",
    "bin_majority": "bin_majority",
}
REPORT = "07_cross_paper.html"
OUT_DIR = paths.REPORTS_DIR / "cross"  # the stage's tables and figures (links in the claims table: cross/...)
PAPERS = "EbA × Huang et al. (ours)"


def bar(task: str) -> float:
    """:data:`BAR` on the scale above chance: a task that answers one of two tokens (parity) is half right by
    guessing, so it length-generalizes at 0.75, not 0.5."""
    chance = get_task(task).chance
    return chance + BAR * (1 - chance)


def expressible(task: str, pe: str = "ape") -> bool | None:
    """Whether the task's formal-framework analogue has a C-RASP program under ``pe`` (None: no analogue)."""
    formal = ANALOGUES.get(task)
    return None if formal is None else programs.program(formal, pe) is not None


def expressibility_table(cfg: Config) -> pd.DataFrame:
    """Every task of the cross groups: its analogue, whether C-RASP[periodic, local] expresses it (APE), why not."""
    tasks = dict.fromkeys(t for g in _cross_groups(cfg) for t in cfg.group(g).tasks)
    rows = []
    for t in tasks:
        formal = ANALOGUES.get(t)
        rows.append(
            dict(
                task=task_name(t),
                analogue=formal or "—",
                expressible_under_APE={True: "yes", False: "no", None: "no analogue"}[expressible(t)],
                why_not=(programs.reason(formal, "ape") or "") if formal else "",
            )
        )
    return pd.DataFrame(rows)


def _cross_groups(cfg: Config) -> list[str]:
    return list(cfg.cross.groups) if cfg.cross else []


def _runs(summary: pd.DataFrame, group: str, pe: str) -> pd.DataFrame:
    return summary[(summary.group == group) & (summary.pos_encoding == pe)].sort_values("seed")


def _with_baseline(summary: pd.DataFrame, cfg: Config, group: str, pe: str):
    """A group's runs under ``pe`` and its baseline's, with their mean transfer (NaN where there are none)."""
    mine = _runs(summary, group, pe)
    baseline = cfg.group(group).baseline
    base = _runs(summary, baseline, pe) if baseline else mine.iloc[:0]
    return mine, base, _mean(mine), _mean(base)


def _mean(df: pd.DataFrame) -> float:
    return df.main_transfer.mean() if len(df) else float("nan")


def encoding_table(summary: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Q1: per cross group with auxiliaries and position encoding with records, the main task's transfer-range
    exact match (mean, sd, every seed) against its baseline's under the same encoding; ``transfers``: mean ≥
    :func:`bar` and above the baseline's by more than :data:`MARGIN`."""
    rows = []
    for g in _cross_groups(cfg):
        group = cfg.group(g)
        if not group.aux:
            continue
        for pe in PES:
            mine, base, t, b = _with_baseline(summary, cfg, g, pe)
            if not len(mine):
                continue
            rows.append(
                dict(
                    group=g,
                    label=group_label(group),
                    pos_encoding=pe,
                    seeds=len(mine),
                    transfer=t,
                    transfer_sd=mine.main_transfer.std(ddof=0),
                    every_seed=per_seed(mine),
                    baseline=b,
                    baseline_seeds=len(base),
                    transfers=bool(t >= bar(group.main_task) and (pd.isna(b) or t > b + MARGIN)),
                )
            )
    return pd.DataFrame(rows)


def rescue_table(summary: pd.DataFrame, cfg: Config, pe: str = "ape") -> pd.DataFrame:
    """Q2: per cross group with auxiliaries whose main task has a formal analogue, under ``pe``: the main
    task's and its auxiliaries' C-RASP status, the main task's transfer-range exact match with the auxiliaries
    and alone, and whether it follows the auxiliaries (``rescued``: mean ≥ :func:`bar` and above alone by more
    than :data:`MARGIN`)."""
    rows = []
    for g in _cross_groups(cfg):
        group = cfg.group(g)
        main_ok = expressible(group.main_task, pe)
        if not group.aux or main_ok is None:
            continue
        mine, base, t, b = _with_baseline(summary, cfg, g, pe)
        aux_ok = [expressible(task, pe) for task in group.aux]
        need = bar(group.main_task)
        rows.append(
            dict(
                group=g,
                label=group_label(group),
                main_expressible=main_ok,
                aux_expressible=_status(aux_ok),
                seeds=len(mine),
                transfer=t,
                transfer_sd=mine.main_transfer.std(ddof=0) if len(mine) else float("nan"),
                every_seed=per_seed(mine),
                alone=b,
                baseline=group.baseline,
                alone_seeds=len(base),
                alone_every_seed=per_seed(base),
                bar=need,
                rescued=bool(len(mine) and len(base) and t >= need and t > b + MARGIN),
            )
        )
    return pd.DataFrame(rows)


def _number(x: float) -> str:
    """'0.42', or '—' where there is nothing to average (no records)."""
    return "—" if pd.isna(x) else f"{x:.2f}"


def _status(values: list[bool | None]) -> str:
    """The auxiliaries' C-RASP status in one word: yes / no / no analogue / mixed."""
    kinds = set(values)
    return {frozenset({True}): "yes", frozenset({False}): "no", frozenset({None}): "no analogue"}.get(
        frozenset(kinds), "mixed"
    )


def _row(cid, claim, measured, seeds, verdict, rule, figure) -> dict:
    return row(cid, PAPERS, claim, measured, seeds, verdict, rule, figure, REPORT)


def encoding_claim(table: pd.DataFrame, cfg: Config) -> dict:
    """Q1 as a claims-table row: the groups that transfer under RoPE transfer under APE too."""
    claim = "Q1: transfer by association survives APE with random offsets (the groups that transfer under RoPE)"
    rule = (
        f"a group transfers under an encoding if its mean ≥ {BAR} (above chance: 0.75 for the bit tasks) and "
        f"above its baseline's by > {MARGIN}; "
        "agrees: every group that transfers under RoPE transfers under APE; partly: some; not tested: no pair"
    )
    fig = "cross/encodings.png"
    have = set(zip(table.group, table.pos_encoding)) if len(table) else set()
    groups = [g for g in dict.fromkeys(table.group if len(table) else []) if {(g, "rope"), (g, "ape")} <= have]
    if not groups:
        rope = {r.group_name for r in cfg.all_runs() if r.pos_encoding == "rope"}
        planned = [g for g in _cross_groups(cfg) if cfg.group(g).aux and g in rope]
        why = "records missing: " + ", ".join(f"{g} (RoPE and APE)" for g in planned) if planned else "no cross groups"
        return _row("cross:q1", claim, why, "", "not tested", rule, fig)
    parts, seeds, held = [], [], []
    for g in groups:
        rows = table[table.group == g].set_index("pos_encoding")
        cells = [
            f"{POS_ENCODING_NAMES[pe]} {rows.transfer[pe]:.2f} (alone {_number(rows.baseline[pe])})"
            for pe in PES
            if pe in rows.index
        ]
        parts.append(f"{g}: " + ", ".join(cells))
        seeds.append(f"{g} " + "; ".join(f"{POS_ENCODING_NAMES[pe]} {rows.every_seed[pe]}" for pe in rows.index))
        if rows.transfers["rope"]:
            held.append(bool(rows.transfers["ape"]))
    verdict = "not tested" if not held else "agrees" if all(held) else "partly" if any(held) else "not reproduced"
    if not held:
        parts.append("no group transfers under RoPE here, so nothing to carry over")
    return _row("cross:q1", claim, "; ".join(parts), "; ".join(seeds), verdict, rule, fig)


def rescue_claim(table: pd.DataFrame, cfg: Config) -> dict:
    """Q2 as a claims-table row, stated as C-RASP predicts it: no auxiliary rescues an inexpressible main task."""
    claim = (
        "Q2: under APE an auxiliary does not rescue a main task C-RASP cannot express (C-RASP's prediction; "
        "association predicts the main task follows its auxiliary)"
    )
    rule = (
        f"rescued: the main task's mean transfer ≥ {BAR} (on the scale above chance: ≥ 0.75 for the two-answer "
        f"bit tasks) and above alone by > {MARGIN}; agrees: no inexpressible "
        "main task rescued; partly: some rescued, some not; not reproduced: every one rescued"
    )
    fig = "cross/rescue.png"
    measured = table[(table.seeds > 0) & (table.alone_seeds > 0)] if len(table) else table
    hard = measured[~measured.main_expressible.astype(bool)] if len(measured) else measured
    if not len(hard):
        hard_planned = table[~table.main_expressible.astype(bool)] if len(table) else table
        waiting = [r.group for r in hard_planned.itertuples() if not r.seeds]
        waiting += [f"{r.baseline} (baseline)" for r in hard_planned.itertuples() if not r.alone_seeds]
        why = f"APE records missing: {', '.join(waiting)}" if waiting else f"not in profile {cfg.profile!r}"
        return _row("cross:q2", claim, why, "", "not tested", rule, fig)
    parts = [
        f"{r.group} ({'expressible' if r.main_expressible else 'inexpressible'} main) "
        f"{r.transfer:.2f} vs alone {r.alone:.2f}{' — rescued' if r.rescued else ''}"
        for r in measured.itertuples()
    ]
    seeds = [f"{r.group}: {r.every_seed}; alone: {r.alone_every_seed}" for r in measured.itertuples()]
    rescued = list(hard.rescued)
    verdict = "agrees" if not any(rescued) else "not reproduced" if all(rescued) else "partly"
    return _row("cross:q2", claim, "; ".join(parts), " | ".join(seeds), verdict, rule, fig)


def claims(summary: pd.DataFrame, cfg: Config) -> list[dict]:
    """The two questions' rows of the claims table."""
    return [
        encoding_claim(encoding_table(summary, cfg), cfg),
        rescue_claim(rescue_table(summary, cfg), cfg),
    ]


def describe_encodings(table: pd.DataFrame) -> str:
    """Markdown: per group, transfer under each encoding against alone."""
    if not len(table):
        return "_No cross-study group with auxiliaries has records yet._"
    lines = []
    for _, rows in table.groupby("group", sort=False):
        cells = ", ".join(
            f"{POS_ENCODING_NAMES[r.pos_encoding]} {r.transfer:.2f} ± {r.transfer_sd:.2f} "
            f"({r.seeds} seed{'s' * (r.seeds != 1)}; alone {_number(r.baseline)})"
            for r in rows.itertuples()
        )
        lines.append(f"- **{rows.label.iloc[0]}**: {cells}")
    return "\n".join(lines)


def describe_rescue(table: pd.DataFrame) -> str:
    """Markdown: per Q2 pair, with the auxiliaries against alone, under APE."""
    if not len(table):
        return "_No Q2 group in this profile's `cross` matrix (the `study` profile runs them)._"
    return "\n".join(
        f"- **{r.label}** (main {'expressible' if r.main_expressible else 'not expressible'}, auxiliaries "
        f"expressible: {r.aux_expressible}): "
        f"transfer {_number(r.transfer)} ± {_number(r.transfer_sd)} over {r.seeds} seed(s) vs alone {_number(r.alone)} "
        f"→ {'follows its auxiliary' if r.rescued else 'does not follow its auxiliary'}"
        for r in table.itertuples()
    )


def write(tables: dict[str, pd.DataFrame], out_dir: Path | None = None) -> list[str]:
    """Each table as ``<out_dir>/<name>.csv`` (default ``reports/cross``); returns the paths written."""
    d = Path(out_dir or OUT_DIR)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables.items():
        df.to_csv(d / f"{name}.csv", index=False)
        written.append(
            str((d / f"{name}.csv").relative_to(paths.PROJ_ROOT))
            if d.is_relative_to(paths.PROJ_ROOT)
            else str(d / f"{name}.csv")
        )
    return written
