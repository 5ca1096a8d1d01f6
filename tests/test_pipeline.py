"""End to end: the whole DVC pipeline on the `smoke` profile in a temporary copy of the repo."""

import json

import pandas as pd
import pytest
from repo_copy import copy_repo, sh

from lengen import paths, runtime

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the tracked files with params.yaml = the smoke profile, and its own git repo."""
    root = tmp_path_factory.mktemp("repo")
    return root, copy_repo(root, (paths.PROFILES_DIR / "smoke.yaml").read_text())


def test_dvc_repro_smoke_end_to_end(repo):
    root, env = repo
    p = sh("dvc repro", root, env)
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
