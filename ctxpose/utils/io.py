"""Safe file output and input: atomic writes, weights-only torch loading, checksums."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    A crash or exception leaves ``path`` untouched (old content or absent) and no temp file. An OS error
    (full disk, read-only file system...) is raised naming ``path``, not the temporary name. With
    ``keep_suffix`` the temporary name ends in ``path``'s suffix (for writers that pick the format by it,
    such as ``cv2.VideoWriter``).
    """
    path = Path(path)
    suffix = f".tmp{path.suffix}" if keep_suffix else ".tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


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


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
