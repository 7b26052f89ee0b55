"""End to end on a synthetic MPI-INF-3DHP test set: synthesize -> preprocess -> dataset -> evaluate ->
export -> read back (h5py, GNU Octave).

Independent checks: the files are read with h5py (and Octave when installed), projections are redone with
``cv2.projectPoints``, crops are compared with the source images, and expected numbers are derived by hand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from ctxpose.data.h36m.synthetic_body import BONE_COLORS_BGR
from ctxpose.data.mpi_inf_3dhp import metadata
from ctxpose.data.mpi_inf_3dhp.cameras import load_3dhp_camera
from ctxpose.data.mpi_inf_3dhp.dataset import WORLD_TO_CAMERA, MPIInf3DHPDataset
from ctxpose.data.mpi_inf_3dhp.export import export_inference_data, read_predictions
from ctxpose.data.mpi_inf_3dhp.labels import load_3dhp_labels
from ctxpose.data.mpi_inf_3dhp.preprocess import Preprocess3DHPOptions, preprocess_3dhp
from ctxpose.data.mpi_inf_3dhp.synthesize import synthesize_3dhp
from ctxpose.errors import DataError, OutputError
from ctxpose.metrics.mpi_inf_3dhp import evaluate_dataset_predictions, evaluate_like_official, evaluate_mpi_inf_3dhp
from ctxpose.skeleton import CONTEXTPOSE_TO_3DHP, H36M_CONTEXTPOSE, MPI_INF_3DHP
from ctxpose.utils.matlab import write_mat_v73

SIZE, FRAMES, CROP = 256, 12, 64
DATA = Path(__file__).parents[1] / "data" / "mpi_inf_3dhp"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthesize_3dhp(tmp_path_factory.mktemp("3dhp"), n_frames=FRAMES, size=SIZE, seed=1)


@pytest.fixture(scope="module")
def processed(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("processed")
    report = preprocess_3dhp(synth.test_set.parent, out, Preprocess3DHPOptions(image_size=CROP))
    return out, report


def _predictions(tmp_path: Path, ds: MPIInf3DHPDataset, keypoints: np.ndarray) -> Path:
    """A predictions.npz as ``ctxpose eval`` writes it (ids + names), with the given camera-frame poses."""
    ids = ds.sample_ids()
    path = tmp_path / "predictions.npz"
    np.savez(path, index=np.arange(len(ds)), keypoints_3d=keypoints.astype(np.float32), **ids,
             subject_names=np.array(ds.subject_names), action_names=np.array(ds.action_names))
    return path


def test_synthetic_files_are_matlab_v73_in_the_release_layout(synth):
    assert sorted(p.name for p in synth.test_set.iterdir()) == list(metadata.SEQUENCES)
    for seq in metadata.SEQUENCES:
        path = synth.test_set / seq / "annot_data.mat"
        assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
        with h5py.File(path, "r") as f:
            assert f.userblock_size == 512
            assert sorted(f) == ["activity_annotation", "annot2", "annot3", "bb_crop", "univ_annot3", "valid_frame"]
            assert all(f[k].attrs["MATLAB_class"] == b"double" for k in f)
            assert f["annot2"].shape == (FRAMES, 1, 17, 2) and f["annot3"].shape == (FRAMES, 1, 17, 3)
            assert f["univ_annot3"].shape == (FRAMES, 1, 17, 3) and f["bb_crop"].shape == (FRAMES, 34)
            assert f["valid_frame"].shape == f["activity_annotation"].shape == (FRAMES, 1)
            annot3, annot2 = f["annot3"][:, 0], f["annot2"][:, 0]
            valid = f["valid_frame"][:, 0] == 1
            activity = f["activity_annotation"][:, 0]
        assert valid.tolist() == [i % 5 != 2 for i in range(FRAMES)]
        assert sorted(set(activity[valid].astype(int))) == list(range(1, 8))
        cam = load_3dhp_camera(seq, cv2.imread(str(synth.test_set / seq / "imageSequence/img_000001.jpg")).shape[:2])
        uv, _ = cv2.projectPoints(annot3[valid].reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.K, cam.dist)
        np.testing.assert_allclose(annot2[valid].reshape(-1, 2), uv.reshape(-1, 2), atol=1e-9)
        assert len(list((synth.test_set / seq / "imageSequence").glob("img_*.jpg"))) == FRAMES
    h, w = cv2.imread(str(synth.test_set / "TS5/imageSequence/img_000012.jpg")).shape[:2]
    assert (w, h) == (SIZE, 144)  # 1920x1080 scaled to 256 wide


def test_preprocess_keeps_valid_frames_with_both_joint_orders(synth, processed):
    out, report = processed
    assert report.ok, report.failed
    cols, meta = load_3dhp_labels(out / "labels.npz")
    assert meta["sequences"] == list(metadata.SEQUENCES) and len(cols["frame"]) == 6 * 10
    for seq in metadata.SEQUENCES:
        ann = synth.annotations[seq]
        rows = np.flatnonzero(cols["sequence"] == seq)
        frames = cols["frame"][rows]
        assert frames.tolist() == np.flatnonzero(ann.valid).tolist() and cols["valid"][rows].all()
        np.testing.assert_array_equal(cols["annot3"][rows], ann.annot3[frames])
        np.testing.assert_array_equal(cols["univ_annot3"][rows], ann.univ_annot3[frames])
        np.testing.assert_array_equal(cols["activity"][rows], ann.activity[frames])
        for k, name in enumerate(MPI_INF_3DHP.names):  # our order, joint by joint through the H36M source joint
            ours = H36M_CONTEXTPOSE.h36m32_indices.index(MPI_INF_3DHP.h36m32_indices[k])
            np.testing.assert_array_equal(cols["keypoints_3d"][rows][:, ours], ann.annot3[frames][:, k], name)
        for i in rows:  # square boxes around all 2D joints
            left, top, right, bottom = cols["bbox"][i]
            uv = cols["annot2"][i]
            assert right - left == pytest.approx(bottom - top, rel=1e-6)
            assert (uv[:, 0] > left).all() and (uv[:, 0] < right).all() and (uv[:, 1] > top).all()
        assert report.done[metadata.SEQUENCES.index(seq)].residual_px["max"] < 1e-6
        assert meta["projection_residual_px"][seq]["max"] < 1e-6
        assert cols["image"][rows[0]] == f"images/{seq}/img_{frames[0] + 1:06d}.jpg"


def test_crops_show_the_body_where_the_crop_camera_projects_it(processed):
    out, _ = processed
    cols, _ = load_3dhp_labels(out / "labels.npz")
    palette = np.array([np.array(c) * s for c in BONE_COLORS_BGR for s in (1.0, 0.8, 0.55)])
    hits = total = 0
    for i in range(len(cols["frame"])):
        image = cv2.imread(str(out / cols["image"][i])).astype(np.float64)
        assert image.shape == (CROP, CROP, 3)
        uvw = cols["keypoints_3d"][i] @ cols["K"][i].T
        for u, v in uvw[:, :2] / uvw[:, 2:]:
            colour = image[int(round(v)), int(round(u))]
            hits += int(np.min(((palette - colour) ** 2).sum(axis=1)) < 60**2 or colour.max() - colour.min() > 60)
            total += 1
    assert hits / total >= 0.9, hits / total


def test_ts5_crop_is_one_undistorting_remap_of_the_image(synth, tmp_path):
    out = tmp_path / "p"
    assert preprocess_3dhp(synth.test_set, out, Preprocess3DHPOptions(image_size=96, jpeg_quality=100,
                                                                       sequences=("TS5",))).ok
    cols, _ = load_3dhp_labels(out / "labels.npz")
    errors = {"distorted": [], "pinhole": []}
    for i in range(0, len(cols["frame"]), 3):
        crop = cv2.imread(str(out / cols["image"][i])).astype(np.float64)
        frame = cv2.imread(str(synth.test_set / metadata.image_relpath("TS5", int(cols["frame"][i]))))
        cam = load_3dhp_camera("TS5", frame.shape[:2])
        rays = np.array([[u, v, 1.0] for v in range(4, 92, 11) for u in range(4, 92, 11)]) @ np.linalg.inv(
            cols["K"][i]).T
        for name, dist in (("distorted", cam.dist), ("pinhole", np.zeros(5))):
            src, _ = cv2.projectPoints(rays[:, None] * 4000.0, np.zeros(3), np.zeros(3), cam.K, dist)
            for (su, sv), (u, v) in zip(src.reshape(-1, 2), [(u, v) for v in range(4, 92, 11)
                                                             for u in range(4, 92, 11)], strict=True):
                ref = cv2.getRectSubPix(frame, (1, 1), (float(su), float(sv))).reshape(3).astype(np.float64)
                errors[name].append(abs(float((ref - crop[v, u]) @ [0.114, 0.587, 0.299])))
    assert np.mean(errors["distorted"]) < 2.5, np.mean(errors["distorted"])
    assert np.mean(errors["pinhole"]) > 2 * np.mean(errors["distorted"]), errors


def test_residual_reveals_a_wrong_camera(synth, tmp_path):
    broken = tmp_path / "ts"
    shutil.copytree(synth.test_set / "TS3", broken / "TS3")
    path = broken / "TS3" / "annot_data.mat"
    with h5py.File(path, "r+") as f:
        f["annot2"][...] = f["annot2"][()] + np.array([3.0, -4.0])  # 5 px off
    report = preprocess_3dhp(broken, tmp_path / "p", Preprocess3DHPOptions(image_size=32))
    assert report.done[0].residual_px["median"] == pytest.approx(5.0, abs=1e-6)


def test_resume_failures_and_settings(synth, tmp_path):
    root = tmp_path / "ts"
    shutil.copytree(synth.test_set, root)
    (root / "TS2" / "annot_data.mat").write_bytes(b"not hdf5")
    (root / "TS4" / "imageSequence" / "img_000004.jpg").unlink()
    out = tmp_path / "p"
    first = preprocess_3dhp(root, out, Preprocess3DHPOptions(image_size=32, sequences=("TS1", "TS2", "TS4")))
    assert [r.key for r in first.done] == ["TS1"] and sorted(first.failed) == ["TS2", "TS4"]
    assert "TS2/annot_data.mat" in first.failed["TS2"] and "HDF5" in first.failed["TS2"]
    assert "TS4/imageSequence/img_000004.jpg" in first.failed["TS4"]
    again = preprocess_3dhp(root, out, Preprocess3DHPOptions(image_size=32, sequences=("TS1", "TS3")))
    assert again.skipped == ["TS1"] and [r.key for r in again.done] == ["TS3"]
    cols, _ = load_3dhp_labels(out / "labels.npz")
    assert sorted(set(cols["sequence"].tolist())) == ["TS1", "TS3"]
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(DataError, match="other settings"):
        preprocess_3dhp(root, out, Preprocess3DHPOptions(image_size=48))
    with pytest.raises(DataError, match="annot_data.mat"):
        preprocess_3dhp(tmp_path / "nothing", tmp_path / "q")
    dry = preprocess_3dhp(root, tmp_path / "dry", Preprocess3DHPOptions(dry_run=True, all_frames=True))
    assert dry.planned[0] == {"sequence": "TS1", "cameras": ["cam_8"], "frames": FRAMES, "crops": FRAMES}
    assert not (tmp_path / "dry").exists()


def _stamps(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of every file but the report."""
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "preprocess_report.json"}


def test_rerun_with_nothing_to_do_leaves_every_output_untouched(synth, tmp_path):
    out = tmp_path / "p"
    opts = Preprocess3DHPOptions(image_size=32, sequences=("TS1", "TS6"))
    first = preprocess_3dhp(synth.test_set, out, opts)
    before, report_before = _stamps(out), (out / "preprocess_report.json").stat().st_mtime_ns
    assert {"labels.npz", "manifest.json", "parts/TS1.npz", "parts/TS6.npz"} <= set(before)
    time.sleep(0.02)
    again = preprocess_3dhp(synth.test_set, out, opts)
    assert again.done == [] and again.skipped == ["TS1", "TS6"] and again.ok
    assert _stamps(out) == before  # same files, not rewritten (an atomic rewrite gives a new inode)
    assert (out / "preprocess_report.json").stat().st_mtime_ns > report_before  # only the report is new
    assert again.labels_path == out / "labels.npz" and again.rows == first.rows == 20
    written = json.loads((out / "preprocess_report.json").read_text())
    assert written["skipped"] == ["TS1", "TS6"] and written["done"] == [] and written["rows"] == 20
    kept, _ = load_3dhp_labels(out / "labels.npz")  # labels that went missing are rebuilt from the shards
    (out / "labels.npz").unlink()
    preprocess_3dhp(synth.test_set, out, opts)
    for name, column in load_3dhp_labels(out / "labels.npz")[0].items():
        np.testing.assert_array_equal(column, kept[name], err_msg=name)


def test_a_bug_keeps_its_traceback_and_what_finished_is_kept(synth, tmp_path, monkeypatch):
    import ctxpose.data.mpi_inf_3dhp.preprocess as prep

    real = prep.square_boxes

    calls: list[int] = []

    def buggy(points, margin):  # the first sequence (TS1) gets its boxes, the next one meets a bug
        calls.append(len(points))
        if len(calls) == 1:
            return real(points, margin)
        raise TypeError("a bug in the box code")

    monkeypatch.setattr(prep, "square_boxes", buggy)
    out = tmp_path / "p"
    with pytest.raises(TypeError, match="a bug in the box code"):  # not turned into a "failed" line
        preprocess_3dhp(synth.test_set, out, Preprocess3DHPOptions(image_size=32, sequences=("TS1", "TS2")))
    assert sorted(json.loads((out / "manifest.json").read_text())["sequences"]) == ["TS1"]
    assert load_3dhp_labels(out / "labels.npz")[1]["sequences"] == ["TS1"]
    assert [d["key"] for d in json.loads((out / "preprocess_report.json").read_text())["done"]] == ["TS1"]


def test_an_output_that_cannot_be_written_is_one_line_and_bad_workers_are_refused(synth, tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "images").write_bytes(b"a file where the crops' folder goes")
    with pytest.raises(OutputError, match=r"^\S*images/TS1/img_000001\.jpg: cannot write \(Not a directory\)$"):
        preprocess_3dhp(synth.test_set, out, Preprocess3DHPOptions(image_size=32, sequences=("TS1",)))
    with pytest.raises(DataError, match="--workers 0: expected at least 1 process"):
        preprocess_3dhp(synth.test_set, tmp_path / "q", Preprocess3DHPOptions(workers=0))
    assert not (tmp_path / "q").exists()


def test_all_frames_are_flagged_and_the_dataset_skips_invalid_ones(synth, tmp_path):
    out = tmp_path / "p"
    assert preprocess_3dhp(synth.test_set, out, Preprocess3DHPOptions(image_size=32, all_frames=True,
                                                                       sequences=("TS6",))).ok
    cols, _ = load_3dhp_labels(out / "labels.npz")
    assert len(cols["frame"]) == FRAMES and (~cols["valid"]).sum() == 2
    assert len(MPIInf3DHPDataset(out)) == 10 and len(MPIInf3DHPDataset(out, include_invalid=True)) == FRAMES


def test_dataset_items_have_the_human36m_schema(processed, tmp_path):
    from ctxpose.data.datasets import Human36MDataset
    from tests.unit import dataset_fixtures as F

    out, _ = processed
    ds = MPIInf3DHPDataset(out, image_shape=(64, 64))
    h36m = Human36MDataset(F.write_ctxpose_folder(tmp_path / "h36m"), "val", image_shape=(64, 64))[0]
    item = ds[13]
    assert set(item) == set(h36m)
    for key, value in h36m.items():
        assert (np.shape(item[key]), np.asarray(item[key]).dtype) == (np.shape(value), np.asarray(value).dtype), key
    seq, frame = ds.sequence[13], int(item["frame"])
    assert ds.subject_names[item["subject_idx"]] == seq and item["subject_idx"] == int(seq[2:]) - 1
    np.testing.assert_array_equal(item["R"][0], WORLD_TO_CAMERA)
    np.testing.assert_array_equal(item["t"][0], np.zeros(3))
    np.testing.assert_allclose(item["root"], item["keypoints_3d"][H36M_CONTEXTPOSE.root])
    cols, _ = load_3dhp_labels(out / "labels.npz")
    row = np.flatnonzero((cols["sequence"] == seq) & (cols["frame"] == frame))[0]
    # the world is the camera frame turned upright: x_cam = R x_world, and z points up (head above the ankles)
    np.testing.assert_allclose(item["keypoints_3d"] @ WORLD_TO_CAMERA.T, cols["keypoints_3d"][row], atol=1e-3)
    names = H36M_CONTEXTPOSE.names
    assert item["keypoints_3d"][names.index("head"), 2] > item["keypoints_3d"][names.index("left_ankle"), 2] + 1000
    assert ds.action_names[item["action_idx"]] == metadata.ACTIVITIES[cols["activity"][row] - 1]
    uvw = item["proj_matrices"][0] @ np.append(item["keypoints_3d"][0], 1.0)  # a joint lands where K puts it
    np.testing.assert_allclose(uvw[:2] / uvw[2], (cols["K"][row] @ cols["keypoints_3d"][row][0])[:2]
                               / cols["keypoints_3d"][row][0][2], rtol=1e-4)
    assert ds.camera_names[item["camera_idx"]] == ("GOPR0046" if seq in ("TS5", "TS6") else "cam_8")


def test_root_estimates_from_predictions(processed, tmp_path):
    out, _ = processed
    ds = MPIInf3DHPDataset(out)
    guess = ds.ground_truth("annot3_nonstandard") + np.array([5.0, -3.0, 40.0])
    path = _predictions(tmp_path, ds, guess)
    with_roots = MPIInf3DHPDataset(out, root_estimates=path)  # camera-frame file -> the samples' world
    np.testing.assert_allclose(with_roots[7]["root"] @ WORLD_TO_CAMERA.T, guess[7, H36M_CONTEXTPOSE.root], atol=1e-3)
    assert with_roots.root_source == str(path) and ds.root_source == "annot3"
    with pytest.raises(DataError, match="samples"):  # no names: matched by index, so only on its own dataset
        MPIInf3DHPDataset(out, sequences=("TS1",), root_estimates=path)
    # with the camera names too (as `ctxpose eval` writes it) it is matched by key: rows shuffled, any subset
    order = np.random.default_rng(0).permutation(len(ds))
    with np.load(path) as z:
        keyed = {k: (z[k][order] if z[k].ndim and len(z[k]) == len(ds) else z[k]) for k in z.files}
    np.savez(tmp_path / "keyed.npz", **keyed, camera_names=np.array(ds.camera_names))
    ts1 = MPIInf3DHPDataset(out, sequences=("TS1",), root_estimates=tmp_path / "keyed.npz")
    assert 0 < len(ts1) < len(ds)
    for i in (0, len(ts1) - 1):  # TS1 comes first in the full dataset's order
        np.testing.assert_allclose(ts1[i]["root"] @ WORLD_TO_CAMERA.T, guess[i, H36M_CONTEXTPOSE.root], atol=1e-3)


def test_evaluator_runs_unchanged_and_its_output_exports(processed, tmp_path):
    from ctxpose.engine.evaluator import evaluate, save_eval
    from tests.unit.engine_standins import StandinModel

    out, _ = processed
    ds = MPIInf3DHPDataset(out)
    torch.manual_seed(0)
    result = evaluate(StandinModel(), ds, "cpu", batch_size=8)
    assert len(result.arrays["index"]) == len(ds) and np.isfinite(result.metrics["mpjpe"])
    # the arrays are back in the camera frame, where the annotations and the export live
    np.testing.assert_allclose(result.arrays["keypoints_3d_gt"], ds.ground_truth("annot3_nonstandard"), atol=1e-3)
    uvw = np.einsum("nij,nkj->nki", result.arrays["proj_matrices"].astype(np.float64),
                    np.concatenate([result.arrays["keypoints_3d_gt"], np.ones((len(ds), 17, 1))], -1))
    item = ds[3]
    ref = item["proj_matrices"][0] @ np.append(item["keypoints_3d"][5], 1.0)
    np.testing.assert_allclose(uvw[3, 5, :2] / uvw[3, 5, 2], ref[:2] / ref[2], atol=1e-2)
    assert result.extra["root_source"] == "annot3"
    assert result.extra["mpi_inf_3dhp"].overall["mpjpe"] == pytest.approx(
        evaluate_dataset_predictions(ds, result.arrays["index"], result.arrays["keypoints_3d"]).overall["mpjpe"])
    _, pred_path = save_eval(result, tmp_path)
    report = export_inference_data(pred_path, tmp_path / "inference_data.mat", out / "labels.npz")
    assert report.frames == {s: 10 for s in metadata.SEQUENCES} and report.missing == []
    official = evaluate_like_official(read_predictions(pred_path), out / "labels.npz")
    direct = evaluate_dataset_predictions(ds, result.arrays["index"], result.arrays["keypoints_3d"])
    assert official.overall["mpjpe"] == pytest.approx(direct.overall["mpjpe"], rel=1e-5)
    assert official.overall["auc"]["Total"] == pytest.approx(direct.overall["auc"]["Total"], abs=1e-6)
    assert list(direct.per_sequence) == list(metadata.SEQUENCES) and direct.overall["n_frames"] == len(ds)
    with pytest.raises(DataError, match="outside"):
        evaluate_dataset_predictions(ds, np.array([len(ds)]), np.zeros((1, 17, 3)))


def test_tiny_initial_model_evaluates_on_3dhp(processed):
    from ctxpose.config import load_config
    from ctxpose.engine.evaluator import evaluate
    from ctxpose.models.build import build_model
    from ctxpose.skeleton import LimbPrior

    out, _ = processed
    cfg = load_config(Path(__file__).parents[2] / "configs" / "tiny_cpu.yaml")
    torch.manual_seed(0)
    model = build_model(cfg, LimbPrior(torch.full((16,), 250.0), torch.full((16,), 20.0)))
    ds = MPIInf3DHPDataset(out, image_shape=tuple(cfg.model.image_shape), sequences=("TS1", "TS5"))
    result = evaluate(model, ds, "cpu", batch_size=4)
    kp = result.arrays["keypoints_3d"]
    roots = ds.ground_truth("annot3_nonstandard")[:, H36M_CONTEXTPOSE.root]
    assert kp.shape == (20, 17, 3) and np.all(np.abs(kp - roots[:, None]) <= cfg.model.volume_net.cuboid_size / 2 + 1)


@pytest.mark.parametrize("joint_groups", ["17", "14"])
def test_exact_and_shifted_predictions_on_the_synthetic_test_set(processed, tmp_path, joint_groups):
    out, _ = processed
    ds = MPIInf3DHPDataset(out)
    gt = ds.ground_truth("univ_annot3")
    seq, act = ds.sequence, ds.activity
    exact = evaluate_like_official(read_predictions(_predictions(tmp_path, ds, gt.astype(np.float64))),
                                   out / "labels.npz", joint_groups).overall
    assert (exact["pck"]["Total"], round(exact["auc"]["Total"], 2), round(exact["mpjpe"], 6)) == (100.0, 96.77, 0.0)
    rel = gt - gt[:, [H36M_CONTEXTPOSE.root]]  # on the synthetic 1/64 mm grid: shifts are exact
    for shift, want in ((100, (100.0, 32.26, 100.0)), (151, (0.0, 0.0, 151.0))):
        o = evaluate_mpi_inf_3dhp(rel + [shift, 0, 0], gt, seq, act, joint_groups=joint_groups,
                                  pred_root_relative=True).overall
        assert (o["pck"]["Total"], round(o["auc"]["Total"], 2), o["mpjpe"]) == want


def test_export_is_3x17x1xN_root_relative_in_3dhp_order(processed, tmp_path):
    out, _ = processed
    ds = MPIInf3DHPDataset(out)
    pred = ds.ground_truth("annot3_nonstandard") + np.arange(17)[None, :, None] * [1.0, 10.0, 100.0]
    path = _predictions(tmp_path, ds, pred)
    export_inference_data(path, tmp_path / "inference_data.mat", out / "labels.npz")
    stored = pred.astype(np.float32).astype(np.float64)
    with h5py.File(tmp_path / "inference_data.mat", "r") as f:
        assert f.userblock_size == 512 and sorted(f) == list(metadata.SEQUENCES)
        for seq in metadata.SEQUENCES:
            rows = np.flatnonzero(ds.sequence == seq)
            data = f[seq][()]
            assert data.shape == (len(rows), 1, 17, 3) and data.dtype == np.float64  # MATLAB 3x17x1xN
            assert f[seq].attrs["MATLAB_class"] == b"double"
            for k, name in enumerate(MPI_INF_3DHP.names):
                j = H36M_CONTEXTPOSE.h36m32_indices.index(MPI_INF_3DHP.h36m32_indices[k])
                want = stored[rows, j] - stored[rows, H36M_CONTEXTPOSE.root]
                np.testing.assert_allclose(data[:, 0, k, :], want, atol=1e-9, err_msg=name)
            assert np.all(data[:, 0, MPI_INF_3DHP.root] == 0)


def test_export_refuses_incomplete_or_foreign_predictions(processed, tmp_path):
    out, _ = processed
    ds = MPIInf3DHPDataset(out)
    ids = ds.sample_ids()
    kp = ds.ground_truth()
    np.savez(tmp_path / "short.npz", keypoints_3d=kp[1:], frame=ids["frame"][1:], sequence=ds.sequence[1:])
    with pytest.raises(DataError, match="TS1 has 10 valid frames, the predictions 9"):
        export_inference_data(tmp_path / "short.npz", tmp_path / "x.mat", out / "labels.npz")
    assert not (tmp_path / "x.mat").exists()
    np.savez(tmp_path / "h36m.npz", keypoints_3d=kp, frame=ids["frame"], subject_idx=np.zeros(len(kp), int),
             subject_names=np.array(["S9"]))
    with pytest.raises(DataError, match="not MPI-INF-3DHP test sequences"):
        export_inference_data(tmp_path / "h36m.npz", tmp_path / "x.mat")
    np.savez(tmp_path / "ts1.npz", keypoints_3d=kp[:10], frame=ids["frame"][:10], sequence=ds.sequence[:10])
    assert export_inference_data(tmp_path / "ts1.npz", tmp_path / "x.mat").missing == list(metadata.SEQUENCES[1:])


def _octave(mat: Path, test_set: Path) -> dict[str, list[str]]:
    script = f"addpath('{DATA}'); official_style_eval('{mat}', '{test_set}');"
    run = subprocess.run(["octave-cli", "--quiet", "--no-window-system", "--eval", script], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = {}
    for line in run.stdout.splitlines():
        key, *rest = line.split()
        lines.setdefault(key, []).append(rest)
    return lines


@pytest.mark.skipif(shutil.which("octave-cli") is None, reason="GNU Octave is not installed")
def test_octave_loads_the_export_like_the_official_script(synth, processed, tmp_path):
    out, _ = processed
    ds = MPIInf3DHPDataset(out)
    gt = ds.ground_truth("univ_annot3")
    shifted = gt.copy()
    shifted[:, [j for j in range(17) if j != H36M_CONTEXTPOSE.root]] += [100.0, 0.0, 0.0]  # pelvis kept
    for name, pred in (("exact", gt), ("shift", shifted)):
        path = _predictions(tmp_path, ds, pred)  # float32 holds the 1/64 mm grid exactly
        mat = tmp_path / f"{name}.mat"
        export_inference_data(path, mat, out / "labels.npz")
        got = _octave(mat, synth.test_set)
        assert got["size"] == [[s, "3", "17", "1", "10"] for s in metadata.SEQUENCES]
        assert got["class"][0] == ["TS1", "double"] and got["frames"] == [["60"]]
        python = {g: evaluate_like_official(read_predictions(path), out / "labels.npz", g).overall
                  for g in ("17", "14")}
        for g in ("17", "14"):
            pck, auc = (float(v) for v in (dict(got["pck"])[g], dict(got["auc"])[g]))
            assert pck == pytest.approx(python[g]["pck"]["Total"], abs=1e-8)
            assert auc == pytest.approx(python[g]["auc"]["Total"], abs=1e-8)
        mpjpe = float(got["mpjpe"][0][0])
        assert mpjpe == pytest.approx(python["17"]["mpjpe"], abs=1e-8)
        if name == "exact":
            assert (pck, round(auc, 2), round(mpjpe, 6)) == (100.0, 96.77, 0.0)
        else:  # 16 joints 100 mm off, the pelvis exact: by hand
            assert mpjpe == pytest.approx(1600 / 17, abs=1e-6)
            assert float(dict(got["auc"])["17"]) == pytest.approx(100 * (16 * 10 + 30) / (17 * 31), abs=1e-6)
            assert float(dict(got["auc"])["14"]) == pytest.approx(100 * 10 / 31, abs=1e-6)  # no pelvis in 14
    # a prediction that was not made root-relative is metres off in the official computation
    raw = tmp_path / "raw.mat"
    absolute = {s: np.transpose(gt[ds.sequence == s][:, list(CONTEXTPOSE_TO_3DHP)], (2, 1, 0))[:, :, None, :]
                for s in metadata.SEQUENCES}
    write_mat_v73(raw, absolute)
    assert float(dict(_octave(raw, synth.test_set)["pck"])["17"]) < 5


@pytest.mark.slow
def test_ctxpose_eval_on_3dhp_writes_the_official_tables(processed, tmp_path):
    """`ctxpose eval CONFIG --checkpoint W --dataset 3dhp --data OUT`: every valid frame, files read back."""
    import csv
    import json

    import h5py as _h5py
    from typer.testing import CliRunner

    from ctxpose.cli.app import app
    from ctxpose.config import load_config
    from ctxpose.engine.trainer import initial_model

    out, _ = processed
    limbs = tmp_path / "limbs.h5"
    with _h5py.File(limbs, "w") as f:
        f["mean"], f["std"] = np.full(16, 250.0), np.full(16, 20.0)
    sets = [f"dataset.limb_length_path={limbs}", "model.image_shape=[64,64]"]
    weights = tmp_path / "w.pt"
    torch.save(initial_model(load_config("tiny_cpu", sets)).state_dict(), weights)
    args = ["eval", "tiny_cpu", "--checkpoint", str(weights), "--device", "cpu", "--dataset", "3dhp", "--data",
            str(out), "--joint-groups", "14", "--out", str(tmp_path / "ev"), *[x for s in sets for x in ("--set", s)]]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "joint groups 14" in r.output and "TS6" in r.output
    payload = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert payload["root_source"] == "annot3" and payload["mpi_inf_3dhp"]["joint_groups"] == "14"
    assert "pck_3dhp" not in payload["overall"] and "auc_3dhp" not in payload["overall"]  # one PCK: the official
    pred = np.load(tmp_path / "ev" / "predictions.npz")
    ds = MPIInf3DHPDataset(out)
    np.testing.assert_array_equal(pred["index"], np.arange(len(ds)))  # every valid frame once
    direct = evaluate_dataset_predictions(ds, pred["index"], pred["keypoints_3d"], "14")
    assert payload["mpi_inf_3dhp"]["overall"]["pck"]["Total"] == pytest.approx(direct.overall["pck"]["Total"])
    rows = list(csv.reader(open(tmp_path / "ev" / "mpii_3dhp_evaluation_sequencewise.csv")))
    assert len(rows) > 6
    report = export_inference_data(tmp_path / "ev" / "predictions.npz", tmp_path / "i.mat", out / "labels.npz")
    assert report.missing == []
    r = CliRunner().invoke(app, ["eval", "tiny_cpu", "--checkpoint", str(weights), "--dataset", "3dhp"])
    assert r.exit_code != 0 and "needs --data" in str(r.exception)
    r = CliRunner().invoke(app, ["eval", "tiny_cpu", "--checkpoint", str(weights), "--joint-groups", "14"])
    assert r.exit_code != 0 and "only with --dataset 3dhp" in str(r.exception)


def test_visualize_dataset_reads_the_processed_3dhp_layout(processed, synth, tmp_path):
    """The 3DHP layout: crops through the crop camera, raw frames through the real (distorted) camera."""
    from ctxpose.viz import dataset as vd
    from ctxpose.viz.output import ImageSink
    from ctxpose.viz.style import Style

    out, _ = processed
    layout, table = vd.open_processed(out)
    cols, _ = load_3dhp_labels(out / "labels.npz")
    assert layout.name == "ctxpose-3dhp" and len(table) == len(cols["frame"])
    uvw = np.einsum("nij,nkj->nki", table.proj, np.concatenate([table.keypoints_3d, np.ones((len(table), 17, 1))], -1))
    ref = np.einsum("nij,nkj->nki", cols["K"], cols["keypoints_3d"])  # pinhole of the undistorted crop, by hand
    np.testing.assert_allclose(uvw[..., :2] / uvw[..., 2:], ref[..., :2] / ref[..., 2:], atol=1e-6)
    rows = np.flatnonzero(table.subject == "TS5")[:2]
    for r, frame, uv, _ in layout.raw_frames(synth.test_set.parent, table, rows):
        cam = load_3dhp_camera("TS5", frame.shape[:2])
        expected, _ = cv2.projectPoints(cols["annot3"][r], np.zeros(3), np.zeros(3), cam.K, cam.dist)
        np.testing.assert_allclose(uv[list(CONTEXTPOSE_TO_3DHP)], expected[:, 0], atol=1e-3)
    with ImageSink(tmp_path / "viz") as sink:
        report = vd.visualize_dataset(out, sink, subject="TS1", raw=synth.test_set.parent, style=Style(size=128))
    assert len(report.rows) == int((table.subject == "TS1").sum())
    assert (tmp_path / "viz" / "contact_sheet.png").is_file()
