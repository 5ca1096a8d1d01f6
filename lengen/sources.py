"""Which lengen source files a piece of code depends on, and a hash of that code.

    >>> from lengen.sources import import_closure, stage_code_hash
    >>> import_closure("lengen.model")                              # doctest: +SKIP
    ['lengen/__init__.py', 'lengen/model.py', 'lengen/paths.py']
    >>> import_closure("notebooks/02_train.ipynb", "lengen.notebook")  # doctest: +SKIP
    >>> stage_code_hash("lengen.train")                              # doctest: +SKIP
    '3f1c0a9e5b7d2468'

The closure is found statically, from the AST, never by importing (this module is stdlib only and imports
without torch). It follows, transitively:

- ``import lengen.a.b`` and ``from lengen.a.b import x``: the module, and every package above it (importing
  ``lengen.a.b`` runs ``lengen/__init__.py`` and ``lengen/a/__init__.py`` first);
- ``from lengen.a import b`` where ``b`` is a submodule of ``lengen.a``: that submodule too (where ``b`` is a
  name the package's ``__init__`` defines or re-exports, the ``__init__`` and its own imports cover it);
- relative imports (``from .base import Task``, ``from . import x``) inside the package;
- imports inside functions (lazy imports run when the function does), and
  ``importlib.import_module("lengen.x")`` with a literal name;
- but not imports under ``if TYPE_CHECKING:``, which never run.

Convention: the closure is a sorted list of *files*, repo-relative POSIX paths (``lengen/tasks/base.py``); a
package is its ``__init__.py`` plus the submodules that are imported. DVC deps may name a file or a directory
(``lengen/tasks``): ``covers`` treats a directory dep as covering every file under it, ``superfluous`` names the
code deps that cover no closure file. Roots that are not part of the package (a notebook, a script) are parsed
for their imports but are not themselves in the closure.

``code_hash`` hashes what the code *does*: each file's AST with docstrings and other bare string statements
removed, so comments, formatting, quoting and docstrings do not change it, any change to code does. The dump of
an AST depends on the Python minor version, which is therefore part of the hash (the project pins 3.11).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

PACKAGE = "lengen"
ROOT = Path(__file__).resolve().parents[1]  # the repository root (this file is <root>/lengen/sources.py)
HASH_LENGTH = 16  # hex digits of the sha256 kept: 64 bits, ample against accidental collisions
_HASH_VERSION = "lengen.sources/1"  # bump when what the hash covers changes, so old fingerprints stop matching


def _notebook_source(text: str) -> str:
    """The code cells of a notebook (its JSON text) as one Python source.

    IPython syntax is neutralised: a cell magic (``%%bash``) skips its cell; a line magic or shell line
    (``%time ...``, ``!pip ...``) becomes ``pass`` at the same indentation, so the code around it still parses.
    """
    nb = json.loads(text)
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if source.lstrip().startswith("%%"):
            continue
        lines = []
        for line in source.splitlines():
            stripped = line.lstrip()
            lines.append(line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line)
        cells.append("\n".join(lines))
    return "\n\n".join(cells) + "\n"


def _parse(path: Path, text: str) -> ast.Module:
    """The AST of a .py file's text or of a notebook's code cells."""
    return ast.parse(_notebook_source(text) if path.suffix == ".ipynb" else text, filename=str(path))


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``: the test of an import block that never runs."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, package: str | None) -> Iterator[tuple[str, bool]]:
    """The module names ``tree`` imports, each with whether it must exist.

    ``package`` is the package relative imports resolve against (None outside the package). A name from
    ``from m import name`` yields ``m.name`` as optional: it is a module only when such a file exists.
    """
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the `if TYPE_CHECKING:` body never runs; an `else:` does
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, True) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from .x import y` in package p means p.x; each extra dot goes one up
                if package is None:
                    continue
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise ImportError(f"relative import beyond the top-level package in {package}")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module
            yield base, True
            yield from ((f"{base}.{alias.name}", False) for alias in node.names if alias.name != "*")
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
            )
        ):
            yield node.args[0].value, True  # importlib.import_module("lengen.x") with a literal name
        stack.extend(ast.iter_child_nodes(node))


# Parsed facts per file content: a run hashes its code more than once, a changed file gets a new key.
_CACHE: dict[tuple[str | None, ...], object] = {}


def _read(path: Path) -> tuple[str, str]:
    """A file's text and the digest of it that keys the cache."""
    text = path.read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode()).hexdigest()


def _imports_of(path: Path, package: str | None) -> tuple[tuple[str, bool], ...]:
    """``_imported`` of a file, parsed once per content."""
    text, digest = _read(path)
    key = ("imports", str(path.resolve()), digest, package)
    if key not in _CACHE:
        _CACHE[key] = tuple(_imported(_parse(path, text), package))
    return _CACHE[key]


def _dump_of(path: Path) -> str:
    """What ``code_hash`` hashes of a file: its AST dump without line numbers (formatting and comments do not
    show) and without docstrings, once per content."""
    text, digest = _read(path)
    key = ("dump", str(path.resolve()), digest)
    if key not in _CACHE:
        _CACHE[key] = ast.dump(_strip_strings(_parse(path, text)))
    return _CACHE[key]


def _module_file(name: str, root: Path) -> Path | None:
    """The file that defines module ``name`` under ``root``: ``a/b.py`` or ``a/b/__init__.py``, else None."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str | None:
    """The module a file under ``root`` defines (``lengen/tasks/__init__.py`` -> ``lengen.tasks``), or None
    for a file outside the package (a notebook, a script)."""
    try:
        parts = list(path.resolve().relative_to(root.resolve()).with_suffix("").parts)
    except ValueError:
        return None
    if path.suffix != ".py" or not parts or parts[0] != PACKAGE:
        return None
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as POSIX text when it lies under it, else as given."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _resolve_root(spec: str | Path, root: Path) -> Path:
    """A root given as a module name (``lengen.train``) or a path (relative to ``root``) -> its file."""
    text = str(spec)
    if isinstance(spec, Path) or text.endswith((".py", ".ipynb")) or "/" in text:
        path = Path(spec)
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        return path
    file = _module_file(text, root)
    if file is None:
        raise ModuleNotFoundError(f"no module {text!r} under {root}")
    return file


def import_closure(*roots: str | Path, root: str | Path | None = None) -> list[str]:
    """The sorted repo-relative paths of the lengen source files that ``roots`` import, transitively.

    Each root is a module name (``"lengen.train"``), a .py path or a notebook path (.ipynb), relative to the
    repository (``root``, by default this checkout) or absolute. Package roots are in the closure, other files
    (notebooks, scripts) only contribute their imports.
    """
    base = Path(root) if root is not None else ROOT
    seen: set[Path] = set()
    todo: list[tuple[Path, str | None]] = []  # files still to parse, with the module each defines

    def require(name: str, strict: bool, importer: Path) -> None:
        """Add module ``name`` and every package above it; a missing module is an error when ``strict``."""
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            return  # not ours: the standard library or a third-party package
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            file = _module_file(prefix, base)
            if file is None:
                if strict or i < len(parts):  # a missing parent package is an error even for `from m import x`
                    raise ModuleNotFoundError(f"{_relative(importer, base)} imports {name!r}: no {prefix} under {base}")
                return  # `from pkg import name` where name is not a submodule: the package's __init__ has it
            if file not in seen:
                seen.add(file)
                todo.append((file, prefix))

    for spec in roots:
        path = _resolve_root(spec, base)
        name = _module_name(path, base)
        if name is None:  # a notebook or script: only its imports count
            todo.append((path, None))
        else:
            require(name, True, path)
    while todo:
        path, name = todo.pop()
        # relative imports resolve against the module's package: itself for an __init__, else its parent
        package = name if name is None or path.name == "__init__.py" else name.rpartition(".")[0]
        for imported, strict in _imports_of(path, package):
            require(imported, strict, path)
    return sorted(_relative(path, base) for path in seen)


def _covering(dep: str, file: str) -> bool:
    """Whether DVC dep ``dep`` (a file or a directory) covers ``file``."""
    dep = dep.rstrip("/")
    return file == dep or file.startswith(dep + "/")


def covers(deps: Iterable[str], files: Iterable[str]) -> list[str]:
    """The ``files`` that no dep covers (empty when the deps cover them all); a directory dep covers every
    file under it."""
    deps = list(deps)
    return [f for f in files if not any(_covering(d, f) for d in deps)]


def superfluous(deps: Iterable[str], files: Iterable[str], prefix: str = PACKAGE + "/") -> list[str]:
    """The code deps (those under ``prefix``) that cover none of ``files``: a file dep outside the closure, or a
    directory dep without a closure file in it."""
    files = list(files)
    return [d for d in deps if d.startswith(prefix) and not any(_covering(d, f) for f in files)]


def _is_bare_string(statement: ast.stmt) -> bool:
    """A statement that is only a string literal: a docstring, or a no-op like it."""
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _strip_strings(tree: ast.AST) -> ast.AST:
    """Remove docstrings and every other bare string statement (no-ops at run time), in place."""
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list):
                body[:] = [statement for statement in body if not _is_bare_string(statement)]
    return tree


def code_hash(files: Iterable[str | Path], root: str | Path | None = None) -> str:
    """A short hex hash of what the code in ``files`` (.py or .ipynb) does.

    sha256 over each file's path and AST dump, with docstrings stripped, in sorted path order: comments,
    formatting and docstrings do not change it; code, or a file's path, does. Relative paths are taken
    relative to ``root`` (by default this checkout).
    """
    base = Path(root) if root is not None else ROOT
    paths = {}
    for file in files:
        path = Path(file) if Path(file).is_absolute() else base / file
        paths[_relative(path, base)] = path
    digest = hashlib.sha256(f"{_HASH_VERSION} python{sys.version_info[0]}.{sys.version_info[1]}\n".encode())
    for key in sorted(paths):
        digest.update(f"{key}\0{_dump_of(paths[key])}\0".encode())
    return digest.hexdigest()[:HASH_LENGTH]


def stage_code_hash(*roots: str | Path, root: str | Path | None = None) -> str:
    """``code_hash`` of ``import_closure(*roots)``: the code that roots (modules, notebooks) run."""
    return code_hash(import_closure(*roots, root=root), root=root)


def main(argv: list[str] | None = None) -> None:
    """``python -m lengen.sources ROOT...``: print the closure of the roots, then its hash."""
    parser = argparse.ArgumentParser(prog="python -m lengen.sources", description=main.__doc__)
    parser.add_argument("roots", nargs="+", help="module names (lengen.train) or .py / .ipynb paths")
    args = parser.parse_args(argv)
    files = import_closure(*args.roots)
    print("\n".join(files))
    print(f"code hash: {code_hash(files)}")


if __name__ == "__main__":
    main()
