"""The monocular assumptions of ``ctxpose infer``: default camera, upright world, RootNet and bone-length roots."""

import math

import cv2
import numpy as np
import pytest

from ctxpose.data.mpi_inf_3dhp.dataset import WORLD_TO_CAMERA
from ctxpose.geometry.monocular import (
    back_project,
    bone_length_depth,
    intrinsics_from_fov,
    rootnet_depth,
    upright_rotation,
)
from ctxpose.skeleton import get_skeleton


def test_no_pitch_is_the_3dhp_upright_camera_and_pitch_looks_down():
    np.testing.assert_allclose(upright_rotation(0.0), WORLD_TO_CAMERA, atol=1e-12)
    R = upright_rotation(30.0)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    axis = R.T @ [0, 0, 1]  # optical axis in the world
    np.testing.assert_allclose(axis, [0, math.cos(math.radians(30)), -math.sin(math.radians(30))], atol=1e-12)
    np.testing.assert_allclose(R.T @ [1, 0, 0], [1, 0, 0], atol=1e-12)  # no roll: camera x stays horizontal


def test_fov_puts_the_edge_ray_on_the_image_border():
    K = intrinsics_from_fov((480, 640), 60.0)
    ray = np.array([[math.tan(math.radians(30)), 0.0, 1.0]])
    uv, _ = cv2.projectPoints(ray, np.zeros(3), np.zeros(3), K, None)
    assert uv[0, 0, 0] == pytest.approx(639.5, abs=1e-9)  # the right border (pixel centres at integers)
    assert K[0, 2] == pytest.approx(319.5) and K[1, 2] == pytest.approx(239.5) and K[0, 0] == K[1, 1]
    with pytest.raises(ValueError):
        intrinsics_from_fov((480, 640), 180.0)


def test_rootnet_depth_of_a_person_its_constants_describe():
    f, z = 1000.0, 4200.0
    side_px = 1600.0 * f / z  # a person whose box, grown by 1.25, is 2000 mm
    assert rootnet_depth(np.array([side_px * 0.4, side_px]), f, f) == pytest.approx(z)
    assert rootnet_depth(np.array([[side_px, 1.0]]), f, 2 * f)[0] == pytest.approx(z * math.sqrt(2))


def test_back_project_inverts_opencv_projection():
    K = np.array([[900.0, 0, 310], [0, 920.0, 250], [0, 0, 1]])
    pts = np.array([[100.0, -200, 3000], [-500, 300, 5500]])
    uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, None)
    np.testing.assert_allclose(back_project(uv[:, 0], K, pts[:, 2]), pts, atol=1e-6)


def test_bone_length_depth_recovers_the_depth_of_a_pose_with_the_prior_lengths():
    sk = get_skeleton("contextpose17")
    rng = np.random.default_rng(0)
    pose = rng.normal(size=(sk.num_joints, 3)) * 250  # any pose; the prior is its own bone lengths
    bones = np.array(sk.bones)
    mean = np.linalg.norm(pose[bones[:, 0]] - pose[bones[:, 1]], axis=-1)
    K = np.array([[1100.0, 0, 500], [0, 1100.0, 500], [0, 0, 1]])
    depths = [2500.0, 4321.0, 9000.0]
    uvs, rels = [], []
    for z in depths:
        cam = pose - pose[sk.root] + [200.0, -100.0, z]
        uv, _ = cv2.projectPoints(cam, np.zeros(3), np.zeros(3), K, None)
        uvs.append(uv[:, 0])
        rels.append(cam[:, 2] - cam[sk.root, 2])
    got = bone_length_depth(np.stack(uvs), K, np.stack(rels), bones, mean, np.full(len(mean), 10.0))
    np.testing.assert_allclose(got, depths, atol=0.5)
