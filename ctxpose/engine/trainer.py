"""Training: ``train(cfg, model, train_set, val_set, run_dir, device)`` is the loop; :class:`Trainer` its parts.

- **setup** (:class:`Trainer`): join the process group, restore a run checkpoint, optimisers and schedulers,
  DDP, loaders, logs. A frozen backbone (``fix_weights``, or the first ``freeze_epochs`` epochs) is not trained
  and keeps its batch-norm statistics (eval mode), as the original.
- **the loop** (:func:`train`): for each epoch, :meth:`Trainer.step` on each batch until the epoch's quota, then
  :meth:`Trainer.end_epoch` (validation, the per-epoch scheduler step as the original ``train.py``,
  ``metrics.json``, the run checkpoint every ``train.checkpoint_every_epochs``); at the end the last checkpoint.

One step (:meth:`Trainer.step`) is: batch -> model -> loss dict -> one all-reduce (loss means, "any rank
non-finite", "any rank asked to stop") -> backward -> clip -> optimiser steps, as detectron2's
``SimpleTrainer``. Steps with a non-finite loss are skipped on every rank (abort after
``train.max_nan_steps`` in a row). Ctrl-C or SIGTERM (:class:`ctxpose.utils.signals.StopSignals`) stops after
the current step on every rank together, checkpoints that step's state and raises
:class:`ctxpose.errors.Stopped`; only rank 0 writes files.

Determinism: the caller builds the model (:func:`initial_model` seeds it with ``train.seed``); sample
randomness (cuboid rotation, view choice) comes from the dataset as a function of (seed, epoch, index); the
sample order comes from :func:`ctxpose.data.loaders.make_train_loader`. A resumed run restores every rank's
generator states and skips the batches already done in the interrupted epoch, so on CPU it continues bit-for-bit.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ctxpose.config import Amp, ExperimentConfig, config_to_dict, save_config
from ctxpose.data.loaders import make_train_loader, set_loader_epoch
from ctxpose.engine import dist
from ctxpose.engine.checkpoint import (
    TrainState,
    read_run_checkpoint,
    restore_rng,
    restore_run_checkpoint,
    save_run_checkpoint,
    unwrap,
)
from ctxpose.engine.evaluator import PoseEvaluator, evaluate, move_batch
from ctxpose.engine.logging import RunLogger
from ctxpose.engine.precision import autocast_context, check_amp, grad_scaler
from ctxpose.engine.progress import train_progress
from ctxpose.engine.runs import LAST, write_run_info
from ctxpose.errors import ConfigError, CtxposeError, Stopped
from ctxpose.skeleton import get_skeleton
from ctxpose.utils.io import atomic_write_text
from ctxpose.utils.seed import get_rng_state, seed_everything
from ctxpose.utils.signals import StopSignals

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, dict[str, float]], None]
"""progress(steps_done, steps_total, scalars) called on rank 0 after every step."""
LossFn = Callable[[Any, torch.Tensor, torch.Tensor, ExperimentConfig], dict[str, torch.Tensor]]
"""loss_fn(model output, keypoints_3d (B, J, 3) mm, validity (B, J), cfg) -> {name: scalar} with a "total"."""


class TrainingDivergedError(CtxposeError):
    """The loss stayed non-finite for ``train.max_nan_steps`` steps in a row."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        stopped: ``"max_steps"`` when the run ended there before ``train.n_epochs``, else None (a signal raises
            :class:`ctxpose.errors.Stopped` instead).
        resumed_from: (epoch, step) the run continued from, or None for a new run.
        metrics: the per-epoch entries of ``metrics.json`` (filled on rank 0 only).
    """

    run_dir: Path
    checkpoint: Path
    epochs_completed: int
    steps: int
    nan_steps: int
    stopped: str | None = None
    resumed_from: tuple[int, int] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        """Ended before ``train.n_epochs`` (at ``max_steps``)."""
        return self.stopped is not None


def build_optimizers(model: nn.Module, cfg: ExperimentConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The paper's optimiser groups.

    ``backbone``: the backbone at ``train.backbone_lr`` (absent when the backbone is frozen);
    ``volume``: ``volume_net`` at ``train.volume_net_lr`` plus ``process_features`` at
    ``train.process_features_lr`` (when the model has it, i.e. ``use_feature_v2v``), absent for a model
    without a volume (learnable-triangulation's algebraic one: a backbone only, as its single-group
    optimiser). Each gets a MultiStepLR (stepped per epoch) with its step list and factor.

    Returns:
        (optimizers, schedulers), both keyed by group name.
    """
    t = cfg.train
    opt_cls = torch.optim.Adam if t.optimizer == "Adam" else torch.optim.SGD
    net = unwrap(model)
    if not isinstance(getattr(net, "backbone", None), nn.Module):
        raise ConfigError("model: has no submodule 'backbone'; the optimiser groups need it")
    has_volume = isinstance(getattr(net, "volume_net", None), nn.Module)
    if not has_volume and cfg.model.backbone.fix_weights:
        raise ConfigError("model.backbone.fix_weights: the model is a backbone only (no volume_net), so nothing "
                          "would be trained; set it to false")
    optimizers: dict[str, Any] = {}
    schedulers: dict[str, Any] = {}
    if not cfg.model.backbone.fix_weights:
        optimizers["backbone"] = opt_cls([{"params": list(net.backbone.parameters()), "lr": t.backbone_lr}])
        schedulers["backbone"] = torch.optim.lr_scheduler.MultiStepLR(
            optimizers["backbone"], list(t.backbone_lr_step), t.backbone_lr_factor)
    if not has_volume:
        return optimizers, schedulers
    groups = [{"params": list(net.volume_net.parameters()), "lr": t.volume_net_lr}]
    if isinstance(getattr(net, "process_features", None), nn.Module):  # absent when heatmaps are unprojected
        groups.append({"params": list(net.process_features.parameters()), "lr": t.process_features_lr})
    optimizers["volume"] = opt_cls(groups)
    schedulers["volume"] = torch.optim.lr_scheduler.MultiStepLR(
        optimizers["volume"], list(t.volume_net_lr_step), t.volume_net_lr_factor)
    return optimizers, schedulers


def steps_per_epoch(cfg: ExperimentConfig, dataset_len: int, world: int) -> int:
    """Optimiser steps per epoch: ``n_objects_per_epoch`` samples in full global batches, at most one pass.

    Raises:
        ConfigError: not even one full global batch.
    """
    global_batch = cfg.train.batch_size * world
    steps = min(cfg.train.n_objects_per_epoch // global_batch, dataset_len // global_batch)
    if steps < 1:
        raise ConfigError(f"train: {dataset_len} training samples and n_objects_per_epoch="
                          f"{cfg.train.n_objects_per_epoch} give no full global batch of {global_batch}")
    return steps


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """``train.deterministic``: deterministic kernels (and cuBLAS workspace) for the run, restored after."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]
        if before[2] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


_NO_DETERMINISTIC_KERNEL = re.compile(r"(\S+) does not have a deterministic implementation")


def refuse_nondeterministic(error: RuntimeError) -> None:
    """PyTorch's alert for an operation without a deterministic kernel, as one line for ``train.deterministic``.

    Raises:
        ConfigError: ``error`` is that alert (naming the operation); otherwise nothing happens.
    """
    found = _NO_DETERMINISTIC_KERNEL.match(str(error))
    if found:
        raise ConfigError(f"train.deterministic: PyTorch has no deterministic kernel for {found.group(1)} (on "
                          "CUDA the unprojection's grid_sample backward has none); set train.deterministic: false "
                          "or train on the CPU") from None


def check_max_steps(max_steps: int | None) -> None:
    """Raises ConfigError: ``max_steps`` below 1."""
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"--max-steps {max_steps}: expected at least 1")


def initial_model(cfg: ExperimentConfig, *, initial_weights: bool = True) -> nn.Module:
    """The network of ``cfg.model`` (any ``model.architecture``; ContextPose's with the limb prior of
    ``cfg.dataset.limb_length_path``), as training starts it.

    Seeded with ``train.seed``, so every process and every run of a config starts from the same weights; with
    ``initial_weights``, ``model.checkpoint`` (ours or the original's) or ``model.backbone.checkpoint`` is loaded
    when the config asks for it (a new run; a resumed one loads its run checkpoint instead).
    """
    from ctxpose.models import load_backbone_checkpoint, load_checkpoint, model_from_config

    seed_everything(cfg.train.seed)
    model = model_from_config(cfg)
    if initial_weights and cfg.model.init_weights and cfg.model.checkpoint:
        load_checkpoint(model, cfg.model.checkpoint)
        logger.info("initial weights: %s", cfg.model.checkpoint)
    elif initial_weights and cfg.model.backbone.init_weights and cfg.model.backbone.checkpoint:
        load_backbone_checkpoint(model, cfg.model.backbone.checkpoint)
        logger.info("initial backbone weights: %s", cfg.model.backbone.checkpoint)
    return model


def contextpose_losses(out: Any, keypoints_3d: torch.Tensor, validity: torch.Tensor,
                       cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """The paper's losses (:func:`ctxpose.losses.compute_losses`): ``{"total", ...}`` scalars."""
    from ctxpose.losses import compute_losses

    return compute_losses(out, keypoints_3d, validity, cfg.loss, cfg.model.volume_net)


class Trainer:
    """The parts of one training run that :func:`train` loops over (see the module docstring).

    Args: as :func:`train`.
    """

    def __init__(self, cfg: ExperimentConfig, model: nn.Module, train_set: Dataset, val_set: Dataset | None,
                 run_dir: str | Path, device: str | torch.device = "cpu", *, resume: str | Path | None = None,
                 amp: Amp | str | None = None, max_steps: int | None = None,
                 loss_fn: LossFn | None = None) -> None:
        check_max_steps(max_steps)
        self.cfg, self.run_dir, self.max_steps = cfg, Path(run_dir), max_steps
        self.loss_fn = loss_fn or contextpose_losses
        self.env, self.device = dist.setup_process(device)
        self.amp = check_amp(self.device, amp)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        payload = read_run_checkpoint(resume) if resume is not None else None

        if any(t.is_shared() for t in model.state_dict().values()):
            model = copy.deepcopy(model)  # sent by the launcher: its tensors are in memory all workers share
        # what the backbone trains when it is not frozen (the heatmap head stays frozen with use_feature_v2v)
        self._backbone_trainable = [p for p in unwrap(model).backbone.parameters() if p.requires_grad]
        self.frozen_backbone = False
        if cfg.train.sync_bn and self.world > 1:
            model = dist.convert_sync_batchnorm(model, self.device)
        model.to(self.device)
        self.optimizers, self.schedulers = build_optimizers(model, cfg)
        self.scaler = grad_scaler(self.device, self.amp)
        self.state = TrainState()
        self.resumed_from: tuple[int, int] | None = None
        seed_everything(cfg.train.seed, self.rank)
        if payload is not None:
            self.state = restore_run_checkpoint(payload, model, self.optimizers, self.schedulers, self.scaler)
            if not restore_rng(payload, self.rank, self.world):
                logger.warning("%s was written by %d processes, this run has %d: random streams restart from "
                               "train.seed (sample order and augmentation are unaffected)", resume,
                               len(payload["rng"]), self.world)
            self.resumed_from = (self.state.epoch, self.state.step)
            logger.info("resuming from epoch %d, step %d (%s)", self.state.epoch, self.state.step, resume)
        self.model = model
        self._freeze_backbone(self._backbone_frozen_in(self.state.epoch))  # also wraps DDP
        self.dtype = self.params[0].dtype if self.params else torch.float32  # batches follow the model

        self.steps_per_epoch = steps_per_epoch(cfg, len(train_set), self.world)
        self.loader = make_train_loader(train_set, cfg.train.batch_size, num_workers=cfg.train.num_workers,
                                        seed=cfg.train.seed, shuffle=cfg.train.shuffle, world_size=self.world,
                                        rank=self.rank, pin_memory=self.device.type == "cuda")
        self.val_set = val_set
        if val_set is not None:
            self.val_evaluator = PoseEvaluator(val_set, get_skeleton(cfg.model.skeleton))
        total = cfg.train.n_epochs * self.steps_per_epoch
        self.total_steps = total if max_steps is None else min(max_steps, total)

        self.writer = RunLogger(self.run_dir if self.rank == 0 else None, resume_step=self.state.step
                                if payload is not None else None)
        if self.rank == 0:
            save_config(cfg, self.run_dir / "config.yaml")
            write_run_info(self.run_dir, self.world, self.device, self.amp,
                           None if self.resumed_from is None else dict(zip(("epoch", "step"), self.resumed_from,
                                                                           strict=True)))
        self.metrics = self._load_metrics() if self.rank == 0 else []
        self.checkpoint = self.run_dir / "checkpoints" / LAST
        self.skeleton = get_skeleton(cfg.model.skeleton)
        self.nan_in_a_row = 0
        self.stop = StopSignals()
        self.stopped: str | None = None
        self._saved_step = -1
        self.sums: dict[str, float] = defaultdict(float)
        self.n_ok = 0

    def batches(self) -> Iterator[dict[str, Any]]:
        """This epoch's remaining batches on the device; ends at the epoch's quota or ``max_steps``."""
        frozen = self._backbone_frozen_in(self.state.epoch)
        if frozen != self.frozen_backbone:
            logger.info("epoch %d: the backbone is %s", self.state.epoch, "frozen" if frozen else "trained from now on")
            self._freeze_backbone(frozen)
        set_loader_epoch(self.loader, self.state.epoch, skip_batches=self.state.epoch_step)
        self.sums, self.n_ok = defaultdict(float), 0
        self._train_mode()
        self._tick = time.perf_counter()
        batches = iter(self.loader)
        while self.state.epoch_step < self.steps_per_epoch:
            if self.max_steps is not None and self.state.step >= self.max_steps:
                self.stopped = "max_steps"
                return
            yield move_batch(next(batches), self.device, self.dtype)

    def log_step(self, batch: dict[str, Any], losses: dict[str, float] | None, out: Any,
                 progress: ProgressFn | None) -> None:
        """Count the step just taken; its scalars to the logs and the progress bar."""
        self.state.epoch_step += 1
        self.state.step += 1
        now = time.perf_counter()
        scalars = {"samples_per_s": self.cfg.train.batch_size * self.world / max(now - self._tick, 1e-9)}
        self._tick = now
        if losses is None:
            self._skipped_step()
            scalars["nan_steps"] = float(self.state.nan_steps)
        else:
            self.nan_in_a_row = 0
            self.n_ok += 1
            for k, v in losses.items():
                self.sums[k] += v
            scalars.update({f"loss/{k}": v for k, v in losses.items()})
        for name, opt in self.optimizers.items():
            scalars[f"lr/{name}"] = opt.param_groups[0]["lr"]
        self.writer.scalars(self.state.step, scalars, prefix="train")
        self._log_images(batch, out)
        if progress is not None and self.rank == 0:
            progress(self.state.step, self.total_steps, scalars)

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float] | None, Any, bool]:
        """One optimiser step.

        Returns:
            (rank-averaged losses or None if the step was skipped, model output, whether to stop after it).

        Raises:
            ConfigError: ``train.deterministic`` and an operation of the step has no deterministic kernel.
        """
        cfg = self.cfg
        try:
            with autocast_context(self.device, self.amp):
                out = self.model(batch["images"], batch["proj_matrices"], batch["root"], batch.get("rotation"))
                losses = self.loss_fn(out, batch["keypoints_3d"], batch["validity"], cfg)
        except RuntimeError as e:
            if cfg.train.deterministic:
                refuse_nondeterministic(e)
            raise
        names = sorted(losses)
        total = losses["total"]
        # one collective: loss means for logging, "any rank non-finite", "any rank asked to stop"
        vec = torch.stack([losses[k].detach().float() for k in names]
                          + [(~torch.isfinite(total.detach())).float(),
                             torch.tensor(float(self.stop.requested), device=total.device)])
        vec = dist.all_reduce_sum(vec)
        stop = vec[-1].item() > 0
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        if vec[-2].item() > 0:
            return None, out, stop
        try:
            self.scaler.scale(total).backward()
        except RuntimeError as e:
            if cfg.train.deterministic:
                refuse_nondeterministic(e)
            raise
        active = [opt for name, opt in self.optimizers.items() if not (name == "backbone" and self.frozen_backbone)]
        if cfg.loss.grad_clip > 0:
            for opt in active:
                self.scaler.unscale_(opt)
            lr = cfg.train.volume_net_lr if "volume" in self.optimizers else cfg.train.backbone_lr  # the original's lr
            nn.utils.clip_grad_norm_(self.params, cfg.loss.grad_clip / lr)
        for opt in active:  # a frozen backbone's optimiser has no gradients to step (fp16's scaler refuses that)
            self.scaler.step(opt)
        self.scaler.update()
        return {k: float(v) / self.world for k, v in zip(names, vec[:-2].tolist(), strict=True)}, out, stop

    def end_epoch(self) -> None:
        """Validation, the per-epoch scheduler step, ``metrics.json`` and the periodic checkpoint.

        A stop requested during validation ends the run (:attr:`stopped`); a resumed run validates this epoch again.
        """
        train_means = {k: v / max(self.n_ok, 1) for k, v in self.sums.items()}
        entry: dict[str, Any] = {"epoch": self.state.epoch, "step": self.state.step, "train": train_means}
        if self.val_set is not None:
            try:
                result = evaluate(unwrap(self.model), self.val_set, self.device, batch_size=self.cfg.val.batch_size,
                                  num_workers=self.cfg.val.num_workers, amp=self.amp, evaluator=self.val_evaluator,
                                  stop=self.stop)
            except Stopped:
                if self.stop.escalated:
                    raise
                self.stopped = "signal"
                return
            entry["val"] = result.metrics
            self.writer.scalars(self.state.step, result.metrics, prefix="val")
        for sched in self.schedulers.values():  # once per epoch, as the original
            with warnings.catch_warnings():  # a frozen backbone's optimiser has not stepped: its schedule still counts
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                sched.step()
        self.state.epoch, self.state.epoch_step = self.state.epoch + 1, 0
        if self.rank == 0:
            self.metrics.append(entry)
            atomic_write_text(self.run_dir / "metrics.json", json.dumps(self.metrics, indent=2))
        if self.state.epoch % self.cfg.train.checkpoint_every_epochs == 0:
            self.save("epoch")

    def finish(self) -> TrainResult:
        """Checkpoint the final state unless the last save already holds it; wait for every rank.

        Raises:
            Stopped: the run was stopped by a signal (after the checkpoint is written).
        """
        if self._saved_step != self.state.step:
            self.save({None: "end", "max_steps": "stop", "signal": "interrupted"}[self.stopped])
        dist.barrier()
        if self.stopped == "signal":
            raise Stopped(f"continue with --resume {self.run_dir} (checkpoint of step {self.state.step})")
        return TrainResult(self.run_dir, self.checkpoint, self.state.epoch, self.state.step, self.state.nan_steps,
                           self.stopped, self.resumed_from, self.metrics)

    def save(self, tag: str) -> None:
        """Write the run checkpoint (rank 0), with every rank's generator states (a collective)."""
        rng = dist.all_gather_object(get_rng_state())
        if self.rank == 0:
            save_run_checkpoint(self.checkpoint, self.model, self.optimizers, self.schedulers, self.scaler,
                                self.state, config_to_dict(self.cfg), rng)
            logger.info("checkpoint (%s): %s, epoch %d, step %d", tag, self.checkpoint, self.state.epoch,
                        self.state.step)
        self._saved_step = self.state.step

    # ------------------------------------------------------------------ helpers

    def _backbone_frozen_in(self, epoch: int) -> bool:
        bb = self.cfg.model.backbone
        return bb.fix_weights or epoch < bb.freeze_epochs

    def _freeze_backbone(self, frozen: bool) -> None:
        """Freeze or release the backbone's trainable parameters; re-wrap DDP, which registers only those."""
        for p in self._backbone_trainable:
            p.requires_grad_(not frozen)
        self.frozen_backbone = frozen
        net = unwrap(self.model)
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=False)
        self.params = [p for p in net.parameters() if p.requires_grad]

    def _train_mode(self) -> None:
        self.model.train()
        if self.frozen_backbone:  # a frozen backbone keeps its batch-norm statistics (the original's eval())
            unwrap(self.model).backbone.eval()

    def _skipped_step(self) -> None:
        self.state.nan_steps += 1
        self.nan_in_a_row += 1
        logger.warning("step %d: non-finite loss, step skipped (%d in a row)", self.state.step, self.nan_in_a_row)
        if self.nan_in_a_row >= self.cfg.train.max_nan_steps:
            raise TrainingDivergedError(
                f"train: loss was not finite for {self.nan_in_a_row} steps in a row (step {self.state.step}); "
                "lower the learning rates or set loss.grad_clip")

    def _log_images(self, batch: dict[str, Any], out: Any) -> None:
        freq = self.cfg.train.vis_freq
        if self.writer.enabled and freq > 0 and self.state.step % freq == 0:
            from ctxpose.viz.draw import batch_visualization

            image = batch_visualization(batch, out.keypoints_3d, self.skeleton, self.cfg.train.vis_n_elements)
            self.writer.image("train/keypoints", self.state.step, image)

    def _load_metrics(self) -> list[dict[str, Any]]:
        path = self.run_dir / "metrics.json"
        if not path.is_file():
            return []
        return [m for m in json.loads(path.read_text()) if m.get("epoch", 0) < self.state.epoch]


def train(
    cfg: ExperimentConfig,
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    resume: str | Path | None = None,
    amp: Amp | str | None = None,
    max_steps: int | None = None,
    loss_fn: LossFn | None = None,
    progress: ProgressFn | None = None,
    show_progress: bool = False,
) -> TrainResult:
    """Train ``model`` as configured; joins the process group if launched by torchrun/SLURM/``launch``.

    Args:
        cfg: resolved experiment config (``train.batch_size`` is per process).
        model: with ``backbone``, ``process_features`` (optional) and ``volume_net`` submodules, called as
            ``model(images, proj_matrices, root_points, rotation_angles)`` and returning an object with
            ``keypoints_3d`` (B, J, 3) world mm; e.g. :func:`initial_model`. The same initial weights on
            every rank (build it with the same seed).
        train_set, val_set: datasets of dicts of numpy arrays (e.g. ``Human36MDataset`` "train" and "val");
            ``val_set`` None skips the per-epoch validation.
        run_dir: run folder (created); when resuming, the interrupted run's folder to continue it there.
        device: ``cpu``, ``cuda`` (-> ``cuda:LOCAL_RANK``) or an explicit device.
        resume: run checkpoint file to continue from.
        amp: ``None``, ``"bf16"`` or ``"fp16"`` (fp16 uses a GradScaler).
        max_steps: stop (and checkpoint) after this many global steps.
        loss_fn: default :func:`contextpose_losses` (the paper's).
        progress: rank-0 callback after every step; ``show_progress``: a progress bar on rank 0 instead.

    Returns:
        :class:`TrainResult` (rank 0 has the ``metrics``).

    Raises:
        Stopped: Ctrl-C or SIGTERM; the run stopped after the current step and checkpointed it.
    """
    t = Trainer(cfg, model, train_set, val_set, run_dir, device, resume=resume, amp=amp, max_steps=max_steps,
                loss_fn=loss_fn)
    with t.stop, _deterministic(cfg.train.deterministic), train_progress(show_progress and t.rank == 0) as bar:
        progress = progress or bar
        try:
            while t.state.epoch < cfg.train.n_epochs and t.stopped is None:
                for batch in t.batches():
                    losses, out, stop = t.step(batch)
                    t.log_step(batch, losses, out, progress)
                    if stop or (t.world == 1 and t.stop.requested):  # one process: no need to agree
                        t.stopped = "signal"
                        break
                if t.stopped is None:
                    t.end_epoch()
        finally:
            t.writer.close()
        return t.finish()
