"""Slow, obviously-correct reference versions of the original ContextPose operations.

Written from the original's maths in the most direct form (dense N x N pairwise matrices, broadcast and
sum, loops over samples, views, bones and joints). Used as oracles by the tests and as the "reference
formulation" by benchmarks/bench_model.py. Never used by the package.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ctxpose.models.context_attention import AttentionConv3D
from ctxpose.models.contextpose import ContextPoseNet


def dense_pairwise_prior(shape, spacing, mean, std, temperature):
    """List over bones of (N, N) row-softmaxed pairwise priors, as the original ``calc_pairwise_atten``."""
    idx = torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")
    coords = torch.stack([i.float() * s for i, s in zip(idx, spacing, strict=True)], dim=0).view(3, -1).t()
    dist = torch.norm(coords[:, None, :] - coords[None, :, :], dim=2)  # (N, N)
    return [F.softmax(-((dist - m) ** 2) / (temperature * 2 * s**2 + 1e-1), dim=1)
            for m, s in zip(mean, std, strict=True)]


def reference_attention(block: AttentionConv3D, x: torch.Tensor, priors=None):
    """The attention block computed as the original does (per bone and joint, (B, c, N, N) temporaries)."""
    nj = block.num_joints
    b, _, d, h, w = x.shape
    shape = (d, h, w)
    if priors is None:
        priors = dense_pairwise_prior(shape, block.grid_spacing(shape), block.limb_mean, block.limb_std,
                                      block.temperature)
    x_pi = block.W_pi(x)
    flat = x_pi.view(b, x_pi.shape[1], -1)
    att = F.softmax(block.atten_conv(x).view(b, nj, -1), dim=2)
    c = flat.shape[1] // nj
    groups = [flat[:, j * c:(j + 1) * c] * att[:, j:j + 1] for j in range(nj)]
    bones = [tuple(bone) for bone in block.bones.tolist()]
    pair_features = []
    for (j0, j1), mask in zip(bones, priors, strict=True):
        feats = []
        for joint in (j0, j1):
            num = torch.sum(mask[None, None] * groups[joint][:, :, None, :], dim=3)  # (B, c, N)
            den = torch.sum(mask[None] * att[:, joint:joint + 1], dim=2)[:, None]  # (B, 1, N)
            feats.append((num / den).view(b, c, *shape))
        pair_features.append(feats)
    share = torch.cat([g.sum(dim=2) for g in groups], dim=1)  # (B, J*c)
    neighbours = [[] for _ in range(nj)]
    for i, (j0, j1) in enumerate(bones):
        neighbours[j0].append((j1, i, 1))
        neighbours[j1].append((j0, i, 0))
    outs = []
    for j0 in range(nj):
        feat = share.view(b, -1, 1, 1, 1).repeat(1, 1, *shape)
        for j1, bone, e in neighbours[j0]:
            feat[:, j1 * c:(j1 + 1) * c] = pair_features[bone][e]
        weight = block.joint_weight[j0][..., None, None, None]
        outs.append(F.conv3d(feat, weight))
    return torch.cat(outs, dim=1) + x_pi, att


def reference_bottleneck(block, x, stride, caffe):
    """One bottleneck block in eval mode, written with functional ops from the original's ``Bottleneck``
    (stride on the 3x3 conv) or ``Bottleneck_CAFFE`` (stride on the first 1x1 conv); ``block`` only lends
    its weights."""
    def bn(y, m):
        return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    s1, s2 = (stride, 1) if caffe else (1, stride)
    out = F.relu(bn(F.conv2d(x, block.conv1.weight, stride=s1), block.bn1))
    out = F.relu(bn(F.conv2d(out, block.conv2.weight, stride=s2, padding=1), block.bn2))
    out = bn(F.conv2d(out, block.conv3.weight), block.bn3)
    if block.downsample is None:
        residual = x
    else:
        residual = bn(F.conv2d(x, block.downsample[0].weight, stride=stride), block.downsample[1])
    return F.relu(out + residual)


def original_rotation_matrix(axis, theta):
    """The original's quaternion formula (numpy, float64)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.sqrt(np.dot(axis, axis))
    a = np.cos(theta / 2.0)
    b, c, d = -axis * np.sin(theta / 2.0)
    aa, bb, cc, dd = a * a, b * b, c * c, d * d
    bc, ad, ac, ab, bd, cd = b * c, a * d, a * c, a * b, b * d, c * d
    return np.array([[aa + bb - cc - dd, 2 * (bc + ad), 2 * (bd - ac)],
                     [2 * (bc - ad), aa + cc - bb - dd, 2 * (cd + ab)],
                     [2 * (bd + ac), 2 * (cd - ab), aa + dd - bb - cc]])


def reference_coord_volume(size, position, sides, base_point, theta, axis):
    """One sample's coordinate volume exactly as the original ``build_coord_volume``."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(size)] * 3, indexing="ij"), dim=-1).float().reshape(-1, 3)
    coord = torch.zeros_like(grid)
    for k in range(3):
        coord[:, k] = float(position[k]) + (float(sides[k]) / (size - 1)) * grid[:, k]
    coord = coord.reshape(size, size, size, 3)
    centre = torch.tensor(base_point, dtype=torch.float32)
    rot = torch.from_numpy(original_rotation_matrix(axis, theta)).float()
    coord = (rot.mm((coord - centre).view(-1, 3).t()).t()).view(size, size, size, 3) + centre
    return coord


def reference_unproject(features, proj, coord_volumes, aggregation="softmax", confidences=None):
    """Per-sample, per-view loop as the original ``unproject_heatmaps``.

    ``confidences`` (B, V, C): the per-view channel weights of the ``conf*`` aggregations, already normalised
    over views for ``conf_norm`` (the original normalises them in the network's forward).
    """
    b, v, c = features.shape[:3]
    hw = features.shape[3:]
    vol_shape = coord_volumes.shape[1:4]
    out = torch.zeros(b, c, *vol_shape)
    for i in range(b):
        pts = coord_volumes[i].reshape(-1, 3)
        per_view = torch.zeros(v, c, *vol_shape)
        for k in range(v):
            p = torch.cat([pts, torch.ones(len(pts), 1)], dim=1) @ proj[i, k].t()
            invalid = p[:, 2] <= 0.0
            p[p[:, 2] == 0.0, 2] = 1.0
            uv = p[:, :2] / p[:, 2:]
            g = torch.stack([2 * (uv[:, 0] / (hw[0] - 1) - 0.5), 2 * (uv[:, 1] / (hw[1] - 1) - 0.5)], dim=1)
            s = F.grid_sample(features[i, k][None], g[None, :, None], align_corners=True).view(c, -1)
            s[:, invalid] = 0.0
            per_view[k] = s.view(c, *vol_shape)
        if aggregation.startswith("conf"):
            out[i] = (per_view * confidences[i].view(v, c, 1, 1, 1)).sum(0)
        elif aggregation == "sum":
            out[i] = per_view.sum(0)
        elif aggregation == "max":
            out[i] = per_view.max(0)[0]
        elif aggregation == "softmax":
            wts = F.softmax(per_view.view(v, -1), dim=0).view_as(per_view)
            out[i] = (per_view * wts).sum(0)
        else:
            raise ValueError(aggregation)
    return out


def reference_soft_argmax(volumes, coord_volumes, softmax=True, normalize_world=False):
    """Voxel and world soft-argmax, marginal by marginal, as the original ``integrate_tensor_3d`` and
    ``integrate_tensor_3d_with_coordinates``.

    ``softmax=False``: ReLU masses; the voxel coordinates are divided by each marginal's mass (as the
    original), the world coordinates only with ``normalize_world`` (the original does not divide them).
    """
    b, j = volumes.shape[:2]
    sizes = volumes.shape[2:]
    flat = volumes.reshape(b, j, -1)
    p = (F.softmax(flat, dim=2) if softmax else F.relu(flat)).reshape(volumes.shape)
    vox = torch.zeros(b, j, 3)
    world = torch.zeros(b, j, 3)
    for i in range(b):
        for k in range(j):
            marginals = (p[i, k].sum((1, 2)), p[i, k].sum((0, 2)), p[i, k].sum((0, 1)))
            for axis, mass in enumerate(marginals):
                vox[i, k, axis] = (mass * torch.arange(sizes[axis])).sum()
                if not softmax:
                    vox[i, k, axis] = vox[i, k, axis] / mass.sum()
            world[i, k] = (p[i, k][..., None] * coord_volumes[i]).reshape(-1, 3).sum(0)
            if normalize_world:
                world[i, k] = world[i, k] / p[i, k].sum()
    return vox, world, p


def reference_volumetric_ce(coord_volumes, volumes, gt, validity):
    """Per-sample, per-joint loop with argmin on the CPU, as the original ``VolumetricCELoss``."""
    loss, n = 0.0, 0
    for i in range(volumes.shape[0]):
        d = torch.sqrt(((coord_volumes[i][None] - gt[i][:, None, None, None]) ** 2).sum(-1)).view(gt.shape[1], -1)
        idx = np.stack(np.unravel_index(d.argmin(-1).numpy(), volumes.shape[-3:]), axis=1)
        for j, (x, y, z) in enumerate(idx):
            loss += validity[i, j] * -torch.log(volumes[i, j, x, y, z] + 1e-6)
            n += 1
    return loss / n


def reference_ga_mask(gt, aux_coord_volumes, sigma=2.0):
    """The original ``calc_ga_mask`` (sigma from the first sample's grid)."""
    b = aux_coord_volumes.shape[0]
    dist = torch.norm(aux_coord_volumes.view(b, 1, -1, 3) - gt[:, :, None], dim=3)
    sig = sigma * torch.norm(aux_coord_volumes[0, 0, 0, 1] - aux_coord_volumes[0, 0, 0, 0])
    return F.softmax(-dist**2 / (2 * sig**2), dim=2)


def reference_plain_v2v(net, x):
    """learnable-triangulation's ``V2VModel`` after its front layers, written out level by level as the original
    ``EncoderDecorder.forward``, with ``net``'s modules."""
    ed = net.encoder_decoder
    skip_x1 = ed.skip_res1(x)
    x = ed.encoder_res1(ed.encoder_pool1(x))
    skip_x2 = ed.skip_res2(x)
    x = ed.encoder_res2(ed.encoder_pool2(x))
    skip_x3 = ed.skip_res3(x)
    x = ed.encoder_res3(ed.encoder_pool3(x))
    skip_x4 = ed.skip_res4(x)
    x = ed.encoder_res4(ed.encoder_pool4(x))
    skip_x5 = ed.skip_res5(x)
    x = ed.encoder_res5(ed.encoder_pool5(x))
    x = ed.mid_res(x)
    x = ed.decoder_upsample5(ed.decoder_res5(x)) + skip_x5
    x = ed.decoder_upsample4(ed.decoder_res4(x)) + skip_x4
    x = ed.decoder_upsample3(ed.decoder_res3(x)) + skip_x3
    x = ed.decoder_upsample2(ed.decoder_res2(x)) + skip_x2
    x = ed.decoder_upsample1(ed.decoder_res1(x)) + skip_x1
    return net.output_layer(net.back_layers(x))


def reference_forward(model: ContextPoseNet, images, proj_image, roots, thetas):
    """The whole network as the original computes it, using ``model``'s weights.

    Returns (keypoints_3d, voxel_keypoints_3d, heatmaps, volumes, coord_volumes, attention, aux_coord_volumes).
    """
    b, v = images.shape[:2]
    heatmaps, features, conf = model.backbone(images.view(b * v, *images.shape[2:]))
    hh, hw = heatmaps.shape[-2:]
    ih, iw = images.shape[-2:]
    proj = proj_image.clone().double()
    proj[:, :, 0] *= hw / iw
    proj[:, :, 1] *= hh / ih
    proj = proj.float()
    size, cub = model.volume_size, model.cuboid_size
    sides = np.array([cub] * 3)
    aux_sides = sides - 3 * sides / (size - 1)
    coords, aux = [], []
    for i in range(b):
        base = roots[i].double().numpy()
        pos = base - sides / 2
        coords.append(reference_coord_volume(size, pos, sides, base, float(thetas[i]), model.rotation_axis))
        aux.append(reference_coord_volume(size // 4, pos, aux_sides, base, float(thetas[i]), model.rotation_axis))
    coord_volumes, aux = torch.stack(coords), torch.stack(aux)
    if model.use_feature_v2v:
        feats = model.process_features(features).view(b, v, 32, hh, hw)
    else:  # the heatmaps themselves are unprojected
        feats = heatmaps.view(b, v, heatmaps.shape[1], hh, hw)
    if conf is not None:
        conf = conf.view(b, v, -1)
        if model.aggregation == "conf_norm":
            conf = conf / conf.sum(dim=1, keepdim=True)
    vol = reference_unproject(feats, proj, coord_volumes, model.aggregation, conf)
    net = model.volume_net
    ed = net.encoder_decoder
    x = net.front_layers(vol)
    if hasattr(net, "back_layers"):  # learnable-triangulation's plain V2V (the volumetric model)
        vol, att = reference_plain_v2v(net, x), None
    else:
        skip1 = ed.skip_res1(x)
        x = ed.encoder_res1(ed.encoder_pool1(x))
        skip2 = ed.skip_res2(x)
        x = ed.encoder_res2(ed.encoder_pool2(x))
        res, att = reference_attention(ed.mid_res.atten_conv, x)
        x = F.relu(ed.mid_res.res_branch(res) + ed.mid_res.skip_con(x))
        x = ed.decoder_upsample2(ed.decoder_res2(x)) + skip2
        x = ed.decoder_upsample1(ed.decoder_res1(x)) + skip1
        vol = net.output_layer(x)
    vox, world, probs = reference_soft_argmax(vol * model.volume_multiplier, coord_volumes, model.volume_softmax,
                                              model.normalize_relu_volumes and not model.volume_softmax)
    return world, vox, heatmaps.view(b, v, *heatmaps.shape[1:]), probs, coord_volumes, att, aux

