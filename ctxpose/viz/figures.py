"""matplotlib figures on an Agg canvas: the 3D skeleton view and the shared plot helpers.

Figures are made with ``matplotlib.figure.Figure`` and rendered by ``FigureCanvasAgg`` directly, so nothing
here needs a display, selects a backend or changes ``matplotlib.rcParams``; font sizes come from the
:class:`~ctxpose.viz.style.Style` of each call.

The 3D view is the same for every sample: seen from the camera of the crop (its optical axis flattened onto
the floor, so the view's horizontal axis is the camera's right), orthographic, 15 degrees from above, centred on
the ground-truth root joint, with fixed metric axes of ``+-extent`` mm and a floor grid at the height of the
lowest ground-truth joint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ctxpose.skeleton import Skeleton
from ctxpose.viz.style import COLORS, Role, Style, bone_colors, joint_colors, joint_sides, mpl_color

AXES = {"x": 0, "y": 1, "z": 2}
#: elevation of the 3D view, degrees
ELEVATION = 15.0


def new_figure(width_px: int, height_px: int, dpi: int = 100, layout: str | None = None) -> Figure:
    """A figure of the given pixel size with an Agg canvas attached (``layout="constrained"`` for grids)."""
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def render(fig: Figure) -> np.ndarray:
    """Draw ``fig`` and return it as (H, W, 3) uint8 RGB."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[:, :, :3])


def up_vector(up: str) -> np.ndarray:
    """A world axis name (``z``, ``-y``, ...) as a unit vector."""
    sign = -1.0 if up.startswith("-") else 1.0
    name = up.lstrip("+-")
    if name not in AXES:
        raise ValueError(f"up axis {up!r}: expected x, y or z with an optional sign")
    v = np.zeros(3)
    v[AXES[name]] = sign
    return v


def camera_view_basis(proj: np.ndarray | None, up: np.ndarray) -> np.ndarray:
    """The view frame of the 3D plot: rows (right, forward, up) in world coordinates.

    Args:
        proj: (3, 4) projection matrix of the crop (world mm -> px); ``None``: look along world +y.
        up: (3,) world vertical unit vector.

    Returns:
        (3, 3) orthonormal rows: the camera's right and viewing direction flattened onto the floor, and up.
    """
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    forward = np.array([0.0, 1.0, 0.0]) if abs(up[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
    if proj is not None and np.isfinite(proj).all():
        m = np.asarray(proj, np.float64)[:, :3]
        det = np.linalg.det(m)
        if abs(det) > 1e-12:
            forward = m[2] * np.sign(det)  # optical axis (K's last row is (0, 0, 1))
    flat = forward - forward.dot(up) * up
    if np.linalg.norm(flat) < 1e-6:  # camera looks straight down or up: keep its image-right direction
        flat = np.cross(up, np.asarray(proj, np.float64)[0, :3]) if proj is not None else np.cross(up, [1, 0, 0])
    flat /= np.linalg.norm(flat)
    right = np.cross(flat, up)
    return np.stack([right, flat, up])


def pose_view_coordinates(keypoints: np.ndarray, basis: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """World joints (J, 3) mm into the view frame of :func:`camera_view_basis`, relative to ``centre``."""
    return (np.asarray(keypoints, np.float64) - centre) @ basis.T


def draw_pose_3d(ax, skeletons: Sequence[tuple[np.ndarray, Role]], skeleton: Skeleton, style: Style,
                 extent: float = 1000.0, floor: float | None = None, validity: np.ndarray | None = None) -> None:
    """Skeletons in view coordinates (right, forward, up; mm) on a 3D axes with fixed limits and a floor grid.

    Args:
        ax: a ``projection="3d"`` axes.
        skeletons: (keypoints (J, 3) view mm, role) pairs.
        skeleton: joint order and bones.
        style: sizes.
        extent: half side of the shown cube, mm.
        floor: height of the floor grid in view coordinates, mm (None: -extent).
        validity: (J,) optional; joints with 0 are not drawn.
    """
    ax.set_proj_type("ortho")
    ax.view_init(elev=ELEVATION, azim=-90.0)
    floor = -extent if floor is None or not np.isfinite(floor) else max(-extent, float(floor))
    step = 500.0 if extent > 600 else 250.0
    ticks = np.arange(-np.floor(extent / step) * step, extent + 1e-6, step)
    for v in ticks:
        ax.plot([v, v], [-extent, extent], [floor, floor], color="0.78", lw=0.8, zorder=0)
        ax.plot([-extent, extent], [v, v], [floor, floor], color="0.78", lw=0.8, zorder=0)
    ok_all = np.ones(skeleton.num_joints, bool) if validity is None else np.asarray(validity).reshape(-1) > 0
    lw = max(1.0, style.lw * 0.9)
    for keypoints, role in skeletons:
        kp = np.asarray(keypoints, np.float64)
        ok = ok_all & np.isfinite(kp).all(-1)
        for (a, b), color in zip(skeleton.bones, bone_colors(skeleton, role), strict=True):
            if ok[a] and ok[b]:
                ax.plot(kp[[a, b], 0], kp[[a, b], 1], kp[[a, b], 2], color=mpl_color(color), lw=lw,
                        solid_capstyle="round")
        colors = [mpl_color(c) for c, keep in zip(joint_colors(skeleton, role), ok, strict=True) if keep]
        ax.scatter(kp[ok, 0], kp[ok, 1], kp[ok, 2], c=colors, s=(style.radius * 1.3) ** 2, depthshade=False,
                   edgecolors="none")
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_zlim(floor, floor + 2 * extent)
    ax.set_box_aspect((1, 1, 1), zoom=1.2)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_yticklabels([])  # the depth axis is seen nearly end-on
    ax.set_zticks(ticks - ticks[0] + floor)
    ax.set_zticklabels([f"{v:.0f}" for v in ticks - ticks[0]])
    ax.tick_params(labelsize=style.font_pt * 0.7, pad=-2)
    for axis, label in ((ax.xaxis, "right (mm)"), (ax.yaxis, ""), (ax.zaxis, "above floor (mm)")):
        axis.pane.fill = False
        axis.pane.set_edgecolor("0.85")
        axis.set_label_text(label, fontsize=style.font_pt * 0.7)
        axis.labelpad = 2 if axis is ax.zaxis else -6
    ax.grid(False)


def pose_3d_image(skeletons: Sequence[tuple[np.ndarray, Role]], skeleton: Skeleton, style: Style,
                  proj: np.ndarray | None = None, up: str = "z", extent: float = 1000.0,
                  title: Sequence[str] = (), validity: np.ndarray | None = None) -> np.ndarray:
    """The standard 3D view of world-space skeletons as an image.

    Args:
        skeletons: (keypoints (J, 3) world mm, role) pairs; the first ``"gt"`` one (else the first) sets the
            centre (its root joint) and the floor (its lowest joint).
        skeleton: joint order and bones.
        style: ``size`` is the image side, px.
        proj: (3, 4) projection of the crop, to face its camera (None: look along world +y).
        up: the world's vertical axis, e.g. "z" (Human3.6M).
        extent: half side of the shown cube, mm.
        title: title lines.
        validity: (J,) optional joint validity.

    Returns:
        (size, size, 3) uint8 RGB.
    """
    if not skeletons:
        raise ValueError("pose_3d_image: no skeletons")
    basis = camera_view_basis(proj, up_vector(up))
    anchor = next((kp for kp, role in skeletons if role == "gt"), skeletons[0][0])
    anchor = np.asarray(anchor, np.float64)
    centre = anchor[skeleton.root] if np.isfinite(anchor[skeleton.root]).all() else np.nanmean(anchor, axis=0)
    view = [(pose_view_coordinates(kp, basis, centre), role) for kp, role in skeletons]
    heights = view[[role for _, role in skeletons].index("gt") if any(r == "gt" for _, r in skeletons) else 0][0]
    floor = float(np.nanmin(heights[:, 2])) if np.isfinite(heights[:, 2]).any() else None
    fig = new_figure(style.size, style.size)
    ax = fig.add_axes((-0.05, 0.03, 1.08, 0.86 if title else 0.97), projection="3d")
    draw_pose_3d(ax, view, skeleton, style, extent, floor, validity)
    for k, line in enumerate(title):
        fig.text(0.5, 0.985 - k * 0.055, line, ha="center", va="top", fontsize=style.font_pt * (0.8 if k else 0.9))
    return render(fig)


def joint_error_bars(ax, errors: np.ndarray, skeleton: Skeleton, style: Style, role: Role = "pred",
                     xlabel: str = "error (mm)") -> None:
    """Horizontal bars of one value per joint, coloured by side, joint 0 on top."""
    colors = [mpl_color(COLORS[role][s]) for s in joint_sides(skeleton)]
    y = np.arange(skeleton.num_joints)
    ax.barh(y, np.nan_to_num(errors), color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(skeleton.names, fontsize=style.font_pt * 0.7)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=style.font_pt * 0.7)
    ax.set_xlabel(xlabel, fontsize=style.font_pt * 0.75)
    ax.grid(axis="x", color="0.88")
    ax.set_axisbelow(True)
