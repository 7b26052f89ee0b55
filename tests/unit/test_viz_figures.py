"""The 3D view: both skeletons land where the camera-facing, fixed-axis view must put them (by colour masks)."""

from __future__ import annotations

import numpy as np
import pytest

from ctxpose.geometry import projection_matrix
from ctxpose.viz.figures import camera_view_basis, pose_3d_image, up_vector
from ctxpose.viz.style import COLORS, Style
from tests.unit.viz_fixtures import POSE, SK, K, facing_camera, mask

SIZE = 384


def _masks(image: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    return {(role, side): mask(image, rgb) for role, sides in COLORS.items() for side, rgb in sides.items()}


def _cx(m: np.ndarray) -> float:
    return float(np.nonzero(m)[1].mean())


def _render(side: str, shift_mm: float = 600.0, **kw) -> np.ndarray:
    R, t = facing_camera(side)
    right = 1.0 if side == "front" else -1.0  # the camera's right in world x
    pred = POSE + [right * shift_mm, 0.0, 0.0]
    return pose_3d_image([(POSE, "gt"), (pred, "pred")], SK, Style(size=SIZE), projection_matrix(K, R, t), "z",
                         1000.0, **kw)


@pytest.mark.parametrize("side", ["front", "back"])
def test_3d_view_faces_the_camera_and_keeps_left_right_and_up(side: str) -> None:
    image = _render(side)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    m = _masks(image)
    for key, value in m.items():
        assert value.sum() > 20, f"{key} not drawn"
    gt = m["gt", "left"] | m["gt", "right"] | m["gt", "centre"]
    pred = m["pred", "left"] | m["pred", "right"] | m["pred", "centre"]
    # the prediction is 600 mm to the camera's right: it lands right of the ground truth, by 600/2000 of the axes
    shift = _cx(pred) - _cx(gt)
    assert 0.15 * SIZE < shift < 0.4 * SIZE
    # the figure's left (+x) is on the image's right from the front, on its left from the back
    assert (_cx(m["gt", "left"]) > _cx(m["gt", "right"])) == (side == "front")
    assert (_cx(m["pred", "left"]) > _cx(m["pred", "right"])) == (side == "front")
    # up is up: the ankles (left/right colours) reach lower than the centre line (pelvis..head), the head is on top
    rows = {k: np.nonzero(v)[0] for k, v in m.items()}
    assert rows["gt", "left"].max() > rows["gt", "centre"].max() + 0.15 * SIZE
    assert rows["gt", "centre"].min() < rows["gt", "left"].min()


def test_3d_axes_are_fixed_in_mm_around_the_root() -> None:
    """The same pose moved 3 m away in the world renders identically: axes are relative to the root, fixed size."""
    R, t = facing_camera()
    a = pose_3d_image([(POSE, "gt")], SK, Style(size=256), projection_matrix(K, R, t))
    moved = POSE + [3000.0, -2000.0, 0.0]
    b = pose_3d_image([(moved, "gt")], SK, Style(size=256), projection_matrix(K, R, t))
    np.testing.assert_array_equal(a, b)
    # a doubled extent halves the figure's drawn height
    c = pose_3d_image([(POSE, "gt")], SK, Style(size=256), projection_matrix(K, R, t), extent=2000.0)

    def height(image: np.ndarray) -> int:
        rows = np.nonzero(mask(image, COLORS["gt"]["centre"]))[0]
        return int(rows.max() - rows.min())

    assert height(c) == pytest.approx(height(a) / 2, rel=0.15)


def test_camera_view_basis_is_the_cameras_right_forward_up() -> None:
    R, t = facing_camera("back")
    basis = camera_view_basis(projection_matrix(K, R, t), up_vector("z"))
    np.testing.assert_allclose(basis, [[-1, 0, 0], [0, -1, 0], [0, 0, 1]], atol=1e-12)
    # a tilted camera (looking 30 degrees down) gives the same flattened frame
    a = np.deg2rad(30)
    tilt = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Rf, _ = facing_camera("front")
    basis = camera_view_basis(projection_matrix(K, tilt @ Rf, np.zeros(3)), up_vector("z"))
    np.testing.assert_allclose(basis, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError):
        up_vector("w")
