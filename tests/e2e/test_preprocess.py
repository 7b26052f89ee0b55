"""End to end: ``synthesize_h36m`` -> ``preprocess_h36m`` recovers the ground truth, boxes and pixels.

Checks use independent means: OpenCV's own projection (``cv2.projectPoints`` with the thin-prism form of the
Human3.6M distortion), numpy loops, cv2.imread of the crops and the raw files read back with cdflib/h5py.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
from ctxpose.data.h36m.synthesize import synthesize_h36m
from ctxpose.data.h36m.synthetic_body import BONE_COLORS_BGR
from ctxpose.data.labels import load_labels
from ctxpose.geometry.distortion import opencv_coefficients
from ctxpose.skeleton import get_skeleton

SIZE = 400  # synthetic frame width, px
FRAMES = 8
CROP = 128
SEQS = ("S1/Walking-1", "S9/TakingPhoto-2")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    report = synthesize_h36m(root, subjects=["S1"], actions=["Walking-1"], n_frames=FRAMES, size=SIZE, seed=3)
    other = synthesize_h36m(root, subjects=["S9"], actions=["TakingPhoto-2"], n_frames=FRAMES, size=SIZE, seed=4)
    report.poses.update(other.poses)
    return root, report


@pytest.fixture(scope="module")
def processed(raw, tmp_path_factory):
    root, synth = raw
    out = tmp_path_factory.mktemp("processed")
    opts = PreprocessOptions(image_size=CROP, train_every=1, test_every=2)
    report = preprocess_h36m(root, out, opts)
    return out, report, synth


def _scaled_camera(root: Path, subject: str, name: str, cam: str):
    """The real camera with intrinsics scaled to the synthetic video's size (read from the video)."""
    video = root / metadata.raw_relpath("Videos", subject, metadata.sequence(subject, name).base_name, cam)
    cap = cv2.VideoCapture(str(video))
    hw = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    cap.release()
    camera = load_h36m_cameras()[(subject, cam)]
    return camera.resized(image_size(subject, cam), hw), hw


def _project_cv2(points_world: np.ndarray, camera) -> np.ndarray:
    """Reference distorted projection with OpenCV (thin-prism coefficients = the Human3.6M model)."""
    rvec, _ = cv2.Rodrigues(camera.R)
    coeffs = opencv_coefficients(camera.dist, camera.dist_model)
    uv, _ = cv2.projectPoints(points_world.reshape(-1, 1, 3), rvec, camera.t, camera.K, coeffs)
    return uv.reshape(-1, 2)


def _pinhole_loop(point_world, K, R, t) -> tuple[float, float]:
    cam = [sum(R[r][c] * point_world[c] for c in range(3)) + t[r] for r in range(3)]
    return (K[0][0] * cam[0] / cam[2] + K[0][1] * cam[1] / cam[2] + K[0][2], K[1][1] * cam[1] / cam[2] + K[1][2])


def test_keypoints_recovered_exactly_and_selection(processed):
    out, report, synth = processed
    assert report.ok, report.failed
    labels = load_labels(out / "labels.npz")
    skeleton = get_skeleton()
    for key in SEQS:
        subject, name = key.split("/")
        action, trial = name.rsplit("-", 1)
        rows = (labels.subject == subject) & (labels.action == action) & (labels.trial == int(trial))
        every = 1 if subject in metadata.train_subjects() else 2
        expected_frames = list(range(0, FRAMES, every))
        for cam in metadata.camera_ids():
            cam_rows = rows & (labels.camera == cam)
            assert labels.frame[cam_rows].tolist() == expected_frames
        truth = synth.poses[key].astype(np.float32).astype(np.float64)  # the CDFs store float32
        for i in np.flatnonzero(rows):
            want = [truth[labels.frame[i], j] for j in skeleton.h36m32_indices]
            np.testing.assert_array_equal(labels.keypoints_3d[i], np.array(want))
    assert labels.meta["selection"]["train_every"] == 1 and labels.meta["selection"]["test_every"] == 2
    assert len(labels) == 4 * (FRAMES + FRAMES // 2)


def test_boxes_are_square_and_contain_every_projected_joint(raw, processed):
    out, _, synth = processed
    labels = load_labels(out / "labels.npz")
    for i in range(len(labels)):
        key = f"{labels.subject[i]}/{labels.action[i]}-{labels.trial[i]}"
        camera, hw = _scaled_camera(raw[0], str(labels.subject[i]), key.split("/")[1], str(labels.camera[i]))
        uv = _project_cv2(synth.poses[key][labels.frame[i]], camera)  # all 32 joints, distorted frame
        left, top, right, bottom = labels.bbox[i]
        assert right - left == bottom - top > 0
        assert np.all((uv[:, 0] >= left) & (uv[:, 0] < right) & (uv[:, 1] >= top) & (uv[:, 1] < bottom))
        np.testing.assert_array_equal(labels.dist[i], np.zeros(5))


def test_projected_joints_land_on_rendered_limbs(processed):
    out, _, _ = processed
    labels = load_labels(out / "labels.npz")
    skeleton = get_skeleton()
    shades = [(np.array(c) * s, b) for b, c in enumerate(BONE_COLORS_BGR) for s in (1.0, 0.8, 0.55)]
    palette = np.array([p for p, _ in shades])
    owner = np.array([b for _, b in shades])
    on_limb, joints = 0, 0
    own_colour = np.zeros(skeleton.num_bones)
    for i in range(len(labels)):
        image = cv2.imread(str(out / labels.image[i])).astype(np.float64)
        assert image.shape == (CROP, CROP, 3)
        K, R, t = labels.K[i].tolist(), labels.R[i].tolist(), labels.t[i].tolist()
        kp = labels.keypoints_3d[i]
        for j in range(skeleton.num_joints):
            u, v = _pinhole_loop(kp[j], K, R, t)
            colour = image[int(round(v)), int(round(u))]
            on_limb += int(colour.max() - colour.min() > 60)  # limbs are saturated, the backdrop is grey
            joints += 1
        for b, (a, c) in enumerate(skeleton.bones):
            u, v = _pinhole_loop((kp[a] + kp[c]) / 2, K, R, t)
            colour = image[int(round(v)), int(round(u))]
            own_colour[b] += owner[np.argmin(((palette - colour) ** 2).sum(axis=1))] == b
    assert on_limb / joints >= 0.95, on_limb / joints
    own_colour /= len(labels)
    # shins, head: never hidden in a walk; all bones together: most midpoints show their own colour
    # (internal bones such as hip-pelvis are covered by the torso capsule by design)
    shins_and_head = [b for b, bone in enumerate(skeleton.bones) if bone in ((0, 1), (5, 4), (9, 16))]
    assert np.all(own_colour[shins_and_head] >= 0.85), own_colour
    assert own_colour.mean() >= 0.5, own_colour


def test_crop_is_one_undistorting_remap_of_the_video_frame(raw, tmp_path):
    """Crop pixels equal the video frame sampled where the H36M camera (WITH distortion) sees them."""
    root, _ = raw
    out = tmp_path / "p"
    report = preprocess_h36m(root, out, PreprocessOptions(image_size=96, jpeg_quality=100, subjects=("S1",),
                                                         cameras=("54138969",), train_every=4))
    assert report.ok
    labels = load_labels(out / "labels.npz")
    camera, _ = _scaled_camera(root, "S1", "Walking-1", "54138969")
    video = root / metadata.raw_relpath("Videos", "S1", metadata.sequence("S1", "Walking-1").base_name, "54138969")
    cap = cv2.VideoCapture(str(video))
    frames = [cap.read()[1] for _ in range(FRAMES)]
    errors = {"with distortion": [], "pinhole": []}
    for i in range(len(labels)):
        crop = cv2.imread(str(out / labels.image[i])).astype(np.float64)
        frame = frames[labels.frame[i]]
        Kinv = np.linalg.inv(labels.K[i])
        for v in range(4, 92, 9):
            for u in range(4, 92, 9):
                ray = Kinv @ np.array([u, v, 1.0])
                point_cam = ray * 5000.0
                point_world = camera.R.T @ (point_cam - camera.t)
                for name, cam in (("with distortion", camera), ("pinhole", camera.undistorted())):
                    su, sv = _project_cv2(point_world[None], cam)[0]
                    ref = cv2.getRectSubPix(frame, (1, 1), (float(su), float(sv))).reshape(3).astype(np.float64)
                    luma = np.array([0.114, 0.587, 0.299])  # JPEG subsamples chroma: compare luma (BGR)
                    errors[name].append(abs(float((ref - crop[v, u]) @ luma)))
    with_dist, pinhole = np.mean(errors["with distortion"]), np.mean(errors["pinhole"])
    assert with_dist < 1.5, with_dist  # bilinear sampling of the same frame; JPEG at quality 100
    assert pinhole > 3 * with_dist, (with_dist, pinhole)  # the check is sensitive to the distortion


def test_limb_length_file_over_training_subjects(processed):
    import h5py

    out, _, synth = processed
    skeleton = get_skeleton()
    with h5py.File(out / "mean_and_std_limb_length.h5", "r") as f:
        mean, std = f["mean"][()], f["std"][()]
    kp = skeleton.from_h36m32(synth.poses["S1/Walking-1"].astype(np.float32).astype(np.float64))
    lengths = [[np.linalg.norm(kp[f, a] - kp[f, b]) for a, b in skeleton.bones] for f in range(FRAMES)]
    np.testing.assert_allclose(mean, np.mean(lengths, axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, np.std(lengths, axis=0), rtol=1e-9, atol=1e-9)


def test_rerun_skips_and_adding_sequences_keeps_labels_consistent(raw, tmp_path):
    root, synth = raw
    out = tmp_path / "p"
    first = preprocess_h36m(root, out, PreprocessOptions(image_size=64, subjects=("S1",)))
    assert [r.key for r in first.done] == ["S1/Walking-1"]
    before = load_labels(out / "labels.npz")
    again = preprocess_h36m(root, out, PreprocessOptions(image_size=64, subjects=("S1",)))
    assert again.done == [] and again.skipped == ["S1/Walking-1"]
    np.testing.assert_array_equal(load_labels(out / "labels.npz").keypoints_3d, before.keypoints_3d)
    more = preprocess_h36m(root, out, PreprocessOptions(image_size=64))
    assert [r.key for r in more.done] == ["S9/TakingPhoto-2"] and more.skipped == ["S1/Walking-1"]
    merged = load_labels(out / "labels.npz")
    assert sorted(set(merged.subject.tolist())) == ["S1", "S9"]
    s1 = merged.select(merged.subject == "S1")
    np.testing.assert_array_equal(s1.keypoints_3d, before.keypoints_3d)
    assert all((out / p).is_file() for p in merged.image)
    with pytest.raises(Exception, match="other settings"):
        preprocess_h36m(root, out, PreprocessOptions(image_size=32))


def test_corrupt_video_fails_only_its_sequence(raw, tmp_path):
    root, _ = raw
    broken = tmp_path / "raw"
    shutil.copytree(root, broken)
    seq = metadata.sequence("S9", "TakingPhoto-2")
    video = broken / metadata.raw_relpath("Videos", "S9", seq.base_name, "58860488")
    video.write_bytes(b"\x00not an mp4" * 100)
    report = preprocess_h36m(broken, tmp_path / "p", PreprocessOptions(image_size=64))
    assert not report.ok
    assert list(report.failed) == ["S9/TakingPhoto-2"]
    assert "S9/Videos/Photo.58860488.mp4" in report.failed["S9/TakingPhoto-2"]  # S9 TakingPhoto-2 is 'Photo'
    assert [r.key for r in report.done] == ["S1/Walking-1"]
    assert set(load_labels(tmp_path / "p" / "labels.npz").subject.tolist()) == {"S1"}


def test_truncated_cdf_and_corrupt_mask_fail_loudly(raw, tmp_path):
    root, _ = raw
    broken = tmp_path / "raw"
    shutil.copytree(root, broken)
    cdf = broken / metadata.raw_relpath("D3_Positions", "S1", "Walking 1")
    data = cdf.read_bytes()
    cdf.write_bytes(data[: len(data) - 700])
    mask = broken / metadata.raw_relpath("ground_truth_bb", "S9", "Photo", "55011271")
    mask.write_bytes(b"garbage")
    report = preprocess_h36m(broken, tmp_path / "p", PreprocessOptions(image_size=64))
    assert "truncated" in report.failed["S1/Walking-1"] and "Walking 1.cdf" in report.failed["S1/Walking-1"]
    assert "ground_truth_bb/Photo.55011271.mat" in report.failed["S9/TakingPhoto-2"]


def test_dry_run_filters_and_pose_boxes(raw, tmp_path):
    root, _ = raw
    out = tmp_path / "p"
    dry = preprocess_h36m(root, out, PreprocessOptions(dry_run=True, subjects=("S9",)))
    assert [p["sequence"] for p in dry.planned] == ["S9/TakingPhoto-2"]  # the only S9 sequence present
    assert dry.planned[0]["cameras"] == metadata.camera_ids() and len(dry.absent) == 29
    assert not out.exists()
    report = preprocess_h36m(root, out, PreprocessOptions(image_size=64, actions=("TakingPhoto",),
                                                         cameras=("55011271",), bbox_source="poses"))
    assert [r.key for r in report.done] == ["S9/TakingPhoto-2"] and report.ok
    assert "S9/TakingPhoto-1" in report.absent and "S1/TakingPhoto-1" in report.absent  # not synthesized
    labels = load_labels(out / "labels.npz")
    assert set(labels.camera.tolist()) == {"55011271"} and labels.meta["bbox_sources_used"][
        "S9/TakingPhoto-2"] == {"55011271": "poses"}


def test_archives_input_and_malicious_member(tmp_path):
    raw_dir = tmp_path / "raw"
    synth = synthesize_h36m(raw_dir, subjects=["S1"], actions=["Walking-1"], n_frames=4, size=200, archives=True)
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(
        f"{k}_S1.tgz" for k in ("Poses_D2_Positions", "Poses_D3_Positions", "Poses_D3_Positions_mono",
                                "Poses_D3_Positions_mono_universal", "Segments_mat_gt_bb", "Videos"))
    report = preprocess_h36m(raw_dir, tmp_path / "p", PreprocessOptions(image_size=64, train_every=1))
    assert report.ok and [r.key for r in report.done] == ["S1/Walking-1"]
    labels = load_labels(tmp_path / "p" / "labels.npz")
    truth = get_skeleton().from_h36m32(synth.poses["S1/Walking-1"].astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(labels.keypoints_3d[labels.camera == "54138969"], truth)
    assert not (tmp_path / "p" / ".raw").exists()  # extracted members are cleaned up after success

    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    shutil.copy(raw_dir / "Poses_D3_Positions_S1.tgz", evil_dir)
    payload = tmp_path / "Walking 1.54138969.mp4"
    payload.write_bytes(b"x")
    with tarfile.open(evil_dir / "Videos_S1.tgz", "w:gz") as tar:
        tar.add(payload, arcname="../../Walking 1.54138969.mp4")
    report = preprocess_h36m(evil_dir, tmp_path / "q", PreprocessOptions(image_size=64))
    assert "path traversal" in report.failed["archive Videos_S1.tgz"]
    assert not (tmp_path / "q" / "Walking 1.54138969.mp4").exists()
    assert not any(p.name == "Walking 1.54138969.mp4" for p in (tmp_path / "q").rglob("*"))


def test_interrupted_run_leaves_no_partial_files(raw, tmp_path, monkeypatch):
    import ctxpose.data.h36m.process_sequence as ps

    root, _ = raw
    out = tmp_path / "p"
    preprocess_h36m(root, out, PreprocessOptions(image_size=64, subjects=("S1",)))
    before = load_labels(out / "labels.npz")
    calls = {"n": 0}
    real = ps.atomic_write_bytes

    def dying_write(path, data):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(ps, "atomic_write_bytes", dying_write)
    with pytest.raises(KeyboardInterrupt):
        preprocess_h36m(root, out, PreprocessOptions(image_size=64))
    monkeypatch.undo()
    after = load_labels(out / "labels.npz")  # still the complete labels of the first run
    np.testing.assert_array_equal(after.keypoints_3d, before.keypoints_3d)
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.is_file()]
    for jpg in out.rglob("*.jpg"):
        assert cv2.imread(str(jpg)) is not None
    done = preprocess_h36m(root, out, PreprocessOptions(image_size=64))
    assert [r.key for r in done.done] == ["S9/TakingPhoto-2"]
    assert Path(out / "manifest.json").is_file()


def test_parallel_workers_give_the_same_labels(raw, processed, tmp_path):
    root, _ = raw
    out_serial, _, _ = processed
    report = preprocess_h36m(root, tmp_path / "par", PreprocessOptions(image_size=CROP, train_every=1, test_every=2,
                                                                      workers=2))
    assert report.ok and sorted(r.key for r in report.done) == sorted(SEQS)
    serial, parallel = load_labels(out_serial / "labels.npz"), load_labels(tmp_path / "par" / "labels.npz")
    for name, column in serial.columns().items():
        np.testing.assert_array_equal(parallel.columns()[name], column, err_msg=name)
    for rel in serial.image[:8]:
        assert (tmp_path / "par" / rel).read_bytes() == (out_serial / rel).read_bytes()
