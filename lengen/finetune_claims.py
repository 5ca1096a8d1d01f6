"""What the pretrained comparison's fine-tunes say: one summary row per run, the mean ± sd over seeds, and the
paper's pretrained-model claims beside our numbers (worded for the claims table by ``lengen.claims``).

Apart from ``lengen.finetune`` on purpose: a fine-tune's fingerprint covers its module's import closure, so
analysis code there would make a change of a verdict threshold retrain every fine-tune.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lengen.config import Config
from lengen.finetune import FinetuneRun, load_params, runs_of
from lengen.pretrained import INITS
from lengen.records import final_records
from lengen.verdicts import GENERALIZES, MARGIN, NEAR_ZERO


def _range_mean(records: pd.DataFrame, run_id: str, task: str, lo: int, hi: int) -> float:
    """Final exact match of ``task`` in run ``run_id``, averaged over lengths lo..hi."""
    f = final_records(records)
    m = f[(f.run_id == run_id) & (f.task == task) & f.length.between(lo, hi)]
    return float(m.exact_match.mean()) if len(m) else float("nan")


def _range_means(records: pd.DataFrame, runs: list[FinetuneRun], task: str, lo: int, hi: int) -> pd.Series:
    """:func:`_range_mean` in each of ``runs`` (one per seed), indexed by seed."""
    return pd.Series({r.seed: _range_mean(records, r.run_id, task, lo, hi) for r in runs}, dtype=float)


def seed_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Per fine-tune (group × initialization; the zero-shot checks apart) and measure of
    :func:`lengen.finetune.summarize_runs`: the mean and sd over seeds (population sd, as the claims table) and
    every seed (columns ``s<seed>``)."""
    keys = ["group", "pos_encoding", "zero_shot"]
    measures = [c for c in summary.columns if c.startswith(("main/", "aux/")) or c == "generalization_gap"]
    rows = []
    for key, df in summary.sort_values("seed", kind="stable").groupby(keys, sort=False):
        for m in measures:
            v = df.set_index("seed")[m].dropna()
            if len(v):
                every = {f"s{s}": x for s, x in v.items()}
                rows.append(dict(zip(keys, key), measure=m, seeds=len(v), mean=v.mean(), sd=float(np.std(v)), **every))
    return pd.DataFrame(rows).rename(columns={"pos_encoding": "init"})


def claims_table(records: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The paper's pretrained-model claims: the measure we use for each, the exact matches it compares at every
    seed, and whether the claim agrees, judged on the means over seeds (thresholds NEAR_ZERO, MARGIN,
    GENERALIZES of ``lengen.verdicts``). One row per claim × compared quantity × seed
    (``lengen.claims.pretrained_claims`` words it: mean ± sd and every seed)."""
    p = load_params(cfg)
    c = p.claims
    rows = []

    def add(claim: str, measure: str, quantities: dict[str, pd.Series], agrees: bool | str):
        verdict = agrees if isinstance(agrees, str) else "yes" if agrees else "no"
        rows.extend(
            dict(claim=claim, measure=measure, quantity=q, seed=s, exact_match=v, agrees=verdict)
            for q, by_seed in quantities.items()
            for s, v in by_seed.items()
        )

    g = p.groups[c.scratch]
    main, L = g.main_task, g.main_max
    zs = _range_means(records, runs_of(cfg, c.scratch, "zero_shot"), main, 1, g.eval_max)
    add(
        "zero-shot accuracy on the main task is near zero",
        f"{main}, mean exact match over lengths 1–{g.eval_max}",
        {"zero-shot": zs},
        zs.mean() < NEAR_ZERO,
    )

    pre, scr = (runs_of(cfg, c.scratch, i) for i in INITS)
    pre_tr, scr_tr = (_range_means(records, r, main, L + 1, 2 * L) for r in (pre, scr))
    pre_in, scr_in = (_range_means(records, r, main, 1, L) for r in (pre, scr))
    add(
        "length generalization improves with pretraining",
        f"{main} ≤{L} alone: exact match over {L + 1}–{2 * L} (and 1–{L}), pretrained vs scratch",
        {
            f"pretrained {L + 1}–{2 * L}": pre_tr,
            f"scratch {L + 1}–{2 * L}": scr_tr,
            f"pretrained 1–{L}": pre_in,
            f"scratch 1–{L}": scr_in,
        },
        pre_tr.mean() > scr_tr.mean() + MARGIN,
    )

    rel, ctl = p.groups[c.related], p.groups[c.control]
    hi = rel.transfer_max
    alone_tr = _range_means(records, runs_of(cfg, c.scratch, "pretrained"), main, L + 1, hi)
    rel_tr = _range_means(records, runs_of(cfg, c.related, "pretrained"), rel.main_task, rel.main_max + 1, hi)
    ctl_tr = _range_means(records, runs_of(cfg, c.control, "pretrained"), ctl.main_task, ctl.main_max + 1, hi)
    related_transfers = rel_tr.mean() > alone_tr.mean() + MARGIN
    add(
        "related auxiliaries transfer in the pretrained model",
        f"{rel.main_task} over {rel.main_max + 1}–{hi}: + {', '.join(rel.aux)} vs alone",
        {f"+ {', '.join(rel.aux)}": rel_tr, "alone": alone_tr},
        related_transfers,
    )
    # "no transfer from the control" says something only where the related auxiliaries do transfer
    control_flat = ctl_tr.mean() <= alone_tr.mean() + MARGIN
    add(
        "the control auxiliary does not transfer",
        f"{ctl.main_task} over {ctl.main_max + 1}–{hi}: + {', '.join(ctl.aux)} vs alone",
        {f"+ {', '.join(ctl.aux)}": ctl_tr, "alone": alone_tr},
        "vacuous" if control_flat and not related_transfers else control_flat,
    )

    a = p.groups[c.alone]
    alone = runs_of(cfg, c.alone, "pretrained")
    cp_tr = _range_means(records, alone, a.main_task, a.main_max + 1, 2 * a.main_max)
    cp_in = _range_means(records, alone, a.main_task, 1, a.main_max)
    add(
        f"{a.main_task} generalizes on its own (pretrained)",
        f"{a.main_task} ≤{a.main_max} alone: exact match over {a.main_max + 1}–{2 * a.main_max} (and 1–{a.main_max})",
        {f"{a.main_max + 1}–{2 * a.main_max}": cp_tr, f"1–{a.main_max}": cp_in},
        cp_tr.mean() >= GENERALIZES,
    )
    return pd.DataFrame(rows)
