"""The colour scheme and sizes shared by every picture.

Left and right come from the joint names of the skeleton (``left_*`` / ``right_*``; anything else is the
centre line), so a new skeleton gets the scheme for free. The side is the hue, the role the shade:

=============  ===============  ==============  ==============
role           left             right           centre
=============  ===============  ==============  ==============
prediction     blue             red-orange      magenta
ground truth   cyan             amber           green
=============  ===============  ==============  ==============

A bone takes the side of its non-centre end (``right_hip``-``pelvis`` is a right bone). 2D skeletons are drawn
with a thin dark outline so they stay readable on any background; the defaults are tuned for 384-pixel tiles and
scale with :attr:`Style.size`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ctxpose.errors import ConfigError
from ctxpose.skeleton import Skeleton

Role = Literal["pred", "gt"]
Side = Literal["left", "right", "centre"]
RGB = tuple[int, int, int]

#: role -> side -> RGB colour
COLORS: dict[str, dict[str, RGB]] = {
    "pred": {"left": (0, 110, 255), "right": (255, 60, 20), "centre": (210, 0, 210)},
    "gt": {"left": (0, 225, 255), "right": (255, 200, 0), "centre": (40, 215, 40)},
}
OUTLINE: RGB = (20, 20, 20)
TEXT: RGB = (255, 255, 255)
HEADER_BG: RGB = (32, 32, 32)
BOX: RGB = (255, 255, 0)
CUBOID: RGB = (255, 255, 255)


def joint_side(name: str) -> Side:
    """``"left"``, ``"right"`` or ``"centre"`` from a joint name (``left_wrist``, ``r_knee``, ``Head``)."""
    tokens = name.lower().replace("-", "_").replace(" ", "_").split("_")
    if "left" in tokens or tokens[0] == "l":
        return "left"
    if "right" in tokens or tokens[0] == "r":
        return "right"
    return "centre"


def joint_sides(skeleton: Skeleton) -> list[Side]:
    """Side of each joint, in joint order."""
    return [joint_side(n) for n in skeleton.names]


def bone_sides(skeleton: Skeleton) -> list[Side]:
    """Side of each bone: the side of its non-centre end; centre when both ends are centre or they disagree."""
    sides = joint_sides(skeleton)
    out: list[Side] = []
    for a, b in skeleton.bones:
        pair = {sides[a], sides[b]} - {"centre"}
        out.append(pair.pop() if len(pair) == 1 else "centre")
    return out


def joint_colors(skeleton: Skeleton, role: Role) -> list[RGB]:
    """RGB colour of each joint for ``role`` ("pred" or "gt")."""
    return [COLORS[role][s] for s in joint_sides(skeleton)]


def bone_colors(skeleton: Skeleton, role: Role) -> list[RGB]:
    """RGB colour of each bone for ``role``."""
    return [COLORS[role][s] for s in bone_sides(skeleton)]


def mpl_color(rgb: RGB) -> tuple[float, float, float]:
    """An RGB tuple as matplotlib's 0..1 floats."""
    return (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0)


@dataclass(frozen=True)
class Style:
    """Sizes of the pictures (None: derived from ``size``).

    Attributes:
        size: side of one image tile, px (crops are resized to it; 3D views and plots are this tall).
        line_width: bone thickness, px (default ``size / 128``, 3 at 384).
        joint_radius: joint dot radius, px (default ``line_width + 1``).
        font_scale: OpenCV font scale of titles (default ``size / 700``); matplotlib text scales with it.
        outline: dark outline around 2D bones and joints, px (0 = none).
    """

    size: int = 384
    line_width: int | None = None
    joint_radius: int | None = None
    font_scale: float | None = None
    outline: int = 1

    def __post_init__(self) -> None:
        if self.size < 64:
            raise ConfigError(f"--size {self.size}: expected at least 64 px")
        for name in ("line_width", "joint_radius"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: expected at least 1 px")
        if self.font_scale is not None and self.font_scale <= 0:
            raise ConfigError(f"--font-scale {self.font_scale}: expected > 0")
        if self.outline < 0:
            raise ConfigError(f"--outline {self.outline}: expected >= 0 px")

    def scaled(self, size: int) -> Style:
        """The same settings at another tile size (for thumbnails)."""
        return replace(self, size=size)

    @property
    def lw(self) -> int:
        """Bone thickness, px."""
        return self.line_width if self.line_width is not None else max(1, round(self.size / 128))

    @property
    def radius(self) -> int:
        """Joint radius, px."""
        return self.joint_radius if self.joint_radius is not None else self.lw + 1

    @property
    def font(self) -> float:
        """OpenCV font scale."""
        return self.font_scale if self.font_scale is not None else max(0.35, self.size / 700)

    @property
    def font_pt(self) -> float:
        """matplotlib font size, points, matching :attr:`font` at 100 dpi."""
        return 18.0 * self.font
