"""``python -m lengen.config check``: every section typed, the rejections, YAML as DVC reads it, no torch."""

import copy
import json
import subprocess
import sys

import pytest
import yaml

from lengen import paths
from lengen.config import parse_config, read_params
from lengen.config.cli import STAMP, main


def raw(profile="smoke"):
    return read_params(paths.PROFILES_DIR / f"{profile}.yaml")


def mutate(fn, profile="smoke"):
    r = copy.deepcopy(raw(profile))
    fn(r)
    return r


def test_import_and_check_do_not_import_torch():
    code = (
        "import sys, lengen.config\n"
        "from lengen.config.cli import main\n"
        "assert main(['check']) == 0\n"
        "heavy = [m for m in ('torch', 'lightning', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.PROJ_ROOT, check=False)
    assert out.returncode == 0, out.stderr


# A misspelt key in every section (and in the nested mappings) fails, naming it.
@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: r.update(profiel="x"), r"<top level>: unknown section\(s\) \['profiel'\]"),
        (lambda r: r.update(figures={}), r"<top level>: unknown section\(s\) \['figures'\]"),
        (lambda r: r["data"].update(sede=1), r"params: data: unknown key\(s\) \['sede'\]"),
        (lambda r: r["model"].update(n_layers=1), r"params: model: unknown key\(s\) \['n_layers'\]"),
        (lambda r: r["train"].update(setps=1), r"params: train: unknown key\(s\) \['setps'\]"),
        (
            lambda r: r["groups"]["arith_carry"].update(axu={}),
            r"params: groups.arith_carry: unknown key\(s\) \['axu'\]",
        ),
        (lambda r: r["experiment"].update(seed=[0]), r"params: experiment: unknown key\(s\) \['seed'\]"),
        (lambda r: r["ablation"].update(group=[]), r"params: ablation: unknown key\(s\) \['group'\]"),
        (lambda r: r["grid"].update(main_length=[]), r"params: grid: unknown key\(s\) \['main_length'\]"),
        (lambda r: r["heads"].update(topk=2), r"params: heads: unknown key\(s\) \['topk'\]"),
        (lambda r: r["pretrained"].update(lr_typo=1.0), r"params: pretrained: unknown key\(s\) \['lr_typo'\]"),
        (lambda r: r["pretrained"].update(seed=0), r"params: pretrained: unknown key\(s\) \['seed'\]"),
        (
            lambda r: r["pretrained"]["groups"]["add_alone"].update(evalmax=4),
            r"params: pretrained.groups.add_alone: unknown key\(s\) \['evalmax'\]",
        ),
        (
            lambda r: r["pretrained"]["claims"].update(relatd="x"),
            r"params: pretrained.claims: unknown key\(s\) \['relatd'\]",
        ),
        (lambda r: r["formal"].update(bin=[]), r"params: formal: unknown key\(s\) \['bin'\]"),
        (lambda r: r["formal"]["grid"].update(n_layers=[1]), r"params: formal.grid: unknown key\(s\) \['n_layers'\]"),
        (lambda r: r["formal"]["train"].update(stesp=1), r"params: formal.train: unknown key\(s\) \['stesp'\]"),
    ],
)
def test_misspelt_key_in_any_section_is_named(change, match):
    with pytest.raises(ValueError, match=match):
        parse_config(mutate(change))


@pytest.mark.parametrize(
    "change, match",
    [
        # an auxiliary trained no longer than the main task (equal, or shorter)
        (
            lambda r: r["groups"]["arith_carry"]["aux"].update(no_carry=3),
            r"params: groups.arith_carry.aux: auxiliary \{'no_carry': 3\} not trained longer than the main task "
            r"'reverse_add' \(3\)",
        ),
        (lambda r: r["groups"]["caprev"]["aux"].update(reverse=2), r"groups.caprev.aux: auxiliary \{.reverse.: 2\}"),
        (
            lambda r: r["pretrained"]["groups"]["add_carry"]["aux"].update(no_carry=2),
            r"params: pretrained.groups.add_carry.aux: auxiliary \{'no_carry': 2\}",
        ),
        # duplicates
        (lambda r: r["experiment"].update(seeds=[0, 0]), r"params: experiment: seeds: lists \[0\] more than once"),
        (lambda r: r["ablation"].update(seeds=[1, 0, 1]), r"params: ablation: seeds: lists \[1\] more than once"),
        (lambda r: r["grid"].update(seeds=[0, 0]), r"params: grid.seeds: lists \[0\] more than once"),
        (
            lambda r: r["experiment"].update(groups=["arith_carry", "arith_carry"]),
            r"params: experiment: groups: lists \['arith_carry'\] more than once",
        ),
        (
            lambda r: r["ablation"].update(groups=["add_alone", "add_alone"]),
            r"params: ablation: groups: lists \['add_alone'\]",
        ),
        (
            lambda r: r["experiment"].update(pos_encodings=["rope", "rope"]),
            r"experiment: pos_encodings: lists \['rope'\]",
        ),
        (lambda r: r["grid"].update(aux_lengths=[6, 6]), r"params: grid.aux_lengths: lists \[6\]"),
        (lambda r: r["formal"].update(languages=["D-2", "D-2"]), r"params: formal.languages: lists \['D-2'\]"),
        (
            lambda r: r["heads"]["groups"].update(arithmetic=["arith_carry", "arith_carry"]),
            r"params: heads.groups.arithmetic: lists \['arith_carry'\]",
        ),
        (
            lambda r: r["pretrained"]["runs"].update(add_alone=["pretrained", "scratch", "scratch"]),
            r"params: pretrained.runs.add_alone: lists \['scratch'\]",
        ),
        (lambda r: r["pretrained"].update(seeds=[0, 1, 0]), r"params: pretrained.seeds: lists \[0\] more than once"),
        # negative seeds
        (lambda r: r["experiment"].update(seeds=[0, -1]), r"params: experiment: seeds: seeds must be >= 0, got \[-1\]"),
        (lambda r: r["ablation"].update(seeds=[-2]), r"params: ablation: seeds: seeds must be >= 0"),
        (lambda r: r["grid"].update(seeds=[-1]), r"params: grid.seeds: seeds must be >= 0"),
        (lambda r: r["data"].update(seed=-1), r"params: data.seed: must be >= 0, got -1"),
        (lambda r: r["heads"].update(seed=-1), r"params: heads.seed: must be >= 0"),
        (lambda r: r["pretrained"].update(seeds=[0, -1]), r"params: pretrained.seeds: seeds must be >= 0, got \[-1\]"),
        # an empty seed list (no run at all)
        (lambda r: r["pretrained"].update(seeds=[]), r"params: pretrained.seeds: must not be empty"),
        (lambda r: r["formal"].update(data_seed=-1), r"params: formal.data_seed: must be >= 0"),
        # a scalar where DVC expects a matrix list
        (
            lambda r: r["experiment"].update(seeds=0),
            r"params: experiment.seeds: must be a list, got 0 \(one value is written \[0\]\)",
        ),
        (
            lambda r: r["ablation"].update(groups="add_alone"),
            r"params: ablation.groups: must be a list, got 'add_alone'",
        ),
        (lambda r: r["grid"].update(seeds=3), r"params: grid.seeds: must be a list"),
        (lambda r: r["pretrained"].update(seeds=0), r"params: pretrained.seeds: must be a list"),
        # the analysis sections are checked with the rest
        (
            lambda r: r["heads"]["groups"].update(arithmetic=["add_alone"]),
            r"params: heads.groups: 'add_alone' has no auxiliary",
        ),
        (lambda r: r["heads"].update(n_examples=1), r"params: heads.n_examples: must be >= 2"),
        (lambda r: r["pretrained"].update(model="gpt2"), r"params: pretrained.model: 'gpt2' is not one of"),
        (lambda r: r["formal"].update(algorithmic=["bogus"]), r"params: formal.algorithmic: unknown task 'bogus'"),
        (lambda r: r["formal"]["train"].update(steps=0), r"params: formal.train.steps: must be >= 1"),
    ],
)
def test_rejections_name_the_key(change, match):
    with pytest.raises(ValueError, match=match):
        parse_config(mutate(change))


def test_grid_cells_may_have_an_auxiliary_no_longer_than_the_main_task():
    # Fig. 10 spans every (main, aux) ratio: the aux-longer rule is for the groups a profile defines
    cfg = parse_config(mutate(lambda r: r["grid"].update(main_lengths=[3, 6], aux_lengths=[3, 6])))
    assert {r.group_name for r in cfg.grid_runs()} >= {"grid_m6_a3", "grid_m3_a3"}


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_section_is_typed(profile):
    from lengen.config import HeadsConfig, PretrainedParams
    from lengen.formal.config import FormalConfig

    cfg = parse_config(raw(profile))
    assert isinstance(cfg.heads, HeadsConfig) and isinstance(cfg.pretrained, PretrainedParams)
    assert isinstance(cfg.formal, FormalConfig)
    assert set(cfg.extra) == {"heads", "pretrained", "formal"}  # kept raw for readers that parse them


def test_yaml_is_read_as_dvc_reads_it(tmp_path):
    # YAML 1.2 (DVC's ruamel): 1e-3 is a float; PyYAML (YAML 1.1) reads the string '1e-3'
    text = (paths.PROFILES_DIR / "smoke.yaml").read_text()
    assert "\n  lr: 0.001\n" in text
    p = tmp_path / "params.yaml"
    p.write_text(text.replace("\n  lr: 0.001\n", "\n  lr: 1e-3\n", 1))
    assert yaml.safe_load(p.read_text())["train"]["lr"] == "1e-3"
    assert read_params(p)["train"]["lr"] == 0.001
    assert main(["check", str(p)]) == 0

    from dvc.utils.serialize import parse_yaml

    assert parse_yaml(p.read_text(), str(p)) == read_params(p)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_profiles_read_the_same_under_yaml_1_1_and_1_2(profile):
    # Code and tests that read a profile with PyYAML see what DVC and lengen.config see.
    path = paths.PROFILES_DIR / f"{profile}.yaml"
    assert yaml.safe_load(path.read_text()) == read_params(path)


def test_check_cli(tmp_path, capsys):
    out = tmp_path / "stamp" / "config_check.json"
    assert main(["check", str(paths.PROFILES_DIR / "smoke.yaml"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("ok: profile smoke, ")
    stamp = out.read_text()
    assert json.loads(stamp) == STAMP
    # the stamp does not depend on the values: other stages re-run only for their own parameters
    other = tmp_path / "cpu.json"
    assert main(["check", str(paths.PROFILES_DIR / "cpu.yaml"), "--out", str(other)]) == 0
    assert other.read_text() == stamp

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate(lambda r: r["experiment"].update(seeds=0))))
    failed = tmp_path / "failed.json"
    assert main(["check", str(bad), "--out", str(failed)]) == 1
    assert "params: experiment.seeds: must be a list, got 0" in capsys.readouterr().err
    assert not failed.exists()
    assert main(["check", str(tmp_path / "missing.yaml")]) == 1
    assert "No such file" in capsys.readouterr().err
    bad.write_text("data: [\n")
    assert main(["check", str(bad)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_python_m_lengen_config_check_exits_nonzero_naming_the_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(mutate(lambda r: r["train"].update(setps=10))))
    cmd = [sys.executable, "-m", "lengen.config", "check", str(bad)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "params: train: unknown key(s) ['setps']" in out.stderr
