"""lengen.sources: the static import closure of modules and notebooks, and the code hash that ignores comments,
formatting and docstrings."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lengen.sources import ROOT, code_hash, covers, import_closure, stage_code_hash, superfluous


def write(root: Path, files: dict[str, str]) -> None:
    """Create ``files`` (repo-relative path -> source, dedented) under ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def notebook(*cells: str) -> str:
    """A minimal notebook with one code cell per source, and a markdown cell that must be ignored."""
    code = [
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": textwrap.dedent(c).splitlines(keepends=True),
        }
        for c in cells
    ]
    markdown = {"cell_type": "markdown", "metadata": {}, "source": ["import lengen.never"]}
    return json.dumps({"cells": [markdown, *code], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def fake(tmp_path):
    """A small package named lengen under tmp_path that exercises every kind of import."""
    write(
        tmp_path,
        {
            "lengen/__init__.py": "from lengen.paths import ROOT\n",
            "lengen/paths.py": "ROOT = 1\n",
            "lengen/a.py": """\
            import os
            from typing import TYPE_CHECKING

            from lengen.pkg import helper, sub   # helper: re-exported by pkg/__init__; sub: a submodule

            if TYPE_CHECKING:
                from lengen import typed_only       # never runs: not in the closure
            else:
                import lengen.elsewhere

            def lazy():
                from lengen import lazy_mod         # runs when lazy() does: in the closure
                return lazy_mod
            """,
            "lengen/pkg/__init__.py": "from .base import helper\n",
            "lengen/pkg/base.py": "from .. import leaf\n\ndef helper():\n    return leaf\n",
            "lengen/pkg/sub.py": "import importlib\nmod = importlib.import_module('lengen.dynamic')\n",
            "lengen/pkg/unused.py": "x = 1\n",
            "lengen/leaf.py": "import numpy\n",
            "lengen/typed_only.py": "",
            "lengen/elsewhere.py": "",
            "lengen/lazy_mod.py": "",
            "lengen/dynamic.py": "",
            "lengen/island.py": "",
            "scripts/run.py": "from lengen import island\n",
            "notebooks/nb.ipynb": notebook(
                "%matplotlib inline\nimport pandas as pd\n",
                "for i in range(2):\n    !echo {i}\n    %time x = 1\nfrom lengen.pkg import sub\n",
                "%%bash\nimport lengen.never\n",
            ),
        },
    )
    return tmp_path


def test_closure_follows_every_kind_of_import(fake):
    assert import_closure("lengen.a", root=fake) == [
        "lengen/__init__.py",
        "lengen/a.py",
        "lengen/dynamic.py",
        "lengen/elsewhere.py",
        "lengen/lazy_mod.py",
        "lengen/leaf.py",
        "lengen/paths.py",
        "lengen/pkg/__init__.py",
        "lengen/pkg/base.py",
        "lengen/pkg/sub.py",
    ]


def test_closure_roots_as_module_path_or_notebook(fake):
    by_path = import_closure("lengen/pkg/base.py", root=fake)
    assert by_path == import_closure("lengen.pkg.base", root=fake)
    # a module inside a package brings the package's __init__ (and what that imports)
    assert by_path == [
        "lengen/__init__.py",
        "lengen/leaf.py",
        "lengen/paths.py",
        "lengen/pkg/__init__.py",
        "lengen/pkg/base.py",
    ]
    # notebooks and scripts contribute their imports, not themselves; magics and markdown are ignored
    nb = import_closure("notebooks/nb.ipynb", root=fake)
    assert nb == sorted(set(by_path) | {"lengen/pkg/sub.py", "lengen/dynamic.py"})
    assert import_closure(fake / "scripts/run.py", root=fake) == [
        "lengen/__init__.py",
        "lengen/island.py",
        "lengen/paths.py",
    ]


def test_closure_of_several_roots_is_the_union(fake):
    both = import_closure("scripts/run.py", "lengen.pkg.unused", root=fake)
    assert both == sorted(
        set(import_closure("scripts/run.py", root=fake)) | set(import_closure("lengen.pkg.unused", root=fake))
    )
    assert "lengen/pkg/unused.py" in both and "lengen/island.py" in both


def test_closure_missing_module_is_an_error(fake):
    write(fake, {"lengen/broken.py": "import lengen.nowhere\n"})
    with pytest.raises(ModuleNotFoundError, match=r"lengen/broken\.py imports 'lengen\.nowhere'"):
        import_closure("lengen.broken", root=fake)
    with pytest.raises(ModuleNotFoundError):
        import_closure("lengen.nowhere", root=fake)
    with pytest.raises(FileNotFoundError):
        import_closure("notebooks/missing.ipynb", root=fake)


def test_closure_of_real_modules():
    model = import_closure("lengen.model")
    assert {"lengen/__init__.py", "lengen/model.py"} <= set(model)
    for other in (
        "lengen/data.py",
        "lengen/train.py",
        "lengen/system.py",
        "lengen/evaluate.py",
        "lengen/tasks/__init__.py",
        "lengen/notebook.py",
    ):
        assert other not in model
    data = import_closure("lengen.data")
    tasks = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lengen" / "tasks").glob("*.py")}
    assert tasks and tasks <= set(data)  # the tasks package's __init__ imports every task module
    assert {"lengen/data.py", "lengen/tokenizer.py", "lengen/config/__init__.py"} <= set(data)
    assert not any(f.startswith("lengen/formal/") for f in data)


@pytest.mark.parametrize("runs", ["lengen.train", "lengen.finetune", "lengen.formal.train"])
def test_no_run_fingerprint_covers_the_verdict_rules(runs):
    """A run's fingerprint hashes its code's import closure: the claims' rules and thresholds stay outside it,
    or changing a verdict threshold would retrain every run."""
    closure = set(import_closure(runs))
    for analysis in ("lengen/verdicts.py", "lengen/claims.py", "lengen/crosspaper.py", "lengen/finetune_claims.py"):
        assert analysis not in closure


def test_closure_of_a_real_notebook():
    formal = import_closure("notebooks/06_formal.ipynb")
    assert {"lengen/crasp.py", "lengen/formal/__init__.py", "lengen/formal/report.py", "lengen/formal/train.py"} <= set(
        formal
    )
    assert "lengen/finetune.py" not in formal and "lengen/pretrained.py" not in formal  # only what it imports
    assert all(f.startswith("lengen/") and f.endswith(".py") for f in formal)
    assert formal == sorted(formal)


def test_covers_and_superfluous():
    files = ["lengen/a.py", "lengen/tasks/base.py", "lengen/tasks/__init__.py"]
    assert covers(["lengen/a.py", "lengen/tasks"], files) == []
    assert covers(["lengen/tasks/"], files) == ["lengen/a.py"]
    assert covers(["lengen/task"], files) == files  # a prefix that is not a directory covers nothing
    deps = ["notebooks/x.ipynb", "data/eval", "lengen/a.py", "lengen/tasks", "lengen/b.py", "lengen/formal"]
    assert superfluous(deps, files) == ["lengen/b.py", "lengen/formal"]


SOURCE = '''\
"""Module docstring."""
import math


def area(r):
    """Area of a circle."""
    return math.pi * r ** 2  # a comment
'''


def test_hash_ignores_comments_formatting_and_docstrings(tmp_path):
    write(tmp_path, {"lengen/m.py": SOURCE})
    before = code_hash(["lengen/m.py"], root=tmp_path)
    assert len(before) == 16 and int(before, 16) >= 0
    for same in (
        SOURCE.replace("# a comment", "# another comment"),  # comment
        SOURCE.replace("math.pi * r ** 2", "(math.pi*r**2)").replace("\n\n\n", "\n"),  # formatting
        SOURCE.replace("Area of a circle.", "The area, in square units."),  # docstring
        SOURCE.replace('"""Module docstring."""\n', ""),  # docstring removed
        SOURCE.replace("import math", "import math  # noqa\n# trailing\n"),
    ):
        write(tmp_path, {"lengen/m.py": same})
        assert code_hash(["lengen/m.py"], root=tmp_path) == before, same
    for changed in (
        SOURCE.replace("r ** 2", "r ** 3"),
        SOURCE.replace("def area(r)", "def area(radius)").replace("* r", "* radius"),
        SOURCE.replace("return", "x = 'a string'\n    return"),  # a string in an assignment is code
    ):
        write(tmp_path, {"lengen/m.py": changed})
        assert code_hash(["lengen/m.py"], root=tmp_path) != before, changed


def test_hash_depends_on_path_and_set_not_order(tmp_path):
    write(tmp_path, {"lengen/m.py": SOURCE, "lengen/n.py": SOURCE, "lengen/o.py": "x = 1\n"})
    m, n = code_hash(["lengen/m.py"], root=tmp_path), code_hash(["lengen/n.py"], root=tmp_path)
    assert m != n  # same code, another file
    assert code_hash(["lengen/m.py", "lengen/o.py"], root=tmp_path) == code_hash(
        [tmp_path / "lengen/o.py", "lengen/m.py"], root=tmp_path
    )
    assert code_hash(["lengen/m.py", "lengen/o.py"], root=tmp_path) != m


def test_hash_of_notebooks_ignores_magics_and_outputs(tmp_path):
    write(tmp_path, {"nb.ipynb": notebook("%time x = 1\ny = x + 1\n")})
    before = code_hash(["nb.ipynb"], root=tmp_path)
    write(tmp_path, {"nb.ipynb": notebook("%time x = 1  # timing\ny = x+1\n")})
    assert code_hash(["nb.ipynb"], root=tmp_path) == before
    write(tmp_path, {"nb.ipynb": notebook("%time x = 1\ny = x + 2\n")})
    assert code_hash(["nb.ipynb"], root=tmp_path) != before


def test_stage_code_hash_is_the_hash_of_the_closure(fake):
    assert stage_code_hash("lengen.a", root=fake) == code_hash(import_closure("lengen.a", root=fake), root=fake)
    before = stage_code_hash("lengen.a", root=fake)
    write(fake, {"lengen/pkg/unused.py": "x = 2\n"})  # outside the closure: no effect
    assert stage_code_hash("lengen.a", root=fake) == before
    write(fake, {"lengen/leaf.py": "import numpy\nY = 1\n"})  # a transitive dependency
    assert stage_code_hash("lengen.a", root=fake) != before
    assert stage_code_hash("lengen.model") == code_hash(import_closure("lengen.model"))


def test_imports_without_torch():
    code = "import sys, lengen.sources; assert not {'torch', 'numpy', 'yaml'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
