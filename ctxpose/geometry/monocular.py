"""One uncalibrated image: the camera, the upright world and the 3D root that ``ctxpose infer`` assumes.

Frames and units as :mod:`ctxpose.geometry.cameras`: camera x right, y down, z forward, mm; pixels with
centres at integers. The network's world has z up (its cuboid rotates about z). From one image we know
neither the camera's height nor its roll, so the world is the camera frame turned upright, assuming no roll:
world x = camera x, world z = up, the camera at the world origin (``t = 0``), looking along world +y tilted
down by ``pitch`` degrees (:func:`upright_rotation`; with pitch 0 it is the rotation ``eval --dataset 3dhp``
uses for the test camera).

The root (the pelvis, centre of the cuboid) is a point on the ray of a 2D pelvis at a depth estimated from:

* the person's apparent size (RootNet, Moon et al. 2019): ``k = sqrt(A_real fx fy / A_box)`` with the
  RootNet constants (a 2000 x 2000 mm person area; the box squared and grown by 1.25), :func:`rootnet_depth`;
* the bone lengths (:func:`bone_length_depth`): the depth at which the 2D joints, lifted along their rays with
  the network's relative depths, have the limb-length prior's bone lengths (weighted least squares).
"""

from __future__ import annotations

import math

import numpy as np

#: horizontal field of view assumed when the user gives no camera, degrees
DEFAULT_FOV_DEG = 60.0
#: RootNet's real-world area of a person's (squared) box, mm^2, and its box growth
ROOTNET_AREA_MM2 = 2000.0 * 2000.0
ROOTNET_BOX_SCALE = 1.25
#: the real length of a person box's longer side RootNet's constants imply (2000 / 1.25), mm
ROOTNET_PERSON_SIZE_MM = math.sqrt(ROOTNET_AREA_MM2) / ROOTNET_BOX_SCALE


def person_area_mm2(person_size_mm: float) -> float:
    """RootNet's ``A_real`` for a person whose box's longer side is ``person_size_mm`` long (before the 1.25
    growth): ``(1.25 * size)^2``; RootNet's own 2000 x 2000 mm is a 1600 mm box side."""
    return (ROOTNET_BOX_SCALE * person_size_mm) ** 2


def intrinsics_from_fov(image_hw: tuple[int, int], fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """(3, 3) intrinsics of a pinhole with horizontal field of view ``fov_deg`` over an image of ``image_hw``
    (height, width) px, square pixels, principal point at the image centre ((w - 1) / 2, (h - 1) / 2)."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"field of view {fov_deg} deg: expected 0 < fov < 180")
    h, w = image_hw
    f = (w / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return intrinsics_from_focal(image_hw, f)


def intrinsics_from_focal(image_hw: tuple[int, int], focal_px: float) -> np.ndarray:
    """(3, 3) intrinsics with ``fx = fy = focal_px`` and the principal point at the image centre."""
    if not focal_px > 0:
        raise ValueError(f"focal length {focal_px} px: expected > 0")
    h, w = image_hw
    return np.array([[focal_px, 0.0, (w - 1) / 2.0], [0.0, focal_px, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def upright_rotation(pitch_deg: float = 0.0) -> np.ndarray:
    """(3, 3) world -> camera rotation (``x_cam = R x_world``) of a camera without roll, tilted down by
    ``pitch_deg``: world z is up, world x is camera x, the optical axis is ``(0, cos p, -sin p)`` in the world."""
    p = math.radians(pitch_deg)
    c, s = math.cos(p), math.sin(p)
    upright = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # pitch 0: camera y = -world z
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])  # about the camera's x axis
    return tilt @ upright


def rootnet_depth(box_wh: np.ndarray, fx: float, fy: float, area_mm2: float = ROOTNET_AREA_MM2,
                  box_scale: float = ROOTNET_BOX_SCALE) -> np.ndarray:
    """RootNet's depth ``k = sqrt(A_real fx fy / A_box)`` of people from their boxes.

    Args:
        box_wh: (..., 2) box width and height, px (undistorted image).
        fx, fy: focal lengths, px.
        area_mm2: the person's real area (RootNet: 2000 mm x 2000 mm).
        box_scale: the box is squared (its longer side) and grown by this factor, as RootNet does.

    Returns:
        (...,) depth along the optical axis, mm.
    """
    side = np.max(np.asarray(box_wh, np.float64), axis=-1) * box_scale
    return np.sqrt(area_mm2 * fx * fy / np.maximum(side, 1e-6) ** 2)


def back_project(uv: np.ndarray, K: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Points at ``depth`` (mm along the optical axis) on the rays of pixels ``uv`` (..., 2) of the pinhole ``K``;
    returns (..., 3) camera-frame mm."""
    uv, depth = np.asarray(uv, np.float64), np.asarray(depth, np.float64)
    x = (uv[..., 0] - K[0, 2] - K[0, 1] * (uv[..., 1] - K[1, 2]) / K[1, 1]) / K[0, 0]
    y = (uv[..., 1] - K[1, 2]) / K[1, 1]
    return np.stack([x * depth, y * depth, depth], axis=-1)


def lifted(uv: np.ndarray, K: np.ndarray, root_depth: float | np.ndarray, relative_depth: np.ndarray) -> np.ndarray:
    """2D joints (..., J, 2) lifted along their rays to the depths ``root_depth + relative_depth`` (..., J) mm."""
    return back_project(uv, K, np.asarray(root_depth, np.float64)[..., None] + relative_depth)


def bone_length_depth(uv: np.ndarray, K: np.ndarray, relative_depth: np.ndarray, bones: np.ndarray,
                      mean: np.ndarray, std: np.ndarray, search: tuple[float, float] = (500.0, 30000.0)) -> np.ndarray:
    """The root depth at which the lifted 2D pose has the prior's bone lengths, per person.

    Minimises ``sum_b ((|X_a(Z) - X_b(Z)| - mean_b) / std_b)^2`` over the root depth Z, where ``X_j(Z)`` is
    joint j's pixel lifted along its ray to depth ``Z + relative_depth_j``: a geometric grid over ``search``
    (1% steps), then golden-section refinement to 0.1 mm around the best grid point.

    Args:
        uv: (N, J, 2) 2D joints in the undistorted image, px.
        K: (3, 3) intrinsics, px.
        relative_depth: (N, J) each joint's depth minus the root's, mm (the network's 3D pose).
        bones: (L, 2) joint index pairs; mean, std: (L,) bone-length prior, mm.
        search: depth range, mm.

    Returns:
        (N,) depth of the root along the optical axis, mm.
    """
    uv, relative_depth = np.asarray(uv, np.float64), np.asarray(relative_depth, np.float64)
    bones = np.asarray(bones, np.int64)
    weight = 1.0 / np.maximum(np.asarray(std, np.float64), 1.0) ** 2
    mean = np.asarray(mean, np.float64)

    def cost(z: np.ndarray) -> np.ndarray:  # z (N, G) -> (N, G)
        pts = back_project(uv[:, None], K, z[..., None] + relative_depth[:, None])  # (N, G, J, 3)
        lengths = np.linalg.norm(pts[..., bones[:, 0], :] - pts[..., bones[:, 1], :], axis=-1)  # (N, G, L)
        return ((lengths - mean) ** 2 * weight).sum(-1)

    n = len(uv)
    grid = np.geomspace(search[0], search[1], int(np.log(search[1] / search[0]) / np.log(1.01)) + 1)
    k = np.argmin(cost(np.broadcast_to(grid, (n, len(grid)))), axis=1)
    lo, hi = grid[np.maximum(k - 1, 0)], grid[np.minimum(k + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    while np.any(hi - lo > 0.1):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        left = cost(np.stack([a, b], axis=1))
        better_a = left[:, 0] < left[:, 1]
        hi, lo = np.where(better_a, b, hi), np.where(better_a, lo, a)
    return (lo + hi) / 2
