"""Reading the limb-length prior file (``mean_and_std_limb_length.h5``) into a :class:`~ctxpose.skeleton.LimbPrior`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ctxpose.errors import DataError
from ctxpose.skeleton import LimbPrior, Skeleton, get_skeleton


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
