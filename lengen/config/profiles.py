"""Profiles: complete parameter sets in ``profiles/<name>.yaml``; ``params.yaml`` is a copy of one.

``use_profile`` copies a profile over ``params.yaml``, but not over edits: a ``params.yaml`` whose values
differ from its own profile's (``dvc exp run -S ...`` or a hand edit) is kept unless ``force`` is given.
Values are compared, not text, so comments and layout do not count as edits.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lengen import paths
from lengen.config.base import read_params
from lengen.config.params import load_config


def profile_names(profiles_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (profiles_dir or paths.PROFILES_DIR).glob("*.yaml"))


def differences(a, b, key: str = "") -> list[str]:
    """Dotted keys whose values differ between two parsed YAML documents (added, removed or changed)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in [*a, *(k for k in b if k not in a)]:
            sub = f"{key}.{k}" if key else str(k)
            if k not in a:
                out.append(f"{sub} (added)")
            elif k not in b:
                out.append(f"{sub} (removed)")
            else:
                out += differences(a[k], b[k], sub)
        return out
    same = a == b and type(a) is type(b)  # 1 and 1.0 are different parameters to DVC's hashing
    return [] if same else [f"{key or '<file>'}: {a!r} -> {b!r}"]


def edits(target: Path, profiles_dir: Path | None = None) -> list[str]:
    """How ``target`` differs from the profile it names (empty if it is an unedited copy of a profile)."""
    profiles_dir = profiles_dir or paths.PROFILES_DIR
    try:
        current = read_params(target)
    except ValueError as e:
        return [str(e)]
    copies = {name: read_params(profiles_dir / f"{name}.yaml") for name in profile_names(profiles_dir)}
    if any(not differences(data, current) for data in copies.values()):
        return []
    named = current.get("profile") if isinstance(current, dict) else None
    if named not in copies:
        return [f"profile: {named!r} names no file in {profiles_dir} (known: {sorted(copies)})"]
    return differences(copies[named], current)


def use_profile(name: str, target: Path | None = None, force: bool = False, profiles_dir: Path | None = None) -> Path:
    """Copy ``profiles/<name>.yaml`` over ``target`` (default ``params.yaml``) after validating it.

    Refuses (``ValueError``) when ``target`` holds edits, i.e. differs from every profile, unless ``force``.
    """
    profiles_dir = profiles_dir or paths.PROFILES_DIR
    src = profiles_dir / f"{name}.yaml"
    if not src.exists():
        raise ValueError(f"unknown profile {name!r}; known profiles: {profile_names(profiles_dir)}")
    load_config(src)
    dst = Path(target or paths.PARAMS_FILE)
    if dst.exists() and not force:
        changed = edits(dst, profiles_dir)
        if changed:
            shown = "\n  ".join(changed[:20]) + (f"\n  ... and {len(changed) - 20} more" if len(changed) > 20 else "")
            raise ValueError(
                f"{dst} has edits that `use {name}` would overwrite (compared with its profile):\n  {shown}\n"
                f"Keep them in a profile of your own, or overwrite them: python -m lengen.config use {name} --force"
            )
    shutil.copyfile(src, dst)
    return dst
