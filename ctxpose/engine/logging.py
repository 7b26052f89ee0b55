"""Run logs on rank 0: TensorBoard scalars/images, JSON-lines scalars, a plain-text train.log.

Other ranks get a logger whose methods do nothing, so call sites need no rank checks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ctxpose.skeleton import Skeleton
from ctxpose.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

GT_COLOR = (0, 200, 0)  # BGR
PRED_COLOR = (0, 0, 230)


class RunLogger:
    """Writes ``events.out.tfevents.*``, ``scalars.jsonl`` and ``train.log`` into a run folder.

    Args:
        run_dir: run folder; ``None`` (other ranks) disables every method.
        resume_step: the step a resumed run continues from: logged steps after it (written by the
            interrupted run after its last checkpoint, and about to be run again) are dropped from
            ``scalars.jsonl`` and purged from TensorBoard, so no step appears twice.
    """

    def __init__(self, run_dir: Path | None, resume_step: int | None = None) -> None:
        self.enabled = run_dir is not None
        self._writer = None
        self._jsonl = None
        self._handler: logging.Handler | None = None
        if run_dir is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        jsonl = run_dir / "scalars.jsonl"
        if resume_step is not None and jsonl.is_file():
            kept = [line for line in jsonl.read_text(encoding="utf-8").splitlines(keepends=True)
                    if _step_of(line) is not None and _step_of(line) <= resume_step]
            atomic_write_text(jsonl, "".join(kept))
        self._writer = SummaryWriter(log_dir=str(run_dir),
                                     purge_step=None if resume_step is None else resume_step + 1)
        self._jsonl = open(jsonl, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("ctxpose").addHandler(self._handler)
        if logging.getLogger("ctxpose").getEffectiveLevel() > logging.INFO:
            logging.getLogger("ctxpose").setLevel(logging.INFO)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        """Log scalars under ``prefix/name`` to TensorBoard and as one JSON line."""
        if not self.enabled:
            return
        tagged = {f"{prefix}/{k}" if prefix else k: float(v) for k, v in values.items()}
        for tag, value in tagged.items():
            self._writer.add_scalar(tag, value, step)
        self._jsonl.write(json.dumps({"step": step, **tagged}) + "\n")
        self._jsonl.flush()

    def image(self, tag: str, step: int, image_hwc: np.ndarray) -> None:
        """Log one uint8 (H, W, 3) RGB image."""
        if self.enabled:
            self._writer.add_image(tag, image_hwc, step, dataformats="HWC")

    def flush(self) -> None:
        if self.enabled:
            self._writer.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self._writer.close()
        self._jsonl.close()
        if self._handler is not None:
            logging.getLogger("ctxpose").removeHandler(self._handler)
            self._handler.close()
        self.enabled = False


def project_points(proj_matrix: np.ndarray, points_3d: np.ndarray) -> np.ndarray:
    """Project world points into the crop.

    Args:
        proj_matrix: (3, 4) world mm -> crop px.
        points_3d: (J, 3) world coordinates, mm.

    Returns:
        (J, 2) crop pixel coordinates.
    """
    homo = np.concatenate([points_3d, np.ones((len(points_3d), 1))], axis=1) @ proj_matrix.T
    return homo[:, :2] / np.clip(homo[:, 2:3], 1e-6, None)


def draw_keypoints(image_chw: np.ndarray, proj_matrix: np.ndarray, pred_3d: np.ndarray, gt_3d: np.ndarray,
                   skeleton: Skeleton, scale: int = 4) -> np.ndarray:
    """Input crop with the projected prediction (red) and ground truth (green) skeletons.

    Args:
        image_chw: (3, H, W) normalised BGR network input (any affine normalisation; rescaled to 0..255).
        proj_matrix: (3, 4) world mm -> crop px.
        pred_3d, gt_3d: (J, 3) world coordinates, mm.
        scale: upsampling factor so that small crops stay readable.

    Returns:
        (scale*H, scale*W, 3) uint8 RGB.
    """
    img = np.asarray(image_chw, dtype=np.float32).transpose(1, 2, 0)
    lo, hi = float(img.min()), float(img.max())
    img = ((img - lo) / max(hi - lo, 1e-6) * 255.0).astype(np.uint8)
    img = cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    img = np.ascontiguousarray(img)  # the network input is BGR, as cv2 draws
    for pts_3d, color in ((gt_3d, GT_COLOR), (pred_3d, PRED_COLOR)):
        pts = project_points(proj_matrix, pts_3d) * scale
        if not np.isfinite(pts).all():
            continue
        pts = np.clip(pts, -1e4, 1e4).round().astype(np.int32)
        for a, b in skeleton.bones:
            cv2.line(img, tuple(pts[a]), tuple(pts[b]), color, 1, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(p), 2, color, -1, cv2.LINE_AA)
    return np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB for TensorBoard


def batch_visualization(batch: dict[str, Any], pred_3d: torch.Tensor, skeleton: Skeleton,
                        max_items: int) -> np.ndarray:
    """Side-by-side overlays of the first ``max_items`` samples (first view) of a batch: (H', W', 3) uint8."""
    n = min(max_items, pred_3d.shape[0])
    tiles = [
        draw_keypoints(
            batch["images"][i, 0].detach().float().cpu().numpy(),
            batch["proj_matrices"][i, 0].detach().double().cpu().numpy(),
            pred_3d[i].detach().double().cpu().numpy(),
            batch["keypoints_3d"][i].detach().double().cpu().numpy(),
            skeleton,
        )
        for i in range(n)
    ]
    return np.concatenate(tiles, axis=1)


def _step_of(line: str) -> int | None:
    """The ``step`` of one ``scalars.jsonl`` line (None for a torn or foreign line)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None
