"""``ctxpose preprocess h36m``: raw Human3.6M (archives or extracted) -> square crops + labels, resumable.

Output (the processed folder)::

    images/<subject>/<Action-trial>/<camera>/<frame:06d>.jpg   undistorted square crops (frame 0-based)
    labels.npz                       one row per (frame, camera), schema in ctxpose.data.labels
    mean_and_std_limb_length.h5      datasets mean, std (L,): bone lengths over the training subjects
    manifest.json                    settings + finished sequences (a re-run skips them)
    parts/<subject>/<Action-trial>.npz   label shard of each finished sequence
    preprocess_report.json           the last run's :class:`PreprocessReport`

Every file is written to a temporary name and renamed; ``labels.npz`` is rebuilt from the shards of
all finished sequences at the end of every run that finished one (also when it is interrupted), so killing
the process at any moment leaves the previous complete labels (or none) and never a half-written file under
a final name. A run with nothing left to do leaves every output untouched and writes only the report
``preprocess_report.json``. With ``workers`` > 1 the sequences run in worker processes (the standard
library's process pool, spawn method) that stop with Ctrl-C and die with their parent; the runner
(:mod:`ctxpose.data.preprocessing`) is the one ``preprocess 3dhp`` uses too.

Frame selection (``every_n``): every n-th pose frame, per split, recorded in ``labels.npz`` meta. Default 5
for both splits: the 26,634-frame test set documented in the original ``mvn/datasets/human36m.py``
(``retain_every_n_frames_in_test``) equals every 5th frame of S9/S11 minus the damaged S9 sequences
(frame counts from ``metadata.xml``), and ContextPose evaluates it with ``retain_every_n_frames_in_test: 1``.
The original training images were chosen by motion (``process_h36m.py``: keep a frame once a joint has
moved 40 mm; 159,181 frames, about every 2.4th), which a fixed stride replaces; ``--train-every 2`` comes
closest in count, ``1`` keeps all frames. ``selection="original"`` keeps exactly the original table's frames
instead (:mod:`ctxpose.data.h36m.selection`), so the released pelvis estimates line up with the labels.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctxpose._version import __version__
from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.archives import extract_members, list_archives
from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
from ctxpose.data.h36m.process_sequence import SequenceJob
from ctxpose.data.h36m.raw import cdf_frame_count
from ctxpose.data.h36m.selection import (
    SELECTIONS,
    needs_universal_poses,
    selection_meta,
    sequence_frames,
    universal_relpath,
)
from ctxpose.data.labels import Labels, labels_meta, load_labels
from ctxpose.data.preprocessing import (
    MANIFEST_NAME,
    REPORT_NAME,
    PreprocessReport,
    Run,
    SequenceResult,
    labels_meta_or_none,
    read_manifest,
)
from ctxpose.errors import DataError
from ctxpose.skeleton import SKELETONS, Skeleton, get_skeleton
from ctxpose.utils.io import atomic_path

logger = logging.getLogger(__name__)

BBOX_SOURCES = ("auto", "masks", "poses")
_SETTINGS_KEYS = ("image_size", "jpeg_quality", "train_every", "test_every", "selection", "bbox_source",
                  "bbox_scale", "skeleton")
MANIFEST_FORMAT = "ctxpose-h36m-manifest"
# the report and the report's name belong to the shared runner; re-exported for this API's users
__all__ = ["BBOX_SOURCES", "MANIFEST_FORMAT", "REPORT_NAME", "PreprocessOptions", "PreprocessReport",
           "check_options", "preprocess_h36m"]


@dataclass(frozen=True)
class PreprocessOptions:
    """Settings of a preprocessing run.

    Attributes:
        image_size: crop side, px (ContextPose ``image_shape: [384, 384]``).
        jpeg_quality: JPEG quality 0..100 (95 = OpenCV's default, as the original's undistorted images).
        train_every: keep every n-th pose frame of training subjects (1 = all frames).
        test_every: same for test subjects.
        selection: "stride" (every n-th frame) or "original" (the original's frames and order, see
            :mod:`ctxpose.data.h36m.selection`; train_every/test_every must stay at their defaults).
        bbox_source: "auto" (masks if present, else projected poses), "masks" or "poses".
        bbox_scale: scale of the square box about its centre (original ``scale_bbox``; ContextPose 1.0).
        skeleton: joint order of the labels (``ctxpose.skeleton.SKELETONS``; the config's ``model.skeleton``):
            which of the 32 mocap joints ``keypoints_3d`` holds, and the bones of the limb-length prior.
        subjects, actions, cameras: filters (None = all); actions as "Walking" or "Walking-1".
        workers: parallel processes over sequences (>= 1).
        cameras_file: una-dinosauria ``cameras.h5`` overriding the packaged cameras.
        extract_dir: where archive members are extracted (default ``<out>/.raw``).
        keep_extracted: keep ``extract_dir`` after a run without failures.
        dry_run: only list what would be done.
    """

    image_size: int = 384
    jpeg_quality: int = 95
    train_every: int = 5
    test_every: int = 5
    selection: str = "stride"
    bbox_source: str = "auto"
    bbox_scale: float = 1.0
    skeleton: str = "contextpose17"
    subjects: tuple[str, ...] | None = None
    actions: tuple[str, ...] | None = None
    cameras: tuple[str, ...] | None = None
    workers: int = 1
    cameras_file: Path | None = None
    extract_dir: Path | None = None
    keep_extracted: bool = False
    dry_run: bool = False

    def settings(self) -> dict:
        """The settings that must not change between runs into the same folder."""
        return {k: getattr(self, k) for k in _SETTINGS_KEYS}


def check_options(opts: PreprocessOptions) -> None:
    """Raise :class:`DataError` (one line naming the option) for invalid settings."""
    if opts.bbox_source not in BBOX_SOURCES:
        raise DataError(f"--bbox-source {opts.bbox_source!r}: expected one of {BBOX_SOURCES}")
    if opts.image_size < 8 or not 0 <= opts.jpeg_quality <= 100:
        raise DataError(f"--image-size {opts.image_size} / --jpeg-quality {opts.jpeg_quality}: expected >= 8 / 0..100")
    if opts.train_every < 1 or opts.test_every < 1:
        raise DataError("--train-every/--test-every must be >= 1")
    if opts.selection not in SELECTIONS:
        raise DataError(f"--selection {opts.selection!r}: expected one of {SELECTIONS}")
    if opts.selection == "original" and (opts.train_every, opts.test_every) != (5, 5):
        raise DataError("--train-every/--test-every/--all-frames apply to --selection stride; --selection original "
                        "keeps the original's frames (motion rule for training, every 64th for test)")
    if opts.workers < 1:
        raise DataError(f"--workers {opts.workers}: expected at least 1 process")
    if opts.skeleton not in SKELETONS:
        raise DataError(f"--skeleton {opts.skeleton!r}: expected one of {sorted(SKELETONS)}")
    for c in opts.cameras or ():
        if c not in metadata.camera_ids():
            raise DataError(f"--cameras: unknown camera {c!r}; expected some of {metadata.camera_ids()}")


def _locate(raw_dir: Path, extract_dir: Path, rel: str) -> Path | None:
    for root in (raw_dir, extract_dir):
        p = root / rel
        if p.is_file():
            return p
    return None


def _any_present(raw_dir: Path, extract_dir: Path, seq: metadata.Sequence, cams: list[str]) -> bool:
    """Whether the pose file or any video of the sequence exists (loose or already extracted)."""
    need = _needed_files(seq, cams)
    return any(_locate(raw_dir, extract_dir, rel) is not None for key, (kind, rel) in need.items()
               if kind in ("D3_Positions", "Videos"))


def _needed_files(seq: metadata.Sequence, cams: list[str], selection: str = "stride") -> dict[str, tuple[str, str]]:
    """key -> (raw kind, relative path) of the files one sequence needs."""
    need = {"D3_Positions": ("D3_Positions", metadata.raw_relpath("D3_Positions", seq.subject, seq.base_name))}
    if needs_universal_poses(seq, selection):
        need["universal"] = ("D3_Positions_mono_universal", universal_relpath(seq))
    for c in cams:
        need[f"Videos:{c}"] = ("Videos", metadata.raw_relpath("Videos", seq.subject, seq.base_name, c))
        need[f"ground_truth_bb:{c}"] = ("ground_truth_bb",
                                        metadata.raw_relpath("ground_truth_bb", seq.subject, seq.base_name, c))
    return need


@dataclass
class _Todo:
    """A sequence to process: the cameras to crop now, and the shard whose other cameras are kept."""

    seq: metadata.Sequence
    cameras: list[str]
    keep_part: Path | None = None


def _pose_frames(raw_dir: Path, extract_dir: Path, seq: metadata.Sequence) -> tuple[int, str]:
    """Frames of the sequence and where the number comes from: its pose file's header, if it is on disk."""
    path = _locate(raw_dir, extract_dir, metadata.raw_relpath("D3_Positions", seq.subject, seq.base_name))
    if path is not None:
        try:
            return cdf_frame_count(path), "pose file"
        except DataError:  # processing names the file
            pass
    return seq.num_frames, "official count"


def _cameras_present(raw_dir: Path, extract_dir: Path, seq: metadata.Sequence, cams: list[str],
                     archived_videos: set[str]) -> list[str]:
    """Cameras whose video is on disk or (maybe) in the subject's Videos archive."""
    if seq.subject in archived_videos:
        return list(cams)
    return [c for c in cams if _locate(raw_dir, extract_dir, _needed_files(seq, [c])[f"Videos:{c}"][1])]


def _extract_archives(raw_dir: Path, extract_dir: Path, todo: list[_Todo], opts: PreprocessOptions,
                      fail: Callable[[str, str], None]) -> None:
    """Extract the members the pending sequences need from official archives (loose files win)."""
    archives = list_archives(raw_dir)
    wanted: dict[Path, set[str]] = {}
    for t in todo:
        for kind, rel in _needed_files(t.seq, t.cameras, opts.selection).values():
            if kind == "ground_truth_bb" and opts.bbox_source == "poses":
                continue
            if _locate(raw_dir, extract_dir, rel) is None and (kind, t.seq.subject) in archives:
                wanted.setdefault(archives[(kind, t.seq.subject)], set()).add(Path(rel).name)
    for archive, names in sorted(wanted.items()):
        logger.info("extracting %d files from %s", len(names), archive.name)
        try:
            extract_members(archive, extract_dir, names)
        except DataError as e:
            fail(f"archive {archive.name}", str(e))


def _labels_current(manifest: dict, out: Path) -> bool:
    """Whether labels.npz and the limb file exist and hold exactly the manifest's sequences (meta only read)."""
    meta = labels_meta_or_none(out)
    if meta is None or not (out / "mean_and_std_limb_length.h5").is_file():
        return False
    return meta.get("sequences") == sorted(manifest["sequences"]) and meta.get("bbox_sources_used") == {
        k: v["bbox_sources"] for k, v in manifest["sequences"].items()}


def _manifest_entry(result: SequenceResult, old: dict | None) -> dict:
    """A finished sequence in the manifest; the box sources of kept cameras come from its old entry."""
    sources = {**(old or {}).get("bbox_sources", {}), **result.bbox_sources}
    return {"part": str(Path("parts") / f"{result.key}.npz"), "rows": result.rows, "cameras": result.cameras,
            "bbox_sources": {c: sources[c] for c in result.cameras}}


def _merge(out: Path, manifest: dict, opts: PreprocessOptions) -> tuple[Path, int]:
    """Rebuild labels.npz and the limb-length file from the shards of all finished sequences."""
    skeleton = get_skeleton(opts.skeleton)
    keys = sorted(manifest["sequences"])
    shards = [load_labels(out / manifest["sequences"][k]["part"]) for k in keys]
    meta = labels_meta(
        ctxpose_version=__version__, dataset="human36m", skeleton=skeleton.name,
        joint_names=list(skeleton.names), bones=[list(b) for b in skeleton.bones], image_size=opts.image_size,
        jpeg_quality=opts.jpeg_quality, bbox_source=opts.bbox_source, bbox_scale=opts.bbox_scale,
        bbox_sources_used={k: manifest["sequences"][k]["bbox_sources"] for k in keys},
        dist_model="h36m (source cameras); crops are undistorted pinholes",
        frame="0-based pose frame index; image file name = frame",
        selection=selection_meta(opts.selection, opts.train_every, opts.test_every),
        sequences=keys,
    )
    labels = Labels.concatenate(shards, meta)
    labels_path = out / "labels.npz"
    labels.save(labels_path)
    _write_limb_lengths(out / "mean_and_std_limb_length.h5", labels, skeleton)
    return labels_path, len(labels)


def _write_limb_lengths(path: Path, labels: Labels, skeleton: Skeleton) -> None:
    """Bone-length mean/std over the training subjects' frames (one per frame, as the original's rows)."""
    import h5py

    train = np.isin(labels.subject, metadata.train_subjects())
    subjects = metadata.train_subjects()
    if not train.any():
        logger.warning("no training subject processed: limb lengths computed over all processed subjects")
        train, subjects = np.ones(len(labels), dtype=bool), sorted(set(labels.subject.tolist()))
    ids = np.char.add(np.char.add(labels.subject, "/"), np.char.add(labels.action, labels.trial.astype(str)))
    ids = np.char.add(np.char.add(ids, "/"), labels.frame.astype(str))
    _, first = np.unique(ids[train], return_index=True)
    lengths = skeleton.bone_lengths(labels.keypoints_3d[train][first]).reshape(-1, skeleton.num_bones)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f["mean"] = lengths.mean(axis=0)
        f["std"] = lengths.std(axis=0)
        f.attrs["bones"] = np.array(skeleton.bones)
        f.attrs["skeleton"] = skeleton.name
        f.attrs["subjects"] = ",".join(subjects)
        f.attrs["frames"] = len(lengths)


def _plan(raw_dir: Path, out: Path, extract_dir: Path, opts: PreprocessOptions, manifest: dict,
          report: PreprocessReport) -> list[_Todo]:
    """Sequences to process with their cameras; fills ``report.skipped`` and ``report.absent``."""
    cams_wanted = list(opts.cameras) if opts.cameras else metadata.camera_ids()
    todo = []
    for seq in metadata.sequences(list(opts.subjects) if opts.subjects else None,
                                  list(opts.actions) if opts.actions else None):
        cams = [c for c in cams_wanted if not metadata.is_missing_video(seq.subject, seq.name, c)]
        done = manifest["sequences"].get(seq.key)
        part = out / done["part"] if done else None
        if part is None or not part.is_file():
            todo.append(_Todo(seq, cams))
        elif set(cams) <= set(done["cameras"]):
            report.skipped.append(seq.key)
        else:  # a camera that failed or was not asked for before: crop it, keep the others
            todo.append(_Todo(seq, [c for c in cams if c not in done["cameras"]], part))
    archived = {s for kind, s in list_archives(raw_dir) if kind in ("D3_Positions", "Videos")}
    present = []
    for t in todo:  # a sequence none of whose files exist is not in this download: not a failure
        if t.seq.subject in archived or _any_present(raw_dir, extract_dir, t.seq, t.cameras):
            present.append(t)
        else:
            report.absent.append(t.seq.key)
    return present


def _nothing_found(raw_dir: Path, opts: PreprocessOptions) -> DataError:
    seq = metadata.sequence("S1", "Directions-1")
    expected = (f"{metadata.raw_relpath('D3_Positions', 'S1', seq.base_name)} and "
                f"{metadata.raw_relpath('Videos', 'S1', seq.base_name, metadata.camera_ids()[0])}, or official "
                f"archives such as {metadata.archive_name('D3_Positions', 'S1')} and "
                f"{metadata.archive_name('Videos', 'S1')}")
    filters = "".join(f" --{name} {','.join(value)}" for name, value in
                      (("subjects", opts.subjects), ("actions", opts.actions), ("cameras", opts.cameras)) if value)
    where = f" matching{filters}" if filters else ""
    nested = sorted({p.parent for s in metadata.subjects() for p in raw_dir.glob(f"*/{s}") if p.is_dir()} |
                    {p.parent for p in raw_dir.glob("*/*.tgz")})
    hint = f"; found some one folder down: {nested[0]}" if nested else ""
    return DataError(f"no Human3.6M sequences under {raw_dir}{where} (expected e.g. {expected}){hint}")


def preprocess_h36m(raw_dir: str | Path, out_dir: str | Path, options: PreprocessOptions | None = None,
                    progress: Callable[[str, dict], None] | None = None) -> PreprocessReport:
    """Raw Human3.6M -> processed folder (see the module docstring). Resumable and idempotent.

    With ``workers`` > 1, a script must call this under ``if __name__ == "__main__":`` (the worker processes
    are started with the spawn method and import the script).

    Args:
        raw_dir: folder with the official archives (``Videos_S1.tgz``...) and/or their extracted
            ``S1/...`` folders.
        out_dir: processed folder (created).
        options: settings; defaults as documented on :class:`PreprocessOptions`.
        progress: called as ``progress(event, info)``: ("plan", {"sequences", "frames"}) with the crops
            planned from the pose files on disk, ("frames", {"n"}) as crops are written, ("failed",
            {"key", "error"}) once per failure, ("done", {"key", "unused"}) per sequence, failed or not;
            "unused" = planned crops that were not made, to shrink a progress total.

    Returns:
        :class:`PreprocessReport`, also written to ``<out>/preprocess_report.json`` (not by a dry run);
        ``report.ok`` is False if any sequence, camera or archive failed.

    Raises:
        DataError: bad options, no Human3.6M sequence under ``raw_dir`` (nothing is written then), or
            ``out_dir`` was made with other settings.
        OutputError: ``out_dir`` cannot be written (one line naming the path; finished work is kept).
        ctxpose.errors.Stopped: Ctrl-C or SIGTERM (``report``: this :class:`PreprocessReport`); the workers are
            stopped, the sequences finished before are recorded in the manifest and the labels, no partial file
            is left.
    """
    opts = options or PreprocessOptions()
    check_options(opts)
    raw_dir, out = Path(raw_dir).expanduser(), Path(out_dir).expanduser()
    if not raw_dir.is_dir():
        raise DataError(f"raw folder {raw_dir} does not exist")
    emit = progress or (lambda event, info: None)
    extract_dir = Path(opts.extract_dir) if opts.extract_dir else out / ".raw"
    manifest = read_manifest(out / MANIFEST_NAME, opts, MANIFEST_FORMAT)
    report = PreprocessReport()
    todo = _plan(raw_dir, out, extract_dir, opts, manifest, report)
    if not todo and not report.skipped:
        raise _nothing_found(raw_dir, opts)
    archived_videos = {s for kind, s in list_archives(raw_dir) if kind == "Videos"}
    for t in todo:
        n, source = _pose_frames(raw_dir, extract_dir, t.seq)
        # the motion rule's count is known once the universal poses are read (not in a dry run)
        frames = (None if needs_universal_poses(t.seq, opts.selection)
                  else len(sequence_frames(t.seq, opts.selection, opts.train_every, opts.test_every, n_frames=n)))
        cams = _cameras_present(raw_dir, extract_dir, t.seq, t.cameras, archived_videos)
        report.planned.append({"sequence": t.seq.key, "cameras": t.cameras, "frames": frames,
                               "crops": None if frames is None else frames * len(cams), "frames_from": source})
    if opts.dry_run:
        return report
    run = Run(out, manifest, report, emit, _manifest_entry, lambda m: _merge(out, m, opts),
              lambda m: _labels_current(m, out))
    run.execute(lambda run: _jobs(raw_dir, out, extract_dir, opts, todo, run), opts.workers)
    if report.ok and not opts.keep_extracted and extract_dir == out / ".raw" and extract_dir.exists():
        shutil.rmtree(extract_dir)
    return report


def _jobs(raw_dir: Path, out: Path, extract_dir: Path, opts: PreprocessOptions, todo: list[_Todo],
          run: Run) -> list[SequenceJob]:
    """Extract what the sequences need from archives, then one job per sequence whose files are there."""
    _extract_archives(raw_dir, extract_dir, todo, opts, run.fail)
    cameras = load_h36m_cameras(opts.cameras_file)
    skeleton = get_skeleton(opts.skeleton)
    jobs = []
    for t in todo:
        seq, cams = t.seq, t.cameras
        if not _any_present(raw_dir, extract_dir, seq, cams):  # not in these archives either
            run.report.absent.append(seq.key)
            continue
        files = {k: _locate(raw_dir, extract_dir, rel)
                 for k, (_, rel) in _needed_files(seq, cams, opts.selection).items()}
        n, _ = _pose_frames(raw_dir, extract_dir, seq)
        try:
            frames = sequence_frames(seq, opts.selection, opts.train_every, opts.test_every,
                                     files.pop("universal", None), n_frames=n)
        except DataError as e:  # the universal poses the motion rule needs are missing or unreadable
            run.fail(seq.key, str(e))
            continue
        jobs.append(SequenceJob(
            seq=seq, cameras={c: cameras[(seq.subject, c)] for c in cams},
            nominal_hw={c: image_size(seq.subject, c) for c in cams}, files=files,
            frames=frames, out_dir=out,
            part_path=out / "parts" / seq.subject / f"{seq.name}.npz", image_size=opts.image_size,
            jpeg_quality=opts.jpeg_quality, bbox_source=opts.bbox_source, bbox_scale=opts.bbox_scale,
            skeleton=skeleton, keep_part=t.keep_part))
    return jobs
