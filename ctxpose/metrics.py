"""3D pose metrics: MPJPE (protocol 1), PA-MPJPE (protocol 2), N-MPJPE, limb-length error, PCK and AUC.

Every function accepts ``np.ndarray`` or ``torch.Tensor`` and returns the same kind (numpy inputs are
computed in float64; torch inputs keep their dtype and device, and stay differentiable). Functions
return one value per pose so that :class:`MetricAccumulator` can aggregate per action and per subject.

Dimension letters: B poses, J joints, L bones, V views. Keypoints are in mm (3D) or px (2D).
``validity`` (B, J) weights joints (0 excludes a joint); a pose with no valid joint gets NaN.

What mirrors the original (ContextPose / learnable-triangulation ``Human36MMultiViewDataset.evaluate``):
MPJPE absolute and root-relative per pose, averaged over poses per action with the trials merged and per
subject; ``LimbLengthError`` (mean |bone length difference|); the 2D PCK the original reports: the 3D
prediction and ground truth projected with the first view's crop projection, a joint counts as detected
when within ``threshold * image_height / 10`` px, thresholds 0.1..0.5. PA-MPJPE, N-MPJPE and 3D PCK/AUC are
the usual definitions (Procrustes with scale and the reflection fix; Rhodin et al. 2018 scale-only
alignment; MPI-INF-3DHP PCK@150 mm and AUC over 0..150 mm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ctxpose.geometry.cameras import project_points
from ctxpose.skeleton import (
    CONTEXTPOSE_TO_3DHP,
    H36M_CONTEXTPOSE,
    MPI_INF_3DHP,
    MPI_INF_3DHP_NAMES,
    Skeleton,
    get_skeleton,
)

Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: Thresholds of the original's 2D PCK, as fractions of a "head size" of image height / 10.
PCK_2D_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
#: MPI-INF-3DHP: PCK threshold and the AUC thresholds (0, 5, ..., 150 mm).
PCK_3D_THRESHOLD_MM = 150.0
AUC_3D_THRESHOLDS_MM = tuple(float(x) for x in np.linspace(0.0, 150.0, 31))


def _to_torch(x: np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
    if x is None or isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _back(x: torch.Tensor, like: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    return x if isinstance(like, torch.Tensor) else x.detach().cpu().numpy()


def _check(pred: torch.Tensor, gt: torch.Tensor, validity: torch.Tensor | None, dim: int = 3) -> None:
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != dim:
        raise ValueError(f"expected pred and gt of the same shape (B, J, {dim}), got {tuple(pred.shape)} and "
                         f"{tuple(gt.shape)}")
    if validity is not None and tuple(validity.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"expected validity of shape {tuple(pred.shape[:2])}, got {tuple(validity.shape)}")


def _weighted_joint_mean(per_joint: torch.Tensor, validity: torch.Tensor | None) -> torch.Tensor:
    """(B, J) -> (B,) mean over joints weighted by validity (NaN where no joint is valid)."""
    if validity is None:
        return per_joint.mean(dim=-1)
    w = validity.to(per_joint.dtype)
    return (per_joint * w).sum(dim=-1) / w.sum(dim=-1)


def _joint_errors(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(pred - gt, dim=-1)


def mpjpe(pred: Array, gt: Array, validity: Array | None = None) -> Array:
    """Mean per-joint position error without alignment (protocol 1, absolute).

    Args:
        pred: (B, J, 3) predicted keypoints, world mm.
        gt: (B, J, 3) ground-truth keypoints, world mm.
        validity: optional (B, J) joint weights.

    Returns:
        (B,) error per pose, mm.
    """
    p, g, v = _to_torch(pred), _to_torch(gt), _to_torch(validity)
    _check(p, g, v)
    return _back(_weighted_joint_mean(_joint_errors(p, g), v), pred)


def mpjpe_relative(pred: Array, gt: Array, validity: Array | None = None, root: int | None = None) -> Array:
    """Root-relative MPJPE (protocol 1 as the original reports it): both poses centred on their root joint.

    Args:
        pred: (B, J, 3) predicted keypoints, mm.
        gt: (B, J, 3) ground-truth keypoints, mm.
        validity: optional (B, J) joint weights.
        root: root joint index; default the skeleton's pelvis.

    Returns:
        (B,) error per pose, mm.
    """
    root = get_skeleton().root if root is None else root
    p, g, v = _to_torch(pred), _to_torch(gt), _to_torch(validity)
    _check(p, g, v)
    err = _joint_errors(p - p[:, root : root + 1], g - g[:, root : root + 1])
    return _back(_weighted_joint_mean(err, v), pred)


def procrustes_align(pred: Array, gt: Array, validity: Array | None = None, scale: bool = True) -> Array:
    """Best similarity transform (rotation, translation and, if ``scale``, scale) taking ``pred`` onto ``gt``.

    Least squares over the valid joints (Umeyama 1991); a reflection is never used: when the optimal
    orthogonal matrix has determinant -1 the smallest singular direction is flipped.

    Args:
        pred: (B, J, 3) predicted keypoints, mm.
        gt: (B, J, 3) ground-truth keypoints, mm.
        validity: optional (B, J) joint weights.
        scale: also fit an isotropic scale.

    Returns:
        (B, J, 3) aligned prediction, mm, in ``gt``'s frame.
    """
    p, g, v = _to_torch(pred), _to_torch(gt), _to_torch(validity)
    _check(p, g, v)
    w = torch.ones(p.shape[:2], dtype=p.dtype, device=p.device) if v is None else v.to(p.dtype)
    total = w.sum(dim=-1, keepdim=True)
    # (B, J, 1) summing to 1; a pose without valid joints is aligned with uniform weights (its error is NaN)
    w = torch.where(total > 0, w / total.clamp_min(1e-12), torch.full_like(w, 1.0 / w.shape[-1]))[..., None]
    mu_p, mu_g = (w * p).sum(1, keepdim=True), (w * g).sum(1, keepdim=True)
    p0, g0 = p - mu_p, g - mu_g
    cov = (w * g0).transpose(1, 2) @ p0  # (B, 3, 3) = sum_j w_j g_j p_j^T
    u, s, vh = torch.linalg.svd(cov)
    sign = torch.sign(torch.linalg.det(u @ vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.ones_like(s)
    d[:, -1] = sign
    rot = u @ (d[..., None] * vh)  # (B, 3, 3), gt ~ s * rot @ p
    if scale:
        var_p = (w * p0.pow(2)).sum(dim=(1, 2))
        factor = ((s * d).sum(-1) / var_p)[:, None, None]
    else:
        factor = torch.ones_like(s[:, :1, None])
    aligned = factor * p0 @ rot.transpose(1, 2) + mu_g
    return _back(aligned, pred)


def pa_mpjpe(pred: Array, gt: Array, validity: Array | None = None) -> Array:
    """Procrustes-aligned MPJPE (protocol 2): similarity alignment with scale, then MPJPE.

    Args:
        pred: (B, J, 3) predicted keypoints, mm.
        gt: (B, J, 3) ground-truth keypoints, mm.
        validity: optional (B, J) joint weights (also weight the alignment).

    Returns:
        (B,) error per pose, mm.
    """
    p, g, v = _to_torch(pred), _to_torch(gt), _to_torch(validity)
    aligned = procrustes_align(p, g, v)
    return _back(_weighted_joint_mean(_joint_errors(aligned, g), v), pred)


def n_mpjpe(pred: Array, gt: Array, validity: Array | None = None, root: int | None = None) -> Array:
    """Scale-normalised MPJPE (N-MPJPE, Rhodin et al. 2018).

    Both poses are centred on the root joint; the prediction is then multiplied by the least-squares
    scale ``<pred, gt> / <pred, pred>`` (over valid joints) before the MPJPE.

    Args:
        pred: (B, J, 3) predicted keypoints, mm.
        gt: (B, J, 3) ground-truth keypoints, mm.
        validity: optional (B, J) joint weights.
        root: root joint index; default the skeleton's pelvis.

    Returns:
        (B,) error per pose, mm.
    """
    root = get_skeleton().root if root is None else root
    p, g, v = _to_torch(pred), _to_torch(gt), _to_torch(validity)
    _check(p, g, v)
    p, g = p - p[:, root : root + 1], g - g[:, root : root + 1]
    w = torch.ones(p.shape[:2], dtype=p.dtype, device=p.device) if v is None else v.to(p.dtype)
    factor = (w[..., None] * p * g).sum(dim=(1, 2)) / (w[..., None] * p * p).sum(dim=(1, 2))
    return _back(_weighted_joint_mean(_joint_errors(factor[:, None, None] * p, g), v), pred)


def limb_length_error(pred: Array, gt: Array, bones: Sequence[tuple[int, int]] | None = None) -> Array:
    """Mean absolute bone-length difference per pose (the original's ``LimbLengthError``, vectorised).

    The original returns the mean over bones of the batch mean, which equals the mean of this function's
    output over the batch.

    Args:
        pred: (B, J, 3) predicted keypoints, mm.
        gt: (B, J, 3) ground-truth keypoints, mm.
        bones: (joint_a, joint_b) pairs; default the skeleton's bones.

    Returns:
        (B,) mean over bones of |length_pred - length_gt|, mm.
    """
    bones = get_skeleton().bones if bones is None else bones
    p, g = _to_torch(pred), _to_torch(gt)
    _check(p, g, None)
    a = torch.tensor([b[0] for b in bones], device=p.device)
    b = torch.tensor([b[1] for b in bones], device=p.device)
    len_p = torch.linalg.vector_norm(p[:, a] - p[:, b], dim=-1)
    len_g = torch.linalg.vector_norm(g[:, a] - g[:, b], dim=-1)
    return _back((len_p - len_g).abs().mean(dim=-1), pred)


def pck_2d_detections(pred_2d: Array, gt_2d: Array, threshold_px: float) -> Array:
    """Which joints lie within ``threshold_px`` of the ground truth.

    Args:
        pred_2d: (B, J, 2) predicted image points, px.
        gt_2d: (B, J, 2) ground-truth image points, px.
        threshold_px: distance threshold, px (inclusive).

    Returns:
        (B, J) boolean detections; a NaN point (no projection) is never detected.
    """
    p, g = _to_torch(pred_2d), _to_torch(gt_2d)
    _check(p, g, None, dim=2)
    return _back(_joint_errors(p, g) <= threshold_px, pred_2d)


def _pck_2d_original_detections(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, image_height: int,
                                thresholds: Sequence[float]) -> dict[float, torch.Tensor]:
    """threshold -> (B, J) detections of :func:`pck_2d_original` (the accumulator keeps them per pose)."""
    _check(p, g, None)
    m = m[:, 0] if m.ndim == 4 else m
    gt_2d, pred_2d = project_points(g, m), project_points(p, m)
    head = image_height / 10.0
    return {float(thr): pck_2d_detections(pred_2d, gt_2d, head * thr) for thr in thresholds}


def pck_2d_original(
    pred_3d: Array,
    gt_3d: Array,
    proj_matrices: Array,
    image_height: int,
    thresholds: Sequence[float] = PCK_2D_THRESHOLDS,
) -> dict[float, Array]:
    """The 2D PCK the original reports: per-joint detection rates of the projected 3D poses.

    Both poses are projected with the first view's crop projection; a joint counts as detected when its
    projected prediction lies within ``threshold * image_height / 10`` px of the projected ground truth. A
    joint whose prediction or ground truth has no projection (at or behind the camera, NaN from
    :func:`ctxpose.geometry.cameras.project_points`) is a miss.

    Args:
        pred_3d: (B, J, 3) predicted keypoints, world mm.
        gt_3d: (B, J, 3) ground-truth keypoints, world mm.
        proj_matrices: (B, 3, 4) projection of the first view's crop (or (B, V, 3, 4); view 0 is used).
        image_height: crop height, px; the "head size" is ``image_height / 10``.
        thresholds: fractions of the head size.

    Returns:
        threshold -> (J,) detection rate of each joint over the B poses (the original's
        ``per_joint_pckh``); its mean over joints is the original's ``avg_joint_pckh``.
    """
    p = _to_torch(pred_3d)
    detections = _pck_2d_original_detections(p, _to_torch(gt_3d), _to_torch(proj_matrices), image_height, thresholds)
    return {thr: _back(det.to(p.dtype).mean(dim=0), pred_3d) for thr, det in detections.items()}


def pck_3d(pred: Array, gt: Array, threshold_mm: float = PCK_3D_THRESHOLD_MM,
           root: int | None = None) -> Array:
    """3D PCK per pose (MPI-INF-3DHP): fraction of root-relative joints within ``threshold_mm``.

    Args:
        pred: (B, J, 3) predicted keypoints, mm.
        gt: (B, J, 3) ground-truth keypoints, mm.
        threshold_mm: distance threshold, mm (inclusive).
        root: root joint index; default the skeleton's pelvis.

    Returns:
        (B,) fraction of joints in [0, 1].
    """
    root = get_skeleton().root if root is None else root
    p, g = _to_torch(pred), _to_torch(gt)
    _check(p, g, None)
    err = _joint_errors(p - p[:, root : root + 1], g - g[:, root : root + 1])
    return _back((err <= threshold_mm).to(err.dtype).mean(dim=-1), pred)


def auc_3d(pred: Array, gt: Array, thresholds_mm: Sequence[float] = AUC_3D_THRESHOLDS_MM,
           root: int | None = None) -> Array:
    """Area under the 3D PCK curve per pose: mean of :func:`pck_3d` over ``thresholds_mm`` (0..150 mm).

    Returns:
        (B,) AUC in [0, 1].
    """
    p, g = _to_torch(pred), _to_torch(gt)
    values = torch.stack([pck_3d(p, g, t, root) for t in thresholds_mm], dim=0)
    return _back(values.mean(dim=0), pred)


# --------------------------------------------------------------------------- aggregation

#: Per-pose metrics the accumulator computes, in report order.
POSE_METRICS = ("mpjpe", "mpjpe_relative", "pa_mpjpe", "n_mpjpe", "limb_length_error", "pck3d_150", "auc3d")


def base_action_name(name: str) -> str:
    """Action name without its trial suffix: ``"Directions-2"`` -> ``"Directions"`` (unchanged otherwise)."""
    head, sep, tail = name.rpartition("-")
    return head if sep and tail.isdigit() else name


@dataclass(frozen=True)
class MetricSummary:
    """Means over poses (each pose counts once).

    Attributes:
        count: number of distinct poses.
        overall: metric -> value over all poses (mm for errors, fraction for PCK/AUC), plus
            ``pck2d@<thr>`` (mean over joints of the original's 2D PCK) when projections were given.
        per_action: action (trials merged) -> metric -> value.
        per_subject: subject -> metric -> value.
        pck_2d_per_joint: threshold -> (J,) detection rate per joint (empty without projections).
    """

    count: int
    overall: dict[str, float]
    per_action: dict[str, dict[str, float]]
    per_subject: dict[str, dict[str, float]]
    pck_2d_per_joint: dict[float, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return {"count": self.count, "overall": self.overall, "per_action": self.per_action,
                "per_subject": self.per_subject,
                "pck_2d_per_joint": {str(k): v for k, v in self.pck_2d_per_joint.items()}}


class MetricAccumulator:
    """Collects per-pose metrics over batches and aggregates them per action and per subject.

    Poses are identified by their dataset ``index``; a repeated index (e.g. the padding a
    ``DistributedSampler`` adds) is counted once, keeping its first occurrence.

    Args:
        subject_names: names decoding ``subject_idx``.
        action_names: names decoding ``action_idx``; trial suffixes (``"-1"``) are merged.
        image_height: crop height, px, for the original's 2D PCK (needs ``proj_matrices`` in :meth:`add`).
        skeleton: joint order of the poses: its root (pelvis) centres the root-relative metrics, its bones
            give the limb-length error (pass ``get_skeleton(cfg.model.skeleton)``); default ContextPose's.
    """

    def __init__(self, subject_names: Sequence[str], action_names: Sequence[str],
                 image_height: int | None = None, skeleton: Skeleton = H36M_CONTEXTPOSE) -> None:
        self.subject_names = list(subject_names)
        self.action_names = list(action_names)
        self.image_height = image_height
        self.skeleton = skeleton
        self._chunks: list[dict[str, np.ndarray]] = []

    def add(self, index: Array, subject_idx: Array, action_idx: Array, pred: Array, gt: Array,
            validity: Array | None = None, proj_matrices: Array | None = None) -> None:
        """Add a batch.

        Args:
            index: (B,) dataset indices of the poses.
            subject_idx: (B,) indices into ``subject_names``.
            action_idx: (B,) indices into ``action_names``.
            pred: (B, J, 3) predicted keypoints, world mm.
            gt: (B, J, 3) ground-truth keypoints, world mm.
            validity: optional (B, J) joint weights.
            proj_matrices: optional (B, 3, 4) or (B, V, 3, 4) crop projections for the 2D PCK.

        Raises:
            ValueError: poses whose joint count is not the skeleton's.
        """
        with torch.no_grad():
            p = _to_torch(pred).detach().double().cpu()
            g = _to_torch(gt).detach().double().cpu()
            v = None if validity is None else _to_torch(validity).detach().double().cpu()
            _check(p, g, v)
            if p.shape[1] != self.skeleton.num_joints:
                raise ValueError(f"poses have {p.shape[1]} joints, skeleton {self.skeleton.name} has "
                                 f"{self.skeleton.num_joints}")
            root, bones = self.skeleton.root, self.skeleton.bones
            values = {
                "mpjpe": mpjpe(p, g, v),
                "mpjpe_relative": mpjpe_relative(p, g, v, root),
                "pa_mpjpe": pa_mpjpe(p, g, v),
                "n_mpjpe": n_mpjpe(p, g, v, root),
                "limb_length_error": limb_length_error(p, g, bones),
                "pck3d_150": pck_3d(p, g, PCK_3D_THRESHOLD_MM, root),
                "auc3d": auc_3d(p, g, AUC_3D_THRESHOLDS_MM, root),
            }
            chunk = {k: t.numpy() for k, t in values.items()}
            if proj_matrices is not None and self.image_height is not None:
                m = _to_torch(proj_matrices).detach().double().cpu()
                detections = _pck_2d_original_detections(p, g, m, self.image_height, PCK_2D_THRESHOLDS)
                chunk.update({f"pck2d@{thr}": det.numpy() for thr, det in detections.items()})
        for key, ids in (("index", index), ("subject_idx", subject_idx), ("action_idx", action_idx)):
            ids = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else ids
            chunk[key] = np.asarray(ids).astype(np.int64).reshape(-1)
        self._chunks.append(chunk)

    def __len__(self) -> int:
        return sum(len(c["index"]) for c in self._chunks)

    def _gathered(self) -> dict[str, np.ndarray]:
        keys = set.intersection(*(set(c) for c in self._chunks))
        data = {k: np.concatenate([c[k] for c in self._chunks]) for k in keys}
        _, first = np.unique(data["index"], return_index=True)
        return {k: v[np.sort(first)] for k, v in data.items()}

    def summary(self) -> MetricSummary:
        """Aggregate everything added so far (call after gathering across ranks)."""
        if not self._chunks:
            return MetricSummary(0, {k: float("nan") for k in POSE_METRICS}, {}, {})
        data = self._gathered()

        def nanmean(values: np.ndarray) -> float:
            values = values[~np.isnan(values)]
            return float(values.mean()) if values.size else float("nan")  # all-NaN: NaN, without a warning

        def means(mask: np.ndarray) -> dict[str, float]:
            keys = [k for k in (*POSE_METRICS, *(f"pck2d@{t}" for t in PCK_2D_THRESHOLDS)) if k in data]
            return {k: nanmean(data[k][mask]) for k in keys}

        actions = np.array([base_action_name(self.action_names[i]) for i in data["action_idx"]])
        subjects = np.array([self.subject_names[i] for i in data["subject_idx"]])
        order = dict.fromkeys(base_action_name(n) for n in self.action_names)
        per_action = {a: means(actions == a) for a in order if (actions == a).any()}
        per_subject = {s: means(subjects == s) for s in self.subject_names if (subjects == s).any()}
        per_joint = {thr: data[f"pck2d@{thr}"].mean(axis=0).tolist()
                     for thr in PCK_2D_THRESHOLDS if f"pck2d@{thr}" in data}
        everything = np.ones(len(data["index"]), dtype=bool)
        return MetricSummary(len(data["index"]), means(everything), per_action, per_subject, per_joint)


# =========================================================================== MPI-INF-3DHP (official protocol)
#
# A port of the test set's MATLAB evaluation (``test_util/mpii_test_predictions_py.m``,
# ``mpii_evaluate_errors.m``, ``mpii_compute_3d_pck.m``, ``mpii_get_pck_auc_joint_groups.m``,
# ``mpii_get_activity_name.m``), written from what those files do:
#
# * ground truth ``univ_annot3`` (the universal, Human3.6M-scaled skeleton) minus its pelvis (joint 15 in
#   MATLAB order); the prediction is used as given (the script does not subtract its pelvis);
# * per-joint Euclidean error, mm; PCK = % of errors strictly below 150 mm; the PCK curve at 0:5:150 mm
#   (31 thresholds) and AUC = 100 x its mean (an exact prediction scores 30/31 = 96.77: nothing is below 0);
# * per joint group, then "Total" = the groups weighted by their joint counts;
# * MPJPE: mean over frames per joint, "Average" = mean over all 17 joints, the zero-error pelvis included;
# * tables per sequence and per activity (1..7) plus "All" (every frame pooled).
#
# Two joint-group files circulate: the release's (17 joints: head with head top, spine, hips with pelvis)
# and the 14-joint one most recent projects ship (pelvis, spine and head dropped). They give different PCK
# and AUC on the same errors, so both are supported by name and every table says which one was used.

#: MPI-INF-3DHP activity labels 1..7 (``mpii_get_activity_name.m``).
MPI_INF_3DHP_ACTIVITIES = ("Standing/Walking", "Exercising", "Sitting", "Reaching/Crouching", "On The Floor",
                           "Sports", "Miscellaneous")
#: Scenes of the test sequences (frame-weighted summaries): green screen, studio without it, outdoor.
MPI_INF_3DHP_SCENES = (("green screen", ("TS1", "TS2")), ("studio", ("TS3", "TS4")), ("outdoor", ("TS5", "TS6")))
#: Joint groups by name, in 3DHP joint names (``ctxpose.skeleton.MPI_INF_3DHP_NAMES``): "17" is the
#: release's ``mpii_get_pck_auc_joint_groups.m``, "14" the variant without pelvis, spine and head.
MPI_INF_3DHP_JOINT_GROUPS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "17": (("Head", ("head_top", "head")), ("Neck", ("neck",)), ("Shou", ("right_shoulder", "left_shoulder")),
           ("Elbow", ("right_elbow", "left_elbow")), ("Wrist", ("right_wrist", "left_wrist")),
           ("spine", ("spine",)), ("Hip", ("right_hip", "left_hip", "pelvis")),
           ("Knee", ("right_knee", "left_knee")), ("Ankle", ("right_ankle", "left_ankle"))),
    "14": (("Head", ("head_top",)), ("Neck", ("neck",)), ("Shou", ("right_shoulder", "left_shoulder")),
           ("Elbow", ("right_elbow", "left_elbow")), ("Wrist", ("right_wrist", "left_wrist")),
           ("Hip", ("right_hip", "left_hip")), ("Knee", ("right_knee", "left_knee")),
           ("Ankle", ("right_ankle", "left_ankle"))),
}
#: Ground truths: "univ_annot3" is what the official evaluation compares against; "annot3_nonstandard" (the
#: subject's own bone lengths) is not comparable with published numbers.
MPI_INF_3DHP_GROUND_TRUTHS = ("univ_annot3", "annot3_nonstandard")
MPI_INF_3DHP_AUC_THRESHOLDS_MM = tuple(float(t) for t in range(0, 151, 5))
MPI_INF_3DHP_PCK_THRESHOLD_MM = 150.0
MPI_INF_3DHP_CSV_NAMES = ("mpii_3dhp_evaluation_sequencewise.csv", "mpii_3dhp_evaluation_activitywise.csv")


def mpi_inf_3dhp_root_relative(keypoints: np.ndarray, joint_order: str = "contextpose17") -> np.ndarray:
    """Poses in the 3DHP joint order with the pelvis at the origin (what ``inference_data.mat`` holds).

    Args:
        keypoints: (N, 17, 3) poses, mm, in ``joint_order`` ("contextpose17" or "mpi_inf_3dhp17").
        joint_order: the order of ``keypoints``.

    Returns:
        (N, 17, 3) float64, 3DHP order, minus the pelvis (3DHP joint 14).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (MPI_INF_3DHP.num_joints, 3):
        raise ValueError(f"expected (N, {MPI_INF_3DHP.num_joints}, 3) poses, got {kp.shape}")
    if joint_order == "contextpose17":
        kp = kp[:, list(CONTEXTPOSE_TO_3DHP)]
    elif joint_order != MPI_INF_3DHP.name:
        raise ValueError(f"joint_order {joint_order!r}: expected 'contextpose17' or {MPI_INF_3DHP.name!r}")
    return kp - kp[:, MPI_INF_3DHP.root : MPI_INF_3DHP.root + 1]


def mpi_inf_3dhp_group_indices(joint_groups: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The named joint groups as (group name, 3DHP joint indices)."""
    if joint_groups not in MPI_INF_3DHP_JOINT_GROUPS:
        raise ValueError(f"joint groups {joint_groups!r}: expected one of {sorted(MPI_INF_3DHP_JOINT_GROUPS)}")
    return tuple((name, tuple(MPI_INF_3DHP.names.index(j) for j in joints))
                 for name, joints in MPI_INF_3DHP_JOINT_GROUPS[joint_groups])


def mpi_inf_3dhp_pck_auc(errors: np.ndarray, joint_groups: str = "17") -> tuple[dict[str, float], dict[str, float]]:
    """PCK and AUC per joint group and "Total", as ``mpii_compute_3d_pck.m``.

    Args:
        errors: (F, 17) per-joint errors of F frames, mm, 3DHP order.
        joint_groups: "17" or "14".

    Returns:
        ``(pck, auc)``: group name (and "Total") -> percent; NaN for F = 0.
    """
    groups = mpi_inf_3dhp_group_indices(joint_groups)
    thresholds = np.asarray(MPI_INF_3DHP_AUC_THRESHOLDS_MM)
    pck, auc = {}, {}
    total_curve, total_pck, count = np.zeros(len(thresholds)), 0.0, 0
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, idx in groups:
            e = np.asarray(errors, dtype=np.float64)[:, list(idx)].reshape(-1)
            curve = (e[None, :] < thresholds[:, None]).sum(axis=1) / e.size
            pck[name] = float(100.0 * (e < MPI_INF_3DHP_PCK_THRESHOLD_MM).sum() / e.size)
            auc[name] = float(100.0 * curve.mean())
            total_curve += curve * len(idx)
            total_pck += pck[name] * len(idx)
            count += len(idx)
    pck["Total"] = total_pck / count
    auc["Total"] = float(100.0 * (total_curve / count).mean())
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
        import json

        from ctxpose.utils.io import atomic_write_text

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
        import csv
        import io

        from ctxpose.utils.io import atomic_write_text

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
    gt_rel = mpi_inf_3dhp_root_relative(gt, joint_order)
    if pred_root_relative:
        p = np.asarray(pred, dtype=np.float64)
        pred_rel = p[:, list(CONTEXTPOSE_TO_3DHP)] if joint_order == "contextpose17" else p
    else:
        pred_rel = mpi_inf_3dhp_root_relative(pred, joint_order)
    if pred_rel.shape != gt_rel.shape:
        raise ValueError(f"pred {pred_rel.shape} and gt {gt_rel.shape} differ")
    seq = np.asarray(sequence).astype(str).reshape(-1)
    act = np.asarray(activity).astype(np.int64).reshape(-1)
    if len(seq) != len(gt_rel) or len(act) != len(gt_rel):
        raise ValueError(f"{len(gt_rel)} poses but {len(seq)} sequence names and {len(act)} activities")
    if len(act) and (act.min() < 1 or act.max() > len(MPI_INF_3DHP_ACTIVITIES)):
        raise ValueError(f"activities must be 1..{len(MPI_INF_3DHP_ACTIVITIES)}, got {act.min()}..{act.max()}")
    errors = np.linalg.norm(pred_rel - gt_rel, axis=-1)  # (N, 17)
    order = sorted(set(seq.tolist()), key=lambda s: (len(s), s))  # TS1 .. TS6
    per_sequence = {s: _mpi_inf_3dhp_row(errors[seq == s], joint_groups) for s in order}
    per_activity = {name: _mpi_inf_3dhp_row(errors[act == k + 1], joint_groups)
                    for k, name in enumerate(MPI_INF_3DHP_ACTIVITIES)}
    per_activity["All"] = _mpi_inf_3dhp_row(errors, joint_groups)
    per_scene = {name: _mpi_inf_3dhp_row(errors[np.isin(seq, members)], joint_groups)
                 for name, members in MPI_INF_3DHP_SCENES if np.isin(seq, members).any()}
    return MPI3DHPResult(joint_groups, ground_truth, (*(g for g, _ in groups), "Total"), per_sequence,
                         per_activity, per_scene)
