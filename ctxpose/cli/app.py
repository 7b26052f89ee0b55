"""The ``ctxpose`` command: one Typer app, one module per subcommand."""

from __future__ import annotations

import importlib
import logging
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler

from ctxpose import __version__
from ctxpose.cli import config as config_cmd
from ctxpose.cli import demo as demo_cmd
from ctxpose.cli import eval as eval_cmd
from ctxpose.cli import preprocess as preprocess_cmd
from ctxpose.cli import synthesize as synthesize_cmd
from ctxpose.cli import train as train_cmd
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
app.command("train")(train_cmd.main)
app.command("eval")(eval_cmd.main)
app.command("demo")(demo_cmd.main)
app.command("fetch-weights")(importlib.import_module("ctxpose.cli.fetch_weights").main)

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


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """ClickException classes: Typer may vendor its own copy of click."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def main() -> None:
    """Entry point: user errors print one red line and exit 1; usage errors exit 2; Ctrl-C exits 130."""
    try:
        code = app(standalone_mode=False)  # non-standalone click returns typer.Exit's code instead of exiting
    except CtxposeError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except _click_exception_types() as e:
        e.show()  # type: ignore[attr-defined]
        sys.exit(e.exit_code)  # type: ignore[attr-defined]
    if isinstance(code, int) and code:
        sys.exit(code)
