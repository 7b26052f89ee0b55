"""The ``ctxpose`` command. :func:`main` is the entry point: from its first line the program's one handler of
SIGINT/SIGTERM (:class:`ctxpose.utils.signals.StopSignals`, stopping at once unless a command enters its own, e.g.
training's "after the current step") turns a signal into :class:`ctxpose.errors.Stopped`, which ends with one line
(its message says how to continue) and exit 130; so does a Ctrl-C even while the command line is still imported."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the ``ctxpose`` console script."""
    from ctxpose.errors import Stopped

    try:
        from ctxpose.utils.signals import StopSignals

        with StopSignals("", at_once=True):
            from ctxpose.cli.app import run

            run()
    except (KeyboardInterrupt, Stopped) as e:
        message = str(e)
        sys.stderr.write(f"interrupted{': ' + message if message else ''}\n")
        sys.exit(130)
