"""Where and in what arithmetic the code runs: device, precision, the CPU and its float path, provenance.

Every module that picks a device, resolves ``precision: auto``, opens an autocast context or records the
machine a result came from asks here, so training, evaluation and the analyses agree on all of it.

* :func:`default_device`, :func:`model_device` — the device a process uses, the device a model lives on.
* :func:`native_bf16`, :func:`resolve_precision`, :func:`autocast_context` — bf16 only where it is native.
* :func:`float_path`, :func:`cpu_model`, :func:`cpu_id` — what decides the bits of a run on CPU.
* :func:`provenance` — all of the above plus versions, platform, git commit and date, for report headers.
* :func:`report_header` — that provenance as the first output of an executed report (Markdown).
* :func:`trained_on`, :func:`tally`, :func:`describe_trained_on` — where a report's runs were trained: a report
  executed on one machine may read back runs trained on another, and only the runs' machines made its numbers.
* :func:`quiet_reports` — the warning filters of the executed reports (progress-bar and deprecation noise).
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
import warnings

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


def cpu_isa(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The vector ISA extensions that decide the float path and bf16 speed, of those the CPU has (in order)."""
    try:
        with open(cpuinfo) as f:
            flags = set(next(line.split(":", 1)[1].split() for line in f if line.startswith("flags")))
    except (OSError, StopIteration):
        return []
    return [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]


def code_changed(root=paths.PROJ_ROOT) -> bool | None:
    """Whether the package or the notebooks differ from the checked-out commit (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "lengen", "notebooks"], cwd=root, capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: False, 1: True}.get(out.returncode)


def report_header(prov: dict | None = None, changed: bool | None = None, runs: list[dict] | None = None) -> str:
    """Markdown: where the numbers of an executed report came from (commit, CPU model and ISA, float path, bf16,
    versions, UTC date), and with ``runs`` (a :func:`tally`) where its runs were trained. The analysis notebooks
    show it as their first output; ``prov`` defaults to :func:`provenance` of this process, ``changed`` to
    :func:`code_changed`."""
    p = prov if prov is not None else provenance()
    changed = code_changed() if prov is None and changed is None else changed
    commit = f"`{p['git_commit']}`" if p.get("git_commit") else "unknown (not a git checkout)"
    if changed:
        commit += " with uncommitted changes to lengen/ or notebooks/"
    fp = dict(p.get("float_path") or {})
    caps = ", ".join(_caps(fp))
    isa = p.get("isa", cpu_isa() if prov is None else [])
    bf16 = "native" if p.get("native_bf16", native_bf16() if prov is None else False) else "emulated (auto: fp32)"
    v = p.get("versions", {})
    return (
        f"**Provenance** — commit {commit}; CPU {p.get('processor') or 'unknown'}"
        + (f" ({p['cpu_id']})" if p.get("cpu_id") else "")
        + (f", ISA {' '.join(isa)}" if isa else "")
        + (f", GPU {p['gpu']}" if p.get("gpu") else "")
        + f"; float path: ATen {fp.get('cpu_capability', '?')}"
        + (f", capped by {caps}" if caps else "")
        + f", bf16 {bf16}; Python {v.get('python')}, torch {v.get('torch')}, Lightning {v.get('lightning')}; "
        f"executed {p.get('date', '?')} (UTC)." + (f"\n\n{describe_trained_on(runs)}" if runs is not None else "")
    )


# ---------------------------------------------------------------------------------------------
# Where runs were trained
#
# A run's bits depend on the machine kind and arithmetic it trained in (docs/machines.md), and a report reads
# back runs that other machines trained (a study produced in pieces, a clone): its header says which.


def trained_on(info: dict) -> dict:
    """A finished run's machine and arithmetic, from its ``run.json``: ``machine`` (CPU or GPU, ATen's vector
    ISA and any kernel caps; "A, then B" when it was resumed on another machine), ``arithmetic`` (precision,
    compiled or eager, threads) and the UTC ``date`` it finished."""
    segments = info.get("segments") or [info.get("provenance") or {}]
    machines = list(dict.fromkeys(_machine(s) for s in segments))
    compiled = (info.get("compile") or {}).get("compiled")
    threads = info.get("threads")
    arithmetic = [
        info.get("precision") or "?",
        {True: "compiled", False: "eager"}.get(compiled, "?"),
        f"{threads} thread{'s' if threads != 1 else ''}" if threads else "? threads",
    ]
    date = (info.get("provenance") or {}).get("date") or "?"
    return {"machine": ", then ".join(machines), "arithmetic": ", ".join(arithmetic), "date": date[:10]}


def _machine(prov: dict) -> str:
    if not prov:
        return "unknown"  # a run.json that does not say (tally counts these apart)
    if prov.get("gpu"):
        return f"GPU {prov['gpu']}"
    fp = prov.get("float_path") or {}
    caps = "".join(f", {c}" for c in _caps(fp))
    cpu = prov.get("processor") or "unknown CPU"
    return (
        cpu + (f" ({prov['cpu_id']})" if prov.get("cpu_id") else "") + f", ATen {fp.get('cpu_capability', '?')}{caps}"
    )


def _caps(fp: dict) -> list[str]:
    """The kernel-dispatch caps of a ``float_path`` (``KEY=value``): neither ATen's ISA nor ``compiled`` (a run's
    arithmetic, not its machine)."""
    return [f"{k}={v}" for k, v in fp.items() if k not in ("cpu_capability", "compiled")]


def tally(entries) -> list[dict]:
    """Runs counted per (machine, arithmetic), from :func:`trained_on` dicts, earlier tallies, or None for a
    run whose machine is unknown: ``[{machine, arithmetic, runs, first, last}]``, most runs first."""
    counts: dict[tuple, dict] = {}
    for e in entries:
        e = e or {"machine": "unknown", "arithmetic": "unknown", "date": "?"}
        key = (e["machine"], e["arithmetic"])
        c = counts.setdefault(key, {"machine": key[0], "arithmetic": key[1], "runs": 0, "first": None, "last": None})
        c["runs"] += e.get("runs", 1)
        for d in (e.get("first", e.get("date")), e.get("last", e.get("date"))):
            if d and d != "?":
                c["first"] = min(c["first"] or d, d)
                c["last"] = max(c["last"] or d, d)
    return sorted(counts.values(), key=lambda c: (-c["runs"], c["machine"], c["arithmetic"]))


def describe_trained_on(runs: list[dict]) -> str:
    """Markdown: how many of a report's runs trained on which machine and in what arithmetic (a :func:`tally`),
    with a warning where they span several machines (their numbers are not one float path)."""
    n = sum(c["runs"] for c in runs)
    if not n:
        return "**Trained on** — no runs yet."
    machines = list(dict.fromkeys(c["machine"] for c in runs if c["machine"] != "unknown"))
    unknown = sum(c["runs"] for c in runs if c["machine"] == "unknown")
    parts = []
    for m in machines:
        these = [c for c in runs if c["machine"] == m]
        kinds = "; ".join(f"{c['runs']} in {c['arithmetic']}" for c in these)
        dates = sorted(d for c in these for d in (c["first"], c["last"]) if d)
        span = f" ({dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "") + ")" if dates else ""
        parts.append(f"{sum(c['runs'] for c in these)} on {m}{span}: {kinds}")
    if unknown:
        parts.append(f"{unknown} whose machine is not recorded here")
    text = f"**Trained on** — {n} run{'s' if n != 1 else ''}: " + " · ".join(parts) + "."
    if len(machines) > 1:
        text += " **Several machines: these numbers are not one float path** (docs/machines.md)."
    return text


# Warnings that are noise in an executed report: they say nothing about the results and repeat in every run.
REPORT_NOISE = (
    r"IProgress not found",  # tqdm.auto without ipywidgets (Lightning imports it)
    r'install "ipywidgets" for Jupyter support',  # rich's live display in a kernel
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's _pytree on this torch
)


def quiet_reports() -> None:
    """Filter the executed reports' warning noise: :data:`REPORT_NOISE` by message, and the FutureWarnings that
    seaborn raises through pandas. Call it first in a notebook, before Lightning is imported; other warnings
    still show."""
    for message in REPORT_NOISE:
        warnings.filterwarnings("ignore", message=message)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"seaborn(\..*)?$")
