"""``ctxpose infer --render``: each frame with every person's 2D skeleton, and a 3D view of them beside it, in
``ctxpose visualize``'s prediction colours. A video source becomes ``<out>/render/<name>.mp4`` (written to a
temporary name and renamed when finished); images become ``<out>/render/<name>.png``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ctxpose.errors import OutputError
from ctxpose.skeleton import Skeleton
from ctxpose.utils.io import atomic_path
from ctxpose.viz import draw
from ctxpose.viz.output import save_png
from ctxpose.viz.style import Style


def view_3d(people_world: list[np.ndarray], skeleton: Skeleton, size: int, style: Style,
            azimuth_deg: float = 35.0, elevation_deg: float = 15.0) -> np.ndarray:
    """(size, size, 3) RGB: the people's joints (each (J, 3) upright world mm, z up) seen orthographically from
    ``azimuth`` / ``elevation``, the ground grid under them, all of them fitted to the square."""
    image = np.full((size, size, 3), 255, np.uint8)
    if not people_world:  # joints that are not finite are not drawn
        return image
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    right = np.array([math.cos(a), math.sin(a), 0.0])
    forward = np.array([-math.sin(a) * math.cos(e), math.cos(a) * math.cos(e), -math.sin(e)])  # into the scene
    up = np.cross(right, forward)  # world z up appears up
    pts = np.concatenate(people_world)
    pts = pts[np.isfinite(pts).all(-1)]
    if not len(pts):
        return image
    centre = pts.mean(0)
    extent = max(float(np.abs((pts - centre) @ np.stack([right, up], 1)).max()), 500.0) * 1.15

    def to_px(p: np.ndarray) -> np.ndarray:
        q = (p - centre) @ np.stack([right, up], 1)
        return np.stack([(q[..., 0] / extent + 1) * size / 2, (1 - q[..., 1] / extent) * size / 2], -1)

    floor = float(pts[:, 2].min())
    for k in np.linspace(-2000, 2000, 9):  # a 4 m ground grid, 0.5 m apart
        for line in (np.array([[k, -2000.0], [k, 2000.0]]), np.array([[-2000.0, k], [2000.0, k]])):
            ends = np.column_stack([line + centre[:2], [floor, floor]])
            draw.draw_polyline(image, to_px(ends), (210, 210, 210), 1)
    for joints in people_world:
        draw.draw_skeleton(image, to_px(joints), skeleton, "pred", style)
    return image


class InferRenderer:
    """Collects one source's rendered frames (see the module docstring)."""

    def __init__(self, out: Path, source: Any, skeleton: Skeleton, intrinsics: Any, world_to_camera: np.ndarray,
                 fps: float = 25.0) -> None:
        self.folder, self.source, self.skeleton = Path(out) / "render", source, skeleton
        self.R = np.asarray(world_to_camera, np.float64)
        self.fps = fps
        self.written: list[str] = []
        self._writer: Any = None
        self._ctx: Any = None

    def frame_image(self, frame: np.ndarray, people: list[Any]) -> np.ndarray:
        """(H, max(H, 256) + W, 3) RGB: the frame with the 2D skeletons | the 3D view."""
        rgb = np.ascontiguousarray(frame[:, :, ::-1])
        style = Style(size=max(64, min(rgb.shape[:2])))
        for p in people:
            draw.draw_skeleton(rgb, p.keypoints_2d, self.skeleton, "pred", style)
        side = max(rgb.shape[0], 256)
        if side != rgb.shape[0]:
            rgb, _ = draw.resize_image(rgb, side)
        world = [p.keypoints_3d @ self.R for p in people]  # camera -> upright world: R^T x
        return np.ascontiguousarray(np.concatenate([rgb, view_3d(world, self.skeleton, side, style.scaled(side))],
                                                   axis=1))

    def add(self, frame: np.ndarray, people: list[Any], index: int) -> None:
        image = self.frame_image(frame, people)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.folder}: cannot write ({e.strerror or e})") from None
        if self.source.kind == "images":
            self.written.append(str(save_png(self.folder / f"{self.source.images[index].stem}.png", image)))
            return
        if self._writer is None:
            self._path = self.folder / f"{self.source.path.stem}.mp4"
            self._ctx = atomic_path(self._path, keep_suffix=True)
            tmp = self._ctx.__enter__()
            h, w = image.shape[:2]
            self._size = (w - w % 2, h - h % 2)
            self._writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                raise OutputError(f"{self._path}: OpenCV cannot write an mp4 here")
        self._writer.write(np.ascontiguousarray(image[: self._size[1], : self._size[0], ::-1]))

    def close(self) -> list[str]:
        """Finish the video (renamed into place); returns the files written."""
        if self._writer is not None:
            self._writer.release()
            self._ctx.__exit__(None, None, None)
            self.written.append(str(self._path))
            self._writer = None
        return self.written

    def abort(self) -> None:
        """Drop an unfinished video (its temporary file); finished PNGs stay."""
        if self._writer is not None:
            self._writer.release()
            self._ctx.__exit__(RuntimeError, RuntimeError("video abandoned"), None)  # removes the temporary file
            self._writer = None
