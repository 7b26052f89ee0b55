"""learnable-triangulation's algebraic, RANSAC and volumetric models against loop references of its maths."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from ctxpose.config import load_config
from ctxpose.errors import ConfigError
from ctxpose.losses import compute_losses
from ctxpose.models import build_model
from ctxpose.models.algebraic import AlgebraicTriangulationNet, RansacTriangulationNet
from ctxpose.models.triangulation import TriangulationOutput, project, ransac_triangulate, triangulate_dlt
from ctxpose.models.v2v import PlainV2VNet
from ctxpose.skeleton import get_skeleton
from tests.reference.original_ops import reference_forward, reference_volumetric_ce
from tests.reference.triangulation_ops import (
    reference_algebraic_forward,
    reference_dlt_batch,
    reference_ransac,
    reference_soft_argmax_2d,
)
from tests.unit.test_model import camera_proj

J = get_skeleton("contextpose17").num_joints


def scene(b=2, v=4, size=64, f=80.0, noise=1.0, seed=0):
    """Cameras, true 3D joints (mm) and their noisy projections (crop px)."""
    g = torch.Generator().manual_seed(seed)
    proj = camera_proj(b, v, f=f, size=size, seed=seed)
    points_3d = torch.randn(b, J, 3, generator=g) * 300
    points_2d = project(proj, points_3d) + torch.randn(b, v, J, 2, generator=g) * noise
    return proj, points_3d, points_2d


def test_dlt_matches_per_joint_numpy_svd_within_hundredth_of_mm():
    proj, truth, pts = scene(b=3, f=400.0, size=384, noise=2.0)
    weights = torch.rand(3, 4, J, generator=torch.Generator().manual_seed(1)) + 0.05
    for w in (weights, None):
        ours = triangulate_dlt(proj, pts, w)
        assert ours.dtype == torch.float32 and ours.shape == (3, J, 3)
        ref = reference_dlt_batch(proj.numpy(), pts.numpy(), None if w is None else w.numpy())
        assert np.abs(ours.double().numpy() - ref).max() < 0.01  # mm
        assert 0.5 < np.abs(ref - truth.numpy()).max() < 100  # noisy points: the reference is not the truth
    exact = triangulate_dlt(proj, project(proj, truth))
    assert (exact - truth).abs().max() < 0.01


def test_dlt_zero_weight_leaves_the_view_out_and_scale_does_not_matter():
    proj, _, pts = scene(noise=3.0)
    w = torch.ones(2, 4, J)
    w[:, 1] = 0.0
    torch.testing.assert_close(triangulate_dlt(proj, pts, w), triangulate_dlt(proj[:, [0, 2, 3]], pts[:, [0, 2, 3]]),
                               rtol=0, atol=1e-3)
    torch.testing.assert_close(triangulate_dlt(proj, pts, torch.full((2, 4, J), 7.0)), triangulate_dlt(proj, pts),
                               rtol=0, atol=1e-3)


def test_dlt_is_one_batched_svd(monkeypatch):
    calls = []
    svd = torch.linalg.svd
    monkeypatch.setattr(torch.linalg, "svd", lambda a, **kw: calls.append(a.shape) or svd(a, **kw))
    proj, _, pts = scene(b=5)
    triangulate_dlt(proj, pts, torch.rand(5, 4, J))
    assert calls == [torch.Size([5, J, 8, 4])]


def test_dlt_refuses_a_single_view():
    proj, _, pts = scene(v=1)
    with pytest.raises(ValueError, match="at least 2 views"):
        triangulate_dlt(proj, pts)


@pytest.mark.parametrize("direct_optimization", [True, False])
def test_ransac_matches_loop_reference_and_drops_outliers(direct_optimization):
    proj, truth, pts = scene(b=2, v=4, f=400.0, size=384, noise=1.5, seed=2)
    pts[0, 1, 3] += 120.0  # gross 2D errors: view 1 of joint 3, views 2 of joint 5
    pts[1, 2, 5] += torch.tensor([-90.0, 60.0])
    ours, inliers = ransac_triangulate(proj, pts, 15.0, direct_optimization)
    assert ours.dtype == torch.float32
    for i in range(2):
        for k in range(J):
            ref, chosen = reference_ransac(proj[i].numpy(), pts[i, :, k].numpy(), 15.0, direct_optimization)
            assert list(np.flatnonzero(inliers[i, :, k].numpy())) == chosen, (i, k)
            assert np.abs(ours[i, k].double().numpy() - ref).max() < 0.01, (i, k)  # mm
    assert not inliers[0, 1, 3] and not inliers[1, 2, 5] and inliers.sum() == 2 * 4 * J - 2
    assert (ours - truth).norm(dim=-1).max() < 60  # 1.5 px of noise is ~15 mm; the outliers did not pull it away
    plain = triangulate_dlt(proj, pts)
    assert (plain[0, 3] - truth[0, 3]).norm() > 150  # without RANSAC they would


class Constant(nn.Module):
    """Stands in for a head or layer: returns the given tensor (the test chooses heatmaps/confidences)."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value


def peaked_heatmaps(proj, points_3d, image=64, heatmap=16, sigma=1.2, seed=0):
    """(B*V, J, h, w) Gaussian bumps at the joints' projections, plus noise: heatmaps a backbone could make."""
    b, v = proj.shape[:2]
    centres = project(proj, points_3d) * (heatmap / image)  # (B, V, J, 2) heatmap px
    grid = torch.arange(heatmap, dtype=torch.float32)
    dx = (grid[None, None, None, None, :] - centres[..., 0, None, None]) ** 2
    dy = (grid[None, None, None, :, None] - centres[..., 1, None, None]) ** 2
    maps = torch.exp(-(dx + dy) / (2 * sigma**2))
    maps = maps + 0.02 * torch.randn(maps.shape, generator=torch.Generator().manual_seed(seed))
    return maps.reshape(b * v, J, heatmap, heatmap)


def algebraic(use_confidences=True, softmax=True):
    torch.manual_seed(0)
    return AlgebraicTriangulationNet(J, num_layers=18, use_confidences=use_confidences, heatmap_multiplier=100.0,
                                     heatmap_softmax=softmax).eval()


@pytest.mark.parametrize(("use_confidences", "softmax"), [(True, True), (False, True), (True, False)])
def test_algebraic_forward_matches_reference(use_confidences, softmax):
    model = algebraic(use_confidences, softmax)
    proj, truth, _ = scene(b=2, v=3, size=64, f=80.0, seed=3)
    model.backbone.final_layer.register_forward_hook(lambda _m, _i, _o: peaked_heatmaps(proj, truth))
    chosen = torch.rand(2 * 3, J, generator=torch.Generator().manual_seed(4)) * 0.9 + 0.05
    if use_confidences:
        model.backbone.alg_confidences = Constant(chosen)  # the head's output, chosen by the test
    else:
        assert not hasattr(model.backbone, "alg_confidences")
    images = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        out = model(images, proj)
        kp3d, kp2d, conf, heat = reference_algebraic_forward(model, images, proj)
    assert isinstance(out, TriangulationOutput) and out.keypoints_3d.dtype == torch.float32
    assert out.keypoints_2d.shape == (2, 3, J, 2) and out.confidences.shape == (2, 3, J)
    torch.testing.assert_close(out.keypoints_2d, kp2d, rtol=0, atol=1e-4)  # px
    torch.testing.assert_close(out.confidences, conf, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.heatmaps, heat, rtol=1e-5, atol=1e-7)
    assert np.abs(out.keypoints_3d.double().numpy() - kp3d).max() < 0.01  # mm
    # the bumps were read: near the truth (a heatmap pixel is ~175 mm here; the joints spread ~500 mm)
    assert (out.keypoints_3d - truth).norm(dim=-1).mean() < 200
    if use_confidences:  # the weights act: other confidences, other points
        model.backbone.alg_confidences = Constant(torch.rand(2 * 3, J))
        with torch.no_grad():
            assert (model(images, proj).keypoints_3d - out.keypoints_3d).abs().max() > 0.01
    else:
        torch.testing.assert_close(out.confidences, torch.full((2, 3, J), 1 / 3 + 1e-5))


def test_soft_argmax_2d_matches_reference_per_map():
    heat = torch.randn(3, J, 12, 20)
    from ctxpose.models.soft_argmax import soft_argmax_voxel, volume_probabilities

    for softmax in (True, False):
        probs = volume_probabilities(heat * 100.0 if softmax else heat, softmax=softmax)
        ours = soft_argmax_voxel(probs, normalize=not softmax).flip(-1)
        ref, ref_probs = reference_soft_argmax_2d(heat, 100.0 if softmax else 1.0, softmax)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(probs, ref_probs)


def original_mse_smooth(pred, gt, validity, threshold=400.0):
    """The original ``KeypointsMSESmoothLoss``, element by element."""
    total, n = 0.0, 0
    for i in range(pred.shape[0]):
        for k in range(pred.shape[1]):
            n += int(validity[i, k])
            for d in range(3):
                e = float(pred[i, k, d] - gt[i, k, d]) ** 2 * float(validity[i, k])
                total += e**0.1 * threshold**0.9 if e > threshold else e
    return total / (3 * max(1, n))


def test_algebraic_training_step_reaches_backbone_and_head_and_loss_is_the_originals():
    cfg = load_config("tiny_cpu_alg")
    model = build_model(cfg)
    assert isinstance(model, AlgebraicTriangulationNet) and hasattr(model.backbone, "alg_confidences")
    model.train()
    images = torch.randn(2, 2, 3, 128, 128)  # the confidence head pools layer4 twice: 128 px at least
    proj = camera_proj(2, 2, f=160.0, size=128)  # B=2: batch norm in training mode needs more than one value
    out = model(images, proj)
    gt = torch.randn(2, J, 3) * 300
    validity = torch.ones(2, J)
    validity[1, 4] = 0
    losses = compute_losses(out, gt, validity, cfg.loss, cfg.model.volume_net)
    assert set(losses) == {"keypoints", "total"}
    with pytest.raises(ValueError, match="loss.use_volumetric_ce_loss: the model's output has no volumes "
                                         r"\(TriangulationOutput\); set it to false"):
        compute_losses(out, gt, validity, replace(cfg.loss, use_volumetric_ce_loss=True), cfg.model.volume_net)
    s = cfg.loss.scale_keypoints_3d
    ref = original_mse_smooth(out.keypoints_3d.detach() * s, gt * s, validity, cfg.loss.mse_smooth_threshold)
    assert abs(float(losses["total"].detach()) - ref) < 1e-4 * max(1.0, ref)
    losses["total"].backward()
    for name in ("backbone.conv1.weight", "backbone.final_layer.weight", "backbone.alg_confidences.head.4.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_ransac_model_reads_heatmap_maxima_and_marks_inliers():
    torch.manual_seed(0)
    model = RansacTriangulationNet(J, num_layers=18, direct_optimization=False).eval()
    proj, truth, _ = scene(b=1, v=3, size=64, f=80.0, seed=5)
    model.backbone.final_layer.register_forward_hook(lambda _m, _i, _o: peaked_heatmaps(proj, truth, sigma=0.8))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 3, 64, 64), proj)
    centres = project(proj, truth) / 4
    expected = torch.stack([centres[..., 0].round(), centres[..., 1].round()], -1) * 4  # argmax pixel, crop px
    assert (out.keypoints_2d - expected).abs().max() <= 4.0  # the noise may move a peak by one heatmap pixel
    assert out.keypoints_2d.remainder(4).abs().max() == 0  # whole heatmap pixels, scaled by 4 (64/16)
    ref = [reference_ransac(proj[0].numpy(), out.keypoints_2d[0, :, k].numpy(), 15.0, False) for k in range(J)]
    assert np.abs(out.keypoints_3d[0].double().numpy() - np.stack([r[0] for r in ref])).max() < 0.01
    assert set(out.confidences.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="does not train"):  # one clear line instead of a failing backward
        model.train()(torch.randn(1, 3, 3, 64, 64), proj)


def test_models_refuse_a_single_view():
    model = algebraic(use_confidences=False)
    with pytest.raises(ValueError, match="at least 2 views"):
        model(torch.randn(1, 1, 3, 64, 64), camera_proj(1, 1, size=64))


@pytest.mark.slow  # the plain V2V's smallest volume is 32^3 (five poolings): ~10 s a forward pass on one core
@pytest.mark.parametrize("aggregation", ["softmax", "sum"])
def test_volumetric_forward_matches_reference(aggregation):
    cfg = load_config("tiny_cpu_vol", [f"model.volume_net.volume_aggregation_method={aggregation}",
                                       "model.image_shape=[32, 32]"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert isinstance(model.volume_net, PlainV2VNet)
    with torch.no_grad():  # peaked volumes: the soft-argmax is not the cuboid centre
        for p in model.volume_net.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, 0, 1.0 / math.sqrt(p[0].numel()))
        model.volume_net.output_layer.weight *= 30
    images = torch.randn(1, 2, 3, 32, 32)
    proj, roots, thetas = camera_proj(1, 2, f=40.0, size=32), torch.randn(1, 3) * 50, torch.tensor([0.4])
    with torch.no_grad():
        out = model(images, proj, roots, thetas)
        kp, vox, heat, probs, coords, att, _ = reference_forward(model, images, proj, roots, thetas)
    assert out.attention is None and att is None
    assert (out.keypoints_3d - kp).abs().max() < 0.01  # mm
    torch.testing.assert_close(out.volumes, probs, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(out.voxel_keypoints_3d, vox, rtol=1e-4, atol=1e-4)
    assert out.volumes.amax() > 2 / out.volumes[0, 0].numel()  # not a flat volume
    assert (out.keypoints_3d - roots[:, None]).norm(dim=-1).max() > 20  # not just the centre
    # the losses as the original defines them: MAE on keypoints_3d and the volumetric cross-entropy, nothing else
    gt, validity = roots[:, None] + torch.randn(1, J, 3) * 300, torch.ones(1, J)
    validity[0, 2] = 0
    losses = compute_losses(out, gt, validity, cfg.loss, cfg.model.volume_net)
    assert set(losses) == {"keypoints", "volumetric_ce", "total"}
    with pytest.raises(ValueError, match="loss.use_global_attention_loss: the model's output has no attention"):
        compute_losses(out, gt, validity, replace(cfg.loss, use_global_attention_loss=True), cfg.model.volume_net)
    s = cfg.loss.scale_keypoints_3d
    mae = ((kp - gt).abs() * s * validity[..., None]).sum() / (3 * validity.sum())
    torch.testing.assert_close(losses["keypoints"], mae, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["volumetric_ce"], reference_volumetric_ce(coords, probs, gt, validity),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_triangulation_models_on_cuda_match_cpu():
    proj, truth, pts = scene(b=2, v=4, f=400.0, size=384, noise=1.5, seed=6)
    pts[0, 1, 3] += 120.0
    dev = torch.device("cuda")
    torch.testing.assert_close(triangulate_dlt(proj.to(dev), pts.to(dev)).cpu(), triangulate_dlt(proj, pts),
                               rtol=0, atol=0.01)
    gpu, gpu_inliers = ransac_triangulate(proj.to(dev), pts.to(dev))
    cpu, cpu_inliers = ransac_triangulate(proj, pts)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0.01)
    assert torch.equal(gpu_inliers.cpu(), cpu_inliers)
    model = algebraic(use_confidences=False)
    proj64, truth64, _ = scene(b=2, v=3, size=64, f=80.0, seed=3)
    maps = peaked_heatmaps(proj64, truth64)  # well-defined 2D joints: the comparison measures the pipeline
    model.backbone.final_layer.register_forward_hook(lambda _m, _i, out: maps.to(out.device))
    images = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        a = model(images, proj64)
        b = model.to(dev)(images.to(dev), proj64.to(dev))
    torch.testing.assert_close(b.keypoints_2d.cpu(), a.keypoints_2d, rtol=0, atol=1e-3)
    torch.testing.assert_close(b.keypoints_3d.cpu(), a.keypoints_3d, rtol=0, atol=0.05)
