"""Safe loading of pickled arrays and of 3D-pose predictions used as the cuboid root (pelvis).

Two sources of root estimates:

- the released algebraic-triangulation results of learnable-triangulation (``results/train.pkl``,
  ``results/val.pkl``; the original's ``pred_results_path``): a pickled dict with ``keypoints_3d`` (M, J, 3)
  world mm and ``indexes`` (M,). Sorted by ``indexes``, its rows enumerate the split's frames (one per
  frame, all cameras) in the original labels table's order: subjects of the split, then actions in table
  order, then frames. That is how the original indexes it (``human36m.py``: ``argsort(indexes)`` then
  ``[table_row - train_size]``, which for the training file wraps around to the table row).
- our own ``ctxpose eval`` output ``predictions.npz`` (:mod:`ctxpose.data.predictions_npz`, no pickles), of
  any model: ``keypoints_3d`` (N, J, 3) world mm with the id columns (``subject_idx``, ``action_idx``,
  ``trial``, ``camera_idx``, ``frame``) and the names they index (``subject_names``, ``action_names``,
  ``camera_names``): matched by those keys, so the file may cover any superset of the dataset's samples in any
  row order (another stride, other cameras, more subjects). A prediction made from several views
  (``camera_indices`` (N, V) with V > 1, e.g. the algebraic triangulation model's) is the frame's, so it
  serves every camera of the frame; one made from one view serves that (frame, camera). A file with ``index``
  but no names (older files) is matched by ``index`` against the very dataset it was made on, its id columns
  checked.

Pickles are read with :class:`RestrictedUnpickler`, which only admits what numpy needs to rebuild arrays
plus plain containers; anything else (``os.system``, ``subprocess``, ...) raises :class:`DataError`. Sizes
are bounded before anything is allocated: a numpy pickle carries its arrays' bytes, so no array (or
bytearray) may declare more bytes than the stream holds (plus 1 MiB), e.g. a 292-byte pickle declaring a
10^12-byte array is refused in one line instead of ending in a MemoryError.
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.selection import FrameTable, original_test_table
from ctxpose.data.labels import read_labels_meta
from ctxpose.data.predictions_npz import ID_FIELDS, NAME_FIELDS, load_predictions, save_predictions
from ctxpose.errors import DataError
from ctxpose.skeleton import H36M_CONTEXTPOSE, Skeleton
from ctxpose.utils.io import atomic_path

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


#: slack over the stream size for what a pickle may allocate (small arrays, dtype headers)
_SLACK_BYTES = 1 << 20


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler admitting only numpy array/dtype/scalar reconstruction and builtin containers.

    Every array, scalar and bytearray the pickle asks for is checked against ``max_bytes`` before it is
    allocated (arrays are rebuilt as a private ndarray subclass whose ``__setstate__`` checks the declared
    shape; :func:`restricted_unpickle` turns them back into plain ndarrays).

    Args:
        file: binary file object positioned at the pickle.
        source: file name used in error messages.
        max_bytes: the most bytes one object may declare.
    """

    def __init__(self, file: Any, source: str = "pickle", max_bytes: int = 1 << 30) -> None:
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled by Python 2
        self.source = source
        self.max_bytes = int(max_bytes)
        unpickler = self

        class _BoundedArray(np.ndarray):
            def __setstate__(self, state: Any) -> None:
                if isinstance(state, tuple) and len(state) >= 3:
                    unpickler._check(state[1], state[2], "array")
                super().__setstate__(state)

        self._array_type = _BoundedArray

    def _check(self, shape: Any, dtype: Any, what: str) -> None:
        try:
            dims = [int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,))]
            itemsize = np.dtype(dtype).itemsize if not isinstance(dtype, np.dtype) else dtype.itemsize
        except (TypeError, ValueError):
            return  # numpy itself rejects it without allocating
        n = math.prod(max(d, 0) for d in dims) * max(itemsize, 1)
        if n > self.max_bytes:
            raise DataError(f"{self.source}: refused: an {what} of shape {tuple(dims)} ({n:,} bytes) in a pickle "
                            f"that may hold at most {self.max_bytes:,} bytes; the file is corrupt or crafted")

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins"}.get(module, module)  # protocol <= 2 pickles name it so
        if (module, name) in _ALLOWED_GLOBALS or (module.startswith("numpy.dtypes") and name.endswith("DType")):
            obj = super().find_class(module, name)  # numpy >= 1.25 dtype classes live in numpy.dtypes
            return self._bounded(name, obj)
        raise DataError(f"{self.source}: refused to unpickle global {module}.{name}; only numpy arrays and "
                        "plain containers are allowed")

    def _bounded(self, name: str, obj: Any) -> Any:
        """``obj`` wrapped so that what it allocates is checked first."""
        if name == "_reconstruct":
            def reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
                self._check(shape, dtype if not isinstance(dtype, bytes) else "b", "array")
                return obj(self._array_type, shape, dtype)  # subtype is always ndarray in numpy pickles
            return reconstruct
        if name == "ndarray":
            def ndarray(shape: Any = (0,), dtype: Any = float, *args: Any, **kwargs: Any) -> Any:
                self._check(shape, dtype, "array")
                return self._array_type(shape, dtype, *args, **kwargs)
            return ndarray
        if name == "scalar":
            def scalar(dtype: Any, *args: Any) -> Any:
                self._check((), dtype, "array scalar")
                return obj(dtype, *args)
            return scalar
        if name == "bytearray":
            def bounded_bytearray(*args: Any) -> bytearray:
                if args and isinstance(args[0], int):
                    self._check((args[0],), "b", "bytearray")
                return bytearray(*args)
            return bounded_bytearray
        return obj


def _plain(obj: Any, memo: dict[int, Any]) -> Any:
    """Replace the unpickler's bounded arrays by plain ndarrays, in containers too (each object once)."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, np.ndarray):
        out = np.asarray(obj)
        memo[key] = out
        if out.dtype == object:
            for idx in np.ndindex(out.shape):
                out[idx] = _plain(out[idx], memo)
    elif isinstance(obj, dict):
        out = memo[key] = type(obj)()  # dict or OrderedDict, the only mappings admitted
        for k, v in obj.items():
            out[k] = _plain(v, memo)
    elif isinstance(obj, list):
        out = memo[key] = []
        out.extend(_plain(v, memo) for v in obj)
    elif isinstance(obj, (tuple, set, frozenset)):
        out = memo[key] = type(obj)(_plain(v, memo) for v in obj)
    else:
        out = memo[key] = obj
    return out


def _stream_size(file: Any) -> int | None:
    try:
        return max(os.fstat(file.fileno()).st_size - file.tell(), 0)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def restricted_unpickle(data: bytes | Any, source: str = "pickle", max_bytes: int | None = None) -> Any:
    """Unpickle bytes or a binary file object with :class:`RestrictedUnpickler`.

    Args:
        data: the pickle, or a binary file positioned at it.
        source: name for error messages.
        max_bytes: the most bytes one array may declare; default the stream's size + 1 MiB (1 GiB when the
            size is unknown).

    Raises:
        DataError: a refused global, an oversized object, or a corrupt pickle, naming ``source``.
    """
    file = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    if max_bytes is None:
        size = len(data) if isinstance(data, (bytes, bytearray)) else _stream_size(file)
        max_bytes = size + _SLACK_BYTES if size is not None else 1 << 30
    try:
        return _plain(RestrictedUnpickler(file, source, max_bytes).load(), {})
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{source}: refused: the pickle asks for more memory than is available") from None
    except RecursionError:
        raise DataError(f"{source}: refused: the pickle nests objects too deeply") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, OverflowError) as e:
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
    """What :func:`load_root_predictions` needs from a dataset (``Human36MDataset`` has all of it).

    ``root`` and ``format`` (optional) let the released-results check read the labels' selection rule.
    """

    split: str
    skeleton: Skeleton
    subject_names: list[str]
    action_names: list[str]
    camera_names: list[str]

    def __len__(self) -> int: ...

    def sample_ids(self) -> dict[str, np.ndarray]:
        """(N,) int64 id columns per sample: subject_idx, action_idx, trial, camera_idx, frame."""
        ...

    def split_frame_positions(self) -> tuple[np.ndarray, int]:
        """Per sample, the position of its frame among the split's frames in the original table order,
        and the number of such frames."""
        ...


#: what to run to get labels the released estimates line up with
MATCHING_LABELS = "`ctxpose preprocess h36m RAW OUT --selection original`"


def _field(data: Any, key: str, path: Path) -> np.ndarray:
    try:
        value = data[key]
    except (KeyError, IndexError, TypeError, ValueError):
        raise DataError(f"{path}: has no {key!r} field; expected a dict with 'keypoints_3d' and "
                        "'indexes' (released results) or an npz with 'index' and 'keypoints_3d'") from None
    if not isinstance(value, np.ndarray):  # nested lists could expand without bound in np.asarray
        raise DataError(f"{path}: {key!r} is a {type(value).__name__}, expected a numpy array")
    return value


def _check_keypoints(kp: np.ndarray, n: int, path: Path, skeleton: Skeleton) -> None:
    j = skeleton.num_joints
    if kp.ndim != 3 or kp.shape[1:] != (j, 3) or len(kp) != n:
        raise DataError(f"{path}: 'keypoints_3d' has shape {kp.shape}, expected ({n}, {j}, 3)")
    if not np.all(np.isfinite(kp)):
        raise DataError(f"{path}: 'keypoints_3d' contains NaN or inf")


def read_released_results(path: str | Path, expected_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read the released algebraic-model results (``train.pkl``/``val.pkl`` or their plain ``.npz``).

    Args:
        path: the pickle (read with the restricted unpickler) or the ``.npz`` of :func:`write_released_npz`.
        expected_rows: the row count the file must have (None: any).

    Returns:
        ``keypoints_3d`` (M, J, 3) float64 world mm, and ``indexes`` (M,) int64, a permutation of 0..M-1 (the
        rows of the original table, see :mod:`ctxpose.data.h36m.selection`).

    Raises:
        DataError: unreadable, refused, wrong fields/shapes, non-finite values, indexes not a permutation or
            another row count than expected.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: released results not found")
    data = load_predictions(path) if path.suffix == ".npz" else load_pickle(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: holds a {type(data).__name__}, expected a dict with 'keypoints_3d' and 'indexes'")
    indexes = _field(data, "indexes", path).reshape(-1)
    if indexes.dtype.kind not in "iu":
        raise DataError(f"{path}: 'indexes' has dtype {indexes.dtype}, expected integers")
    indexes = indexes.astype(np.int64)
    kp = _field(data, "keypoints_3d", path)
    if kp.dtype.kind not in "fiu":
        raise DataError(f"{path}: 'keypoints_3d' has dtype {kp.dtype}, expected floats")
    kp = kp.astype(np.float64)
    _check_keypoints(kp, len(indexes), path, H36M_CONTEXTPOSE)  # the released results: ContextPose's order
    if not np.array_equal(np.sort(indexes), np.arange(len(indexes))):
        raise DataError(f"{path}: 'indexes' are not a permutation of 0..{len(indexes) - 1}")
    if expected_rows is not None and len(indexes) != expected_rows:
        raise DataError(f"{path}: has {len(indexes):,} rows, expected {expected_rows:,}")
    return kp, indexes


def write_released_npz(path: str | Path, out: str | Path | None = None, expected_rows: int | None = None) -> Path:
    """Convert released results to a plain ``.npz`` (``keypoints_3d``, ``indexes``), so nothing later needs
    pickle. Written atomically; default ``out`` is ``path`` with the suffix ``.npz``.

    Returns:
        The written path.
    """
    kp, indexes = read_released_results(path, expected_rows)
    out = Path(out) if out else Path(path).with_suffix(".npz")
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, keypoints_3d=kp, indexes=indexes)
    return out


def _labels_rule(dataset: RootDataset) -> str | None:
    """The selection rule recorded in the dataset's labels (our layout); None if not recorded."""
    root = getattr(dataset, "root", None)
    if getattr(dataset, "format", None) != "ctxpose" or root is None:
        return None
    selection = read_labels_meta(Path(root) / "labels.npz").get("selection")
    return selection.get("rule") if isinstance(selection, dict) else None


def _check_test_ids(path: Path, dataset: RootDataset, positions: np.ndarray, option: str) -> None:
    """With the released val file's row count, row p is frame p of the original test table: check each sample."""
    table = original_test_table()
    if len(table) != dataset.split_frame_positions()[1]:
        return
    ids = dataset.sample_ids()
    got = _key_strings(np.asarray(dataset.subject_names)[ids["subject_idx"]],
                       np.asarray(dataset.action_names)[ids["action_idx"]], ids["trial"], np.full(len(positions), ""),
                       ids["frame"])
    expected = _key_strings(table.subject[positions], table.action[positions], table.trial[positions],
                            np.full(len(positions), ""), table.frame[positions])
    bad = np.flatnonzero(got != expected)
    if len(bad):
        i = int(bad[0])

        def show(key: str) -> str:
            seq, _, frame = key.rpartition("//")
            return f"{seq} frame {frame}"

        raise DataError(f"{path} ({option}): the counts agree but {len(bad):,} samples are other frames than the "
                        f"original's (sample {i} is {show(got[i])}, row {positions[i]} of the file is "
                        f"{show(expected[i])}); make matching labels with {MATCHING_LABELS}")


def _from_released(path: Path, dataset: RootDataset) -> np.ndarray:
    kp, indexes = read_released_results(path)
    order = np.argsort(indexes, kind="stable")
    positions, num_frames = dataset.split_frame_positions()
    option = f"{dataset.split}.pred_results_path"
    rule = _labels_rule(dataset)
    made = f" (labels made with --selection {rule})" if rule else ""
    if len(indexes) != num_frames:
        raise DataError(f"{path} ({option}): has {len(indexes):,} poses, one per frame of the original's "
                        f"selection, but the {dataset.split} split has {num_frames:,} frames{made}; make matching "
                        f"labels with {MATCHING_LABELS}, or use the keyed predictions of `ctxpose fetch-weights "
                        "--labels LABELS`")
    if dataset.split == "val":
        _check_test_ids(path, dataset, positions, option)
    elif rule not in (None, "original"):
        raise DataError(f"{path} ({option}): the counts agree ({num_frames:,} frames) but the labels were made "
                        f"with --selection {rule}, so the rows are other frames; make matching labels with "
                        f"{MATCHING_LABELS}")
    return kp[order][positions, dataset.skeleton.root]


def _key_strings(subject: np.ndarray, action: np.ndarray, trial: np.ndarray, camera: np.ndarray,
                 frame: np.ndarray) -> np.ndarray:
    """(N,) "S9/Walking-1/54138969/64" keys."""
    parts = [np.asarray(subject).astype(str), "/", np.asarray(action).astype(str), "-",
             np.asarray(trial).astype(np.int64).astype(str), "/", np.asarray(camera).astype(str), "/",
             np.asarray(frame).astype(np.int64).astype(str)]
    out = parts[0]
    for p in parts[1:]:
        out = np.char.add(out, p)
    return out


def is_multiview(data: dict[str, np.ndarray]) -> bool:
    """True for predictions made from several views (``camera_indices`` (N, V), V > 1): one per frame."""
    views = data.get("camera_indices")
    return views is not None and np.ndim(views) == 2 and np.shape(views)[1] > 1


def _keys_of_file(data: dict[str, np.ndarray], path: Path, per_frame: bool = False) -> np.ndarray:
    """(N,) keys of a keyed file's rows; ``per_frame`` leaves the camera out."""
    try:
        names = [np.asarray(data[k]).astype(str) for k in NAME_FIELDS]
        ids = [np.asarray(data[k]).astype(np.int64).reshape(-1) for k in ID_FIELDS]
        if any(len(i) != len(ids[0]) for i in ids) or any((i < 0).any() for i in ids):
            raise ValueError(f"id columns of lengths {[len(i) for i in ids]}, expected one length, ids >= 0")
        camera = np.full(len(ids[3]), "") if per_frame else names[2][ids[3]]
        cols = [names[0][ids[0]], names[1][ids[1]], ids[2], camera, ids[4]]
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(f"{path}: keyed predictions need {list(NAME_FIELDS)} and {list(ID_FIELDS)} with "
                        f"indices into the names ({type(e).__name__}: {e})") from None
    return _key_strings(*cols)


def match_keys(file_keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of ``file_keys`` for each of ``wanted`` (-1 where absent); ``file_keys`` must be distinct."""
    order = np.argsort(file_keys, kind="stable")
    sorted_keys = file_keys[order]
    pos = np.searchsorted(sorted_keys, wanted).clip(max=max(len(sorted_keys) - 1, 0))
    found = (len(sorted_keys) > 0) & (sorted_keys[pos] == wanted) if len(sorted_keys) else np.zeros(len(wanted), bool)
    return np.where(found, order[pos] if len(sorted_keys) else -1, -1)


def _from_keyed(data: dict[str, np.ndarray], path: Path, dataset: RootDataset) -> np.ndarray:
    per_frame = is_multiview(data)
    keys = _keys_of_file(data, path, per_frame)
    kp = _field(data, "keypoints_3d", path).astype(np.float64)
    made_with = str(data["skeleton"]) if "skeleton" in data else dataset.skeleton.name
    if made_with != dataset.skeleton.name:
        raise DataError(f"{path}: predictions of skeleton {made_with!r}, the dataset's is {dataset.skeleton.name!r}")
    _check_keypoints(kp, len(keys), path, dataset.skeleton)
    what = "frame" if per_frame else "(frame, camera)"
    if len(np.unique(keys)) != len(keys):
        raise DataError(f"{path}: the same {what} appears twice")
    ids = dataset.sample_ids()
    camera = np.full(len(dataset), "") if per_frame else np.asarray(dataset.camera_names)[ids["camera_idx"]]
    wanted = _key_strings(np.asarray(dataset.subject_names)[ids["subject_idx"]],
                          np.asarray(dataset.action_names)[ids["action_idx"]], ids["trial"], camera, ids["frame"])
    rows = match_keys(keys, wanted)
    missing = np.flatnonzero(rows < 0)
    if len(missing):
        if "source" in data:  # converted from the released results
            hint = (f"the file covers {len(keys):,} (frame, camera) pairs of the original's selection; make "
                    f"matching labels with {MATCHING_LABELS}")
        else:
            hint = (f"the file covers {len(keys):,} {what}s; evaluate the estimating model on a selection holding "
                    "these samples (their subjects and cameras, a divisor of retain_every_n_frames_in_test)")
        raise DataError(f"{path} ({dataset.split}.pred_results_path): {len(missing):,} of {len(wanted):,} "
                        f"{dataset.split} samples have no estimate (first {wanted[missing[0]]}); {hint}")
    return kp[rows][:, dataset.skeleton.root]


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
        path: released results (``.pkl``, or its plain ``.npz`` with ``indexes``), keyed predictions
            (:func:`write_keyed_predictions`, or the ``predictions.npz`` of ``ctxpose eval``: ids and names,
            matched by key), or an older ``predictions.npz`` with ``index`` and no names (matched by index).
        dataset: the dataset whose samples the roots are for.

    Returns:
        (len(dataset), 3) float64 roots, world mm, in dataset sample order.

    Raises:
        DataError: unreadable file, refused pickle global, wrong fields, or counts/ids that do not match.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    if path.suffix != ".npz":
        roots = _from_released(path, dataset)
    else:
        data = load_predictions(path, ("keypoints_3d",))
        if "indexes" in data:
            roots = _from_released(path, dataset)
        elif "index" in data and not all(k in data for k in (*NAME_FIELDS, *ID_FIELDS)):
            roots = _from_npz(data, path, dataset)
        else:
            roots = _from_keyed(data, path, dataset)
    logger.info("loaded %d root estimates from %s", len(roots), path)
    return roots


# ---------------------------------------------------------------------- keyed predictions of the released files


@dataclass(frozen=True)
class Coverage:
    """How much of a labels file a keyed predictions file covers (per (frame, camera) row and per frame)."""

    labels: str
    rows: int
    rows_covered: int
    frames: int
    frames_covered: int

    @property
    def missing(self) -> int:
        return self.rows - self.rows_covered


def write_keyed_predictions(results_path: str | Path, table: FrameTable, out: str | Path,
                            source: str = "") -> int:
    """Released results -> ``predictions.npz`` keyed by (subject, action, trial, camera, frame).

    Row i of the results sorted by ``indexes`` is frame i of ``table`` (the split's frames in the original
    table's order); it is written once per camera the frame has, so the file serves any labels whose
    (frame, camera) rows exist in the original's selection.

    Args:
        results_path: ``train.pkl``/``val.pkl`` or their ``.npz``.
        table: the split's original frames (:mod:`ctxpose.data.h36m.selection`).
        out: destination ``.npz`` (:func:`ctxpose.data.predictions_npz.save_predictions`): ``subject_idx``,
            ``action_idx``, ``trial``, ``camera_idx``, ``frame`` (K,), ``keypoints_3d`` (K, J, 3) world mm,
            ``subject_names``, ``action_names``, ``camera_names``, ``source``.

    Returns:
        K, the number of (frame, camera) rows written.

    Raises:
        DataError: the results do not have one row per frame of ``table``.
    """
    kp, indexes = read_released_results(results_path)
    if len(indexes) != len(table):
        raise DataError(f"{results_path}: has {len(indexes):,} rows but the original's selection has "
                        f"{len(table):,} frames for this split; the frame table comes from other labels")
    kp = kp[np.argsort(indexes, kind="stable")]
    frame_rows, cam_idx = np.nonzero(table.cameras)
    subjects = sorted(set(table.subject.tolist()), key=lambda s: metadata.subjects().index(s))
    actions = metadata.actions()
    cameras = metadata.camera_ids()
    cols = {
        "subject_idx": np.array([subjects.index(s) for s in table.subject], np.int64)[frame_rows],
        "action_idx": np.array([actions.index(a) for a in table.action], np.int64)[frame_rows],
        "trial": table.trial[frame_rows].astype(np.int64), "camera_idx": cam_idx.astype(np.int64),
        "frame": table.frame[frame_rows].astype(np.int64), "keypoints_3d": kp[frame_rows],
        "subject_names": np.array(subjects), "action_names": np.array(actions), "camera_names": np.array(cameras),
        "source": np.array(source or str(results_path)),
    }
    save_predictions(out, cols)
    return len(frame_rows)


def keyed_coverage(predictions_path: str | Path, labels_path: str | Path,
                   subjects: list[str] | None = None) -> Coverage:
    """How many (frame, camera) rows and frames of ``labels_path`` (optionally only ``subjects``) have an
    estimate in the keyed ``predictions_path``."""
    from ctxpose.data.labels import load_labels

    predictions_path = Path(predictions_path)
    keys = _keys_of_file(load_predictions(predictions_path, (*ID_FIELDS, *NAME_FIELDS)), predictions_path)
    lab = load_labels(labels_path)
    keep = np.isin(lab.subject, subjects) if subjects is not None else np.ones(len(lab), bool)
    wanted = _key_strings(lab.subject[keep], lab.action[keep], lab.trial[keep], lab.camera[keep], lab.frame[keep])
    found = match_keys(keys, wanted) >= 0
    frame_keys = _key_strings(lab.subject[keep], lab.action[keep], lab.trial[keep], np.full(keep.sum(), ""),
                              lab.frame[keep])
    uniq, inverse = np.unique(frame_keys, return_inverse=True)
    frame_found = np.zeros(len(uniq), bool)
    frame_found[inverse.reshape(-1)[found]] = True
    return Coverage(str(labels_path), int(keep.sum()), int(found.sum()), len(uniq), int(frame_found.sum()))
