import os

import pytest
import torch

# Under pytest-xdist (pyproject's addopts) every worker runs one torch thread: two processes of two threads on two
# cores thrash. The tests spend most of their time starting processes (torch's import, a launcher's workers).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(1 if _WORKERS > 1 else min(2, os.cpu_count() or 1))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core, at most 4 (several tests start 2-3 processes of their own)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


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
