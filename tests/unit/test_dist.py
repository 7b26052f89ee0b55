"""Rank helpers without a process group, environment detection, the non-padding eval sampler, and the CUDA
branch of process setup (with torch.cuda and the process group patched: no GPU here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctxpose.data.loaders import ShardSampler
from ctxpose.engine import dist
from ctxpose.engine.launch import describe_failure
from ctxpose.errors import ConfigError


def test_helpers_are_single_process_when_uninitialised() -> None:
    assert (dist.get_rank(), dist.get_world_size(), dist.is_main_process(), dist.is_distributed()) == (0, 1, True,
                                                                                                       False)
    arrays = {"a": np.arange(3), "b": np.ones((3, 2))}
    out = dist.all_gather_arrays(arrays)
    np.testing.assert_array_equal(out["a"], arrays["a"])
    np.testing.assert_array_equal(out["b"], arrays["b"])
    assert dist.all_gather_object({"x": 1}) == [{"x": 1}]
    dist.barrier()  # no-op, must not raise


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, dist.DistEnv()),
        ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, dist.DistEnv(3, 4, 1, "torchrun")),
        ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}, dist.DistEnv(5, 8, 1, "slurm")),
        # torchrun inside a SLURM allocation: torchrun's variables win
        ({"RANK": "0", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, dist.DistEnv(0, 2, 0, "torchrun")),
    ],
)
def test_detect_env(environ: dict[str, str], expected: dist.DistEnv) -> None:
    assert dist.detect_env(environ) == expected


def test_detect_env_rejects_inconsistent_ranks() -> None:
    with pytest.raises(dist.DistributedError, match="rank 4 is outside world size 4"):
        dist.detect_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(dist.DistributedError, match="non-integer"):
        dist.detect_env({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"})


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_sampler_covers_every_index_once(world: int) -> None:
    for n in range(0, 11):
        seen: list[int] = []
        for rank in range(world):
            shard = list(ShardSampler(n, rank, world))
            assert len(shard) == len(ShardSampler(n, rank, world))
            seen += shard
        # reference: each index exactly once, no padding
        assert sorted(seen) == list(range(n)), (n, world)


def test_first_slurm_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_STEP_NODELIST", raising=False)
    monkeypatch.setenv("SLURM_NODELIST", "gpu[07-10],cpu01")
    assert dist._first_slurm_host() == "gpu07"
    monkeypatch.setenv("SLURM_NODELIST", "nodeA,nodeB")
    assert dist._first_slurm_host() == "nodeA"


class FakeCuda:
    """Records what process setup asks of torch.cuda and torch.distributed on an N-GPU machine."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gpus: int, environ: dict[str, str]) -> None:
        self.set_device: list[object] = []
        self.groups: list[dict] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.cuda, "set_device", self.set_device.append)
        monkeypatch.setattr(dist.dist, "is_initialized", lambda: False)
        monkeypatch.setattr(dist.dist, "init_process_group", lambda **kw: self.groups.append(kw))
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
            monkeypatch.delenv(key, raising=False)
        for key, value in environ.items():
            monkeypatch.setenv(key, value)


@pytest.mark.parametrize("local_rank", [0, 1, 3])
def test_cuda_setup_gives_each_local_rank_its_own_gpu_and_nccl(monkeypatch: pytest.MonkeyPatch,
                                                               local_rank: int) -> None:
    fake = FakeCuda(monkeypatch, 4, {"RANK": str(4 + local_rank), "WORLD_SIZE": "8",
                                     "LOCAL_RANK": str(local_rank)})
    env, device = dist.setup_process("cuda")
    assert device == torch.device("cuda", local_rank) and env.rank == 4 + local_rank
    assert fake.set_device == [local_rank]  # an index, selected before the group starts
    assert len(fake.groups) == 1 and fake.groups[0]["backend"] == "nccl" and fake.groups[0]["world_size"] == 8


def test_cuda_setup_refuses_more_local_ranks_than_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCuda(monkeypatch, 2, {"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "2"})
    with pytest.raises(ConfigError, match="local rank 2 has no GPU of its own: this machine has 2"):
        dist.setup_process("cuda")
    assert fake.groups == [] and fake.set_device == []


def test_cuda_without_gpus_is_one_line_before_any_group(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCuda(monkeypatch, 0, {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0"})
    with pytest.raises(ConfigError, match="CUDA is not available"):
        dist.setup_process("cuda")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        dist.default_device("cuda")
    assert fake.groups == []


def test_cpu_processes_use_gloo(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCuda(monkeypatch, 4, {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    env, device = dist.setup_process("cpu")
    assert device == torch.device("cpu") and fake.groups[0]["backend"] == "gloo" and fake.set_device == []


def test_init_distributed_refuses_an_unindexed_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeCuda(monkeypatch, 4, {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    with pytest.raises(ValueError, match="indexed CUDA device"):
        dist.init_distributed(torch.device("cuda"))


@pytest.mark.parametrize("exitcode, expected", [
    (-9, "worker rank 1 failed (signal 9): Signal 9 (SIGKILL) received by PID 4242; the other workers were stopped"),
    (1, "worker rank 1 failed (exit code 1); the other workers were stopped"),
])
def test_a_worker_that_left_no_error_file_is_described_without_placeholders(tmp_path, exitcode, expected) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    failure = ProcessFailure(local_rank=1, pid=4242, exitcode=exitcode, error_file=str(tmp_path / "none.json"))
    line = describe_failure(ChildFailedError("train", {1: failure}))
    assert line == expected and "<NONE>" not in line and "To enable traceback" not in line
