"""The claims table's shared vocabulary: its columns, its verdicts, and the thresholds its rules use.

The claims table (:mod:`lengen.claims`), the cross-paper questions (:mod:`lengen.crosspaper`) and the pretrained
comparison (:mod:`lengen.finetune_claims`) each decide verdicts; they read the thresholds from here so that
"transfers" and "no difference" mean the same number everywhere, and the rules they print quote these numbers.
Import-light (no torch, no pandas) on purpose. No training code imports it: a module in a run's import closure
is part of that run's fingerprint, and a threshold must not retrain anything.
"""

from __future__ import annotations

VERDICTS = ("agrees", "partly", "not reproduced", "not tested")
COLUMNS = ("id", "paper", "claim", "measured", "seeds", "verdict", "rule", "figure", "report")
BAR = 0.5  # mean transfer-range exact match at least this: the main task extrapolates
MARGIN = 0.05  # a difference of exact match (or of the gap) smaller than this is no difference
NEAR_ZERO = 0.05  # pretrained zero-shot exact match below this is "near zero"
GENERALIZES = 0.5  # pretrained: mean exact match over (L, 2L] at least this is "generalizes on its own"


def row(cid, paper, claim, measured, seeds, verdict, rule, figure="", report="05_figures.html") -> dict:
    """One claims-table row (:data:`COLUMNS`); ``verdict`` must be one of :data:`VERDICTS`."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    return dict(zip(COLUMNS, (cid, paper, claim, measured, seeds, verdict, rule, figure, report)))


def per_seed(df, col: str = "main_transfer", name: str = "") -> str:
    """Every seed of a per-run table (columns ``seed`` and ``col``): 'add_alone: s0 0.00 · s1 0.00'."""
    return (f"{name}: " if name else "") + " · ".join(f"s{int(s)} {v:.2f}" for s, v in zip(df.seed, df[col]))
