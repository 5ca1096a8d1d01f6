"""Many runs at once: `make queue` trains the smoke profile's runs two at a time (2 workers x 1 thread) in a
temporary copy of the repo; every run's records, metrics, run directory and dvc.lock entry land in that one
workspace, as `dvc repro` leaves them.

Why not DVC's experiment queue (`dvc exp run --queue`, `dvc queue start --jobs 2`): each queued experiment
runs in its own temporary copy and comes back as an experiment commit (dvc.lock and git-tracked files) plus
the DVC-cached outputs; the run directories (`runs/<id>`: checkpoints, `persist`, not cached) are deleted with
the copy, and two experiments' dvc.lock files are two alternatives, not one pipeline (applying the second
drops the first's entry). `make queue` runs each stage with `dvc repro --single-item` in the workspace
itself, which DVC supports: it releases its repository lock while a stage's command runs, and
`--wait-for-lock` waits out the others' short locked moments. docs/scaling.md has the details.
"""

import itertools
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import pytest
from repo_copy import copy_repo, sh

from lengen import paths

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parent.parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the tracked files, params.yaml = the smoke profile at 1 thread per run, its own git repo."""
    root = tmp_path_factory.mktemp("queue")
    params = (paths.PROFILES_DIR / "smoke.yaml").read_text()
    one_thread = re.sub(r"(?m)^  threads: 2\b", "  threads: 1", params, count=1)  # the train section's
    assert one_thread != params
    env = copy_repo(root, one_thread)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return root, env


def run_stages(root, env):
    names = sh(f"{VENV}/bin/dvc stage list --name-only", root, env).stdout.split()
    return [n for n in names if n.split("@")[0] in ("train", "ablation", "grid", "cross")]


def test_make_queue_trains_two_runs_at_a_time_into_one_workspace(repo):
    root, env = repo
    # ORDER: the stages a file names go first, in its order; here DVC's order reversed
    order = list(reversed(run_stages(root, env)))
    (root / "order.txt").write_text("# reversed\n" + "\n".join(order[:-1]) + "\n")  # the last: not named
    # This interpreter's venv, taken as installed (-o: its stamp is not remade from the copy's requirements).
    p = sh(f"make -o {VENV}/.installed queue VENV={VENV} JOBS=2 GPUS='0 1' ORDER=order.txt", root, env)
    stages = run_stages(root, env)
    assert len(stages) >= 5  # smoke: 2 experiment runs, 1 NoPE ablation, 1 grid cell, 1 APE (cross)
    launched = re.findall(r"^\[queue\] slot \d+ gpu \d+: (\S+)$", p.stdout, re.M)
    assert sorted(launched) == sorted(stages)
    # two workers start their stages at nearly the same moment: a neighbour may print first
    assert all(abs(launched.index(s) - i) <= 1 for i, s in enumerate(order)), (launched, order)
    # one accelerator per worker: slot k was given GPU k (CUDA_VISIBLE_DEVICES; nothing to use on this CPU)
    for slot in (0, 1):
        assert f"[queue] slot {slot} gpu {slot}: " in p.stdout
    assert sum(p.stdout.count(f": {s}\n") for s in stages) == len(stages)

    lock = (root / "dvc.lock").read_text()
    ids = sorted(p.stem for p in (root / "reports/train").glob("*.ipynb"))
    assert len(ids) == len(stages)
    for run_id in ids:
        assert (root / "reports/records" / f"{run_id}.csv").exists()
        assert (root / "reports/metrics" / f"{run_id}.json").exists()
        (run_json,) = (root / "runs" / run_id).glob("*/run.json")
        assert json.loads(run_json.read_text())["threads"] == 1
        assert f"reports/records/{run_id}.csv" in lock
    # right after each run its slot stored the run's head-analysis rows, or said in one line that there are none
    for stage in stages:
        assert p.stdout.count(f"[heads] {stage}: ") == 1, stage
    assert "[heads] train@arith_carry-rope-0: arith_carry-rope-s0 stored in reports/heads/runs/" in p.stdout
    assert [d.name for d in (root / "reports/heads/runs").iterdir()] == ["arith_carry-rope-s0"]  # smoke: the one
    # DVC recorded every run: nothing left to train
    assert "up to date" in sh(f"{VENV}/bin/dvc status {' '.join(stages)}", root, env).stdout

    # and the runs did overlap in time (each stage's notebook carries its start and end)
    spans = []
    for run_id in ids:
        meta = json.loads((root / "reports/train" / f"{run_id}.ipynb").read_text())["metadata"]["papermill"]
        spans.append((datetime.fromisoformat(meta["start_time"]), datetime.fromisoformat(meta["end_time"])))
    spans.sort()
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))
