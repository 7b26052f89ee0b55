"""What ``ctxpose infer --calibration`` reads and writes: a rig's calibration file and the multi-view predictions.

Calibration file (JSON, or YAML for any other suffix), documented in docs/commands/infer.md:

* ``cameras``: a list with one camera per view, in the order of the inputs, or a mapping ``name: camera`` whose
  names are the inputs' file names or stems (``cam0.mp4`` or ``cam0``). A camera has the intrinsics
  ``K`` (3 x 3; or ``camera_matrix``, or ``fx, fy, cx, cy``), optional ``dist`` (or ``distortion_coefficients``;
  OpenCV's k1, k2, p1, p2[, k3]), the extrinsics world -> camera ``R`` (3 x 3; or ``rvec``, a Rodrigues
  vector) and ``t`` (3, mm; or ``tvec``), so that ``x_cam = R x_world + t``; optional ``image_size``
  ``[width, height]`` px, checked against the frames.
* OpenCV's stereo calibration keys (``cv2.stereoCalibrate``): ``K1, D1, K2, D2, R, T`` (T in mm): camera 1
  is the world frame, camera 2 is ``R, T``; optional ``image_size``.

Matrices may be nested lists or OpenCV FileStorage matrices (``rows, cols, dt, data``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ctxpose.data.infer_inputs import matrix_numbers, read_mapping_file
from ctxpose.data.predictions_npz import MULTIVIEW_FIELDS, MULTIVIEW_FORMAT, save_predictions
from ctxpose.errors import DataError
from ctxpose.geometry.cameras import Camera
from ctxpose.utils.io import atomic_write_text


@dataclass(frozen=True)
class RigView:
    """One calibrated view: its :class:`Camera` (world mm -> px) and, when the file gives it, its image size
    ``(height, width)`` px."""

    camera: Camera
    image_hw: tuple[int, int] | None = None


def _intrinsics(data: dict[str, Any], where: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    for key in ("K", "camera_matrix"):
        if key in data:
            K = matrix_numbers(data[key], 9, f"{where} {key}", path).reshape(3, 3)
            break
    else:
        if not all(k in data for k in ("fx", "fy", "cx", "cy")):
            raise DataError(f"{path}: {where}: expected K (or camera_matrix, or fx, fy, cx, cy), R (or rvec) and t "
                            f"(or tvec); found {', '.join(map(str, data)) or 'none'}")
        fx, fy, cx, cy = (float(matrix_numbers(data[k], 1, f"{where} {k}", path)[0]) for k in ("fx", "fy", "cx", "cy"))
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if not (K[0, 0] > 0 and K[1, 1] > 0) or K[1, 0] != 0 or K[2].tolist() != [0.0, 0.0, 1.0]:
        raise DataError(f"{path}: {where}: K should be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    dist = np.zeros(5)
    coeffs = data.get("dist", data.get("distortion_coefficients"))
    if coeffs is not None:
        c = matrix_numbers(coeffs, None, f"{where} dist", path)
        if c.size < 4 or np.any(c[5:] != 0):
            raise DataError(f"{path}: {where}: dist should be k1, k2, p1, p2[, k3] (got {c.size} numbers; "
                            "rational/thin-prism terms are not supported)")
        dist[: min(5, c.size)] = c[:5]
    return K, dist


def _rotation(R: np.ndarray, where: str, path: Path) -> np.ndarray:
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or not np.linalg.det(R) > 0:
        raise DataError(f"{path}: {where}: R should be a rotation matrix (orthonormal, determinant +1)")
    return R


def _image_hw(data: dict[str, Any], where: str, path: Path) -> tuple[int, int] | None:
    if data.get("image_size") is None:
        return None
    wh = matrix_numbers(data["image_size"], 2, f"{where} image_size", path)
    return int(wh[1]), int(wh[0])


def _view(data: Any, where: str, name: str, path: Path) -> RigView:
    if not isinstance(data, dict):
        raise DataError(f"{path}: {where}: expected a mapping with K, dist, R, t")
    K, dist = _intrinsics(data, where, path)
    if "R" in data:
        R = matrix_numbers(data["R"], 9, f"{where} R", path).reshape(3, 3)
    elif "rvec" in data:
        R = cv2.Rodrigues(matrix_numbers(data["rvec"], 3, f"{where} rvec", path))[0]
    else:
        raise DataError(f"{path}: {where}: expected R (3 x 3, world -> camera) or rvec; found "
                        f"{', '.join(map(str, data))}")
    key = "t" if "t" in data else "tvec" if "tvec" in data else None
    if key is None:
        raise DataError(f"{path}: {where}: expected t (3 numbers, world -> camera, mm) or tvec; found "
                        f"{', '.join(map(str, data))}")
    t = matrix_numbers(data[key], 3, f"{where} {key}", path)
    return RigView(Camera(R=_rotation(R, where, path), t=t, K=K, dist=dist, name=name), _image_hw(data, where, path))


def read_calibration(path: Path, view_names: Sequence[str]) -> list[RigView]:
    """The calibration of the views named ``view_names`` (the inputs' file names, in order).

    Returns:
        One :class:`RigView` per view, in the order of ``view_names``.

    Raises:
        DataError: unreadable, wrong keys (the message lists those found), or not one camera per view.
    """
    path = Path(path)
    data = read_mapping_file(path, "calibration file")
    n = len(view_names)
    if isinstance(data, dict) and all(k in data for k in ("K1", "K2", "R", "T")):  # OpenCV stereo
        if n != 2:
            raise DataError(f"{path}: a stereo calibration (K1, K2, R, T) has 2 views; {n} inputs were given")
        size = {"image_size": data["image_size"]} if "image_size" in data else {}
        cams = [{"K": data["K1"], "dist": data.get("D1"), "R": np.eye(3).tolist(), "t": [0, 0, 0], **size},
                {"K": data["K2"], "dist": data.get("D2"), "R": data["R"], "t": data["T"], **size}]
        return [_view(c, f"camera {i + 1} ({k})", view_names[i], path)
                for i, (c, k) in enumerate(zip(cams, ("K1, D1", "K2, D2, R, T"), strict=True))]
    cameras = data.get("cameras") if isinstance(data, dict) else data
    if isinstance(cameras, list):
        if len(cameras) != n:
            raise DataError(f"{path}: {len(cameras)} cameras for {n} views (one per input, in their order)")
        return [_view(c, f"cameras[{i}]", view_names[i], path) for i, c in enumerate(cameras)]
    if isinstance(cameras, dict):
        views = []
        for name in view_names:
            key = next((k for k in (name, Path(name).stem) if k in cameras), None)
            if key is None:
                raise DataError(f"{path}: no camera named {Path(name).stem!r} or {name!r} (cameras: "
                                f"{', '.join(map(str, cameras))})")
            views.append(_view(cameras[key], f"cameras.{key}", name, path))
        if len(cameras) != n:
            raise DataError(f"{path}: {len(cameras)} cameras for {n} views (one per input)")
        return views
    found = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
    raise DataError(f"{path}: expected 'cameras' (a list in the order of the inputs, or name: camera) or OpenCV "
                    f"stereo keys K1, D1, K2, D2, R, T; found {found or 'none'}")


def write_calibration(path: Path, cameras: Sequence[Camera], image_hw: Sequence[tuple[int, int]] | None = None,
                      ) -> None:
    """Write ``cameras`` in the file format :func:`read_calibration` reads (JSON), atomically."""
    items = []
    for i, cam in enumerate(cameras):
        item = {"name": cam.name, "K": cam.K.tolist(), "dist": cam.dist.tolist(), "R": cam.R.tolist(),
                "t": cam.t.tolist()}
        if image_hw is not None:
            item["image_size"] = [int(image_hw[i][1]), int(image_hw[i][0])]
        items.append(item)
    atomic_write_text(path, json.dumps({"cameras": items}, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------- predictions

#: per frame-with-a-person columns of ``predictions.npz`` (the "infer_multiview" kind), in the declared order
ROW_FIELDS = tuple(k for k, f in MULTIVIEW_FIELDS.items() if f.shape[:1] == ("N",))
#: per frame columns (frames with nobody included)
FRAME_FIELDS = tuple(k for k, f in MULTIVIEW_FIELDS.items() if f.shape[:1] == ("F",))


@dataclass
class MultiViewTable:
    """Rows collected while running."""

    num_joints: int
    num_views: int
    rows: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in ROW_FIELDS})
    frames: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in FRAME_FIELDS})

    def add_frame(self, index: int, time: float, person: dict[str, Any] | None) -> None:
        """One frame and its person (a dict with the :data:`ROW_FIELDS` keys but frame/time) or None."""
        for key, value in zip(FRAME_FIELDS, (index, time, int(person is not None)), strict=True):
            self.frames[key].append(value)
        if person is not None:
            row = {"frame": index, "time": time, **person}
            for key in ROW_FIELDS:
                self.rows[key].append(row[key])

    def arrays(self) -> dict[str, np.ndarray]:
        """The rows and frames as arrays of their declared dtypes and shapes (N may be 0)."""
        out = {}
        sizes = {"J": self.num_joints, "V": self.num_views}
        for key in ROW_FIELDS:
            f = MULTIVIEW_FIELDS[key]
            dims = tuple(sizes[d] if isinstance(d, str) else d for d in f.shape[1:])
            out[key] = np.asarray(self.rows[key], dtype=f.dtype).reshape(len(self.rows[key]), *dims)
        for key in FRAME_FIELDS:
            out[key] = np.asarray(self.frames[key], dtype=MULTIVIEW_FIELDS[key].dtype)
        return out


def write_multiview_predictions(out_dir: Path, table: MultiViewTable, cameras: Sequence[Camera],
                                meta: dict[str, Any]) -> tuple[Path, Path]:
    """``predictions.npz`` (the "infer_multiview" kind of :mod:`ctxpose.data.predictions_npz`, written by its
    :func:`~ctxpose.data.predictions_npz.save_predictions`: rows, frames, the rig's cameras and ``meta`` as a JSON
    string; no pickle) and ``predictions.jsonl`` (one object per frame), each written atomically. Read it back
    with ``load_predictions(path, kind="infer_multiview")``."""
    arrays = table.arrays()
    rig = {"camera_K": np.stack([c.K for c in cameras]), "camera_dist": np.stack([c.dist for c in cameras]),
           "camera_R": np.stack([c.R for c in cameras]), "camera_t": np.stack([c.t for c in cameras])}
    npz = save_predictions(out_dir / "predictions.npz",
                           {**arrays, **rig, "meta": np.array(json.dumps({"format": MULTIVIEW_FORMAT, **meta}))},
                           "infer_multiview")
    lines, row = [], 0
    for f in range(len(arrays["frame_index"])):
        people = []
        if arrays["frame_people"][f]:
            people.append({k: np.where(np.isnan(v), None, v).tolist() if v.dtype.kind == "f" else v.tolist()
                           for k in ROW_FIELDS if k not in ("frame", "time") for v in [arrays[k][row]]})
            row += 1
        lines.append(json.dumps({"frame": int(arrays["frame_index"][f]), "time": float(arrays["frame_time"][f]),
                                 "people": people}))
    jsonl = out_dir / "predictions.jsonl"
    atomic_write_text(jsonl, "\n".join(lines) + ("\n" if lines else ""))
    return npz, jsonl
