"""Network parts and the whole forward pass against loop references of the original's maths."""

import math

import numpy as np
import pytest
import torch

from ctxpose.config import load_config
from ctxpose.geometry.volumes import build_coord_volumes
from ctxpose.losses import compute_losses, global_attention_target, keypoints_loss, volumetric_ce_loss
from ctxpose.models import build_model
from ctxpose.models.pose_resnet import PoseResNet
from ctxpose.models.soft_argmax import soft_argmax_voxel, soft_argmax_world, volume_probabilities
from ctxpose.models.unproject import unproject_features
from ctxpose.skeleton import LimbPrior, get_skeleton
from tests.reference.original_ops import (
    reference_bottleneck,
    reference_coord_volume,
    reference_forward,
    reference_ga_mask,
    reference_soft_argmax,
    reference_unproject,
    reference_volumetric_ce,
)

SK = get_skeleton("contextpose17")
J = SK.num_joints


def camera_proj(b, v, f=60.0, size=32, dist=3500.0, seed=0, centre=(0.0, 0.0, 0.0)):
    """Cameras on a circle around ``centre`` looking at it (world z up), (B, V, 3, 4) for a size x size image."""
    g = torch.Generator().manual_seed(seed)
    mats = torch.zeros(b, v, 3, 4)
    for i in range(b):
        for k in range(v):
            a = float(torch.rand(1, generator=g)) * 2 * math.pi
            offset = torch.tensor([math.cos(a), math.sin(a), 0.3]) * dist
            c = offset + torch.tensor(centre)
            fwd = -offset / offset.norm()
            right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0]))
            right = right / right.norm()
            down = torch.linalg.cross(fwd, right)
            rot = torch.stack([right, down, fwd])
            K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
            mats[i, k] = K @ torch.cat([rot, -(rot @ c)[:, None]], dim=1)
    return mats


@pytest.mark.parametrize("aggregation", ["softmax", "sum", "max"])
def test_unproject_matches_loop_reference(aggregation):
    torch.manual_seed(0)
    feats = torch.randn(2, 3, 5, 12, 12)
    proj = camera_proj(2, 3, f=20.0, size=12)
    proj[1, 2, 2] *= -1  # one view sees everything behind it: zeros
    roots = torch.randn(2, 3) * 100
    coords = build_coord_volumes(roots, 2500.0, 8, torch.tensor([0.3, 2.0]))
    out = unproject_features(feats, proj, coords, aggregation)
    ref = reference_unproject(feats, proj, coords, aggregation)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert out.abs().sum() > 0


@pytest.mark.parametrize("aggregation", ["conf", "conf_norm"])
def test_confidence_aggregation_weights_views(aggregation):
    torch.manual_seed(4)
    feats = torch.randn(2, 3, 5, 12, 12)
    proj = camera_proj(2, 3, f=20.0, size=12)
    coords = build_coord_volumes(torch.randn(2, 3) * 100, 2500.0, 8)
    conf = torch.rand(2, 3, 5) + 0.1
    out = unproject_features(feats, proj, coords, aggregation, conf)
    per_view = [reference_unproject(feats[:, k:k + 1], proj[:, k:k + 1], coords, "sum") for k in range(3)]
    weights = conf / conf.sum(1, keepdim=True) if aggregation == "conf_norm" else conf
    ref = sum(weights[:, k, :, None, None, None] * per_view[k] for k in range(3))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs per-view confidences"):
        unproject_features(feats, proj, coords, aggregation)


def test_coord_volume_matches_original_rotation_formula():
    roots = torch.tensor([[10.0, -200.0, 900.0], [0.0, 0.0, 0.0]])
    thetas = [1.1, 4.0]
    out = build_coord_volumes(roots, 2500.0, 8, torch.tensor(thetas))
    for i in range(2):
        base = roots[i].double().numpy()
        ref = reference_coord_volume(8, base - 1250.0, np.full(3, 2500.0), base, thetas[i], (0, 0, 1))
        torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-3)  # mm; float32 at ~2000 mm
    # without rotation: corner voxel on the cuboid's corner, spacing cuboid / (S - 1)
    flat = build_coord_volumes(roots, 2500.0, 8)
    torch.testing.assert_close(flat[0, 0, 0, 0], roots[0] - 1250.0)
    torch.testing.assert_close(flat[0, 1, 0, 0] - flat[0, 0, 0, 0], torch.tensor([2500.0 / 7, 0, 0]))


def test_soft_argmax_matches_reference():
    torch.manual_seed(1)
    vol = torch.randn(2, 3, 6, 6, 6) * 3
    coords = build_coord_volumes(torch.randn(2, 3) * 100, 1000.0, 6, torch.tensor([0.5, 1.0]))
    probs = volume_probabilities(vol)
    vox, world, ref_p = reference_soft_argmax(vol, coords)
    torch.testing.assert_close(probs, ref_p)
    torch.testing.assert_close(soft_argmax_voxel(probs), vox, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(soft_argmax_world(probs, coords), world, rtol=1e-5, atol=1e-3)


def test_volumetric_ce_matches_loop_reference_and_counts_invalid_joints():
    torch.manual_seed(2)
    coords = build_coord_volumes(torch.zeros(2, 3), 2000.0, 8, torch.tensor([0.2, 2.2]))
    probs = volume_probabilities(torch.randn(2, 4, 8, 8, 8))
    gt = torch.randn(2, 4, 3) * 500
    validity = torch.tensor([[1.0, 1, 0, 1], [1, 1, 1, 0]])
    ours = volumetric_ce_loss(coords, probs, gt, validity)
    ref = reference_volumetric_ce(coords, probs, gt, validity)
    torch.testing.assert_close(ours, ref)
    valid = volumetric_ce_loss(coords, probs, gt, validity, denominator="valid")
    torch.testing.assert_close(valid, ref * 8 / 6)  # 8 joints counted by the original, 6 valid


def test_keypoint_losses_by_hand():
    pred = torch.zeros(1, 2, 3)
    gt = torch.tensor([[[1.0, 2.0, 3.0], [30.0, 0.0, 0.0]]])
    validity = torch.tensor([[1.0, 0.0]])
    assert float(keypoints_loss(pred, gt, validity, "MAE")) == pytest.approx(6 / 3)
    assert float(keypoints_loss(pred, gt, validity, "MSE")) == pytest.approx(14 / 3)
    # smooth: squared errors above the threshold 4 become x^0.1 * 4^0.9
    expected = (1 + 4 + 9**0.1 * 4**0.9) / 3
    assert float(keypoints_loss(pred, gt, validity, "MSESmooth", 4.0)) == pytest.approx(expected, rel=1e-6)


def test_global_attention_target_matches_original_grid():
    roots = torch.tensor([[100.0, 50.0, 900.0], [-30.0, 0.0, 850.0]])
    thetas = torch.tensor([0.7, 3.0])
    gt = roots[:, None] + torch.randn(2, J, 3) * 300
    ours = global_attention_target(gt, roots, thetas, 2500.0, 16)
    aux = []
    for i in range(2):
        base = roots[i].double().numpy()
        sides = np.full(3, 2500.0)
        aux.append(reference_coord_volume(4, base - 1250.0, sides - 3 * sides / 15, base, float(thetas[i]), (0, 0, 1)))
    ref = reference_ga_mask(gt, torch.stack(aux))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-7)
    exact = global_attention_target(gt, roots, thetas, 2500.0, 16, grid="exact")
    assert exact.shape == ours.shape and not torch.allclose(exact, ours)
    torch.testing.assert_close(exact.sum(-1), torch.ones(2, J))


def tiny_model(seed=0, aggregation="softmax", overrides=()):
    cfg = load_config(None, ["model.backbone.num_layers=18", "model.image_shape=[32, 32]",
                             "model.volume_net.volume_size=16",
                             f"model.volume_net.volume_aggregation_method={aggregation}", *overrides])
    g = torch.Generator().manual_seed(seed)
    prior = LimbPrior(torch.rand(SK.num_bones, generator=g) * 300 + 100, torch.rand(SK.num_bones, generator=g) * 20 + 5)
    torch.manual_seed(seed)
    model = build_model(cfg, prior)
    for p in model.volume_net.parameters():  # the original init (N(0, 1e-3)) makes flat volumes
        if p.dim() > 1:
            torch.nn.init.normal_(p, 0, 1.0 / math.sqrt(p[0].numel()))
    with torch.no_grad():
        model.volume_net.output_layer.weight *= 300  # peaked volumes: soft-argmax far from the centre
    return cfg, model.eval()


def test_forward_matches_reference_within_hundredth_of_mm():
    cfg, model = tiny_model()
    torch.manual_seed(3)
    b, v = 2, 2
    images = torch.randn(b, v, 3, 32, 32)
    proj = camera_proj(b, v, f=40.0, size=32)
    roots = torch.randn(b, 3) * 50
    thetas = torch.tensor([0.4, 5.1])
    with torch.no_grad():
        out = model(images, proj, roots, thetas)
        ref = reference_forward(model, images, proj, roots, thetas)
    kp, vox, heat, probs, coords, att, _ = ref
    assert out.keypoints_3d.shape == (b, J, 3)
    assert (out.keypoints_3d - kp).abs().max() < 0.01  # mm
    torch.testing.assert_close(out.voxel_keypoints_3d, vox, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.heatmaps, heat, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.volumes, probs, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(out.attention, att, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(out.coord_volumes, coords, rtol=0, atol=1e-3)
    assert out.volumes.amax() > 10 / out.volumes[0, 0].numel()  # not a flat volume: the check has teeth


def test_training_step_reaches_every_trainable_parameter():
    cfg, model = tiny_model()
    model.train()
    images = torch.randn(2, 1, 3, 32, 32)
    proj = camera_proj(2, 1, f=40.0, size=32)
    roots = torch.zeros(2, 3)
    out = model(images, proj, roots, torch.tensor([0.0, 1.0]))
    gt = torch.randn(2, J, 3) * 300
    losses = compute_losses(out, gt, torch.ones(2, J), cfg.loss, cfg.model.volume_net)
    assert set(losses) == {"keypoints", "volumetric_ce", "global_attention", "total"}
    losses["total"].backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert name.startswith("backbone.final_layer"), name


def _assert_matches_reference(out, ref, keypoints_scale=1.0):
    """The forward pass against ``reference_forward``; ``keypoints_scale`` divides the joint errors (mm)."""
    kp, vox, heat, probs, coords, att, _ = ref
    assert ((out.keypoints_3d - kp) / keypoints_scale).abs().max() < 0.01  # mm
    torch.testing.assert_close(out.voxel_keypoints_3d, vox, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.heatmaps, heat, rtol=1e-4, atol=1e-6)
    # float32 round-off: absolute for probabilities, relative to the largest value for ReLU masses (up to ~30)
    scale = float(probs.abs().max())
    torch.testing.assert_close(out.volumes, probs, rtol=1e-4, atol=1e-9 if scale <= 1.0 else 1e-6 * scale)
    torch.testing.assert_close(out.attention, att, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(out.coord_volumes, coords, rtol=0, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("aggregation", ["conf", "conf_norm"])
def test_multi_view_confidence_model_matches_reference(aggregation):
    _, model = tiny_model(aggregation=aggregation)
    torch.manual_seed(6)
    # the confidence head pools layer4 twice: 128 px is the smallest input it takes
    images = torch.randn(2, 3, 3, 128, 128)
    proj, roots, thetas = camera_proj(2, 3, f=160.0, size=128), torch.randn(2, 3) * 50, torch.tensor([0.3, 2.0])
    # per-view confidences chosen by the test (at its init the head gives ~0.5 for every view and channel)
    chosen = {"conf": torch.rand(2 * 3, 32) * 0.98 + 0.01}
    model.backbone.vol_confidences.register_forward_hook(lambda _m, _i, output: chosen["conf"])
    with torch.no_grad():
        out = model(images, proj, roots, thetas)
        ref = reference_forward(model, images, proj, roots, thetas)  # the original's per-view loop
    _assert_matches_reference(out, ref)
    torch.testing.assert_close(out.vol_confidences, chosen["conf"].view(2, 3, 32))
    # weights (w, 0, 0): only view 0 counts, the result is that of view 0 alone (the view order is kept)
    alone = {}
    for view in (0, 1):
        weights = torch.zeros(2, 3, 32)
        weights[:, view] = 0.7
        chosen["conf"] = weights.view(6, 32)
        with torch.no_grad():
            three = model(images, proj, roots, thetas).keypoints_3d
            chosen["conf"] = weights[:, view]
            alone[view] = model(images[:, view : view + 1], proj[:, view : view + 1], roots, thetas).keypoints_3d
        torch.testing.assert_close(three, alone[view], rtol=0, atol=1e-3)  # mm
    assert (alone[0] - alone[1]).abs().max() > 1.0  # the views disagree: the check has teeth


def test_heatmap_unprojection_model_matches_reference_and_trains_the_heatmap_layer():
    """``use_feature_v2v: false``: the J heatmaps are unprojected (no 32-channel feature projection)."""
    cfg, model = tiny_model(overrides=["model.volume_net.use_feature_v2v=false"])
    assert not hasattr(model, "process_features")
    assert model.volume_net.front_layers[0].block[0].in_channels == J
    torch.manual_seed(7)
    images, proj = torch.randn(2, 2, 3, 32, 32), camera_proj(2, 2, f=40.0, size=32)
    roots, thetas = torch.randn(2, 3) * 50, torch.tensor([1.0, 4.0])
    with torch.no_grad():
        out = model(images, proj, roots, thetas)
        ref = reference_forward(model, images, proj, roots, thetas)
    _assert_matches_reference(out, ref)
    # as the original, the heatmap layer is trained in this mode (it is frozen when features are unprojected)
    model.train()
    out = model(images, proj, roots, thetas)
    losses = compute_losses(out, torch.randn(2, J, 3) * 300, torch.ones(2, J), cfg.loss, cfg.model.volume_net)
    losses["total"].backward()
    for name, p in model.named_parameters():
        assert p.requires_grad and p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.backbone.final_layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("normalize", [False, True])
def test_relu_volumes_match_reference_and_the_world_readout_invariant(normalize):
    """``volume_softmax: false``: ReLU masses; the world soft-argmax is divided by the mass only with
    ``normalize_relu_volumes`` (the original does not divide it)."""
    _, model = tiny_model(overrides=["model.volume_net.volume_softmax=false",
                                     f"model.volume_net.normalize_relu_volumes={str(normalize).lower()}"])
    torch.manual_seed(8)
    images, proj = torch.randn(2, 1, 3, 32, 32), camera_proj(2, 1, f=40.0, size=32)
    roots = torch.randn(2, 3) * 50
    with torch.no_grad():
        out = model(images, proj, roots, torch.tensor([0.7, 2.5]))
        ref = reference_forward(model, images, proj, roots, torch.tensor([0.7, 2.5]))
        flat = model(images, proj, roots, torch.zeros(2))  # an unrotated cuboid for the invariant
    mass = out.volumes.sum((2, 3, 4))  # (B, J) ReLU masses, far from 1
    # without normalisation the "joints" are mass x position (~1e6 here): compare positions, mass divided out
    _assert_matches_reference(out, ref, keypoints_scale=1.0 if normalize else mass[..., None])
    assert (out.volumes >= 0).all() and (out.volumes == 0).any() and ((mass - 1).abs() > 0.1).all()
    # Unrotated, voxel i sits at root - cuboid/2 + i * cuboid/(S-1): the normalised world read-out is that
    # affine map of the (always normalised) voxel read-out; the original's read-out is it times the mass.
    side = model.cuboid_size
    affine = roots[:, None] - side / 2 + flat.voxel_keypoints_3d * side / (model.volume_size - 1)
    flat_mass = flat.volumes.sum((2, 3, 4))[..., None]
    expected = affine if normalize else affine * flat_mass
    torch.testing.assert_close(flat.keypoints_3d, expected, rtol=1e-4, atol=0.05)  # mm, float32 sums


def test_caffe_style_puts_the_stride_on_the_first_1x1_conv_as_the_original():
    cfg = load_config(None, ["model.backbone.num_layers=50", "model.backbone.style=caffe",
                             "model.volume_net.volume_size=16"])
    prior = LimbPrior(torch.full((SK.num_bones,), 300.0), torch.full((SK.num_bones,), 20.0))
    caffe = build_model(cfg, prior).backbone.eval()  # the config reaches the backbone
    simple = PoseResNet(50, J).eval()
    # the same checkpoint layout (the original's Bottleneck_CAFFE has the same modules): one set of weights
    assert {k: v.shape for k, v in caffe.state_dict().items()} == {k: v.shape for k, v in simple.state_dict().items()}
    torch.manual_seed(9)
    for m in simple.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    caffe.load_state_dict(simple.state_dict())
    x, y = torch.randn(1, 256, 16, 16), torch.randn(1, 512, 8, 8)  # inputs of layer2's first and second blocks
    with torch.no_grad():
        for net, is_caffe in ((simple, False), (caffe, True)):
            torch.testing.assert_close(net.layer2[0](x), reference_bottleneck(net.layer2[0], x, 2, is_caffe))
            torch.testing.assert_close(net.layer2[1](y), reference_bottleneck(net.layer2[1], y, 1, is_caffe))
        # the two styles are different networks with the same weights where a block strides, equal elsewhere
        assert (simple.layer2[0](x) - caffe.layer2[0](x)).abs().max() > 0.01
        torch.testing.assert_close(simple.layer2[1](y), caffe.layer2[1](y), rtol=0, atol=0)
        heat_s, feat_s, _ = simple(torch.randn(1, 3, 64, 64))
    strided = [b for layer in (caffe.layer2, caffe.layer3, caffe.layer4) for b in layer if b.downsample is not None]
    assert len(strided) == 3 and all(b.conv1.stride == (2, 2) and b.conv2.stride == (1, 1) for b in strided)
    assert heat_s.shape == (1, J, 16, 16) and feat_s.shape == (1, 256, 16, 16)
    # ResNet-18/34 have no 1x1 conv to move the stride to: refused (the original built another network)
    for depth in (18, 34):
        with pytest.raises(ValueError, match="basic blocks"):
            PoseResNet(depth, J, style="caffe")
    with pytest.raises(ValueError, match="style must be 'simple' or 'caffe'"):  # no silent fallback to simple
        PoseResNet(50, J, style="cafe")


def test_eval_forward_is_repeatable_and_needs_no_ground_truth():
    _, model = tiny_model()
    images = torch.randn(1, 1, 3, 32, 32)
    proj = camera_proj(1, 1, f=40.0, size=32)
    with torch.no_grad():
        a = model(images, proj, torch.zeros(1, 3))
        b = model(images, proj, torch.zeros(1, 3))
    torch.testing.assert_close(a.keypoints_3d, b.keypoints_3d, rtol=0, atol=0)
    assert torch.equal(a.rotation_angles, torch.zeros(1))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    _, model = tiny_model()
    images = torch.randn(2, 1, 3, 32, 32)
    proj = camera_proj(2, 1, f=40.0, size=32)
    roots = torch.zeros(2, 3)
    with torch.no_grad():
        cpu = model(images, proj, roots).keypoints_3d
        gpu = model.cuda()(images.cuda(), proj.cuda(), roots.cuda()).keypoints_3d.cpu()
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=0.05)


@pytest.mark.slow
def test_bf16_autocast_stays_within_bf16_noise_and_reads_out_in_float32():
    _, model = tiny_model()
    with torch.no_grad():  # moderately peaked volumes: joints ~100 mm from the root, not one sharp voxel
        model.volume_net.output_layer.weight /= 10
    centre = (2000.0, -2000.0, 900.0)  # where Human3.6M subjects stand, world mm: bf16 steps of 8 mm there
    torch.manual_seed(5)
    images = torch.randn(2, 1, 3, 32, 32)
    proj = camera_proj(2, 1, f=40.0, size=32, centre=centre)
    roots = torch.tensor(centre) + torch.randn(2, 3) * 100
    with torch.no_grad():
        ref = model(images, proj, roots)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(images, proj, roots)
    assert torch.isfinite(out.keypoints_3d).all() and torch.isfinite(out.attention).all()
    # The read-out is float32: the joints are the soft-argmax of the run's own volumes to float32 round-off
    # (a bf16 read-out is off by up to 4 mm per coordinate here, and its volumes sum to 1 only within 0.4%).
    assert out.keypoints_3d.dtype == out.volumes.dtype == torch.float32
    torch.testing.assert_close(out.volumes.sum((2, 3, 4)), torch.ones(2, J), rtol=0, atol=1e-5)
    world = torch.einsum("bjxyz,bxyzc->bjc", out.volumes.double(), out.coord_volumes.double())
    # float32 sums of 16^3 terms of ~2000 mm: measured 6e-3 mm; a bf16 read-out errs by up to 4 mm
    torch.testing.assert_close(out.keypoints_3d.double(), world, rtol=0, atol=0.03)
    torch.testing.assert_close(out.coord_volumes, ref.coord_volumes, rtol=0, atol=0)  # geometry is not autocast
    # What bf16 itself changes (8 mantissa bits through ~30 layers) moves the joints by 1-2.5 mm, at most 7.6 mm
    # over 8 seeds of this setting; a bf16 read-out gave 8-9.5 mm, one voxel (the old bound) is 166 mm.
    err = (out.keypoints_3d - ref.keypoints_3d).norm(dim=-1)
    assert err.max() < 15.0 and err.mean() < 5.0, err
    assert (ref.keypoints_3d - roots[:, None]).norm(dim=-1).mean() > 50  # the joints are not just the root
