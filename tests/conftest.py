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


# The end-to-end file takes minutes (docs/machines.md, "The test suite"): collected first, so that under `make test`
# (pytest-xdist, each file on one worker, handed out in collection order) it starts at once and the other files
# fill the other worker beside it, instead of starting last and running alone.
LONGEST_FIRST = ("test_pipeline.py",)


def pytest_collection_modifyitems(items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise
