"""MPI-INF-3DHP pieces without images: joint orders, cameras, the official metrics, the MAT-file writer.

References are independent of the code under test: hand-written joint tables (from the Human3.6M joint
descriptions and the release's joint names), pixel intrinsics published by another project, OpenCV's
projection, h5py, and a literal loop port of the MATLAB scoring written here.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from ctxpose.data.mpi_inf_3dhp.cameras import intrinsics_px, load_3dhp_camera, packaged, parse_calib
from ctxpose.data.mpi_inf_3dhp.metadata import ACTIVITIES, root_relative_3dhp
from ctxpose.errors import DataError
from ctxpose.metrics.mpi_inf_3dhp import evaluate_mpi_inf_3dhp, mpi_inf_3dhp_group_indices, mpi_inf_3dhp_pck_auc
from ctxpose.skeleton import CONTEXTPOSE_TO_3DHP, H36M_CONTEXTPOSE, MPI_INF_3DHP, MPI_INF_3DHP_TO_CONTEXTPOSE_INDEX
from ctxpose.utils.matlab import write_mat_v73

DATA = Path(__file__).parents[1] / "data" / "mpi_inf_3dhp"

#: 3DHP joint -> (contextpose17 joint, Human3.6M 32-joint index): written from the joints' meaning.
SAME_JOINT = {
    "head_top": ("head", 15), "neck": ("neck", 13), "right_shoulder": ("right_shoulder", 25),
    "right_elbow": ("right_elbow", 26), "right_wrist": ("right_wrist", 27), "left_shoulder": ("left_shoulder", 17),
    "left_elbow": ("left_elbow", 18), "left_wrist": ("left_wrist", 19), "right_hip": ("right_hip", 1),
    "right_knee": ("right_knee", 2), "right_ankle": ("right_ankle", 3), "left_hip": ("left_hip", 6),
    "left_knee": ("left_knee", 7), "left_ankle": ("left_ankle", 8), "pelvis": ("pelvis", 0),
    "spine": ("belly", 12), "head": ("nose", 14),
}


def _distinct_pose() -> np.ndarray:
    """(1, 17, 3) contextpose17 pose whose joints all differ (joint i at (100 i, -7 i, 3000 + i^2))."""
    i = np.arange(H36M_CONTEXTPOSE.num_joints, dtype=np.float64)
    return np.stack([100 * i, -7 * i, 3000 + i**2], axis=-1)[None]


def test_joint_mapping_joint_by_joint():
    ours = _distinct_pose()
    theirs = ours[:, list(CONTEXTPOSE_TO_3DHP)]
    assert list(SAME_JOINT) == list(MPI_INF_3DHP.names)
    for k, name in enumerate(MPI_INF_3DHP.names):
        our_name, h36m = SAME_JOINT[name]
        np.testing.assert_array_equal(theirs[0, k], ours[0, H36M_CONTEXTPOSE.names.index(our_name)], err_msg=name)
        assert MPI_INF_3DHP.h36m32_indices[k] == h36m, name
    np.testing.assert_array_equal(theirs[:, list(MPI_INF_3DHP_TO_CONTEXTPOSE_INDEX)], ours)
    assert MPI_INF_3DHP.names[MPI_INF_3DHP.root] == "pelvis" and MPI_INF_3DHP.root == 14  # MATLAB joint 15


def test_root_relative_is_3dhp_order_minus_pelvis():
    ours = _distinct_pose()
    rel = root_relative_3dhp(ours)
    for k, name in enumerate(MPI_INF_3DHP.names):
        want = ours[0, H36M_CONTEXTPOSE.names.index(SAME_JOINT[name][0])] - ours[0, H36M_CONTEXTPOSE.root]
        np.testing.assert_array_equal(rel[0, k], want, err_msg=name)


def test_packaged_calibrations_are_the_release_files():
    for name in ("ts1-4cameras.calib", "ts5-6cameras.calib"):
        assert parse_calib((DATA / name).read_text(), name) == packaged()["calibrations"][name]
    ts5 = packaged()["calibrations"]["ts5-6cameras.calib"][0]
    assert ts5["distortion"] == [-0.276859611, 0.131125256, -0.000360494, -0.001149441, -0.049318332]


def test_pixel_intrinsics_match_published_values():
    # fx, cx, cy as published by another 3DHP loader (fx = fy there, pixelAspect ignored):
    # [1500.172288, 1500.172288, 1017.38733568, 1043.03198208] and [1683.98345952, ..., 939.85754016, 560.14074317]
    for seq, (fx, cx, cy), aspect, hw in (("TS3", (1500.172288, 1017.38733568, 1043.03198208), 1.00044, (2048, 2048)),
                                          ("TS6", (1683.98345952, 939.85754016, 560.14074317), 0.993236423,
                                           (1080, 1920))):
        K = load_3dhp_camera(seq).K
        np.testing.assert_allclose([K[0, 0], K[0, 2], K[1, 2]], [fx, cx, cy], rtol=0, atol=1e-6)
        assert K[1, 1] == pytest.approx(fx * aspect, abs=1e-9)  # pixelAspect is y / x
        small = load_3dhp_camera(seq, (hw[0] // 4, hw[1] // 4)).K
        np.testing.assert_allclose(small[:2], K[:2] / 4, rtol=1e-12)
    with pytest.raises(DataError, match="aspect"):
        load_3dhp_camera("TS5", (500, 500))
    with pytest.raises(DataError, match="aspect"):
        intrinsics_px(packaged()["calibrations"]["ts1-4cameras.calib"][0], (1080, 1920))


def test_projection_agrees_with_opencv_including_distortion():
    rng = np.random.default_rng(1)
    pts = np.stack([rng.uniform(-2000, 2000, 200), rng.uniform(-1200, 1200, 200), rng.uniform(3000, 6000, 200)], 1)
    for seq in ("TS1", "TS5"):
        cam = load_3dhp_camera(seq)
        ref, _ = cv2.projectPoints(pts[:, None], np.zeros(3), np.zeros(3), cam.K, cam.dist)
        np.testing.assert_allclose(cam.project(pts), ref.reshape(-1, 2), atol=1e-6)
    assert np.abs(load_3dhp_camera("TS5").project(pts) - load_3dhp_camera("TS5").project(pts, distort=False)).max() > 20


def test_calib_errors_are_one_line():
    with pytest.raises(DataError, match="not a 'tc camera calibration'"):
        parse_calib("hello\n", "x.calib")
    with pytest.raises(DataError, match="focalLength has 2 values"):
        parse_calib("tc camera calibration v0.3\ncamera 0 c\n focalLength 1 2\n", "x.calib")
    with pytest.raises(DataError, match="has no"):
        parse_calib("tc camera calibration v0.3\ncamera 0 c\n focalLength 1\n", "x.calib")


# --------------------------------------------------------------------------- metrics

def _reference_tables(errors, sequence, activity, groups):
    """A literal port of mpii_evaluate_errors.m + mpii_compute_3d_pck.m with explicit loops."""
    def pck_auc(err):
        pck, auc, count, total_pck, total_curve = {}, {}, 0, 0.0, [0.0] * 31
        for name, idx in groups:
            curve = []
            for t in range(0, 151, 5):
                hits = sum(1 for f in range(len(err)) for j in idx if err[f][j] < t)
                curve.append(hits / (len(idx) * len(err)))
            pck[name] = 100 * sum(1 for f in range(len(err)) for j in idx if err[f][j] < 150) / (len(idx) * len(err))
            auc[name] = 100 * sum(curve) / len(curve)
            count += len(idx)
            total_pck += pck[name] * len(idx)
            total_curve = [a + b * len(idx) for a, b in zip(total_curve, curve, strict=True)]
        pck["Total"] = total_pck / count
        auc["Total"] = 100 * sum(c / count for c in total_curve) / len(total_curve)
        return pck, auc

    def mpjpe(err):
        per_joint = [sum(err[f][j] for f in range(len(err))) / len(err) for j in range(17)]
        return sum(per_joint) / 17

    out = {}
    for key, labels in (("seq", sequence), ("act", activity)):
        for value in sorted(set(labels)):
            err = [errors[i] for i in range(len(errors)) if labels[i] == value]
            out[(key, value)] = (mpjpe(err), *pck_auc(err))
    out[("act", "All")] = (mpjpe(errors), *pck_auc(errors))
    return out


@pytest.mark.parametrize("joint_groups", ["17", "14"])
def test_metrics_equal_a_loop_port_of_the_matlab_code(joint_groups):
    rng = np.random.default_rng(0)
    n = 90
    gt = rng.normal(0, 300, (n, 17, 3)) + [0, 0, 4000]
    pred = gt + rng.normal(0, 60, (n, 17, 3))
    seq = rng.choice(["TS1", "TS2", "TS5"], n)
    act = rng.integers(1, 8, n)
    result = evaluate_mpi_inf_3dhp(pred, gt, seq, act, joint_groups=joint_groups)
    ours = [H36M_CONTEXTPOSE.names.index(SAME_JOINT[name][0]) for name in MPI_INF_3DHP.names]
    r = H36M_CONTEXTPOSE.root
    errors = [[sum(((pred[f, j, c] - pred[f, r, c]) - (gt[f, j, c] - gt[f, r, c])) ** 2 for c in range(3)) ** 0.5
               for j in ours] for f in range(n)]
    ref = _reference_tables(errors, seq.tolist(), act.tolist(), mpi_inf_3dhp_group_indices(joint_groups))
    for (kind, value), (mpjpe, pck, auc) in ref.items():
        row = result.per_sequence[value] if kind == "seq" else result.per_activity[
            value if value == "All" else ACTIVITIES[value - 1]]
        assert row["mpjpe"] == pytest.approx(mpjpe, rel=1e-12)
        for g in pck:
            assert row["pck"][g] == pytest.approx(pck[g], rel=1e-12), (kind, value, g)
            assert row["auc"][g] == pytest.approx(auc[g], rel=1e-12), (kind, value, g)
    scene = result.per_scene["green screen"]
    assert scene["n_frames"] == int(np.isin(seq, ["TS1", "TS2"]).sum()) and "studio" not in result.per_scene
    frames = np.isin(seq, ["TS1", "TS2"])
    assert scene["pck"]["Total"] == pytest.approx(mpi_inf_3dhp_pck_auc(np.array(errors)[frames], joint_groups)[0]
                                                  ["Total"])


@pytest.mark.parametrize("joint_groups", ["17", "14"])
def test_exact_and_shifted_predictions_give_the_documented_numbers(joint_groups):
    gt = np.round(np.random.default_rng(2).normal(0, 300, (40, 17, 3))) + [0, 0, 4000]  # integers: exact sums
    seq, act = ["TS1"] * 20 + ["TS6"] * 20, np.arange(40) % 7 + 1
    exact = evaluate_mpi_inf_3dhp(gt + [10, -20, 30], gt, seq, act, joint_groups=joint_groups).overall  # + root
    assert (exact["pck"]["Total"], round(exact["auc"]["Total"], 2), exact["mpjpe"]) == (100.0, 96.77, 0.0)
    rel = gt - gt[:, [H36M_CONTEXTPOSE.root]]
    for shift, want in ((100, (100.0, 32.26, 100.0)), (151, (0.0, 0.0, 151.0))):
        o = evaluate_mpi_inf_3dhp(rel + [0, shift, 0], gt, seq, act, joint_groups=joint_groups,
                                  pred_root_relative=True).overall
        assert (o["pck"]["Total"], round(o["auc"]["Total"], 2), o["mpjpe"]) == want
    # without root subtraction the absolute prediction is metres off
    assert evaluate_mpi_inf_3dhp(gt, gt, seq, act, pred_root_relative=True).overall["pck"]["Total"] < 1


def test_joint_groups_differ_and_are_checked():
    gt = np.zeros((3, 17, 3)) + [0, 0, 4000]
    pred = gt.copy()
    pred[:, H36M_CONTEXTPOSE.names.index("belly")] += [0, 200, 0]  # 3DHP "spine": only in the 17-joint groups
    r17 = evaluate_mpi_inf_3dhp(pred, gt, ["TS1"] * 3, [1, 2, 3], joint_groups="17")
    r14 = evaluate_mpi_inf_3dhp(pred, gt, ["TS1"] * 3, [1, 2, 3], joint_groups="14")
    assert r17.overall["pck"]["Total"] == pytest.approx(100 * 16 / 17) and r14.overall["pck"]["Total"] == 100
    assert r17.group_names[-1] == "Total" and "spine" in r17.group_names and "spine" not in r14.group_names
    assert r17.overall["mpjpe"] == r14.overall["mpjpe"] == pytest.approx(200 / 17)
    assert np.isnan(r17.per_activity["Sports"]["pck"]["Total"]) and r17.per_activity["Sports"]["n_frames"] == 0
    with pytest.raises(ValueError, match="joint groups"):
        evaluate_mpi_inf_3dhp(pred, gt, ["TS1"] * 3, [1, 2, 3], joint_groups="16")
    with pytest.raises(ValueError, match="activities"):
        evaluate_mpi_inf_3dhp(pred, gt, ["TS1"] * 3, [0, 2, 3])


def test_official_csv_layout(tmp_path):
    rng = np.random.default_rng(3)
    gt = rng.normal(0, 300, (60, 17, 3))
    seq = np.repeat([f"TS{k}" for k in range(1, 7)], 10)
    result = evaluate_mpi_inf_3dhp(gt + rng.normal(0, 50, gt.shape), gt, seq, np.arange(60) % 7 + 1,
                                   joint_groups="14")
    seq_csv, act_csv = result.write_official_csv(tmp_path)
    seq_rows = list(csv.reader(seq_csv.open()))
    act_rows = list(csv.reader(act_csv.open()))
    # header of MATLAB's default names, then 21 x 19 and 27 x 19 cells
    assert seq_rows[0] == [f"seq_table{i}" for i in range(1, 20)] and len(seq_rows) == 22
    assert act_rows[0][0] == "activity_table1" and len(act_rows) == 28
    cells, act = seq_rows[1:], act_rows[1:]
    assert cells[0][1:] == [*MPI_INF_3DHP.names, "Average"] and cells[1][0] == "TestSeq1"
    # 1-based positions used by scripts that read these tables: seq_table{8+i,10}, activity_table{18,10}, {27,10}
    for i in range(1, 7):
        assert float(cells[8 + i - 1][10 - 1]) == pytest.approx(result.per_sequence[f"TS{i}"]["pck"]["Total"])
        assert float(cells[15 + i - 1][10 - 1]) == pytest.approx(result.per_sequence[f"TS{i}"]["auc"]["Total"])
    assert cells[7][:10] == ["PCK", "Head", "Neck", "Shou", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total"]
    assert cells[7][10:] == [""] * 9
    assert float(act[18 - 1][10 - 1]) == pytest.approx(result.overall["pck"]["Total"])
    assert float(act[27 - 1][10 - 1]) == pytest.approx(result.overall["auc"]["Total"])
    assert act[8][0] == "All" and float(act[8][18]) == pytest.approx(result.overall["mpjpe"])


def test_mat_v73_writer_reads_back_with_h5py(tmp_path):
    path = tmp_path / "x.mat"
    a = np.arange(3 * 17 * 1 * 4, dtype=np.float64).reshape(3, 17, 1, 4)
    write_mat_v73(path, {"A": a, "v": np.array([1.0, 0.0, 1.0]), "b": np.array([[True, False]])})
    raw = path.read_bytes()
    assert raw.startswith(b"MATLAB 7.3 MAT-file") and raw[124:128] == b"\x00\x02IM"
    with h5py.File(path, "r") as f:
        assert f.userblock_size == 512
        assert f["A"].shape == (4, 1, 17, 3) and f["A"].attrs["MATLAB_class"] == b"double"
        assert f["A"][2, 0, 5, 1] == a[1, 5, 0, 2]  # axes reversed
        assert f["v"].shape == (3, 1) and f["b"].attrs["MATLAB_class"] == b"logical"
        assert f["b"].attrs["MATLAB_int_decode"] == 1 and f["b"].dtype == np.uint8
    with pytest.raises(ValueError, match="dtype"):
        write_mat_v73(tmp_path / "y.mat", {"s": np.array(["a"])})
    assert not (tmp_path / "y.mat").exists()
