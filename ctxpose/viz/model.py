"""``ctxpose visualize model``: what the network sees and attends to, for one sample.

Runs the model (eval mode, no cuboid rotation) on one dataset sample and renders:

- ``heatmaps.png``: the backbone's 2D heatmap of every joint over the crop (first view), with the joint's
  projected ground truth (gt colour) and the projected 3D prediction (prediction colour) marked;
- ``volumes.png``: maximum-intensity projections of each joint's 3D probability volume on the three planes of
  the cuboid (voxel axes = the world x, y, z before rotation), ground truth and prediction marked;
- ``attention.png``: the same projections of the context block's global attention (its pooled grid); not for
  the volumetric model (``model.architecture: volumetric``), which has no attention block;
- ``cuboid.png``: the crop with the cuboid's 12 edges and both skeletons projected;
- ``overview.png``: the cuboid image, all heatmaps (max over joints), and the projections of the volumes and
  of the attention summed over joints, in one picture.

The triangulation models (``algebraic``, ``ransac``) have no volume or cuboid: they are refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ctxpose.errors import ConfigError, DataError
from ctxpose.skeleton import Skeleton, get_skeleton
from ctxpose.viz import draw
from ctxpose.viz.output import ImageSink
from ctxpose.viz.style import COLORS, TEXT, Style, joint_side

#: (name, kept voxel axes (row axis, column axis)) of the three projections; rows are flipped so +axis is up
PLANES = (("x-y", (1, 0)), ("x-z", (2, 0)), ("y-z", (2, 1)))
AXIS_NAMES = "xyz"


@dataclass
class ModelSample:
    """One sample and the network's output for it (batch dimension removed, numpy, float64).

    Attributes:
        index: dataset index. name: e.g. "S9 Walking-1 cam 54138969 frame 40".
        image: (H, W, 3) uint8 RGB first-view crop (the network input).
        proj: (3, 4) world mm -> crop px.
        keypoints_gt: (J, 3) world mm. keypoints_pred: (J, 3) world mm.
        heatmaps: (J, h, w) first view. volumes: (J, S, S, S). coord_volume: (S, S, S, 3) world mm.
        attention: (J, s, s, s) global attention on the pooled grid (s = S / 4); None for the volumetric model
            (no attention block).
        voxel_pred: (J, 3) predicted joints in voxel indices.
    """

    index: int
    name: str
    image: np.ndarray
    proj: np.ndarray
    keypoints_gt: np.ndarray
    keypoints_pred: np.ndarray
    heatmaps: np.ndarray
    volumes: np.ndarray
    coord_volume: np.ndarray
    attention: np.ndarray | None
    voxel_pred: np.ndarray

    def world_to_voxel(self, points: np.ndarray, side: int | None = None) -> np.ndarray:
        """World points (N, 3) mm -> voxel coordinates of a grid of ``side`` voxels over the same cuboid.

        The coordinate volume is affine in the voxel index (a rotated, evenly spaced grid), so the map is
        solved from its corner and its three edge directions.
        """
        cv = self.coord_volume
        s = cv.shape[0]
        origin = cv[0, 0, 0]
        axes = np.stack([cv[-1, 0, 0] - origin, cv[0, -1, 0] - origin, cv[0, 0, -1] - origin], axis=1) / (s - 1)
        ijk = np.linalg.solve(axes, (np.asarray(points, np.float64) - origin).T).T
        if side is not None and side != s:  # the pooled grid: voxel centres of s/side-wide blocks
            ijk = (ijk + 0.5) * side / s - 0.5
        return ijk


def parse_sample(spec: str, dataset: Any) -> int:
    """A dataset index (``"37"``) or ``"S9/Walking-1/54138969/40"`` (subject/sequence/camera/frame) -> index.

    Raises:
        DataError: out of range, or no sample with these ids (the message says what exists).
    """
    spec = spec.strip()
    n = len(dataset)
    if spec.lstrip("-").isdigit():
        index = int(spec)
        if not 0 <= index < n:
            raise DataError(f"--sample {spec}: out of range; the {dataset.split} split has samples 0..{n - 1}")
        return index
    parts = spec.split("/")
    if len(parts) != 4 or not parts[3].isdigit():
        raise DataError(f"--sample {spec!r}: expected an index or SUBJECT/Action-trial/CAMERA/FRAME, "
                        "e.g. S9/Walking-1/54138969/40")
    subject, sequence, camera, frame = parts
    action, _, trial = sequence.rpartition("-")
    if not action or not trial.isdigit():
        raise DataError(f"--sample {spec}: sequence {sequence!r} should be Action-trial, e.g. Walking-1")
    names = {"subject": list(dataset.subject_names), "action": list(dataset.action_names),
             "camera": list(dataset.camera_names)}
    for kind, value in (("subject", subject), ("action", action), ("camera", camera)):
        if value not in names[kind]:
            raise DataError(f"--sample {spec}: {kind} {value!r} is not in the {dataset.split} split "
                            f"(found {', '.join(names[kind])})")
    ids = dataset.sample_ids()
    match = ((ids["subject_idx"] == names["subject"].index(subject))
             & (ids["action_idx"] == names["action"].index(action)) & (ids["trial"] == int(trial))
             & (ids["camera_idx"] == names["camera"].index(camera)) & (ids["frame"] == int(frame)))
    hits = np.nonzero(match)[0]
    if not len(hits):
        raise DataError(f"--sample {spec}: no such sample in the {dataset.split} split")
    return int(hits[0])


@torch.no_grad()
def run_model(model: torch.nn.Module, dataset: Any, index: int, device: str | torch.device = "cpu") -> ModelSample:
    """Run ``model`` on ``dataset[index]`` (no cuboid rotation) and collect what the views need."""
    item = dataset[index]
    dtype = next(model.parameters()).dtype

    def batch(key: str) -> torch.Tensor:
        return torch.as_tensor(np.asarray(item[key]))[None].to(device=device, dtype=dtype)

    out = model(batch("images"), batch("proj_matrices"), batch("root"), None)

    def np1(t: torch.Tensor) -> np.ndarray:
        return t[0].detach().double().cpu().numpy()

    volumes = np1(out.volumes)
    attention = None
    if out.attention is not None:  # None: the volumetric model has no attention block
        s = round(out.attention.shape[-1] ** (1 / 3))
        if s ** 3 != out.attention.shape[-1]:
            raise ValueError(f"attention of {out.attention.shape[-1]} voxels is not a cube")
        attention = np1(out.attention).reshape(-1, s, s, s)
    names = (dataset.subject_names[int(item["subject_idx"])], dataset.action_names[int(item["action_idx"])])
    name = (f"#{index} {names[0]} {names[1]}-{int(item['trial'])}  cam {dataset.camera_names[int(item['camera_idx'])]}"
            f"  frame {int(item['frame'])}")
    return ModelSample(index, name, draw.network_image_to_rgb(item["images"][0]),
                       np.asarray(item["proj_matrices"][0], np.float64), np.asarray(item["keypoints_3d"], np.float64),
                       np1(out.keypoints_3d), np1(out.heatmaps)[0], volumes, np1(out.coord_volumes),
                       attention, np1(out.voxel_keypoints_3d))


# ---------------------------------------------------------------------------------------------- pictures


def _colormap(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (size) uint8 RGB inferno, min-max normalised, nearest upsampling (voxels stay visible)."""
    lo, hi = float(values.min()), float(values.max())
    norm = np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo)
    small = cv2.applyColorMap((norm * 255).round().astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]
    return np.ascontiguousarray(cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_NEAREST))


def _mark(image: np.ndarray, point: np.ndarray, color: tuple[int, int, int], style: Style, cross: bool) -> None:
    if not np.isfinite(point).all():
        return
    r = max(3, style.radius + 1)
    p = np.asarray(point, np.float64)
    if cross:
        for d in (np.array([r, r]), np.array([r, -r])):
            draw.draw_polyline(image, np.stack([p - d, p + d]), (0, 0, 0), style.lw + 2)
            draw.draw_polyline(image, np.stack([p - d, p + d]), color, style.lw)
    else:
        ring = np.stack([p + (r + 2) * np.array([np.cos(a), np.sin(a)]) for a in np.linspace(0, 2 * np.pi, 25)])
        draw.draw_polyline(image, ring, (0, 0, 0), style.lw + 2)
        draw.draw_polyline(image, ring, color, style.lw)


def projections(volume: np.ndarray, tile: int, marks: list[tuple[np.ndarray, tuple[int, int, int], bool]],
                style: Style) -> list[np.ndarray]:
    """Maximum-intensity projections of a (S, S, S) volume on the three planes, each (tile, tile, 3) RGB.

    Args:
        volume: (S, S, S) values on the voxel grid (axes x, y, z).
        tile: side of each picture, px.
        marks: (voxel coordinates (3,), RGB, cross?) points to mark (cross: prediction; circle: ground truth).
        style: sizes.
    """
    s = volume.shape[0]
    out = []
    for _, (row_axis, col_axis) in PLANES:
        drop = 3 - row_axis - col_axis
        mip = volume.max(axis=drop)  # remaining axes in increasing order
        img2d = mip if row_axis < col_axis else mip.T  # rows = row_axis
        img = _colormap(img2d[::-1], (tile, tile))  # +row axis up
        for ijk, color, cross in marks:
            px = (ijk[col_axis] + 0.5) * tile / s - 0.5, (s - 1 - ijk[row_axis] + 0.5) * tile / s - 0.5
            _mark(img, np.array(px), color, style, cross)
        out.append(img)
    return out


def _joint_label(skeleton: Skeleton, j: int) -> list[tuple[str, tuple[int, int, int]]]:
    return [(skeleton.names[j], COLORS["pred"][joint_side(skeleton.names[j])] if joint_side(skeleton.names[j])
             != "centre" else TEXT)]


def heatmaps_image(sample: ModelSample, skeleton: Skeleton, style: Style, cols: int = 6) -> np.ndarray:
    """Every joint's heatmap over the crop, gt (circle) and projected prediction (cross) marked."""
    tile_style = style.scaled(max(96, style.size // 2))
    big, scale = draw.resize_image(sample.image, tile_style.size)
    gt = draw.scale_points(draw.project(sample.keypoints_gt, sample.proj), scale)
    pred = draw.scale_points(draw.project(sample.keypoints_pred, sample.proj), scale)
    tiles = []
    for j in range(skeleton.num_joints):
        tile = draw.heatmap_overlay(big, sample.heatmaps[j])
        _mark(tile, gt[j], COLORS["gt"][joint_side(skeleton.names[j])], tile_style, cross=False)
        _mark(tile, pred[j], COLORS["pred"][joint_side(skeleton.names[j])], tile_style, cross=True)
        tiles.append(draw.add_header(tile, [_joint_label(skeleton, j)], tile_style))
    return draw.add_header(draw.grid(tiles, cols), [f"2D heatmaps  {sample.name}", _marks_legend()], style)


def _marks_legend() -> list[tuple[str, tuple[int, int, int]]]:
    return [("circle: ground truth   ", COLORS["gt"]["centre"]), ("cross: prediction   ", COLORS["pred"]["centre"]),
            ("left / right joints: ", TEXT), ("blue ", COLORS["pred"]["left"]), ("red", COLORS["pred"]["right"])]


def volume_grid(sample: ModelSample, values: np.ndarray, skeleton: Skeleton, style: Style, title: str,
                cols: int = 3) -> np.ndarray:
    """Per joint, the three projections of ``values`` (J, s, s, s), ground truth and prediction marked."""
    s = values.shape[1]
    tile_style = style.scaled(max(64, style.size // 4))
    gt_vox = sample.world_to_voxel(sample.keypoints_gt, s)
    pred_vox = sample.world_to_voxel(sample.keypoints_pred, s)
    tiles = []
    for j in range(skeleton.num_joints):
        side = joint_side(skeleton.names[j])
        marks = [(gt_vox[j], COLORS["gt"][side], False), (pred_vox[j], COLORS["pred"][side], True)]
        views = projections(values[j], tile_style.size, marks, tile_style)
        tiles.append(draw.add_header(draw.hstack(views, pad=2, background=(32, 32, 32)),
                                     [_joint_label(skeleton, j)], tile_style))
    planes = "   ".join(f"{name} (rows: {AXIS_NAMES[r]} up)" for name, (r, _) in PLANES)
    return draw.add_header(draw.grid(tiles, cols), [f"{title}  {sample.name}", f"planes: {planes}", _marks_legend()],
                           style)


def cuboid_image(sample: ModelSample, skeleton: Skeleton, style: Style) -> np.ndarray:
    """The crop with the cuboid's edges and both skeletons projected."""
    big, scale = draw.resize_image(sample.image, style.size)
    big = np.ascontiguousarray(big)
    corners = draw.scale_points(draw.project(draw.cuboid_corners(sample.coord_volume), sample.proj), scale)
    draw.draw_cuboid(big, corners, style)
    for kp, role in ((sample.keypoints_gt, "gt"), (sample.keypoints_pred, "pred")):
        draw.draw_skeleton(big, draw.scale_points(draw.project(kp, sample.proj), scale), skeleton, role, style)
    return big


def overview_image(sample: ModelSample, skeleton: Skeleton, style: Style) -> np.ndarray:
    """Cuboid | all heatmaps | volume and attention (when the model has it) projections, summed over joints."""
    from ctxpose.viz.predictions import legend

    cub = draw.add_header(cuboid_image(sample, skeleton, style), ["cuboid and skeletons"], style)
    big, _ = draw.resize_image(sample.image, style.size)
    heat = draw.add_header(draw.heatmap_overlay(big, sample.heatmaps.max(0)), ["2D heatmaps (all joints)"], style)
    hdr = draw.text_size("Ag", style)[1] + max(2, round(style.size / 96))
    tile = (style.size - 2 * hdr) // 2
    small = style.scaled(max(64, tile))
    rows = []
    for label, values in (("3D volumes", sample.volumes), ("global attention", sample.attention)):
        if values is None:
            continue
        views = projections(values.sum(0), tile, [], small)  # all joints' probability together
        names = ", ".join(n for n, _ in PLANES)
        rows.append(draw.add_header(draw.hstack(views, pad=2, background=(32, 32, 32)),
                                    [f"{label}, all joints ({names})"], style))
    right = np.concatenate(rows, axis=0)
    panels = draw.hstack([cub, heat, right], pad=4, background=(32, 32, 32))
    return draw.add_header(panels, [sample.name, legend()], style)


def visualize_model(cfg: Any, checkpoint: str | Path, sample: str, sink: ImageSink, split: str = "val",
                    device: str | torch.device = "cpu", style: Style | None = None,
                    progress: Callable[[int, int], None] | None = None) -> ModelSample:
    """Build the model of ``cfg``, run it on one sample of the ``split`` dataset and render its internals.

    Args:
        cfg: experiment config (model, dataset, limb prior).
        checkpoint: weights (run checkpoint, ours or the original's).
        sample: dataset index or ``SUBJECT/Action-trial/CAMERA/FRAME``.
        sink: where ``overview``, ``cuboid``, ``heatmaps``, ``volumes``, ``attention`` PNGs go (no ``attention``
            for the volumetric model, which has none).
        split: "val" or "train" (either way without augmentation or rotation).
        device: where the model runs.
        style: sizes.
        progress: ``progress(done, total)``.
    """
    from ctxpose.data.datasets import Human36MDataset
    from ctxpose.models import load_model

    if split not in ("val", "train"):
        raise DataError(f"--split {split}: expected val or train")
    if cfg.model.architecture not in ("contextpose", "volumetric"):
        raise ConfigError(f"model.architecture: {cfg.model.architecture} has no volume or cuboid to draw; "
                          "`ctxpose visualize model` draws contextpose and volumetric models (for the triangulation "
                          "models' joints: `ctxpose visualize predictions`)")
    style = style or Style()
    dataset = Human36MDataset.from_config(cfg, split)
    index = parse_sample(sample, dataset)
    model = load_model(cfg, checkpoint, device)
    result = run_model(model, dataset, index, device)
    skeleton = get_skeleton(cfg.model.skeleton)
    steps: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("overview", lambda: overview_image(result, skeleton, style)),
        ("cuboid", lambda: cuboid_image(result, skeleton, style)),
        ("heatmaps", lambda: heatmaps_image(result, skeleton, style)),
        ("volumes", lambda: volume_grid(result, result.volumes, skeleton, style, "3D volumes (max projections)")),
    ]
    if result.attention is not None:
        attention = result.attention
        steps.append(("attention", lambda: volume_grid(result, attention, skeleton, style,
                                                       "global attention (max projections)")))
    for k, (name, make) in enumerate(steps):
        sink.add(name, make())
        if progress is not None:
            progress(k + 1, len(steps))
    return result
