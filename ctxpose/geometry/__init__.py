"""Camera geometry, lens distortion, rotations and coordinate volumes."""

from ctxpose.geometry.cameras import (
    Camera,
    camera_to_pixels,
    crop_camera,
    crop_intrinsics,
    crop_resize_intrinsics,
    project_points,
    projection_matrix,
    scale_intrinsics,
    world_to_camera,
)
from ctxpose.geometry.distortion import (
    distort_normalized,
    opencv_coefficients,
    undistort_crop_maps,
    undistort_normalized,
    undistort_pixels,
)

__all__ = [
    "Camera",
    "camera_to_pixels",
    "crop_camera",
    "crop_intrinsics",
    "crop_resize_intrinsics",
    "distort_normalized",
    "opencv_coefficients",
    "project_points",
    "projection_matrix",
    "scale_intrinsics",
    "undistort_crop_maps",
    "undistort_normalized",
    "undistort_pixels",
    "world_to_camera",
]
