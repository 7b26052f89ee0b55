"""Readers for the raw Human3.6M files: CDF poses, MATLAB v7.3 ground-truth masks, MP4 videos (no torch).

Formats (``shared/h36m/h36m_metadata.json``, ``cdf_format_observed`` and ``ground_truth_bb_format``):

* CDF 3.3, little-endian, column-major; one zVariable ``Pose`` (float32, dims [N, 96] for D3 world
  positions in mm, [N, 64] for D2 pixels) holding ONE record, read by cdflib as (1, N, 96); row = frame,
  values x0, y0, z0, x1, ... for the 32 mocap joints.
* Masks: ``save(file, '-v7.3', 'Masks')`` of a 1xN MATLAB cell: an HDF5 file whose dataset ``Masks`` has
  shape (N, 1) of object references; each points to a logical (uint8) image stored column-major, so h5py
  returns it transposed, (W, H). The mask is true inside one axis-aligned rectangle.
* Videos: MP4 at 50 fps with a few more frames than the poses; frame i of the poses = video frame i.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ctxpose.errors import DataError

logger = logging.getLogger(__name__)

_CDF_MAGIC_V3 = b"\xcd\xf3\x00\x01"
_CDF_MAGIC_V2 = b"\xcd\xf2\x60\x02"

#: Ball radii (mm) the official H36MMyBBMask.m puts around each of the 32 joints before projecting:
#: 260 mm for 1-based joints 12-14 (spine, spine1, neck), 140 mm for 15-16 (head, head top), 115 mm else.
MASK_JOINT_RADII_MM = np.array([115.0] * 11 + [260.0] * 3 + [140.0] * 2 + [115.0] * 16)


def check_cdf_complete(path: Path) -> None:
    """Walk the CDF's internal records and fail if one extends past the end of the file.

    cdflib does not notice a truncated file: it returns the declared shape with a zero-filled tail.
    Every internal record starts with its own size, so a file shorter than its records declare is
    truncated.

    Raises:
        DataError: not a CDF file, or truncated (naming the offset and sizes).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        magic = f.read(8)
        if magic[:4] == _CDF_MAGIC_V3:
            fmt, width = ">q", 8
        elif magic[:4] == _CDF_MAGIC_V2:
            fmt, width = ">i", 4
        else:
            raise DataError(f"{path}: not a CDF file (magic {magic[:4].hex()}, expected cdf30001)")
        offset = 8
        while offset < size:
            f.seek(offset)
            head = f.read(width)
            if len(head) < width:
                raise DataError(f"{path}: truncated CDF (record header at byte {offset} cut off; file has "
                                f"{size} bytes)")
            (rec_size,) = struct.unpack(fmt, head)
            if rec_size <= 0:
                raise DataError(f"{path}: corrupt CDF (record at byte {offset} declares size {rec_size})")
            if offset + rec_size > size:
                raise DataError(f"{path}: truncated CDF (record at byte {offset} declares {rec_size} bytes, "
                                f"file ends {offset + rec_size - size} bytes early)")
            offset += rec_size


def read_cdf_poses(path: Path, values_per_joint: int = 3, dtype: type | None = np.float64) -> np.ndarray:
    """Read a Human3.6M pose CDF.

    Args:
        path: e.g. ``S1/MyPoseFeatures/D3_Positions/Directions 1.cdf``.
        values_per_joint: 3 for D3 positions (world mm), 2 for D2 positions (px).
        dtype: dtype of the result; None keeps the file's (float32 in the real files).

    Returns:
        (N, 32, values_per_joint) poses, N = number of frames.

    Raises:
        DataError: missing, truncated, unreadable, or not shaped (1, N, 32 * values_per_joint).
    """
    import cdflib

    path = Path(path)
    if not path.is_file():
        raise DataError(f"pose file {path} does not exist")
    try:
        check_cdf_complete(path)
    except OSError as e:  # permissions, I/O errors
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        with cdflib.CDF(str(path)) as cdf:
            pose = np.asarray(cdf.varget("Pose"))
    except Exception as e:  # cdflib raises many exception types on corrupt input
        raise DataError(f"{path}: cannot read variable 'Pose' ({type(e).__name__}: {e})") from None
    width = 32 * values_per_joint
    if pose.ndim == 2:  # some readers squeeze the single record
        pose = pose[None]
    if pose.ndim != 3 or pose.shape[0] != 1 or pose.shape[2] != width:
        raise DataError(f"{path}: 'Pose' has shape {pose.shape}, expected (1, N, {width})")
    pose = pose[0].reshape(-1, 32, values_per_joint)
    return pose if dtype is None else pose.astype(dtype)


def cdf_frame_count(path: Path) -> int:
    """Number of frames N a pose CDF declares (``Pose`` dims [N, C]), from its headers only (no values read).

    Raises:
        DataError: not a readable CDF with a two-dimensional ``Pose`` variable.
    """
    import cdflib

    try:
        with cdflib.CDF(str(path)) as cdf:
            dims = list(cdf.varinq("Pose").Dim_Sizes)
    except Exception as e:  # cdflib raises many exception types on corrupt input
        raise DataError(f"{path}: cannot read the header of variable 'Pose' ({type(e).__name__}: {e})") from None
    if len(dims) != 2:
        raise DataError(f"{path}: 'Pose' has dimensions {dims}, expected [N, C]")
    return int(dims[0])


def mask_to_bbox(mask_wh: np.ndarray) -> tuple[int, int, int, int]:
    """Box of the true pixels of a transposed mask, as collect-bboxes.py of the original computes it.

    Args:
        mask_wh: (W, H) mask as h5py returns a MATLAB logical image (transposed).

    Returns:
        (left, top, right, bottom) px, right/bottom exclusive.

    Raises:
        ValueError: the mask is empty.
    """
    rows = mask_wh.max(axis=0) > 0  # (H,) any true pixel in each image row
    cols = mask_wh.max(axis=1) > 0  # (W,) any true pixel in each image column
    if not rows.any():
        raise ValueError("empty mask")
    top, bottom = int(np.argmax(rows)), len(rows) - int(np.argmax(rows[::-1]))
    left, right = int(np.argmax(cols)), len(cols) - int(np.argmax(cols[::-1]))
    return left, top, right, bottom


def square_bbox(bbox: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """Square a box by growing its short side around the centre (as the original's ``square_the_bbox``).

    Args:
        bbox: (left, top, right, bottom) px.

    Returns:
        (left, top, right, bottom) integer px, right - left == bottom - top == max(width, height).
    """
    left, top, right, bottom = (int(round(v)) for v in bbox)
    width, height = right - left, bottom - top
    if height < width:
        top = int(np.round((top + bottom) * 0.5 - width * 0.5))
        bottom = top + width
    else:
        left = int(np.round((left + right) * 0.5 - height * 0.5))
        right = left + height
    return left, top, right, bottom


def read_mask_bboxes(path: Path, frames: np.ndarray) -> np.ndarray:
    """Bounding boxes of the ground-truth masks of some frames (only those frames are read).

    Args:
        path: ``.../MySegmentsMat/ground_truth_bb/<base>.<camera>.mat`` (MATLAB v7.3).
        frames: (F,) 0-based frame indices.

    Returns:
        (F, 4) int (left, top, right, bottom) px, right/bottom exclusive, not squared.

    Raises:
        DataError: missing file, not HDF5, no ``Masks``, too few frames, or an empty mask.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"mask file {path} does not exist")
    out = np.zeros((len(frames), 4), dtype=np.int64)
    try:
        with h5py.File(path, "r") as f:
            if "Masks" not in f:
                raise DataError(f"{path}: no dataset 'Masks' (found {list(f.keys())})")
            refs = f["Masks"]
            num = refs.shape[0] * refs.shape[1] if refs.ndim == 2 else refs.shape[0]
            flat = refs[()].reshape(-1)
            if len(frames) and int(np.max(frames)) >= num:
                raise DataError(f"{path}: 'Masks' has {num} frames, need frame {int(np.max(frames))}")
            for i, frame in enumerate(frames):
                mask = np.asarray(f[flat[int(frame)]])
                try:
                    out[i] = mask_to_bbox(mask)
                except ValueError:
                    raise DataError(f"{path}: mask of frame {int(frame)} is empty") from None
    except DataError:
        raise
    except Exception as e:  # h5py: OSError for non-HDF5 files, KeyError/ValueError for broken references
        raise DataError(f"{path}: cannot read MATLAB v7.3 masks ({type(e).__name__}: {e})") from None
    return out


def sphere_bboxes(points_px: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Boxes around projected sphere points, clipped to the image (the mask rule of H36MMyBBMask.m).

    Args:
        points_px: (F, P, 2) projected points on the joint spheres, px.
        image_hw: (H, W) of the frame.

    Returns:
        (F, 4) int (left, top, right, bottom), right/bottom exclusive.
    """
    h, w = image_hw
    lo = np.floor(points_px.min(axis=1)).astype(np.int64)
    hi = np.ceil(points_px.max(axis=1)).astype(np.int64) + 1
    left, top = np.clip(lo[:, 0], 0, w - 1), np.clip(lo[:, 1], 0, h - 1)
    right, bottom = np.clip(hi[:, 0], left + 1, w), np.clip(hi[:, 1], top + 1, h)
    return np.stack([left, top, right, bottom], axis=1)


def sphere_points(joints_world: np.ndarray, radii_mm: np.ndarray = MASK_JOINT_RADII_MM) -> np.ndarray:
    """14 points on a ball around every joint: 6 axis points and 8 cube-diagonal points.

    Args:
        joints_world: (F, 32, 3) world mm.
        radii_mm: (32,) ball radius per joint.

    Returns:
        (F, 32 * 14, 3) world mm.
    """
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    diag = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) / np.sqrt(3.0)
    dirs = np.concatenate([axes, diag])  # (14, 3)
    pts = joints_world[:, :, None, :] + radii_mm[None, :, None, None] * dirs[None, None]
    return pts.reshape(len(joints_world), -1, 3)


def iter_video_frames(path: Path, frames: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Decode a video once, yielding only the selected frames.

    Unselected frames are skipped with ``grab()`` (decoded but not converted to BGR).

    Args:
        path: the ``.mp4``.
        frames: (F,) sorted 0-based frame indices to yield.

    Yields:
        (frame_index, image) with image (H, W, 3) uint8 BGR.

    Raises:
        DataError: the file is missing, cannot be opened, or ends before the last selected frame.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"video {path} does not exist")
    wanted = np.asarray(frames, dtype=np.int64)
    if len(wanted) and np.any(np.diff(wanted) <= 0):
        raise ValueError("frames must be strictly increasing")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"{path}: OpenCV cannot open this video (corrupt or unsupported)")
        k = 0
        for index in range(int(wanted[-1]) + 1 if len(wanted) else 0):
            if not cap.grab():
                raise DataError(f"{path}: video ends or is corrupt at frame {index}; need frames up to "
                                f"{int(wanted[-1])}")
            if index == wanted[k]:
                ok, image = cap.retrieve()
                if not ok or image is None:
                    raise DataError(f"{path}: cannot decode frame {index}")
                yield index, image
                k += 1
    finally:
        cap.release()
