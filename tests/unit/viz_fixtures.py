"""Shared by the viz tests: a stick figure whose joints are >= 100 mm apart, cameras that face it, a slow
reference projection, a tiny processed folder in our labels format, and colour lookups."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ctxpose.skeleton import get_skeleton
from ctxpose.viz.style import COLORS, joint_side

SK = get_skeleton("contextpose17")
CROP = 128
K = np.array([[300.0, 0.0, 63.5], [0.0, 300.0, 63.5], [0.0, 0.0, 1.0]])

#: (x right-of-camera, z up) mm of each joint; the figure's left side is at +x (it faces a camera at -y)
_XZ = {"right_ankle": (-180, 100), "right_knee": (-170, 500), "right_hip": (-150, 900), "left_hip": (150, 900),
       "left_knee": (170, 500), "left_ankle": (180, 100), "pelvis": (0, 900), "belly": (0, 1150),
       "neck": (0, 1450), "head": (0, 1700), "right_wrist": (-450, 1000), "right_elbow": (-350, 1200),
       "right_shoulder": (-200, 1450), "left_shoulder": (200, 1450), "left_elbow": (350, 1200),
       "left_wrist": (450, 1000), "nose": (0, 1600)}
POSE = np.array([[_XZ[n][0], 0.0, _XZ[n][1]] for n in SK.names], dtype=np.float64)


def facing_camera(side: str = "front", distance: float = 5000.0) -> tuple[np.ndarray, np.ndarray]:
    """(R, t mm) of a camera at height 900 mm on the -y ("front") or +y ("back") side, looking at the figure."""
    if side == "front":  # camera x = world x, camera y = -world z, camera z = world y
        R = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
        centre = np.array([0.0, -distance, 900.0])
    else:  # looking along -y: camera x = -world x
        R = np.array([[-1.0, 0, 0], [0, 0, -1.0], [0, -1.0, 0]])
        centre = np.array([0.0, distance, 900.0])
    return R, -R @ centre


def reference_project(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pinhole projection written out per point: x_cam = R X + t, u = fx x/z + cx, v = fy y/z + cy."""
    out = []
    for X in points:
        xc = [sum(R[i][k] * X[k] for k in range(3)) + t[i] for i in range(3)]
        out.append([K[0][0] * xc[0] / xc[2] + K[0][2], K[1][1] * xc[1] / xc[2] + K[1][2]])
    return np.array(out)


def joint_rgb(j: int, role: str) -> tuple[int, int, int]:
    """The colour the scheme promises for joint ``j`` (from its name)."""
    return COLORS[role][joint_side(SK.names[j])]


def pixel(image: np.ndarray, uv: np.ndarray) -> tuple[int, ...]:
    """RGB at the pixel nearest to ``uv`` (x, y)."""
    return tuple(int(c) for c in image[int(round(uv[1])), int(round(uv[0]))])


def mask(image: np.ndarray, rgb: tuple[int, int, int], tol: float = 40.0) -> np.ndarray:
    """Pixels within ``tol`` (Euclidean, 0..255) of ``rgb``."""
    return np.linalg.norm(image.astype(np.float64) - np.array(rgb, np.float64), axis=-1) < tol


def write_processed(root: Path, poses: list[np.ndarray], sides: tuple[str, ...] = ("front", "back")) -> Path:
    """A processed folder in our labels format: S9 Walking-1, frames 0, 5, ..., one row per (frame, camera),
    grey 128-pixel crops; camera 0 faces the figure from the front, camera 1 from the back."""
    from ctxpose.data.labels import FORMAT, VERSION, Labels

    cams = ["54138969", "55011271"]
    cols: dict[str, list] = {k: [] for k in ("subject", "action", "trial", "camera", "camera_index", "frame",
                                             "keypoints_3d", "bbox", "K", "R", "t", "dist", "image")}
    for f, kp in enumerate(poses):
        frame = 5 * f
        for c, side in enumerate(sides):
            R, t = facing_camera(side)
            rel = f"images/S9/Walking-1/{cams[c]}/{frame:06d}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), np.full((CROP, CROP, 3), 90, np.uint8))
            for k, v in (("subject", "S9"), ("action", "Walking"), ("trial", 1), ("camera", cams[c]),
                         ("camera_index", c), ("frame", frame), ("keypoints_3d", kp),
                         ("bbox", [10, 20, 10 + 2 * CROP, 20 + 2 * CROP]), ("K", K), ("R", R), ("t", t),
                         ("dist", np.zeros(5)), ("image", rel)):
                cols[k].append(v)
    meta = {"format": FORMAT, "version": VERSION, "skeleton": SK.name, "image_size": CROP}
    Labels(**{k: np.array(v) for k, v in cols.items()}, meta=meta).save(root / "labels.npz")
    (root / "meta.json").write_text(json.dumps(meta))
    return root
