"""Joint orders, bones, the Human3.6M 32 -> 17 joint mapping and the bone-length prior's type.

This module is the only place that spells out how many joints a skeleton has; everything else
reads ``len(skeleton.names)`` or ``skeleton.num_joints``.

Facts come from ``shared/h36m/h36m_joints.json`` (sources: the H36M release ``metadata.xml``
skeleton tree and ContextPose / learnable-triangulation ``generate-labels-npy-multiview.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Skeleton:
    """A joint order with its bones.

    Attributes:
        name: identifier of the order.
        names: joint names, index = joint id.
        bones: (joint_a, joint_b) pairs, in the order the limb-length prior stores them.
        root: index of the pelvis joint (centre of the volumetric cuboid).
        flip_pairs: (left, right) joint pairs swapped by a horizontal flip.
        h36m32_indices: for each joint, its index among Human3.6M's 32 raw mocap joints.
    """

    name: str
    names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    root: int
    flip_pairs: tuple[tuple[int, int], ...]
    h36m32_indices: tuple[int, ...]

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def num_bones(self) -> int:
        return len(self.bones)

    def from_h36m32(self, keypoints_32: np.ndarray) -> np.ndarray:
        """Select this order's joints from raw Human3.6M poses.

        Args:
            keypoints_32: (..., 32, D) raw mocap joints (D=3 world mm, or D=2 pixels).

        Returns:
            (..., J, D) joints in this skeleton's order.
        """
        if keypoints_32.shape[-2] != 32:
            raise ValueError(f"expected (..., 32, D) raw Human3.6M joints, got shape {keypoints_32.shape}")
        return keypoints_32[..., list(self.h36m32_indices), :]

    def bone_lengths(self, keypoints: np.ndarray) -> np.ndarray:
        """Bone lengths.

        Args:
            keypoints: (..., J, 3) joints, mm.

        Returns:
            (..., L) length of each bone in ``bones`` order, mm.
        """
        a = np.array([b[0] for b in self.bones])
        b = np.array([b[1] for b in self.bones])
        return np.linalg.norm(keypoints[..., a, :] - keypoints[..., b, :], axis=-1)


#: The order used by learnable-triangulation and ContextPose (``model.kind: mpii``): the 16 MPII joints
#: plus H36M's 'Neck/Nose' as joint 16. The pelvis is joint 6.
H36M_CONTEXTPOSE = Skeleton(
    name="contextpose17",
    names=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "belly", "neck", "head", "right_wrist", "right_elbow", "right_shoulder",
        "left_shoulder", "left_elbow", "left_wrist", "nose",
    ),
    bones=(
        (0, 1), (1, 2), (2, 6), (5, 4), (4, 3), (3, 6), (6, 7), (7, 8),
        (8, 16), (9, 16), (8, 12), (11, 12), (10, 11), (8, 13), (13, 14), (14, 15),
    ),
    root=6,
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    h36m32_indices=(3, 2, 1, 6, 7, 8, 0, 12, 13, 15, 27, 26, 25, 17, 18, 19, 14),
)

SKELETONS = {H36M_CONTEXTPOSE.name: H36M_CONTEXTPOSE}


def get_skeleton(name: str = H36M_CONTEXTPOSE.name) -> Skeleton:
    """Look a skeleton up by name."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; known: {sorted(SKELETONS)}") from None


@dataclass(frozen=True)
class LimbPrior:
    """Bone-length statistics in a skeleton's ``bones`` order (read by :mod:`ctxpose.data.limb_prior`).

    Attributes:
        mean: (L,) float32 tensor, mean bone length, mm.
        std: (L,) float32 tensor, standard deviation of the bone length, mm.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __post_init__(self) -> None:
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError(f"limb prior mean/std must be matching (L,) tensors, got {self.mean.shape} and "
                             f"{self.std.shape}")

    @property
    def num_bones(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def from_keypoints(cls, keypoints_3d: np.ndarray, skeleton: Skeleton | None = None) -> LimbPrior:
        """Statistics over poses, as the original ``limb_length.py`` (population std).

        Args:
            keypoints_3d: (N, J, 3) world coordinates, mm.
            skeleton: whose bones; default the ContextPose skeleton.
        """
        import torch

        skeleton = skeleton or get_skeleton()
        lengths = skeleton.bone_lengths(np.asarray(keypoints_3d, dtype=np.float64))
        return cls(torch.from_numpy(lengths.mean(0)).float(), torch.from_numpy(lengths.std(0)).float())
