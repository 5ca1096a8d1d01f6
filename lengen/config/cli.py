"""``python -m lengen.config check [PARAMS_FILE] [--out JSON] | use PROFILE [--force]``.

``check`` parses and validates every section of a params file (default ``params.yaml``) without importing
torch, prints a one-line summary and exits 0, or prints ``params: <key>: <message>`` and exits 1. It runs
before DVC: ``make reproduce`` calls it before ``dvc repro`` (a malformed matrix such as ``seeds: 0`` makes
DVC itself fail while reading dvc.yaml), and it is the pipeline's first stage (``check`` in dvc.yaml).

``--out`` writes a stamp for that stage. Its content does not depend on the parameter values: the stage
re-runs whenever params.yaml changes, and an unchanged stamp lets DVC skip every stage whose own
parameters did not change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lengen.config.params import OPTIONAL_SECTIONS, SECTIONS, load_config
from lengen.config.profiles import use_profile

STAMP = {"checked": "every section of params.yaml", "sections": [*SECTIONS, *OPTIONAL_SECTIONS], "ok": True}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m lengen.config", description="Check params or switch profiles.")
    sub = ap.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a params file (default: params.yaml)")
    check.add_argument("params_file", nargs="?", default=None)
    check.add_argument("--out", type=Path, help="write the DVC stage's stamp (JSON) here on success")
    use = sub.add_parser("use", help="copy profiles/PROFILE.yaml over params.yaml")
    use.add_argument("profile")
    use.add_argument("--force", action="store_true", help="overwrite a params.yaml that holds edits")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "use":
            print(f"params.yaml <- profiles/{args.profile}.yaml ({use_profile(args.profile, force=args.force)})")
            return 0
        cfg = load_config(args.params_file)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    except OSError as e:
        print(f"params: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(STAMP, indent=2, sort_keys=True) + "\n")
    print(
        f"ok: profile {cfg.profile}, {len(cfg.all_runs())} runs ({len(cfg.runs())} experiment, "
        f"{len(cfg.ablation_runs())} ablation, {len(cfg.grid_runs())} grid, {len(cfg.cross_runs())} cross)"
        + "".join(f", {s}" for s in ("heads", "pretrained", "formal") if getattr(cfg, s) is not None)
    )
    return 0
