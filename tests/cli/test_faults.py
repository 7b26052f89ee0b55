"""OS faults and interrupts at the command line: one line naming the path, exit 1 (or 130), nothing lost."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ctxpose.cli.app import describe_os_error
from tests.cli.in_process import run_in_process

ROOT = Path(__file__).resolve().parents[2]
CFG = str(ROOT / "configs" / "tiny_cpu.yaml")


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOSPC, "no space left on the device"), (errno.EROFS, "read-only file system"),
     (errno.EACCES, "permission denied"), (errno.ENOTDIR, "a path component is a file, not a folder")],
)
def test_os_errors_read_as_words_with_the_path(code: int, words: str) -> None:
    assert describe_os_error(OSError(code, os.strerror(code), "/runs/x/last.pt")) == f"/runs/x/last.pt: {words}"


@pytest.mark.slow
@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unwritable_logdir_is_refused_before_any_work(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("x")
    logdir = tmp_path / "file" / "runs" if where == "file" else Path("/proc/ctxpose-test-runs")
    r = run_in_process("train", CFG, "--device", "cpu", "--logdir", str(logdir), cwd=tmp_path)
    line = one_line(r)
    assert r.returncode == 1 and str(logdir) in line and "cannot write there" in line
    assert (tmp_path / "file").read_text() == "x"


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_read_only_output_folder_is_one_line(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    if not _mount_tmpfs(ro, "ro,size=64k"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        r = run_in_process("eval", CFG, "--checkpoint", CFG, "--device", "cpu", "--out", str(ro / "eval"),
                           cwd=tmp_path)
        line = one_line(r)
        assert r.returncode == 1 and str(ro / "eval") in line and "Read-only file system" in line
    finally:
        subprocess.run(["umount", str(ro)], check=False)


# The command line's own imports (typer, rich, then torch when a command runs) are made slow here, and the
# signal is sent while they run: Python's start-up before any ctxpose code is not ours to guard.
_SLOW_IMPORT = """
import importlib.abc, sys, time
SLOW = sys.argv[-1]
class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == SLOW:
            print("importing", flush=True)
            time.sleep(30)
        return None
sys.meta_path.insert(0, Slow())
sys.argv = sys.argv[:-1]
from ctxpose.cli import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("module", ["typer", "torch"])
def test_ctrl_c_while_importing_is_one_line(tmp_path: Path, module: str) -> None:
    command = ["config", "show", CFG] if module == "typer" else ["eval", CFG, "--checkpoint", CFG]
    p = subprocess.Popen([sys.executable, "-c", _SLOW_IMPORT, *command, module], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "importing"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err.strip() == "interrupted", err
