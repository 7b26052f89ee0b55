"""The ``ctxpose`` Typer app: one module per subcommand, each importing its library only when it runs, so
``ctxpose --help`` and ``ctxpose --version`` stay fast.

Exit statuses: 0 ok; 1 a user error or an OS error (one red line naming the file or key); 2 a usage error;
130 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import errno
import importlib
import logging
import sys

import typer

from ctxpose._version import __version__
from ctxpose.cli import config as config_cmd
from ctxpose.cli import demo as demo_cmd
from ctxpose.cli import eval as eval_cmd
from ctxpose.cli import export_3dhp as export_3dhp_cmd
from ctxpose.cli import fetch_weights as fetch_weights_cmd
from ctxpose.cli import infer as infer_cmd
from ctxpose.cli import preprocess as preprocess_cmd
from ctxpose.cli import synthesize as synthesize_cmd
from ctxpose.cli import train as train_cmd
from ctxpose.cli import visualize as visualize_cmd

app = typer.Typer(
    name="ctxpose",
    help="ContextPose 3D human pose: preprocess Human3.6M and MPI-INF-3DHP, fetch the released weights, train, "
         "evaluate, visualize.\n\nExample: ctxpose demo --out ctxpose-demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(preprocess_cmd.app, name="preprocess")
app.add_typer(synthesize_cmd.app, name="synthesize")
app.add_typer(visualize_cmd.app, name="visualize")
app.command("train")(train_cmd.main)
app.command("eval")(eval_cmd.main)
app.command("demo")(demo_cmd.main)
app.command("export-3dhp")(export_3dhp_cmd.main)
app.command("fetch-weights")(fetch_weights_cmd.main)
app.command("infer")(infer_cmd.main)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ctxpose {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", metavar="", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", metavar="", help="Debug logging."),
) -> None:
    from rich.logging import RichHandler

    from ctxpose.engine.progress import stderr_console

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=stderr_console(), show_path=False)],
        force=True,
    )


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """ClickException classes: Typer may vendor its own copy of click."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def describe_os_error(e: OSError) -> str:
    """One line for an OS error: the path and the reason in words."""
    reasons = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.ENOTDIR: "a path component is a file, not a folder", errno.EISDIR: "is a folder, not a file",
               errno.ENOENT: "no such file or folder", errno.EDQUOT: "disk quota exceeded"}
    reason = reasons.get(e.errno, e.strerror or type(e).__name__)
    where = e.filename if e.filename is not None else ""
    return f"{where}: {reason}" if where else reason


def _error(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True, markup=True)


def run() -> None:
    """Run the app: user and OS errors print one red line and exit 1; usage errors exit 2."""
    from ctxpose.errors import CtxposeError

    # A signal is ctxpose.errors.Stopped (ctxpose.cli.main's StopSignals), which passes through here and click:
    # ctxpose.cli.main prints "interrupted: ..." and exits 130.
    try:
        code = app(standalone_mode=False)  # non-standalone click returns typer.Exit's code instead of exiting
    except CtxposeError as e:
        _error(_escape(str(e)))
        sys.exit(1)
    except OSError as e:
        _error(_escape(describe_os_error(e)))
        sys.exit(1)
    except typer.Abort:  # click's answer to an end of input (EOFError) in a command
        _error("unexpected end of input")
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except _click_exception_types() as e:
        e.show()  # type: ignore[attr-defined]
        sys.exit(e.exit_code)  # type: ignore[attr-defined]
    if isinstance(code, int) and code:
        sys.exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)

