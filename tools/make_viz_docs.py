"""Regenerate the README's example images (docs/images/viz_*.png) from a synthetic demo.

    ctxpose demo --out ctxpose-demo                 # synthetic data, a 10-epoch tiny run, its evaluation
    python tools/make_viz_docs.py ctxpose-demo      # one image per `ctxpose visualize` mode

Each image is made by the real command (``python -m ctxpose visualize ...``), then stored as a palette PNG
(Pillow, 64 colours, the colour scheme's exact colours among them) so that it stays a few tens of kB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def visualize(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ctxpose", "visualize", *args], check=True)


def store(src: Path, dst: Path, colours: int = 64) -> None:
    """A palette PNG whose palette holds the scheme's exact colours plus an adaptive set for the rest."""
    from ctxpose.viz import style

    fixed = [c for role in style.COLORS.values() for c in role.values()]
    fixed += [style.OUTLINE, style.TEXT, style.HEADER_BG, style.BOX, style.CUBOID, (0, 0, 0), (255, 255, 255)]
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    adaptive = rgb.quantize(colours - len(fixed), method=Image.Quantize.MEDIANCUT).getpalette()[:3 * (colours -
                                                                                                 len(fixed))]
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for c in fixed for v in c] + adaptive + [0] * (768 - 3 * colours))
    rgb.quantize(palette=palette, dither=Image.Dither.NONE).save(dst, optimize=True)
    print(f"{dst.relative_to(ROOT)}: {dst.stat().st_size / 1024:.0f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="output folder of `ctxpose demo`")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--size", default="288", help="tile size, px")
    args = parser.parse_args()
    demo, out = args.demo, args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        visualize("dataset", str(demo / "processed"), "--subject", "S9", "--action", "Walking-1", "--camera",
                  "54138969", "--frames", "20", "--raw", str(demo / "raw"), "--size", args.size, "--out", str(t / "d"))
        store(t / "d" / "S9_Walking-1_54138969_000020.png", out / "viz_dataset.png")
        visualize("predictions", str(demo / "eval"), "--dataset", str(demo / "processed"), "--index", "157",
                  "--worst", "0", "--size", args.size, "--out", str(t / "p"))
        store(t / "p" / "samples" / "000157.png", out / "viz_predictions.png")
        visualize("model", str(demo / "config.yaml"), "--checkpoint", str(demo / "run" / "checkpoints" / "last.pt"),
                  "--sample", "S9/Walking-1/54138969/20", "--device", "cpu", "--size", args.size, "--out", str(t / "m"))
        store(t / "m" / "overview.png", out / "viz_model.png")
        visualize("run", str(demo / "run"), "--size", args.size, "--out", str(t / "r"))
        store(t / "r" / "curves.png", out / "viz_run.png")


if __name__ == "__main__":
    main()
