"""Execute a pipeline notebook with papermill, render it to HTML, print a one-line summary.

DVC stages call this::

    python -m lengen.notebook notebooks/02_train.ipynb reports/train/arith_carry-rope-s0.ipynb \\
        -p group arith_carry -p pos_encoding rope -p seed 0

Parameters are type-converted by papermill from the notebook's ``parameters`` cell (``-p`` values are
parsed as YAML scalars). A failing cell makes the stage fail with exit code 1 and the cell's error,
not a 200-line traceback; the partially executed notebook is still written for inspection.

In a notebook, :func:`figure` shows a saved figure by reference with its caption: the executed report and its HTML
link the PNG under ``reports/`` instead of embedding the image a second time.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import yaml

from lengen import paths


def figure(fig, path: str | Path, caption: str):
    """Close ``fig`` (so the kernel does not embed it) and return :func:`image` of its saved ``path``."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return image(path, caption)


def image(path: str | Path, caption: str):
    """Markdown showing a saved figure (``path`` as :func:`lengen.plots.save` returns it) with its caption, by
    reference: a path under the project root is linked as ``../<path>``, which resolves from ``reports/`` (the
    executed report and its HTML) and from ``notebooks/`` (JupyterLab)."""
    from IPython.display import Markdown

    p = Path(path)
    src = p.as_posix() if p.is_absolute() else f"../{p.as_posix()}"
    return Markdown(f"![{caption}]({src})\n\n*{caption}*")


def run_notebook(src: str | Path, out: str | Path, parameters: dict | None = None, html: bool = True) -> Path:
    import papermill as pm
    from nbconvert import HTMLExporter

    src, out = paths.PROJ_ROOT / src, paths.PROJ_ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(src),
        str(out),
        parameters=parameters or {},
        cwd=str(paths.PROJ_ROOT),
        kernel_name="python3",
        progress_bar=False,
        log_output=True,
    )
    if html:
        body, _ = HTMLExporter().from_filename(str(out))
        out.with_suffix(".html").write_text(body)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("output")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--no-html", action="store_true")
    args = ap.parse_args(argv)
    # papermill streams each cell's output through its logger (log_output=True): show it, so the
    # `dvc repro` log carries each run's progress ([eval] lines, Lightning's messages).
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    params = {k: yaml.safe_load(v) for k, v in args.parameter}
    t0 = time.time()
    try:
        run_notebook(args.notebook, args.output, params, html=not args.no_html)
    except Exception as e:  # papermill's PapermillExecutionError carries the failing cell's error
        name = type(e).__name__
        msg = getattr(e, "evalue", None) or str(e).strip().splitlines()[-1]
        ename = getattr(e, "ename", name)
        print(
            f"[lengen] FAILED {args.notebook} -> {args.output} after {time.time() - t0:.0f}s: {ename}: {msg}",
            file=sys.stderr,
        )
        print(f"[lengen] the executed notebook with the error is at {args.output}", file=sys.stderr)
        return 1
    print(
        f"[lengen] done {args.notebook} -> {args.output} in {time.time() - t0:.0f}s "
        f"(parameters: {params or 'defaults'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
