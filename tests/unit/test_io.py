"""``ctxpose.utils.io``: atomic writes keep the old file on failure, leave no temporary, respect the umask and
name the final path in OS errors."""

from __future__ import annotations

import errno
import os
import stat

import pytest
import torch

from ctxpose.utils.io import atomic_path, atomic_write_bytes, atomic_write_text, torch_save_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_mode_the_umask_allows(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_text(tmp_path / "b.json", "{}")
        torch_save_atomic({"w": torch.ones(2)}, tmp_path / "c.pt")
        with atomic_path(tmp_path / "d.mp4", keep_suffix=True) as tmp:
            assert tmp.name.startswith(".d.mp4.") and tmp.name.endswith(".tmp.mp4") and tmp.stat().st_size == 0
            assert _mode(tmp) == expected  # also while it is being written (e.g. by OpenCV)
            tmp.write_bytes(b"video")
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.json", "c.pt", "d.mp4"]
    for name in ("a.bin", "b.json", "c.pt", "d.mp4"):
        assert _mode(tmp_path / name) == expected, name
    assert torch.load(tmp_path / "c.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "labels.npz"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["labels.npz"]


def test_temporary_names_are_unique_and_never_reused(tmp_path):
    target = tmp_path / "x.bin"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.is_file() and second.is_file()
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert target.read_bytes() == b"1"  # the outer context renames last
    assert os.listdir(tmp_path) == ["x.bin"]


def test_os_errors_name_the_final_path_not_the_temporary(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    blocked = tmp_path / "file" / "x.bin"  # a file where a folder is expected
    with pytest.raises(OSError) as e, atomic_path(blocked):
        pass
    assert e.value.filename == str(blocked)
    target = tmp_path / "y.bin"
    with pytest.raises(OSError) as e, atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert (type(e.value), e.value.errno, e.value.filename) == (OSError, errno.ENOSPC, str(target))
    target.mkdir()  # the rename fails: a folder is in the way
    with pytest.raises(IsADirectoryError) as e, atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert e.value.filename == str(target)
    assert sorted(os.listdir(tmp_path)) == ["file", "y.bin"] and os.listdir(target) == []
