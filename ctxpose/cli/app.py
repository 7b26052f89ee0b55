"""The ``ctxpose`` command: one Typer app, one module per subcommand."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler

from ctxpose import __version__
from ctxpose.cli import config as config_cmd
from ctxpose.cli import preprocess as preprocess_cmd
from ctxpose.cli import synthesize as synthesize_cmd
from ctxpose.errors import CtxposeError

app = typer.Typer(
    name="ctxpose",
    help="ContextPose 3D human pose: preprocess Human3.6M, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(preprocess_cmd.app, name="preprocess")
app.add_typer(synthesize_cmd.app, name="synthesize")

err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ctxpose {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )


def main() -> None:
    """Entry point: user errors print one red line and exit 1; Ctrl-C exits 130."""
    try:
        app(standalone_mode=False)
    except CtxposeError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
