"""A temporary copy of the repository for the end-to-end test (test_pipeline)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from lengen import paths


def sh(cmd, cwd, env, check=True):
    """Run a shell command; on failure (with ``check``) the assertion shows the end of its output."""
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=True)
    if check and p.returncode:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def copy_repo(root: Path, params: str) -> dict:
    """Copy the tracked files into ``root`` (not the committed results: the copy makes its own), write
    ``params`` as its params.yaml and make it a git repository; returns the environment to run it in."""
    files = subprocess.run(["git", "ls-files"], cwd=paths.PROJ_ROOT, capture_output=True, text=True).stdout.split()
    for f in files:
        if f.startswith(("reports/", "runs/")) or f == "dvc.lock":
            continue
        if (paths.PROJ_ROOT / f).exists():
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(paths.PROJ_ROOT / f, root / f)
    (root / "params.yaml").write_text(params)
    env = {
        **os.environ,
        "PYTHONPATH": str(root),  # the copy's lengen (not the editable install's) is imported, kernels included
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        "OMP_NUM_THREADS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    sh("git init -q && git add -A && git commit -qm copy", root, env)
    return env
