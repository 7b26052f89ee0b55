"""The labels file of a processed dataset (``<out>/labels.npz``): schema, validation, save and load.

One row per (frame, camera). Written by ``ctxpose preprocess h36m``, read by the datasets. The file is a
plain ``np.savez`` archive (no pickles) with these arrays, N rows, J joints (``ctxpose.skeleton``):

    subject       (N,) <U8      "S1"
    action        (N,) <U32     base action name, "Directions"
    trial         (N,) int8     1 or 2
    camera        (N,) <U8      camera id, "54138969"
    camera_index  (N,) int8     0..3
    frame         (N,) int32    pose frame index in the sequence, 0-based
    keypoints_3d  (N, J, 3) float64  world coordinates, mm, skeleton order
    bbox          (N, 4) float32     (left, top, right, bottom) square box in the original distorted frame, px
    K             (N, 3, 3) float64  intrinsics of the crop, px
    R             (N, 3, 3) float64  world -> camera rotation
    t             (N, 3) float64     world -> camera translation, mm
    dist          (N, 5) float64     distortion of the crop (zeros: crops are undistorted)
    image         (N,) <U..     crop path relative to the processed folder
    meta          () <U..       JSON: {"format": "ctxpose-labels", "version": 1, ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ctxpose.errors import DataError
from ctxpose.utils.io import atomic_path, load_npz

FORMAT = "ctxpose-labels"
VERSION = 1


def labels_meta(**fields: Any) -> dict[str, Any]:
    """The ``meta`` of a labels file (or shard) this version writes: format, version, then ``fields``."""
    return {"format": FORMAT, "version": VERSION, **fields}


#: name -> (dtype kind for checks, trailing shape; "J" = number of joints)
_SCHEMA: dict[str, tuple[str, tuple[Any, ...]]] = {
    "subject": ("U", ()),
    "action": ("U", ()),
    "trial": ("i", ()),
    "camera": ("U", ()),
    "camera_index": ("i", ()),
    "frame": ("i", ()),
    "keypoints_3d": ("f", ("J", 3)),
    "bbox": ("f", (4,)),
    "K": ("f", (3, 3)),
    "R": ("f", (3, 3)),
    "t": ("f", (3,)),
    "dist": ("f", (5,)),
    "image": ("U", ()),
}
_DTYPES = {"subject": "<U8", "action": "<U32", "trial": np.int8, "camera": "<U8", "camera_index": np.int8,
           "frame": np.int32, "keypoints_3d": np.float64, "bbox": np.float32, "K": np.float64,
           "R": np.float64, "t": np.float64, "dist": np.float64}


@dataclass
class Labels:
    """Columns of the labels table (see the module docstring for shapes, frames and units)."""

    subject: np.ndarray
    action: np.ndarray
    trial: np.ndarray
    camera: np.ndarray
    camera_index: np.ndarray
    frame: np.ndarray
    keypoints_3d: np.ndarray
    bbox: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    dist: np.ndarray
    image: np.ndarray
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.frame)

    def columns(self) -> dict[str, np.ndarray]:
        """The array columns (everything but ``meta``), cast to the schema's dtypes."""
        out = {}
        for f in fields(self):
            if f.name == "meta":
                continue
            value = np.asarray(getattr(self, f.name))
            if f.name in _DTYPES:
                value = value.astype(_DTYPES[f.name], copy=False)
            out[f.name] = value
        return out

    def select(self, rows: np.ndarray) -> Labels:
        """Rows by index or boolean mask."""
        return Labels(**{k: v[rows] for k, v in self.columns().items()}, meta=dict(self.meta))

    @staticmethod
    def concatenate(parts: list[Labels], meta: dict[str, Any]) -> Labels:
        """Stack tables (same joint count) under a new ``meta``."""
        if not parts:
            raise ValueError("nothing to concatenate")
        cols = [p.columns() for p in parts]
        return Labels(**{k: np.concatenate([c[k] for c in cols]) for k in cols[0]}, meta=dict(meta))

    def validate(self, source: str | Path = "labels") -> None:
        """Check columns, shapes, dtypes and meta.

        Raises:
            DataError: naming ``source``, the column, what was found and what was expected.
        """
        if self.meta.get("format") != FORMAT:
            raise DataError(f"{source}: meta.format is {self.meta.get('format')!r}, expected {FORMAT!r}")
        if self.meta.get("version") != VERSION:
            raise DataError(f"{source}: labels version {self.meta.get('version')!r}, this ctxpose reads "
                            f"version {VERSION}; re-run `ctxpose preprocess h36m`")
        check_columns(self.columns(), _SCHEMA, source)

    def save(self, path: str | Path) -> None:
        """Validate and write atomically (temp file, then rename) as an uncompressed npz, no pickles."""
        self.validate(path)
        write_table(path, self.columns(), self.meta)


def load_labels(path: str | Path) -> Labels:
    """Read and validate a labels file written by :meth:`Labels.save`.

    Raises:
        DataError: the file is missing, not an npz, or does not follow the schema.
    """
    data, meta = read_table(path, tuple(_SCHEMA), "run `ctxpose preprocess h36m` first")
    labels = Labels(**{k: data[k] for k in _SCHEMA}, meta=meta)
    labels.validate(path)
    return labels


# --------------------------------------------------------------------------- table files (shared by datasets)

def check_columns(cols: dict[str, np.ndarray], schema: dict[str, tuple[str, tuple[Any, ...]]],
                  source: str | Path) -> None:
    """Check the shape and dtype kind of every schema column; N = rows of the first column.

    Args:
        cols: name -> array.
        schema: name -> (dtype kind, trailing shape; "J" = joints, read from ``keypoints_3d``).
        source: the file, for messages.

    Raises:
        DataError: naming ``source``, the column, what was found and what was expected.
    """
    n = len(cols[next(iter(schema))])
    kp = cols.get("keypoints_3d")
    num_joints = kp.shape[1] if kp is not None and kp.ndim == 3 else None
    for name, (kind, tail) in schema.items():
        arr = cols[name]
        expected = (n, *[num_joints if d == "J" else d for d in tail])
        if arr.shape != expected:
            raise DataError(f"{source}: column {name!r} has shape {arr.shape}, expected {expected}")
        if arr.dtype.kind != kind:
            raise DataError(f"{source}: column {name!r} has dtype {arr.dtype}, expected kind {kind!r}")
    if n and kp is not None and not np.all(np.isfinite(kp)):
        raise DataError(f"{source}: keypoints_3d contains NaN or inf")


def write_table(path: str | Path, cols: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write columns and a JSON ``meta`` atomically (temp file, then rename) as an uncompressed npz, no pickles."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **cols, meta=np.array(json.dumps(meta, sort_keys=True)))


def read_table(path: str | Path, names: tuple[str, ...], hint: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the columns ``names`` and the ``meta`` of a :func:`write_table` file (no pickles).

    Args:
        path: the ``.npz``.
        names: required columns.
        hint: what to do when the file is missing, e.g. "run `ctxpose preprocess h36m` first".

    Returns:
        (columns, meta).

    Raises:
        DataError: missing or unreadable file, missing columns, meta not JSON.
    """
    data = load_npz(path, "labels file", f"; {hint}")
    missing = [k for k in [*names, "meta"] if k not in data]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; expected {[*names, 'meta']}")
    try:
        meta = json.loads(str(data.pop("meta")))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: meta is not JSON ({e})") from None
    return data, meta


def read_labels_meta(path: str | Path) -> dict[str, Any]:
    """Only the ``meta`` of a labels file (the npz member is read alone, not the columns).

    Raises:
        DataError: missing or unreadable file, or no JSON meta.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read the labels meta ({type(e).__name__}: {e})") from None
