"""What the scripts that score a trained run's checkpoint share: options, data section, checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lengen import paths
from lengen.config import DataConfig, load_config


def add_options(ap: argparse.ArgumentParser, lengths: str) -> None:
    """``--lengths A-B``, ``--step``, ``--profile`` and ``--threads``."""
    ap.add_argument("--lengths", default=lengths, help="lengths A-B")
    ap.add_argument("--step", type=int, default=None, help="a kept checkpoint's step (default: last.ckpt)")
    ap.add_argument("--profile", default="cpu", help="its data section gives n_eval, seed and holdout")
    ap.add_argument("--threads", type=int, default=1)


def setup(args: argparse.Namespace) -> tuple[DataConfig, list[int]]:
    """Set the thread count; return the profile's data section and the lengths to score."""
    torch.set_num_threads(args.threads)
    lo, hi = (int(x) for x in args.lengths.split("-"))
    return load_config(paths.PROFILES_DIR / f"{args.profile}.yaml").data, list(range(lo, hi + 1))


def checkpoint(run_or_search_dir: Path, step: int | None = None) -> Path:
    """The run's ``last.ckpt`` (or kept ``step=XXXXXX.ckpt``): DIR is a pipeline run dir ``runs/<run_id>``
    or a ``recipe_search.py`` search dir holding ``run/``."""
    run = run_or_search_dir / "run" if (run_or_search_dir / "run").is_dir() else run_or_search_dir
    path = run / "checkpoints" / ("last.ckpt" if step is None else f"step={step:06d}.ckpt")
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    return path
