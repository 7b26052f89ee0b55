"""``ctxpose infer``'s files: ``predictions.npz`` (the "infer" kind of :mod:`ctxpose.data.predictions_npz`: one
row per (frame, person), plus one row per frame, declared in its ``INFER_FIELDS`` and written by its one writer)
and the same as ``predictions.jsonl`` (one JSON object per frame, its people in a list). No pickle: every array
is numeric or unicode, and ``meta`` is a JSON string. Read it back with
``load_predictions(path, kind="infer")``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctxpose.data.predictions_npz import INFER_FIELDS, save_predictions
from ctxpose.utils.io import atomic_write_text

#: with --smooth: the smoothed joints (raw ones kept in keypoints_3d)
SMOOTH_FIELD = "keypoints_3d_smooth"
#: per (frame, person) columns, in the declared order
PERSON_FIELDS = tuple(k for k, f in INFER_FIELDS.items() if f.shape[:1] == ("N",) and k != SMOOTH_FIELD)
#: per frame columns (frames with nobody included)
FRAME_FIELDS = tuple(k for k, f in INFER_FIELDS.items() if f.shape[:1] == ("F",))


@dataclass
class InferTable:
    """Rows collected while running (lists of per-row values of :data:`PERSON_FIELDS` and :data:`FRAME_FIELDS`)."""

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
        """Every column as an array of its declared dtype and shape (empty tables too)."""
        out = {}
        for key in (*PERSON_FIELDS, *FRAME_FIELDS):
            f = INFER_FIELDS[key]
            values = self.rows[key] if key in self.rows else self.frames[key]
            dims = tuple(self.num_joints if d == "J" else d for d in f.shape[1:])
            a = np.asarray(values).astype(str) if f.dtype == "str" else np.asarray(values, dtype=f.dtype)
            out[key] = a.reshape(len(values), *dims)
        if self.smooth is not None:
            out[SMOOTH_FIELD] = np.asarray(self.smooth, np.float32).reshape(-1, self.num_joints, 3)
        return out


def write_predictions(out_dir: Path, table: InferTable, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``predictions.npz`` (:func:`~ctxpose.data.predictions_npz.save_predictions`, kind "infer") and
    ``predictions.jsonl`` in ``out_dir``, each atomically (a reader never sees a half-written file). Returns both
    paths."""
    arrays = table.arrays()
    npz = save_predictions(out_dir / "predictions.npz", {**arrays, "meta": np.array(json.dumps(meta))}, "infer")
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
