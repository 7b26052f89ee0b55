"""Run folders: naming a new one, recognising one, and resolving ``--resume`` and evaluation targets.

A run folder (``<logdir>/<title>_<YYYYmmdd-HHMMSS>``) holds ``run_info.json`` (written when the run
starts: it is what makes a folder a run folder), ``config.yaml``, ``checkpoints/last.pt``,
``metrics.json``, ``scalars.jsonl``, ``train.log`` and TensorBoard events.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from ctxpose._version import __version__
from ctxpose.errors import CheckpointError, ConfigError

RUN_INFO = "run_info.json"
LAST = "last.pt"
CONFIG = "config.yaml"


def new_run_dir(logdir: str | Path, title: str) -> Path:
    """``<logdir>/<title>_<time>``, with ``-2``, ``-3``... when a run started in the same second."""
    base = Path(logdir) / f"{title}_{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def read_run_info(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``run_info.json``, or None when ``run_dir`` is not a ctxpose run folder."""
    try:
        info = json.loads((Path(run_dir) / RUN_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "ctxpose" in info else None


def is_run_dir(path: str | Path) -> bool:
    """True for a folder holding a ctxpose ``run_info.json``."""
    return Path(path).is_dir() and read_run_info(Path(path)) is not None


def write_run_info(run_dir: Path, world: int, device: Any, amp: Any, resumed_from: dict[str, int] | None) -> None:
    """``run_info.json``: package versions, git commit, world size, device, amp, start time (rank 0)."""
    import torch

    from ctxpose.utils.io import atomic_write_text

    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    info = {"ctxpose": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "git": git, "world_size": world, "device": str(device), "amp": getattr(amp, "value", amp),
            "time": time.time(), "resumed_from": resumed_from}
    atomic_write_text(run_dir / RUN_INFO, json.dumps(info, indent=2))


def resolve_resume(resume: str, logdir: str | Path, title: str) -> tuple[Path, Path]:
    """``--resume``: a run folder, a run's checkpoint file, or ``auto`` (the latest run of ``title``).

    Returns:
        (checkpoint file, run folder to continue in).

    Raises:
        CheckpointError: nothing to resume from, or a path that is not inside a ctxpose run folder.
    """
    if resume == "auto":
        runs = sorted((p for p in Path(logdir).glob(f"{title}_*") if (p / "checkpoints" / LAST).is_file()
                       and is_run_dir(p)), key=lambda p: (p / "checkpoints" / LAST).stat().st_mtime)
        if not runs:
            raise CheckpointError(f"--resume auto: no run of {title!r} with checkpoints/{LAST} under {logdir}")
        return runs[-1] / "checkpoints" / LAST, runs[-1]
    path = Path(resume)
    if path.is_dir():
        if not is_run_dir(path):
            raise CheckpointError(f"--resume {resume}: not a ctxpose run folder (no {RUN_INFO})")
        checkpoint, run_dir = path / "checkpoints" / LAST, path
        if not checkpoint.is_file():
            raise CheckpointError(f"--resume {resume}: run folder without checkpoints/{LAST}")
        return checkpoint, run_dir
    if not path.is_file():
        raise CheckpointError(f"--resume {resume}: not found (expected a run folder, its checkpoint file or auto)")
    run_dir = path.resolve().parent.parent
    if path.resolve().parent.name != "checkpoints" or not is_run_dir(run_dir):
        raise CheckpointError(f"--resume {resume}: not a checkpoint inside a ctxpose run folder (RUN/checkpoints/"
                              f"FILE with RUN/{RUN_INFO}); to start a new run from its weights use "
                              f"--set model.checkpoint={resume}")
    return path, run_dir


def resolve_eval_target(target: str | Path, checkpoint: str | Path | None) -> tuple[Path | str, Path]:
    """``ctxpose eval TARGET [--checkpoint W]``: (config path or name, weights file).

    A run folder gives its ``config.yaml`` and, unless ``checkpoint`` is given, its ``checkpoints/last.pt``.

    Raises:
        ConfigError: a folder that is not a run folder, or a config without ``--checkpoint``.
    """
    target = Path(target)
    if target.is_dir():
        if not (target / CONFIG).is_file():
            raise ConfigError(f"{target}: not a run folder (no {CONFIG})")
        weights = Path(checkpoint) if checkpoint else target / "checkpoints" / LAST
    elif checkpoint is None:
        raise ConfigError(f"{target}: a config needs --checkpoint PATH (or pass a run folder)")
    else:
        weights = Path(checkpoint)
    if not weights.is_file():
        raise ConfigError(f"--checkpoint {weights}: file not found")
    return (target / CONFIG if target.is_dir() else target), weights


def prepare_run_dir(title: str, logdir: str | Path, resume: str | Path | None = None) -> tuple[Path, Path | None]:
    """The folder a training run writes, and the checkpoint it continues from (None for a new run).

    Args:
        title: the config's title (names a new run folder ``<logdir>/<title>_<time>``).
        logdir: parent of run folders.
        resume: a run folder, its checkpoint file or ``"auto"`` (see :func:`resolve_resume`): the run continues
            in its own folder.

    Raises:
        CheckpointError: nothing to resume from. OutputError: the folder cannot be written.
    """
    from ctxpose.utils.io import check_writable_dir

    checkpoint = None
    if resume is not None:
        checkpoint, run_dir = resolve_resume(str(resume), logdir, title)
    else:
        run_dir = new_run_dir(logdir, title)
    check_writable_dir(run_dir)
    return run_dir, checkpoint
