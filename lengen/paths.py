"""Project paths, derived from this file so they are right from any cwd.

papermill executes notebooks with the repo root as cwd, JupyterLab with `notebooks/`: code must never
build paths from the cwd.
"""

from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = PROJ_ROOT / "params.yaml"
PROFILES_DIR = PROJ_ROOT / "profiles"
DATA_DIR = PROJ_ROOT / "data"
EVAL_DIR = DATA_DIR / "eval"
RUNS_DIR = PROJ_ROOT / "runs"
REPORTS_DIR = PROJ_ROOT / "reports"
FIGURES_DIR = REPORTS_DIR / "figures"
RECORDS_DIR = REPORTS_DIR / "records"  # tidy per-length records, one CSV per run (DVC plots)
METRICS_DIR = REPORTS_DIR / "metrics"  # one JSON summary per run (DVC metrics)
PLOTS_DIR = REPORTS_DIR / "plots"  # final accuracy-vs-length per run and task (DVC plots)
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
MODELS_DIR = PROJ_ROOT / "models"  # converted pretrained checkpoints (DVC stage `convert`)
PRETRAINED_DIR = REPORTS_DIR / "pretrained"  # pretrained-comparison records, runs, figures
