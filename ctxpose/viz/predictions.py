"""``ctxpose visualize predictions``: what an evaluation got right and wrong, per sample and in aggregate.

Reads the evaluator's ``predictions.npz`` (or an eval folder holding it and ``metrics.json``) and renders:

- per selected sample: the crop with the predicted and ground-truth skeletons, the standard 3D view of both
  (:func:`ctxpose.viz.figures.pose_3d_image`: camera-facing, fixed mm axes, floor grid; MPJPE and the worst
  joints in its title) and the error of every joint;
- ``worst.png``: a gallery of the samples with the largest MPJPE;
- ``per_action.png``, ``per_joint.png``, ``error_distribution.png``: MPJPE / PA-MPJPE per action, the mean
  error per joint, the distribution of per-sample MPJPE and the fraction of joints under each error;
- ``summary.json``: the numbers behind the plots.

Crops: the file carries them when it has ``image_paths`` ((N,) str, each sample's first-view crop, relative to
``dataset_root`` (() str, the processed folder at evaluation time) or absolute), and optionally ``image_shape``
((2,) int, the network input (H, W) that ``proj_matrices`` refers to, when the stored crops have another size).
Without them the crops are looked up in a processed dataset (``dataset``) by subject, sequence, camera and frame,
through that dataset's own cameras. Without either, everything but the crops is drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctxpose.data.predictions_npz import ID_FIELDS, NAME_FIELDS, load_predictions
from ctxpose.errors import DataError
from ctxpose.skeleton import H36M_CONTEXTPOSE, Skeleton, get_skeleton
from ctxpose.utils.io import atomic_write_text
from ctxpose.viz import draw
from ctxpose.viz.figures import joint_error_bars, new_figure, pose_3d_image, render
from ctxpose.viz.output import ImageSink
from ctxpose.viz.style import COLORS, TEXT, Style, mpl_color

REQUIRED = ("index", "keypoints_3d", "keypoints_3d_gt")


@dataclass
class Predictions:
    """An evaluation's per-sample arrays (:mod:`ctxpose.data.predictions_npz`).

    Attributes:
        path: the ``predictions.npz`` read.
        arrays: its arrays; ``validity`` is filled with ones when absent.
        skeleton: joint order of the keypoints (the file's ``skeleton``).
        metrics: ``metrics.json`` beside it, if present.
    """

    path: Path
    arrays: dict[str, np.ndarray]
    skeleton: Skeleton
    metrics: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.arrays["index"])

    @property
    def joint_errors(self) -> np.ndarray:
        """(N, J) distance between predicted and true joints, mm (NaN where invalid)."""
        err = np.linalg.norm(self.arrays["keypoints_3d"].astype(np.float64)
                             - self.arrays["keypoints_3d_gt"].astype(np.float64), axis=-1)
        return np.where(self.arrays["validity"] > 0, err, np.nan)

    @property
    def sample_mpjpe(self) -> np.ndarray:
        """(N,) MPJPE per sample over its valid joints, mm (:func:`ctxpose.metrics.pose.mpjpe`)."""
        from ctxpose.metrics.pose import mpjpe

        a = self.arrays
        return np.asarray(mpjpe(a["keypoints_3d"].astype(np.float64), a["keypoints_3d_gt"].astype(np.float64),
                                a["validity"].astype(np.float64)))

    def has_ids(self) -> bool:
        return all(k in self.arrays for k in (*ID_FIELDS, *NAME_FIELDS))

    def sample_key(self, row: int) -> tuple[str, str, str, int] | None:
        """(subject, sequence, camera, frame) of a row, e.g. ("S9", "Walking-1", "54138969", 40); None without ids."""
        if not self.has_ids():
            return None
        a = self.arrays

        def name(kind: str, idx_key: str) -> str:
            names, i = a[f"{kind}_names"], int(a[idx_key][row])
            return str(names[i]) if 0 <= i < len(names) else f"{kind}{i}"

        return (name("subject", "subject_idx"), f"{name('action', 'action_idx')}-{int(a['trial'][row])}",
                name("camera", "camera_idx"), int(a["frame"][row]))

    def describe(self, row: int) -> str:
        """Short id of a row: ``#37 S9 Walking-1 cam 54138969 frame 40``."""
        key = self.sample_key(row)
        head = f"#{int(self.arrays['index'][row])}"
        return head if key is None else f"{head} {key[0]} {key[1]}  cam {key[2]}  frame {key[3]}"

    def rows_of(self, indices: Sequence[int]) -> np.ndarray:
        """Rows holding the given dataset indices.

        Raises:
            DataError: an index is not in the file (the message gives the range that is).
        """
        index = self.arrays["index"]
        where = {int(v): r for r, v in enumerate(index.tolist())}
        missing = [int(i) for i in indices if int(i) not in where]
        if missing:
            rng = f"{int(index.min())}..{int(index.max())}" if len(index) else "none"
            raise DataError(f"{self.path}: sample index {missing[0]} is not in the file ({len(index)} samples, "
                            f"indices {rng})")
        return np.array([where[int(i)] for i in indices], dtype=np.int64)


def open_predictions(path: str | Path) -> Predictions:
    """Read ``predictions.npz``, or an eval folder holding ``predictions.npz`` (and ``metrics.json``).

    Raises:
        DataError: missing file, unreadable npz, missing arrays or inconsistent shapes (one line naming them).
    """
    path = Path(path)
    if path.is_dir():
        npz = path / "predictions.npz"
        if not npz.is_file():
            raise DataError(f"{path}: no predictions.npz in this folder (expected the output of `ctxpose eval`)")
    elif path.is_file():
        npz = path
    else:
        raise DataError(f"{path}: no such file or folder")
    arrays = load_predictions(npz, REQUIRED)
    # files without the key predate it, when the ContextPose order was the only one
    name = str(arrays["skeleton"]) if "skeleton" in arrays else H36M_CONTEXTPOSE.name
    try:
        skeleton = get_skeleton(name)
    except KeyError as e:
        raise DataError(f"{npz}: {e.args[0]}") from None
    n, j = len(arrays["index"]), skeleton.num_joints
    if arrays["keypoints_3d"].shape[1:] != (j, 3):
        raise DataError(f"{npz}: keypoints_3d has shape {arrays['keypoints_3d'].shape}, expected ({n}, {j}, 3) "
                        f"(skeleton {skeleton.name})")
    arrays.setdefault("validity", np.ones((n, j), np.float32))
    metrics = None
    metrics_path = npz.parent / "metrics.json"
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{metrics_path}: not readable JSON ({e})") from None
    return Predictions(npz, arrays, skeleton, metrics)


class CropFinder:
    """Finds each sample's crop and the projection matrix that maps world mm onto it.

    Args:
        preds: the predictions.
        dataset: processed dataset folder: the root of relative ``image_paths``, or (without them) the dataset
            to look the crops up in by subject, sequence, camera and frame.

    Attributes:
        reason: why there are no crops (None when there are).
    """

    def __init__(self, preds: Predictions, dataset: str | Path | None = None) -> None:
        self.preds = preds
        self.reason: str | None = None
        self._root: Path | None = None
        self._table = None
        self._rows: dict[tuple[str, str, str, int], int] = {}
        a = preds.arrays
        if "image_paths" in a:
            recorded = str(a["dataset_root"]) if "dataset_root" in a else None
            self._root = Path(dataset) if dataset is not None else (Path(recorded) if recorded else None)
            if "proj_matrices" not in a:
                self.reason = f"{preds.path} has image_paths but no proj_matrices"
        elif dataset is not None:
            from ctxpose.viz.dataset import open_processed

            if not preds.has_ids():
                raise DataError(f"{preds.path}: no sample ids ({', '.join(ID_FIELDS + NAME_FIELDS)}) to find the crops "
                                f"in {dataset} with")
            _, self._table = open_processed(dataset)
            t = self._table
            self._rows = {(str(t.subject[r]), str(t.sequence[r]), str(t.camera[r]), int(t.frame[r])): r
                          for r in range(len(t))}
        else:
            self.reason = (f"{preds.path} has no image_paths; pass --dataset PROCESSED to find the crops by "
                           "subject, sequence, camera and frame")

    @property
    def available(self) -> bool:
        return self.reason is None

    def crop(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(crop (H, W, 3) uint8 RGB, (3, 4) world mm -> its px) of a prediction row.

        Raises:
            DataError: the crop is not found (one line naming the sample and the path).
        """
        if self.reason is not None:
            raise DataError(self.reason)
        a = self.preds.arrays
        if self._table is not None:
            key = self.preds.sample_key(row)
            r = self._rows.get(key)
            if r is None:
                raise DataError(f"{self._table.root}: sample {self.preds.describe(row)} of {self.preds.path} is not "
                                "in this processed dataset")
            return draw.read_image(self._table.root / str(self._table.image[r])), self._table.proj[r]
        rel = Path(str(a["image_paths"][row]))
        if not rel.is_absolute() and self._root is None:
            raise DataError(f"{self.preds.path}: image_paths are relative and there is no dataset_root; pass --dataset")
        path = rel if rel.is_absolute() else self._root / rel
        image = draw.read_image(path)
        proj = np.asarray(a["proj_matrices"][row], np.float64)
        if "image_shape" in a:  # proj refers to the network input; the stored crop may be another size
            from ctxpose.geometry import scale_intrinsics

            # scaling K's first two rows scales those of K [R | t] alike
            proj = scale_intrinsics(proj, tuple(int(v) for v in a["image_shape"]), image.shape[:2])
        return image, proj


def _worst_joints(errors: np.ndarray, skeleton: Skeleton, k: int = 3) -> str:
    order = [j for j in np.argsort(-np.nan_to_num(errors, nan=-1.0)) if np.isfinite(errors[j])][:k]
    return ", ".join(f"{skeleton.names[j]} {errors[j]:.0f}" for j in order)


def legend() -> list[tuple[str, tuple[int, int, int]]]:
    """Header segments naming the colours of both skeletons."""
    p, g = COLORS["pred"], COLORS["gt"]
    return [("prediction ", TEXT), ("L ", p["left"]), ("R ", p["right"]), ("C", p["centre"]),
            ("   ground truth ", TEXT), ("L ", g["left"]), ("R ", g["right"]), ("C", g["centre"])]


def render_sample(preds: Predictions, row: int, crops: CropFinder | None, style: Style, up: str = "z",
                  extent: float = 1000.0) -> np.ndarray:
    """One sample: crop with both skeletons | 3D view | per-joint error bars, under a title.

    Args:
        preds: the predictions.
        row: row in the arrays.
        crops: where crops come from (None or unavailable: no crop panel).
        style: ``size`` is the panel height, px.
        up: the world's vertical axis.
        extent: half side of the 3D view, mm.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    a, sk = preds.arrays, preds.skeleton
    pred, gt, validity = a["keypoints_3d"][row], a["keypoints_3d_gt"][row], a["validity"][row]
    errors = preds.joint_errors[row]
    mpjpe = float(preds.sample_mpjpe[row])
    proj = a["proj_matrices"][row] if "proj_matrices" in a else None
    panels = []
    if crops is not None and crops.available:
        image, crop_proj = crops.crop(row)
        panels.append(draw.skeleton_overlay(image, crop_proj, [(gt, "gt"), (pred, "pred")], sk, style, validity))
    panels.append(pose_3d_image([(gt, "gt"), (pred, "pred")], sk, style, proj, up, extent,
                                title=[f"MPJPE {mpjpe:.1f} mm", f"worst: {_worst_joints(errors, sk)} mm"],
                                validity=validity))
    fig = new_figure(round(style.size * 0.9), style.size)
    ax = fig.add_axes((0.4, 0.11, 0.55, 0.82))
    joint_error_bars(ax, errors, sk, style)
    ax.set_title("error per joint", fontsize=style.font_pt * 0.8)
    panels.append(render(fig))
    return draw.add_header(draw.hstack(panels, pad=4), [preds.describe(row), legend()], style)


def worst_gallery(preds: Predictions, crops: CropFinder | None, count: int, style: Style, up: str = "z",
                  extent: float = 1000.0, cols: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Tiles of the ``count`` samples with the largest MPJPE, worst first.

    Returns:
        the gallery image (H, W, 3) uint8 RGB and the (count,) rows shown.
    """
    err = preds.sample_mpjpe
    rows = np.argsort(-np.nan_to_num(err, nan=-1.0), kind="stable")[:count]
    tile_style = style.scaled(max(128, style.size // 2))
    a, tiles = preds.arrays, []
    for r in rows:
        pair = [(a["keypoints_3d_gt"][r], "gt"), (a["keypoints_3d"][r], "pred")]
        if crops is not None and crops.available:
            image, proj = crops.crop(int(r))
            tile = draw.skeleton_overlay(image, proj, pair, preds.skeleton, tile_style, a["validity"][r])
        else:
            proj = a["proj_matrices"][r] if "proj_matrices" in a else None
            tile = pose_3d_image(pair, preds.skeleton, tile_style, proj, up, extent, validity=a["validity"][r])
        key = preds.sample_key(int(r))
        label = f"#{int(a['index'][r])} " + (f"{key[1]} f{key[3]}" if key else "")
        tiles.append(draw.add_header(tile, [label, f"MPJPE {err[r]:.0f} mm"], tile_style))
    return draw.add_header(draw.grid(tiles, cols=cols), [f"The {len(rows)} worst samples of {len(preds)}",
                                                         legend()], style), rows


def per_action(preds: Predictions) -> dict[str, dict[str, float]]:
    """MPJPE, PA-MPJPE and count per action (trials merged), through :class:`ctxpose.metrics.pose.MetricAccumulator`;
    ``{"all": ...}`` when the file has no action ids."""
    from ctxpose.metrics.pose import MetricAccumulator, mpjpe, pa_mpjpe

    a = preds.arrays
    if not preds.has_ids():
        p, g, v = (a[k].astype(np.float64) for k in ("keypoints_3d", "keypoints_3d_gt", "validity"))
        return {"all": {"mpjpe": float(np.nanmean(mpjpe(p, g, v))), "pa_mpjpe": float(np.nanmean(pa_mpjpe(p, g, v))),
                        "n_samples": float(len(p))}}
    names = [str(n) for n in a["action_names"]]
    acc = MetricAccumulator([str(n) for n in a["subject_names"]], names, preds.skeleton)
    acc.add(a["index"], a["subject_idx"], a["action_idx"], a["keypoints_3d"], a["keypoints_3d_gt"], a["validity"])
    stats = acc.summary().per_action
    _, first = np.unique(a["index"], return_index=True)  # the accumulator counts each index once
    counts = np.bincount(a["action_idx"][first], minlength=len(names))
    return {name: {**m, "n_samples": float(counts[names.index(name)])} for name, m in stats.items()}


def plot_per_action(stats: dict[str, dict[str, float]], style: Style) -> np.ndarray:
    """Horizontal bars of MPJPE and PA-MPJPE per action, worst on top."""
    names = sorted(stats, key=lambda k: -stats[k]["mpjpe"])
    k = style.size / 384
    height = round((110 + 40 * len(names)) * k)
    fig = new_figure(round(style.size * 1.6), height)
    bottom, top = 45 * k / height, 40 * k / height  # room for the axis label / the title, px -> fraction
    ax = fig.add_axes((0.3, bottom, 0.62, 1 - bottom - top))
    y = np.arange(len(names))
    ax.barh(y - 0.2, [stats[n]["mpjpe"] for n in names], 0.4, color=mpl_color(COLORS["pred"]["left"]), label="MPJPE")
    ax.barh(y + 0.2, [stats[n]["pa_mpjpe"] for n in names], 0.4, color=mpl_color(COLORS["gt"]["left"]),
            label="PA-MPJPE")
    for k, n in enumerate(names):
        ax.text(stats[n]["mpjpe"], k - 0.2, f" {stats[n]['mpjpe']:.1f}", va="center", fontsize=style.font_pt * 0.6)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{n} ({int(stats[n].get('n_samples', 0))})" for n in names], fontsize=style.font_pt * 0.65)
    ax.invert_yaxis()
    ax.set_xlabel("error (mm)", fontsize=style.font_pt * 0.7)
    ax.set_title("Error per action (samples)", fontsize=style.font_pt * 0.85, loc="right")
    ax.tick_params(axis="x", labelsize=style.font_pt * 0.6)
    ax.set_xlim(0, 1.12 * max(stats[n]["mpjpe"] for n in names))
    ax.legend(fontsize=style.font_pt * 0.6, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False,
              borderaxespad=0.1)
    ax.grid(axis="x", color="0.88")
    ax.set_axisbelow(True)
    return render(fig)


def per_joint(preds: Predictions) -> np.ndarray:
    """(J,) mean error of each joint over the samples where it is valid, mm."""
    return np.nanmean(preds.joint_errors, axis=0) if len(preds) else np.full(preds.skeleton.num_joints, np.nan)


def plot_per_joint(errors: np.ndarray, skeleton: Skeleton, style: Style) -> np.ndarray:
    """Mean error per joint, bars coloured by side."""
    fig = new_figure(round(style.size * 1.4), style.size)
    ax = fig.add_axes((0.3, 0.13, 0.66, 0.79))
    joint_error_bars(ax, errors, skeleton, style, xlabel="mean error (mm)")
    for j, e in enumerate(errors):
        if np.isfinite(e):
            ax.text(e, j, f" {e:.0f}", va="center", fontsize=style.font_pt * 0.55)
    ax.set_title("Mean error per joint", fontsize=style.font_pt * 0.85)
    return render(fig)


def plot_error_distribution(preds: Predictions, style: Style) -> np.ndarray:
    """Histogram of per-sample MPJPE (mean and median marked) | fraction of joints within each error (3D PCK)."""
    err = preds.sample_mpjpe
    err = err[np.isfinite(err)]
    joints = preds.joint_errors
    joints = joints[np.isfinite(joints)]
    fig = new_figure(round(style.size * 2), style.size)
    ax1 = fig.add_axes((0.07, 0.14, 0.4, 0.76))
    ax2 = fig.add_axes((0.57, 0.14, 0.4, 0.76))
    fs = style.font_pt
    if len(err):
        ax1.hist(err, bins=min(40, max(5, len(err) // 5)), color=mpl_color(COLORS["pred"]["left"]), alpha=0.85)
        for value, label, ls in ((err.mean(), "mean", "-"), (np.median(err), "median", "--")):
            ax1.axvline(value, color="0.15", ls=ls, lw=1.2, label=f"{label} {value:.1f} mm")
        ax1.legend(fontsize=fs * 0.6)
    ax1.set_xlabel("MPJPE per sample (mm)", fontsize=fs * 0.7)
    ax1.set_ylabel("samples", fontsize=fs * 0.7)
    ax1.set_title(f"Per-sample MPJPE ({len(err)} samples)", fontsize=fs * 0.85)
    if len(joints):
        top = max(150.0, float(np.percentile(joints, 99)))
        t = np.linspace(0, top, 200)
        ax2.plot(t, (joints[None, :] <= t[:, None]).mean(1) * 100, color=mpl_color(COLORS["pred"]["right"]), lw=2)
        ax2.axvline(150, color="0.5", ls=":", lw=1)
        pck = (joints <= 150).mean() * 100
        ax2.text(150, 5, f" {pck:.1f}% within 150 mm", fontsize=fs * 0.6)
    ax2.set_ylim(0, 100)
    ax2.set_xlabel("joint error (mm)", fontsize=fs * 0.7)
    ax2.set_ylabel("joints within (%)", fontsize=fs * 0.7)
    ax2.set_title("Cumulative joint error", fontsize=fs * 0.85)
    for ax in (ax1, ax2):
        ax.tick_params(labelsize=fs * 0.6)
        ax.grid(color="0.9")
        ax.set_axisbelow(True)
    return render(fig)


@dataclass
class PredictionsReport:
    """What :func:`visualize_predictions` made."""

    samples: np.ndarray
    worst: np.ndarray
    per_action: dict[str, dict[str, float]]
    summary: Path
    crops_note: str | None


def choose_rows(preds: Predictions, indices: Sequence[int] | None, samples: int) -> np.ndarray:
    """Rows to render: the given dataset indices, else ``samples`` evenly spaced rows (0: none, -1: all)."""
    if indices:
        return preds.rows_of(indices)
    n = len(preds)
    if samples < 0 or samples >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, samples).round().astype(np.int64)) if samples else np.zeros(0, np.int64)


def visualize_predictions(path: str | Path, sink: ImageSink, dataset: str | Path | None = None,
                          indices: Sequence[int] | None = None, samples: int = 8, worst: int = 12,
                          style: Style | None = None, up: str = "z", extent: float = 1000.0,
                          progress: Callable[[int, int], None] | None = None) -> PredictionsReport:
    """Render an evaluation into ``sink``: per-sample figures (the sequence), the worst gallery and the plots.

    Args:
        path: ``predictions.npz`` or an eval folder.
        sink: where images go (``samples/<index>.png``, ``worst.png``, ``per_action.png``, ``per_joint.png``,
            ``error_distribution.png``); ``summary.json`` is written into ``sink.out_dir``.
        dataset: processed dataset folder (see :class:`CropFinder`).
        indices: dataset indices to render (default: ``samples`` evenly spaced ones).
        samples: how many samples to render without ``indices`` (-1: all).
        worst: size of the worst-sample gallery (0: none).
        style: sizes.
        up: the world's vertical axis.
        extent: half side of the 3D views, mm.
        progress: ``progress(done, total)``.

    Raises:
        DataError: unreadable predictions, an index not in the file, a crop that cannot be found.
    """
    style = style or Style()
    preds = open_predictions(path)
    if not len(preds):
        raise DataError(f"{preds.path}: holds no samples")
    crops = CropFinder(preds, dataset)
    rows = choose_rows(preds, indices, samples)
    total = len(rows) + (worst > 0) + 3
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for r in rows:
        sink.add(f"samples/{int(preds.arrays['index'][r]):06d}", render_sample(preds, int(r), crops, style, up, extent),
                 sequence=True)
        tick()
    shown = np.zeros(0, np.int64)
    if worst > 0:
        image, shown = worst_gallery(preds, crops, worst, style, up, extent)
        sink.add("worst", image)
        tick()
    stats = per_action(preds)
    sink.add("per_action", plot_per_action(stats, style))
    tick()
    joint_means = per_joint(preds)
    sink.add("per_joint", plot_per_joint(joint_means, preds.skeleton, style))
    tick()
    sink.add("error_distribution", plot_error_distribution(preds, style))
    tick()
    err = preds.sample_mpjpe
    summary = {
        "predictions": str(preds.path), "n_samples": len(preds), "mpjpe": float(np.nanmean(err)),
        "mpjpe_median": float(np.nanmedian(err)), "per_action": stats,
        "per_joint": dict(zip(preds.skeleton.names, map(float, joint_means), strict=True)),
        "worst": [{"index": int(preds.arrays["index"][r]), "mpjpe": float(err[r]), "sample": preds.describe(int(r))}
                  for r in shown],
        "rendered": [int(preds.arrays["index"][r]) for r in rows],
    }
    summary_path = sink.out_dir / "summary.json"
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    return PredictionsReport(rows, shown, stats, summary_path, crops.reason)


def save_overlay(source: str | Path, dataset: str | Path | None, path: str | Path, count: int = 4,
                 style: Style | None = None) -> Path:
    """``count`` evenly spaced samples side by side, crops with both skeletons, as one PNG (the demo's overlay).

    Args:
        source: ``predictions.npz`` or an eval folder.
        dataset: processed dataset with the crops (see :class:`CropFinder`).
        path: the PNG to write.
        count: samples shown.
        style: sizes (default 256-pixel tiles).
    """
    from ctxpose.viz.output import save_png

    style = style or Style(size=256)
    preds = open_predictions(source)
    crops = CropFinder(preds, dataset)
    rows = choose_rows(preds, None, count)
    a = preds.arrays
    tiles = []
    for r in rows:
        image, proj = crops.crop(int(r))
        tile = draw.skeleton_overlay(image, proj, [(a["keypoints_3d_gt"][r], "gt"), (a["keypoints_3d"][r], "pred")],
                                     preds.skeleton, style, a["validity"][r])
        tiles.append(draw.add_header(tile, [preds.describe(int(r)).split("  cam")[0]], style))
    return save_png(path, draw.add_header(draw.hstack(tiles, pad=2, background=(0, 0, 0)), [legend()], style))
