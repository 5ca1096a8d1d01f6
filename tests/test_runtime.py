"""Device, precision, the CPU's float path and provenance (lengen.runtime)."""

import builtins
import json
import re

import torch

from lengen import runtime


def test_auto_precision_is_bf16_only_where_bf16_is_native(monkeypatch):
    assert runtime.resolve_precision("32-true") == "32-true"
    assert runtime.resolve_precision("bf16-mixed") == "bf16-mixed"
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(runtime, "native_bf16", lambda device="cpu", n=native: n)
        assert runtime.resolve_precision("auto") == expected
        ctx = runtime.autocast_context("auto")
        assert isinstance(ctx, torch.autocast) == native  # evaluation scores as training runs


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    real_open = builtins.open
    for flags, expected in (("fpu avx2 fma", False), ("avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True)):
        (tmp_path / "cpuinfo").write_text(f"flags\t\t: {flags}\n")
        runtime._cpu_native_bf16.cache_clear()  # read once per process: make it read this file
        monkeypatch.setattr(
            builtins, "open", lambda p, *a, **k: real_open(tmp_path / "cpuinfo" if p == "/proc/cpuinfo" else p, *a, **k)
        )
        assert runtime.native_bf16("cpu") is expected
    # A oneDNN ISA cap below bf16 (the AVX2 float path on an AVX-512 CPU) makes bf16 non-native again.
    for cap, expected in (("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True), ("ALL", True)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        runtime._cpu_native_bf16.cache_clear()
        assert runtime.native_bf16("cpu") is expected
    runtime._cpu_native_bf16.cache_clear()


def test_cpu_id_reads_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
        "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\n"
    )
    assert runtime.cpu_id(str(info)) == "family 26 model 2"
    assert runtime.cpu_model(str(info)) == "AMD EPYC"
    info.write_text("processor\t: 0\nmodel name\t: Some ARM core\n")
    assert runtime.cpu_id(str(info)) is None
    assert runtime.cpu_id(str(tmp_path / "missing")) is None


def test_float_path_names_the_kernel_caps_set(monkeypatch):
    for k in runtime.FLOAT_PATH_ENV:
        monkeypatch.delenv(k, raising=False)
    assert runtime.float_path() == {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert runtime.float_path() == {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }


def test_model_device_of_a_module_and_of_a_parameter_less_stand_in():
    assert runtime.model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert runtime.model_device(lambda x: x) == torch.device("cpu")


def test_provenance_is_json_and_names_the_machine_and_commit(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    p = runtime.provenance()
    assert json.loads(json.dumps(p)) == p
    assert p["float_path"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert p["versions"]["torch"] == torch.__version__ and p["versions"]["lightning"]
    assert p["device"] in ("cpu", "cuda") and p["processor"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", p["date"])
    assert p["git_commit"] is None or re.fullmatch(r"[0-9a-f]{4,40}", p["git_commit"])


def test_git_commit_is_none_outside_a_checkout(tmp_path):
    assert runtime.git_commit(tmp_path) is None


def _run_json(cpu_id="family 25 model 17", isa="AVX512", precision="32-true", compiled=True, threads=1, **more):
    prov = {"processor": "AMD EPYC", "cpu_id": cpu_id, "float_path": {"cpu_capability": isa}, "gpu": None}
    return {
        "precision": precision,
        "compile": {"compiled": compiled},
        "threads": threads,
        **more,
        "provenance": {**prov, "date": "2026-12-07T04:39:42+00:00"},
    }


def test_a_run_is_named_by_its_machine_and_arithmetic_and_every_machine_it_trained_on():
    assert runtime.trained_on(_run_json()) == {
        "machine": "AMD EPYC (family 25 model 17), ATen AVX512",
        "arithmetic": "32-true, compiled, 1 thread",
        "date": "2026-12-07",
    }
    capped = _run_json(isa="AVX2", precision="bf16-mixed", compiled=False, threads=2)
    capped["provenance"]["float_path"].update(ONEDNN_MAX_CPU_ISA="AVX2", compiled=False)
    assert runtime.trained_on(capped)["machine"] == "AMD EPYC (family 25 model 17), ATen AVX2, ONEDNN_MAX_CPU_ISA=AVX2"
    assert runtime.trained_on(capped)["arithmetic"] == "bf16-mixed, eager, 2 threads"
    # Killed on one machine, resumed on another: both are named, in order, so the run counts as neither.
    zen3 = {"processor": "AMD EPYC", "cpu_id": "family 25 model 1", "float_path": {"cpu_capability": "AVX2"}}
    resumed = _run_json(segments=[_run_json()["provenance"], zen3, zen3])
    assert runtime.trained_on(resumed)["machine"] == (
        "AMD EPYC (family 25 model 17), ATen AVX512, then AMD EPYC (family 25 model 1), ATen AVX2"
    )
    gpu = _run_json()
    gpu["provenance"]["gpu"] = "NVIDIA H100"
    assert runtime.trained_on(gpu)["machine"] == "GPU NVIDIA H100"


def test_a_report_header_counts_its_runs_per_machine_and_flags_more_than_one():
    zen4, zen4_bf16 = runtime.trained_on(_run_json()), runtime.trained_on(_run_json(precision="bf16-mixed"))
    later = {**zen4, "date": "2026-12-09"}
    one = runtime.tally([zen4, later, zen4_bf16])
    assert one == [
        {
            "machine": zen4["machine"],
            "arithmetic": zen4["arithmetic"],
            "runs": 2,
            "first": "2026-12-07",
            "last": "2026-12-09",
        },
        {
            "machine": zen4["machine"],
            "arithmetic": zen4_bf16["arithmetic"],
            "runs": 1,
            "first": "2026-12-07",
            "last": "2026-12-07",
        },
    ]
    assert runtime.tally(one + [zen4]) == runtime.tally([zen4, later, zen4_bf16, zen4])  # tallies add up
    text = runtime.describe_trained_on(one)
    assert text.startswith("**Trained on** — 3 runs: 3 on AMD EPYC (family 25 model 17), ATen AVX512 (2026-12-07 to")
    assert "2 in 32-true, compiled, 1 thread; 1 in bf16-mixed" in text and "Several machines" not in text
    zen3 = runtime.trained_on(_run_json(cpu_id="family 25 model 1", isa="AVX2"))
    mixed = runtime.describe_trained_on(runtime.tally([zen4, zen3, None]))
    assert "1 on AMD EPYC (family 25 model 1), ATen AVX2" in mixed and "1 whose machine is not recorded here" in mixed
    assert "**Several machines: these numbers are not one float path**" in mixed
    assert runtime.describe_trained_on([]) == "**Trained on** — no runs yet."
    header = runtime.report_header(runtime.provenance(), changed=False, runs=one)
    assert header.startswith("**Provenance** — commit") and header.endswith(text)
    assert "Trained on" not in runtime.report_header(runtime.provenance(), changed=False)
