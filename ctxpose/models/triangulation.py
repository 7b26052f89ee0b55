"""Linear (DLT) triangulation over views, batched: learnable-triangulation's algebraic and RANSAC step.

Forward contract of every network :func:`ctxpose.models.build.build_model` returns
--------------------------------------------------------------------------------------
(``model.architecture``: ``contextpose`` | ``volumetric`` | ``algebraic`` | ``ransac``; B samples, V views,
J joints, crops of H x W pixels)::

    out = model(images, proj_matrices, root_points=None, rotation_angles=None)

* ``images``: (B, V, 3, H, W) float, normalised crops, exactly as ContextPose gets them today
  (``ctxpose.data.transforms``). V >= 1; ``algebraic`` and ``ransac`` need V >= 2 (a ValueError otherwise).
* ``proj_matrices``: (B, V, 3, 4) world mm -> crop/image pixels (the matrices ContextPose gets today; the
  models rescale them to the heatmaps themselves).
* ``root_points``: (B, 3) world mm, the cuboid centre (ground-truth pelvis or an estimate, as ContextPose's
  batch gives it today). Required by ``contextpose`` and ``volumetric``; ``algebraic`` and ``ransac`` ignore
  it (pass None).
* ``rotation_angles``: (B,) radians about the vertical axis, as ContextPose (None: none in eval mode,
  random in training mode). Ignored by ``algebraic`` and ``ransac``.

Every output has ``keypoints_3d``: (B, J, 3) world mm (float32 for float32 inputs).

* ``contextpose`` and ``volumetric`` return :class:`ctxpose.models.contextpose.ContextPoseOutput`
  (``volumetric``'s ``attention`` is None: no limb-prior block, so no global-attention loss).
* ``algebraic`` and ``ransac`` return :class:`TriangulationOutput` with also
  ``keypoints_2d``: (B, V, J, 2) crop pixels (x, y), the soft-argmax (algebraic) or argmax (ransac) of the
  heatmaps scaled to the crop; ``confidences``: (B, V, J), algebraic: the confidence head's output
  normalised over views plus 1e-5 (as the original; all 1/V + 1e-5 with ``use_confidences: false``),
  ransac: 1 for the views of the inlier set of each joint, 0 for the others; ``heatmaps``: (B, V, J, h, w)
  (softmaxed as the original when ``heatmap_softmax``).

Losses: :func:`ctxpose.losses.compute_losses` works on every output as is: the 3D keypoint loss reads
``keypoints_3d`` (``loss.criterion``; the original algebraic model trains with MSESmooth); the volumetric CE loss
reads ``volumes``/``coord_volumes`` (``contextpose``/``volumetric``); the global-attention loss reads
``attention`` (``contextpose`` only). The config refuses the losses a model cannot have.

Building: ``build_model(config)`` (``ctxpose.models.build``; the limb prior argument is needed only by
``contextpose``) dispatches on ``model.architecture``; the algebraic/RANSAC options are
``model.triangulation.{use_confidences, heatmap_multiplier, heatmap_softmax, direct_optimization,
reprojection_threshold}``. Shipped configs: ``human36m_alg``, ``human36m_vol_softmax``, ``human36m_ransac`` and
``tiny_cpu_alg`` (128 px: the confidence head's smallest input), ``tiny_cpu_vol`` (32^3 volume: batches of at
least 2 in training, the V2V's coarsest level is one voxel), ``tiny_cpu_ransac``. learnable-triangulation's own
YAMLs load through :mod:`ctxpose.config_compat` (``model.name`` alg/vol/ransac -> ``model.architecture``).
Trainable parts: ``backbone`` (all architectures; ``backbone.alg_confidences`` for algebraic), plus
``process_features`` and ``volume_net`` for the volumetric ones; RANSAC does not train.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch


@dataclass
class TriangulationOutput:
    """What the algebraic and RANSAC networks return (see the module's contract).

    Attributes:
        keypoints_3d: (B, J, 3) world mm.
        keypoints_2d: (B, V, J, 2) crop pixels (x, y).
        confidences: (B, V, J) per-view weights of each joint's triangulation (algebraic), or 1 for the views
            of the inlier set and 0 for the others (RANSAC).
        heatmaps: (B, V, J, h, w) heatmaps the 2D keypoints were read from.
    """

    keypoints_3d: torch.Tensor
    keypoints_2d: torch.Tensor
    confidences: torch.Tensor
    heatmaps: torch.Tensor


def _check_views(proj_matrices: torch.Tensor, points: torch.Tensor) -> None:
    if proj_matrices.shape[-2:] != (3, 4) or points.shape[-1] != 2:
        raise ValueError(f"expected projection matrices (..., V, 3, 4) and points (..., V, J, 2), got "
                         f"{tuple(proj_matrices.shape)} and {tuple(points.shape)}")
    if points.shape[-3] < 2:
        raise ValueError(f"triangulation needs at least 2 views, got {points.shape[-3]}")


def triangulate_dlt(proj_matrices: torch.Tensor, points: torch.Tensor,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted linear (DLT) triangulation of every joint over the views, as ONE batched SVD.

    For each joint, the rows ``w_v (x_v P_v[2] - P_v[0])`` and ``w_v (y_v P_v[2] - P_v[1])`` of all views
    form a (2V, 4) matrix A; the point is the right singular vector of A's smallest singular value, made
    Euclidean (learnable-triangulation's ``triangulate_point_from_multiple_views_linear_torch``). A view of
    weight 0 adds zero rows, so it is left out exactly. The matrix and its SVD are float64 whatever the
    inputs (in float32 the 4 x 4 problem of pixel-scale rows loses ~0.1 mm; in float64, nothing measurable);
    gradients flow through the casts.

    Args:
        proj_matrices: (..., V, 3, 4) world -> pixels.
        points: (..., V, J, 2) pixel coordinates (x, y).
        weights: (..., V, J) per-view weights; None: all 1.
        The leading dimensions broadcast against each other.

    Returns:
        (..., J, 3) points in the world's unit (mm), in the dtype of ``points``.

    Raises:
        ValueError: fewer than 2 views or wrong trailing shapes.
    """
    _check_views(proj_matrices, points)
    p = proj_matrices.to(torch.float64)[..., :, None, :, :]  # (..., V, 1, 3, 4)
    a = p[..., 2:3, :] * points.to(torch.float64)[..., None] - p[..., :2, :]  # (..., V, J, 2, 4)
    if weights is not None:
        a = a * weights.to(torch.float64)[..., None, None]
    a = a.movedim(-4, -3)  # (..., J, V, 2, 4)
    a = a.reshape(*a.shape[:-3], -1, 4)  # (..., J, 2V, 4)
    vh = torch.linalg.svd(a, full_matrices=False).Vh  # (..., J, 4, 4)
    x = vh[..., 3, :]
    return (x[..., :3] / x[..., 3:]).to(points.dtype)


def project(proj_matrices: torch.Tensor, points_3d: torch.Tensor) -> torch.Tensor:
    """Pixels of world points in every view.

    Args:
        proj_matrices: (..., V, 3, 4). points_3d: (..., J, 3).

    Returns:
        (..., V, J, 2) pixel coordinates (x, y).
    """
    x = torch.cat([points_3d, torch.ones_like(points_3d[..., :1])], dim=-1)[..., None, :, :]  # (..., 1, J, 4)
    uvw = x @ proj_matrices.to(x.dtype).transpose(-1, -2)  # (..., V, J, 3)
    return uvw[..., :2] / uvw[..., 2:]


def reprojection_errors(proj_matrices: torch.Tensor, points_3d: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(..., V, J) distance, px, between each view's projection of ``points_3d`` (..., J, 3) and ``points``
    (..., V, J, 2) (learnable-triangulation's ``calc_reprojection_error_matrix``)."""
    return torch.linalg.vector_norm(project(proj_matrices, points_3d) - points, dim=-1)


def _huber_refine(proj: torch.Tensor, points: torch.Tensor, mask: torch.Tensor, x: torch.Tensor,
                  iterations: int) -> torch.Tensor:
    """Minimise ``sum_v mask * huber(r_v^2)`` (scipy's ``loss='huber'``, f_scale 1: rho(z) = z for z <= 1, else
    2 sqrt(z) - 1) over each point by iteratively reweighted Gauss-Newton, all points at once.

    Args: proj (B, V, 3, 4); points (B, V, J, 2); mask (B, V, J) 0/1; x (B, J, 3) start. Returns (B, J, 3).
    """
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    for _ in range(iterations):  # a fixed number of refinement steps, not a loop over data
        xh = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)[:, None, :, :]  # (B, 1, J, 4)
        uvw = xh @ proj.transpose(-1, -2)  # (B, V, J, 3)
        uv = uvw[..., :2] / uvw[..., 2:]
        e = uv - points  # (B, V, J, 2)
        r = torch.linalg.vector_norm(e, dim=-1)
        w = mask * torch.where(r <= 1.0, torch.ones_like(r), 1.0 / r.clamp(min=1e-12))  # rho'(r^2)
        # d(uv)/dx = (P[:2, :3] - uv P[2, :3]) / w_h
        jac = (proj[:, :, None, :2, :3] - uv[..., None] * proj[:, :, None, 2:3, :3]) / uvw[..., 2:, None]
        jw = jac * w[..., None, None]
        h = (jw.transpose(-1, -2) @ jac).sum(1) + 1e-9 * eye  # (B, J, 3, 3)
        g = (jw.transpose(-1, -2) @ e[..., None]).sum(1)  # (B, J, 3, 1)
        x = x - torch.linalg.solve(h, g)[..., 0]
    return x


def ransac_triangulate(proj_matrices: torch.Tensor, points: torch.Tensor, threshold: float = 15.0,
                       direct_optimization: bool = True,
                       refine_iterations: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """learnable-triangulation's RANSAC triangulation, every joint of every sample at once.

    Every pair of views is triangulated (one batched SVD for all pairs); a pair's inlier set is the pair plus
    every view whose reprojection error is below ``threshold``; the first pair (in sorted order) with the
    most inliers wins and all its inliers are triangulated (one more batched SVD). With
    ``direct_optimization`` the point then minimises the Huber loss of the inliers' reprojection errors, as
    the original's ``scipy.optimize.least_squares(..., loss='huber')``.

    How this differs from the original: it samples 10 random pairs (so it may miss the best pair, and breaks
    ties by drawing order); this tries every pair, deterministically. The refinement is iteratively
    reweighted Gauss-Newton (float64) instead of scipy's trust-region solver; both reach the minimum.

    Args:
        proj_matrices: (B, V, 3, 4) world mm -> pixels. points: (B, V, J, 2) pixels (x, y).
        threshold: reprojection error, px, below which a view is an inlier.
        direct_optimization: refine on the inliers' reprojection error.
        refine_iterations: Gauss-Newton steps of the refinement.

    Returns:
        keypoints_3d (B, J, 3) in ``points``' dtype, world mm; inliers (B, V, J) bool.
    """
    _check_views(proj_matrices, points)
    b, v, j = points.shape[:3]
    proj64, pts64 = proj_matrices.to(torch.float64), points.to(torch.float64)
    pairs = torch.tensor(list(itertools.combinations(range(v), 2)), device=points.device)  # (P, 2)
    pair_mask = torch.zeros(len(pairs), v, dtype=torch.float64, device=points.device)
    pair_mask.scatter_(1, pairs, 1.0)  # (P, V)
    weights = pair_mask[None, :, :, None].expand(b, -1, -1, j)  # (B, P, V, J)
    candidates = triangulate_dlt(proj64[:, None], pts64[:, None], weights)  # (B, P, J, 3)
    errors = reprojection_errors(proj64[:, None], candidates, pts64[:, None])  # (B, P, V, J)
    inlier_sets = (errors < threshold) | (weights > 0)
    best = inlier_sets.sum(2).argmax(1)  # (B, J): the first pair with the most inliers
    inliers = inlier_sets.gather(1, best[:, None, None, :].expand(b, 1, v, j))[:, 0]  # (B, V, J)
    mask = inliers.to(torch.float64)
    x = triangulate_dlt(proj64, pts64, mask)
    if direct_optimization:
        x = _huber_refine(proj64, pts64, mask, x, refine_iterations)
    return x.to(points.dtype), inliers
