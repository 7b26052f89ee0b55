"""Human3.6M camera parameters, packaged or read from an una-dinosauria ``cameras.h5``.

The packaged file ``ctxpose/resources/h36m_cameras.json`` is written by ``tools/make_h36m_cameras.py`` from
the <w0> vector of the official ``metadata.xml`` (see its ``source`` field). It holds, for every subject with
public poses (S1, S5, S6, S7, S8, S9, S11) and camera (54138969, 55011271, 58860488, 60457274): ``R`` and
``t`` (world->camera, mm), ``K`` (px), ``dist`` = (k1, k2, p1, p2, k3) in the Human3.6M distortion model
(``Camera.dist_model == "h36m"``) and the video size (rows, cols).

``cameras.h5`` (una-dinosauria/3d-pose-baseline, used by the original ContextPose preprocessing) has groups
``subject{N}/camera{M}`` (M = 1..4 in the camera order above) with datasets written from MATLAB: ``R`` (3, 3)
stored transposed (``R_world_to_cam = R[()].T``), ``T`` (3, 1) camera centre in world mm (``t = -R @ T``),
``f`` (2, 1), ``c`` (2, 1), ``k`` (3, 1) = (k1, k2, k3), ``p`` (2, 1) = (p1, p2), ``Name`` (8, 1) ASCII codes.
"""

from __future__ import annotations

import functools
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ctxpose.errors import DataError
from ctxpose.geometry.cameras import Camera

logger = logging.getLogger(__name__)

CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
DIST_MODEL = "h36m"


@functools.lru_cache(maxsize=1)
def _packaged() -> dict[str, Any]:
    text = resources.files("ctxpose").joinpath("resources/h36m_cameras.json").read_text(encoding="utf-8")
    return json.loads(text)


def _packaged_cameras() -> dict[tuple[str, str], Camera]:
    data = _packaged()
    model = data.get("dist_model", DIST_MODEL)
    return {
        (subject, camera_id): Camera(
            R=entry["R"], t=entry["t"], K=entry["K"], dist=entry["dist"], name=camera_id, dist_model=model
        )
        for subject, by_camera in data["cameras"].items()
        for camera_id, entry in by_camera.items()
    }


def _h5_array(group: Any, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """Dataset ``group[key]`` as float64 of ``shape``; DataError naming file and key otherwise."""
    name = f"{group.name}/{key}"
    if key not in group:
        raise DataError(f"{path}: dataset {name!r} is missing; expected an una-dinosauria cameras.h5 layout")
    try:
        array = np.asarray(group[key][()], dtype=np.float64)
    except (TypeError, ValueError, OSError) as exc:
        raise DataError(f"{path}: dataset {name!r} cannot be read as numbers ({exc})") from None
    if array.shape != shape:
        raise DataError(f"{path}: dataset {name!r} has shape {array.shape}, expected {shape}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{path}: dataset {name!r} contains non-finite values, expected finite numbers")
    return array


def _camera_from_h5_group(group: Any, camera_id: str, path: Path) -> Camera:
    name_codes = _h5_array(group, "Name", (8, 1), path)
    name = "".join(chr(int(code)) for code in name_codes[:, 0])
    if name != camera_id:
        raise DataError(f"{path}: {group.name}/Name is {name!r}, expected camera id {camera_id!r}")
    R = _h5_array(group, "R", (3, 3), path).T
    centre = _h5_array(group, "T", (3, 1), path)[:, 0]
    f = _h5_array(group, "f", (2, 1), path)[:, 0]
    c = _h5_array(group, "c", (2, 1), path)[:, 0]
    k = _h5_array(group, "k", (3, 1), path)[:, 0]
    p = _h5_array(group, "p", (2, 1), path)[:, 0]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6):
        raise DataError(f"{path}: {group.name}/R is not a rotation matrix (R R^T != I)")
    K = np.array([[f[0], 0.0, c[0]], [0.0, f[1], c[1]], [0.0, 0.0, 1.0]])
    dist = np.array([k[0], k[1], p[0], p[1], k[2]])
    return Camera(R=R, t=-R @ centre, K=K, dist=dist, name=camera_id, dist_model=DIST_MODEL)


def _read_cameras_h5(path: Path, subjects: list[str]) -> dict[tuple[str, str], Camera]:
    import h5py

    if not path.is_file():
        raise DataError(f"{path}: camera file not found; expected an una-dinosauria cameras.h5")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: cannot be opened as HDF5 ({exc}); expected an una-dinosauria cameras.h5") from None
    cameras: dict[tuple[str, str], Camera] = {}
    with h5:
        for subject in subjects:
            for index, camera_id in enumerate(CAMERA_IDS, start=1):
                key = f"subject{subject[1:]}/camera{index}"
                if key not in h5:
                    raise DataError(f"{path}: group {key!r} is missing; expected subject{{N}}/camera{{1..4}} groups")
                cameras[(subject, camera_id)] = _camera_from_h5_group(h5[key], camera_id, path)
    return cameras


def load_h36m_cameras(override: Path | None = None) -> dict[tuple[str, str], Camera]:
    """Human3.6M cameras of the subjects with public poses.

    Args:
        override: optional una-dinosauria ``cameras.h5``; its values replace the packaged ones.

    Returns:
        ``{(subject, camera_id): Camera}``, e.g. ``("S9", "54138969")``; cameras carry ``dist_model="h36m"``.

    Raises:
        DataError: ``override`` is missing, not HDF5, or lacks/misshapes a key (message names file and key).
    """
    packaged = _packaged_cameras()
    if override is None:
        return packaged
    subjects = sorted({subject for subject, _ in packaged}, key=lambda s: int(s[1:]))
    cameras = _read_cameras_h5(Path(override), subjects)
    logger.info("read %d Human3.6M cameras from %s", len(cameras), override)
    return cameras


def image_size(subject: str, camera_id: str) -> tuple[int, int]:
    """Video size (height, width) in px of ``camera_id`` for ``subject`` (from the release ``metadata.xml``).

    Raises:
        DataError: unknown subject or camera id.
    """
    by_subject = _packaged()["cameras"]
    if subject not in by_subject:
        raise DataError(f"h36m cameras: unknown subject {subject!r}, expected one of {sorted(by_subject)}")
    if camera_id not in by_subject[subject]:
        raise DataError(f"h36m cameras: unknown camera {camera_id!r}, expected one of {list(CAMERA_IDS)}")
    height, width = by_subject[subject][camera_id]["image_hw"]
    return int(height), int(width)
