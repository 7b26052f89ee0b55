"""End to end: ``synthesize_h36m`` -> ``preprocess_h36m`` recovers the ground truth, boxes and pixels.

Checks use independent means: OpenCV's own projection (``cv2.projectPoints`` with the thin-prism form of the
Human3.6M distortion), numpy loops, cv2.imread of the crops and the raw files read back with cdflib/h5py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
from ctxpose.data.h36m.synthesize import MARKER, synthesize_h36m
from ctxpose.data.h36m.synthetic_body import BONE_COLORS_BGR
from ctxpose.data.labels import load_labels
from ctxpose.errors import DataError, Stopped
from ctxpose.geometry.distortion import opencv_coefficients
from ctxpose.skeleton import SKELETONS, Skeleton, get_skeleton

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
    skeleton = get_skeleton("contextpose17")
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
    skeleton = get_skeleton("contextpose17")
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
    skeleton = get_skeleton("contextpose17")
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


def _stamps(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of every file but the report."""
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "preprocess_report.json"}


def test_rerun_with_nothing_to_do_leaves_every_output_untouched(raw, tmp_path):
    root, _ = raw
    out = tmp_path / "p"
    opts = PreprocessOptions(image_size=32, cameras=("54138969",))
    first = preprocess_h36m(root, out, opts)
    before, report_before = _stamps(out), (out / "preprocess_report.json").stat().st_mtime_ns
    assert {"labels.npz", "manifest.json", "mean_and_std_limb_length.h5"} <= set(before)
    time.sleep(0.02)
    again = preprocess_h36m(root, out, opts)
    assert again.done == [] and sorted(again.skipped) == sorted(SEQS) and again.ok
    assert _stamps(out) == before  # same files, not rewritten (an atomic rewrite gives a new inode)
    assert (out / "preprocess_report.json").stat().st_mtime_ns > report_before  # only the report is new
    assert again.labels_path == out / "labels.npz" and again.rows == first.rows
    written = json.loads((out / "preprocess_report.json").read_text())
    assert written["skipped"] == again.skipped and written["done"] == [] and written["rows"] == first.rows

    # a folder whose labels went missing (a crash between the manifest and the labels) is repaired
    kept = load_labels(out / "labels.npz")
    (out / "labels.npz").unlink()
    preprocess_h36m(root, out, opts)
    for name, column in kept.columns().items():
        np.testing.assert_array_equal(load_labels(out / "labels.npz").columns()[name], column, err_msg=name)
    # a manifest from before the skeleton setting existed is still accepted
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["settings"]["skeleton"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert sorted(preprocess_h36m(root, out, opts).skipped) == sorted(SEQS)


@pytest.mark.parametrize("content", ["empty", "unrelated", "filtered"])
def test_no_sequence_under_raw_is_an_error_and_writes_nothing(raw, tmp_path, content):
    root = tmp_path / "raw"
    root.mkdir()
    subjects = None
    if content == "unrelated":
        (root / "notes.txt").write_text("x")
        (root / "S1" / "Other").mkdir(parents=True)
        (root / "S1" / "Other" / "Walking 1.cdf").write_bytes(b"x")
        (root / "Videos_S1.zip").write_bytes(b"x")
    elif content == "filtered":
        root, subjects = raw[0], ("S5",)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"no Human3\.6M sequences under .*raw.* \(expected e\.g\. "
                                        r"S1/MyPoseFeatures/D3_Positions/Directions 1\.cdf") as info:
        preprocess_h36m(root, out, PreprocessOptions(subjects=subjects))
    assert ("matching --subjects S5" in str(info.value)) == (content == "filtered")
    assert not out.exists()


def test_one_folder_too_high_is_pointed_out(raw, tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copytree(raw[0] / "S1", tmp_path / "data" / "h36m" / "S1")
    with pytest.raises(DataError, match="found some one folder down: .*h36m"):
        preprocess_h36m(tmp_path / "data", tmp_path / "out")


def test_plan_and_progress_count_the_frames_on_disk(raw, tmp_path):
    """The synthetic sequences have 8 pose frames, the official ones thousands: totals come from the files."""
    root, _ = raw
    dry = preprocess_h36m(root, tmp_path / "p", PreprocessOptions(dry_run=True, test_every=2))
    assert {p["sequence"]: (p["frames"], p["crops"], p["frames_from"]) for p in dry.planned} == {
        "S1/Walking-1": (2, 8, "pose file"), "S9/TakingPhoto-2": (4, 16, "pose file")}  # every 5th / 2nd of 8
    events: list[tuple[str, dict]] = []
    report = preprocess_h36m(root, tmp_path / "p", PreprocessOptions(image_size=32, test_every=2),
                             progress=lambda event, info: events.append((event, info)))
    (plan,) = [info for event, info in events if event == "plan"]
    made = sum(info["n"] for event, info in events if event == "frames")
    assert plan == {"sequences": 2, "frames": 24} and made == 24 == report.frames_written
    assert all(info["unused"] == 0 for event, info in events if event == "done")


def _five_joint_skeleton() -> Skeleton:
    return Skeleton(name="test5", names=("pelvis", "right_hip", "right_knee", "right_ankle", "neck"),
                    bones=((0, 1), (1, 2), (2, 3), (0, 4)), root=0, flip_pairs=(), h36m32_indices=(0, 1, 2, 3, 13))


def test_skeleton_option_picks_the_joints_and_the_limb_prior_bones(raw, tmp_path, monkeypatch):
    import h5py

    root, synth = raw
    monkeypatch.setitem(SKELETONS, "test5", _five_joint_skeleton())
    out = tmp_path / "p"
    report = preprocess_h36m(root, out, PreprocessOptions(image_size=32, skeleton="test5", train_every=1,
                                                         cameras=("54138969",)))
    assert report.ok
    labels = load_labels(out / "labels.npz")
    assert labels.keypoints_3d.shape == (FRAMES + 2, 5, 3)
    assert labels.meta["skeleton"] == "test5" and labels.meta["joint_names"][4] == "neck"
    assert labels.meta["bones"] == [[0, 1], [1, 2], [2, 3], [0, 4]]
    raw32 = synth.poses["S1/Walking-1"].astype(np.float32).astype(np.float64)
    s1 = labels.select(labels.subject == "S1")
    for i, frame in enumerate(s1.frame):
        for j, src in enumerate((0, 1, 2, 3, 13)):
            np.testing.assert_array_equal(s1.keypoints_3d[i, j], raw32[frame, src])
    lengths = [[float(np.sqrt(((raw32[f, a] - raw32[f, b]) ** 2).sum())) for a, b in ((0, 1), (1, 2), (2, 3), (0, 13))]
               for f in range(FRAMES)]
    with h5py.File(out / "mean_and_std_limb_length.h5", "r") as f:
        np.testing.assert_allclose(f["mean"][()], np.mean(lengths, axis=0), rtol=1e-12)
        np.testing.assert_allclose(f["std"][()], np.std(lengths, axis=0), rtol=1e-9, atol=1e-9)
        assert f.attrs["skeleton"] == "test5" and f.attrs["bones"].tolist() == [[0, 1], [1, 2], [2, 3], [0, 4]]
    with pytest.raises(DataError, match="other settings .*skeleton"):
        preprocess_h36m(root, out, PreprocessOptions(image_size=32, train_every=1, cameras=("54138969",)))
    with pytest.raises(DataError, match="--skeleton 'nope': expected one of"):
        preprocess_h36m(root, out, PreprocessOptions(skeleton="nope"))


def test_label_shards_follow_the_labels_format_constants(raw, tmp_path, monkeypatch):
    import ctxpose.data.labels as labels_module

    monkeypatch.setattr(labels_module, "VERSION", 7)
    report = preprocess_h36m(raw[0], tmp_path / "p", PreprocessOptions(image_size=32, cameras=("54138969",)))
    assert report.ok, report.failed
    with np.load(tmp_path / "p" / "parts" / "S1" / "Walking-1.npz") as z:
        assert json.loads(str(z["meta"]))["version"] == 7
    assert load_labels(tmp_path / "p" / "labels.npz").meta["version"] == 7


def test_a_bug_keeps_its_traceback_and_what_finished_is_kept(raw, tmp_path, monkeypatch):
    import ctxpose.data.h36m.process_sequence as ps

    real = ps._boxes

    def buggy(job, *args):
        if job.seq.subject == "S9":
            raise TypeError("a bug in the box code")
        return real(job, *args)

    monkeypatch.setattr(ps, "_boxes", buggy)
    out = tmp_path / "p"
    with pytest.raises(TypeError, match="a bug in the box code"):  # not turned into a "failed" line
        preprocess_h36m(raw[0], out, PreprocessOptions(image_size=32, cameras=("54138969",)))
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["sequences"]) == ["S1/Walking-1"]
    assert load_labels(out / "labels.npz").meta["sequences"] == ["S1/Walking-1"]
    assert json.loads((out / "preprocess_report.json").read_text())["done"][0]["key"] == "S1/Walking-1"


def test_an_input_that_cannot_be_read_is_a_data_error_naming_it(raw, tmp_path, monkeypatch):
    import builtins

    import ctxpose.data.h36m.raw as raw_module

    cdf = str(raw[0] / metadata.raw_relpath("D3_Positions", "S9", "Photo"))

    def denied(path, *args, **kwargs):
        if str(path) == cdf:
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(raw_module, "open", denied, raising=False)
    report = preprocess_h36m(raw[0], tmp_path / "p", PreprocessOptions(image_size=32, cameras=("54138969",)))
    assert report.failed == {"S9/TakingPhoto-2": f"{cdf}: cannot read (Permission denied)"}
    assert [r.key for r in report.done] == ["S1/Walking-1"]


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_every_file_written_respects_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        synthesize_h36m(tmp_path / "raw", subjects=["S1"], actions=["Walking-1"], n_frames=2, size=64, archives=True)
        report = preprocess_h36m(tmp_path / "raw", tmp_path / "out", PreprocessOptions(
            image_size=32, cameras=("54138969",), keep_extracted=True))
    finally:
        os.umask(old)
    assert report.ok
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".tgz", ".json", ".npz", ".h5", ".jpg", ".cdf", ".mp4", ".mat"} <= kinds  # archives, extracted, outputs
    assert {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {
        str(p.relative_to(tmp_path)): oct(file_mode) for p in files}
    for d in [p for p in (tmp_path / "out").rglob("*") if p.is_dir()]:
        assert stat.S_IMODE(d.stat().st_mode) == dir_mode, d


def test_corrupt_video_fails_only_its_camera_and_a_rerun_redoes_only_that_camera(raw, tmp_path):
    root, _ = raw
    opts = PreprocessOptions(image_size=64, test_every=2)
    clean = load_labels(preprocess_h36m(root, tmp_path / "clean", opts).labels_path)
    broken = tmp_path / "raw"
    shutil.copytree(root, broken)
    seq = metadata.sequence("S9", "TakingPhoto-2")
    video = broken / metadata.raw_relpath("Videos", "S9", seq.base_name, "58860488")
    video.write_bytes(b"\x00not an mp4" * 100)
    report = preprocess_h36m(broken, tmp_path / "p", opts)
    assert not report.ok
    assert list(report.failed) == ["S9/TakingPhoto-2/58860488"]
    assert "S9/Videos/Photo.58860488.mp4" in report.failed["S9/TakingPhoto-2/58860488"]  # TakingPhoto-2 is 'Photo'
    assert sorted(r.key for r in report.done) == ["S1/Walking-1", "S9/TakingPhoto-2"]
    labels = load_labels(tmp_path / "p" / "labels.npz")
    good = ~((clean.subject == "S9") & (clean.camera == "58860488"))
    for name, column in clean.select(good).columns().items():  # the three good cameras are kept, unchanged
        np.testing.assert_array_equal(labels.columns()[name], column, err_msg=name)
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["sequences"]["S9/TakingPhoto-2"]["cameras"] == ["54138969", "55011271", "60457274"]

    shutil.copy(root / video.relative_to(broken), video)  # the user fixes the video and runs again
    again = preprocess_h36m(broken, tmp_path / "p", opts)
    assert again.ok and again.skipped == ["S1/Walking-1"]
    assert [r.key for r in again.done] == ["S9/TakingPhoto-2"]
    assert again.frames_written == FRAMES // 2  # only the fixed camera was cropped
    fixed = load_labels(tmp_path / "p" / "labels.npz")
    for name, column in clean.columns().items():  # same rows, same order as a clean run
        np.testing.assert_array_equal(fixed.columns()[name], column, err_msg=name)
    for rel in fixed.image:
        assert (tmp_path / "p" / rel).read_bytes() == (tmp_path / "clean" / rel).read_bytes()


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
    assert "ground_truth_bb/Photo.55011271.mat" in report.failed["S9/TakingPhoto-2/55011271"]
    assert len(report.failed) == 2 and [r.key for r in report.done] == ["S9/TakingPhoto-2"]


def test_dry_run_filters_and_pose_boxes(raw, tmp_path):
    root, _ = raw
    out = tmp_path / "p"
    dry = preprocess_h36m(root, out, PreprocessOptions(dry_run=True, subjects=("S9",)))
    assert [p["sequence"] for p in dry.planned] == ["S9/TakingPhoto-2"]  # the only S9 sequence present
    assert dry.planned[0]["cameras"] == metadata.camera_ids() and len(dry.absent) == 29
    assert (dry.planned[0]["frames"], dry.planned[0]["crops"]) == (2, 8)  # frames 0 and 5 of the 8 in the file
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
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted([MARKER] + [
        f"{k}_S1.tgz" for k in ("Poses_D2_Positions", "Poses_D3_Positions", "Poses_D3_Positions_mono",
                                "Poses_D3_Positions_mono_universal", "Segments_mat_gt_bb", "Videos")])
    dry = preprocess_h36m(raw_dir, tmp_path / "p", PreprocessOptions(dry_run=True, subjects=("S1",)))
    (walking,) = [p for p in dry.planned if p["sequence"] == "S1/Walking-1"]
    assert walking["frames_from"] == "official count" and len(dry.planned) == 30  # archives are not opened
    assert walking["frames"] == len(range(0, metadata.sequence("S1", "Walking-1").num_frames, 5))
    report = preprocess_h36m(raw_dir, tmp_path / "p", PreprocessOptions(image_size=64, train_every=1))
    assert report.ok and [r.key for r in report.done] == ["S1/Walking-1"]
    labels = load_labels(tmp_path / "p" / "labels.npz")
    truth = get_skeleton("contextpose17").from_h36m32(synth.poses["S1/Walking-1"].astype(np.float32).astype(np.float64))
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


def test_packing_archives_removes_only_the_files_it_wrote(tmp_path):
    root = tmp_path / "raw"
    foreign = root / metadata.raw_relpath("Videos", "S1", "Directions 1", "54138969")  # another sequence
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"a real video")
    synthesize_h36m(root, subjects=["S1"], actions=["Walking-1"], n_frames=1, size=64, archives=True)
    assert foreign.read_bytes() == b"a real video"
    assert sorted(str(p.relative_to(root)) for p in (root / "S1").rglob("*") if p.is_file()) == [
        str(foreign.relative_to(root))]
    with tarfile.open(root / "Videos_S1.tgz") as tar:
        assert sorted(Path(m.name).name for m in tar.getmembers()) == [
            f"Walking 1.{c}.mp4" for c in sorted(metadata.camera_ids())]


def test_interrupted_run_leaves_no_partial_files(raw, tmp_path, monkeypatch):
    import ctxpose.data.preprocessing as ps  # where the crops are written

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
    with pytest.raises(Stopped, match="run the same command again to continue$") as info:
        preprocess_h36m(root, out, PreprocessOptions(image_size=64))
    assert info.value.report.interrupted
    monkeypatch.undo()
    after = load_labels(out / "labels.npz")  # still the complete labels of the first run
    np.testing.assert_array_equal(after.keypoints_3d, before.keypoints_3d)
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.is_file()]
    for jpg in out.rglob("*.jpg"):
        assert cv2.imread(str(jpg)) is not None
    done = preprocess_h36m(root, out, PreprocessOptions(image_size=64))
    assert [r.key for r in done.done] == ["S9/TakingPhoto-2"]
    assert Path(out / "manifest.json").is_file()


def test_ctrl_c_while_a_finished_sequence_is_recorded_still_records_it(raw, tmp_path):
    root, _ = raw
    broken = tmp_path / "raw"
    shutil.copytree(root, broken)
    (broken / metadata.raw_relpath("Videos", "S1", "Walking 1", "60457274")).write_bytes(b"broken")

    def ctrl_c_on_failure(event: str, info: dict) -> None:
        if event == "failed":  # reported while S1's shard (3 good cameras) is being recorded
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "p"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh process
    try:
        with pytest.raises(Stopped) as info:
            preprocess_h36m(broken, out, PreprocessOptions(image_size=32), progress=ctrl_c_on_failure)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [r.key for r in info.value.report.done] == ["S1/Walking-1"] and info.value.report.interrupted
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["sequences"]) == ["S1/Walking-1"]  # its shard is on disk, so it is recorded
    assert not (out / "parts" / "S9").exists()  # S9 was never started
    assert load_labels(out / "labels.npz").meta["sequences"] == ["S1/Walking-1"]
    assert json.loads((out / "preprocess_report.json").read_text())["interrupted"]


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
