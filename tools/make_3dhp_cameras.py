"""Write ctxpose/resources/mpi_inf_3dhp_cameras.json from the MPI-INF-3DHP test set's calibration files.

Usage: python tools/make_3dhp_cameras.py [CALIB_DIR]   (default ../shared/mpi_inf_3dhp)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ctxpose.data.mpi_inf_3dhp.cameras import parse_calib

FILES = {"ts1-4cameras.calib": ("TS1", "TS2", "TS3", "TS4"), "ts5-6cameras.calib": ("TS5", "TS6")}
IMAGE_HW = {"ts1-4cameras.calib": (2048, 2048), "ts5-6cameras.calib": (1080, 1920)}


def main(calib_dir: Path) -> None:
    out = {
        "source": ("MPI-INF-3DHP test set release, mpi_inf_3dhp_test_set/test_util/camera_calibration/"
                   "{ts1-4cameras,ts5-6cameras}.calib (tc camera calibration v0.3; copies in shared/mpi_inf_3dhp/), "
                   "parsed by ctxpose.data.mpi_inf_3dhp.cameras.parse_calib; image sizes: 2048x2048 studio frames "
                   "(TS1-4), 1920x1080 GoPro frames (TS5-6) of the release"),
        "units": "sensorSize, focalLength, centerOffset in mm on the sensor; distortion (k1, k2, p1, p2, k3) OpenCV",
        "calibrations": {name: parse_calib((calib_dir / name).read_text(), name) for name in FILES},
        "sequences": {seq: {"calibration": name, "image_hw": list(IMAGE_HW[name])}
                      for name, seqs in FILES.items() for seq in seqs},
    }
    path = Path(__file__).parents[1] / "ctxpose" / "resources" / "mpi_inf_3dhp_cameras.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / ".." / "shared" / "mpi_inf_3dhp")
