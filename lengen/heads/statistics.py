"""Comparing two tasks' heads and the statistics of the comparison across checkpoints.

Head comparison: the mean absolute difference, Spearman rank correlation and top-k overlap of two
mean-ablation maps (the attention difference of two mean patterns is a probe's, in
:mod:`lengen.heads.probe`, so that every row a run stores is computed there). Statistics: Spearman's ρ with a
percentile bootstrap CI, and the verdict ("tracks", "no relation", "opposite") read off the CI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# ----------------------------------------------------------------------------------------------------
# Comparing two tasks


def top_heads(importance: np.ndarray, k: int) -> set[int]:
    """Flat indices (layer * n_head + head) of the k largest entries; ties go to the lower index."""
    flat = np.asarray(importance, float).ravel()
    return set(np.argsort(-flat, kind="stable")[:k].tolist())


def compare_maps(a: np.ndarray, b: np.ndarray, k: int) -> dict[str, float]:
    """Mean absolute difference, Spearman rank correlation and top-k overlap of two head maps.

    >>> m = np.array([[0.9, 0.0], [0.1, 0.0]])
    >>> {name: round(v, 3) for name, v in compare_maps(m, m[:, ::-1], k=1).items()}   # heads swapped
    {'mad': 0.5, 'rank': -0.889, 'topk': 0.0}
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    return {
        "mad": float(np.abs(a - b).mean()),
        "rank": spearman(a.ravel(), b.ravel()),
        "topk": len(top_heads(a, k) & top_heads(b, k)) / k,
    }


# ----------------------------------------------------------------------------------------------------
# Rank correlation, bootstrap, verdicts


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis (rows of a 2-D array), ties get their average rank (as scipy's
    ``rankdata``): ``rankdata([10, 30, 20, 20]) -> [1, 4, 2.5, 2.5]``."""
    x = np.asarray(x, float)
    return pd.DataFrame(np.atleast_2d(x)).rank(axis=1).to_numpy().reshape(x.shape)


def _rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair of two (m, n) arrays; NaN where a row is constant."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    den = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


def spearman(x, y) -> float:
    """Spearman's ρ (Pearson of the ranks); NaN for fewer than 3 points or a constant variable.

    >>> spearman([1, 2, 3, 4], [1, 8, 27, 64]), spearman([1, 2, 3], [5, 5, 5])
    (1.0, nan)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return float("nan")
    return float(_rowwise_spearman(x[None], y[None])[0])


def bootstrap_spearman(
    x, y, n_bootstrap: int, rng: np.random.Generator, level: float = 0.95
) -> tuple[float, float, float]:
    """ρ and its percentile bootstrap CI, resampling the points with replacement.

    Resamples where ρ is undefined (e.g. all copies of one point) are dropped; if more than half are,
    the CI is NaN. Checkpoints of one run are not independent, so the CI is optimistic when a few runs
    give many points.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = spearman(x, y)
    if np.isnan(rho):
        return rho, float("nan"), float("nan")
    idx = rng.integers(0, len(x), size=(n_bootstrap, len(x)))
    boots = _rowwise_spearman(x[idx], y[idx])
    boots = boots[~np.isnan(boots)]
    if len(boots) < n_bootstrap / 2:
        return rho, float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return rho, float(lo), float(hi)


def verdict(rho: float, lo: float, hi: float, sign: int, n_points: int, min_points: int) -> str:
    """'tracks' (the CI excludes 0 on the expected side), 'no relation' (the CI holds 0), 'opposite',
    or why no verdict: too few points, or ρ undefined.

    >>> verdict(0.8, 0.5, 0.95, sign=+1, n_points=20, min_points=8)
    'tracks'
    >>> verdict(0.8, 0.5, 0.95, sign=-1, n_points=20, min_points=8)   # a similarity should fall
    'opposite'
    """
    if n_points < min_points:
        return f"too few points ({n_points} < {min_points})"
    if np.isnan(rho) or np.isnan(lo):
        return "undefined (metric or gap constant)"
    lo, hi = sorted((sign * lo, sign * hi))
    if lo > 0:
        return "tracks"
    return "opposite" if hi < 0 else "no relation"


def agrees(claim: str, found: str) -> str:
    """Does a verdict agree with the paper's claim ('tracks' / 'does not track')? '—' if either is open."""
    if claim == "not stated" or found not in ("tracks", "no relation", "opposite"):
        return "—"
    return "yes" if {"tracks": "tracks", "does not track": "no relation"}[claim] == found else "no"
