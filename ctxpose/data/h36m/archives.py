"""Safe extraction of the official Human3.6M ``.tgz`` archives (``Videos_S1.tgz``, ``Poses_D3_Positions_S1.tgz``...).

Only the files a run needs are extracted, each to a temporary name then renamed, into the raw layout
(``<dest>/S1/Videos/<base>.<camera>.mp4``...). A member is placed by the archive's kind and the member's
file name, never by the path stored in the archive, so archives that wrap files in extra folders work.
Members with an absolute path, a ``..`` component, or that are links or device files are rejected: the
archive fails with a :class:`DataError` naming the member, and nothing of it is written outside ``dest``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from ctxpose.data.h36m import metadata
from ctxpose.errors import DataError, OutputError
from ctxpose.utils.io import atomic_path

logger = logging.getLogger(__name__)

_ARCHIVE_RE = re.compile(r"^(?P<kind>Poses_D3_Positions|Poses_D2_Positions|Poses_D3_Positions_mono|"
                         r"Poses_D3_Positions_mono_universal|Videos|Segments_mat_gt_bb)_(?P<subject>S\d+)\.tgz$")
_KIND_OF_PREFIX = {"Poses_D3_Positions": "D3_Positions", "Poses_D2_Positions": "D2_Positions",
                   "Poses_D3_Positions_mono": "D3_Positions_mono",
                   "Poses_D3_Positions_mono_universal": "D3_Positions_mono_universal", "Videos": "Videos",
                   "Segments_mat_gt_bb": "ground_truth_bb"}
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOTDIR}
_EXTENSION = {"D3_Positions": ".cdf", "D2_Positions": ".cdf", "D3_Positions_mono": ".cdf",
              "D3_Positions_mono_universal": ".cdf", "Videos": ".mp4", "ground_truth_bb": ".mat"}


def parse_archive_name(name: str) -> tuple[str, str] | None:
    """("Videos", "S1") for "Videos_S1.tgz", raw kinds as in ``metadata.RAW_KINDS``; None if not official."""
    m = _ARCHIVE_RE.match(name)
    if not m:
        return None
    return _KIND_OF_PREFIX[m["kind"]], m["subject"]


def check_member(archive: Path, member: tarfile.TarInfo) -> PurePosixPath:
    """The member's path if it is safe to read, else raise.

    Raises:
        DataError: absolute path, ``..`` component, link, or special file (naming archive and member).
    """
    name = PurePosixPath(member.name)
    if member.name.startswith(("/", "\\")) or name.is_absolute() or re.match(r"^[A-Za-z]:", member.name):
        raise DataError(f"{archive}: rejected member {member.name!r} (absolute path)")
    if ".." in name.parts or ".." in PurePosixPath(member.name.replace("\\", "/")).parts:
        raise DataError(f"{archive}: rejected member {member.name!r} (path traversal '..')")
    if member.issym() or member.islnk():
        raise DataError(f"{archive}: rejected member {member.name!r} (link to {member.linkname!r})")
    if not (member.isreg() or member.isdir()):
        raise DataError(f"{archive}: rejected member {member.name!r} (special file)")
    return name


def list_archives(raw_dir: Path) -> dict[tuple[str, str], Path]:
    """Official archives found directly in ``raw_dir``: (kind, subject) -> path."""
    found = {}
    for p in sorted(Path(raw_dir).glob("*.tgz")):
        parsed = parse_archive_name(p.name)
        if parsed:
            found[parsed] = p
    return found


def extract_members(archive: Path, dest: Path, wanted: set[str]) -> list[str]:
    """Extract the wanted files of one official archive into the raw layout under ``dest``.

    Args:
        archive: e.g. ``Videos_S1.tgz``.
        dest: root of the raw layout (``dest/S1/Videos/...``).
        wanted: file names (no folders) to extract, e.g. {"Directions 1.54138969.mp4"}; files already
            present under ``dest`` are not extracted again.

    Returns:
        Relative paths (under ``dest``) written by this call.

    Raises:
        DataError: the archive is unreadable or holds an unsafe member (checked before anything is
            written for that member; earlier safe files stay).
        OutputError: ``dest`` cannot be written (full disk, read-only, no permission).
    """
    parsed = parse_archive_name(archive.name)
    if parsed is None:
        raise DataError(f"{archive}: not an official Human3.6M archive name (e.g. Videos_S1.tgz)")
    kind, subject = parsed
    ext = _EXTENSION[kind]
    target_dir = dest / os.path.dirname(metadata.raw_relpath(kind, subject, "x", "0"))
    todo = {w for w in wanted if not (target_dir / w).is_file()}
    written: list[str] = []
    if not todo:
        return written
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                path = check_member(archive, member)
                if not member.isreg() or path.suffix != ext or path.name not in todo:
                    continue
                target = target_dir / path.name
                src = tar.extractfile(member)
                if src is None:
                    raise DataError(f"{archive}: cannot read member {member.name!r}")
                with src, atomic_path(target) as tmp, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 20)
                todo.discard(path.name)
                written.append(str(target.relative_to(dest)))
                if not todo:
                    break
    except OSError as e:
        if e.errno in _WRITE_ERRNOS and e.filename != str(archive):  # the destination, not the archive
            raise OutputError(f"{e.filename or dest}: cannot extract {archive.name} here ({e.strerror})") from None
        raise DataError(f"{archive}: cannot read archive ({type(e).__name__}: {e})") from None
    except (tarfile.TarError, EOFError) as e:
        raise DataError(f"{archive}: cannot read archive ({type(e).__name__}: {e})") from None
    if todo:
        logger.info("%s: %d wanted files not in the archive, e.g. %s", archive, len(todo), sorted(todo)[0])
    return written
