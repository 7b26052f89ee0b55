"""What ``ctxpose infer`` reads: frames (images, folders, videos), a camera, person boxes, and tracks.

Boxes are (x, y, w, h) px in the input image (COCO's convention: x, y the top-left corner).

Detection files (any other detector's output), matched to frames as described in ``docs/commands/infer.md``:

* COCO results JSON: a list of ``{"image_id": int, "bbox": [x, y, w, h], "score": float}``, optionally
  ``"category_id"`` (only 1, person, is kept) and ``"file_name"`` (an image's or video's file name). An entry
  belongs to frame ``image_id`` of the video named ``file_name`` (or of the only video), or to the image named
  ``file_name`` (or, without it, to the ``image_id``-th image of the inputs, 0-based).
* CSV with a header row: ``frame,x,y,w,h,score`` and optionally ``file``; the same matching.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ctxpose.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


# ---------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Source:
    """One input: a video, or a set of still images treated as the frames of one source.

    Attributes:
        path: the video, the folder, or the single image.
        kind: "video" or "images".
        images: for "images", the image files in order (frame i = images[i]).
    """

    path: Path
    kind: str
    images: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name


def find_sources(inputs: list[Path]) -> list[Source]:
    """Image files (grouped into one source), folders of images (one source each) and video files.

    Raises:
        DataError: a path that does not exist, an empty folder, or a file that is neither.
    """
    sources, loose = [], []
    for path in map(Path, inputs):
        if path.is_dir():
            images = tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
            if not images:
                raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            sources.append(Source(path, "images", images))
        elif not path.is_file():
            raise DataError(f"{path}: no such file or folder")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            loose.append(path)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(Source(path, "video"))
        else:
            raise DataError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a video "
                            f"({', '.join(VIDEO_SUFFIXES)})")
    if loose:
        sources.insert(0, Source(loose[0] if len(loose) == 1 else loose[0].parent, "images", tuple(loose)))
    return sources


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR; DataError if OpenCV cannot decode it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: not an image OpenCV can decode")
    return image


@dataclass
class VideoInfo:
    fps: float
    frames: int  # from the header (0 when unknown)
    hw: tuple[int, int]


def open_video(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video and read its header; DataError if OpenCV cannot."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: not a video OpenCV can decode")
    info = VideoInfo(float(cap.get(cv2.CAP_PROP_FPS) or 0.0), int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                     (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))))
    if info.hw[0] <= 0 or info.hw[1] <= 0:
        cap.release()
        raise DataError(f"{path}: not a video OpenCV can decode (no frame size)")
    return cap, info


def iter_frames(source: Source) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time s, (H, W, 3) uint8 BGR) of a source, in order.

    Raises:
        DataError: an image that cannot be decoded, a video that cannot be opened, has no frame, or ends before
            the frame count of its header (truncated).
    """
    if source.kind == "images":
        for i, path in enumerate(source.images):
            yield i, 0.0, read_image(path)
        return
    cap, info = open_video(source.path)
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield i, (i / info.fps if info.fps > 0 else 0.0), frame
            i += 1
    finally:
        cap.release()
    if i == 0:
        raise DataError(f"{source.path}: no frame could be decoded")
    if info.frames and i < info.frames:
        raise DataError(f"{source.path}: truncated; decoded {i} of the {info.frames} frames its header announces")


def source_hw(source: Source) -> tuple[int, int]:
    """(height, width) of a source's frames (its first image's, or the video header's)."""
    if source.kind == "images":
        return read_image(source.images[0]).shape[:2]
    cap, info = open_video(source.path)
    cap.release()
    return info.hw


# ---------------------------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class CameraSpec:
    """How the intrinsics were obtained: ``K`` (3, 3) px, ``dist`` (5,) OpenCV (k1, k2, p1, p2, k3) and a
    sentence for the output (e.g. "default 60 deg horizontal field of view, principal point at the centre")."""

    K: np.ndarray
    dist: np.ndarray
    assumption: str


def matrix_numbers(value: object, n: int | None, what: str, path: Path) -> np.ndarray:
    """``value`` (a number, a nested list or an OpenCV FileStorage matrix) as a flat float64 array of ``n``
    numbers (any count for None), all finite; errors name ``path`` and ``what``."""
    if isinstance(value, dict) and "data" in value:  # OpenCV FileStorage matrix: rows, cols, dt, data
        value = value["data"]
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {what} should be numbers, got {value!r}") from None
    if n is not None and array.size != n:
        raise DataError(f"{path}: {what} should have {n} numbers, got {array.size}")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: {what} has non-finite values")
    return array


def read_mapping_file(path: Path, what: str) -> Any:
    """The parsed content of a JSON (``.json``) or YAML file (OpenCV FileStorage YAML included: its ``%YAML``
    directive and ``!!opencv-matrix`` tags are dropped, leaving mappings of rows/cols/dt/data).

    Raises:
        DataError: ``path: cannot read the <what> (...)`` or ``path: not valid JSON|YAML (...)``.
    """
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the {what} ({e})") from None
    if text.lstrip().startswith("%YAML"):  # OpenCV FileStorage: a directive and !!opencv-matrix tags
        text = "\n".join(line for line in text.splitlines() if not line.startswith("%YAML")).replace(
            "!!opencv-matrix", "")
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise DataError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} "
                        f"({str(e).splitlines()[0]})") from None


def read_camera_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics from a JSON or YAML file: either keys ``fx, fy, cx, cy`` (optional ``dist``), or OpenCV's
    calibration keys ``camera_matrix`` (3x3, a nested list or an OpenCV ``!!opencv-matrix``) and optional
    ``distortion_coefficients`` (4, 5, 8... numbers; the first 5 are used, the rest must be 0).

    Returns:
        (K (3, 3), dist (5,)).

    Raises:
        DataError: unreadable, or without the keys above (the message lists the keys found).
    """
    path = Path(path)
    data = read_mapping_file(path, "camera file")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with fx, fy, cx, cy or camera_matrix")
    dist = np.zeros(5)
    if "camera_matrix" in data:
        K = matrix_numbers(data["camera_matrix"], 9, "camera_matrix", path).reshape(3, 3)
        coeffs = data.get("distortion_coefficients", data.get("dist"))
    elif all(k in data for k in ("fx", "fy", "cx", "cy")):
        fx, fy, cx, cy = (float(matrix_numbers(data[k], 1, k, path)[0]) for k in ("fx", "fy", "cx", "cy"))
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        coeffs = data.get("dist", data.get("distortion_coefficients"))
    else:
        raise DataError(f"{path}: expected keys fx, fy, cx, cy (optional dist) or camera_matrix (optional "
                        f"distortion_coefficients); found {', '.join(map(str, data)) or 'none'}")
    if coeffs is not None:
        c = matrix_numbers(coeffs, None, "distortion_coefficients", path)
        if c.size < 4 or np.any(c[5:] != 0):
            raise DataError(f"{path}: distortion_coefficients should be k1, k2, p1, p2[, k3] (got {c.size} "
                            "numbers; rational/thin-prism terms are not supported)")
        dist[: min(5, c.size)] = c[:5]
    if not (K[0, 0] > 0 and K[1, 1] > 0) or K[1, 0] != 0 or K[2].tolist() != [0.0, 0.0, 1.0]:
        raise DataError(f"{path}: camera_matrix should be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    return K, dist


# ---------------------------------------------------------------------------------------------- boxes


@dataclass
class Detection:
    box: np.ndarray  # (4,) x, y, w, h px
    score: float


@dataclass
class Detections:
    """Boxes per (source name or None, frame index or image name)."""

    by_key: dict[tuple[str | None, int | str], list[Detection]] = field(default_factory=dict)
    path: Path | None = None

    def add(self, file: str | None, frame: int | str, det: Detection) -> None:
        self.by_key.setdefault((file, frame), []).append(det)

    def for_frame(self, source: Source, index: int, n_videos: int) -> list[Detection]:
        """The detections of frame ``index`` of ``source``."""
        if source.kind == "video":
            found = self.by_key.get((source.name, index), [])
            if n_videos == 1:
                found = found + self.by_key.get((None, index), [])
            return found
        image = source.images[index].name
        return self.by_key.get((image, index), []) + self.by_key.get((image, None), []) + \
            self.by_key.get((None, index), [])


def _check_box(box: np.ndarray, where: str) -> np.ndarray:
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        raise DataError(f"{where}: bbox should be x, y, w, h with w, h > 0, got {box.tolist()}")
    return box


def read_detections(path: Path) -> Detections:
    """A COCO results JSON (``.json``) or a CSV (``.csv``) of person boxes (see the module docstring).

    Raises:
        DataError: unreadable, or an entry without the expected keys/columns (named with its position).
    """
    path = Path(path)
    out = Detections(path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the detections ({e})") from None
    if path.suffix.lower() == ".json":
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        if isinstance(entries, dict) and "annotations" in entries:
            entries = entries["annotations"]
        if not isinstance(entries, list):
            raise DataError(f"{path}: expected a COCO results list [{{image_id, bbox, score}}, ...]")
        for k, e in enumerate(entries):
            where = f"{path} entry {k}"
            if not isinstance(e, dict) or "bbox" not in e or ("image_id" not in e and "file_name" not in e):
                raise DataError(f"{where}: expected image_id or file_name, bbox, score")
            if e.get("category_id", 1) != 1:
                continue
            try:
                box = _check_box(np.asarray(e["bbox"], np.float64).reshape(-1), where)
                score = float(e.get("score", 1.0))
                frame = int(e["image_id"]) if "image_id" in e else None
            except (TypeError, ValueError):
                raise DataError(f"{where}: bbox, score and image_id should be numbers") from None
            out.add(e.get("file_name"), frame, Detection(box, score))
    elif path.suffix.lower() == ".csv":
        rows = csv.DictReader(text.splitlines())
        needed = {"frame", "x", "y", "w", "h", "score"}
        if rows.fieldnames is None or not needed <= set(rows.fieldnames):
            raise DataError(f"{path}: expected a header with columns frame,x,y,w,h,score (optional file); "
                            f"found {','.join(rows.fieldnames or [])}")
        for k, row in enumerate(rows, start=2):
            where = f"{path} line {k}"
            try:
                box = _check_box(np.array([float(row[c]) for c in "xywh"]), where)
                det = Detection(box, float(row["score"]))
                frame = int(row["frame"])
            except (TypeError, ValueError):
                raise DataError(f"{where}: frame, x, y, w, h, score should be numbers") from None
            out.add(row.get("file") or None, frame, det)
    else:
        raise DataError(f"{path}: detections should be a COCO results .json or a .csv")
    return out


def parse_box(text: str) -> np.ndarray:
    """``"x,y,w,h"`` -> (4,) float64; DataError if it is not four numbers with w, h > 0."""
    try:
        box = np.array([float(v) for v in text.split(",")], np.float64)
    except ValueError:
        raise DataError(f"--box {text}: expected x,y,w,h (four numbers, px)") from None
    return _check_box(box, f"--box {text}")


def check_box_in_image(box: np.ndarray, hw: tuple[int, int], where: str) -> None:
    """DataError if the box (x, y, w, h) does not overlap the image of ``hw`` (height, width)."""
    x, y, w, h = box
    if x >= hw[1] or y >= hw[0] or x + w <= 0 or y + h <= 0:
        raise DataError(f"{where}: box {box.tolist()} is outside the {hw[1]}x{hw[0]} image")


def square_crop_box(box: np.ndarray) -> np.ndarray:
    """(x, y, w, h) -> the (left, top, right, bottom) square of side max(w, h) about its centre, float px.

    The same square as preprocessing's ``square_bbox`` (growing the short side about the centre), without its
    rounding to integers (the crop is a remap, so any box works)."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    cx, cy = x + w / 2.0, y + h / 2.0
    return np.array([cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0])


# ---------------------------------------------------------------------------------------------- tracks


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) and b (M, 4), x, y, w, h -> (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return inter / np.maximum(union, 1e-12)


class IoUTracker:
    """Greedy IoU tracking: each frame's boxes take the ids of the previous boxes they overlap most.

    Pairs (track, box) are matched in order of decreasing IoU, each at most once, if IoU >= ``threshold``; an
    unmatched box starts a new id; a track unseen for more than ``max_age`` frames is dropped. When two people
    cross, their boxes overlap and the ids may swap or one may get a new id: nothing models motion or
    appearance. Still images are not tracked (each person of each image gets a new id).
    """

    def __init__(self, threshold: float = 0.3, max_age: int = 10) -> None:
        self.threshold, self.max_age = threshold, max_age
        self.tracks: dict[int, tuple[np.ndarray, int]] = {}  # id -> (last box, last frame)
        self.next_id = 0

    def update(self, boxes: list[np.ndarray], frame: int) -> list[int]:
        self.tracks = {k: v for k, v in self.tracks.items() if frame - v[1] <= self.max_age}
        ids = [-1] * len(boxes)
        if boxes and self.tracks:
            keys = list(self.tracks)
            m = iou(np.stack([self.tracks[k][0] for k in keys]), np.stack(boxes))
            taken_t, taken_b = set(), set()
            for flat in np.argsort(-m, axis=None, kind="stable"):
                t, b = divmod(int(flat), len(boxes))
                if m[t, b] < self.threshold:
                    break
                if t in taken_t or b in taken_b:
                    continue
                taken_t.add(t)
                taken_b.add(b)
                ids[b] = keys[t]
        for b, box in enumerate(boxes):
            if ids[b] < 0:
                ids[b] = self.next_id
                self.next_id += 1
            self.tracks[ids[b]] = (np.asarray(box, np.float64), frame)
        return ids


def open_video_frame_count(path: Path) -> int:
    """Frames a video's header announces (0 when unknown)."""
    cap, info = open_video(path)
    cap.release()
    return info.frames
