"""Training: ``train(cfg, run_dir, device) -> TrainResult``, a :class:`Trainer` in three stages.

- **setup** (:meth:`Trainer.__init__`): join the process group, seed, build the model (identical initial
  weights on every rank), optimisers and schedulers, restore a run checkpoint, wrap DDP, loaders, logs.
  A frozen backbone (``fix_weights``, or the first ``freeze_epochs`` epochs) is not trained and keeps its
  batch-norm statistics (eval mode), as the original.
- **one epoch** (:meth:`Trainer.run_epoch`, then :meth:`Trainer.end_epoch`): steps until the epoch's quota,
  then validation, the per-epoch scheduler step (as the original ``train.py``), ``metrics.json`` and the
  run checkpoint every ``train.checkpoint_every_epochs``.
- **finish** (:meth:`Trainer.finish`): the last checkpoint and the result.

One step (:meth:`Trainer.step`) is: batch -> model -> loss dict -> one all-reduce (loss means, "any rank
non-finite", "any rank asked to stop") -> backward -> clip -> optimiser steps, as detectron2's
``SimpleTrainer``. Steps with a non-finite loss are skipped on every rank (abort after
``train.max_nan_steps`` in a row). Ctrl-C or SIGTERM stops after the current step on every rank together
(:mod:`ctxpose.engine.signals`) and checkpoints that step's state; only rank 0 writes files.

Determinism: model initialisation uses ``train.seed`` on every rank; sample randomness (cuboid
rotation, view choice) comes from the dataset as a function of (seed, epoch, index); the sample order
comes from :func:`ctxpose.data.loaders.make_train_loader`. A resumed run restores every rank's generator
states and skips the batches already done in the interrupted epoch, so on CPU it continues bit-for-bit.
"""

from __future__ import annotations

import contextlib
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

from ctxpose.config import Amp, ExperimentConfig, config_to_dict, save_config
from ctxpose.data.loaders import make_eval_loader, make_train_loader, set_loader_epoch
from ctxpose.engine import dist
from ctxpose.engine.checkpoint import (
    TrainState,
    read_run_checkpoint,
    restore_rng,
    restore_run_checkpoint,
    save_run_checkpoint,
    unwrap,
)
from ctxpose.engine.components import Components
from ctxpose.engine.evaluator import PoseEvaluator, StopRequested, evaluate, move_batch
from ctxpose.engine.logging import RunLogger
from ctxpose.engine.precision import autocast_context, check_amp, grad_scaler
from ctxpose.engine.runs import LAST, write_run_info
from ctxpose.engine.signals import GracefulStop
from ctxpose.errors import ConfigError, CtxposeError
from ctxpose.skeleton import get_skeleton
from ctxpose.utils.io import atomic_write_text
from ctxpose.utils.seed import get_rng_state, seed_everything

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, dict[str, float]], None]
"""progress(steps_done, steps_total, scalars) called on rank 0 after every step."""


class TrainingDivergedError(CtxposeError):
    """The loss stayed non-finite for ``train.max_nan_steps`` steps in a row."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        stopped: why the run ended before ``train.n_epochs``: ``"max_steps"``, ``"signal"`` (Ctrl-C,
            SIGTERM) or None (finished).
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
        """Ended before ``train.n_epochs`` (by ``max_steps`` or a signal)."""
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


class Trainer:
    """One training run (see the module docstring); use :func:`train` unless you need the stages.

    Args: as :func:`train`.
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, device: str | torch.device = "cpu", *,
                 resume: str | Path | None = None, amp: Amp | str | None = None, max_steps: int | None = None,
                 validate: bool = True, progress: ProgressFn | None = None,
                 components: Components | None = None) -> None:
        if max_steps is not None and max_steps < 1:
            raise ConfigError(f"--max-steps {max_steps}: expected at least 1")
        self.cfg, self.run_dir, self.max_steps, self.progress = cfg, Path(run_dir), max_steps, progress
        self.comps = components or Components()
        self.env, self.device = dist.setup_process(device)
        self.amp = check_amp(self.device, amp)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        payload = read_run_checkpoint(resume) if resume is not None else None

        seed_everything(cfg.train.seed)  # identical initial weights on every rank
        model = self.comps.build_model(cfg)
        if payload is None:
            self.comps.init_weights(model, cfg)
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

        pin = self.device.type == "cuda"
        self.train_set = self.comps.build_dataset(cfg, "train")
        self.steps_per_epoch = steps_per_epoch(cfg, len(self.train_set), self.world)
        self.loader = make_train_loader(self.train_set, cfg.train.batch_size, num_workers=cfg.train.num_workers,
                                        seed=cfg.train.seed, shuffle=cfg.train.shuffle, world_size=self.world,
                                        rank=self.rank, pin_memory=pin)
        self.val_loader = None
        if validate:
            val_set = self.comps.build_dataset(cfg, "val")
            self.val_loader = make_eval_loader(val_set, cfg.val.batch_size, num_workers=cfg.val.num_workers,
                                               world_size=self.world, rank=self.rank, pin_memory=pin)
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
        self.stop = GracefulStop()
        self.stopped: str | None = None
        self._saved_step = -1

    # ------------------------------------------------------------------ the run

    def train(self) -> TrainResult:
        """Epochs until ``train.n_epochs``, ``max_steps`` or a stop request; then :meth:`finish`."""
        with self.stop, _deterministic(self.cfg.train.deterministic):
            try:
                while self.state.epoch < self.cfg.train.n_epochs and self.stopped is None:
                    self.run_epoch()
                    if self.stopped is None:
                        self.end_epoch()
            except StopRequested:
                self.stopped = "signal"
            finally:
                self.writer.close()
            return self.finish()

    def run_epoch(self) -> dict[str, float]:
        """Steps until the epoch's quota, ``max_steps`` or a stop request; returns this call's mean losses."""
        frozen = self._backbone_frozen_in(self.state.epoch)
        if frozen != self.frozen_backbone:
            logger.info("epoch %d: the backbone is %s", self.state.epoch, "frozen" if frozen else "trained from now on")
            self._freeze_backbone(frozen)
        set_loader_epoch(self.loader, self.state.epoch, skip_batches=self.state.epoch_step)
        sums: dict[str, float] = defaultdict(float)
        n_ok = 0
        self._train_mode()
        tick = time.perf_counter()
        batches = iter(self.loader)
        while self.state.epoch_step < self.steps_per_epoch:
            if self.max_steps is not None and self.state.step >= self.max_steps:
                self.stopped = "max_steps"
                break
            batch = move_batch(next(batches), self.device, self.dtype)
            losses, out, stop = self.step(batch)
            self.state.epoch_step += 1
            self.state.step += 1
            now = time.perf_counter()
            scalars = {"samples_per_s": self.cfg.train.batch_size * self.world / max(now - tick, 1e-9)}
            tick = now
            if losses is None:
                self._skipped_step()
                scalars["nan_steps"] = float(self.state.nan_steps)
            else:
                self.nan_in_a_row = 0
                n_ok += 1
                for k, v in losses.items():
                    sums[k] += v
                scalars.update({f"loss/{k}": v for k, v in losses.items()})
            for name, opt in self.optimizers.items():
                scalars[f"lr/{name}"] = opt.param_groups[0]["lr"]
            self.writer.scalars(self.state.step, scalars, prefix="train")
            self._log_images(batch, out)
            if self.progress is not None and self.rank == 0:
                self.progress(self.state.step, self.total_steps, scalars)
            if stop or (self.world == 1 and self.stop.requested):  # one process: no need to agree
                self.stopped = "signal"
                break
        self.train_means = {k: v / max(n_ok, 1) for k, v in sums.items()}
        return self.train_means

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float] | None, Any, bool]:
        """One optimiser step.

        Returns:
            (rank-averaged losses or None if the step was skipped, model output, whether to stop after it).

        Raises:
            ConfigError: ``train.deterministic`` and an operation of the step has no deterministic kernel.
        """
        try:
            return self._step(batch)
        except RuntimeError as e:
            if self.cfg.train.deterministic:
                refuse_nondeterministic(e)
            raise

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float] | None, Any, bool]:
        cfg = self.cfg
        with autocast_context(self.device, self.amp):
            out = self.model(batch["images"], batch["proj_matrices"], batch["root"], batch.get("rotation"))
            losses = self.comps.compute_losses(out, batch["keypoints_3d"], batch["validity"], cfg)
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
        self.scaler.scale(total).backward()
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
        """Validation, the per-epoch scheduler step, ``metrics.json`` and the periodic checkpoint."""
        entry: dict[str, Any] = {"epoch": self.state.epoch, "step": self.state.step, "train": self.train_means}
        if self.val_loader is not None:  # stopped during validation, a resumed run validates this epoch again
            result = evaluate(unwrap(self.model), self.val_loader, self.device, amp=self.amp,
                              evaluator=self.val_evaluator, should_stop=self._stop_during_validation)
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
        """Checkpoint the final state unless the last save already holds it; wait for every rank."""
        if self._saved_step != self.state.step:
            self.save({None: "end", "max_steps": "stop", "signal": "interrupted"}[self.stopped])
        dist.barrier()
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

    def _stop_during_validation(self, batch_index: int) -> bool:
        if self.world == 1:
            return self.stop.requested
        # every rank agrees; only while every shard still has batches (shards differ by at most one sample)
        n = len(self.val_loader.dataset)
        common = (n // self.world) // self.cfg.val.batch_size
        if batch_index >= common:
            return False
        flag = torch.tensor([float(self.stop.requested)], device=self.device)
        return dist.all_reduce_sum(flag).item() > 0

    def _load_metrics(self) -> list[dict[str, Any]]:
        path = self.run_dir / "metrics.json"
        if not path.is_file():
            return []
        return [m for m in json.loads(path.read_text()) if m.get("epoch", 0) < self.state.epoch]


def train(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    resume: str | Path | None = None,
    amp: Amp | str | None = None,
    max_steps: int | None = None,
    validate: bool = True,
    progress: ProgressFn | None = None,
    components: Components | None = None,
) -> TrainResult:
    """Train ContextPose as configured; joins the process group if launched by torchrun/SLURM/``launch``.

    Args:
        cfg: resolved experiment config (``train.batch_size`` is per process).
        run_dir: run folder (created); when resuming, the interrupted run's folder to continue it there.
        device: ``cpu``, ``cuda`` (-> ``cuda:LOCAL_RANK``) or an explicit device.
        resume: run checkpoint file to continue from.
        amp: ``None``, ``"bf16"`` or ``"fp16"`` (fp16 uses a GradScaler).
        max_steps: stop (and checkpoint) after this many global steps, as if interrupted.
        validate: evaluate on the validation split after every epoch.
        progress: rank-0 callback after every step.
        components: model/loss/dataset factories (default: the real ContextPose pieces).

    Returns:
        :class:`TrainResult`; a Ctrl-C or SIGTERM ends the run after the current step with
        ``stopped="signal"`` and a checkpoint of that step.
    """
    return Trainer(cfg, run_dir, device, resume=resume, amp=amp, max_steps=max_steps, validate=validate,
                   progress=progress, components=components).train()
