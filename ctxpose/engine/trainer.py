"""Training loop: ``train(cfg, run_dir, device) -> TrainResult``.

One step is: next batch -> model -> loss dict -> backward -> optimiser steps (as detectron2's
``SimpleTrainer``). Around it: the paper's optimiser groups and MultiStep schedules (stepped once per
epoch, as the original ``train.py``), optional frozen backbone, gradient clipping at
``loss.grad_clip / train.volume_net_lr`` (the original's rule), AMP, DDP with optional SyncBatchNorm,
non-finite-loss steps skipped (abort after ``train.max_nan_steps`` in a row), validation and a run
checkpoint every epoch and on Ctrl-C. Only rank 0 writes.

Determinism: model initialisation uses ``train.seed`` on every rank; sample randomness (cuboid
rotation, view choice) comes from the dataset as a function of (seed, epoch, index); the sample order
is ``DistributedSampler(seed)`` with ``set_epoch``. A resumed run restores RNG states and skips the
batches already done in the interrupted epoch, so on CPU it continues bit-for-bit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ctxpose.config import ExperimentConfig, config_to_dict, save_config
from ctxpose.engine import dist
from ctxpose.engine.checkpoint import (
    LAST,
    TrainState,
    read_run_checkpoint,
    restore_run_checkpoint,
    save_run_checkpoint,
    unwrap,
)
from ctxpose.engine.evaluator import evaluate, make_eval_loader, move_batch
from ctxpose.engine.logging import RunLogger, write_run_info
from ctxpose.errors import ConfigError, CtxposeError
from ctxpose.skeleton import get_skeleton
from ctxpose.utils.io import atomic_write_text
from ctxpose.utils.seed import seed_everything, worker_init_fn
from ctxpose.viz.draw import batch_visualization

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, dict[str, float]], None]
"""progress(steps_done, steps_total, scalars) called on rank 0 after every step."""


class TrainingDivergedError(CtxposeError):
    """The loss stayed non-finite for ``train.max_nan_steps`` steps in a row."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`; ``interrupted``: stopped by ``max_steps`` before ``train.n_epochs``.

    ``metrics`` (the per-epoch entries of ``metrics.json``) is filled on rank 0 only.
    """

    run_dir: Path
    checkpoint: Path
    epochs_completed: int
    steps: int
    nan_steps: int
    interrupted: bool
    metrics: list[dict[str, Any]] = field(default_factory=list)


def _default_build_model(cfg: ExperimentConfig) -> nn.Module:
    from ctxpose.data.limb_prior import load_limb_prior
    from ctxpose.models import build_model

    return build_model(cfg.model, load_limb_prior(cfg.dataset.limb_length_path))


def _default_losses(out: Any, keypoints_3d: torch.Tensor, validity: torch.Tensor,
                    cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    from ctxpose.losses import compute_losses
    from ctxpose.models.build import ROTATION_AXES

    return compute_losses(out, keypoints_3d, validity, cfg.loss, cfg.model.volume_net,
                          rotation_axis=ROTATION_AXES[cfg.model.kind])


def _default_init_weights(model: nn.Module, cfg: ExperimentConfig) -> None:
    """Initial weights of a new run: a full checkpoint (ours or the original's) or a backbone checkpoint."""
    from ctxpose.models import load_backbone_checkpoint, load_checkpoint

    if cfg.model.init_weights and cfg.model.checkpoint:
        load_checkpoint(model, cfg.model.checkpoint)
        logger.info("initial weights: %s", cfg.model.checkpoint)
    elif cfg.model.backbone.init_weights and cfg.model.backbone.checkpoint:
        load_backbone_checkpoint(model, cfg.model.backbone.checkpoint)
        logger.info("initial backbone weights: %s", cfg.model.backbone.checkpoint)


def _default_dataset(cfg: ExperimentConfig, split: str) -> Dataset:
    from ctxpose.data.datasets import Human36MDataset

    return Human36MDataset.from_config(cfg, split)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Components:
    """What the trainer builds its run from; the defaults are the real ContextPose pieces.

    Attributes:
        build_model: ``cfg -> nn.Module`` with ``backbone``, ``process_features`` and ``volume_net``
            submodules, called as ``model(images, proj_matrices, root_points, rotation_angles)``; returns
            an object with ``keypoints_3d`` (B, J, 3) world mm.
        compute_losses: ``(out, keypoints_3d_gt (B, J, 3), validity (B, J), cfg) -> {name: scalar}`` with
            a ``total`` key.
        build_dataset: ``(cfg, "train" | "val") -> Dataset`` of dicts of numpy arrays.
        init_weights: ``(model, cfg) -> None`` loads initial weights of a new (not resumed) run.
    """

    build_model: Callable[[ExperimentConfig], nn.Module] = _default_build_model
    compute_losses: Callable[..., dict[str, torch.Tensor]] = _default_losses
    build_dataset: Callable[[ExperimentConfig, str], Dataset] = _default_dataset
    init_weights: Callable[[nn.Module, ExperimentConfig], None] = _default_init_weights


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (drop_last, seeded, ``set_epoch``) that can skip the first batches of an epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool,
                 batch_size: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=True)
        self.batch_size = batch_size
        self.skip_batches = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip_batches * self.batch_size:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip_batches * self.batch_size)


def build_optimizers(model: nn.Module, cfg: ExperimentConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The paper's optimiser groups.

    ``backbone``: the backbone at ``train.backbone_lr`` (absent when the backbone is frozen);
    ``volume``: ``volume_net`` at ``train.volume_net_lr`` plus ``process_features`` at
    ``train.process_features_lr`` (when the model has it, i.e. ``use_feature_v2v``). Each gets a
    MultiStepLR (stepped per epoch) with its step list and factor.

    Returns:
        (optimizers, schedulers), both keyed by group name.
    """
    t = cfg.train
    opt_cls = torch.optim.Adam if t.optimizer == "Adam" else torch.optim.SGD
    net = unwrap(model)
    for name in ("backbone", "volume_net"):
        if not isinstance(getattr(net, name, None), nn.Module):
            raise ConfigError(f"model: has no submodule {name!r}; the optimiser groups need it")
    optimizers: dict[str, Any] = {}
    schedulers: dict[str, Any] = {}
    if not cfg.model.backbone.fix_weights:
        optimizers["backbone"] = opt_cls([{"params": list(net.backbone.parameters()), "lr": t.backbone_lr}])
        schedulers["backbone"] = torch.optim.lr_scheduler.MultiStepLR(
            optimizers["backbone"], list(t.backbone_lr_step), t.backbone_lr_factor)
    groups = [{"params": list(net.volume_net.parameters()), "lr": t.volume_net_lr}]
    if isinstance(getattr(net, "process_features", None), nn.Module):  # absent when heatmaps are unprojected
        groups.append({"params": list(net.process_features.parameters()), "lr": t.process_features_lr})
    optimizers["volume"] = opt_cls(groups)
    schedulers["volume"] = torch.optim.lr_scheduler.MultiStepLR(
        optimizers["volume"], list(t.volume_net_lr_step), t.volume_net_lr_factor)
    return optimizers, schedulers


def autocast_context(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` in {"bf16", "fp16"}; a null context otherwise."""
    if amp is None:
        return contextlib.nullcontext()
    if amp not in ("bf16", "fp16"):
        raise ConfigError(f"--amp {amp}: expected bf16 or fp16")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16: needs a CUDA device; use bf16 on CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _make_train_loader(dataset: Dataset, cfg: ExperimentConfig, world: int, rank: int,
                       pin_memory: bool = False) -> DataLoader:
    t = cfg.train
    sampler = ResumableSampler(dataset, world, rank, t.seed, t.shuffle, t.batch_size)
    generator = torch.Generator().manual_seed(t.seed + rank)
    return DataLoader(dataset, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers,
                      drop_last=True, worker_init_fn=worker_init_fn, generator=generator,
                      pin_memory=pin_memory, persistent_workers=False)


def _steps_per_epoch(cfg: ExperimentConfig, dataset_len: int, world: int) -> int:
    global_batch = cfg.train.batch_size * world
    steps = min(cfg.train.n_objects_per_epoch // global_batch, dataset_len // global_batch)
    if steps < 1:
        raise ConfigError(f"train: {dataset_len} training samples and n_objects_per_epoch="
                          f"{cfg.train.n_objects_per_epoch} give no full global batch of {global_batch}")
    return steps


def train(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    resume: str | Path | None = None,
    amp: str | None = None,
    max_steps: int | None = None,
    validate: bool = True,
    progress: ProgressFn | None = None,
    components: Components | None = None,
) -> TrainResult:
    """Train ContextPose as configured; joins the process group if launched by torchrun/SLURM/``launch``.

    Args:
        cfg: resolved experiment config (``train.batch_size`` is per process).
        run_dir: run folder (created); when resuming, pass the interrupted run's folder to continue it there.
        device: ``cpu``, ``cuda`` (-> ``cuda:LOCAL_RANK``) or an explicit device.
        resume: run checkpoint file to continue from.
        amp: ``None``, ``"bf16"`` or ``"fp16"`` (fp16 uses a GradScaler).
        max_steps: stop (and checkpoint) after this many global steps, as if interrupted.
        validate: evaluate on the validation split after every epoch.
        progress: rank-0 callback after every step.
        components: model/loss/dataset factories (default: the real ContextPose pieces).

    Returns:
        :class:`TrainResult`.
    """
    comps = components or Components()
    env = dist.init_distributed(torch.device(device))
    device = dist.resolve_device(device, env.local_rank)
    autocast_context(device, amp)  # checks the amp mode before anything is built
    rank, world = dist.get_rank(), dist.get_world_size()
    run_dir = Path(run_dir)
    payload = read_run_checkpoint(resume) if resume is not None else None
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False

    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    model = comps.build_model(cfg)
    if payload is None:
        comps.init_weights(model, cfg)
    if cfg.model.backbone.fix_weights:
        for p in unwrap(model).backbone.parameters():
            p.requires_grad_(False)
    if cfg.train.sync_bn and world > 1:
        model = dist.convert_sync_batchnorm(model, device)
    model.to(device)
    optimizers, schedulers = build_optimizers(model, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    state = TrainState()
    if payload is not None:
        state = restore_run_checkpoint(payload, model, optimizers, schedulers, scaler)
    else:
        seed_everything(cfg.train.seed, rank)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False)

    train_set = comps.build_dataset(cfg, "train")
    val_loader = make_eval_loader(comps.build_dataset(cfg, "val"), cfg.val.batch_size,
                                  cfg.val.num_workers) if validate else None
    loader = _make_train_loader(train_set, cfg, world, rank, pin_memory=device.type == "cuda")
    steps_per_epoch = _steps_per_epoch(cfg, len(train_set), world)

    writer = RunLogger(run_dir if rank == 0 else None)
    if rank == 0:
        save_config(cfg, run_dir / "config.yaml")
        write_run_info(run_dir, world, device, amp)
    metrics = _load_metrics(run_dir, state.epoch) if rank == 0 else []
    loop = TrainLoop(cfg, model, optimizers, scaler, device, amp, comps, writer)
    total = cfg.train.n_epochs * steps_per_epoch if max_steps is None else min(
        max_steps, cfg.train.n_epochs * steps_per_epoch)
    checkpoint = run_dir / "checkpoints" / LAST
    saved_step = -1

    def save(tag: str) -> None:
        if rank == 0:
            save_run_checkpoint(checkpoint, model, optimizers, schedulers, scaler, state, config_to_dict(cfg))
            logger.info("checkpoint (%s): %s, epoch %d, step %d", tag, checkpoint, state.epoch, state.step)

    try:
        while state.epoch < cfg.train.n_epochs and (max_steps is None or state.step < max_steps):
            loader.sampler.set_epoch(state.epoch)
            loader.sampler.skip_batches = state.epoch_step
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(state.epoch)
            train_means = loop.run_epoch(loader, state, steps_per_epoch, max_steps, total, progress)
            if state.epoch_step < steps_per_epoch:  # stopped by max_steps inside the epoch
                break
            entry: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "train": train_means}
            if val_loader is not None:  # interrupted here, a resumed run re-validates this epoch
                result = evaluate(unwrap(model), val_loader, device, amp=amp)
                entry["val"] = result.metrics
                writer.scalars(state.step, result.metrics, prefix="val")
            for sched in schedulers.values():  # once per epoch, as the original
                sched.step()
            state.epoch, state.epoch_step = state.epoch + 1, 0
            if rank == 0:
                metrics.append(entry)
                atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
            if state.epoch % cfg.train.checkpoint_every_epochs == 0:
                save("epoch")
                saved_step = state.step
        interrupted = state.epoch < cfg.train.n_epochs
        if saved_step != state.step:
            save("stop" if interrupted else "end")
    except KeyboardInterrupt:
        save("interrupted")
        raise
    finally:
        writer.close()
    dist.barrier()
    return TrainResult(run_dir, checkpoint, state.epoch, state.step, state.nan_steps, interrupted, metrics)


class TrainLoop:
    """The per-step work: forward, losses, non-finite check over all ranks, backward, clip, step, log."""

    def __init__(self, cfg: ExperimentConfig, model: nn.Module, optimizers: dict[str, Any], scaler: Any,
                 device: torch.device, amp: str | None, comps: Components, writer: RunLogger) -> None:
        self.cfg, self.model, self.optimizers, self.scaler = cfg, model, optimizers, scaler
        self.device, self.amp, self.comps, self.writer = device, amp, comps, writer
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.dtype = self.params[0].dtype if self.params else torch.float32  # batches follow the model
        self.nan_in_a_row = 0
        self.skeleton = get_skeleton(cfg.model.skeleton)

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float] | None, Any]:
        """One optimiser step; returns (rank-averaged losses, model output), losses None if skipped."""
        cfg = self.cfg
        with autocast_context(self.device, self.amp):
            out = self.model(batch["images"], batch["proj_matrices"], batch["root"], batch.get("rotation"))
            losses = self.comps.compute_losses(out, batch["keypoints_3d"], batch["validity"], cfg)
        names = sorted(losses)
        total = losses["total"]
        vec = torch.stack([losses[k].detach().float() for k in names]
                          + [(~torch.isfinite(total.detach())).float()])
        vec = dist.all_reduce_sum(vec)  # one collective: loss means for logging + "any rank non-finite"
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        if vec[-1].item() > 0:
            return None, out
        self.scaler.scale(total).backward()
        if cfg.loss.grad_clip > 0:
            for opt in self.optimizers.values():
                self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(self.params, cfg.loss.grad_clip / cfg.train.volume_net_lr)
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        world = dist.get_world_size()
        return {k: float(v) / world for k, v in zip(names, vec[:-1].tolist(), strict=True)}, out

    def run_epoch(self, loader: DataLoader, state: TrainState, steps_per_epoch: int, max_steps: int | None,
                  total_steps: int, progress: ProgressFn | None) -> dict[str, float]:
        """Steps until the epoch's quota (or ``max_steps``); returns mean losses of this call's steps."""
        sums: dict[str, float] = defaultdict(float)
        n_ok = 0
        global_batch = self.cfg.train.batch_size * dist.get_world_size()
        self.model.train()
        tick = time.perf_counter()
        for batch in loader:
            if state.epoch_step >= steps_per_epoch or (max_steps is not None and state.step >= max_steps):
                break
            batch = move_batch(batch, self.device, self.dtype)
            losses, out = self.step(batch)
            state.epoch_step += 1
            state.step += 1
            now = time.perf_counter()
            scalars = {"samples_per_s": global_batch / max(now - tick, 1e-9)}
            tick = now
            if losses is None:
                state.nan_steps += 1
                self.nan_in_a_row += 1
                logger.warning("step %d: non-finite loss, step skipped (%d in a row)", state.step,
                               self.nan_in_a_row)
                if self.nan_in_a_row >= self.cfg.train.max_nan_steps:
                    raise TrainingDivergedError(
                        f"train: loss was not finite for {self.nan_in_a_row} steps in a row (step {state.step});"
                        " lower the learning rates or set loss.grad_clip")
                scalars["nan_steps"] = float(state.nan_steps)
            else:
                self.nan_in_a_row = 0
                n_ok += 1
                for k, v in losses.items():
                    sums[k] += v
                scalars.update({f"loss/{k}": v for k, v in losses.items()})
            for name, opt in self.optimizers.items():
                scalars[f"lr/{name}"] = opt.param_groups[0]["lr"]
            self.writer.scalars(state.step, scalars, prefix="train")
            if self.writer.enabled and self.cfg.train.vis_freq > 0 and state.step % self.cfg.train.vis_freq == 0:
                image = batch_visualization(batch, out.keypoints_3d, self.skeleton, self.cfg.train.vis_n_elements)
                self.writer.image("train/keypoints", state.step, image)
            if progress is not None and dist.get_rank() == 0:
                progress(state.step, total_steps, scalars)
        return {k: v / max(n_ok, 1) for k, v in sums.items()}


def _load_metrics(run_dir: Path, epoch: int) -> list[dict[str, Any]]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return []
    return [m for m in json.loads(path.read_text()) if m.get("epoch", 0) < epoch]
