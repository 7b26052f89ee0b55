"""Writes ctxpose/resources/h36m_cameras.json from the collected Human3.6M camera facts.

Usage: ``python tools/make_h36m_cameras.py [path/to/shared/h36m/h36m_cameras.json] [output.json]``

Input: ``shared/h36m/h36m_cameras.json`` (its ``source`` field names the primary data: the <w0> vector of the
official release ``metadata.xml``, cross-checked against una-dinosauria ``cameras.h5``, VideoPose3D, mmpose and
karfly). For each subject with public poses and each camera we keep:

* ``R``: world->camera rotation (field ``extrinsics.<S>.<cam>.R_world_to_cam``),
* ``t``: world->camera translation in mm, ``-R @ T`` (field ``t_opencv_mm``),
* ``K``: intrinsics from ``intrinsics.<cam>.w0_double_precision`` (f, c),
* ``dist``: ``(k1, k2, p1, p2, k3)`` from the same field (``k`` and ``p_h36m_order``), applied with the
  Human3.6M distortion model (``dist_model = "h36m"``, see ctxpose/geometry/distortion.py),
* ``image_hw``: (rows, cols) from ``resolution_per_subject_metadata_xml``.

The output is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ctxpose.utils.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "h36m" / "h36m_cameras.json"
DEFAULT_OUTPUT = REPO / "ctxpose" / "resources" / "h36m_cameras.json"
SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
CAMERAS = ("54138969", "55011271", "58860488", "60457274")


def _camera_entry(facts: dict, subject: str, camera: str) -> dict:
    extrinsics = facts["extrinsics"][subject][camera]
    w0 = facts["intrinsics"][camera]["w0_double_precision"]
    resolution = facts["resolution_per_subject_metadata_xml"][subject][camera]
    R = extrinsics["R_world_to_cam"]
    t = extrinsics["t_opencv_mm"]
    centre = extrinsics["T_camera_center_world_mm"]
    # Consistency check of the two extrinsic fields: t = -R @ T.
    for i in range(3):
        expected = -sum(R[i][j] * centre[j] for j in range(3))
        if not math.isclose(t[i], expected, abs_tol=1e-6):
            raise SystemExit(f"{subject}/{camera}: t_opencv_mm[{i}]={t[i]} but -R@T gives {expected}")
    (fx, fy), (cx, cy) = w0["f"], w0["c"]
    k1, k2, k3 = w0["k"]
    p1, p2 = w0["p_h36m_order"]
    return {
        "R": R,
        "t": t,
        "K": [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]],
        "dist": [k1, k2, p1, p2, k3],
        "image_hw": [resolution["res_h"], resolution["res_w"]],
    }


def build(facts: dict) -> dict:
    """The packaged camera file as a dict."""
    return {
        "source": {
            "generated_by": "tools/make_h36m_cameras.py from shared/h36m/h36m_cameras.json",
            "primary_raw": facts["source"]["primary_raw"],
            "cross_checked_against": facts["source"]["cross_checked_against"],
            "fields": {
                "R": "extrinsics.<subject>.<camera>.R_world_to_cam",
                "t": "extrinsics.<subject>.<camera>.t_opencv_mm (= -R @ T_camera_center_world_mm)",
                "K": "intrinsics.<camera>.w0_double_precision.f, .c",
                "dist": "intrinsics.<camera>.w0_double_precision.k[0], k[1], p_h36m_order[0], p_h36m_order[1], k[2]",
                "image_hw": "resolution_per_subject_metadata_xml.<subject>.<camera> (res_h, res_w)",
            },
        },
        "conventions": {
            "extrinsics": "x_cam = R @ x_world + t; world and camera frames in mm; camera x right, y down, z forward",
            "intrinsics": "K in px, pixel centres at integer coordinates",
            "dist": "(k1, k2, p1, p2, k3) applied with the Human3.6M model (ProjectPointRadial.m), "
            "not OpenCV's: x_d = x*radial + p1*x*y + p2*(r2 + x^2), y_d = y*radial + p2*x*y + p1*(r2 + y^2)",
            "image_hw": "(rows, cols) of the videos",
        },
        "dist_model": "h36m",
        "cameras": {
            subject: {camera: _camera_entry(facts, subject, camera) for camera in CAMERAS} for subject in SUBJECTS
        },
    }


def main(argv: list[str]) -> None:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_INPUT
    output = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUTPUT
    facts = json.loads(source.read_text(encoding="utf-8"))
    text = json.dumps(build(facts), indent=1) + "\n"
    atomic_write_text(output, text)
    print(f"wrote {output} ({len(SUBJECTS)} subjects x {len(CAMERAS)} cameras)")


if __name__ == "__main__":
    main(sys.argv)
