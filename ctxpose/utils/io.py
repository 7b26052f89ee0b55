"""Safe file output and input: atomic writes, weights-only torch loading, checksums."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any


class atomic_path:  # noqa: N801 - used as a function: ``with atomic_path(p) as tmp:``
    """Context manager giving a temporary path beside ``path``; on success it is renamed onto ``path``.

    A crash or exception leaves ``path`` untouched (old content or absent) and no temp file, also when a
    KeyboardInterrupt lands while the temporary file is being created. The temporary file is created empty
    (exclusively, under a random name) with mode ``0o666`` minus the process umask, as ``open(path, "w")``
    creates a new file (``mkstemp``'s fixed 0600 would make every dataset, checkpoint and report unreadable to
    the group on a shared machine).

    Args:
        path: final file.
        suffix: end of the temporary name, for writers that choose the format by extension
            (e.g. ``".tmp.mp4"`` for OpenCV's video writer).
    """

    _FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)

    def __init__(self, path: str | Path, suffix: str = ".tmp") -> None:
        self.path = Path(path)
        self.suffix = suffix
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            # Owned from before the file exists: an exception between its creation and the end of __enter__
            # (where __exit__ would not run) still removes it. 64 random bits: no other writer picks this name.
            self.tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(8)}{self.suffix}"
            try:
                os.close(os.open(self.tmp, self._FLAGS, 0o666))
                return self.tmp
            except FileExistsError:
                self.tmp = None
            except BaseException:
                self._discard()
                raise
        raise FileExistsError(f"{self.path.parent}: no free temporary name for {self.path.name}")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            os.replace(self.tmp, self.path)
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


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
