"""Evaluation: an inference loop over a sharded loader feeding an evaluator (``reset`` / ``process`` /
``summarize``, as detectron2's), and the files it writes.

In a distributed run every rank predicts its own shard (:func:`ctxpose.data.loaders.make_eval_loader`:
no padding, so no sample is seen twice); :meth:`PoseEvaluator.summarize` gathers the per-sample arrays
to every rank, orders them by dataset index (de-duplicating by index as a safeguard) and computes the
metrics once from the gathered arrays.

Files (:func:`save_eval`): ``metrics.json`` (overall, per action, per subject; for Human3.6M also
learnable-triangulation's MPJPE under ``learnable_triangulation``; for MPI-INF-3DHP the official tables
under ``mpi_inf_3dhp``, the pelvis source under ``root_source``, and the two CSV files the official script
writes) and ``predictions.npz`` (:mod:`ctxpose.data.predictions_npz`: ids and names, ``camera_indices`` (the
cameras of the views each prediction saw; V > 1 is a multi-view estimate, which ``pred_results_path`` serves to
every camera of its frame), ``keypoints_3d``, ``keypoints_3d_gt``, ``validity``, ``proj_matrices``,
``skeleton``, ``image_shape``, and ``image_paths`` with ``dataset_root`` where the dataset has crops:
``ctxpose visualize predictions`` needs nothing else).

For MPI-INF-3DHP (:class:`MPI3DHPEvaluator`) "world" is the test camera's frame in the file (keypoints and
``proj_matrices`` turned back from the upright frame the network saw); ``subject_idx`` is the sequence
(TS1..TS6), ``action_idx`` the activity, ``frame`` the 0-based annotation frame: what ``ctxpose export-3dhp``
reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ctxpose.config import Amp, GroundTruth3DHP, JointGroups
from ctxpose.data.predictions_npz import ID_FIELDS, NAME_FIELDS, save_predictions
from ctxpose.engine import dist
from ctxpose.engine.precision import autocast_context
from ctxpose.engine.progress import eval_progress
from ctxpose.errors import Stopped
from ctxpose.skeleton import Skeleton
from ctxpose.utils.io import atomic_write_text
from ctxpose.utils.signals import StopSignals

logger = logging.getLogger(__name__)

ID_KEYS = ("index", *ID_FIELDS)


@dataclass
class EvalResult:
    """Gathered predictions and their metrics (identical on every rank).

    Attributes:
        metrics: overall numbers (``mpjpe``, ``mpjpe_relative``, ``pa_mpjpe``, ``n_mpjpe``,
            ``limb_length_error`` in mm; ``pck_3dhp``, ``auc_3dhp`` percent (the MPI-INF-3DHP rule, over
            every joint); ``pck2d@t`` the original's 2D PCK, a fraction; the mean of the per-action MPJPEs
            ``mpjpe_action_mean``; ``n_samples``).
        per_action: action name -> {metric: value, "n_samples": count}.
        per_subject: subject name -> {metric: value, "n_samples": count}.
        arrays: the contents of ``predictions.npz`` (see module docstring).
    """

    metrics: dict[str, float]
    per_action: dict[str, dict[str, float]] = field(default_factory=dict)
    per_subject: dict[str, dict[str, float]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # dataset-specific results (objects with to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` payload."""
        extra = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in self.extra.items()}
        return {"overall": self.metrics, "per_action": self.per_action, "per_subject": self.per_subject, **extra}


class Evaluator(Protocol):
    """Accumulates one evaluation: ``reset()``, ``process(batch, output)`` per batch, ``summarize()`` once."""

    def reset(self) -> None: ...

    def process(self, batch: dict[str, Any], output: Any) -> None: ...

    def summarize(self) -> EvalResult: ...


class PoseEvaluator:
    """3D pose metrics of a dataset with Human3.6M-style ids (MPJPE, PA-MPJPE, ... per action and subject).

    Args:
        dataset: the evaluated dataset (its ``subject_names``, ``action_names``, ``camera_names`` name the ids).
        skeleton: joint order (root joint, bones); default the dataset's ``skeleton``.
    """

    def __init__(self, dataset: Dataset, skeleton: Skeleton | None = None) -> None:
        self.dataset = dataset
        self.skeleton = skeleton or getattr(dataset, "skeleton", None)
        if self.skeleton is None:
            raise ValueError(f"{type(dataset).__name__} has no skeleton attribute: pass the skeleton of its poses")
        self.reset()

    def reset(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {
            k: [] for k in (*ID_KEYS, "camera_indices", "keypoints_3d", "keypoints_3d_gt", "validity",
                            "proj_matrices")}
        self._image_hw: tuple[int, int] | None = None

    def process(self, batch: dict[str, Any], output: Any) -> None:
        def numpy(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy()

        self._parts["keypoints_3d"].append(numpy(output.keypoints_3d))
        self._parts["keypoints_3d_gt"].append(numpy(batch["keypoints_3d"]))
        self._parts["validity"].append(numpy(batch["validity"]))
        self._parts["proj_matrices"].append(numpy(batch["proj_matrices"][:, 0]))
        self._image_hw = (int(batch["images"].shape[-2]), int(batch["images"].shape[-1]))
        for key in ID_KEYS:
            self._parts[key].append(batch[key].cpu().numpy().astype(np.int64).reshape(-1))
        views = batch.get("camera_indices", batch["camera_idx"])  # a dataset without it: one view, camera_idx
        self._parts["camera_indices"].append(views.cpu().numpy().astype(np.int64).reshape(len(batch["index"]), -1))

    def summarize(self) -> EvalResult:
        """Gather every rank's arrays (a collective: call on all ranks) and compute the metrics."""
        local = {k: np.concatenate(v, axis=0) if v else np.zeros((0,), np.float32) for k, v in self._parts.items()}
        arrays = dist.all_gather_arrays(local)
        _, first = np.unique(arrays["index"], return_index=True)  # sorted by index, one row per sample
        arrays = {k: v[first] for k, v in arrays.items()}
        for key in NAME_FIELDS:
            arrays[key] = np.asarray(list(getattr(self.dataset, key, [])), dtype=str)
        sizes = [hw for hw in dist.all_gather_object(self._image_hw) if hw is not None]
        arrays["skeleton"] = np.asarray(self.skeleton.name)
        if sizes:
            arrays["image_shape"] = np.asarray(sizes[0], dtype=np.int64)
        paths = self.dataset.image_paths() if hasattr(self.dataset, "image_paths") else None
        if paths is not None and len(arrays["index"]):  # so the pictures need nothing but this file
            arrays["image_paths"] = np.asarray(paths, dtype=str)[arrays["index"]]
            arrays["dataset_root"] = np.asarray(str(Path(self.dataset.root).resolve()))
        result = compute_result(arrays, self.skeleton, sizes[0][0] if sizes else None)
        result.extra.update(protocol_metrics(arrays, self.skeleton))
        return result


class MPI3DHPEvaluator(PoseEvaluator):
    """:class:`PoseEvaluator` plus the official MPI-INF-3DHP tables, with the arrays in the test camera's frame.

    Args:
        dataset: a :class:`ctxpose.data.mpi_inf_3dhp.dataset.MPIInf3DHPDataset`.
        joint_groups: PCK/AUC joint groups, "17" or "14".
        ground_truth: "univ_annot3" (official) or "annot3_nonstandard".
    """

    def __init__(self, dataset: Any, joint_groups: JointGroups | str = JointGroups.ALL17,
                 ground_truth: GroundTruth3DHP | str = GroundTruth3DHP.UNIV) -> None:
        super().__init__(dataset)
        self.joint_groups, self.ground_truth = JointGroups(joint_groups), GroundTruth3DHP(ground_truth)

    def summarize(self) -> EvalResult:
        result = super().summarize()  # rotation-invariant metrics: the same in either frame
        arrays, to_camera = result.arrays, self.dataset.to_camera
        for key in ("keypoints_3d", "keypoints_3d_gt"):
            arrays[key] = to_camera(arrays[key]).astype(np.float32)
        # P_cam x_cam = P_world x_world with x_world = R^T x_cam: the 3x3 part times R^T
        proj = arrays["proj_matrices"].astype(np.float64)
        proj[:, :, :3] = to_camera(proj[:, :, :3])
        arrays["proj_matrices"] = proj.astype(np.float32)
        from ctxpose.metrics.mpi_inf_3dhp import evaluate_dataset_predictions

        official = evaluate_dataset_predictions(self.dataset, arrays["index"], arrays["keypoints_3d"],
                                                self.joint_groups.value, self.ground_truth.value)
        result.extra = {"mpi_inf_3dhp": official, "root_source": self.dataset.root_source}
        # PCK/AUC of this test set are the official tables' (against univ_annot3): not a second pair beside them
        for table in (result.metrics, *result.per_action.values(), *result.per_subject.values()):
            table.pop("pck_3dhp", None)
            table.pop("auc_3dhp", None)
        return result


def protocol_metrics(arrays: dict[str, np.ndarray], skeleton: Skeleton) -> dict[str, Any]:
    """Other projects' metrics of Human3.6M predictions, each under its protocol's name (``metrics.json`` keys):
    learnable-triangulation's MPJPE (:mod:`ctxpose.metrics.triangulation`)."""
    from ctxpose.data.h36m.metadata import damaged_ground_truth
    from ctxpose.metrics.triangulation import PROTOCOL, learnable_triangulation_mpjpe

    if not len(arrays["index"]):
        return {}
    return {PROTOCOL: learnable_triangulation_mpjpe(
        arrays["keypoints_3d"], arrays["keypoints_3d_gt"], arrays["subject_idx"], arrays["action_idx"],
        arrays["trial"], arrays["subject_names"].tolist(), arrays["action_names"].tolist(), skeleton.root,
        damaged_ground_truth())}


def evaluator_for(dataset: Dataset) -> Evaluator:
    """The evaluator a dataset calls for: :class:`MPI3DHPEvaluator` for MPI-INF-3DHP, else :class:`PoseEvaluator`."""
    from ctxpose.data.mpi_inf_3dhp.dataset import MPIInf3DHPDataset

    return MPI3DHPEvaluator(dataset) if isinstance(dataset, MPIInf3DHPDataset) else PoseEvaluator(dataset)


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
    dataset: Dataset,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    amp: Amp | str | None = None,
    evaluator: Evaluator | None = None,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    show_progress: bool = False,
    stop: StopSignals | None = None,
) -> EvalResult:
    """Predict every sample of ``dataset`` (sharded over ranks), summarise with ``evaluator``, save on rank 0.

    Joins the process group if launched by torchrun/SLURM/``launch`` (a call inside a training run reuses it).

    Args:
        model: unwrapped model (not DDP); moved to ``device``, put in eval mode here and restored afterwards. The
            cuboid is not rotated (the original's eval mode), whatever the dataset draws.
        dataset: e.g. ``Human36MDataset`` "val" or ``MPIInf3DHPDataset``; rank ``r`` of ``W`` predicts samples
            ``r, r+W, ...`` (:func:`ctxpose.data.loaders.make_eval_loader`), each sample once.
        device: ``cpu``, ``cuda`` (-> ``cuda:LOCAL_RANK``) or an explicit device.
        batch_size, num_workers: of the loader, per process.
        amp: ``None``, ``"bf16"`` or ``"fp16"``.
        evaluator: what to compute (default :func:`evaluator_for` the dataset).
        out_dir: where rank 0 writes ``metrics.json`` and ``predictions.npz`` (:func:`save_eval`); None: nothing.
        progress: ``progress(batches_done, batches_total)`` on rank 0; ``show_progress``: a progress bar instead.
        stop: the caller's stop requests (a training run's); default: Ctrl-C/SIGTERM are watched here.

    Returns:
        The evaluator's result, the same on every rank.

    Raises:
        Stopped: Ctrl-C or SIGTERM, before the next batch on every rank together; nothing is written.
    """
    from ctxpose.data.loaders import make_eval_loader

    env, device = dist.setup_process(device)
    evaluator = evaluator or evaluator_for(dataset)
    evaluator.reset()
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    loader = make_eval_loader(dataset, batch_size, num_workers=num_workers, world_size=env.world_size,
                              rank=env.rank, pin_memory=device.type == "cuda")
    common = (len(dataset) // env.world_size) // batch_size  # batches every rank has: where ranks can agree
    was_training = model.training
    model.to(device).eval()
    dtype = next(model.parameters()).dtype
    with contextlib.ExitStack() as stack:
        stop = stop or stack.enter_context(StopSignals("stopping before the next batch"))
        bar = stack.enter_context(eval_progress(show_progress and env.rank == 0))
        progress = progress or bar
        try:
            for i, batch in enumerate(loader):
                if (i < common or env.world_size == 1) and _agreed(stop.requested, device):
                    raise Stopped(f"stopped before evaluation batch {i + 1} of {len(loader)}; nothing was written")
                batch = move_batch(batch, device, dtype)
                with autocast_context(device, amp):
                    out = model(batch["images"], batch["proj_matrices"], batch["root"], None)
                evaluator.process(batch, out)
                if progress is not None and env.rank == 0:
                    progress(i + 1, len(loader))
        finally:
            model.train(was_training)
    result = evaluator.summarize()
    if out_dir is not None and dist.is_main_process():
        save_eval(result, out_dir)
    dist.barrier()
    return result


def _agreed(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any (a collective: call on all ranks)."""
    if not dist.is_distributed():
        return flag
    return dist.all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0


def compute_result(arrays: dict[str, np.ndarray], skeleton: Skeleton, image_height: int | None = None) -> EvalResult:
    """Metrics of gathered predictions via :class:`ctxpose.metrics.pose.MetricAccumulator`.

    Args:
        arrays: the ``predictions.npz`` arrays (``proj_matrices`` (N, 3, 4) optional, for the 2D PCK).
        skeleton: joint order of the keypoints (root, bones).
        image_height: crop height, px (2D PCK thresholds); ``None`` skips the 2D PCK.
    """
    from ctxpose.metrics.pose import MetricAccumulator

    acc = MetricAccumulator([str(n) for n in arrays["subject_names"]], [str(n) for n in arrays["action_names"]],
                            skeleton=skeleton, image_height=image_height)
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
    atomic_write_text(metrics_path, json.dumps(result.to_dict(), indent=2))
    save_predictions(pred_path, result.arrays)
    if "mpi_inf_3dhp" in result.extra:
        result.extra["mpi_inf_3dhp"].write_official_csv(out_dir)
    logger.info("wrote %s and %s", metrics_path, pred_path)
    return metrics_path, pred_path
