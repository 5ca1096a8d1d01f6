"""Where and in what arithmetic the code runs: device, precision, the CPU and its float path, provenance.

Every module that picks a device, resolves ``precision: auto``, opens an autocast context or records the
machine a result came from asks here, so training, evaluation and the analyses agree on all of it.

* :func:`default_device`, :func:`model_device` — the device a process uses, the device a model lives on.
* :func:`native_bf16`, :func:`resolve_precision`, :func:`autocast_context` — bf16 only where it is native.
* :func:`float_path`, :func:`cpu_model`, :func:`cpu_id` — what decides the bits of a run on CPU.
* :func:`provenance` — all of the above plus versions, platform, git commit and date, for report headers.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import importlib.metadata
import os
import platform
import re
import subprocess

import torch

from lengen import paths

# Environment variables that cap which kernels ATen, MKL and oneDNN dispatch to. Capped to AVX2 on an Intel
# AVX-512 CPU they run Intel's AVX2 kernels: another float path, not the bits of an AVX2-only AMD CPU.
FLOAT_PATH_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")

# oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) below its first bf16 ISA: with one set, bf16 is emulated even on
# a CPU whose flags list bf16 (e.g. kernels capped to AVX2 on an AVX-512 CPU).
_ONEDNN_CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


# ---------------------------------------------------------------------------------------------
# Devices


def default_device() -> torch.device:
    """The device Lightning's ``accelerator="auto"`` picks for one process."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model) -> torch.device:
    """Where the model's weights live (CPU for a parameter-less stand-in, as in the head tests)."""
    params = getattr(model, "parameters", None)
    return next(params()).device if params is not None else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Precision


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 matrix products run natively on ``device``. On a CPU without it (AVX2 only, e.g.
    AMD Zen 2) PyTorch emulates them, and a bf16 matmul is far slower than an fp32 one."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_native_bf16()


@functools.cache  # autocast_context asks on every batch: read the CPU flags once per process
def _cpu_native_bf16() -> bool:
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper() in _ONEDNN_CAPS_WITHOUT_BF16:
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))
    except OSError:  # not Linux: ask oneDNN
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``auto`` -> ``bf16-mixed`` where bf16 is native on ``device``, else ``32-true``; others unchanged."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if native_bf16(device) else "32-true"


def autocast_context(precision: str, device: torch.device | str = "cpu"):
    """The autocast used in training, so evaluation scores the model as it trains."""
    precision = resolve_precision(precision, device)
    device_type = torch.device(device).type
    if precision.startswith("bf16"):
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision.startswith("16") and device_type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# The CPU and its float path


def float_path() -> dict[str, str]:
    """ATen's vector ISA in this process and any kernel-dispatch caps set in the environment."""
    caps = {k: os.environ[k] for k in FLOAT_PATH_ENV if k in os.environ}
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), **caps}


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (run times and bf16 speed depend on it)."""
    try:
        with open(cpuinfo) as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def cpu_id(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """CPU family and model of the first processor: machines of one name ("AMD EPYC") differ in ISA and bits."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("cpu family", "model") and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
                if not line.strip():  # the first processor's block ends at the first blank line
                    break
    except OSError:
        return None
    return f"family {fields['cpu family']} model {fields['model']}" if len(fields) == 2 else None


# ---------------------------------------------------------------------------------------------
# Provenance


def git_commit(root=paths.PROJ_ROOT) -> str | None:
    """Short hash of the checked-out commit, or None outside a git checkout (or without git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _version(package: str) -> str | None:
    """An installed distribution's version, without importing it."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance() -> dict:
    """Where a result was made: CPU, float path, device, library versions, platform, commit and UTC date.

    For report headers and ``run.json``; every value is JSON-serializable.
    """
    return {
        "processor": cpu_model(),
        "cpu_id": cpu_id(),
        "float_path": float_path(),
        "device": str(default_device()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": _version("lightning"),
        },
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
