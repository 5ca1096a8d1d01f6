"""Every figure of the project, drawn from tidy records and tables (never from a model in memory).

One module per analysis, so a stage imports only the figures it draws:

- ``lengen.plots.runs``        training runs: accuracy vs length, ranges across checkpoints, gaps, the grid
- ``lengen.plots.heads``       head reuse: mean-ablation maps, each metric against the gap
- ``lengen.plots.formal``      the formal framework: predicted vs observed per length bin
- ``lengen.plots.pretrained``  the pretrained comparison: pretrained vs scratch, ± auxiliaries, losses

This module holds what they share: one seaborn style, :func:`save` (the only place a figure is written),
and the shading of training ranges. Axes are labelled in words.
"""

from __future__ import annotations

from pathlib import Path

# No backend is forced: in a kernel (Jupyter, papermill) the inline backend shows every figure a cell
# makes, so the executed reports carry them; without a display matplotlib falls back to Agg by itself.
import seaborn as sns

from lengen import paths

sns.set_theme(style="whitegrid", context="notebook")

DPI = 120
EXACT_MATCH_LIM = (-0.03, 1.03)  # exact-match axes: 0 and 1 visible, not on the frame


def save(fig, name: str, out_dir: Path | None = None) -> str:
    """Write ``fig`` as ``<out_dir>/<name>.png`` (default ``reports/figures``); returns the path, relative to
    the project root where it lies inside it. The figure stays open, so a notebook still shows it."""
    d = Path(out_dir or paths.FIGURES_DIR)
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.png"
    fig.savefig(p, dpi=DPI, bbox_inches="tight")
    return str(p.relative_to(paths.PROJ_ROOT) if p.is_relative_to(paths.PROJ_ROOT) else p)


def shade_training(ax, main_max: int, aux_max: int | None = None) -> None:
    """Shade the main task's training lengths (≤ main_max) and, beyond them, the auxiliaries' (≤ aux_max)."""
    ax.axvspan(0.5, main_max + 0.5, color="tab:green", alpha=0.10, label=f"main trained (≤{main_max})")
    if aux_max and aux_max > main_max:
        ax.axvspan(main_max + 0.5, aux_max + 0.5, color="tab:orange", alpha=0.07, label=f"aux trained (≤{aux_max})")
