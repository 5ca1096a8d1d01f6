"""One run's rows of the analysis: each kept checkpoint probed (:mod:`lengen.heads.probe`) and paired with
the run's generalization gap at that step.

The rows carry the run's keys but not its category: the category is a label from ``heads.groups`` that the
driver adds (:meth:`RunRows.labelled`), so rows stored per run (:mod:`lengen.heads.store`) stay valid when
a group moves to another category.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from lengen.config import HeadsConfig, RunConfig
from lengen.engine import load_system
from lengen.heads.probe import analyse_checkpoint, probe_inputs
from lengen.records import group_gap, load_records
from lengen.runtime import default_device

RUN_KEYS = ("run_id", "group", "seed", "pos_encoding", "step")  # one checkpoint of one run
KEYS = ("run_id", "group", "category", "seed", "pos_encoding", "step")  # one (run, checkpoint) in the tables

# Each table's columns after its keys.
FIELDS: dict[str, tuple[str, ...]] = {
    "ablation": ("task", "role", "length", "layer", "head", "exact_match", "loglik", "em_drop", "ll_drop"),
    "attention": ("main", "aux", "length", "layer", "head", "attn_diff"),
    "checkpoints": ("gap", "wall_s"),
}
# Measured columns: floats, also where a run's values all happen to be whole numbers (an untrained task's
# exact match is 0 throughout), so that a table read back from CSV has the dtypes of one computed fresh.
FLOATS = frozenset({"exact_match", "loglik", "em_drop", "ll_drop", "attn_diff", "gap", "wall_s"})


def columns(table: str, keys: tuple[str, ...] = KEYS) -> list[str]:
    """A table's columns: ``keys`` (a run's rows: :data:`RUN_KEYS`), then its fields."""
    return [*keys, *FIELDS[table]]


@dataclass
class RunRows:
    """One run's rows of the three tidy tables (:data:`RUN_KEYS` + :data:`FIELDS`)."""

    ablation: pd.DataFrame
    attention: pd.DataFrame
    checkpoints: pd.DataFrame

    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in FIELDS}

    def labelled(self, category: str) -> dict[str, pd.DataFrame]:
        """The frames with the run's category inserted where :data:`KEYS` has it."""
        out = {}
        for name, df in self.frames().items():
            df = df.copy()
            df.insert(KEYS.index("category"), "category", category)
            out[name] = df
        return out


def probe_run(
    run: RunConfig,
    hc: HeadsConfig,
    checkpoints: list[tuple[int, Path]],
    records_dir: Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> RunRows:
    """Probe each of the run's ``checkpoints`` ((step, path), :func:`lengen.heads.probe.checkpoint_paths`);
    its gap at each step comes from its tidy records in ``records_dir``. ``device``: by default the
    accelerator if there is one (:func:`lengen.runtime.default_device`)."""
    device = device or default_device()
    group = run.group
    inputs = probe_inputs(group, hc, run.data)
    records = load_records([run.run_id], records_dir)
    ablation, attention, points = [], [], []
    for step, path in checkpoints:
        t0 = time.perf_counter()
        model = load_system(path).model.eval().to(device)
        abl, att = analyse_checkpoint(model, group, inputs)
        key = dict(run_id=run.run_id, group=run.group_name, seed=run.seed, pos_encoding=run.pos_encoding, step=step)
        ablation += [{**key, **r} for r in abl]
        attention += [{**key, **r} for r in att]
        at_step = records[records.step == step]
        if at_step.empty:
            raise ValueError(f"{run.run_id}: checkpoint {path.name} has no records at step {step}")
        gap = group_gap(at_step.to_dict("records"), group)
        points.append({**key, "gap": gap, "wall_s": time.perf_counter() - t0})
        if progress:
            print(f"[heads] {run.run_id} step {step}: gap {gap:.3f} ({points[-1]['wall_s']:.1f}s)", flush=True)
    return RunRows(
        *(
            pd.DataFrame(rows, columns=columns(name, RUN_KEYS))
            for name, rows in zip(FIELDS, (ablation, attention, points))
        )
    )
