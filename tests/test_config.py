import copy
import dataclasses

import pytest

from lengen import paths
from lengen.config import Config, load_config, parse_config, read_params, use_profile
from lengen.config.profiles import edits, profile_names
from lengen.system import model_config
from lengen.train import run_spec


def raw(profile="cpu"):
    return read_params(paths.PROFILES_DIR / f"{profile}.yaml")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_profiles_validate(profile):
    cfg = load_config(paths.PROFILES_DIR / f"{profile}.yaml")
    assert isinstance(cfg, Config) and cfg.profile == profile
    assert cfg.runs(), "a profile must train something"
    # every group with auxiliaries names its baseline, which is trained too (experiment or ablation
    # stage; cpu trains the baselines at one seed) under each of the experiment's position encodings
    trained = {(r.group_name, r.pos_encoding) for r in cfg.runs() + cfg.ablation_runs()}
    for g in cfg.experiment.groups:
        if cfg.groups[g].aux:
            for pe in cfg.experiment.pos_encodings:
                assert (cfg.groups[g].baseline, pe) in trained, (g, pe)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_defined_group_can_be_added_to_the_ablation(profile):
    # groups defined but not run by default (mazes, one-auxiliary, the other paper groups) must parse,
    # position range included, the moment a user lists them in ablation.groups
    r = raw(profile)
    extra = [g for g in r["groups"] if g not in r["experiment"]["groups"]]
    assert extra, f"{profile}: every profile defines groups beyond its experiment (paper: the far-query mazes)"
    r["ablation"]["groups"] = extra
    cfg = parse_config(r)
    assert {run.group_name for run in cfg.ablation_runs()} == set(r["ablation"]["groups"])


def test_params_yaml_validates_and_is_a_copy_of_the_profile_it_names():
    """The committed params.yaml is one profile (the published one), not a hand-edited mix."""
    assert load_config().profile in profile_names()
    assert edits(paths.PARAMS_FILE) == []


def mutate(fn, profile="smoke"):
    r = copy.deepcopy(raw(profile))
    fn(r)
    return r


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: r["train"].update(setps=10), r"train: unknown key\(s\) \['setps'\]"),
        (lambda r: r.update(trian={}), r"unknown section\(s\) \['trian'\]"),
        (lambda r: r["train"].pop("lr"), r"train: missing key\(s\) \['lr'\]"),
        (lambda r: r["train"].update(steps="many"), r"train.steps: must be int"),
        (lambda r: r["train"].update(steps=1.5), r"train.steps: must be int"),
        (lambda r: r["train"].update(lr=-1.0), r"train.lr: must be > 0"),
        (lambda r: r["train"].update(precision="fp8"), r"train.precision: 'fp8' is not one of"),
        (lambda r: r["model"].update(n_head=3), r"n_head=3 does not divide d_model=32"),
        (lambda r: r["groups"]["add_alone"]["main"].update(bogus=3), r"needs exactly one task"),
        (
            lambda r: r["groups"]["add_alone"].update(main={"bogus": 3}),
            r"unknown task 'bogus'; known tasks: .*reverse_add",
        ),
        (lambda r: r["groups"]["add_alone"].update(main={}), r"needs exactly one task, got none"),
        (lambda r: r["groups"]["add_alone"].update(main={"reverse_add": 0}), r"length 0 is out of range; allowed 1"),
        (
            lambda r: r["groups"]["add_alone"].update(main={"dfs_trace": 65}, eval_max=65),
            r"length 65 is out of range; allowed 2..64",
        ),
        (lambda r: r["experiment"].update(groups=[]), r"params: experiment: groups: must not be empty"),
        (lambda r: r["ablation"].update(groups=[]), r"params: ablation: groups: must not be empty"),
        (lambda r: r["ablation"].update(pos_encodings=["alibi"]), r"params: ablation: pos_encodings: 'alibi'"),
        (lambda r: r["experiment"].update(groups=["nope"]), r"unknown group 'nope'"),
        (lambda r: r["experiment"].update(pos_encodings=["alibi"]), r"'alibi' is not one of"),
        (lambda r: r["model"].update(max_seq_len=20), r"model.max_seq_len: 20 is too short for group"),
        (lambda r: r["data"].update(holdout_modulus=1), r"holdout_modulus: must be >= 2"),
        (lambda r: r["train"].update(length_buckets=0), r"train.length_buckets: must be > 0"),
        (
            lambda r: r["train"].update(length_buckets=10**6),
            r"train.length_buckets: 1000000 chunks of a per-device batch",
        ),
        (
            lambda r: r["groups"]["arith_carry"].update(baseline="nope"),
            r"groups.arith_carry.baseline: unknown group 'nope'",
        ),
        (
            lambda r: r["groups"]["add_alone"].update(model={"inti": "gpt2"}),
            r"groups.add_alone.model: unknown key\(s\) \['inti'\]",
        ),
        (
            lambda r: r["groups"]["add_alone"].update(model={"d_model": "wide"}),
            r"groups.add_alone.model.d_model: must be int",
        ),
        (
            lambda r: [r["groups"][g].update(model={"max_seq_len": 20}) for g in ("arith_carry", "add_alone")],
            r"model.max_seq_len: 20 is too short for group 'arith_carry'",
        ),
        (
            lambda r: r["groups"]["arith_carry"].update(model={"init": "gpt2"}),
            r"groups.arith_carry.model: .* differs from its baseline 'add_alone'",
        ),
        (
            lambda r: r["groups"]["add_alone"].update(train={"deacy_frac": 0.5}),
            r"groups.add_alone.train: unknown key\(s\) \['deacy_frac'\]",
        ),
        (
            lambda r: [r["groups"][g].update(train={"decay_frac": 0.95}) for g in ("arith_carry", "add_alone")],
            r"train.decay_frac: warmup_frac \+ decay_frac = .* > 1",
        ),
        (
            lambda r: r["groups"]["arith_carry"].update(train={"decay_frac": 0.5}),
            r"groups.arith_carry.train: .* differs from its baseline 'add_alone'",
        ),
    ],
)
def test_bad_params_fail_naming_the_key(change, match):
    with pytest.raises(ValueError, match=match):
        parse_config(mutate(change))


def test_frozen_and_derived(smoke_cfg):
    with pytest.raises(dataclasses.FrozenInstanceError):
        smoke_cfg.train.steps = 3
    t = smoke_cfg.train
    assert t.warmup_steps == round(t.warmup_frac * t.steps)
    g = smoke_cfg.groups["arith_carry"]
    assert g.main_task == "reverse_add" and g.transfer_max == max(g.aux.values())
    assert [g.length_range(l) for l in (g.main_max, g.main_max + 1, g.transfer_max + 1)] == [
        "in-distribution",
        "transfer",
        "beyond",
    ]
    assert smoke_cfg.groups["add_alone"].transfer_max == 2 * g.main_max


def test_run_ids_unique(smoke_cfg):
    ids = [r.run_id for r in smoke_cfg.runs()]
    assert len(ids) == len(set(ids))


def test_use_profile(tmp_path):
    dst = use_profile("smoke", target=tmp_path / "params.yaml")
    assert load_config(dst).profile == "smoke"
    with pytest.raises(ValueError, match="unknown profile 'gpu'; known profiles"):
        use_profile("gpu", target=tmp_path / "x.yaml")


def test_grid_cells_are_groups_of_the_template():
    cfg = load_config(paths.PROFILES_DIR / "cpu.yaml")
    g = cfg.grid
    runs = cfg.grid_runs()
    assert len(runs) == len(g.main_lengths) * len(g.aux_lengths) * len(g.seeds)
    template = cfg.groups[g.group]
    run = cfg.run(g.name(8, 16), g.pos_encoding, 0)
    assert run.run_id == "grid_m8_a16-rope-s0"
    assert run.group.main == {template.main_task: 8}
    assert run.group.aux == dict.fromkeys(template.aux, 16)
    assert run.group.eval_max == g.eval_max and run.group.baseline is None


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: r["grid"].update(group="nope"), r"grid.group: unknown group 'nope'"),
        (lambda r: r["grid"].update(group="add_alone"), r"grid.group: the template group needs auxiliaries"),
        (lambda r: r["grid"].update(main_lengths=[]), r"grid.main_lengths: must not be empty"),
        (lambda r: r["grid"].update(aux_lengths=[0]), r"grid.aux_lengths"),
        (lambda r: r["grid"].update(eval_max=500), r"model.max_seq_len: .* group 'grid_m3_a6'"),
        (lambda r: r["grid"].update(colour="red"), r"grid: unknown key\(s\) \['colour'\]"),
    ],
)
def test_grid_errors_name_the_problem(change, match):
    with pytest.raises(ValueError, match=match):
        parse_config(mutate(change))


def test_unknown_run_group_names_grid_pattern():
    cfg = load_config(paths.PROFILES_DIR / "smoke.yaml")
    with pytest.raises(ValueError, match="grid_m<main>_a<aux>"):
        cfg.run("grid_x", "rope", 0)


def test_profile_without_grid_has_no_grid_runs():
    r = mutate(lambda r: r.pop("grid"))
    assert parse_config(r).grid_runs() == []


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: r["ablation"].update(groups=["caprevv"]), r"ablation.groups: unknown group 'caprevv'"),
        (
            lambda r: r["ablation"].update(pos_encodings=["rope"]),
            r"ablation: run\(s\) \['arith_carry-rope-s0'\] are already",
        ),
        (lambda r: r["ablation"].update(pos_encodings=["alibi"]), r"'alibi' is not one of"),
    ],
)
def test_ablation_errors_name_the_problem(change, match):
    with pytest.raises(ValueError, match=match):
        parse_config(mutate(change))


def test_all_runs_cover_experiment_ablation_grid_and_cross():
    cfg = load_config(paths.PROFILES_DIR / "smoke.yaml")
    ids = [r.run_id for r in cfg.all_runs()]
    assert ids == [r.run_id for r in cfg.runs() + cfg.ablation_runs() + cfg.grid_runs() + cfg.cross_runs()]
    assert "arith_carry-nope-s0" in ids and "arith_carry-ape-s0" in ids and len(set(ids)) == len(ids)


def test_a_cross_run_already_trained_elsewhere_is_refused():
    r = raw("smoke")
    r["cross"] = {"groups": ["arith_carry"], "pos_encodings": ["nope"], "seeds": [0]}  # = the ablation's run
    with pytest.raises(ValueError, match=r"cross.*arith_carry-nope-s0"):
        parse_config(r)
    r["cross"] = {"groups": ["no_such_group"], "pos_encodings": ["ape"], "seeds": [0]}
    with pytest.raises(ValueError, match=r"cross\.groups.*no_such_group"):
        parse_config(r)


def test_group_model_overrides_reach_only_that_groups_runs():
    r = raw("smoke")
    for g in ("arith_carry", "add_alone"):
        r["groups"][g]["model"] = {"init": "gpt2", "d_model": 64}
    cfg = parse_config(r)
    run = cfg.run("arith_carry", "rope", 0)
    assert run.model.init == "gpt2" and run.model.d_model == 64
    assert model_config(run).init == "gpt2" and model_config(run).d_model == 64
    assert run.model.n_layer == cfg.model.n_layer  # the rest comes from the shared section
    assert cfg.model.init == raw("smoke")["model"].get("init", "fan_in")  # the shared section is untouched
    plain = parse_config(raw("smoke")).run("arith_carry", "rope", 0)
    assert plain.model == cfg.model and run_spec(plain).fingerprint != run_spec(run).fingerprint


def test_group_train_overrides_reach_only_that_groups_runs_and_its_grid_cells():
    r = raw("smoke")
    for g in ("arith_carry", "add_alone"):
        r["groups"][g]["train"] = {"decay_frac": 0.5, "lr": 3e-3}
    cfg = parse_config(r)
    run = cfg.run("arith_carry", "rope", 0)
    assert (run.train.decay_frac, run.train.lr) == (0.5, 3e-3)
    assert run.train.decay_steps == round(0.5 * cfg.train.steps)  # derived values follow the override
    assert run.train.steps == cfg.train.steps  # the rest comes from the shared section
    assert cfg.train == parse_config(raw("smoke")).train  # the shared section is untouched
    others = [cfg.run(g, "rope", 0) for g in cfg.groups if g not in ("arith_carry", "add_alone")]
    assert others and all(x.train == cfg.train for x in others)
    if cfg.grid is not None and cfg.grid.group == "arith_carry":
        assert all(x.train == run.train for x in cfg.grid_runs())  # a cell is its template at other lengths
    plain = parse_config(raw("smoke")).run("arith_carry", "rope", 0)
    assert run_spec(plain).fingerprint != run_spec(run).fingerprint


def test_fingerprint_of_a_run_without_train_overrides_leaves_the_empty_dict_out():
    run = parse_config(raw("smoke")).run("arith_carry", "rope", 0)
    assert dataclasses.asdict(run)["group"]["train"] == {}
    # the params runs made before groups could override ``train`` were fingerprinted with
    assert "train" not in run.group.fingerprint_dict() and "train" not in run_spec(run).params["group"]
    r = raw("smoke")
    for g in ("arith_carry", "add_alone"):
        r["groups"][g]["train"] = {"lr": 3e-3}
    assert parse_config(r).groups["add_alone"].fingerprint_dict()["train"] == {"lr": 3e-3}  # kept when set
