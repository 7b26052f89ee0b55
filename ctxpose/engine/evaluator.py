"""Evaluation: ``evaluate(model, loader, device) -> EvalResult`` and its files.

In a distributed run every rank predicts its own shard (a sampler that does not pad, so no sample
is seen twice), the per-sample arrays are gathered to every rank, ordered by dataset index and
de-duplicated by index as a safeguard, then metrics are computed once from the gathered arrays.

Files (``save_eval``): ``metrics.json`` (overall, per action, per subject) and ``predictions.npz``:

    index (N,) int64 dataset index        subject_idx, action_idx, trial, camera_idx, frame (N,) int64
    keypoints_3d (N, J, 3) float32 predicted, world mm
    keypoints_3d_gt (N, J, 3) float32 ground truth, world mm
    validity (N, J) float32               proj_matrices (N, 3, 4) float32 first view, world mm -> crop px
    subject_names, action_names, camera_names (str arrays)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ctxpose.engine import dist
from ctxpose.utils.io import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

ID_KEYS = ("index", "subject_idx", "action_idx", "trial", "camera_idx", "frame")
NAME_KEYS = ("subject_names", "action_names", "camera_names")


@dataclass
class EvalResult:
    """Gathered predictions and their metrics (identical on every rank).

    Attributes:
        metrics: overall numbers (``mpjpe``, ``mpjpe_relative``, ``pa_mpjpe``, ``n_mpjpe``,
            ``limb_length_error`` in mm; ``pck3d_150``, ``auc3d``, ``pck2d@t`` fractions; the mean of the
            per-action MPJPEs ``mpjpe_action_mean``; ``n_samples``).
        per_action: action name -> {metric: value, "n_samples": count}.
        per_subject: subject name -> {metric: value, "n_samples": count}.
        arrays: the contents of ``predictions.npz`` (see module docstring).
    """

    metrics: dict[str, float]
    per_action: dict[str, dict[str, float]] = field(default_factory=dict)
    per_subject: dict[str, dict[str, float]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``W`` takes indices ``r, r+W, ...`` in order, without padding (shards may differ by 1)."""

    def __init__(self, dataset_len: int, rank: int | None = None, world_size: int | None = None) -> None:
        self.dataset_len = dataset_len
        self.rank = dist.get_rank() if rank is None else rank
        self.world_size = dist.get_world_size() if world_size is None else world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_len, self.world_size))

    def __len__(self) -> int:
        return max(0, math.ceil((self.dataset_len - self.rank) / self.world_size))


def make_eval_loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    """Sequential, non-padded, rank-sharded loader."""
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset)),
                      num_workers=num_workers, drop_last=False)


def move_batch(batch: dict[str, Any], device: torch.device, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Tensors to ``device``; floating tensors as ``dtype`` (the model's; float32 normally)."""
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if value.is_floating_point():
                value = value.to(dtype)
        moved[key] = value
    return moved


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str,
    amp: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Predict every sample of ``loader``'s dataset (sharded over ranks) and compute metrics.

    Args:
        model: unwrapped model (not DDP); put in eval mode here and restored afterwards.
        loader: from :func:`make_eval_loader` (each rank a disjoint shard).
        device: where the model lives.
        amp: ``None``, ``"bf16"`` or ``"fp16"``.
        progress: ``progress(batches_done, batches_total)`` on rank 0.

    Returns:
        :class:`EvalResult`, the same on every rank.
    """
    from ctxpose.engine.trainer import autocast_context

    device = torch.device(device)
    was_training = model.training
    model.eval()
    keys = (*ID_KEYS, "keypoints_3d", "keypoints_3d_gt", "validity", "proj_matrices")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    image_height = None
    try:
        for i, batch in enumerate(loader):
            batch = move_batch(batch, device, next(model.parameters()).dtype)
            with autocast_context(device, amp):
                # no cuboid rotation at evaluation (the original's eval mode), whatever the split draws
                out = model(batch["images"], batch["proj_matrices"], batch["root"], None)
            parts["keypoints_3d"].append(out.keypoints_3d.float().cpu().numpy())
            parts["keypoints_3d_gt"].append(batch["keypoints_3d"].float().cpu().numpy())
            parts["validity"].append(batch["validity"].float().cpu().numpy())
            parts["proj_matrices"].append(batch["proj_matrices"][:, 0].float().cpu().numpy())
            image_height = int(batch["images"].shape[-2])
            for key in ID_KEYS:
                parts[key].append(batch[key].cpu().numpy().astype(np.int64).reshape(-1))
            if progress is not None and dist.get_rank() == 0:
                progress(i + 1, len(loader))
    finally:
        model.train(was_training)
    local = {k: _concat(v) for k, v in parts.items()}
    arrays = dist.all_gather_arrays(local)
    _, first = np.unique(arrays["index"], return_index=True)  # sorted by index, one row per sample
    arrays = {k: v[first] for k, v in arrays.items()}
    dataset = loader.dataset
    for key in NAME_KEYS:
        arrays[key] = np.asarray(list(getattr(dataset, key, [])), dtype=str)
    heights = [h for h in dist.all_gather_object(image_height) if h is not None]
    return compute_result(arrays, heights[0] if heights else None)


def _concat(chunks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(chunks, axis=0) if chunks else np.zeros((0,), dtype=np.float32)


def compute_result(arrays: dict[str, np.ndarray], image_height: int | None = None) -> EvalResult:
    """Metrics of gathered predictions via :class:`ctxpose.metrics.MetricAccumulator`.

    Args:
        arrays: the ``predictions.npz`` arrays (``proj_matrices`` (N, 3, 4) optional, for the 2D PCK).
        image_height: crop height, px (2D PCK thresholds); ``None`` skips the 2D PCK.
    """
    from ctxpose.metrics import MetricAccumulator

    acc = MetricAccumulator([str(n) for n in arrays["subject_names"]], [str(n) for n in arrays["action_names"]],
                            image_height=image_height)
    if len(arrays["index"]):
        acc.add(arrays["index"], arrays["subject_idx"], arrays["action_idx"], arrays["keypoints_3d"],
                arrays["keypoints_3d_gt"], arrays["validity"], arrays.get("proj_matrices"))
    summary = acc.summary()
    overall = dict(summary.overall)
    overall["n_samples"] = float(summary.count)
    mpjpes = [m["mpjpe"] for m in summary.per_action.values()]
    overall["mpjpe_action_mean"] = float(np.mean(mpjpes)) if mpjpes else float("nan")
    return EvalResult(overall, summary.per_action, summary.per_subject, arrays)


def save_eval(result: EvalResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``predictions.npz`` atomically (call on rank 0); returns their paths."""
    out_dir = Path(out_dir)
    metrics_path, pred_path = out_dir / "metrics.json", out_dir / "predictions.npz"
    payload = {"overall": result.metrics, "per_action": result.per_action, "per_subject": result.per_subject}
    atomic_write_text(metrics_path, json.dumps(payload, indent=2))
    with atomic_path(pred_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **result.arrays)
    logger.info("wrote %s and %s", metrics_path, pred_path)
    return metrics_path, pred_path


def evaluate_checkpoint(
    cfg: Any,
    checkpoint: str | Path,
    device: str | torch.device = "cpu",
    split: str = "val",
    out_dir: str | Path | None = None,
    amp: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    components: Any = None,
) -> EvalResult:
    """Build the model and ``split`` dataset from ``cfg``, load weights, evaluate (all ranks), save (rank 0).

    Args:
        cfg: experiment config.
        checkpoint: our run checkpoint, our weights, or the original's released ``weights.pth``.
        device: ``cpu``, ``cuda`` (-> ``cuda:LOCAL_RANK``) or an explicit device.
        split: ``"val"`` or ``"train"`` (evaluated without cuboid rotation either way).
        out_dir: where ``metrics.json`` and ``predictions.npz`` go (rank 0); ``None`` writes nothing.
        amp: ``None``, ``"bf16"`` or ``"fp16"``.
        progress: ``progress(batches_done, batches_total)`` on rank 0.
        components: :class:`ctxpose.engine.trainer.Components` (default: the real pieces).
    """
    from ctxpose.engine.trainer import Components

    comps = components or Components()
    env = dist.init_distributed(torch.device(device))
    device = dist.resolve_device(device, env.local_rank)
    model = comps.build_model(cfg)
    _load_weights(model, Path(checkpoint))
    model.to(device)
    dataset = comps.build_dataset(cfg, split)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    loader = make_eval_loader(dataset, cfg.val.batch_size, cfg.val.num_workers)
    result = evaluate(model, loader, device, amp=amp, progress=progress)
    if out_dir is not None and dist.is_main_process():
        save_eval(result, out_dir)
    dist.barrier()
    return result


def _load_weights(model: nn.Module, path: Path) -> None:
    from ctxpose.models import load_checkpoint

    load_checkpoint(model, path)  # handles our run checkpoints ({"model": ...}), plain and original weights
