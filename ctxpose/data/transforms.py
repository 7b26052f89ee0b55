"""Pure image and camera transforms: crop, resize, normalise, HWC -> CHW.

These mirror what the original loader (learnable-triangulation / ContextPose ``Human36MMultiViewDataset``
with ``mvn/utils/img.py`` and ``Camera.update_after_crop/resize``) does to each view, so that samples read
from the original processed layout are the same as the original's:

- images are read with OpenCV and therefore stay in **BGR** channel order; the original normalises them with
  the ImageNet mean/std given in RGB order without converting. The released weights were trained on that, so
  :func:`normalize_to_tensor` does the same.
- crop: the box (left, top, right, bottom), right/bottom exclusive, zero-filled outside the image; the
  intrinsics' principal point moves by (-left, -top).
- resize: ``cv2.INTER_AREA``; fx, cx scale by new_w / w, fy, cy by new_h / h.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ctxpose.geometry.cameras import Camera, crop_camera, crop_resize_intrinsics
from ctxpose.geometry.distortion import undistort_crop_maps

#: ImageNet statistics in RGB order (as the original, which applies them to BGR images).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
# (x / 255 - mean) / std == x * _SCALE - _OFFSET, evaluated in float32 (within 1e-6 of the float64 formula)
_SCALE = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32)
_OFFSET = (IMAGENET_MEAN / IMAGENET_STD).astype(np.float32)


def normalize_to_tensor(image: np.ndarray) -> np.ndarray:
    """ImageNet normalisation ``(image / 255 - mean) / std`` as the original, and HWC -> CHW, in one pass.

    The channels stay in OpenCV's BGR order and get the RGB-ordered statistics, as in the original (see the
    module docstring). Arithmetic is float32 (within 1e-6 of the float64 formula).

    Args:
        image: (H, W, 3) uint8 BGR image as read by ``cv2.imread``.

    Returns:
        (3, H, W) float32 contiguous normalised image.
    """
    out = np.empty((image.shape[2], *image.shape[:2]), dtype=np.float32)
    for k, plane in enumerate(cv2.split(image)):  # contiguous planes: much faster than a strided transpose
        np.multiply(plane, _SCALE[k], out=out[k], dtype=np.float32)
        out[k] -= _OFFSET[k]
    return out


def tensor_to_image(image_chw: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize_to_tensor`: a network input back to the picture (for drawing).

    Args:
        image_chw: (3, H, W) float normalised BGR image.

    Returns:
        (H, W, 3) uint8 BGR image (rounded, clipped to 0..255).
    """
    chw = np.asarray(image_chw, dtype=np.float64)
    hwc = (chw.transpose(1, 2, 0) + _OFFSET.astype(np.float64)) / _SCALE.astype(np.float64)
    return np.clip(hwc, 0, 255).round().astype(np.uint8)


def scale_bbox(bbox: Sequence[int] | np.ndarray, scale: float) -> np.ndarray:
    """Scale boxes about their centre with the original's integer arithmetic.

    Args:
        bbox: (..., 4) integer boxes (left, top, right, bottom), px.
        scale: size factor.

    Returns:
        (..., 4) int64 boxes (left, top, right, bottom), px.
    """
    left, top, right, bottom = np.moveaxis(np.asarray(bbox, dtype=np.int64), -1, 0)
    x_center, y_center = (right + left) // 2, (bottom + top) // 2
    new_width = np.trunc(scale * (right - left)).astype(np.int64)
    new_height = np.trunc(scale * (bottom - top)).astype(np.int64)
    new_left, new_top = x_center - new_width // 2, y_center - new_height // 2
    return np.stack([new_left, new_top, new_left + new_width, new_top + new_height], axis=-1)


def crop_image(image: np.ndarray, bbox: Sequence[int]) -> np.ndarray:
    """Crop a box; parts outside the image are zeros (the output always has the box's size).

    Args:
        image: (H, W, C) image.
        bbox: (left, top, right, bottom) integers, px; right/bottom exclusive.

    Returns:
        (bottom - top, right - left, C) crop, same dtype.
    """
    left, top, right, bottom = (int(v) for v in bbox)
    h, w = image.shape[:2]
    out = np.zeros((bottom - top, right - left, *image.shape[2:]), dtype=image.dtype)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
    if x1 > x0 and y1 > y0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def resize_image(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize to ``shape`` = (H, W) with area interpolation (as the original)."""
    height, width = int(shape[0]), int(shape[1])
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def crop_and_resize(image: np.ndarray, K: np.ndarray, bbox: Sequence[int] | None,
                    shape: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Crop to ``bbox`` (if given), then resize to ``shape`` (if given), updating the intrinsics.

    Args:
        image: (H, W, 3) full frame.
        K: (3, 3) intrinsics of ``image``, px.
        bbox: (left, top, right, bottom) integer box or None.
        shape: output (H, W) or None.

    Returns:
        (image, K) for the output image.
    """
    box = tuple(bbox) if bbox is not None else (0, 0, image.shape[1], image.shape[0])
    if bbox is not None:
        image = crop_image(image, bbox)
    out_hw = tuple(int(v) for v in shape) if shape is not None else image.shape[:2]
    return resize_image(image, out_hw), crop_resize_intrinsics(K, box, out_hw)


def undistorted_crop(image: np.ndarray, camera: Camera, bbox: Sequence[float] | np.ndarray,
                     out_hw: tuple[int, int]) -> tuple[np.ndarray, Camera]:
    """The undistorted crop of ``bbox`` resized to ``out_hw``, made by ONE ``cv2.remap`` of the full frame.

    Undistortion, crop and resize are folded into one map
    (:func:`ctxpose.geometry.distortion.undistort_crop_maps`); pixels outside the frame are black.

    Args:
        image: (H, W, 3) full (distorted) frame of ``camera``.
        camera: the frame's camera (its distortion model and coefficients are undone).
        bbox: (left, top, right, bottom) box in the full frame, px.
        out_hw: (height, width) of the crop.

    Returns:
        (crop, crop_camera): the crop is the image of the pinhole ``crop_camera(camera, bbox, out_hw)``.
    """
    crop_cam = crop_camera(camera, bbox, out_hw)
    map_x, map_y = undistort_crop_maps(camera.K, camera.dist, crop_cam.K, out_hw, camera.dist_model)
    crop = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, crop_cam
