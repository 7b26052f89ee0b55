"""The MPI-INF-3DHP evaluation protocol: PCK, AUC and MPJPE tables as the test set's MATLAB scripts compute them.

A port of the test set's MATLAB evaluation (``test_util/mpii_test_predictions_py.m``,
``mpii_evaluate_errors.m``, ``mpii_compute_3d_pck.m``, ``mpii_get_pck_auc_joint_groups.m``), written from
what those files do:

* ground truth ``univ_annot3`` (the universal, Human3.6M-scaled skeleton) minus its pelvis (joint 15 in
  MATLAB order); the prediction is used as given (the script does not subtract its pelvis);
* per-joint Euclidean error, mm; PCK = % of errors strictly below 150 mm (:func:`pck_3dhp`); the PCK curve at
  0:5:150 mm (31 thresholds) and AUC = its mean, % (:func:`auc_3dhp`; an exact prediction scores
  30/31 = 96.77: nothing is below 0);
* per joint group, then "Total" = the groups weighted by their joint counts;
* MPJPE: mean over frames per joint, "Average" = mean over all 17 joints, the zero-error pelvis included;
* tables per sequence and per activity (1..7, :data:`ctxpose.data.mpi_inf_3dhp.metadata.ACTIVITIES`) plus
  "All" (every frame pooled).

:func:`pck_3dhp` and :func:`auc_3dhp` are the only PCK/AUC of 3D poses in the package: the Human3.6M-style
accumulator (:mod:`ctxpose.metrics.pose`) reports them per pose under the keys ``pck_3dhp`` and ``auc_3dhp``.

Two joint-group files circulate: the release's (17 joints: head with head top, spine, hips with pelvis)
and the 14-joint one most recent projects ship (pelvis, spine and head dropped). They give different PCK
and AUC on the same errors, so both are supported by name and every table says which one was used.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctxpose.config import GroundTruth3DHP, JointGroups
from ctxpose.data.mpi_inf_3dhp.export import SequencePredictions, check_complete
from ctxpose.data.mpi_inf_3dhp.labels import load_3dhp_labels
from ctxpose.data.mpi_inf_3dhp.metadata import ACTIVITIES, SCENES, root_relative_3dhp
from ctxpose.errors import DataError
from ctxpose.skeleton import CONTEXTPOSE_TO_3DHP, MPI_INF_3DHP, MPI_INF_3DHP_NAMES
from ctxpose.utils.io import atomic_write_text

if TYPE_CHECKING:
    from ctxpose.data.mpi_inf_3dhp.dataset import MPIInf3DHPDataset

#: Joint groups by name, in 3DHP joint names (``ctxpose.skeleton.MPI_INF_3DHP_NAMES``): "17" is the
#: release's ``mpii_get_pck_auc_joint_groups.m``, "14" the variant without pelvis, spine and head.
MPI_INF_3DHP_JOINT_GROUPS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    JointGroups.ALL17.value: (
        ("Head", ("head_top", "head")), ("Neck", ("neck",)), ("Shou", ("right_shoulder", "left_shoulder")),
        ("Elbow", ("right_elbow", "left_elbow")), ("Wrist", ("right_wrist", "left_wrist")), ("spine", ("spine",)),
        ("Hip", ("right_hip", "left_hip", "pelvis")), ("Knee", ("right_knee", "left_knee")),
        ("Ankle", ("right_ankle", "left_ankle"))),
    JointGroups.DROP3.value: (
        ("Head", ("head_top",)), ("Neck", ("neck",)), ("Shou", ("right_shoulder", "left_shoulder")),
        ("Elbow", ("right_elbow", "left_elbow")), ("Wrist", ("right_wrist", "left_wrist")),
        ("Hip", ("right_hip", "left_hip")), ("Knee", ("right_knee", "left_knee")),
        ("Ankle", ("right_ankle", "left_ankle"))),
}
#: Ground truths: "univ_annot3" is what the official evaluation compares against; "annot3_nonstandard" (the
#: subject's own bone lengths) is not comparable with published numbers.
MPI_INF_3DHP_GROUND_TRUTHS = tuple(g.value for g in GroundTruth3DHP)
MPI_INF_3DHP_AUC_THRESHOLDS_MM = tuple(float(t) for t in range(0, 151, 5))
MPI_INF_3DHP_PCK_THRESHOLD_MM = 150.0
MPI_INF_3DHP_CSV_NAMES = ("mpii_3dhp_evaluation_sequencewise.csv", "mpii_3dhp_evaluation_activitywise.csv")


def mpi_inf_3dhp_group_indices(joint_groups: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The named joint groups as (group name, 3DHP joint indices)."""
    if joint_groups not in MPI_INF_3DHP_JOINT_GROUPS:
        raise ValueError(f"joint groups {joint_groups!r}: expected one of {sorted(MPI_INF_3DHP_JOINT_GROUPS)}")
    return tuple((name, tuple(MPI_INF_3DHP.names.index(j) for j in joints))
                 for name, joints in MPI_INF_3DHP_JOINT_GROUPS[joint_groups])


def pck_3dhp(errors: np.ndarray, threshold_mm: float = MPI_INF_3DHP_PCK_THRESHOLD_MM,
             weights: np.ndarray | None = None) -> np.ndarray:
    """3D PCK, the MPI-INF-3DHP rule: percent of joint errors strictly below ``threshold_mm``.

    Args:
        errors: (..., J) per-joint errors, mm (root-relative poses).
        threshold_mm: distance threshold, mm (exclusive, as ``mpii_compute_3d_pck.m``).
        weights: optional (..., J) joint weights (0 excludes a joint).

    Returns:
        (...) percent in [0, 100] over the last axis; NaN where no joint counts.
    """
    e = np.asarray(errors, dtype=np.float64)
    w = np.ones_like(e) if weights is None else np.broadcast_to(np.asarray(weights, dtype=np.float64), e.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * ((e < threshold_mm) * w).sum(axis=-1) / w.sum(axis=-1)


def auc_3dhp(errors: np.ndarray, thresholds_mm: Sequence[float] = MPI_INF_3DHP_AUC_THRESHOLDS_MM,
             weights: np.ndarray | None = None) -> np.ndarray:
    """Area under the 3D PCK curve, the MPI-INF-3DHP rule: mean of :func:`pck_3dhp` over 0:5:150 mm, percent.

    Args:
        errors: (..., J) per-joint errors, mm.
        thresholds_mm: the curve's thresholds, mm.
        weights: optional (..., J) joint weights.

    Returns:
        (...) percent in [0, 100]; an exact prediction scores 100 * 30/31 (nothing is below 0 mm).
    """
    return np.mean([pck_3dhp(errors, t, weights) for t in thresholds_mm], axis=0)


def mpi_inf_3dhp_pck_auc(errors: np.ndarray, joint_groups: str = "17") -> tuple[dict[str, float], dict[str, float]]:
    """PCK and AUC per joint group and "Total", as ``mpii_compute_3d_pck.m``.

    Args:
        errors: (F, 17) per-joint errors of F frames, mm, 3DHP order.
        joint_groups: "17" or "14".

    Returns:
        ``(pck, auc)``: group name (and "Total", the groups weighted by their joint counts) -> percent; NaN
        for F = 0.
    """
    errors = np.asarray(errors, dtype=np.float64)
    pck, auc, counts = {}, {}, {}
    for name, idx in mpi_inf_3dhp_group_indices(joint_groups):
        group = errors[:, list(idx)].reshape(-1)
        pck[name], auc[name], counts[name] = float(pck_3dhp(group)), float(auc_3dhp(group)), len(idx)
    total = sum(counts.values())
    pck["Total"] = sum(pck[g] * n for g, n in counts.items()) / total
    auc["Total"] = sum(auc[g] * n for g, n in counts.items()) / total
    return pck, auc


@dataclass(frozen=True)
class MPI3DHPResult:
    """MPI-INF-3DHP results in the official layout.

    Each table maps a row name to ``{"n_frames", "mpjpe" (mm, mean of the 17 per-joint means),
    "mpjpe_per_joint" (17 values, 3DHP order), "pck" {group: %, "Total": %}, "auc" {...}}``.

    Attributes:
        joint_groups: "17" or "14" (which group file the PCK/AUC columns use).
        ground_truth: "univ_annot3" (standard) or "annot3_nonstandard".
        group_names: the PCK/AUC columns, "Total" last.
        per_sequence: "TS1".. rows (sequences present, in order).
        per_activity: the 7 activity names and "All" (frames pooled).
        per_scene: "green screen", "studio", "outdoor" (frames pooled, i.e. weighted by frames) for the
            scenes present.
    """

    joint_groups: str
    ground_truth: str
    group_names: tuple[str, ...]
    per_sequence: dict[str, dict]
    per_activity: dict[str, dict]
    per_scene: dict[str, dict]

    @property
    def overall(self) -> dict:
        """The "All" row: every frame pooled (the number papers report)."""
        return self.per_activity["All"]

    @property
    def standard(self) -> bool:
        """Whether the ground truth is the official one (``univ_annot3``)."""
        return self.ground_truth == "univ_annot3"

    def to_dict(self) -> dict:
        """JSON-serialisable dict with the protocol settings and every table."""
        return {"dataset": "mpi_inf_3dhp", "joint_groups": self.joint_groups, "ground_truth": self.ground_truth,
                "standard_ground_truth": self.standard, "pck_threshold_mm": MPI_INF_3DHP_PCK_THRESHOLD_MM,
                "auc_thresholds_mm": list(MPI_INF_3DHP_AUC_THRESHOLDS_MM), "group_names": list(self.group_names),
                "overall": self.overall, "per_sequence": self.per_sequence, "per_activity": self.per_activity,
                "per_scene": self.per_scene}

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` atomically; returns the path."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=True))
        return Path(path)

    def official_tables(self) -> tuple[list[list], list[list]]:
        """The cell arrays ``mpii_evaluate_errors.m`` returns (sequence-wise, activity-wise).

        Returns:
            Two lists of rows ("" for an empty cell): an MPJPE block (header of joint names and "Average"),
            then a PCK block and an AUC block (header "PCK"/"AUC", group names, "Total"), padded to one width.
        """
        width = len(MPI_INF_3DHP_NAMES) + 2

        def block(rows: dict[str, dict], names: list[str]) -> list[list]:
            out = [["", *MPI_INF_3DHP_NAMES, "Average"]]
            out += [[n, *rows[k]["mpjpe_per_joint"], rows[k]["mpjpe"]] for k, n in zip(rows, names, strict=True)]
            for metric in ("pck", "auc"):
                out.append([metric.upper(), *self.group_names])
                out += [[n, *(rows[k][metric][g] for g in self.group_names)] for k, n in zip(rows, names,
                                                                                          strict=True)]
            return [r + [""] * (width - len(r)) for r in out]

        seq_names = [f"TestSeq{int(s[2:])}" if s[2:].isdigit() else s for s in self.per_sequence]
        return block(self.per_sequence, seq_names), block(self.per_activity, list(self.per_activity))

    def write_official_csv(self, out_dir: str | Path) -> tuple[Path, Path]:
        """The two CSV files the official script writes (``writetable(cell2table(seq_table), ...)``).

        ``mpii_3dhp_evaluation_sequencewise.csv`` and ``..._activitywise.csv`` in ``out_dir``: a header of
        MATLAB's default variable names (``seq_table1``.., ``activity_table1``..), then the rows of
        :meth:`official_tables`; numbers with 15 significant digits, empty cells empty.
        """
        paths = []
        for name, var, rows in zip(MPI_INF_3DHP_CSV_NAMES, ("seq_table", "activity_table"), self.official_tables(),
                                   strict=True):
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow([f"{var}{i + 1}" for i in range(len(rows[0]))])
            writer.writerows([[v if isinstance(v, str) else f"{v:.15g}" for v in row] for row in rows])
            paths.append(Path(out_dir) / name)
            atomic_write_text(paths[-1], buf.getvalue())
        return paths[0], paths[1]


def _mpi_inf_3dhp_row(errors: np.ndarray, joint_groups: str) -> dict:
    pck, auc = mpi_inf_3dhp_pck_auc(errors, joint_groups)
    with np.errstate(invalid="ignore"):
        per_joint = errors.mean(axis=0) if len(errors) else np.full(errors.shape[1], np.nan)
    return {"n_frames": int(len(errors)), "mpjpe": float(per_joint.mean()),
            "mpjpe_per_joint": [float(v) for v in per_joint], "pck": pck, "auc": auc}


def evaluate_mpi_inf_3dhp(pred: np.ndarray, gt: np.ndarray, sequence: Sequence[str] | np.ndarray,
                          activity: Sequence[int] | np.ndarray, *, joint_groups: str = "17",
                          joint_order: str = "contextpose17", pred_root_relative: bool = False,
                          ground_truth: str = "univ_annot3") -> MPI3DHPResult:
    """MPI-INF-3DHP evaluation of gathered predictions, as the official MATLAB scripts compute it.

    Args:
        pred: (N, 17, 3) predictions, test camera frame (any rotation shared with ``gt``), mm.
        gt: (N, 17, 3) ground truth of the same frames, mm: ``univ_annot3`` for the standard protocol.
        sequence: (N,) sequence names "TS1".."TS6".
        activity: (N,) activity labels 1..7 (``activity_annotation``).
        joint_groups: "17" (the release's groups) or "14" (without pelvis, spine, head).
        joint_order: order of ``pred`` and ``gt``: "contextpose17" (ours) or "mpi_inf_3dhp17".
        pred_root_relative: False (default): the prediction's pelvis is subtracted first (our absolute
            predictions); True: ``pred`` is used as given, like the official script reads
            ``inference_data.mat`` (then it must already be root-relative).
        ground_truth: the name recorded for ``gt``: "univ_annot3" or "annot3_nonstandard".

    Returns:
        :class:`MPI3DHPResult`.

    Raises:
        ValueError: mismatched shapes or lengths, an activity outside 1..7 or unknown settings.
    """
    if ground_truth not in MPI_INF_3DHP_GROUND_TRUTHS:
        raise ValueError(f"ground_truth {ground_truth!r}: expected one of {MPI_INF_3DHP_GROUND_TRUTHS}")
    groups = mpi_inf_3dhp_group_indices(joint_groups)
    gt_rel = root_relative_3dhp(gt, joint_order)
    if pred_root_relative:
        p = np.asarray(pred, dtype=np.float64)
        pred_rel = p[:, list(CONTEXTPOSE_TO_3DHP)] if joint_order == "contextpose17" else p
    else:
        pred_rel = root_relative_3dhp(pred, joint_order)
    if pred_rel.shape != gt_rel.shape:
        raise ValueError(f"pred {pred_rel.shape} and gt {gt_rel.shape} differ")
    seq = np.asarray(sequence).astype(str).reshape(-1)
    act = np.asarray(activity).astype(np.int64).reshape(-1)
    if len(seq) != len(gt_rel) or len(act) != len(gt_rel):
        raise ValueError(f"{len(gt_rel)} poses but {len(seq)} sequence names and {len(act)} activities")
    if len(act) and (act.min() < 1 or act.max() > len(ACTIVITIES)):
        raise ValueError(f"activities must be 1..{len(ACTIVITIES)}, got {act.min()}..{act.max()}")
    errors = np.linalg.norm(pred_rel - gt_rel, axis=-1)  # (N, 17)
    order = sorted(set(seq.tolist()), key=lambda s: (len(s), s))  # TS1 .. TS6
    per_sequence = {s: _mpi_inf_3dhp_row(errors[seq == s], joint_groups) for s in order}
    per_activity = {name: _mpi_inf_3dhp_row(errors[act == k + 1], joint_groups)
                    for k, name in enumerate(ACTIVITIES)}
    per_activity["All"] = _mpi_inf_3dhp_row(errors, joint_groups)
    per_scene = {name: _mpi_inf_3dhp_row(errors[np.isin(seq, members)], joint_groups)
                 for name, members in SCENES if np.isin(seq, members).any()}
    return MPI3DHPResult(joint_groups, ground_truth, (*(g for g, _ in groups), "Total"), per_sequence,
                         per_activity, per_scene)


def evaluate_dataset_predictions(dataset: MPIInf3DHPDataset, index: np.ndarray, keypoints_3d: np.ndarray,
                                 joint_groups: str = "17", ground_truth: str = "univ_annot3") -> MPI3DHPResult:
    """The official tables of predictions for samples of a processed 3DHP dataset (``EvalResult.arrays``).

    Args:
        dataset: the evaluated :class:`~ctxpose.data.mpi_inf_3dhp.dataset.MPIInf3DHPDataset`.
        index: (N,) sample indices of ``dataset``.
        keypoints_3d: (N, 17, 3) camera-frame predictions, contextpose17 order, mm (their pelvis is subtracted).
        joint_groups: "17" or "14".
        ground_truth: "univ_annot3" (official) or "annot3_nonstandard".

    Raises:
        DataError: an index outside the dataset.
    """
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    if len(index) and (index.min() < 0 or index.max() >= len(dataset)):
        raise DataError(f"prediction index {index.min()}..{index.max()} outside this dataset's 0..{len(dataset) - 1}")
    return evaluate_mpi_inf_3dhp(np.asarray(keypoints_3d, np.float64), dataset.ground_truth(ground_truth, index),
                                 dataset.sequence[index], dataset.activity[index], joint_groups=joint_groups,
                                 ground_truth=ground_truth)


def evaluate_like_official(predictions: dict[str, SequencePredictions], labels_path: str | Path,
                           joint_groups: str = "17", ground_truth: str = "univ_annot3") -> MPI3DHPResult:
    """The numbers the official script computes from the exported file, in Python.

    The exported (root-relative, 3DHP-order) poses are compared with the labels' ``univ_annot3`` (or
    ``annot3`` for "annot3_nonstandard") of the same frames, the prediction used as given.

    Raises:
        DataError: the predictions do not cover exactly the valid frames (:func:`check_complete`).
    """
    check_complete(predictions, labels_path)
    cols, _ = load_3dhp_labels(labels_path)
    column = "univ_annot3" if ground_truth == "univ_annot3" else "annot3"
    pred, gt, seqs, acts = [], [], [], []
    for seq, p in predictions.items():
        rows = np.flatnonzero((cols["sequence"] == seq) & cols["valid"])
        rows = rows[np.argsort(cols["frame"][rows])]
        pred.append(root_relative_3dhp(p.keypoints_3d))
        gt.append(cols[column][rows])
        seqs += [seq] * len(rows)
        acts.append(cols["activity"][rows])
    return evaluate_mpi_inf_3dhp(np.concatenate(pred), np.concatenate(gt), seqs, np.concatenate(acts),
                                 joint_groups=joint_groups, joint_order="mpi_inf_3dhp17", pred_root_relative=True,
                                 ground_truth=ground_truth)
