"""``ctxpose infer --calibration``: several synchronized calibrated views.

Known truth: marker points drawn as Gaussian blobs through four real Human3.6M camera poses (with OpenCV lens
distortion) into PNG frames; a stand-in network finds each marker's centroid in every crop it is given and
triangulates them with the projection matrices it is given, so the world coordinates come back within 1 mm only
if the crops, the crop cameras and the calibration agree. Then the real tiny algebraic network end to end through
the command on short MP4s (files read back with numpy/json/OpenCV), and bad inputs.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from ctxpose.config import load_config
from ctxpose.data.h36m.cameras import load_h36m_cameras
from ctxpose.data.infer_rig import read_calibration, write_calibration
from ctxpose.data.predictions_npz import load_predictions
from ctxpose.engine.infer_multiview import (
    MultiViewEstimator,
    MultiViewRequest,
    estimate_multiview_poses,
    run_infer_multiview,
)
from ctxpose.errors import DataError
from ctxpose.geometry.cameras import Camera
from ctxpose.models.build import build_model, model_from_config
from ctxpose.models.triangulation import triangulate_dlt
from ctxpose.skeleton import get_skeleton
from tests.cli.in_process import run_in_process

REPO = Path(__file__).parents[2]
SK = get_skeleton("contextpose17")
HW = (1002, 1000)
CROP = (256, 256)
#: three markers, world mm (Human3.6M's world: z up, the floor at 0); marker 0 is the pelvis
MARKERS = np.array([[[30.0, 210.0, 950.0], [180.0, -120.0, 1320.0], [-230.0, 90.0, 480.0]],
                    [[-60.0, 150.0, 930.0], [120.0, -40.0, 1400.0], [-150.0, 260.0, 560.0]]])


def rig() -> list[Camera]:
    h36m = load_h36m_cameras()
    dist = [[-0.05, 0.02, 0.001, -0.001, 0.0], [0.03, -0.01, 0.0, 0.0, 0.0], [0.0] * 5, [-0.02, 0.0, 0.0, 0.0, 0.0]]
    return [Camera(R=c.R, t=c.t, K=c.K, dist=d, name=f"cam{i}")
            for i, (c, d) in enumerate(zip((h36m[("S9", k)] for k in ("54138969", "55011271", "58860488",
                                                                          "60457274")), dist, strict=True))]


def pixels(cam: Camera, points: np.ndarray) -> np.ndarray:
    """(N, 2) px by OpenCV's own projection (independent of ctxpose's)."""
    uv, _ = cv2.projectPoints(points, cv2.Rodrigues(cam.R)[0], cam.t, cam.K, cam.dist)
    return uv[:, 0]


def draw(cam: Camera, points: np.ndarray, sigma: float = 3.5) -> np.ndarray:
    """A black frame with marker k as a Gaussian blob in colour channel k, at its sub-pixel projection."""
    frame = np.zeros((*HW, 3), np.float64)
    yy, xx = np.mgrid[: HW[0], : HW[1]]
    for k, (u, v) in enumerate(pixels(cam, points)):
        frame[..., k] = 255 * np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * sigma ** 2))
    return np.round(frame).astype(np.uint8)


def box_of(cam: Camera, points: np.ndarray) -> list[float]:
    uv = pixels(cam, points)
    lo, hi = uv.min(0) - 40, uv.max(0) + 40
    return [*lo.tolist(), *(hi - lo).tolist()]


@dataclass
class Out:
    keypoints_3d: torch.Tensor


class MarkerNet(torch.nn.Module):
    """Finds the blob of channel k (marker k) in every crop by its centroid, triangulates the markers with the
    given projection matrices; joint j is marker j % 3 (the pelvis, joint 6, is marker 0). Records the roots."""

    def __init__(self) -> None:
        super().__init__()
        self.roots = []

    def forward(self, images, proj, roots=None, angles=None):
        self.roots.append(None if roots is None else roots.double().clone())
        x = images.double()
        w = x - x.amin(dim=(-2, -1), keepdim=True)  # (B, V, 3, H, W): the background is 0
        h, wd = x.shape[-2:]
        u = (w * torch.arange(wd, dtype=torch.float64)).sum((-2, -1)) / w.sum((-2, -1))
        v = (w * torch.arange(h, dtype=torch.float64)[:, None]).sum((-2, -1)) / w.sum((-2, -1))
        markers = triangulate_dlt(proj.double(), torch.stack([u, v], -1))  # (B, 3, 3)
        return Out(markers[:, torch.arange(SK.num_joints) % 3])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Four views (folders of PNGs) of two frames, a third frame where only view 0 has a box, the calibration
    and a COCO results file naming each view's images."""
    tmp = tmp_path_factory.mktemp("mv")
    cams = rig()
    coco = []
    for v, cam in enumerate(cams):
        (tmp / f"cam{v}").mkdir()
        for f in range(3):
            points = MARKERS[min(f, 1)]
            name = f"{f:03d}.png"
            assert cv2.imwrite(str(tmp / f"cam{v}" / name), draw(cam, points))
            if f < 2 or v == 0:
                named = f"cam{v}/{name}"  # the images have the same names in every view: named by folder
                coco.append({"file_name": named, "image_id": f, "bbox": box_of(cam, points), "score": 0.9})
                coco.append({"file_name": named, "image_id": f, "bbox": [1, 1, 30, 30], "score": 0.6})  # lower
    (tmp / "boxes.json").write_text(json.dumps(coco))
    write_calibration(tmp / "rig.json", cams, [HW] * 4)
    return tmp, cams


def test_world_coordinates_from_the_pixels_within_1mm(scene):
    tmp, cams = scene
    est = MultiViewEstimator(MarkerNet(), "algebraic", SK, CROP)
    out = tmp / "out"
    request = MultiViewRequest([tmp / f"cam{v}" for v in range(4)], tmp / "rig.json", out,
                               detections=tmp / "boxes.json")
    summary = run_infer_multiview(request, est)
    assert (summary.frames, summary.people) == (3, 2)
    with np.load(out / "predictions.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert z["frame_people"].tolist() == [1, 1, 0]  # frame 2: one view has a box, not enough
        assert z["frame"].tolist() == [0, 1]
        kp = z["keypoints_3d"].astype(np.float64)
        for f in range(2):
            np.testing.assert_allclose(kp[f, :3], MARKERS[f], atol=1.0)  # mm, in the calibration's world
            for v, cam in enumerate(cams):  # reprojections with each view's distortion, by OpenCV
                np.testing.assert_allclose(z["keypoints_2d"][f, v], pixels(cam, kp[f]), atol=0.02)
            np.testing.assert_allclose(z["boxes"][f], [box_of(c, MARKERS[f]) for c in cams], atol=1e-3)
        np.testing.assert_allclose(z["keypoints_3d_relative"], kp - kp[:, SK.root: SK.root + 1], atol=1e-3)
        assert z["views_used"].all() and np.isnan(z["root"]).all()
        np.testing.assert_allclose(z["scores"], 0.9)  # each view's top box
        np.testing.assert_allclose(z["camera_R"][2], cams[2].R)
        np.testing.assert_allclose(z["camera_t"][2], cams[2].t)
        assert str(z["format"]) == "ctxpose.infer-multiview/1"
    # the one predictions loader reads it as its own kind (declared dtypes and shapes) and refuses it as another
    loaded = load_predictions(out / "predictions.npz", ("keypoints_2d",), kind="infer_multiview")
    assert loaded["passes"].dtype == np.int32 and loaded["keypoints_2d"].shape == (2, 4, SK.num_joints, 2)
    with pytest.raises(DataError, match="multi-view infer predictions file"):
        load_predictions(out / "predictions.npz")
    assert meta["sources"] == [str(tmp / f"cam{v}") for v in range(4)] and meta["joint_names"][6] == "pelvis"
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [len(x["people"]) for x in lines] == [1, 1, 0]
    np.testing.assert_allclose(lines[1]["people"][0]["keypoints_3d"], kp[1], atol=1e-3)
    assert lines[0]["people"][0]["root"] == [None, None, None]


def frames_and_boxes(cams, views=(0, 1, 2, 3)):
    frames = [[draw(c, MARKERS[0]) for c in cams]]
    boxes = [[box_of(c, MARKERS[0]) if v in views else None for v, c in enumerate(cams)]]
    return frames, boxes


@pytest.mark.parametrize("with_root_model", [False, True])
def test_volumetric_cuboid_on_the_triangulated_root_then_the_network_pelvis(with_root_model):
    cams = rig()
    frames, boxes = frames_and_boxes(cams, views=(0, 2, 3))
    net = MarkerNet()
    est = MultiViewEstimator(net, "volumetric", SK, CROP)
    root_model = MultiViewEstimator(MarkerNet(), "algebraic", SK, CROP) if with_root_model else None
    (person,) = estimate_multiview_poses(est, frames, boxes, cams, root_model=root_model)
    np.testing.assert_allclose(person.keypoints_3d[:3], MARKERS[0], atol=1.0)
    assert person.views_used.tolist() == [True, False, True, True] and np.isnan(person.boxes[1]).all()
    np.testing.assert_allclose(person.root, MARKERS[0, 0], atol=1.0)  # re-centred on the (right) pelvis
    assert len(net.roots) == person.passes  # the root reported is the one of the last pass
    np.testing.assert_allclose(net.roots[-1][0].numpy(), person.root, atol=1e-3)
    first = net.roots[0][0].numpy()
    if with_root_model:  # the algebraic model's pelvis: right at once, one pass
        assert person.passes == 1
        np.testing.assert_allclose(first, MARKERS[0, 0], atol=1.0)
    else:  # the box centres' triangulation: a rough start, then the network's pelvis
        assert person.passes == 2
        centres = [np.add(b[:2], np.divide(b[2:], 2)) for b in boxes[0] if b is not None]
        used = [cams[v] for v in (0, 2, 3)]
        und = [cv2.undistortPoints(np.array([[c]]), cam.K, cam.dist, P=cam.K)[0, 0] for c, cam in zip(
            centres, used, strict=True)]
        x = cv2.triangulatePoints(used[0].projection, used[1].projection, und[0][:, None], und[1][:, None])
        np.testing.assert_allclose(first, x[:3, 0] / x[3, 0], atol=60.0)  # 3 views vs OpenCV's 2: near
        np.testing.assert_allclose(net.roots[1][0].numpy(), MARKERS[0, 0], atol=1.0)


def test_calibration_formats_list_names_rvec_and_opencv_stereo(tmp_path):
    cams = rig()
    named = {"cameras": {f"cam{v}": {"camera_matrix": {"rows": 3, "cols": 3, "dt": "d", "data": c.K.ravel().tolist()},
                                     "distortion_coefficients": c.dist[:4].tolist(),
                                     "rvec": cv2.Rodrigues(c.R)[0].ravel().tolist(), "tvec": c.t.tolist()}
                         for v, c in reversed(list(enumerate(cams)))}}
    (tmp_path / "named.yaml").write_text(json.dumps(named))  # YAML is a superset of JSON
    views = read_calibration(tmp_path / "named.yaml", [f"cam{v}.mp4" for v in range(4)])
    for view, cam in zip(views, cams, strict=True):
        np.testing.assert_allclose(view.camera.R, cam.R, atol=1e-9)
        np.testing.assert_allclose(view.camera.t, cam.t)
        np.testing.assert_allclose(view.camera.dist[:4], cam.dist[:4])
        assert view.image_hw is None
    # OpenCV stereo: camera 1 is the world; camera 2 is R, T relative to it
    R = cams[1].R @ cams[0].R.T
    T = cams[1].t - R @ cams[0].t
    stereo = {"K1": cams[0].K.tolist(), "D1": cams[0].dist.tolist(), "K2": cams[1].K.tolist(),
              "D2": cams[1].dist.tolist(), "R": R.tolist(), "T": T.tolist(), "image_size": [1000, 1002]}
    (tmp_path / "stereo.json").write_text(json.dumps(stereo))
    a, b = read_calibration(tmp_path / "stereo.json", ["left.mp4", "right.mp4"])
    point = MARKERS[0, 1]
    cam0_point = cams[0].R @ point + cams[0].t  # the same point in camera 1's frame = the stereo world
    np.testing.assert_allclose(pixels(b.camera, cam0_point[None]), pixels(cams[1], point[None]), atol=1e-6)
    np.testing.assert_allclose(pixels(a.camera, cam0_point[None]), pixels(cams[0], point[None]), atol=1e-6)
    assert a.image_hw == (1002, 1000)


# ---------------------------------------------------------------------------------------------- the real network


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """tiny_cpu_alg with random weights; three 96x80 MP4 views (3, 3 and 4 frames), their calibration and boxes."""
    tmp = tmp_path_factory.mktemp("mvcli")
    cfg = load_config(REPO / "configs" / "tiny_cpu_alg.yaml")
    torch.manual_seed(0)
    torch.save(build_model(cfg).state_dict(), tmp / "alg.pt")
    cams, coco = [], []
    for v in range(3):
        a = np.deg2rad(40.0 * (v - 1))
        R = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]]) @ np.array(
            [[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # z up in the world, the camera looking along world y
        cams.append(Camera(R=R, t=[0.0, 800.0, 4000.0], K=[[90.0, 0, 48], [0, 90.0, 40], [0, 0, 1]], name=f"c{v}"))
        writer = cv2.VideoWriter(str(tmp / f"c{v}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 80))
        for i in range(3 + (v == 2)):
            frame = np.full((80, 96, 3), 40, np.uint8)
            cv2.rectangle(frame, (38, 10 + i), (58, 70), (200, 180, 160), -1)
            writer.write(frame)
            coco.append({"file_name": f"c{v}.mp4", "image_id": i, "bbox": [36, 8, 24, 64], "score": 0.9})
        writer.release()
    (tmp / "boxes.json").write_text(json.dumps(coco))
    write_calibration(tmp / "rig.json", cams)
    return tmp, cams


def test_command_runs_the_algebraic_model_on_three_videos(tiny):
    tmp, cams = tiny
    out = tmp / "out"
    r = run_in_process("infer", *(str(tmp / f"c{v}.mp4") for v in range(3)), "--calibration", str(tmp / "rig.json"),
                       "--config", "configs/tiny_cpu_alg.yaml", "--checkpoint", str(tmp / "alg.pt"),
                       "--boxes", str(tmp / "boxes.json"), "--out", str(out), "--device", "cpu", cwd=REPO)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "the shortest sets the length" in r.stdout
    with np.load(out / "predictions.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert z["frame_index"].tolist() == [0, 1, 2] and z["frame_people"].tolist() == [1, 1, 1]
        kp = z["keypoints_3d"].astype(np.float64)
        assert kp.shape == (3, 17, 3) and np.isfinite(kp).all()
        assert z["keypoints_2d"].shape == (3, 3, 17, 2)
        for v, cam in enumerate(cams):
            np.testing.assert_allclose(z["keypoints_2d"][1, v], pixels(cam, kp[1]), rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(z["time"], [0.0, 0.1, 0.2], atol=1e-6)
    assert meta["architecture"] == "algebraic" and meta["lengths"] == [3, 3, 4]


@pytest.mark.parametrize("inputs,extra,expected", [
    ([0], [], "1 view"),
    ([0, 1], [], "rig.json: 3 cameras for 2 views"),
    ([0, 1, 2], ["--calibration", "{tmp}/bad.json"], "bad.json: expected 'cameras'"),
    ([0, 1, 2], ["--calibration", "{tmp}/nor.json"], "cameras[1]: expected R (3 x 3, world -> camera) or rvec"),
    ([0, 1, 2], ["--calibration", "{tmp}/size.json"], "c0.mp4: 96x80 frames, but"),
    ([0, 1, 2], ["--fov", "50"], "--fov: single-camera options"),
    ([0, 1, 2], ["--box", "500,500,10,10"], "is outside the 96x80 image"),
    ([0, 1, 2], ["--boxes", "{tmp}/anon.json"], "anon.json: with several views every box names its view"),
])
def test_bad_inputs_fail_in_one_line_and_write_nothing(tiny, inputs, extra, expected):
    tmp, cams = tiny
    (tmp / "bad.json").write_text(json.dumps({"K": 1}))
    (tmp / "anon.json").write_text(json.dumps([{"image_id": 0, "bbox": [36, 8, 24, 64], "score": 0.9}]))
    calib = json.loads((tmp / "rig.json").read_text())
    del calib["cameras"][1]["R"]
    (tmp / "nor.json").write_text(json.dumps(calib))
    write_calibration(tmp / "size.json", cams, [(100, 100)] * 3)
    out = tmp / f"bad_{abs(hash((tuple(inputs), tuple(extra))))}"
    args = [a.replace("{tmp}", str(tmp)) for a in extra]
    if "--calibration" not in args:
        args += ["--calibration", str(tmp / "rig.json")]
    if "--box" not in args and "--boxes" not in args:
        args += ["--boxes", str(tmp / "boxes.json")]
    r = run_in_process("infer", *(str(tmp / f"c{v}.mp4") for v in inputs), "--config", "configs/tiny_cpu_alg.yaml",
                       "--checkpoint", str(tmp / "alg.pt"), "--out", str(out), "--device", "cpu", *args, cwd=REPO)
    assert r.returncode != 0
    assert expected in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    assert [line for line in (r.stderr + r.stdout).splitlines() if "error" in line] == [
        next(line for line in r.stderr.splitlines() if expected in line)]  # one line
    assert not (out / "predictions.npz").exists()


@pytest.mark.parametrize("name", ["tiny_cpu_ransac", "tiny_cpu",  # the 32^3 V2V: 1.5 s a pass, 5 passes
                                  pytest.param("tiny_cpu_vol", marks=pytest.mark.slow)])
def test_command_runs_ransac_volumetric_and_contextpose_on_two_views(tiny, name):
    tmp, cams = tiny
    limbs = tmp / "limbs.h5"
    with h5py.File(limbs, "w") as f:
        f["mean"] = np.linspace(100, 400, 16)
        f["std"] = np.linspace(5, 20, 16)
    config = tmp / f"{name}.yaml"
    config.write_text((REPO / "configs" / f"{name}.yaml").read_text().replace(
        "ctxpose-demo/processed/mean_and_std_limb_length.h5", str(limbs)))
    cfg = load_config(config)
    torch.manual_seed(0)
    torch.save(model_from_config(cfg).state_dict(), tmp / f"{name}.pt")
    write_calibration(tmp / "two.json", cams[:2])
    out = tmp / f"out_{name}"
    for v in range(2):  # one frame per view (folders of one image): the volumetric passes are the slow part
        (tmp / f"still{v}").mkdir(exist_ok=True)
        ok, frame = cv2.VideoCapture(str(tmp / f"c{v}.mp4")).read()
        assert ok and cv2.imwrite(str(tmp / f"still{v}" / "0.png"), frame)
    root = ["--root-config", "configs/tiny_cpu_alg.yaml", "--root-checkpoint", str(tmp / "alg.pt")]
    r = run_in_process("infer", str(tmp / "still0"), str(tmp / "still1"), "--calibration", str(tmp / "two.json"),
                       "--config", str(config), "--checkpoint", str(tmp / f"{name}.pt"),
                       "--box", "36,8,24,64", "--out", str(out), "--device", "cpu",
                       *(root if name == "tiny_cpu" else []), cwd=REPO)
    assert r.returncode == 0, r.stderr + r.stdout
    with np.load(out / "predictions.npz", allow_pickle=False) as z:
        assert json.loads(str(z["meta"]))["first_root"] == {
            "tiny_cpu": "algebraic model's pelvis", "tiny_cpu_vol": "box centres", "tiny_cpu_ransac": None}[name]
        kp = z["keypoints_3d"].astype(np.float64)
        assert kp.shape == (1, 17, 3) and np.isfinite(kp).all()
        if name != "tiny_cpu_ransac":  # the cuboid ends on the network's pelvis (or after 5 passes)
            assert np.isfinite(z["root"]).all() and (z["passes"] >= 1).all()
            done = z["passes"] < 5
            assert np.all(np.linalg.norm(kp[done, SK.root] - z["root"][done], axis=-1) < 5.0)
        else:
            assert np.isnan(z["root"]).all() and (z["passes"] == 1).all()
        np.testing.assert_allclose(z["keypoints_2d"][0, 1], pixels(cams[1], kp[0]), rtol=1e-4, atol=1e-2)


def test_ctrl_c_keeps_the_frames_done_and_a_view_of_mixed_sizes_fails(scene, tmp_path):
    tmp, cams = scene
    est = MultiViewEstimator(MarkerNet(), "algebraic", SK, CROP)
    request = MultiViewRequest([tmp / f"cam{v}" for v in range(4)], tmp / "rig.json", tmp_path / "stopped",
                               detections=tmp / "boxes.json", frames_per_batch=1)
    (tmp_path / "stopped").mkdir()

    def progress(done, total, seconds):
        assert total == 3
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_infer_multiview(request, est, progress=progress)
    with np.load(tmp_path / "stopped" / "predictions.npz", allow_pickle=False) as z:
        assert json.loads(str(z["meta"]))["interrupted"] is True
        assert z["frame_index"].tolist() == [0, 1]
        np.testing.assert_allclose(z["keypoints_3d"][1, :3], MARKERS[1], atol=1.0)
    # a view whose images differ in size: one line naming the image, nothing written
    views = []
    for v in range(2):
        views.append(tmp_path / f"v{v}")
        views[-1].mkdir()
        for f in range(2):
            cv2.imwrite(str(views[-1] / f"{f}.png"), np.zeros((100, 120 if (v, f) == (1, 1) else 100, 3), np.uint8))
    write_calibration(tmp_path / "two.json", cams[:2])
    request = MultiViewRequest(views, tmp_path / "two.json", tmp_path / "mixed", box=np.array([10.0, 10, 50, 50]))
    with pytest.raises(DataError, match=r"v1/1.png: frame 1 is 120x100, the view's first frame 100x100"):
        run_infer_multiview(request, est)
    assert not (tmp_path / "mixed" / "predictions.npz").exists()


@pytest.mark.parametrize("extra,expected", [
    (["--config", "configs/tiny_cpu_alg.yaml", "--checkpoint", "{tmp}/alg.pt"], "has no cuboid to centre"),
    (["--root-config", "configs/tiny_cpu_vol.yaml", "--root-checkpoint", "{tmp}/tiny_cpu_vol.pt"],
     "the root model is an algebraic or ransac model"),
])
def test_a_root_model_that_cannot_act_is_refused(tiny, extra, expected):
    tmp, cams = tiny
    cfg = load_config(REPO / "configs" / "tiny_cpu_vol.yaml")
    torch.manual_seed(0)
    torch.save(build_model(cfg).state_dict(), tmp / "tiny_cpu_vol.pt")
    out = tmp / f"root_{extra[0]}"
    args = ["--config", "configs/tiny_cpu_vol.yaml", "--checkpoint", str(tmp / "tiny_cpu_vol.pt"),
            "--root-config", "configs/tiny_cpu_alg.yaml", "--root-checkpoint", str(tmp / "alg.pt"),
            *(a.replace("{tmp}", str(tmp)) for a in extra)]
    r = run_in_process("infer", *(str(tmp / f"c{v}.mp4") for v in range(3)), "--calibration", str(tmp / "rig.json"),
                       "--box", "36,8,24,64", "--out", str(out), "--device", "cpu", *args, cwd=REPO)
    assert r.returncode != 0 and expected in r.stderr and "Traceback" not in r.stderr
    assert not (out / "predictions.npz").exists()


def test_root_config_needs_calibration(tiny):
    tmp, _ = tiny
    r = run_in_process("infer", str(tmp / "c0.mp4"), "--config", "configs/tiny_cpu_vol.yaml", "--checkpoint",
                       str(tmp / "x.pt"), "--box", "36,8,24,64", "--root-config", "configs/tiny_cpu_alg.yaml",
                       "--out", str(tmp / "nocal"), cwd=REPO)
    assert r.returncode != 0 and "--root-config/--root-checkpoint: only with --calibration" in r.stderr
