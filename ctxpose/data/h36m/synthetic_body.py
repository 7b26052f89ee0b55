"""A synthetic 32-joint Human3.6M body: walking motion and a painter's-algorithm limb renderer.

Used by :mod:`ctxpose.data.h36m.synthesize`. The body has human proportions (segment lengths close to a
real Human3.6M pose) and keeps the duplicate joints of the real mocap skeleton
(``shared/h36m/h36m_joints.json``, ``duplicate_positions_in_real_pose``): Spine (11) sits 0.1 mm above
Hips (0); the shoulder girdle starts (16, 24) are at Neck (13); thumb roots (20, 28) at the wrists
(19, 27); hand end sites (23, 31) at the hand ends (22, 30).

World frame: Human3.6M mocap frame, mm, z up, floor at z = 0.
"""

from __future__ import annotations

import cv2
import numpy as np

from ctxpose.skeleton import H36M_CONTEXTPOSE

# Rest pose in the body frame (x = left, y = forward, z = up), mm, pelvis at the origin.
_REST = np.zeros((32, 3))
_REST[1], _REST[6] = (-125, 0, -10), (125, 0, -10)  # hips
_REST[2], _REST[7] = (-130, 10, -445), (130, 10, -445)  # knees
_REST[3], _REST[8] = (-135, -10, -870), (135, -10, -870)  # ankles
_REST[4], _REST[9] = (-140, 120, -900), (140, 120, -900)  # toe bases
_REST[5], _REST[10] = (-140, 190, -905), (140, 190, -905)  # toe tips
_REST[11] = (0, 0, 0.1)  # spine base, 0.1 mm above the hips as in the real data
_REST[12] = (0, 15, 225)  # spine1 / belly
_REST[13] = (0, 5, 475)  # neck / thorax
_REST[14] = (0, 45, 550)  # neck-head junction ("Neck/Nose")
_REST[15] = (0, 15, 655)  # head top
_REST[16], _REST[24] = _REST[13], _REST[13]  # shoulder girdle starts = neck
_REST[17], _REST[25] = (150, 0, 420), (-150, 0, 420)  # shoulders
_REST[18], _REST[26] = (170, 0, 140), (-170, 0, 140)  # elbows
_REST[19], _REST[27] = (175, 20, -110), (-175, 20, -110)  # wrists
_REST[20], _REST[28] = _REST[19], _REST[27]  # thumb roots = wrists
_REST[21], _REST[29] = (165, 60, -150), (-165, 60, -150)  # thumb tips
_REST[22], _REST[30] = (178, 25, -190), (-178, 25, -190)  # hand ends
_REST[23], _REST[31] = _REST[22], _REST[30]  # hand end sites = hand ends

_PELVIS_HEIGHT = 935.0  # so that the rest-pose feet touch the floor

# Chains rotated by the walking cycle: (pivot joint, moved joints).
_LEFT_LEG, _RIGHT_LEG = (6, (7, 8, 9, 10)), (1, (2, 3, 4, 5))
_LEFT_SHIN, _RIGHT_SHIN = (7, (8, 9, 10)), (2, (3, 4, 5))
_LEFT_ARM, _RIGHT_ARM = (17, (18, 19, 20, 21, 22, 23)), (25, (26, 27, 28, 29, 30, 31))
_LEFT_FOREARM, _RIGHT_FOREARM = (18, (19, 20, 21, 22, 23)), (26, (27, 28, 29, 30, 31))

#: Limb radius (mm) per bone of the contextpose17 skeleton, in ``skeleton.bones`` order.
BONE_RADII_MM = (60, 70, 55, 60, 70, 55, 85, 85, 40, 75, 45, 45, 40, 45, 45, 40)

#: One distinct BGR colour per bone (``skeleton.bones`` order), the bright core of the limb: 12 hues at full
#: saturation and value plus 4 pastels, so darker shading of one never comes near another's core.
BONE_COLORS_BGR = (
    (0, 0, 255), (0, 255, 255), (255, 128, 0), (255, 0, 0), (128, 255, 0), (128, 128, 255),
    (0, 255, 0), (128, 255, 255), (255, 0, 255), (255, 255, 0), (0, 128, 255), (128, 0, 255),
    (255, 128, 128), (0, 255, 128), (255, 0, 128), (128, 255, 128),
)

# Extra raw segments drawn in the colour of a bone: (joint_a_32, joint_b_32, bone_index).
_EXTRA_SEGMENTS = ((3, 4, 0), (4, 5, 0), (8, 9, 3), (9, 10, 3), (27, 30, 12), (19, 22, 15), (14, 15, 9))


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _swing(pose: np.ndarray, chain: tuple[int, tuple[int, ...]], angle: float) -> None:
    """Rotate a chain about the body's left axis through its pivot, in place (positive = forward)."""
    pivot, moved = chain
    rot = _rot_x(angle)
    idx = list(moved)
    pose[idx] = (pose[idx] - pose[pivot]) @ rot.T + pose[pivot]


def walking_poses(num_frames: int, seed: int = 0, fps: float = 50.0) -> np.ndarray:
    """A walk along a circle with leg and arm swings, knee and elbow bends, turning and body bob.

    Args:
        num_frames: number of frames.
        seed: varies radius, speed, stride phase and start heading.
        fps: frame rate the motion is sampled at.

    Returns:
        (num_frames, 32, 3) float64 world coordinates, mm, z up.
    """
    rng = np.random.default_rng(seed)
    radius = rng.uniform(900.0, 1400.0)
    speed = rng.uniform(900.0, 1300.0)  # mm/s
    cadence = rng.uniform(0.85, 1.0)  # strides per second
    phase0, heading0 = rng.uniform(0, 2 * np.pi, size=2)
    centre = rng.uniform(-300.0, 300.0, size=2)
    direction = rng.choice([-1.0, 1.0])
    out = np.empty((num_frames, 32, 3))
    for i in range(num_frames):
        t = i / fps
        phi = 2 * np.pi * cadence * t + phase0
        pose = _REST.copy()
        hip = 0.45 * np.sin(phi)
        _swing(pose, _LEFT_SHIN, -0.6 * max(0.0, np.sin(phi - 1.2)))
        _swing(pose, _RIGHT_SHIN, -0.6 * max(0.0, np.sin(phi + np.pi - 1.2)))
        _swing(pose, _LEFT_LEG, hip)
        _swing(pose, _RIGHT_LEG, -hip)
        _swing(pose, _LEFT_FOREARM, 0.35 + 0.25 * np.sin(phi + np.pi))
        _swing(pose, _RIGHT_FOREARM, 0.35 + 0.25 * np.sin(phi))
        _swing(pose, _LEFT_ARM, -0.5 * hip)
        _swing(pose, _RIGHT_ARM, 0.5 * hip)
        # around the circle: position angle a, heading = tangent (the body turns as it walks)
        a = heading0 + direction * speed * t / radius
        heading = a + direction * np.pi / 2
        fwd = np.array([np.cos(heading), np.sin(heading), 0.0])
        left = np.array([-np.sin(heading), np.cos(heading), 0.0])
        basis = np.stack([left, fwd, [0.0, 0.0, 1.0]], axis=1)  # body (x=left, y=fwd, z=up) -> world
        root = np.array([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a),
                         _PELVIS_HEIGHT + 15.0 * np.cos(2 * phi)])
        out[i] = pose @ basis.T + root
    return out


def _segments() -> list[tuple[int, int, int]]:
    """All drawn segments as (joint_a_32, joint_b_32, bone_index)."""
    skel = H36M_CONTEXTPOSE  # the synthetic body is drawn in the ContextPose joint order
    to32 = skel.h36m32_indices
    return [(to32[a], to32[b], i) for i, (a, b) in enumerate(skel.bones)] + list(_EXTRA_SEGMENTS)


def background_texture(image_hw: tuple[int, int], seed: int) -> np.ndarray:
    """A low-saturation textured backdrop (floor-like tiles plus noise), far from the limb colours.

    Returns:
        (H, W, 3) uint8 BGR.
    """
    h, w = image_hw
    rng = np.random.default_rng(seed)
    tile = max(8, w // 16)
    yy, xx = np.mgrid[0:h, 0:w]
    checker = ((yy // tile + xx // tile) % 2).astype(np.float32)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(1.0, w / 200))
    grey = 95 + 30 * checker + 25 * noise / (noise.std() + 1e-6)
    tint = np.array([1.0, 1.02, 1.05], dtype=np.float32)  # faint warm tint, keeps saturation low
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)


def render_frame(background: np.ndarray, project, joints_world: np.ndarray, depth_of, focal_px: float,
                 samples_per_segment: int = 12) -> np.ndarray:
    """Draw the body as shaded capsules, far limbs first, through a distorting projection.

    Each segment is sampled in 3D and every sample is projected with ``project``, so straight limbs bend
    with the lens distortion exactly as the camera would show them.

    Args:
        background: (H, W, 3) uint8 BGR backdrop (copied, not modified).
        project: callable (P, 3) world mm -> (P, 2) distorted pixel coordinates.
        joints_world: (32, 3) world mm.
        depth_of: callable (P, 3) world mm -> (P,) camera-frame depth, mm.
        focal_px: focal length used to turn limb radii into pixels.
        samples_per_segment: 3D samples along each segment.

    Returns:
        (H, W, 3) uint8 BGR frame.
    """
    image = background.copy()
    ts = np.linspace(0.0, 1.0, samples_per_segment)[:, None]
    segs = _segments()
    pts3d = np.concatenate([joints_world[a] + ts * (joints_world[b] - joints_world[a]) for a, b, _ in segs])
    pts2d = project(pts3d).reshape(len(segs), samples_per_segment, 2)
    depth = depth_of(pts3d).reshape(len(segs), samples_per_segment)
    order = np.argsort(-depth.mean(axis=1))  # painter's algorithm: far first
    shift = 4
    for k in order:
        _, _, bone = segs[k]
        if np.any(depth[k] <= 0):
            continue
        radius = BONE_RADII_MM[bone] * focal_px / depth[k].mean()
        poly = np.round(pts2d[k] * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        color = np.array(BONE_COLORS_BGR[bone], dtype=np.float64)
        for frac, shade in ((1.0, 0.55), (0.75, 0.8), (0.45, 1.0)):  # dark rim -> bright core
            thickness = max(1, int(round(2 * radius * frac)))
            cv2.polylines(image, [poly], False, tuple(float(c) for c in color * shade), thickness,
                          cv2.LINE_AA, shift)
    return image
