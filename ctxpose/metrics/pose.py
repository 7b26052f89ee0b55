"""Human3.6M-style 3D pose metrics: MPJPE (protocol 1), PA-MPJPE (protocol 2), N-MPJPE, limb-length error,
the original's 2D PCK, and their aggregation per action and subject.

Every function accepts ``np.ndarray`` or ``torch.Tensor`` and returns the same kind (numpy inputs are
computed in float64; torch inputs keep their dtype and device, and stay differentiable). Functions
return one value per pose so that :class:`MetricAccumulator` can aggregate per action and per subject.

Dimension letters: B poses, J joints, L bones, V views. Keypoints are in mm (3D) or px (2D).
``validity`` (B, J) weights joints (0 excludes a joint); a pose with no valid joint gets NaN.

What mirrors the original (ContextPose / learnable-triangulation ``Human36MMultiViewDataset.evaluate``):
MPJPE absolute and root-relative per pose, averaged over poses per action with the trials merged and per
subject; ``LimbLengthError`` (mean |bone length difference|); the 2D PCK the original reports: the 3D
prediction and ground truth projected with the first view's crop projection, a joint counts as detected
when within ``threshold * image_height / 10`` px, thresholds 0.1..0.5. PA-MPJPE and N-MPJPE are the usual
definitions (Procrustes with scale and the reflection fix; Rhodin et al. 2018 scale-only alignment). The 3D PCK
and AUC are the MPI-INF-3DHP protocol's (:func:`ctxpose.metrics.mpi_inf_3dhp.pck_3dhp`: percent of
root-relative joint errors strictly below 150 mm; AUC over 0:5:150 mm), computed per pose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from ctxpose.geometry.cameras import project_points
from ctxpose.metrics.mpi_inf_3dhp import auc_3dhp, pck_3dhp
from ctxpose.skeleton import Skeleton

Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: Thresholds of the original's 2D PCK, as fractions of a "head size" of image height / 10.
PCK_2D_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


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


def mpjpe_relative(pred: Array, gt: Array, validity: Array | None, root: int) -> Array:
    """Root-relative MPJPE (protocol 1 as the original reports it): both poses centred on their root joint.

    Args:
        pred: (B, J, 3) predicted keypoints, mm.
        gt: (B, J, 3) ground-truth keypoints, mm.
        validity: optional (B, J) joint weights.
        root: root joint index (the skeleton's pelvis, ``skeleton.root``).

    Returns:
        (B,) error per pose, mm.
    """
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


def n_mpjpe(pred: Array, gt: Array, validity: Array | None, root: int) -> Array:
    """Scale-normalised MPJPE (N-MPJPE, Rhodin et al. 2018).

    Both poses are centred on the root joint; the prediction is then multiplied by the least-squares
    scale ``<pred, gt> / <pred, pred>`` (over valid joints) before the MPJPE.

    Args:
        pred: (B, J, 3) predicted keypoints, mm.
        gt: (B, J, 3) ground-truth keypoints, mm.
        validity: optional (B, J) joint weights.
        root: root joint index (``skeleton.root``).

    Returns:
        (B,) error per pose, mm.
    """
    p, g, v = _to_torch(pred), _to_torch(gt), _to_torch(validity)
    _check(p, g, v)
    p, g = p - p[:, root : root + 1], g - g[:, root : root + 1]
    w = torch.ones(p.shape[:2], dtype=p.dtype, device=p.device) if v is None else v.to(p.dtype)
    factor = (w[..., None] * p * g).sum(dim=(1, 2)) / (w[..., None] * p * p).sum(dim=(1, 2))
    return _back(_weighted_joint_mean(_joint_errors(factor[:, None, None] * p, g), v), pred)


def limb_length_error(pred: Array, gt: Array, bones: Sequence[tuple[int, int]]) -> Array:
    """Mean absolute bone-length difference per pose (the original's ``LimbLengthError``, vectorised).

    The original returns the mean over bones of the batch mean, which equals the mean of this function's
    output over the batch.

    Args:
        pred: (B, J, 3) predicted keypoints, mm.
        gt: (B, J, 3) ground-truth keypoints, mm.
        bones: (joint_a, joint_b) pairs (``skeleton.bones``).

    Returns:
        (B,) mean over bones of |length_pred - length_gt|, mm.
    """
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


# --------------------------------------------------------------------------- aggregation

#: Per-pose metrics the accumulator computes, in report order.
POSE_METRICS = ("mpjpe", "mpjpe_relative", "pa_mpjpe", "n_mpjpe", "limb_length_error", "pck_3dhp", "auc_3dhp")


def base_action_name(name: str) -> str:
    """Action name without its trial suffix: ``"Directions-2"`` -> ``"Directions"`` (unchanged otherwise)."""
    head, sep, tail = name.rpartition("-")
    return head if sep and tail.isdigit() else name


@dataclass(frozen=True)
class MetricSummary:
    """Means over poses (each pose counts once).

    Attributes:
        count: number of distinct poses.
        overall: metric -> value over all poses (mm for errors; ``pck_3dhp``/``auc_3dhp`` percent, the
            MPI-INF-3DHP rule), plus ``pck2d@<thr>`` (the original's 2D PCK: mean over joints of the
            detection rate, a fraction as the original reports it) when projections were given.
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
            give the limb-length error (``get_skeleton(cfg.model.skeleton)``).
    """

    def __init__(self, subject_names: Sequence[str], action_names: Sequence[str], skeleton: Skeleton,
                 image_height: int | None = None) -> None:
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
            }
            chunk = {k: t.numpy() for k, t in values.items()}
            rel_err = _joint_errors(p - p[:, root : root + 1], g - g[:, root : root + 1]).numpy()
            weights = None if v is None else v.numpy()
            chunk["pck_3dhp"] = pck_3dhp(rel_err, weights=weights)
            chunk["auc_3dhp"] = auc_3dhp(rel_err, weights=weights)
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

