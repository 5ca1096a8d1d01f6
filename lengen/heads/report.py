"""The driver over runs and checkpoints, the tables derived from its tidy records, and the findings.

:func:`analyse` gathers every analysed run's rows (:mod:`lengen.heads.run`: each kept checkpoint probed
and paired with the run's generalization gap at that step), read back from the per-run store or computed
and stored there (:mod:`lengen.heads.store`); :func:`tables` turns the records into per-pair and
per-point metrics, Spearman's ρ per category (:mod:`lengen.heads.statistics`) and the random-head
control; :func:`write_records`, :func:`read_records` and :func:`write_summary` are the stage's outputs;
:func:`describe` writes the findings with their numbers. Figures: :mod:`lengen.plots`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lengen import paths
from lengen.config import Config, HeadsConfig, RunConfig
from lengen.heads.run import FIELDS, KEYS, columns
from lengen.heads.statistics import agrees, bootstrap_spearman, compare_maps, spearman, top_heads, verdict
from lengen.heads.store import run_rows
from lengen.runtime import default_device

HEADS_DIR = paths.REPORTS_DIR / "heads"
RECORDS_SUBDIR = "records"
FIGURES_DIR = HEADS_DIR / "figures"  # the stage's figures (lengen.plots.save(fig, name, FIGURES_DIR))

# The paper's qualitative claims (appendix): does each kind of metric track the generalization gap?
CLAIMS: dict[str, dict[str, str]] = {
    "arithmetic": {"attention": "tracks", "ablation": "tracks"},
    "strings": {"attention": "does not track", "ablation": "tracks"},
    "control": {"attention": "does not track", "ablation": "does not track"},
    "mazes": {"attention": "not stated", "ablation": "not stated"},
}

# Per-point metrics correlated with the gap: name -> (kind, expected sign of ρ if it tracks, meaning).
# Differences should rise with the gap (+1); similarities should fall (-1).
METRICS: dict[str, tuple[str, int, str]] = {
    "attn_diff": ("attention", +1, "attention-matrix difference, mean over heads"),
    "em_mad": ("ablation", +1, "mean |exact-match drop difference| over heads"),
    "ll_mad": ("ablation", +1, "mean |log-likelihood drop difference| over heads"),
    "em_rank": ("ablation", -1, "Spearman correlation of the exact-match maps"),
    "ll_rank": ("ablation", -1, "Spearman correlation of the log-likelihood maps"),
    "em_topk": ("ablation", -1, "top-k head overlap of the exact-match maps"),
    "ll_topk": ("ablation", -1, "top-k head overlap of the log-likelihood maps"),
}


# Per-head differences the random-head control restricts to a head set.
HEAD_MEASURES = {"attn_diff": "attention", "em_diff": "ablation", "ll_diff": "ablation"}


def heads_config(cfg: Config) -> HeadsConfig:
    """The parsed ``heads:`` section (``cfg.heads``, checked by ``lengen.config``); an error without one."""
    if cfg.heads is None:
        raise ValueError(f"params: heads: section missing in the {cfg.profile!r} profile (see profiles/cpu.yaml)")
    return cfg.heads


# ----------------------------------------------------------------------------------------------------
# The driver: every analysed run's rows


@dataclass
class HeadRecords:
    """Tidy records of the analysis (what ``write_records`` saves)."""

    ablation: pd.DataFrame  # KEYS + task, role, length, layer, head, exact_match, loglik, em_drop, ll_drop
    attention: pd.DataFrame  # KEYS + main, aux, length, layer, head, attn_diff
    checkpoints: pd.DataFrame  # KEYS + gap, wall_s
    coverage: pd.DataFrame  # category, group, status, runs


def heads_runs(cfg: Config, group: str) -> list:
    """The trained runs of a group that the head analysis reads: the experiment's and the ablation stage's
    (a profile may train a control or a group at fewer seeds there), with the experiment's position
    encodings only, so that an ablation's NoPE runs are not pooled with RoPE runs."""
    pes = set(cfg.experiment.pos_encodings)
    return [r for r in cfg.runs() + cfg.ablation_runs() if r.group_name == group and r.pos_encoding in pes]


def coverage(cfg: Config, hc: HeadsConfig) -> pd.DataFrame:
    """Which configured groups are analysed, and why the others are not."""
    rows = []
    for cat, names in hc.groups.items():
        for g in names:
            if g not in cfg.groups:
                status = "not run (group not defined in this profile)"
            elif not heads_runs(cfg, g):
                status = "not run (in neither experiment.groups nor ablation.groups)"
            else:
                status = "analysed"
            rows.append(dict(category=cat, group=g, status=status, runs=len(heads_runs(cfg, g))))
    for g in dict.fromkeys(r.group_name for r in cfg.runs() + cfg.ablation_runs()):
        if cfg.groups[g].aux and hc.category(g) is None:
            rows.append(dict(category="—", group=g, status="not analysed (in no heads.groups category)", runs=0))
    return pd.DataFrame(rows, columns=["category", "group", "status", "runs"])


def analysed_runs(cfg: Config, hc: HeadsConfig) -> list[RunConfig]:
    """Every run the analysis reads, in the order of its tables: by category and group, then as
    :func:`heads_runs` lists them."""
    cov = coverage(cfg, hc)
    return [r for g in cov[cov.status == "analysed"].group for r in heads_runs(cfg, g)]


def analyse(
    cfg: Config,
    hc: HeadsConfig,
    runs_dir: Path | None = None,
    records_dir: Path | None = None,
    threads: int | None = None,
    progress: bool = True,
    store_dir: Path | None = None,
) -> HeadRecords:
    """The rows of every analysed run: read back from the per-run store where they were computed from the
    same inputs, else probed on the run's kept checkpoints (up to ``max_checkpoints``) and stored
    (:func:`lengen.heads.store.run_rows`).

    A run's checkpoints are read where training keeps them (``lengen.train.run_spec(run, runs_dir).run_dir``),
    its gap at each checkpoint from its tidy records in ``records_dir``; ``store_dir``: the store
    (``reports/heads/runs``).
    """
    torch.set_num_threads(threads or cfg.train.threads)
    device = default_device()
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in FIELDS}
    for run in analysed_runs(cfg, hc):
        rows, _ = run_rows(run, hc, runs_dir, records_dir, store_dir, device, progress)
        for name, df in rows.labelled(hc.category(run.group_name)).items():
            parts[name].append(df)
    frames = {
        name: pd.concat(dfs, ignore_index=True) if dfs else pd.DataFrame(columns=columns(name))
        for name, dfs in parts.items()
    }
    return HeadRecords(**frames, coverage=coverage(cfg, hc))


# ----------------------------------------------------------------------------------------------------
# Tables from the tidy records


def head_grid(df: pd.DataFrame, value: str) -> np.ndarray:
    """(n_layer, n_head) array of ``value`` averaged over the other rows (lengths)."""
    m = df.groupby(["layer", "head"])[value].mean().unstack("head")
    return m.to_numpy(float)


def pair_heads(rec: HeadRecords) -> dict[tuple, dict[str, np.ndarray]]:
    """Per (run, checkpoint, aux): the per-head arrays the pair metrics are made of, each averaged over
    the pair's lengths: the main and aux maps ('main_em', 'aux_em', 'main_ll', 'aux_ll') and the
    attention difference ('attn_diff'), all (n_layer, n_head)."""
    out = {}
    abl = rec.ablation.groupby([*KEYS, "task"])
    for key, att in rec.attention.groupby([*KEYS, "aux"]):
        *point, aux = key
        lengths = set(att.length)
        main = abl.get_group((*point, att.main.iloc[0]))
        other = abl.get_group((*point, aux))
        main, other = main[main.length.isin(lengths)], other[other.length.isin(lengths)]
        out[key] = {
            "attn_diff": head_grid(att, "attn_diff"),
            "main_em": head_grid(main, "em_drop"),
            "aux_em": head_grid(other, "em_drop"),
            "main_ll": head_grid(main, "ll_drop"),
            "aux_ll": head_grid(other, "ll_drop"),
            "main_exact_match": main.groupby("length").exact_match.first().mean(),
            "aux_exact_match": other.groupby("length").exact_match.first().mean(),
        }
    return out


def pairs_table(rec: HeadRecords, top_k: int) -> pd.DataFrame:
    """One row per (run, checkpoint, auxiliary): the run's gap at that step and the pair's metrics."""
    gaps = rec.checkpoints.set_index(list(KEYS)).gap
    rows = []
    for key, a in pair_heads(rec).items():
        *point, aux = key
        em, ll = compare_maps(a["main_em"], a["aux_em"], top_k), compare_maps(a["main_ll"], a["aux_ll"], top_k)
        rows.append(
            dict(
                zip(KEYS, point),
                aux=aux,
                gap=gaps.loc[tuple(point)],
                main_exact_match=a["main_exact_match"],
                aux_exact_match=a["aux_exact_match"],
                attn_diff=a["attn_diff"].mean(),
                em_mad=em["mad"],
                ll_mad=ll["mad"],
                em_rank=em["rank"],
                ll_rank=ll["rank"],
                em_topk=em["topk"],
                ll_topk=ll["topk"],
            )
        )
    return pd.DataFrame(rows, columns=[*KEYS, "aux", "gap", "main_exact_match", "aux_exact_match", *METRICS])


def points_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """One point per (run, checkpoint): metrics averaged over the group's auxiliaries."""
    cols = ["gap", "main_exact_match", "aux_exact_match", *METRICS]
    return pairs.groupby(list(KEYS), as_index=False)[cols].mean()


def correlation_table(points: pd.DataFrame, hc: HeadsConfig, cov: pd.DataFrame) -> pd.DataFrame:
    """Spearman ρ (bootstrap 95% CI) of each metric with the gap, per category and position encoding,
    with the paper's claim beside it; configured categories without runs get 'not run' rows.

    ``n_points`` counts the points where the metric is defined (a rank correlation of two maps is not
    when one map is constant, e.g. all-zero exact-match drops of a task the model has not learned).
    Below ``min_points`` ρ is reported without a CI (resampling 4 points gives degenerate intervals
    such as [1, 1]) and without a verdict.
    """
    rng = np.random.default_rng(hc.seed)
    rows = []
    for cat in hc.groups:
        sub = points[points.category == cat]
        groups = ", ".join(cov[cov.category == cat].group)
        for pe, df in list(sub.groupby("pos_encoding")) or [("—", sub)]:
            for metric, (kind, sign, _) in METRICS.items():
                ok = df[["gap", metric]].dropna()
                rho = lo = hi = float("nan")
                if not len(df):
                    found = "not run"
                elif len(df) >= hc.min_points > len(ok):
                    found = f"undefined at {len(df) - len(ok)} of {len(df)} points"
                elif len(ok) < hc.min_points:  # ρ for the record; a bootstrap CI of a few points is ±1 noise
                    rho = spearman(ok[metric], ok.gap)
                    found = verdict(rho, lo, hi, sign, len(ok), hc.min_points)
                else:
                    rho, lo, hi = bootstrap_spearman(ok[metric], ok.gap, hc.n_bootstrap, rng)
                    found = verdict(rho, lo, hi, sign, len(ok), hc.min_points)
                claim = CLAIMS[cat][kind]
                rows.append(
                    dict(
                        category=cat,
                        pos_encoding=pe,
                        metric=metric,
                        kind=kind,
                        groups=groups,
                        runs=df.run_id.nunique(),
                        n_points=len(ok),
                        rho=rho,
                        ci_low=lo,
                        ci_high=hi,
                        expected_sign="+" if sign > 0 else "−",
                        found=found,
                        paper=claim,
                        agrees=agrees(claim, found),
                    )
                )
    return pd.DataFrame(rows)


def _point_head_diffs(rec: HeadRecords, k: int) -> dict[tuple, dict[str, np.ndarray]]:
    """Per (run, checkpoint): the flat per-head differences of HEAD_MEASURES, each averaged over the
    auxiliaries, and 'top' — the k heads most important to the main task (largest log-likelihood drop)."""
    by_point: dict[tuple, list[dict]] = {}
    for key, v in pair_heads(rec).items():
        by_point.setdefault(key[:-1], []).append(v)
    out = {}
    for point, pairs in by_point.items():
        out[point] = {
            "attn_diff": np.mean([v["attn_diff"].ravel() for v in pairs], 0),
            "em_diff": np.mean([np.abs(v["main_em"] - v["aux_em"]).ravel() for v in pairs], 0),
            "ll_diff": np.mean([np.abs(v["main_ll"] - v["aux_ll"]).ravel() for v in pairs], 0),
            "top": np.array(sorted(top_heads(pairs[0]["main_ll"], k))),  # the main map is shared by the pairs
        }
    return out


_CONTROL_COLUMNS = [
    "category",
    "pos_encoding",
    "measure",
    "kind",
    "k",
    "n_points",
    "rho_topk",
    "rho_random_mean",
    "rho_random_q025",
    "rho_random_q975",
    "p_random",
]


def random_head_control(rec: HeadRecords, hc: HeadsConfig) -> pd.DataFrame:
    """ρ with the gap of per-head differences restricted to the main task's top-k heads, vs restricted
    to random head sets of the same size (drawn once per category, the same sets for every point).
    ``p_random``: the fraction of random sets whose ρ is at least the top-k set's (small: the important
    heads carry more of the relation than arbitrary heads)."""
    rng = np.random.default_rng(hc.seed + 1)  # not the bootstrap's stream
    rows = []
    if not len(rec.checkpoints):
        return pd.DataFrame(rows, columns=_CONTROL_COLUMNS)
    n_heads = int(rec.ablation.layer.max() + 1) * int(rec.ablation["head"].max() + 1)
    k = min(hc.top_k, n_heads)
    diffs = _point_head_diffs(rec, k)
    for (cat, pe), ckpts in rec.checkpoints.groupby(["category", "pos_encoding"]):
        points = [tuple(r) for r in ckpts[list(KEYS)].itertuples(index=False)]
        gap = ckpts.gap.to_numpy(float)
        random_sets = np.array([rng.choice(n_heads, size=k, replace=False) for _ in range(hc.n_random_sets)])
        top = np.array([diffs[p]["top"] for p in points])  # (points, k)
        for measure, kind in HEAD_MEASURES.items():
            d = np.array([diffs[p][measure] for p in points])  # (points, heads)
            rho_top = spearman(np.take_along_axis(d, top, 1).mean(1), gap)
            rho_rand = np.array([spearman(d[:, s].mean(1), gap) for s in random_sets])
            rho_rand = rho_rand[~np.isnan(rho_rand)]
            some = len(rho_rand) > 0
            rows.append(
                dict(
                    category=cat,
                    pos_encoding=pe,
                    measure=measure,
                    kind=kind,
                    k=k,
                    n_points=len(points),
                    rho_topk=rho_top,
                    rho_random_mean=rho_rand.mean() if some else np.nan,
                    rho_random_q025=np.quantile(rho_rand, 0.025) if some else np.nan,
                    rho_random_q975=np.quantile(rho_rand, 0.975) if some else np.nan,
                    p_random=(rho_rand >= rho_top).mean() if some and not np.isnan(rho_top) else np.nan,
                )
            )
    return pd.DataFrame(rows, columns=_CONTROL_COLUMNS)


def tables(rec: HeadRecords, hc: HeadsConfig) -> dict[str, pd.DataFrame]:
    """Every derived table: pairs, points, correlations (ρ per category and metric), random_heads."""
    pairs = pairs_table(rec, hc.top_k)
    points = points_table(pairs)
    return {
        "pairs": pairs,
        "points": points,
        "correlations": correlation_table(points, hc, rec.coverage),
        "random_heads": random_head_control(rec, hc),
    }


# ----------------------------------------------------------------------------------------------------
# Writing and reading the records


def write_records(rec: HeadRecords, tables: dict[str, pd.DataFrame], out_dir: Path | None = None) -> list[str]:
    """CSV per table under ``reports/heads/records/`` (DVC outs); returns the written paths."""
    d = Path(out_dir or HEADS_DIR) / RECORDS_SUBDIR
    d.mkdir(parents=True, exist_ok=True)
    frames = {
        "ablation": rec.ablation,
        "attention": rec.attention,
        "checkpoints": rec.checkpoints,
        "coverage": rec.coverage,
        **tables,
    }
    written = []
    for name, df in frames.items():
        df.to_csv(d / f"{name}.csv", index=False)
        written.append(
            str(
                (d / f"{name}.csv").relative_to(paths.PROJ_ROOT)
                if d.is_relative_to(paths.PROJ_ROOT)
                else d / f"{name}.csv"
            )
        )
    return written


def read_records(out_dir: Path | None = None) -> HeadRecords:
    """The tidy records back from CSV (figures and tables can be redrawn without the models)."""
    d = Path(out_dir or HEADS_DIR) / RECORDS_SUBDIR
    return HeadRecords(*(pd.read_csv(d / f"{n}.csv") for n in ("ablation", "attention", "checkpoints", "coverage")))


def _json_ready(df: pd.DataFrame) -> list[dict]:
    """Records with NaN as null (NaN is not valid JSON)."""
    return json.loads(df.to_json(orient="records"))


def write_summary(
    rec: HeadRecords, table: pd.DataFrame, control: pd.DataFrame, profile: str, out_dir: Path | None = None
) -> Path:
    """``reports/heads/summary.json`` (DVC metrics): ρ per category and metric, the control. No wall time: DVC
    compares metrics, and time is not a result (it is in the records' ``checkpoints.csv``)."""
    p = Path(out_dir or HEADS_DIR) / "summary.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "profile": profile,
        "checkpoints_analysed": len(rec.checkpoints),
        "correlations": _json_ready(table),
        "random_heads": _json_ready(control),
        "coverage": _json_ready(rec.coverage),
    }
    p.write_text(json.dumps(summary, indent=2) + "\n")
    return p


# ----------------------------------------------------------------------------------------------------
# Findings


def format_rho(rho: float, lo: float, hi: float, n: int) -> str:
    """'ρ = 0.62 [0.31, 0.83] (n = 20)', or without the CI where there is none.

    >>> format_rho(1.0, float("nan"), float("nan"), 4)
    'ρ = 1.00, no CI (n = 4)'
    >>> format_rho(float("nan"), float("nan"), float("nan"), 2)
    'ρ undefined (n = 2)'
    """
    if np.isnan(rho):  # too few points, or a constant metric or gap
        return f"ρ undefined (n = {n})"
    ci = f" [{lo:.2f}, {hi:.2f}]" if not np.isnan(lo) else ", no CI"
    return f"ρ = {rho:.2f}{ci} (n = {n})"


def describe(table: pd.DataFrame, control: pd.DataFrame, rec: HeadRecords, points: pd.DataFrame) -> str:
    """Markdown findings with the measured numbers: per category, the paper's two metrics (and the
    log-likelihood variant) against its claim, whether the main task is learned where it is probed, then
    the random-head control and the cost."""
    lines = []
    for (cat, pe), df in table.groupby(["category", "pos_encoding"], sort=False):
        if (df.found == "not run").all():
            lines.append(f"- **{cat}**: not run ({df.groups.iloc[0] or 'no group configured'}).")
            continue
        parts = [
            f"{r.metric} {format_rho(r.rho, r.ci_low, r.ci_high, r.n_points)} → {r.found} (paper: {r.paper}; "
            f"agrees: {r.agrees})"
            for r in df[df.metric.isin(("attn_diff", "em_mad", "ll_mad"))].itertuples()
        ]
        pts = points[(points.category == cat) & (points.pos_encoding == pe)]
        last = pts[pts.step == pts.groupby("run_id").step.transform("max")]
        main_em = float(last.main_exact_match.mean())
        note = (
            f" The main task's exact match at the probed lengths is only {main_em:.2f} at the last checkpoint: "
            "it is not learned there, so the gap follows the auxiliaries' progress, not transfer."
            if main_em < 0.5
            else ""
        )
        lines.append(
            f"- **{cat}** ({pe}; {df.runs.iloc[0]} run(s), {len(pts)} points; groups "
            f"{df.groups.iloc[0]}; gap {pts.gap.min():.2f}–{pts.gap.max():.2f}): " + "; ".join(parts) + "." + note
        )
    for r in control.itertuples():
        if np.isnan(r.rho_topk):
            lines.append(
                f"- Random-head control, {r.category} ({r.pos_encoding}), {r.measure}: ρ undefined (too few points)."
            )
            continue
        lines.append(
            f"- Random-head control, {r.category} ({r.pos_encoding}), {r.measure} on the main task's "
            f"top-{r.k} heads: ρ = {r.rho_topk:.2f} vs {r.rho_random_mean:.2f} "
            f"[{r.rho_random_q025:.2f}, {r.rho_random_q975:.2f}] for random {r.k}-head sets "
            f"(fraction of random sets with ρ ≥ top-k: {r.p_random:.2f})."
        )
    n, wall = len(rec.checkpoints), rec.checkpoints.wall_s.sum()
    lines.append(f"- Cost: {n} checkpoints in {wall:.0f} s ({wall / max(n, 1):.1f} s each).")
    return "\n".join(lines)
