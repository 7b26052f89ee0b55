"""Rank helpers without a process group, environment detection, the non-padding eval sampler."""

from __future__ import annotations

import numpy as np
import pytest

from ctxpose.engine import dist
from ctxpose.engine.evaluator import ShardSampler


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


@pytest.mark.parametrize("exitcode, expected", [
    (-9, "worker rank 1 failed (signal 9): Signal 9 (SIGKILL) received by PID 4242; the other workers were stopped"),
    (1, "worker rank 1 failed (exit code 1); the other workers were stopped"),
])
def test_a_worker_that_left_no_error_file_is_described_without_placeholders(tmp_path, exitcode, expected) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    failure = ProcessFailure(local_rank=1, pid=4242, exitcode=exitcode, error_file=str(tmp_path / "none.json"))
    line = dist._describe_failure(ChildFailedError("train", {1: failure}))
    assert line == expected and "<NONE>" not in line and "To enable traceback" not in line
