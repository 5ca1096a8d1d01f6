"""dvc.yaml declares exactly the code each stage runs: its deps cover the stage's import closure (else an edit
would not re-run the stage), and every lengen dep is in that closure (else an unrelated edit re-runs it).

A stage's code is what its cmd runs: ``python -m lengen.notebook notebooks/X.ipynb ...`` runs the notebook and
lengen.notebook; ``python -m lengen.X ...`` runs the module. Matrix stages (train, ablation, grid) have one deps
list for every item, and the YAML loader resolves the ``&run_deps`` / ``*run_deps`` anchors.
"""

import re

import pytest
import yaml

from lengen.sources import ROOT, covers, import_closure, superfluous

NOTEBOOK_CMD = re.compile(r"python -m lengen\.notebook\s+(\S+\.ipynb)")
MODULE_CMD = re.compile(r"python -m (lengen(?:\.\w+)+)")


def stage_roots(cmd: str | list[str]) -> list[str]:
    """The roots of a stage's code, from its cmd: a notebook with its runner, or a module; [] for anything else."""
    text = " ".join(cmd) if isinstance(cmd, list) else cmd
    if notebook := NOTEBOOK_CMD.search(text):
        return [notebook.group(1), "lengen.notebook"]
    return [module.group(1)] if (module := MODULE_CMD.search(text)) else []


def code_stages() -> list[tuple[str, list[str], list[str]]]:
    """(stage, roots, deps) for each dvc.yaml stage that runs lengen code."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    found = []
    for name, stage in stages.items():
        roots = stage_roots(stage["cmd"])
        if roots:
            found.append((name, roots, [str(d) for d in stage.get("deps", [])]))
    return found


STAGES = code_stages()


def test_stages_found():
    names = {name for name, _, _ in STAGES}
    assert {"data", "train", "convert", "formal"} <= names, names


@pytest.mark.parametrize(("stage", "roots", "deps"), STAGES, ids=[name for name, _, _ in STAGES])
def test_stage_deps_match_its_code(stage, roots, deps):
    closure = import_closure(*roots)
    # the notebook a stage executes is its code too (papermill reads it), so it must be a dep
    required = closure + [r for r in roots if r.endswith(".ipynb")]
    missing = covers(deps, required)
    extra = superfluous(deps, closure)
    problems = []
    if missing:
        problems.append("missing deps (code the stage runs): " + ", ".join(missing))
    if extra:
        problems.append("superfluous deps (not imported by the stage): " + ", ".join(extra))
    assert not problems, f"dvc.yaml stage {stage!r} ({' + '.join(roots)}):\n  " + "\n  ".join(problems)
