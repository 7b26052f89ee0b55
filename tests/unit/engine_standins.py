"""Tiny stand-ins for the engine tests: a model with the real one's submodule names and call
signature, a per-sample-mean loss and an in-memory dataset of dicts of numpy arrays.

They are module-level so that spawned DDP workers can import them; tests pass them to ``train()`` and
``evaluate()`` as the model and the datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ctxpose.skeleton import get_skeleton

NUM_JOINTS = get_skeleton("contextpose17").num_joints
ACTIONS = ("Walking", "Eating", "Sitting")
SUBJECTS = ("S9", "S11")


@dataclass
class StandinOutput:
    keypoints_3d: torch.Tensor  # (B, J, 3) world mm


class StandinModel(nn.Module):
    """Conv + BatchNorm "backbone", 1x1 "process_features", MLP "volume_net" -> root + offsets."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.process_features = nn.Conv2d(6, 4, 1)
        self.volume_net = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 32), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(32, NUM_JOINTS * 3))

    def forward(self, images: torch.Tensor, proj_matrices: torch.Tensor, root_points: torch.Tensor,
                rotation_angles: torch.Tensor | None = None) -> StandinOutput:
        b, v = images.shape[:2]
        x = self.process_features(self.backbone(images.flatten(0, 1)))
        x = nn.functional.adaptive_avg_pool2d(x, 4).view(b, v, -1).mean(1)
        offsets = self.volume_net(x.view(b, 4, 4, 4)).view(b, NUM_JOINTS, 3) * 100.0
        return StandinOutput(keypoints_3d=root_points[:, None, :] + offsets)


def standin_model(dropout: bool = False) -> StandinModel:
    """A stand-in seeded as ``train.seed`` (0) seeds the real model: the same initial weights every time."""
    torch.manual_seed(0)
    return StandinModel(dropout=0.2 if dropout else 0.0)


def standin_losses(out: StandinOutput, keypoints_3d: torch.Tensor, validity: torch.Tensor,
                   cfg: object) -> dict[str, torch.Tensor]:
    """Mean absolute error per coordinate (a per-sample mean when all joints are valid)."""
    err = (out.keypoints_3d - keypoints_3d).abs() * validity[..., None]
    mae = err.sum() / (validity.sum() * 3).clamp(min=1) * 0.1
    return {"total": mae, "keypoints_mae": mae.detach()}


class StandinDataset(Dataset):
    """Deterministic samples: pose depends on the index, image encodes the pose, rotation on (epoch, index)."""

    subject_names = SUBJECTS
    action_names = ACTIONS
    camera_names = ("54138969", "55011271")
    skeleton = get_skeleton("contextpose17")  # the joint order of its poses (the evaluator's root and bones)

    def __init__(self, n: int, seed: int = 0, size: int = 8) -> None:
        self.n, self.seed, self.size, self.epoch = n, seed, size, 0
        rng = np.random.default_rng(1234)
        self.base_pose = rng.normal(0, 200, (NUM_JOINTS, 3)).astype(np.float32)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        root = np.array([index * 10.0, -index * 5.0, 4000.0], dtype=np.float32)
        scale = 1.0 + 0.05 * (index % 7)
        keypoints = root + self.base_pose * scale
        image = np.full((1, 3, self.size, self.size), scale, dtype=np.float32)
        image += rng.normal(0, 0.05, image.shape).astype(np.float32)
        proj = np.zeros((1, 3, 4), dtype=np.float32)
        proj[0, 0, 0] = proj[0, 1, 1] = 8.0
        proj[0, 0, 2] = proj[0, 1, 2] = self.size / 2
        proj[0, 2, 2] = 1.0 / 1000.0
        return {
            "images": image,
            "proj_matrices": proj,
            "keypoints_3d": keypoints.astype(np.float32),
            "validity": np.ones(NUM_JOINTS, dtype=np.float32),
            "root": root,
            "rotation": np.float32(rng.uniform(0, 2 * np.pi)),
            "index": np.int64(index),
            "subject_idx": np.int64(index % len(SUBJECTS)),
            "action_idx": np.int64(index % len(ACTIONS)),
            "trial": np.int64(1 + index % 2),
            "camera_idx": np.int64(0),
            "frame": np.int64(index * 5),
        }


def standin_sets() -> tuple[StandinDataset, StandinDataset]:
    """(train, val): 24 and 10 samples."""
    return StandinDataset(24), StandinDataset(10)


class SlowStandinDataset(StandinDataset):
    """A loader-bound run: each sample takes 0.3 s, so the training loop mostly waits for its loader workers."""

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        import time

        time.sleep(0.3)
        return super().__getitem__(index)
