"""``ctxpose config show|check``: print or validate a resolved config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.syntax import Syntax

from ctxpose.config import config_to_dict, load_config, missing_paths
from ctxpose.errors import ConfigError

app = typer.Typer(help="Show or check an experiment config (ours or the original ContextPose YAML).",
                  no_args_is_help=True)

ConfigArg = Annotated[Path, typer.Argument(help="Experiment YAML (ours or the original's).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. --set train.batch_size=8.")]


@app.command()
def show(config: ConfigArg, set_: SetOpt = None) -> None:
    """Print the fully resolved config.

    Example: ctxpose config show configs/human36m_contextpose.yaml --set model.volume_net.volume_size=32
    """
    cfg = load_config(config, set_ or [])
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    Console().print(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))


@app.command()
def check(
    config: ConfigArg,
    set_: SetOpt = None,
    paths: Annotated[bool, typer.Option("--paths", help="Also check that the files it reads exist.")] = False,
) -> None:
    """Validate a config; exit 1 with the offending key if it is invalid.

    Example: ctxpose config check experiments/human36m/train/human36m_vol_softmax_single.yaml --paths
    """
    cfg = load_config(config, set_ or [])
    if paths and (missing := missing_paths(cfg)):
        raise ConfigError(f"{config}: " + "; ".join(missing))
    Console().print(f"[green]ok[/green] {config}")
