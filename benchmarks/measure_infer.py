"""``ctxpose infer`` on data with known truth: the synthetic Human3.6M videos of a subject the model never saw.

Boxes come from the synthetic masks, written as a COCO results file and read back the way any external
detector's are. For every root method it reports the root-relative MPJPE and the absolute pelvis error
(median, 90th percentile), with the true focal length and with the default field of view, next to the
ground-truth pelvis (what ``eval`` gives), and the ground-truth pelvis with the cameras' true pitch. Results
print as JSON lines and are written as JSON.

    python benchmarks/measure_infer.py --demo ctxpose-demo --out infer_measure.json

``--demo`` is a ``ctxpose demo`` folder (its raw S9 videos are the held-out subject and its run the model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctxpose.config import load_config
from ctxpose.engine.infer import PoseEstimator
from ctxpose.engine.infer_measure import load_cases, measure, measure_all
from ctxpose.geometry.monocular import DEFAULT_FOV_DEG


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("ctxpose-demo"))
    parser.add_argument("--subject", default="S9")
    parser.add_argument("--frames", type=int, default=30, help="frames per video")
    parser.add_argument("--out", type=Path, default=Path("infer_measure.json"))
    parser.add_argument("--methods", default="given,box,rootnet,bones,network")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides")
    parser.add_argument("--person-size", type=float, help="also the RootNet roots with this person size, mm")
    parser.add_argument("--checkpoint", type=Path, help="default: the demo run's checkpoints/last.pt")
    args = parser.parse_args()
    cfg = load_config(args.demo / "run" / "config.yaml", args.set)
    est = PoseEstimator.from_config(cfg, args.checkpoint or args.demo / "run" / "checkpoints" / "last.pt", "cpu")
    cases = load_cases(args.demo / "raw", args.subject, args.frames, args.out.with_suffix(".coco.json"))
    rows = measure_all(est, cases, tuple(args.methods.split(",")), lambda row: print(json.dumps(row), flush=True))
    parts = [("given", "true", "true", None)]  # the cameras' real pitch instead of the no-pitch assumption
    parts += [(m, cam, "zero", args.person_size) for m in ("box", "rootnet") for cam in ("true", "fov")
              if args.person_size]
    for method, camera, pitch, size in parts:
        rows.append(measure(est, cases, method, camera, pitch, size))
        print(json.dumps(rows[-1]), flush=True)
    result = {"subject": args.subject, "videos": [c["name"] for c in cases], "default_fov_deg": DEFAULT_FOV_DEG,
              "frame_hw": list(cases[0]["frames"][0].shape[:2]),
              "true_pitch_deg": {c["name"]: c["pitch"] for c in cases}, "rows": rows}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
