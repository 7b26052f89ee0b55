"""Safe file output and input: atomic writes, weights-only torch loading, checksums."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    A crash or exception leaves ``path`` untouched (old content or absent) and no temp file. The temporary
    file is created empty (exclusively, under a random name) with mode ``0o666`` minus the process umask, as
    ``open(path, "w")`` creates a new file (``mkstemp``'s fixed 0600 would make every dataset, checkpoint and
    report unreadable to the group on a shared machine).

    Args:
        path: final file.
        suffix: end of the temporary name, for writers that choose the format by extension
            (e.g. ``".tmp.mp4"`` for OpenCV's video writer).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_exclusive(path.parent, f".{path.name}.", suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _create_exclusive(folder: Path, prefix: str, suffix: str) -> Path:
    """Create a new empty file with a random name, mode 0o666 & ~umask (the kernel applies the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        candidate = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(candidate, flags, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{folder}: no free temporary name {prefix}*{suffix}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file, then rename."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
