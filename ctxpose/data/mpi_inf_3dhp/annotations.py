"""``TS*/annot_data.mat`` of the MPI-INF-3DHP test set: read with h5py, write as MATLAB does.

The files are MATLAB v7.3 (HDF5). Variables, as MATLAB sees them (h5py shows the reversed shape):

    annot2               2 x 17 x 1 x N  (h5py (N, 1, 17, 2))  pixels of the full (distorted) frame
    annot3               3 x 17 x 1 x N  (h5py (N, 1, 17, 3))  camera frame, mm
    univ_annot3          3 x 17 x 1 x N                        rescaled to the "universal" (Human3.6M)
                                                               skeleton: what the evaluation compares against
    valid_frame          1 x N           (h5py (N, 1))         1 where the frame is evaluated
    activity_annotation  1 x N           (h5py (N, 1))         activity 1..7 (``metadata.ACTIVITIES``)
    bb_crop              34 x N          (h5py (N, 34))        not documented by the release; not read here

Joints are in the 3DHP order (``ctxpose.skeleton.MPI_INF_3DHP_NAMES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctxpose.errors import DataError
from ctxpose.skeleton import MPI_INF_3DHP
from ctxpose.utils.matlab import write_mat_v73


@dataclass(frozen=True)
class SequenceAnnotations:
    """The annotations of one test sequence, N frames, 3DHP joint order.

    Attributes:
        annot2: (N, 17, 2) pixels of the full frame (distorted for TS5-6).
        annot3: (N, 17, 3) camera frame, mm.
        univ_annot3: (N, 17, 3) universal skeleton, camera frame, mm.
        valid: (N,) bool, frames the evaluation uses.
        activity: (N,) int64 activity labels 1..7 (0 where a frame that is not valid has no finite label).
    """

    annot2: np.ndarray
    annot3: np.ndarray
    univ_annot3: np.ndarray
    valid: np.ndarray
    activity: np.ndarray

    def __len__(self) -> int:
        return len(self.valid)


def _pose_array(f, name: str, dim: int, path: Path) -> np.ndarray:
    if name not in f:
        raise DataError(f"{path}: no variable {name!r} (found {sorted(f.keys())})")
    arr = np.asarray(f[name][()], dtype=np.float64)
    j = MPI_INF_3DHP.num_joints
    if arr.ndim != 4 or arr.shape[1:] != (1, j, dim):
        raise DataError(f"{path}: {name} has HDF5 shape {arr.shape}, expected (N, 1, {j}, {dim}) "
                        f"(MATLAB {dim}x{j}x1xN)")
    return arr[:, 0]


def _vector(f, name: str, n: int, path: Path) -> np.ndarray:
    if name not in f:
        raise DataError(f"{path}: no variable {name!r} (found {sorted(f.keys())})")
    arr = np.asarray(f[name][()])
    if arr.size != n or arr.ndim != 2 or 1 not in arr.shape:
        raise DataError(f"{path}: {name} has HDF5 shape {arr.shape}, expected ({n}, 1) (MATLAB 1x{n})")
    return arr.reshape(-1)


def read_annotations(path: str | Path) -> SequenceAnnotations:
    """Read a test sequence's ``annot_data.mat``.

    Raises:
        DataError: missing or not HDF5 (e.g. a pre-v7.3 MAT-file), a variable missing or misshaped, an
            activity of a valid frame outside 1..7, or non-finite annotations of a valid frame.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            annot2 = _pose_array(f, "annot2", 2, path)
            annot3 = _pose_array(f, "annot3", 3, path)
            univ = _pose_array(f, "univ_annot3", 3, path)
            n = len(annot3)
            if len(annot2) != n or len(univ) != n:
                raise DataError(f"{path}: annot2/annot3/univ_annot3 have {len(annot2)}/{n}/{len(univ)} frames")
            valid = _vector(f, "valid_frame", n, path) != 0
            activity = _vector(f, "activity_annotation", n, path).astype(np.float64)
    except DataError:
        raise
    except Exception as e:  # h5py: OSError for a non-HDF5 file, others for broken datasets
        raise DataError(f"{path}: cannot read as a MATLAB v7.3 (HDF5) file ({type(e).__name__}: {e})") from None
    act = activity[valid]
    if len(act) and (not np.all(np.isfinite(act)) or act.min() < 1 or act.max() > 7 or np.any(act != np.round(act))):
        raise DataError(f"{path}: activity_annotation of valid frames must be integers 1..7, got "
                        f"{np.unique(act)[:8].tolist()}")
    for name, arr in (("annot2", annot2), ("annot3", annot3), ("univ_annot3", univ)):
        if not np.all(np.isfinite(arr[valid])):
            raise DataError(f"{path}: {name} has NaN or inf in valid frames")
    return SequenceAnnotations(annot2, annot3, univ, valid, np.nan_to_num(activity).astype(np.int64))


def write_annotations(path: str | Path, ann: SequenceAnnotations, bb_crop: np.ndarray | None = None) -> None:
    """Write ``annot_data.mat`` as MATLAB ``save(file, '-v7.3', ...)`` does (doubles), atomically.

    Args:
        path: destination.
        ann: the annotations.
        bb_crop: optional (N, 34) values of the ``bb_crop`` variable (stored as MATLAB 34xN).
    """
    def matlab_pose(a: np.ndarray) -> np.ndarray:  # (N, 17, D) -> D x 17 x 1 x N
        return np.ascontiguousarray(np.transpose(np.asarray(a, np.float64), (2, 1, 0))[:, :, None, :])

    variables = {
        "activity_annotation": ann.activity.astype(np.float64), "annot2": matlab_pose(ann.annot2),
        "annot3": matlab_pose(ann.annot3), "univ_annot3": matlab_pose(ann.univ_annot3),
        "valid_frame": ann.valid.astype(np.float64),
    }
    if bb_crop is not None:
        variables["bb_crop"] = np.asarray(bb_crop, np.float64).T
    write_mat_v73(path, variables)
