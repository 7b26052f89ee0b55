"""The infer engine: crops, cameras, world and root search with a stand-in network whose answer is known, then
the real tiny network end to end through the command (files read back with numpy/json/OpenCV)."""

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from ctxpose.config import load_config
from ctxpose.engine.infer import InferOptions, InferRequest, Intrinsics, PoseEstimator, estimate_poses, run_infer
from ctxpose.geometry.monocular import ROOTNET_PERSON_SIZE_MM, upright_rotation
from ctxpose.models.build import build_model
from ctxpose.skeleton import LimbPrior, get_skeleton
from tests.cli.in_process import run_in_process

REPO = Path(__file__).parents[2]


def _torchvision_detection():
    """torchvision's detection models, or None where torchvision is missing or cannot load beside this torch
    (PyPI's wheels beside the CPU build: "operator torchvision::nms does not exist")."""
    try:
        import torchvision.models.detection as detection
    except Exception:  # noqa: BLE001 - as ctxpose.engine.detector treats it
        return None
    return detection


TORCHVISION = _torchvision_detection()
SK = get_skeleton("contextpose17")


def true_pose_camera() -> np.ndarray:
    rng = np.random.default_rng(1)
    pose = rng.normal(size=(SK.num_joints, 3)) * 200
    return pose - pose[SK.root] + [150.0, 80.0, 3500.0]  # camera frame mm


@dataclass
class Out:
    keypoints_3d: torch.Tensor


class PerfectNet(torch.nn.Module):
    """Answers the true pose (world frame of the call) whatever the cuboid; records what it was given."""

    def __init__(self, pose_world: np.ndarray) -> None:
        super().__init__()
        self.skeleton = SK
        self.pose = torch.as_tensor(pose_world, dtype=torch.float64)
        self.calls = []

    def forward(self, images, proj, roots, angles):
        self.calls.append((images.clone(), proj.clone(), roots.clone()))
        return Out(self.pose.expand(len(roots), -1, -1).float())


def stand_in(pitch: float, image_hw=(240, 320)):
    pose_cam = true_pose_camera()
    R = upright_rotation(pitch)
    net = PerfectNet(pose_cam @ R)  # x_world = R^T x_cam
    bones = np.array(SK.bones)
    lengths = np.linalg.norm(pose_cam[bones[:, 0]] - pose_cam[bones[:, 1]], axis=-1)
    est = PoseEstimator(net, lengths, np.full(len(lengths), 10.0), (64, 64))
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    dist = np.array([-0.1, 0.02, 0.0, 0.0, 0.0])
    uv, _ = cv2.projectPoints(pose_cam, np.zeros(3), np.zeros(3), K, dist)
    lo, hi = uv[:, 0].min(0) - 10, uv[:, 0].max(0) + 10
    box = np.array([*lo, *(hi - lo)])
    frame = np.zeros((*image_hw, 3), np.uint8)
    return est, net, pose_cam, Intrinsics(K, dist), box, frame


@pytest.mark.parametrize("method,passes", [("network", 2), ("bones", 2), ("box", 1)])
def test_root_search_with_a_network_that_knows_the_answer(method, passes):
    est, net, pose_cam, intr, box, frame = stand_in(pitch=20.0)
    person = estimate_poses(est, [frame], [[box]], intr, InferOptions(root_method=method, pitch=20.0))[0][0]
    np.testing.assert_allclose(person.keypoints_3d, pose_cam, atol=0.05)  # world -> camera undone exactly
    np.testing.assert_allclose(person.keypoints_3d_relative, pose_cam - pose_cam[SK.root], atol=0.05)
    uv, _ = cv2.projectPoints(pose_cam, np.zeros(3), np.zeros(3), intr.K, intr.dist)
    np.testing.assert_allclose(person.keypoints_2d, uv[:, 0], atol=0.01)  # with the lens distortion
    assert person.passes == passes == len(net.calls)
    if method != "box":  # re-centred on the (right) pelvis, where it stays
        np.testing.assert_allclose(person.root, pose_cam[SK.root], atol=0.5)
        np.testing.assert_allclose(net.calls[-1][2][0].double().numpy(), pose_cam[SK.root] @ upright_rotation(20.0),
                                   atol=0.5)


def test_rootnet_root_is_on_the_pelvis_ray_at_the_box_depth():
    est, net, pose_cam, intr, box, frame = stand_in(pitch=0.0)
    options = InferOptions(root_method="rootnet", person_size_mm=ROOTNET_PERSON_SIZE_MM)  # RootNet's 2000x2000 mm
    person = estimate_poses(est, [frame], [[box]], intr, options)[0][0]
    ray = pose_cam[SK.root] / np.linalg.norm(pose_cam[SK.root])
    np.testing.assert_allclose(person.root / np.linalg.norm(person.root), ray, atol=1e-6)
    side = max(box[2:]) * 1.25
    assert person.root[2] == pytest.approx(2000.0 * 300.0 / side, rel=1e-6)
    assert person.passes == 2  # moved from the box centre onto the pelvis ray, then stayed
    np.testing.assert_allclose(net.calls[-1][2][0].double().numpy(), person.root @ upright_rotation(0.0),
                               atol=1e-3)  # the written root is the one the last pass ran with (world frame)


def test_crop_and_its_projection_matrix_agree_with_the_full_frame():
    """A bright dot drawn where a 3D point projects in the (distorted) frame appears in the crop where the
    projection matrix handed to the network puts it."""
    est, net, pose_cam, intr, box, _ = stand_in(pitch=15.0)
    point = pose_cam[3]
    uv, _ = cv2.projectPoints(point[None], np.zeros(3), np.zeros(3), intr.K, intr.dist)
    frame = np.zeros((240, 320, 3), np.uint8)
    cv2.circle(frame, tuple(int(round(v * 16)) for v in uv[0, 0]), 3 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
    estimate_poses(est, [frame], [[box]], intr, InferOptions(root_method="box", pitch=15.0))
    images, proj, _ = net.calls[0]
    crop = images[0, 0].numpy().sum(0)  # normalised; the dot is the bright place
    weight = np.clip(crop - crop.min(), 0, None)
    yx = [(weight * g).sum() / weight.sum() for g in np.mgrid[: crop.shape[0], : crop.shape[1]]]
    world = point @ upright_rotation(15.0)
    h = proj[0, 0].double().numpy() @ np.append(world, 1.0)
    assert np.hypot(h[0] / h[2] - yx[1], h[1] / h[2] - yx[0]) < 0.5


def test_3d_view_shows_world_up_as_up():
    from ctxpose.viz.infer import view_3d
    from ctxpose.viz.style import COLORS, Style, joint_side

    left = next(j for j, n in enumerate(SK.names) if joint_side(n) == "left")
    right = next(j for j, n in enumerate(SK.names) if joint_side(n) == "right")
    pose = np.full((SK.num_joints, 3), np.nan)
    pose[left], pose[right] = [0.0, 0.0, 0.0], [0.0, 0.0, 1000.0]  # the right joint 1 m higher
    image = view_3d([pose], SK, 128, Style(size=128, outline=0))
    rows = [np.argwhere((image == COLORS["pred"][side]).all(-1))[:, 0].mean() for side in ("left", "right")]
    assert rows[1] < rows[0] - 30  # higher in the world: higher in the picture


def test_camera_choices_and_conflicts():
    intr = Intrinsics.choose((480, 640))
    assert "default: 60 deg" in intr.assumption and intr.K[0, 2] == pytest.approx(319.5)
    assert Intrinsics.choose((480, 640), focal=700).K[0, 0] == 700
    from ctxpose.errors import ConfigError

    with pytest.raises(ConfigError, match="--focal, --fov: give one"):
        Intrinsics.choose((480, 640), focal=700, fov=50)


# ---------------------------------------------------------------------------------------------- the real network


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("infer")
    limbs = tmp / "limbs.h5"
    with h5py.File(limbs, "w") as f:
        f["mean"] = np.linspace(100, 400, 16)
        f["std"] = np.linspace(5, 20, 16)
    cfg_path = tmp / "tiny.yaml"
    cfg_path.write_text((REPO / "configs" / "tiny_cpu.yaml").read_text().replace(
        "ctxpose-demo/processed/mean_and_std_limb_length.h5", str(limbs)))
    cfg = load_config(cfg_path)
    torch.manual_seed(0)
    model = build_model(cfg, LimbPrior(torch.linspace(100, 400, 16), torch.linspace(5, 20, 16)))
    torch.save(model.state_dict(), tmp / "tiny.pt")
    video = tmp / "walk.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 80))
    for i in range(3):
        frame = np.full((80, 96, 3), 40, np.uint8)
        cv2.rectangle(frame, (30 + 2 * i, 10), (50 + 2 * i, 70), (200, 180, 160), -1)
        writer.write(frame)
    writer.release()
    coco = [{"image_id": i, "bbox": [28 + 2 * i, 8, 24, 64], "score": 0.9} for i in (0, 2)]
    coco.append({"image_id": 1, "bbox": [28, 8, 24, 64], "score": 0.1})  # below --min-score: frame 1 is empty
    (tmp / "boxes.json").write_text(json.dumps(coco))
    return tmp, cfg_path, video


def test_command_writes_npz_and_jsonl_with_empty_frames(tiny):
    tmp, cfg, video = tiny
    out = tmp / "out"
    r = run_in_process("infer", str(video), "--config", str(cfg), "--checkpoint", str(tmp / "tiny.pt"),
                       "--boxes", str(tmp / "boxes.json"), "--fov", "50", "--smooth", "1", "--render",
                       "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "50 deg horizontal field of view" in " ".join(r.stdout.split())
    with np.load(out / "predictions.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert z["frame"].tolist() == [0, 2] and z["frame_index"].tolist() == [0, 1, 2]
        assert z["frame_people"].tolist() == [1, 0, 1]
        assert z["track_id"].tolist() == [0, 0]  # the same person across the empty frame
        kp, rel = z["keypoints_3d"], z["keypoints_3d_relative"]
        assert kp.shape == (2, 17, 3) and np.isfinite(kp).all()
        np.testing.assert_allclose(rel, kp - kp[:, 6:7], atol=1e-3)
        uv, _ = cv2.projectPoints(kp[0].astype(np.float64), np.zeros(3), np.zeros(3), z["K"][0].astype(np.float64),
                                  None)
        np.testing.assert_allclose(z["keypoints_2d"][0], uv[:, 0], atol=1e-2)
        np.testing.assert_allclose(z["time"], [0.0, 0.2], atol=1e-6)
        assert z["keypoints_3d_smooth"].shape == kp.shape
        assert set(z["root_method"].tolist()) == {"rootnet"}
    assert meta["joint_names"][6] == "pelvis" and meta["sources"] == [str(video)]
    from ctxpose.data.predictions_npz import load_predictions

    back = load_predictions(out / "predictions.npz", ("keypoints_3d", "frame_people"), kind="infer")  # the one loader
    np.testing.assert_array_equal(back["keypoints_3d"], kp)
    cap = cv2.VideoCapture(str(out / "render" / "walk.mp4"))  # the render, read back by OpenCV
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 562  # the 96x80 frame at 307x256 + a 256 px 3D view, even
    cap.release()
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [len(x["people"]) for x in lines] == [1, 0, 1]
    np.testing.assert_allclose(lines[2]["people"][0]["keypoints_3d"], kp[1], atol=1e-3)


@pytest.mark.parametrize("extra,expected", [
    (["--camera", "{tmp}/bad.json"], "bad.json: expected keys fx, fy, cx, cy"),
    (["--box", "500,500,10,10"], "is outside the 96x80 image"),
    (["--box", "1,1,10,10", "--boxes", "{tmp}/boxes.json"], "give one of"),
    (["--box", "1,1,10,10", "--set", "model.backbone.num_layers=34"], "tiny.pt"),
    (["--detector", "builtin"], "torchvision" if TORCHVISION is None else "no weights at"),
])
def test_bad_inputs_fail_in_one_line_and_write_nothing(tiny, extra, expected):
    tmp, cfg, video = tiny
    (tmp / "bad.json").write_text(json.dumps({"f": 1}))
    out = tmp / f"bad_{abs(hash(tuple(extra)))}"
    args = [a.replace("{tmp}", str(tmp)) for a in extra]
    if "--boxes" not in args and "--box" not in args and "--detector" not in args:
        args += ["--box", "20,5,40,70"]
    r = run_in_process("infer", str(video), "--config", str(cfg), "--checkpoint", str(tmp / "tiny.pt"),
                       "--out", str(out), "--device", "cpu", *args)
    assert r.returncode != 0
    assert expected in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    assert not (out / "predictions.npz").exists()


def test_a_truncated_video_fails_and_ctrl_c_keeps_finished_inputs(tiny):
    tmp, cfg_path, video = tiny
    est = PoseEstimator.from_config(load_config(cfg_path), tmp / "tiny.pt")
    cut = tmp / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    from ctxpose.errors import DataError

    with pytest.raises(DataError, match="cut.mp4"):
        run_infer(InferRequest([cut], tmp / "cut_out", box=np.array([20.0, 5, 40, 70])), est, InferOptions())
    assert not (tmp / "cut_out" / "predictions.npz").exists()

    second = tmp / "second.mp4"
    second.write_bytes(video.read_bytes())

    def progress(name, done, total, seconds):
        if name == "second.mp4":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_infer(InferRequest([video, second], tmp / "stopped", box=np.array([20.0, 5, 40, 70])), est,
                  InferOptions(), progress)
    with np.load(tmp / "stopped" / "predictions.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["interrupted"] and meta["finished_sources"] == [0]
        assert z["source"].tolist()[:3] == [0, 0, 0]


def test_builtin_detector_downloaded_from_a_local_server_runs_in_the_command(tiny, tmp_path, httpserver,
                                                                             monkeypatch):
    """An untrained torchvision Faster R-CNN state dict served on 127.0.0.1 is downloaded, prefix-checked and
    pinned by fetch-weights (a registry naming its digest's prefix: the shipped one names the COCO file's), found
    by `ctxpose infer --detector builtin` under the data root and run on a video; the file read back by numpy.
    Skipped where torchvision cannot be imported (this project's CPU CI; the refusal is tested above)."""
    if TORCHVISION is None:
        pytest.skip("torchvision is not installed or cannot load beside this torch")
    tv = TORCHVISION
    import hashlib

    from ctxpose.weights import fetch as F
    from ctxpose.weights.http import HttpSettings
    from ctxpose.weights.registry import load_registry, parse_registry
    from tests.unit.weights_fixtures import registry_toml

    torch.manual_seed(0)
    model = tv.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=91)
    with torch.no_grad():  # untrained, but every region proposal scores as a person (class 1), boxes unchanged
        predictor = model.roi_heads.box_predictor
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.copy_(torch.eye(91)[1] * 10)
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
    torch.save(model.state_dict(), tmp_path / "det.pth")
    data = (tmp_path / "det.pth").read_bytes()
    httpserver.expect_request("/det.pth").respond_with_data(data)
    dest = load_registry().get("person-detector").dest  # where the shipped entry puts it
    entry = {"name": "person-detector", "kind": "detector", "dest": dest, "urls": [httpserver.url_for("/det.pth")],
             "sha256_prefix": hashlib.sha256(data).hexdigest()[:8]}
    root = tmp_path / "data"
    [got] = F.fetch(F.FetchOptions(root=root, registry=parse_registry(registry_toml([entry])),
                                   settings=HttpSettings(read_timeout=10, retries=0)), ["person-detector"])
    assert got.ok and got.action == "downloaded", got.detail
    monkeypatch.setenv("CTXPOSE_DATA", str(root))  # the command finds the fetched file by itself
    tmp, cfg, video = tiny
    r = run_in_process("infer", str(video), "--config", str(cfg), "--checkpoint", str(tmp / "tiny.pt"), "--detector",
                       "builtin", "--min-score", "0", "--root", "box", "--out", str(tmp_path / "out"), "--device",
                       "cpu")
    assert r.returncode == 0, r.stderr + r.stdout
    with np.load(tmp_path / "out" / "predictions.npz", allow_pickle=False) as z:
        assert z["frame_index"].tolist() == [0, 1, 2] and z["frame_people"].sum() == len(z["frame"]) > 0
        assert np.all((z["score"] >= 0) & (z["score"] <= 1)) and np.isfinite(z["keypoints_3d"]).all()
        boxes = z["box"]
        assert np.all(boxes[:, 2:] > 0) and np.all(boxes[:, :2] >= 0)  # x, y, w, h inside the 96x80 frame
        assert np.all(boxes[:, 0] + boxes[:, 2] <= 96 + 1e-3) and np.all(boxes[:, 1] + boxes[:, 3] <= 80 + 1e-3)


def test_a_folder_of_images_with_render_pngs(tiny):
    tmp, cfg_path, _ = tiny
    folder = tmp / "photos"
    folder.mkdir()
    for name in ("b.jpg", "a.png"):
        image = np.full((80, 96, 3), 60, np.uint8)
        cv2.rectangle(image, (30, 10), (50, 70), (200, 180, 160), -1)
        cv2.imwrite(str(folder / name), image)
    est = PoseEstimator.from_config(load_config(cfg_path), tmp / "tiny.pt")
    summary = run_infer(InferRequest([folder], tmp / "photos_out", box=np.array([20.0, 5, 40, 70]), render=True),
                        est, InferOptions(root_method="box"))
    assert summary.frames == 2 and summary.people == 2
    for stem in ("a", "b"):
        png = cv2.imread(str(tmp / "photos_out" / "render" / f"{stem}.png"))
        assert png is not None and png.shape[0] == 256
    with np.load(tmp / "photos_out" / "predictions.npz", allow_pickle=False) as z:
        assert z["frame"].tolist() == [0, 1] and z["track_id"].tolist() == [0, 1]  # images are not tracked
        assert z["time"].tolist() == [0.0, 0.0] and set(z["passes"].tolist()) == {1}
