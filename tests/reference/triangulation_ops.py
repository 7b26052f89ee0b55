"""Slow, obviously-correct loop versions of learnable-triangulation's algebraic and RANSAC steps.

Written from karfly/learnable-triangulation-pytorch's maths in the most direct form: one joint of one sample
at a time, numpy float64 SVD, scipy's least squares. Oracles for the tests; never used by the package.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import least_squares


def reference_dlt(proj: np.ndarray, points: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """One point from V views: proj (V, 3, 4), points (V, 2), weights (V,) -> (3,), float64 numpy."""
    proj, points = np.asarray(proj, np.float64), np.asarray(points, np.float64)
    weights = np.ones(len(points)) if weights is None else np.asarray(weights, np.float64)
    rows = []
    for p, (x, y), w in zip(proj, points, weights, strict=True):
        rows.append(w * (x * p[2] - p[0]))
        rows.append(w * (y * p[2] - p[1]))
    _, _, vh = np.linalg.svd(np.array(rows))
    point = vh[-1]
    return point[:3] / point[3]


def reference_dlt_batch(proj, points, weights=None) -> np.ndarray:
    """(B, V, 3, 4), (B, V, J, 2), (B, V, J) -> (B, J, 3): :func:`reference_dlt` joint by joint."""
    proj, points = np.asarray(proj, np.float64), np.asarray(points, np.float64)
    b, v, j = points.shape[:3]
    weights = np.ones((b, v, j)) if weights is None else np.asarray(weights)
    out = np.zeros((b, j, 3))
    for i in range(b):
        for k in range(j):
            out[i, k] = reference_dlt(proj[i], points[i, :, k], weights[i, :, k])
    return out


def reference_reprojection_errors(proj: np.ndarray, point: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(V,) pixel distances of ``point`` (3,) projected by proj (V, 3, 4) from points (V, 2)."""
    errors = []
    for p, xy in zip(proj, points, strict=True):
        uvw = p @ np.append(point, 1.0)
        errors.append(np.linalg.norm(uvw[:2] / uvw[2] - xy))
    return np.array(errors)


def reference_ransac(proj, points, threshold=15.0, direct_optimization=True):
    """The original ``triangulate_ransac`` for one point, except that it tries every view pair in sorted order
    (the original draws 10 random pairs). Returns (point (3,), sorted inlier views)."""
    proj, points = np.asarray(proj, np.float64), np.asarray(points, np.float64)
    views = range(len(points))
    inliers: set[int] = set()
    for pair in itertools.combinations(views, 2):
        pair = list(pair)
        point = reference_dlt(proj[pair], points[pair])
        errors = reference_reprojection_errors(proj, point, points)
        candidate = set(pair) | {k for k in views if errors[k] < threshold}
        if len(candidate) > len(inliers):
            inliers = candidate
    chosen = sorted(inliers)
    point = reference_dlt(proj[chosen], points[chosen])
    if direct_optimization:
        point = least_squares(lambda x: reference_reprojection_errors(proj[chosen], x, points[chosen]), point,
                              loss="huber", method="trf", xtol=1e-12, ftol=1e-12, gtol=1e-12).x
    return point, chosen


def reference_soft_argmax_2d(heatmaps: torch.Tensor, multiplier: float, softmax: bool):
    """Per map: (N, J, h, w) -> (x, y) (N, J, 2) in heatmap pixels and the maps after the softmax/ReLU, as the
    original ``integrate_tensor_2d`` (called on ``heatmaps * multiplier``)."""
    n, j, h, w = heatmaps.shape
    coords = torch.zeros(n, j, 2)
    probs = torch.zeros(n, j, h, w)
    for i in range(n):
        for k in range(j):
            flat = heatmaps[i, k].reshape(-1) * multiplier
            p = (F.softmax(flat, dim=0) if softmax else F.relu(flat)).view(h, w)
            x = (p.sum(0) * torch.arange(w)).sum()
            y = (p.sum(1) * torch.arange(h)).sum()
            if not softmax:
                x, y = x / p.sum(), y / p.sum()
            coords[i, k] = torch.stack([x, y])
            probs[i, k] = p
    return coords, probs


def reference_algebraic_forward(model, images, proj):
    """The algebraic network as the original computes it (loops), with ``model``'s backbone.

    Returns (keypoints_3d (B, J, 3) float64, keypoints_2d (B, V, J, 2), confidences (B, V, J), heatmaps).
    """
    b, v = images.shape[:2]
    heatmaps, _, conf = model.backbone(images.view(b * v, *images.shape[2:]))
    j, h, w = heatmaps.shape[1:]
    kp, probs = reference_soft_argmax_2d(heatmaps, model.heatmap_multiplier, model.heatmap_softmax)
    kp = kp.view(b, v, j, 2).clone()
    kp[..., 0] *= images.shape[-1] / w
    kp[..., 1] *= images.shape[-2] / h
    conf = torch.ones(b * v, j) if conf is None else conf
    conf = conf.view(b, v, j)
    norm = torch.zeros_like(conf)
    for i in range(b):
        for k in range(j):
            norm[i, :, k] = conf[i, :, k] / conf[i, :, k].sum() + 1e-5
    kp3d = reference_dlt_batch(proj.numpy(), kp.numpy(), norm.numpy())
    return kp3d, kp, norm, probs.view(b, v, j, h, w)


# ---------------------------------------------------------------------- the original's state_dict key names


def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def _conv(prefix: str, bias: bool = True) -> list[str]:
    return [f"{prefix}.weight"] + ([f"{prefix}.bias"] if bias else [])


def original_pose_resnet_keys(num_layers: int, head: str | None = None) -> list[str]:
    """Keys of the original ``PoseResNet`` (``mvn/models/pose_resnet.py``): ResNet stem and layers, three deconv
    stages (``deconv_layers.{0,3,6}`` convs, ``{1,4,7}`` batch norms), ``final_layer`` and, when ``head`` is
    ``alg_confidences`` or ``vol_confidences``, that ``GlobalAveragePoolingHead`` (convs ``features.{0,4}``,
    batch norms ``features.{1,5}``, linears ``head.{0,2,4}``)."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[num_layers]
    convs = 2 if num_layers < 50 else 3
    keys = _conv("conv1", False) + _bn("bn1")
    for layer, n in enumerate(blocks, start=1):
        for i in range(n):
            p = f"layer{layer}.{i}"
            for c in range(1, convs + 1):
                keys += _conv(f"{p}.conv{c}", False) + _bn(f"{p}.bn{c}")
            if i == 0 and (layer > 1 or convs == 3):  # stride 2, or 64 -> 256 channels of a bottleneck
                keys += _conv(f"{p}.downsample.0", False) + _bn(f"{p}.downsample.1")
    if head:
        keys += _conv(f"{head}.features.0") + _bn(f"{head}.features.1")
        keys += _conv(f"{head}.features.4") + _bn(f"{head}.features.5")
        keys += [k for i in (0, 2, 4) for k in _conv(f"{head}.head.{i}")]
    for i in (0, 3, 6):
        keys += _conv(f"deconv_layers.{i}", False) + _bn(f"deconv_layers.{i + 1}")
    return keys + _conv("final_layer")


def _res(prefix: str, projected: bool) -> list[str]:
    keys = _conv(f"{prefix}.res_branch.0") + _bn(f"{prefix}.res_branch.1")
    keys += _conv(f"{prefix}.res_branch.3") + _bn(f"{prefix}.res_branch.4")
    return keys + (_conv(f"{prefix}.skip_con.0") + _bn(f"{prefix}.skip_con.1") if projected else [])


def original_v2v_keys() -> list[str]:
    """Keys of learnable-triangulation's ``V2VModel`` (``mvn/models/v2v.py``)."""
    keys = _conv("front_layers.0.block.0") + _bn("front_layers.0.block.1")
    keys += _res("front_layers.1", True) + _res("front_layers.2", False) + _res("front_layers.3", False)
    e = "encoder_decoder"
    keys += _res(f"{e}.encoder_res1", True) + _res(f"{e}.encoder_res2", True)
    keys += [k for i in (3, 4, 5) for k in _res(f"{e}.encoder_res{i}", False)]
    keys += _res(f"{e}.mid_res", False)
    for i in range(5, 0, -1):
        keys += _res(f"{e}.decoder_res{i}", False)
        keys += _conv(f"{e}.decoder_upsample{i}.block.0") + _bn(f"{e}.decoder_upsample{i}.block.1")
    keys += [k for i in range(1, 6) for k in _res(f"{e}.skip_res{i}", False)]
    keys += _res("back_layers.0", False)
    keys += [k for i in (1, 2) for k in _conv(f"back_layers.{i}.block.0") + _bn(f"back_layers.{i}.block.1")]
    return keys + _conv("output_layer")


def original_network_keys(architecture: str, num_layers: int, confidences: bool = False) -> list[str]:
    """Keys of the original's ``AlgebraicTriangulationNet`` (``confidences``: ``use_confidences``),
    ``RANSACTriangulationNet`` or ``VolumetricTriangulationNet`` (``confidences``: a ``conf`` aggregation)."""
    if architecture in ("algebraic", "ransac"):
        head = "alg_confidences" if confidences and architecture == "algebraic" else None
        return [f"backbone.{k}" for k in original_pose_resnet_keys(num_layers, head)]
    backbone = original_pose_resnet_keys(num_layers, "vol_confidences" if confidences else None)
    return ([f"backbone.{k}" for k in backbone] + _conv("process_features.0")
            + [f"volume_net.{k}" for k in original_v2v_keys()])
