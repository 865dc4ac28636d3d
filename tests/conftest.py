import os

import pytest
import torch

# Keep the suite deterministic and light on a 2-core machine.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def seed() -> int:
    return 1234


@pytest.fixture
def generator(seed) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
