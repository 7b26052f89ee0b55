"""2D drawing with OpenCV: skeletons projected into images, boxes, cuboids, heatmaps, titles and grids.

All images are uint8 (H, W, 3) RGB. Points are float pixel coordinates with pixel centres at integers (the
convention of :mod:`ctxpose.geometry`); they are drawn with sub-pixel precision. A point that is not finite
(or has validity 0) is not drawn, and neither are its bones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ctxpose.errors import DataError
from ctxpose.geometry import project_points
from ctxpose.skeleton import Skeleton
from ctxpose.viz.style import BOX, CUBOID, HEADER_BG, OUTLINE, RGB, TEXT, Role, Style, bone_colors, joint_colors

_SHIFT = 4  # sub-pixel bits of cv2 drawing
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LIMIT = 1e6  # px; farther points are treated as not drawable (cv2 uses int32 coordinates)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    Raises:
        DataError: the file is missing or not an image.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: image missing or unreadable")
    return np.ascontiguousarray(image[:, :, ::-1])


def network_image_to_rgb(image_chw: Any) -> np.ndarray:
    """A normalised network input back to a picture.

    Args:
        image_chw: (3, H, W) float, ImageNet-normalised BGR as the dataset returns it (numpy or torch).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    from ctxpose.data.transforms import tensor_to_image

    if hasattr(image_chw, "detach"):
        image_chw = image_chw.detach().float().cpu().numpy()
    return np.ascontiguousarray(tensor_to_image(image_chw)[:, :, ::-1])


def resize_image(image: np.ndarray, height: int, width: int | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize to ``height`` (and ``width``; default: keep the aspect ratio).

    Returns:
        the resized image and the (x, y) scale factors, for :func:`scale_points`.
    """
    h, w = image.shape[:2]
    width = width if width is not None else max(1, round(w * height / h))
    if (h, w) == (height, width):
        return image, (1.0, 1.0)
    interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp), (width / w, height / h)


def scale_points(points: np.ndarray, scale_xy: tuple[float, float]) -> np.ndarray:
    """Pixel coordinates after :func:`resize_image` (exact for pixel centres at integers).

    Args:
        points: (..., 2) px in the original image.
        scale_xy: (x, y) scale factors.

    Returns:
        (..., 2) px in the resized image.
    """
    s = np.asarray(scale_xy, dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) + 0.5) * s - 0.5


def project(points_world: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """World points into an image through :func:`ctxpose.geometry.project_points` (the model's camera code).

    Args:
        points_world: (N, 3) world coordinates, mm.
        proj: (3, 4) projection matrix, world mm -> px.

    Returns:
        (N, 2) float64 px; rows that cannot be drawn (non-finite input, at or behind the camera) are NaN.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.asarray(project_points(np.asarray(points_world, np.float64), np.asarray(proj, np.float64)))
    uv = uv.astype(np.float64, copy=True)
    uv[~np.isfinite(uv).all(-1)] = np.nan
    return uv


def _drawable(points: np.ndarray, validity: np.ndarray | None) -> np.ndarray:
    ok = np.isfinite(points).all(-1) & (np.abs(np.nan_to_num(points)) < _LIMIT).all(-1)
    if validity is not None:
        ok &= np.asarray(validity).reshape(-1) > 0
    return ok


def _fixed(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * (1 << _SHIFT))), int(round(p[1] * (1 << _SHIFT)))


def draw_skeleton(image: np.ndarray, points: np.ndarray, skeleton: Skeleton, role: Role, style: Style,
                  validity: np.ndarray | None = None) -> np.ndarray:
    """Draw bones and joints into ``image`` (in place) in the left/right colours of ``role``.

    Args:
        image: (H, W, 3) uint8 RGB, contiguous.
        points: (J, 2) px.
        skeleton: joint order and bones.
        role: "pred" or "gt".
        style: sizes.
        validity: (J,) optional; joints with 0 are not drawn.

    Returns:
        ``image``.
    """
    points = np.asarray(points, dtype=np.float64)
    ok = _drawable(points, validity)
    bones = [(i, a, b) for i, (a, b) in enumerate(skeleton.bones) if ok[a] and ok[b]]
    bc, jc = bone_colors(skeleton, role), joint_colors(skeleton, role)
    r = style.radius << _SHIFT
    passes = ([(style.lw + 2 * style.outline, style.outline, True)] if style.outline else []) + [(style.lw, 0, False)]
    for thickness, _, dark in passes:
        for i, a, b in bones:
            cv2.line(image, _fixed(points[a]), _fixed(points[b]), OUTLINE if dark else bc[i], thickness,
                     cv2.LINE_AA, _SHIFT)
    for _, grow, dark in passes:
        for j in np.nonzero(ok)[0]:
            cv2.circle(image, _fixed(points[j]), r + (grow << _SHIFT), OUTLINE if dark else jc[j], -1,
                       cv2.LINE_AA, _SHIFT)
    return image


def draw_polyline(image: np.ndarray, points: np.ndarray, color: RGB, thickness: int, closed: bool = False) -> None:
    """Draw connected segments through ``points`` (N, 2) px in place, skipping segments with a missing end."""
    points = np.asarray(points, dtype=np.float64)
    ok = _drawable(points, None)
    n = len(points)
    for i in range(n if closed else n - 1):
        j = (i + 1) % n
        if ok[i] and ok[j]:
            cv2.line(image, _fixed(points[i]), _fixed(points[j]), color, thickness, cv2.LINE_AA, _SHIFT)


def draw_box(image: np.ndarray, bbox: Sequence[float], style: Style, color: RGB = BOX) -> None:
    """Draw a (left, top, right, bottom) box, px, in place."""
    left, top, right, bottom = (float(v) for v in bbox)
    corners = np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
    draw_polyline(image, corners, OUTLINE, style.lw + 2 * style.outline, closed=True)
    draw_polyline(image, corners, color, style.lw, closed=True)


#: the 12 edges of a box whose corners are indexed by bits (x, y, z) -> 4x + 2y + z
CUBOID_EDGES = tuple((a, a | bit) for a in range(8) for bit in (1, 2, 4) if not a & bit)


def cuboid_corners(coord_volume: np.ndarray) -> np.ndarray:
    """The 8 corner voxel centres of a coordinate volume.

    Args:
        coord_volume: (S, S, S, 3) world position of every voxel, mm.

    Returns:
        (8, 3) world mm, corner ``4x + 2y + z`` for (x, y, z) in {0, last}^3 voxel indices.
    """
    last = np.array(coord_volume.shape[:3]) - 1
    return np.stack([coord_volume[tuple(last * np.array(bits))]
                     for bits in ((x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1))])


def draw_cuboid(image: np.ndarray, corners_px: np.ndarray, style: Style, color: RGB = CUBOID) -> None:
    """Draw the 12 edges of a projected cuboid (corners (8, 2) px, ordered as :func:`cuboid_corners`)."""
    for outline in (True, False):
        for a, b in CUBOID_EDGES:
            draw_polyline(image, corners_px[[a, b]], OUTLINE if outline else color,
                          style.lw + 2 * style.outline if outline else max(1, style.lw - 1))


def text_size(text: str, style: Style) -> tuple[int, int]:
    """(width, height) px of ``text`` at the style's font."""
    (w, h), base = cv2.getTextSize(text, _FONT, style.font, max(1, round(style.font * 1.6)))
    return w, h + base


def add_header(image: np.ndarray, lines: Sequence[Sequence[tuple[str, RGB]] | str], style: Style) -> np.ndarray:
    """A dark title strip above ``image``.

    Args:
        image: (H, W, 3) uint8 RGB.
        lines: one entry per text line: a string (white) or a list of (text, RGB) segments.
        style: font size.

    Returns:
        (H + strip, W, 3) uint8 RGB.
    """
    thickness = max(1, round(style.font * 1.6))
    line_h = text_size("Ag", style)[1] + max(2, round(style.size / 96))
    strip = np.empty((line_h * len(lines) + line_h // 3, image.shape[1], 3), np.uint8)
    strip[:] = HEADER_BG
    for k, line in enumerate(lines):
        segments = [(line, TEXT)] if isinstance(line, str) else list(line)
        x = max(2, round(style.size / 96))
        y = (k + 1) * line_h - line_h // 4
        for text, color in segments:
            cv2.putText(strip, text, (x, y), _FONT, style.font, color, thickness, cv2.LINE_AA)
            x += text_size(text, style)[0]
    return np.concatenate([strip, image], axis=0)


def grid(images: Sequence[np.ndarray], cols: int, pad: int = 4, background: RGB = (255, 255, 255)) -> np.ndarray:
    """Tile images (any sizes) row by row into one image; cells are as large as the largest image."""
    if not images:
        raise ValueError("grid: no images")
    cols = max(1, min(cols, len(images)))
    rows = -(-len(images) // cols)
    ch = max(i.shape[0] for i in images)
    cw = max(i.shape[1] for i in images)
    out = np.empty((rows * ch + (rows + 1) * pad, cols * cw + (cols + 1) * pad, 3), np.uint8)
    out[:] = background
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        y, x = pad + r * (ch + pad), pad + c * (cw + pad)
        out[y:y + image.shape[0], x:x + image.shape[1]] = image
    return out


def hstack(images: Sequence[np.ndarray], pad: int = 4, background: RGB = (255, 255, 255)) -> np.ndarray:
    """Images side by side, each as wide as it is, top-aligned, with ``pad`` pixels around and between them."""
    if not images:
        raise ValueError("hstack: no images")
    h = max(i.shape[0] for i in images)
    out = np.empty((h + 2 * pad, sum(i.shape[1] for i in images) + (len(images) + 1) * pad, 3), np.uint8)
    out[:] = background
    x = pad
    for image in images:
        out[pad:pad + image.shape[0], x:x + image.shape[1]] = image
        x += image.shape[1] + pad
    return out


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """A heatmap (h, w) in the ``inferno`` colour map over ``image`` (H, W, 3) uint8 RGB, min-max normalised."""
    heat = np.asarray(heatmap, dtype=np.float64)
    lo, hi = float(np.nanmin(heat)), float(np.nanmax(heat))
    norm = np.zeros_like(heat) if hi <= lo else (heat - lo) / (hi - lo)
    heat8 = cv2.resize((norm * 255).round().astype(np.uint8), (image.shape[1], image.shape[0]),
                       interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap(heat8, cv2.COLORMAP_INFERNO)[:, :, ::-1]
    weight = alpha * np.sqrt(heat8[..., None] / 255.0)  # the image shows through where the heatmap is low
    return (image * (1 - weight) + colored * weight).round().astype(np.uint8)


def skeleton_overlay(image: np.ndarray, proj: np.ndarray, skeletons: Sequence[tuple[np.ndarray, Role]],
                     skeleton: Skeleton, style: Style, validity: np.ndarray | None = None) -> np.ndarray:
    """A crop resized to ``style.size`` with 3D skeletons projected onto it.

    Args:
        image: (H, W, 3) uint8 RGB crop.
        proj: (3, 4) world mm -> px of ``image``.
        skeletons: (keypoints (J, 3) world mm, role) pairs, drawn in order (later on top).
        skeleton: joint order and bones.
        style: sizes.
        validity: (J,) optional joint validity.

    Returns:
        (size, size * W / H, 3) uint8 RGB.
    """
    big, scale = resize_image(image, style.size)
    big = np.ascontiguousarray(big)
    for keypoints, role in skeletons:
        draw_skeleton(big, scale_points(project(keypoints, proj), scale), skeleton, role, style, validity)
    return big


def batch_visualization(batch: dict[str, Any], pred_3d: Any, skeleton: Skeleton, max_items: int,
                        style: Style | None = None) -> np.ndarray:
    """Side-by-side overlays of the first ``max_items`` samples (first view) of a training batch.

    Args:
        batch: dataset batch with ``images`` (B, V, 3, H, W) normalised, ``proj_matrices`` (B, V, 3, 4),
            ``keypoints_3d`` (B, J, 3) mm and optionally ``validity`` (B, J).
        pred_3d: (B, J, 3) predicted joints, world mm (tensor or array).
        skeleton: joint order and bones.
        max_items: at most this many samples.
        style: sizes (default 256-pixel tiles).

    Returns:
        (H', W', 3) uint8 RGB (the TensorBoard image format).
    """
    def arr(x: Any) -> np.ndarray:
        return x.detach().double().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, np.float64)

    style = style or Style(size=256)
    n = min(max_items, len(pred_3d))
    tiles = []
    for i in range(n):
        validity = arr(batch["validity"][i]) if "validity" in batch else None
        tiles.append(skeleton_overlay(network_image_to_rgb(batch["images"][i, 0]), arr(batch["proj_matrices"][i, 0]),
                                      [(arr(batch["keypoints_3d"][i]), "gt"), (arr(pred_3d[i]), "pred")],
                                      skeleton, style, validity))
    return hstack(tiles, pad=2, background=(0, 0, 0))
