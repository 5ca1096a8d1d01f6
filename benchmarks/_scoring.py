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
    ap.add_argument("--step", type=int, default=None, help="a kept checkpoint's step (default: the latest kept)")
    ap.add_argument("--profile", default="cpu", help="its data section gives n_eval, seed and holdout")
    ap.add_argument("--threads", type=int, default=1)


def setup(args: argparse.Namespace) -> tuple[DataConfig, list[int]]:
    """Set the thread count; return the profile's data section and the lengths to score."""
    torch.set_num_threads(args.threads)
    lo, hi = (int(x) for x in args.lengths.split("-"))
    return load_config(paths.PROFILES_DIR / f"{args.profile}.yaml").data, list(range(lo, hi + 1))


def checkpoint(run_dir: Path, step: int | None = None) -> Path:
    """A kept checkpoint ``step=XXXXXX.ckpt`` of a run (default: the latest). DIR is the engine's run
    directory ``runs/<run_id>/<fingerprint>`` (``lengen.train.run_spec(run).run_dir``), or ``runs/<run_id>``
    when it holds a single fingerprint."""
    found = sorted(run_dir.glob("checkpoints/step=*.ckpt")) or sorted(run_dir.glob("*/checkpoints/step=*.ckpt"))
    if step is not None:
        found = [p for p in found if p.name == f"step={step:06d}.ckpt"]
    if not found:
        raise FileNotFoundError(f"no kept checkpoint{'' if step is None else f' at step {step}'} under {run_dir}")
    fingerprints = sorted({p.parent.parent.name for p in found})
    if len(fingerprints) > 1:
        raise ValueError(f"{run_dir} holds runs of several fingerprints: name one ({fingerprints})")
    return found[-1]
