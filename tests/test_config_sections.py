"""The typed analysis sections in lengen.config agree with the torch modules that read them.

lengen.config keeps its own copies of a few vocabularies so that it never imports torch; these tests
import the torch modules and check the copies, and that the stage loaders read the same section.
"""

import dataclasses

from lengen import config, paths
from lengen.config import load_config


def test_vocabularies_match_the_torch_modules():
    from lengen import heads, model, pretrained

    assert config.POS_ENCODINGS == model.POS_ENCODINGS
    assert config.MODEL_INITS == model.INITS
    assert config.PRETRAINED_MODELS == pretrained.MODELS
    assert config.PRETRAINED_INITS == pretrained.INITS
    assert set(config.HEAD_CATEGORIES) == set(heads.CLAIMS)


def test_formal_names_match_the_registries():
    from lengen.config import formal
    from lengen.formal.algorithmic import ALGORITHMIC
    from lengen.formal.languages import LANGUAGES, MAX_LENGTH

    assert tuple(ALGORITHMIC) == formal.FORMAL_ALGORITHMIC
    assert tuple(LANGUAGES) == formal.FORMAL_LANGUAGES
    assert formal.FORMAL_MAX_LENGTH == MAX_LENGTH


def fields(cls):
    return [(f.name, str(f.type)) for f in dataclasses.fields(cls)]


def test_stage_loaders_read_the_typed_sections():
    from lengen import finetune, heads
    from lengen.formal.config import load_formal

    for profile in ("smoke", "cpu", "paper"):
        cfg = load_config(paths.PROFILES_DIR / f"{profile}.yaml")
        assert load_formal(cfg) is cfg.formal
        # the stages read the sections lengen.config typed and checked, not raw copies of their own
        assert heads.heads_config(cfg) is cfg.heads
        assert finetune.load_params(cfg) is cfg.pretrained
