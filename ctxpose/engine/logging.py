"""Run logs on rank 0: TensorBoard scalars/images, JSON-lines scalars, a plain-text train.log.

Other ranks get a logger whose methods do nothing, so call sites need no rank checks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from ctxpose.utils.io import atomic_write_text

logger = logging.getLogger(__name__)


class RunLogger:
    """Writes ``events.out.tfevents.*``, ``scalars.jsonl`` and ``train.log`` into a run folder.

    Args:
        run_dir: run folder; ``None`` (other ranks) disables every method.
    """

    def __init__(self, run_dir: Path | None) -> None:
        self.enabled = run_dir is not None
        self._writer = None
        self._jsonl = None
        self._handler: logging.Handler | None = None
        if run_dir is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(run_dir))
        self._jsonl = open(run_dir / "scalars.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("ctxpose").addHandler(self._handler)
        if logging.getLogger("ctxpose").getEffectiveLevel() > logging.INFO:
            logging.getLogger("ctxpose").setLevel(logging.INFO)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        """Log scalars under ``prefix/name`` to TensorBoard and as one JSON line."""
        if not self.enabled:
            return
        tagged = {f"{prefix}/{k}" if prefix else k: float(v) for k, v in values.items()}
        for tag, value in tagged.items():
            self._writer.add_scalar(tag, value, step)
        self._jsonl.write(json.dumps({"step": step, **tagged}) + "\n")
        self._jsonl.flush()

    def image(self, tag: str, step: int, image_hwc: np.ndarray) -> None:
        """Log one uint8 (H, W, 3) RGB image."""
        if self.enabled:
            self._writer.add_image(tag, image_hwc, step, dataformats="HWC")

    def flush(self) -> None:
        if self.enabled:
            self._writer.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self._writer.close()
        self._jsonl.close()
        if self._handler is not None:
            logging.getLogger("ctxpose").removeHandler(self._handler)
            self._handler.close()
        self.enabled = False


def write_run_info(run_dir: Path, world: int, device: torch.device, amp: str | None) -> None:
    """``run_info.json``: package versions, git commit, world size, device, amp, start time."""
    import platform
    import subprocess
    import time

    from ctxpose import __version__

    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    info = {"ctxpose": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "git": git, "world_size": world, "device": str(device), "amp": amp, "time": time.time()}
    atomic_write_text(run_dir / "run_info.json", json.dumps(info, indent=2))

