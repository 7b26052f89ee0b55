"""Fixtures shared by the e2e modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.engine_data import make_processed


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny processed synthetic Human3.6M of :func:`make_processed`, made once per session and shared by the
    engine modules (train/eval, signals, DDP), which only read it: at the end of the session it must be unchanged."""
    root = make_processed(tmp_path_factory.mktemp("h36m"))
    before = _files(root)
    yield root
    assert _files(root) == before, f"{root}: a test changed the shared processed dataset"
