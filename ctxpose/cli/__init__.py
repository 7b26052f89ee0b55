"""The ``ctxpose`` command. :func:`main` is the entry point; it imports the command line only inside its
``try``, so a Ctrl-C at any moment (even while Python is still importing) ends with one line and exit 130, as does a
:class:`ctxpose.errors.Stopped` from a command (its message says how to continue)."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the ``ctxpose`` console script."""
    from ctxpose.errors import Stopped

    try:
        from ctxpose.cli.app import run

        run()
    except (KeyboardInterrupt, Stopped) as e:
        message = str(e)
        sys.stderr.write(f"interrupted{': ' + message if message else ''}\n")
        sys.exit(130)
