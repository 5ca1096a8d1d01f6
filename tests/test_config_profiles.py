"""``python -m lengen.config use PROFILE``: copies a profile over params.yaml, never over edits unless forced."""

import shutil

import pytest

from lengen import paths
from lengen.config import load_config, use_profile
from lengen.config.cli import main
from lengen.config.profiles import differences, edits, profile_names


@pytest.fixture
def params(tmp_path):
    """A params.yaml that is an unedited copy of the cpu profile."""
    p = tmp_path / "params.yaml"
    shutil.copyfile(paths.PROFILES_DIR / "cpu.yaml", p)
    return p


def test_use_profile_replaces_an_unedited_copy(params):
    assert edits(params) == []
    assert use_profile("smoke", target=params) == params
    assert load_config(params).profile == "smoke"
    assert params.read_text() == (paths.PROFILES_DIR / "smoke.yaml").read_text()
    use_profile("cpu", target=params)  # and back: smoke is unedited too
    assert load_config(params).profile == "cpu"


def test_use_profile_to_a_new_file_and_unknown_profile(tmp_path):
    dst = use_profile("smoke", target=tmp_path / "params.yaml")
    assert load_config(dst).profile == "smoke"
    with pytest.raises(ValueError, match="unknown profile 'gpu'; known profiles"):
        use_profile("gpu", target=tmp_path / "x.yaml")


def test_comments_and_layout_are_not_edits(params):
    params.write_text("# my notes\n" + params.read_text().replace("  steps: 4000\n", "  steps:    4000  # x\n", 1))
    assert edits(params) == []
    use_profile("smoke", target=params)


def test_edited_params_are_kept_unless_forced(params):
    params.write_text(params.read_text().replace("  steps: 4000\n", "  steps: 8000\n", 1))
    before = params.read_text()
    assert edits(params) == ["train.steps: 4000 -> 8000"]
    with pytest.raises(ValueError, match=r"(?s)has edits .*train.steps: 4000 -> 8000.*use smoke --force"):
        use_profile("smoke", target=params)
    assert params.read_text() == before  # untouched
    use_profile("smoke", target=params, force=True)
    assert load_config(params).profile == "smoke"


def test_edits_against_the_named_profile(params):
    # a copy of cpu that claims to be paper differs from the paper profile in many keys; profile: names it
    params.write_text(params.read_text().replace("profile: cpu", "profile: paper", 1))
    changed = edits(params)
    assert any(c.startswith("train.steps: ") for c in changed) and not any(c.startswith("profile") for c in changed)
    params.write_text(params.read_text().replace("profile: paper", "profile: mine", 1))
    known = str(profile_names())  # cpu, paper, smoke, study, ...
    assert edits(params) == [f"profile: 'mine' names no file in {paths.PROFILES_DIR} (known: {known})"]
    with pytest.raises(ValueError, match="names no file"):
        use_profile("cpu", target=params)


def test_differences_name_added_removed_and_retyped_keys():
    a = {"train": {"lr": 1, "steps": 3}, "grid": {"seeds": [0]}}
    b = {"train": {"lr": 1.0, "steps": 3, "extra": 1}}
    assert differences(a, b) == ["train.lr: 1 -> 1.0", "train.extra (added)", "grid (removed)"]


def test_cli_use_refuses_and_forces(monkeypatch, params, capsys):
    monkeypatch.setattr(paths, "PARAMS_FILE", params)
    params.write_text(params.read_text().replace("  steps: 4000\n", "  steps: 8000\n", 1))
    assert main(["use", "smoke"]) == 1
    err = capsys.readouterr().err
    assert "train.steps: 4000 -> 8000" in err and "--force" in err
    assert main(["use", "smoke", "--force"]) == 0
    assert load_config(params).profile == "smoke"
