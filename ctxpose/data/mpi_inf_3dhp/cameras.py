"""MPI-INF-3DHP test cameras: the release's calibration files, converted to pixel intrinsics.

The test set ships two calibration files (``mpi_inf_3dhp_test_set/test_util/camera_calibration/``; copies in
``shared/mpi_inf_3dhp/``): ``ts1-4cameras.calib`` (the studio camera ``cam_8``, no distortion) and
``ts5-6cameras.calib`` (a GoPro, OpenCV distortion). They are "tc camera calibration v0.3" text files giving
the intrinsics in millimetres on the sensor::

    sensorSize    10 5.625      # mm (width, height)
    focalLength   8.770747185   # mm
    pixelAspect   0.993236423   # y / x
    centerOffset  -0.104 0.104  # mm, positive values move right and down
    distortionModel OpenCV
    distortion    k1 k2 p1 p2 k3

Converted to pixels of a W x H image (the sensor's aspect must be the image's)::

    fx = focalLength / sensorSize_x * W         fy = fx * pixelAspect
    cx = W / 2 + centerOffset_x / sensorSize_x * W
    cy = H / 2 + centerOffset_y / sensorSize_y * H

(TS1-4: fx = 1500.17, cx = 1017.39, cy = 1043.03 px; TS5-6: fx = 1683.98, cx = 939.86, cy = 560.14 px.)
The annotations are in each camera's own frame, so R = I and t = 0; the files' ``origin``/``up``/``right``
(the camera pose in the capture room) are kept in the resource but not used. ``ctxpose preprocess 3dhp``
measures how well ``annot3`` projected through these cameras lands on ``annot2`` for every sequence.

The facts are packaged as ``ctxpose/resources/mpi_inf_3dhp_cameras.json`` (``tools/make_3dhp_cameras.py``
writes it from the two files).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import numpy as np

from ctxpose.errors import DataError
from ctxpose.geometry.cameras import Camera

_NUMERIC_KEYS = {"sensorSize": 2, "focalLength": 1, "pixelAspect": 1, "centerOffset": 2, "distortion": 5,
                 "origin": 3, "up": 3, "right": 3}
_REQUIRED = ("sensorSize", "focalLength", "pixelAspect", "centerOffset", "distortionModel", "distortion")


def parse_calib(text: str, source: str = "calibration") -> list[dict[str, Any]]:
    """Parse a "tc camera calibration v0.3" file.

    Args:
        text: the file's content.
        source: file name for messages.

    Returns:
        One dict per camera: ``name`` and the numeric fields (``sensorSize`` [w, h] mm, ``focalLength`` mm,
        ``pixelAspect``, ``centerOffset`` [x, y] mm, ``distortion`` [k1, k2, p1, p2, k3], ``origin``, ``up``,
        ``right``) plus ``distortionModel``.

    Raises:
        DataError: not such a file, or a camera misses a field or has a malformed one.
    """
    lines = [line.split("#", 1)[0].split() for line in text.splitlines()]
    if not lines or lines[0][:3] != ["tc", "camera", "calibration"]:
        raise DataError(f"{source}: not a 'tc camera calibration' file (first line {' '.join(lines[0][:4])!r})")
    cameras: list[dict[str, Any]] = []
    for number, tokens in enumerate(lines[1:], start=2):
        if not tokens:
            continue
        key, values = tokens[0], tokens[1:]
        if key == "camera":
            cameras.append({"name": values[-1] if values else f"camera{len(cameras)}"})
        elif not cameras:
            continue
        elif key in _NUMERIC_KEYS:
            try:
                numbers = [float(v) for v in values]
            except ValueError:
                raise DataError(f"{source}:{number}: {key} has non-numeric values {values}") from None
            if len(numbers) != _NUMERIC_KEYS[key]:
                raise DataError(f"{source}:{number}: {key} has {len(numbers)} values, expected {_NUMERIC_KEYS[key]}")
            cameras[-1][key] = numbers[0] if len(numbers) == 1 else numbers
        elif key == "distortionModel":
            cameras[-1][key] = values[0] if values else ""
    if not cameras:
        raise DataError(f"{source}: no 'camera' entry")
    for cam in cameras:
        missing = [k for k in _REQUIRED if k not in cam]
        if missing:
            raise DataError(f"{source}: camera {cam['name']} has no {', '.join(missing)}")
        if cam["distortionModel"] != "OpenCV":
            raise DataError(f"{source}: camera {cam['name']}: distortionModel {cam['distortionModel']!r}, "
                            "expected OpenCV")
    return cameras


def intrinsics_px(calib: dict[str, Any], image_hw: tuple[int, int]) -> np.ndarray:
    """(3, 3) pixel intrinsics of a W x H image from a parsed calibration (formulas in the module docstring).

    Raises:
        DataError: the sensor's aspect ratio is not the image's.
    """
    h, w = image_hw
    sensor_w, sensor_h = calib["sensorSize"]
    if abs(sensor_w / sensor_h - w / h) > 1e-3 * w / h:
        raise DataError(f"camera {calib['name']}: sensor {sensor_w} x {sensor_h} mm does not have the aspect of "
                        f"a {w} x {h} image")
    fx = calib["focalLength"] / sensor_w * w
    cx = w / 2 + calib["centerOffset"][0] / sensor_w * w
    cy = h / 2 + calib["centerOffset"][1] / sensor_h * h
    return np.array([[fx, 0.0, cx], [0.0, fx * calib["pixelAspect"], cy], [0.0, 0.0, 1.0]])


@functools.lru_cache(maxsize=1)
def packaged() -> dict[str, Any]:
    """The packaged resource: ``calibrations`` (file name -> parsed cameras), ``sequences`` (name ->
    ``calibration`` file and real ``image_hw``), ``source``."""
    text = resources.files("ctxpose").joinpath("resources/mpi_inf_3dhp_cameras.json").read_text(encoding="utf-8")
    return json.loads(text)


def nominal_image_hw(sequence: str) -> tuple[int, int]:
    """(H, W) of the real images of ``sequence``."""
    entry = _sequence_entry(sequence)
    return int(entry["image_hw"][0]), int(entry["image_hw"][1])


def _sequence_entry(sequence: str) -> dict[str, Any]:
    sequences = packaged()["sequences"]
    if sequence not in sequences:
        raise DataError(f"unknown MPI-INF-3DHP sequence {sequence!r}; expected one of {sorted(sequences)}")
    return sequences[sequence]


def load_3dhp_camera(sequence: str, image_hw: tuple[int, int] | None = None) -> Camera:
    """The camera of a test sequence: R = I, t = 0 (annotations are camera-frame), K in px, OpenCV distortion.

    Args:
        sequence: "TS1".."TS6".
        image_hw: (H, W) of the images at hand; default the real size. Smaller images (the synthetic test
            set's) scale the intrinsics; the aspect ratio must be the real one's (within 1 px).

    Returns:
        :class:`ctxpose.geometry.cameras.Camera` named after the calibration's camera.
    """
    entry = _sequence_entry(sequence)
    calib = packaged()["calibrations"][entry["calibration"]][0]
    nominal = nominal_image_hw(sequence)
    camera = Camera(R=np.eye(3), t=np.zeros(3), K=intrinsics_px(calib, nominal), dist=calib["distortion"],
                    name=camera_name(sequence), dist_model="opencv")
    if image_hw is None or tuple(image_hw) == nominal:
        return camera
    h, w = image_hw
    if abs(h - w * nominal[0] / nominal[1]) > 1.0:
        raise DataError(f"{sequence}: images are {w} x {h} px, expected the aspect of {nominal[1]} x {nominal[0]}")
    return camera.resized(nominal, (h, w))


def camera_name(sequence: str) -> str:
    """Name of the camera of ``sequence`` (from its calibration file): "cam_8" or "GOPR0046"."""
    calib = packaged()["calibrations"][_sequence_entry(sequence)["calibration"]][0]
    return str(calib["name"]).split("_intrinsics")[0]


def projection_residuals(annot3: np.ndarray, annot2: np.ndarray, camera: Camera) -> np.ndarray:
    """Pixel distance between ``annot3`` projected through ``camera`` (with distortion) and ``annot2``.

    Args:
        annot3: (F, J, 3) camera-frame joints, mm.
        annot2: (F, J, 2) annotated pixels.
        camera: the sequence's camera at the images' size.

    Returns:
        (F, J) residuals, px.
    """
    return np.linalg.norm(camera.project(np.asarray(annot3, np.float64)) - annot2, axis=-1)
