"""Tiny processed Human3.6M folders written from the format contracts with numpy + OpenCV only.

``write_ctxpose_folder``: ``<root>/labels.npz`` + ``<root>/images/...`` square crops (our layout).
``write_original_folder``: the original repository's ``processed/`` tree with full frames and the pickled
``human36m-multiview-labels-GTbboxes.npy`` dict (structured ``table``, ``cameras``).
Each image is one flat colour (survives JPEG) with a white disc at the projected pelvis.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ctxpose.skeleton import get_skeleton

SK = get_skeleton("contextpose17")
CAMERAS = ["54138969", "55011271", "58860488", "60457274"]
#: (subject, action, trial) sequences; S9 Greeting-2 is one of the damaged sequences.
SEQUENCES = [("S1", "Directions", 1), ("S1", "Directions", 2), ("S1", "Eating", 1),
             ("S9", "Directions", 1), ("S9", "Greeting", 2), ("S11", "Eating", 2)]
FRAMES = [0, 5, 10, 15, 20]


def camera(cam_idx: int) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera (R, t mm) looking at the origin from 5 m, rotated about the vertical axis."""
    a = cam_idx * np.pi / 2 + 0.3
    # camera axes: x right, y down, z forward; world z up
    forward = -np.array([np.cos(a), np.sin(a), 0.0])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    centre = -5000.0 * forward
    return R, -R @ centre


def pose(seq_idx: int, frame: int) -> np.ndarray:
    rng = np.random.default_rng(seq_idx * 1000 + frame)
    return rng.normal(scale=150.0, size=(SK.num_joints, 3)) + np.array([0.0, 0.0, 900.0])


def colour(seq_idx: int, frame: int, cam_idx: int) -> tuple[int, int, int]:
    """Distinct flat BGR colour per view (channel values spaced by 8 so JPEG noise cannot confuse them)."""
    code = (seq_idx * 31 + FRAMES.index(frame) * 7 + cam_idx * 3) % 27
    return (40 + 8 * (code % 3), 60 + 8 * ((code // 3) % 3), 80 + 8 * (code // 9))


def _draw(image: np.ndarray, P: np.ndarray, point: np.ndarray) -> None:
    h = P @ np.append(point, 1.0)
    cv2.circle(image, (int(round(h[0] / h[2])), int(round(h[1] / h[2]))), 3, (255, 255, 255), -1)


def write_ctxpose_folder(root: Path, crop: int = 64) -> Path:
    """Our processed layout; returns ``root``."""
    cols: dict[str, list] = {k: [] for k in ("subject", "action", "trial", "camera", "camera_index", "frame",
                                             "keypoints_3d", "bbox", "K", "R", "t", "dist", "image")}
    K = np.array([[crop * 2.0, 0, crop / 2], [0, crop * 2.0, crop / 2], [0, 0, 1]])
    for s, (subject, action, trial) in enumerate(SEQUENCES):
        for frame in FRAMES:
            kp = pose(s, frame)
            for c, cam in enumerate(CAMERAS):
                if subject == "S11" and c == 0:
                    continue  # the known missing view
                R, t = camera(c)
                rel = f"images/{subject}/{action}-{trial}/{cam}/{frame:06d}.jpg"
                img = np.empty((crop, crop, 3), np.uint8)
                img[:] = colour(s, frame, c)
                _draw(img, K @ np.hstack([R, t[:, None]]), kp[SK.root])
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / rel), img, [cv2.IMWRITE_JPEG_QUALITY, 98])
                for k, v in (("subject", subject), ("action", action), ("trial", trial), ("camera", cam),
                             ("camera_index", c), ("frame", frame), ("keypoints_3d", kp),
                             ("bbox", [100, 100, 100 + 4 * crop, 100 + 4 * crop]), ("K", K), ("R", R), ("t", t),
                             ("dist", np.zeros(5)), ("image", rel)):
                    cols[k].append(v)
    dtypes = {"subject": "<U8", "action": "<U32", "trial": np.int8, "camera": "<U8", "camera_index": np.int8,
              "frame": np.int32, "keypoints_3d": np.float64, "bbox": np.float32, "K": np.float64,
              "R": np.float64, "t": np.float64, "dist": np.float64}
    arrays = {k: np.array(v, dtype=dtypes.get(k)) for k, v in cols.items()}
    meta = json.dumps({"format": "ctxpose-labels", "version": 1, "image_size": crop})
    np.savez(root / "labels.npz", **arrays, meta=np.array(meta))
    return root


ORIGINAL_SUBJECTS = ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]
ORIGINAL_ACTIONS = [f"{a}-{t}" for a in ("Directions", "Eating", "Greeting") for t in (1, 2)]


def original_frame_size() -> tuple[int, int]:
    return 240, 200  # (H, W) small stand-in for 1002 x 1000


def write_original_folder(base: Path) -> tuple[Path, Path]:
    """The original layout under ``base/processed`` and ``base/extra``; returns (root, labels_path)."""
    root, extra = base / "processed", base / "extra"
    extra.mkdir(parents=True, exist_ok=True)
    h, w = original_frame_size()
    K = np.array([[300.0, 0, w / 2 + 3], [0, 310.0, h / 2 - 2], [0, 0, 1]])
    cameras = np.empty((len(ORIGINAL_SUBJECTS), 4), dtype=[("R", np.float32, (3, 3)), ("t", np.float32, (3, 1)),
                                                           ("K", np.float32, (3, 3)), ("dist", np.float32, 5)])
    for s in range(len(ORIGINAL_SUBJECTS)):
        for c in range(4):
            R, t = camera(c)
            cameras[s, c] = (R, t[:, None], K, np.zeros(5))
    dtype = np.dtype([("subject_idx", np.int8), ("action_idx", np.int8), ("frame_idx", np.int16),
                      ("keypoints", np.float32, (SK.num_joints, 3)), ("bbox_by_camera_tlbr", np.int16, (4, 4))])
    rows = []
    for s, (subject, action, trial) in enumerate(SEQUENCES):
        seq = f"{action}-{trial}"
        for frame in FRAMES:
            kp = pose(s, frame).astype(np.float32)
            bboxes = np.zeros((4, 4), np.int16)
            for c, cam in enumerate(CAMERAS):
                if subject == "S11" and c == 0:
                    continue
                R, t = camera(c)
                P = K @ np.hstack([R, t[:, None]])
                hp = P @ np.append(kp[SK.root], 1.0)
                cx, cy = int(hp[0] / hp[2]), int(hp[1] / hp[2])
                bboxes[c] = (cy - 90, cx - 60, cy + 30, cx + 60)  # TLBR 120 x 120, top above the frame
                img = np.empty((h, w, 3), np.uint8)
                img[:] = colour(s, frame, c)
                _draw(img, P, kp[SK.root])
                path = root / subject / seq / "imageSequence-undistorted" / cam / f"img_{frame + 1:06d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 98])
            rows.append((ORIGINAL_SUBJECTS.index(subject), ORIGINAL_ACTIONS.index(seq), frame, kp, bboxes))
    table = np.array(rows, dtype=dtype)
    order = np.lexsort((table["frame_idx"], table["action_idx"], table["subject_idx"]))  # the original's order
    labels = {"subject_names": ORIGINAL_SUBJECTS, "camera_names": CAMERAS, "action_names": ORIGINAL_ACTIONS,
              "cameras": cameras, "table": table[order]}
    path = extra / "human36m-multiview-labels-GTbboxes.npy"
    np.save(path, labels)
    return root, path
