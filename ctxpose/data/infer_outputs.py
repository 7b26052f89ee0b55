"""``ctxpose infer``'s files: ``predictions.npz`` (one row per (frame, person), plus one row per frame) and the
same as ``predictions.jsonl`` (one JSON object per frame, its people in a list). No pickle: every array is
numeric or fixed-width unicode, and ``meta`` is a JSON string.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctxpose.utils.io import atomic_write_bytes, atomic_write_text

FORMAT = "ctxpose.infer/1"

#: Per (frame, person) columns of ``predictions.npz``: name -> (dtype, shape after the row axis, meaning).
PERSON_FIELDS: dict[str, tuple[str, str, str]] = {
    "source": ("int32", "", "index into meta['sources']"),
    "frame": ("int32", "", "frame index in its source (image index for a set of images)"),
    "time": ("float64", "", "seconds from the video's start (0 for images)"),
    "track_id": ("int32", "", "person id, kept across a video's frames by IoU tracking"),
    "box": ("float32", "4", "x, y, w, h px in the input image"),
    "score": ("float32", "", "detector score"),
    "keypoints_3d": ("float32", "J,3", "absolute joints, camera frame (x right, y down, z forward), mm"),
    "keypoints_3d_relative": ("float32", "J,3", "joints minus the pelvis, mm"),
    "keypoints_2d": ("float32", "J,2", "keypoints_3d projected into the input image (its distortion), px"),
    "root": ("float32", "3", "cuboid centre the network ran with, camera frame mm"),
    "root_method": ("<U8", "", "how the root was found (box, rootnet, bones, network, depth, given)"),
    "passes": ("int32", "", "network passes run for this person"),
    "K": ("float32", "3,3", "camera intrinsics used, px"),
    "dist": ("float32", "5", "lens distortion used (k1, k2, p1, p2, k3)"),
    "world_to_camera": ("float32", "3,3", "rotation of the upright world the network used (x_cam = R x_world)"),
}
#: with --smooth: the smoothed joints (raw ones kept in keypoints_3d)
SMOOTH_FIELD = "keypoints_3d_smooth"
#: Per frame columns (frames with nobody included): name -> dtype
FRAME_FIELDS: dict[str, str] = {"frame_source": "int32", "frame_index": "int32", "frame_time": "float64",
                                "frame_people": "int32"}


@dataclass
class InferTable:
    """Rows collected while running (lists of per-row values in the :data:`PERSON_FIELDS` order)."""

    num_joints: int
    rows: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in PERSON_FIELDS})
    frames: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in FRAME_FIELDS})
    smooth: list[np.ndarray] | None = None

    def add_frame(self, source: int, index: int, time: float, people: Sequence[dict[str, Any]]) -> None:
        """One frame and its people (dicts with the :data:`PERSON_FIELDS` keys except source/frame/time)."""
        for key, value in zip(FRAME_FIELDS, (source, index, time, len(people)), strict=True):
            self.frames[key].append(value)
        for person in people:
            row = {"source": source, "frame": index, "time": time, **person}
            for key in PERSON_FIELDS:
                self.rows[key].append(row[key])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every column as an array (empty tables have the right shapes)."""
        out = {}
        for key, (dtype, shape, _) in PERSON_FIELDS.items():
            dims = tuple(self.num_joints if d == "J" else int(d) for d in shape.split(",") if d)
            values = self.rows[key]
            out[key] = np.asarray(values, dtype=dtype).reshape(len(values), *dims)
        for key, dtype in FRAME_FIELDS.items():
            out[key] = np.asarray(self.frames[key], dtype=dtype)
        if self.smooth is not None:
            out[SMOOTH_FIELD] = np.asarray(self.smooth, np.float32).reshape(-1, self.num_joints, 3)
        return out


def write_predictions(out_dir: Path, table: InferTable, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``predictions.npz`` and ``predictions.jsonl`` in ``out_dir``, each atomically (a reader never sees a
    half-written file). Returns both paths."""
    arrays = table.arrays()
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps({"format": FORMAT, **meta})), **arrays)
    npz = out_dir / "predictions.npz"
    atomic_write_bytes(npz, buf.getvalue())
    lines, row = [], 0
    for f in range(len(arrays["frame_index"])):
        people = []
        for _ in range(int(arrays["frame_people"][f])):
            person = {k: arrays[k][row].tolist() for k in PERSON_FIELDS if k not in ("source", "frame", "time")}
            if SMOOTH_FIELD in arrays:
                person[SMOOTH_FIELD] = arrays[SMOOTH_FIELD][row].tolist()
            people.append(person)
            row += 1
        lines.append(json.dumps({"source": meta["sources"][int(arrays["frame_source"][f])],
                                 "frame": int(arrays["frame_index"][f]), "time": float(arrays["frame_time"][f]),
                                 "people": people}))
    jsonl = out_dir / "predictions.jsonl"
    atomic_write_text(jsonl, "\n".join(lines) + ("\n" if lines else ""))
    return npz, jsonl


def smooth_tracks(keypoints: np.ndarray, source: np.ndarray, track: np.ndarray, frame: np.ndarray,
                  sigma: float) -> np.ndarray:
    """Gaussian smoothing over time of each (source, track)'s joints, frames with the person missing skipped.

    Args:
        keypoints: (R, J, 3) mm. source, track, frame: (R,) ids of each row.
        sigma: in frames (the kernel spans +-3 sigma, renormalised at a track's ends and gaps).

    Returns:
        (R, J, 3) smoothed joints (a track seen once is unchanged).
    """
    out = np.array(keypoints, np.float64, copy=True)
    for key in set(zip(source.tolist(), track.tolist(), strict=True)):
        rows = np.flatnonzero((source == key[0]) & (track == key[1]))
        rows = rows[np.argsort(frame[rows], kind="stable")]
        t = frame[rows].astype(np.float64)
        w = np.exp(-0.5 * ((t[:, None] - t[None, :]) / sigma) ** 2) * (np.abs(t[:, None] - t[None, :]) <= 3 * sigma)
        w /= w.sum(1, keepdims=True)
        out[rows] = np.einsum("ab,bjc->ajc", w, np.asarray(keypoints, np.float64)[rows])
    return out


def read_predictions(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``predictions.npz`` -> (arrays, meta), with ``allow_pickle=False``."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta
