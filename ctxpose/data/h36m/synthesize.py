"""``ctxpose synthesize h36m``: a small synthetic Human3.6M download in the exact raw layout.

For each (subject, sequence) it writes, with the dataset's own file base names (``metadata``):

* ``S*/MyPoseFeatures/D3_Positions/<base>.cdf``: world poses (N, 32 x 3), mm, written with cdflib in the
  real files' format (CDF 3.3, little-endian, column-major, one record read as (1, N, 96)).
* ``.../D2_Positions/<base>.<camera>.cdf`` (distorted pixels), ``.../D3_Positions_mono/`` (camera frame) and
  ``.../D3_Positions_mono_universal/`` (the same: the synthetic body has one skeleton).
* ``S*/Videos/<base>.<camera>.mp4``: the body rendered as shaded coloured limbs through the real camera
  (``load_h36m_cameras``) INCLUDING its lens distortion, over a textured backdrop, at the real
  1000x1002 / 1000x1000 sizes (or smaller with ``size``); videos get the few extra frames real ones have.
* ``S*/MySegmentsMat/ground_truth_bb/<base>.<camera>.mat``: MATLAB v7.3 masks (one object reference per
  frame in ``Masks``, each a column-major logical image true inside the box of the projected joint balls).

With ``archives=True`` the files are packed into the official archive names (``Videos_S1.tgz``...).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
from ctxpose.data.h36m.metadata import DEFAULT_ACTIONS, DEFAULT_SUBJECTS, MAX_SIZE, MIN_SIZE
from ctxpose.data.h36m.raw import sphere_bboxes, sphere_points
from ctxpose.data.h36m.synthetic_body import background_texture, render_frame, walking_poses
from ctxpose.errors import DataError, OutputError
from ctxpose.geometry.cameras import Camera, world_to_camera
from ctxpose.utils.io import atomic_path, atomic_write_text
from ctxpose.utils.matlab import USERBLOCK_BYTES, matlab_v73_header

logger = logging.getLogger(__name__)

MAX_EXTRA_VIDEO_FRAMES = 5
#: Written first into every synthetic raw folder: files under a folder without it are never overwritten.
MARKER = "synthetic_h36m.json"


@dataclass
class SynthesisReport:
    """What :func:`synthesize_h36m` wrote.

    Attributes:
        out_dir: root of the synthetic raw dataset.
        sequences: "S1/Walking-1" style keys.
        files: paths written, relative to ``out_dir``.
        poses: key -> (N, 32, 3) world poses, mm (the ground truth written to the CDFs).
    """

    out_dir: Path
    sequences: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    poses: dict[str, np.ndarray] = field(default_factory=dict)


def write_pose_cdf(path: Path, values: np.ndarray) -> None:
    """Write a ``Pose`` CDF like the official ones (MATLAB ``cdfwrite``): CDF 3.3, little-endian, column-major.

    Args:
        path: destination ``.cdf``; written to a temporary name, then renamed.
        values: (N, C) per-frame values (C = 96 for 3D, 64 for 2D), stored as float32.
    """
    from cdflib.cdfwrite import CDF

    values = np.asarray(values, dtype=np.float32)
    n, c = values.shape
    with atomic_path(path, keep_suffix=True) as tmp:  # cdflib adds ".cdf" to other names
        tmp.unlink()  # cdflib refuses to write over an existing file
        writer = CDF(str(tmp), cdf_spec={"Majority": "Column_major", "Encoding": 6, "Checksum": False})
        spec = {"Variable": "Pose", "Data_Type": CDF.CDF_FLOAT, "Num_Elements": 1, "Rec_Vary": True,
                "Dim_Sizes": [n, c], "Var_Type": "zVariable", "Compress": 0, "Block_Factor": 0}
        # cdflib writes the buffer as given; a column-major file stores the (N, C) array in Fortran order.
        writer.write_var(spec, var_attrs={}, var_data=np.ascontiguousarray(values.T).reshape(1, n, c))
        writer.close()
        with open(tmp, "r+b") as f:  # CDR version fields (offsets 28, 32, 52): 3.3.0 as in the real files
            for offset, value in ((28, 3), (32, 3), (52, 0)):
                f.seek(offset)
                f.write(int(value).to_bytes(4, "big"))


def write_mask_mat(path: Path, bboxes: np.ndarray, image_hw: tuple[int, int]) -> None:
    """Write ground-truth masks as MATLAB ``save(file, '-v7.3', 'Masks')`` of a 1xN cell of logical images.

    Args:
        path: destination ``.mat``; written to a temporary name, then renamed.
        bboxes: (F, 4) int (left, top, right, bottom) boxes, right/bottom exclusive.
        image_hw: (H, W) of the frames.
    """
    import h5py

    h, w = image_hw
    ref_dtype = h5py.special_dtype(ref=h5py.Reference)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK_BYTES) as f:
            refs_group = f.create_group("#refs#")
            refs = np.empty((len(bboxes), 1), dtype=object)
            for i, (left, top, right, bottom) in enumerate(bboxes):
                mask = np.zeros((h, w), dtype=np.uint8)
                mask[top:bottom, left:right] = 1
                # MATLAB is column-major: an (H, W) logical lands in HDF5 as (W, H)
                ds = refs_group.create_dataset(f"m{i}", data=np.ascontiguousarray(mask.T), compression="gzip",
                                               compression_opts=1, chunks=True)
                ds.attrs["MATLAB_class"] = np.bytes_("logical")
                ds.attrs["MATLAB_int_decode"] = np.int32(1)
                refs[i, 0] = ds.ref
            masks = f.create_dataset("Masks", data=refs, dtype=ref_dtype)
            masks.attrs["MATLAB_class"] = np.bytes_("cell")
        with open(tmp, "r+b") as f:
            f.write(matlab_v73_header())


def _scaled_camera(camera: Camera, full_hw: tuple[int, int], size: int | None) -> tuple[Camera, tuple[int, int]]:
    """Camera and frame size when the frames are shrunk to about ``size`` px wide (None = real size).

    Both sides are rounded to even numbers: MP4 (4:2:0) frames must have even sides.
    """
    if size is None or size == full_hw[1]:
        return camera, full_hw
    hw = (2 * int(round(full_hw[0] * size / full_hw[1] / 2)), 2 * int(round(size / 2)))
    return camera.resized(full_hw, hw), hw


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    with atomic_path(path, keep_suffix=True) as tmp:  # OpenCV picks the container by the extension
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 50.0, (w, h))
        if not writer.isOpened():
            raise OutputError(f"{path}: OpenCV cannot write an MP4 video here")
        for frame in frames:
            writer.write(frame)
        writer.release()


def _synthesize_sequence(root: Path, seq: metadata.Sequence, poses: np.ndarray, cameras: dict, size: int | None,
                         seed: int) -> list[Path]:
    written = []
    n = len(poses)
    cdf3 = root / metadata.raw_relpath("D3_Positions", seq.subject, seq.base_name)
    write_pose_cdf(cdf3, poses.reshape(n, 96))
    written.append(cdf3)
    for cam_index, cam_id in enumerate(metadata.camera_ids()):
        if metadata.is_missing_video(seq.subject, seq.name, cam_id):
            continue
        camera, hw = _scaled_camera(cameras[(seq.subject, cam_id)], image_size(seq.subject, cam_id), size)
        extra = int(np.clip(seq.video_frames[cam_id] - seq.num_frames, 1, MAX_EXTRA_VIDEO_FRAMES))
        video_poses = np.concatenate([poses, np.repeat(poses[-1:], extra, axis=0)])
        pixels = camera.project(poses)  # (N, 32, 2) distorted
        cam_frame = world_to_camera(poses, camera.R, camera.t)
        # one synthetic skeleton: the "universal" camera-frame poses are the camera-frame poses themselves
        for kind, values in (("D2_Positions", pixels.reshape(n, 64)), ("D3_Positions_mono", cam_frame.reshape(n, 96)),
                             ("D3_Positions_mono_universal", cam_frame.reshape(n, 96))):
            p = root / metadata.raw_relpath(kind, seq.subject, seq.base_name, cam_id)
            write_pose_cdf(p, values)
            written.append(p)
        background = background_texture(hw, seed * 7919 + cam_index)
        focal = float(camera.K[0, 0])
        frames = [render_frame(background, camera.project, pose,
                               lambda pts, cam=camera: world_to_camera(pts, cam.R, cam.t)[:, 2], focal)
                  for pose in video_poses]
        video = root / metadata.raw_relpath("Videos", seq.subject, seq.base_name, cam_id)
        _write_video(video, frames)
        bboxes = sphere_bboxes(camera.project(sphere_points(video_poses)), hw)
        mask = root / metadata.raw_relpath("ground_truth_bb", seq.subject, seq.base_name, cam_id)
        write_mask_mat(mask, bboxes, hw)
        written += [video, mask]
    return written


def _pack_archives(root: Path, files: list[Path]) -> list[Path]:
    """Pack loose files into the official archive names, then remove the loose files."""
    groups: dict[Path, list[Path]] = {}
    for p in files:
        rel = p.relative_to(root)
        subject = rel.parts[0]
        kind = rel.parts[2] if rel.parts[1] in ("MyPoseFeatures", "MySegmentsMat") else rel.parts[1]
        groups.setdefault(root / metadata.archive_name(kind, subject), []).append(p)
    for archive, members in groups.items():
        with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
            for p in sorted(members):
                tar.add(p, arcname=str(p.relative_to(root)))
    for p in files:
        p.unlink()
    folders = {parent for p in files for parent in p.parents if parent != root and root in parent.parents}
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):  # deepest first, only if empty
        with contextlib.suppress(OSError):
            folder.rmdir()
    return sorted(groups)


def synthesize_h36m(
    out_dir: str | Path,
    subjects: list[str] | tuple[str, ...] = DEFAULT_SUBJECTS,
    actions: list[str] | tuple[str, ...] = DEFAULT_ACTIONS,
    n_frames: int = 30,
    size: int | None = None,
    seed: int = 0,
    archives: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SynthesisReport:
    """Write a synthetic raw Human3.6M dataset.

    Args:
        out_dir: destination root (created); an existing folder must be empty of the files to write or
            hold ``MARKER`` from an earlier synthesis (a real download is never overwritten).
        subjects: e.g. ("S1", "S9").
        actions: sequence names ("Walking-1") or base actions ("Walking" = both trials).
        n_frames: pose frames per sequence (videos get 1-5 more, like the real ones).
        size: frame width in px, ``MIN_SIZE`` (64) to ``MAX_SIZE`` (4000) (height scaled to keep the real
            aspect, both rounded to even numbers); None = the real 1000 x 1002 / 1000 x 1000.
        seed: motion and texture seed, >= 0.
        archives: pack into the official ``.tgz`` names instead of loose folders.
        progress: called with each finished sequence key.

    Returns:
        :class:`SynthesisReport` with the ground-truth poses.

    Raises:
        DataError: ``n_frames`` < 1, ``size`` out of range, ``seed`` < 0, unknown or no sequences selected.
        OutputError: ``out_dir`` is a file, holds raw files not synthesized here, or cannot be written
            (one line naming the path).
    """
    root = Path(out_dir)
    seqs = _check_synthesis(root, subjects, actions, n_frames, size, seed, archives)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{root}: cannot create the output folder ({e.strerror or e})") from None
    cameras = load_h36m_cameras()
    report = SynthesisReport(out_dir=root)
    try:
        atomic_write_text(root / MARKER, json.dumps({"format": "ctxpose-synthetic-h36m"}))
        files = _synthesize_all(root, seqs, cameras, n_frames, size, seed, report, progress)
        written = _pack_archives(root, files) if archives else files
    except OSError as e:  # full disk, read-only file system, permissions
        raise OutputError(f"{e.filename or root}: cannot write ({e.strerror or e})") from None
    report.files = [str(p.relative_to(root)) for p in written]
    return report


def _check_synthesis(root: Path, subjects, actions, n_frames: int, size: int | None, seed: int,
                     archives: bool) -> list[metadata.Sequence]:
    """The selected sequences; :class:`DataError`/:class:`OutputError` (one line naming the option) if invalid."""
    if n_frames < 1:
        raise DataError(f"--frames {n_frames}: expected at least 1 pose frame per sequence")
    if size is not None and not MIN_SIZE <= size <= MAX_SIZE:
        raise DataError(f"--size {size}: expected a frame width from {MIN_SIZE} to {MAX_SIZE} px "
                        "(or no --size for the real 1000 px)")
    if seed < 0:
        raise DataError(f"--seed {seed}: expected a number >= 0")
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root}: exists and is not a folder; choose a folder to write the raw dataset into")
    seqs = select_sequences(subjects, actions)
    if not (root / MARKER).is_file():  # never overwrite a real download
        for seq in seqs:
            for target in _targets(seq, archives):
                if (root / target).exists():
                    raise OutputError(f"{root / target}: exists and was not written by `ctxpose synthesize` "
                                      f"(no {MARKER} in {root}); choose an empty folder")
    return seqs


def select_sequences(subjects: list[str] | tuple[str, ...],
                     actions: list[str] | tuple[str, ...]) -> list[metadata.Sequence]:
    """The sequences :func:`synthesize_h36m` writes for these filters.

    Raises:
        DataError: an unknown subject or action, or an empty selection.
    """
    seqs = metadata.sequences(list(subjects), list(actions)) if list(subjects) and list(actions) else []
    if not seqs:
        raise DataError("--subjects/--actions select no sequence; expected e.g. --subjects S1 --actions Walking-1")
    return seqs


def _targets(seq: metadata.Sequence, archives: bool) -> list[str]:
    """Relative paths synthesizing ``seq`` writes (loose files are written before packing)."""
    cams = [c for c in metadata.camera_ids() if not metadata.is_missing_video(seq.subject, seq.name, c)]
    loose = [metadata.raw_relpath("D3_Positions", seq.subject, seq.base_name)] + [
        metadata.raw_relpath(kind, seq.subject, seq.base_name, c) for kind in metadata.RAW_KINDS[1:] for c in cams]
    return loose + ([metadata.archive_name(kind, seq.subject) for kind in metadata.RAW_KINDS] if archives else [])


def _synthesize_all(root: Path, seqs: list[metadata.Sequence], cameras: dict, n_frames: int, size: int | None,
                    seed: int, report: SynthesisReport, progress: Callable[[str], None] | None) -> list[Path]:
    files: list[Path] = []
    for k, seq in enumerate(seqs):
        poses = walking_poses(n_frames, seed=seed * 1000 + k)
        files += _synthesize_sequence(root, seq, poses, cameras, size, seed * 1000 + k)
        report.sequences.append(seq.key)
        report.poses[seq.key] = poses
        logger.debug("synthesized %s (%d frames)", seq.key, n_frames)
        if progress:
            progress(seq.key)
    return files
