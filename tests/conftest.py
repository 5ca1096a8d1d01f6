import os

import pytest
import torch

# Tests run on 2 cores next to nothing else; one thread keeps timings stable and CI-friendly.
torch.set_num_threads(1)
os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(scope="session")
def smoke_cfg():
    from lengen.config import load_config
    from lengen.paths import PROFILES_DIR

    return load_config(PROFILES_DIR / "smoke.yaml")
