"""Metrics against hand-worked values and slow loop references written from the definitions."""

from __future__ import annotations

import math
import warnings
from functools import partial

import numpy as np
import pytest
import torch

from ctxpose.metrics import mpi_inf_3dhp
from ctxpose.metrics import pose as metrics
from ctxpose.skeleton import CONTEXTPOSE_TO_3DHP, Skeleton, get_skeleton

SK = get_skeleton("contextpose17")
J = SK.num_joints
ROOT = SK.root


def _random_poses(rng: np.random.Generator, b: int, j: int = J) -> np.ndarray:
    return rng.normal(scale=300.0, size=(b, j, 3)) + np.array([0.0, 0.0, 4000.0])


def _chain_skeleton(n: int, root: int = 0) -> Skeleton:
    """A made-up n-joint chain 0-1-...-(n-1) (not the default skeleton)."""
    return Skeleton(name=f"chain{n}", names=tuple(f"j{i}" for i in range(n)),
                    bones=tuple((i, i + 1) for i in range(n - 1)), root=root, flip_pairs=(),
                    h36m32_indices=tuple(range(n)))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


# ----------------------------------------------------------------------------- slow references


def ref_mpjpe(pred, gt, validity=None):
    out = []
    for b in range(len(pred)):
        num = den = 0.0
        for j in range(pred.shape[1]):
            w = 1.0 if validity is None else validity[b, j]
            num += w * math.sqrt(sum((pred[b, j, k] - gt[b, j, k]) ** 2 for k in range(3)))
            den += w
        out.append(num / den)
    return np.array(out)


def ref_procrustes_one(p, g):
    """Similarity Procrustes from the definition: min_{s,R,t} sum ||g_j - (s R p_j + t)||^2, det R = +1."""
    mp, mg = p.mean(0), g.mean(0)
    p0, g0 = p - mp, g - mg
    h = np.zeros((3, 3))
    for j in range(len(p)):
        h += np.outer(p0[j], g0[j])  # sum p g^T
    u, s, vt = np.linalg.svd(h)
    r = vt.T @ u.T
    if np.linalg.det(r) < 0:  # reflection: flip the weakest direction
        vt[-1] *= -1
        s[-1] *= -1
        r = vt.T @ u.T
    scale = s.sum() / (p0**2).sum()
    return np.array([scale * r @ p0[j] + mg for j in range(len(p))])


def ref_n_mpjpe_one(p, g, root=ROOT):
    """N-MPJPE of one pose from the definition: root-centred, prediction scaled by <p, g> / <p, p>."""
    p0, g0 = p - p[root], g - g[root]
    s = sum(float(p0[j] @ g0[j]) for j in range(len(p))) / sum(float(p0[j] @ p0[j]) for j in range(len(p)))
    return ref_mpjpe((s * p0)[None], g0[None])[0]


def ref_limb_error_per_pose(pred, gt, bones):
    """Mean over bones of |length difference|, pose by pose."""
    return np.array([sum(abs(math.dist(p[a], p[b]) - math.dist(g[a], g[b])) for a, b in bones) / len(bones)
                     for p, g in zip(pred, gt, strict=True)])


def ref_limb_error_original(pred, gt, bones):
    """The original LimbLengthError: mean over bones of the batch-mean |length difference|."""
    total = 0.0
    for a, b in bones:
        diffs = [abs(np.linalg.norm(pred[i, a] - pred[i, b]) - np.linalg.norm(gt[i, a] - gt[i, b]))
                 for i in range(len(pred))]
        total += sum(diffs) / len(diffs)
    return total / len(bones)


# ----------------------------------------------------------------------------- hand-worked 2x5x3


def test_hand_worked_2x5x3():
    gt = np.zeros((2, 5, 3))
    gt[:, :, 0] = np.arange(5) * 100.0  # joints on a line along x, root = joint 0
    pred = gt.copy()
    pred[0] += np.array([30.0, 40.0, 0.0])  # whole pose shifted by 50 mm
    pred[1, 4] += np.array([0.0, 0.0, 10.0])  # one joint off by 10 mm
    np.testing.assert_allclose(metrics.mpjpe(pred, gt), [50.0, 2.0])
    # root-relative: the shift cancels; pose 1 root is exact so still 10 / 5
    np.testing.assert_allclose(metrics.mpjpe_relative(pred, gt, None, root=0), [0.0, 2.0], atol=1e-12)
    # validity excluding joint 4 removes pose 1's error; mean over 4 joints
    validity = np.ones((2, 5))
    validity[1, 4] = 0
    np.testing.assert_allclose(metrics.mpjpe(pred, gt, validity), [50.0, 0.0])
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt)[0], 0.0, atol=1e-9)
    # limb lengths of a chain 0-1-2-3-4: pose 1 last bone 100 -> sqrt(100^2 + 10^2)
    bones = [(0, 1), (1, 2), (2, 3), (3, 4)]
    np.testing.assert_allclose(metrics.limb_length_error(pred, gt, bones),
                               [0.0, (math.sqrt(100**2 + 10**2) - 100.0) / 4])


def test_pck_and_auc_3dhp_hand_worked():
    # joint errors 0 (a root), exactly 150, 151 and 70 mm
    errors = np.array([[0.0, 150.0, 151.0, 70.0]])
    # the MPI-INF-3DHP rule counts errors strictly below the threshold, in percent: 150 mm is a miss
    np.testing.assert_allclose(mpi_inf_3dhp.pck_3dhp(errors), [50.0])
    # AUC over 0, 5, ..., 150: 0 mm counts from t=5 on (30/31); 150 and 151 never; 70 mm for t > 70 (16/31)
    np.testing.assert_allclose(mpi_inf_3dhp.auc_3dhp(errors), [100 * (30 + 0 + 0 + 16) / 31 / 4])
    # weights exclude joints; a pose without any counted joint is NaN
    np.testing.assert_allclose(mpi_inf_3dhp.pck_3dhp(errors, weights=[[1, 0, 0, 1]]), [100.0])
    assert np.isnan(mpi_inf_3dhp.pck_3dhp(errors, weights=[[0, 0, 0, 0]])[0])


# ----------------------------------------------------------------------------- loop references


def test_mpjpe_and_relative_match_loops():
    rng = np.random.default_rng(0)
    pred, gt = _random_poses(rng, 6), _random_poses(rng, 6)
    validity = (rng.random((6, J)) > 0.3).astype(float)
    validity[:, 0] = 1
    np.testing.assert_allclose(metrics.mpjpe(pred, gt), ref_mpjpe(pred, gt), rtol=1e-12)
    np.testing.assert_allclose(metrics.mpjpe(pred, gt, validity), ref_mpjpe(pred, gt, validity), rtol=1e-12)
    rel = ref_mpjpe(pred - pred[:, ROOT : ROOT + 1], gt - gt[:, ROOT : ROOT + 1])
    np.testing.assert_allclose(metrics.mpjpe_relative(pred, gt, None, ROOT), rel, rtol=1e-12)


def test_pa_mpjpe_matches_svd_procrustes_reference():
    rng = np.random.default_rng(1)
    pred, gt = _random_poses(rng, 8), _random_poses(rng, 8)
    aligned_ref = np.stack([ref_procrustes_one(p, g) for p, g in zip(pred, gt, strict=True)])
    # float64 SVDs of 3x3 matrices: agreement to ~1e-9 mm
    np.testing.assert_allclose(metrics.procrustes_align(pred, gt), aligned_ref, atol=1e-8)
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), ref_mpjpe(aligned_ref, gt), rtol=1e-10)


def test_pa_alignment_is_optimal_against_perturbations():
    rng = np.random.default_rng(2)
    pred, gt = _random_poses(rng, 1), _random_poses(rng, 1)
    best = metrics.pa_mpjpe(pred, gt)[0]
    aligned = metrics.procrustes_align(pred, gt)[0]
    # sum of squares is what Procrustes minimises; any perturbed similarity transform must not do better
    sse = ((aligned - gt[0]) ** 2).sum()
    c = aligned.mean(0)
    for _ in range(50):
        w = rng.normal(scale=0.02, size=3)  # small rotation exp([w]x) via Rodrigues
        angle, axis = np.linalg.norm(w), w / np.linalg.norm(w)
        cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        small = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
        s = 1 + rng.normal(scale=0.02)
        moved = s * (aligned - c) @ small.T + c + rng.normal(scale=2.0, size=3)
        assert ((moved - gt[0]) ** 2).sum() >= sse - 1e-6
    assert best > 0


def test_pa_mpjpe_invariant_to_similarity_transform_and_refuses_reflection():
    rng = np.random.default_rng(3)
    gt = _random_poses(rng, 4)
    pred = np.stack([2.5 * gt[i] @ _random_rotation(rng).T + rng.normal(size=3) * 500 for i in range(4)])
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), 0.0, atol=1e-8)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    # a reflection cannot be undone by a proper rotation: error stays well above zero
    assert np.all(metrics.pa_mpjpe(mirrored, gt) > 10.0)


def test_n_mpjpe_matches_loop_and_undoes_scale():
    rng = np.random.default_rng(4)
    pred, gt = _random_poses(rng, 5), _random_poses(rng, 5)
    out = [ref_n_mpjpe_one(p, g) for p, g in zip(pred, gt, strict=True)]
    np.testing.assert_allclose(metrics.n_mpjpe(pred, gt, None, ROOT), out, rtol=1e-10)
    scaled = (gt - gt[:, ROOT : ROOT + 1]) * 0.7 + 123.0
    np.testing.assert_allclose(metrics.n_mpjpe(scaled, gt, None, ROOT), 0.0, atol=1e-9)


def test_limb_length_error_matches_original_loop():
    rng = np.random.default_rng(5)
    pred, gt = _random_poses(rng, 7), _random_poses(rng, 7)
    ours = metrics.limb_length_error(pred, gt, SK.bones).mean()
    np.testing.assert_allclose(ours, ref_limb_error_original(pred, gt, SK.bones), rtol=1e-12)


def test_pck_2d_original_matches_loop():
    rng = np.random.default_rng(6)
    gt = _random_poses(rng, 9)
    pred = gt + rng.normal(scale=60.0, size=gt.shape)
    k = np.array([[600.0, 0, 192], [0, 600.0, 192], [0, 0, 1]])
    # cameras at the world origin, some rotated away: poses 4 m off, partly behind them
    proj = np.stack([k @ np.hstack([_random_rotation(rng) if i % 2 else np.eye(3), np.zeros((3, 1))])
                     for i in range(9)])
    proj_v = proj[:, None].repeat(2, axis=1)  # (B, V, 3, 4): view 0 is used
    out = metrics.pck_2d_original(pred, gt, proj_v, image_height=384)
    behind = 0
    for thr, rates in out.items():
        for j in range(J):
            hits = 0
            for b in range(9):
                hp, hg = proj[b] @ np.append(pred[b, j], 1.0), proj[b] @ np.append(gt[b, j], 1.0)
                if hp[2] <= 0 or hg[2] <= 0:  # no image: a miss
                    behind += 1
                    continue
                hits += np.linalg.norm(hp[:2] / hp[2] - hg[:2] / hg[2]) <= 38.4 * thr
            assert rates[j] == pytest.approx(hits / 9)
    assert list(out) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert behind > 0  # the data exercise the rule


def test_pck_2d_counts_points_behind_or_in_the_camera_plane_as_misses():
    proj = np.array([[[500.0, 0, 100, 0], [0, 500.0, 100, 0], [0, 0, 1, 0]]])  # camera at the origin, z forward
    gt = np.zeros((1, 4, 3))
    gt[0, :, 2] = 4000.0
    gt[0, :, 0] = [0.0, 100.0, 200.0, 300.0]
    pred = gt.copy()
    pred[0, 1] *= -1  # mirrored through the camera centre: by plain division the same pixel as the truth
    pred[0, 2, 2] = 0.0  # in the camera plane
    gt[0, 3] *= -1  # the ground truth itself behind the camera (and the prediction in front)
    for p, g, m in ((pred, gt, proj), (torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(proj))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no division warnings either
            rates = metrics.pck_2d_original(p, g, m, image_height=200)
        for thr in metrics.PCK_2D_THRESHOLDS:
            np.testing.assert_array_equal(np.asarray(rates[thr]), [1.0, 0.0, 0.0, 0.0])
    acc = metrics.MetricAccumulator(["S9"], ["Walking-1"], _chain_skeleton(4), image_height=200)
    acc.add([0], [0], [0], pred, gt, proj_matrices=proj)
    summary = acc.summary()
    assert summary.pck_2d_per_joint[0.5] == [1.0, 0.0, 0.0, 0.0] and summary.overall["pck2d@0.5"] == 0.25


def test_accumulator_pck_and_auc_are_the_3dhp_protocol_numbers():
    """The per-pose PCK/AUC of the Human3.6M-style summary: a slow loop of the official rule (root-relative
    errors < t, percent), and the same numbers as the MPI-INF-3DHP protocol's "Total" with the 17-joint groups."""
    rng = np.random.default_rng(7)
    gt = _random_poses(rng, 6)
    pred = gt + rng.normal(scale=80.0, size=gt.shape)
    pred[0] = gt[0] + [5.0, 0.0, 0.0]  # an exact pose, shifted: PCK 100, AUC 100 * 30/31
    validity = np.ones((6, J))
    validity[1, 3] = 0
    thresholds = range(0, 151, 5)
    ref_pck, ref_auc = [], []
    for p, g, v in zip(pred, gt, validity, strict=True):
        d = [math.dist(p[j] - p[ROOT], g[j] - g[ROOT]) for j in range(J) if v[j]]
        ref_pck.append(100 * sum(x < 150 for x in d) / len(d))
        ref_auc.append(100 * np.mean([sum(x < t for x in d) / len(d) for t in thresholds]))
    acc = metrics.MetricAccumulator(["TS1"], ["Sitting"], SK)
    acc.add(np.arange(6), np.zeros(6), np.zeros(6), pred, gt, validity)
    overall = acc.summary().overall
    assert overall["pck_3dhp"] == pytest.approx(np.mean(ref_pck), rel=1e-12)
    assert overall["auc_3dhp"] == pytest.approx(np.mean(ref_auc), rel=1e-12)
    assert ref_pck[0] == 100 and ref_auc[0] == pytest.approx(100 * 30 / 31)
    acc = metrics.MetricAccumulator(["TS1"], ["Sitting"], SK)
    acc.add(np.arange(6), np.zeros(6), np.zeros(6), pred, gt)
    protocol = mpi_inf_3dhp.evaluate_mpi_inf_3dhp(pred, gt, ["TS1"] * 6, [3] * 6, joint_groups="17").overall
    assert acc.summary().overall["pck_3dhp"] == pytest.approx(protocol["pck"]["Total"], rel=1e-12)
    assert acc.summary().overall["auc_3dhp"] == pytest.approx(protocol["auc"]["Total"], rel=1e-12)
    assert list(CONTEXTPOSE_TO_3DHP) != list(range(J))  # the protocol reorders joints; the totals agree anyway


def test_numpy_and_torch_match_loop_references_and_gradients_match_finite_differences():
    rng = np.random.default_rng(8)
    pred, gt = _random_poses(rng, 3), _random_poses(rng, 3)
    aligned = np.stack([ref_procrustes_one(p, g) for p, g in zip(pred, gt, strict=True)])
    references = {  # pure-python loops from the definitions, no torch involved
        metrics.mpjpe: ref_mpjpe(pred, gt),
        partial(metrics.mpjpe_relative, validity=None, root=ROOT):
            ref_mpjpe(pred - pred[:, ROOT : ROOT + 1], gt - gt[:, ROOT : ROOT + 1]),
        metrics.pa_mpjpe: ref_mpjpe(aligned, gt),
        partial(metrics.n_mpjpe, validity=None, root=ROOT):
            np.array([ref_n_mpjpe_one(p, g) for p, g in zip(pred, gt, strict=True)]),
        partial(metrics.limb_length_error, bones=SK.bones): ref_limb_error_per_pose(pred, gt, SK.bones),
    }
    for fn, expected in references.items():
        name = getattr(fn, "func", fn).__name__
        out_np = fn(pred, gt)
        assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float64, name
        np.testing.assert_allclose(out_np, expected, rtol=1e-10, err_msg=name)  # float64 round-off
        out_t = fn(torch.tensor(pred), torch.tensor(gt))
        assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64, name
        np.testing.assert_allclose(out_t.numpy(), expected, rtol=1e-10, err_msg=name)
        out_32 = fn(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32))
        assert out_32.dtype == torch.float32, name
        # float32 on coordinates ~4000 mm (relative 6e-8): 0.01 mm on errors of hundreds of mm
        np.testing.assert_allclose(out_32.double().numpy(), expected, rtol=0, atol=1e-2, err_msg=name)
        # the analytic gradient (what training through a metric would use) against central finite differences
        pt = torch.tensor(pred[:2], requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, fn=fn: fn(x, torch.tensor(gt[:2])), (pt,), eps=1e-4, atol=1e-5)


def test_weighted_procrustes_ignores_invalid_joints_and_empty_poses_give_nan():
    rng = np.random.default_rng(10)
    gt = _random_poses(rng, 3)
    pred = np.stack([1.3 * gt[i] @ _random_rotation(rng).T + 40.0 for i in range(3)])
    pred[:, 0] += 500.0  # a wild joint
    validity = np.ones((3, J))
    validity[:, 0] = 0
    validity[2] = 0  # no valid joint at all
    out = metrics.pa_mpjpe(pred, gt, validity)
    np.testing.assert_allclose(out[:2], 0.0, atol=1e-8)  # the wild joint neither counts nor biases the fit
    assert np.isnan(out[2])
    assert metrics.pa_mpjpe(pred, gt)[0] > 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        metrics.mpjpe(np.zeros((2, J, 3)), np.zeros((2, J - 1, 3)))


# ----------------------------------------------------------------------------- accumulator


def test_accumulator_per_action_and_subject_match_loops():
    rng = np.random.default_rng(9)
    subjects = ["S9", "S11"]
    actions = ["Directions-1", "Directions-2", "Eating-1", "Eating-2"]
    n = 20
    gt = _random_poses(rng, n)
    pred = gt + rng.normal(scale=40.0, size=gt.shape)
    subj = rng.integers(0, 2, n)
    act = rng.integers(0, 4, n)
    proj = np.tile(np.array([[500.0, 0, 100, 0], [0, 500.0, 100, 0], [0, 0, 1, 0]]), (n, 1, 1))
    acc = metrics.MetricAccumulator(subjects, actions, SK, image_height=200)
    # two batches plus a padded duplicate of the first two samples (as a DistributedSampler would add)
    acc.add(np.arange(12), subj[:12], act[:12], pred[:12], gt[:12], proj_matrices=proj[:12])
    acc.add(torch.arange(12, n), torch.from_numpy(subj[12:]), act[12:], torch.from_numpy(pred[12:]),
            torch.from_numpy(gt[12:]), proj_matrices=proj[12:])
    acc.add([0, 1], subj[:2], act[:2], pred[:2] + 1000.0, gt[:2], proj_matrices=proj[:2])
    summary = acc.summary()
    assert summary.count == n
    rel = ref_mpjpe(pred - pred[:, ROOT : ROOT + 1], gt - gt[:, ROOT : ROOT + 1])
    assert summary.overall["mpjpe_relative"] == pytest.approx(rel.mean())
    for name in ("Directions", "Eating"):  # trials merged
        rows = [i for i in range(n) if actions[act[i]].startswith(name + "-")]
        assert summary.per_action[name]["mpjpe_relative"] == pytest.approx(np.mean(rel[rows]))
    assert set(summary.per_action) == {"Directions", "Eating"}
    for s, name in enumerate(subjects):
        rows = [i for i in range(n) if subj[i] == s]
        assert summary.per_subject[name]["mpjpe"] == pytest.approx(np.mean(ref_mpjpe(pred[rows], gt[rows])))
    pck = metrics.pck_2d_original(pred, gt, proj, image_height=200)
    for thr, rates in pck.items():
        np.testing.assert_allclose(summary.pck_2d_per_joint[thr], rates)
        assert summary.overall[f"pck2d@{thr}"] == pytest.approx(rates.mean())
    assert summary.to_dict()["count"] == n


def test_accumulator_uses_the_given_skeleton_root_and_bones():
    rng = np.random.default_rng(12)
    sk = _chain_skeleton(5, root=2)
    gt = _random_poses(rng, 6, j=5)
    pred = gt + rng.normal(scale=50.0, size=gt.shape)
    acc = metrics.MetricAccumulator(["S1"], ["Posing-1"], skeleton=sk)
    acc.add(np.arange(6), np.zeros(6), np.zeros(6), pred, gt)
    summary = acc.summary()
    rel = ref_mpjpe(pred - pred[:, 2:3], gt - gt[:, 2:3])  # centred on joint 2, the skeleton's root
    assert summary.overall["mpjpe_relative"] == pytest.approx(rel.mean())
    assert summary.overall["limb_length_error"] == pytest.approx(ref_limb_error_original(pred, gt, sk.bones))
    # poses of another joint count than the skeleton's are refused
    other = metrics.MetricAccumulator(["S1"], ["Posing-1"], SK)
    with pytest.raises(ValueError, match=r"5 joints, skeleton contextpose17 has 17"):
        other.add(np.arange(6), np.zeros(6), np.zeros(6), pred, gt)


def test_base_action_name():
    assert metrics.base_action_name("WalkingDog-2") == "WalkingDog"
    assert metrics.base_action_name("Walking") == "Walking"
