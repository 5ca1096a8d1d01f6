"""The `study` profile holds every CPU-scale experiment the project reports; the `cpu` profile is its subset:
every cpu run is a study run with the same run id and the same fingerprint (so it is read back, not retrained)."""

import pytest

from lengen import paths
from lengen.config import load_config, use_profile
from lengen.config.cli import main
from lengen.finetune import run_spec as finetune_spec
from lengen.finetune import stage_runs
from lengen.heads.__main__ import stage_items
from lengen.train import run_spec


@pytest.fixture(scope="module")
def study():
    return load_config(paths.PROFILES_DIR / "study.yaml")


@pytest.fixture(scope="module")
def cpu():
    return load_config(paths.PROFILES_DIR / "cpu.yaml")


def test_study_profile_checks_and_is_a_profile(tmp_path, capsys):
    assert main(["check", str(paths.PROFILES_DIR / "study.yaml")]) == 0
    assert "ok: profile study," in capsys.readouterr().out
    assert load_config(use_profile("study", target=tmp_path / "params.yaml")).profile == "study"


def test_the_study_shares_the_cpu_profile_runs_parameters(study, cpu):
    assert (study.data, study.model, study.train, study.groups) == (cpu.data, cpu.model, cpu.train, cpu.groups)


def test_every_cpu_run_is_a_study_run_with_the_same_fingerprint(study, cpu):
    studied = {r.run_id: r for r in study.all_runs()}
    assert len(studied) == len(study.all_runs())  # each run once over experiment, ablation and grid
    for run in cpu.all_runs():
        assert run.run_id in studied, f"{run.run_id} is a cpu run but not a study run"
        assert studied[run.run_id] == run
        assert run_spec(studied[run.run_id]).fingerprint == run_spec(run).fingerprint


def test_every_cpu_fine_tune_is_a_study_fine_tune_with_the_same_fingerprint(study, cpu, tmp_path):
    studied = {r.run_id: finetune_spec(r, model_dir=tmp_path).fingerprint for r in stage_runs(study)}
    assert len(studied) > len(stage_runs(cpu))  # the study runs more seeds
    for run in stage_runs(cpu):
        assert finetune_spec(run, model_dir=tmp_path).fingerprint == studied.get(run.run_id), run.run_id


def test_the_study_holds_every_reported_experiment(study):
    runs = study.all_runs()
    seeds: dict[tuple[str, str], set[int]] = {}
    for r in runs:
        seeds.setdefault((r.group_name, r.pos_encoding), set()).add(r.seed)
    # every defined group at RoPE (headline groups, baselines, controls, one auxiliary, other groups, mazes),
    # but those only the cross-paper study trains (under APE)
    cross_only = set(study.cross.groups) - set(study.experiment.groups)
    for g in set(study.groups) - cross_only:
        assert len(seeds.get((g, "rope"), ())) >= 3, f"{g}: fewer than 3 RoPE seeds"
    # the cross-paper study (notebook 07): every group at APE over >= 3 seeds, and the groups of its first
    # question at RoPE and NoPE too
    for g in study.cross.groups:
        assert len(seeds.get((g, "ape"), ())) >= 3, f"{g}: fewer than 3 APE seeds"
    for g in ("arith_carry", "caprev", "sp_far_dfs"):
        assert {pe for (h, pe) in seeds if h == g} == {"rope", "nope", "ape"}
    for g in ("arith_carry", "caprev", "sp_far_dfs", "add_alone", "caprev_alone", "sp_far_alone"):
        assert len(seeds[(g, "rope")]) >= 5, f"{g}: a headline group or baseline below 5 seeds"
    for g in ("arith_carry", "add_alone", "caprev", "caprev_alone"):  # RoPE vs NoPE (Fig. 12-13)
        assert len(seeds.get((g, "nope"), ())) >= 3
    grid = study.grid
    assert len(grid.main_lengths) >= 3 and len(grid.aux_lengths) >= 3 and len(grid.seeds) >= 2
    # the head analysis covers every trained group with auxiliaries
    analysed = {g for names in study.heads.groups.values() for g in names}
    assert analysed == {r.group_name for r in study.runs() + study.ablation_runs() if r.group.aux}
    assert study.pretrained.n_eval >= 256 and study.formal is not None


def test_the_queue_order_names_every_run_stage_of_cpu_and_study_cpu_first(study, cpu):
    """profiles/queue-order.txt (make queue's ORDER): the cpu runs first, then every study run, none unknown."""
    lines = (paths.PROFILES_DIR / "queue-order.txt").read_text().splitlines()
    order = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    assert len(order) == len(set(order))
    cpu_stages, study_stages = set(stage_items(cpu)), set(stage_items(study))  # as DVC names them
    assert len(cpu_stages) == len(cpu.all_runs()) and len(study_stages) == len(study.all_runs())
    assert set(order) == cpu_stages | study_stages
    # the cpu runs come first in either profile; a baseline is `ablation@` in cpu and `train@` in study (one run)
    for stages in (cpu_stages, study_stages):
        mine = [s for s in order if s in stages]
        assert {s.split("@")[1] for s in mine[: len(cpu_stages)]} == {s.split("@")[1] for s in cpu_stages}
