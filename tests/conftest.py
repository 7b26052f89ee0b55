import os
import sys

import pytest
import torch

# Bytecode caching, Python's default, even where PYTHONDONTWRITEBYTECODE is set (as on this project's machines):
# the suite starts about 60 Python processes (commands, launchers, workers), and without it each compiles
# ctxpose anew, and pytest rewrites every test module in every worker again (measured: 3:13 -> 2:55 on 2 cores,
# the first run in a fresh clone included). The __pycache__ folders are ignored by git.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

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
    # The slow tests first (a stable sort, the same on every xdist worker): the workers then end on short tests
    # instead of one waiting for the other's last half-minute test.
    items.sort(key=lambda item: "slow" not in item.keywords)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
