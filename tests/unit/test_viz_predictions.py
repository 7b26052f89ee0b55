"""``visualize predictions``: crops from the file's own paths or looked up in a dataset, skeletons where the
cameras put them, numbers behind the plots checked against loops, one-line errors for missing files and ids."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ctxpose.errors import DataError
from ctxpose.geometry import projection_matrix
from ctxpose.viz import predictions as vp
from ctxpose.viz.output import ImageSink
from ctxpose.viz.style import Style
from tests.unit.viz_fixtures import (
    CROP,
    POSE,
    SK,
    K,
    facing_camera,
    joint_rgb,
    pixel,
    reference_project,
    write_processed,
)

SIZE = 384
OFFSETS = [0.0, 20.0, 150.0, 60.0]  # mm added to every predicted joint of sample 0..3 (x, camera right)


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_processed(tmp_path_factory.mktemp("processed"), [POSE] * 2)  # frames 0 and 5, 2 cameras


def _arrays(n: int = 4, paths: bool = False, root: Path | None = None) -> dict[str, np.ndarray]:
    """Eval arrays for samples (frame, camera) = (0, 0), (0, 1), (5, 0), (5, 1); prediction = gt + offset in x."""
    cams = [facing_camera("front"), facing_camera("back")]
    frames, cam_idx = np.array([0, 0, 5, 5])[:n], np.array([0, 1, 0, 1])[:n]
    gt = np.stack([POSE] * n).astype(np.float32)
    pred = gt + np.array(OFFSETS[:n], np.float32)[:, None, None] * np.array([1, 0, 0], np.float32)
    a = {"index": np.arange(10, 10 + n), "subject_idx": np.zeros(n, np.int64), "action_idx": np.zeros(n, np.int64),
         "trial": np.ones(n, np.int64), "camera_idx": cam_idx, "frame": frames, "keypoints_3d": pred,
         "keypoints_3d_gt": gt, "validity": np.ones((n, SK.num_joints), np.float32),
         "proj_matrices": np.stack([projection_matrix(K, *cams[c]) for c in cam_idx]).astype(np.float32),
         "subject_names": np.array(["S9"]), "action_names": np.array(["Walking"]),
         "camera_names": np.array(["54138969", "55011271"])}
    if paths:
        a["image_paths"] = np.array([f"images/S9/Walking-1/{a['camera_names'][c]}/{f:06d}.jpg"
                                     for f, c in zip(frames, cam_idx, strict=True)])
        a["dataset_root"] = np.array(str(root))
    return a


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _check_crop_panel(image: np.ndarray, row: int) -> None:
    """Both skeletons on the crop panel (left, under the title) where the sample's camera puts them."""
    header = image.shape[0] - SIZE - 2 * 4
    R, t = facing_camera("front" if row % 2 == 0 else "back")
    uv_pred, uv_gt = ((reference_project(points, K, R, t) + 0.5) * SIZE / CROP - 0.5 + [4, header + 4]
                      for points in (POSE + [OFFSETS[row], 0.0, 0.0], POSE))
    # the prediction is drawn last: every predicted joint shows; a true joint shows unless a predicted one covers it
    def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        s = np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-9), 0, 1)
        return float(np.linalg.norm(p - (a + s * (b - a))))

    covered = np.array([min(np.linalg.norm(uv_pred - g, axis=-1).min(),
                            min(segment_distance(g, uv_pred[a], uv_pred[b]) + 3 for a, b in SK.bones)) < 8
                        for g in uv_gt])
    assert covered.sum() < 9
    for j in range(SK.num_joints):
        assert pixel(image, uv_pred[j]) == joint_rgb(j, "pred"), SK.names[j]
        if not covered[j]:
            assert pixel(image, uv_gt[j]) == joint_rgb(j, "gt"), SK.names[j]


def test_crops_from_recorded_paths_need_no_dataset_argument(processed: Path, tmp_path: Path) -> None:
    npz = _save(tmp_path / "eval" / "predictions.npz", _arrays(paths=True, root=processed))
    with ImageSink(tmp_path / "viz") as sink:
        report = vp.visualize_predictions(tmp_path / "eval", sink, samples=-1, worst=2, style=Style(size=SIZE))
    assert report.crops_note is None and list(report.samples) == [0, 1, 2, 3]
    for row in (2, 3):
        _check_crop_panel(cv2.imread(str(tmp_path / "viz" / "samples" / f"{10 + row:06d}.png"))[:, :, ::-1], row)
    summary = json.loads((tmp_path / "viz" / "summary.json").read_text())
    assert summary["predictions"] == str(npz)
    assert [w["index"] for w in summary["worst"]] == [12, 13]  # the two largest offsets, worst first
    assert summary["worst"][0]["mpjpe"] == pytest.approx(150.0, rel=1e-5)
    assert summary["mpjpe"] == pytest.approx(np.mean(OFFSETS), rel=1e-5)
    for name in ("worst", "per_action", "per_joint", "error_distribution"):
        assert cv2.imread(str(tmp_path / "viz" / f"{name}.png")) is not None


def test_crops_looked_up_in_a_dataset_by_ids(processed: Path, tmp_path: Path) -> None:
    npz = _save(tmp_path / "p.npz", _arrays())
    preds = vp.open_predictions(npz)
    crops = vp.CropFinder(preds, processed)
    image = vp.render_sample(preds, 3, crops, Style(size=SIZE))
    _check_crop_panel(image, 3)


def test_recorded_network_size_rescales_the_projection(processed: Path, tmp_path: Path) -> None:
    """proj_matrices made for a 64-pixel network input, crops stored at 128 px: image_shape says so."""
    a = _arrays(paths=True, root=processed)
    half = np.diag([0.5, 0.5, 1.0])
    a["proj_matrices"] = (half @ a["proj_matrices"]).astype(np.float32)
    a["image_shape"] = np.array([64, 64])
    preds = vp.open_predictions(_save(tmp_path / "p.npz", a))
    _check_crop_panel(vp.render_sample(preds, 2, vp.CropFinder(preds), Style(size=SIZE)), 2)


def test_without_crops_the_rest_is_drawn_and_the_reason_given(tmp_path: Path) -> None:
    npz = _save(tmp_path / "p.npz", _arrays())
    with ImageSink(tmp_path / "viz") as sink:
        report = vp.visualize_predictions(npz, sink, samples=2, worst=4)
    assert "has no image_paths; pass --dataset PROCESSED" in report.crops_note
    assert sorted(p.name for p in (tmp_path / "viz" / "samples").iterdir()) == ["000010.png", "000013.png"]
    sample = cv2.imread(str(tmp_path / "viz" / "samples" / "000010.png"))
    assert sample.shape[1] < 2.2 * SIZE  # 3D view + joint errors only


def test_plotted_numbers_match_loops(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = _arrays()
    a["keypoints_3d"] = a["keypoints_3d_gt"] + rng.normal(0, 50, a["keypoints_3d"].shape).astype(np.float32)
    a["action_idx"] = np.array([0, 1, 1, 0])
    a["action_names"] = np.array(["Walking", "Eating"])
    a["validity"][1, 4] = 0
    preds = vp.open_predictions(_save(tmp_path / "p.npz", a))
    err = [[np.sqrt(sum((float(a["keypoints_3d"][i, j, c]) - float(a["keypoints_3d_gt"][i, j, c])) ** 2
                        for c in range(3))) for j in range(SK.num_joints)] for i in range(4)]
    per_sample = [np.mean([e for j, e in enumerate(err[i]) if a["validity"][i, j]]) for i in range(4)]
    np.testing.assert_allclose(preds.sample_mpjpe, per_sample, rtol=1e-6)
    per_joint = [np.mean([err[i][j] for i in range(4) if a["validity"][i, j]]) for j in range(SK.num_joints)]
    np.testing.assert_allclose(vp.per_joint(preds), per_joint, rtol=1e-6)
    stats = vp.per_action(preds)
    assert stats["Walking"]["mpjpe"] == pytest.approx((per_sample[0] + per_sample[3]) / 2, rel=1e-6)
    assert stats["Eating"]["n_samples"] == 2


def test_missing_files_keys_and_ids_are_one_line_errors(processed: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        vp.open_predictions(tmp_path / "nope.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no predictions.npz in this folder"):
        vp.open_predictions(tmp_path / "empty")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable predictions file"):
        vp.open_predictions(tmp_path / "bad.npz")
    a = _arrays()
    del a["keypoints_3d_gt"]
    with pytest.raises(DataError, match=r"k.npz: no .keypoints_3d_gt."):
        vp.open_predictions(_save(tmp_path / "k.npz", a))
    preds = vp.open_predictions(_save(tmp_path / "p.npz", _arrays()))
    with pytest.raises(DataError, match=r"sample index 99 is not in the file \(4 samples, indices 10..13\)"):
        preds.rows_of([10, 99])
    b = _arrays(paths=True, root=tmp_path / "moved")
    preds = vp.open_predictions(_save(tmp_path / "q.npz", b))
    with pytest.raises(DataError, match="image missing or unreadable"):
        vp.CropFinder(preds).crop(0)
    vp.CropFinder(preds, processed).crop(0)  # --dataset relocates recorded relative paths
    c = _arrays()
    c["frame"] = np.array([0, 0, 5, 40])
    preds = vp.open_predictions(_save(tmp_path / "r.npz", c))
    with pytest.raises(DataError, match="sample #13 S9 Walking-1  cam 55011271  frame 40 .* is not in this processed"):
        vp.CropFinder(preds, processed).crop(3)


def test_demo_overlay_strip(processed: Path, tmp_path: Path) -> None:
    _save(tmp_path / "eval" / "predictions.npz", _arrays())
    path = vp.save_overlay(tmp_path / "eval", processed, tmp_path / "overlay.png", count=4)
    image = cv2.imread(str(path))
    assert image.shape[1] == 4 * 256 + 5 * 2 and image.shape[0] > 256
