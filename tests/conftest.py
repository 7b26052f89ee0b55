import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a checkpoint of the configs/tiny_cpu.yaml network (64 MB; seconds to build and save), made once
    for the fetch-weights tests of tests/unit and tests/cli."""
    from tests.unit.weights_fixtures import tiny_checkpoint_bytes

    return tiny_checkpoint_bytes(tmp_path_factory.mktemp("ckpt"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
