"""Notebooks are thin, stripped drivers (checked statically; tests/test_pipeline.py executes them)."""

import ast
import json

import pytest

from lengen import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb"))


def test_one_notebook_per_stage():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]
    pipeline = (paths.PROJ_ROOT / "dvc.yaml").read_text()
    assert all(f"notebooks/{p.name}" in pipeline for p in NOTEBOOKS)  # each executed by a stage


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_thin(nb_path):
    nb = json.loads(nb_path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, f"{nb_path.name}: outputs not stripped"
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert not [c for c in code if "injected-parameters" in c["metadata"].get("tags", [])]
    params = ast.parse("".join(tagged[0]["source"]))
    names = []
    for node in params.body:  # only annotated scalar assignments: `name: type = literal  # comment`
        assert isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant), ast.unparse(node)
        names.append(node.target.id)
    assert names[0] == "params_file" and len(names) <= 5
    for c in code:
        tree = ast.parse("".join(c["source"]))
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, f"{nb_path.name}: logic belongs in lengen/, not a notebook"
    assert code.index(tagged[0]) == 0, "parameters come first"
    assert any(c["cell_type"] == "markdown" for c in nb["cells"])
