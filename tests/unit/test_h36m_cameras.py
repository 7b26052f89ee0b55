"""Packaged Human3.6M cameras and the cameras.h5 override, against real projections from the dataset."""

from __future__ import annotations

import importlib.util
import json
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ctxpose.data.h36m.cameras import CAMERA_IDS, image_size, load_h36m_cameras
from ctxpose.errors import DataError
from ctxpose.geometry.cameras import Camera, camera_to_pixels

REPO = Path(__file__).parents[2]
#: The camera facts these tests read, copied from the project's collected facts (see its "source" field).
CAMERA_FACTS = REPO / "tests" / "data" / "h36m_camera_facts.json"
SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")


@pytest.fixture(scope="module")
def facts() -> dict:
    return json.loads(CAMERA_FACTS.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cameras() -> dict[tuple[str, str], Camera]:
    return load_h36m_cameras()


def test_packaged_cameras_complete_and_valid(cameras: dict[tuple[str, str], Camera]) -> None:
    assert set(cameras) == {(s, c) for s in SUBJECTS for c in CAMERA_IDS}
    for (_, camera_id), camera in cameras.items():
        assert camera.name == camera_id and camera.dist_model == "h36m"
        np.testing.assert_allclose(camera.R @ camera.R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(camera.R) > 0
        assert 4000 < np.linalg.norm(camera.t) < 7000  # cameras are 4-7 m from the origin, in mm
        assert camera.K[2, 2] == 1 and camera.K[0, 1] == 0


def test_packaged_file_is_what_the_tool_writes(facts: dict) -> None:
    """Guards against hand edits: tools/make_h36m_cameras.py regenerates the packaged file exactly."""
    spec = importlib.util.spec_from_file_location("make_h36m_cameras", REPO / "tools" / "make_h36m_cameras.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    packaged = json.loads(resources.files("ctxpose").joinpath("resources/h36m_cameras.json").read_text("utf-8"))
    assert tool.build(facts) == packaged


def _quaternion_to_matrix(q: list[float]) -> np.ndarray:
    """Rotation of the unit quaternion (w, x, y, z), written element by element."""
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def test_packaged_cameras_agree_with_videopose3d_float32_parameters(
    facts: dict, cameras: dict[tuple[str, str], Camera]
) -> None:
    """An independent copy (VideoPose3D quaternions and float32 intrinsics) within its float32 precision."""
    for (subject, camera_id), camera in cameras.items():
        vp_intr = facts["intrinsics"][camera_id]
        vp_extr = facts["extrinsics"][subject][camera_id]
        # VideoPose3D orientation is camera->world.
        np.testing.assert_allclose(camera.R, _quaternion_to_matrix(vp_extr["orientation"]).T, atol=1e-6)
        np.testing.assert_allclose(camera.center, vp_extr["translation"], atol=1e-3)  # mm, float32 of ~5e3
        np.testing.assert_allclose(np.diag(camera.K)[:2], vp_intr["focal_length"], atol=1e-4)
        np.testing.assert_allclose(camera.K[:2, 2], vp_intr["center"], atol=1e-4)
        k1, k2, p1, p2, k3 = camera.dist
        np.testing.assert_allclose([k1, k2, k3], vp_intr["radial_distortion"], atol=1e-7)
        np.testing.assert_allclose([p2, p1], vp_intr["tangential_distortion"], atol=1e-7)  # stored reversed


def test_test_vector_projection(facts: dict, cameras: dict[tuple[str, str], Camera]) -> None:
    world = np.array(facts["test_vector"]["world_mm"])
    for camera_id, expected in facts["test_vector"]["S1"].items():
        camera = cameras[("S1", camera_id)]
        cam_frame = world @ camera.R.T + camera.t
        np.testing.assert_allclose(cam_frame, expected["cam_frame_mm"], rtol=0, atol=1e-6)
        # Both sides in float64 from the same w0 numbers: agreement to round-off.
        np.testing.assert_allclose(camera.project(world), expected["pixels"], rtol=0, atol=1e-6)
        pixels_t = camera.project(torch.from_numpy(world))
        torch.testing.assert_close(pixels_t, torch.tensor(expected["pixels"], dtype=torch.float64))
        # Without distortion the projection is off by pixels (so the test above checks the distortion).
        assert np.abs(camera.project(world, distort=False) - np.array(expected["pixels"])).max() > 1.0


def test_real_projection_samples(facts: dict, cameras: dict[tuple[str, str], Camera]) -> None:
    """D3_Positions_mono (camera frame) -> D2_Positions (pixels) of real frames, stored as float32."""
    samples = facts["real_projection_samples"]["samples"]
    assert len(samples) >= 4
    for sample in samples:
        camera = cameras[(sample["subject"], sample["camera"])]
        points_cam = np.array(sample["joints_h36m17_cam_frame_mm"])
        expected = np.array(sample["joints_h36m17_pixels"])
        pixels = camera_to_pixels(points_cam, camera.K, camera.dist, model=camera.dist_model)
        # Inputs were stored as float32 (0.1 mm, 3e-5 px resolution): 1e-3 px is their precision.
        np.testing.assert_allclose(pixels, expected, rtol=0, atol=1e-3)
        # Reading the same coefficients with OpenCV's model is off by > 0.05 px: the model matters.
        as_opencv = camera_to_pixels(points_cam, camera.K, camera.dist, model="opencv")
        assert np.abs(as_opencv - expected).max() > 0.05


def test_image_size() -> None:
    assert image_size("S1", "54138969") == (1002, 1000)
    assert image_size("S1", "55011271") == (1000, 1000)
    assert image_size("S9", "60457274") == (1002, 1000)
    assert image_size("S7", "55011271") == (1002, 1000)  # metadata.xml: all S7 cameras have 1002 rows
    with pytest.raises(DataError, match="S2"):
        image_size("S2", "54138969")
    with pytest.raises(DataError, match="12345"):
        image_size("S1", "12345")


def _write_una_dinosauria_h5(path: Path, cameras: dict[tuple[str, str], Camera]) -> None:
    """cameras.h5 as MATLAB wrote it: R transposed, T = centre (3,1), column vectors, Name as ASCII codes."""
    with h5py.File(path, "w") as h5:
        for (subject, camera_id), camera in cameras.items():
            group = h5.create_group(f"subject{subject[1:]}/camera{CAMERA_IDS.index(camera_id) + 1}")
            k1, k2, p1, p2, k3 = camera.dist
            group["R"] = camera.R.T
            group["T"] = camera.center.reshape(3, 1)
            group["f"] = np.diag(camera.K)[:2].reshape(2, 1)
            group["c"] = camera.K[:2, 2].reshape(2, 1)
            group["k"] = np.array([[k1], [k2], [k3]])
            group["p"] = np.array([[p1], [p2]])
            group["Name"] = np.array([[float(ord(ch))] for ch in camera_id])
        h5["3dtest"] = np.zeros((96, 1))


def test_cameras_h5_override_round_trip(tmp_path: Path, cameras: dict[tuple[str, str], Camera]) -> None:
    path = tmp_path / "cameras.h5"
    _write_una_dinosauria_h5(path, cameras)
    loaded = load_h36m_cameras(path)
    assert set(loaded) == set(cameras)
    for key, camera in cameras.items():
        assert loaded[key].allclose(camera, rtol=0, atol=1e-9), key

    # The file's values are really used: change one focal length.
    with h5py.File(path, "r+") as h5:
        h5["subject9/camera2/f"][0, 0] = 1000.0
    changed = load_h36m_cameras(path)
    assert changed[("S9", "55011271")].K[0, 0] == 1000.0
    assert changed[("S9", "54138969")].allclose(cameras[("S9", "54138969")])


def test_cameras_h5_errors_name_file_and_key(tmp_path: Path, cameras: dict[tuple[str, str], Camera]) -> None:
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"this is not an HDF5 file\n" * 10)
    with pytest.raises(DataError, match="corrupt.h5"):
        load_h36m_cameras(corrupt)
    with pytest.raises(DataError, match="missing.h5"):
        load_h36m_cameras(tmp_path / "missing.h5")

    path = tmp_path / "cameras.h5"
    _write_una_dinosauria_h5(path, cameras)
    with h5py.File(path, "r+") as h5:
        del h5["subject11/camera3"]
    with pytest.raises(DataError, match=r"cameras\.h5.*subject11/camera3"):
        load_h36m_cameras(path)

    _write_una_dinosauria_h5(path, cameras)
    with h5py.File(path, "r+") as h5:
        del h5["subject5/camera1/k"]
        h5["subject5/camera1/k"] = np.zeros((2, 1))
    with pytest.raises(DataError, match=r"subject5/camera1/k.*shape"):
        load_h36m_cameras(path)

    _write_una_dinosauria_h5(path, cameras)
    with h5py.File(path, "r+") as h5:
        h5["subject1/camera1/Name"][0, 0] = float(ord("9"))
    with pytest.raises(DataError, match=r"subject1/camera1/Name"):
        load_h36m_cameras(path)
