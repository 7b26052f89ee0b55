"""Data loaders and their samplers: the one place that decides sample order, sharding and workers.

Training (:func:`make_train_loader`): every process of a ``W``-process run takes a disjoint shard of a
seeded permutation that is a function of ``(seed, epoch)`` only (``DistributedSampler`` with
``drop_last``), so a run's sample order does not depend on workers or on being resumed; a resumed
epoch skips the batches already done (:func:`set_loader_epoch` with ``skip_batches``).

Evaluation (:func:`make_eval_loader`): rank ``r`` of ``W`` reads samples ``r, r+W, ...`` in order,
without the padding a ``DistributedSampler`` adds, so each sample is predicted exactly once.

Datasets may define ``set_epoch(epoch)`` (randomness drawn from ``(seed, epoch, index)``); it is called
by :func:`set_loader_epoch` and reaches persistent workers through shared memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ctxpose.utils.seed import worker_init_fn
from ctxpose.utils.signals import StopSignals


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (seeded, ``drop_last``, ``set_epoch``) that can skip the first batches of an epoch.

    Args:
        dataset: the training dataset.
        num_replicas, rank: this process's place in the run (1 and 0 for one process).
        seed: seed of the per-epoch permutation.
        shuffle: permute each epoch (False: dataset order).
        batch_size: per-process batch size (the unit of ``skip_batches``).
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool,
                 batch_size: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=True)
        self.batch_size = batch_size
        self.skip_batches = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip_batches * self.batch_size:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip_batches * self.batch_size)


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``W`` takes indices ``r, r+W, ...`` in order, without padding (shards may differ by 1)."""

    def __init__(self, dataset_len: int, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.dataset_len, self.rank, self.world_size = dataset_len, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_len, self.world_size))

    def __len__(self) -> int:
        return max(0, math.ceil((self.dataset_len - self.rank) / self.world_size))


def _worker_init(worker_id: int) -> None:
    """Loader worker start: its own random streams, and Ctrl-C/SIGTERM left to the main process
    (:meth:`ctxpose.utils.signals.StopSignals.ignore`). The workers end with the main process (PyTorch's own
    watchdog)."""
    worker_init_fn(worker_id)
    StopSignals.ignore()


def make_train_loader(dataset: Dataset, batch_size: int, *, num_workers: int, seed: int, shuffle: bool = True,
                      world_size: int = 1, rank: int = 0, pin_memory: bool = False) -> DataLoader:
    """The training loader: full batches of this process's shard of a ``(seed, epoch)`` permutation.

    Args:
        dataset: e.g. :class:`ctxpose.data.datasets.Human36MDataset` (``split="train"``).
        batch_size: samples per batch, per process.
        num_workers: loader processes; > 0 keeps them alive between epochs.
        seed: seeds the permutation and the workers' generators (``seed + rank``).
        shuffle: permute each epoch.
        world_size, rank: this process's place in the run.
        pin_memory: page-locked batches (for CUDA).

    Call :func:`set_loader_epoch` before each epoch.
    """
    sampler = ResumableSampler(dataset, world_size, rank, seed, shuffle, batch_size)
    generator = torch.Generator().manual_seed(int(seed) + int(rank))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True,
                      worker_init_fn=_worker_init, generator=generator, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)


def make_eval_loader(dataset: Dataset, batch_size: int, *, num_workers: int = 0, world_size: int = 1,
                     rank: int = 0, pin_memory: bool = False) -> DataLoader:
    """The evaluation loader: this rank's shard in dataset order, every sample once, last batch kept.

    Args:
        dataset: any map-style dataset.
        batch_size: samples per batch.
        num_workers: loader processes.
        world_size, rank: this process's place in the run (see :class:`ShardSampler`).
        pin_memory: page-locked batches (for CUDA).
    """
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), rank, world_size),
                      num_workers=num_workers, drop_last=False, pin_memory=pin_memory,
                      worker_init_fn=_worker_init)


def set_loader_epoch(loader: DataLoader, epoch: int, skip_batches: int = 0) -> None:
    """Select ``epoch`` in the loader's sampler (permutation) and dataset (rotations, views).

    Args:
        loader: from :func:`make_train_loader` or :func:`make_eval_loader`.
        epoch: 0-based epoch.
        skip_batches: batches of this epoch already done (a resumed run); training loaders only.
    """
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    if isinstance(sampler, ResumableSampler):
        sampler.skip_batches = skip_batches
    elif skip_batches:
        raise ValueError("skip_batches needs a loader from make_train_loader")
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
