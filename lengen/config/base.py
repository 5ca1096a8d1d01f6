"""The parsing machinery and the shared vocabularies of ``params.yaml``; torch-free.

``_build`` turns nested dicts (the YAML) into the frozen dataclasses strictly: an unknown or missing key,
a wrong type or a failed ``__post_init__`` check raises ``ValueError("params: <dotted key>: <message>")``.
``read_params`` reads a params file exactly as DVC does (ruamel.yaml, YAML 1.2), so the values checked
here are the values DVC hashes and substitutes into ``dvc.yaml``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

from ruamel.yaml import YAML, YAMLError

# Allowed values shared by several sections. The torch modules keep their own copies (lengen.model's
# POS_ENCODINGS and INITS, lengen.pretrained's MODELS and INITS, the keys of lengen.heads.CLAIMS) so that
# importing lengen.config never imports torch; tests/test_config_sections.py checks that the copies agree.
PRECISIONS = ("auto", "bf16-mixed", "32-true", "16-mixed")  # auto: lengen.evaluate.resolve_precision
POS_ENCODINGS = ("rope", "nope", "ape")  # lengen.model.POS_ENCODINGS
MODEL_INITS = ("fan_in", "gpt2")  # lengen.model.INITS: weight initializations of the small model
PRETRAINED_MODELS = ("smollm2", "tiny")  # lengen.pretrained.MODELS
PRETRAINED_INITS = ("pretrained", "scratch")  # lengen.pretrained.INITS: what a fine-tune starts from
HEAD_CATEGORIES = ("arithmetic", "strings", "control", "mazes")  # the keys of lengen.heads.CLAIMS


def _fail(key: str, msg: str) -> typing.NoReturn:
    raise ValueError(f"params: {key}: {msg}")


def _positive(key: str, value, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        _fail(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _unique(key: str, values) -> None:
    """Reject a list naming something twice (``seeds: [0, 0]`` would train the same run twice)."""
    seen, twice = set(), []
    for v in values:
        v = tuple(v) if isinstance(v, list) else v
        if v in seen and v not in twice:
            twice.append(v)
        seen.add(v)
    if twice:
        _fail(key, f"lists {twice} more than once; each value may appear once, got {list(values)}")


def _seeds(key: str, seeds) -> None:
    """Seeds: a list of distinct integers >= 0 (numpy and torch reject negative seeds)."""
    negative = [s for s in seeds if s < 0]
    if negative:
        _fail(key, f"seeds must be >= 0, got {negative}")
    _unique(key, seeds)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(tp, value, key: str):
    """Build ``tp`` (a dataclass, a container of them or a scalar type) from parsed YAML, strictly."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(key, f"must be a mapping with keys {[f.name for f in dataclasses.fields(tp)]}, got {value!r}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            _fail(key, f"unknown key(s) {unknown}; allowed: {sorted(fields)}")
        missing = [
            n
            for n, f in fields.items()
            if n not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            _fail(key, f"missing key(s) {missing}")
        kwargs = {n: _build(hints[n], v, f"{key}.{n}") for n, v in value.items()}
        try:
            return tp(**kwargs)
        except ValueError as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith("params:") else f"params: {key}: {msg}") from None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value, key)
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            _fail(key, f"must be a mapping, got {value!r}")
        return {_build(kt, k, f"{key}.{k}"): _build(vt, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (it,) = typing.get_args(tp)
        if not isinstance(value, list):
            hint = f" (one value is written [{value}])" if isinstance(value, (int, float, str)) else ""
            _fail(key, f"must be a list, got {value!r}{hint}")
        return [_build(it, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, f"must be a number, got {value!r}")
        return float(value)
    if tp is typing.Any:  # checked by whoever reads it (e.g. Config.model_for)
        return value
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            _fail(key, f"must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
        return value
    raise TypeError(f"unsupported type {tp} at {key}")


def read_params(path: str | Path) -> dict:
    """A params file as DVC reads it: ruamel.yaml's safe loader, YAML 1.2 (``1e-3`` is a float, ``yes``
    a string), the same call as ``dvc.utils.serialize.parse_yaml``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = YAML(typ="safe").load(f)
    except YAMLError as e:
        raise ValueError(f"params: {path}: not valid YAML: {e}") from None
    return {} if data is None else data
