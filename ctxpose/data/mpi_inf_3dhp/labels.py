"""``labels.npz`` of a processed MPI-INF-3DHP folder (``ctxpose preprocess 3dhp``): schema, save, load.

One row per kept frame (the valid frames; with ``all_frames`` also the others, ``valid`` False), no
pickles (``np.load(..., allow_pickle=False)``):

    sequence           (N,) <U4        "TS1".."TS6"
    frame              (N,) int32      0-based index into the sequence's annotations; image img_{frame+1:06d}.jpg
    valid              (N,) bool       ``valid_frame``
    activity           (N,) int8       ``activity_annotation`` 1..7
    keypoints_3d       (N, 17, 3) f8   ``annot3`` in the contextpose17 order, camera frame, mm
    keypoints_3d_univ  (N, 17, 3) f8   ``univ_annot3`` in the contextpose17 order (the evaluation's truth)
    annot3, univ_annot3 (N, 17, 3) f8  the same in the 3DHP order, as in the file
    annot2             (N, 17, 2) f8   3DHP order, pixels of the full (distorted) frame
    bbox               (N, 4) f4       square box (left, top, right, bottom) in the full frame, px
    K                  (N, 3, 3) f8    intrinsics of the undistorted crop (R = I, t = 0: camera frame)
    image              (N,) <U..       crop path relative to the processed folder
    meta               JSON            format "ctxpose-3dhp-labels", version, settings, cameras, residuals
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ctxpose.data.labels import check_columns, read_table, write_table
from ctxpose.errors import DataError

FORMAT = "ctxpose-3dhp-labels"
VERSION = 1
SCHEMA: dict[str, tuple[str, tuple[Any, ...]]] = {
    "sequence": ("U", ()), "frame": ("i", ()), "valid": ("b", ()), "activity": ("i", ()),
    "keypoints_3d": ("f", ("J", 3)), "keypoints_3d_univ": ("f", ("J", 3)), "annot3": ("f", ("J", 3)),
    "univ_annot3": ("f", ("J", 3)), "annot2": ("f", ("J", 2)), "bbox": ("f", (4,)), "K": ("f", (3, 3)),
    "image": ("U", ()),
}
DTYPES = {"sequence": "<U4", "frame": np.int32, "valid": np.bool_, "activity": np.int8, "bbox": np.float32}


def _typed(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(cols[k]).astype(DTYPES[k], copy=False) if k in DTYPES else np.asarray(cols[k])
            for k in SCHEMA}


def save_3dhp_labels(path: str | Path, cols: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Check against the schema and write atomically.

    Raises:
        DataError: a column is missing or misshaped.
    """
    missing = [k for k in SCHEMA if k not in cols]
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    typed = _typed(cols)
    check_columns(typed, SCHEMA, path)
    write_table(path, typed, {**meta, "format": FORMAT, "version": VERSION})


def load_3dhp_labels(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and check a 3DHP labels file: (columns, meta).

    Raises:
        DataError: missing, unreadable, another format or version, or not following the schema.
    """
    cols, meta = read_table(path, tuple(SCHEMA), "run `ctxpose preprocess 3dhp` first")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}, expected {FORMAT!r} "
                        f"version {VERSION} (a folder made by `ctxpose preprocess 3dhp`)")
    check_columns(cols, SCHEMA, path)
    return cols, meta


def concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack label shards (the schema's columns)."""
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in SCHEMA}
