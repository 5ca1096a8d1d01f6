"""End to end: the README's `make reproduce` on the `smoke` profile in a temporary copy of the repo, and what DVC
makes of it afterwards.

`make reproduce` trains the runs with `make queue`, two at a time (2 workers x 1 thread), then `dvc repro` runs the
rest; every run's records, metrics, run directory and dvc.lock entry land in the one workspace, as `dvc repro`
leaves them. Why not DVC's experiment queue (`dvc exp run --queue`, `dvc queue start --jobs 2`): each queued
experiment runs in its own temporary copy and comes back as an experiment commit (dvc.lock and git-tracked files)
plus the DVC-cached outputs; the run directories (`runs/<id>`: checkpoints, `persist`, not cached) are deleted with
the copy, and two experiments' dvc.lock files are two alternatives, not one pipeline (applying the second drops the
first's entry). `make queue` runs each stage with `dvc repro --single-item` in the workspace itself, which DVC
supports: it releases its repository lock while a stage's command runs, and `--wait-for-lock` waits out the others'
short locked moments. docs/scaling.md has the details.
"""

import itertools
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from repo_copy import copy_repo, sh

from lengen import paths, runtime

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parent.parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the tracked files, params.yaml = the smoke profile at 1 thread per run, its own git repo."""
    root = tmp_path_factory.mktemp("repo")
    params = (paths.PROFILES_DIR / "smoke.yaml").read_text()
    one_thread = re.sub(r"(?m)^  threads: 2\b", "  threads: 1", params, count=1)  # the train section's
    assert one_thread != params
    env = copy_repo(root, one_thread)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return root, env


def run_stages(root, env):
    names = sh(f"{VENV}/bin/dvc stage list --name-only", root, env).stdout.split()
    return [n for n in names if n.split("@")[0] in ("train", "ablation", "grid", "cross")]


def test_make_reproduce_smoke_end_to_end(repo):
    root, env = repo
    # ORDER: the stages a file names go first, in its order; here DVC's order reversed
    order = list(reversed(run_stages(root, env)))
    (root / "order.txt").write_text("# reversed\n" + "\n".join(order[:-1]) + "\n")  # the last: not named
    # This interpreter's venv, taken as installed (-o: its stamp is not remade from the copy's requirements).
    p = sh(f"make -o {VENV}/.installed reproduce VENV={VENV} JOBS=2 GPUS='0 1' ORDER=order.txt", root, env)

    # The queue: two workers, in the order given, one accelerator slot each, every run recorded where DVC puts it.
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

    # Then `dvc repro`: every other stage, every report.
    assert "[lengen] done notebooks/02_train.ipynb" in p.stdout
    for nb in ("01_data", "03_pretrained", "04_heads", "05_figures", "06_formal", "07_cross_paper"):
        assert (root / f"reports/{nb}.ipynb").exists() and (root / f"reports/{nb}.html").exists()
    assert list((root / "reports/figures").glob("transfer_*.png"))
    for f in ("gaps.png", "grid.png", "checkpoint_ranges.png"):
        assert (root / "reports/figures" / f).exists(), f
    assert "| verdict |" in (root / "reports/claims.md").read_text() and (root / "reports/claims.csv").exists()
    # stages `ablation` (NoPE) and `grid` (length-ratio cells) train their runs like `train`
    assert (root / "reports/records/arith_carry-nope-s0.csv").exists()
    assert (root / "reports/records/grid_m3_a6-rope-s0.csv").exists()
    # stage `cross` trains the APE runs, stage `crosspaper` reads them beside the RoPE ones (notebook 07)
    assert (root / "reports/records/arith_carry-ape-s0.csv").exists()
    assert (root / "reports/cross/encodings.csv").exists() and (root / "reports/cross/rescue.png").exists()
    assert {"cross:q1", "cross:q2"} <= set(pd.read_csv(root / "reports/claims.csv").id)
    assert (root / "reports/formal/predicted_vs_observed.png").exists()  # stage `formal`
    assert (root / "models/smollm2-135m-instruct/model.safetensors").exists()  # stage convert
    assert list((root / "reports/pretrained/records").glob("*-zero_shot-s0.csv"))
    assert list((root / "reports/metrics").glob("*.json")) and (root / "reports/summary.json").exists()
    assert list((root / "data/eval").glob("*.jsonl"))
    assert list((root / "runs").glob("*/*/checkpoints/step=*.ckpt"))  # runs/<id>/<fingerprint>/
    # Executed notebooks carry the injected parameters; the sources stay stripped.
    assert "injected-parameters" in (root / "reports/train/arith_carry-rope-s0.ipynb").read_text()
    # ... and their figures, each stored once: the saved PNG, linked from the report (not embedded in it again)
    for nb, figures in (
        ("05_figures", "reports/figures"),
        ("03_pretrained", "reports/pretrained/figures"),
        ("07_cross_paper", "reports/cross"),
    ):
        text = (root / f"reports/{nb}.ipynb").read_text()
        outputs = [o for c in json.loads(text)["cells"] for o in c.get("outputs", [])]
        assert not any("image/png" in o.get("data", {}) for o in outputs), nb
        saved = list((root / figures).glob("*.png"))
        assert saved and all(f"../{figures}/{f.name}" in text for f in saved), nb
    # Every report that reads runs says, in its header (its first output), where they trained; all here.
    machine = runtime.trained_on({"provenance": runtime.provenance()})["machine"]
    for nb in ("03_pretrained", "04_heads", "05_figures", "06_formal", "07_cross_paper", "train/arith_carry-rope-s0"):
        cells = json.loads((root / f"reports/{nb}.ipynb").read_text())["cells"]
        header = "".join(next(o for c in cells for o in c.get("outputs", []))["data"]["text/markdown"])
        assert header.startswith("**Provenance**") and f"on {machine}" in header, (nb, header)
        assert "**Trained on** — no runs" not in header and "Several machines" not in header, (nb, header)
    assert f"on {machine}" in (root / "reports/claims.md").read_text()
    # DVC sees the metrics and plots.
    assert "generalization_gap" in sh("dvc metrics show", root, env).stdout
    sh("dvc plots show --json", root, env)

    # A second repro runs nothing.
    p = sh("dvc repro", root, env)
    assert "Running stage" not in p.stdout
    assert "up to date" in sh("dvc status", root, env).stdout


def test_changing_one_group_reruns_only_its_runs(repo):
    root, env = repo
    sh("dvc repro", root, env)
    params = (root / "params.yaml").read_text()
    changed = params.replace("eval_max: 8\n    baseline: add_alone", "eval_max: 7\n    baseline: add_alone")
    assert changed != params
    (root / "params.yaml").write_text(changed)
    status = sh("dvc status train", root, env).stdout
    assert "train@arith_carry-rope-0" in status and "add_alone" not in status
    (root / "params.yaml").write_text(params)


def test_failing_notebook_fails_the_stage_readably(repo):
    root, env = repo
    p = sh(
        "python -m lengen.notebook notebooks/02_train.ipynb reports/bad.ipynb -p group no_such_group",
        root,
        env,
        check=False,
    )
    assert p.returncode == 1
    assert "FAILED notebooks/02_train.ipynb" in p.stderr and "unknown group 'no_such_group'" in p.stderr


def test_a_bad_parameter_stops_dvc_before_any_output_is_deleted(repo):
    root, env = repo
    sh("dvc repro", root, env)
    params = (root / "params.yaml").read_text()
    records = sorted((root / "reports/records").glob("*.csv"))
    assert records
    (root / "params.yaml").write_text(params.replace("  n_layer:", "  n_layers:", 1))  # a misspelt key
    try:
        p = sh("dvc repro", root, env, check=False)
        assert p.returncode != 0
        assert "unknown key(s) ['n_layers']" in p.stdout + p.stderr
        assert "Running stage 'check'" in p.stdout and "Running stage 'train" not in p.stdout
        assert sorted((root / "reports/records").glob("*.csv")) == records  # nothing deleted
    finally:
        (root / "params.yaml").write_text(params)
