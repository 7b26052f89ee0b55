"""The predictions file (``predictions.npz``): its declared fields, the one writer and the one loader.

Written by ``ctxpose eval`` (:func:`ctxpose.engine.evaluator.save_eval`) and by ``ctxpose fetch-weights
--labels`` (the released root estimates keyed by sample ids); read by ``ctxpose visualize predictions``, the
root estimates of a dataset (``*.pred_results_path``, ``--root-estimates``) and ``ctxpose export-3dhp``. A
plain ``np.savez`` archive, no pickles. Every array is declared in :data:`FIELDS`: N rows (one per sample),
J joints, V views; each reader says which fields it needs. Declared, per row:

    index            (N,) int64         dataset sample index
    subject_idx      (N,) int64         into subject_names (3DHP: the sequence, TS1..TS6)
    action_idx       (N,) int64         into action_names (3DHP: the activity)
    trial            (N,) int64         1 or 2 (3DHP: 0)
    camera_idx       (N,) int64         into camera_names
    frame            (N,) int64         0-based frame of the sequence
    camera_indices   (N, V) int64       the cameras of the V views each prediction saw (V > 1: a multi-view
                                        estimate, which ``pred_results_path`` serves to every camera of its frame)
    sequence         (N,) str           "TS1".."TS6" (an alternative to subject_idx for ``export-3dhp``)
    keypoints_3d     (N, J, 3) float32  predicted joints, world mm (3DHP: the test camera's frame)
    keypoints_3d_gt  (N, J, 3) float32  ground truth, same frame
    validity         (N, J) float32     joint weights of the ground truth
    proj_matrices    (N, 3, 4) float32  first view, world mm -> crop px
    image_paths      (N,) str           first-view crop, relative to dataset_root (or absolute)

and once per file:

    subject_names, action_names, camera_names  (K,) str
    skeleton         () str             joint order (``ctxpose.skeleton``)
    image_shape      (2,) int64         network input (H, W) that proj_matrices refers to
    dataset_root     () str             the processed folder at evaluation time
    source           () str             where the estimates come from (keyed released results)

A new field is one more :class:`Field` in :data:`FIELDS`: :func:`save_predictions` refuses undeclared arrays,
so a writer cannot add one silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctxpose.errors import DataError
from ctxpose.utils.io import atomic_path, load_npz


@dataclass(frozen=True)
class Field:
    """One declared array.

    Attributes:
        dtype: what :func:`save_predictions` writes ("str" for unicode strings of any length).
        shape: the array's shape: "N" rows, "J" joints, "K" names, or a number.
        doc: its meaning and unit.
    """

    dtype: str
    shape: tuple[str | int, ...]
    doc: str

    @property
    def kind(self) -> str:
        """The numpy dtype kind a loaded array must have ("i", "f" or "U")."""
        return "U" if self.dtype == "str" else np.dtype(self.dtype).kind


_IDS = "int64"
#: every array a predictions file may hold
FIELDS: dict[str, Field] = {
    "index": Field(_IDS, ("N",), "dataset sample index"),
    "subject_idx": Field(_IDS, ("N",), "index into subject_names"),
    "action_idx": Field(_IDS, ("N",), "index into action_names"),
    "trial": Field(_IDS, ("N",), "trial of the action"),
    "camera_idx": Field(_IDS, ("N",), "index into camera_names"),
    "frame": Field(_IDS, ("N",), "0-based frame of the sequence"),
    "camera_indices": Field(_IDS, ("N", "V"), "cameras of the views each prediction saw"),
    "sequence": Field("str", ("N",), "MPI-INF-3DHP test sequence, TS1..TS6"),
    "keypoints_3d": Field("float32", ("N", "J", 3), "predicted joints, world mm"),
    "keypoints_3d_gt": Field("float32", ("N", "J", 3), "ground-truth joints, world mm"),
    "validity": Field("float32", ("N", "J"), "joint weights of the ground truth"),
    "proj_matrices": Field("float32", ("N", 3, 4), "first view's projection, world mm -> crop px"),
    "image_paths": Field("str", ("N",), "first-view crop, relative to dataset_root"),
    "subject_names": Field("str", ("K",), "subject (3DHP: sequence) names"),
    "action_names": Field("str", ("K",), "action (3DHP: activity) names"),
    "camera_names": Field("str", ("K",), "camera names"),
    "skeleton": Field("str", (), "joint order"),
    "image_shape": Field(_IDS, (2,), "network input (H, W) the projections refer to"),
    "dataset_root": Field("str", (), "processed folder at evaluation time"),
    "source": Field("str", (), "where the estimates come from"),
}
#: the id columns that name a sample (with the *_names arrays)
ID_FIELDS = ("subject_idx", "action_idx", "trial", "camera_idx", "frame")
NAME_FIELDS = ("subject_names", "action_names", "camera_names")


def check_predictions(arrays: Mapping[str, np.ndarray], source: str | Path,
                      required: Iterable[str] = ()) -> None:
    """Check declared fields for dtype kind and shape (N from the first per-row field, J from keypoints_3d).

    Raises:
        DataError: ``source: key ...`` for a missing required field, a wrong dtype or shape, an index into
            the names out of range, or non-finite predicted joints.
    """
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DataError(f"{source}: no {', '.join(map(repr, missing))}; expected a predictions file with "
                        f"{', '.join(required)} (`ctxpose eval` writes them)")
    rows = [k for k, f in FIELDS.items() if f.shape[:1] == ("N",) and k in arrays]
    n = len(arrays[rows[0]]) if rows else 0
    joints = next((arrays[k].shape[1] for k in ("keypoints_3d", "keypoints_3d_gt", "validity")
                   if k in arrays and arrays[k].ndim >= 2), None)
    for key, f in FIELDS.items():
        if key not in arrays:
            continue
        a = np.asarray(arrays[key])
        if f.shape[:1] == ("N",) and n == 0 and a.size == 0:
            continue  # no samples: any empty array will do
        if a.dtype.kind != f.kind and not (f.kind in "fi" and a.dtype.kind in "iu"):
            raise DataError(f"{source}: {key} has dtype {a.dtype}, expected {f.dtype} ({f.doc})")
        sizes = {"N": n, "J": joints, "K": len(a) if a.ndim else None, "V": a.shape[1] if a.ndim == 2 else None}
        expected = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in f.shape)
        if a.shape != expected:
            shown = "(" + ", ".join(str(d) for d in f.shape) + ("," if len(f.shape) == 1 else "") + ")"
            raise DataError(f"{source}: {key} has shape {a.shape}, expected {expected} {shown} ({f.doc})")
    for idx, names in zip(("subject_idx", "action_idx", "camera_idx"), NAME_FIELDS, strict=True):
        if idx in arrays and names in arrays and n:
            i = np.asarray(arrays[idx])
            if i.min() < 0 or i.max() >= len(arrays[names]):
                raise DataError(f"{source}: {idx} outside 0..{len(arrays[names]) - 1} (the entries of {names})")
    if "keypoints_3d" in arrays and not np.all(np.isfinite(arrays["keypoints_3d"])):
        raise DataError(f"{source}: keypoints_3d contains NaN or inf")


def save_predictions(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Check ``arrays`` against :data:`FIELDS`, cast them to the declared dtypes and write them atomically
    (temp file, then rename; no pickles). Returns the path.

    Raises:
        ValueError: an undeclared array (declare it in :data:`FIELDS` first) or one that breaks the schema.
    """
    unknown = sorted(set(arrays) - set(FIELDS))
    if unknown:
        raise ValueError(f"undeclared predictions fields {unknown}; declare them in ctxpose.data.predictions_npz")
    out = {}
    for key, value in arrays.items():
        dtype = FIELDS[key].dtype
        out[key] = np.asarray(value).astype(str) if dtype == "str" else np.asarray(value, dtype=dtype)
    try:
        check_predictions(out, path)
    except DataError as e:
        raise ValueError(str(e)) from None
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **out)
    return path


def load_predictions(path: str | Path, required: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Read a predictions file (no pickles) and check it (:func:`check_predictions`).

    Args:
        path: the ``.npz``.
        required: fields the caller needs.

    Returns:
        Every array of the file; undeclared ones (another format's, e.g. the released results' ``indexes``)
        are returned unchecked.

    Raises:
        DataError: missing or unreadable file, a missing required field, or a field that breaks the schema,
            naming the file and the field.
    """
    required = tuple(required)
    arrays = load_npz(path, "predictions file")
    check_predictions(arrays, path, required)
    return arrays
