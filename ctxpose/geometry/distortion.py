"""Lens distortion of points and images (numpy and torch).

Two distortion models share one coefficient layout ``dist = (k1, k2, p1, p2, k3)`` (OpenCV order):

* ``"opencv"``: OpenCV's Brown–Conrady model (what ``cv2.projectPoints`` does with 5 coefficients)::

      x_d = x * radial + 2 p1 x y + p2 (r2 + 2 x^2)
      y_d = y * radial + p1 (r2 + 2 y^2) + 2 p2 x y

* ``"h36m"``: the model of the Human3.6M release (``utils/ProjectPointRadial.m``; also the meshgrid the
  original ContextPose ``undistort-h36m.py`` builds)::

      x_d = x * radial + p1 x y + p2 (r2 + x^2)
      y_d = y * radial + p2 x y + p1 (r2 + y^2)

  It is the OpenCV 12-coefficient thin-prism model with ``(k1, k2, p1/2, p2/2, k3, 0, 0, 0, p2/2, 0, p1/2, 0)``
  (:func:`opencv_coefficients` returns that vector, so ``cv2`` can reproduce it exactly).

In both, ``radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3`` and ``r2 = x^2 + y^2`` on normalized coordinates
``(x, y) = (X / Z, Y / Z)`` of the camera frame.

Pixel convention: integer pixel coordinates are pixel centres, in projection (``K``) and in ``cv2.remap``
alike, so an image produced by :func:`undistort_crop_maps` + ``cv2.remap`` shows a 3D point exactly where a
pinhole camera with ``K_out`` projects it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ctxpose.utils.arrays import torch_of

if TYPE_CHECKING:
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor")

DIST_MODELS = ("opencv", "h36m")


def _check_model(model: str) -> None:
    if model not in DIST_MODELS:
        raise ValueError(f"unknown distortion model {model!r}; expected one of {DIST_MODELS}")


def _like(value: np.ndarray | torch.Tensor, ref: Array) -> Array:
    """``value`` converted to the array type (and dtype/device) of ``ref``."""
    if (torch := torch_of(ref)) is not None:
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            value = value.copy()  # torch warns on read-only arrays (Camera stores its arrays read-only)
        return torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    return np.asarray(value, dtype=ref.dtype)


def _stack_last(parts: list[Array]) -> Array:
    if (torch := torch_of(parts[0])) is not None:
        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def _distortion_terms(x: Array, y: Array, dist: Array, model: str) -> tuple[Array, Array, Array]:
    """Radial factor and tangential offsets at normalized points.

    Args:
        x, y: (..., N) normalized undistorted coordinates.
        dist: (..., 5) coefficients (k1, k2, p1, p2, k3).
        model: "opencv" or "h36m".

    Returns:
        radial (..., N), dx (..., N), dy (..., N) with ``x_d = x * radial + dx``, ``y_d = y * radial + dy``.
    """
    k1, k2, p1, p2, k3 = (dist[..., i, None] for i in range(5))
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xy = x * y
    if model == "opencv":
        dx = 2 * p1 * xy + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * xy
    else:
        dx = p1 * xy + p2 * (r2 + x * x)
        dy = p2 * xy + p1 * (r2 + y * y)
    return radial, dx, dy


def distort_normalized(xy: Array, dist: Array | np.ndarray, model: str = "opencv") -> Array:
    """Applies lens distortion to normalized image coordinates.

    Args:
        xy: (..., N, 2) undistorted normalized coordinates (X/Z, Y/Z), camera frame, unitless.
        dist: (..., 5) distortion coefficients (k1, k2, p1, p2, k3); leading dims broadcast with ``xy``'s.
        model: "opencv" (cv2) or "h36m" (Human3.6M release), see the module docstring.

    Returns:
        (..., N, 2) distorted normalized coordinates, same type/dtype/device as ``xy``.
    """
    _check_model(model)
    dist = _like(dist, xy)
    x, y = xy[..., 0], xy[..., 1]
    radial, dx, dy = _distortion_terms(x, y, dist, model)
    return _stack_last([x * radial + dx, y * radial + dy])


def _pixels_to_normalized(uv: Array, K: Array) -> Array:
    """(..., N, 2) pixels -> (..., N, 2) normalized coordinates with intrinsics K (..., 3, 3), skew allowed."""
    fx, s, cx = (K[..., 0, i, None] for i in range(3))
    fy, cy = K[..., 1, 1, None], K[..., 1, 2, None]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - s * y) / fx
    return _stack_last([x, y])


def _normalized_to_pixels(xy: Array, K: Array) -> Array:
    """(..., N, 2) normalized coordinates -> (..., N, 2) pixels with intrinsics K (..., 3, 3)."""
    fx, s, cx = (K[..., 0, i, None] for i in range(3))
    fy, cy = K[..., 1, 1, None], K[..., 1, 2, None]
    x, y = xy[..., 0], xy[..., 1]
    return _stack_last([fx * x + s * y + cx, fy * y + cy])


def undistort_normalized(
    xy_distorted: Array, dist: Array | np.ndarray, iterations: int = 20, model: str = "opencv"
) -> Array:
    """Inverts :func:`distort_normalized` by fixed-point iteration (the scheme of ``cv2.undistortPoints``).

    Args:
        xy_distorted: (..., N, 2) distorted normalized coordinates.
        dist: (..., 5) coefficients (k1, k2, p1, p2, k3).
        iterations: fixed-point steps; 20 brings Human3.6M points anywhere in the frame below 1e-6 px.
        model: "opencv" or "h36m".

    Returns:
        (..., N, 2) undistorted normalized coordinates.
    """
    _check_model(model)
    dist = _like(dist, xy_distorted)
    xd, yd = xy_distorted[..., 0], xy_distorted[..., 1]
    x, y = xd, yd
    for _ in range(iterations):
        radial, dx, dy = _distortion_terms(x, y, dist, model)
        x, y = (xd - dx) / radial, (yd - dy) / radial
    return _stack_last([x, y])


def undistort_pixels(
    uv: Array,
    K: Array | np.ndarray,
    dist: Array | np.ndarray,
    iterations: int = 20,
    model: str = "opencv",
) -> Array:
    """Removes lens distortion from pixel coordinates (like ``cv2.undistortPoints(uv, K, dist, P=K)``).

    Args:
        uv: (..., N, 2) distorted pixel coordinates (pixel centres at integers), px.
        K: (..., 3, 3) intrinsics, px.
        dist: (..., 5) coefficients (k1, k2, p1, p2, k3).
        iterations: fixed-point steps of the inverse.
        model: "opencv" or "h36m".

    Returns:
        (..., N, 2) pixel coordinates a distortion-free camera with the same K would observe, px.
    """
    K = _like(K, uv)
    xy = undistort_normalized(_pixels_to_normalized(uv, K), dist, iterations=iterations, model=model)
    return _normalized_to_pixels(xy, K)


def undistort_crop_maps(
    K: np.ndarray,
    dist: np.ndarray,
    K_out: np.ndarray,
    out_hw: tuple[int, int],
    model: str = "opencv",
) -> tuple[np.ndarray, np.ndarray]:
    """Maps for ONE ``cv2.remap`` from the distorted full frame to an undistorted crop with intrinsics K_out.

    For each output pixel (u, v) the ray ``K_out^-1 (u, v, 1)`` is distorted with ``dist`` and mapped with
    ``K`` into the source frame. Pixel centres are at integer coordinates on both sides (``cv2.remap``'s
    convention), so the output is exactly the image of a pinhole camera with intrinsics ``K_out``.

    Args:
        K: (3, 3) intrinsics of the distorted source frame, px.
        dist: (5,) coefficients (k1, k2, p1, p2, k3) of the source camera.
        K_out: (3, 3) pinhole intrinsics of the output image, px (e.g. ``crop_camera(...).K`` from
            :mod:`ctxpose.geometry.cameras`).
        out_hw: output (height, width), px.
        model: "opencv" or "h36m".

    Returns:
        map_x, map_y: (H_out, W_out) float32 source coordinates, for ``cv2.remap(src, map_x, map_y, ...)``.
    """
    _check_model(model)
    height, width = int(out_hw[0]), int(out_hw[1])
    K = np.asarray(K, dtype=np.float64)
    K_out = np.asarray(K_out, dtype=np.float64)
    dist = np.asarray(dist, dtype=np.float64).reshape(5)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    uv = np.stack([u.ravel(), v.ravel()], axis=-1)
    xy = _pixels_to_normalized(uv, K_out)
    xy = distort_normalized(xy, dist, model=model)
    src = _normalized_to_pixels(xy, K)
    map_x = src[:, 0].reshape(height, width).astype(np.float32)
    map_y = src[:, 1].reshape(height, width).astype(np.float32)
    return map_x, map_y


def opencv_coefficients(dist: np.ndarray, model: str = "opencv") -> np.ndarray:
    """Coefficients for OpenCV functions (``cv2.projectPoints``, ``cv2.undistortPoints``, ...).

    Args:
        dist: (5,) coefficients (k1, k2, p1, p2, k3) of ``model``.
        model: "opencv" (returned unchanged) or "h36m" (returned as the equivalent 12-coefficient
            thin-prism vector, see the module docstring).

    Returns:
        (5,) or (12,) float64 coefficients in OpenCV's order.
    """
    _check_model(model)
    k1, k2, p1, p2, k3 = np.asarray(dist, dtype=np.float64).reshape(5)
    if model == "opencv":
        return np.array([k1, k2, p1, p2, k3])
    return np.array([k1, k2, p1 / 2, p2 / 2, k3, 0.0, 0.0, 0.0, p2 / 2, 0.0, p1 / 2, 0.0])
