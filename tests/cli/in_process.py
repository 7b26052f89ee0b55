"""``ctxpose ARGS`` through the real entry point (:func:`ctxpose.cli.main`) inside the test process: the same
error handling, exit statuses and output as the installed command, without a new interpreter importing torch
(several seconds each on this machine). Tests of signals and of start-up keep real subprocesses."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path


def run_in_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """(exit status, stdout, stderr) of ``ctxpose ARGS`` run in this process, in ``cwd``."""
    from ctxpose.cli import main

    out, err = io.StringIO(), io.StringIO()
    before, argv = os.getcwd(), sys.argv
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = ["ctxpose", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(before)
        sys.argv = argv
    return subprocess.CompletedProcess(["ctxpose", *args], code, out.getvalue(), err.getvalue())
