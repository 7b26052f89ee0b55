"""Safe file output and input: atomic writes, weights-only torch loading, checksums."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any


class atomic_path:  # noqa: N801 - used as a function: ``with atomic_path(p) as tmp:``
    """Context manager giving a temporary path beside ``path``; on success it is renamed onto ``path``.

    A crash or exception leaves ``path`` untouched (old content or absent) and no temp file, also when a
    KeyboardInterrupt lands while the temporary file is being created. An OS error (full disk, read-only file
    system...) while creating, writing or renaming is raised naming ``path``, not the temporary name. The
    temporary file is created empty (exclusively, under a random name) with mode ``0o666`` minus the process
    umask, as ``open(path, "w")`` creates a new file (``mkstemp``'s fixed 0600 would make every dataset,
    checkpoint and report unreadable to the group on a shared machine).

    Args:
        path: final file.
        keep_suffix: end the temporary name in ``path``'s suffix (``.x.mp4.<random>.tmp.mp4``), for writers
            that choose the format by extension (OpenCV's video writer, cdflib).
    """

    _FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)

    def __init__(self, path: str | Path, keep_suffix: bool = False) -> None:
        self.path = Path(path)
        self.suffix = f".tmp{self.path.suffix}" if keep_suffix else ".tmp"
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        try:
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
        except BaseException as e:
            self._abandon(e)
            raise
        raise FileExistsError(f"{self.path.parent}: no free temporary name for {self.path.name}")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self._abandon(exc)
            return  # the block's own exception goes on
        try:
            os.replace(self.tmp, self.path)
        except BaseException as e:
            self._abandon(e)
            raise

    def _abandon(self, e: BaseException) -> None:
        """Remove the temporary file; an OS error is raised again naming ``path`` (same errno, hence the same
        OSError subclass), not the temporary name."""
        self._discard()
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(self.path)) from None

    def _discard(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def check_writable_dir(path: str | Path) -> None:
    """Create the folder ``path`` (with parents) and prove a file can be written in it, before long work starts.

    Raises:
        OutputError: one line naming the path and the reason (read-only, a file in the way, no permission...).
    """
    from ctxpose.errors import OutputError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ctxpose-write-check.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise OutputError(f"{path}: cannot write there ({reason})") from None


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

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as e:  # a full disk: torch's zip writer hides the OSError behind "unexpected pos"
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise


def load_weights_only(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, with one-line errors.

    Only tensors and plain containers are read; a file that would call any other Python object while
    loading is refused, and the error names that object (it never suggests loading unsafely).

    Raises:
        CheckpointError: missing, unreadable, damaged or refused file.
    """
    import pickle
    import re

    import torch

    from ctxpose.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))
        if refused:
            raise CheckpointError(f"{path}: refused: loading it would call {refused.group(1)}, and a weights file "
                                  "holds only tensors and plain containers (a file that runs code is not read)"
                                  ) from None
        raise CheckpointError(f"{path}: not a torch weights file, or damaged") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    except Exception:  # torch raises RuntimeError, EOFError, ValueError... for damaged archives
        raise CheckpointError(f"{path}: damaged or truncated torch file (its archive cannot be read)") from None


def load_npz(path: str | Path, what: str, hint: str = "") -> dict:
    """Every array of an ``.npz`` file, refusing pickled objects (``allow_pickle=False``).

    Args:
        path: the file.
        what: what the file is, for messages ("labels file", "predictions file").
        hint: appended to the "does not exist" message, e.g. "; run `ctxpose preprocess h36m` first".

    Raises:
        DataError: the file is missing, not an npz, or holds pickled objects.
    """
    import numpy as np

    from ctxpose.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist{hint}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable {what} (.npz without pickles: {e})") from None
