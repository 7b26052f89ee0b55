"""Safe loading of pickled arrays and of 3D-pose predictions used as the cuboid root (pelvis).

Two sources of root estimates:

- the released algebraic-triangulation results of learnable-triangulation (``results/train.pkl``,
  ``results/val.pkl``; the original's ``pred_results_path``): a pickled dict with ``keypoints_3d`` (M, J, 3)
  world mm and ``indexes`` (M,). Sorted by ``indexes``, its rows enumerate the split's frames (one per
  frame, all cameras) in the original labels table's order: subjects of the split, then actions in table
  order, then frames. That is how the original indexes it (``human36m.py``: ``argsort(indexes)`` then
  ``[table_row - train_size]``, which for the training file wraps around to the table row).
- our own ``ctxpose eval`` output ``predictions.npz`` (no pickles): ``index`` (N,) dataset sample indices
  and ``keypoints_3d`` (N, J, 3) world mm; optional id columns (``subject_idx``, ``action_idx``,
  ``trial``, ``camera_idx``, ``frame``) are checked against the dataset.

Pickles are read with :class:`RestrictedUnpickler`, which only admits what numpy needs to rebuild arrays
plus plain containers; anything else (``os.system``, ``subprocess``, ...) raises :class:`DataError`.
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ctxpose.errors import DataError
from ctxpose.skeleton import Skeleton

logger = logging.getLogger(__name__)

#: (module, name) globals a pickle of numpy arrays and plain containers may reference.
_ALLOWED_GLOBALS = frozenset(
    [(mod, name) for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
     for name in ("_reconstruct", "scalar")]
    + [(mod, "_frombuffer") for mod in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "slice")]
    + [("collections", "OrderedDict"), ("_codecs", "encode")]  # protocol-2 pickles encode bytes via _codecs
)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler admitting only numpy array/dtype/scalar reconstruction and builtin containers.

    Args:
        file: binary file object positioned at the pickle.
        source: file name used in error messages.
    """

    def __init__(self, file: Any, source: str = "pickle") -> None:
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled by Python 2
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("numpy.dtypes") and name.endswith("DType"):  # numpy >= 1.25 dtype classes
            return super().find_class(module, name)
        raise DataError(f"{self.source}: refused to unpickle global {module}.{name}; only numpy arrays and "
                        "plain containers are allowed")


def restricted_unpickle(data: bytes | Any, source: str = "pickle") -> Any:
    """Unpickle bytes or a binary file object with :class:`RestrictedUnpickler`.

    Raises:
        DataError: a refused global or a corrupt pickle, naming ``source``.
    """
    file = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        return RestrictedUnpickler(file, source).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise DataError(f"{source}: not a readable pickle ({type(e).__name__}: {e})") from None


def load_pickle(path: str | Path) -> Any:
    """Read a pickle file safely (see :class:`RestrictedUnpickler`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        return restricted_unpickle(f, str(path))


def load_npy_object(path: str | Path) -> Any:
    """Read an ``.npy`` holding a pickled object (``np.save(path, obj)`` with ``allow_pickle``) safely.

    Returns:
        The stored object (for a 0-d object array, the object itself, e.g. the original labels dict).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = header(f)
        except ValueError as e:
            raise DataError(f"{path}: not an .npy file ({e})") from None
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        obj = restricted_unpickle(f, str(path))
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        return obj.item()
    return obj


class RootDataset(Protocol):
    """What :func:`load_root_predictions` needs from a dataset."""

    split: str
    skeleton: Skeleton

    def __len__(self) -> int: ...

    def sample_ids(self) -> dict[str, np.ndarray]:
        """(N,) int64 id columns per sample: subject_idx, action_idx, trial, camera_idx, frame."""
        ...

    def split_frame_positions(self) -> tuple[np.ndarray, int]:
        """Per sample, the position of its frame among the split's frames in the original table order,
        and the number of such frames."""
        ...


def _field(data: Any, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(data[key])
    except (KeyError, IndexError, TypeError, ValueError):
        raise DataError(f"{path}: has no {key!r} field; expected a dict with 'keypoints_3d' and "
                        "'indexes' (released results) or an npz with 'index' and 'keypoints_3d'") from None


def _check_keypoints(kp: np.ndarray, n: int, path: Path, skeleton: Skeleton) -> None:
    j = skeleton.num_joints
    if kp.ndim != 3 or kp.shape[1:] != (j, 3) or len(kp) != n:
        raise DataError(f"{path}: 'keypoints_3d' has shape {kp.shape}, expected ({n}, {j}, 3)")
    if not np.all(np.isfinite(kp)):
        raise DataError(f"{path}: 'keypoints_3d' contains NaN or inf")


def _from_released(data: Any, path: Path, dataset: RootDataset) -> np.ndarray:
    indexes = _field(data, "indexes", path).astype(np.int64).reshape(-1)
    kp = _field(data, "keypoints_3d", path).astype(np.float64)
    _check_keypoints(kp, len(indexes), path, dataset.skeleton)
    order = np.argsort(indexes, kind="stable")
    if not np.array_equal(indexes[order], np.arange(len(indexes))):
        raise DataError(f"{path}: 'indexes' are not a permutation of 0..{len(indexes) - 1}")
    positions, num_frames = dataset.split_frame_positions()
    if len(indexes) != num_frames:
        raise DataError(f"{path}: has {len(indexes)} poses but the {dataset.split} split has {num_frames} "
                        "frames; expected the released results for this split (train.pkl or val.pkl)")
    return kp[order][positions, dataset.skeleton.root]


def _from_npz(data: dict[str, np.ndarray], path: Path, dataset: RootDataset) -> np.ndarray:
    index = _field(data, "index", path).astype(np.int64).reshape(-1)
    kp = _field(data, "keypoints_3d", path).astype(np.float64)
    _check_keypoints(kp, len(index), path, dataset.skeleton)
    n = len(dataset)
    order = np.argsort(index, kind="stable")
    if len(index) != n or not np.array_equal(index[order], np.arange(n)):
        raise DataError(f"{path}: has {len(index)} predictions (index {index.min(initial=0)}.."
                        f"{index.max(initial=-1)}) but the {dataset.split} dataset has {n} samples; expected "
                        "each index 0..N-1 once (evaluate with the same dataset settings)")
    ids = dataset.sample_ids()
    for key, expected in ids.items():
        if key in data:
            got = np.asarray(data[key]).astype(np.int64).reshape(-1)[order]
            bad = np.nonzero(got != expected)[0]
            if len(bad):
                i = int(bad[0])
                raise DataError(f"{path}: {key} of sample {i} is {got[i]}, the dataset has {expected[i]}; "
                                "predictions were made for a different dataset")
    return kp[order][:, dataset.skeleton.root]


def load_root_predictions(path: str | Path, dataset: RootDataset) -> np.ndarray:
    """Root (pelvis) estimates for every sample of ``dataset``.

    Args:
        path: released results pickle (``.pkl``) or our ``predictions.npz``.
        dataset: the dataset whose samples the roots are for.

    Returns:
        (len(dataset), 3) float64 roots, world mm, in dataset sample order.

    Raises:
        DataError: unreadable file, refused pickle global, wrong fields, or counts/ids that do not match.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable predictions npz ({e})") from None
        roots = _from_npz(data, path, dataset)
    else:
        roots = _from_released(load_pickle(path), path, dataset)
    logger.info("loaded %d root estimates from %s", len(roots), path)
    return roots
