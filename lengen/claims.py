"""The claims table: each claim of both papers, our measurement and a verdict, generated from the tidy records.

The figures stage builds it (:func:`build`) from the per-run summary (:func:`lengen.analysis.run_summary`), the
checkpoint ranges (:func:`lengen.analysis.length_ranges`), the analysis stages' own tables (head correlations,
pretrained claims, formal predicted-vs-observed) and the cross-paper questions (:mod:`lengen.crosspaper`), and
writes ``reports/claims.md`` and ``reports/claims.csv`` (:func:`write`). ``python -m lengen.claims readme``
(``make claims``) copies the Markdown into README.md between :data:`START` and :data:`END`. Pure functions over
DataFrames: no model, no torch.

Every verdict is one of :data:`VERDICTS`, by the rule written beside it in the output; a claim whose runs are not
in the active profile, or whose records are missing, is *not tested*.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lengen import crosspaper, paths
from lengen.analysis import PAPER_FIGURES, POS_ENCODING_NAMES, grid_gaps, group_label, paper_grid, seeds_in_words
from lengen.config import Config
from lengen.verdicts import BAR, COLUMNS, MARGIN, NEAR_ZERO, VERDICTS, per_seed, row

SWING = 0.2  # a drop of transfer-range exact match between two checkpoints at least this: unstable
FORMAL_AGREE = 0.9  # share of (task, encoding) predictions that must hold for "agrees" (half: "partly")
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
EBA, FORMAL = "Cai et al. 2025 (2506.09251)", "Huang et al. 2025 (2410.02140)"
# The more related auxiliary of each two-auxiliary group's main task (paper: no carry > carry only; reverse >
# capitalize).
MORE_RELATED = {"reverse_add": ("no_carry", "carry_only"), "capitalize_reverse": ("reverse", "capitalize")}


def available_runs(cfg: Config, records_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """The profile's run ids with records on disk, and those without (a study produced in pieces)."""
    d = Path(records_dir or paths.RECORDS_DIR)
    ids = list(dict.fromkeys(r.run_id for r in cfg.all_runs()))
    return [i for i in ids if (d / f"{i}.csv").exists()], [i for i in ids if not (d / f"{i}.csv").exists()]


# ---------------------------------------------------------------------------------------------
# Measurements: one function per claim, each returning one row


def _runs(summary: pd.DataFrame, group: str, pe: str = "rope") -> pd.DataFrame:
    return summary[(summary.group == group) & (summary.pos_encoding == pe)].sort_values("seed")


def _planned(cfg: Config, group: str | None, pe: str = "rope") -> int:
    return sum(r.group_name == group and r.pos_encoding == pe for r in cfg.all_runs())


def mean_sd(values) -> str:
    """'0.42 ± 0.26' (population sd over seeds), or '0.42' for one value."""
    v = np.asarray(list(values), dtype=float)
    return f"{v.mean():.2f}" if len(v) == 1 else f"{v.mean():.2f} ± {v.std():.2f}"


def _verdict(held: list[bool]) -> str:
    return "agrees" if held and all(held) else "partly" if any(held) else "not reproduced"


def _split(cfg: Config, summary: pd.DataFrame, units: list[tuple]) -> tuple[list[tuple], str]:
    """The units (tuples of groups measured together at RoPE, e.g. a control and its baseline) that the profile
    runs and that have records; and, when none has, why the claim is not tested."""
    planned = [u for u in units if all(_planned(cfg, g) for g in u)]
    measured = [u for u in planned if all(len(_runs(summary, g)) for g in u)]
    if not planned:
        absent = dict.fromkeys(g for u in units for g in u if not _planned(cfg, g))
        return [], f"not in profile {cfg.profile!r}: " + (", ".join(absent) or "nothing to compare")
    waiting = [g for u in planned if u not in measured for g in u if not len(_runs(summary, g))]
    return measured, ("records missing: " + ", ".join(dict.fromkeys(waiting))) if waiting else ""


def _coverage(cfg: Config, summary: pd.DataFrame, group: str, pe: str = "rope") -> str:
    n, planned = len(_runs(summary, group, pe)), _planned(cfg, group, pe)
    return f" ({n} of {planned} seeds)" if n < planned else ""


def transfer_claim(cfg: Config, summary: pd.DataFrame, group: str) -> dict:
    """A group transfers: its main task's transfer-range exact match against its baseline's."""
    g = cfg.group(group)
    claim = f"{group_label(g)} extrapolates to about the auxiliaries' length (Fig. {PAPER_FIGURES.get(group, '?')})"
    rule = (
        f"agrees: mean ≥ {BAR} and above the baseline's by > {MARGIN}; partly: above the baseline's by > {MARGIN}, "
        f"or some seed ≥ {BAR}; else not reproduced"
    )
    link = f"figures/transfer_{group}_rope.png"
    units, why = _split(cfg, summary, [(group, g.baseline) if g.baseline else (group,)])
    if not units:
        return row(f"transfer:{group}", EBA, claim, why, "", "not tested", rule, link)
    t = _runs(summary, group).main_transfer
    base = _runs(summary, g.baseline) if g.baseline else None
    b = base.main_transfer.mean() if base is not None else 0.0
    above = t.mean() > b + MARGIN
    verdict = "agrees" if t.mean() >= BAR and above else "partly" if above or (t >= BAR).any() else "not reproduced"
    alone = f" vs alone {mean_sd(base.main_transfer)}{_coverage(cfg, summary, g.baseline)}" if base is not None else ""
    measured = f"{mean_sd(t)}{_coverage(cfg, summary, group)}{alone}"
    seeds = per_seed(_runs(summary, group), name=group) + (f"; {per_seed(base, name=g.baseline)}" if alone else "")
    return row(f"transfer:{group}", EBA, claim, measured, seeds, verdict, rule, link)


def compared_with(cfg: Config, baseline: str) -> str:
    """The first group of the profile's runs compared with ``baseline`` (its transfer figure shows both)."""
    run = {r.group_name for r in cfg.all_runs()}
    return next((n for n, g in cfg.groups.items() if g.baseline == baseline and n in run), baseline)


def baselines_claim(cfg: Config, summary: pd.DataFrame, baselines: list[str]) -> dict:
    """A main task trained alone fails past its training length (the profile's baselines)."""
    claim = "a main task trained alone fails past its training length (Fig. 3d, 4b, 4d)"
    rule = f"per baseline: fails if its mean transfer-range exact match < {MARGIN}; agrees: all fail; partly: some"
    units, why = _split(cfg, summary, [(b,) for b in baselines])
    link = f"figures/transfer_{compared_with(cfg, units[0][0])}_rope.png" if units else ""
    if not units:
        return row("baselines", EBA, claim, why, "", "not tested", rule, link)
    runs = {b: _runs(summary, b) for (b,) in units}
    held = [df.main_transfer.mean() < MARGIN for df in runs.values()]
    measured = "; ".join(f"{b} {mean_sd(df.main_transfer)}{_coverage(cfg, summary, b)}" for b, df in runs.items())
    seeds = "; ".join(per_seed(df, name=b) for b, df in runs.items())
    return row("baselines", EBA, claim, measured + (f"; {why}" if why else ""), seeds, _verdict(held), rule, link)


def controls_claim(cfg: Config, summary: pd.DataFrame, controls: list[str]) -> dict:
    """An unrelated auxiliary does not transfer (the profile's controls)."""
    claim = "an unrelated auxiliary does not transfer (Fig. 8: reverse add ← copy-first-op, copy ← reverse)"
    rule = f"per control: flat if its mean transfer ≤ its baseline's + {MARGIN}; agrees: all flat; partly: some"
    units, why = _split(cfg, summary, [(c, cfg.group(c).baseline) for c in controls])
    link = f"figures/transfer_{units[0][0]}_rope.png" if units else ""
    if not units:
        return row("controls", EBA, claim, why, "", "not tested", rule, link)
    held, parts, seeds = [], [], []
    for c, b in units:
        mine, base = _runs(summary, c), _runs(summary, b)
        held.append(mine.main_transfer.mean() <= base.main_transfer.mean() + MARGIN)
        parts.append(f"{c} {mean_sd(mine.main_transfer)} vs alone {mean_sd(base.main_transfer)}")
        seeds.append(per_seed(mine, name=c))
    measured = "; ".join(parts) + (f"; {why}" if why else "")
    return row("controls", EBA, claim, measured, "; ".join(seeds), _verdict(held), rule, link)


def nope_claim(cfg: Config, summary: pd.DataFrame) -> dict:
    """RoPE gives a smaller generalization gap than NoPE, seed by seed."""
    claim = "RoPE gives a consistently smaller generalization gap than NoPE (Fig. 12–13)"
    rule = "agrees: RoPE's gap smaller in every (group, seed) pair; partly: in the mean of some group"
    nope = list(dict.fromkeys(r.group_name for r in cfg.all_runs() if r.pos_encoding == "nope"))
    groups = [g for g in nope if cfg.group(g).aux and _runs(summary, g).size and _runs(summary, g, "nope").size]
    if not groups:
        why = "records missing: " + ", ".join(nope) if nope else f"not in profile {cfg.profile!r}: no NoPE runs"
        return row("rope_vs_nope", EBA, claim, why, "", "not tested", rule, "figures/gaps.png")
    parts, seeds, pairs, means = [], [], [], []
    for g in groups:
        r, n = _runs(summary, g).set_index("seed").gap, _runs(summary, g, "nope").set_index("seed").gap
        common = r.index.intersection(n.index)
        pairs += list(r[common] < n[common])
        means.append(r.mean() < n.mean())
        parts.append(f"{g}: gap RoPE {mean_sd(r)} vs NoPE {mean_sd(n)}")
        seeds.append(f"{g} RoPE/NoPE: " + " · ".join(f"s{s} {r[s]:.2f}/{n[s]:.2f}" for s in common))
    verdict = "agrees" if pairs and all(pairs) else "partly" if any(means) else "not reproduced"
    return row("rope_vs_nope", EBA, claim, "; ".join(parts), "; ".join(seeds), verdict, rule, "figures/gaps.png")


def one_vs_two_claim(cfg: Config, summary: pd.DataFrame) -> dict:
    """Two auxiliaries beat one, and the more related one helps more (transfer-range exact match)."""
    claim = "two auxiliaries beat one; the more related one helps more (no carry > carry only; reverse > capitalize)"
    rule = f"each of 'two > more related' and 'more > less related' by > {MARGIN} in mean transfer; agrees: all hold"
    families = []  # (two-aux group, more-related-only group, less-related-only group)
    for name, g in cfg.groups.items():
        order = MORE_RELATED.get(g.main_task)
        if order and set(g.aux) == set(order):
            single = {next(iter(h.aux)): n for n, h in cfg.groups.items() if h.main == g.main and len(h.aux) == 1}
            if order[0] in single and order[1] in single:
                families.append((name, single[order[0]], single[order[1]]))
    units, why = _split(cfg, summary, families) if families else ([], "no one-auxiliary group defined")
    if not units:
        return row("one_vs_two", EBA, claim, why, "", "not tested", rule, "figures/gaps.png")
    held, parts, seeds = [], [], []
    for fam in units:
        t = [_runs(summary, f).main_transfer for f in fam]
        held += [t[0].mean() > t[1].mean() + MARGIN, t[1].mean() > t[2].mean() + MARGIN]
        parts.append(", ".join(f"{f} {mean_sd(x)}" for f, x in zip(fam, t)))
        seeds += [per_seed(_runs(summary, f), name=f) for f in fam]
    measured = "transfer " + "; ".join(parts) + (f"; {why}" if why else "")
    return row("one_vs_two", EBA, claim, measured, "; ".join(seeds), _verdict(held), rule, "figures/gaps.png")


def instability_claim(ranges: pd.DataFrame | None, groups: list[str]) -> dict:
    """Transfer-range accuracy swings between checkpoints (among runs that transfer at some checkpoint)."""
    claim = "accuracy past the training length swings strongly across checkpoints (Fig. 11)"
    rule = (
        f"among runs whose transfer-range exact match exceeds {SWING} at some checkpoint: agrees if at least half "
        f"drop by ≥ {SWING} between two successive checkpoints; partly: some"
    )
    link, drops = "figures/checkpoint_ranges.png", {}
    tr = ranges[(ranges.range == "transfer") & ranges.group.isin(groups)] if ranges is not None and len(ranges) else []
    for (g, s), df in tr.sort_values("step").groupby(["group", "seed"]) if len(tr) else []:
        if df.exact_match.max() > SWING:
            drops[(g, int(s))] = max(0.0, float(-np.diff(df.exact_match.to_numpy()).min(initial=0.0)))
    if not drops:
        return row("instability", EBA, claim, "no run transfers at any checkpoint", "", "not tested", rule, link)
    n = sum(d >= SWING for d in drops.values())
    verdict = "agrees" if n >= len(drops) / 2 else "partly" if n else "not reproduced"
    measured = f"{n} of {len(drops)} transferring runs drop by ≥ {SWING} between successive checkpoints"
    seeds = "largest drop: " + " · ".join(f"{g} s{s} {d:.2f}" for (g, s), d in drops.items())
    return row("instability", EBA, claim, measured, seeds, verdict, rule, link)


def grid_claim(cfg: Config, summary: pd.DataFrame) -> dict:
    """Transfer is best for aux/main length ratios in [0.5, 2] (the grid's gaps inside vs outside)."""
    claim = "transfer works best when the aux/main length ratio is between 0.5 and 2 (Fig. 10)"
    rule = (
        "agrees: every cell with a ratio in [0.5, 2] has a smaller mean gap than every cell outside; "
        f"partly: their mean gap is smaller by > {MARGIN}"
    )
    if cfg.grid is None:
        return row("grid", EBA, claim, f"not in profile {cfg.profile!r}", "", "not tested", rule, "figures/grid.png")
    ours, paper = grid_gaps(summary, cfg), paper_grid(cfg)
    cells = [(m, a, ours.loc[m, a], paper.loc[m, a]) for m in ours.index for a in ours.columns]
    cells = [c for c in cells if not np.isnan(c[2])]
    inside = [c for c in cells if 0.5 <= c[1] / c[0] <= 2]
    outside = [c for c in cells if not 0.5 <= c[1] / c[0] <= 2]
    if not inside or not outside:
        why = "records missing" if not cells else "no measured cell on one side of the ratio range"
        return row("grid", EBA, claim, why, "", "not tested", rule, "figures/grid.png")
    gi, go = [c[2] for c in inside], [c[2] for c in outside]
    verdict = "agrees" if max(gi) < min(go) else "partly" if np.mean(gi) < np.mean(go) - MARGIN else "not reproduced"
    measured = (
        f"gap inside {mean_sd(gi)} vs outside {mean_sd(go)} over {len(cells)} cells (paper, same cells: "
        f"{np.nanmean([c[3] for c in inside]):.2f} vs {np.nanmean([c[3] for c in outside]):.2f})"
    )
    seeds = "mean gap per cell, main ← aux: " + " · ".join(f"{m}←{a} {g:.2f} (paper {p:.2f})" for m, a, g, p in cells)
    return row("grid", EBA, claim, measured, seeds, verdict, rule, "figures/grid.png")


def heads_claim(correlations: pd.DataFrame | None) -> dict:
    """Transfer goes with re-use of the same heads: the paper's two metrics per category, against its claim."""
    claim = (
        "transfer goes with re-use of the same attention heads (appendix: arithmetic both metrics, strings "
        "the ablation metric only, the control neither)"
    )
    rule = (
        "ρ of the paper's two metrics (attention difference, mean-ablation difference) with the gap, per category "
        "(lengen.heads); agrees: every verdict matches the paper's; partly: some"
    )
    link, report = "heads/figures/metric_vs_gap.png", "04_heads.html"
    rows = correlations[correlations.metric.isin(("attn_diff", "em_mad"))] if correlations is not None else None
    judged = rows[rows.agrees.isin(("yes", "no"))] if rows is not None else None
    if judged is None or judged.empty:
        return row("heads", EBA, claim, "no category with a verdict", "", "not tested", rule, link, report)
    ok = judged.agrees == "yes"
    verdict = "agrees" if ok.all() else "partly" if ok.any() else "not reproduced"
    measured = "; ".join(
        f"{r.category} {r.metric} ρ = {r.rho:.2f} → {r.found} (paper: {r.paper})" for r in judged.itertuples()
    )
    seeds = "; ".join(
        f"{r.category} {r.metric}: {r.n_points} points, CI [{r.ci_low:.2f}, {r.ci_high:.2f}]"
        for r in judged.itertuples()
    )
    return row("heads", EBA, claim, measured, seeds, verdict, rule, link, report)


def pretrained_claims(table: pd.DataFrame | None) -> list[dict]:
    """The pretrained comparison's claims (``lengen.finetune_claims.claims_table``: one row per claim × compared
    quantity × seed, the verdict judged on the means over seeds), one row each: each quantity's mean ± sd, and
    every seed."""
    rule = (
        f"lengen.finetune_claims.claims_table's thresholds on the means over seeds (near zero < {NEAR_ZERO}, "
        f"a difference > {MARGIN}); "
        "'vacuous' is partly"
    )
    link, report = "pretrained/figures/pretrained_vs_scratch.png", "03_pretrained.html"
    if table is None or table.empty:
        claim = "pretraining acts like an implicit auxiliary task (§ pretrained models)"
        return [row("pretrained", EBA, claim, "no pretrained runs", "", "not tested", rule, link, report)]
    verdicts = {"yes": "agrees", "no": "not reproduced", "vacuous": "partly"}
    rows = []
    for k, (claim, df) in enumerate(table.groupby("claim", sort=False)):
        first, quantities = df.iloc[0], list(df.sort_values("seed", kind="stable").groupby("quantity", sort=False))
        measured = f"{first.measure}: " + "; ".join(f"{q} {mean_sd(d.exact_match)}" for q, d in quantities)
        measured += f" ({seeds_in_words(df.seed.nunique())})"
        if first.agrees == "vacuous":
            measured += "; vacuous: the related auxiliaries did not transfer either"
        seeds = "; ".join(per_seed(d, "exact_match", name=q) for q, d in quantities)
        rows.append(row(f"pretrained:{k}", EBA, claim, measured, seeds, verdicts[first.agrees], rule, link, report))
    return rows


def formal_claims(table: pd.DataFrame | None) -> list[dict]:
    """C-RASP expressibility predicts length generalization, per position encoding (formal predicted vs observed)."""
    rule = (
        "share of tasks whose observation (fits the training bin, ≥ 80% on the last bin) matches the prediction; "
        f"agrees: ≥ {FORMAL_AGREE:.0%}; partly: ≥ 50%"
    )
    link, report = "formal/predicted_vs_observed.png", "06_formal.html"
    out = []
    for pe, fragment in (("ape", "C-RASP[periodic, local]"), ("nope", "C-RASP")):
        claim = (
            f"{POS_ENCODING_NAMES[pe]}: a task length-generalizes iff it is expressible in {fragment} (Fig. 1, Table 1)"
        )
        df = table[table.pos_encoding == pe] if table is not None and len(table) else None
        if df is None or df.empty:
            out.append(row(f"formal:{pe}", FORMAL, claim, "no formal runs", "", "not tested", rule, link, report))
            continue
        share = df.agree.mean()
        fails = df[~df.predicted]
        verdict = "agrees" if share >= FORMAL_AGREE else "partly" if share >= 0.5 else "not reproduced"
        measured = (
            f"{int(df.agree.sum())} of {len(df)} agree; predicted failures failing "
            f"{int((~fails.observed).sum())} of {len(fails)}; predicted successes generalizing "
            f"{int(df[df.predicted].observed.sum())} of {int(df.predicted.sum())}"
        )
        seeds = "disagree: " + (", ".join(df[~df.agree].task) or "none")
        out.append(row(f"formal:{pe}", FORMAL, claim, measured, seeds, verdict, rule, link, report))
    return out


def build(
    summary: pd.DataFrame,
    cfg: Config,
    ranges: pd.DataFrame | None = None,
    heads: pd.DataFrame | None = None,
    pretrained: pd.DataFrame | None = None,
    formal: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every claim of both papers, in reading order (columns :data:`COLUMNS`)."""
    defined = [g for g in PAPER_FIGURES if g in cfg.groups and cfg.groups[g].aux]
    controls = [g for g in defined if PAPER_FIGURES[g] == "8"]  # the paper's controls: unrelated auxiliaries
    transfer = [g for g in defined if g not in controls]
    baselines = [b for b in dict.fromkeys(cfg.groups[g].baseline for g in transfer) if b in cfg.groups]
    rows = [baselines_claim(cfg, summary, baselines)]
    rows += [transfer_claim(cfg, summary, g) for g in transfer]
    rows += [controls_claim(cfg, summary, controls), instability_claim(ranges, transfer), grid_claim(cfg, summary)]
    rows += [nope_claim(cfg, summary), one_vs_two_claim(cfg, summary), heads_claim(heads)]
    rows += pretrained_claims(pretrained) + formal_claims(formal) + crosspaper.claims(summary, cfg)
    return pd.DataFrame(rows, columns=COLUMNS)


def heads_table(reports_dir: Path | None = None) -> pd.DataFrame | None:
    """The head analysis's correlations (``reports/heads/records/correlations.csv``), or None before it ran."""
    p = Path(reports_dir or paths.REPORTS_DIR) / "heads" / "records" / "correlations.csv"
    return pd.read_csv(p) if p.exists() else None


# ---------------------------------------------------------------------------------------------
# Output


def describe(table: pd.DataFrame, ids: list[str]) -> str:
    """Markdown bullets for a report section's closing: each claim (ids, or id prefixes ending in ':'; an id also
    names its family, ``pretrained`` its rows ``pretrained:<k>``), our measurement and the verdict."""
    rows = [r for r in table.itertuples() if any(r.id == i or r.id.startswith(i.rstrip(":") + ":") for i in ids)]
    return "\n".join(f"- **{r.claim}** — ours: {r.measured} → **{r.verdict}**" for r in rows) or "_No claim here._"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, profile: str, header: str = "", missing: list[str] | None = None) -> str:
    """The claims file: the table, every seed, and the verdict rules. Links are relative to ``reports/``."""
    counts, rows = table.verdict.value_counts(), list(table.itertuples())
    lines = [
        "# Claims: both papers against our measurements",
        "",
        f"Generated by `lengen.claims` (stage `figures`) from the tidy records of profile `{profile}`, not typed by "
        "hand. Measured, unless a row says otherwise: the main task's exact match over its transfer range "
        "(L, max(aux length, 2L)] at the final checkpoint, mean ± sd over seeds (population sd).",
        "",
        *([header, ""] if header else []),
        "**"
        + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
        + "**"
        + (f" ({len(missing)} run(s) of the profile have no records yet)." if missing else "."),
        "",
        "| | claim | measured | verdict | figure · report |",
        "|---|---|---|---|---|",
    ]
    for k, r in enumerate(rows, 1):
        links = " · ".join(f"[{n}]({p})" for n, p in (("figure", r.figure), ("report", r.report)) if p)
        cite = r.paper.split(" (")[0]
        lines.append(f"| {k} | {_cell(r.claim)} — *{cite}* | {_cell(r.measured)} | **{r.verdict}** | {links} |")
    lines += ["", "## Every seed", ""]
    lines += [f"- {k}: {_cell(r.seeds)}" for k, r in enumerate(rows, 1) if r.seeds]
    lines += [
        "",
        "## How verdicts are decided",
        "",
        f"One of: {', '.join(VERDICTS)}. *Not tested*: the claim's runs are not in the active profile, or none has "
        f"records yet. Thresholds: extrapolates = mean transfer-range exact match ≥ {BAR}; no difference = less "
        f"than {MARGIN}; unstable = a drop ≥ {SWING} between two successive checkpoints. Per claim:",
        "",
    ]
    by_rule: dict[str, list[int]] = {}
    for k, r in enumerate(rows, 1):
        by_rule.setdefault(r.rule, []).append(k)
    lines += [f"- {', '.join(map(str, ks))}: {_cell(rule)}" for rule, ks in by_rule.items()]
    return "\n".join(lines) + "\n"


def write(
    table: pd.DataFrame, profile: str, header: str = "", missing: list[str] | None = None, out_dir: Path | None = None
) -> list[str]:
    """``reports/claims.md`` and ``reports/claims.csv``; returns their paths."""
    d = Path(out_dir or paths.REPORTS_DIR)
    d.mkdir(parents=True, exist_ok=True)
    (d / "claims.md").write_text(to_markdown(table, profile, header, missing))
    table.to_csv(d / "claims.csv", index=False)
    return [str(d / "claims.md"), str(d / "claims.csv")]


def rebase_links(markdown: str, prefix: str) -> str:
    """Prefix every relative Markdown link target (not http(s), anchors or absolute paths)."""
    return re.sub(r"\]\((?!https?:|#|/)([^)]+)\)", lambda m: f"]({prefix}{m[1]})", markdown)


def splice_readme(readme: str, claims_md: str, prefix: str = "reports/") -> str:
    """README text with the claims table (``claims_md`` up to its per-seed section, title dropped, links rebased)
    between :data:`START` and :data:`END`, and a link to the whole file."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise ValueError(f"README needs one {START} ... {END} block")
    table = re.sub(r"\A# .*\n+", "", claims_md).split("\n## ", 1)[0].strip()
    more = f"Every seed and the verdict rules: [{prefix}claims.md]({prefix}claims.md)."
    head, rest = readme.split(START)
    return f"{head}{START}\n{rebase_links(table, prefix)}\n\n{more}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lengen.claims", description="Copy reports/claims.md into README.md.")
    ap.add_argument("command", choices=["readme"])
    ap.add_argument("--claims", type=Path, default=paths.REPORTS_DIR / "claims.md")
    ap.add_argument("--readme", type=Path, default=paths.PROJ_ROOT / "README.md")
    args = ap.parse_args(argv)
    if not args.claims.exists():
        print(f"{args.claims} does not exist: run the figures stage first (dvc repro figures)", file=sys.stderr)
        return 1
    args.readme.write_text(splice_readme(args.readme.read_text(), args.claims.read_text()))
    print(f"{args.readme} <- {args.claims}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
