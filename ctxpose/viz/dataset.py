"""``ctxpose visualize dataset``: processed crops with the ground truth projected through each label's camera.

The quickest check that preprocessing is right: the skeleton must sit on the person, left joints (cyan) on the
person's left. With ``raw`` the full distorted frame is shown beside the crop, with the crop's box and the
joints projected through the full camera *with* lens distortion.

Layouts: a processed folder is read by a :class:`Layout` into one layout-independent :class:`SampleTable`.
``LAYOUTS`` holds the known ones (the Human3.6M ``labels.npz`` of ``ctxpose preprocess h36m``); another
processed dataset (e.g. MPI-INF-3DHP) is added by writing its ``detect``/``read`` (and optionally
``raw_frames``) functions and appending a :class:`Layout` to ``LAYOUTS``; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctxpose.errors import DataError
from ctxpose.skeleton import H36M_CONTEXTPOSE, Skeleton, get_skeleton
from ctxpose.viz import draw
from ctxpose.viz.output import ImageSink
from ctxpose.viz.style import COLORS, TEXT, Style


@dataclass
class SampleTable:
    """One row per (frame, camera) image of a processed dataset (N rows, J joints).

    Attributes:
        root: the processed folder.
        layout: name of the :class:`Layout` that read it.
        skeleton: joint order of ``keypoints_3d``.
        subject, sequence, camera: (N,) str, e.g. "S9", "Walking-1", "54138969".
        frame: (N,) int frame index in the sequence.
        image: (N,) str crop path relative to ``root``.
        proj: (N, 3, 4) world mm -> crop px of the stored crop.
        keypoints_3d: (N, J, 3) ground truth, world mm.
        bbox: (N, 4) (left, top, right, bottom) crop box in the full frame, px, or None.
        extra: layout-specific (N, ...) columns its ``raw_frames`` needs (Human3.6M: ``R``, ``t``).
    """

    root: Path
    layout: str
    skeleton: Skeleton
    subject: np.ndarray
    sequence: np.ndarray
    camera: np.ndarray
    frame: np.ndarray
    image: np.ndarray
    proj: np.ndarray
    keypoints_3d: np.ndarray
    bbox: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def row_name(self, row: int) -> str:
        """File stem of a row: ``S9_Walking-1_54138969_000040``."""
        return f"{self.subject[row]}_{self.sequence[row]}_{self.camera[row]}_{int(self.frame[row]):06d}"

    def row_title(self, row: int) -> str:
        return f"{self.subject[row]} {self.sequence[row]}  cam {self.camera[row]}  frame {int(self.frame[row])}"


#: raw_frames(raw_root, table, rows) yields (row, full frame RGB, (J, 2) joints px in it, box or None)
RawFrames = Callable[[Path, SampleTable, np.ndarray], Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]]


@dataclass(frozen=True)
class Layout:
    """A processed-dataset layout: how to recognise it, read it and (optionally) find its raw frames."""

    name: str
    detect: Callable[[Path], bool]
    read: Callable[[Path], SampleTable]
    raw_frames: RawFrames | None = None


# ---------------------------------------------------------------------------------------------- Human3.6M


def _labels_format(path: Path) -> str | None:
    import json

    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"])).get("format") if "meta" in z.files else None
    except (OSError, ValueError, KeyError):
        return None


def _detect_h36m(root: Path) -> bool:
    from ctxpose.data.labels import FORMAT

    return (root / "labels.npz").is_file() and _labels_format(root / "labels.npz") == FORMAT


def _read_h36m(root: Path) -> SampleTable:
    from ctxpose.data.labels import load_labels
    from ctxpose.geometry import projection_matrix

    lab = load_labels(root / "labels.npz")
    skeleton = get_skeleton(lab.meta.get("skeleton", H36M_CONTEXTPOSE.name))  # labels that predate the key
    sequence = np.array([f"{a}-{int(t)}" for a, t in zip(lab.action.tolist(), lab.trial.tolist(), strict=True)])
    return SampleTable(root, "ctxpose-h36m", skeleton, lab.subject.astype(str), sequence, lab.camera.astype(str),
                       lab.frame.astype(np.int64), lab.image.astype(str), projection_matrix(lab.K, lab.R, lab.t),
                       lab.keypoints_3d, lab.bbox.astype(np.float64), {"R": lab.R, "t": lab.t})


def _h36m_raw_frames(raw: Path, table: SampleTable, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray,
                                                                                          np.ndarray | None]]:
    """Decode each needed video once (rows grouped by video, frames ascending); Human3.6M's extracted layout."""
    from ctxpose.data.h36m import metadata
    from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
    from ctxpose.data.h36m.raw import iter_video_frames
    from ctxpose.geometry import Camera

    cameras = load_h36m_cameras()  # intrinsics and distortion; R, t are the labels' (as preprocessing used them)
    groups: dict[tuple[str, str, str], list[int]] = {}
    for r in rows:
        groups.setdefault((str(table.subject[r]), str(table.sequence[r]), str(table.camera[r])), []).append(int(r))
    for (subject, seq_name, cam), group in groups.items():
        rel = metadata.raw_relpath("Videos", subject, metadata.sequence(subject, seq_name).base_name, cam)
        video = raw / rel
        if not video.is_file():
            archive = metadata.archive_name("Videos", subject)
            hint = f" (found {archive}: extract it into {raw})" if (raw / archive).is_file() else ""
            raise DataError(f"--raw {raw}: video {rel} not found{hint}")
        nominal = cameras[(subject, cam)]
        order = sorted(group, key=lambda r: int(table.frame[r]))
        frames = np.unique([int(table.frame[r]) for r in order])
        by_frame = {int(f): [r for r in order if int(table.frame[r]) == f] for f in frames}
        for frame_index, image in iter_video_frames(video, frames):
            hw = image.shape[:2]
            for r in by_frame[int(frame_index)]:
                cam_full = Camera(table.extra["R"][r], table.extra["t"][r], nominal.K, nominal.dist, cam,
                                  nominal.dist_model)
                if hw != image_size(subject, cam):  # shrunk (synthetic) videos: scale the intrinsics
                    cam_full = cam_full.resized(image_size(subject, cam), hw)
                uv = cam_full.project(table.keypoints_3d[r])
                yield r, np.ascontiguousarray(image[:, :, ::-1]), uv, None if table.bbox is None else table.bbox[r]


# ---------------------------------------------------------------------------------------------- MPI-INF-3DHP


def _detect_3dhp(root: Path) -> bool:
    from ctxpose.data.mpi_inf_3dhp.labels import FORMAT

    return (root / "labels.npz").is_file() and _labels_format(root / "labels.npz") == FORMAT


def _read_3dhp(root: Path) -> SampleTable:
    """``ctxpose preprocess 3dhp`` output in the upright world the model sees (the dataset's ``WORLD_TO_CAMERA``);
    subject and sequence are the test sequence (TS1..TS6: one video each), so ``--subject TS5`` selects."""
    from ctxpose.data.mpi_inf_3dhp.cameras import camera_name
    from ctxpose.data.mpi_inf_3dhp.dataset import WORLD_TO_CAMERA, MPIInf3DHPDataset
    from ctxpose.data.mpi_inf_3dhp.labels import load_3dhp_labels
    from ctxpose.geometry import projection_matrix

    cols, _ = load_3dhp_labels(root / "labels.npz")
    n = len(cols["frame"])
    R, t = np.broadcast_to(WORLD_TO_CAMERA, (n, 3, 3)), np.zeros((n, 3))
    cameras = np.array([camera_name(str(seq)) for seq in cols["sequence"]])
    sequence = cols["sequence"].astype(str)
    return SampleTable(root, "ctxpose-3dhp", H36M_CONTEXTPOSE, sequence, sequence, cameras,
                       cols["frame"].astype(np.int64), cols["image"].astype(str), projection_matrix(cols["K"], R, t),
                       MPIInf3DHPDataset.to_world(cols["keypoints_3d"]), cols["bbox"].astype(np.float64))


def _3dhp_raw_frames(raw: Path, table: SampleTable, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray,
                                                                                          np.ndarray | None]]:
    """The test set's full (distorted) frames, the joints projected through the sequence's real camera."""
    import cv2

    from ctxpose.data.mpi_inf_3dhp import metadata
    from ctxpose.data.mpi_inf_3dhp.cameras import load_3dhp_camera
    from ctxpose.data.mpi_inf_3dhp.dataset import MPIInf3DHPDataset

    test_set = metadata.find_test_set(raw)
    for r in rows:
        seq = str(table.subject[r])
        path = test_set / metadata.image_relpath(seq, int(table.frame[r]))
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"--raw {raw}: {path} missing or unreadable")
        camera = load_3dhp_camera(seq, image.shape[:2])
        uv = camera.project(MPIInf3DHPDataset.to_camera(table.keypoints_3d[r]))
        yield int(r), np.ascontiguousarray(image[:, :, ::-1]), uv, None if table.bbox is None else table.bbox[r]


#: known processed layouts, tried in order
LAYOUTS: list[Layout] = [Layout("ctxpose-h36m", _detect_h36m, _read_h36m, _h36m_raw_frames),
                         Layout("ctxpose-3dhp", _detect_3dhp, _read_3dhp, _3dhp_raw_frames)]


def open_processed(root: str | Path) -> tuple[Layout, SampleTable]:
    """Recognise and read a processed folder.

    Raises:
        DataError: the folder is missing or no known layout recognises it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: processed dataset folder not found")
    for layout in LAYOUTS:
        if layout.detect(root):
            return layout, layout.read(root)
    raise DataError(f"{root}: not a processed dataset (known layouts: {', '.join(x.name for x in LAYOUTS)}; "
                    "e.g. labels.npz from `ctxpose preprocess h36m`)")


# ---------------------------------------------------------------------------------------------- selection


def parse_frames(spec: str | None) -> slice | None:
    """``"0:200:10"`` (start:stop:step over frame numbers; parts may be empty) -> slice; None -> None."""
    if spec is None or spec.strip() in ("", ":"):
        return None
    parts = spec.split(":")
    if len(parts) > 3:
        raise DataError(f"--frames {spec!r}: expected start:stop:step, e.g. 0:200:10")
    try:
        values = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
    except ValueError:
        raise DataError(f"--frames {spec!r}: expected integers start:stop:step, e.g. 0:200:10") from None
    if len(parts) == 1:  # one frame number
        values = [values[0], values[0] + 1, None]
    start, stop, step = values
    if step is not None and step <= 0:
        raise DataError(f"--frames {spec!r}: the step must be positive")
    return slice(start, stop, step)


def _pick(table: SampleTable, column: str, value: str | None, rows: np.ndarray, option: str) -> np.ndarray:
    values = getattr(table, column)[rows]
    if value is None:
        return rows[values == values[0]] if len(rows) else rows
    if column == "sequence" and "-" not in value:
        mask = np.char.startswith(values.astype(str), value + "-")  # an action: all its trials
    else:
        mask = values == value
    if not mask.any():
        known = sorted(set(values.tolist()))
        raise DataError(f"{option} {value}: not in {table.root} for this selection; found {', '.join(known[:20])}"
                        + (" ..." if len(known) > 20 else ""))
    return rows[mask]


def select_rows(table: SampleTable, subject: str | None = None, action: str | None = None,
                camera: str | None = None, frames: slice | None = None) -> np.ndarray:
    """Rows of one subject / sequence / camera (each defaults to the first in the table) and a frame range.

    Args:
        table: the processed dataset.
        subject: e.g. "S9".
        action: a sequence "Walking-1", or an action "Walking" (all its trials).
        camera: camera id, e.g. "54138969".
        frames: start:stop:step over frame numbers (None: all).

    Returns:
        (n,) row indices ordered by sequence, camera, frame.

    Raises:
        DataError: a value is not in the table (the message lists what is), or no frame is in the range.
    """
    rows = np.arange(len(table))
    rows = _pick(table, "subject", subject, rows, "--subject")
    rows = _pick(table, "sequence", action, rows, "--action")
    rows = _pick(table, "camera", camera, rows, "--camera")
    if frames is not None:
        f = table.frame[rows]
        start = frames.start if frames.start is not None else int(f.min(initial=0))
        mask = f >= start
        if frames.stop is not None:
            mask &= f < frames.stop
        if frames.step is not None:
            mask &= (f - start) % frames.step == 0
        if not mask.any():
            raise DataError(f"--frames {frames.start}:{frames.stop}:{frames.step}: no frame of this selection is in "
                            f"range; it has frames {int(f.min())}..{int(f.max())}")
        rows = rows[mask]
    order = np.lexsort((table.frame[rows], table.camera[rows], table.sequence[rows], table.subject[rows]))
    return rows[order]


# ---------------------------------------------------------------------------------------------- rendering


def gt_legend() -> list[tuple[str, tuple[int, int, int]]]:
    """Header segments naming the ground-truth colours."""
    c = COLORS["gt"]
    return [("ground truth: ", TEXT), ("left ", c["left"]), ("right ", c["right"]), ("centre", c["centre"])]


def render_row(table: SampleTable, row: int, style: Style, raw_view: tuple[np.ndarray, np.ndarray,
               np.ndarray | None] | None = None) -> np.ndarray:
    """One dataset image: the crop with its projected ground truth (and the raw frame before it).

    Args:
        table: the processed dataset.
        row: row index.
        style: sizes.
        raw_view: (full frame RGB, (J, 2) joints px in it, box or None), from the layout's ``raw_frames``.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    crop = draw.read_image(table.root / str(table.image[row]))
    tile = draw.skeleton_overlay(crop, table.proj[row], [(table.keypoints_3d[row], "gt")], table.skeleton, style)
    tiles = [tile]
    if raw_view is not None:
        frame, uv, bbox = raw_view
        big, scale = draw.resize_image(frame, style.size)
        big = np.ascontiguousarray(big)
        if bbox is not None:
            draw.draw_box(big, draw.scale_points(np.reshape(bbox, (2, 2)), scale).reshape(4), style)
        draw.draw_skeleton(big, draw.scale_points(uv, scale), table.skeleton, "gt", style)
        tiles.insert(0, big)
    image = draw.hstack(tiles, pad=4, background=(32, 32, 32)) if len(tiles) > 1 else tile
    lines = [table.row_title(row), gt_legend()]
    if raw_view is not None:
        lines[0] += "   (left: raw frame with box, lens distortion)"
    return draw.add_header(image, lines, style)


@dataclass
class DatasetReport:
    """What :func:`visualize_dataset` rendered: the rows and the contact sheet, if any."""

    rows: np.ndarray
    sheet: Path | None


def visualize_dataset(processed: str | Path, sink: ImageSink, subject: str | None = None, action: str | None = None,
                      camera: str | None = None, frames: str | slice | None = None, raw: str | Path | None = None,
                      style: Style | None = None, sheet_size: int = 16,
                      progress: Callable[[int, int], None] | None = None) -> DatasetReport:
    """Render the selected rows of a processed dataset into ``sink`` (one PNG per image, all as the sequence),
    then a contact sheet of up to ``sheet_size`` evenly spaced crops (``contact_sheet.png``).

    Args:
        processed: processed dataset folder.
        sink: where images go.
        subject, action, camera, frames: the selection (see :func:`select_rows`; ``frames`` as "0:200:10").
        raw: raw dataset folder (extracted layout) to show the full distorted frames too.
        style: sizes.
        sheet_size: tiles of the contact sheet (0: none).
        progress: ``progress(done, total)`` after each image.
    """
    style = style or Style()
    layout, table = open_processed(processed)
    frame_slice = parse_frames(frames) if isinstance(frames, str) or frames is None else frames
    rows = select_rows(table, subject, action, camera, frame_slice)
    raw_views: Iterator | None = None
    if raw is not None:
        raw = Path(raw)
        if not raw.is_dir():
            raise DataError(f"--raw {raw}: folder not found")
        if layout.raw_frames is None:
            raise DataError(f"--raw: the {layout.name} layout has no raw-frame reader")
        raw_views = layout.raw_frames(raw, table, rows)
    if raw_views is not None:  # the raw reader decides the order (one decode per video)
        items = ((r, (frame, uv, box)) for r, frame, uv, box in raw_views)
    else:
        items = ((int(r), None) for r in rows)
    done: list[int] = []
    for k, (r, view) in enumerate(items):
        sink.add(table.row_name(r), render_row(table, r, style, view), sequence=True)
        done.append(r)
        if progress is not None:
            progress(k + 1, len(rows))
    sheet = None
    if sheet_size > 0 and len(done) > 1:
        pick = np.unique(np.linspace(0, len(done) - 1, min(sheet_size, len(done))).round().astype(int))
        small = style.scaled(max(128, style.size // 2))
        tiles = [draw.add_header(draw.skeleton_overlay(draw.read_image(table.root / str(table.image[done[i]])),
                                                       table.proj[done[i]], [(table.keypoints_3d[done[i]], "gt")],
                                                       table.skeleton, small),
                                 [f"{table.camera[done[i]]} f{int(table.frame[done[i]])}"], small)
                 for i in pick]
        sheet = sink.add("contact_sheet", draw.grid(tiles, cols=min(4, len(tiles))))
    return DatasetReport(np.array(done, dtype=np.int64), sheet)
