"""Run logs on rank 0: TensorBoard scalars/images, JSON-lines scalars, a plain-text train.log.

Other ranks get a logger whose methods do nothing, so call sites need no rank checks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ctxpose.utils.io import atomic_write_text

logger = logging.getLogger(__name__)


class RunLogger:
    """Writes ``events.out.tfevents.*``, ``scalars.jsonl`` and ``train.log`` into a run folder.

    Args:
        run_dir: run folder; ``None`` (other ranks) disables every method.
        resume_step: the step a resumed run continues from: logged steps after it (written by the
            interrupted run after its last checkpoint, and about to be run again) are dropped from
            ``scalars.jsonl`` and purged from TensorBoard, so no step appears twice.
    """

    def __init__(self, run_dir: Path | None, resume_step: int | None = None) -> None:
        self.enabled = run_dir is not None
        self._writer = None
        self._jsonl = None
        self._handler: logging.Handler | None = None
        if run_dir is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        jsonl = run_dir / "scalars.jsonl"
        if resume_step is not None and jsonl.is_file():
            kept = [line for line in jsonl.read_text(encoding="utf-8").splitlines(keepends=True)
                    if _step_of(line) is not None and _step_of(line) <= resume_step]
            atomic_write_text(jsonl, "".join(kept))
        self._writer = SummaryWriter(log_dir=str(run_dir),
                                     purge_step=None if resume_step is None else resume_step + 1)
        self._jsonl = open(jsonl, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
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


def _step_of(line: str) -> int | None:
    """The ``step`` of one ``scalars.jsonl`` line (None for a torn or foreign line)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None
