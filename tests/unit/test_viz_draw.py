"""2D overlays: projected joints land where a hand-written pinhole puts them, in the colour their name says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctxpose.errors import ConfigError
from ctxpose.geometry import projection_matrix
from ctxpose.skeleton import Skeleton
from ctxpose.viz import draw
from ctxpose.viz.style import COLORS, Style, bone_sides, joint_sides
from tests.unit.viz_fixtures import CROP, POSE, SK, K, facing_camera, joint_rgb, pixel, reference_project

SIZE = 384
SCALE = SIZE / CROP


def _overlay(points: np.ndarray, role: str = "pred", side: str = "front", **style) -> np.ndarray:
    R, t = facing_camera(side)
    crop = np.full((CROP, CROP, 3), 90, np.uint8)
    return draw.skeleton_overlay(crop, projection_matrix(K, R, t), [(points, role)], SK, Style(size=SIZE, **style))


@pytest.mark.parametrize("side", ["front", "back"])
@pytest.mark.parametrize("role", ["pred", "gt"])
def test_projected_joints_have_their_side_colour_where_the_pinhole_puts_them(side: str, role: str) -> None:
    image = _overlay(POSE, role, side)
    R, t = facing_camera(side)
    uv = (reference_project(POSE, K, R, t) + 0.5) * SCALE - 0.5  # crop px -> the 384-pixel tile
    assert image.shape == (SIZE, SIZE, 3)
    for j, p in enumerate(uv):
        assert pixel(image, p) == joint_rgb(j, role), SK.names[j]
    # the mirror image of each off-centre joint does not carry its colour: a flipped axis or a left/right swap fails
    for j, p in enumerate(uv):
        if joint_sides(SK)[j] != "centre":
            assert pixel(image, np.array([SIZE - 1 - p[0], p[1]])) != joint_rgb(j, role), SK.names[j]
    # seen from the back, the figure's left joints (+x) are on the image's left
    left_u = uv[[j for j, s in enumerate(joint_sides(SK)) if s == "left"], 0].mean()
    assert (left_u > SIZE / 2) == (side == "front")


def test_non_finite_or_invalid_joints_and_their_bones_are_not_drawn() -> None:
    full = _overlay(POSE)
    hidden = POSE.copy()
    head = SK.names.index("head")
    hidden[head] = np.nan
    nan_image = _overlay(hidden)
    R, t = facing_camera()
    uv_head = (reference_project(POSE[[head]], K, R, t)[0] + 0.5) * SCALE - 0.5
    assert pixel(full, uv_head) == joint_rgb(head, "pred")
    assert pixel(nan_image, uv_head) == (90, 90, 90)  # background: neither the joint nor its bone to the nose
    crop = np.full((CROP, CROP, 3), 90, np.uint8)
    validity = np.ones(SK.num_joints)
    validity[head] = 0
    invalid = draw.skeleton_overlay(crop, projection_matrix(K, *facing_camera()), [(POSE, "pred")], SK,
                                    Style(size=SIZE), validity)
    np.testing.assert_array_equal(invalid, nan_image)


def test_project_marks_unprojectable_points_nan() -> None:
    P = projection_matrix(K, *facing_camera())
    points = np.stack([POSE[0], [np.nan, 0.0, 0.0], [0.0, -5000.0, 900.0]])  # the last is the camera centre
    uv = draw.project(points, P)
    np.testing.assert_allclose(uv[0], reference_project(POSE[:1], K, *facing_camera())[0])
    assert np.isnan(uv[1:]).all()


def test_sizes_are_configurable() -> None:
    thin = _overlay(POSE, line_width=1, joint_radius=2)
    thick = _overlay(POSE, line_width=6, joint_radius=8)
    colours = [np.array(c) for role in COLORS.values() for c in role.values()]

    def coloured(image: np.ndarray) -> int:
        return int(sum((np.abs(image.astype(int) - c).sum(-1) == 0).sum() for c in colours))

    assert coloured(thick) > 2.5 * coloured(thin)
    assert Style(size=768).lw == 2 * Style(size=384).lw  # defaults scale with the tile
    for bad in ({"size": 32}, {"line_width": 0}, {"font_scale": -1.0}):
        with pytest.raises(ConfigError):
            Style(**bad)


def test_sides_come_from_joint_names() -> None:
    sk = Skeleton("t", ("Head", "l_knee", "LeftFoot_x", "right_toe", "r_hip", "spine"),
                  ((0, 5), (5, 1), (1, 2), (5, 4), (4, 3), (1, 4)), 5, (), tuple(range(6)))
    assert joint_sides(sk) == ["centre", "left", "centre", "right", "right", "centre"]
    assert bone_sides(sk) == ["centre", "left", "left", "right", "right", "centre"]  # l-r bone: centre
    assert joint_sides(SK).count("left") == joint_sides(SK).count("right") == 6


def test_resize_and_point_scaling_agree() -> None:
    image = np.zeros((10, 20, 3), np.uint8)
    image[3, 7] = 255
    big, scale = draw.resize_image(image, 40)
    assert big.shape == (40, 80, 3) and scale == (4.0, 4.0)
    y, x = np.unravel_index(big[..., 0].argmax(), big.shape[:2])
    u, v = draw.scale_points(np.array([7.0, 3.0]), scale)
    assert abs(x - u) <= 1 and abs(y - v) <= 1


def test_batch_visualization_draws_each_sample_as_rgb() -> None:
    from ctxpose.data.transforms import normalize_to_tensor

    R, t = facing_camera()
    crop = np.zeros((CROP, CROP, 3), np.uint8)
    crop[..., 0] = 255  # BGR blue crop, as cv2.imread gives it
    batch = {"images": torch.from_numpy(np.stack([normalize_to_tensor(crop)] * 3))[:, None],
             "proj_matrices": torch.from_numpy(np.stack([projection_matrix(K, R, t)] * 3))[:, None],
             "keypoints_3d": torch.from_numpy(np.stack([POSE] * 3)), "validity": torch.ones(3, SK.num_joints)}
    shift = np.array([0.0, 0.0, 200.0])  # 200 mm up: 12 crop px, 24 px in the 256-pixel tiles
    image = draw.batch_visualization(batch, torch.from_numpy(np.stack([POSE + shift] * 3)), SK, 2, Style(size=256))
    assert image.shape == (256 + 2 * 2, 2 * 256 + 3 * 2, 3)  # two tiles with 2-pixel gaps
    assert tuple(image[5, 5]) == (0, 0, 255)  # blue in RGB order
    for points, role in ((POSE, "gt"), (POSE + shift, "pred")):
        uv = (reference_project(points, K, R, t) + 0.5) * 2 - 0.5 + 2
        for tile in range(2):
            for j in (SK.names.index("left_ankle"), SK.names.index("right_wrist")):
                assert pixel(image, uv[j] + [tile * (256 + 2), 0]) == joint_rgb(j, role), (role, tile, j)
