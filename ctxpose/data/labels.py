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
from ctxpose.utils.io import atomic_path

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

    @classmethod
    def empty(cls, num_joints: int, meta: dict[str, Any] | None = None) -> Labels:
        """A table with no rows."""
        cols = {}
        for name, (_, tail) in _SCHEMA.items():
            shape = (0, *[num_joints if d == "J" else d for d in tail])
            cols[name] = np.zeros(shape, dtype=_DTYPES.get(name, "<U1"))
        return cls(**cols, meta=dict(meta or {}))

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
        cols = self.columns()
        n = len(cols["frame"])
        num_joints = cols["keypoints_3d"].shape[1] if cols["keypoints_3d"].ndim == 3 else None
        for name, (kind, tail) in _SCHEMA.items():
            arr = cols[name]
            expected = (n, *[num_joints if d == "J" else d for d in tail])
            if arr.shape != expected:
                raise DataError(f"{source}: column {name!r} has shape {arr.shape}, expected {expected}")
            if arr.dtype.kind != kind:
                raise DataError(f"{source}: column {name!r} has dtype {arr.dtype}, expected kind {kind!r}")
        if n and not np.all(np.isfinite(cols["keypoints_3d"])):
            raise DataError(f"{source}: keypoints_3d contains NaN or inf")

    def save(self, path: str | Path) -> None:
        """Validate and write atomically (temp file, then rename) as an uncompressed npz, no pickles."""
        self.validate(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **self.columns(), meta=np.array(json.dumps(self.meta, sort_keys=True)))


def load_labels(path: str | Path) -> Labels:
    """Read and validate a labels file written by :meth:`Labels.save`.

    Raises:
        DataError: the file is missing, not an npz, or does not follow the schema.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist; run `ctxpose preprocess h36m` first")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable labels npz ({e})") from None
    missing = [k for k in [*_SCHEMA, "meta"] if k not in data]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; expected {[*_SCHEMA, 'meta']}")
    try:
        meta = json.loads(str(data.pop("meta")))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: meta is not JSON ({e})") from None
    labels = Labels(**{k: data[k] for k in _SCHEMA}, meta=meta)
    labels.validate(path)
    return labels
