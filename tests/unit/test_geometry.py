"""Camera geometry and lens distortion against loop references and OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from ctxpose.geometry.cameras import (
    Camera,
    camera_to_pixels,
    crop_camera,
    crop_intrinsics,
    project_points,
    projection_matrix,
    scale_intrinsics,
    world_to_camera,
)
from ctxpose.geometry.distortion import (
    distort_normalized,
    opencv_coefficients,
    undistort_crop_maps,
    undistort_normalized,
    undistort_pixels,
)

# Human3.6M camera 54138969 (w0 values): strong barrel distortion, typical of the data we use.
K_H36M = np.array([[1145.04940458804, 0.0, 512.541504956548], [0.0, 1143.78109572365, 515.4514869776], [0, 0, 1]])
DIST_H36M = np.array(
    [-0.207098910824901, 0.247775183068982, -0.00142447157470321, -0.000975698859470499, -0.0030751503]
)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _random_camera(rng: np.random.Generator, dist_model: str = "opencv") -> Camera:
    """A camera about 5 m from the origin looking at it, with H36M-like intrinsics and distortion."""
    R = _rotation(rng)
    t = np.array([0.0, 0.0, 5000.0]) + rng.normal(scale=100.0, size=3)
    return Camera(R=R, t=t, K=K_H36M, dist=DIST_H36M, name="cam", dist_model=dist_model)


def _points_in_view(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(-900.0, 900.0, size=(n, 3))


def _pixel_reference(point_world: np.ndarray, camera: Camera, distort: bool) -> np.ndarray:
    """One point, written out term by term (ProjectPointRadial.m for h36m, OpenCV's docs for opencv)."""
    X = [sum(camera.R[i][j] * point_world[j] for j in range(3)) + camera.t[i] for i in range(3)]
    x, y = X[0] / X[2], X[1] / X[2]
    if distort:
        k1, k2, p1, p2, k3 = camera.dist
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        if camera.dist_model == "h36m":
            tan = p1 * y + p2 * x
            x, y = x * (radial + tan) + p2 * r2, y * (radial + tan) + p1 * r2
        else:
            x, y = (
                x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
            )
    K = camera.K
    return np.array([K[0][0] * x + K[0][1] * y + K[0][2], K[1][1] * y + K[1][2]])


@pytest.mark.parametrize("dist_model", ["opencv", "h36m"])
def test_camera_project_matches_loop_reference(dist_model: str) -> None:
    rng = np.random.default_rng(0)
    camera = _random_camera(rng, dist_model)
    points = _points_in_view(rng, 20)
    for distort in (True, False):
        expected = np.stack([_pixel_reference(p, camera, distort) for p in points])
        # 1e-9 px: float64 round-off on values ~1e3.
        np.testing.assert_allclose(camera.project(points, distort=distort), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(project_points(points, camera.projection), camera.project(points, False), atol=1e-9)


def test_batched_functions_match_per_camera_numpy_and_torch() -> None:
    rng = np.random.default_rng(1)
    cameras = [_random_camera(rng) for _ in range(3)]
    points = _points_in_view(rng, 12)
    R = np.stack([c.R for c in cameras])
    t = np.stack([c.t for c in cameras])
    K = np.stack([c.K for c in cameras])
    dist = np.stack([c.dist for c in cameras])
    points_b = np.broadcast_to(points, (3, 12, 3)).copy()

    proj = projection_matrix(K, R, t)
    assert proj.shape == (3, 3, 4)
    cam_points = world_to_camera(points_b, R, t)
    pix_pinhole = project_points(points_b, proj)
    pix_distorted = camera_to_pixels(cam_points, K, dist)
    for b, camera in enumerate(cameras):
        np.testing.assert_allclose(proj[b], camera.projection, atol=1e-9)
        np.testing.assert_allclose(cam_points[b], points @ camera.R.T + camera.t, atol=1e-9)
        np.testing.assert_allclose(pix_pinhole[b], camera.project(points, distort=False), atol=1e-9)
        np.testing.assert_allclose(pix_distorted[b], camera.project(points), atol=1e-9)

    # torch float64 gives the same numbers; float32 keeps its dtype and stays within float32 round-off.
    tt = {name: torch.from_numpy(a) for name, a in dict(p=points_b, R=R, t=t, K=K, d=dist, P=proj).items()}
    torch.testing.assert_close(world_to_camera(tt["p"], tt["R"], tt["t"]), torch.from_numpy(cam_points))
    torch.testing.assert_close(project_points(tt["p"], tt["P"]), torch.from_numpy(pix_pinhole))
    torch.testing.assert_close(projection_matrix(tt["K"], tt["R"], tt["t"]), torch.from_numpy(proj))
    cam_t = world_to_camera(tt["p"], tt["R"], tt["t"])
    torch.testing.assert_close(camera_to_pixels(cam_t, tt["K"], tt["d"]), torch.from_numpy(pix_distorted))
    out32 = camera_to_pixels(cam_t.float(), tt["K"], tt["d"])
    assert out32.dtype == torch.float32
    # float32 relative precision ~6e-8 on pixel values ~1e3: 1e-3 px is ample and still catches any bug.
    torch.testing.assert_close(out32.double(), torch.from_numpy(pix_distorted), atol=1e-3, rtol=0)
    # Camera.project keeps torch in, torch out.
    single = cameras[0].project(torch.from_numpy(points).float())
    assert isinstance(single, torch.Tensor) and single.dtype == torch.float32


def _plain_division(points, proj):
    """``xy / depth`` as before the behind-camera rule (the same float operations), numpy or torch."""
    homogeneous = points @ proj[..., :3].swapaxes(-1, -2) + proj[..., None, :, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        return homogeneous[..., :2] / homogeneous[..., 2:3]


def test_project_points_has_no_image_at_or_behind_the_camera() -> None:
    rng = np.random.default_rng(11)
    camera = _random_camera(rng)
    ahead = _points_in_view(rng, 6)  # 4-6 m in front of the camera
    # the mirror image of a point through the camera centre projects, by plain division, onto the same
    # pixel as the point: it must not be taken for a visible point
    behind = 2 * camera.center - ahead[:3]
    proj = camera.projection
    np.testing.assert_allclose(_plain_division(behind, proj), _plain_division(ahead[:3], proj))
    points = np.concatenate([ahead, behind])  # (9, 3)
    invisible = np.array([False] * 6 + [True] * 3)
    for dtype in (np.float64, np.float32):
        pts, proj_d = points.astype(dtype), proj.astype(dtype)
        out = project_points(pts, proj_d)
        assert out.dtype == dtype and out.shape == (9, 2)
        assert np.isnan(out[invisible]).all() and np.isfinite(out[~invisible]).all()
        np.testing.assert_array_equal(out[~invisible], _plain_division(pts, proj_d)[~invisible])  # bit for bit
        pts_t, proj_t = torch.from_numpy(pts), torch.from_numpy(proj_d)
        out_t = project_points(pts_t, proj_t)
        assert out_t.dtype == pts_t.dtype and torch.isnan(out_t[invisible]).all()
        assert torch.equal(out_t[~invisible], _plain_division(pts_t, proj_t)[~invisible])
        # torch and numpy matmuls may round differently in the last bit
        torch.testing.assert_close(out_t, torch.from_numpy(out), equal_nan=True)

    # batched (2 cameras), and differentiable: finite gradients, zero for the points without an image
    other = _random_camera(rng)
    proj_b = torch.from_numpy(np.stack([proj, other.projection]))
    pts_b = torch.from_numpy(np.stack([points, points])).requires_grad_(True)
    out_b = project_points(pts_b, proj_b)
    assert torch.isnan(out_b[0, torch.from_numpy(invisible)]).all()
    torch.testing.assert_close(out_b[1, :6], torch.from_numpy(_plain_division(points[:6], other.projection)))
    out_b.nan_to_num(0.0).sum().backward()
    assert torch.isfinite(pts_b.grad).all()
    assert (pts_b.grad[0, torch.from_numpy(invisible)] == 0).all() and (pts_b.grad[0, :6] != 0).any()


def test_project_points_in_the_camera_plane_is_nan() -> None:
    # an axis-aligned camera with integer extrinsics: depth 0 is exact in float32 too
    R = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # camera z = world x
    camera = Camera(R=R, t=np.array([10.0, -20.0, 3000.0]), K=K_H36M)
    in_plane = np.array([[-3000.0, 250.0, -40.0], [-3000.0, 0.0, 0.0]])  # world x = -3000: depth exactly 0
    ahead = np.array([[0.0, 100.0, 200.0], [-2999.0, 1.0, 1.0]])  # depths 3000 mm and 1 mm
    points = np.concatenate([in_plane, ahead])
    assert np.array_equal(world_to_camera(points, camera.R, camera.t)[:, 2], [0.0, 0.0, 3000.0, 1.0])
    for dtype in (np.float64, np.float32):
        pts, proj = points.astype(dtype), camera.projection.astype(dtype)
        out = project_points(pts, proj)
        assert np.isnan(out[:2]).all()
        np.testing.assert_array_equal(out[2:], _plain_division(pts, proj)[2:])
        out_t = project_points(torch.from_numpy(pts), torch.from_numpy(proj))
        assert torch.isnan(out_t[:2]).all() and torch.isfinite(out_t[2:]).all()
    # just in front of the plane (depth 1e-7 mm, below MIN_PROJECTION_DEPTH = 1e-6): no image either
    nearly = np.array([[-3000.0 + 1e-7, 1.0, 1.0]])
    assert np.isnan(project_points(nearly, camera.projection)).all()


@pytest.mark.parametrize("dist_model", ["opencv", "h36m"])
def test_distortion_matches_cv2_project_points(dist_model: str) -> None:
    rng = np.random.default_rng(2)
    camera = _random_camera(rng, dist_model)
    points = _points_in_view(rng, 50)
    rvec, _ = cv2.Rodrigues(camera.R)
    expected, _ = cv2.projectPoints(points, rvec, camera.t, camera.K, opencv_coefficients(camera.dist, dist_model))
    # cv2 projects in float64 too; 1e-6 px leaves room for Rodrigues round-off.
    np.testing.assert_allclose(camera.project(points), expected[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("dist_model", ["opencv", "h36m"])
def test_undistort_pixels_matches_cv2_and_round_trips(dist_model: str) -> None:
    rng = np.random.default_rng(3)
    # Pixels over the whole 1000 x 1002 frame, corners included.
    uv = np.concatenate([rng.uniform([0, 0], [1000, 1002], size=(200, 2)), [[0, 0], [999, 0], [0, 1001], [999, 1001]]])
    coeffs = opencv_coefficients(DIST_H36M, dist_model)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4.x
        expected = cv2.undistortPointsIter(uv[:, None], K_H36M, coeffs, None, K_H36M, criteria)[:, 0]
    else:  # OpenCV 5 merged it into undistortPoints
        expected = cv2.undistortPoints(uv[:, None], K_H36M, coeffs, R=None, P=K_H36M, criteria=criteria)[:, 0]
    ours = undistort_pixels(uv, K_H36M, DIST_H36M, iterations=20, model=dist_model)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4)  # cv2 computes in float64; both converged
    # Round trip: distorting the undistorted pixels gives the input back.
    xy = (ours - K_H36M[:2, 2]) / np.diag(K_H36M)[:2]
    back = distort_normalized(xy, DIST_H36M, model=dist_model) * np.diag(K_H36M)[:2] + K_H36M[:2, 2]
    np.testing.assert_allclose(back, uv, rtol=0, atol=1e-6)
    # torch, batched over two cameras, agrees with numpy.
    uv_t = torch.from_numpy(np.stack([uv, uv[::-1]]))
    K_t = torch.from_numpy(np.stack([K_H36M, K_H36M]))
    out_t = undistort_pixels(uv_t, K_t, torch.from_numpy(DIST_H36M), model=dist_model)
    torch.testing.assert_close(out_t[0], torch.from_numpy(ours))
    torch.testing.assert_close(out_t[1], torch.from_numpy(ours[::-1].copy()))


def test_undistort_normalized_inverts_distortion() -> None:
    rng = np.random.default_rng(4)
    xy = rng.uniform(-0.45, 0.45, size=(2, 30, 2))
    dist = np.stack([DIST_H36M, DIST_H36M * 0.5])
    for model in ("opencv", "h36m"):
        back = undistort_normalized(distort_normalized(xy, dist, model), dist, iterations=30, model=model)
        np.testing.assert_allclose(back, xy, rtol=0, atol=1e-9)


def test_crop_and_resize_intrinsics_hand_computed() -> None:
    K = np.array([[1000.0, 0.0, 500.0], [0.0, 1100.0, 510.0], [0.0, 0.0, 1.0]])
    cropped = crop_intrinsics(K, (100, 50, 500, 450))
    np.testing.assert_array_equal(cropped, [[1000.0, 0, 400.0], [0, 1100.0, 460.0], [0, 0, 1]])
    resized = scale_intrinsics(cropped, (400, 400), (256, 192))  # (H, W): x scales by 0.48, y by 0.64
    np.testing.assert_allclose(resized, [[480.0, 0, 192.0], [0, 704.0, 294.4], [0, 0, 1]], rtol=1e-15)
    np.testing.assert_array_equal(K[0, 2], 500.0)  # input untouched

    camera = Camera(R=np.eye(3), t=np.zeros(3), K=K, dist=DIST_H36M, name="c")
    crop_cam = crop_camera(camera, (100, 50, 500, 450), (256, 192))
    np.testing.assert_allclose(crop_cam.K, resized, rtol=1e-15)
    assert not crop_cam.has_distortion and camera.has_distortion
    np.testing.assert_allclose(camera.cropped((100, 50, 500, 450)).resized((400, 400), (256, 192)).K, resized)
    # torch batch: one bbox per camera.
    K_t = torch.from_numpy(np.stack([K, K]))
    out = crop_intrinsics(K_t, torch.tensor([[100.0, 50, 500, 450], [0.0, 10, 10, 20]], dtype=torch.float64))
    torch.testing.assert_close(out[0], torch.from_numpy(cropped))
    assert out[1, 0, 2].item() == 500.0 and out[1, 1, 2].item() == 500.0


def test_camera_is_immutable_and_serialises() -> None:
    camera = _random_camera(np.random.default_rng(5), "h36m")
    with pytest.raises(ValueError):
        camera.K[0, 0] = 1.0
    back = Camera.from_dict(camera.to_dict())
    assert back.allclose(camera) and back.dist_model == "h36m"
    np.testing.assert_allclose(camera.center, -camera.R.T @ camera.t)
    np.testing.assert_allclose(camera.extrinsics @ np.append(camera.center, 1.0), 0.0, atol=1e-9)
    with pytest.raises(ValueError):
        Camera(R=np.eye(3), t=np.zeros(2), K=K_H36M)


def _draw_dots(shape: tuple[int, int], centres: np.ndarray, sigma: float) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    image = np.zeros(shape)
    for u, v in centres:
        image += np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / (2 * sigma**2))
    return (255 * np.clip(image, 0, 1)).astype(np.float32)


def _dot_centre(image: np.ndarray, guess: np.ndarray, search: int = 12, radius: int = 4) -> np.ndarray:
    """Peak within ``search`` px of the guess, then intensity centroid within ``radius`` px of the peak."""
    u0, v0 = np.round(guess).astype(int)
    window = image[v0 - search : v0 + search + 1, u0 - search : u0 + search + 1]
    dv, du = np.unravel_index(np.argmax(window), window.shape)
    pu, pv = u0 - search + du, v0 - search + dv
    patch = image[pv - radius : pv + radius + 1, pu - radius : pu + radius + 1].astype(np.float64)
    rows, cols = np.mgrid[pv - radius : pv + radius + 1, pu - radius : pu + radius + 1]
    return np.array([(patch * cols).sum(), (patch * rows).sum()]) / patch.sum()


@pytest.mark.parametrize("dist_model", ["opencv", "h36m"])
def test_undistort_crop_remap_lands_dots_where_crop_camera_projects(dist_model: str) -> None:
    rng = np.random.default_rng(6)
    camera = Camera(R=np.eye(3), t=np.zeros(3), K=K_H36M, dist=DIST_H36M, name="c", dist_model=dist_model)
    frame_hw = (1002, 1000)
    # 3D points spread over the upper-left of the frame, where distortion is strong (~20 px).
    bbox = (40, 60, 460, 480)
    out_hw = (256, 320)
    crop_cam = crop_camera(camera, bbox, out_hw)
    targets = np.stack(np.meshgrid(np.linspace(20, 300, 4), np.linspace(20, 236, 4)), -1).reshape(-1, 2)
    targets = targets + rng.uniform(-3, 3, size=targets.shape)
    # Back-project the target crop pixels to 3D points at random depths.
    depth = rng.uniform(3000, 6000, size=(len(targets), 1))
    rays = np.concatenate([targets, np.ones((len(targets), 1))], 1) @ np.linalg.inv(crop_cam.K).T
    points = rays * depth
    np.testing.assert_allclose(crop_cam.project(points), targets, atol=1e-9)

    full_pixels = camera.project(points)
    assert np.abs(full_pixels - camera.project(points, distort=False)).max() > 5.0  # distortion matters here
    frame = _draw_dots(frame_hw, full_pixels, sigma=2.5)
    map_x, map_y = undistort_crop_maps(camera.K, camera.dist, crop_cam.K, out_hw, model=dist_model)
    assert map_x.shape == out_hw and map_x.dtype == np.float32
    crop = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    found = np.stack([_dot_centre(crop, target) for target in targets])
    # Measured error 0.08 px (dot sampling + bilinear interpolation); shifting K_out by 0.6 px gives 0.66 px.
    np.testing.assert_allclose(found, targets, rtol=0, atol=0.25)

    # Same maps as OpenCV's own undistort-rectify map (independent implementation).
    cv_x, cv_y = cv2.initUndistortRectifyMap(
        camera.K, opencv_coefficients(camera.dist, dist_model), None, crop_cam.K, out_hw[::-1], cv2.CV_32FC1
    )
    np.testing.assert_allclose(map_x, cv_x, rtol=0, atol=1e-3)  # float32 maps, values ~500 px (measured: equal)
    np.testing.assert_allclose(map_y, cv_y, rtol=0, atol=2e-3)


def test_undistort_crop_maps_without_distortion_is_a_plain_crop() -> None:
    frame = np.random.default_rng(7).uniform(0, 255, size=(120, 160)).astype(np.float32)
    camera = Camera(R=np.eye(3), t=np.zeros(3), K=K_H36M)
    crop_cam = crop_camera(camera, (30, 20, 130, 100), (80, 100))  # same size: no resize
    map_x, map_y = undistort_crop_maps(camera.K, camera.dist, crop_cam.K, (80, 100))
    crop = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR)
    np.testing.assert_allclose(crop, frame[20:100, 30:130], atol=1e-3)
