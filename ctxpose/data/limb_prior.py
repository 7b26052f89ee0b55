"""Limb-length prior: mean and standard deviation of each bone's length over the training set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ctxpose.errors import DataError
from ctxpose.skeleton import Skeleton, get_skeleton


@dataclass(frozen=True)
class LimbPrior:
    """Bone-length statistics in the skeleton's ``bones`` order.

    Attributes:
        mean: (L,) mean bone length, mm.
        std: (L,) standard deviation of the bone length, mm.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __post_init__(self) -> None:
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError(f"limb prior mean/std must be matching (L,) tensors, got {self.mean.shape} and "
                             f"{self.std.shape}")

    @property
    def num_bones(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def from_keypoints(cls, keypoints_3d: np.ndarray, skeleton: Skeleton | None = None) -> LimbPrior:
        """Statistics over poses, as the original ``limb_length.py`` (population std).

        Args:
            keypoints_3d: (N, J, 3) world coordinates, mm.
        """
        skeleton = skeleton or get_skeleton()
        lengths = skeleton.bone_lengths(np.asarray(keypoints_3d, dtype=np.float64))
        return cls(torch.from_numpy(lengths.mean(0)).float(), torch.from_numpy(lengths.std(0)).float())


def load_limb_prior(path: str | Path, skeleton: Skeleton | None = None) -> LimbPrior:
    """Read ``mean_and_std_limb_length.h5`` (datasets ``mean`` and ``std``, mm).

    The original file has one value per bone of the ContextPose skeleton (16); the attention uses the
    first ``len(skeleton.bones)`` values, as the original does.

    Raises:
        DataError: missing file, missing dataset, or fewer values than bones.
    """
    import h5py

    skeleton = skeleton or get_skeleton()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: limb-length prior not found (expected an HDF5 file with datasets mean, std)")
    try:
        with h5py.File(path, "r") as f:
            values = {}
            for key in ("mean", "std"):
                if key not in f:
                    raise DataError(f"{path}: dataset {key!r} missing (expected datasets mean, std)")
                values[key] = np.asarray(f[key][()], dtype=np.float64).reshape(-1)
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
    n = skeleton.num_bones
    for key, v in values.items():
        if v.shape[0] < n:
            raise DataError(f"{path}: dataset {key!r} has {v.shape[0]} values, expected at least {n} (one per bone)")
        if not np.all(np.isfinite(v[:n])):
            raise DataError(f"{path}: dataset {key!r} has non-finite values")
    return LimbPrior(torch.from_numpy(values["mean"][:n]).float(), torch.from_numpy(values["std"][:n]).float())
