"""Limb-length prior file: read back what h5py wrote, clear errors for bad files."""

import h5py
import numpy as np
import pytest
import torch

from ctxpose.errors import DataError
from ctxpose.models.build import load_limb_prior
from ctxpose.skeleton import LimbPrior, get_skeleton

SK = get_skeleton("contextpose17")


def test_reads_original_layout_and_uses_one_value_per_bone(tmp_path):
    path = tmp_path / "mean_and_std_limb_length.h5"
    mean, std = np.linspace(100, 400, SK.num_bones), np.linspace(5, 20, SK.num_bones)
    with h5py.File(path, "w") as f:
        f["mean"], f["std"] = np.append(mean, 999.0), np.append(std, 999.0)  # extra values are ignored
    prior = load_limb_prior(path, SK)
    torch.testing.assert_close(prior.mean, torch.tensor(mean, dtype=torch.float32))
    torch.testing.assert_close(prior.std, torch.tensor(std, dtype=torch.float32))


def test_from_keypoints_matches_loop():
    rng = np.random.default_rng(0)
    kp = rng.normal(0, 300, (20, SK.num_joints, 3))
    prior = LimbPrior.from_keypoints(kp, SK)
    lengths = np.array([[np.linalg.norm(p[a] - p[b]) for a, b in SK.bones] for p in kp])
    np.testing.assert_allclose(prior.mean.numpy(), lengths.mean(0), rtol=1e-6)
    np.testing.assert_allclose(prior.std.numpy(), lengths.std(0), rtol=1e-5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "limb-length prior not found"),
        (b"not hdf5", "not a readable HDF5 file"),
        ({"mean": np.ones(SK.num_bones)}, "dataset 'std' missing"),
        ({"mean": np.ones(3), "std": np.ones(3)}, "has 3 values, expected at least"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, content, message):
    path = tmp_path / "prior.h5"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        with h5py.File(path, "w") as f:
            for k, v in content.items():
                f[k] = v
    with pytest.raises(DataError) as e:
        load_limb_prior(path, SK)
    assert message in str(e.value) and str(path) in str(e.value)
