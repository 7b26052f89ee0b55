"""``ctxpose export-3dhp``: predictions -> the ``inference_data.mat`` the official MATLAB evaluation loads.

The widely used ``mpii_test_predictions_py.m`` (test_util of the release, in the form most projects ship)
``load``s ``inference_data.mat`` and, for each sequence i, takes ``TSi(:,:,:,k)`` as the 3x17 prediction of
the k-th valid frame and compares it with ``univ_annot3`` minus its pelvis, without touching the
prediction. So the file holds, per sequence present, one variable ``TS1``..``TS6``: float64, MATLAB size
3 x 17 x 1 x N_valid (h5py (N_valid, 1, 17, 3)), mm, test camera axes, 3DHP joint order, pelvis (joint 15
in MATLAB) at the origin, valid frames in order. Written as MATLAB v7.3 with h5py, atomically.

Input: a ``predictions.npz`` (:mod:`ctxpose.data.predictions_npz`, no pickle) with
    keypoints_3d   (N, 17, 3)  predictions, contextpose17 order, test camera frame, mm (absolute or not:
                               the pelvis is subtracted here)
    frame          (N,)        0-based annotation frame of each prediction (image img_{frame+1:06d}.jpg)
    and either     sequence (N,) str "TS1".."TS6"
    or             subject_idx (N,) int with subject_names (str array, "TS1".."TS6"), as ``ctxpose eval``
                   writes them for the 3DHP dataset
Other arrays (``index``, ``keypoints_3d_gt``, ...) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctxpose.data.mpi_inf_3dhp import metadata
from ctxpose.data.mpi_inf_3dhp.labels import load_3dhp_labels
from ctxpose.data.predictions_npz import load_predictions
from ctxpose.errors import DataError
from ctxpose.skeleton import H36M_CONTEXTPOSE
from ctxpose.utils.matlab import write_mat_v73


@dataclass
class SequencePredictions:
    """Predictions of one sequence, ordered by frame: ``frames`` (n,) int64, ``keypoints_3d`` (n, 17, 3) mm."""

    frames: np.ndarray
    keypoints_3d: np.ndarray


@dataclass
class ExportReport:
    """What :func:`export_inference_data` wrote: ``path``, frames per sequence, sequences missing."""

    path: Path
    frames: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    checked_against: Path | None = None


def read_predictions(path: str | Path) -> dict[str, SequencePredictions]:
    """Read a predictions file (format in the module docstring), grouped by sequence, sorted by frame.

    Raises:
        DataError: unreadable, a key missing or misshaped, unknown sequences, repeated frames, NaN.
    """
    path = Path(path)
    data = load_predictions(path, ("keypoints_3d", "frame"))
    kp = np.asarray(data["keypoints_3d"], dtype=np.float64)
    n, j = len(kp), H36M_CONTEXTPOSE.num_joints
    if kp.shape != (n, j, 3):
        raise DataError(f"{path}: keypoints_3d has shape {kp.shape}, expected (N, {j}, 3) (contextpose17 order)")
    frame = np.asarray(data["frame"]).astype(np.int64).reshape(-1)
    if "sequence" in data:
        sequence = np.asarray(data["sequence"]).astype(str).reshape(-1)
    elif "subject_idx" in data and "subject_names" in data:
        names = np.asarray(data["subject_names"]).astype(str)
        sequence = names[np.asarray(data["subject_idx"]).astype(np.int64).reshape(-1)]  # checked by the loader
    else:
        raise DataError(f"{path}: no 'sequence' and no 'subject_idx' + 'subject_names' to tell the sequences apart")
    if len(frame) != n or len(sequence) != n:
        raise DataError(f"{path}: {n} poses but {len(frame)} frames and {len(sequence)} sequence names")
    unknown = sorted(set(sequence.tolist()) - set(metadata.SEQUENCES))
    if unknown:
        raise DataError(f"{path}: sequences {unknown} are not MPI-INF-3DHP test sequences {list(metadata.SEQUENCES)}; "
                        "predictions of another dataset?")
    out = {}
    for seq in metadata.SEQUENCES:
        rows = np.flatnonzero(sequence == seq)
        if not len(rows):
            continue
        rows = rows[np.argsort(frame[rows], kind="stable")]
        frames = frame[rows]
        repeated = frames[1:][np.diff(frames) == 0]
        if len(repeated):
            raise DataError(f"{path}: {seq} frame {int(repeated[0])} is predicted more than once")
        out[seq] = SequencePredictions(frames, kp[rows])
    return out


def check_complete(predictions: dict[str, SequencePredictions], labels_path: str | Path) -> None:
    """Every valid frame of each predicted sequence is predicted, nothing else (the official script pairs
    the k-th prediction with the k-th valid frame).

    Raises:
        DataError: naming the sequence, the counts and the first missing or extra frame.
    """
    cols, _ = load_3dhp_labels(labels_path)
    for seq, pred in predictions.items():
        expected = np.sort(cols["frame"][(cols["sequence"] == seq) & cols["valid"]].astype(np.int64))
        if not np.array_equal(pred.frames, expected):
            extra = np.setdiff1d(pred.frames, expected)
            lacking = np.setdiff1d(expected, pred.frames)
            what = (f"frame {int(lacking[0])} is missing" if len(lacking) else
                    f"frame {int(extra[0])} is not a valid frame")
            raise DataError(f"{labels_path}: {seq} has {len(expected)} valid frames, the predictions {len(pred.frames)}"
                            f" ({what}); evaluate every valid frame of the sequence")


def inference_variables(predictions: dict[str, SequencePredictions]) -> dict[str, np.ndarray]:
    """The variables of ``inference_data.mat`` in MATLAB's shape: name -> (3, 17, 1, n) float64."""
    out = {}
    for seq, pred in predictions.items():
        rel = metadata.root_relative_3dhp(pred.keypoints_3d)  # (n, 17, 3), 3DHP order, pelvis at 0
        out[seq] = np.ascontiguousarray(np.transpose(rel, (2, 1, 0))[:, :, None, :])
    return out


def export_inference_data(predictions_path: str | Path, out_path: str | Path,
                          labels_path: str | Path | None = None) -> ExportReport:
    """Write ``inference_data.mat`` (see the module docstring) from a predictions file.

    Args:
        predictions_path: the predictions ``.npz``.
        out_path: destination ``.mat`` (written atomically).
        labels_path: optional ``labels.npz`` of the processed 3DHP folder: every valid frame of each
            predicted sequence must then be predicted.

    Returns:
        :class:`ExportReport` (``missing``: test sequences without predictions; the official script needs
        all six).

    Raises:
        DataError: bad predictions, incomplete sequences, or an unwritable destination.
    """
    predictions = read_predictions(predictions_path)
    if labels_path is not None:
        check_complete(predictions, labels_path)
    try:
        write_mat_v73(out_path, inference_variables(predictions))
    except OSError as e:
        raise DataError(f"{out_path}: cannot write ({e.strerror or e})") from None
    return ExportReport(Path(out_path), {s: len(p.frames) for s, p in predictions.items()},
                        [s for s in metadata.SEQUENCES if s not in predictions],
                        Path(labels_path) if labels_path else None)
