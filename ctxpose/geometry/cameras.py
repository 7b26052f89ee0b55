"""Pinhole cameras with lens distortion: projection matrices, crop/resize updates of the intrinsics.

Frames and units: world and camera coordinates in mm; the camera frame has x right, y down, z forward;
``x_cam = R @ x_world + t`` (OpenCV-style extrinsics; Human3.6M stores the camera centre ``T``, so
``t = -R @ T``). Pixels are px with pixel centres at integer coordinates (the convention of ``cv2.remap``).

The free functions work on numpy arrays and torch tensors alike (the result has the type, dtype and device of
the first array argument) and accept leading batch dimensions. :class:`Camera` holds one camera as float64
numpy arrays and mirrors the original ``mvn.utils.multiview.Camera`` (``update_after_crop`` /
``update_after_resize``) but is immutable: ``cropped`` and ``resized`` return new cameras.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ctxpose.geometry.distortion import DIST_MODELS, _like, distort_normalized
from ctxpose.utils.arrays import torch_of

if TYPE_CHECKING:
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor")
BBox = Sequence[float] | np.ndarray


def _transpose(a: Array) -> Array:
    if torch_of(a) is not None:
        return a.transpose(-1, -2)
    return np.swapaxes(a, -1, -2)


def _cat_last(parts: list[Array]) -> Array:
    if (torch := torch_of(parts[0])) is not None:
        return torch.cat(parts, dim=-1)
    return np.concatenate(parts, axis=-1)


def _copy(a: Array) -> Array:
    return a.clone() if torch_of(a) is not None else np.array(a, copy=True)


def world_to_camera(points: Array, R: Array | np.ndarray, t: Array | np.ndarray) -> Array:
    """Moves points from the world frame to the camera frame: ``x_cam = R @ x_world + t``.

    Args:
        points: (..., N, 3) world coordinates, mm.
        R: (..., 3, 3) world->camera rotation.
        t: (..., 3) world->camera translation, mm.

    Returns:
        (..., N, 3) camera coordinates, mm.
    """
    R, t = _like(R, points), _like(t, points)
    return points @ _transpose(R) + t[..., None, :]


def projection_matrix(K: Array, R: Array | np.ndarray, t: Array | np.ndarray) -> Array:
    """``K @ [R | t]``.

    Args:
        K: (..., 3, 3) intrinsics, px.
        R: (..., 3, 3) world->camera rotation.
        t: (..., 3) world->camera translation, mm.

    Returns:
        (..., 3, 4) projection matrix (world mm -> homogeneous px).
    """
    R, t = _like(R, K), _like(t, K)
    return K @ _cat_last([R, t[..., :, None]])


#: Homogeneous depth (mm for ``K [R | t]`` with ``K[2] = (0, 0, 1)``) at or below which a point has no projection.
MIN_PROJECTION_DEPTH = 1e-6


def project_points(points_world: Array, proj: Array | np.ndarray) -> Array:
    """Pinhole projection (no distortion) with a projection matrix.

    A point at or behind the camera (homogeneous depth ``<= MIN_PROJECTION_DEPTH``) has no image: both its
    coordinates are NaN (a plain division would give inf at depth 0 and, behind the camera, a mirrored point
    that looks valid). Gradients stay finite for the other points. Other points are unchanged: ``xy / depth``.

    Args:
        points_world: (..., N, 3) world coordinates, mm.
        proj: (..., 3, 4) projection matrices (world -> homogeneous px) whose third row gives the depth along
            the optical axis (positive in front of the camera), as ``K [R | t]`` does.

    Returns:
        (..., N, 2) pixel coordinates, px; NaN for points at or behind the camera.
    """
    proj = _like(proj, points_world)
    homogeneous = points_world @ _transpose(proj[..., :3]) + proj[..., None, :, 3]
    xy, depth = homogeneous[..., :2], homogeneous[..., 2:3]
    visible = depth > MIN_PROJECTION_DEPTH
    if (torch := torch_of(depth)) is not None:
        pixels = xy / torch.where(visible, depth, torch.ones_like(depth))  # no inf/NaN, not even in backward
        return torch.where(visible, pixels, torch.full_like(pixels, float("nan")))
    pixels = xy / np.where(visible, depth, 1.0)
    return np.where(visible, pixels, np.nan).astype(pixels.dtype, copy=False)


def camera_to_pixels(
    points_cam: Array,
    K: Array | np.ndarray,
    dist: Array | np.ndarray | None = None,
    model: str = "opencv",
) -> Array:
    """Projects camera-frame points to pixels, with lens distortion when ``dist`` is given.

    Args:
        points_cam: (..., N, 3) camera coordinates, mm (depth > 0).
        K: (..., 3, 3) intrinsics, px.
        dist: (..., 5) distortion coefficients (k1, k2, p1, p2, k3) or None for a pinhole.
        model: distortion model, "opencv" or "h36m" (see :mod:`ctxpose.geometry.distortion`).

    Returns:
        (..., N, 2) pixel coordinates, px.
    """
    K = _like(K, points_cam)
    xy = points_cam[..., :2] / points_cam[..., 2:3]
    if dist is not None:
        xy = distort_normalized(xy, dist, model=model)
    return xy @ _transpose(K[..., :2, :2]) + K[..., None, :2, 2]


def crop_intrinsics(K: Array, bbox: BBox | Array) -> Array:
    """Intrinsics after cropping the image to ``bbox`` (principal point shifted by the top-left corner).

    Args:
        K: (..., 3, 3) intrinsics, px.
        bbox: (..., 4) crop box (left, top, right, bottom), px; right/bottom are unused.

    Returns:
        (..., 3, 3) intrinsics of the crop, px (the original ``update_after_crop``).
    """
    bbox = _like(bbox, K)
    out = _copy(K)
    out[..., 0, 2] = K[..., 0, 2] - bbox[..., 0]
    out[..., 1, 2] = K[..., 1, 2] - bbox[..., 1]
    return out


def scale_intrinsics(K: Array, old_hw: tuple[float, float], new_hw: tuple[float, float]) -> Array:
    """Intrinsics after resizing the image from ``old_hw`` to ``new_hw``.

    Follows the original ``update_after_resize``: ``fx, cx`` scale by ``W'/W`` and ``fy, cy`` by ``H'/H``
    (the skew, zero for every dataset here, scales with x). Note that with pixel centres at integers the
    exact update of ``cx`` for ``cv2.resize`` would be ``(cx + 0.5) * W'/W - 0.5``; the difference is
    ``0.5 * |1 - W'/W|`` px (0.1 px for a 500 -> 384 crop) and we keep the original's formula.

    Args:
        K: (..., 3, 3) intrinsics, px.
        old_hw: image (height, width) before resizing, px.
        new_hw: image (height, width) after resizing, px.

    Returns:
        (..., 3, 3) intrinsics of the resized image, px.
    """
    scale_x = float(new_hw[1]) / float(old_hw[1])
    scale_y = float(new_hw[0]) / float(old_hw[0])
    out = _copy(K)
    out[..., 0, :] = K[..., 0, :] * scale_x
    out[..., 1, :] = K[..., 1, :] * scale_y
    return out


def _readonly_float64(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    if torch_of(value) is not None:
        value = value.detach().cpu().numpy()
    array = np.array(value, dtype=np.float64, copy=True)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"Camera.{name}: expected shape {shape}, got {array.shape}")
    array = array.reshape(shape)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated camera.

    Attributes:
        R: (3, 3) world->camera rotation.
        t: (3,) world->camera translation, mm (``x_cam = R @ x_world + t``).
        K: (3, 3) intrinsics, px.
        dist: (5,) distortion coefficients (k1, k2, p1, p2, k3); zeros for a pinhole.
        name: camera id, e.g. "54138969".
        dist_model: how ``dist`` is applied: "opencv" or "h36m" (Human3.6M cameras use "h36m", see
            :mod:`ctxpose.geometry.distortion`).

    Arrays are stored as read-only float64 copies. Compare cameras with :meth:`allclose`.
    """

    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))
    name: str = ""
    dist_model: str = "opencv"

    def __post_init__(self) -> None:
        object.__setattr__(self, "R", _readonly_float64(self.R, (3, 3), "R"))
        object.__setattr__(self, "t", _readonly_float64(self.t, (3,), "t"))
        object.__setattr__(self, "K", _readonly_float64(self.K, (3, 3), "K"))
        dist = np.zeros(5) if self.dist is None else self.dist
        object.__setattr__(self, "dist", _readonly_float64(dist, (5,), "dist"))
        if self.dist_model not in DIST_MODELS:
            raise ValueError(f"Camera.dist_model: expected one of {DIST_MODELS}, got {self.dist_model!r}")

    @property
    def extrinsics(self) -> np.ndarray:
        """(3, 4) ``[R | t]`` (world mm -> camera mm)."""
        return np.hstack([self.R, self.t[:, None]])

    @property
    def projection(self) -> np.ndarray:
        """(3, 4) ``K @ [R | t]`` (world mm -> homogeneous px), without distortion."""
        return self.K @ self.extrinsics

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, mm (``-R^T t``)."""
        return -self.R.T @ self.t

    @property
    def has_distortion(self) -> bool:
        """Whether any distortion coefficient is non-zero."""
        return bool(np.any(self.dist != 0))

    def cropped(self, bbox: BBox) -> Camera:
        """The camera of the image cropped to ``bbox`` = (left, top, right, bottom), px."""
        return replace(self, K=crop_intrinsics(self.K, np.asarray(bbox, dtype=np.float64)))

    def resized(self, old_hw: tuple[float, float], new_hw: tuple[float, float]) -> Camera:
        """The camera of the image resized from ``old_hw`` to ``new_hw`` = (height, width), px."""
        return replace(self, K=scale_intrinsics(self.K, old_hw, new_hw))

    def undistorted(self) -> Camera:
        """The same camera without lens distortion (a pinhole with the same R, t, K)."""
        return replace(self, dist=np.zeros(5))

    def project(self, points_world: Array, distort: bool = True) -> Array:
        """Projects world points to pixels.

        Args:
            points_world: (..., N, 3) world coordinates, mm; numpy or torch.
            distort: apply this camera's lens distortion.

        Returns:
            (..., N, 2) pixel coordinates, px, same type/dtype/device as ``points_world``.
        """
        points_cam = world_to_camera(points_world, self.R, self.t)
        dist = self.dist if distort and self.has_distortion else None
        return camera_to_pixels(points_cam, self.K, dist, model=self.dist_model)

    def allclose(self, other: Camera, rtol: float = 1e-9, atol: float = 1e-9) -> bool:
        """Whether two cameras have the same name, model and (numerically) the same parameters."""
        return (
            self.name == other.name
            and self.dist_model == other.dist_model
            and all(
                np.allclose(getattr(self, key), getattr(other, key), rtol=rtol, atol=atol)
                for key in ("R", "t", "K", "dist")
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (lists of floats); inverse of :meth:`from_dict`."""
        return {
            "name": self.name,
            "R": self.R.tolist(),
            "t": self.t.tolist(),
            "K": self.K.tolist(),
            "dist": self.dist.tolist(),
            "dist_model": self.dist_model,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Camera:
        """Camera from :meth:`to_dict` output."""
        return cls(
            R=data["R"],
            t=data["t"],
            K=data["K"],
            dist=data.get("dist"),
            name=str(data.get("name", "")),
            dist_model=str(data.get("dist_model", "opencv")),
        )


def crop_camera(camera: Camera, bbox: BBox, out_hw: tuple[int, int]) -> Camera:
    """The undistorted camera of an image cropped to ``bbox`` and resized to ``out_hw``.

    Pair it with :func:`ctxpose.geometry.distortion.undistort_crop_maps` to build that image in one
    ``cv2.remap`` from the distorted full frame::

        crop_cam = crop_camera(camera, bbox, (256, 256))
        map_x, map_y = undistort_crop_maps(camera.K, camera.dist, crop_cam.K, (256, 256), camera.dist_model)
        crop = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR)

    Args:
        camera: camera of the full (distorted) frame.
        bbox: (left, top, right, bottom) crop box in the full frame, px; may extend past the frame.
        out_hw: output (height, width), px.

    Returns:
        Camera with K = resized(cropped(K)) (the original ``update_after_crop`` then ``update_after_resize``)
        and zero distortion.
    """
    return replace(camera.undistorted(), K=crop_resize_intrinsics(camera.K, bbox, out_hw))


def crop_resize_intrinsics(K: np.ndarray, bbox: BBox, out_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics of the image cropped to ``bbox`` and resized to ``out_hw``: the one composition of
    :func:`crop_intrinsics` and :func:`scale_intrinsics` (the original ``update_after_crop`` then
    ``update_after_resize``), used for the crops of the datasets and of preprocessing alike.

    Args:
        K: (3, 3) intrinsics of the full image, px.
        bbox: (left, top, right, bottom) crop box, px; may extend past the image.
        out_hw: output (height, width), px.

    Returns:
        (3, 3) float64 intrinsics of the output image, px.
    """
    left, top, right, bottom = (float(v) for v in np.asarray(bbox, dtype=np.float64).reshape(4))
    if right <= left or bottom <= top:
        raise ValueError(f"empty crop box {left, top, right, bottom}")
    cropped = crop_intrinsics(np.asarray(K, dtype=np.float64), np.array([left, top, right, bottom]))
    return scale_intrinsics(cropped, (bottom - top, right - left), out_hw)
