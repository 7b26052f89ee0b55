"""Human36MDataset on tiny folders written from the format contracts (ours and the original's layout)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from ctxpose.config import load_config
from ctxpose.data import transforms as T
from ctxpose.data.datasets import Human36MDataset
from ctxpose.data.loaders import make_eval_loader, make_train_loader, set_loader_epoch
from ctxpose.errors import DataError
from tests.unit import dataset_fixtures as F

SK = F.SK


def _project(P: np.ndarray, x: np.ndarray) -> np.ndarray:
    h = P @ np.append(x, 1.0)
    return h[:2] / h[2]


#: ImageNet statistics in RGB order, applied to BGR images as the original does (written out, not imported).
MEAN_RGB, STD_RGB = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _denormalize(image_chw: np.ndarray) -> np.ndarray:
    """(3, H, W) normalised network input -> (H, W, 3) uint8 BGR image (the inverse of the formula, rounded)."""
    hwc = image_chw.transpose(1, 2, 0).astype(np.float64)
    return np.clip(255.0 * (hwc * STD_RGB + MEAN_RGB), 0, 255).round().astype(np.uint8)


def _crop_zero_padded(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """OpenCV reference of a crop (left, top, right, bottom) that extends past the image: zeros outside."""
    left, top, right, bottom = box
    pad = max(0, -left, -top, right - image.shape[1], bottom - image.shape[0])
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    return padded[top + pad : bottom + pad, left + pad : right + pad]


def _disc_centre(image_chw: np.ndarray) -> np.ndarray:
    """Centre (x, y) of the white disc in a normalised image (the brightest pixels)."""
    img = _denormalize(image_chw).astype(float).sum(-1)
    ys, xs = np.nonzero(img >= img.max() - 30)
    return np.array([xs.mean(), ys.mean()])


def _expected_rows(subjects, drop_damaged=False, ignore=()):
    rows = []
    for s, (subject, action, trial) in enumerate(F.SEQUENCES):
        if subject not in subjects or (drop_damaged and (subject, action, trial) == ("S9", "Greeting", 2)):
            continue
        for frame in F.FRAMES:
            for c in range(4):
                if (subject == "S11" and c == 0) or c in ignore:
                    continue
                rows.append((s, subject, action, trial, frame, c))
    return rows


@pytest.mark.parametrize("layout", ["ours", "original"])
def test_selection_and_order_match_the_original_rules(layout, ours, original):
    root, labels = (ours, None) if layout == "ours" else original
    kw = {"labels_path": labels, "image_shape": (32, 32)}
    train = Human36MDataset(root, "train", **kw)
    expected = _expected_rows(["S1"])
    assert len(train) == len(expected)
    ids = train.sample_ids()
    for i, (_, subject, action, trial, frame, c) in enumerate(expected):  # frame-major, then camera
        assert train.subject_names[ids["subject_idx"][i]] == subject
        assert train.action_names[ids["action_idx"][i]] == action
        assert (ids["trial"][i], ids["frame"][i], ids["camera_idx"][i]) == (trial, frame, c)
    val = Human36MDataset(root, "val", with_damaged_actions=False, **kw)
    assert len(val) == len(_expected_rows(["S9", "S11"], drop_damaged=True))
    val_all = Human36MDataset(root, "val", with_damaged_actions=True, **kw)
    assert len(val_all) == len(_expected_rows(["S9", "S11"]))
    # every 2nd frame of the val split (counted over frames, all cameras of a kept frame stay)
    thin = Human36MDataset(root, "val", with_damaged_actions=True, retain_every_n_frames_in_test=2, **kw)
    frames = sorted({(r[0], r[4]) for r in _expected_rows(["S9", "S11"])})[::2]
    assert len(thin) == len([r for r in _expected_rows(["S9", "S11"]) if (r[0], r[4]) in frames])
    no_cam1 = Human36MDataset(root, "train", ignore_cameras=(1,), **kw)
    assert len(no_cam1) == len(_expected_rows(["S1"], ignore=(1,)))
    assert 1 not in no_cam1.sample_ids()["camera_idx"]


def test_ours_item_is_the_normalised_crop_with_a_consistent_projection(ours):
    ds = Human36MDataset(ours, "val", image_shape=(64, 64))
    row = _expected_rows(["S9", "S11"])[7]
    item = ds[7]
    s, subject, action, trial, frame, c = row
    path = ours / f"images/{subject}/{action}-{trial}/{F.CAMERAS[c]}/{frame:06d}.jpg"
    raw = cv2.imread(str(path))  # BGR, normalised with the RGB-ordered ImageNet stats like the original
    expected = ((raw / 255.0 - MEAN_RGB) / STD_RGB).transpose(2, 0, 1)
    np.testing.assert_allclose(item["images"][0], expected, atol=1e-5)  # float32 rounding
    np.testing.assert_allclose(item["keypoints_3d"], F.pose(s, frame), atol=1e-3)
    np.testing.assert_allclose(item["root"], F.pose(s, frame)[SK.root], atol=1e-3)
    assert item["rotation"] == 0.0 and item["validity"].tolist() == [1.0] * SK.num_joints
    R, t = F.camera(c)
    P = item["K"][0].astype(float) @ np.hstack([R, t[:, None]])
    np.testing.assert_allclose(item["proj_matrices"][0], P, rtol=1e-5, atol=1e-3)
    # the disc drawn at the projected pelvis is where the returned projection puts the root (1 px)
    np.testing.assert_allclose(_disc_centre(item["images"][0]), _project(P, item["root"]), atol=1.0)


def test_ours_resizes_when_the_crop_size_differs(ours):
    full = Human36MDataset(ours, "train", image_shape=(64, 64))[3]
    half = Human36MDataset(ours, "train", image_shape=(32, 48))[3]
    assert half["images"].shape == (1, 3, 32, 48)
    np.testing.assert_allclose(half["K"][0], np.diag([0.75, 0.5, 1.0]) @ full["K"][0], rtol=1e-6)
    uv = _project(half["proj_matrices"][0].astype(float), half["root"])
    np.testing.assert_allclose(_disc_centre(half["images"][0]), uv, atol=1.0)


def test_original_layout_crops_like_the_original(original):
    root, labels = original
    ds = Human36MDataset(root, "train", labels_path=labels, image_shape=(96, 96), scale_bbox=1.25)
    i = 5
    item = ds[i]
    s, subject, action, trial, frame, c = _expected_rows(["S1"])[i]
    table = np.load(labels, allow_pickle=True).item()["table"]  # test-side read of our own fixture
    shot = table[(table["subject_idx"] == 0) & (table["action_idx"] == F.ORIGINAL_ACTIONS.index(f"{action}-{trial}"))
                 & (table["frame_idx"] == frame)][0]
    top, left, bottom, right = (int(v) for v in shot["bbox_by_camera_tlbr"][c])
    # the original's scale_bbox, by hand: centre (integer), size int(1.25 * 120) = 150
    xc, yc = (left + right) // 2, (top + bottom) // 2
    box = (xc - 75, yc - 75, xc + 75, yc + 75)
    frame_img = cv2.imread(str(root / subject / f"{action}-{trial}" / "imageSequence-undistorted" / F.CAMERAS[c]
                               / f"img_{frame + 1:06d}.jpg"))
    crop = _crop_zero_padded(frame_img, box)  # the original's PIL crop pads outside the frame with zeros
    assert box[1] < 0  # part of this box is above the frame
    expected = cv2.resize(crop, (96, 96), interpolation=cv2.INTER_AREA)
    got = _denormalize(item["images"][0])
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # float round trip
    K = np.array([[300.0, 0, 100 + 3], [0, 310.0, 120 - 2], [0, 0, 1]])
    K[0, 2] -= box[0]
    K[1, 2] -= box[1]
    K[:2] *= 96 / 150
    np.testing.assert_allclose(item["K"][0], K, rtol=1e-5)
    np.testing.assert_allclose(_disc_centre(item["images"][0]),
                               _project(item["proj_matrices"][0].astype(float), item["root"]), atol=1.5)


def test_collate_and_rotation_depend_only_on_seed_epoch_index(ours):
    ds = Human36MDataset(ours, "train", image_shape=(32, 32), seed=7)
    batch = default_collate([ds[i] for i in range(4)])
    assert batch["images"].shape == (4, 1, 3, 32, 32) and batch["rotation"].shape == (4,)
    assert batch["proj_matrices"].dtype == torch.float32 and batch["index"].tolist() == [0, 1, 2, 3]
    r0 = np.array([ds[i]["rotation"] for i in range(len(ds))])
    assert np.all((r0 >= 0) & (r0 < 2 * math.pi)) and len(np.unique(r0)) == len(ds)
    assert np.array_equal(r0, [ds[i]["rotation"] for i in range(len(ds))])  # repeatable
    ds.set_epoch(1)
    assert not np.allclose(r0, [ds[i]["rotation"] for i in range(len(ds))])
    other_seed = Human36MDataset(ours, "train", image_shape=(32, 32), seed=8)
    assert not np.allclose(r0, [other_seed[i]["rotation"] for i in range(len(ds))])


def test_root_jitter_moves_the_training_cuboid_centre_only(ours):
    """train.root_jitter_mm: the training root is the pelvis plus an offset within +-j mm per axis, different per
    sample, repeatable; rotation and images unchanged; the val split keeps the pelvis."""
    plain = Human36MDataset(ours, "train", image_shape=(32, 32), seed=7)
    jit = Human36MDataset(ours, "train", image_shape=(32, 32), seed=7, root_jitter_mm=300.0)
    pelvis = np.array([plain[i]["keypoints_3d"][SK.root] for i in range(len(plain))])
    np.testing.assert_allclose([plain[i]["root"] for i in range(len(plain))], pelvis)
    offsets = np.array([jit[i]["root"] for i in range(len(jit))], np.float64) - pelvis
    assert np.all(np.abs(offsets) <= 300.0 + 1e-2) and np.abs(offsets).max() > 100.0
    assert len(np.unique(offsets[:, 0].round(3))) == len(jit)  # a new offset per sample, on every axis
    assert np.all(offsets.std(0) > 50.0)
    np.testing.assert_array_equal(offsets, np.array([jit[i]["root"] for i in range(len(jit))], np.float64) - pelvis)
    assert np.array_equal([plain[i]["rotation"] for i in range(4)], [jit[i]["rotation"] for i in range(4)])
    np.testing.assert_array_equal(plain[0]["images"], jit[0]["images"])
    val = Human36MDataset(ours, "val", image_shape=(32, 32), root_jitter_mm=300.0)
    np.testing.assert_allclose(val[0]["root"], val[0]["keypoints_3d"][SK.root])
    cfg = load_config("tiny_cpu", ["train.root_jitter_mm=250"])  # from the config when not given
    assert Human36MDataset(ours, "train", cfg, image_shape=(32, 32)).root_jitter_mm == 250.0


def test_world_tilt_turns_world_and_cameras_together_about_the_pelvis(ours):
    """train.world_tilt_deg: each sample's world turns about its pelvis by at most a degrees about a horizontal
    axis; in every camera the joints stay where they were (camera frame and pixels), the vertical tilts."""
    plain = Human36MDataset(ours, "train", image_shape=(32, 32), seed=7, root_jitter_mm=100.0)
    tilt = Human36MDataset(ours, "train", image_shape=(32, 32), seed=7, root_jitter_mm=100.0, world_tilt_deg=20.0)
    angles = []
    for i in range(len(plain)):
        a, b = plain[i], tilt[i]
        pelvis = a["keypoints_3d"][SK.root]
        np.testing.assert_allclose(b["keypoints_3d"][SK.root], pelvis, atol=1e-3)
        for v in range(len(a["R"])):  # camera frame: R X + t, the same point before and after
            cam_a = a["keypoints_3d"].astype(np.float64) @ a["R"][v].T.astype(np.float64) + a["t"][v]
            cam_b = b["keypoints_3d"].astype(np.float64) @ b["R"][v].T.astype(np.float64) + b["t"][v]
            np.testing.assert_allclose(cam_b, cam_a, atol=0.05)  # mm
            root_a = a["R"][v].astype(np.float64) @ a["root"] + a["t"][v]
            np.testing.assert_allclose(b["R"][v].astype(np.float64) @ b["root"] + b["t"][v], root_a, atol=0.05)
            homog = np.c_[b["keypoints_3d"], np.ones(len(b["keypoints_3d"]))] @ b["proj_matrices"][v].T
            pix = a["K"][v] @ cam_a.T
            np.testing.assert_allclose(homog[:, :2] / homog[:, 2:], (pix[:2] / pix[2]).T, atol=1e-2)  # px
        # the turn: the rotation taking the plain pose about the pelvis to the tilted one (Procrustes), rigid, about
        # a horizontal axis
        rel_a, rel_b = a["keypoints_3d"] - pelvis, b["keypoints_3d"] - pelvis
        u, _, vt = np.linalg.svd(rel_b.T.astype(np.float64) @ rel_a)
        W = u @ vt
        np.testing.assert_allclose(rel_a @ W.T, rel_b, atol=0.05)  # mm
        axis_angle = cv2.Rodrigues(W)[0].ravel()
        assert abs(axis_angle[2]) < 1e-4
        angles.append(np.degrees(np.arccos(np.clip(W[2, 2], -1, 1))))  # the new world's z against the old
        np.testing.assert_array_equal(a["images"], b["images"])
        assert a["rotation"] == b["rotation"]
    angles = np.array(angles)
    assert np.all(angles <= 20.0 + 0.1) and angles.max() > 5.0 and len(np.unique(angles.round(3))) == len(plain)
    val = Human36MDataset(ours, "val", image_shape=(32, 32), world_tilt_deg=20.0)
    assert val.world_tilt_deg == 0.0
    cfg = load_config("tiny_cpu", ["train.world_tilt_deg=15"])
    assert Human36MDataset(ours, "train", cfg, image_shape=(32, 32)).world_tilt_deg == 15.0


def test_training_loader_batches_do_not_depend_on_workers(ours):
    """The trainer's loader: same batches with 0 or 2 workers, epochs reach persistent workers, resume skips."""
    def epoch_batches(workers, skip=0):
        ds = Human36MDataset(ours, "train", image_shape=(32, 32), seed=3)
        loader = make_train_loader(ds, 8, num_workers=workers, seed=3)
        out = []
        for epoch in (0, 1):
            set_loader_epoch(loader, epoch, skip_batches=skip if epoch == 1 else 0)  # must reach the workers
            out.append([(b["index"].clone(), b["rotation"].clone()) for b in loader])
        return out, loader

    (a, loader0), (b, loader2) = epoch_batches(0), epoch_batches(2)
    assert loader2.persistent_workers and loader0.drop_last  # train: drop the incomplete batch
    assert len(a[0]) == 60 // 8
    for ea, eb in zip(a, b, strict=True):
        for (ia, ra), (ib, rb) in zip(ea, eb, strict=True):
            assert torch.equal(ia, ib) and torch.equal(ra, rb)
    assert not torch.equal(a[0][0][0], a[1][0][0])  # a new permutation each epoch
    resumed, _ = epoch_batches(2, skip=3)  # a run resumed after 3 batches of epoch 1 sees the rest, in order
    assert [i.tolist() for i, _ in resumed[1]] == [i.tolist() for i, _ in a[1][3:]]


def _colour_of(image_chw: np.ndarray) -> np.ndarray:
    """The flat BGR colour of a normalised crop (its median pixel, away from the disc)."""
    return np.median(_denormalize(image_chw).reshape(-1, 3), axis=0)


@pytest.mark.parametrize(("max_n_views", "ignore", "cameras", "s11_cameras"), [
    (2, (), [0, 1], [1, 2]),
    (3, (0,), [1, 2, 3], [1, 2, 3]),
    (4, (), [0, 1, 2, 3], [1, 2, 3, 1]),  # S11 misses camera 0: its views repeat to fill V
    (None, (2,), [0, 1, 3], [1, 3, 1]),  # null: every camera not ignored
])
def test_multiview_samples_have_the_first_cameras_and_their_own_images(ours, max_n_views, ignore, cameras,
                                                                      s11_cameras):
    """Without randomize_n_views a frame has max_n_views views, the first cameras in camera order; each view's
    image is that camera's picture (its colour) and its projection puts the pelvis on the drawn disc."""
    cfg = load_config(None, [f"dataset.root={ours}", "model.image_shape=[64,64]", "val.randomize_n_views=false",
                             f"val.max_n_views={'null' if max_n_views is None else max_n_views}",
                             f"val.ignore_cameras={list(ignore)}"])
    ds = Human36MDataset.from_config(cfg, "val")
    frames = sorted({(r[0], r[4]) for r in _expected_rows(["S9", "S11"])})
    assert len(ds) == len(frames) and ds.n_views() == len(cameras)
    for i, (s, frame) in enumerate(frames):
        item = ds[i]
        expected = s11_cameras if F.SEQUENCES[s][0] == "S11" else cameras
        assert item["camera_indices"].tolist() == expected
        assert item["camera_idx"] == expected[0] and item["frame"] == frame
        np.testing.assert_allclose(item["keypoints_3d"], F.pose(s, frame), atol=1e-3)
        for v, c in enumerate(expected):
            np.testing.assert_allclose(_colour_of(item["images"][v]), F.colour(s, frame, c), atol=3)
            R, t = F.camera(c)
            P = item["K"][v].astype(float) @ np.hstack([R, t[:, None]])
            np.testing.assert_allclose(item["proj_matrices"][v], P, rtol=1e-5, atol=1e-3)
            uv = _project(item["proj_matrices"][v].astype(float), F.pose(s, frame)[SK.root])
            np.testing.assert_allclose(_disc_centre(item["images"][v]), uv, atol=1.0)
    batches = list(make_eval_loader(ds, batch_size=4))  # frames with a missing camera collate with the rest
    assert [tuple(b["images"].shape[:2]) for b in batches] == [(4, len(cameras))] * (len(ds) // 4) + (
        [(len(ds) % 4, len(cameras))] if len(ds) % 4 else [])


def test_original_layout_multiview_samples_skip_empty_boxes(original):
    """The original's labels mark a missing view by an empty box (S11's camera 0): every camera of a frame, that
    one left out and filled by repetition, each view's crop showing the pelvis disc where its projection says."""
    root, labels = original
    ds = Human36MDataset(root, "val", labels_path=labels, image_shape=(96, 96), max_n_views=4,
                         randomize_n_views=False)
    frames = sorted({(r[0], r[4]) for r in _expected_rows(["S9", "S11"])})
    assert len(ds) == len(frames)
    for i, (s, frame) in enumerate(frames):
        item = ds[i]
        expected = [1, 2, 3, 1] if F.SEQUENCES[s][0] == "S11" else [0, 1, 2, 3]
        assert item["camera_indices"].tolist() == expected and item["frame"] == frame
        for v in range(4):
            uv = _project(item["proj_matrices"][v].astype(float), F.pose(s, frame)[SK.root])
            np.testing.assert_allclose(_disc_centre(item["images"][v]), uv, atol=1.5)


def test_random_view_subsets_are_drawn_per_epoch_and_sample(ours):
    rnd = Human36MDataset(ours, "train", image_shape=(32, 32), max_n_views=3, min_n_views=2,
                          randomize_n_views=True, seed=1)
    subsets, counts = set(), set()
    for epoch in range(6):
        rnd.set_epoch(epoch)
        items = [rnd[i] for i in range(6)]
        assert {len(it["camera_indices"]) for it in items} == {rnd.n_views()}  # one V per epoch: batches collate
        counts.add(rnd.n_views())
        for it in items:
            assert len(set(it["camera_indices"].tolist())) == len(it["camera_indices"]) <= 3
            assert it["camera_idx"] == 0  # the sample's id stays its frame's first camera
        assert default_collate(items)["images"].shape[:2] == (6, len(items[0]["camera_indices"]))
        subsets.add(tuple(rnd[0]["camera_indices"].tolist()))
        assert tuple(rnd[0]["camera_indices"].tolist()) in subsets  # repeatable within an epoch
    assert len(subsets) > 1 and counts == {2, 3}  # views and their number change with the epoch


def test_min_n_views_leaves_out_frames_with_fewer_cameras(ours):
    """Cameras 2 and 3 ignored: S11 frames have camera 1 only. Allowed one view they repeat it; with min_n_views 2
    (two distinct views, what triangulation needs) they are not samples."""
    common = {"image_shape": (32, 32), "randomize_n_views": False, "max_n_views": 2, "ignore_cameras": (2, 3)}
    one = Human36MDataset(ours, "val", min_n_views=1, **common)
    two = Human36MDataset(ours, "val", min_n_views=2, **common)
    s11 = [i for i in range(len(one)) if one.subject_names[one[i]["subject_idx"]] == "S11"]
    assert len(s11) == len(F.FRAMES) and all(one[i]["camera_indices"].tolist() == [1, 1] for i in s11)
    assert len(two) == len(one) - len(s11)
    assert {two.subject_names[i] for i in two.sample_ids()["subject_idx"]} == {"S9"}
    assert all(two[i]["camera_indices"].tolist() == [0, 1] for i in range(len(two)))


def test_view_counts_the_labels_cannot_give_are_refused(ours):
    with pytest.raises(DataError, match=r"val.max_n_views: 5 views .* 4 cameras \(0 in val.ignore_cameras\); "
                                        r"expected 1 <= min_n_views <= max_n_views <= 4"):
        Human36MDataset(ours, "val", max_n_views=5, randomize_n_views=False)
    with pytest.raises(DataError, match=r"train.max_n_views: 3 views .* \(2 in train.ignore_cameras\)"):
        Human36MDataset(ours, "train", max_n_views=3, ignore_cameras=(0, 1))
    cfg = load_config(None, [f"dataset.root={ours}", "train.min_n_views=4", "train.max_n_views=null",
                             "train.ignore_cameras=[0]"])
    with pytest.raises(DataError, match=r"train.max_n_views: null \(every camera\) \(min_n_views 4\), but .* 3"):
        Human36MDataset.from_config(cfg, "train")


def test_from_config_uses_splits_and_errors_are_one_line(ours, tmp_path):
    cfg = load_config(None, [f"dataset.root={ours}", "model.image_shape=[32,32]", "val.with_damaged_actions=false",
                             "dataset.val_subjects=[S9]"])
    ds = Human36MDataset.from_config(cfg, "val")
    assert len(ds) == len(_expected_rows(["S9"], drop_damaged=True))
    with pytest.raises(DataError, match="no labels.npz"):
        Human36MDataset(tmp_path, "train")
    with pytest.raises(DataError, match=r"val.ignore_cameras: \[7\] are not camera indices 0..3"):
        Human36MDataset(ours, "val", ignore_cameras=(7,))
    with pytest.raises(DataError, match="none of the train subjects"):
        Human36MDataset(ours, "train", subjects=("S2",))
    with pytest.raises(DataError, match="image missing or unreadable"):
        broken = Human36MDataset(ours, "val", image_shape=(32, 32))
        broken.root = tmp_path  # images are read relative to root
        broken[0]


def test_scale_bbox_hand_worked():
    # width 101, height 60, centre (50, 30) with floor division; int(1.5 * 101) = 151, int(1.5 * 60) = 90
    np.testing.assert_array_equal(T.scale_bbox((0, 0, 101, 60), 1.5), (50 - 75, 30 - 45, 50 - 75 + 151, 30 + 45))
    np.testing.assert_array_equal(T.scale_bbox([(3, 5, 13, 9), (1, 1, 2, 2)], 1.0), [(3, 5, 13, 9), (1, 1, 2, 2)])


def test_crop_image_pads_with_zeros_like_opencv_border():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(20, 30, 3), dtype=np.uint8)  # no zeros inside: padding is visible
    for box in [(-5, -4, 10, 12), (25, 15, 40, 26), (-3, -3, 33, 23), (40, 40, 45, 50), (2, 3, 9, 8)]:
        crop = T.crop_image(image, box)
        assert crop.shape == (box[3] - box[1], box[2] - box[0], 3) and crop.dtype == np.uint8
        np.testing.assert_array_equal(crop, _crop_zero_padded(image, box))
    # hand-worked corner: the box starts 5 px left and 4 px above the image
    crop = T.crop_image(image, (-5, -4, 10, 12))
    assert not crop[:4].any() and not crop[:, :5].any()
    np.testing.assert_array_equal(crop[4:, 5:], image[:12, :10])


def test_normalisation_is_the_original_formula_on_bgr_channels():
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV's BGR
    # the original applies the RGB-ordered statistics to the BGR channels without converting
    np.testing.assert_allclose(T.normalize_to_tensor(bgr)[:, 0, 0], (np.array([1.0, 0, 0]) - MEAN_RGB) / STD_RGB,
                               rtol=1e-6)
    image = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    fused = T.normalize_to_tensor(image)
    assert fused.shape == (3, 5, 7) and fused.dtype == np.float32 and fused.flags.c_contiguous
    for c in range(3):  # element by element, in float64
        for y in range(5):
            for x in range(7):
                expected = (image[y, x, c] / 255.0 - MEAN_RGB[c]) / STD_RGB[c]
                assert abs(fused[c, y, x] - expected) < 1e-6  # float32 arithmetic
    np.testing.assert_array_equal(_denormalize(fused), image)  # the tests' inverse is exact after rounding


def test_tensor_to_image_inverts_the_normalisation():
    """What the pictures draw on: the formula's inverse, written out above, and a round trip of real pixels."""
    from ctxpose.data.transforms import normalize_to_tensor, tensor_to_image

    image = np.random.default_rng(5).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    chw = normalize_to_tensor(image)
    np.testing.assert_array_equal(tensor_to_image(chw), image)
    np.testing.assert_array_equal(tensor_to_image(chw), _denormalize(chw))
    assert tensor_to_image(np.full((3, 2, 2), 99.0)).max() == 255  # clipped, not wrapped
