"""Each analysed run's rows, stored where git keeps them, with the key of what they were computed from.

Checkpoints are not committed (large; ``.gitignore``), and the study is trained in pieces, over sessions and
machines. So a run's rows are computed right after it trains (``make queue`` runs ``python -m lengen.heads``
after each training stage) and committed; the ``heads`` stage reads them back wherever the checkpoints are
gone. An entry, ``reports/heads/runs/<run_id>/``::

    ablation.csv.gz  attention.csv.gz  checkpoints.csv.gz   the run's rows (lengen.heads.run, no category)
    key.json                                                 what the rows were computed from

The key: the run's fingerprint (its parameters and training code, ``lengen.train.run_spec``), the ``heads``
and ``data`` parameters the probe reads, and the hash of the code that computes the rows beyond the trained
weights (:data:`CODE_FILES`). An entry is used only when its key equals the run's key now; otherwise the
rows are computed again from the checkpoints, and without checkpoints that is an error naming what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from lengen import paths
from lengen.config import HeadsConfig, RunConfig
from lengen.heads.probe import checkpoint_paths
from lengen.heads.run import FIELDS, FLOATS, RUN_KEYS, RunRows, columns, probe_run
from lengen.sources import code_hash
from lengen.train import run_spec

STORE_DIR = paths.REPORTS_DIR / "heads" / "runs"
KEY_FILE = "key.json"
SUFFIX = ".csv.gz"
# Six significant digits: far below the probe's noise across devices (fp32), and half the bytes of full
# precision; the mtime of 0 keeps the gzip bytes of equal rows equal (no churn in git).
FLOAT_FORMAT = "%.6g"
COMPRESSION = {"method": "gzip", "mtime": 0}

# The code that turns a run's checkpoints into its rows, beyond the trained weights. Named here rather than
# taken as the import closure of these modules, which through the package's __init__ would take in the
# aggregate tables too (a change there must not invalidate the stored rows); everything else these modules
# import (model, data, tasks, records, engine) is in lengen.train's closure, hence in the run's fingerprint
# (tests/test_heads_store.py checks that).
CODE_FILES = ("lengen/heads/probe.py", "lengen/heads/run.py")


def entry_key(run: RunConfig, hc: HeadsConfig) -> dict:
    """What a run's rows are computed from (JSON-ready, as ``key.json`` holds it)."""
    key = {
        "run_id": run.run_id,
        "fingerprint": run_spec(run).fingerprint,
        "heads": {
            "n_examples": hc.n_examples,
            "length_fractions": hc.length_fractions,
            "max_checkpoints": hc.max_checkpoints,
        },
        "data": {"seed": run.data.seed, "holdout_modulus": run.data.holdout_modulus},
        "code": code_hash(CODE_FILES),
    }
    return json.loads(json.dumps(key))  # lists, not tuples: comparable with a key read back


def entry_dir(run_id: str, store_dir: Path | None = None) -> Path:
    return Path(store_dir or STORE_DIR) / run_id


def write_entry(rows: RunRows, key: dict, store_dir: Path | None = None) -> Path:
    """Write a run's rows, then its key; returns the entry's directory."""
    d = entry_dir(key["run_id"], store_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / KEY_FILE).unlink(missing_ok=True)  # a rewrite cut short leaves no key, so no entry that looks valid
    for name, df in rows.frames().items():
        df.to_csv(d / f"{name}{SUFFIX}", index=False, float_format=FLOAT_FORMAT, compression=COMPRESSION)
    tmp = d / f"{KEY_FILE}.tmp"
    tmp.write_text(json.dumps(key, indent=2) + "\n")
    tmp.replace(d / KEY_FILE)
    return d


def read_key(run_id: str, store_dir: Path | None = None) -> dict | None:
    """The stored key of a complete entry, or None (no entry, or one without all its tables)."""
    d = entry_dir(run_id, store_dir)
    if not (d / KEY_FILE).is_file() or not all((d / f"{name}{SUFFIX}").is_file() for name in FIELDS):
        return None
    return json.loads((d / KEY_FILE).read_text())


def read_entry(run_id: str, store_dir: Path | None = None) -> RunRows:
    """A run's stored rows, with float columns as floats."""
    d = entry_dir(run_id, store_dir)
    return RunRows(
        *(
            pd.read_csv(d / f"{name}{SUFFIX}", dtype={c: float for c in columns(name, RUN_KEYS) if c in FLOATS})
            for name in FIELDS
        )
    )


def _flat(key: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in key.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def mismatches(stored: dict, wanted: dict) -> list[str]:
    """The fields where two keys differ, as 'field: stored X, now Y'."""
    a, b = _flat(stored), _flat(wanted)
    return [
        f"{k}: stored {a.get(k, '—')}, now {b.get(k, '—')}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)
    ]


def run_rows(
    run: RunConfig,
    hc: HeadsConfig,
    runs_dir: Path | None = None,
    records_dir: Path | None = None,
    store_dir: Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> tuple[RunRows, bool]:
    """A run's rows and whether they were computed now: read back from its entry when the key matches,
    else computed from its kept checkpoints (in ``runs_dir``) and stored.

    The rows returned are always the stored ones, so a table is the same whether its rows were computed
    in this session or read back (floats at :data:`FLOAT_FORMAT`).
    """
    key, stored = entry_key(run, hc), read_key(run.run_id, store_dir)
    if stored == key:
        return read_entry(run.run_id, store_dir), False
    run_dir = run_spec(run, runs_dir).run_dir
    ckpts = checkpoint_paths(run_dir, hc.max_checkpoints)
    if not ckpts:
        where = entry_dir(run.run_id, store_dir)
        why = (
            f"no stored rows in {where}"
            if stored is None
            else f"its stored rows in {where} were computed from other inputs ({'; '.join(mismatches(stored, key))})"
        )
        raise FileNotFoundError(
            f"heads: run {run.run_id}: {why}, and no kept checkpoints in {run_dir}/checkpoints to compute them "
            "from; train the run (dvc repro) or restore its checkpoints"
        )
    write_entry(probe_run(run, hc, ckpts, records_dir, device, progress), key, store_dir)
    return read_entry(run.run_id, store_dir), True
