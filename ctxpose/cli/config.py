"""``ctxpose config list|show|check``: the shipped configs, a resolved config, a validation."""

from __future__ import annotations

from typing import Annotated

import typer

from ctxpose.cli.options import ConfigArg, SetOpt

app = typer.Typer(help="List, show or check experiment configs (ours or the original ContextPose YAML).\n\n"
                       "Example: ctxpose config check configs/human36m_contextpose.yaml --paths",
                  no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """The configs shipped with ctxpose, usable by name wherever a config is asked for.

    Example: ctxpose config list
    """
    from rich.console import Console
    from rich.table import Table

    from ctxpose.config import shipped_configs

    table = Table(title="shipped configs")
    table.add_column("name", no_wrap=True)
    table.add_column("what", overflow="fold")  # a long path wraps instead of ending in an ellipsis
    for name, path in sorted(shipped_configs().items()):
        table.add_row(name, header_comment(path.read_text()))
    Console().print(table)


def header_comment(text: str) -> str:
    """The comment block a YAML file opens with, as one paragraph (its lines joined by spaces)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(x for x in lines if x)


@app.command()
def show(config: ConfigArg, set_: SetOpt = None) -> None:
    """Print the fully resolved config (every setting, defaults included).

    Example: ctxpose config show configs/human36m_contextpose.yaml --set model.volume_net.volume_size=32
    """
    import yaml
    from rich.console import Console
    from rich.syntax import Syntax

    from ctxpose.config import config_to_dict, load_config

    cfg = load_config(config, set_ or [])
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    Console().print(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))


@app.command()
def check(
    config: ConfigArg,
    set_: SetOpt = None,
    paths: Annotated[bool, typer.Option("--paths", metavar="", help="Also check that the files it reads exist.")
                     ] = False,
) -> None:
    """Validate a config: types, ranges, choices and cross-field rules; exit 1 naming every offending key.

    Example: ctxpose config check configs/human36m_contextpose.yaml --paths
    """
    from rich.console import Console

    from ctxpose.config import load_config, missing_paths
    from ctxpose.errors import ConfigError

    cfg = load_config(config, set_ or [])
    if paths and (missing := missing_paths(cfg)):
        raise ConfigError(f"{config}: " + "; ".join(missing))
    Console().print(f"[green]ok[/green] {config}")
