"""Joint orders, bones, the Human3.6M 32 -> 17 joint mapping and the bone-length prior's type.

This module is the only place that spells out how many joints a skeleton has; everything else
reads ``len(skeleton.names)`` or ``skeleton.num_joints``.

Facts come from ``shared/h36m/h36m_joints.json`` (sources: the H36M release ``metadata.xml``
skeleton tree and ContextPose / learnable-triangulation ``generate-labels-npy-multiview.py``) and, for the
MPI-INF-3DHP order, from the test set's evaluation code (``mpii_get_joints.m``).
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


#: The order used by learnable-triangulation and ContextPose (the original's ``model.kind: mpii``): the 16 MPII joints
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

# --------------------------------------------------------------------------- MPI-INF-3DHP

#: The 17 "relevant" joints of the MPI-INF-3DHP test set, in the order of its ``annot_data.mat`` files
#: (``annot2``, ``annot3``, ``univ_annot3``) and of the official evaluation: ``mpii_get_joints('relevant')``
#: of the release's ``test_util`` (indices [8, 6, 15, 16, 17, 10, 11, 12, 24, 25, 26, 19, 20, 21, 5, 4, 7]
#: into its 28 ``all`` joint names). The pelvis is joint 14 (15 in MATLAB), the root of the evaluation.
MPI_INF_3DHP_NAMES = (
    "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "pelvis",
    "spine", "head",
)

#: 3DHP joint name -> the contextpose17 joint at the same body point, where the two names differ. The
#: contextpose17 names follow MPII; their Human3.6M sources (``shared/h36m/h36m_joints.json``) say what they
#: are: "head" is H36M joint 15, the head top (end site); "nose" is H36M 14 "Neck/Nose", the neck-head
#: junction that 3DHP calls "head"; "belly" is H36M 12 (Spine1), 3DHP's "spine". 3DHP "neck" is the thorax,
#: as contextpose17 "neck" (H36M 13). Every other name is the same joint in both orders.
MPI_INF_3DHP_TO_CONTEXTPOSE = {"head_top": "head", "head": "nose", "spine": "belly"}


def joint_correspondence(names: tuple[str, ...], to: Skeleton, renamed: dict[str, str]) -> tuple[int, ...]:
    """For each joint name of one order, the index of the same joint in skeleton ``to``.

    Args:
        names: joint names of the source order.
        to: the skeleton whose indices are returned.
        renamed: source name -> name in ``to`` for joints named differently; others must match exactly.

    Returns:
        ``idx`` with ``keypoints_to[..., idx, :]`` = the keypoints in the source order.

    Raises:
        ValueError: a name has no counterpart in ``to`` or two names map to one joint.
    """
    idx = []
    for name in names:
        target = renamed.get(name, name)
        if target not in to.names:
            raise ValueError(f"joint {name!r} ({target!r}) is not a joint of {to.name}")
        idx.append(to.names.index(target))
    if len(set(idx)) != len(idx):
        raise ValueError(f"joint names {names} map several joints onto one joint of {to.name}")
    return tuple(idx)


#: Index into contextpose17 of each 3DHP joint: ``keypoints_3dhp = keypoints_ours[..., CONTEXTPOSE_TO_3DHP, :]``.
CONTEXTPOSE_TO_3DHP = joint_correspondence(MPI_INF_3DHP_NAMES, H36M_CONTEXTPOSE, MPI_INF_3DHP_TO_CONTEXTPOSE)
#: Index into the 3DHP order of each contextpose17 joint (the inverse permutation).
MPI_INF_3DHP_TO_CONTEXTPOSE_INDEX = tuple(int(i) for i in np.argsort(CONTEXTPOSE_TO_3DHP))

#: The 3DHP order as a skeleton. Bones: the official first-order parents of the 'relevant' joints
#: (``joint_parents_o1``, 1-based [2, 16, 2, 3, 4, 2, 6, 7, 15, 9, 10, 15, 12, 13, 15, 15, 2]) as
#: (child, parent) pairs without the pelvis' self-loop.
MPI_INF_3DHP = Skeleton(
    name="mpi_inf_3dhp17",
    names=MPI_INF_3DHP_NAMES,
    bones=((0, 1), (1, 15), (2, 1), (3, 2), (4, 3), (5, 1), (6, 5), (7, 6), (8, 14), (9, 8), (10, 9), (11, 14),
           (12, 11), (13, 12), (15, 14), (16, 1)),
    root=14,
    flip_pairs=((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13)),
    h36m32_indices=tuple(H36M_CONTEXTPOSE.h36m32_indices[i] for i in CONTEXTPOSE_TO_3DHP),
)

SKELETONS = {H36M_CONTEXTPOSE.name: H36M_CONTEXTPOSE, MPI_INF_3DHP.name: MPI_INF_3DHP}


def get_skeleton(name: str) -> Skeleton:
    """Look a skeleton up by name (``cfg.model.skeleton``, a labels file's ``skeleton``)."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; known: {sorted(SKELETONS)}") from None


@dataclass(frozen=True)
class LimbPrior:
    """Bone-length statistics in a skeleton's ``bones`` order (read by :func:`ctxpose.models.build.load_limb_prior`).

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
    def from_keypoints(cls, keypoints_3d: np.ndarray, skeleton: Skeleton) -> LimbPrior:
        """Statistics over poses, as the original ``limb_length.py`` (population std).

        Args:
            keypoints_3d: (N, J, 3) world coordinates, mm.
            skeleton: whose bones.
        """
        import torch

        lengths = skeleton.bone_lengths(np.asarray(keypoints_3d, dtype=np.float64))
        return cls(torch.from_numpy(lengths.mean(0)).float(), torch.from_numpy(lengths.std(0)).float())
