"""Seeding and RNG state capture.

Training randomness that must not depend on the number of processes or workers (cuboid rotation,
view choice) is drawn by the dataset from ``(seed, epoch, sample index)``. The global generators
seeded here only drive what is left (weight initialisation, dropout), and their states are stored in
run checkpoints so that a resumed run continues the same random streams.

RNG states are kept as tensors and lists of ints so that checkpoints load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed python, numpy and torch (all devices) with ``seed + rank``.

    Returns:
        The seed actually used.
    """
    value = int(seed) + int(rank)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    return value


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker init: derive python/numpy seeds from torch's per-worker seed.

    Torch gives each worker ``base_seed + worker_id``, where ``base_seed`` comes from the loader's
    ``generator``; numpy and python would otherwise be copies of the parent's state in every worker.
    """
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def get_rng_state() -> dict[str, Any]:
    """Capture python, numpy, torch and CUDA generator states as tensors and plain lists."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
